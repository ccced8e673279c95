"""Configuration of the R3D model and of its training runs, and the anticipation protocol's constants.

Each component owns its defaults in a dataclass: :class:`R3DConfig` (the model, Sec. 4 and
App. C) and :class:`TrainConfig` (optimisation and the anticipation protocol, App. D.2).
:class:`RunConfig` bundles both; it is what :func:`rankfusion.train.train` takes, what a run
writes to ``RUN/config.json`` and what every checkpoint carries.

Overrides come, in this order, from a preset (``rankfusion/configs/<name>.toml``), a user TOML
file and keyword/CLI overrides. TOML files have a ``[model]`` and a ``[train]`` table whose keys
are the dataclass fields; unknown keys are errors (a typo must not silently fall back to a
default).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ._validation import InputError, InputTypeError, check_choice, check_float, check_int, option_name

#: Seeds of the paper's three runs (Sec. 5.3, App. D.2).
PAPER_SEEDS = (1, 10, 13452)

# The anticipation protocol (App. D.2, docs/datasets.md), stated once: every other module imports these.
#: Observation ratios alpha at which a model is scored (the MoC grid's rows).
EVAL_OBS_RATIOS = (0.2, 0.3)
#: Observation ratios training samples are cut at: the evaluation ratios and the training-only 0.5.
TRAIN_OBS_RATIOS = EVAL_OBS_RATIOS + (0.5,)
#: Prediction ratios beta (the MoC grid's columns).
EVAL_BETAS = (0.1, 0.2, 0.3, 0.5)
#: The future window predicted from a cut point, as a fraction of the video.
FUTURE_RATIO = 0.5



#: The largest float32 (``numpy.finfo(numpy.float32).max``): the optimiser's learning rate must fit.
FLOAT32_MAX = 3.4028234663852886e38

#: Decimals an observation ratio is taken to: the MoC tables' keys, and a float32 ratio from a batch
#: (0.30000001) cuts a video where 0.3 does. A configuration refuses ratios with more decimals.
RATIO_DECIMALS = 6


def ratio_key(obs_ratio) -> float:
    """An observation ratio as the MoC protocol keys and cuts with: rounded to :data:`RATIO_DECIMALS`."""
    return round(float(obs_ratio), RATIO_DECIMALS)


def observed_frames(n_frames: int, obs_ratio) -> int:
    """The frames a video of ``n_frames`` shows at ``obs_ratio``: ``int(ratio_key(obs_ratio) * n_frames)``.

    The one cut of the MoC protocol: what the model is fed, what training samples, what scoring
    counts the future from and what feature export reads all use it (a ratio with more decimals
    cut once raw and once rounded put a frame the model saw into the scored future)."""
    return int(ratio_key(obs_ratio) * n_frames)


def cut_frames(n_frames: int, obs_ratio: float, future_ratio: float = FUTURE_RATIO) -> tuple[int, int]:
    """A video of ``n_frames`` cut at ``obs_ratio``: ``(observed, future)`` frame counts,
    :func:`observed_frames` observed and ``int(future_ratio * n_frames)`` to predict, capped
    at the frames left after the cut. A training sample needs both to be at least 1."""
    past = observed_frames(n_frames, obs_ratio)
    return past, min(int(future_ratio * n_frames), n_frames - past)


def min_frames(obs_ratios=TRAIN_OBS_RATIOS, future_ratio: float = FUTURE_RATIO) -> int:
    """The fewest frames a video needs to be trained on: at every ratio of ``obs_ratios`` an observed
    and a future frame (:func:`cut_frames`); 5 at the defaults (``int(0.2 * 5) = 1``)."""
    n = 1
    while any(min(cut_frames(n, r, future_ratio)) < 1 for r in obs_ratios):
        n += 1
    return n


#: Directory of the bundled presets (``<name>.toml``).
PRESET_DIR = Path(__file__).with_name("configs")


def width_for_trunk(trunk_width: int, n_modalities: int, n_heads: int) -> int:
    """The largest D <= trunk_width / M with ``n_heads`` dividing M x D (:attr:`R3DConfig.trunk_width`)."""
    check_int(trunk_width, "trunk_width", low=1)
    d = trunk_width // n_modalities
    while d >= 1 and (n_modalities * d) % n_heads:
        d -= 1
    if d < 1:
        raise InputError(f"trunk_width {trunk_width} leaves no width per modality for {n_modalities} modalities "
                         f"and n_heads {n_heads}; raise trunk_width or set d_model")
    return d


@dataclass
class R3DConfig:
    """The R3D model (Sec. 4, App. C). Defaults follow the paper; official-code variants are options.

    Attributes
    ----------
    modalities : tuple of str
        Modality names, in the order they are stacked (Sec. 4.2). One modality is "R3D (Uni)".
    d_model : int
        Token width D after the per-modality projection (Eq. 2); 128 in App. D.2.
    trunk_width : int, optional
        Fix the stacked width M x D instead of D: ``d_model`` is then derived as the largest
        D <= trunk_width / M for which ``n_heads`` divides M x D, so that models with one, two or
        three modalities have (about) the same trunk (the temporal fuser and the anticipation
        module are M x D wide). Not in the paper, whose D is per modality; an explicit
        ``d_model`` in a later layer (file, override, ``--d-model``) cancels it
        (:func:`load_config`). None (default): ``d_model`` is used as given.
    rtf : bool
        Use the Rank-enhancing Token Fuser (Eqs. 3-5). ``False`` is Table 2's "W/O RTF".
    selection : {"spectral", "bn_gamma"}
        How the low-informativeness channels are chosen: ``"spectral"`` ranks channels by
        Definition 1 on the batch's valid steps (the paper); ``"bn_gamma"`` by the smallest
        |BatchNorm gamma| (the official code, the CEN criterion; one channel set for all tokens).
    exchange : {"adaptive", "static"}
        ``"adaptive"``: a learnable per-channel alpha in [0, 1] (Eqs. 4-5). ``"static"``: a fixed,
        non-learnable alpha (``static_alpha``; 1.0 = hard swap of the selected channels), Table 3.
    exchange_ratio : float
        Fraction of the D channels blended, k' = round(exchange_ratio * D) (0.1 in the official
        runs; Fig. 5 sweeps 0.1/0.2/0.3). 0 disables blending while keeping the module.
    static_alpha : float
        The fixed alpha used when ``exchange="static"``.
    selection_scope : {"batch", "sample"}
        ``"batch"`` (the paper, Sec. 4.2): one channel set per modality from the whole batch's
        (B*T, D) matrix of valid steps. ``"sample"``: one set per video from its own steps, so a
        video's output does not depend on its batch-mates (training then matches evaluation,
        which scores each video as it would be alone). Only for ``selection="spectral"``.
    eval_channels : {"train", "batch"}
        Which channels RTF blends in eval mode (with ``selection="spectral"``, ``selection_scope="batch"``).
        ``"train"``: those chosen on the training rows seen since the model last left training mode
        (the last epoch), as BatchNorm uses running statistics, so a held-out video never chooses
        its own channels and evaluation does not depend on batching. ``"batch"``: each evaluated
        batch (one video, in evaluation) chooses its own, Sec. 4.2 read literally. Not in the paper.
    informativeness_k : int or None
        Top-k of Definition 1. ``None`` sums over all singular directions (Sec. 4.2), which is the
        column energy ||x_c||^2 and needs no decomposition.
    alpha_param : {"sigmoid", "raw"}
        ``"sigmoid"``: alpha = sigmoid(raw parameter), so alpha stays in [0, 1] as Definition 2
        and the proof (|1 - alpha| <= 1) require. ``"raw"``: the official code's unconstrained
        parameter initialised U[0, 1).
    fusion_rule : {"mean", "ring"}
        Partner of a modality when there are three or more: ``"mean"`` blends with the mean of the
        other modalities, ``"ring"`` with the next modality in ``modalities`` (cyclically). With two
        modalities both rules are Eqs. 4-5; with one there is no fusion.
    latent : {"separated", "shared"}
        Table 9: ``"separated"`` (the paper's default) keeps modality-specific tokens;
        ``"shared"`` adds one Linear(D, D) + ReLU shared by all modalities after Eq. 2.
    temporal_fuser : bool
        Use the Temporal Fuser layers (App. C.1). ``False`` is Table 8's "W/O".
    n_layers : int
        Number L of Temporal Fuser layers.
    n_heads : int
        Attention heads (self- and cross-attention); must divide the stacked width M * D.
    mlp_ratio : int
        Hidden width of the MLP/FFN blocks as a multiple of the stacked width.
    dropout : float
        Dropout in attention and MLP blocks.
    n_queries : int
        Number N_q of learnable future queries (App. C.2, 8 in App. D.2).
    positional : {"sinusoidal", "recency", "none"}
        Positional encoding added to the stacked tokens. The paper does not say; without one,
        self-attention cannot tell which observed step is the latest (FUTR uses one).
        ``"recency"`` encodes each step's distance to the latest observed one
        (:func:`rankfusion.model.recency_positions`).
    input_dims : dict or None
        Input channels C per modality; resolved from the dataset at training time.
    n_classes : int or None
        Number of action classes (without NONE); resolved from the dataset at training time.
    """

    modalities: tuple = ("rgb", "depth")
    d_model: int = 128
    trunk_width: int | None = None
    rtf: bool = True
    selection: str = "spectral"
    exchange: str = "adaptive"
    exchange_ratio: float = 0.1
    selection_scope: str = "batch"
    eval_channels: str = "train"
    static_alpha: float = 1.0
    informativeness_k: int | None = None
    alpha_param: str = "sigmoid"
    fusion_rule: str = "mean"
    latent: str = "separated"
    temporal_fuser: bool = True
    n_layers: int = 2
    n_heads: int = 8
    mlp_ratio: int = 2
    dropout: float = 0.1
    n_queries: int = 8
    positional: str = "sinusoidal"
    input_dims: dict | None = None
    n_classes: int | None = None

    def __post_init__(self):
        if isinstance(self.modalities, str):
            self.modalities = tuple(m for m in self.modalities.split(",") if m)
        if not isinstance(self.modalities, (list, tuple)):
            raise InputTypeError(f"modalities must be a list of names, got {self.modalities!r}")
        self.modalities = tuple(self.modalities)
        if not self.modalities or not all(isinstance(m, str) and m for m in self.modalities):
            raise InputError(f"modalities must be a non-empty list of names, got {self.modalities!r}")
        if len(set(self.modalities)) != len(self.modalities):
            raise InputError(f"modalities must not repeat, got {self.modalities!r}")
        check_int(self.n_heads, "n_heads", low=1)
        if self.trunk_width is not None:
            self.d_model = width_for_trunk(self.trunk_width, len(self.modalities), self.n_heads)
        check_int(self.d_model, "d_model", low=1)
        check_choice(self.selection, "selection", {"spectral", "bn_gamma"})
        check_choice(self.exchange, "exchange", {"adaptive", "static"})
        check_float(self.exchange_ratio, "exchange_ratio", low=0.0, high=1.0)
        check_float(self.static_alpha, "static_alpha", low=0.0, high=1.0)
        check_choice(self.selection_scope, "selection_scope", {"batch", "sample"})
        check_choice(self.eval_channels, "eval_channels", {"train", "batch"})
        check_int(self.informativeness_k, "informativeness_k", low=1, high=self.d_model, allow_none=True)
        check_choice(self.alpha_param, "alpha_param", {"sigmoid", "raw"})
        check_choice(self.fusion_rule, "fusion_rule", {"mean", "ring"})
        check_choice(self.latent, "latent", {"separated", "shared"})
        check_int(self.n_layers, "n_layers", low=0)
        if (len(self.modalities) * self.d_model) % self.n_heads:
            raise InputError(
                f"n_heads must divide the stacked width {len(self.modalities)} x d_model = "
                f"{len(self.modalities) * self.d_model}, got n_heads={self.n_heads}"
            )
        check_int(self.mlp_ratio, "mlp_ratio", low=1)
        check_float(self.dropout, "dropout", low=0.0, high=0.9)
        check_int(self.n_queries, "n_queries", low=1)
        check_choice(self.positional, "positional", {"sinusoidal", "recency", "none"})
        check_int(self.n_classes, "n_classes", low=1, allow_none=True)
        if self.input_dims is not None:
            if not isinstance(self.input_dims, dict):
                raise InputTypeError(f"input_dims must be a table {{modality: channels}}, got {self.input_dims!r}")
            self.input_dims = {str(k): check_int(v, f"input_dims[{k!r}]", low=1) for k, v in self.input_dims.items()}


@dataclass
class TrainConfig:
    """Optimisation and the anticipation protocol (App. D.2 defaults).

    Attributes
    ----------
    epochs, batch_size, lr, weight_decay : int, int, float, float
        AdamW for 60 epochs, lr 1e-3, batch 8 (D.2; AdamW's usual weight decay 0.01).
    warmup_epochs : int
        Linear warm-up length of the cosine schedule (10 in D.2), stepped per batch.
    min_lr_ratio : float
        Final learning rate of the cosine schedule as a fraction of ``lr``.
    obs_ratios : tuple of float
        Observation ratios used for training samples ({0.2, 0.3, 0.5}).
    future_ratio : float
        Future window as a fraction of the video (0.5).
    sample_rate : int
        Temporal stride tau of the input features (Sec. 4.1): the observed frames ``[:past:tau]``,
        frames 0, tau, 2 tau, ... below the cut, ``ceil(past / tau)`` of them. The paper counts
        ``floor(T / tau)``, one fewer when tau does not divide the length; ``rankfusion data
        featurize --stride`` keeps the paper's count.
    loss_seg, loss_cls, loss_dur : float
        Weights of segmentation CE, anticipation CE and duration regression.
    transition_weight : float
        Factor on a sample's anticipation CE when its first future action differs from the last
        observed one (an action change at the cut). 1 (the paper mentions none); the official
        R3D code uses 10. Enters the config hash only when not 1, so earlier runs keep theirs.
    grad_clip : float
        Gradient-norm clip (0 disables).
    select_metric : {"val_moc", "val_loss"}
        How the best checkpoint is chosen on the *validation* split (never test): the MoC averaged
        over ``eval_obs`` x ``eval_betas``, or the validation loss.
    eval_obs, eval_betas : tuple of float
        The MoC grid (App. D.2: obs 0.2/0.3, beta 0.1/0.2/0.3/0.5). Every ratio of a configuration
        (these and ``obs_ratios``) has at most :data:`RATIO_DECIMALS` decimals (:func:`observed_frames`).
    modality_dropout : float or dict
        Remedy against modality collapse (:mod:`rankfusion.remedies`, docs/model.md): during
        training each sample's tokens of a modality are set to zero with this probability, drawn
        independently per (sample, modality). A number applies to every modality; a table
        ``{modality: p}`` sets it per modality (missing ones 0). 0 (default) disables it.
    unimodal_heads : float
        Weight W of the auxiliary per-modality anticipation heads: the training loss gains
        ``W * sum_m CE_m`` (each modality's head predicts the first future action from that
        modality's tokens alone). 0 (default): no heads.
    ogm : float
        alpha of OGM-GE gradient modulation (Peng et al., CVPR 2022); needs ``unimodal_heads > 0``
        (their logits give each modality's confidence) and two or more modalities. 0: off.
    The three remedies enter the config hash only when set, so earlier runs keep theirs.
    split_set : str or None
        The dataset's split set the run trains and validates on and is evaluated on
        (``splits/<split>.<split_set>.bundle``, e.g. ``"split2"`` of an MS-TCN dataset's
        ``split1``..``split4``). None (default): ``split1`` when the dataset has it, else the first
        in sorted order (:func:`rankfusion.data.open_dataset`). Enters the config hash only when set.
    """

    epochs: int = 60
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_epochs: int = 10
    min_lr_ratio: float = 0.0
    obs_ratios: tuple = TRAIN_OBS_RATIOS
    future_ratio: float = FUTURE_RATIO
    sample_rate: int = 1
    loss_seg: float = 1.0
    loss_cls: float = 1.0
    loss_dur: float = 1.0
    transition_weight: float = 1.0
    grad_clip: float = 1.0
    select_metric: str = "val_moc"
    eval_obs: tuple = EVAL_OBS_RATIOS
    eval_betas: tuple = EVAL_BETAS
    modality_dropout: float | dict = 0.0
    unimodal_heads: float = 0.0
    ogm: float = 0.0
    split_set: str | None = None

    def __post_init__(self):
        check_int(self.epochs, "epochs", low=1)
        check_int(self.batch_size, "batch_size", low=1)
        # the optimiser works in float32: a larger lr overflows there (a traceback, not a divergence)
        check_float(self.lr, "lr", low=0.0, low_open=True, high=FLOAT32_MAX)
        check_float(self.weight_decay, "weight_decay", low=0.0)
        check_int(self.warmup_epochs, "warmup_epochs", low=0)
        check_float(self.min_lr_ratio, "min_lr_ratio", low=0.0, high=1.0)
        self.obs_ratios = _ratios(self.obs_ratios, "obs_ratios")
        check_float(self.future_ratio, "future_ratio", low=0.0, high=1.0, low_open=True)
        check_int(self.sample_rate, "sample_rate", low=1)
        for name in ("loss_seg", "loss_cls", "loss_dur", "transition_weight", "grad_clip"):
            check_float(getattr(self, name), name, low=0.0)
        check_choice(self.select_metric, "select_metric", {"val_moc", "val_loss"})
        self.eval_obs = _ratios(self.eval_obs, "eval_obs")
        self.eval_betas = _ratios(self.eval_betas, "eval_betas")
        if isinstance(self.modality_dropout, dict):
            drop = {str(k): check_float(v, f"modality_dropout[{k!r}]", low=0.0, high=1.0)
                    for k, v in self.modality_dropout.items()}
            # a table of zeros is the default: the same training, so the same hash
            self.modality_dropout = drop if any(drop.values()) else 0.0
        else:
            self.modality_dropout = check_float(self.modality_dropout, "modality_dropout", low=0.0, high=1.0)
        self.unimodal_heads = check_float(self.unimodal_heads, "unimodal_heads", low=0.0)
        self.ogm = check_float(self.ogm, "ogm", low=0.0)
        if self.split_set is not None and (not isinstance(self.split_set, str) or not self.split_set
                                           or "/" in self.split_set or self.split_set.startswith(".")):
            raise InputError(f"split_set must be a split-set name such as 'split2', got {self.split_set!r}")
        if self.ogm > 0 and self.unimodal_heads == 0:
            heads = option_name("unimodal_heads > 0", "--unimodal-heads W with W > 0")
            raise InputError(f"ogm {self.ogm:g} needs {heads}: OGM-GE reads each modality's confidence from the "
                             "auxiliary unimodal heads")


def _ratios(values, name):
    if isinstance(values, (int, float)):
        values = (values,)
    if not isinstance(values, (list, tuple)):
        raise InputTypeError(f"{name} must be a number or a list of numbers, got {values!r}")
    values = tuple(check_float(v, f"{name} entry", low=0.0, high=1.0, low_open=True) for v in values)
    if not values:
        raise InputError(f"{name} must not be empty")
    for v in values:
        if ratio_key(v) != v:
            raise InputError(f"{name} entry {v!r} has more than {RATIO_DECIMALS} decimals; ratios are taken to "
                             f"{RATIO_DECIMALS} (the MoC tables' keys): give {ratio_key(v)!r}")
    return values


@dataclass
class RunConfig:
    """A training run: the model and its training configuration."""

    model: R3DConfig = field(default_factory=R3DConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        drop = self.train.modality_dropout
        if isinstance(drop, dict):
            unknown = sorted(set(drop) - set(self.model.modalities))
            if unknown:
                raise InputError(f"modality_dropout names modalities {unknown} the model does not have "
                                 f"({list(self.model.modalities)})")
        if self.train.ogm > 0 and len(self.model.modalities) < 2:
            raise InputError(f"ogm {self.train.ogm} needs two or more modalities (OGM-GE compares them), "
                             f"got {list(self.model.modalities)}")

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "config", origins: dict | None = None) -> "RunConfig":
        """Build from ``{"model": {...}, "train": {...}}``; unknown keys raise :class:`InputError`.

        ``origins`` maps ``(table, key)`` to where that value came from (a file, a preset, the
        overrides), for the error a bad value raises; ``source`` otherwise.
        """
        unknown = set(d) - {"model", "train"}
        if unknown:
            raise InputError(f"{source}: unknown table(s) {sorted(unknown)}; allowed: ['model', 'train']")
        where = {t: {k: f"{o} [{t}]" for (tt, k), o in (origins or {}).items() if tt == t} for t in ("model", "train")}
        return cls(
            model=_build(R3DConfig, d.get("model", {}), f"{source} [model]", where["model"]),
            train=_build(TrainConfig, d.get("train", {}), f"{source} [train]", where["train"]),
        )

    def config_hash(self) -> str:
        """Stable 12-hex-digit hash of the resolved configuration (sorted canonical JSON)."""
        d = self.to_dict()
        # Options added after runs were recorded enter the hash only when they differ from the
        # behaviour before they existed, so that the hash (the run cache's key and the resume
        # check) of every earlier run is unchanged, and a run whose behaviour changed gets a new one.
        for table, name, before in _LATER_OPTIONS:
            if d[table].get(name) == before:
                del d[table][name]
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def replace(self, *, model: dict | None = None, train: dict | None = None) -> "RunConfig":
        """Return a copy with fields overridden (validated again)."""
        d = self.to_dict()
        d["model"].update(_explicit_width({"model": dict(model or {})})["model"])
        d["train"].update(train or {})
        return RunConfig.from_dict(d, source="overrides")


#: (table, field, the behaviour before it existed) of options added after the first recorded runs
#: (see config_hash). eval_channels="train" is the default, so default runs hash anew: their
#: evaluation changed.
_LATER_OPTIONS = (("train", "transition_weight", 1.0), ("model", "trunk_width", None),
                  ("train", "modality_dropout", 0.0), ("train", "unimodal_heads", 0.0), ("train", "ogm", 0.0),
                  ("model", "eval_channels", "batch"), ("train", "split_set", None))


def _explicit_width(layer: dict) -> dict:
    """A config layer that sets ``d_model`` but not ``trunk_width`` cancels an earlier ``trunk_width``."""
    model = layer.get("model") or {}
    if "d_model" in model and "trunk_width" not in model:
        return {**layer, "model": {**model, "trunk_width": None}}
    return layer


def _build(cls, values: dict, source: str, origins: dict | None = None):
    """``cls(**values)``; an error names where the offending values came from when one layer set
    every field the message names (``origins[key]``: the layer that set it last), and no layer
    otherwise (a field left at its default, or fields of several layers)."""
    if not isinstance(values, dict):
        raise InputError(f"{source} must be a table, got {values!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise InputError(f"{source}: unknown key(s) {sorted(unknown)}; allowed: {sorted(names)}")
    try:
        return cls(**values)
    except InputError as exc:
        named = [f for f in names if re.search(rf"\b{f}\b", str(exc))]
        where = {(origins or {}).get(f) for f in named}
        if len(where) != 1 or None in where:
            raise
        raise type(exc)(f"{where.pop()}: {exc}") from None


def preset_names() -> list[str]:
    """Names of the bundled presets (``rankfusion/configs/*.toml``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            d = tomllib.load(fh)
    except FileNotFoundError:
        raise InputError(f"config file {str(path)!r} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise InputError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    for table in ("model", "train"):
        if table in d and not isinstance(d[table], dict):
            raise InputError(f"config file {str(path)!r}: {table} must be a table ([{table}] with key = value "
                             f"lines), got {type(d[table]).__name__} {d[table]!r}")
    return d


def _merge(base: dict, extra: dict) -> dict:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for table, values in extra.items():
        if isinstance(values, dict) and isinstance(out.get(table), dict):
            out[table].update(values)
        else:
            out[table] = values
    return out


def named_modalities(path=None, *, preset: str | None = None):
    """The modalities a preset or TOML file names in ``[model]`` (the file wins), or None.

    ``rankfusion train`` uses the dataset's own modalities when neither these nor
    ``--modalities`` name any (the built-in default ``("rgb", "depth")`` fits only some datasets).
    """
    found = None
    if preset is not None and preset in preset_names():
        found = (_read_toml(PRESET_DIR / f"{preset}.toml").get("model") or {}).get("modalities", found)
    if path is not None:
        found = (_read_toml(Path(path)).get("model") or {}).get("modalities", found)
    return found


def load_config(path=None, *, preset: str | None = None, model: dict | None = None,
                train: dict | None = None) -> RunConfig:
    """Resolve a :class:`RunConfig` from defaults, a preset, a TOML file and overrides.

    Parameters
    ----------
    path : str or Path, optional
        TOML file with ``[model]`` / ``[train]`` tables.
    preset : str, optional
        Name of a bundled preset (see :func:`preset_names`), applied before ``path``.
    model, train : dict, optional
        Field overrides applied last (e.g. from CLI flags).

    Returns
    -------
    RunConfig
    """
    d: dict = {"model": {}, "train": {}}
    layers = []
    if preset is not None:
        if preset not in preset_names():
            raise InputError(f"{option_name('preset', '--preset')} must be one of {preset_names()}, got {preset!r}")
        layers.append((f"preset {preset!r}", _read_toml(PRESET_DIR / f"{preset}.toml")))
    if path is not None:
        layers.append((str(path), _read_toml(Path(path))))
    layers.append(("overrides", {"model": dict(model or {}), "train": dict(train or {})}))
    origins = {}
    for where, layer in layers:
        d = _merge(d, _explicit_width(layer))
        origins.update({(t, k): where for t, v in layer.items() if isinstance(v, dict) for k in v})
    cfg = RunConfig.from_dict(d, source=str(path) if path is not None else (preset or "config"), origins=origins)
    for where, layer in layers:
        m = layer.get("model") or {}
        if m.get("trunk_width") is not None and "d_model" in m and m["d_model"] != cfg.model.d_model:
            raise InputError(f"{where}: d_model {m['d_model']} and trunk_width {m['trunk_width']} disagree "
                             f"(trunk_width gives d_model {cfg.model.d_model} for {len(cfg.model.modalities)} "
                             "modalities); set one of them")
    return cfg
