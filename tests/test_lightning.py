"""RankMonitorCallback: exact per-epoch ranks, training bitwise unchanged, one-line missing extra."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch")

from rankfusion import spectral  # noqa: E402
from rankfusion.integrations.lightning import RankMonitorCallback  # noqa: E402
from rankfusion.monitor import RankMonitor  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_blas_thread")


class TwoTower(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.tower_a = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.ReLU(), torch.nn.Linear(12, 8))
        self.tower_b = torch.nn.Sequential(torch.nn.Linear(4, 12), torch.nn.ReLU(), torch.nn.Linear(12, 8))
        self.drop = torch.nn.Dropout(0.2)  # draws from the RNG: a callback that touched it would show
        self.head = torch.nn.Linear(16, 3)

    def forward(self, a, b):
        return self.head(self.drop(torch.cat([self.tower_a(a), self.tower_b(b)], dim=-1)))

    def training_step(self, batch, batch_idx):
        a, b, y = batch
        return torch.nn.functional.cross_entropy(self(a, b), y)

    def validation_step(self, batch, batch_idx):
        a, b, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self(a, b), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Capture(pl.loggers.logger.Logger):
    """A logger that keeps every metric dict it is given."""

    def __init__(self):
        super().__init__()
        self.logged = []

    name = "capture"
    version = 0

    def log_metrics(self, metrics, step=None):
        self.logged.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def _loaders():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, 6, generator=g), torch.randn(40, 4, generator=g)
    y = torch.randint(0, 3, (40,), generator=g)
    ds = torch.utils.data.TensorDataset(a, b, y)
    return (torch.utils.data.DataLoader(torch.utils.data.Subset(ds, range(32)), batch_size=8),
            torch.utils.data.DataLoader(torch.utils.data.Subset(ds, range(32, 40)), batch_size=4))


def _fit(tmp_path, callbacks):
    """Two epochs of 4 steps; returns (model, logger, captured outputs per stage, RNG state)."""
    torch.manual_seed(7)
    model = TwoTower()
    seen = {"train": [], "val": []}

    def keep(module, args, out):  # the reference: every output of tower_a, by stage
        seen["train" if module.training else "val"].append(out.detach().clone())

    model.tower_a.register_forward_hook(keep)
    logger = Capture()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=logger, callbacks=callbacks,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, default_root_dir=str(tmp_path))
    train, val = _loaders()
    trainer.fit(model, train, val)
    return model, logger, seen, torch.get_rng_state()


def test_callback_logs_exact_ranks_and_leaves_training_untouched(tmp_path):
    cb = RankMonitorCallback({"tower_a": "tower_a", "tower_b relu": ("tower_b", lambda out: out.relu()),
                              "logits": lambda out: out}, max_rows=None)
    with_cb, logger, seen, rng_a = _fit(tmp_path / "a", [cb])
    without, _, seen_b, rng_b = _fit(tmp_path / "b", [])
    # same weights, same RNG stream, same activations: bitwise
    for (name, p), (_, q) in zip(with_cb.state_dict().items(), without.state_dict().items()):
        assert torch.equal(p, q), name
    assert torch.equal(rng_a, rng_b)
    assert all(torch.equal(x, y) for s in seen for x, y in zip(seen[s], seen_b[s]))
    # per epoch and stage, the logged rank is Eq. 1 of the concatenated outputs of that epoch
    train_logs = [m for _, m in logger.logged if "effective_rank/train/tower_a" in m]
    val_logs = [m for _, m in logger.logged if "effective_rank/val/tower_a" in m]
    assert len(train_logs) == 2 and len(val_logs) == 2
    # each epoch's validation ranks share the row (the logged step) of its val_loss
    assert all("val_loss" in m for m in val_logs)
    for stage, logs, per_epoch in (("train", train_logs, 4), ("val", val_logs, 2)):
        for epoch, m in enumerate(logs):
            X = torch.cat(seen[stage][epoch * per_epoch:(epoch + 1) * per_epoch])
            assert X.shape == (8 * per_epoch if stage == "train" else 4 * per_epoch, 8)
            want = float(spectral.effective_rank(X))
            assert m[f"effective_rank/{stage}/tower_a"] == pytest.approx(want, rel=1e-9)
            assert m[f"numerical_rank/{stage}/tower_a"] == float(spectral.numerical_rank(X))
            assert f"effective_rank/{stage}/tower_b relu" in m and f"effective_rank/{stage}/logits" in m
    df = cb.to_frame()
    assert list(df.columns[:3]) == ["epoch", "stage", "name"] and len(df) == 2 * 2 * 3
    # the callback's hooks are gone after fit (the test's own reference hook stays)
    assert len(with_cb.tower_a._forward_hooks) == 1 and len(with_cb.tower_b._forward_hooks) == 0
    assert len(with_cb._forward_hooks) == 0 and len(with_cb._forward_pre_hooks) == 0


def test_ranks_are_callback_metrics_that_early_stopping_can_monitor(tmp_path):
    cb = RankMonitorCallback(["tower_a"], stages=("val",), max_rows=None)
    # EarlyStopping raises when its monitor was never logged
    stop = pl.callbacks.EarlyStopping(monitor="effective_rank/val/tower_a", mode="max", patience=5)
    _, logger, seen, _ = _fit(tmp_path, [cb, stop])
    last = torch.cat(seen["val"][-2:])
    assert float(stop.best_score) >= float(spectral.effective_rank(torch.cat(seen["val"][:2]))) - 1e-12
    assert [m["effective_rank/val/tower_a"] for _, m in logger.logged if "val_loss" in m][-1] == pytest.approx(
        float(spectral.effective_rank(last)), rel=1e-9)


def test_rows_are_one_fit_and_tell_validations_of_one_epoch_apart(tmp_path):
    # The same callback in two Trainers (as the docs' EarlyStopping snippet does) once kept both
    # fits' rows under the same (epoch, stage, name) labels, and two validations of one epoch
    # (val_check_interval=0.5) were two rows that nothing told apart.
    cb = RankMonitorCallback(["tower_a"], stages=("val",), max_rows=None)
    train, val = _loaders()  # 4 training batches per epoch
    seen = []
    for fit in range(2):
        torch.manual_seed(7 + fit)
        model = TwoTower()
        model.tower_a.register_forward_hook(lambda module, args, out: seen.append(out.detach().clone()))
        trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=Capture(), callbacks=[cb],
                             val_check_interval=0.5, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=str(tmp_path))
        seen.clear()
        trainer.fit(model, train, val)
    df = cb.to_frame()
    assert list(df.columns[:4]) == ["epoch", "stage", "name", "global_step"]
    assert df["epoch"].tolist() == [0, 0, 1, 1] and df["global_step"].tolist() == [2, 4, 6, 8]
    assert all(r["global_step"] == g for r, g in zip(cb.rows, (2, 4, 6, 8)))
    # only the second fit's validations (training outputs are those of 8 rows, validation of 4)
    vals = [x for x in seen if x.shape[0] == 4]
    assert len(vals) == 2 * 4
    want = [float(spectral.effective_rank(torch.cat(vals[i:i + 2]))) for i in range(0, 8, 2)]
    assert df["effective_rank"].tolist() == pytest.approx(want, rel=1e-9)


def test_validate_and_test_are_measured_too(tmp_path):
    torch.manual_seed(7)
    model = TwoTower()
    model.test_step = model.validation_step
    seen = []
    model.tower_a.register_forward_hook(lambda module, args, out: seen.append(out.detach().clone()))
    cb = RankMonitorCallback(["tower_a"], max_rows=None)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=Capture(), callbacks=[cb], enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path))
    _, val = _loaders()
    trainer.validate(model, val)
    trainer.test(model, val)
    df = cb.to_frame()
    assert df["stage"].tolist() == ["val", "test"]  # one record per entry point, none for train
    want = float(spectral.effective_rank(torch.cat(seen[:2])))
    assert df["effective_rank"].tolist() == pytest.approx([want, want], rel=1e-9)  # the same batches twice
    assert len(model.tower_a._forward_hooks) == 1  # the callback's hook removed after each


def test_bad_arguments():
    with pytest.raises(ValueError, match="stages"):
        RankMonitorCallback(["tower_a"], stages=("predict",))
    with pytest.raises(ValueError, match="modules"):
        RankMonitorCallback({})
    cb = RankMonitorCallback({"x": "nope.layer"})
    with pytest.raises(ValueError, match="no submodule 'nope.layer'"):
        cb.on_fit_start(None, TwoTower())
    with pytest.raises(ValueError, match="mask_layout must be one of"):
        RankMonitorCallback(["tower_a"], mask=1, mask_layout="time-first")
    # tol is checked here, by the monitor's own rule, not once Trainer.fit has started
    model = TwoTower()
    for bad, match in ((-1.0, r"^tol must be >= 0\.0, got -1\.0$"), ("1e-3", r"^tol must be a")):
        with pytest.raises(ValueError, match=match):
            RankMonitorCallback(["tower_a"], tol=bad)
        with pytest.raises(ValueError, match=match):
            RankMonitor(model, {"a": model.tower_a}, tol=bad)
    assert RankMonitorCallback(["tower_a"], tol=1e-3).kw["tol"] == 1e-3
    # a mask index past forward(a, b): refused at fit start, not silently left unmasked
    cb = RankMonitorCallback(["tower_a"], mask=2)
    with pytest.raises(ValueError, match=r"mask=2 is past the 2 positional parameter\(s\) of TwoTower.forward\(a, b\)"):
        cb.on_fit_start(None, TwoTower())
    assert cb._monitors == {}


def test_mask_layout_reaches_the_monitors():
    # a time-major model's outputs are masked as RankMonitor(mask_layout="time-major") masks them
    cb = RankMonitorCallback(["tower_a"], mask=1, mask_layout="time-major")
    cb.on_fit_start(None, TwoTower())
    assert {s: m.mask_layout for s, m in cb._monitors.items()} == {"train": "time-major", "val": "time-major"}
    cb.teardown(None, None, "fit")


def test_missing_extra_is_one_line():
    code = ("import sys; sys.modules['lightning'] = None; sys.modules['lightning.pytorch'] = None\n"
            "import rankfusion.integrations.lightning")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert last == ("ImportError: lightning is not installed; it comes with the [lightning] extra: "
                    "pip install 'rankfusion[lightning]'")


def test_docs_example_runs(tmp_path, monkeypatch):
    # docs/monitor.md's Lightning example, executed as written
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "monitor.md").read_text()
    code = re.search(r"```python\n# Lightning\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    ns = {}
    exec(compile(code, "docs/monitor.md", "exec"), ns)
    df = ns["ranks"]
    assert set(df["stage"]) == {"train", "val"} and set(df["name"]) == {"tower_a", "tower_b"}
    assert sorted(set(df["epoch"])) == [0, 1, 2]
    assert np.all(df["effective_rank"] >= 1.0)


def test_hooks_are_removed_when_a_fit_raises(tmp_path):
    class Failing(TwoTower):
        def training_step(self, batch, batch_idx):
            if self.current_epoch == 1 and batch_idx == 1:
                raise RuntimeError("stop here")
            return super().training_step(batch, batch_idx)

    def hooks(model):
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())

    cb = RankMonitorCallback(["tower_a"], max_rows=None)
    train, val = _loaders()
    kw = dict(max_epochs=2, accelerator="cpu", devices=1, logger=Capture(), callbacks=[cb], enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
              default_root_dir=str(tmp_path))
    torch.manual_seed(7)
    failed = Failing()
    with pytest.raises(RuntimeError, match="stop here"):
        pl.Trainer(**kw).fit(failed, train, val)
    assert hooks(failed) == 0 and cb._monitors == {}
    # the same callback in a new fit measures the new module, not the failed one
    torch.manual_seed(8)
    model = TwoTower()
    seen = []
    model.tower_a.register_forward_hook(lambda module, args, out: seen.append(out.detach().clone()))
    pl.Trainer(**kw).fit(model, train, val)
    first_train = torch.cat([x for x in seen if x.shape[0] == 8][:4])
    row = next(r for r in cb.rows if r["stage"] == "train" and r["epoch"] == 0)
    assert row["effective_rank"] == pytest.approx(float(spectral.effective_rank(first_train)), rel=1e-9)
