"""``rankfusion theorem``: check Theorem 3.1's assumptions and conclusion on saved features."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
import numpy as np

from .. import spectral
from .._validation import InputError
from ..io import load_arrays
from ..theorem import theorem_3_1
from . import main

#: How many blended channels the per-channel table lists before eliding.
MAX_CHANNEL_ROWS = 20


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
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{name} must be comma-separated channel indices, got {text!r}") from None


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "NO"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if not math.isfinite(v):
        return "inf" if v > 0 else ("-inf" if v < 0 else "nan")
    return f"{v:.6g}"


def format_report(rep, *, path, xkey, ykey) -> str:
    """A readable, fixed-width table of a :class:`~rankfusion.theorem.TheoremReport`."""
    T, D = rep.shape
    low = rep.low.tolist()
    shown = ", ".join(map(str, low[:MAX_CHANNEL_ROWS])) + (" ..." if len(low) > MAX_CHANNEL_ROWS else "")
    src = rep.constant_sources
    L = [
        f"Theorem 3.1 on {path}:  X = {xkey!r}, Y = {ykey!r}  (T={T}, D={D})",
        f"rank r = {rep.rank}, k = {rep.k}, informativeness = {rep.informativeness_convention}, "
        f"residual = {rep.residual_convention}",
        f"sigma_k = {_fmt(rep.sigma_k)}, sigma_k+1 = {_fmt(rep.sigma_k1)}, delta_k = {_fmt(rep.delta_k)}",
        f"C_low ({src['low']}): |C_low| = {rep.n_low}: [{shown}]",
        "",
        "constants       value         source",
    ]
    for name in ("eta", "beta", "epsilon", "gamma"):
        L.append(f"  {name:<13} {_fmt(getattr(rep, name)):<13} {src[name]}")
    L += ["", f"{'check':<22} {'holds':<6} {'slack':>13} {'lhs':>13} {'rhs':>13}", "-" * 71]
    for c in rep.assumptions:
        L.append(f"{c.name:<22} {_fmt(c.holds):<6} {_fmt(c.slack):>13} {_fmt(c.lhs):>13} {_fmt(c.rhs):>13}")
    L.append("")
    L.append(f"ERank(X)  = {rep.erank_before:.6f}   ERank(X') = {rep.erank_after:.6f}   "
             f"change = {rep.erank_change:+.3e}")
    verdict = rep.verdict + (f" ({', '.join(rep.failed)})" if rep.failed else "")
    L.append(f"verdict: {verdict}")
    sc = rep.sufficient_condition
    L.append(f"sufficient condition (strict majorization): {_fmt(sc.holds)}, slack {_fmt(sc.slack)}, "
             f"largest gap {_fmt(sc.rhs)}")
    L += ["", "proof steps (App. A) on this data:"]
    for c in rep.proof_steps:
        if c.name == "eq48":
            L.append(f"  {c.name:<6} dominant energy {_fmt(c.lhs)} -> {_fmt(c.rhs)}")
        else:
            L.append(f"  {c.name:<6} {_fmt(c.holds):<4} slack {_fmt(c.slack):>12}   {c.detail}")
    if rep.n_low:
        L += ["", f"{'c':>5} {'alpha':>7} {'I_c':>11} {'||x_c||^2':>11} {'||y_c||':>11} "
                  f"{'|P_dom y|^2':>11} {'|P_res y|^2':>11} {'ratio':>9}"]
        for j, c in enumerate(low[:MAX_CHANNEL_ROWS]):
            L.append(f"{c:>5} {_fmt(rep.alpha[c]):>7} {_fmt(rep.informativeness[c]):>11} "
                     f"{_fmt(rep.column_energy[c]):>11} {_fmt(rep.y_norm[j]):>11} {_fmt(rep.y_dominant_sq[j]):>11} "
                     f"{_fmt(rep.y_residual_sq[j]):>11} {_fmt(rep.alignment_ratio[j]):>9}")
        if len(low) > MAX_CHANNEL_ROWS:
            L.append(f"  ... {len(low) - MAX_CHANNEL_ROWS} more (use --json)")
    for n in rep.notes:
        L.append(f"note: {n}")
    return "\n".join(L)


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--x", "xkey", required=True, help="Key of X, the modality fused into (e.g. rgb.before).")
@click.option("--y", "ykey", required=True, help="Key of Y, the modality blended in (e.g. depth.before).")
@click.option("--k", "k", type=int, default=None,
              help="Dominant-subspace size, 1 <= k <= rank(X). Default: floor(ERank(X)).")
@click.option("--k-prime", "k_prime", type=int, default=None,
              help="Blend the k' channels of lowest I_c (Eq. 3). Default: max(1, D // 10).")
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
@click.option("--zero-mean-tol", type=float, default=1e-6, show_default=True,
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
                         "in the feature file must have the same shape")
    D = X.shape[1]
    if k is None:
        r = int(spectral.numerical_rank(X))
        if r == 0:
            raise InputError(f"array {xkey!r} has numerical rank 0 (all zero)")
        k = max(1, min(r, int(math.floor(float(spectral.effective_rank(X))))))
    low_list = _parse_ints(low, "--low") if low is not None else None
    if low_list is None and eta is None and k_prime is None:
        k_prime = max(1, D // 10)
    report = theorem_3_1(
        X, Y, k=k, alpha=_parse_floats(alpha, "alpha"), low=low_list, eta=eta, k_prime=k_prime,
        epsilon=epsilon, beta=beta, gamma=gamma, informativeness=informativeness, residual=residual,
        zero_mean_tol=zero_mean_tol, center_y=center_y,
    )
    if as_json:
        payload = {"file": str(file), "x": xkey, "y": ykey, "report": report.to_dict()}
        click.echo(json.dumps(payload, indent=2, allow_nan=False))
    else:
        click.echo(format_report(report, path=file, xkey=xkey, ykey=ykey))
