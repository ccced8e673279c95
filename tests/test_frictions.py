"""Small frictions: `train` picks the dataset's modalities, bars stay out of logs."""

from __future__ import annotations

import io
import json

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from rankfusion._progress import bar_disabled  # noqa: E402
from rankfusion.cli import main  # noqa: E402

SMALL = ["--d-model", "8", "--layers", "1", "--sample-rate", "4", "--batch-size", "4"]


@pytest.fixture(scope="module")
def imu_data(tmp_path_factory):
    """A dataset whose only modalities are accelerometer and gyroscope streams (6 videos)."""
    import numpy as np

    from rankfusion.data import write_dataset

    rng = np.random.default_rng(5)
    classes = ["sit", "stand", "walk"]
    videos = [f"v{i}" for i in range(6)]
    labels, acc, gyro = {}, {}, {}
    for i, v in enumerate(videos):
        n = 48 + 4 * i
        labels[v] = np.repeat(rng.permutation(3), n // 3 + 1)[:n].tolist()
        acc[v] = rng.standard_normal((n, 6)).astype(np.float32)
        gyro[v] = rng.standard_normal((n, 4)).astype(np.float32)
    root = tmp_path_factory.mktemp("imu") / "acc_gyro"
    return write_dataset(root, classes, labels, {"acc": acc, "gyro": gyro},
                         {"train": videos[:4], "val": videos[4:5], "test": videos[5:]}, validate=True)


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_bar_shows_only_on_a_terminal():
    assert bar_disabled(True, io.StringIO()) is True
    assert bar_disabled(True, _Tty()) is False
    assert bar_disabled(False, _Tty()) is True


def test_train_without_modalities_uses_the_datasets_and_says_so(imu_data, tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", str(imu_data), "--out", str(out), "--epochs", "2", *SMALL])
    assert r.exit_code == 0, r.output
    info = json.loads((out / "config.json").read_text())
    assert sorted(info["config"]["model"]["modalities"]) == ["acc", "gyro"]
    lines = r.stderr.splitlines()
    assert lines[0].startswith("modalities ") and "the dataset's" in lines[0]
    assert sorted(lines[0].split()[1].split(",")) == ["acc", "gyro"]
    # not a terminal: no bar redraws, one line per epoch on stderr; stdout holds only the result
    assert "\r" not in r.output
    # the warm-up (10 epochs by default) outlasts the 2 epochs: said once, before the epochs
    assert lines[1].startswith("note: warmup_epochs 10 > epochs 2: the learning rate rises")
    assert [ln.split()[:4] for ln in lines[2:4]] == [["seed", "1", "epoch", "1/2"], ["seed", "1", "epoch", "2/2"]]
    assert len(lines) == 4
    assert len(r.stdout.splitlines()) == 1 and r.stdout.startswith("trained ")


def test_batched_seeds_draw_no_bar_off_a_terminal(imu_data, tmp_path):
    r = CliRunner().invoke(main, ["train", str(imu_data), "--out", str(tmp_path / "run"), "--epochs", "2",
                                  "--seeds", "1,2", *SMALL])
    assert r.exit_code == 0, r.output
    assert "one after another" not in r.output  # the batched trainer ran
    # not a terminal: no bar redraws, one line per seed and epoch, then the closing line
    assert "\r" not in r.output and "seeds):" not in r.output
    lines = r.stderr.splitlines()[2:]  # after the modalities line and the warm-up note
    assert [ln.split()[:4] for ln in lines] == [["seed", s, "epoch", e] for e in ("1/2", "2/2") for s in ("1", "2")]
    assert len(r.stdout.splitlines()) == 1 and r.stdout.startswith("trained ")


def test_train_modalities_flag_and_preset_are_named_as_the_source(imu_data, tmp_path):
    r = CliRunner().invoke(main, ["train", str(imu_data), "--out", str(tmp_path / "a"), "--epochs", "1",
                                  "--modalities", "gyro", "--quiet", *SMALL])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == "modalities gyro (from --modalities)"
    # on stderr, with the progress; stdout holds the result line only
    assert r.stderr.splitlines()[0] == "modalities gyro (from --modalities)"
    assert r.stdout.splitlines()[0].startswith("trained ")
    cfg = tmp_path / "c.toml"
    cfg.write_text('[model]\nmodalities = ["acc"]\n')
    r = CliRunner().invoke(main, ["train", str(imu_data), "--out", str(tmp_path / "b"), "--epochs", "1",
                                  "--config", str(cfg), "--quiet", *SMALL])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == "modalities acc (from --config)"


@pytest.mark.parametrize("content,reason", [
    (b"", "the file is empty"),
    (b"not a checkpoint", "not a checkpoint rankfusion wrote"),
    ("pickle", "not a checkpoint rankfusion wrote"),
    ("truncated", "truncated or not a checkpoint"),
    ("foreign", "not a checkpoint rankfusion wrote (no 'config', 'config_hash', 'seed', 'dataset', 'epoch')"),
    ("list", "not a checkpoint rankfusion wrote (a list, not a dict)"),
])
def test_unreadable_checkpoint_is_one_line_with_its_reason(tmp_path, content, reason):
    from rankfusion._validation import InputError
    from rankfusion.runs import load_checkpoint

    path = tmp_path / "best.pt"
    if content == "pickle":
        import torch

        torch.save({"model": io.StringIO("x")}, path)  # an object a safe load refuses
    elif content == "truncated":
        import torch

        torch.save({"model": {"w": torch.zeros(20000)}}, path)
        path.write_bytes(path.read_bytes()[:20000])  # cut as a full disk or a killed copy leaves it
    elif content in ("foreign", "list"):  # loads safely, but another program's file
        import torch

        torch.save({"model": {"w": torch.zeros(3)}} if content == "foreign" else [1, 2], path)
    else:
        path.write_bytes(content)
    with pytest.raises(InputError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert msg.startswith(f"cannot read checkpoint {str(path)!r}: ") and reason in msg
    assert "\n" not in msg and "weights_only" not in msg and "arbitrary code" not in msg


def test_resume_from_a_best_checkpoint_copied_over_last_is_one_line(imu_data, tmp_path):
    # best.pt holds the weights but no optimiser, schedule or history: a resume cannot continue from it
    import shutil

    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", str(imu_data), "--out", str(out), "--epochs", "1", "--quiet", *SMALL])
    assert r.exit_code == 0, r.output
    shutil.copyfile(out / "checkpoints" / "best.pt", out / "checkpoints" / "last.pt")
    r = CliRunner().invoke(main, ["train", str(imu_data), "--out", str(out), "--epochs", "2", "--resume", "--quiet",
                                  *SMALL])
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1] == (
        f"Error: cannot read checkpoint {str(out / 'checkpoints' / 'last.pt')!r}: not a checkpoint rankfusion wrote "
        "(no 'optimizer', 'scheduler', 'history')")


def test_an_unknown_preset_is_named_as_the_option_that_gave_it(imu_data, tmp_path):
    from rankfusion._validation import InputError
    from rankfusion.config import load_config, preset_names

    with pytest.raises(InputError, match=r"^preset must be one of"):
        load_config(preset="nope")
    r = CliRunner().invoke(main, ["train", str(imu_data), "--out", str(tmp_path / "r"), "--preset", "nope"])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [f"Error: --preset must be one of {preset_names()}, got 'nope'"]
    assert not (tmp_path / "r").exists()


def test_a_closed_output_pipe_is_no_error_line(monkeypatch):
    # `rankfusion data check DATA | head -6`: head closes the pipe and the command's next write
    # raises BrokenPipeError, an OSError, which used to end as "Error: [Errno 32] Broken pipe", exit 2
    import rankfusion.data.layout as layout

    def closed(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(layout, "open_dataset", closed)
    r = CliRunner().invoke(main, ["data", "check", "."])
    assert r.exit_code == 1 and r.output == ""


def test_a_run_trains_and_is_scored_on_the_split_set_it_names(imu_data, tmp_path, monkeypatch):
    """`train --split-set split2` trains and validates on that set's videos, records it, resumes only
    with it, and `evaluate` and `extract` read the run's own set (its test videos), not the default."""
    import shutil

    import numpy as np

    from rankfusion import evaluate as ev
    from rankfusion import train as tr

    data = tmp_path / "two_sets"
    shutil.copytree(imu_data, data)
    sets = {"train": ["v2", "v3", "v4", "v5"], "val": ["v1"], "test": ["v0"]}  # split1: v0-v3, v4, v5
    for split, videos in sets.items():
        (data / "splits" / f"{split}.split2.bundle").write_text("".join(f"{v}.txt\n" for v in videos))
    seen = {}
    real_items, real_grid = tr.AnticipationDataset, ev.moc_grid

    def items(ds, split, **kw):
        seen[split] = list(ds.split(split))
        return real_items(ds, split, **kw)

    def grid(model, ds, split, *a, **kw):
        seen["scored " + split] = list(ds.split(split))
        return real_grid(model, ds, split, *a, **kw)

    monkeypatch.setattr(tr, "AnticipationDataset", items)
    monkeypatch.setattr(ev, "moc_grid", grid)
    run = tmp_path / "run"
    args = ["train", str(data), "--out", str(run), "--epochs", "1", "--quiet", *SMALL]
    r = CliRunner().invoke(main, [*args, "--split-set", "split2"])
    assert r.exit_code == 0, r.output
    assert seen == {"train": sets["train"], "val": sets["val"]}
    assert json.loads((run / "config.json").read_text())["config"]["train"]["split_set"] == "split2"
    r = CliRunner().invoke(main, ["extract", str(run), "--out", str(tmp_path / "f.npz")])
    assert r.exit_code == 0, r.output
    meta = json.loads(str(np.load(tmp_path / "f.npz")["meta"]))
    assert meta["videos"] == ["v0"] and meta["split_set"] == "split2"
    r = CliRunner().invoke(main, ["evaluate", str(run), "--no-reliance"])
    assert r.exit_code == 0 and seen["scored test"] == sets["test"], r.output
    # resumed with its own set only: another set (or the default) is another configuration
    r = CliRunner().invoke(main, [*args, "--split-set", "split2", "--resume"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, [*args, "--resume"])
    assert r.exit_code == 2 and r.output.strip().splitlines()[-1].startswith("Error: --resume: run folder "), r.output
    assert r.output.strip().endswith("(train.split_set 'split2' -> None)"), r.output
    # the default set's runs are left alone: no split_set in their hash, the default's videos
    r = CliRunner().invoke(main, ["train", str(data), "--out", str(tmp_path / "default"), "--epochs", "1", "--quiet",
                                  *SMALL])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "default" / "config.json").read_text())["config"]["train"]["split_set"] is None


@pytest.mark.parametrize("value,mods,line", [
    ("split9", [], "split set 'split9' not found in '{splits}'; available: ['split1']"),
    # without --modalities the dataset is opened (with the set) to list them
    ("", [], "split set '' not found in '{splits}'; available: ['split1']"),
    ("", ["--modalities", "acc"], "--split-set must be a split-set name such as 'split2', got ''"),
    ("../x", ["--modalities", "acc"], "--split-set must be a split-set name such as 'split2', got '../x'")])
def test_an_unknown_or_malformed_split_set_is_one_line(imu_data, tmp_path, value, mods, line):
    r = CliRunner().invoke(main, ["train", str(imu_data), "--out", str(tmp_path / "r"), "--epochs", "1", "--quiet",
                                  "--split-set", value, *mods, *SMALL])
    assert r.exit_code == 2 and not (tmp_path / "r").exists(), r.output
    assert r.output.strip() == "Error: " + line.format(splits=imu_data / "splits"), r.output


def test_a_split_nothing_of_which_can_be_scored_is_refused_and_too_short_videos_are_skipped(imu_data, tmp_path):
    """Videos with no observed frame at a ratio are skipped by the segmentation scores as by MoC; a
    split where every cut point is skipped is refused in one line, with nothing written (it gave an
    all-NaN table and exit 0)."""
    import numpy as np

    from rankfusion.data import open_dataset, write_dataset
    from rankfusion.evaluate import segmentation_grid
    from rankfusion.runs import load_run

    run = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", str(imu_data), "--out", str(run), "--epochs", "1", "--quiet", *SMALL])
    assert r.exit_code == 0, r.output
    src = open_dataset(imu_data)
    labels = {v: list(src.labels(v)) for v in src.videos}
    feats = {m: {v: np.asarray(src.features(v, m)) for v in src.videos} for m in src.modalities}
    for v in ("v4", "v5"):  # 3 frames: int(0.3 * 3) = 0 observed
        labels[v] = labels[v][:3]
        for m in feats:
            feats[m][v] = feats[m][v][:3]
    short = write_dataset(tmp_path / "short", src.classes, labels, feats,
                          {"train": ["v0", "v1"], "val": ["v4"], "test": ["v5", "v3"]})
    r = CliRunner().invoke(main, ["evaluate", str(run), "--data", str(short), "--split", "val", "--no-reliance"])
    assert r.exit_code == 2 and r.output.startswith("Error: nothing in split 'val'") and "'v4' (3 frames)" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (run / "eval_val.csv").exists()
    # the test split: v5 skipped, v3 scored alone
    model, config, _ = load_run(run)
    ds = open_dataset(short)
    both = segmentation_grid(model, ds, "test", config, "cpu")
    (tmp_path / "short" / "splits" / "test.split1.bundle").write_text("v3.txt\n")
    alone = segmentation_grid(model, open_dataset(short), "test", config, "cpu")
    assert both == alone and all(np.isfinite(v) for s in both.values() for v in s.values())


@pytest.mark.parametrize("command", [["evaluate"], ["extract", "--out", "{tmp}/f.npz"]])
def test_a_missing_run_folder_is_said_to_be_missing(tmp_path, command):
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    for name, reason in (("nosuch", "does not exist"), ("file", "is a file, not a folder"),
                         ("empty", "has no config.json (not a training run)")):
        args = [command[0], str(tmp_path / name), *(a.format(tmp=tmp_path) for a in command[1:])]
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2 and r.output.strip() == f"Error: run folder {str(tmp_path / name)!r} {reason}", r.output


def test_a_run_of_the_default_split_set_keeps_reading_the_set_it_trained_on(imu_data, tmp_path):
    """A dataset without split1 defaults to its first set in sorted order. A run trained on it keeps
    that set (recorded as resolved) when a set that sorts first is added later; with --data pointing
    elsewhere, the default rule applies."""
    import shutil

    import numpy as np

    data = tmp_path / "sets"
    shutil.copytree(imu_data, data)
    for p in (data / "splits").glob("*.split1.bundle"):
        p.rename(p.with_name(p.name.replace("split1", "setB")))
    run = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", str(data), "--out", str(run), "--epochs", "1", "--quiet", *SMALL])
    assert r.exit_code == 0, r.output
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["split_set"] == "setB" and recorded["config"]["train"]["split_set"] is None
    for split, videos in {"train": ["v1", "v2", "v3", "v4"], "val": ["v5"], "test": ["v0"]}.items():
        (data / "splits" / f"{split}.setA.bundle").write_text("".join(f"{v}.txt\n" for v in videos))

    def extracted(*extra):
        out = tmp_path / f"f{len(list(tmp_path.glob('f*.npz')))}.npz"
        r = CliRunner().invoke(main, ["extract", str(run), "--out", str(out), *extra])
        assert r.exit_code == 0, r.output
        meta = json.loads(str(np.load(out)["meta"]))
        return meta["split_set"], meta["videos"]

    assert extracted() == ("setB", ["v5"])
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    assert extracted("--data", str(copy)) == ("setA", ["v0"])
