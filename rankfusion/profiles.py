"""Profiles: how big the demo's and the figures' runs are (dataset, model, training, seeds).

A :class:`Profile` is what a :class:`rankfusion.runcache.RunCache` applies to every run it trains;
:data:`PROFILES` holds the two bundled ones (``quick`` for tests, ``full`` for the demo).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._validation import InputError
from .config import EVAL_OBS_RATIOS, PAPER_SEEDS, TRAIN_OBS_RATIOS


@dataclass(frozen=True)
class Profile:
    """How big the demo / figure runs are.

    Attributes
    ----------
    synth : dict
        Keyword arguments of :func:`rankfusion.data.synthesize` (the demo's dataset).
    preset : str or None
        Bundled config preset (``rankfusion/configs/<preset>.toml``) every run starts from.
    model, train : dict
        Overrides of :class:`rankfusion.config.R3DConfig` / ``TrainConfig`` applied on the preset.
    seeds : tuple of int
        Seeds of each configuration (results are averaged over them).
    obs_ratios : tuple of float
        Observation ratios at which features are exported and analysed.
    noise_targets : tuple of float
        Relative representation changes of the "small" and "large" noise levels.
    dose : dict
        Settings of the dose-response family (:func:`rankfusion.figures.dose.make`; empty: none):
        ``complementarity`` and ``imbalance`` (the levels of each sweep), ``base`` (the generator
        dials every point starts from), ``synth`` (:func:`rankfusion.data.synthesize` arguments of
        the dose datasets; default the profile's ``synth``, so the point at the base dials is the
        demo's own dataset and shares its runs) and ``data_seed``.
    collapse : dict
        Settings of the collapse family (:mod:`rankfusion.figures.collapse`; empty: none):
        ``levels`` (the collapse dial's levels K), ``synth`` (:func:`rankfusion.data.synthesize`
        arguments of its datasets, the dial added; default the profile's ``synth``) and ``data_seed``.
    """

    synth: dict = field(default_factory=dict)
    preset: str | None = "synthetic-small"
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    seeds: tuple = (1,)
    obs_ratios: tuple = EVAL_OBS_RATIOS
    noise_targets: tuple = (0.25, 0.75)
    dose: dict = field(default_factory=dict)
    collapse: dict = field(default_factory=dict)


#: ``quick``: about a minute end to end on 2 CPU cores (tests; its models barely train).
#: ``full``: the demo, sized for < 15 minutes on 2 CPU cores for its 37 configurations x 5 seeds
#: (:data:`DEMO_SEEDS`; 185 runs over the demo's dataset, the five other dose-sweep datasets and the
#: two collapse datasets, the seeds of one configuration trained as one batched model where they can be):
#: the ``synthetic-small`` preset (sample_rate 4, one temporal-fuser layer) made narrower
#: (d_model 32) and shorter (24 epochs at twice the learning rate), 64 videos (README.md gives
#: the measured wall time).
#: The demo's seeds: the paper's three and two more. With 5 seeds per arm Welch's test finds a
#: true 2-sd difference with power ~0.77, with the paper's 3 only ~0.38 (docs/analysis.md, "How
#: findings are judged").
DEMO_SEEDS = PAPER_SEEDS + (7, 42)

PROFILES = {
    "quick": Profile(
        synth=dict(n_videos=10, min_frames=50, max_frames=110, complementarity=1.0, imbalance=1.0,
                   split_fractions=(0.7, 0.15, 0.15),
                   channels={"rgb": 16, "depth": 16, "mvrgb": 16, "noise": 16, "imu": 8, "text": 8}),
        model=dict(d_model=16, n_layers=1, n_heads=2, mlp_ratio=1, dropout=0.0),
        train=dict(epochs=1, warmup_epochs=0, batch_size=8, sample_rate=2),
        seeds=(1,), obs_ratios=(0.3,),
        dose=dict(complementarity=(0.0, 1.0), imbalance=(1.0, 4.0), base=dict(complementarity=1.0, imbalance=1.0),
                  data_seed=0),
        # longer videos and a larger test split than the quick dataset, so that the test split has
        # cut points only depth can decide (data seed 1: 2 of them)
        collapse=dict(levels=(0.0, 1.0), data_seed=1,
                      synth=dict(n_videos=16, min_frames=100, max_frames=200, complementarity=1.0, imbalance=1.0,
                                 split_fractions=(0.5, 0.12, 0.38),
                                 channels={"rgb": 16, "depth": 16, "mvrgb": 16, "noise": 16, "imu": 8, "text": 8})),
    ),
    "full": Profile(
        synth=dict(n_videos=64, min_frames=150, max_frames=450, complementarity=1.0, imbalance=1.0,
                   split_fractions=(0.7, 0.15, 0.15)),
        model=dict(d_model=32, n_layers=1, n_heads=4, mlp_ratio=2),
        train=dict(epochs=24, warmup_epochs=2, batch_size=8, sample_rate=4, lr=2e-3),
        seeds=DEMO_SEEDS, obs_ratios=TRAIN_OBS_RATIOS,
        dose=dict(complementarity=(0.0, 1 / 3, 2 / 3, 1.0), imbalance=(1.0, 4.0, 16.0),
                  base=dict(complementarity=1.0, imbalance=1.0), data_seed=0),
        # a larger test split than the demo's dataset: the cut points only depth can decide are
        # about 8 % of the evaluation cut points (16 of 192; 6 of the test split's 58), and the
        # collapse index is measured on them
        collapse=dict(levels=(0.0, 1.0), data_seed=0,
                      synth=dict(n_videos=96, min_frames=150, max_frames=450, complementarity=1.0, imbalance=1.0,
                                 split_fractions=(0.6, 0.1, 0.3))),
    ),
}


def get_profile(name: str) -> Profile:
    """Return a named :class:`Profile`; ValueError naming the profile otherwise."""
    if name not in PROFILES:
        raise InputError(f"profile must be one of {sorted(PROFILES)}, got {name!r}")
    return PROFILES[name]
