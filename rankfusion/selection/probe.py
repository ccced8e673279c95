"""The fusion probe: per-modality projections (Eq. 2), the model's RTF (Eqs. 3-5) and a head, trained full-batch.

torch is imported inside the functions that fit or run a probe: the criterion on feature files
needs no torch.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field

import numpy as np

from .. import spectral, stats
from ..threads import limited_threads
from .._validation import InputError, check_distinct_seeds, check_float, check_int, option_name
from ..config import R3DConfig
from ..spectral import blended_channel_count, low_informative_channels
from .arrays import _as_numpy64
from .surrogates import min_surrogates


@dataclass(frozen=True)
class ProbeConfig:
    """Settings of the fusion probe and of the evidence computed with it.

    Attributes
    ----------
    width : int, default 32
        Common token width D every modality is projected to (Eq. 2: Linear + ReLU).
    exchange_ratio : float, default 0.1
        Fraction of channels RTF blends (Eq. 3), as in the paper.
    head : {"linear", "mlp"}, default "linear"
        Classifier on the concatenated fused tokens.
    hidden : int, default 64
        Hidden width of the MLP head.
    steps : int, default 100
        Full-batch Adam steps per fit (deterministic: no shuffling).
    lr, weight_decay : float
        Adam settings.
    folds : int, default 5
        Stratified cross-validation folds.
    seeds : tuple of int, default (0,)
        Each seed sets a fold assignment and the probe's initialisation; replicates are
        ``folds * len(seeds)`` (more seeds: a tighter task-gain interval at proportional cost).
    n_surrogates : int, default 19
        Noise-control surrogates per candidate, each fitted on every replicate like the candidate.
        At least :func:`min_surrogates` (19 at alpha 0.05): with fewer, the empirical p-value of
        the control can never reach alpha.
    threads : int, default 1
        Torch threads while fitting (small matrices: one thread is as fast and robust on shared cores).
    """

    width: int = 32
    exchange_ratio: float = R3DConfig.exchange_ratio
    head: str = "linear"
    hidden: int = 64
    steps: int = 100
    lr: float = 2e-2
    weight_decay: float = 1e-4
    folds: int = 5
    seeds: tuple = (0,)
    n_surrogates: int = field(default_factory=min_surrogates)
    threads: int = 1

    def __post_init__(self):
        check_int(self.width, option_name("width", "--width"), low=1)
        check_float(self.exchange_ratio, "exchange_ratio", low=0.0, high=1.0, low_open=True)
        if self.head not in ("linear", "mlp"):
            raise InputError(f"head must be 'linear' or 'mlp', got {self.head!r}")
        check_int(self.hidden, "hidden", low=1)
        check_int(self.steps, option_name("steps", "--steps"), low=1)
        check_float(self.lr, "lr", low=0.0, low_open=True)
        check_float(self.weight_decay, "weight_decay", low=0.0)
        # a replicate's seed is seed * 1000 + fold (evidence._replicates): distinct, and within torch's
        # 64-bit seed, for these bounds
        check_int(self.folds, option_name("folds", "--folds"), low=2, high=1000)
        seeds = option_name("seeds", "--seeds")
        for s in self.seeds:
            check_int(s, seeds, low=0, high=2**32 - 1)
        check_distinct_seeds(self.seeds, seeds)
        surrogates = option_name("n_surrogates", "--surrogates")
        check_int(self.n_surrogates, surrogates)
        if self.n_surrogates < min_surrogates():
            raise InputError(f"{surrogates} must be at least {min_surrogates()} (the empirical p-value of "
                             f"{self.n_surrogates} surrogates cannot reach alpha {stats.ALPHA:g}), "
                             f"got {self.n_surrogates}")
        check_int(self.threads, "threads", low=1)

        if blended_channel_count(self.exchange_ratio, self.width) == 0:
            # the smallest width that blends a channel at this ratio (exchange_ratio > 0: a few steps)
            least = next(w for w in itertools.count(self.width) if blended_channel_count(self.exchange_ratio, w))
            raise InputError(f"{option_name('width', '--width')} {self.width} at the probe's exchange_ratio "
                             f"{self.exchange_ratio:g} blends no channel (RTF would be the identity): use "
                             + option_name(f"width {least} or more (or a larger exchange_ratio)",
                                           f"--width {least} or more"))


def _probe_class():
    # torch is imported lazily: rankfusion.selection's criterion on feature files needs no torch.
    import torch
    from torch import nn
    from torch.nn import functional as F

    from ..model import RankEnhancingTokenFuser

    class FusionProbe(nn.Module):
        """Per-modality Linear+ReLU to a common width (Eq. 2), RTF (Eqs. 3-5) or not, a head.

        ``forward`` takes a list of ``(N, C_m)`` tensors (anchor first) and returns ``(N, K)``
        logits; :meth:`tokens` returns the fuser's inputs and outputs, each a list of ``(N, D)``;
        :meth:`freeze` fixes RTF's channel choice on the given (training) rows for evaluation.
        """

        def __init__(self, dims, n_classes: int, config: ProbeConfig, rtf: bool = True):
            super().__init__()
            w = config.width
            self.proj = nn.ModuleList(nn.Linear(int(d), w) for d in dims)
            names = tuple(f"m{i}" for i in range(len(dims)))
            self.rtf = (RankEnhancingTokenFuser(names, w, exchange_ratio=config.exchange_ratio)
                        if rtf and len(dims) > 1 else None)
            wide = w * len(dims)
            self.head = (nn.Linear(wide, n_classes) if config.head == "linear" else
                         nn.Sequential(nn.Linear(wide, config.hidden), nn.ReLU(), nn.Linear(config.hidden, n_classes)))

        def tokens(self, xs):
            before = [F.relu(p(x)) for p, x in zip(self.proj, xs)]
            if self.rtf is None:
                return before, before
            # rows are independent samples: one time step each, all valid
            mask = torch.ones(before[0].shape[0], 1, dtype=torch.bool, device=before[0].device)
            out = self.rtf([b[:, None, :] for b in before], mask)
            return before, [a[:, 0, :] for a in out.after]

        def forward(self, xs):
            return self.head(torch.cat(self.tokens(xs)[1], dim=1))

        @torch.no_grad()
        def freeze(self, xs):
            """Choose RTF's blended channels on ``xs`` (the training rows) and use them at evaluation."""
            if self.rtf is None:
                return
            before = [F.relu(p(x)) for p, x in zip(self.proj, xs)]
            mask = torch.ones(before[0].shape[0], 1, dtype=torch.bool, device=before[0].device)
            self.rtf.freeze([b[:, None, :] for b in before], mask)

    return FusionProbe


@functools.lru_cache(maxsize=None)
def _member_blend():
    """The autograd function of :class:`ProbeMembers`' fuser (built on first use: torch is imported
    lazily).

    It computes what the plain torch expressions would (ReLU, Eq. 3, Eq. 4 through
    :func:`rankfusion.model.blend`), the same values; it chooses the memory layout and the backward
    pass: the tokens are stored channels-major, so that Eq. 3's channel energies and Eq. 4's k'
    blended channels are contiguous rows, selected and written back whole.
    """
    import torch
    from torch.autograd.function import once_differentiable

    from ..model import blend, channel_scores

    def rows(low, D):
        # the rows of a (S * D, N) view that hold each member's channels ``low`` (S, k')
        return (torch.arange(low.shape[0])[:, None] * D + low).reshape(-1)

    class MemberBlend(torch.autograd.Function):
        """RTF for both sides of every member: ReLU (Eq. 2's), Eq. 3's choice, Eq. 4 on the blended
        channels only.

        ``forward(pa, pc, alpha, k_prime, low_a, low_c)``: ``pa``, ``pc`` (S, D, N), channels-major,
        the projections before their ReLU; ``alpha`` (S, 2, D) the blend weights; ``low_a``, ``low_c``
        (S, k') each member's blended channels (distinct within a set, as Eq. 3 gives them), or None
        to choose them on these rows (Eq. 3 on the ReLU outputs, as RTF does in training). Returns
        ``(A, C, low_a, low_c)``, ``A`` (S, D, N) the blend of ``a = relu(pa)`` with ``c = relu(pc)``
        on ``low_a`` (:func:`rankfusion.model.blend`) and ``a`` elsewhere (weight 0 leaves a channel
        unchanged), ``C`` likewise with the roles swapped. The blend is written into the ReLU's
        output (no copy), whose sign still gives ReLU's derivative off the blended channels; the k'
        blended channels keep their own.
        """

        @staticmethod
        def forward(ctx, pa, pc, alpha, k_prime, low_a, low_c):
            a, c = pa.relu(), pc.relu()
            if low_a is None:
                low_a, low_c = (low_informative_channels(channel_scores(x.transpose(1, 2)), k_prime=k_prime)
                                for x in (a, c))
            S, D, N = a.shape
            ra, rc = rows(low_a, D), rows(low_c, D)
            a2, c2 = a.view(S * D, N), c.view(S * D, N)
            w_a, w_c = alpha[:, 0].gather(1, low_a).reshape(-1, 1), alpha[:, 1].gather(1, low_c).reshape(-1, 1)
            a_la, c_la, c_lc, a_lc = a2[ra], c2[ra], c2[rc], a2[rc]
            a2.index_copy_(0, ra, blend(a_la, c_la, w_a))
            c2.index_copy_(0, rc, blend(c_lc, a_lc, w_c))
            ctx.save_for_backward(a, c, low_a, low_c, w_a, w_c, a_la, c_la, c_lc, a_lc)
            ctx.mark_non_differentiable(low_a, low_c)
            return a, c, low_a, low_c

        @staticmethod
        @once_differentiable  # the hand-written backward is not itself differentiable: say so
        def backward(ctx, g_A, g_C, *_):
            A, C, low_a, low_c, w_a, w_c, a_la, c_la, c_lc, a_lc = ctx.saved_tensors
            S, D, N = A.shape
            ra, rc = rows(low_a, D), rows(low_c, D)
            gA, gC = g_A.reshape(S * D, N)[ra], g_C.reshape(S * D, N)[rc]  # gradients at the blended channels
            gAw, gCw = gA * w_a, gC * w_c
            # ReLU's backward off the blended channels (there the output is the ReLU's own)
            ga = torch.ops.aten.threshold_backward(g_A, A, 0)
            gc = torch.ops.aten.threshold_backward(g_C, C, 0)
            # d/dx of x + w (p - x) is 1 - w, d/dp is w, d/dw is p - x; each through its own ReLU
            ga.view(S * D, N).index_copy_(0, ra, (gA - gAw) * (a_la > 0)).index_add_(0, rc, gCw * (a_lc > 0))
            gc.view(S * D, N).index_copy_(0, rc, (gC - gCw) * (c_lc > 0)).index_add_(0, ra, gAw * (c_la > 0))
            g_alpha = g_A.new_zeros(S, 2, D)
            g_alpha[:, 0].scatter_(1, low_a, (gA * (c_la - a_la)).sum(1).view(S, -1))
            g_alpha[:, 1].scatter_(1, low_c, (gC * (a_lc - c_lc)).sum(1).view(S, -1))
            return ga, gc, g_alpha, None, None, None

    return MemberBlend


def fit_probe(xs, labels, *, config: ProbeConfig | None = None, rtf: bool = True, seed: int = 0):
    """Train a fusion probe on ``xs`` (anchor first) to predict ``labels``.

    Parameters
    ----------
    xs : sequence of ndarray or tensor of shape (N, C_m)
        Standardised features, rows aligned; one entry gives the anchor-only probe.
    labels : ndarray or tensor of shape (N,)
        Class ids in ``[0, K)``.
    config : ProbeConfig, optional
    rtf : bool, default True
        Fuse with RTF (Eq. 4); False concatenates the projections (the plain fusion of Table 2).
    seed : int, default 0
        Seeds the initialisation (weights and RTF's alpha). Full-batch training has no other
        randomness: the same seed on the same machine gives bit-identical weights.

    Returns
    -------
    FusionProbe
        In eval mode, float32, on the CPU, with RTF's channel choice frozen on the training rows
        (:meth:`rankfusion.model.RankEnhancingTokenFuser.freeze`): evaluating held-out rows does not
        let them pick the channels.
    """
    import torch
    from torch.nn import functional as F

    config = config or ProbeConfig()
    ts = [torch.as_tensor(_as_numpy64(x, "xs"), dtype=torch.float32) for x in xs]
    y = torch.as_tensor(_as_numpy64(labels, "labels").astype(np.int64))
    n_classes = int(y.max()) + 1
    with limited_threads(config.threads):
        torch.manual_seed(seed)
        model = _probe_class()([t.shape[1] for t in ts], n_classes, config, rtf=rtf)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        model.train()
        for _ in range(config.steps):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(ts), y).backward()
            opt.step()
        model.eval()
        model.freeze(ts)
    return model


def fit_probe_members(anchor_x, candidate_xs, labels, *, config: ProbeConfig | None = None, seed: int = 0):
    """Train one RTF fusion probe per candidate matrix at once, all from the same initialisation.

    Member ``i`` is the probe :func:`fit_probe` would train on ``[anchor_x, candidate_xs[i]]``
    with ``rtf=True`` and ``seed``: the same initial weights (those of ``fit_probe``'s probe),
    loss, full-batch Adam steps and RTF (Eqs. 3-5, :func:`rankfusion.model.blend`), run as batched
    matrix products. Adam acts element by element and each member's loss depends on its own
    weights only, so the members train independently; only the floating-point summation order
    differs from separate fits. This is how the noise control affords fitting every surrogate on
    every replicate: the candidate and its surrogates go through this one routine together.

    Parameters
    ----------
    anchor_x : ndarray of shape (N, C_a)
        Standardised anchor rows (training rows only).
    candidate_xs : ndarray of shape (S, N, C_c)
        One standardised candidate matrix per member, rows aligned with ``anchor_x``.
    labels : ndarray of shape (N,)
    config : ProbeConfig, optional
    seed : int, default 0

    Returns
    -------
    ProbeMembers
        The trained weights, with RTF's channel choice frozen on these training rows.
    """
    import torch
    from torch.nn import functional as F

    config = config or ProbeConfig()
    za = torch.as_tensor(_as_numpy64(anchor_x, "anchor_x"), dtype=torch.float32)
    zc = torch.as_tensor(_as_numpy64(candidate_xs, "candidate_xs"), dtype=torch.float32)
    if zc.dim() != 3 or zc.shape[1] != za.shape[0]:
        raise InputError(f"candidate_xs must be (S, N, C) with N = {za.shape[0]} anchor rows, got {tuple(zc.shape)}")
    y = torch.as_tensor(_as_numpy64(labels, "labels").astype(np.int64))
    n_classes = int(y.max()) + 1
    S, N = zc.shape[0], zc.shape[1]
    with limited_threads(config.threads):
        torch.manual_seed(seed)
        ref = _probe_class()([za.shape[1], zc.shape[2]], n_classes, config, rtf=True)
        members = ProbeMembers(ref, S)
        opt = torch.optim.Adam(members.params.values(), lr=config.lr, weight_decay=config.weight_decay)
        target = y.expand(S, N)
        for _ in range(config.steps):
            opt.zero_grad(set_to_none=True)
            # the sum over members of each member's mean loss: member i's gradient is its own
            F.cross_entropy(members.logits(za, zc), target, reduction="sum").div(N).backward()
            opt.step()
        members.freeze(za, zc)
    return members


class ProbeMembers:
    """``S`` RTF fusion probes with stacked weights (:func:`fit_probe_members`)."""

    def __init__(self, ref, n_members: int):
        import torch

        self.k_prime = ref.rtf.k_prime
        if ref.rtf.alpha_param != "sigmoid" or ref.rtf.exchange != "adaptive":
            raise InputError("probe members need the probe's adaptive sigmoid alpha")
        self.mlp = not isinstance(ref.head, torch.nn.Linear)
        self.params = {n: p.detach().unsqueeze(0).repeat(n_members, *([1] * p.dim())).clone().requires_grad_()
                       for n, p in ref.named_parameters()}
        self.low = None  # (2, S, k') frozen channel choice

    def _fused(self, za, zc):
        """``(pa, pc, A, C)``: the projections before their ReLU and the fused tokens, each (S, D, N),
        channels-major (the anchor's projections of every member as one product)."""
        import torch

        P = self.params
        S, D, N = zc.shape[0], P["proj.0.bias"].shape[1], za.shape[0]
        pa = torch.addmm(P["proj.0.bias"].reshape(S * D, 1), P["proj.0.weight"].reshape(S * D, -1), za.T).view(S, D, N)
        pc = torch.baddbmm(P["proj.1.bias"][:, :, None], P["proj.1.weight"], zc.transpose(1, 2))
        low = (None, None) if self.low is None else self.low
        A, C, _, _ = _member_blend().apply(pa, pc, torch.sigmoid(P["rtf.alpha_raw"]), self.k_prime, *low)
        return pa, pc, A, C

    def tokens(self, za, zc):
        """``(before, after)``, each ``[anchor, candidate]`` of shape (S, N, D)."""
        pa, pc, A, C = self._fused(za, zc)
        return [pa.relu().transpose(1, 2), pc.relu().transpose(1, 2)], [A.transpose(1, 2), C.transpose(1, 2)]

    def logits(self, za, zc):
        """Class scores of every member, shape (S, K, N) (classes before rows)."""
        import torch

        P = self.params

        def affine(w, b, *xs):  # w_s [x_1; x_2; ...]_s + b_s, the parts (S, I_j, N) of the input by rows
            out, start = b[:, :, None], 0
            for x in xs:
                out = torch.baddbmm(out, w[:, :, start:start + x.shape[1]], x)
                start += x.shape[1]
            return out

        after = self._fused(za, zc)[2:]
        if not self.mlp:
            return affine(P["head.weight"], P["head.bias"], *after)
        return affine(P["head.2.weight"], P["head.2.bias"], affine(P["head.0.weight"], P["head.0.bias"], *after).relu())

    def freeze(self, za, zc):
        """Fix the channel choice on these (training) rows for every later call."""
        import torch

        from ..model import channel_scores

        self.low = None
        with torch.no_grad():
            before, _ = self.tokens(za, zc)
            self.low = [low_informative_channels(channel_scores(x), k_prime=self.k_prime) for x in before]

    def evaluate(self, anchor_x, candidate_xs, labels) -> tuple[np.ndarray, np.ndarray]:
        """``(gains (S, 2), accuracy (S,))`` on held-out rows: each member's anchor and candidate
        ERank gains through its RTF (:func:`rankfusion.spectral.rank_gain`) and its accuracy."""
        import torch

        za = torch.as_tensor(np.asarray(anchor_x), dtype=torch.float32)
        zc = torch.as_tensor(np.asarray(candidate_xs), dtype=torch.float32)
        with torch.no_grad():
            before, after = self.tokens(za, zc)
            pred = self.logits(za, zc).argmax(1).numpy()
        gains = np.array([[float(spectral.rank_gain(before[m][i], after[m][i])) for m in range(2)]
                          for i in range(zc.shape[0])])
        return gains, (pred == np.asarray(labels)[None, :]).mean(axis=1)


def probe_gains(model, xs) -> tuple[float, float]:
    """Effective-rank gains (Sec. 3.2) of the anchor and the candidate through a probe's RTF.

    ``before`` and ``after`` come from one forward pass of ``model`` on ``xs`` (held-out rows),
    so both sides of each gain are computed by the same routine (:func:`rankfusion.spectral.rank_gain`).
    """
    import torch


    if getattr(model, "rtf", None) is None:
        raise InputError("model has no RTF fuser: gains through fusion need rtf=True and two modalities")
    ts = [torch.as_tensor(_as_numpy64(x, "xs"), dtype=torch.float32) for x in xs]
    with torch.no_grad():
        before, after = model.tokens(ts)
    return tuple(float(spectral.rank_gain(b, a)) for b, a in zip(before[:2], after[:2]))


def _accuracy(model, xs, y) -> float:
    import torch

    with torch.no_grad():
        pred = model([torch.as_tensor(x, dtype=torch.float32) for x in xs]).argmax(1).numpy()
    return float(np.mean(pred == y))
