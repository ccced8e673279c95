"""The bundled synthetic multi-modal activity dataset (``rankfusion data synth OUT``).

A kitchen routine around a dishwasher, generated from hidden per-frame factors so that what
each modality can see is known by construction (docs/datasets.md):

* a grammar over 12 actions (a Markov chain with gamma-distributed durations that scale with the
  video's length); after ``carry_dish`` the next action is ``load_dishwasher`` when the dish moves
  *toward* the dishwasher and ``place_on_shelf`` when it moves *away* (the paper's "loading vs
  unloading" example), and the direction is drawn afresh for every trip, so the past actions do
  not give it away;
* dials make the benchmark an instrument (docs/datasets.md, "Dials"):
  ``complementarity`` C is the share of evaluation cut points (observation ratios 0.2 / 0.3)
  that end inside such a trip, so that only the direction decides what comes next;
  ``nuisance`` N is the energy of per-video constants (appearance, scene geometry) relative to
  the per-frame signal; ``imbalance`` R makes the partner's signal-to-noise ratio R^2 times
  lower than the anchor's; ``collapse`` K (off by default) codes the direction ever harder to
  read beside an easy partial hint in the anchor; ``spurious`` S (off by default) gives the anchor
  a cue of the direction that is right with probability (1 + S) / 2 in training and tells nothing
  in validation and test;
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
  noise   nothing: Gaussian, with depth's column means and covariance    everything
  imu     motion energy (with gait oscillation), a hint of action; noisy object, direction, scene
  text    action and object names, only in the first frames of ~60% of   everything else
          segments (narration); near zero elsewhere
  ======  =============================================================  ======================

RGB + depth is the most complementary pair by construction: the only factor that decides the
next action and RGB cannot see (direction) is carried by depth. ``mvrgb`` (redundant view) and
``noise`` (spectrum-matched, task-free) are the controls of every fusion comparison.
:func:`oracle_accuracy` gives the best next-action accuracy each modality subset allows.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np

from .._progress import bar_disabled
from .._validation import InputError, check_float, check_int, option_name
from ..config import EVAL_OBS_RATIOS, TRAIN_OBS_RATIOS, observed_frames
from ..files import atomic_dir
from ..spectral import GramAccumulator
from .layout import check_split_set_name

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
#: Actions a video may start with, and the actions the grammar lets ``pick_dish`` follow.
START_ACTIONS = ("walk", "open_dishwasher", "take_cup", "wipe_counter")
BEFORE_PICK = tuple(a for a, succ in TRANSITIONS.items() if "pick_dish" in succ)

#: Mean duration of each action in frames of a video of ``REFERENCE_LENGTH`` frames (gamma
#: distributed, shape ``DURATION_SHAPE``); durations scale with the video's length, so every
#: video holds ~7 segments and the cut points 0.2 / 0.3 / 0.5 fall 1-2 segments apart.
MEAN_DURATION = {
    "walk": 90, "open_dishwasher": 45, "pick_dish": 45, "carry_dish": 65, "load_dishwasher": 75,
    "unload_dishwasher": 65, "place_on_shelf": 60, "close_dishwasher": 40, "take_cup": 40,
    "pour_water": 65, "drink": 75, "wipe_counter": 100,
}
REFERENCE_LENGTH = 400
DURATION_SHAPE = 8.0  # coefficient of variation 1/sqrt(8) ~ 0.35
MIN_DURATION = 5

#: Observation ratios whose cut points ``complementarity`` controls: the evaluation ratios of the
#: MoC protocol (docs/datasets.md). A cut point ``int(obs * N)`` is *decision-bearing* when its last
#: observed frame lies inside a ``pick_dish -> carry_dish`` trip. The training-only ratio 0.5 is
#: left to the grammar: a trip forced across it would put a fresh, unforeseeable direction inside
#: the future windows of the 0.2 / 0.3 cut points and squeeze their decided segment to a few frames.
CUT_OBS = EVAL_OBS_RATIOS
#: Ratios reported in ``synth.json`` (``decision_bearing_share_by_obs``, ``oracle_by_obs``).
REPORT_OBS = TRAIN_OBS_RATIOS
#: Where a forced trip's carry holds the cut point: fraction of the carry observed before it.
CUT_IN_CARRY = (0.4, 0.9)
#: Consecutive decision-bearing cut points closer than this fraction of the video share one carry.
GROUP_GAP = 0.15

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

#: Latent factor blocks and their sizes. ``appearance`` and ``geometry`` are per-video constants.
BLOCKS = {"action": 12, "object": 5, "direction": 3, "appearance": 4, "geometry": 6, "location": 4,
          "motion": 3, "progress": 2}
#: The per-video constant each modality sees (its energy is set by ``nuisance``).
CONSTANT_OF = {"rgb": "appearance", "mvrgb": "appearance", "depth": "geometry"}

#: Gain of each per-frame factor block in each modality (0 / absent = the modality cannot see it).
MODALITY_GAINS = {
    "rgb": {"action": 1.0, "object": 1.0, "location": 0.3, "motion": 0.2, "progress": 0.4},
    "depth": {"action": 0.5, "object": 0.3, "direction": 1.2, "location": 1.0, "motion": 0.4, "progress": 0.4},
    "mvrgb": {"action": 1.0, "object": 1.0, "location": 0.4, "motion": 0.2, "progress": 0.4},
    "noise": {},
    "imu": {"action": 0.2, "motion": 1.0},
    "text": {"action": 1.0, "object": 0.5},
}
#: Shape of each modality's noise: (structured nuisance, white noise) amplitudes before the
#: signal-to-noise scaling of ``SNR``.
NOISE = {
    "rgb": (0.5, 0.3), "depth": (0.5, 0.3), "mvrgb": (0.5, 0.35), "imu": (0.6, 1.0), "text": (0.0, 0.01),
}
#: Per-channel signal-to-noise energy ratio of each modality at ``imbalance=1`` and
#: ``noise_scale=1``; the partner's is divided by ``imbalance**2``. ``text`` keeps fixed absolute
#: noise (it is zero outside narration).
SNR = {"rgb": 4.0, "depth": 4.0, "mvrgb": 4.0, "imu": 0.5}
N_NUISANCE = 8
NARRATION_PROB = 0.6
NARRATION_FRAMES = 3

#: The anchor and the partner of rgb that carries what rgb cannot see (direction): the pairing
#: that is most complementary by construction (written to synth.json as "most_complementary").
ANCHOR = "rgb"
MOST_COMPLEMENTARY = "depth"
#: The spectrum-matched control: it copies this modality's column means and covariance.
NOISE_TWIN_OF = "depth"

DEFAULT_CHANNELS = {"rgb": 64, "depth": 64, "mvrgb": 64, "noise": 64, "imu": 16, "text": 32}
#: Default size and split: 126 training and 101 test videos. With 84 / 18 (and 84 / 67) the
#: rgb+depth - rgb gap at complementarity 0, where depth adds nothing, scattered between dataset
#: seeds by more than the training seeds' spread (which videos were tested, and which
#: architecture happened to fit a small training set better); at this size it stays within
#: -1.3 ... +0.1 MoC on five dataset seeds, and a dataset still trains in under 3 minutes on 2
#: cores with the ``synthetic-small`` preset (docs/benchmarks.md, "Dials").
DEFAULT_VIDEOS, DEFAULT_MIN_FRAMES, DEFAULT_MAX_FRAMES = 252, 150, 350
DEFAULT_SPLIT = (0.5, 0.1, 0.4)
#: Defaults of the dials (docs/datasets.md, "Dials"; calibration in docs/benchmarks.md).
DEFAULT_COMPLEMENTARITY = 1.0
DEFAULT_NUISANCE = 0.1
DEFAULT_IMBALANCE = 1.0
#: Largest ``noise_scale``: features are stored as float32 (largest value ~3.4e38), and at 1e6 the
#: signal-to-noise energy is already below 1e-12 (pure noise).
MAX_NOISE_SCALE = 1e6
#: Peak memory of generation per frame of the longest video and channel, and per video (kept
#: for the ground truth): measured ~18 B and ~1.8 KiB (peak RSS, 3 videos of 20 000 / 60 000
#: frames, 200 / 2000 videos of 20 frames); taken with margin.
BYTES_PER_FRAME_CHANNEL, BYTES_PER_VIDEO = 24, 4096

#: The collapse dial (``collapse`` K in [0, 1]; off by default; docs/datasets.md, "Collapse").
#: With the dial on, the anchors (rgb, mvrgb) see a *hint* of each trip's direction, right with
#: probability ``HINT_ACCURACY`` at every K, and depth codes the direction linearly with gain
#: ``DIRECTION_GAIN * (1 - K)`` plus as the product of two latent signs (an XOR, gain
#: ``XOR_GAIN * K``); the hint's gain rises from ``HINT_GAIN[0]`` (K = 0: the gain of depth's
#: linear code) to ``HINT_GAIN[1]`` (K = 1). Equal gains are not equal signals: the dial's
#: projections lack the factor projections' decaying column scale, so at K = 0 the hint already
#: carries 4-8 times the per-channel energy of depth's linear code (docs/datasets.md, "Collapse").
#: What each subset can know is the same at
#: every K, only how easily it is read changes: the oracle and the partner-only cut points do
#: not depend on K.
HINT_ACCURACY = 0.9
DIRECTION_GAIN = MODALITY_GAINS["depth"]["direction"]
HINT_GAIN = (DIRECTION_GAIN, 3.0)
XOR_GAIN = 0.3
#: Modalities that see the hint (the anchor and its second view) and the one that sees the XOR code.
HINT_SEEN_BY = ("rgb", "mvrgb")
XOR_SEEN_BY = MOST_COMPLEMENTARY
#: Sizes of the hint's and the XOR code's latent blocks (projected by their own random matrices).
HINT_DIM, XOR_DIM = 3, 4
#: Spawn-key suffix of the dial's own random streams: the dial draws nothing from the streams the
#: rest of the dataset uses, so a dataset with the dial off is the dataset without it.
_DIAL_KEY = 7919

#: The spurious-cue dial (``spurious`` S in [0, 1]; off by default; docs/datasets.md, "Spurious
#: cue"): the colored-MNIST set-up of the greedy-learner papers. With it on, the anchors see a *cue*
#: of each trip's direction, right with probability ``(1 + S) / 2`` in the training split's videos
#: and 1/2 (no information) in validation and test videos; depth keeps its code. The cue's gain is
#: the collapse hint's at K = 1, projected like the hint: far stronger than depth's direction code,
#: so the cue is the easier read.
SPURIOUS_GAIN = HINT_GAIN[1]
SPURIOUS_SEEN_BY = HINT_SEEN_BY
#: Size of the cue's latent block (projected by its own random matrices).
CUE_DIM = 3
#: Spawn-key suffix of the spurious cue's own random streams (not the collapse dial's).
_SPURIOUS_KEY = 7927


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
    complementarity : float in [0, 1]
        Probability that a cut point ``int(obs * N)``, obs in ``CUT_OBS``, is decision-bearing.
    nuisance : float >= 0
        Expected energy of the per-video constant relative to the per-frame signal (latent space).
    imbalance : float >= 1
        Anchor-to-partner ratio of signal-to-noise *amplitude* (energy ratio ``imbalance**2``).
    collapse : float in [0, 1] or None
        Level K of the collapse dial; None: the dial is off (no hint, depth's code linear).
    spurious : float in [0, 1] or None
        Level S of the spurious cue; None: off (no cue).
    """

    seed: int = 0
    n_videos: int = DEFAULT_VIDEOS
    min_frames: int = DEFAULT_MIN_FRAMES
    max_frames: int = DEFAULT_MAX_FRAMES
    channels: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_CHANNELS))
    split_fractions: tuple = DEFAULT_SPLIT
    noise_scale: float = 1.0
    split_set: str = "split1"
    complementarity: float = DEFAULT_COMPLEMENTARITY
    nuisance: float = DEFAULT_NUISANCE
    imbalance: float = DEFAULT_IMBALANCE
    collapse: float | None = None
    spurious: float | None = None

    def validate(self) -> "SynthConfig":
        check_int(self.seed, option_name("seed", "--seed"), low=0)
        check_int(self.n_videos, option_name("n_videos", "--videos"), low=3)
        check_int(self.min_frames, option_name("min_frames", "--min-frames"), low=20)
        check_int(self.max_frames, option_name("max_frames", "--max-frames"), low=self.min_frames)
        check_float(self.noise_scale, option_name("noise_scale", "--noise-scale"), low=0.0, high=MAX_NOISE_SCALE)
        for dial, low, high in (("complementarity", 0.0, 1.0), ("nuisance", 0.0, 100.0), ("imbalance", 1.0, 100.0),
                                ("collapse", 0.0, 1.0), ("spurious", 0.0, 1.0)):
            # the collapse and spurious dials are off (None) unless given
            check_float(getattr(self, dial), option_name(dial, f"--{dial}"), low=low, high=high,
                        allow_none=dial in ("collapse", "spurious"))
        if not isinstance(self.channels, dict) or not self.channels:
            raise InputError(f"channels must be a non-empty dict {{modality: channels}}, got {self.channels!r}")
        channels = option_name("channels", "--channels")
        for m, c in self.channels.items():
            if m not in MODALITY_GAINS:
                raise InputError(f"{channels}: unknown modality {m!r}; choose from {sorted(MODALITY_GAINS)}")
            check_int(c, option_name(f"channels[{m!r}]", f"--channels {m}"), low=1)
        if "noise" in self.channels and self.channels.get(NOISE_TWIN_OF) != self.channels["noise"]:
            raise InputError(f"{channels}: modality 'noise' copies the spectrum of {NOISE_TWIN_OF!r} and needs it with "
                             f"the same channels, got noise={self.channels['noise']}, "
                             f"{NOISE_TWIN_OF}={self.channels.get(NOISE_TWIN_OF)}")
        fr = tuple(self.split_fractions)
        if len(fr) != 3 or any(not isinstance(f, (int, float)) or f < 0 for f in fr) or not np.isclose(sum(fr), 1.0):
            raise InputError(f"{option_name('split_fractions', '--split')} must be 3 non-negative numbers summing to 1, "
                             f"got {fr!r}")
        n_train, n_val, n_test = _split_counts(self.n_videos, fr)
        if n_train < 1:  # val and test are raised to one video each
            raise InputError(f"{option_name('split_fractions', '--split')} {','.join(f'{f:g}' for f in fr)} on "
                             f"{self.n_videos} videos leaves train without a video: val and test take {n_val} and "
                             f"{n_test} of the {self.n_videos} (every split gets at least one video of its own)")
        check_split_set_name(self.split_set)
        return self


# ----------------------------------------------------------------------------- the world
def _embeddings(rng, n, dim):
    # Unit-norm random codes: nearly orthogonal for n <= dim, so classes are separable but not trivially.
    e = rng.standard_normal((n, dim))
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def _slices():
    out, i = {}, 0
    for b, size in BLOCKS.items():
        out[b] = slice(i, i + size)
        i += size
    return out


SLICES = _slices()
LATENT = sum(BLOCKS.values())


class _World:
    """The fixed part of the generator: factor codes, per-modality projections and noise amplitudes."""

    def __init__(self, rng, channels):
        self.action = _embeddings(rng, len(ACTIONS), BLOCKS["action"]) * np.sqrt(BLOCKS["action"] / 4)
        self.object = _embeddings(rng, len(OBJECTS), BLOCKS["object"]) * 1.5
        self.location = _embeddings(rng, len(LOCATIONS), BLOCKS["location"]) * 1.5
        self.direction = _embeddings(rng, 1, BLOCKS["direction"])[0] * 1.5
        self.proj, self.nuisance, self.bias, self.amplitude = {}, {}, {}, {}
        for m in MODALITY_GAINS:  # every modality, so a subset of channels does not change the others
            c = channels.get(m, 1)
            # Random projection with a decaying column scale: a few strong directions, a long tail.
            w = rng.standard_normal((LATENT, c)) / np.sqrt(LATENT)
            w *= (1.0 + np.arange(c)) ** -0.3
            self.proj[m] = w[:, rng.permutation(c)]
            n = rng.standard_normal((N_NUISANCE, c)) / np.sqrt(N_NUISANCE)
            self.nuisance[m] = n * (0.6 ** np.arange(N_NUISANCE))[:, None] * np.sqrt(N_NUISANCE)
            self.bias[m] = 0.3 * rng.standard_normal(c)

    def set_amplitudes(self, signal_power: dict, cfg: "SynthConfig"):
        """Noise amplitude per modality from the SNR targets (``SNR``, ``imbalance``, ``noise_scale``).

        ``signal_power[m]`` is the expected per-channel energy of modality m's per-frame signal;
        a unit amplitude gives per-channel noise energy ``nuis^2 ||B||_F^2 / C + white^2`` (both
        noise processes have unit stationary variance).
        """
        for m, p in signal_power.items():
            nuis, white = NOISE.get(m, (0.0, 0.0))
            c = self.proj[m].shape[1]
            unit = nuis**2 * float(np.sum(self.nuisance[m] ** 2)) / c + white**2
            if m not in SNR or unit == 0:
                self.amplitude[m] = cfg.noise_scale
                continue
            snr = SNR[m] / (cfg.imbalance**2 if m == MOST_COMPLEMENTARY else 1.0)
            self.amplitude[m] = cfg.noise_scale * float(np.sqrt(p / (snr * unit)))


# ----------------------------------------------------------------------------- the timeline
def _duration(rng, name, scale):
    mean = MEAN_DURATION[name] * scale
    return max(MIN_DURATION, int(round(rng.gamma(DURATION_SHAPE, mean / DURATION_SHAPE))))


def _direction(rng, name, trip_dir):
    if name in ("pick_dish", "carry_dish"):
        return trip_dir
    if name == "load_dishwasher":
        return 1
    if name in ("unload_dishwasher", "place_on_shelf"):
        return -1
    if name == "walk":
        return 1 if rng.random() < 0.5 else -1  # a distractor: visible to depth, irrelevant to the grammar
    return 0


def _chain_once(rng, start, length, scale):
    """Markov-chain segments from action ``start`` filling exactly ``length`` frames."""
    segments, action, trip_dir, total = [], A[start], 0, 0
    while total < length:
        name = ACTIONS[action]
        if name == "pick_dish":
            trip_dir = 1 if rng.random() < 0.5 else -1  # fresh per trip: history does not reveal it
        elif name == "unload_dishwasher":
            trip_dir = -1
        frames = min(_duration(rng, name, scale), length - total)
        segments.append((int(action), frames, _direction(rng, name, trip_dir)))
        total += frames
        if name == "carry_dish":
            action = A["load_dishwasher"] if trip_dir > 0 else A["place_on_shelf"]
        else:
            succ = TRANSITIONS[name]
            action = A[rng.choice(list(succ), p=np.array(list(succ.values())))]
    return segments


def _chain(rng, start, length, scale, avoid, before_pick, tries=50):
    """A grammar-following piece of ``length`` frames from ``start``.

    ``avoid``: frame offsets that must not lie inside ``pick_dish``/``carry_dish`` (the last
    observed frames of cut points that are not decision-bearing); ``before_pick``: the piece is
    followed by a forced trip, so its last action must be one the grammar lets ``pick_dish``
    follow. Rejection sampling; after ``tries`` failures one segment of an allowed action fills it.
    """
    if length <= 0:
        return []
    for _ in range(tries):
        segs = _chain_once(rng, start, length, scale)
        if before_pick and ACTIONS[segs[-1][0]] not in BEFORE_PICK:
            continue
        if len(segs) > 1 and segs[-1][1] < MIN_DURATION:
            continue
        ends = np.cumsum([f for _, f, _ in segs])
        if all(ACTIONS[segs[int(np.searchsorted(ends, t, side="right"))][0]] not in ("pick_dish", "carry_dish")
               for t in avoid):
            return segs
    name = start if start in BEFORE_PICK else "walk"
    return [(A[name], length, _direction(rng, name, 0))]


def _plan_trips(rng, n, cuts, bearing, scale):
    """Forced trips ``(pick_start, carry_start, carry_end, direction)`` covering decision-bearing cuts."""
    groups = []
    for k in np.flatnonzero(bearing):
        if groups and groups[-1][-1] == k - 1 and cuts[k] - cuts[k - 1] < GROUP_GAP * n:
            groups[-1].append(int(k))
        else:
            groups.append([int(k)])
    trips, prev_end = [], None
    for g in groups:
        first, last = cuts[g[0]], cuts[g[-1]]
        lo = 0 if prev_end is None else prev_end + MIN_DURATION // 2 + 1  # room for the follower
        lo = max([lo] + [cuts[k] for k in range(g[0]) if not bearing[k]])  # earlier cuts stay outside
        nxt = g[-1] + 1
        if nxt == len(cuts):
            hi = n - 1
        elif bearing[nxt]:
            hi = cuts[nxt] - 3 * (MIN_DURATION // 2 + 1)  # room for follower, pick and carry of the next trip
        else:
            hi = cuts[nxt] - 1  # the next cut's last frame is the follower's
        lp, lc = _duration(rng, "pick_dish", scale), _duration(rng, "carry_dish", scale)
        u = rng.uniform(*CUT_IN_CARRY)
        seen, rest = max(1, int(round(u * lc))), max(1, int(round((1 - u) * lc)))
        room = first - lo
        if seen + lp > room:  # squeeze the trip into the room before the cut, keeping both segments
            seen = max(1, int(round(seen * room / (seen + lp))))
            lp = max(1, room - seen)
            seen = room - lp
        rest = max(0, min(rest, hi - last))
        direction = 1 if rng.random() < 0.5 else -1
        trips.append((first - seen - lp, first - seen, last + rest, direction))
        prev_end = last + rest
    return trips


def _sample_video(rng, n, complementarity):
    """Segments ``(action, frames, direction)`` of one video of ``n`` frames.

    Each cut point ``int(obs * n)`` (obs in ``CUT_OBS``) is decision-bearing with probability
    ``complementarity``: a ``pick_dish -> carry_dish`` trip with a fresh 50/50 direction is
    placed so that the cut falls inside the carry, and what follows it (``load_dishwasher`` or
    ``place_on_shelf``, then different branches) is decided by the direction. The other cut
    points are kept out of every trip. Between forced trips the grammar runs freely.
    """
    scale = n / REFERENCE_LENGTH
    cuts = [observed_frames(n, o) for o in CUT_OBS]
    bearing = rng.random(len(cuts)) < complementarity
    trips = _plan_trips(rng, n, cuts, bearing, scale)
    segments, t = [], 0
    start = START_ACTIONS[int(rng.integers(len(START_ACTIONS)))]
    for s, m, e, d in trips + [(n, n, n, 0)]:
        avoid = [c - 1 - t for c, b in zip(cuts, bearing) if not b and t <= c - 1 < s]
        segments += _chain(rng, start, s - t, scale, avoid, before_pick=s < n)
        if s < n:
            segments += [(A["pick_dish"], m - s, d), (A["carry_dish"], e - m, d)]
            start, t = ("load_dishwasher" if d > 0 else "place_on_shelf"), e
    return segments


# ----------------------------------------------------------------------------- the collapse dial
def _dial_seq(seq: np.random.SeedSequence, key: int = _DIAL_KEY) -> np.random.SeedSequence:
    """A dial's own stream beside ``seq`` (same entropy, a spawn key no spawn() gives); ``key``:
    ``_DIAL_KEY`` (the collapse dial) or ``_SPURIOUS_KEY`` (the spurious cue)."""
    return np.random.SeedSequence(seq.entropy, spawn_key=tuple(seq.spawn_key) + (key,))


class _CollapseCode:
    """Fixed part of the collapse dial: the hint's and the XOR code's latent vectors and projections.

    The hint is ``h * hint_vec`` (h = +-1); the XOR code is ``b1 * xor_vec[0] + b2 * xor_vec[1]``
    with ``b1 * b2`` the direction, so that neither sign alone says anything about it. Both are
    modulated like depth's direction code (``0.6 + 0.8 * progress``) and projected into the
    modalities that see them by their own random matrices, scaled by ``1 / sqrt(LATENT)`` like the
    factor projections but without their decaying column scale ``(1 + j) ** -0.3``: per channel
    they carry about 1 / mean_j (1 + j) ** -0.6 (5.7 at 64 channels) times the energy of a factor
    block of the same gain and norm.
    """

    def __init__(self, rng, channels, level: float):
        self.level = float(level)
        self.hint_vec = _embeddings(rng, 1, HINT_DIM)[0] * 1.5
        v = _embeddings(rng, 2, XOR_DIM)
        v[1] -= (v[1] @ v[0]) * v[0]  # orthogonal: b1 and b2 are read separately
        self.xor_vec = v / np.linalg.norm(v, axis=1, keepdims=True) * 1.5
        self.proj = {}
        for m in (*HINT_SEEN_BY, XOR_SEEN_BY):
            c = channels.get(m, 1)
            dim = XOR_DIM if m == XOR_SEEN_BY else HINT_DIM
            self.proj[m] = rng.standard_normal((dim, c)) / np.sqrt(LATENT)

    def gains(self) -> dict:
        """``{"hint", "xor", "linear_direction"}`` gains at this level (see ``HINT_GAIN``, ``XOR_GAIN``)."""
        k = self.level
        return {"hint": HINT_GAIN[0] + k * (HINT_GAIN[1] - HINT_GAIN[0]), "xor": XOR_GAIN * k,
                "linear_direction": DIRECTION_GAIN * (1.0 - k)}

    def signals(self, hint, bit1, direction, progress) -> dict:
        """Per-frame signal each seeing modality adds, ``{modality: (n, channels)}``."""
        g = self.gains()
        mod = (0.6 + 0.8 * progress)[:, None]
        h = g["hint"] * hint[:, None] * self.hint_vec[None, :] * mod
        bit2 = bit1 * direction  # b1 * b2 = direction where it is +-1; 0 where there is none
        x = g["xor"] * (bit1[:, None] * self.xor_vec[0] + bit2[:, None] * self.xor_vec[1]) * mod
        x *= (direction != 0)[:, None]
        return {m: (x if m == XOR_SEEN_BY else h) @ self.proj[m] for m in self.proj}


def _dial_draws(rng, segments):
    """Per-frame hint (+-1 inside trips, 0 elsewhere) and first XOR sign of one video's ``segments``.

    Every ``pick_dish`` / ``carry_dish`` segment shows a hint equal to its direction with
    probability ``HINT_ACCURACY``; a carry straight after its pick shares the pick's draw (one
    trip, one hint). Every segment with a direction draws its first XOR sign b1 = +-1 (the
    second is b1 times the direction). Independent of everything else in the video.
    """
    n = sum(f for _, f, _ in segments)
    hint, bit1 = np.zeros(n, np.int8), np.zeros(n, np.int8)
    right = True
    for t, f, d, trip, new in _trip_segments(segments):
        if new:
            right = rng.random() < HINT_ACCURACY
        if trip:
            hint[t:t + f] = d if right else -d
        bit1[t:t + f] = 1 if rng.random() < 0.5 else -1
    return hint, bit1


def _trip_segments(segments):
    """Per segment of ``segments``: ``(start, frames, direction, in_trip, new_trip)``.

    ``in_trip``: a ``pick_dish`` / ``carry_dish`` segment with a direction; ``new_trip``: such a
    segment that draws a fresh hint or cue, i.e. every one but a carry straight after its pick
    (one trip, one draw).
    """
    t, prev = 0, None
    for a, f, d in segments:
        name = ACTIONS[a]
        trip = name in ("pick_dish", "carry_dish") and d != 0
        yield t, f, d, trip, trip and not (name == "carry_dish" and prev == "pick_dish")
        prev, t = name, t + f


# ----------------------------------------------------------------------------- the spurious cue
class _SpuriousCue:
    """Fixed part of the spurious cue: its latent vector and its projection into each anchor.

    The cue is ``c * cue_vec`` (c = +-1), modulated over the segment like the collapse hint
    (``0.6 + 0.8 * progress``), with gain ``SPURIOUS_GAIN``, projected by its own random matrices.
    """

    def __init__(self, rng, channels, level: float):
        self.level = float(level)
        self.cue_vec = _embeddings(rng, 1, CUE_DIM)[0] * 1.5
        self.proj = {m: rng.standard_normal((CUE_DIM, channels.get(m, 1))) / np.sqrt(LATENT)
                     for m in SPURIOUS_SEEN_BY}

    def accuracy(self, train: bool) -> float:
        """Probability that a trip's cue equals its direction: ``(1 + S) / 2`` in training, else 1/2."""
        return (1.0 + self.level) / 2.0 if train else 0.5

    def signals(self, cue, progress) -> dict:
        """Per-frame signal each anchor adds, ``{modality: (n, channels)}``; ``cue`` (n,) in {-1, 0, 1}."""
        c = SPURIOUS_GAIN * cue[:, None] * self.cue_vec[None, :] * (0.6 + 0.8 * progress)[:, None]
        return {m: c @ self.proj[m] for m in self.proj}


def _cue_draws(rng, segments, accuracy: float):
    """Per-frame cue of one video's ``segments`` (+-1 inside trips, 0 elsewhere) and its trip counts.

    Each trip's cue equals its direction with probability ``accuracy`` (one draw per trip, as the
    collapse hint). Returns ``(cue (n,) int8, trips, right)``: the number of trips drawn and of
    those whose cue equals the direction.
    """
    cue = np.zeros(sum(f for _, f, _ in segments), np.int8)
    trips = hits = 0
    right = True
    for t, f, d, trip, new in _trip_segments(segments):
        if new:
            right = bool(rng.random() < accuracy)
            trips, hits = trips + 1, hits + right
        if trip:
            cue[t:t + f] = d if right else -d
    return cue, trips, hits


# ----------------------------------------------------------------------------- rendering
def _progress(segments) -> np.ndarray:
    """Per-frame progress through the current segment, in (0, 1)."""
    return np.concatenate([(np.arange(f) + 0.5) / f for _, f, _ in segments])


def _factors(rng, world: _World, segments):
    """Per-frame hidden factors and the per-frame latent blocks of one video."""
    n = sum(f for _, f, _ in segments)
    act, obj = np.empty(n, np.int16), np.empty(n, np.int8)
    dirn, loc = np.empty(n, np.int8), np.empty(n, np.int8)
    prog, narr = np.empty(n), np.zeros(n, bool)
    t = 0
    for a, f, d in segments:
        name = ACTIONS[a]
        act[t:t + f], dirn[t:t + f] = a, d
        obj[t:t + f] = OBJECTS.index(OBJECT_OF[name])
        loc[t:t + f] = LOCATIONS.index(LOCATION_OF[name]) if name in LOCATION_OF else rng.integers(len(LOCATIONS))
        prog[t:t + f] = (np.arange(f) + 0.5) / f
        if rng.random() < NARRATION_PROB:
            narr[t:t + min(f, NARRATION_FRAMES)] = True
        t += f
    energy = np.array([MOTION_ENERGY[ACTIONS[a]] for a in range(len(ACTIONS))])[act]
    # A slowly drifting motion phase (gait / hand oscillation) that IMU and depth pick up.
    phase = 2 * np.pi * np.arange(n) / 12.0 + rng.uniform(0, 2 * np.pi)
    blocks = {
        "action": world.action[act],
        "object": world.object[obj],
        "direction": dirn[:, None] * world.direction[None, :] * (0.6 + 0.8 * prog[:, None]),
        "location": world.location[loc],
        "motion": np.stack([energy, energy * np.sin(phase), energy * np.cos(phase)], 1) * 1.5,
        "progress": np.stack([np.sin(np.pi * prog), np.cos(np.pi * prog)], 1),
    }
    # Per-video constants, unit expected squared norm; ``nuisance`` sets their energy per modality.
    const = {b: rng.standard_normal(BLOCKS[b]) / np.sqrt(BLOCKS[b]) for b in ("appearance", "geometry")}
    factors = {"action": act, "object": obj, "direction": dirn, "location": loc}
    return factors, blocks, const, narr


def _latent(blocks, m):
    """Per-frame latent signal of modality ``m``: (n, LATENT), the blocks it sees times their gains."""
    n = len(blocks["action"])
    z = np.zeros((n, LATENT))
    for b, g in MODALITY_GAINS[m].items():
        z[:, SLICES[b]] = g * blocks[b]
    return z


def _render(rng, world: _World, blocks, const, narr, cfg: SynthConfig, stats=None, dial=None):
    """Features of every modality (except the noise control) for one video, (channels, frames) float32.

    ``stats`` (optional dict) accumulates per modality: frames, per-frame signal energy, per-video
    constant energy (latent space and feature space) and noise energy (feature space).
    ``dial`` (a dial on, :func:`_video_dial`): ``{modality: (n, channels)}`` signals added by
    :meth:`_CollapseCode.signals` and :meth:`_SpuriousCue.signals`, and with the collapse dial
    ``"linear_direction"``, the gain of depth's linear direction code in place of
    ``MODALITY_GAINS["depth"]["direction"]``. The noise amplitudes do not depend on the dials, so
    the noise of every modality is the same at every level.
    """
    from scipy.signal import lfilter  # scipy.signal is slow to import: not on every CLI start

    feats = {}
    n = len(blocks["action"])
    for m in cfg.channels:
        if m == "noise":
            continue
        z = _latent(blocks, m)
        zc = np.zeros(LATENT)
        if m in CONSTANT_OF and cfg.nuisance > 0:
            b = CONSTANT_OF[m]
            # energy of the constant = nuisance x the video's mean per-frame signal energy (in expectation)
            zc[SLICES[b]] = const[b] * np.sqrt(cfg.nuisance * np.mean(np.sum(z**2, 1)))
        if dial is not None and m == XOR_SEEN_BY and "linear_direction" in dial:  # after the constant: same at every K
            z[:, SLICES["direction"]] *= dial["linear_direction"] / MODALITY_GAINS[m]["direction"]
        sig, con = z @ world.proj[m], zc @ world.proj[m]
        if dial is not None and m in dial:
            sig = sig + dial[m]
        noise = np.zeros_like(sig)
        nuis, white = (s * world.amplitude[m] for s in NOISE[m])
        if nuis > 0:
            # Smooth (AR(1), rho=0.95) low-rank nuisance: camera shake, lighting drift, sensor bias.
            u = lfilter([np.sqrt(1 - 0.95**2)], [1, -0.95], rng.standard_normal((n, N_NUISANCE)), axis=0)
            noise += nuis * (u @ world.nuisance[m])
        if white > 0:
            noise += white * lfilter([np.sqrt(1 - 0.5**2)], [1, -0.5], rng.standard_normal(sig.shape), axis=0)
        x = sig + con + world.bias[m]
        if m == "text":
            x = np.where(narr[:, None], x, 0.0)  # narration only at segment starts
        x = x + noise
        feats[m] = np.ascontiguousarray(x.T, dtype=np.float32)  # (channels, frames) as in FUTR
        if stats is not None:
            s = stats.setdefault(m, dict.fromkeys(("frames", "signal", "constant", "noise", "latent_signal",
                                                   "latent_constant"), 0.0))
            s["frames"] += n
            s["signal"] += float(np.sum(sig**2))
            s["constant"] += n * float(np.sum(con**2))
            s["noise"] += float(np.sum(noise**2))
            s["latent_signal"] += float(np.sum(z**2))
            s["latent_constant"] += n * float(np.sum(zc**2))
    return feats


def _signal_power(rng, world: _World, cfg: SynthConfig, n_pilot=24):
    """Expected per-channel energy of each modality's per-frame signal, from pilot videos.

    The pilot draws its own videos (a separate random stream) with the dataset's dials and
    lengths; only their latent signal is used, to set the noise amplitudes from ``SNR``.
    """
    sums = dict.fromkeys(MODALITY_GAINS, 0.0)
    frames = 0
    for _ in range(n_pilot):
        n = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
        _, blocks, _, _ = _factors(rng, world, _sample_video(rng, n, cfg.complementarity))
        frames += n
        for m in sums:
            sig = _latent(blocks, m) @ world.proj[m]
            sums[m] += float(np.sum(sig**2)) / sig.shape[1]
    return {m: v / frames for m, v in sums.items()}


# ----------------------------------------------------------------------------- ground truth
#: dtype of :func:`cut_records`.
CUT_DTYPE = np.dtype([("obs", "f8"), ("cut", "i8"), ("current", "i8"), ("direction", "i8"), ("next", "i8"),
                      ("bearing", "?")])


def cut_records(action, direction, obs=CUT_OBS) -> np.ndarray:
    """The evaluation cut points of one video and what decides the next action at each.

    Parameters
    ----------
    action, direction : array of int, shape (n_frames,)
        Per-frame hidden factors (``factors/<video>.npz``).
    obs : sequence of float
        Observation ratios; the cut is ``past = int(obs * n_frames)`` (frames ``[0, past)`` seen).

    Returns
    -------
    ndarray of ``CUT_DTYPE``, shape (len(obs),)
        ``current``: the action of the last observed frame; ``direction``: its direction;
        ``next``: the action of the segment after the current one (-1 when the video ends first);
        ``bearing``: the last observed frame lies inside a ``pick_dish -> carry_dish`` trip (its
        direction, drawn afresh, decides what follows; a carry after ``unload_dishwasher`` is
        always "away" and does not count).
    """
    action, direction = np.asarray(action), np.asarray(direction)
    n = len(action)
    out = np.zeros(len(obs), CUT_DTYPE)
    for i, o in enumerate(obs):
        past = observed_frames(n, o)
        j = past - 1
        cur = int(action[j])
        after = np.flatnonzero(action[j:] != cur)
        nxt = int(action[j + after[0]]) if len(after) else -1
        bearing = cur == A["pick_dish"]
        if cur == A["carry_dish"]:
            before = np.flatnonzero(action[:j] != cur)
            bearing = len(before) == 0 or int(action[before[-1]]) == A["pick_dish"]
        out[i] = (o, past, cur, int(direction[j]), nxt, bearing)
    return out


def modality_sees(modality: str) -> frozenset:
    """Hidden factors ``modality`` carries (gain > 0; its per-video constant included)."""
    if modality not in MODALITY_GAINS:
        raise InputError(f"modality: unknown {modality!r}; choose from {sorted(MODALITY_GAINS)}")
    seen = {b for b, g in MODALITY_GAINS[modality].items() if g > 0}
    if modality in CONSTANT_OF:
        seen.add(CONSTANT_OF[modality])
    return frozenset(seen)


def cut_hints(hint, records) -> np.ndarray:
    """The anchor's hint (+-1, 0 outside trips) at the last observed frame of each cut point.

    Parameters
    ----------
    hint : array of int, shape (n_frames,)
        Per-frame hint (``factors/<video>.npz["hint"]``, collapse dial on).
    records : ndarray of ``CUT_DTYPE``
        The video's cut points (:func:`cut_records`).

    Returns
    -------
    ndarray of int64, shape (len(records),)
    """
    hint = np.asarray(hint)
    r = np.asarray(records, CUT_DTYPE)
    return hint[np.maximum(r["cut"] - 1, 0)].astype(np.int64)


def partner_only(records, hints=None) -> np.ndarray:
    """Which cut points only the partner (depth) can decide: the anchor's best guess is wrong there.

    A cut point inside a trip's carry (decision-bearing, current action ``carry_dish``, a next
    action to predict) is decided by the trip's direction, which only depth sees. Without the
    collapse dial (``hints`` None) rgb knows nothing of it: every such cut point is the partner's
    alone. With the dial rgb sees a hint right with probability ``HINT_ACCURACY`` > 1/2, so its
    best guess follows the hint, and the partner alone decides exactly the cut points whose hint
    is wrong (``hint != direction``). At a cut inside ``pick_dish`` the next action (the carry)
    is the grammar's, not the partner's.

    Parameters
    ----------
    records : ndarray of ``CUT_DTYPE``
    hints : array of int, optional
        :func:`cut_hints` of the same records (collapse dial on).

    Returns
    -------
    ndarray of bool, shape (len(records),)
    """
    r = np.asarray(records, CUT_DTYPE)
    out = r["bearing"] & (r["current"] == A["carry_dish"]) & (r["next"] >= 0)
    if hints is not None:
        out &= np.asarray(hints) != r["direction"]
    return out


def partner_only_modality(data_root) -> str:
    """The modality that alone decides the partner-only cut points of a synthetic dataset.

    ``synth.json["most_complementary"]`` (the partner by construction), else
    :data:`MOST_COMPLEMENTARY`: the only modality that sees each trip's direction. A collapse
    index scores the partner on :func:`partner_only_cuts`, so it means something for this
    modality only.
    """
    try:
        name = json.loads((Path(data_root) / "synth.json").read_text()).get("most_complementary")
    except (OSError, ValueError, AttributeError):
        name = None
    return str(name) if name else MOST_COMPLEMENTARY


def partner_only_cuts(data_root, videos=None) -> dict:
    """``{video: observation ratios of its partner-only cut points}`` of a synthetic dataset.

    Read from ``factors/<video>.npz`` (``cuts``, ``partner_only``, written by
    :func:`synthesize`); the ratios are those of ``REPORT_OBS`` (the evaluation ratios
    ``CUT_OBS`` and the training-only 0.5). Use them to score a model on the cut points where
    only the partner holds the answer (:func:`partner_only`).

    Parameters
    ----------
    data_root : path-like
        A dataset written by :func:`synthesize`.
    videos : iterable of str, optional
        Default: every video with a factors file.
    """
    root = Path(data_root)
    if videos is None:
        videos = sorted(p.stem for p in (root / "factors").glob("*.npz"))
    out = {}
    for v in videos:
        path = root / "factors" / f"{v}.npz"
        if not path.is_file():
            raise InputError(f"video {v!r}: no factors file {str(path)!r} (not a synthetic dataset?)")
        with np.load(path) as f:
            if "partner_only" not in f:
                raise InputError(f"{str(path)!r} has no 'partner_only' array: regenerate the dataset")
            out[v] = tuple(float(o) for o, p in zip(REPORT_OBS, f["partner_only"]) if p)  # cuts follow REPORT_OBS
    return out


def oracle_accuracy(records, modalities, hints=None) -> float:
    """Upper bound of the next-action accuracy at the cut points ``records`` from ``modalities``.

    At a decision-bearing cut point the generator draws what decides the next action from a
    known law, independent of everything observed up to the cut (lengths, timing, the earlier
    actions): the trip's direction 50/50, and with the collapse dial the anchor's hint, right
    with probability ``HINT_ACCURACY``. The best accuracy there is therefore known exactly, as
    the expected Bayes rate: 1 for a subset that sees the direction (depth); 1 at a cut inside
    ``pick_dish`` (a carry follows); ``max(q, 1 - q)`` for a subset that sees the hint (rgb,
    mvrgb, dial on); 1/2 otherwise. Subsets that see no action code (noise) are credited with
    the current action, so for them this is an upper bound, not the rate. At the other cut
    points the free timeline's next action depends on the timing through the sampler's
    constraints, in no closed form: there the bound is 1. The value is exact (for subsets that
    see the action) when every record is decision-bearing, e.g. at complementarity 1;
    :func:`plugin_accuracy` is the former plug-in estimate, which is not a bound.

    Parameters
    ----------
    records : ndarray of ``CUT_DTYPE``
        Cut points (:func:`cut_records`); those with ``next == -1`` are skipped.
    modalities : str or sequence of str
        E.g. ``"rgb+depth"`` or ``["rgb", "depth"]``.
    hints : array of int, optional
        :func:`cut_hints` of the records when the collapse dial is on.

    Returns
    -------
    float
        Accuracy in [0, 1] (NaN without a usable record).
    """
    mods = modalities.split("+") if isinstance(modalities, str) else list(modalities)
    seen = frozenset().union(*(modality_sees(m) for m in mods)) if mods else frozenset()
    r = np.asarray(records, CUT_DTYPE)
    keep = r["next"] >= 0
    if not keep.any():
        return float("nan")
    r = r[keep]
    carry = r["bearing"] & (r["current"] == A["carry_dish"])
    if "direction" in seen:
        guess = 1.0
    elif hints is not None and any(m in HINT_SEEN_BY for m in mods):
        guess = max(HINT_ACCURACY, 1.0 - HINT_ACCURACY)
    else:
        guess = 0.5
    n_carry = int(carry.sum())
    return float((guess * n_carry + (len(r) - n_carry)) / len(r))


def plugin_accuracy(records, modalities) -> float:
    """Plug-in next-action rate of ``modalities`` at ``records``: not an upper bound.

    For each value of the visible key (the current action if seen, else the class of actions
    that location and motion leave possible; the direction if seen and the cut is
    decision-bearing) the most frequent next action among ``records``. It ignores what the
    timing and the earlier actions tell at cut points outside trips (held-out predictors that
    see them do better at complementarity 0) and is optimistic on few records.

    Parameters
    ----------
    records : ndarray of ``CUT_DTYPE``
    modalities : str or sequence of str

    Returns
    -------
    float
    """
    mods = modalities.split("+") if isinstance(modalities, str) else list(modalities)
    seen = frozenset().union(*(modality_sees(m) for m in mods)) if mods else frozenset()
    r = np.asarray(records, CUT_DTYPE)
    r = r[r["next"] >= 0]
    if len(r) == 0:
        return float("nan")
    cur = _action_key(seen)[r["current"]]
    dirn = np.where(r["bearing"], r["direction"], 0) if "direction" in seen else np.zeros(len(r), np.int64)
    keys = np.stack([cur, dirn], 1)
    _, group = np.unique(keys, axis=0, return_inverse=True)
    counts = np.zeros((group.max() + 1, len(ACTIONS)), np.int64)
    np.add.at(counts, (group.ravel(), r["next"]), 1)
    return float(counts.max(1).sum() / len(r))


def _action_key(seen) -> np.ndarray:
    """What a subset seeing the factors ``seen`` knows of the current action: a class id per action.

    The action itself if seen; else, from location and motion energy (a function of the action
    except for walk's random location; walk alone has energy 1.0) and, if the direction is seen,
    the fixed direction of load (+1) / unload and place (-1): e.g. depth without the action code
    cannot tell open from close or take_cup from pour_water. Nothing seen: one class.
    """
    if "action" in seen:
        return np.arange(len(ACTIONS))
    if not {"location", "motion"} <= seen:
        return np.zeros(len(ACTIONS), np.int64)
    fixed = {"load_dishwasher": 1, "unload_dishwasher": -1, "place_on_shelf": -1}
    keys = [(LOCATION_OF.get(a, "any"), MOTION_ENERGY[a], fixed.get(a, 0) if "direction" in seen else 0)
            for a in ACTIONS]
    ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    return np.array([ids[k] for k in keys])


def oracle_subsets(modalities) -> list:
    """The subsets ``synth.json`` reports: each modality alone and the anchor with each other one."""
    mods = list(modalities)
    subsets = list(mods)
    if ANCHOR in mods:
        subsets += [f"{ANCHOR}+{m}" for m in mods if m != ANCHOR]
    return subsets


def oracle_table(records, modalities, hints=None) -> dict:
    """``{subset: oracle_accuracy}`` for :func:`oracle_subsets` of ``modalities``."""
    return {s: oracle_accuracy(records, s, hints) for s in oracle_subsets(modalities)}


def plugin_table(records, modalities) -> dict:
    """``{subset: plugin_accuracy}`` for :func:`oracle_subsets` of ``modalities``."""
    return {s: plugin_accuracy(records, s) for s in oracle_subsets(modalities)}


# ----------------------------------------------------------------------------- writing
def _split_counts(n, fractions):
    """Train, val, test video counts: val and test rounded, at least one each; train the rest
    (which :meth:`SynthConfig.validate` requires to be at least one)."""
    counts = [max(1, int(round(f * n))) for f in fractions[1:]]
    return [n - sum(counts), *counts]


def resource_estimate(cfg: SynthConfig) -> tuple[int, int]:
    """``(memory, disk)`` in bytes that generating ``cfg`` needs, estimated from above.

    Memory: the longest video in float64 while it is rendered (:data:`BYTES_PER_FRAME_CHANNEL`)
    plus what is kept per video (:data:`BYTES_PER_VIDEO`). Disk: every video's float32 features
    at the mean length plus a few KiB of files per video.
    """
    width = sum(cfg.channels.values())
    memory = cfg.max_frames * width * BYTES_PER_FRAME_CHANNEL + cfg.n_videos * BYTES_PER_VIDEO
    disk = cfg.n_videos * ((cfg.min_frames + cfg.max_frames) // 2 * width * 4 + (len(cfg.channels) + 3) * 4096)
    return memory, disk


def _check_destination(cfg: SynthConfig, out: Path, overwrite: bool) -> None:
    """Refuse, before anything is written, an existing ``out`` (unless ``overwrite``) and a dataset
    larger than this machine's memory or free disk."""
    if out.exists() and not overwrite:
        raise InputError(f"output folder {str(out)!r} already exists; pass "
                         f"{option_name('overwrite=True', '--force')} to replace it")
    memory, disk = resource_estimate(cfg)
    what = f"max_frames={cfg.max_frames} (--max-frames) and n_videos={cfg.n_videos} (--videos)"
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): no memory check
        physical = None
    if physical is not None and memory > physical:
        raise InputError(f"{what} would need ~{memory / 2**30:.3g} GiB of memory; this machine has "
                         f"{physical / 2**30:.3g} GiB: lower them (or the channels)")
    parent = out.resolve().parent
    while not parent.exists():
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    if disk > free:
        raise InputError(f"{what} would need ~{disk / 2**30:.3g} GiB of disk; {str(parent)!r} has "
                         f"{free / 2**30:.3g} GiB free: lower them (or the channels)")


def synthesize(out_dir, *, seed=0, n_videos=DEFAULT_VIDEOS, min_frames=DEFAULT_MIN_FRAMES,
               max_frames=DEFAULT_MAX_FRAMES, channels=None,
               split_fractions=DEFAULT_SPLIT, noise_scale=1.0, split_set="split1",
               complementarity=DEFAULT_COMPLEMENTARITY, nuisance=DEFAULT_NUISANCE, imbalance=DEFAULT_IMBALANCE,
               collapse=None, spurious=None, overwrite=False, progress=False) -> Path:
    """Write the synthetic multi-modal activity dataset in the standard layout.

    The dataset is built in a temporary folder next to ``out_dir`` and renamed into place, so an
    interrupted run leaves nothing half-written. Deterministic: the same arguments give
    byte-identical files, ``synth.json`` included, so a regenerated dataset has the same
    fingerprint (:func:`rankfusion.data.fingerprint.dataset_fingerprint`) and reuses its cached runs.

    Parameters
    ----------
    out_dir : path-like
        Destination folder; must not exist unless ``overwrite``.
    seed : int
        Seed of the projections and of every video.
    n_videos : int
        Number of videos (>= 3).
    min_frames, max_frames : int
        Range of video lengths in frames (>= 20).
    channels : dict or int, optional
        Channels per modality (its keys choose the modalities), or one int for all six;
        default ``DEFAULT_CHANNELS``. ``noise`` needs ``depth`` with the same channels.
    split_fractions : tuple of 3 float
        Train / val / test shares (default ``DEFAULT_SPLIT``: 0.5 / 0.1 / 0.4; each split gets at
        least one video: val and test are raised to one, shares leaving train none are refused).
    noise_scale : float
        Multiplies all noise (at most ``MAX_NOISE_SCALE``).
    split_set : str
        Split-set name used in the bundle file names.
    complementarity : float in [0, 1]
        Share of the evaluation cut points ``int(obs * N)``, obs in ``CUT_OBS`` (0.2 / 0.3), at
        which the next actions are decided by the trip direction, which only ``depth`` sees
        (each cut point is decision-bearing with this probability). 0: depth adds nothing rgb
        lacks for the next action; 1: every evaluation cut point needs it.
    nuisance : float >= 0
        Expected energy of the per-video constant (appearance for rgb/mvrgb, scene geometry for
        depth) relative to the modality's per-frame signal, in the latent space before the
        projection. 0: no per-video constant.
    imbalance : float >= 1
        The anchor's (rgb) signal-to-noise amplitude over the partner's (depth): depth's noise
        is scaled so that its per-channel SNR (energy) is ``SNR["depth"] / imbalance**2``.
    collapse : float in [0, 1], optional
        Level K of the collapse dial (None: off; K = 0: depth's code linear, 1: an XOR, rgb's
        hint stronger; the oracle is the same at every K: ``HINT_ACCURACY``, docs/datasets.md).
    spurious : float in [0, 1], optional
        Level S of the spurious cue (None: off): rgb and mvrgb see a cue of each trip's direction,
        right with probability (1 + S) / 2 in the training split's videos and 1/2 in validation
        and test videos (docs/datasets.md, "Spurious cue"). Combines with ``collapse``. The
        oracle (for held-out videos) is the same at every S.
    overwrite : bool
        Replace an existing ``out_dir``.
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    pathlib.Path
        ``out_dir``. It holds ``mapping.txt``, ``groundTruth/``, ``features/<modality>/``,
        ``splits/``, ``factors/<video>.npz`` (the hidden per-frame factors and the cut points)
        and ``synth.json`` (settings, dials, their measured ground truth and the oracle).
    """
    channels = _channels_arg(channels)
    cfg = SynthConfig(seed=seed, n_videos=n_videos, min_frames=min_frames, max_frames=max_frames,
                      channels=dict(channels), split_fractions=tuple(split_fractions), noise_scale=noise_scale,
                      split_set=split_set, complementarity=complementarity, nuisance=nuisance,
                      imbalance=imbalance, collapse=collapse, spurious=spurious).validate()
    out = Path(out_dir)
    _check_destination(cfg, out, overwrite)
    with atomic_dir(out) as tmp:
        meta = _synth_meta(cfg, _write(tmp, cfg, progress))
        (tmp / "synth.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def _synth_meta(cfg: SynthConfig, truth: dict) -> dict:
    """``synth.json``: the settings, the generator's law and ``truth`` (:func:`_write`)."""
    return {"generator": "rankfusion.data.synth", "config": dataclasses.asdict(cfg),
            "actions": list(ACTIONS), "transitions": TRANSITIONS, "mean_duration": MEAN_DURATION,
            "reference_length": REFERENCE_LENGTH,
            "modality_gains": {m: MODALITY_GAINS[m] for m in cfg.channels},
            "modality_sees": {m: sorted(modality_sees(m)) for m in cfg.channels},
            "reference_modality": ANCHOR,
            "most_complementary": MOST_COMPLEMENTARY if {ANCHOR, MOST_COMPLEMENTARY} <= set(cfg.channels) else None,
            **truth}


def _channels_arg(channels) -> dict:
    """``synthesize``'s ``channels``: None (the defaults), one int for all six, or a dict."""
    if channels is None:
        return dict(DEFAULT_CHANNELS)
    if isinstance(channels, (int, np.integer)) and not isinstance(channels, bool):
        return {m: int(channels) for m in DEFAULT_CHANNELS}
    return channels


def _write(root: Path, cfg: SynthConfig, progress: bool) -> dict:
    ss = np.random.SeedSequence(cfg.seed)
    world_seq, split_seq, pilot_seq, noise_seq, *video_seqs = ss.spawn(4 + cfg.n_videos)
    world = _World(np.random.default_rng(world_seq), cfg.channels)
    world.set_amplitudes(_signal_power(np.random.default_rng(pilot_seq), world, cfg), cfg)
    code = None if cfg.collapse is None else _CollapseCode(np.random.default_rng(_dial_seq(world_seq)),
                                                           cfg.channels, cfg.collapse)
    cue = None if cfg.spurious is None else _SpuriousCue(
        np.random.default_rng(_dial_seq(world_seq, _SPURIOUS_KEY)), cfg.channels, cfg.spurious)
    for d in ("groundTruth", "splits", "factors"):
        (root / d).mkdir()
    for m in cfg.channels:
        (root / "features" / m).mkdir(parents=True)
    (root / "mapping.txt").write_text("".join(f"{i} {a}\n" for i, a in enumerate(ACTIONS)))
    videos = [f"synth_{i:03d}" for i in range(cfg.n_videos)]
    parts = _split_parts(cfg, np.random.default_rng(split_seq))
    train = {videos[i] for i in parts["train"]}
    it = zip(videos, video_seqs)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(videos), desc="synth", unit="video", leave=False, disable=bar_disabled(True))
    stats, records, lengths, hints, cue_counts = {}, {}, {}, {}, {}
    twin = GramAccumulator(center=True) if "noise" in cfg.channels else None
    for video, seq in it:
        rng = np.random.default_rng(seq)
        target = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
        segments = _sample_video(rng, target, cfg.complementarity)
        factors, blocks, const, narr = _factors(rng, world, segments)
        dial, cue_counts[video] = _video_dial(code, cue, seq, segments, factors, video in train)
        feats = _render(rng, world, blocks, const, narr, cfg, stats, dial)
        records[video] = cut_records(factors["action"], factors["direction"], REPORT_OBS)
        hints[video] = None if code is None else cut_hints(factors["hint"], records[video])
        lengths[video] = target
        (root / "groundTruth" / f"{video}.txt").write_text("".join(ACTIONS[a] + "\n" for a in factors["action"]))
        for m, x in feats.items():
            np.save(root / "features" / m / f"{video}.npy", x)
        if twin is not None:
            twin.update(feats[NOISE_TWIN_OF].T)  # (frames, channels) rows
        with open(root / "factors" / f"{video}.npz", "wb") as fh:
            np.savez(fh, **factors, cuts=records[video]["cut"], decision_bearing=records[video]["bearing"],
                     partner_only=partner_only(records[video], hints[video]))
    if twin is not None:
        _write_noise(root, videos, lengths, twin, np.random.default_rng(noise_seq))
    for name, idx in parts.items():
        lines = "".join(f"{videos[i]}.txt\n" for i in sorted(idx))
        (root / "splits" / f"{name}.{cfg.split_set}.bundle").write_text(lines)
    test = {videos[i] for i in parts["test"]}
    out = _ground_truth(cfg, world, stats, records, test, hints, code)
    out["spurious"] = None if cue is None else _spurious_truth(cue, cue_counts, train)
    return out


def _split_parts(cfg: SynthConfig, rng) -> dict:
    """``{"train", "val", "test"}``: the video indices of each split (a permutation from ``rng``)."""
    order = rng.permutation(cfg.n_videos)
    n_train, n_val, n_test = _split_counts(cfg.n_videos, cfg.split_fractions)
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}


def _video_dial(code, cue, seq, segments, factors: dict, train: bool):
    """What the dials add to one video: ``(dial, cue_counts)``.

    ``dial``: None (both dials off) or the argument of :func:`_render` (``{modality: (n, channels)}``
    signals, summed over the dials, and with the collapse dial ``"linear_direction"``);
    ``cue_counts``: None or ``(trips, right)`` of the spurious cue (:func:`_cue_draws`). Each dial
    draws from its own stream beside the video's ``seq`` and records its draws in ``factors``
    (``hint`` and ``xor_sign``; ``cue``). ``train``: the video is in the training split.
    """
    if code is None and cue is None:
        return None, None
    dial, counts, prog = {}, None, _progress(segments)
    if code is not None:
        hint, bit1 = _dial_draws(np.random.default_rng(_dial_seq(seq)), segments)
        dial.update(code.signals(hint, bit1, factors["direction"], prog),
                    linear_direction=code.gains()["linear_direction"])
        factors.update(hint=hint, xor_sign=bit1)
    if cue is not None:
        signs, trips, right = _cue_draws(np.random.default_rng(_dial_seq(seq, _SPURIOUS_KEY)), segments,
                                         cue.accuracy(train))
        for m, x in cue.signals(signs, prog).items():
            dial[m] = dial[m] + x if m in dial else x
        factors["cue"] = signs
        counts = (trips, right)
    return dial, counts


def _spurious_truth(cue: _SpuriousCue, counts: dict, train: set) -> dict:
    """``synth.json["spurious"]``: the level and the measured share of trips whose cue is right,
    in the training split and in validation + test (``counts``: ``{video: (trips, right)}``)."""
    def share(videos):
        trips = sum(counts[v][0] for v in videos)
        right = sum(counts[v][1] for v in videos)
        return trips, right, (right / trips if trips else float("nan"))

    tr = share(sorted(train))
    ev = share(sorted(set(counts) - train))
    return {"level": cue.level, "cue_accuracy_law": {"train": cue.accuracy(True), "eval": cue.accuracy(False)},
            "gain": SPURIOUS_GAIN, "seen_by": list(SPURIOUS_SEEN_BY),
            "trips_train": tr[0], "cue_right_train": tr[1], "cue_accuracy_train": tr[2],
            "trips_eval": ev[0], "cue_right_eval": ev[1], "cue_accuracy_eval": ev[2],
            "oracle": "the cue tells nothing in validation and test videos: oracle, oracle_test and "
                      "partner_only are those of that law, the same at every level"}


def _noise_law(twin: GramAccumulator) -> tuple:
    """``(mean (D,), root (D, D))`` of the noise control: the twin's column means and a square root
    ``root @ root.T`` of its population covariance, taken from the centred co-moments
    (:attr:`rankfusion.spectral.GramAccumulator.covariance`): never ``G / n - mu mu^T``, which loses
    the variance to cancellation when a column's mean dominates its spread."""
    lam, vec = np.linalg.eigh(twin.covariance)
    return twin.mean, vec * np.sqrt(np.clip(lam, 0.0, None))  # clip rounding negatives of a PSD matrix


def _write_noise(root, videos, lengths, twin: GramAccumulator, rng):
    """The ``noise`` control: Gaussian frames with the twin's column means and covariance.

    Temporally correlated like the white noise of the other modalities (AR(1), rho 0.5, unit
    stationary variance), independent of every factor. Same second moments, hence the same
    singular-value spectrum as the twin up to sampling error.
    """
    from scipy.signal import lfilter

    mean, root_cov = _noise_law(twin)
    for video in videos:
        e = rng.standard_normal((lengths[video], len(mean)))
        e[0] /= np.sqrt(1 - 0.5**2)  # start in the stationary distribution
        e = lfilter([np.sqrt(1 - 0.5**2)], [1, -0.5], e, axis=0)
        x = mean + e @ root_cov.T
        np.save(root / "features" / "noise" / f"{video}.npy", np.ascontiguousarray(x.T, dtype=np.float32))


def _ground_truth(cfg: SynthConfig, world: _World, stats, records, test, hints, code) -> dict:
    """The dials, what was measured of them, and the oracle (written into ``synth.json``)."""
    names = sorted(records)
    every = np.concatenate([records[v] for v in names])
    every_h = None if code is None else np.concatenate([hints[v] for v in names])
    is_test = np.concatenate([np.full(len(records[v]), v in test) for v in names])
    ev = np.isin(every["obs"], CUT_OBS)
    allr, testr = every[ev], every[ev & is_test]

    def h(mask):
        return None if every_h is None else every_h[mask]

    snr = {m: s["signal"] / s["noise"] for m, s in stats.items() if s["noise"] > 0}
    measured = {
        "cut_points": int(len(allr)),
        "decision_bearing_cuts": int(allr["bearing"].sum()),
        "decision_bearing_share": float(allr["bearing"].mean()),
        "decision_bearing_share_by_obs": {f"{o:g}": float(every["bearing"][every["obs"] == o].mean())
                                          for o in REPORT_OBS},
        "nuisance_ratio": {m: s["latent_constant"] / s["latent_signal"] for m, s in stats.items()
                           if m in CONSTANT_OF and s["latent_signal"] > 0},
        "nuisance_ratio_features": {m: s["constant"] / s["signal"] for m, s in stats.items()
                                    if m in CONSTANT_OF and s["signal"] > 0},
        "snr": snr,
        "imbalance": (float(np.sqrt(snr[ANCHOR] / snr[MOST_COMPLEMENTARY]))
                      if {ANCHOR, MOST_COMPLEMENTARY} <= set(snr) else None),
    }
    mods = [m for m in cfg.channels]
    usable = allr["next"] >= 0
    dials = {"complementarity": cfg.complementarity, "nuisance": cfg.nuisance, "imbalance": cfg.imbalance}
    if cfg.collapse is not None:
        dials["collapse"] = cfg.collapse
    if cfg.spurious is not None:
        dials["spurious"] = cfg.spurious
    only = partner_only(allr, h(ev))
    only_test = partner_only(testr, h(ev & is_test))
    partner = {
        "cuts": int(only.sum()), "share": float(only.sum() / max(1, usable.sum())),
        "cuts_test": int(only_test.sum()),
        "share_test": float(only_test.sum() / max(1, (testr["next"] >= 0).sum())),
        "share_by_obs": {f"{o:g}": float(partner_only(every[every["obs"] == o], h(every["obs"] == o)).mean())
                         for o in REPORT_OBS},
        "rule": "decision-bearing cut inside the carry" + ("" if code is None else " whose hint is wrong"),
    }
    out = {
        "dials": dials,
        "cut_obs": list(CUT_OBS),
        "measured": measured,
        "noise_amplitude": {m: world.amplitude[m] for m in cfg.channels if m in world.amplitude},
        "oracle": oracle_table(allr, mods, h(ev)),
        "oracle_test": oracle_table(testr, mods, h(ev & is_test)),
        "oracle_by_obs": {f"{o:g}": oracle_table(every[every["obs"] == o], mods, h(every["obs"] == o))
                          for o in REPORT_OBS},
        "oracle_exact_share": float(allr["bearing"][usable].mean()) if usable.any() else float("nan"),
        "oracle_method": "upper bound of the next-action accuracy from the generator's law (oracle_accuracy): "
                         "exact at decision-bearing cut points, 1 elsewhere",
        "oracle_plugin": plugin_table(allr, mods),
        "partner_only": partner,
        "collapse": None,
    }
    if code is not None:
        trip = every_h != 0
        out["collapse"] = {"level": cfg.collapse, "hint_accuracy": HINT_ACCURACY, "gains": code.gains(),
                           "hint_seen_by": list(HINT_SEEN_BY), "xor_seen_by": XOR_SEEN_BY,
                           "hint_right_share": float((every_h[trip] == every["direction"][trip]).mean())
                           if trip.any() else float("nan")}
    return out


def prepare_dataset(out, synth_kwargs: dict, *, seed: int = 0, progress: bool = False) -> Path:
    """The demo's synthetic dataset at ``out``, generated unless one with the same settings exists.

    A synthetic dataset with other settings there is replaced; anything else (a folder that holds
    files but no ``synth.json``, or a file) is refused, untouched."""
    out = Path(out)
    if dataset_matches(out, synth_kwargs, seed=seed):
        return out
    if out.exists() and not (out / "synth.json").is_file() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{str(out)!r} exists and is not a synthetic dataset rankfusion made (no synth.json): "
                         "choose another output folder, or move it away")
    return synthesize(out, seed=seed, overwrite=True, progress=progress, **synth_kwargs)


def dataset_matches(root, synth_kwargs: dict, *, seed: int = 0) -> bool:
    """Whether ``root`` holds a synthetic dataset generated with these settings (its ``synth.json``).

    Every setting of :class:`SynthConfig` is compared, those ``synth_kwargs`` leaves out at their
    defaults: a dataset made with a dial the caller does not name (``collapse``, ``nuisance``,
    ``channels``...) is another dataset, not this one.
    """
    meta = Path(root) / "synth.json"
    if not meta.exists():
        return False
    try:
        cfg = json.loads(meta.read_text()).get("config", {})
    except (OSError, ValueError, AttributeError):  # unreadable, or not a JSON object
        return False
    if not isinstance(cfg, dict):
        return False
    want = {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
            for f in dataclasses.fields(SynthConfig)}
    want.update(synth_kwargs, seed=seed)
    want["channels"] = _channels_arg(want["channels"])
    return all(cfg.get(k) == (list(v) if isinstance(v, tuple) else v) for k, v in want.items())
