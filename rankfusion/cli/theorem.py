"""``rankfusion theorem``: check Theorem 3.1's assumptions and conclusion on saved features."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
import numpy as np

from .._validation import InputError, check_float
from ..featurefiles import recorded_channels
from ..files import load_arrays, load_meta
from ..theorem import DEFAULT_ZERO_MEAN_TOL, default_k, default_k_prime, theorem_3_1
from . import main


def _matrix(arr, key: str, path: Path):
    """(..., D) -> (prod(...), D) as in Sec. 4.2; checks shape and finiteness, naming the key."""
    if arr.ndim < 2:
        raise InputError(f"array {key!r} in {str(path)!r} has shape {arr.shape}; need (T, D)")
    if arr.size == 0:
        raise InputError(f"array {key!r} in {str(path)!r} is empty (shape {arr.shape})")
    mat = np.asarray(arr).reshape(-1, arr.shape[-1])
    if mat.dtype.kind == "f" and not np.isfinite(mat).all():
        raise InputError(f"array {key!r} in {str(path)!r} contains NaN or Inf values")
    return mat


def _parse_floats(text: str, name: str):
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{name} must be a number or comma-separated numbers, got {text!r}") from None
    if not vals:
        raise InputError(f"{name} must not be empty")
    return vals[0] if len(vals) == 1 and "," not in text else np.array(vals)


def _parse_ints(text: str, name: str):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{name} must be comma-separated channel indices, got {text!r}") from None
    if not values:  # e.g. an empty shell variable: not a check of an empty C_low
        raise InputError(f"{name} {text!r} names no channel; give I,J,... or leave it out")
    return values


def _default_low(file: Path, xkey: str, d: int) -> tuple:
    """``(low, k_prime, note)`` when no choice is given: the channels the run blended for X's modality
    when the feature file records them (a note on stderr says so), else k' as R3D blends at the
    file's exchange ratio."""
    meta = load_meta(file)
    modality, _, stage = xkey.rpartition(".")
    recorded = recorded_channels(meta, modality, d, file) if stage == "before" and modality else None
    if recorded is not None:
        # said once the check has run: a failing command prints only its error line
        return [int(c) for c in recorded], None, (f"C_low: the {len(recorded)} channels the run blended for "
                                                  f"{modality!r} (recorded in the file)")
    ratio = meta.get("exchange_ratio")
    if ratio is not None:
        ratio = check_float(ratio, f"meta exchange_ratio in {str(file)!r}", low=0.0, high=1.0)
        if ratio == 0.0:
            raise InputError(f"{str(file)!r} comes from a run that blended no channel (exchange_ratio 0): nothing "
                             "to check by default; choose channels with --low, --k-prime or --eta")
    return None, default_k_prime(d, ratio), None


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--x", "xkey", required=True, help="Key of X, the modality fused into (e.g. rgb.before).")
@click.option("--y", "ykey", required=True, help="Key of Y, the modality blended in (e.g. depth.before).")
@click.option("--k", "k", type=int, default=None,
              help="Dominant-subspace size, 1 <= k <= rank(X). Default: floor(ERank(X)).")
@click.option("--k-prime", "k_prime", type=int, default=None,
              help="Blend the k' channels of lowest I_c (Eq. 3). Default: the channels the run blended when FILE "
                   "(from `rankfusion extract`) records them for X's modality; else max(1, round(r * D)), r "
                   "the file's exchange ratio (R3D's default 0.1 when it has none): as many as R3D blends at "
                   "width D, and at least one.")
@click.option("--eta", type=float, default=None, help="Blend C_low = {c : I_c <= eta} (Definition 1).")
@click.option("--low", "low", default=None, help="Blend these channels (comma-separated indices).")
@click.option("--alpha", default="0.5", show_default=True,
              help="Blending coefficient(s) in [0, 1]: one number, or one per channel (comma-separated).")
@click.option("--epsilon", type=float, default=None, help="Assumption 2 constant (default: ||Delta||_F^2).")
@click.option("--beta", type=float, default=None, help="Assumption 1 constant (default: max ||y_c||).")
@click.option("--gamma", type=float, default=None, help="Assumption 4 constant (default: actual alignment ratio).")
@click.option("--informativeness", type=click.Choice(["topk", "full"]), default="topk", show_default=True,
              help="Definition 1 over the top-k singular vectors, or all (= column energy, Eq. 15).")
@click.option("--residual", type=click.Choice(["rank", "complement"]), default="rank", show_default=True,
              help="Assumption 4's residual space: span{u_k+1..u_r}, or the whole complement of span{u_1..u_k}.")
@click.option("--zero-mean-tol", type=float, default=DEFAULT_ZERO_MEAN_TOL, show_default=True,
              help="Largest |cosine(y_c, 1)| counted as zero-mean (Assumption 1).")
@click.option("--center-y", is_flag=True,
              help="Centre Y's columns before blending (makes Assumption 1's zero-mean hold; changes X').")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
def theorem(file, xkey, ykey, k, k_prime, eta, low, alpha, epsilon, beta, gamma, informativeness, residual,
            zero_mean_tol, center_y, as_json):
    """Check Theorem 3.1 on features X, Y from FILE: assumptions, ERank before/after, verdict.

    Builds X' by Definition 2 (blending the chosen channels of X with the same channels of Y),
    reports every assumption with its slack (>= 0 holds), ERank(X) and ERank(X'), and a verdict:
    holds-and-rank-rose, holds-but-rank-did-not-rise (a counterexample) or assumption-fails.
    Exit status 0 whatever the verdict. See docs/theory.md.
    """
    if sum(v is not None for v in (k_prime, eta, low)) > 1:
        raise InputError("give at most one of --k-prime, --eta, --low")
    arrays = load_arrays(file, [xkey] if xkey == ykey else [xkey, ykey])
    X = _matrix(arrays[xkey], xkey, file)
    Y = _matrix(arrays[ykey], ykey, file)
    if X.shape != Y.shape:
        raise InputError(f"arrays {xkey!r} {tuple(arrays[xkey].shape)} and {ykey!r} {tuple(arrays[ykey].shape)} "
                         f"in {str(file)!r} must have the same shape")
    if k is None:
        k = default_k(X, name=f"array {xkey!r} in {str(file)!r}")
    low_list = _parse_ints(low, "--low") if low is not None else None
    note = None
    if low_list is None and eta is None and k_prime is None:
        low_list, k_prime, note = _default_low(file, xkey, X.shape[1])
    try:
        report = theorem_3_1(
            X, Y, k=k, alpha=_parse_floats(alpha, "--alpha"), low=low_list, eta=eta, k_prime=k_prime,
            epsilon=epsilon, beta=beta, gamma=gamma, informativeness=informativeness, residual=residual,
            zero_mean_tol=zero_mean_tol, center_y=center_y,
        )
    except InputError as exc:  # the library speaks of X and Y: say which arrays of which file
        raise InputError(f"X = {xkey!r}, Y = {ykey!r} in {str(file)!r}: {exc}") from None
    if note:
        click.echo(note, err=True)
        # the channels came from the file, not from --low: the header and the JSON say so
        report = dataclasses.replace(report, constant_sources={**report.constant_sources, "low": "recorded"})
    if as_json:
        payload = {"file": str(file), "x": xkey, "y": ykey, "report": report.to_dict()}
        click.echo(json.dumps(payload, indent=2, allow_nan=False))
    else:
        click.echo(report.format(source=f"{file}:  X = {xkey!r}, Y = {ykey!r}"))
