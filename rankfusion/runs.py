"""Run folders: seeds, checkpoints, recorded configurations, and loading a trained run.

A training run writes ``RUN/`` (one seed) or ``RUN/seed-<s>/`` folders with ``seeds.json``
(several seeds); each seed folder holds ``config.json``, ``checkpoints/{best,last}.pt``,
``metrics.csv`` and ``ranks.csv``. Training (:mod:`rankfusion.train`), evaluation
(:mod:`rankfusion.evaluate`) and export (:mod:`rankfusion.extract`) all read runs through here.
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

from ._validation import InputError, check_choice, option_name
from .config import RunConfig
from .data import open_dataset
from .model import R3D
from .remedies import attach_unimodal_heads


def resolve_device(device=None):
    """Return a ``torch.device``: ``None``/"cpu" -> CPU, "cuda[:N]" (must be available), "auto".

    Raises
    ------
    ValueError
        Naming ``device`` when it is unknown or CUDA is asked for but absent.
    """
    import torch

    if device is None:
        return torch.device("cpu")
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    return dev


#: What every checkpoint :func:`rankfusion.train.train` writes holds, ``best.pt`` and ``last.pt``
#: alike; ``last.pt`` also holds :data:`RESUME_KEYS` (and the random-number states).
CHECKPOINT_KEYS = ("model", "config", "config_hash", "seed", "dataset", "epoch")
RESUME_KEYS = ("optimizer", "scheduler", "history", "best")


def load_checkpoint(path, map_location="cpu", *, keys=CHECKPOINT_KEYS) -> dict:
    """Load a checkpoint written by :func:`train` (``weights_only``: no arbitrary code); a file
    that loads but lacks one of ``keys`` is refused in one line, as any other foreign file."""
    import torch

    path = Path(path)
    if not path.exists():
        raise InputError(f"checkpoint {str(path)!r} does not exist")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"cannot read checkpoint {str(path)!r}: the file is empty")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt / foreign file: a user error, one line
        text = str(exc).strip()
        if text.startswith("Weights only load failed"):
            # torch's advice (load it unsafely) is not for a file rankfusion should read: keep its reason only
            m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\s+Please use|\n\nCheck|$)", text, re.S)
            reason = "not a checkpoint rankfusion wrote" + (f" ({' '.join(m.group(1).split())})" if m else "")
        else:
            reason = text.splitlines()[0] if text else type(exc).__name__
            cut = isinstance(exc, EOFError) or "PytorchStreamReader" in text or (
                isinstance(exc, OSError) and exc.errno == errno.EINVAL)  # [Errno 22] on a cut zip archive
            if cut:
                reason = f"truncated or not a checkpoint ({reason})"
        raise InputError(f"cannot read checkpoint {str(path)!r}: {reason}") from None
    missing = list(keys) if not isinstance(ck, dict) else [k for k in keys if k not in ck]
    if missing:
        what = f"a {type(ck).__name__}, not a dict" if not isinstance(ck, dict) else "no " + ", ".join(map(repr, missing))
        raise InputError(f"cannot read checkpoint {str(path)!r}: not a checkpoint rankfusion wrote ({what})")
    return ck


def open_data(data_root, config, info: dict | None = None):
    """The dataset at ``data_root`` opened as the run of ``config`` reads it: its modalities, its
    split set (``config.train.split_set``).

    ``info`` (a trained run's, :func:`load_run`) pins a run trained on the dataset's default set
    to the set it resolved then (``info["split_set"]``), when ``data_root`` is the dataset it
    was trained on: a set added later that sorts first does not change what the run reads.
    Elsewhere, and for runs recorded without it, the default rule of
    :func:`rankfusion.data.open_dataset` applies.
    """
    split_set = config.train.split_set
    if split_set is None and info and info.get("split_set") and info.get("dataset") is not None \
            and Path(data_root).resolve() == Path(info["dataset"]).resolve():
        split_set = info["split_set"]
    return open_dataset(data_root, modalities=list(config.model.modalities), split_set=split_set)


def check_config_data(config: RunConfig, ds, classes=None) -> tuple[dict, int]:
    """The dataset's ``(input_dims, n_classes)`` for the config's modalities, checked against any
    values the config already holds (a trained run's: its model takes exactly those), and the
    dataset's class names against ``classes`` (the names a run was trained on, in label order), when given.

    Raises
    ------
    InputError
        Naming the first modality whose channel count differs, with both counts, both class
        counts, or the first class whose name differs.
    """
    dims = {m: int(ds.channels(m)) for m in config.model.modalities}
    n_classes = len(ds.classes)
    where = f"dataset {str(getattr(ds, 'root', ''))!r}"
    if config.model.input_dims is not None and dict(config.model.input_dims) != dims:
        have = dict(config.model.input_dims)
        m = next((m for m in dims if have.get(m) != dims[m]), None)
        if m is None:
            raise InputError(f"config input_dims {have} do not match the channels of {where}, {dims}")
        raise InputError(f"modality {m!r} has {dims[m]} channels in {where}, but the model takes "
                         f"{have.get(m)} (input_dims {have})")
    if config.model.n_classes is not None and config.model.n_classes != n_classes:
        raise InputError(f"config n_classes {config.model.n_classes} does not match the {n_classes} classes of {where}")
    if classes is not None and list(classes) != list(ds.classes):
        i = next((i for i, (a, b) in enumerate(zip(classes, ds.classes)) if a != b), min(len(classes), n_classes))
        ours = ds.classes[i] if i < n_classes else None
        raise InputError(f"class {i} is {ours!r} in {where} but {classes[i] if i < len(classes) else None!r} in the "
                         "run's training data: the model's outputs would be read as other actions")
    return dims, n_classes


def is_multi_seed(run_dir) -> bool:
    """True when ``run_dir`` holds several seeds (``seeds.json``)."""
    return (Path(run_dir) / "seeds.json").exists()


def recorded_seeds(run_dir) -> list[int]:
    """The seeds ``run_dir/seeds.json`` lists (a several-seed run folder)."""
    path = Path(run_dir) / "seeds.json"
    try:
        seeds = json.loads(path.read_text())["seeds"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read the seeds of {str(path)!r}: {type(exc).__name__}: {exc}") from None
    return seeds


def refuse_non_empty(run_dir) -> None:
    """Refuse a run folder that is a file, or a folder already holding anything: training would
    overwrite files of the same names (``config.json``, ``metrics.csv``, ...)."""
    shown = _held(Path(run_dir))
    if shown:
        raise InputError(f"run folder {str(run_dir)!r} is not empty (it holds {shown}): choose a new or empty folder"
                         f", or pass {option_name('resume=True', '--resume')} to continue a run there")


def _held(run_dir: Path, *, hidden: bool = True) -> str:
    """What a run folder holds, for a message (``'a', 'b', 'c' and 2 more``; "" when it is empty or
    missing; names starting with ``.`` left out unless ``hidden``); a file where the folder or one
    of its parents should be is refused, before the run says it has started."""
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"run folder {str(run_dir)!r} is a file, not a folder")
    blocking = next((p for p in run_dir.parents if p.exists()), None)
    if not run_dir.exists() and blocking is not None and not blocking.is_dir():
        raise InputError(f"run folder {str(run_dir)!r} cannot be made: {str(blocking)!r} is a file, not a folder")
    held = sorted(p.name for p in run_dir.iterdir() if hidden or not p.name.startswith(".")) if run_dir.is_dir() else []
    return ", ".join(repr(n) for n in held[:3]) + (f" and {len(held) - 3} more" if len(held) > 3 else "")


def refuse_non_run(run_dir) -> None:
    """``--resume`` into a folder with no checkpoint: train there only when it is empty or holds a run
    that stopped before its first checkpoint (a ``config.json`` that is a run's record); files of
    anything else would be overwritten (``config.json``, ``metrics.csv``, ...)."""
    run_dir = Path(run_dir)
    try:
        record = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        record = None
    if isinstance(record, dict) and "config_hash" in record:
        return
    # hidden files (.DS_Store, a temporary file a kill left) are not overwritten by a run
    shown = _held(run_dir, hidden=False)
    if shown:
        raise InputError(f"run folder {str(run_dir)!r} holds {shown} but no run to resume (no checkpoints/last.pt, "
                         "no run's config.json): choose a new or empty folder")


def check_run_folder(run_dir, seeds: list, resume: bool) -> None:
    """Refuse to train ``seeds`` into a folder that holds another run: a single-seed run where several
    seeds would go or the reverse, or other seeds (``--resume`` continues the seeds there and may add
    more; a seed it would leave out is refused). The folder of each seed is checked when it is
    prepared (an existing run needs ``--resume``)."""
    run_dir = Path(run_dir)
    single = run_dir / "checkpoints" / "last.pt"
    if len(seeds) > 1 and single.exists():
        raise InputError(f"run folder {str(run_dir)!r} holds a single-seed run ({single.relative_to(run_dir)}), "
                         f"not seeds {seeds}: choose another output folder")
    if not is_multi_seed(run_dir):
        if len(seeds) > 1 and not resume:
            refuse_non_empty(run_dir)
        return
    old = recorded_seeds(run_dir)
    if len(seeds) == 1:
        raise InputError(f"run folder {str(run_dir)!r} holds a several-seed run (seeds {old}), not a single "
                         f"seed {seeds[0]}: choose another output folder")
    if resume and set(old) <= set(seeds):
        return  # resumes the seeds there, trains the added ones; seeds.json then lists them all
    if old != seeds:
        left = sorted(set(old) - set(seeds))
        raise InputError(f"run folder {str(run_dir)!r} holds seeds {old}, not {seeds}"
                         + (f": --resume continues the seeds there and may add more, but would leave out {left}"
                            if resume else ""))


def pending_path(last_path) -> Path:
    """Where a batched run writes a seed's uncommitted epoch checkpoint, beside its ``last.pt``
    (:func:`settle_pending`)."""
    return Path(last_path).with_name("last.pending.pt")


def settle_pending(run_dirs) -> None:
    """Bring the resume checkpoints of a killed batched run to one epoch.

    The seeds of a batched run (:mod:`rankfusion.batched`) write their epoch's
    ``checkpoints/last.pending.pt`` one after another and only then rename them all to ``last.pt``.
    If every seed has its pending file (the kill came during the renames), the renames are
    completed; otherwise (the kill came while they were written) the pending files are removed and
    every seed resumes from its previous ``last.pt``. Either way all seeds resume from the same
    epoch, so a resumed run is the uninterrupted computation. Both trainers settle a several-seed
    folder before they resume it, so a batched run resumed one seed after another (``--serial-seeds``)
    leaves no pending file behind.
    """
    # a seed without a folder (added by this resume) took no part in the commit: every seed of a
    # batched run has its folder before the first epoch is trained
    pending = [pending_path(Path(d) / "checkpoints" / "last.pt") for d in run_dirs if Path(d).is_dir()]
    done = [p.with_name("last.pt") for p in pending]
    if not any(p.exists() for p in pending):
        return
    if all(p.exists() or (d.exists() and _epoch_of(d) == _epoch_of(next(q for q in pending if q.exists())))
           for p, d in zip(pending, done)):
        for p, d in zip(pending, done):
            if p.exists():
                os.replace(p, d)
    else:
        for p in pending:
            p.unlink(missing_ok=True)


def _epoch_of(path: Path) -> int:
    return int(load_checkpoint(path)["epoch"])


def seed_dirs(run_dir) -> list[Path]:
    """The single-seed run folders of ``run_dir`` (itself when it is a single-seed run)."""
    run_dir = Path(run_dir)
    if is_multi_seed(run_dir):
        return [run_dir / f"seed-{s}" for s in recorded_seeds(run_dir)]
    if not run_dir.is_dir():
        raise InputError(f"run folder {str(run_dir)!r} " + ("is a file, not a folder" if run_dir.exists()
                                                             else "does not exist"))
    if not (run_dir / "config.json").exists():
        raise InputError(f"run folder {str(run_dir)!r} has no config.json (not a training run)")
    return [run_dir]


def recorded_config_hash(run_dir) -> str:
    """The config hash a run recorded in ``config.json`` (its first seed's, for several seeds).

    It is :meth:`RunConfig.config_hash` of the configuration *resolved against the dataset*
    (input widths, class count), the value the checkpoints and ``--resume`` compare.
    """
    path = seed_dirs(run_dir)[0] / "config.json"
    try:
        return str(json.loads(path.read_text())["config_hash"])
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot read the config hash of {str(path)!r}: {exc}") from None


def load_run(run_dir, *, checkpoint: str = "best", device=None):
    """Load a single-seed run: ``(model in eval mode, RunConfig, info dict)``.

    ``info`` holds ``config_hash``, ``seed``, ``dataset``, ``epoch`` of the checkpoint,
    ``split_set``, the split set it was trained on, and ``classes``, the class names in label
    order (each None for a checkpoint that predates it).
    """
    check_choice(checkpoint, "checkpoint", {"best", "last"})
    run_dir = Path(run_dir)
    if is_multi_seed(run_dir):
        raise InputError(f"run folder {str(run_dir)!r} holds several seeds; pass one of its seed-* folders")
    dev = resolve_device(device)
    ck = load_checkpoint(run_dir / "checkpoints" / f"{checkpoint}.pt", map_location=dev)
    config = RunConfig.from_dict(ck["config"], source=f"{run_dir}/checkpoints/{checkpoint}.pt")
    model = R3D(config.model).to(dev)
    attach_unimodal_heads(model, config.train)  # a run trained with them keeps them in its weights
    model.load_state_dict(ck["model"])
    model.eval()
    info = {k: ck[k] for k in ("config_hash", "seed", "dataset", "epoch")}
    info["split_set"] = ck.get("split_set")
    info["classes"] = ck.get("classes")  # the class names it was trained on (None in older checkpoints)
    return model, config, info
