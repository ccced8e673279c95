"""Analyses of saved feature files: spectra, angles, noise calibration.

Modality selection (Sec. 3.2) lives in :mod:`rankfusion.selection`.

Pure functions over the feature files of ``docs/formats.md`` (one ``.npz`` per run, split and
observation ratio, keys ``<modality>.before`` / ``<modality>.after`` plus a JSON ``meta``).
Nothing here trains a model or draws a plot: :mod:`rankfusion.runcache` produces the files,
:mod:`rankfusion.plots` draws the tables returned here. The numbers come from
:mod:`rankfusion.spectral` (effective rank, Eq. 1; gains and their harmonic mean, Sec. 3.2;
principal angles, Table 6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._validation import InputError, check_float, check_int, check_matrix
from .config import R3DConfig
from .files import load_arrays, load_meta
from . import spectral

#: The two stages every analysed modality must have in a feature file (docs/formats.md).
STAGES = ("before", "after")


# --------------------------------------------------------------------------- feature files


@dataclass(frozen=True)
class FeatureSet:
    """The contents of one feature file.

    Attributes
    ----------
    path : Path
        The file read.
    arrays : dict of str to ndarray of shape (n_steps, D)
        Every ``<modality>.<stage>`` array of the file.
    meta : dict
        The file's JSON metadata (empty when it has none).
    """

    path: Path
    arrays: dict
    meta: dict = field(default_factory=dict)

    @property
    def modalities(self) -> list[str]:
        """Modalities having both a ``before`` and an ``after`` array, in file order."""
        return fused_modalities(self.arrays)

    @property
    def obs_ratio(self) -> float:
        """Observation ratio from the metadata (NaN when the file does not say)."""
        value = self.meta.get("obs_ratio")
        try:
            return float(value)
        except (TypeError, ValueError):
            return math.nan

    def get(self, modality: str, stage: str) -> np.ndarray:
        """Return ``<modality>.<stage>``; :class:`InputError` naming the file and key if absent."""
        key = f"{modality}.{stage}"
        if key not in self.arrays:
            raise InputError(
                f"key {key!r} not found in {str(self.path)!r}; available keys: {sorted(self.arrays)}"
            )
        return self.arrays[key]

    def blended(self, modality: str):
        """The channels RTF blended for ``modality`` when the file records them, else None
        (:func:`recorded_channels` of the file's meta)."""
        return recorded_channels(self.meta, modality, self.get(modality, "before").shape[1], self.path)


def recorded_channels(meta: dict, modality: str, d: int, path):
    """The channels RTF blended for ``modality`` as a feature file's ``meta`` records them, else None.

    ``rankfusion extract`` records them (``meta["blended_channels"]``) for each modality where
    every forward pass blended the same channels: the choice the run made on its training rows
    (or BN-gamma's). Returned as a sorted int64 array; :class:`InputError` naming ``path`` when
    the record is not a non-empty list of distinct channels in ``[0, d)``.
    """
    record = meta.get("blended_channels") or {}
    if not isinstance(record, dict):
        raise InputError(f"meta blended_channels in {str(path)!r} must be an object {{modality: [channel, ...]}}, "
                         f"got {type(record).__name__}")
    if modality not in record:
        return None
    values = record[modality]
    ok = isinstance(values, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in values)
    if not ok or not values or len(set(values)) != len(values) or any(not 0 <= c < d for c in values):
        raise InputError(f"meta blended_channels[{modality!r}] in {str(path)!r} must list one or more distinct channels in "
                         f"[0, {d}), got {values!r}")
    return np.array(sorted(values), dtype=np.int64)


def fused_modalities(keys) -> list[str]:
    """Modalities that have both ``<m>.before`` and ``<m>.after`` among ``keys`` (first-seen order)."""
    keys = list(keys)
    seen = []
    for key in keys:
        mod, _, stage = key.rpartition(".")
        if mod and stage == "before" and f"{mod}.after" in keys and mod not in seen:
            seen.append(mod)
    return seen


def load_features(path) -> FeatureSet:
    """Read and validate a feature file.

    Parameters
    ----------
    path : str or Path
        A ``.npz`` file in the format of ``docs/formats.md``.

    Returns
    -------
    FeatureSet

    Raises
    ------
    InputError
        When the file cannot be read, holds no ``<modality>.before/after`` pair, or an array is
        not 2-D, is empty, non-finite, or has a row count different from the other arrays (rows
        are the same time steps across modalities), or a modality's ``after`` differs in shape from
        its ``before``. The message names the file and the key.
    """
    path = Path(path)
    arrays = load_arrays(path)
    meta = load_meta(path)
    for key, arr in arrays.items():
        try:
            check_matrix(arr, f"array {key!r} in {str(path)!r}")
        except (ValueError, TypeError) as exc:
            raise InputError(str(exc)) from None
        if arr.ndim != 2:
            raise InputError(f"array {key!r} in {str(path)!r} must be 2-D (n_steps, D), got shape {arr.shape}")
    mods = fused_modalities(arrays)
    if not mods:
        raise InputError(
            f"file {str(path)!r} has no '<modality>.before' / '<modality>.after' pair; keys: {sorted(arrays)}"
        )
    rows = {k: arrays[k].shape[0] for m in mods for k in (f"{m}.before", f"{m}.after")}
    if len(set(rows.values())) > 1:
        raise InputError(f"arrays in {str(path)!r} have different row counts (steps must align): {rows}")
    for m in mods:
        b, a = arrays[f"{m}.before"].shape, arrays[f"{m}.after"].shape
        if b != a:  # the fuser keeps each modality's width: its input and output are the same (n_steps, D)
            raise InputError(f"array '{m}.after' in {str(path)!r} has shape {a}, '{m}.before' {b}: a modality's "
                             "tokens before and after the fuser have the same shape (n_steps, D)")
    return FeatureSet(path=path, arrays=arrays, meta=meta)


# --------------------------------------------------------------------------- spectra


def normalized_spectrum(X, *, center: bool = False) -> np.ndarray:
    """Singular values of ``X`` divided by their sum: the distribution ``p`` of Eq. 1.

    Parameters
    ----------
    X : array_like of shape (n_steps, D)
    center : bool, default False
        Subtract the column means first (the paper does not).

    Returns
    -------
    ndarray of shape (r,)
        Descending, sums to 1, over the numerical rank r; its entropy is log ERank(X). A flatter
        curve is a higher effective rank, which is how Figs. 2 and 9 are read.
    """
    X = check_matrix(np.asarray(X), "X")
    sigma = np.asarray(spectral.singular_values(X, center=center), dtype=np.float64)
    total = sigma.sum()
    if not total > 0:
        raise InputError(f"X has no non-zero singular value (shape {X.shape}); its spectrum is undefined")
    return sigma / total


def spectra_of(features: FeatureSet, modalities=None, stages=STAGES, label: str | None = None) -> pd.DataFrame:
    """Long table of normalised spectra: ``label, modality, stage, index, p, erank``.

    ``label`` names the source (e.g. "R3D (RTF)" or "plain fusion"); by default the file's run.
    """
    mods = features.modalities if modalities is None else list(modalities)
    label = label if label is not None else str(features.meta.get("run", features.path.stem))
    rows = []
    for mod in mods:
        for stage in stages:
            X = features.get(mod, stage)
            p = normalized_spectrum(X)
            erank = float(spectral.effective_rank(X))
            rows.append(pd.DataFrame({
                "label": label, "modality": mod, "stage": stage,
                "index": np.arange(1, len(p) + 1), "p": p, "erank": erank,
            }))
    return pd.concat(rows, ignore_index=True)


def stacked(features: FeatureSet, modalities, stage: str) -> np.ndarray:
    """Concatenate ``<m>.<stage>`` over ``modalities`` along channels: the F_stacked of Fig. 4.

    This is the fused representation that enters the Temporal Fuser, the object whose spectrum
    Fig. 9 compares between RTF and a plain fusion baseline.
    """
    return np.concatenate([np.asarray(features.get(m, stage), dtype=np.float32) for m in modalities], axis=1)


# --------------------------------------------------------------------------- principal angles


def blended_channels(X, exchange_ratio: float) -> np.ndarray:
    """The channels of ``X`` that RTF blends at ``exchange_ratio``, for analyses of its features.

    ``k' = spectral.blended_channel_count(exchange_ratio, D)`` channels (the model's count) of
    lowest column energy ``||x_c||^2`` (Definition 1 summed over all ``r`` directions, Sec. 4.2:
    the model's default criterion, ``selection="spectral"`` with ``informativeness_k=None``),
    ties to the lower index: the set that criterion picks on the rows of ``X``. A trained model
    blends the set it chose on its training rows; :func:`injected_channels` prefers that set when
    a feature file records it.

    Parameters
    ----------
    X : ndarray of shape (N, D)
    exchange_ratio : float in (0, 1]

    Returns
    -------
    low : int64 ndarray of shape (k',), ascending

    Raises
    ------
    InputError
        If the ratio blends no channel of ``X`` (``k' = 0``).
    """
    d = X.shape[1]
    n_low = spectral.blended_channel_count(exchange_ratio, d)
    if n_low == 0:
        raise InputError(f"exchange_ratio {exchange_ratio:g} blends round({exchange_ratio:g} * {d}) = 0 of the "
                         f"{d} channels: there are no blended channels to analyse")
    return np.asarray(spectral.low_informative_channels(spectral.channel_informativeness(X), k_prime=n_low))


def injected_channels(features: FeatureSet, modality: str, exchange_ratio: float | None = None) -> tuple:
    """The channels of ``modality`` that RTF blends with a partner's (C_low, Eqs. 3-5), for the
    analyses of Table 6 and Theorem 3.1, and where they come from.

    With ``exchange_ratio`` None and the file recording the channels the run blended
    (:meth:`FeatureSet.blended`): those, source ``"run"``. Otherwise :func:`blended_channels` of
    ``<modality>.before`` at ``exchange_ratio`` (None: the file's ``meta["exchange_ratio"]``, else
    ``R3DConfig.exchange_ratio``), source ``"criterion"``: the model's criterion applied to the
    file's rows, which a run that chose its channels on its training rows need not match.

    Returns
    -------
    (low, source) : int64 ndarray (ascending), str
    """
    if exchange_ratio is None:
        low = features.blended(modality)
        if low is not None:
            return low, "run"
        exchange_ratio = float(features.meta.get("exchange_ratio", R3DConfig.exchange_ratio))
    exchange_ratio = check_float(exchange_ratio, "exchange_ratio", low=0.0, high=1.0, low_open=True)
    X = np.asarray(features.get(modality, "before"), dtype=np.float64)
    return blended_channels(X, exchange_ratio), "criterion"


def angle_table(features: FeatureSet, pairs=None, *, exchange_ratio: float | None = None, k: int | None = None,
                energy: float = 0.9) -> pd.DataFrame:
    """Table 6: principal angles between X's dominant subspace and Y's injected channels.

    For each direction ``X <- Y`` the injected channels are :func:`injected_channels` of X (the
    channels the run blended when the file records them and ``exchange_ratio`` is None; else
    as many as RTF blends, ``round(exchange_ratio * D)``, chosen by its criterion on the file's
    rows: lowest column energy, Def. 1 with ``k = r``). RTF blends them with Y's (Eqs. 4-5);
    their columns in ``Y.before`` are compared with the top-``k`` left singular subspace of
    ``X.before`` (:func:`rankfusion.spectral.injection_angles`). ``k`` defaults to
    :func:`rankfusion.spectral.dominant_k` (singular values holding ``energy`` of X's squared
    spectrum).

    Returns
    -------
    DataFrame
        ``target, source, direction, channels, k, n_low, mean_angle_deg, min_angle_deg,
        max_angle_deg, mean_channel_angle_deg, note``: ``channels`` says where the injected
        channels come from (``"run"`` or ``"criterion"``); ``mean_channel_angle_deg`` is the mean
        angle of each injected channel to the subspace; larger angles (towards 90 degrees) mean
        more complementary injections.
    """
    energy = check_float(energy, "energy", low=0.0, high=1.0, low_open=True)
    k = check_int(k, "k", low=1, allow_none=True)
    mods = features.modalities
    if pairs is None:
        pairs = [(a, b) for a in mods for b in mods if a != b]
    rows = []
    for target, source in pairs:
        X = np.asarray(features.get(target, "before"), dtype=np.float64)
        Y = np.asarray(features.get(source, "before"), dtype=np.float64)
        if X.shape[1] != Y.shape[1]:
            raise InputError(
                f"{target}.before and {source}.before in {str(features.path)!r} have different widths "
                f"({X.shape[1]} vs {Y.shape[1]}); channel injection needs equal D"
            )
        low, source_of_low = injected_channels(features, target, exchange_ratio)
        sigma = np.asarray(spectral.singular_values(X), dtype=np.float64)
        k_used = spectral.dominant_k(sigma, energy) if k is None else min(k, len(sigma))
        res = spectral.injection_angles(X, Y, low, k_used, degrees=True)
        principal = np.asarray(res.principal, dtype=np.float64)
        per_channel = np.asarray(res.per_channel, dtype=np.float64)
        rows.append({
            "target": target, "source": source, "direction": f"{target} <- {source}", "channels": source_of_low,
            "k": k_used, "n_low": int(len(low)),
            # Table 6's single number: the mean principal angle (docs/spectral.md).
            "mean_angle_deg": float(res.angle),
            "min_angle_deg": float(principal.min()) if principal.size else math.nan,
            "max_angle_deg": float(principal.max()) if principal.size else math.nan,
            "mean_channel_angle_deg": float(np.nanmean(per_channel)) if np.isfinite(per_channel).any() else math.nan,
            # why an angle is NaN: injected channels that are zero on every row have no direction
            "note": "" if principal.size else f"{source}'s {len(low)} injected channels are zero on every row",
        })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- noise robustness


def relative_change(clean, noisy) -> float:
    """Relative Frobenius change ``||noisy - clean||_F / ||clean||_F`` of a representation.

    This is the yardstick of the noise calibration: each noise level is set so that it moves the
    noisy modality's representation (its features before the token fuser) by the same relative
    amount in every modality.
    """
    clean = check_matrix(np.asarray(clean, dtype=np.float64), "clean")
    noisy = check_matrix(np.asarray(noisy, dtype=np.float64), "noisy")
    if clean.shape != noisy.shape:
        raise InputError(f"clean and noisy must have the same shape, got {clean.shape} and {noisy.shape}")
    norm = np.linalg.norm(clean)
    if not norm > 0:
        raise InputError("clean is all zeros: a relative change is undefined")
    return float(np.linalg.norm(noisy - clean) / norm)


def calibrate_sigma(response, targets, *, sigma0: float = 0.1, iters: int = 4, rtol: float = 0.05) -> list[dict]:
    """Find, for each target relative change, the noise std that produces it.

    Parameters
    ----------
    response : callable float -> float
        Maps a noise standard deviation sigma (in units of the modality's input feature RMS) to
        the relative representation change it causes (:func:`relative_change`). It is increasing
        and close to linear for small sigma (a ReLU projection of Gaussian noise).
    targets : sequence of float
        Relative changes wanted, e.g. (0.1, 0.3) for "small" and "large".
    sigma0 : float, default 0.1
        The first probe.
    iters : int, default 4
        At most this many secant/proportional updates per target.
    rtol : float, default 0.05
        Stop when the achieved change is within ``rtol`` (relative) of the target.

    Returns
    -------
    list of dict
        ``{"target", "sigma", "achieved", "evaluations"}`` per target; the achieved value is what
        was measured at the returned sigma (recorded in the robustness table and the manifest).
    """
    sigma0 = check_float(sigma0, "sigma0", low=0.0, low_open=True)
    iters = check_int(iters, "iters", low=1)
    out = []
    cache: dict[float, float] = {}

    def measure(s):
        if s not in cache:
            cache[s] = float(response(s))
        return cache[s]

    for t in targets:
        t = check_float(t, "targets", low=0.0, low_open=True)
        # Proportional update: the response is ~linear through the origin, so one probe gives the
        # slope; each further step rescales by target/achieved (a secant through 0).
        s = sigma0
        r = measure(s)
        n = 1
        while n <= iters and not (abs(r - t) <= rtol * t):
            if not r > 0:
                s *= 10.0
            else:
                s = s * t / r
            r = measure(s)
            n += 1
        out.append({"target": t, "sigma": float(s), "achieved": float(r), "evaluations": n})
    return out


def gains_table(features: FeatureSet, modalities=None) -> pd.DataFrame:
    """ERank before/after and gain of each modality of one feature file (one row per modality)."""
    mods = features.modalities if modalities is None else list(modalities)
    rows = []
    for mod in mods:
        b = float(spectral.effective_rank(features.get(mod, "before")))
        a = float(spectral.effective_rank(features.get(mod, "after")))
        rows.append({"modality": mod, "erank_before": b, "erank_after": a, "gain": float(spectral.rank_gain(b, a))})
    return pd.DataFrame(rows)


__all__ = [
    "FeatureSet", "load_features", "fused_modalities", "normalized_spectrum", "spectra_of",
    "stacked", "angle_table", "relative_change", "calibrate_sigma", "gains_table",
]
