"""Per-frame features of frame folders through an image backbone (torchvision's ResNet-50 by default).

``FRAMES/<video>/<frame files>`` (:mod:`rankfusion.data.frames`) become
``OUT/features/<modality>/<video>.npy``, float32 ``(channels, frames)`` as the layout stores
them (docs/datasets.md), and ``OUT/frames/<modality>/<video>.txt`` lists the frame files used,
one per feature column, so labels can be aligned.

Preprocessing, one frame at a time: colour images are scaled to [0, 1]; single-channel 8-bit
images likewise; other single-channel frames (16-bit depth in millimetres, OpenCV XML
matrices) are divided by ``depth_max`` and clipped to [0, 1] (or, with ``depth_max=None``,
scaled by their own minimum and maximum, as the official R3D preprocessing does), then
replicated to 3 channels.
The frame is resized to ``size`` x ``size`` (bilinear, antialiased; the whole frame, no crop)
and normalised with the ImageNet mean and standard deviation. The backbone's classification
head is removed (ResNet-50: the 2048-d global average pool, as in the paper's Sec. 4.1).

Nothing is downloaded: a torchvision backbone needs its weights as a file (``weights``), or
``random_weights=True`` (timing, tests). A backbone may also be a ``torch.export`` program
file (``.pt2``) or, from Python, any ``torch.nn.Module``. Each video is written atomically; a
rerun skips videos already written, and refuses to mix settings (``featurize_<modality>.json``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import InputError, check_folder, check_int, option_name
from ..files import atomic_path, read_text, write_text
from .frames import list_frames, read_frame

#: ImageNet channel statistics the torchvision weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Default backbone (torchvision model name) and input size.
DEFAULT_BACKBONE = "resnet50"
DEFAULT_SIZE = 224
#: Default depth scale: Kinect depth in millimetres, 8 m at most.
DEFAULT_DEPTH_MAX = 8000.0
VISION_EXTRA_HINT = "pip install 'rankfusion[vision]' (torchvision built for the installed torch)"


def _torchvision_models():
    """``torchvision.models``, or an InputError naming the ``vision`` extra."""
    try:
        import torchvision.models as models
    except Exception as exc:  # ImportError, or a torchvision built for another torch (RuntimeError)
        raise InputError(f"torchvision backbones need torchvision, which cannot be imported "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}): {VISION_EXTRA_HINT}; "
                         "or pass a torch.export program (.pt2) as --backbone") from None
    return models


def _strip_head(model, name):
    for attr in ("fc", "classifier", "heads", "head"):
        if isinstance(getattr(model, attr, None), torch.nn.Module):
            setattr(model, attr, torch.nn.Identity())
            return model
    raise InputError(f"backbone {name!r}: no classification head (fc, classifier, heads, head) to remove")


def load_backbone(name=DEFAULT_BACKBONE, *, weights=None, random_weights=False):
    """The feature extractor: a torchvision model without its head, or a ``.pt2`` program.

    Parameters
    ----------
    name : str
        A torchvision model name (``resnet50``, ``resnet18``, ...) or the path of a
        ``torch.export`` program file (``.pt2``) mapping ``(B, 3, H, W)`` normalised images
        to ``(B, C)`` features.
    weights : path-like, optional
        State dict (``torch.save``) of the torchvision model, e.g. the file of torchvision's
        ``ResNet50_Weights.IMAGENET1K_V2``.
    random_weights : bool
        Use a randomly initialised torchvision model (for timing and tests only).

    Returns
    -------
    torch.nn.Module
        In evaluation mode.
    """
    if str(name).endswith(".pt2"):
        if weights is not None or random_weights:
            given = option_name("weights", "--weights") if weights is not None else option_name(
                "random_weights", "--random-weights")
            raise InputError(f"{given} applies to torchvision backbones; {str(name)!r} holds its own weights")
        if not Path(name).is_file():
            raise InputError(f"backbone program {str(name)!r} does not exist")
        # torch.export logs a foreign file's traceback as a warning before raising: the Error line says it
        log = logging.getLogger("torch.export")
        level = log.level
        log.setLevel(logging.ERROR)
        try:
            return torch.export.load(str(name)).module()
        except Exception as exc:  # a foreign file: the user's input
            raise InputError(f"cannot load backbone program {str(name)!r}: {str(exc).splitlines()[0]}") from None
        finally:
            log.setLevel(level)
    if weights is None and not random_weights:
        raise InputError(f"backbone {name!r} needs its weights as a file (--weights FILE; nothing is downloaded), "
                         "or --random-weights for timing")
    if weights is not None and random_weights:
        raise InputError(f"give {option_name('weights', '--weights FILE')} or "
                         f"{option_name('random_weights=True', '--random-weights')}, not both (random weights would "
                         "not be used)")
    if weights is not None and not Path(weights).is_file():
        raise InputError(f"weights file {str(weights)!r} does not exist")
    models = _torchvision_models()
    try:
        model = models.get_model(name, weights=None)
    except ValueError:
        raise InputError(f"unknown torchvision backbone {name!r}") from None
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except (OSError, RuntimeError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"cannot load weights {str(weights)!r} into {name!r}: {str(exc).splitlines()[0]}") from None
    return _strip_head(model, name).eval()


def scale_depth(frame: np.ndarray, depth_max=DEFAULT_DEPTH_MAX) -> np.ndarray:
    """A single-channel frame in [0, 1], float32: 8-bit / 255; else / ``depth_max``, clipped;
    ``depth_max=None``: per-frame min-max (a constant frame becomes 0), as the official code does."""
    x = frame.astype(np.float32)
    if frame.dtype == np.uint8:
        return x / 255.0
    if depth_max is None:
        lo, hi = float(x.min()), float(x.max())
        return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return np.clip(x / depth_max, 0.0, 1.0)


def to_input(frame: np.ndarray, *, size=DEFAULT_SIZE, depth_max=DEFAULT_DEPTH_MAX) -> torch.Tensor:
    """One frame -> a normalised ``(3, size, size)`` float32 tensor (module docstring)."""
    if frame.ndim == 3:
        x = torch.from_numpy(np.ascontiguousarray(frame[..., :3], dtype=np.float32) / 255.0).permute(2, 0, 1)
    else:
        x = torch.from_numpy(scale_depth(frame, depth_max)).expand(3, -1, -1)
    x = F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def strided(files: list, stride: int, video="") -> list:
    """Every ``stride``-th frame from the first, ``floor(T / stride)`` of them (the paper's Sec. 4.1)."""
    kept = files[: (len(files) // stride) * stride : stride]
    if not kept:
        raise InputError(f"video {str(video)!r} has {len(files)} frames, fewer than stride={stride}")
    return kept


def _settings(backbone, weights, stride, size, depth_max):
    return {"backbone": backbone if isinstance(backbone, str) else type(backbone).__name__,
            "weights": None if weights is None else os.path.basename(str(weights)),
            "stride": stride, "size": size, "depth_max": depth_max, "imagenet_mean": list(IMAGENET_MEAN),
            "imagenet_std": list(IMAGENET_STD)}


def _check_settings(path: Path, settings: dict, feat_dir: Path) -> bool:
    """Refuse settings other than those of the modality's features already written; True when
    ``path`` is to be (re)written, which :func:`_run` does with the first video it writes (a run
    that fails before it leaves no record to refuse the corrected rerun)."""
    if not path.is_file():
        made = sorted(p.name for p in feat_dir.glob("*.npy"))
        if made:
            raise InputError(f"{str(feat_dir)!r} holds {len(made)} feature file(s) (e.g. {made[0]!r}) that no "
                             f"{path.name} records as made by featurize: write to another OUT or remove them")
        return True
    text = read_text(path, "settings record")
    try:
        old = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"settings record {str(path)!r} is not valid JSON ({exc}): remove it and that modality's "
                         "features, or write to another OUT") from None
    if not isinstance(old, dict):
        raise InputError(f"settings record {str(path)!r} must be a JSON object, got {type(old).__name__}: remove it "
                         "and that modality's features, or write to another OUT")
    if old == settings:
        return False
    if any(feat_dir.glob("*.npy")):
        diff = sorted(k for k in settings if old.get(k) != settings[k])
        raise InputError(f"{str(path)!r} records features made with other settings ({', '.join(diff)}); "
                         "write to another OUT or remove that modality's features")
    return True  # a record without features (written before this rule): nothing was made with it


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"device must be cpu, cuda, cuda:N or auto, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r}: no CUDA device is available")
    return dev


@torch.inference_mode()
def featurize_video(model, files, *, batch_size=32, size=DEFAULT_SIZE, depth_max=DEFAULT_DEPTH_MAX,
                    device="cpu", bar=None) -> np.ndarray:
    """Features of the frame files ``files`` in order, float32 ``(frames, channels)``.

    :class:`InputError` when the frames are not all of one kind (colour, or single-channel of one
    element type: each kind is scaled differently) or the backbone does not give a ``(B, C)`` or
    ``(B, C, 1, 1)`` tensor."""
    out, first = [], None
    for i in range(0, len(files), batch_size):
        frames = []
        for f in files[i:i + batch_size]:
            frame = read_frame(f)
            kind = _frame_kind(frame)
            first = first or (kind, f)
            if kind != first[0]:
                raise InputError(f"frame {f.name!r} is {kind}, frame {first[1].name!r} {first[0]}: keep one kind of "
                                 "frame per video (each kind is scaled differently)")
            frames.append(to_input(frame, size=size, depth_max=depth_max))
        y = model(torch.stack(frames).to(device))
        out.append(_pooled(y, len(frames)).float().cpu().numpy())
        if bar is not None:
            bar.update(len(frames))
    return np.concatenate(out)


def _frame_kind(frame: np.ndarray) -> str:
    return "colour (8-bit)" if frame.ndim == 3 else f"single-channel {frame.dtype}"


def _pooled(y, batch: int):
    """A backbone's output as ``(B, C)``: refused unless it is ``(B, C)`` or ``(B, C, 1, 1)``."""
    if not isinstance(y, torch.Tensor):
        raise InputError(f"the backbone returned a {type(y).__name__}, not a tensor of shape (B, C)")
    if y.shape[0] != batch or not (y.dim() == 2 or (y.dim() == 4 and y.shape[2:] == (1, 1))):
        raise InputError(f"the backbone returned shape {tuple(y.shape)} for {batch} frames; it must give (B, C) or "
                         "(B, C, 1, 1): pool its feature map (e.g. global average pooling)")
    return y.reshape(batch, -1)


def featurize(frames_dir, out_dir, modality, *, backbone=DEFAULT_BACKBONE, weights=None, random_weights=False,
              stride=1, batch_size=32, size=DEFAULT_SIZE, depth_max=DEFAULT_DEPTH_MAX, device="cpu",
              progress=False) -> dict:
    """Write per-frame features of every video folder of ``frames_dir`` as modality ``modality``.

    Parameters
    ----------
    frames_dir : path-like
        ``FRAMES/<video>/`` folders of frame files.
    out_dir : path-like
        Dataset folder; features go to ``OUT/features/<modality>/<video>.npy``.
    modality : str
        Modality name (letters, digits, ``_``, ``-``).
    backbone : str or torch.nn.Module
        torchvision model name, ``.pt2`` program path, or a module mapping ``(B, 3, size, size)``
        to ``(B, C)`` (or ``(B, C, 1, 1)``).
    weights, random_weights
        See :func:`load_backbone` (torchvision names only).
    stride : int
        Keep every ``stride``-th frame from the first, ``floor(T / stride)`` frames (the paper's
        temporal stride tau, Sec. 4.1).
    batch_size, size, depth_max, device, progress
        Frames per forward pass, input side in pixels, depth scale (None: per-frame min-max),
        torch device, progress bar.

    Returns
    -------
    dict
        ``{"written": [videos], "skipped": [videos], "frames": frames encoded, "channels": C}``.
    """
    if not isinstance(modality, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", modality):
        raise InputError(f"{option_name('modality', '--modality')} must use letters, digits, '_' or '-', got {modality!r}")
    stride = check_int(stride, option_name("stride", "--stride"), low=1)
    batch_size = check_int(batch_size, option_name("batch_size", "--batch-size"), low=1)
    size = check_int(size, option_name("size", "--size"), low=8)
    if depth_max is not None and not depth_max > 0:
        raise InputError(f"{option_name('depth_max', '--depth-max')} must be positive or "
                         f"{option_name('None', 'minmax')} (per-frame min-max), got {depth_max!r}")
    frames_dir, out_dir = Path(frames_dir), Path(out_dir)
    check_folder(frames_dir, "frames folder")
    videos = _video_folders(frames_dir, out_dir)
    if not videos:
        raise InputError(f"frames folder {str(frames_dir)!r} holds no <video>/ folders")
    plan = {v.name: strided(list_frames(v), stride, v.name) for v in videos}
    dev = _device(device)
    model = backbone if isinstance(backbone, torch.nn.Module) else load_backbone(
        backbone, weights=weights, random_weights=random_weights)
    model = model.to(dev)
    record = out_dir / f"featurize_{modality}.json", _settings(backbone, weights, stride, size, depth_max)
    if not _check_settings(*record, out_dir / "features" / modality):
        record = None
    return _run(model, plan, out_dir, modality, batch_size=batch_size, size=size, depth_max=depth_max, device=dev,
                progress=progress, record=record)


def _video_folders(frames_dir: Path, out_dir: Path) -> list:
    """The ``<video>/`` folders of ``frames_dir``, less what this command writes: a folder that is
    ``out_dir`` or holds it, and, when ``out_dir`` is ``frames_dir``, its ``features/`` and
    ``frames/`` (so that a rerun skips the videos done instead of reading its own output)."""
    out_real = Path(os.path.realpath(out_dir))
    own = ("features", "frames") if out_real == Path(os.path.realpath(frames_dir)) else ()
    videos = []
    for p in sorted(frames_dir.iterdir()):
        if not p.is_dir() or p.name.startswith(".") or p.name in own:
            continue
        if out_real.is_relative_to(os.path.realpath(p)):
            continue
        videos.append(p)
    return videos


def _run(model, plan, out_dir, modality, *, batch_size, size, depth_max, device, progress, record=None):
    from tqdm import tqdm

    feat_dir, list_dir = out_dir / "features" / modality, out_dir / "frames" / modality
    todo = {v: files for v, files in plan.items() if not (feat_dir / f"{v}.npy").is_file()}
    done = {"written": [], "skipped": sorted(set(plan) - set(todo)), "frames": 0, "channels": None}
    bar = tqdm(total=sum(len(f) for f in todo.values()), unit="frame", desc=f"featurize {modality}",
               disable=not progress, leave=False)
    with bar:
        for video, files in todo.items():
            try:
                x = featurize_video(model, files, batch_size=batch_size, size=size, depth_max=depth_max,
                                    device=device, bar=bar)
            except (RuntimeError, AssertionError) as exc:  # the backbone refuses the input (e.g. a fixed size)
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise InputError(f"video {video!r}: the backbone failed on its frames: {msg}") from None
            except InputError as exc:
                raise InputError(f"video {video!r}: {exc}") from None
            if not np.isfinite(x).all():
                t = int(np.argwhere(~np.isfinite(x))[0, 0])
                raise InputError(f"video {video!r}: the backbone gave a non-finite feature at frame {t} ({files[t].name})")
            if record is not None:  # the settings, with the first video made with them
                write_text(record[0], json.dumps(record[1], indent=2) + "\n")
                record = None
            write_text(list_dir / f"{video}.txt", "".join(f.name + "\n" for f in files))
            with atomic_path(feat_dir / f"{video}.npy") as tmp:
                np.save(tmp, np.ascontiguousarray(x.T.astype(np.float32)))
            done["written"].append(video)
            done["frames"] += len(files)
            done["channels"] = x.shape[1]
    return done
