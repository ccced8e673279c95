"""Distributed training (torchrun, gloo on CPU): equivalence with one process, resume, bad input.

The subprocess tests start ``python -m torch.distributed.run`` on 127.0.0.1 with a free port.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

from rankfusion.config import R3DConfig, RunConfig, TrainConfig  # noqa: E402
from rankfusion.metrics import MoCAccumulator  # noqa: E402
from rankfusion.spectral import (channel_informativeness, channel_statistic,  # noqa: E402
                                 informativeness_from_statistic)
from rankfusion.train import load_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("ddp_worker.py")
LOSSES = ["train_loss", "train_seg", "train_cls", "train_dur", "val_loss"]
# Relative tolerance of the 1 x 2B vs 2 x B loss trajectory. The two runs add the same float32
# terms in another order (per-process sums, then an all-reduce; padding to another length), a
# relative difference of a few eps32 = 1.2e-7 per reduction; through 18 AdamW steps it stays
# near that (measured: 1.6e-7 relative, 1.8e-7 absolute). 2e-5 (~170 eps32) leaves margin for
# other BLAS kernels and is 100x below what per-process selection changes (2e-3, measured).
RTOL = 2e-5


# ----------------------------------------------------------------------------- fast, in-process
def test_channel_statistic_is_additive_over_row_blocks(rng):
    X = rng.normal(size=(60, 10)) * np.linspace(0.2, 2.0, 10)
    for k in (None, 4):
        parts = channel_statistic(X[:25], k) + channel_statistic(X[25:], k)
        np.testing.assert_allclose(informativeness_from_statistic(parts, k), channel_informativeness(X, k),
                                   rtol=1e-12, atol=1e-12 * float((X * X).sum()))
    t = torch.as_tensor(X)
    assert isinstance(channel_statistic(t, 4), torch.Tensor) and channel_statistic(t, 4).shape == (10, 10)


def test_moc_counts_round_trip(rng):
    a, b, whole = (MoCAccumulator(5) for _ in range(3))
    videos = [rng.integers(0, 5, size=int(n)) for n in rng.integers(40, 90, size=6)]
    preds = [rng.integers(0, 6, size=len(v) // 2) for v in videos]
    for i, (gt, p) in enumerate(zip(videos, preds)):
        (a if i % 2 else b).add(gt, 0.3, p)
        whole.add(gt, 0.3, p)
    summed = MoCAccumulator(5)
    ta, fa = a.counts(0.3)
    tb, fb = b.counts(0.3)
    summed.add_counts(0.3, ta + tb, fa + fb, 6)
    # integer counts: the pooled MoC is the same numbers divided the same way
    assert summed.result().equals(whole.result())
    assert summed.tidy().equals(whole.tidy())
    with pytest.raises(ValueError, match="true"):
        summed.add_counts(0.3, np.zeros((2, 5)), fa, 1)


# ----------------------------------------------------------------------------- torchrun subprocesses
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(nproc, args, log_dir=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    if log_dir is not None:
        cmd += ["--log-dir", str(log_dir), "--redirects", "3"]
    return subprocess.run(cmd + [str(a) for a in args], env=env, capture_output=True, text=True, timeout=900)


def _ok(res):
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def _rows(run):
    with open(Path(run) / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def _config(batch_size):
    # dropout 0: each process draws its own dropout masks, the one thing the runs cannot share
    return RunConfig(model=R3DConfig(modalities=("rgb", "depth"), d_model=8, n_heads=2, n_layers=1,
                                     exchange_ratio=0.25, dropout=0.0),
                     train=TrainConfig(epochs=3, warmup_epochs=1, batch_size=batch_size, sample_rate=2,
                                       select_metric="val_moc"))


def _toml(path, batch):
    c = _config(batch)
    path.write_text("[model]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in vars(c.model).items() if v is not None)
                    + "[train]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in vars(c.train).items() if v is not None))
    return path


@pytest.fixture(scope="module")
def ddp_data(tmp_path_factory):
    from rankfusion.data import open_dataset, synthesize

    root = synthesize(tmp_path_factory.mktemp("ddp") / "syn", seed=3, split_fractions=(0.7, 0.15, 0.15),
                      n_videos=12, min_frames=60,
                      max_frames=110, channels={"rgb": 8, "depth": 6})
    # 8 training videos x 3 observation ratios = 24 samples: 6 steps of 4, no sampler padding
    assert len(open_dataset(root).split("train")) == 8
    return root


@pytest.fixture(scope="module")
def runs(ddp_data, tmp_path_factory):
    """1 process x batch 4, and 2 processes x batch 2 with global and with local RTF statistics."""
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for name, nproc, batch, extra in (("one_x4", 1, 4, []), ("two_x2", 2, 2, []),
                                      ("two_x2_local", 2, 2, ["--rtf-stats", "local"])):
        cfg = _toml(base / f"{name}.toml", batch)
        _ok(_torchrun(nproc, ["-m", "rankfusion", "train", ddp_data, "--out", base / name, "--config", cfg,
                              "--quiet", *extra]))
        out[name] = base / name
    return out


@pytest.mark.slow
def test_two_processes_follow_one_process_with_twice_the_batch(runs):
    one, two, local = (_rows(runs[k]) for k in ("one_x4", "two_x2", "two_x2_local"))
    assert len(one) == len(two) == 3
    a = np.array([[float(r[k]) for k in LOSSES] for r in one])
    b = np.array([[float(r[k]) for k in LOSSES] for r in two])
    c = np.array([[float(r[k]) for k in LOSSES] for r in local])
    np.testing.assert_allclose(b, a, rtol=RTOL)
    # the check has teeth: selecting channels per process is another computation
    assert np.max(np.abs(c - a) / np.abs(a)) > 10 * RTOL
    wa = load_checkpoint(runs["one_x4"] / "checkpoints" / "last.pt")["model"]
    wb = load_checkpoint(runs["two_x2"] / "checkpoints" / "last.pt")["model"]
    assert set(wa) == set(wb) and not any(k.startswith("module.") for k in wb)
    assert bool(wa["rtf.is_frozen"]) and bool(wb["rtf.is_frozen"])  # compared below, exactly
    for k in wa:
        x, y = wa[k], wb[k]
        if k.endswith("dur_head.bias"):
            continue  # shifts every query's log-duration alike: the softmax over queries ignores it
        if not x.is_floating_point():  # RTF's eval-mode channels, chosen on all processes' training rows
            assert torch.equal(x, y), k
            continue
        if k.endswith("in_proj_bias"):
            # the key bias adds a constant to each query's scores: softmax ignores it too. Both
            # have a gradient that is zero but for rounding, which AdamW's normalised step
            # turns into lr-sized moves (measured 2e-4 here); they cannot change any output.
            w = x.shape[0] // 3
            x, y = torch.cat([x[:w], x[2 * w:]]), torch.cat([y[:w], y[2 * w:]])
        torch.testing.assert_close(y, x, rtol=RTOL, atol=RTOL * float(x.abs().max()), msg=k)
    info = json.loads((runs["two_x2"] / "config.json").read_text())
    assert info["distributed"] == {"world_size": 2, "backend": "gloo", "rtf_stats": "global"}


@pytest.mark.slow
def test_two_process_run_resumes_exactly(runs, ddp_data, tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(_config(2).to_dict()))
    cut = tmp_path / "cut"
    _ok(_torchrun(2, [WORKER, "train", ddp_data, cut, cfg, "--stop-after", "2"]))
    assert len(_rows(cut)) == 2
    _ok(_torchrun(2, [WORKER, "train", ddp_data, cut, cfg, "--resume"]))
    ref = load_checkpoint(runs["two_x2"] / "checkpoints" / "last.pt")
    got = load_checkpoint(cut / "checkpoints" / "last.pt")
    # the same computation on the same machine (a 2-process all-reduce adds each pair once)
    for k in ref["model"]:
        assert torch.equal(ref["model"][k], got["model"][k]), k
    drop = {"epoch_s", "epoch_cpu_s", "frames_per_s"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in _rows(cut)] == \
        [{k: v for k, v in r.items() if k not in drop} for r in _rows(runs["two_x2"])]
    assert got["best"] == ref["best"] and len(got["rng_ranks"]) == 2
    # resuming with another world size is refused in one line
    res = _torchrun(1, ["-m", "rankfusion", "train", ddp_data, "--out", cut, "--config",
                        _toml(tmp_path / "c.toml", 2), "--resume", "--quiet"])
    assert res.returncode != 0 and "Error: --resume" in res.stderr and "world size 2" in res.stderr


@pytest.mark.slow
def test_selection_and_moc_over_two_processes(ddp_data, tmp_path):
    out = tmp_path / "checks.json"
    _ok(_torchrun(2, [WORKER, "checks", out, ddp_data]))
    res = json.loads(out.read_text())
    for k in ("k=None", "k=3"):
        # the summed statistic selects what one process selects from all five videos
        assert res[k]["global"] == res[k]["whole"], res[k]
        assert res[k]["local"] != res[k]["whole"], res[k]
    # integer T/F tables summed over processes: exactly the single-process MoC
    assert res["moc_sharded"] == res["moc_whole"]
    assert res["batched"] and res["moc_sharded_batched"] == res["moc_whole_batched"]


@pytest.mark.slow
def test_world_size_larger_than_training_videos(tmp_path):
    from rankfusion.data import open_dataset, synthesize

    root = synthesize(tmp_path / "few", seed=1, split_fractions=(0.7, 0.15, 0.15),
                      n_videos=4, min_frames=60, max_frames=80, channels={"rgb": 4})
    n_train = len(open_dataset(root).split("train"))
    res = _torchrun(n_train + 1, ["-m", "rankfusion", "train", root, "--out", tmp_path / "r", "--modalities", "rgb",
                                  "--quiet"], log_dir=tmp_path / "logs")
    assert res.returncode != 0
    errs = {int(p.parent.name): p.read_text() for p in (tmp_path / "logs").rglob("stderr.log")}
    assert sorted(errs) == list(range(n_train + 1)), errs
    # rank 0: the one error line (the modalities line comes only once the run is accepted)
    (err,) = errs[0].strip().splitlines()
    assert err.startswith("Error: torchrun world size")
    assert f"{n_train} training videos" in err
    assert all(errs[r].strip() == "" for r in errs if r != 0), errs
    assert "exitcode  : 2" in res.stderr or "exitcode: 2" in res.stderr.replace("  ", " "), res.stderr[-2000:]
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
@pytest.mark.parametrize("args,line", [
    (["--dist-backend", "nccl"], "Error: --dist-backend nccl runs on GPUs: add --device cuda, or use gloo on CPUs"),
    (["--unimodal-heads", "1", "--ogm", "0.5"], "Error: ogm (OGM-GE) is not supported under torchrun: each process "
                                                "would modulate and add noise to the averaged gradients differently; "
                                                "train it in one process"),
])
def test_errors_every_process_finds_are_printed_once(ddp_data, tmp_path, args, line):
    """Rank 0 prints the one line; the other process prints nothing and waits to be stopped (a traceback
    from each process before, or the line twice; exiting at once could get rank 0 stopped before its
    line was written)."""
    res = _torchrun(2, ["-m", "rankfusion", "train", ddp_data, "--out", tmp_path / "r", "--modalities", "rgb,depth",
                        "--epochs", "10", "--quiet", *args], log_dir=tmp_path / "logs")
    assert res.returncode != 0
    errs = {int(p.parent.name): p.read_text().strip() for p in (tmp_path / "logs").rglob("stderr.log")}
    assert sorted(errs) == [0, 1], errs
    # the one error line, found with the configuration: before the job is joined and any data read
    assert errs[0].splitlines() == [line], errs
    assert errs[1] == "", errs
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("case,gpus,local,rank,speaks", [
    # too few GPUs: only the surplus processes find it; the first of them says it
    ("few", 2, 2, 2, True), ("few", 2, 3, 3, False), ("few", 2, 2, 6, True),
    # no CUDA on a machine: its first process says it
    ("none", 0, 0, 0, True), ("none", 0, 1, 1, False), ("none", 0, 0, 4, True),
    # nccl on CPUs (the command line's own condition): rank 0 says it
    ("nccl", 0, 0, 0, True), ("nccl", 0, 1, 1, False), ("nccl", 0, 0, 4, False),
])
def test_errors_before_joining_are_said_by_one_process_of_those_that_find_them(monkeypatch, case, gpus, local,
                                                                               rank, speaks):
    from rankfusion import distributed
    from rankfusion._validation import InputError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.distributed, "init_process_group",
                        lambda *a, **k: pytest.fail("joined the job despite the error"))
    for name, value in (("RANK", rank), ("LOCAL_RANK", local), ("WORLD_SIZE", 8)):
        monkeypatch.setenv(name, str(value))
    waits = []
    monkeypatch.setattr(distributed.time, "sleep", waits.append)
    device, backend = ("cpu", "nccl") if case == "nccl" else ("cuda", None)
    expected = InputError if speaks else SystemExit
    with pytest.raises(expected) as info:
        distributed.setup(device, backend=backend)
    if speaks:
        assert {"few": "LOCAL_RANK", "none": "CUDA is not available", "nccl": "nccl runs on GPUs"}[case] in str(info.value)
        assert waits == []
    else:
        # it waits to be stopped: exiting at once gets the speaker stopped before its line is written
        assert waits == [distributed.STAND_DOWN_S] and distributed.STAND_DOWN_S >= 10
        assert info.value.code == 2


def test_a_process_that_leaves_an_agreed_error_to_rank_0_waits_to_be_stopped(monkeypatch):
    from rankfusion import distributed

    waits = []
    monkeypatch.setattr(distributed.time, "sleep", waits.append)
    monkeypatch.setattr(distributed, "broadcast", lambda obj, ctx, dev: (None, "rank 0's error"))
    ctx = distributed.DistContext(1, 2, 1, "gloo", "global")
    with pytest.raises(SystemExit) as info:
        distributed.agree(lambda: pytest.fail("only rank 0 checks"), ctx, torch.device("cpu"))
    assert info.value.code == 2 and waits == [distributed.STAND_DOWN_S]


def test_train_rejects_a_non_context(tmp_path):
    from rankfusion.train import train

    with pytest.raises(TypeError, match="distributed"):
        train(_config(2), tmp_path, tmp_path / "r", distributed="gloo")


@pytest.mark.parametrize("transition_weight", [1.0, 10.0])
def test_split_batch_losses_are_the_whole_batch_losses(transition_weight):
    """Per-process sums over counts summed over processes = the mean over the whole batch."""
    from rankfusion.model import R3DOutput
    from rankfusion.train import _loss_terms, compute_losses

    g = torch.Generator().manual_seed(0)
    B, T, K, Q = 6, 9, 5, 4
    lengths = torch.tensor([9, 4, 7, 2, 9, 5])
    mask = torch.arange(T)[None] < lengths[:, None]
    out = R3DOutput(torch.randn(B, T, K, generator=g), torch.randn(B, Q, K + 1, generator=g),
                    torch.randn(B, Q, generator=g))
    fut = torch.randint(0, K, (B, Q), generator=g)
    n_act = torch.tensor([1, 3, 2, 0, 1, 2])  # row 3: only NONE, no duration target
    for b in range(B):
        fut[b, n_act[b]] = K
        fut[b, n_act[b] + 1:] = -100
    dur = torch.rand(B, Q, generator=g) * (fut >= 0) * (fut < K)
    batch = {"seg_labels": torch.randint(0, K, (B, T), generator=g).masked_fill(~mask, -100),
             "future_classes": fut, "future_durations": dur / dur.sum(1, keepdim=True).clamp(min=1e-9),
             "last_observed": torch.randint(0, K, (B,), generator=g)}
    whole = compute_losses(out, batch, "cpu", transition_weight=transition_weight)
    halves = [slice(0, 2), slice(2, 6)]
    terms = [_loss_terms(R3DOutput(*(t[h] for t in out[:3])), {k: v[h] for k, v in batch.items()}, "cpu", "sum",
                         transition_weight) for h in halves]
    counts = np.sum([c for _, c in terms], axis=0)
    for i, k in enumerate(("seg", "cls", "dur")):
        got = sum(float(p[k]) for p, _ in terms) / counts[i]
        # float32 sums of <= 54 terms in another order: a few eps32 relative
        assert got == pytest.approx(float(whole[k]), rel=1e-5), k


@pytest.mark.parametrize("env,outcome", [({}, "raised"), ({"WORLD_SIZE": "2", "RANK": "0"}, "said"),
                                         ({"WORLD_SIZE": "2", "RANK": "1"}, "stands down")])
def test_errors_reading_the_command_line_and_data_are_said_once_under_torchrun(monkeypatch, env, outcome):
    from rankfusion import distributed
    from rankfusion._validation import InputError

    waits = []
    monkeypatch.setattr(distributed.time, "sleep", waits.append)
    for name in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    error = InputError("split set 'split9' not found")
    with pytest.raises(SystemExit if outcome == "stands down" else InputError) as info:
        with distributed.said_once():
            raise error
    if outcome == "raised":
        assert info.value is error and waits == []
    elif outcome == "said":
        assert str(info.value) == str(error) and waits == []
    else:
        assert info.value.code == 2 and waits == [distributed.STAND_DOWN_S]


@pytest.mark.slow
def test_a_diverged_run_under_torchrun_stops_with_one_line(ddp_data, tmp_path):
    # every process skipped the per-step check (one stopping alone would leave the other waiting) and
    # nothing checked the all-reduced loss: the run exited 0 with NaN weights saved as its best epoch
    res = _torchrun(2, ["-m", "rankfusion", "train", ddp_data, "--out", tmp_path / "r", "--modalities", "rgb,depth",
                        "--epochs", "2", "--lr", "1e30", "--no-rtf", "--quiet"], log_dir=tmp_path / "logs")
    assert res.returncode != 0
    errs = {int(p.parent.name): p.read_text().strip() for p in (tmp_path / "logs").rglob("stderr.log")}
    assert errs[0].splitlines()[-1].startswith("Error: training seed 1 diverged in epoch 1: its loss or weights are "
                                               "no longer finite at learning rate 1e+30"), errs
    assert errs[1] == "", errs
    assert not (tmp_path / "r" / "checkpoints" / "best.pt").exists()
