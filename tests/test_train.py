"""Training runs: config resolution, checkpoints, exact resume, several seeds, CLI errors."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from rankfusion.cli import main  # noqa: E402
from rankfusion.config import R3DConfig, RunConfig, TrainConfig, load_config, preset_names  # noqa: E402
from rankfusion.train import load_checkpoint, load_run, parse_seeds, resolve_device, train  # noqa: E402

TIMING = {"epoch_s", "epoch_cpu_s", "frames_per_s"}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from rankfusion.data import synthesize

    root = tmp_path_factory.mktemp("data") / "syn"
    return synthesize(root, seed=3, split_fractions=(0.7, 0.15, 0.15), n_videos=9, min_frames=60, max_frames=110,
                      channels={"rgb": 8, "depth": 6, "imu": 4})


def tiny_config(**train_kw):
    kw = dict(epochs=3, warmup_epochs=1, batch_size=4, sample_rate=2, select_metric="val_loss")
    kw.update(train_kw)
    return RunConfig(model=R3DConfig(modalities=("rgb", "depth"), d_model=8, n_heads=2, n_layers=1,
                                     exchange_ratio=0.25),
                     train=TrainConfig(**kw))


def tiny_data_split(root, split):
    from rankfusion.data import open_dataset

    return open_dataset(root).split(split)


def _rows(path):
    with open(path) as fh:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(fh)]


def test_run_folder_contents(tiny_data, tmp_path):
    run = train(tiny_config(epochs=2), tiny_data, tmp_path / "run", seed=10, progress=False)
    info = json.loads((run / "config.json").read_text())
    assert info["seed"] == 10
    assert info["config"]["model"]["input_dims"] == {"rgb": 8, "depth": 6}
    assert info["config"]["model"]["n_classes"] == 12
    cfg = RunConfig.from_dict(info["config"])
    assert cfg.config_hash() == info["config_hash"]
    rows = _rows(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["config_hash"] == info["config_hash"] and best["config"] == info["config"]
    assert best["best"]["metric"] == "val_loss"
    with pytest.raises(ValueError, match="already holds a run"):
        train(tiny_config(epochs=2), tiny_data, run, seed=10, progress=False)


def _train_stopped_after(epochs: int, tiny_data, run):
    """Train ``tiny_config()`` into ``run``, interrupted at the end of epoch ``epochs``."""

    class Interrupt(Exception):
        pass

    def stop(epoch, row):
        if epoch == epochs:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(tiny_config(), tiny_data, run, seed=1, progress=False, on_epoch_end=stop)


def test_resume_is_exact(tiny_data, tmp_path):
    ref = train(tiny_config(), tiny_data, tmp_path / "ref", seed=1, progress=False)
    _train_stopped_after(2, tiny_data, tmp_path / "cut")
    assert len(_rows(tmp_path / "cut" / "metrics.csv")) == 2
    cut = train(tiny_config(), tiny_data, tmp_path / "cut", seed=1, progress=False, resume=True)
    a = load_checkpoint(ref / "checkpoints" / "last.pt")
    b = load_checkpoint(cut / "checkpoints" / "last.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert _rows(ref / "metrics.csv") == _rows(cut / "metrics.csv")
    assert a["best"] == b["best"]
    # a resumed run with another config is refused
    with pytest.raises(ValueError, match="resume"):
        train(tiny_config(lr=5e-4), tiny_data, cut, seed=1, progress=False, resume=True)


def _legacy_layout(ck: dict, model) -> dict:
    """A last.pt in the layout checkpoints had before the packed one: the optimiser's own state_dict,
    the Python and NumPy RNG states as lists of ints."""
    from rankfusion.trainstate import unpack_optimizer

    out = dict(ck)
    params = list(model.parameters())  # AdamW over model.parameters(): the state's ids in this order
    out["optimizer"] = unpack_optimizer(ck["optimizer"], params)
    version, words, gauss = ck["rng"]["python"]
    name, keys, *rest = ck["rng"]["numpy"]
    out["rng"] = {**ck["rng"], "python": [version, words.tolist(), gauss], "numpy": [name, keys.tolist(), *rest]}
    return out


def test_resume_from_a_checkpoint_in_the_earlier_layout_is_exact(tiny_data, tmp_path):
    from rankfusion.model import R3D

    ref = train(tiny_config(), tiny_data, tmp_path / "ref", seed=1, progress=False)
    _train_stopped_after(2, tiny_data, tmp_path / "cut")
    last = tmp_path / "cut" / "checkpoints" / "last.pt"
    ck = load_checkpoint(last)
    assert "packed_state" in ck["optimizer"] and "state" not in ck["optimizer"]
    model = R3D(RunConfig.from_dict(ck["config"]).model)
    torch.save(_legacy_layout(ck, model), last)
    cut = train(tiny_config(), tiny_data, tmp_path / "cut", seed=1, progress=False, resume=True)
    a = load_checkpoint(ref / "checkpoints" / "last.pt")
    b = load_checkpoint(cut / "checkpoints" / "last.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["optimizer"]["packed_state"]:
        assert torch.equal(a["optimizer"]["packed_state"][k], b["optimizer"]["packed_state"][k]), k
    assert _rows(ref / "metrics.csv") == _rows(cut / "metrics.csv")


def test_packed_optimizer_state_round_trips_exactly():
    from rankfusion.trainstate import optimizer_params, pack_optimizer, unpack_optimizer

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    assert pack_optimizer(opt.state_dict()) == opt.state_dict()  # no state before the first step
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(7, 5)).square().sum().backward()
        opt.step()
    sd = opt.state_dict()
    packed = pack_optimizer(sd)
    assert set(packed["packed_state"]) == {"ids", "stacked.step", "flat.exp_avg", "flat.exp_avg_sq"}
    assert packed["packed_state"]["flat.exp_avg"].numel() == sum(p.numel() for p in net.parameters())
    back = unpack_optimizer(packed, optimizer_params(opt))
    assert back["param_groups"] == sd["param_groups"] and set(back["state"]) == set(sd["state"])
    for i, s in sd["state"].items():
        assert set(back["state"][i]) == set(s)
        for kind, v in s.items():
            assert back["state"][i][kind].shape == v.shape and torch.equal(back["state"][i][kind], v), (i, kind)
    assert unpack_optimizer(sd, optimizer_params(opt)) is sd  # the earlier layout passes through
    # a state whose kinds differ between parameters is kept as torch wrote it
    odd = {"state": {0: {"step": torch.tensor(1.0)}, 1: {"momentum": torch.zeros(2)}}, "param_groups": []}
    assert pack_optimizer(odd) is odd
    with pytest.raises(ValueError, match="holds 4 values"):
        short = dict(packed, packed_state={**packed["packed_state"],
                                           "flat.exp_avg": packed["packed_state"]["flat.exp_avg"][:4]})
        unpack_optimizer(short, optimizer_params(opt))


def test_rng_states_round_trip_in_both_layouts():
    import random

    from rankfusion.trainstate import rng_state, set_rng_state

    def draws():
        return torch.rand(3).tolist(), random.random(), np.random.rand(2).tolist()

    state = rng_state()
    assert isinstance(state["python"][1], torch.Tensor) and isinstance(state["numpy"][1], torch.Tensor)
    first = draws()
    set_rng_state(state)
    assert draws() == first
    version, words, gauss = state["python"]
    name, keys, *rest = state["numpy"]
    set_rng_state({**state, "python": [version, words.tolist(), gauss], "numpy": [name, keys.tolist(), *rest]})
    assert draws() == first


def test_several_seeds_make_subfolders(tiny_data, tmp_path):
    run = train(tiny_config(epochs=1), tiny_data, tmp_path / "multi", seed="1,10", progress=False)
    assert json.loads((run / "seeds.json").read_text())["seeds"] == [1, 10]
    w1 = load_checkpoint(run / "seed-1" / "checkpoints" / "last.pt")["model"]
    w10 = load_checkpoint(run / "seed-10" / "checkpoints" / "last.pt")["model"]
    assert not torch.equal(w1["proj.rgb.weight"], w10["proj.rgb.weight"])


def test_config_toml_overrides_and_hash(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[model]\nd_model = 32\nmodalities = ["rgb"]\n[train]\nepochs = 5\nobs_ratios = [0.2, 0.4]\n')
    cfg = load_config(p, train={"lr": 3e-4})
    assert cfg.model.d_model == 32 and cfg.model.modalities == ("rgb",)
    assert cfg.train.epochs == 5 and cfg.train.obs_ratios == (0.2, 0.4) and cfg.train.lr == 3e-4
    assert cfg.config_hash() == load_config(p, train={"lr": 3e-4}).config_hash()
    assert cfg.config_hash() != load_config(p).config_hash()
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert "synthetic-small" in preset_names()
    assert load_config(preset="paper") == RunConfig()  # the paper preset spells out the defaults
    p.write_text("[model]\nd_modle = 32\n")
    with pytest.raises(ValueError, match="d_modle"):
        load_config(p)


def test_config_value_errors_name_the_layer_that_set_the_value(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[model]\nn_heads = -1\n[train]\nlr = 3e-4\n')
    with pytest.raises(ValueError, match=r"c\.toml \[model\]: n_heads must be at least 1, got -1$") as err:
        load_config(p, preset="synthetic-small")
    assert str(err.value).startswith(str(p))
    p.write_text('[train]\nepochs = "x"\n')
    with pytest.raises(TypeError, match=r"c\.toml \[train\]: epochs must be an integer, got 'x'$"):
        load_config(p)
    p.write_text('[train]\nepochs = 3\n')  # the bad value is the override's, not the file's
    with pytest.raises(ValueError, match=r"^overrides \[model\]: dropout must be <= 0.9, got 2.0$"):
        load_config(p, preset="synthetic-small", model={"dropout": 2.0})
    # a cross-field error names the layer only when that layer set every field it names
    p.write_text('[model]\nd_model = 10\nn_heads = 3\nmodalities = ["rgb", "depth"]\n')
    with pytest.raises(ValueError, match=r"c\.toml \[model\]: n_heads must divide"):
        load_config(p)
    p.write_text('[train]\nepochs = 3\n')  # n_heads from the preset, d_model from the overrides: no layer
    with pytest.raises(ValueError, match=r"^n_heads must divide the stacked width 2 x d_model = 6, got n_heads=4$"):
        load_config(p, preset="synthetic-small", model={"d_model": 3})
    with pytest.raises(ValueError, match=r"^n_heads must divide"):  # n_heads at its default: no layer set it
        load_config(p, model={"d_model": 3})


def test_config_validation_names_argument():
    with pytest.raises(ValueError, match="exchange_ratio"):
        R3DConfig(exchange_ratio=1.5)
    with pytest.raises(ValueError, match="n_heads"):
        R3DConfig(d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="selection"):
        R3DConfig(selection="svd")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)


def test_seed_and_device_parsing():
    assert parse_seeds("1,10,13452") == [1, 10, 13452]
    assert parse_seeds(7) == [7]
    with pytest.raises(ValueError, match="seeds"):
        parse_seeds("1,x")
    assert resolve_device(None).type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")


@pytest.mark.parametrize("args,needle", [
    (["--device", "cuda:7"], "device"),
    (["--seed", "1", "--seeds", "1,10"], "--seeds"),
    (["--modalities", "rgb,sonar"], "sonar"),
    (["--exchange-ratio", "2"], "--exchange-ratio must be <= 1.0, got 2.0"),
    (["--preset", "huge"], "preset"),
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
])
def test_cli_train_bad_inputs_exit_2(tiny_data, tmp_path, args, needle):
    if needle == "device" and torch.cuda.device_count() > 7:
        pytest.skip("machine has that many GPUs")
    r = CliRunner().invoke(main, ["train", str(tiny_data), "--out", str(tmp_path / "r"), "--quiet", *args])
    assert r.exit_code == 2, r.output
    assert needle in r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize("args,line", [
    (["--layers", "-1"], "Error: --layers must be at least 0, got -1"),
    (["--batch-size", "0"], "Error: --batch-size must be at least 1, got 0"),
    (["--seed", "-1"], "Error: --seed/--seeds must be at least 0, got -1"),
    (["--seeds", "1,-2"], "Error: --seed/--seeds must be at least 0, got -2"),
    (["--seeds", "1,1"], "Error: --seed/--seeds must be a non-empty list without repeats, got [1, 1]"),
    (["--seeds", "1,x"], "Error: --seed/--seeds must be comma-separated integers, got '1,x'"),
    (["--modality-dropout", "rgb=2"], "Error: --modality-dropout for 'rgb' must be <= 1.0, got 2.0"),
    (["--ogm", "0.5"], "Error: --ogm 0.5 needs --unimodal-heads W with W > 0: OGM-GE reads each modality's "
                       "confidence from the auxiliary unimodal heads"),
    # a value from the config file is named by the file and its key there
    (["--config", "{toml}"], "Error: {toml} [train]: batch_size must be at least 1, got 0"),
    # options of torchrun runs, outside torchrun (they were ignored)
    (["--dist-backend", "gloo"], "Error: --dist-backend applies under torchrun only: start train with torchrun "
                                 "(docs/scaling.md), or leave it out"),
    (["--rtf-stats", "local"], "Error: --rtf-stats local applies under torchrun only: start train with torchrun "
                               "(docs/scaling.md), or leave it out"),
    (["--rtf-stats", "local", "--dist-backend", "gloo"], "Error: --dist-backend and --rtf-stats local apply under "
                                                         "torchrun only: start train with torchrun (docs/scaling.md), "
                                                         "or leave them out"),
])
def test_cli_train_errors_name_the_option_that_set_the_value(tiny_data, tmp_path, args, line):
    (tmp_path / "c.toml").write_text("[train]\nbatch_size = 0\n")
    args = [a.format(toml=tmp_path / "c.toml") for a in args]
    r = CliRunner().invoke(main, ["train", str(tiny_data), "--out", str(tmp_path / "r"), "--quiet", *args])
    assert r.exit_code == 2, r.output
    assert r.output.strip().splitlines() == [line.format(toml=tmp_path / "c.toml")]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("seeds", ["1", "1,2"])
def test_a_folder_holding_other_files_is_refused_and_left_as_it_was(tiny_data, tmp_path, seeds):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "metrics.csv").write_text("epoch,acc\n1,0.93\n")
    (out / "config.json").write_text('{"lr": 0.1}\n')
    r = CliRunner().invoke(main, ["train", str(tiny_data), "--out", str(out), "--seeds", seeds, "--quiet"])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [  # the error alone: the modalities line only once the run is accepted
        f"Error: run folder {str(out)!r} is not empty (it holds 'config.json', 'metrics.csv'): choose a new or "
        "empty folder, or pass --resume to continue a run there"]
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "metrics.csv"]
    assert (out / "metrics.csv").read_text() == "epoch,acc\n1,0.93\n"


def test_an_empty_folder_is_a_run_folder_and_a_file_is_refused(tiny_data, tmp_path):
    (tmp_path / "empty").mkdir()
    train(tiny_config(epochs=1), tiny_data, tmp_path / "empty", seed=1, progress=False)
    assert (tmp_path / "empty" / "checkpoints" / "last.pt").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="run folder '.*file' is a file, not a folder"):
        train(tiny_config(epochs=1), tiny_data, tmp_path / "file", seed=1, progress=False)


def test_cli_train_existing_run_names_the_option(tiny_data, tmp_path):
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    (tmp_path / "r" / "checkpoints" / "last.pt").write_bytes(b"")
    r = CliRunner().invoke(main, ["train", str(tiny_data), "--out", str(tmp_path / "r"), "--quiet"])
    assert r.exit_code == 2 and "already holds a run; pass --resume or choose another output folder" in r.output
    with pytest.raises(ValueError, match=r"pass resume=True or choose"):
        train(tiny_config(), tiny_data, tmp_path / "r", seed=1, progress=False)


def test_cli_train_missing_dataset_exit_2(tmp_path):
    r = CliRunner().invoke(main, ["train", str(tmp_path / "nope"), "--out", str(tmp_path / "r"), "--quiet"])
    assert r.exit_code == 2 and "nope" in r.output


def test_cli_evaluate_and_extract_bad_run_exit_2(tmp_path):
    r = CliRunner().invoke(main, ["evaluate", str(tmp_path)])
    assert r.exit_code == 2 and "config.json" in r.output
    r = CliRunner().invoke(main, ["extract", str(tmp_path), "--out", str(tmp_path / "f.npz")])
    assert r.exit_code == 2 and "config.json" in r.output


def test_cli_train_small_run(tiny_data, tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[model]\nd_model = 8\nn_heads = 2\nn_layers = 1\n[train]\nwarmup_epochs = 0\n'
                 'select_metric = "val_loss"\nsample_rate = 2\n')
    r = CliRunner().invoke(main, ["train", str(tiny_data), "--out", str(tmp_path / "r"), "--config", str(p),
                                  "--epochs", "1", "--modalities", "rgb", "--no-rtf", "--quiet"])
    assert r.exit_code == 0, r.output
    info = json.loads((tmp_path / "r" / "config.json").read_text())
    assert info["config"]["model"]["rtf"] is False and info["config"]["model"]["modalities"] == ["rgb"]
    assert np.isfinite(float(_rows(tmp_path / "r" / "metrics.csv")[0]["train_loss"]))


def test_evaluate_run_single_and_several_seeds(tiny_data, tmp_path, monkeypatch):
    from rankfusion import evaluate as ev
    from rankfusion.evaluate import evaluate_run, format_eval_table

    run = train(tiny_config(epochs=1, select_metric="val_moc"), tiny_data, tmp_path / "ev", seed="1,10",
                progress=False)
    df = evaluate_run(run, "test")
    assert list(df.columns) == ["metric", "modality", "obs", "beta", "mean", "std", "n_seeds"]
    moc = df[df.metric == "moc"]
    assert len(moc) == 8 and set(moc.obs) == {0.2, 0.3} and set(moc.beta) == {0.1, 0.2, 0.3, 0.5}
    # the test split has one video: no other video to borrow an input from, so no reliance rows
    assert len(tiny_data_split(tiny_data, "test")) == 1
    assert set(df.metric) == {"moc", "accuracy", "edit", "f1@10", "f1@25", "f1@50"}
    seg = df[~df.metric.isin(["moc", "reliance"])]
    assert len(seg) == 10 and set(seg.obs) == {0.2, 0.3} and seg.beta.isna().all()
    assert (df.n_seeds == 2).all() and df[df.metric != "reliance"]["mean"].between(0, 100).all()
    assert (run / "eval_test.csv").exists() and (run / "seed-1" / "eval_test.csv").exists()
    # beside the table, the record of how it was made (a rerun with other options replaces both)
    rec = json.loads((run / "eval_test.json").read_text())
    assert rec["split"] == "test" and rec["checkpoint"] == "best" and rec["partner_run"] is None
    assert [s["seed"] for s in rec["seeds"]] == [1, 10] and all(s["data"] == str(tiny_data) for s in rec["seeds"])
    evaluate_run(run, "test", checkpoint="last", reliance_draws=2)
    rec = json.loads((run / "eval_test.json").read_text())
    assert rec["checkpoint"] == "last" and rec["reliance_draws"] == 2
    # a failure at the second seed leaves every table and record as it was (the first seed's table
    # used to be replaced as soon as that seed was evaluated); each write replaces the file (a new inode)
    kept = [run / "eval_test.csv", run / "eval_test.json", run / "seed-1" / "eval_test.csv",
            run / "seed-10" / "eval_test.csv"]
    before = {p: (p.stat().st_ino, p.read_bytes()) for p in kept}
    real, calls = ev._evaluate_single, []

    def fails_second(d, *args):
        calls.append(d)
        if len(calls) == 2:
            raise ValueError("video v9: cannot read")
        return real(d, *args)

    monkeypatch.setattr(ev, "_evaluate_single", fails_second)
    with pytest.raises(ValueError, match="v9"):
        evaluate_run(run, "test")
    monkeypatch.undo()
    assert len(calls) == 2 and {p: (p.stat().st_ino, p.read_bytes()) for p in kept} == before
    single = evaluate_run(run / "seed-10", "test")
    assert single["std"].isna().all() and (single.n_seeds == 1).all()
    assert "+-" in format_eval_table(df) and "+-" not in format_eval_table(single)
    r = CliRunner().invoke(main, ["evaluate", str(run), "--split", "val"])
    assert r.exit_code == 0, r.output
    assert "MoC" in r.output and (run / "eval_val.csv").exists()
    # reliance on the train split (several videos): one MoC-grid drop per modality and cell, in
    # MoC points (a drop lies in [-100, 100])
    r = CliRunner().invoke(main, ["evaluate", str(run / "seed-1"), "--split", "train"])
    assert r.exit_code == 0, r.output
    assert "reliance" in r.output
    import pandas as pd

    rel = pd.read_csv(run / "seed-1" / "eval_train.csv").query("metric == 'reliance'")
    assert len(rel) == 16 and set(rel.modality) == {"rgb", "depth"} and rel["mean"].between(-100, 100).all()
    util = pd.read_csv(run / "seed-1" / "eval_train.csv")
    assert {"reliance_random", "reliance_donor_sd", "cur", "cur_random", "donor_mismatch",
            "donor_matched"} <= set(util.metric) and "shapley" not in set(util.metric)  # two modalities
    assert len(util.query("metric == 'reliance_random'")) == 16
    assert util.query("metric == 'donor_matched'")["mean"].between(0, 100).all()
    assert len(util.query("metric == 'cur'")) == 2 and util.query("metric == 'cur'").obs.isna().all()
    # a several-seed table leaves each seed's donor interval to that seed's own table (a mean of bounds
    # over seeds is no interval); the seeds' own tables keep them
    both = evaluate_run(run, "train")
    assert not set(both.metric) & set(ev.DONOR_CI_METRICS) and "reliance_donor_sd" in set(both.metric)
    assert set(ev.DONOR_CI_METRICS) <= set(pd.read_csv(run / "seed-10" / "eval_train.csv").metric)
    r = CliRunner().invoke(main, ["evaluate", str(run / "seed-1"), "--split", "train", "--no-reliance"])
    assert r.exit_code == 0, r.output
    assert "reliance" not in r.output


def test_transition_weight_multiplies_the_anticipation_loss_of_changing_samples():
    from types import SimpleNamespace

    from torch.nn import functional as F

    from rankfusion.train import compute_losses

    g = torch.Generator().manual_seed(0)
    B, T, Nq, K = 3, 6, 4, 5
    out = SimpleNamespace(seg_logits=torch.randn(B, T, K, generator=g),
                          class_logits=torch.randn(B, Nq, K + 1, generator=g), durations=torch.randn(B, Nq, generator=g))
    cls = torch.tensor([[1, 2, K, -100], [3, K, -100, -100], [0, 4, K, -100]])
    batch = {"seg_labels": torch.randint(0, K, (B, T), generator=g), "future_classes": cls,
             "future_durations": torch.rand(B, Nq, generator=g), "last_observed": torch.tensor([1, 2, 0])}
    plain = compute_losses(out, batch, "cpu")
    weighted = compute_losses(out, batch, "cpu", transition_weight=10.0)
    ce = F.cross_entropy(out.class_logits.reshape(-1, K + 1), cls.reshape(-1), ignore_index=-100,
                         reduction="none").view(B, Nq)
    # only sample 1 changes action at the cut (3 != 2); 8 target queries in all
    expected = (ce[0, :3].sum() + 10 * ce[1, :2].sum() + ce[2, :3].sum()) / 8
    assert float(weighted["cls"]) == pytest.approx(float(expected), rel=1e-6)
    assert float(plain["cls"]) == pytest.approx(float(ce[cls != -100].mean()), rel=1e-6)
    assert float(weighted["seg"]) == float(plain["seg"]) and float(weighted["dur"]) == float(plain["dur"])


def test_transition_weight_config_and_hash():
    cfg = tiny_config()
    assert cfg.train.transition_weight == 1.0
    # at its default the option is left out of the hash: earlier runs keep their hash
    # (with evaluation as it was before eval_channels existed: the evaluated batch chose its channels)
    cfg = cfg.replace(model={"eval_channels": "batch"})
    d = cfg.to_dict()
    del d["train"]["transition_weight"], d["model"]["trunk_width"]  # options later than the first runs
    for later in ("modality_dropout", "unimodal_heads", "ogm", "split_set"):
        del d["train"][later]
    del d["model"]["eval_channels"]
    import hashlib

    old = hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]
    assert cfg.config_hash() == old
    assert tiny_config().config_hash() != old  # the default evaluation changed, and so did its hash
    assert tiny_config(transition_weight=10.0).config_hash() != old
    with pytest.raises(ValueError, match="transition_weight"):
        tiny_config(transition_weight=-1.0)


def test_cli_evaluate_skips_a_video_too_short_to_observe(tiny_data, tmp_path):
    import shutil
    import warnings

    from rankfusion.data import open_dataset

    run = train(tiny_config(epochs=1), tiny_data, tmp_path / "run", seed=1, progress=False)
    data = tmp_path / "short"
    shutil.copytree(tiny_data, data)
    ds = open_dataset(data)
    video, moved = ds.split("test")[0], ds.split("train")[-1]
    # a second test video (moved from train), so the cut points still have something to score
    for name, videos in (("train", ds.split("train")[:-1]), ("test", [video, moved])):
        (data / "splits" / f"{name}.split1.bundle").write_text("".join(f"{v}.txt\n" for v in videos))
    gt = data / "groundTruth" / f"{video}.txt"
    gt.write_text("".join(gt.read_text().splitlines(keepends=True)[:3]))
    for m in ("rgb", "depth", "imu"):
        f = data / "features" / m / f"{video}.npy"
        np.save(f, np.load(f)[:, :3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "NumPy array is not writable" warning would fail here
        r = CliRunner().invoke(main, ["evaluate", str(run), "--data", str(data)])
    assert r.exit_code == 0, r.output
    for o in ("0.2", "0.3"):
        assert (f"note: video {video!r} (3 frames) has no observed frame at obs {o} (int({o} * 3) = 0): "
                "skipped at that cut point\n") in r.stderr
    assert "Warning" not in r.output and "MoC" in r.stdout
    df = __import__("pandas").read_csv(run / "eval_test.csv")
    assert np.isfinite(df[df.metric == "moc"]["mean"]).all()


def test_video_inputs_never_wrap_read_only_arrays(tiny_data, monkeypatch):
    # torch warns (once per process, in C++) when from_numpy wraps a non-writable array; the
    # dataset's features are read-only memory maps, sliced to one contiguous row at short cut points
    from rankfusion.data import open_dataset
    from rankfusion.data.torchdata import video_inputs

    real = torch.from_numpy
    seen = []

    def checked(arr):
        seen.append(arr.flags.writeable)
        return real(arr)

    monkeypatch.setattr(torch, "from_numpy", checked)
    ds = open_dataset(tiny_data)
    video = ds.split("test")[0]
    for stop, rate in ((1, 2), (5, 1), (40, 2)):
        video_inputs(ds, video, ("rgb", "depth"), stop, rate, torch.device("cpu"))
    assert seen and all(seen)


def test_cli_train_prints_the_recorded_config_hash(tiny_data, tmp_path):
    r = CliRunner().invoke(main, ["train", str(tiny_data), "--out", str(tmp_path / "r"), "--epochs", "1",
                                  "--d-model", "8", "--modalities", "rgb", "--sample-rate", "4", "--quiet",
                                  "--seeds", "1,2"])
    assert r.exit_code == 0, r.output
    printed = r.output.split("(config ")[1].split(")")[0]
    for s in (1, 2):
        info = json.loads((tmp_path / "r" / f"seed-{s}" / "config.json").read_text())
        assert printed == info["config_hash"] == load_checkpoint(tmp_path / "r" / f"seed-{s}" / "checkpoints"
                                                                 / "last.pt")["config_hash"]
        assert printed == RunConfig.from_dict(info["config"]).config_hash()


def test_trunk_width_fixes_the_stacked_width():
    import hashlib

    from rankfusion.config import width_for_trunk

    # one, two, three modalities: D = 256, 128, and 84 (85 x 3 = 255 is not divisible by 4 heads)
    for mods, d in ((["rgb"], 256), (["rgb", "depth"], 128), (["rgb", "depth", "imu"], 84)):
        cfg = load_config(model={"modalities": mods, "trunk_width": 256, "n_heads": 4})
        assert cfg.model.d_model == d and (len(mods) * d) % 4 == 0
    assert width_for_trunk(10, 3, 1) == 3
    with pytest.raises(ValueError, match="trunk_width 2 leaves no width per modality for 3 modalities"):
        width_for_trunk(2, 3, 1)
    # a later d_model (file, override, replace) sets D directly and drops the trunk
    cfg = load_config(preset="synthetic-small", model={"modalities": ["rgb"]})
    assert (cfg.model.trunk_width, cfg.model.d_model) == (256, 256)
    wide = load_config(preset="synthetic-small", model={"modalities": ["rgb"], "d_model": 64})
    assert (wide.model.trunk_width, wide.model.d_model) == (None, 64)
    assert cfg.replace(model={"d_model": 32}).model.d_model == 32
    assert cfg.replace(model={"modalities": ["rgb", "depth"]}).model.d_model == 128
    # both in one layer must agree (a saved config holds both, consistent)
    with pytest.raises(ValueError, match="d_model 64 and trunk_width 256 disagree .*d_model 128 for 2"):
        load_config(model={"modalities": ["rgb", "depth"], "trunk_width": 256, "d_model": 64, "n_heads": 4})
    assert load_config(model={"modalities": ["rgb", "depth"], "trunk_width": 256, "d_model": 128,
                              "n_heads": 4}).model.d_model == 128
    # the resolved config round-trips (the derived D is recomputed, equal)
    again = RunConfig.from_dict(cfg.replace(model={"modalities": ["rgb", "depth"]}).to_dict())
    assert again.model.d_model == 128
    # unset, the option stays out of the hash: earlier runs keep theirs
    plain = load_config(model={"modalities": ["rgb"], "d_model": 256, "n_heads": 4})
    d = plain.to_dict()
    del d["model"]["trunk_width"], d["train"]["transition_weight"]
    for later in ("modality_dropout", "unimodal_heads", "ogm", "split_set"):
        del d["train"][later]
    old = hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]
    assert plain.config_hash() == old != cfg.config_hash()


def test_cli_evaluate_and_extract_on_another_channel_count_and_a_one_video_split(tiny_data, tmp_path):
    from rankfusion.data import synthesize

    run = train(tiny_config(epochs=1), tiny_data, tmp_path / "run", seed=1, progress=False)
    # the test split has one video: reliance (a swap between videos) cannot run, and says so
    r = CliRunner().invoke(main, ["evaluate", str(run)])
    assert r.exit_code == 0, r.output
    assert "note: modality reliance skipped: split 'test' has 1 video" in r.stderr
    before = (run / "eval_test.csv").read_bytes()
    other = synthesize(tmp_path / "other", seed=3, split_fractions=(0.7, 0.15, 0.15), n_videos=3, min_frames=60,
                       max_frames=70, channels={"rgb": 8, "depth": 5})
    r = CliRunner().invoke(main, ["evaluate", str(run), "--data", str(other)])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0] == (f"Error: modality 'depth' has 5 channels in dataset {str(other)!r}, but the model takes 6 "
                        "(input_dims {'rgb': 8, 'depth': 6})")
    assert (run / "eval_test.csv").read_bytes() == before  # the earlier result is left as it was
    assert json.loads((run / "eval_test.json").read_text())["seeds"][0]["data"] == str(tiny_data)  # and its record
    # extract checks the same (it ran the model into a shape error before)
    out = tmp_path / "feats.npz"
    r = CliRunner().invoke(main, ["extract", str(run), "--data", str(other), "--out", str(out)])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0].startswith(f"Error: modality 'depth' has 5 channels in dataset {str(other)!r}"), r.output
    assert not out.exists() and not list(tmp_path.glob(".feats*"))


def test_checkpoints_hold_the_channels_chosen_on_the_last_epochs_training_rows(tiny_data, tmp_path, monkeypatch):
    from rankfusion.model import RankEnhancingTokenFuser as RTF, channels_from_statistic
    from rankfusion.spectral import channel_statistic

    events = []
    select, switch = RTF.select, RTF.train

    def rec_select(self, feats, mask):
        if self.training:
            events.append([channel_statistic(x.detach()[mask], None) for x in feats])
        return select(self, feats, mask)

    def rec_train(self, mode=True):
        if self.training and not mode:
            events.append("eval")
        return switch(self, mode)

    monkeypatch.setattr(RTF, "select", rec_select)
    monkeypatch.setattr(RTF, "train", rec_train)
    run = train(tiny_config(epochs=2), tiny_data, tmp_path / "run", seed=10, progress=False)
    # the training calls between the last two switches to eval mode: the last epoch's rows
    marks = [i for i, e in enumerate(events) if e == "eval"]
    last = [e for e in events[marks[-2] + 1:marks[-1]] if e != "eval"]
    assert len(last) >= 2
    want = [channels_from_statistic(sum(stats[m] for stats in last), None, 2).tolist() for m in range(2)]
    ck = load_checkpoint(run / "checkpoints" / "last.pt")
    assert bool(ck["model"]["rtf.is_frozen"]) and ck["model"]["rtf.frozen_low"].tolist() == want
    # a model loaded from the checkpoint evaluates with those channels, whatever rows it is given
    model, _, _ = load_run(run, checkpoint="last")
    assert not model.training and model.rtf.frozen
    scale = torch.ones(2, 8)
    for m in range(2):
        scale[m, want[m]] = 100.0  # rows on which the recorded channels carry the most energy
    x = [torch.randn(1, 5, 8) * scale[m] for m in range(2)]
    assert [c.tolist() for c in model.rtf(x, torch.ones(1, 5, dtype=torch.bool)).low] == want
    # eval_channels="batch": no recorded choice, every evaluated batch chooses
    cfg = tiny_config(epochs=1).replace(model={"eval_channels": "batch"})
    run_b = train(cfg, tiny_data, tmp_path / "batch", seed=10, progress=False)
    assert not bool(load_checkpoint(run_b / "checkpoints" / "last.pt")["model"]["rtf.is_frozen"])


def _with_nan(src, dst, split):
    """A copy of the dataset ``src`` whose first ``split`` video has a NaN in every rgb feature."""
    import shutil

    shutil.copytree(src, dst)
    video = tiny_data_split(dst, split)[0]
    path = dst / "features" / "rgb" / f"{video}.npy"
    x = np.load(path)
    x[...] = np.nan
    np.save(path, x)
    return video


@pytest.mark.parametrize("seeds", [[], ["--seeds", "1,10"], ["--seeds", "1,10", "--serial-seeds"]],
                         ids=["one", "batched", "serial"])
def test_cli_train_refuses_non_finite_features_before_writing(tiny_data, tmp_path, seeds):
    # a NaN in a validation video (read by the rank monitor and the validation loss, not by the
    # training batches): named by video, modality and frame, and the run folder is never created
    bad = tmp_path / "bad"
    video = _with_nan(tiny_data, bad, "val")
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", str(bad), "--out", str(out), "--preset", "synthetic-small", "--epochs", "1",
                                  "--modalities", "rgb,depth", "--quiet", *seeds])
    assert r.exit_code == 2, r.output
    assert r.stderr.splitlines()[-1] == f"Error: video {video!r}: modality 'rgb' has a non-finite value at frame 0"
    assert "Error" not in r.stdout and r.stderr.count("Error") == 1
    assert not out.exists()


def test_cli_evaluate_and_extract_name_a_non_finite_test_video(tiny_data, tmp_path):
    run = train(tiny_config(epochs=1), tiny_data, tmp_path / "run", seed=1, progress=False)
    bad = tmp_path / "bad"
    video = _with_nan(tiny_data, bad, "test")
    want = f"Error: video {video!r}: modality 'rgb' has a non-finite value at frame 0"
    r = CliRunner().invoke(main, ["evaluate", str(run), "--data", str(bad)])
    assert r.exit_code == 2 and r.stderr.splitlines()[-1] == want, r.output
    out = tmp_path / "f.npz"
    r = CliRunner().invoke(main, ["extract", str(run), "--data", str(bad), "--out", str(out)])
    assert r.exit_code == 2 and r.stderr.splitlines()[-1] == want, r.output
    assert not out.exists() and not (run / "eval_test.csv").exists()


def test_resume_of_a_folder_without_a_checkpoint_starts_the_run(tiny_data, tmp_path):
    # documented: a script may always pass --resume; with nothing to continue it trains from scratch
    a = train(tiny_config(epochs=1), tiny_data, tmp_path / "a", seed=1, progress=False, monitor=False)
    b = train(tiny_config(epochs=1), tiny_data, tmp_path / "b", seed=1, progress=False, monitor=False, resume=True)
    wa, wb = (load_checkpoint(r / "checkpoints" / "last.pt")["model"] for r in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # the same computation on the same machine


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.mark.parametrize("serial", [True, False])
def test_a_folder_holds_one_kind_of_run(tiny_data, tmp_path, serial):
    # a single-seed run into a several-seed folder, the reverse, and --resume with other seeds used to
    # train beside the run already there (resume replaced seeds.json, leaving the old seeds' files)
    from rankfusion.batched import train_seeds

    run = train_seeds if not serial else train
    kw = dict(progress=False) if serial else dict(progress=False, serial_seeds=False)
    multi = train(tiny_config(epochs=1), tiny_data, tmp_path / "multi", seed="1,10", progress=False)
    single = train(tiny_config(epochs=1), tiny_data, tmp_path / "single", seed=1, progress=False)
    before = {f: _snapshot(f) for f in (multi, single)}
    cases = [
        (multi, "1", False, r"holds a several-seed run \(seeds \[1, 10\]\), not a single seed 1"),
        (multi, "1", True, r"holds a several-seed run"),
        (multi, "2,3", True, r"holds seeds \[1, 10\], not \[2, 3\]: --resume continues the seeds there and may "
                             r"add more, but would leave out \[1, 10\]"),
        (multi, "1,3", True, r"would leave out \[10\]"),
        (multi, "2,3", False, r"holds seeds \[1, 10\], not \[2, 3\]$"),
        (single, "1,10", False, r"holds a single-seed run \(checkpoints/last.pt\), not seeds \[1, 10\]"),
        (single, "1,10", True, r"holds a single-seed run"),
    ]
    for folder, seeds, resume, msg in cases:
        with pytest.raises(ValueError, match=msg):
            run(tiny_config(epochs=1), tiny_data, folder, seed=seeds, resume=resume, **kw)
    assert {f: _snapshot(f) for f in (multi, single)} == before  # nothing written
    # the same seeds resume as before, in any order; --resume may add seeds (it did before)
    run(tiny_config(epochs=1), tiny_data, multi, seed="10,1", resume=True, **kw)
    run(tiny_config(epochs=1), tiny_data, multi, seed="1,10,13", resume=True, **kw)
    assert json.loads((multi / "seeds.json").read_text())["seeds"] == [1, 10, 13]
    assert (multi / "seed-13" / "checkpoints" / "last.pt").exists()


def test_cli_train_into_a_folder_of_another_kind_is_one_line(tiny_data, tmp_path):
    out = tmp_path / "r"
    r = CliRunner().invoke(main, ["train", str(tiny_data), "--out", str(out), "--quiet", "--epochs", "1",
                                  "--seeds", "1,10", "--d-model", "8"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["train", str(tiny_data), "--out", str(out), "--quiet", "--epochs", "1",
                                  "--d-model", "8"])
    assert r.exit_code == 2
    # the one error line (no traceback, no modalities line: that comes once a run is accepted; nothing
    # on stdout for a failed command)
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: run folder {str(out)!r} holds a several-seed run")
    assert r.stdout == ""


@pytest.mark.parametrize("seeds", ["1", "1,2"])
def test_a_diverging_run_says_so_in_one_line(tiny_data, tmp_path, seeds):
    r = CliRunner().invoke(main, ["train", str(tiny_data), "--out", str(tmp_path / "r"), "--quiet", "--epochs", "2",
                                  "--d-model", "8", "--lr", "1e30", "--seeds", seeds])
    assert r.exit_code == 2
    # after the modalities line (the run was accepted) and the note on the warm-up (10 epochs by default)
    note, line = r.output.strip().splitlines()[1:]
    assert note.startswith("note: warmup_epochs 10 > epochs 2")
    rest = (r" \(the batched seeds stop together; --serial-seeds trains the seeds listed before it to the end\)"
            if "," in seeds else "")
    assert re.fullmatch(r"Error: training seed (1|2) diverged in epoch 1: its loss or weights are no longer finite at "
                        r"learning rate 1e\+30; lower it \(train.lr, --lr of rankfusion train\)" + rest, line), line


def test_rtf_options_with_no_rtf_are_refused(tiny_data, tmp_path):
    r = CliRunner().invoke(main, ["train", str(tiny_data), "--out", str(tmp_path / "r"), "--no-rtf", "--exchange-ratio",
                                  "0.5", "--selection", "bn_gamma"])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        "Error: --selection, --exchange-ratio configure RTF, which --no-rtf turns off: leave them out"]
    assert not (tmp_path / "r").exists()
    r = CliRunner().invoke(main, ["train", str(tiny_data), "--out", str(tmp_path / "r"), "--no-rtf", "--exchange-ratio",
                                  "0.5"])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        "Error: --exchange-ratio configures RTF, which --no-rtf turns off: leave it out"]


def test_a_later_seeds_foreign_checkpoint_is_refused_before_the_first_seed_trains(tiny_data, tmp_path):
    # seeds one after another: seed 10's folder holds a run of another configuration; resuming used
    # to train seed 1 to the end first and only then stop at seed 10
    import shutil

    from rankfusion._validation import InputError

    class Killed(Exception):
        pass

    def kill(epoch, row):
        raise Killed  # seed 1 stops after its first epoch, as a kill would leave it

    out, cfg = tmp_path / "run", tiny_config(epochs=2)
    with pytest.raises(Killed):
        train(cfg, tiny_data, out, seed=[1, 10], progress=False, monitor=False, on_epoch_end=kill)
    train(tiny_config(epochs=2, lr=1e-2), tiny_data, tmp_path / "other", seed=10, progress=False, monitor=False)
    shutil.rmtree(out / "seed-10", ignore_errors=True)
    shutil.copytree(tmp_path / "other", out / "seed-10")
    before = (out / "seed-1" / "metrics.csv").read_text()
    with pytest.raises(InputError, match=r"--resume: run folder .*seed-10.* was made with config .* seed 10, not "):
        train(cfg, tiny_data, out, seed=[1, 10], resume=True, progress=False, monitor=False)
    assert (out / "seed-1" / "metrics.csv").read_text() == before  # seed 1 trained no further epoch
    assert len(before.strip().splitlines()) == 2  # its header and epoch 1: it had an epoch left


def test_resume_on_a_dataset_with_other_class_names_is_refused(tiny_data, tmp_path):
    import shutil

    from rankfusion.data import open_dataset

    run = train(tiny_config(epochs=2), tiny_data, tmp_path / "r", seed=1, progress=False)
    copy = tmp_path / "renamed"
    shutil.copytree(tiny_data, copy)
    first = open_dataset(tiny_data).classes[0]
    mapping = copy / "mapping.txt"
    mapping.write_text(mapping.read_text().replace(f" {first}\n", " renamed\n", 1))
    for gt in (copy / "groundTruth").glob("*.txt"):
        gt.write_text("".join("renamed\n" if line == first else line + "\n" for line in gt.read_text().splitlines()))
    recorded = (run / "config.json").read_text()
    with pytest.raises(ValueError, match=r"--resume: run folder '.*r' was trained on classes \[.*\], not the dataset's"):
        train(tiny_config(epochs=2), copy, run, seed=1, progress=False, resume=True)
    assert (run / "config.json").read_text() == recorded  # nothing rewritten


def _rank_rows(run):
    with open(run / "ranks.csv") as fh:
        return [(r["epoch"], r["name"], r["n_rows"], float(r["effective_rank"])) for r in csv.DictReader(fh)]


def test_a_kill_after_the_checkpoint_before_the_ranks_rows_is_made_up_on_resume(tiny_data, tmp_path, monkeypatch):
    # last.pt of epoch 2 was committed, then the run died before ranks.csv got epoch 2's rows: the
    # resumed run started at epoch 3 and ranks.csv lacked epoch 2 for good
    from rankfusion.monitor import EpochRanks

    ref = train(tiny_config(), tiny_data, tmp_path / "ref", seed=1, progress=False)

    class Killed(Exception):
        pass

    record = EpochRanks.record

    def die_at_2(self, model, epoch):
        if epoch == 2:
            raise Killed
        return record(self, model, epoch)

    monkeypatch.setattr(EpochRanks, "record", die_at_2)
    with pytest.raises(Killed):
        train(tiny_config(), tiny_data, tmp_path / "cut", seed=1, progress=False)
    monkeypatch.setattr(EpochRanks, "record", record)
    cut = tmp_path / "cut"
    assert load_checkpoint(cut / "checkpoints" / "last.pt")["epoch"] == 2
    assert {e for e, *_ in _rank_rows(cut)} == {"0", "1"}
    train(tiny_config(), tiny_data, cut, seed=1, progress=False, resume=True)
    a, b = _rank_rows(ref), _rank_rows(cut)
    assert [r[:3] for r in a] == [r[:3] for r in b] and {e for e, *_ in b} == {"0", "1", "2", "3"}
    # epoch 2 measured on the weights read back from last.pt: the same weights, the same measurement
    assert [r[3] for r in a] == pytest.approx([r[3] for r in b], rel=1e-12)


def test_a_kill_after_the_last_checkpoint_before_its_metrics_row_is_made_up_on_resume(tiny_data, tmp_path,
                                                                                      monkeypatch):
    # last.pt of the final epoch was committed, then the run died before metrics.csv got its row:
    # the resumed run had no epoch left to train, and metrics.csv lacked the last epoch for good
    import rankfusion.train as train_mod

    ref = train(tiny_config(), tiny_data, tmp_path / "ref", seed=1, progress=False, monitor=False)

    class Killed(Exception):
        pass

    write = train_mod._write_metrics

    def die_at_3(path, history):
        if len(history) == 3:
            raise Killed
        write(path, history)

    monkeypatch.setattr(train_mod, "_write_metrics", die_at_3)
    cut = tmp_path / "cut"
    with pytest.raises(Killed):
        train(tiny_config(), tiny_data, cut, seed=1, progress=False, monitor=False)
    monkeypatch.setattr(train_mod, "_write_metrics", write)
    assert load_checkpoint(cut / "checkpoints" / "last.pt")["epoch"] == 3
    assert len(_rows(cut / "metrics.csv")) == 2
    train(tiny_config(), tiny_data, cut, seed=1, progress=False, monitor=False, resume=True)
    # the same computation on the same machine (resume is exact): the same rows
    assert _rows(cut / "metrics.csv") == _rows(ref / "metrics.csv")
    assert len(_rows(cut / "metrics.csv")) == 3


def _diverging_config(**kw):
    # one step per epoch and no warm-up: the blow-up comes in an epoch's last step
    return tiny_config(epochs=2, warmup_epochs=0, batch_size=64, lr=1e30, **kw)


@pytest.mark.parametrize("metric", ["val_loss", "val_moc"])
def test_a_blow_up_in_an_epochs_last_step_stops_the_run_in_that_epoch(tiny_data, tmp_path, metric):
    # the per-step check sees the loss computed before the step's update: a blow-up in the last step
    # went on to a NaN validation loss, which became the best epoch (one epoch: exit 0)
    with pytest.raises(ValueError, match=r"^training seed 1 diverged in epoch 1: .* learning rate 1e\+30"):
        train(_diverging_config(select_metric=metric), tiny_data, tmp_path / "r", seed=1, progress=False,
              monitor=False)
    assert not (tmp_path / "r" / "checkpoints" / "best.pt").exists()


def test_resume_refuses_other_data(tiny_data, tmp_path):
    from rankfusion.data import synthesize

    other = synthesize(tmp_path / "other", seed=99, split_fractions=(0.7, 0.15, 0.15), n_videos=9, min_frames=60,
                       max_frames=110, channels={"rgb": 8, "depth": 6, "imu": 4})
    _train_stopped_after(1, tiny_data, tmp_path / "cut")
    before = _snapshot(tmp_path / "cut")
    with pytest.raises(ValueError, match=r"^--resume: run folder .* was trained on dataset .*syn'.*fingerprint "
                                         r"[0-9a-f]{12}\), not on .*other'.*: resume on the data the run started on$"):
        train(tiny_config(), other, tmp_path / "cut", seed=1, progress=False, resume=True)
    assert _snapshot(tmp_path / "cut") == before
    # the same data under another path resumes
    import shutil

    moved = shutil.copytree(tiny_data, tmp_path / "moved")
    train(tiny_config(), moved, tmp_path / "cut", seed=1, progress=False, resume=True)


def test_resume_into_a_folder_of_other_files_is_refused(tiny_data, tmp_path):
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "config.json").write_text('{"my": "precious"}')
    (folder / "metrics.csv").write_text("my,data\n")
    res = CliRunner().invoke(main, ["train", str(tiny_data), "--out", str(folder), "--resume", "--epochs", "1",
                                    "--d-model", "8", "--layers", "1", "--modalities", "rgb,depth", "--quiet",
                                    "--no-monitor"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1] == (
        f"Error: run folder {str(folder)!r} holds 'config.json', 'metrics.csv' but no run to resume (no "
        "checkpoints/last.pt, no run's config.json): choose a new or empty folder")
    assert (folder / "config.json").read_text() == '{"my": "precious"}'
    # hidden files only (.DS_Store): nothing a run would overwrite, so --resume starts the run
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / ".DS_Store").write_text("x")
    train(tiny_config(epochs=1), tiny_data, tmp_path / "hidden", seed=1, progress=False, monitor=False, resume=True)
    # a run that stopped before its first checkpoint (its config.json written) is started again
    started = tmp_path / "started"
    _train_stopped_after(1, tiny_data, started)
    (started / "checkpoints" / "last.pt").unlink()
    (started / "checkpoints" / "best.pt").unlink()
    train(tiny_config(), tiny_data, started, seed=1, progress=False, resume=True)
    assert load_checkpoint(started / "checkpoints" / "last.pt")["epoch"] == 3


def test_cli_train_notes_a_warm_up_longer_than_the_run_and_names_each_seed(tiny_data, tmp_path):
    res = CliRunner().invoke(main, ["train", str(tiny_data), "--out", str(tmp_path / "r"), "--epochs", "2",
                                    "--seeds", "1,2", "--serial-seeds", "--d-model", "8", "--layers", "1",
                                    "--modalities", "rgb,depth", "--no-monitor"])
    assert res.exit_code == 0, res.output
    assert ("note: warmup_epochs 10 > epochs 2: the learning rate rises through the whole run to 0.0002 at most, "
            "never to lr 0.001, and the cosine decay never starts") in res.output
    lines = [ln.split("  ")[0] for ln in res.output.splitlines() if " epoch " in ln and "loss" in ln]
    assert lines == ["seed 1 epoch 1/2", "seed 1 epoch 2/2", "seed 2 epoch 1/2", "seed 2 epoch 2/2"]


def test_an_lr_beyond_float32_is_refused():
    with pytest.raises(ValueError, match=r"^lr must be <= 3\.4028234663852886e\+38, got 1e\+39$"):
        tiny_config(lr=1e39)


def test_cli_train_threads_sets_torchs_threads(tiny_data, tmp_path):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        res = CliRunner().invoke(main, ["train", str(tiny_data), "--out", str(tmp_path / "r"), "--epochs", "1",
                                        "--d-model", "8", "--layers", "1", "--modalities", "rgb,depth", "--quiet",
                                        "--no-monitor", "--threads", "1"])
        assert res.exit_code == 0, res.output
        assert torch.get_num_threads() == 1
        bad = CliRunner().invoke(main, ["train", str(tiny_data), "--out", str(tmp_path / "s"), "--threads", "0"])
        assert bad.exit_code == 2 and "'--threads'" in bad.output and not (tmp_path / "s").exists()
    finally:
        torch.set_num_threads(before)


def test_a_run_folder_below_a_file_is_refused_before_the_run_starts(tiny_data, tmp_path):
    # the modalities line came first ("the run is accepted"), then "Error: cannot write ..."
    (tmp_path / "file").write_text("x")
    res = CliRunner().invoke(main, ["train", str(tiny_data), "--out", str(tmp_path / "file" / "run"), "--epochs", "1",
                                    "--modalities", "rgb,depth", "--quiet"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"Error: run folder {str(tmp_path / 'file' / 'run')!r} cannot be made: {str(tmp_path / 'file')!r} is a file, "
        "not a folder"]


@pytest.mark.parametrize("seeds", ["1", "1,2"])
def test_resume_of_a_finished_run_says_it_trained_nothing(tiny_data, tmp_path, seeds):
    args = ["train", str(tiny_data), "--out", str(tmp_path / "r"), "--epochs", "1", "--d-model", "8", "--layers", "1",
            "--modalities", "rgb,depth", "--quiet", "--no-monitor", "--seeds", seeds]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0 and first.stdout.startswith("trained "), first.output
    again = CliRunner().invoke(main, [*args, "--resume"])
    assert again.exit_code == 0 and again.stdout.startswith(f"already trained: {tmp_path / 'r'} "), again.output


def test_resume_accepts_a_split_set_or_hidden_files_added_to_the_same_data(tiny_data, tmp_path):
    # the fingerprint covered every file: a split set added later (docs: it does not change what a
    # run uses) or a file in a hidden folder refused the resume on the same data
    import shutil

    data = shutil.copytree(tiny_data, tmp_path / "data")
    _train_stopped_after(1, data, tmp_path / "cut")
    for bundle in (data / "splits").glob("*.split1.bundle"):
        shutil.copy(bundle, bundle.with_name(bundle.name.replace("split1", "split2")))
    (data / ".git").mkdir()
    (data / ".git" / "index").write_text("x")
    train(tiny_config(), data, tmp_path / "cut", seed=1, progress=False, resume=True)
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["epoch"] == 3


@pytest.mark.parametrize("seeds", ["1", "1,2"])
def test_cli_resume_with_another_config_prints_the_error_alone(tiny_data, tmp_path, seeds):
    # the modalities line is said once the run is accepted: a --resume refused for its config is not
    out = tmp_path / "r"
    small = ["--modalities", "rgb,depth", "--d-model", "8", "--layers", "1", "--batch-size", "4",
             "--sample-rate", "2", "--no-monitor", "--quiet", "--seeds", seeds]
    r = CliRunner().invoke(main, ["train", str(tiny_data), "--out", str(out), "--epochs", "1", *small])
    assert r.exit_code == 0, r.output
    before = sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*"))
    r = CliRunner().invoke(main, ["train", str(tiny_data), "--out", str(out), "--epochs", "2", "--resume", *small])
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --resume: run folder") and "train.epochs 1 -> 2" in lines[0]
    assert sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*")) == before
