"""Remedies against modality collapse, as training options: modality dropout, unimodal heads, OGM-GE.

Each is a field of :class:`rankfusion.config.TrainConfig` (off at its default, and then out of the
config hash) and they combine freely with each other and with the model's own options (RTF or
``rtf=False``). docs/model.md ("Remedies against modality collapse") gives the papers they follow.

- **Modality dropout** (``modality_dropout``): during training each sample's tokens of modality m
  (the output of Eq. 2) are multiplied by 0 with probability p_m, independently per (sample,
  modality); evaluation uses every token unchanged. A modality dropped with p = 1 never reaches
  the loss, so its encoder's gradient is exactly zero.
- **Unimodal heads** (``unimodal_heads`` = W): one linear head per modality predicts the first
  future action (the first anticipation query's target, NONE included) from that modality's
  tokens alone: the mean of its valid tokens and its last valid token, concatenated. The training
  loss gains ``W * sum_m CE_m``.
- **OGM-GE** (``ogm`` = alpha; Peng et al., CVPR 2022, Eqs. 9-11): after the backward pass, each
  modality's confidence ``s_m = sum_i softmax(head_m(x_i))[y_i]`` over the batch's samples (the
  unimodal heads' logits play the part of the paper's per-modality halves of the fused
  classifier), its ratio ``rho_m = s_m / mean_{n != m} s_n`` (for two modalities ``s_m / s_other``,
  the paper's Eq. 9), the coefficient ``k_m = 1 - tanh(alpha * rho_m)`` where ``rho_m > 1``, else 1
  (Eq. 10, the published form), and each encoder's gradient ``g <- k_m * g + N(0, sd(g)^2)``
  (Eq. 11, generalisation enhancement: Gaussian noise with the spread of the gradient tensor,
  added to every modality's encoder).

The encoder of a modality is its Eq. 2 projection (``R3D.proj[m]``); what is shared by all
modalities (the ``latent="shared"`` layer, the fuser, the trunk) is never modulated.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ._validation import InputError

#: Attribute of the R3D model that holds its unimodal heads (part of its state dict when present).
HEADS_ATTR = "unimodal"


def active(train_config) -> bool:
    """True when any remedy is switched on in ``train_config`` (a :class:`TrainConfig`)."""
    tc = train_config
    drop = tc.modality_dropout
    return bool(drop if not isinstance(drop, dict) else any(drop.values())) or tc.unimodal_heads > 0 or tc.ogm > 0


def dropout_probabilities(train_config, modalities) -> list[float]:
    """Per-modality drop probability, in ``modalities`` order (0 where none is set)."""
    drop = train_config.modality_dropout
    if isinstance(drop, dict):
        return [float(drop.get(m, 0.0)) for m in modalities]
    return [float(drop)] * len(modalities)


def keep_mask(probabilities, batch_size: int, *, generator=None) -> torch.Tensor:
    """Modality-dropout factors, shape (B, M): 0 where a sample's modality is dropped, else 1.

    Each entry is an independent Bernoulli draw: entry (b, m) is 0 with probability
    ``probabilities[m]``. Columns with p = 0 and p = 1 are exact (always kept / always dropped), but
    every column takes its draws from the stream: adding a modality, even at p = 0, changes the
    other columns' draws for the same seed. Uses the global torch RNG unless ``generator`` is given.
    """
    p = torch.as_tensor([float(v) for v in probabilities], dtype=torch.float32)
    if p.dim() != 1 or ((p < 0) | (p > 1)).any():
        raise InputError(f"modality_dropout probabilities must lie in [0, 1], got {probabilities!r}")
    u = torch.rand(batch_size, p.numel(), generator=generator)
    return (u >= p).to(torch.float32)


class UnimodalHeads(nn.Module):
    """Auxiliary anticipation heads, one per modality (``TrainConfig.unimodal_heads``).

    Parameters
    ----------
    modalities : sequence of str
    d : int
        Token width D of each modality.
    n_classes : int
        Action classes K; each head has K + 1 outputs (NONE last, as the anticipation module).
    """

    def __init__(self, modalities, d: int, n_classes: int):
        super().__init__()
        self.modalities = tuple(modalities)
        self.heads = nn.ModuleDict({m: nn.Linear(2 * d, n_classes + 1) for m in self.modalities})

    def forward(self, tokens, mask: torch.Tensor) -> torch.Tensor:
        """Per-modality logits, shape (M, B, K + 1), from ``tokens`` (list of (B, T, D)) under ``mask`` (B, T).

        Valid steps must come first in each row (as the collate function pads).
        """
        return torch.stack([self.heads[m](pooled_tokens(x, mask)) for m, x in zip(self.modalities, tokens)])


def pooled_tokens(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A unimodal head's input: the mean of the valid tokens and the last valid token, concatenated.

    Parameters
    ----------
    x : Tensor of shape (..., B, T, D)
    mask : bool Tensor of shape (..., B, T)
        Valid steps, first in each row (as the collate function pads).

    Returns
    -------
    Tensor of shape (..., B, 2 D)
    """
    w = mask.to(x.dtype)[..., None]
    n = w.sum(-2).clamp_min(1.0)
    last = (mask.sum(-1) - 1).clamp_min(0)
    last_tok = x.gather(-2, last[..., None, None].expand(*last.shape, 1, x.shape[-1])).squeeze(-2)
    return torch.cat([(x * w).sum(-2) / n, last_tok], dim=-1)


def attach_unimodal_heads(model, train_config):
    """Give ``model`` (an R3D) its unimodal heads when ``train_config.unimodal_heads > 0``; return them or None.

    Called before the optimiser is built (so the heads train) and before a checkpoint is loaded
    (so its state dict matches).
    """
    if train_config.unimodal_heads <= 0:
        return None
    cfg = model.config
    heads = UnimodalHeads(cfg.modalities, cfg.d_model, cfg.n_classes)
    dev = next(model.parameters()).device
    setattr(model, HEADS_ATTR, heads.to(dev))
    return heads


def unimodal_logits(model, out, mask) -> torch.Tensor:
    """The unimodal heads' logits (M, B, K + 1) for a forward pass run with ``return_features=True``.

    They read each modality's tokens at the fuser's input (after any modality dropout), so a
    dropped modality's head sees zeros.
    """
    heads = getattr(model, HEADS_ATTR)
    toks = [out.features[m]["before"] for m in model.config.modalities]
    return heads(toks, mask)


def first_future_targets(batch, device) -> torch.Tensor:
    """The unimodal heads' target, shape (B,): the class of the first anticipation query (-100: none)."""
    return batch["future_classes"][:, 0].to(device)


def unimodal_losses(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each modality's head, shape (M,): the mean over samples with a target.

    The training loss adds ``W * unimodal_losses(...).sum()``. Zero (with a gradient path) when
    no sample of the batch has a target.
    """
    valid = target != -100
    if not bool(valid.any()):
        return logits.sum((1, 2)) * 0.0
    return torch.stack([F.cross_entropy(lg[valid], target[valid]) for lg in logits])


def confidence_scores(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """OGM-GE's per-modality confidence (Eq. 8): ``s_m = sum_i softmax(logits_m[i])[y_i]``, shape (M,)."""
    valid = target != -100
    p = torch.softmax(logits[:, valid].detach().double(), dim=-1)
    return p.gather(-1, target[valid][None, :, None].expand(p.shape[0], -1, 1)).squeeze(-1).sum(-1)


def ogm_coefficients(scores, alpha: float) -> list[float]:
    """OGM-GE's modulation coefficients (Peng et al., CVPR 2022, Eqs. 9-10), one per modality.

    ``rho_m = s_m / mean_{n != m} s_n`` (two modalities: ``s_m / s_other``, Eq. 9) and
    ``k_m = 1 - tanh(alpha * rho_m)`` if ``rho_m > 1`` else 1 (Eq. 10). Scores that are all zero
    (no sample with a target) leave every coefficient at 1.

    Parameters
    ----------
    scores : sequence of float, length M >= 2
        Confidence of each modality (:func:`confidence_scores`).
    alpha : float
        Modulation strength (>= 0).

    Returns
    -------
    list of float
    """
    s = [float(v) for v in scores]
    if len(s) < 2:
        raise InputError(f"OGM-GE needs the scores of two or more modalities, got {len(s)}")
    if alpha < 0 or not math.isfinite(alpha):
        raise InputError(f"ogm alpha must be a finite number >= 0, got {alpha}")
    out = []
    for m, sm in enumerate(s):
        others = (sum(s) - sm) / (len(s) - 1)
        if sm <= 0:
            out.append(1.0)  # rho = 0 (or 0 / 0): never the dominant modality
            continue
        rho = sm / others if others > 0 else math.inf
        out.append(1.0 - math.tanh(alpha * rho) if rho > 1 else 1.0)
    return out


def encoder_parameter_names(model, modality: str) -> list[str]:
    """Names (in ``model.named_parameters()``) of the parameters OGM-GE modulates for ``modality``:
    its Eq. 2 projection, in the order :func:`modulate_gradients` visits them."""
    return [f"proj.{modality}.{n}" for n, _ in model.proj[modality].named_parameters()]


def encoder_parameters(model, modality: str) -> list:
    """The parameters OGM-GE modulates for ``modality`` (:func:`encoder_parameter_names`)."""
    params = dict(model.named_parameters())
    return [params[n] for n in encoder_parameter_names(model, modality)]


def modulate_gradients(model, coefficients, *, noise: bool = True, generator=None) -> None:
    """Scale each modality's encoder gradients by its coefficient and add OGM-GE's noise (Eq. 11).

    ``g <- k_m * g + e`` with ``e ~ N(0, sd(g)^2)`` elementwise, ``sd(g)`` the standard deviation of
    the gradient tensor's entries (0 for a one-entry tensor, so no noise). ``noise=False`` is
    plain OGM. Parameters without a gradient are left alone.
    """
    for m, k in zip(model.config.modalities, coefficients):
        for p in encoder_parameters(model, m):
            if p.grad is None:
                continue
            p.grad = modulated_gradient(p.grad, k, noise=noise, generator=generator)


def modulated_gradient(g: torch.Tensor, k: float, *, noise: bool = True, generator=None) -> torch.Tensor:
    """Eq. 11 for one gradient tensor: ``k * g + e``, ``e ~ N(0, sd(g)^2)`` elementwise (a new tensor).

    ``sd(g)`` is the standard deviation of ``g``'s entries (0 for a one-entry tensor: no noise, and
    no draw). The noise is drawn from the global torch RNG unless ``generator`` (a CPU generator)
    is given. :func:`modulate_gradients` applies it to each encoder parameter in turn.
    """
    sd = float(g.std()) if g.numel() > 1 else 0.0
    new = g * float(k)
    if noise and sd > 0:
        e = torch.randn(g.shape, generator=generator, dtype=g.dtype, device="cpu" if generator else g.device)
        new = new + sd * e.to(g.device)
    return new


def check_supported(train_config, distributed: bool) -> None:
    """Refuse, in one line (:class:`InputError`), remedies the execution path does not support;
    ``distributed``: under torchrun. Checked with the configuration, before any data is read."""
    if distributed and train_config.ogm > 0:
        raise InputError("ogm (OGM-GE) is not supported under torchrun: each process would modulate and add "
                         "noise to the averaged gradients differently; train it in one process")
