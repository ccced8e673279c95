"""Channel informativeness (Definition 1, Sec. 4.2) and the low-informative channels RTF blends (Eq. 3)."""

from __future__ import annotations

from .._backend import get_ops
from .._validation import check_float, check_int, check_matrix, check_structure, describe
from .routes import _finite_or_raise


def channel_informativeness(X, k: int | None = None, *, center: bool = False):
    """Channel informativeness (Definition 1): ``I_c = sum_{i<=k} sigma_i^2 v_{i,c}^2``.

    With ``k=None`` the sum runs over all ``r`` singular directions (Sec. 4.2), which equals
    the column energy ``||x_c||^2 = (X^T X)_{cc}``; it is computed as such, without any
    eigendecomposition. With ``k`` the top-``k`` eigenpairs of the float64 Gram matrix
    ``X^T X = V diag(sigma^2) V^T`` are used (no SVD of the tall matrix).

    Parameters
    ----------
    X : array or tensor of shape (N, D) or (..., N, D)
        Feature matrix (rows: tokens/time steps, columns: channels).
    k : int, optional
        Number of top singular directions, ``1 <= k <= D``. ``None`` means all.
    center : bool, default False
        Subtract column means first.

    Returns
    -------
    scores : float64 array of shape (D,) or (..., D)
        On torch input a float64 tensor on the input's device; gradients flow where torch
        supports them (eigh needs distinct eigenvalues).

    Notes
    -----
    If ``sigma_k == sigma_{k+1}`` the top-``k`` subspace is not unique and neither is ``I_c``.

    Finite entries whose squares overflow float64 (|x| above about 1e154): with ``k=None`` the
    affected scores are ``inf``, the correctly rounded column energy; with ``k`` a ``ValueError``,
    since the Gram matrix they need cannot be formed. Rescaling X by a power of two scales every
    score by its square exactly.
    """
    X = check_structure(X, "X")
    d = X.shape[-1]
    k = check_int(k, "k", low=1, high=d, allow_none=True)
    ops = get_ops(X)
    X = ops.check_layout(X, "X")
    mu = ops.mean64(X, -2) if center else None
    if k is None:
        energy = ops.colsq64(X, mu)
        # Finite X whose energies overflow float64 keeps its (correctly rounded) inf scores.
        _finite_or_raise(ops, energy, X, "X")
        return energy
    gram = ops.gram64(X, mu)
    if not _finite_or_raise(ops, ops.diagonal(gram), X, "X"):
        raise ValueError(f"X has entries too large for a float64 Gram matrix (squares overflow): {describe(X)}")
    lam, v = ops.eigh_desc(gram)
    return topk_informativeness(lam, v, k, energy=ops.diagonal(gram))


def topk_informativeness(lam, v, k: int, *, energy=None):
    """Definition 1 from eigenpairs of ``X^T X``: ``I_c = sum_{i<=k} lambda_i v_{c,i}^2``.

    The one implementation of the top-``k`` sum (``lambda_i = sigma_i^2``), shared by
    :func:`channel_informativeness`, :class:`GramAccumulator` and :mod:`rankfusion.theorem`.

    Parameters
    ----------
    lam : array or tensor of shape (..., m)
        Eigenvalues in descending order (``m >= k``).
    v : array or tensor of shape (..., D, m)
        The matching eigenvectors as columns (``V`` of ``X = U diag(sigma) V^T``).
    k : int
    energy : array or tensor of shape (..., D), optional
        The column energies (the Gram matrix's diagonal). A column of zero energy (a channel
        that is zero on every row, e.g. a ReLU channel that never fires) lies in the Gram
        matrix's null space, so its exact score is 0; the eigensolver gives it rounding-level
        values instead, whose order would decide Eq. 3's choice among such channels. With
        ``energy`` those scores are exactly 0, so ties among them go to the lower index.

    Returns
    -------
    scores : array or tensor of shape (..., D)
    """
    ops = get_ops(lam)
    # Tiny negative eigenvalues of the PSD Gram matrix are rounding; they carry no energy.
    lam = ops.clip(lam[..., :k], 0.0)
    vk = v[..., :, :k]
    scores = ops.sum(vk * vk * lam[..., None, :], axis=-1)
    if energy is not None:
        scores = ops.where(energy == 0, 0.0, scores)
    return scores


def channel_statistic(X, k: int | None = None):
    """The additive statistic Definition 1 is computed from: column energies or the Gram matrix.

    For row blocks ``X = [X_1; X_2; ...]`` the statistic of ``X`` is the sum of the blocks'
    statistics, so informativeness over a batch split across processes is
    ``informativeness_from_statistic(sum_r channel_statistic(X_r, k), k)`` (one all-reduce).

    Parameters
    ----------
    X : array or tensor of shape (N, D)
    k : int, optional
        ``None``: the column energies ``||x_c||^2``, shape (D,) (Sec. 4.2's all-``r`` sum).
        An int: the float64 Gram matrix ``X^T X``, shape (D, D), for the top-``k`` sum.

    Returns
    -------
    float64 array or tensor of shape (D,) or (D, D), on the input's backend and device.
    """
    X = check_structure(X, "X")
    k = check_int(k, "k", low=1, high=X.shape[-1], allow_none=True)
    ops = get_ops(X)
    stat = ops.colsq64(X, None) if k is None else ops.gram64(X, None)
    _finite_or_raise(ops, stat if k is None else ops.diagonal(stat), X, "X")
    return stat


def informativeness_from_statistic(stat, k: int | None = None):
    """Definition 1 from :func:`channel_statistic`: energies as they are, or the top-``k`` sum
    (:func:`topk_informativeness` of the Gram matrix's eigenpairs, descending).

    Parameters
    ----------
    stat : array or tensor of shape (D,) (``k=None``) or (..., D, D) (``k`` given)
    k : int, optional

    Returns
    -------
    float64 array or tensor of shape (..., D)
    """
    if k is None:
        return stat
    ops = get_ops(stat)
    lam, v = ops.eigh_desc(stat)
    return topk_informativeness(lam, v, k, energy=ops.diagonal(stat))


def low_informative_channels(scores, *, eta: float | None = None, k_prime: int | None = None):
    """The low-informativeness set: ``{c : I_c <= eta}`` (Def. 1) or the bottom ``k'`` (Eq. 3).

    Parameters
    ----------
    scores : array or tensor of shape (D,) (or (..., D) with ``k_prime``)
        Channel informativeness, e.g. from :func:`channel_informativeness`.
    eta : float, optional
        Threshold of Definition 1 (``I_c <= eta`` is low), ``eta > 0``. Exactly one of ``eta``/``k_prime``.
    k_prime : int, optional
        Number of lowest-scoring channels (Eq. 3), ``0 <= k_prime <= D``. Ties are broken
        by the lower channel index.

    Returns
    -------
    channels : int64 array (torch.long tensor on the scores' device) of shape (n_low,) or (..., k_prime)
        Channel indices sorted ascending.
    """
    if (eta is None) == (k_prime is None):
        raise ValueError(f"give exactly one of eta or k_prime, got eta={eta!r}, k_prime={k_prime!r}")
    ops = get_ops(scores)
    if eta is not None:
        scores = check_matrix(scores, "scores", min_ndim=1)
        if ops.ndim(scores) != 1:
            raise ValueError(f"scores must be 1-D when eta is given, got {describe(scores)}")
        eta = check_float(eta, "eta", low=0.0, low_open=True)  # Definition 1: eta > 0
        return ops.nonzero1d(scores <= eta)
    scores = check_matrix(scores, "scores", min_ndim=1)
    d = scores.shape[-1]
    k_prime = check_int(k_prime, "k_prime", low=0, high=d)
    # A stable sort keeps equal scores in index order, so ties go to the lower channel index.
    order = ops.stable_argsort(scores, axis=-1)[..., :k_prime]
    return ops.int64(ops.sort(order, axis=-1))


def blended_channel_count(exchange_ratio: float, n_channels: int) -> int:
    """Number ``k'`` of channels RTF blends (Eq. 3): ``round(exchange_ratio * D)``.

    The one definition used by the model (:class:`rankfusion.model.RankEnhancingTokenFuser`),
    the analyses of its features (angles, Theorem 3.1 checks) and the ``theorem`` command's
    default, so that an analysis studies as many channels as the model blends. Python's
    ``round`` (ties to even; ``0.1 * 32 = 3.2 -> 3``); ``exchange_ratio = 0`` gives 0 (no
    blending).

    Parameters
    ----------
    exchange_ratio : float
        Fraction of the channels blended, in [0, 1].
    n_channels : int
        Token width ``D``, ``>= 1``.

    Returns
    -------
    k_prime : int in [0, D]
    """
    exchange_ratio = check_float(exchange_ratio, "exchange_ratio", low=0.0, high=1.0)
    n_channels = check_int(n_channels, "n_channels", low=1)
    return int(round(exchange_ratio * n_channels))
