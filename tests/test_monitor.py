"""RankMonitor: exact ranks of watched outputs, masking, hooks, gradients, results, train --monitor."""

from __future__ import annotations

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from rankfusion import spectral as S  # noqa: E402
from rankfusion._validation import InputError  # noqa: E402
from rankfusion.cli import main  # noqa: E402
from rankfusion.config import R3DConfig, RunConfig, TrainConfig  # noqa: E402
from rankfusion.model import R3D  # noqa: E402
from rankfusion.monitor import RankMonitor, r3d_modules  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_blas_thread")


class TwoTower(torch.nn.Module):
    """Two feature matrices, one MLP tower each, concatenated (the docs' example model)."""

    def __init__(self, da=12, db=7, width=16):
        super().__init__()
        self.a = torch.nn.Sequential(torch.nn.Linear(da, width), torch.nn.ReLU())
        self.b = torch.nn.Sequential(torch.nn.Linear(db, width), torch.nn.ReLU())
        self.head = torch.nn.Linear(2 * width, 3)

    def forward(self, xa, xb, mask=None):
        z = torch.cat([self.a(xa), self.b(xb)], dim=-1)
        return self.head(torch.nn.functional.dropout(z, 0.2, self.training))


def _device(backend):
    if backend.name == "numpy":
        pytest.skip("the monitor watches torch models")
    return backend.device


def _inputs(n, device, seed, shape=()):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, n, 12, generator=g).to(device), torch.randn(*shape, n, 7, generator=g).to(device))


def _all_hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("center", [False, True])
def test_effective_rank_equals_spectral_on_concatenated_outputs(backend, center):
    dev = _device(backend)
    torch.manual_seed(0)
    net = TwoTower().to(dev).eval()
    batches = [_inputs(n, dev, i) for i, n in enumerate((40, 17, 63))]  # uneven: the stream must not care
    mon = RankMonitor(net, {"tower_a": net.a, "logits": lambda out: out}, every=None, max_rows=None,
                      center=center)
    with torch.no_grad():
        for xa, xb in batches:
            net(xa, xb)
    mon.record(step=1)
    mon.close()
    with torch.no_grad():  # the same outputs again, without hooks
        seen = {"tower_a": [net.a(xa) for xa, _ in batches], "logits": [net(xa, xb) for xa, xb in batches]}
    df = mon.to_frame().set_index("name")
    for name, parts in seen.items():
        X = torch.cat(parts)
        assert df.loc[name, "n_rows"] == X.shape[0] == 120
        ref = float(S.effective_rank(X, center=center))
        assert df.loc[name, "effective_rank"] == pytest.approx(ref, rel=1e-9)
        assert df.loc[name, "numerical_rank"] == int(S.numerical_rank(X, center=center))
        sigma = backend.to_numpy(S.singular_values(X, center=center))
        np.testing.assert_allclose(df.loc[name, ["sigma_1", "sigma_2", "sigma_3"]].to_numpy(float), sigma[:3],
                                   rtol=1e-9)
    assert set(df["step"]) == {1}


def test_float64_output_of_deficient_rank_reads_its_rank_not_rounding():
    # A linear layer on 4 inputs: rank <= 5 (4 inputs + bias). In float64 the Gram matrix resolves
    # singular values only down to sqrt(delta) ~1e-7 sigma_max; the rounding eigenvalues below it
    # once counted as rank (19 of 32 here).
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 32).double()
    outs = []
    with RankMonitor(net, {"lin": net}, every=None) as mon, torch.no_grad():
        for _ in range(4):
            outs.append(net(torch.randn(256, 4, dtype=torch.float64)))
    row, X = mon.rows[0], torch.cat(outs)
    assert row["numerical_rank"] == int(S.numerical_rank(X)) == 5
    # Eq. 1 on 5 Gram-resolved values: each sigma_j moves by <= delta / (2 lambda_j) relative, so
    # ERank by <= log(5) * delta / lambda_5 relative (tests/test_spectral_stream.py)
    acc = S.GramAccumulator().update(X)
    rel = np.log(5) * acc.error_radius() / row["sigma_5"] ** 2
    assert row["effective_rank"] == pytest.approx(float(S.effective_rank(X)), rel=rel)
    assert np.isnan(row["sigma_6"])


def test_intervals_and_max_rows():
    torch.manual_seed(1)
    net = TwoTower().eval()
    batches = [_inputs(30, "cpu", i) for i in range(5)]
    with torch.no_grad(), RankMonitor(net, {"z": net.b}, every=2, max_rows=50) as mon:
        for xa, xb in batches:
            net(xa, xb)
    with torch.no_grad():
        outs = [net.b(xb) for _, xb in batches]
    df = mon.to_frame()
    # intervals of 2 calls (the close() flushes the fifth call); 50 rows = call 1 + 20 rows of call 2
    assert df["step"].tolist() == [2, 4, 5] and df["calls"].tolist() == [2, 2, 1]
    assert df["n_rows"].tolist() == [50, 50, 30]
    for k, (first, second) in enumerate(((0, 1), (2, 3))):
        X = torch.cat([outs[first], outs[second]])[:50]
        assert df["effective_rank"][k] == pytest.approx(float(S.effective_rank(X)), rel=1e-9)
    assert df["effective_rank"][2] == pytest.approx(float(S.effective_rank(outs[4])), rel=1e-9)


def test_hooks_removed_on_close_and_context_exit():
    net = TwoTower()
    before = _all_hooks(net)
    mon = RankMonitor(net, {"a": net.a, "pair": (net.b, lambda o: o * 1.0), "out": lambda o: o})
    assert _all_hooks(net) > before
    mon.close()
    assert _all_hooks(net) == before
    with RankMonitor(net, {"a": net.a}, every=1) as mon2:
        net(*_inputs(5, "cpu", 0))
    assert _all_hooks(net) == before
    n = len(mon2.rows)
    net(*_inputs(5, "cpu", 1))  # a forward after close records nothing
    assert len(mon2.rows) == n == 1
    with pytest.raises(RuntimeError, match="boom"), RankMonitor(net, {"a": net.a}):
        raise RuntimeError("boom")
    assert _all_hooks(net) == before


@pytest.mark.parametrize("mask_spec", [2, "mask", lambda args, kwargs: kwargs.get("mask", args[2] if len(args) > 2 else None)])
def test_masked_padding_is_excluded(backend, mask_spec):
    dev = _device(backend)
    torch.manual_seed(2)
    net = TwoTower().to(dev).eval()
    xa, xb = _inputs(9, dev, 0, shape=(4,))  # (B=4, T=9, C)
    mask = torch.arange(9, device=dev)[None, :] < torch.tensor([9, 5, 2, 7], device=dev)[:, None]
    # padded steps carry garbage that would dominate the spectrum if it were read
    xa = torch.where(mask[..., None], xa, torch.full_like(xa, 1e3))
    with torch.no_grad(), RankMonitor(net, {"a": net.a, "flat": (net.a, lambda o: o[0])}, every=None,
                                      mask=mask_spec) as mon:
        if mask_spec == "mask":
            net(xa, xb, mask=mask)
        else:
            net(xa, xb, mask)
    df = mon.to_frame().set_index("name")
    with torch.no_grad():
        valid = net.a(xa)[mask]
    assert df.loc["a", "n_rows"] == int(mask.sum()) == 23 and bool(df.loc["a", "masked"])
    assert df.loc["a", "effective_rank"] == pytest.approx(float(S.effective_rank(valid)), rel=1e-9)
    # a tensor whose leading dimensions do not match the mask is read whole, and says so
    assert df.loc["flat", "n_rows"] == 9 and not bool(df.loc["flat", "masked"])


def _r3d(dropout=0.3):
    cfg = R3DConfig(modalities=("rgb", "depth"), d_model=16, n_heads=2, n_layers=1, input_dims={"rgb": 10, "depth": 6},
                    n_classes=5, dropout=dropout, exchange_ratio=0.25)
    torch.manual_seed(3)
    return R3D(cfg)


def _r3d_batch():
    g = torch.Generator().manual_seed(4)
    feats = {"rgb": torch.randn(3, 20, 10, generator=g), "depth": torch.randn(3, 20, 6, generator=g)}
    mask = torch.arange(20)[None] < torch.tensor([20, 14, 9])[:, None]
    return feats, mask


def _grads(model, monitor):
    feats, mask = _r3d_batch()
    model.train()
    torch.manual_seed(5)  # dropout draws: any extra draw by the monitor would change the result
    specs = {"rgb/before": (model.rtf, lambda o: o.before[0]), "rgb/after": (model.rtf, lambda o: o.after[0]),
             "final": model.final_ln, "cls": lambda out: out.class_logits}
    mon = RankMonitor(model, specs, every=1, mask=1) if monitor else None
    out = model(feats, mask)
    loss = out.seg_logits.square().mean() + out.class_logits.square().mean() + out.durations.square().mean()
    model.zero_grad(set_to_none=True)
    loss.backward()
    rng_after = torch.get_rng_state()
    if mon is not None:
        mon.close()
        assert len(mon.rows) == 4
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}, out, rng_after


def test_gradients_and_outputs_unchanged_bitwise():
    # Same computation on the same machine, with and without the hooks: exact equality is the claim.
    model = _r3d()
    g0, out0, rng0 = _grads(model, monitor=False)
    g1, out1, rng1 = _grads(model, monitor=True)
    assert g0.keys() == g1.keys() and len(g0) > 10
    for k in g0:
        assert torch.equal(g0[k], g1[k]), k
    for a, b in zip(out0[:3], out1[:3]):
        assert torch.equal(a, b)
    assert torch.equal(rng0, rng1)


def test_r3d_features_under_no_grad_in_eval_mode():
    model = _r3d().eval()
    feats, mask = _r3d_batch()
    with torch.no_grad(), RankMonitor(model, r3d_modules(["rgb", "depth"]), every=None, mask=1) as mon:
        out = model(feats, mask, return_features=True)
    df = mon.to_frame().set_index("name")
    assert list(df.index) == ["rgb/before", "rgb/after", "depth/before", "depth/after", "fused"]
    fused = torch.cat([out.features[m]["after"] for m in ("rgb", "depth")], -1)[mask]
    assert df.loc["fused", "n_channels"] == 32 and df.loc["fused", "n_rows"] == int(mask.sum())
    assert df.loc["fused", "effective_rank"] == pytest.approx(float(S.effective_rank(fused)), rel=1e-9)


def test_nonfinite_output_is_recorded_not_raised():
    net = torch.nn.Linear(4, 3)
    with RankMonitor(net, {"y": net}, every=None) as mon:
        net(torch.tensor([[float("nan"), 0.0, 0.0, 0.0]]))
        net(torch.ones(5, 4))
    row = mon.rows[0]
    assert np.isnan(row["effective_rank"]) and np.isnan(row["numerical_rank"])


def test_results_frame_csv_and_tensorboard_writer(tmp_path):
    class Writer:
        def __init__(self):
            self.calls = []

        def add_scalar(self, tag, value, step):
            self.calls.append((tag, value, step))

    w = Writer()
    net = TwoTower()
    with RankMonitor(net, {"a": net.a}, every=1, tensorboard=w, top=2) as mon:
        for i in range(2):
            net(*_inputs(20, "cpu", i))
    df = mon.to_frame()
    assert list(df.columns[-2:]) == ["sigma_1", "sigma_2"] and len(df) == 2
    path = mon.to_csv(tmp_path / "ranks.csv")
    import pandas as pd

    back = pd.read_csv(path)
    np.testing.assert_allclose(back["effective_rank"], df["effective_rank"], rtol=1e-9)
    assert [c[0] for c in w.calls] == ["effective_rank/a", "numerical_rank/a"] * 2
    assert [c[2] for c in w.calls] == [1, 1, 2, 2]
    assert w.calls[0][1] == df["effective_rank"][0]


def test_tensorboard_event_files_hold_the_recorded_ranks(tmp_path):
    pytest.importorskip("tensorboard")  # the [monitor] extra; CI installs it
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    net = TwoTower()
    with RankMonitor(net, {"a": net.a}, every=1, tensorboard=tmp_path / "tb") as mon:
        for i in range(2):
            net(*_inputs(20, "cpu", i))
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    events = acc.Scalars("effective_rank/a")
    assert [e.step for e in events] == [1, 2]
    # TensorBoard stores scalars as float32
    np.testing.assert_allclose([e.value for e in events], mon.to_frame()["effective_rank"], rtol=1e-6)


def test_tensorboard_writer_made_by_the_monitor_is_closed_one_given_is_not(tmp_path):
    pytest.importorskip("tensorboard")
    import threading

    from torch.utils.tensorboard import SummaryWriter

    net = TwoTower()
    before = threading.active_count()
    for i in range(3):  # each once left a writer thread running
        with RankMonitor(net, {"a": net.a}, every=1, tensorboard=tmp_path / f"tb{i}") as mon:
            writer = mon._writer
            net(*_inputs(20, "cpu", i))
        assert writer.all_writers is None  # SummaryWriter.close() drops its file writers
    assert threading.active_count() <= before
    mine = SummaryWriter(log_dir=str(tmp_path / "mine"))
    with RankMonitor(net, {"a": net.a}, every=1, tensorboard=mine):
        net(*_inputs(20, "cpu", 0))
    assert mine.all_writers is not None  # the caller's writer stays open
    mine.add_scalar("after", 1.0, 0)
    mine.close()


def test_record_after_close_does_not_reopen_the_event_folder(tmp_path):
    pytest.importorskip("tensorboard")
    net = TwoTower()
    mon = RankMonitor(net, {"a": net.a}, every=None, tensorboard=tmp_path / "tb")
    net(*_inputs(20, "cpu", 0))
    mon.close(flush=False)  # rows pending, as when the with-block raised
    files = sorted(p.name for p in (tmp_path / "tb").iterdir())
    rows = mon.record()  # the pending interval is still readable ...
    assert [r["name"] for r in rows] == ["a"] and rows[0]["n_rows"] == 20
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == files  # ... but no new event file
    mon.close()  # twice is fine


def test_refused_arguments_leave_no_tensorboard_writer(tmp_path):
    pytest.importorskip("tensorboard")
    import threading

    net = TwoTower()
    before = threading.active_count()
    for bad in ({"a": 5}, {"": net.a}, {"a": (torch.nn.Linear(2, 2), None)}):
        with pytest.raises((TypeError, ValueError)):
            RankMonitor(net, bad, tensorboard=tmp_path / "tb")
    assert not (tmp_path / "tb").exists()  # no event file
    assert threading.active_count() <= before  # no writer thread left running
    assert _all_hooks(net) == 0


def test_tensorboard_missing_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if absent
    net = TwoTower()
    with pytest.raises(ImportError, match=r"'monitor' extra.*rankfusion\[monitor\]"):
        RankMonitor(net, {"a": net.a}, tensorboard=tmp_path / "tb")
    assert _all_hooks(net) == 0


def test_bad_arguments():
    net = TwoTower()
    with pytest.raises(TypeError, match="model"):
        RankMonitor(object(), {"a": net.a})
    with pytest.raises(ValueError, match="modules"):
        RankMonitor(net, {})
    with pytest.raises(ValueError, match="not a submodule"):
        RankMonitor(net, {"x": torch.nn.Linear(2, 2)})
    with pytest.raises(TypeError, match=r"modules\['x'\]"):
        RankMonitor(net, {"x": 3})
    with pytest.raises(ValueError, match="every"):
        RankMonitor(net, {"a": net.a}, every=0)
    with pytest.raises(ValueError, match="max_rows"):
        RankMonitor(net, {"a": net.a}, max_rows=0)
    with pytest.raises(ValueError, match="tol"):
        RankMonitor(net, {"a": net.a}, tol=-1.0)
    with pytest.raises(TypeError, match="watched output 'o' must be a torch tensor, got str 'a'"):
        with RankMonitor(net, {"o": lambda out: "a"}):
            net(*_inputs(3, "cpu", 0))
    # several values: one line naming the form that picks one (it printed the tensors, cut off)
    for pick in (lambda out: (out, 2 * out), lambda out: [out], lambda out: {"a": out}):
        with pytest.raises(TypeError) as info:
            with RankMonitor(net, {"o": pick}):
                net(*_inputs(3, "cpu", 0))
        msg = str(info.value)
        assert "\n" not in msg and "tensor(" not in msg, msg
        assert msg.startswith("watched output 'o' is a ") and msg.endswith(
            "not a tensor: make its callable return one tensor, e.g. lambda out: out[0]"), msg
    # a submodule returning a tuple: the (submodule, callable) form
    pair = torch.nn.Module()
    pair.forward = lambda x: (x, x)
    net.pair = pair
    with pytest.raises(TypeError, match=r"^watched output 'p' is a tuple of 2 items, not a tensor: watch the submodule "
                                        r"as \(submodule, callable\) with a callable that picks the tensor, "
                                        r"e.g. lambda out: out\[0\]$"):
        with RankMonitor(net, {"p": pair}):
            pair(torch.ones(3, 2))
    assert _all_hooks(net) == 0


# ----------------------------------------------------------------------------- train --monitor
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from rankfusion.data import synthesize

    root = tmp_path_factory.mktemp("data") / "syn"
    return synthesize(root, seed=3, split_fractions=(0.7, 0.15, 0.15),
                      n_videos=12, min_frames=60, max_frames=110, channels={"rgb": 8, "depth": 6})


def _tiny_config(epochs=2):
    return RunConfig(model=R3DConfig(modalities=("rgb", "depth"), d_model=8, n_heads=2, n_layers=1,
                                     exchange_ratio=0.25),
                     train=TrainConfig(epochs=epochs, warmup_epochs=1, batch_size=4, sample_rate=2,
                                       select_metric="val_loss"))


def test_cli_train_monitor_writes_ranks_csv(tiny_data, tmp_path):
    import pandas as pd

    args = ["train", str(tiny_data), "--epochs", "2", "--d-model", "8", "--layers", "1", "--batch-size", "4",
            "--sample-rate", "2", "--modalities", "rgb,depth", "--quiet"]
    res = CliRunner().invoke(main, args + ["--out", str(tmp_path / "on"), "--monitor"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(tmp_path / "on" / "ranks.csv")
    assert sorted(set(df["epoch"])) == [0, 1, 2]
    assert set(df["name"]) == {"rgb/before", "rgb/after", "depth/before", "depth/after", "fused"}
    assert (df["effective_rank"] >= 1).all() and (df["effective_rank"] <= df["numerical_rank"] + 1e-9).all()
    fused = df[df["name"] == "fused"]
    assert (fused["n_channels"] == 16).all() and (df["split"] == "val").all()
    res = CliRunner().invoke(main, args + ["--out", str(tmp_path / "off"), "--no-monitor"])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "off" / "ranks.csv").exists()


def test_monitor_leaves_training_unchanged_and_resumes(tiny_data, tmp_path):
    import pandas as pd

    from rankfusion.train import load_checkpoint, train

    train(_tiny_config(), tiny_data, tmp_path / "off", monitor=False, progress=False)
    train(_tiny_config(), tiny_data, tmp_path / "on", monitor=True, progress=False)
    a = load_checkpoint(tmp_path / "off" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "on" / "checkpoints" / "last.pt")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the epoch-2 model measured by the monitor equals the monitor run on the final checkpoint
    ranks = pd.read_csv(tmp_path / "on" / "ranks.csv")

    class Interrupt(Exception):
        pass

    def stop(epoch, row):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(_tiny_config(), tiny_data, tmp_path / "cut", progress=False, on_epoch_end=stop)
    train(_tiny_config(), tiny_data, tmp_path / "cut", progress=False, resume=True)
    again = pd.read_csv(tmp_path / "cut" / "ranks.csv")
    assert again["epoch"].tolist() == ranks["epoch"].tolist()
    cols = ["n_rows", "numerical_rank", "effective_rank", "sigma_1"]
    pd.testing.assert_frame_equal(again[cols], ranks[cols])


def test_docs_example_runs(tmp_path, monkeypatch):
    # docs/monitor.md's two-tower example, executed as written
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "monitor.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    ns = {}
    exec(compile(code, "docs/monitor.md", "exec"), ns)
    df = ns["df"]
    assert sorted(set(df["step"])) == [50, 100, 150, 200]
    assert set(df["name"]) == {"tower_a", "tower_b", "fused", "logits", "tower_a relu"}
    assert (df["n_rows"] == 50 * 128).all() and (tmp_path / "ranks.csv").exists()
    assert _all_hooks(ns["model"]) == 0


def test_mask_layout_is_stated_never_guessed(backend):
    dev = _device(backend)
    torch.manual_seed(4)
    net = TwoTower().to(dev).eval()
    # T = B = 4: a square mask, so only the stated layout can tell which entries are padding
    xa, xb = _inputs(4, dev, 1, shape=(4,))  # (B=4, T=4, C)
    mask = torch.arange(4, device=dev)[None, :] < torch.tensor([4, 1, 3, 2], device=dev)[:, None]
    xa = torch.where(mask[..., None], xa, torch.full_like(xa, 1e3))
    xa_t, xb_t = xa.transpose(0, 1).contiguous(), xb.transpose(0, 1).contiguous()  # (T, B, C)
    with torch.no_grad(), RankMonitor(net, {"a": net.a}, every=None, mask=2, mask_layout="time-major") as mon:
        net(xa_t, xb_t, mask)
    with torch.no_grad():
        valid = net.a(xa)[mask]
    row = mon.to_frame().set_index("name").loc["a"]
    assert row["n_rows"] == int(mask.sum()) == 10 and bool(row["masked"])
    assert row["effective_rank"] == pytest.approx(float(S.effective_rank(valid)), rel=1e-9)
    # (T, B, D) with T != B under the default batch-major layout: refused in one line, not skipped
    xa9, xb9 = _inputs(9, dev, 0, shape=(4,))
    mask9 = torch.ones(4, 9, dtype=torch.bool, device=dev)
    with pytest.raises(ValueError, match="watched output 'a' has shape \\(9, 4, 16\\).*mask_layout='time-major'"):
        with torch.no_grad(), RankMonitor(net, {"a": net.a}, every=None, mask=2):
            net(xa9.transpose(0, 1), xb9.transpose(0, 1), mask9)
    with pytest.raises(ValueError, match="mask_layout must be one of"):
        RankMonitor(net, {"a": net.a}, mask_layout="columns")


@pytest.mark.parametrize("layout", ["batch-major", "time-major"])
def test_mask_drops_the_padded_steps_of_an_output_with_more_dimensions(layout):
    # (B, T, H, D), e.g. per-head features: its padded steps were streamed unmasked
    torch.manual_seed(5)
    net = TwoTower().eval()
    xa, xb = _inputs(6, "cpu", 3, shape=(4, 3))  # (B=4, T=3, H=6, C)
    mask = torch.arange(3)[None, :] < torch.tensor([3, 1, 2, 3])[:, None]
    xa = torch.where(mask[..., None, None], xa, torch.full_like(xa, 1e3))
    if layout == "time-major":
        xa, xb = xa.transpose(0, 1), xb.transpose(0, 1)
    with torch.no_grad(), RankMonitor(net, {"a": net.a}, every=None, max_rows=None, mask=2,
                                      mask_layout=layout) as mon:
        net(xa, xb, mask)
    with torch.no_grad():
        out = net.a(xa)
        valid = (out[mask] if layout == "batch-major" else out[mask.t()]).reshape(-1, 16)
    row = mon.to_frame().set_index("name").loc["a"]
    assert row["n_rows"] == int(mask.sum()) * 6 == 54 and bool(row["masked"])
    assert row["effective_rank"] == pytest.approx(float(S.effective_rank(valid)), rel=1e-9)
    assert row["numerical_rank"] == int(S.numerical_rank(valid))


@pytest.mark.parametrize("mask_spec, by_keyword", [(2, True), ("mask", False)])
def test_mask_is_found_however_the_call_passes_it(mask_spec, by_keyword):
    # an index finds the parameter given by name, a name finds it given positionally
    torch.manual_seed(2)
    net = TwoTower().eval()
    xa, xb = _inputs(9, "cpu", 0, shape=(4,))
    mask = torch.arange(9)[None, :] < torch.tensor([9, 5, 2, 7])[:, None]
    xa = torch.where(mask[..., None], xa, torch.full_like(xa, 1e3))
    with torch.no_grad(), RankMonitor(net, {"a": net.a}, every=None, mask=mask_spec) as mon:
        net(xa, xb, mask=mask) if by_keyword else net(xa, xb, mask)
    row = mon.to_frame().set_index("name").loc["a"]
    assert row["n_rows"] == int(mask.sum()) == 23 and bool(row["masked"])
    # an unpadded call without the mask streams every row
    with torch.no_grad(), RankMonitor(net, {"a": net.a}, every=None, mask=mask_spec) as mon:
        net(xa, xb)
    row = mon.to_frame().set_index("name").loc["a"]
    assert row["n_rows"] == 36 and not bool(row["masked"])


def test_mask_that_names_no_parameter_or_holds_no_mask_is_refused():
    net = TwoTower().eval()
    before = _all_hooks(net)
    with pytest.raises(InputError, match=r"mask=3 is past the 3 positional parameter\(s\) of TwoTower.forward\(xa, xb, mask=None\)"):
        RankMonitor(net, {"a": net.a}, mask=3)
    with pytest.raises(InputError, match=r"mask='maks' is not a keyword parameter of TwoTower.forward\(xa, xb, mask=None\)"):
        RankMonitor(net, {"a": net.a}, mask="maks")
    assert _all_hooks(net) == before
    xa, xb = _inputs(9, "cpu", 0, shape=(4,))
    # index 0 holds the (B, T, 12) features, not a (B, T) mask; a float "mask" is no mask either
    for spec, args in ((0, (xa, xb)), (2, (xa, xb, torch.ones(4, 9)))):
        with pytest.raises(InputError, match=rf"mask={spec} found array of shape \({', '.join(map(str, args[spec].shape))}\) "
                                             r"and dtype torch.float32 in the forward call of TwoTower"):
            with torch.no_grad(), RankMonitor(net, {"a": net.a}, every=None, mask=spec):
                net(*args)
    # a 0/1 integer mask is a mask
    mask = (torch.arange(9)[None, :] < torch.tensor([9, 5, 2, 7])[:, None]).long()
    with torch.no_grad(), RankMonitor(net, {"a": net.a}, every=None, mask=2) as mon:
        net(xa, xb, mask)
    assert mon.rows[0]["n_rows"] == 23 and mon.rows[0]["masked"]


def test_integer_mask_with_values_other_than_0_and_1_is_refused():
    # (B, T) labels with -100 at the padded steps, named as the mask by mistake: every non-zero
    # value once read as valid (30 rows kept of 24 valid steps), silently.
    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(8, 8)

        def forward(self, x, labels):
            return self.proj(x)

    torch.manual_seed(0)
    net, x = Tagger(), torch.randn(4, 10, 8)
    labels = torch.randint(0, 3, (4, 10))
    labels[:, 6:] = -100
    with pytest.raises(InputError, match=r"^mask=1 found an integer tensor with values \[-100, 0, 1, 2\] in the "
                                         r"forward call of Tagger: an integer padding mask holds only 0 and 1") as err:
        with torch.no_grad(), RankMonitor(net, {"proj": net.proj}, every=None, mask=1) as mon:
            net(x, labels)
    assert "\n" not in str(err.value) and mon.rows == []
    valid = (labels != -100).to(torch.int64)  # the same steps as a 0/1 mask are accepted
    with torch.no_grad(), RankMonitor(net, {"proj": net.proj}, every=None, mask=1) as mon:
        net(x, valid)
    assert mon.rows[0]["n_rows"] == 24 and mon.rows[0]["masked"]


@pytest.mark.parametrize("dtype", [torch.bool, torch.complex64])
def test_unsupported_dtype_is_refused_at_the_first_call_with_the_accumulator_message(dtype):
    net = torch.nn.Linear(4, 3)
    with pytest.raises(TypeError, match=r"watched output 'y': chunk must be a real numeric tensor.*" + str(dtype)):
        with RankMonitor(net, {"y": lambda out: out.to(dtype)}, every=None) as mon:
            net(torch.ones(5, 4))
    assert mon.rows == [] and _all_hooks(net) == 0


def test_width_changing_within_an_interval_is_an_error_not_nan():
    net = torch.nn.Identity()
    with pytest.raises(ValueError, match=r"watched output 'y': chunk must have 4 columns like the previous"):
        with RankMonitor(net, {"y": net}, every=None) as mon:
            net(torch.randn(6, 4))
            net(torch.randn(6, 5))
    assert mon.rows == []  # nothing recorded as NaN


def test_zero_dimensional_output_is_a_clear_error():
    net = TwoTower()
    with pytest.raises(ValueError, match=r"watched output 'loss' is a 0-d tensor"):
        with RankMonitor(net, {"loss": lambda out: out.sum()}, every=None):
            net(*_inputs(3, "cpu", 0))
    assert _all_hooks(net) == 0


@pytest.mark.parametrize("by_module", [False, True])
def test_one_dimensional_output_is_a_clear_error(by_module):
    # (B,) scores once read as one row of B channels: rank ~5 for 5 batches of 32 scalar scores,
    # and a "width changed" error at the last, shorter batch.
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1), torch.nn.Flatten(0))
    how = r"lambda out: out\[:, None\]"
    spec, how = (net[3], rf"\(submodule, {how}\)") if by_module else (lambda out: out, how)
    with pytest.raises(ValueError, match=rf"^watched output 'score' is a 1-D tensor of shape \(32,\), e.g. one score per "
                                         rf"sample; the monitor needs outputs of shape \(\.\.\., D\): watch it as {how}$"):
        with torch.no_grad(), RankMonitor(net, {"score": spec}, every=None) as mon:
            net(torch.randn(32, 8))
    assert mon.rows == [] and _all_hooks(net) == 0
    # the suggested column is watched: one channel, rank 1
    with torch.no_grad(), RankMonitor(net, {"score": lambda out: out[:, None]}, every=None) as mon:
        for n in (32, 32, 4):
            net(torch.randn(n, 8))
    assert (mon.rows[0]["n_rows"], mon.rows[0]["n_channels"], mon.rows[0]["numerical_rank"]) == (68, 1, 1)


def test_epoch_ranks_pads_the_videos_into_one_pass_once_the_channels_are_recorded(tiny_data, tmp_path, monkeypatch):
    # With RTF's channels chosen on the training rows a video's eval output does not depend on its
    # batch: EpochRanks runs all its videos as one padded batch and keeps the same valid rows as one
    # video per pass. Before any training row (no channel choice) it goes one video at a time.
    from rankfusion.data.torchdata import pad_videos, video_inputs
    from rankfusion.monitor import EpochRanks
    from rankfusion.train import open_data, resolve_config

    ds = open_data(tiny_data, _tiny_config())
    config = resolve_config(_tiny_config(), ds)
    torch.manual_seed(0)
    model = R3D(config.model)
    calls = []
    model.register_forward_pre_hook(lambda mod, args: calls.append(args[1].shape[0]))
    ranks = EpochRanks(ds, config, torch.device("cpu"), tmp_path / "a.csv")
    assert len({mask.shape[1] for _, mask in ranks.inputs}) > 1  # videos of different lengths: padding
    assert not model.videos_independent
    ranks.record(model, 0)
    assert calls == [1] * ranks.n_videos  # the batch would choose the channels: one video per pass

    model.train()  # training rows: the channels eval mode will blend
    train_videos = [video_inputs(ds, v, ("rgb", "depth"), 40, 2, torch.device("cpu")) for v in ds.split("train")[:4]]
    with torch.no_grad():
        model(*pad_videos(train_videos))
    model.eval()
    assert model.videos_independent
    calls.clear()
    padded = ranks.record(model, 1)
    assert calls == [ranks.n_videos]  # one padded pass
    monkeypatch.setattr(R3D, "videos_independent", property(lambda self: False))
    calls.clear()
    per_video = EpochRanks(ds, config, torch.device("cpu"), tmp_path / "b.csv").record(model, 1)
    assert calls == [1] * ranks.n_videos
    assert [r["name"] for r in padded] == [r["name"] for r in per_video]
    for a, b in zip(padded, per_video):
        assert a["n_rows"] == b["n_rows"] and a["numerical_rank"] == b["numerical_rank"]
        # the same rows through float32 layers summed in another order (padding, batch shape):
        # activations agree to ~1e-6 relative, and Eq. 1 is a smooth function of the spectrum
        assert a["effective_rank"] == pytest.approx(b["effective_rank"], rel=1e-5)
