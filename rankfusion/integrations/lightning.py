"""Per-epoch effective ranks of a LightningModule's submodules: a Lightning callback over RankMonitor.

Needs the optional ``lightning`` extra (``pip install 'rankfusion[lightning]'``).
:class:`RankMonitorCallback` watches named submodules (or callables on the module's output) with
one :class:`rankfusion.monitor.RankMonitor` per stage (training, validation, test), enabled only
inside that stage's batches, and at the end of each epoch logs the effective rank (Eq. 1) and
the numerical rank of every name to the trainer's loggers. Like the monitor it only reads
detached outputs: gradients, weights and random-number streams are bitwise those of a run
without it (tested).
"""

from __future__ import annotations

import torch

from .._validation import check_int, require_extra
from ..monitor import DEFAULT_MAX_ROWS, DEFAULT_TOP, MASK_LAYOUTS, RankMonitor
from ..spectral.routes import _check_tol

# the optional extra is missing: one line naming it
pl = require_extra("lightning.pytorch", "lightning")

__all__ = ["RankMonitorCallback", "STAGES"]

#: Stage names accepted by ``stages`` and used in the logged keys.
STAGES = ("train", "val", "test")


class RankMonitorCallback(pl.Callback):
    """Log the effective rank of named submodules' outputs once per epoch.

    Parameters
    ----------
    modules : dict of str to spec, or list of str
        ``{name: spec}``: a spec is a dotted submodule path of the LightningModule (``"encoder.0"``;
        its output tensor is watched), a callable on the module's own ``forward`` output, or a pair
        ``(path, callable)`` whose callable picks the tensor from that submodule's output. A list
        of paths watches each under its own path. A tensor of shape (..., D) is flattened to
        (rows, D), as in :class:`~rankfusion.monitor.RankMonitor`.
    stages : sequence of {"train", "val", "test"}, default all three
        Where to measure: the training batches of an epoch, its validation batches (in
        ``Trainer.fit`` and ``Trainer.validate``) and the test batches (``Trainer.test``); the
        sanity check before training is never measured.
    max_rows : int or None, default :data:`rankfusion.monitor.DEFAULT_MAX_ROWS`
        Rows read per name and epoch (the first of the epoch); ``None``: every row.
    center, mask, mask_layout, top, tol
        As for :class:`~rankfusion.monitor.RankMonitor`.

    Notes
    -----
    Logged keys, once per epoch: ``effective_rank/<stage>/<name>`` and ``numerical_rank/<stage>/<name>``,
    through the module's own ``log`` (epoch-level, float64): they land in the row of the epoch's other
    epoch-level metrics (``val_loss`` beside the validation ranks in a ``CSVLogger``'s metrics.csv)
    and in ``trainer.callback_metrics``, so ``EarlyStopping`` or ``ModelCheckpoint`` can monitor
    them. :attr:`rows` keeps the full records of the current (or last) fit, with ``epoch``, ``stage``
    and the trainer's ``global_step`` (two validations of one epoch differ in it); each
    ``Trainer.fit`` starts it empty, and ``Trainer.validate``/``Trainer.test`` add to it.
    :meth:`to_frame` returns them as a DataFrame. In a data-parallel run each process measures its own batches and
    Lightning's loggers write rank 0's (Lightning then suggests ``sync_dist=True`` once, in a
    ``PossibleUserWarning``: averaging the processes' ranks would not give the rank of their rows
    together, so the values are not synchronised).
    """

    def __init__(self, modules, *, stages=STAGES, max_rows: int | None = DEFAULT_MAX_ROWS, center: bool = False,
                 mask=None, mask_layout: str = "batch-major", top: int = DEFAULT_TOP, tol: float | None = None):
        super().__init__()
        if isinstance(modules, (list, tuple)):
            modules = {m: m for m in modules}
        if not isinstance(modules, dict) or not modules:
            raise ValueError(f"modules must be a non-empty dict {{name: path, callable or (path, callable)}} "
                             f"or a list of paths, got {modules!r}")
        stages = tuple(stages)
        if not stages or any(s not in STAGES for s in stages):
            raise ValueError(f"stages must be a non-empty subset of {list(STAGES)}, got {list(stages)!r}")
        self.specs = dict(modules)
        self.stages = stages
        if mask_layout not in MASK_LAYOUTS:
            raise ValueError(f"mask_layout must be one of {MASK_LAYOUTS}, got {mask_layout!r}")
        self.kw = dict(max_rows=check_int(max_rows, "max_rows", low=1, allow_none=True), center=bool(center),
                       mask=mask, mask_layout=mask_layout, top=check_int(top, "top", low=0), tol=_check_tol(tol))
        self.rows: list[dict] = []
        self._monitors: dict[str, RankMonitor] = {}

    # ------------------------------------------------------------------ set-up
    def _resolve(self, pl_module) -> dict:
        out = {}
        for name, spec in self.specs.items():
            path, pick = (spec if isinstance(spec, tuple) and len(spec) == 2 else (spec, None))
            if isinstance(path, str):
                try:
                    module = pl_module.get_submodule(path)
                except AttributeError:
                    raise ValueError(f"modules[{name!r}]: {type(pl_module).__name__} has no submodule "
                                     f"{path!r}") from None
                out[name] = module if pick is None else (module, pick)
            else:
                out[name] = spec  # a callable on the module's output, or a RankMonitor spec
        return out

    def _watch(self, pl_module, stages):
        """Watch the modules for ``stages`` (those asked for and not yet watched). Called when a
        Trainer entry point starts, after the module's own ``setup`` and ``configure_model`` (which
        may build the layers named)."""
        todo = [s for s in stages if s in self.stages and s not in self._monitors]
        specs = self._resolve(pl_module) if todo else {}
        for s in todo:
            mon = RankMonitor(pl_module, specs, every=None, **self.kw)
            mon.enabled = False  # on only inside this stage's batches
            self._monitors[s] = mon

    def on_fit_start(self, trainer, pl_module):
        self.rows = []  # one fit's records: a callback handed to a second Trainer starts afresh
        self._watch(pl_module, ("train", "val"))

    def on_validation_start(self, trainer, pl_module):  # Trainer.validate (fit's are already watched)
        self._watch(pl_module, ("val",))

    def on_test_start(self, trainer, pl_module):
        self._watch(pl_module, ("test",))

    def teardown(self, trainer, pl_module, stage):
        for mon in self._monitors.values():
            mon.close(flush=False)
        self._monitors = {}

    def on_exception(self, trainer, pl_module, exception):
        # Lightning skips teardown when a run raises: the hooks would stay on the module (and a
        # later fit with this callback would keep measuring the module of the failed one)
        self.teardown(trainer, pl_module, None)

    # ------------------------------------------------------------------ batches
    def _switch(self, stage, trainer, on: bool):
        mon = self._monitors.get(stage)
        if mon is not None and not trainer.sanity_checking:
            mon.enabled = on

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._switch("train", trainer, True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._switch("train", trainer, False)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._switch("val", trainer, True)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._switch("val", trainer, False)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._switch("test", trainer, True)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._switch("test", trainer, False)

    # ------------------------------------------------------------------ epochs
    def _log(self, stage, trainer, pl_module):
        mon = self._monitors.get(stage)
        if mon is None or trainer.sanity_checking:
            return
        new = mon.record(step=trainer.current_epoch)
        metrics = {}
        for r in new:
            # global_step tells apart two validations of one epoch (val_check_interval < 1)
            r.update(epoch=r.pop("step"), stage=stage, global_step=trainer.global_step)
            metrics[f"effective_rank/{stage}/{r['name']}"] = float(r["effective_rank"])
            metrics[f"numerical_rank/{stage}/{r['name']}"] = float(r["numerical_rank"])
        self.rows += new
        for key, value in metrics.items():
            # one value per epoch (batch size 1): Lightning's epoch mean returns it unchanged, in float64
            pl_module.log(key, torch.tensor(value, dtype=torch.float64), on_step=False, on_epoch=True,
                          batch_size=1)

    def on_train_epoch_end(self, trainer, pl_module):
        self._log("train", trainer, pl_module)

    def on_validation_epoch_end(self, trainer, pl_module):
        self._log("val", trainer, pl_module)

    def on_test_epoch_end(self, trainer, pl_module):
        self._log("test", trainer, pl_module)

    def to_frame(self):
        """:attr:`rows` as a pandas DataFrame (``epoch, stage, name, global_step, n_rows,
        numerical_rank, effective_rank, sigma_1 ...``)."""
        import pandas as pd

        df = pd.DataFrame(self.rows)
        first = [c for c in ("epoch", "stage", "name", "global_step") if c in df.columns]
        return df[first + [c for c in df.columns if c not in first]]
