"""Rank dynamics of any torch model: streaming (Gram-accurate) effective rank of watched outputs.

:class:`RankMonitor` registers forward hooks on a model, streams every watched output
(flattened to rows x channels, padded steps dropped when a mask is given) into a
:class:`rankfusion.spectral.GramAccumulator` kept in float64 on the output's own device, and at
the end of each interval records, per watched name, the numerical rank, the effective rank
(Eq. 1) and the top singular values. The spectrum is the accumulator's, so tolerance and
conventions are those of :mod:`rankfusion.spectral` (docs/spectral.md). Memory: one D x D float64
matrix per watched name, never the rows.

The hooks only read detached outputs: gradients, outputs and the random-number streams of the
model are unchanged (tested bitwise). :func:`r3d_modules` and :class:`EpochRanks` are the R3D
hook-up behind ``rankfusion train --monitor`` (``RUN/ranks.csv``).
"""

from __future__ import annotations

import inspect
import math
import time
from pathlib import Path

import numpy as np

from ._validation import InputError, check_int, describe, is_torch
from .config import observed_frames
from .data.torchdata import length_batches, pad_videos, video_inputs
from .files import write_text
from .spectral import GramAccumulator, effective_rank
from .spectral.routes import _check_tol
from .threads import blas_threads

__all__ = ["RankMonitor", "r3d_modules", "EpochRanks", "DEFAULT_EVERY", "DEFAULT_MAX_ROWS", "MASK_LAYOUTS"]

#: How a watched tensor is laid out against a (B, T) mask: (B, T, ..., D) or (T, B, ..., D).
MASK_LAYOUTS = ("batch-major", "time-major")

#: Forward calls of the model per interval (one record per watched name per interval).
DEFAULT_EVERY = 100
#: Rows streamed per watched name and interval; later rows of the interval are not read. At the
#: paper's size (D = 128, batches of ~1,600 valid steps) this is the first ~5 batches of every 100,
#: which keeps the monitor under 5% of a training step's time (docs/monitor.md, benchmarks).
DEFAULT_MAX_ROWS = 8192
#: Singular values recorded per name (``sigma_1`` ... ``sigma_k``; NaN beyond the numerical rank).
DEFAULT_TOP = 8


def _import_torch():
    import torch

    return torch


def _tensorboard_writer(tensorboard):
    """A SummaryWriter for a log folder, or the writer-like object given (``add_scalar``)."""
    if tensorboard is None or hasattr(tensorboard, "add_scalar"):
        return tensorboard
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError("TensorBoard logging needs the optional 'monitor' extra: "
                          "pip install 'rankfusion[monitor]'") from None
    return SummaryWriter(log_dir=str(tensorboard))


class _Watch:
    """One watched name: where its tensor comes from and its accumulator for the interval."""

    def __init__(self, name, module, extract, center):
        self.name, self.module, self.extract, self.center = name, module, extract, center
        self.reset()

    def reset(self):
        self.acc = GramAccumulator(center=self.center)
        self.finite = True
        self.masked = False


class RankMonitor:
    """Watch the effective rank (Eq. 1) of outputs of a torch model while it runs.

    Parameters
    ----------
    model : torch.nn.Module
        The model; its forward calls are counted and define the intervals.
    modules : dict of str to watch spec
        ``{name: spec}``. A spec is a submodule of ``model`` (its output tensor is watched), a
        callable applied to the *model's* output (e.g. ``lambda out: out.features``), or a pair
        ``(submodule, callable)`` whose callable picks the tensor from the submodule's output.
        A watched tensor of shape (..., D) is flattened to (rows, D); a 1-D ``(B,)`` one is
        refused (watch ``out[:, None]``).
    every : int or None, default :data:`DEFAULT_EVERY`
        Forward calls of ``model`` per interval; a record is made after the ``every``-th call.
        ``None``: record only when :meth:`record` is called.
    max_rows : int or None, default :data:`DEFAULT_MAX_ROWS`
        Rows streamed per name and interval (the first ones of the interval); ``None``: all.
    center : bool, default False
        Centre each name's rows over the interval (the paper does not centre).
    mask : int, str, callable or None
        Where the padding mask (bool, True = valid, shape (B, T)) of a forward call is found:
        the index of a positional argument, the name of a keyword argument (either finds the
        parameter of ``model.forward`` however a call passes it; one that names no parameter is
        refused here), or ``f(args, kwargs) -> mask or None``. A call without the mask streams
        every row; a mask that is not a bool or 0/1 integer tensor of shape (B, T) is refused. A
        watched tensor laid out as ``mask_layout`` says keeps only its valid rows (column
        ``masked`` of the results says which did).
    mask_layout : {"batch-major", "time-major"}, default "batch-major"
        How watched tensors are laid out against the ``(B, T)`` mask: ``(B, T, ..., D)`` or
        ``(T, B, ..., D)``. Stated by the caller, never guessed from the shapes (with T = B a guess
        would mask the wrong entries). A tensor laid out the other way (``(T, B, ..., D)`` under
        "batch-major", with T != B) is refused with a ValueError naming the watch; a tensor with
        other leading dimensions (e.g. pooled ``(B, D)``) is streamed unmasked.
    top : int, default :data:`DEFAULT_TOP`
        Number of leading singular values recorded.
    tol : float, optional
        Absolute singular-value tolerance; default the spectral module's
        ``sqrt(max(N, D)) * eps * sigma_max`` with ``eps`` of the outputs' dtype.
    tensorboard : str, path or writer, optional
        A log folder (needs the optional ``monitor`` extra, which installs ``tensorboard``) or any
        object with ``add_scalar(tag, value, step)``: effective and numerical rank per name are
        logged at every record.

    Notes
    -----
    Use as a context manager, or call :meth:`close`, to remove the hooks. Rows of one name must
    have the same number of channels and live on one device within an interval, and be real
    numbers (floating point, signed integers or uint8): otherwise the forward call that brings
    them raises the accumulator's ``ValueError``/``TypeError`` naming the watched output (for an
    unsupported dtype, the first call). Only NaN/Inf outputs (a diverging run) are recorded, as NaN.
    """

    def __init__(self, model, modules: dict, *, every: int | None = DEFAULT_EVERY,
                 max_rows: int | None = DEFAULT_MAX_ROWS, center: bool = False, mask=None,
                 mask_layout: str = "batch-major", top: int = DEFAULT_TOP, tol: float | None = None,
                 tensorboard=None):
        torch = _import_torch()
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(modules, dict) or not modules:
            raise ValueError(f"modules must be a non-empty dict {{name: submodule or callable}}, got {modules!r}")
        self.model = model
        self.every = check_int(every, "every", low=1, allow_none=True)
        self.max_rows = check_int(max_rows, "max_rows", low=1, allow_none=True)
        self.top = check_int(top, "top", low=0)
        self.tol = _check_tol(tol)
        self.center = bool(center)
        self._mask_spec = self._check_mask(mask)
        self._mask_alt = self._mask_parameter(model, self._mask_spec)
        if mask_layout not in MASK_LAYOUTS:
            raise ValueError(f"mask_layout must be one of {MASK_LAYOUTS}, got {mask_layout!r}")
        self.mask_layout = mask_layout
        self._watches = [self._parse(name, spec) for name, spec in modules.items()]
        # made once every argument is accepted: a refused one leaves no writer thread or event file
        self._writer = _tensorboard_writer(tensorboard)
        self._own_writer = self._writer is not tensorboard  # made here from a folder: closed by close()
        self._rows: list[dict] = []
        self._calls = 0
        self._interval_calls = 0
        self._mask = None
        self.enabled = True
        self._handles = []
        self._attach()

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _check_mask(mask):
        if mask is None or callable(mask) or isinstance(mask, str):
            return mask
        return check_int(mask, "mask", low=0)

    @staticmethod
    def _mask_parameter(model, spec):
        """The other way a positional index or keyword name reaches ``model.forward``: the parameter's
        name for an index, its positional index for a name (None where there is none). A spec that
        names no parameter of ``forward`` is refused here, not found missing at every call."""
        if spec is None or callable(spec):
            return None
        try:
            sig = inspect.signature(model.forward)
        except (TypeError, ValueError):  # no signature to read: the spec is used as given
            return None
        params = list(sig.parameters.values())
        kinds = {p.kind for p in params}
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        where = f"{type(model).__name__}.forward{sig}"
        if isinstance(spec, str):
            by_name = {p.name: p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
            if spec in by_name and by_name[spec].kind != inspect.Parameter.POSITIONAL_ONLY:
                p = by_name[spec]
                return positional.index(p) if p in positional else None
            if inspect.Parameter.VAR_KEYWORD in kinds:
                return None
            raise InputError(f"mask={spec!r} is not a keyword parameter of {where}: pass the name of the "
                             "padding mask's parameter, its positional index, or f(args, kwargs)")
        if spec < len(positional):
            p = positional[spec]
            return None if p.kind == p.POSITIONAL_ONLY else p.name
        if inspect.Parameter.VAR_POSITIONAL in kinds:
            return None
        raise InputError(f"mask={spec} is past the {len(positional)} positional parameter(s) of {where}: "
                         "pass the padding mask's positional index (from 0), its parameter name, or f(args, kwargs)")

    def _parse(self, name, spec):
        torch = _import_torch()
        if not isinstance(name, str) or not name:
            raise TypeError(f"modules keys must be non-empty strings, got {name!r}")
        module, extract = None, None
        if isinstance(spec, tuple) and len(spec) == 2:
            module, extract = spec
        elif isinstance(spec, torch.nn.Module):
            module = spec
        else:
            extract = spec
        if module is not None:
            if not isinstance(module, torch.nn.Module) or not any(m is module for m in self.model.modules()):
                raise ValueError(f"modules[{name!r}]: {type(module).__name__} is not a submodule of the model")
        if extract is not None and not callable(extract):
            raise TypeError(f"modules[{name!r}] must be a submodule, a callable or (submodule, callable), "
                            f"got {type(spec).__name__}")
        return _Watch(name, module, extract, self.center)

    def _attach(self):
        self._handles.append(self.model.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
        for w in self._watches:
            if w.module is not None:
                self._handles.append(w.module.register_forward_hook(self._module_hook(w)))
        # registered last: runs after the watched submodules' hooks of the same call
        self._handles.append(self.model.register_forward_hook(self._post_hook))

    # ------------------------------------------------------------------ hooks
    def _pre_hook(self, module, args, kwargs):
        spec = self._mask_spec
        if spec is None or not self.enabled:
            self._mask = None
        elif callable(spec):
            self._mask = spec(args, kwargs)
        elif isinstance(spec, str):
            alt = self._mask_alt  # the parameter given positionally
            self._mask = kwargs[spec] if spec in kwargs else (args[alt] if alt is not None and alt < len(args) else None)
        else:
            alt = self._mask_alt  # the parameter given by name
            self._mask = args[spec] if spec < len(args) else (kwargs.get(alt) if alt is not None else None)
        m = self._mask
        if m is not None and not (is_torch(m) and m.dim() == 2 and not m.is_floating_point() and not m.is_complex()):
            raise InputError(f"mask={spec!r} found {describe(m)} in the forward call of {type(module).__name__}: "
                             "a padding mask is a bool (or 0/1 integer) tensor of shape (B, T), True = valid")
        if m is not None and m.dtype != _import_torch().bool and not bool(((m == 0) | (m == 1)).all()):
            # e.g. labels with -100 at padded steps: every non-zero value would read as valid
            found = m.unique()
            shown = ", ".join(str(v) for v in found[:8].tolist()) + (", ..." if found.numel() > 8 else "")
            raise InputError(f"mask={spec!r} found an integer tensor with values [{shown}] in the forward call of "
                             f"{type(module).__name__}: an integer padding mask holds only 0 and 1 (1 = valid)")
        return None

    def _wants(self, watch) -> bool:
        # Once an interval's rows are read (or an output was NaN/Inf), later calls cost only this.
        full = self.max_rows is not None and watch.acc.n_rows >= self.max_rows
        return self.enabled and watch.finite and not full

    def _module_hook(self, watch):
        def hook(module, args, output):
            if self._wants(watch):
                self._stream(watch, output if watch.extract is None else watch.extract(output))
            return None  # never replace the output

        return hook

    def _post_hook(self, module, args, output):
        if not self.enabled:
            return None
        for w in self._watches:
            if w.module is None and self._wants(w):
                self._stream(w, w.extract(output))
        self._calls += 1
        self._interval_calls += 1
        self._mask = None
        if self.every is not None and self._interval_calls >= self.every:
            self.record()
        return None

    def _rows_of(self, watch, x):
        """(rows, D) view of a watched tensor, valid steps only when it has the mask's layout."""
        if not is_torch(x):
            if isinstance(x, (tuple, list, dict)):
                # several values: say how to pick one (the values themselves would run over many lines)
                what = f"watched output {watch.name!r} is a {type(x).__name__} of {len(x)} items, not a tensor"
                if watch.extract is not None:
                    raise TypeError(f"{what}: make its callable return one tensor, e.g. lambda out: out[0]")
                raise TypeError(f"{what}: watch the submodule as (submodule, callable) with a callable that picks "
                                "the tensor, e.g. lambda out: out[0]")
            raise TypeError(f"watched output {watch.name!r} must be a torch tensor, got {describe(x)}")
        x = x.detach()
        if x.dim() == 0:
            raise ValueError(f"watched output {watch.name!r} is a 0-d tensor (a scalar such as a loss); the "
                             "monitor needs outputs of shape (..., D), D channels")
        if x.dim() == 1:
            # (B,) would read as one row of B channels (and a short last batch as another width)
            how = "lambda out: out[:, None]" if watch.module is None else "(submodule, lambda out: out[:, None])"
            raise ValueError(f"watched output {watch.name!r} is a 1-D tensor of shape {tuple(x.shape)}, e.g. one score "
                             f"per sample; the monitor needs outputs of shape (..., D): watch it as {how}")
        m = self._mask
        if m is not None and x.dim() >= 3 and m.dim() == 2:
            lead, bt = tuple(x.shape[:2]), tuple(m.shape)
            want, other = (bt, bt[::-1]) if self.mask_layout == "batch-major" else (bt[::-1], bt)
            if lead == want:  # (B, T, ..., D): the valid steps' rows, e.g. every head's of a (B, T, H, D)
                watch.masked = True
                m = m.to(device=x.device, dtype=_import_torch().bool)
                return x[m if self.mask_layout == "batch-major" else m.t()].reshape(-1, x.shape[-1])
            if lead == other:
                raise ValueError(f"watched output {watch.name!r} has shape {tuple(x.shape)}, laid out against the "
                                 f"mask {bt} the other way than mask_layout={self.mask_layout!r}: pass "
                                 f"mask_layout={'time-major' if self.mask_layout == 'batch-major' else 'batch-major'!r}")
        return x.reshape(-1, x.shape[-1]) if x.dim() != 2 else x

    def _stream(self, watch, x):
        rows = self._rows_of(watch, x)
        if self.max_rows is not None:
            rows = rows[: self.max_rows - watch.acc.n_rows]
        if rows.shape[0] == 0:
            return
        try:
            watch.acc.update(rows)
        except ValueError as exc:
            if rows.is_floating_point() and not bool(rows.isfinite().all()):
                # NaN/Inf activations (a diverging run): recorded as NaN, never raised into training
                watch.finite = False
                return
            # anything else is a misuse the accumulator names (a dtype it cannot take, such as
            # bool or complex, at the first call; a width that changed within the interval)
            raise type(exc)(f"watched output {watch.name!r}: {exc}") from None

    # ------------------------------------------------------------------ results
    def record(self, step=None) -> list[dict]:
        """Close the current interval: one row per watched name that saw rows; returns them.

        ``step`` labels the rows (default: forward calls so far). Accumulators restart empty.
        """
        step = self._calls if step is None else step
        new = []
        # the spectra are small eigenproblems: NumPy's BLAS on one thread, beside the model's
        # torch threads (rankfusion.threads)
        with blas_threads(1):
            for w in self._watches:
                if w.acc.n_rows == 0 and w.finite:
                    continue
                new.append(self._summary(w, step))
                w.reset()
        self._interval_calls = 0
        self._rows += new
        if self._writer is not None:
            for r in new:
                self._writer.add_scalar(f"effective_rank/{r['name']}", r["effective_rank"], r["step"])
                self._writer.add_scalar(f"numerical_rank/{r['name']}", r["numerical_rank"], r["step"])
        return new

    def _summary(self, w, step) -> dict:
        row = {"step": step, "name": w.name, "calls": self._interval_calls, "n_rows": w.acc.n_rows,
               "n_channels": w.acc.n_channels, "masked": w.masked}
        if not w.finite:
            sigma, rank, erank = np.zeros(0), math.nan, math.nan
        else:
            # one eigendecomposition per record; Eq. 1 on those singular values
            sigma = w.acc.singular_values(self.tol)
            rank, erank = int(sigma.shape[0]), float(effective_rank(sigma)) if sigma.shape[0] else 0.0
        row.update(numerical_rank=rank, effective_rank=erank)
        for i in range(self.top):
            row[f"sigma_{i + 1}"] = float(sigma[i]) if i < sigma.shape[0] else math.nan
        return row

    @property
    def rows(self) -> list[dict]:
        """Records so far, one dict per (interval, name)."""
        return list(self._rows)

    def to_frame(self):
        """Records as a pandas DataFrame: ``step, name, calls, n_rows, n_channels, masked,
        numerical_rank, effective_rank, sigma_1 ... sigma_<top>``."""
        import pandas as pd

        cols = ["step", "name", "calls", "n_rows", "n_channels", "masked", "numerical_rank", "effective_rank"]
        cols += [f"sigma_{i + 1}" for i in range(self.top)]
        return pd.DataFrame(self._rows, columns=cols)

    def to_csv(self, path) -> Path:
        """Write :meth:`to_frame` to ``path`` atomically; returns the path."""
        path = Path(path)
        write_text(path, self.to_frame().to_csv(index=False, float_format="%.10g"))
        return path

    # ------------------------------------------------------------------ life cycle
    @property
    def calls(self) -> int:
        """Forward calls of the model seen while enabled."""
        return self._calls

    def close(self, *, flush: bool = True):
        """Remove every hook; with ``flush``, record a last (partial) interval if rows are pending.
        A TensorBoard writer the monitor made (``tensorboard=`` a folder) is closed, and later
        records (:meth:`record` after ``close``) are not written to it; one passed in is flushed
        and stays the caller's."""
        for h in self._handles:
            h.remove()
        self._handles = []
        if flush and any(w.acc.n_rows or not w.finite for w in self._watches):
            self.record()
        if self._own_writer:
            self._writer.close()  # flushes; its writer thread ends
            # gone for good: a record() after close() must not reopen the folder with a new event file
            self._writer, self._own_writer = None, False
        elif self._writer is not None and hasattr(self._writer, "flush"):
            self._writer.flush()  # the caller's writer stays open

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close(flush=exc[0] is None)
        return False


# ----------------------------------------------------------------------------- R3D hook-up
def r3d_modules(modalities) -> dict:
    """Watch specs for an R3D forward with ``return_features=True`` (callables on its output).

    ``<m>/before`` and ``<m>/after``: each modality's tokens before / after the token fuser
    (identical without RTF); ``fused``: the stacked tokens ``[after_1, ..., after_M]`` (Sec. 4.2)
    that enter the Temporal Fuser.
    """
    torch = _import_torch()
    mods = list(modalities)
    specs = {}
    for m in mods:
        specs[f"{m}/before"] = lambda out, m=m: out.features[m]["before"]
        specs[f"{m}/after"] = lambda out, m=m: out.features[m]["after"]
    specs["fused"] = lambda out: torch.cat([out.features[m]["after"] for m in mods], dim=-1)
    return specs


#: Videos of the validation split (in split order) that ``train --monitor`` measures each epoch.
EPOCH_VIDEOS = 16


class EpochRanks:
    """Per-epoch effective ranks of an R3D run on a fixed validation subset (``RUN/ranks.csv``).

    The subset is the first ``n_videos`` videos of the validation split, each observed up to the
    largest evaluation ratio (``config.train.eval_obs``). When the model computes each video of a
    batch as it would alone (:attr:`rankfusion.model.R3D.videos_independent`: eval mode blends the
    channels chosen on the training rows) the videos go through padded forward passes of similar
    length (:func:`rankfusion.data.torchdata.length_batches`; one pass for 16 short videos), else
    one video per pass (RTF's channel choice is then a statistic of the evaluated batch); the valid
    rows are the same either way. Rows of all videos are pooled into one matrix per name. Measured
    in eval mode without autograd; the model's training state and every random-number stream are
    left as they were, so a run trains identically with or without it.

    Parameters
    ----------
    ds : rankfusion.data dataset
    config : RunConfig (resolved)
    device : torch.device
    path : path-like
        The CSV written after every :meth:`record` (whole history, atomically).
    n_videos : int
    previous : bool
        Keep rows of earlier epochs found in ``path`` (resume).
    """

    def __init__(self, ds, config, device, path, *, n_videos: int = EPOCH_VIDEOS, previous: bool = False):
        n_videos = check_int(n_videos, "n_videos", low=1)
        self.path = Path(path)
        self.modalities = list(config.model.modalities)
        self.obs = float(max(config.train.eval_obs))
        videos = list(ds.split("val"))[:n_videos]
        self.inputs = []
        for v in videos:
            stop = max(1, observed_frames(len(ds.labels(v)), self.obs))
            self.inputs.append(video_inputs(ds, v, self.modalities, stop, config.train.sample_rate, device))
        self.n_videos = len(self.inputs)
        # the padded passes used once the videos are independent (bounded like evaluation's)
        self.batches = [pad_videos([self.inputs[i] for i in idx])
                        for idx in length_batches([int(mask.shape[1]) for _, mask in self.inputs])]
        self.rows: list[dict] = []
        self._fields, self._lines = None, []  # the CSV lines of self.rows written so far, in order
        if previous:
            self._read_previous()

    def _read_previous(self):
        if self.path.exists():
            import pandas as pd

            self.rows = pd.read_csv(self.path).to_dict("records")

    @property
    def last_epoch(self) -> int:
        """The last epoch with rows (-1 for none): a resumed run records its starting weights when
        this is behind them (a kill after the checkpoint was committed, before its rows were written)."""
        return max((int(r["epoch"]) for r in self.rows), default=-1)

    def for_run(self, path, *, previous: bool = False) -> "EpochRanks":
        """The same videos (read once, shared) measured for another run: its own CSV at ``path``
        (``previous`` as in the constructor)."""
        import copy

        twin = copy.copy(self)
        twin.path = Path(path)
        twin.rows, twin._fields, twin._lines = [], None, []
        if previous:
            twin._read_previous()
        return twin

    def record(self, model, epoch: int) -> list[dict]:
        """Measure ``model`` now, label the rows ``epoch``, rewrite the CSV; returns the new rows."""
        torch = _import_torch()
        kept = [r for r in self.rows if int(r["epoch"]) < epoch]
        if len(kept) < len(self.rows):  # a re-recorded epoch: written lines no longer match the rows
            self._lines = []
        self.rows = kept
        if not self.inputs:
            return []
        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            with RankMonitor(model, r3d_modules(self.modalities), every=None, max_rows=None, mask=1) as mon:
                with torch.no_grad():
                    for feats, mask in self.batches if model.videos_independent else self.inputs:
                        model(feats, mask, return_features=True)
                new = mon.record(step=epoch)
        finally:
            model.train(was_training)
        seconds = time.perf_counter() - t0
        for r in new:
            modality, _, stage = r["name"].partition("/")
            # seconds: the whole measurement of this epoch (all names), to set against epoch_s
            r.update(epoch=r.pop("step"), modality=modality, stage=stage or "stacked",
                     split="val", obs=self.obs, n_videos=self.n_videos, seconds=seconds)
        self.rows += new
        self._write()
        return new

    def _write(self):
        # the csv module, not pandas: rewritten every epoch, this is part of the monitor's overhead
        import csv
        import io

        first = ["epoch", "name", "modality", "stage", "n_rows", "n_channels", "numerical_rank", "effective_rank"]
        fields = first + [c for c in self.rows[0] if c not in first]
        if self._fields != fields:
            self._fields, self._lines = fields, []
        # each row is formatted once, when first written (the rows only grow, or are cut at an epoch)
        lines = self._lines[: len(self.rows)]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
        for r in self.rows[len(lines):]:
            buf.seek(0)
            buf.truncate()
            w.writerow({k: (format(v, ".10g") if isinstance(v, float) else v) for k, v in r.items()})
            lines.append(buf.getvalue())
        self._lines = lines
        buf.seek(0)
        buf.truncate()
        w.writeheader()
        write_text(self.path, buf.getvalue() + "".join(lines))
