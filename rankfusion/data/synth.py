"""The bundled synthetic multi-modal activity dataset (``rankfusion data synth OUT``).

A kitchen routine around a dishwasher, generated from hidden per-frame factors so that what
each modality can see is known by construction (docs/datasets.md):

* a grammar over 12 actions (a Markov chain with gamma-distributed durations); after
  ``carry_dish`` the next action is ``load_dishwasher`` when the dish moves *toward* the
  dishwasher and ``place_on_shelf`` when it moves *away* (the paper's "loading vs unloading"
  example), and the direction is drawn afresh for every trip, so the past actions do not give it
  away;
* hidden factors per frame: action, object, direction of motion, location, motion energy,
  segment progress; per video: appearance (lighting/colour) and scene geometry (room layout);
* modalities are fixed random projections of the factors each one can see, plus structured
  (low-rank, temporally smooth) nuisance and white noise:

  ======  =============================================================  ======================
  name    sees                                                           cannot see
  ======  =============================================================  ======================
  rgb     action, object, appearance, a little location/motion/progress  direction, geometry
  depth   direction, geometry, location, motion, part of action/object   appearance
  mvrgb   a second RGB view: rgb's factors through another projection    direction, geometry
  imu     motion energy (with gait oscillation), a hint of action; noisy object, direction, scene
  text    action and object names, only in the first frames of ~60% of   everything else
          segments (narration); near zero elsewhere
  ======  =============================================================  ======================

RGB + depth is the most complementary pair by construction: the only factor that decides the
next action and RGB cannot see (direction) is carried by depth, and depth's appearance-free view
shares only part of the action subspace with RGB.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from .._validation import InputError, check_float, check_int
from ..io import atomic_dir

#: Action classes, in label-id order.
ACTIONS = (
    "walk",               # 0
    "open_dishwasher",    # 1
    "pick_dish",          # 2
    "carry_dish",         # 3  direction decides what follows
    "load_dishwasher",    # 4
    "unload_dishwasher",  # 5
    "place_on_shelf",     # 6
    "close_dishwasher",   # 7
    "take_cup",           # 8
    "pour_water",         # 9
    "drink",              # 10
    "wipe_counter",       # 11
)
A = {name: i for i, name in enumerate(ACTIONS)}

OBJECTS = ("none", "dish", "cup", "cloth", "door")
LOCATIONS = ("counter", "dishwasher", "shelf", "table")

#: Grammar: successor probabilities of each action. ``carry_dish`` is resolved by direction.
TRANSITIONS = {
    "walk": {"pick_dish": 0.45, "open_dishwasher": 0.25, "take_cup": 0.15, "wipe_counter": 0.15},
    "open_dishwasher": {"pick_dish": 0.6, "unload_dishwasher": 0.4},
    "pick_dish": {"carry_dish": 1.0},
    "carry_dish": {},  # toward -> load_dishwasher, away -> place_on_shelf
    "load_dishwasher": {"close_dishwasher": 0.7, "pick_dish": 0.3},
    "unload_dishwasher": {"carry_dish": 1.0},
    "place_on_shelf": {"take_cup": 0.7, "pick_dish": 0.3},
    "close_dishwasher": {"wipe_counter": 0.8, "walk": 0.2},
    "take_cup": {"pour_water": 0.9, "walk": 0.1},
    "pour_water": {"drink": 0.85, "walk": 0.15},
    "drink": {"walk": 0.7, "wipe_counter": 0.3},
    "wipe_counter": {"walk": 0.6, "open_dishwasher": 0.4},
}

#: Mean duration in frames of each action (gamma distributed, shape ``DURATION_SHAPE``).
MEAN_DURATION = {
    "walk": 90, "open_dishwasher": 45, "pick_dish": 45, "carry_dish": 65, "load_dishwasher": 75,
    "unload_dishwasher": 65, "place_on_shelf": 60, "close_dishwasher": 40, "take_cup": 40,
    "pour_water": 65, "drink": 75, "wipe_counter": 100,
}
DURATION_SHAPE = 8.0  # coefficient of variation 1/sqrt(8) ~ 0.35
MIN_DURATION = 5

OBJECT_OF = {
    "walk": "none", "open_dishwasher": "door", "close_dishwasher": "door", "pick_dish": "dish",
    "carry_dish": "dish", "load_dishwasher": "dish", "unload_dishwasher": "dish", "place_on_shelf": "dish",
    "take_cup": "cup", "pour_water": "cup", "drink": "cup", "wipe_counter": "cloth",
}
LOCATION_OF = {
    "open_dishwasher": "dishwasher", "close_dishwasher": "dishwasher", "load_dishwasher": "dishwasher",
    "unload_dishwasher": "dishwasher", "pick_dish": "counter", "carry_dish": "table",
    "place_on_shelf": "shelf", "take_cup": "table", "pour_water": "table", "drink": "table",
    "wipe_counter": "counter",
}  # walk: a random location per segment
MOTION_ENERGY = {
    "walk": 1.0, "open_dishwasher": 0.3, "pick_dish": 0.4, "carry_dish": 0.7, "load_dishwasher": 0.5,
    "unload_dishwasher": 0.5, "place_on_shelf": 0.4, "close_dishwasher": 0.3, "take_cup": 0.2,
    "pour_water": 0.2, "drink": 0.1, "wipe_counter": 0.6,
}

#: Latent factor blocks and their sizes.
BLOCKS = {"action": 12, "object": 5, "direction": 3, "appearance": 4, "geometry": 6, "location": 4,
          "motion": 3, "progress": 2}

#: Gain of each factor block in each modality (0 = the modality cannot see it), the noise levels
#: (structured nuisance, white noise) and the narration probability of ``text``.
MODALITY_GAINS = {
    "rgb": {"action": 1.0, "object": 1.0, "appearance": 0.8, "location": 0.3, "motion": 0.2, "progress": 0.4},
    "depth": {"action": 0.5, "object": 0.3, "direction": 1.2, "geometry": 1.0, "location": 1.0, "motion": 0.4,
              "progress": 0.4},
    "mvrgb": {"action": 1.0, "object": 1.0, "appearance": 0.8, "location": 0.4, "motion": 0.2, "progress": 0.4},
    "imu": {"action": 0.2, "motion": 1.0},
    "text": {"action": 1.0, "object": 0.5},
}
NOISE = {  # (nuisance scale, white-noise scale)
    "rgb": (0.5, 0.3), "depth": (0.5, 0.3), "mvrgb": (0.5, 0.35), "imu": (0.6, 1.0), "text": (0.0, 0.01),
}
N_NUISANCE = 8
NARRATION_PROB = 0.6
NARRATION_FRAMES = 3

#: The partner of rgb that carries what rgb cannot see (direction, geometry): the pairing that is
#: most complementary by construction (written to synth.json as "most_complementary").
MOST_COMPLEMENTARY = "depth"

DEFAULT_CHANNELS = {"rgb": 64, "depth": 64, "mvrgb": 64, "imu": 16, "text": 32}


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """Settings of :func:`synthesize` (written to ``synth.json`` in the dataset).

    Attributes
    ----------
    seed : int
        Seeds everything: the random projections and every video.
    n_videos : int
        Number of videos (split into train/val/test by ``split_fractions``).
    min_frames, max_frames : int
        Range of the per-video target length (uniform).
    channels : dict
        Channels per modality; its keys are the modalities written.
    split_fractions : tuple of float
        Train / val / test shares; each split gets at least one video.
    noise_scale : float
        Multiplies every modality's nuisance and white noise.
    split_set : str
        Name of the split set (``train.<split_set>.bundle``).
    """

    seed: int = 0
    n_videos: int = 60
    min_frames: int = 200
    max_frames: int = 900
    channels: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_CHANNELS))
    split_fractions: tuple = (0.7, 0.15, 0.15)
    noise_scale: float = 1.0
    split_set: str = "split1"

    def validate(self) -> "SynthConfig":
        check_int(self.seed, "seed", low=0)
        check_int(self.n_videos, "n_videos", low=3)
        check_int(self.min_frames, "min_frames", low=20)
        check_int(self.max_frames, "max_frames", low=self.min_frames)
        check_float(self.noise_scale, "noise_scale", low=0.0)
        if not isinstance(self.channels, dict) or not self.channels:
            raise InputError(f"channels must be a non-empty dict {{modality: channels}}, got {self.channels!r}")
        for m, c in self.channels.items():
            if m not in MODALITY_GAINS:
                raise InputError(f"channels: unknown modality {m!r}; choose from {sorted(MODALITY_GAINS)}")
            check_int(c, f"channels[{m!r}]", low=1)
        fr = tuple(self.split_fractions)
        if len(fr) != 3 or any(not isinstance(f, (int, float)) or f < 0 for f in fr) or not np.isclose(sum(fr), 1.0):
            raise InputError(f"split_fractions must be 3 non-negative numbers summing to 1, got {fr!r}")
        if not self.split_set or "." in self.split_set or "/" in self.split_set:
            raise InputError(f"split_set must be a plain name without '.' or '/', got {self.split_set!r}")
        return self


def _embeddings(rng, n, dim):
    # Unit-norm random codes: nearly orthogonal for n <= dim, so classes are separable but not trivially.
    e = rng.standard_normal((n, dim))
    return e / np.linalg.norm(e, axis=1, keepdims=True)


class _World:
    """The fixed part of the generator: factor codes and per-modality projections."""

    def __init__(self, rng, channels):
        self.action = _embeddings(rng, len(ACTIONS), BLOCKS["action"]) * np.sqrt(BLOCKS["action"] / 4)
        self.object = _embeddings(rng, len(OBJECTS), BLOCKS["object"]) * 1.5
        self.location = _embeddings(rng, len(LOCATIONS), BLOCKS["location"]) * 1.5
        self.direction = _embeddings(rng, 1, BLOCKS["direction"])[0] * 1.5
        self.proj, self.nuisance, self.bias = {}, {}, {}
        latent = sum(BLOCKS.values())
        for m, c in channels.items():
            # Random projection with a decaying column scale: a few strong directions, a long tail.
            w = rng.standard_normal((latent, c)) / np.sqrt(latent)
            w *= (1.0 + np.arange(c)) ** -0.3
            self.proj[m] = w[:, rng.permutation(c)]
            n = rng.standard_normal((N_NUISANCE, c)) / np.sqrt(N_NUISANCE)
            self.nuisance[m] = n * (0.6 ** np.arange(N_NUISANCE))[:, None] * np.sqrt(N_NUISANCE)
            self.bias[m] = 0.3 * rng.standard_normal(c)


def _sample_video(rng, target_len):
    """Segments of one video: list of (action, frames, direction) with frames summing to target_len."""
    segments = []
    action = rng.choice([A["walk"], A["open_dishwasher"], A["take_cup"], A["wipe_counter"]])
    trip_dir = 0
    total = 0
    while total < target_len:
        name = ACTIONS[action]
        if name == "pick_dish":
            trip_dir = 1 if rng.random() < 0.5 else -1  # fresh per trip: history does not reveal it
        elif name == "unload_dishwasher":
            trip_dir = -1
        if name in ("pick_dish", "carry_dish"):
            d = trip_dir
        elif name in ("load_dishwasher",):
            d = 1
        elif name in ("unload_dishwasher", "place_on_shelf"):
            d = -1
        elif name == "walk":
            d = 1 if rng.random() < 0.5 else -1  # a distractor: visible to depth, irrelevant to the grammar
        else:
            d = 0
        mean = MEAN_DURATION[name]
        frames = max(MIN_DURATION, int(round(rng.gamma(DURATION_SHAPE, mean / DURATION_SHAPE))))
        frames = min(frames, target_len - total)
        segments.append((int(action), frames, d))
        total += frames
        if name == "carry_dish":
            nxt = A["load_dishwasher"] if trip_dir > 0 else A["place_on_shelf"]
        else:
            succ = TRANSITIONS[name]
            nxt = A[rng.choice(list(succ), p=np.array(list(succ.values())))]
        action = nxt
    return segments


def _render(rng, world: _World, segments, config: SynthConfig):
    """Per-frame factors and the features of every modality for one video."""
    n = sum(f for _, f, _ in segments)
    act = np.empty(n, np.int16)
    obj = np.empty(n, np.int8)
    dirn = np.empty(n, np.int8)
    loc = np.empty(n, np.int8)
    prog = np.empty(n)
    narr = np.zeros(n, bool)
    t = 0
    for a, f, d in segments:
        name = ACTIONS[a]
        act[t:t + f] = a
        obj[t:t + f] = OBJECTS.index(OBJECT_OF[name])
        dirn[t:t + f] = d
        loc[t:t + f] = LOCATIONS.index(LOCATION_OF[name]) if name in LOCATION_OF else rng.integers(len(LOCATIONS))
        prog[t:t + f] = (np.arange(f) + 0.5) / f
        if rng.random() < NARRATION_PROB:
            narr[t:t + min(f, NARRATION_FRAMES)] = True
        t += f
    energy = np.array([MOTION_ENERGY[ACTIONS[a]] for a in range(len(ACTIONS))])[act]
    frames = np.arange(n)
    # A slowly drifting motion phase (gait / hand oscillation) that IMU and depth pick up.
    phase = 2 * np.pi * frames / 12.0 + rng.uniform(0, 2 * np.pi)
    blocks = {
        "action": world.action[act],
        "object": world.object[obj],
        "direction": dirn[:, None] * world.direction[None, :] * (0.6 + 0.8 * prog[:, None]),
        "appearance": np.broadcast_to(rng.standard_normal(BLOCKS["appearance"]), (n, BLOCKS["appearance"])),
        "geometry": np.broadcast_to(1.5 * rng.standard_normal(BLOCKS["geometry"]), (n, BLOCKS["geometry"])),
        "location": world.location[loc],
        "motion": np.stack([energy, energy * np.sin(phase), energy * np.cos(phase)], 1) * 1.5,
        "progress": np.stack([np.sin(np.pi * prog), np.cos(np.pi * prog)], 1),
    }
    feats = {}
    for m, c in config.channels.items():
        gains = MODALITY_GAINS[m]
        z = np.concatenate([blocks[b] * gains.get(b, 0.0) for b in BLOCKS], axis=1)
        x = z @ world.proj[m] + world.bias[m]
        nuis, white = (s * config.noise_scale for s in NOISE[m])
        if nuis > 0:
            # Smooth (AR(1), rho=0.95) low-rank nuisance: camera shake, lighting drift, sensor bias.
            u = lfilter([np.sqrt(1 - 0.95**2)], [1, -0.95], rng.standard_normal((n, N_NUISANCE)), axis=0)
            x += nuis * (u @ world.nuisance[m])
        if m == "text":
            x = np.where(narr[:, None], x, 0.0)  # narration only at segment starts
        if white > 0:
            e = lfilter([np.sqrt(1 - 0.5**2)], [1, -0.5], rng.standard_normal((n, c)), axis=0)
            x += white * e
        feats[m] = np.ascontiguousarray(x.T, dtype=np.float32)  # (channels, frames) as in FUTR
    factors = {"action": act, "object": obj, "direction": dirn, "location": loc}
    return feats, factors


def _split_counts(n, fractions):
    counts = [max(1, int(round(f * n))) for f in fractions[1:]]
    return [n - sum(counts), *counts]


def synthesize(out_dir, *, seed=0, n_videos=60, min_frames=200, max_frames=900, channels=None,
               split_fractions=(0.7, 0.15, 0.15), noise_scale=1.0, split_set="split1", overwrite=False,
               progress=False) -> Path:
    """Write the synthetic multi-modal activity dataset in the standard layout.

    The dataset is built in a temporary folder next to ``out_dir`` and renamed into place, so an
    interrupted run leaves nothing half-written. Deterministic: the same arguments give
    byte-identical labels, features, factors and splits (``synth.json`` also records the
    generation time).

    Parameters
    ----------
    out_dir : path-like
        Destination folder; must not exist unless ``overwrite``.
    seed : int
        Seed of the projections and of every video.
    n_videos : int
        Number of videos (>= 3).
    min_frames, max_frames : int
        Range of video lengths in frames.
    channels : dict or int, optional
        Channels per modality (its keys choose the modalities), or one int for all five;
        default ``DEFAULT_CHANNELS``.
    split_fractions : tuple of 3 float
        Train / val / test shares.
    noise_scale : float
        Multiplies all noise.
    split_set : str
        Split-set name used in the bundle file names.
    overwrite : bool
        Replace an existing ``out_dir``.
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    pathlib.Path
        ``out_dir``. It holds ``mapping.txt``, ``groundTruth/``, ``features/<modality>/``,
        ``splits/``, ``factors/<video>.npz`` (the hidden per-frame factors) and ``synth.json``.
    """
    if channels is None:
        channels = dict(DEFAULT_CHANNELS)
    elif isinstance(channels, (int, np.integer)) and not isinstance(channels, bool):
        channels = {m: int(channels) for m in DEFAULT_CHANNELS}
    cfg = SynthConfig(seed=seed, n_videos=n_videos, min_frames=min_frames, max_frames=max_frames,
                      channels=dict(channels), split_fractions=tuple(split_fractions), noise_scale=noise_scale,
                      split_set=split_set).validate()
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise InputError(f"output folder {str(out)!r} already exists; pass overwrite=True (--force) to replace it")
    t0 = time.perf_counter()
    with atomic_dir(out) as tmp:
        _write(tmp, cfg, progress)
        meta = {"generator": "rankfusion.data.synth", "config": dataclasses.asdict(cfg),
                "actions": list(ACTIONS), "transitions": TRANSITIONS, "mean_duration": MEAN_DURATION,
                "modality_gains": {m: MODALITY_GAINS[m] for m in cfg.channels},
                "reference_modality": "rgb",
                "most_complementary": MOST_COMPLEMENTARY if {"rgb", MOST_COMPLEMENTARY} <= set(cfg.channels) else None,
                "seconds": round(time.perf_counter() - t0, 3)}
        (tmp / "synth.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def _write(root: Path, cfg: SynthConfig, progress: bool):
    ss = np.random.SeedSequence(cfg.seed)
    world_seq, split_seq, *video_seqs = ss.spawn(2 + cfg.n_videos)
    world = _World(np.random.default_rng(world_seq), cfg.channels)
    (root / "groundTruth").mkdir()
    (root / "splits").mkdir()
    (root / "factors").mkdir()
    for m in cfg.channels:
        (root / "features" / m).mkdir(parents=True)
    (root / "mapping.txt").write_text("".join(f"{i} {a}\n" for i, a in enumerate(ACTIONS)))
    videos = [f"synth_{i:03d}" for i in range(cfg.n_videos)]
    it = zip(videos, video_seqs)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(videos), desc="synth", unit="video", leave=False)
    for video, seq in it:
        rng = np.random.default_rng(seq)
        target = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
        segments = _sample_video(rng, target)
        feats, factors = _render(rng, world, segments, cfg)
        (root / "groundTruth" / f"{video}.txt").write_text("".join(ACTIONS[a] + "\n" for a in factors["action"]))
        for m, x in feats.items():
            np.save(root / "features" / m / f"{video}.npy", x)
        with open(root / "factors" / f"{video}.npz", "wb") as fh:
            np.savez(fh, **factors)
    order = np.random.default_rng(split_seq).permutation(len(videos))
    n_train, n_val, n_test = _split_counts(len(videos), cfg.split_fractions)
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    for name, idx in parts.items():
        lines = "".join(f"{videos[i]}.txt\n" for i in sorted(idx))
        (root / "splits" / f"{name}.{cfg.split_set}.bundle").write_text(lines)
