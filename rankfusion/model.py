"""R3D: Rank-enhancing Token Fuser, Temporal Fuser and anticipation module (Sec. 4, App. C).

Shapes: ``B`` batch, ``T`` (sampled) time steps, ``M`` modalities, ``D`` token width per modality,
``W = M * D`` stacked width, ``Q`` future queries, ``K`` action classes (the class head has
``K + 1`` outputs, the last one is NONE). Masks are boolean ``(B, T)`` with True = valid step.

Padding never changes an output at a valid position or any anticipation output: channel
informativeness uses valid steps only, BatchNorm statistics (``selection="bn_gamma"``) use valid
steps only, attention masks padded keys, and everything else acts per step.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from .config import R3DConfig
from .spectral import (
    blended_channel_count,
    channel_informativeness,
    channel_statistic,
    informativeness_from_statistic,
    low_informative_channels,
)


def channel_scores(X: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """Channel informativeness I_c (Definition 1) of a ``(N, D)`` token matrix; Eq. 3 ranks by it.

    For one token matrix (RTF's per-video scope, the selection probe); the per-batch scope
    computes the same numbers from the additive :func:`rankfusion.spectral.channel_statistic`
    (summed over processes and, for eval mode's recorded choice, over the training rows). The
    maths lives in :func:`rankfusion.spectral.channel_informativeness` (column energies for ``k=None``, the
    ``D x D`` Gram's eigenvectors for top-k; never an SVD of the ``N x D`` matrix). The model's
    default is ``k=None`` (``R3DConfig.informativeness_k``): the sum over all ``r`` singular
    directions that Sec. 4.2 writes, i.e. the column energy ``||x_c||^2``.

    Parameters
    ----------
    X : Tensor of shape (N, D)
        Valid tokens of one modality (Sec. 4.2: the batch's ``B x T`` steps flattened).
    k : int, optional
        Top-``k`` singular directions; None: all of them.

    Returns
    -------
    Tensor of shape (D,), float64
    """
    return channel_informativeness(X, k=k)


def _valid_tokens(F_: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # (B, T, D) -> (n_valid, D): Sec. 4.2 flattens B x T; padded steps are dropped.
    return F_[mask]


class MaskedBatchNorm(nn.Module):
    """BatchNorm over channels of ``(B, T, D)`` tokens whose statistics use valid steps only.

    Used by ``selection="bn_gamma"`` (the official code's CEN criterion): its |gamma| ranks the
    channels. A stock ``BatchNorm1d`` would mix padded steps into the batch statistics.
    """

    def __init__(self, d: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))
        self.register_buffer("running_mean", torch.zeros(d))
        self.register_buffer("running_var", torch.ones(d))
        self.momentum, self.eps = momentum, eps

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.training:
            v = x[mask]
            mean = v.mean(0)
            var = v.var(0, unbiased=False)
            with torch.no_grad():
                n = v.shape[0]
                unbiased = var * (n / max(n - 1, 1))
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(unbiased, self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class RTFOutput(NamedTuple):
    """What the token fuser returns.

    before : list of (B, T, D) tensors, the fuser's inputs (after BatchNorm for ``bn_gamma``).
    after : list of (B, T, D) tensors, the fused per-modality features (Eqs. 4-5).
    low : list of (k',) int64 tensors, the blended channels of each modality (Eq. 3).
    """

    before: list
    after: list
    low: list


class RankEnhancingTokenFuser(nn.Module):
    """Rank-enhancing Token Fuser (RTF), Eqs. 3-5.

    For each modality m, the k' channels with the lowest informativeness (Eq. 3: Definition 1 on
    the batch's valid steps, summed over all directions unless ``informativeness_k`` is set, or
    smallest |BatchNorm gamma|) are blended with the same channels of a partner (Eqs. 4-5): ``out[..., c] = alpha_m[c] * partner[..., c] + (1 - alpha_m[c]) * x_m[..., c]`` for c in
    the selected set; other channels pass unchanged. Note the convention: Eq. 4 puts alpha on the
    partner, Definition 2 on the modality's own channel (alpha_Def2 = 1 - alpha_Eq4); we follow Eq. 4.

    Partners: with two modalities each blends with the other (Eqs. 4-5, both directions, both
    from the *pre-fusion* features). With M >= 3, ``fusion_rule="mean"`` uses the mean of the other
    M - 1 modalities, ``"ring"`` the next modality cyclically. With one modality there is nothing
    to blend with, and with ``k_prime = 0`` nothing is blended: ``after`` equals ``before`` (with
    ``selection="bn_gamma"`` both are the BatchNorm's output, which still normalises the tokens).

    Gradients: the channel selection (an argmin over informativeness) is piecewise constant and
    computed without autograd. What learns through the fuser are alpha (for the selected
    channels) and both modalities' features through the blend (own: ``1 - alpha``, partner: ``alpha``).

    Distributed training: ``stats_group`` (a ``torch.distributed`` process group, default None)
    makes ``selection="spectral"`` with ``selection_scope="batch"`` sum the selection statistic
    (:func:`rankfusion.spectral.channel_statistic`: column energies, or the Gram matrix for
    top-k) over the group's processes in training mode, so N processes with batch B select
    the channels one process would select from the N*B videos. In eval mode without a recorded
    choice, and with ``None``, the batch on this process decides.

    Evaluation uses the training rows' choice (``eval_channels="train"``, the default, with
    ``selection="spectral"`` and ``selection_scope="batch"``): in training mode the fuser adds each
    batch's selection statistic (:func:`rankfusion.spectral.channel_statistic`; additive over row
    blocks) to a running sum, and on the switch to eval mode it chooses each modality's k' channels
    from that sum, the statistic of every training row seen since the model last left training mode
    (in the trainers: the last epoch), and resets the sum. Eval mode then blends those channels
    whatever batch it is given, as BatchNorm uses its running statistics, so a held-out video does
    not choose its own channels (which would let test rows shape the model) and evaluation does not
    depend on batching. The choice is the buffer ``frozen_low`` (with ``frozen``), saved in
    checkpoints. Before any training row has been seen (a new model, or a checkpoint written before
    the buffer existed) the evaluated batch decides. ``eval_channels="batch"`` keeps that for every
    evaluation (Sec. 4.2 read literally). :meth:`freeze` makes the choice from rows the caller names;
    :meth:`unfreeze` returns eval mode to the batch's own choice until the next switch to eval mode.
    Training mode always decides per batch.
    """

    def __init__(self, modalities, d: int, *, exchange_ratio: float = R3DConfig.exchange_ratio,
                 selection: str = R3DConfig.selection, exchange: str = R3DConfig.exchange,
                 static_alpha: float = R3DConfig.static_alpha,
                 informativeness_k: int | None = R3DConfig.informativeness_k,
                 alpha_param: str = R3DConfig.alpha_param, fusion_rule: str = R3DConfig.fusion_rule,
                 selection_scope: str = R3DConfig.selection_scope, eval_channels: str = R3DConfig.eval_channels):
        super().__init__()
        if eval_channels not in ("train", "batch"):
            raise ValueError(f"eval_channels must be 'train' or 'batch', got {eval_channels!r}")
        self.selection_scope = selection_scope
        self.eval_channels = eval_channels
        self.stats_group = None  # not state: set by the distributed trainer, see the class docstring
        self.modalities = tuple(modalities)
        self.d = d
        self.k_prime = blended_channel_count(exchange_ratio, d)
        self.selection, self.exchange = selection, exchange
        self.informativeness_k = informativeness_k
        self.alpha_param, self.fusion_rule = alpha_param, fusion_rule
        M = len(self.modalities)
        if exchange == "adaptive":
            # Paper: alpha "randomly initialized from a uniform distribution". Under the sigmoid
            # parametrisation we draw u ~ U(0.05, 0.95) and store logit(u), so the initial alphas
            # follow that law while sigmoid keeps alpha in [0, 1] for ever after (Definition 2, and
            # the proof's |1 - alpha| <= 1), without clamping that would kill gradients at the bounds.
            u = torch.empty(M, d).uniform_(0.05, 0.95) if alpha_param == "sigmoid" else torch.rand(M, d)
            self.alpha_raw = nn.Parameter(torch.logit(u) if alpha_param == "sigmoid" else u)
        else:
            self.register_buffer("alpha_const", torch.full((M, d), float(static_alpha)))
        if selection == "bn_gamma":
            self.norms = nn.ModuleList(MaskedBatchNorm(d) for _ in range(M))
        # The channels eval mode blends, (M, k'), and whether they are set; saved in checkpoints.
        self.register_buffer("frozen_low", torch.zeros(M, self.k_prime, dtype=torch.long))
        self.register_buffer("is_frozen", torch.zeros((), dtype=torch.bool))
        # The running selection statistic of the training rows since the last switch to eval mode:
        # (M, D) column energies, or (M, D, D) Gram matrices for top-k; and how many batches it holds.
        stat_shape = (M, d) if informativeness_k is None else (M, d, d)
        self.register_buffer("train_stat", torch.zeros(stat_shape, dtype=torch.float64), persistent=False)
        self.register_buffer("train_batches", torch.zeros((), dtype=torch.long), persistent=False)

    @property
    def frozen(self) -> bool:
        """Whether eval mode blends a recorded channel choice (see the class docstring)."""
        return bool(self.is_frozen)

    @property
    def selects_per_batch(self) -> bool:
        """Whether Eq. 3 chooses one channel set per batch from the batch's rows (Definition 1 with
        ``selection_scope="batch"``, two or more modalities, k' > 0)."""
        return (self.selection == "spectral" and self.selection_scope == "batch" and len(self.modalities) > 1
                and self.k_prime > 0)

    @property
    def batch_decides(self) -> bool:
        """Whether eval mode's channel choice comes from the evaluated batch (no choice recorded), so
        that a video's output depends on the other videos of its batch."""
        return self.selects_per_batch and not self.frozen

    @property
    def tracks_training_rows(self) -> bool:
        """Whether eval mode takes its channels from the training rows (``eval_channels="train"`` and
        one channel set per batch chosen by Definition 1, the only case where a batch decides)."""
        return self.eval_channels == "train" and self.selects_per_batch

    def train(self, mode: bool = True):
        """Switch mode; leaving training mode makes eval mode's channel choice from the training rows
        seen since the last switch (when there are any; see the class docstring)."""
        if self.training and not mode and self.tracks_training_rows and int(self.train_batches) > 0:
            self._choose_from_training_rows()
        return super().train(mode)

    @torch.no_grad()
    def _choose_from_training_rows(self) -> list:
        low = channels_from_statistic(self.train_stat, self.informativeness_k, self.k_prime)
        self.frozen_low.copy_(low)
        self.is_frozen.fill_(True)
        self.train_stat.zero_()
        self.train_batches.zero_()
        return list(low)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # A checkpoint written before eval mode's channel choice was saved has no such entries: it
        # loads with none recorded (eval mode then lets the evaluated batch decide, as it did then).
        for name in ("frozen_low", "is_frozen"):
            state_dict.setdefault(prefix + name, getattr(self, name).new_zeros(getattr(self, name).shape))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    @torch.no_grad()
    def freeze(self, feats, mask) -> list:
        """Make eval mode blend the channels chosen on ``feats`` / ``mask`` (e.g. the training rows).

        Parameters
        ----------
        feats : list of (B, T, D) tensors, one per modality (the fuser's inputs)
        mask : (B, T) bool tensor

        Returns
        -------
        list of (k',) int64 tensors: the channel sets (batch selection scope only).
        """
        if self.selection_scope != "batch" or self.selection != "spectral":
            raise ValueError(f"freeze needs selection='spectral' with selection_scope='batch' (one channel set "
                             f"per modality chosen from data), got {self.selection!r}, {self.selection_scope!r}")
        self.train_stat.zero_()
        for m, x in enumerate(feats):
            self.train_stat[m] = channel_statistic(_valid_tokens(x.detach(), mask), self.informativeness_k)
        return self._choose_from_training_rows()

    def unfreeze(self) -> None:
        """Let the evaluated batch choose the channels again (until the next switch to eval mode)."""
        self.is_frozen.fill_(False)

    def alpha(self) -> torch.Tensor:
        """Per-modality, per-channel blending weights, shape (M, D)."""
        return blending_alpha(self.exchange, self.alpha_param, getattr(self, "alpha_raw", None),
                              getattr(self, "alpha_const", None))

    @torch.no_grad()
    def select(self, feats, mask) -> list:
        """Eq. 3: the bottom-k' channels of each modality by informativeness (Definition 1).

        ``feats`` is a list of (B, T, D) tensors, ``mask`` (B, T). Each entry of the result is a
        sorted (k',) int64 tensor, or (B, k') with ``selection_scope="sample"`` (one set per
        video, from that video's valid steps only); :func:`rankfusion.spectral.low_informative_channels`
        takes the k' lowest scores.
        """
        if not self.training and self.frozen:
            return list(self.frozen_low)
        track = self.training and self.tracks_training_rows
        out = []
        for m, x in enumerate(feats):
            if self.selection == "bn_gamma":
                score = self.norms[m].weight.abs()
            elif self.selection_scope == "sample":
                score = torch.stack([channel_scores(x[b].detach()[mask[b]], self.informativeness_k)
                                     for b in range(x.shape[0])])
            else:
                stat = channel_statistic(_valid_tokens(x.detach(), mask), self.informativeness_k)
                if self.stats_group is not None and self.training:
                    stat = self._global_statistic(stat)
                if track:
                    self.train_stat[m] += stat
                score = informativeness_from_statistic(stat, self.informativeness_k)
            # ties (e.g. gamma = 1 at initialisation) resolve to the lowest channel index
            out.append(low_informative_channels(score, k_prime=self.k_prime))
        if track:
            self.train_batches += 1
        return out

    def _global_statistic(self, stat: torch.Tensor) -> torch.Tensor:
        # The statistic is additive over row blocks: the sum over processes is the statistic of
        # the whole distributed batch (float64, so only the summation order differs).
        import torch.distributed as dist


        stat = stat.contiguous()
        dist.all_reduce(stat, op=dist.ReduceOp.SUM, group=self.stats_group)
        return stat

    def partners(self, feats) -> list:
        """The features each modality blends with (see the class docstring)."""
        M = len(feats)
        if M == 2:
            return [feats[1], feats[0]]
        if self.fusion_rule == "ring":
            return [feats[(m + 1) % M] for m in range(M)]
        total = torch.stack(feats).sum(0)
        return [(total - x) / (M - 1) for x in feats]

    def forward(self, feats, mask) -> RTFOutput:
        """Eqs. 4-5: blend each modality's Eq. 3 channels with its partner's, under ``mask`` (B, T).

        ``feats`` is a list of (B, T, D) tensors, one per modality; returns :class:`RTFOutput`.
        """
        if self.selection == "bn_gamma":
            feats = [norm(x, mask) for norm, x in zip(self.norms, feats)]
        if len(feats) == 1 or self.k_prime == 0:
            empty = torch.zeros(0, dtype=torch.long, device=mask.device)
            return RTFOutput(list(feats), list(feats), [empty] * len(feats))
        low = self.select(feats, mask)
        alpha = self.alpha()
        after = []
        for m, (x, y) in enumerate(zip(feats, self.partners(feats))):
            w = blend_weights(low[m], alpha[m])
            # (D,) or (B, 1, D) with one channel set per video
            after.append(blend(x, y, w if w.dim() == 1 else w[:, None, :]))
        return RTFOutput(list(feats), after, low)


def blending_alpha(exchange: str, alpha_param: str, alpha_raw=None, alpha_const=None) -> torch.Tensor:
    """RTF's blending coefficients from its stored values: the constant with ``exchange="static"``,
    else ``sigmoid(alpha_raw)`` (``alpha_param="sigmoid"``) or ``alpha_raw`` itself (any leading shape)."""
    if exchange == "static":
        return alpha_const
    return torch.sigmoid(alpha_raw) if alpha_param == "sigmoid" else alpha_raw


def blend_weights(low: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Eq. 4's per-channel weights: ``alpha`` on the channels ``low`` (``(..., k')``), 0 elsewhere.

    ``alpha`` has shape ``(D,)`` or broadcasts against ``low``'s leading shape + ``(D,)``.
    """
    sel = torch.zeros(low.shape[:-1] + (alpha.shape[-1],), dtype=alpha.dtype, device=alpha.device)
    sel.scatter_(-1, low, 1.0)
    return sel * alpha


def blend(x: torch.Tensor, partner: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Eq. 4: ``x + w * (partner - x)``: channels with weight 0 pass unchanged."""
    return x + w * (partner - x)


def channels_from_statistic(stat: torch.Tensor, k: int | None, k_prime: int) -> torch.Tensor:
    """Eq. 3 from accumulated selection statistics: the bottom-``k'`` channels of each.

    ``stat`` is (..., D) column energies (``k=None``) or (..., D, D) Gram matrices (top-``k``), as
    :func:`rankfusion.spectral.channel_statistic` gives and summed over row blocks; returns the
    (..., k') int64 channel sets, sorted, ties to the lower index.
    """
    return low_informative_channels(informativeness_from_statistic(stat, k), k_prime=k_prime)


def sinusoidal_positions(T: int, d: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard sinusoidal position table of shape (T, d)."""
    pos = torch.arange(T, device=device, dtype=torch.float32)[:, None]
    i = torch.arange(0, d, 2, device=device, dtype=torch.float32)
    freq = torch.exp(-math.log(10000.0) * i / d)
    pe = torch.zeros(T, d, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d // 2])
    return pe.to(dtype)


def recency_positions(mask: torch.Tensor, d: int, dtype=torch.float32) -> torch.Tensor:
    """Sinusoidal encoding of each step's distance to the row's last valid step, shape (B, T, d).

    The latest observed step gets position 0 whatever the observed length, so "what is happening
    now" sits at the same code in every sample. Padded steps (after the last valid one) get 0;
    they are masked out of attention anyway.
    """
    T = mask.shape[1]
    last = mask.sum(1, keepdim=True) - 1  # (B, 1); valid steps are a prefix
    dist = (last - torch.arange(T, device=mask.device)[None]).clamp_min(0).to(torch.float32)
    i = torch.arange(0, d, 2, device=mask.device, dtype=torch.float32)
    freq = torch.exp(-math.log(10000.0) * i / d)
    ang = dist[..., None] * freq
    pe = torch.zeros(*dist.shape, d, device=mask.device)
    pe[..., 0::2] = torch.sin(ang)
    pe[..., 1::2] = torch.cos(ang[..., : d // 2])
    return pe.to(dtype)


class TemporalFuserLayer(nn.Module):
    """One Temporal Fuser layer exactly as Eqs. 53-54.

    ``Z = LN1(F) + MHSA(LN1(F))`` (Eq. 53: the residual is taken from the normalised input) and
    ``F' = LN2(Z + MLP(Z))`` (Eq. 54).
    """

    def __init__(self, width: int, n_heads: int, hidden: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, n_heads, dropout=dropout, batch_first=True)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, pad):
        h = self.ln1(x)
        z = h + self.drop(self.attn(h, h, h, key_padding_mask=pad, need_weights=False)[0])
        return self.ln2(z + self.drop(self.mlp(z)))


class AnticipationModule(nn.Module):
    """Future queries, multi-head cross-attention, FFN and the class / duration heads (App. C.2).

    Residual connections and LayerNorm around MHCA and FFN are the usual transformer-decoder
    choice (the paper does not spell them out).
    """

    def __init__(self, width: int, n_heads: int, hidden: int, n_queries: int, n_classes: int,
                 dropout: float):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n_queries, width) * 0.02)
        self.attn = nn.MultiheadAttention(width, n_heads, dropout=dropout, batch_first=True)
        self.ln1 = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, width))
        self.ln2 = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)
        self.cls_head = nn.Linear(width, n_classes + 1)
        self.dur_head = nn.Linear(width, 1)

    def forward(self, memory, pad):
        q = self.queries.unsqueeze(0).expand(memory.shape[0], -1, -1)
        h = self.ln1(q + self.drop(self.attn(q, memory, memory, key_padding_mask=pad, need_weights=False)[0]))
        h = self.ln2(h + self.drop(self.ffn(h)))
        return self.cls_head(h), self.dur_head(h).squeeze(-1)


class R3DOutput(NamedTuple):
    """Outputs of :class:`R3D`.

    seg_logits : (B, T, K) per-step segmentation logits (Eq. 56).
    class_logits : (B, Q, K + 1) future action logits, last column NONE.
    durations : (B, Q) unnormalised log-durations; decoding uses softmax over the kept queries.
    features : dict or None, with ``return_features=True``: ``{modality: {"before": (B, T, D),
        "after": (B, T, D), "low": (k',) int64 or None}}`` (the fuser's inputs,
        outputs and blended channels; ``before is after`` without RTF).
    """

    seg_logits: torch.Tensor
    class_logits: torch.Tensor
    durations: torch.Tensor
    features: dict | None = None


class R3D(nn.Module):
    """The R3D model (Fig. 4) for any number of modalities >= 1.

    Input projection Eq. 2 (:meth:`tokens`), the token fuser RTF (Eq. 3 channel choice, Eqs. 4-5
    blending; :class:`RankEnhancingTokenFuser`), the Temporal Fuser (Eqs. 53-56) and the
    anticipation module (App. C.2).

    Parameters
    ----------
    config : R3DConfig
        Must have ``input_dims`` (channels per modality) and ``n_classes`` resolved.
    """

    def __init__(self, config: R3DConfig):
        super().__init__()
        if config.input_dims is None or config.n_classes is None:
            raise ValueError("config.input_dims and config.n_classes must be set (resolved from the dataset)")
        missing = [m for m in config.modalities if m not in config.input_dims]
        if missing:
            raise ValueError(f"config.input_dims has no entry for modalities {missing}")
        self.config = config
        D, M = config.d_model, len(config.modalities)
        W = D * M
        # Eq. 2: one Linear(C_m -> D) + ReLU per modality.
        self.proj = nn.ModuleDict({m: nn.Linear(config.input_dims[m], D) for m in config.modalities})
        self.shared = nn.Linear(D, D) if config.latent == "shared" else None
        self.rtf = RankEnhancingTokenFuser(
            config.modalities, D, exchange_ratio=config.exchange_ratio, selection=config.selection,
            exchange=config.exchange, static_alpha=config.static_alpha,
            informativeness_k=config.informativeness_k, alpha_param=config.alpha_param,
            fusion_rule=config.fusion_rule, selection_scope=config.selection_scope,
            eval_channels=config.eval_channels,
        ) if config.rtf else None
        hidden = config.mlp_ratio * W
        n_layers = config.n_layers if config.temporal_fuser else 0
        self.layers = nn.ModuleList(TemporalFuserLayer(W, config.n_heads, hidden, config.dropout)
                                    for _ in range(n_layers))
        self.final_ln = nn.LayerNorm(W)  # Eq. 55
        self.seg_head = nn.Linear(W, config.n_classes)  # Eq. 56
        self.anticipation = AnticipationModule(W, config.n_heads, hidden, config.n_queries,
                                               config.n_classes, config.dropout)

    @property
    def videos_independent(self) -> bool:
        """Whether eval mode computes each video of a batch as it would alone (up to float
        summation order; padding changes no valid output): true unless RTF's channel choice is
        left to the evaluated batch (:attr:`RankEnhancingTokenFuser.batch_decides`)."""
        return self.rtf is None or not self.rtf.batch_decides

    @property
    def none_index(self) -> int:
        """Index of the NONE class in ``class_logits``."""
        return self.config.n_classes

    def tokens(self, features: dict, mask: torch.Tensor) -> list:
        """Eq. 2: the input tokens ``ReLU(F_m W_m)`` of each modality, a list of (B, T, D) tensors.

        ``features[m]`` is (B, T, C_m); ``latent="shared"`` adds Table 9's shared Linear(D, D) +
        ReLU after Eq. 2. ``mask`` (B, T) is only checked against the shapes (the projection acts per step).
        """
        self._check_inputs(features, mask)
        out = []
        for m in self.config.modalities:
            x = F.relu(self.proj[m](features[m]))
            if self.shared is not None:
                x = F.relu(self.shared(x))
            out.append(x)
        return out

    def _check_inputs(self, features: dict, mask: torch.Tensor) -> None:
        """Shapes, types and a valid step in every row of ``mask``: one ``ValueError`` naming the argument."""
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.dim() != 2:
            got = f"{mask.dtype} tensor of shape {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) \
                else type(mask).__name__
            raise ValueError(f"mask must be a bool tensor of shape (B, T), True at valid steps; got a {got}")
        B, T = mask.shape
        valid = mask.any(dim=1)
        if not bool(valid.all()):
            row = int((~valid).nonzero()[0, 0])
            raise ValueError(f"mask row {row} has no valid step: every sample needs at least one (B, T = {B}, {T})")
        for m in self.config.modalities:
            if m not in features:
                raise ValueError(f"features has no modality {m!r}; got {sorted(features)}")
            x, c = features[m], self.config.input_dims[m]
            if not isinstance(x, torch.Tensor) or tuple(x.shape) != (B, T, c):
                got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(f"features[{m!r}] must have shape (B, T, C) = ({B}, {T}, {c}) to match the mask's "
                                 f"(B, T) and input_dims[{m!r}]; got {got}")
            want = self.proj[m].weight.dtype
            if x.dtype != want:  # e.g. float64 from torch.from_numpy
                raise ValueError(f"features[{m!r}] must be {want} like the model's weights, got {x.dtype} "
                                 f"(convert with .to({want}), or the model with .to({x.dtype}))")

    def forward(self, features: dict, mask: torch.Tensor, *, return_features: bool = False,
                keep: torch.Tensor | None = None) -> R3DOutput:
        """Run the model.

        Parameters
        ----------
        features : dict of str to Tensor of shape (B, T, C_m)
        mask : bool Tensor of shape (B, T), True at valid steps; every row needs one valid step, and
            the valid steps of a row must come first (padding at the end, as
            :func:`rankfusion.data.collate_anticipation` makes it) for ``positional="recency"``.
        return_features : bool
            Also return the token fuser's per-modality inputs and outputs (for feature export).
        keep : Tensor of shape (B, M), optional
            Factors on each sample's tokens of each modality (in ``modalities`` order), applied
            after Eq. 2: 0 drops a whole modality of a sample (modality dropout,
            :mod:`rankfusion.remedies`). None (default): every token as it is.

        Returns
        -------
        R3DOutput
        """
        toks = self.tokens(features, mask)
        if keep is not None:
            if keep.shape != (mask.shape[0], len(toks)):
                raise ValueError(f"keep must have shape (B, M) = {(mask.shape[0], len(toks))}, got {tuple(keep.shape)}")
            toks = [x * keep[:, m, None, None].to(x.dtype) for m, x in enumerate(toks)]
        if self.rtf is not None:
            r = self.rtf(toks, mask)
            before, after, low = r.before, r.after, r.low
        else:
            before = after = toks
            low = [None] * len(toks)
        x = torch.cat(after, dim=-1)  # F_stacked: modalities stacked along channels (Sec. 4.2)
        if self.config.positional == "sinusoidal":
            x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device, x.dtype)
        elif self.config.positional == "recency":
            x = x + recency_positions(mask, x.shape[2], x.dtype)
        pad = ~mask
        for layer in self.layers:
            x = layer(x, pad)
        x = self.final_ln(x)
        seg = self.seg_head(x)
        cls, dur = self.anticipation(x, pad)
        feats = None
        if return_features:
            feats = {m: {"before": b, "after": a, "low": l}
                     for m, b, a, l in zip(self.config.modalities, before, after, low)}
        return R3DOutput(seg, cls, dur, feats)

