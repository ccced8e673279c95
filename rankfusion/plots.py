"""Figures of the analyses and of ``rankfusion spectrum --plot``: the only module that imports matplotlib.

Every function takes the tables of :mod:`rankfusion.featurefiles` / :mod:`rankfusion.runcache`,
returns a :class:`matplotlib.figure.Figure` (so tests can inspect labels and legends) and draws
nothing to the screen; :func:`save_figure` writes it atomically as PNG and PDF. One colour per
modality, the same in every figure (:data:`PALETTE`).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np

from ._validation import InputError
from .files import atomic_path

#: One colour per modality, shared by every figure (RGB red and depth blue as in the paper's
#: Figs. 2 and 9). Fusion outputs get their own entries.
PALETTE = {
    "rgb": "#d62728",
    "depth": "#1f77b4",
    "mvrgb": "#ff7f0e",
    "imu": "#2ca02c",
    "text": "#8c564b",
    "fused (RTF)": "#e377c2",
    "fused (plain)": "#9467bd",
}

#: Colours for modalities a dataset has beyond the bundled ones: stable across runs because
#: they are picked from the name's hash, never from the order of appearance.
_EXTRA = ["#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]

#: Line styles of the stages of a representation.
STAGE_STYLE = {"before": "--", "after": "-", "plain": ":"}

#: Marker per observation ratio, for figures whose colour already encodes the modality.
_MARKERS = ["o", "s", "^", "D", "v", "P"]


def color(name: str) -> str:
    """The colour of a modality (or fusion output) name; unknown names get a stable colour."""
    if name in PALETTE:
        return PALETTE[name]
    idx = int(hashlib.sha1(str(name).encode()).hexdigest(), 16) % len(_EXTRA)
    return _EXTRA[idx]


def _mpl():
    # Imported lazily and with a file-only backend: plots are written, never shown.
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, stem, formats=("png", "pdf"), dpi: int = 130) -> list[Path]:
    """Write ``fig`` to ``<stem>.<fmt>`` for each format, each atomically; return the paths.

    PDF output omits the creation date so that unchanged figures give identical files.
    """
    stem = Path(stem)
    paths = []
    for fmt in formats:
        if fmt not in ("png", "pdf", "svg"):
            raise InputError(f"formats must be among 'png', 'pdf', 'svg', got {fmt!r}")
        path = stem.with_name(stem.name + "." + fmt)
        meta = {"CreationDate": None} if fmt == "pdf" else ({"Date": None} if fmt == "svg" else None)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", metadata=meta)
        paths.append(path)
    return paths


def save_figure_as(fig, out, *, dpi: int = 150, option: str = "out") -> Path:
    """Write ``fig`` to the path ``out`` in the format its suffix names, atomically.

    Raises
    ------
    InputError
        If matplotlib cannot write that format (the message starts with ``option`` and the path).
    """
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower()
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise InputError(f"{option} {str(out)!r}: unsupported image format {fmt!r}; use one of {sorted(supported)}")
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return out


def close(fig) -> None:
    """Release a figure's memory (figures are built in loops by the demo)."""
    _mpl().close(fig)


def _panel_grid(n, ncols_max=3, size=(4.6, 3.6)):
    plt = _mpl()
    ncols = min(n, ncols_max)
    nrows = int(math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


# --------------------------------------------------------------------------- Figs. 2 / 9


def plot_spectra(spectra, *, title: str = "Normalised singular-value spectra before and after fusion"):
    """Figs. 2 / 9: normalised spectra per modality, log scale.

    Parameters
    ----------
    spectra : DataFrame
        Long table ``label, modality, stage, index, p, erank`` (:func:`rankfusion.featurefiles.spectra_of`),
        where ``stage`` is "before", "after" or "plain" (the features a model without RTF feeds to
        its temporal fuser) and ``modality`` may be "fused (RTF)" / "fused (plain)" for the
        stacked representation, drawn in its own panel.

    Returns
    -------
    Figure
        One panel per modality (and one for the fused representations): x = component index,
        y = sigma_i / sum(sigma) on a log axis; legend entries carry the effective rank.
    """
    panels = list(dict.fromkeys(spectra["modality"]))
    fused = [p for p in panels if p.startswith("fused")]
    per_mod = [p for p in panels if not p.startswith("fused")]
    groups = [[m] for m in per_mod] + ([fused] if fused else [])
    fig, axes = _panel_grid(len(groups))
    for ax, group in zip(axes, groups):
        for name in group:
            sub = spectra[spectra["modality"] == name]
            for stage, part in sub.groupby("stage", sort=False):
                style = STAGE_STYLE.get(stage, "-")
                what = {"before": "before fusion", "after": "after RTF", "plain": "plain fusion (no RTF)"}.get(stage, stage)
                lab = f"{name} {what}" if not name.startswith("fused") else name
                sd = float(part["erank_sd"].iloc[0]) if "erank_sd" in part else float("nan")
                er = f"{part['erank'].iloc[0]:.1f}" + (
                    f"; seeds {part['erank_mean'].iloc[0]:.1f} ± {sd:.1f}" if np.isfinite(sd) else "")
                ax.plot(part["index"], part["p"], style, color=color(name), lw=1.6, label=f"{lab} (ERank {er})")
        ax.set_yscale("log")
        ax.set_xlabel("component index i (sorted, 1 = largest)")
        ax.set_ylabel("normalised singular value $\\sigma_i/\\sum_j\\sigma_j$ (unitless)")
        ax.set_title(group[0] if len(group) == 1 and not group[0].startswith("fused") else "stacked fused features")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_array_spectra(curves, *, title: str = "Normalised singular-value spectrum"):
    """``rankfusion spectrum --plot``: the normalised spectrum ``sigma_i / sum_j sigma_j`` of each array.

    Parameters
    ----------
    curves : sequence of (label, sigma, erank)
        ``sigma``: ndarray of shape (r,), the singular values inside the numerical rank (an empty
        array draws nothing); ``erank``: its effective rank (Eq. 1), quoted in the legend.

    Returns
    -------
    Figure
        One log-scale curve per array against the index i (1 = largest).
    """
    import seaborn as sns

    plt = _mpl()
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    palette = sns.color_palette(n_colors=max(1, len(curves)))
    for col, (label, s, erank) in zip(palette, curves):
        if s.size == 0:
            continue
        ax.plot(np.arange(1, s.size + 1), s / s.sum(), color=col, lw=1.6, label=f"{label} (ERank {erank:.1f})")
    ax.set_yscale("log")
    ax.set_xlabel("index i of singular value")
    ax.set_ylabel(r"$\sigma_i \,/\, \Sigma_j\, \sigma_j$ (log scale)")
    ax.set_title(title)
    ax.legend(frameon=True, fontsize="small")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- Fig. 3


def plot_modality_selection(summary, *, anchor: str = "rgb"):
    """Fig. 3: harmonic mean of ERank gains per candidate and observation ratio, and the two gains.

    Parameters
    ----------
    summary : DataFrame
        :func:`rankfusion.selection.summarize_selection` output.

    Returns
    -------
    Figure
        Left: grouped bars of the harmonic mean (NaN drawn as an empty hatched bar labelled "NaN").
        Right: Delta_anchor against Delta_candidate, one colour per candidate, one marker per ratio.
    """
    plt = _mpl()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.0))
    cands = list(dict.fromkeys(summary["candidate"]))
    ratios = sorted(summary["obs_ratio"].dropna().unique().tolist())
    if summary["obs_ratio"].isna().any():
        ratios.append(float("nan"))
    width = 0.8 / max(1, len(cands))
    x = np.arange(len(ratios))
    for j, cand in enumerate(cands):
        sub = summary[summary["candidate"] == cand]
        vals, errs = [], []
        for r in ratios:
            hit = sub[sub["obs_ratio"].isna()] if np.isnan(r) else sub[np.isclose(sub["obs_ratio"], r)]
            vals.append(float(hit["harmonic_mean"].iloc[0]) if len(hit) else np.nan)
            errs.append(float(hit["harmonic_mean_std"].iloc[0]) if len(hit) and "harmonic_mean_std" in hit else np.nan)
        vals, errs = np.asarray(vals), np.asarray(errs)
        pos = x - 0.4 + width * (j + 0.5)
        ax.bar(pos, np.nan_to_num(vals, nan=0.0), width, color=color(cand), label=f"{anchor} + {cand}",
               yerr=np.where(np.isfinite(vals), errs, np.nan) if np.isfinite(errs).any() else None, capsize=2)
        for p, v in zip(pos, vals):
            if not np.isfinite(v):
                ax.bar(p, 0.0, width, fill=False, hatch="//", edgecolor=color(cand))
                ax.annotate("NaN", (p, 0), xytext=(0, 3), textcoords="offset points", ha="center",
                            fontsize=7, rotation=90, color=color(cand))
    ax.set_xticks(x, [("obs %g" % r) if np.isfinite(r) else "obs ?" for r in ratios])
    ax.set_xlabel("observation ratio $\\alpha$ (fraction of video observed)")
    ax.set_ylabel("harmonic mean of ERank gains (effective dims)")
    spread = ("\nerror bars: std over seeds of each seed's harmonic mean"
              if "harmonic_mean_std" in summary and summary["harmonic_mean_std"].notna().any() else "")
    ax.set_title(f"Modality selection: {anchor} paired with each candidate{spread}")
    ax.axhline(0, color="black", lw=0.6)
    ax.legend(fontsize=8)
    for j, cand in enumerate(cands):
        sub = summary[summary["candidate"] == cand].reset_index(drop=True)
        for i, row in sub.iterrows():
            mk = _MARKERS[ratios.index(row["obs_ratio"]) % len(_MARKERS)] if np.isfinite(row["obs_ratio"]) else "x"
            ax2.scatter(row["gain_anchor"], row["gain_candidate"], color=color(cand), marker=mk, s=40,
                        label=f"{cand}" if i == 0 else None)
    for k, r in enumerate(ratios):
        if np.isfinite(r):
            ax2.scatter([], [], color="grey", marker=_MARKERS[k % len(_MARKERS)], label=f"obs {r:g}")
    ax2.axhline(0, color="black", lw=0.6)
    ax2.axvline(0, color="black", lw=0.6)
    ax2.set_xlabel(f"$\\Delta_{{{anchor}}}$: ERank gain of {anchor} (effective dims)")
    ax2.set_ylabel("$\\Delta_{cand}$: ERank gain of candidate (effective dims)")
    ax2.set_title("Both gains > 0 (upper right) = mutual enhancement")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_selection_evidence(table, *, anchor: str, agreement=None):
    """Criterion, noise control and task gain per candidate (:func:`rankfusion.selection.select_modalities`).

    Parameters
    ----------
    table : DataFrame
        :meth:`rankfusion.selection.SelectionReport.table` output.
    anchor : str
    agreement : rankfusion.stats.Agreement, optional
        Rank agreement (rho, permutation p) shown in the title of the task-gain panel.

    Returns
    -------
    Figure
        Left: the two ERank gains of each pairing (filled) and of its surrogates (hollow).
        Middle: the criterion H (bar; hatched "NaN" when a gain is <= 0) with each surrogate's H
        (grey dots; a NaN surrogate at 0) and the control's p-value. Right: accuracy gain over the anchor
        alone with its 95% interval (RTF, bars) and without RTF (diamonds).
    """
    plt = _mpl()
    fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(15, 4.2))
    cands = list(table["candidate"])
    x = np.arange(len(cands))
    cols = [color(c) for c in cands]
    for off, role, mk in ((-0.15, "anchor", "o"), (0.15, "candidate", "s")):
        who = anchor if role == "anchor" else "candidate"
        ax0.scatter(x + off, table[f"gain_{role}"], color=cols, marker=mk, s=45)
        ax0.scatter(x + off, table[f"control_gain_{role}"], facecolors="none", edgecolors=cols, marker=mk, s=45)
        # legend entries in black: the colours already name the candidates on the x axis
        ax0.scatter([], [], color="black", marker=mk, label=f"{who} gain")
        ax0.scatter([], [], facecolors="none", edgecolors="black", marker=mk, label=f"{who} gain, surrogates")
    ax0.axhline(0, color="black", lw=0.6)
    ax0.set_xticks(x, cands)
    ax0.set_ylabel("ERank gain through RTF (effective dims)")
    ax0.set_title("Gains: candidate (filled) vs its noise surrogates (hollow)")
    ax0.legend(fontsize=7)
    crit = table["criterion"].to_numpy(dtype=float)
    ax1.bar(x, np.nan_to_num(crit, nan=0.0), 0.6, color=cols)
    for i, row in table.reset_index(drop=True).iterrows():
        if not np.isfinite(crit[i]):
            ax1.bar(i, 0.0, 0.6, fill=False, hatch="//", edgecolor=cols[i])
            ax1.annotate("NaN", (i, 0), xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8)
        vals = [float(v) for v in str(row["control_values"]).split(";") if v]
        ax1.scatter(np.full(len(vals), i + 0.35), np.nan_to_num(vals, nan=0.0), color="grey", s=10)
        top = max([np.nan_to_num(crit[i])] + [v for v in vals if np.isfinite(v)])
        label = f"p = {row['control_p']:.3f}" if np.isfinite(row.get("control_p", np.nan)) else ""
        ax1.annotate(("noise-like, " if row["noise_like"] else "") + label, (i, top), xytext=(0, 8),
                     textcoords="offset points", ha="center", fontsize=7, color="black")
    ax1.axhline(0, color="black", lw=0.6)
    ax1.set_xticks(x, cands)
    ax1.set_ylabel("H: harmonic mean of ERank gains")
    ax1.set_title("Criterion vs noise control (grey: surrogates; empirical p)")
    if table["task_gain"].notna().any():
        lo = table["task_gain"] - table["task_gain_lo"]
        hi = table["task_gain_hi"] - table["task_gain"]
        ax2.bar(x, table["task_gain"], 0.6, color=cols, yerr=[lo, hi], capsize=4)
        if "task_gain_plain" in table:
            ax2.scatter(x + 0.35, table["task_gain_plain"], marker="D", color=cols, s=30, label="without RTF")
            ax2.legend(fontsize=7)
        ax2.axhline(0, color="black", lw=0.6)
        ax2.set_xticks(x, cands)
        ax2.set_ylabel(f"accuracy({anchor} + candidate) - accuracy({anchor})")
        title = "Task gain (95% CI)"
        if agreement is not None and np.isfinite(agreement.rho):
            title += f"; Spearman(H, gain) = {agreement.rho:+.2f}, permutation p = {agreement.p:.3f}"
        ax2.set_title(title, fontsize=9)
    else:
        ax2.set_axis_off()
        ax2.text(0.5, 0.5, "no labels: no task evidence", ha="center", va="center")
    fig.suptitle(f"Modality selection with evidence (anchor: {anchor})")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- Figs. 6 / 7


def plot_noise_gains(table):
    """Fig. 6: ERank gain of each modality at each noise level, one panel per noisy modality.

    Parameters
    ----------
    table : DataFrame
        ``noisy_modality, level, sigma, modality, gain`` (RTF run), levels in display order.
    """
    noisy = list(dict.fromkeys(table["noisy_modality"]))
    fig, axes = _panel_grid(len(noisy), ncols_max=2, size=(5.0, 3.6))
    for ax, nm in zip(axes, noisy):
        sub = table[table["noisy_modality"] == nm]
        levels = list(dict.fromkeys(sub["level"]))
        mods = list(dict.fromkeys(sub["modality"]))
        width = 0.8 / max(1, len(mods))
        x = np.arange(len(levels))
        for j, mod in enumerate(mods):
            part = [sub[(sub["level"] == lv) & (sub["modality"] == mod)] for lv in levels]
            vals = [float(p_["gain"].mean()) for p_ in part]
            err = ([float(p_["gain_std"].mean()) for p_ in part]
                   if "gain_std" in sub and sub["gain_std"].notna().any() else None)
            ax.bar(x - 0.4 + width * (j + 0.5), vals, width, yerr=err, capsize=3, color=color(mod),
                   label=f"gain of {mod}")
        sig = [float(sub[sub["level"] == lv]["sigma"].mean()) for lv in levels]
        ax.set_xticks(x, [f"{lv}\n$\\sigma$={s:.3g}" for lv, s in zip(levels, sig)])
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xlabel(f"noise on {nm} ($\\sigma$ in units of the {nm} input RMS)")
        ax.set_ylabel("ERank gain after RTF (effective dims)")
        spread = ("\nerror bars: std over seeds; $\\sigma$: mean over seeds"
                  if "gain_std" in sub and sub["gain_std"].notna().any() else "")
        ax.set_title(f"Noise added to {nm}{spread}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_noise_moc(table):
    """Fig. 7: MoC at each noise level with and without RTF, one panel per noisy modality.

    Parameters
    ----------
    table : DataFrame
        ``noisy_modality, level, sigma, model ("with RTF" / "without RTF"), moc`` (MoC in %).
    """
    noisy = list(dict.fromkeys(table["noisy_modality"]))
    fig, axes = _panel_grid(len(noisy), ncols_max=2, size=(5.0, 3.6))
    styles = {"with RTF": ("-", "o", color("fused (RTF)")), "without RTF": ("--", "s", color("fused (plain)"))}
    for ax, nm in zip(axes, noisy):
        sub = table[table["noisy_modality"] == nm]
        levels = list(dict.fromkeys(sub["level"]))
        for model, part in sub.groupby("model", sort=False):
            ls, mk, col = styles.get(model, ("-", "o", "grey"))
            vals = [float(part[part["level"] == lv]["moc"].mean()) for lv in levels]
            err = ([float(part[part["level"] == lv]["moc_std"].mean()) for lv in levels]
                   if "moc_std" in part and part["moc_std"].notna().any() else None)
            ax.errorbar(range(len(levels)), vals, yerr=err, ls=ls, marker=mk, color=col, capsize=3, label=model)
        ax.set_xticks(range(len(levels)), levels)
        ax.set_xlabel(f"noise level on {nm} (calibrated per modality)")
        ax.set_ylabel("MoC, mean over $\\alpha,\\beta$ (%)")
        spread = "\nerror bars: std over seeds" if "moc_std" in sub and sub["moc_std"].notna().any() else ""
        ax.set_title(f"Anticipation accuracy, noisy {nm}{spread}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- Fig. 5


def plot_exchange_ratio(table, *, pair: str = "rgb + depth"):
    """Fig. 5: MoC against the fraction of exchanged channels, one line per observation ratio.

    Parameters
    ----------
    table : DataFrame
        ``exchange_ratio, obs_ratio, moc`` (MoC in %, mean over beta) and optionally ``moc_std``
        (standard deviation over seeds, drawn as error bars).
    pair : str
        The fused modalities, for the title.
    """
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    n = max(1, table["obs_ratio"].nunique())
    for k, (obs, part) in enumerate(table.groupby("obs_ratio", sort=True)):
        part = part.sort_values("exchange_ratio")
        yerr = part["moc_std"] if "moc_std" in part and part["moc_std"].notna().any() else None
        # a small horizontal offset per line keeps overlapping error bars apart
        ax.errorbar(100 * part["exchange_ratio"] + 0.6 * (k - (n - 1) / 2), part["moc"], yerr=yerr, marker=_MARKERS[k % len(_MARKERS)],
                    capsize=3, color=str(0.15 + 0.5 * k / n), label=f"$\\alpha$ = {obs:g}")
    ax.set_xticks(sorted(100 * table["exchange_ratio"].unique()))
    # the configured ratio: the blended channel count k' is rounded from it (e.g. 10 of 32 at 30 %)
    ax.set_xlabel("exchange ratio (%)")
    ax.set_ylabel("MoC, mean over $\\beta$ (%)")
    title = f"Exchange-ratio ablation ({pair})"
    if "moc_std" in table and table["moc_std"].notna().any():
        title += "\nerror bars: std over seeds"
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_angles(table):
    """Table 6 as a bar chart: mean principal angle per fusion direction X <- Y.

    Bars take the colour of the *source* modality Y (whose channels are injected).
    """
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    x = np.arange(len(table))
    ax.bar(x, table["mean_angle_deg"], color=[color(s) for s in table["source"]])
    ax.errorbar(x, table["mean_angle_deg"],
                yerr=[table["mean_angle_deg"] - table["min_angle_deg"], table["max_angle_deg"] - table["mean_angle_deg"]],
                fmt="none", ecolor="black", capsize=3, lw=0.8, label="min-max over angles")
    for src in dict.fromkeys(table["source"]):
        ax.bar([0], [0], color=color(src), label=f"injected from {src}")
    ax.set_xticks(x, table["direction"], rotation=20)
    ax.set_ylim(0, 90)
    ax.set_xlabel("fusion direction X $\\leftarrow$ Y")
    ax.set_ylabel("principal angle (degrees)")
    ax.set_title("Dominant subspace of X vs injected channels of Y")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_ablation(table):
    """Tables 2, 3, 8, 9 as bars: MoC (mean over beta) per variant and observation ratio.

    Parameters
    ----------
    table : DataFrame
        ``variant, obs_ratio, moc`` (MoC in %) and optionally ``moc_std`` (std over seeds, error bars).
    """
    plt = _mpl()
    variants = list(dict.fromkeys(table["variant"]))
    ratios = sorted(table["obs_ratio"].unique())
    fig, ax = plt.subplots(figsize=(max(5.2, 1.1 * len(variants) + 2), 3.8))
    width = 0.8 / max(1, len(ratios))
    x = np.arange(len(variants))
    has_std = "moc_std" in table and table["moc_std"].notna().any()
    for k, obs in enumerate(ratios):
        sel = [table[(table["variant"] == v) & (table["obs_ratio"] == obs)] for v in variants]
        vals = [float(t["moc"].mean()) for t in sel]
        err = [float(t["moc_std"].mean()) for t in sel] if has_std else None
        ax.bar(x - 0.4 + width * (k + 0.5), vals, width, yerr=err, capsize=2,
               color=str(0.25 + 0.45 * k / max(1, len(ratios) - 1)),
               edgecolor="black", lw=0.5, label=f"$\\alpha$ = {obs:g}")
    ax.set_xticks(x, variants, rotation=20, ha="right")
    ax.set_xlabel("model variant")
    ax.set_ylabel("MoC, mean over $\\beta$ (%)")
    ax.set_title("Ablations (Tables 2, 3, 8, 9)" + ("; error bars: std over seeds" if has_std else ""))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- dose-response

#: Colour, line style and marker of each model of the dose-response family.
DOSE_STYLE = {"anchor only": ("#d62728", "-", "o"), "anchor only, fused width": ("#ff9896", ":", "D"),
              "plain fusion": (PALETTE["fused (plain)"], "--", "s"),
              "R3D": (PALETTE["fused (RTF)"], "-", "^")}


def _dose_errorbars(ax, part, x_offset=0.0, **kw):
    yerr = part["sd"] if part["sd"].notna().any() else None
    ax.errorbar(part["level"] + x_offset, part["mean"], yerr=yerr, capsize=3, **kw)


def plot_dose(cells, oracle, *, anchor: str = "rgb", partner: str = "depth"):
    """Dose-response: MoC against complementarity and imbalance (with the oracle), and reliance.

    Parameters
    ----------
    cells : DataFrame
        ``dial, level, model, quantity ("moc", "erank_fused", "reliance <modality>"), mean, sd,
        n_seeds`` (:class:`rankfusion.figures.dose.DoseCell` rows; sd over seeds, drawn as error bars).
    oracle : DataFrame
        ``dial, level, subset, oracle_pct``: best attainable next-action accuracy (%) of each
        modality subset; the anchor's and the pair's are drawn.
    anchor, partner : str
    """
    plt = _mpl()
    fig, axes = plt.subplots(1, 3, figsize=(15.0, 4.0))
    span = {d: float(np.ptp(cells[cells.dial == d]["level"])) or 1.0 for d in cells["dial"].unique()}
    for ax, dial in zip(axes[:2], ("complementarity", "imbalance")):
        sub = cells[(cells.dial == dial) & (cells.quantity == "moc")]
        for k, (model, (col, ls, mk)) in enumerate(DOSE_STYLE.items()):
            part = sub[sub.model == model].sort_values("level")
            if len(part):
                _dose_errorbars(ax, part, 0.012 * span.get(dial, 1.0) * (k - 1), color=col, ls=ls, marker=mk,
                                label=f"{model} (MoC)")
        orc = oracle[oracle.dial == dial] if len(oracle) else oracle
        for subset, ls, mk in ((anchor, ":", "_"), (f"{anchor}+{partner}", "-.", "x")):
            part = orc[orc.subset == subset].sort_values("level") if len(orc) else orc
            if len(part):
                # a marker too: the oracle may exist at one level only, where a line draws nothing
                ax.plot(part["level"], part["oracle_pct"], ls, marker=mk, markersize=9, color="black", alpha=0.7,
                        label=f"oracle {subset} (next-action acc.)")
        ax.set_xlabel(dial)
        ax.set_ylabel("% (MoC: mean over $\\alpha,\\beta$)")
        ax.set_title(f"Accuracy against {dial}\nerror bars: std over seeds")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[2]
    rel = cells[(cells.dial == "imbalance") & cells.quantity.str.startswith("reliance ")]
    for k, ((model, q), part) in enumerate(rel.groupby(["model", "quantity"], sort=True)):
        m = q.split(" ", 1)[1]
        _dose_errorbars(ax, part.sort_values("level"), 0.012 * span.get("imbalance", 1.0) * (k - 1.5),
                        color=color(m), ls="-" if model == "R3D" else "--",
                        marker="^" if model == "R3D" else "s", label=f"{m}, {model}")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("imbalance")
    ax.set_ylabel("reliance: MoC drop when swapped (points)")
    ax.set_title("Modality reliance with (R3D) and without RTF\nerror bars: std over seeds")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_dynamics(ranks, moc, *, modalities):
    """Rank dynamics: effective rank of each modality over epochs with and without RTF, beside MoC.

    Parameters
    ----------
    ranks : DataFrame
        ``model, seed, epoch, modality, stage, effective_rank`` (``modality`` "fused" for the
        stacked tokens; ``stage`` "before"/"after" the token fuser, "stacked").
    moc : DataFrame
        ``model, seed, epoch, val_moc`` (validation MoC in %).
    modalities : list of str
        The fused modalities, one panel each, then the stacked tokens and the MoC panel.

    Lines are means over seeds, bands +- one standard deviation over seeds (none for one seed).
    Colour: the modality; line style: after (solid) / before (dashed) the token fuser with RTF,
    dotted without RTF (where before and after are the same tokens).
    """
    plt = _mpl()
    fig, axes = _panel_grid(len(modalities) + 2, ncols_max=4, size=(4.0, 3.3))
    n_seeds = int(ranks.groupby("model")["seed"].nunique().max()) if len(ranks) else 0
    curves = [("with RTF", "after", "-", "with RTF, after fuser"), ("with RTF", "before", "--", "with RTF, before fuser"),
              ("without RTF", "after", ":", "without RTF")]

    def band(ax, part, col, **kw):
        g = part.groupby("epoch")[col]
        mean, std = g.mean(), g.std()
        ax.plot(mean.index, mean.to_numpy(), **kw)
        if n_seeds > 1:
            ax.fill_between(mean.index, (mean - std).to_numpy(), (mean + std).to_numpy(), color=kw.get("color"),
                            alpha=0.15, linewidth=0)

    for ax, m in zip(axes, list(modalities) + ["fused"]):
        for model, stage, style, label in curves:
            if m == "fused":
                if stage == "before":
                    continue
                stage = "stacked"
            part = ranks[(ranks["model"] == model) & (ranks["modality"] == m) & (ranks["stage"] == stage)]
            if len(part):
                band(ax, part, "effective_rank", color=color(m if m != "fused" else
                     ("fused (RTF)" if model == "with RTF" else "fused (plain)")), linestyle=style, label=label)
        ax.set_title(f"{m} tokens" if m != "fused" else "stacked tokens", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("effective rank (Eq. 1)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[len(modalities) + 1]
    for model, style in (("with RTF", "-"), ("without RTF", ":")):
        part = moc[moc["model"] == model]
        if len(part):
            band(ax, part, "val_moc", color="0.2", linestyle=style, label=model)
    ax.set_title("validation MoC", fontsize=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel("MoC, mean over the grid (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    bands = f"bands: +- 1 std over {n_seeds} seeds" if n_seeds > 1 else "one seed (no band)"
    fig.suptitle(f"Rank dynamics on the validation subset ({bands})", fontsize=11)
    fig.tight_layout()
    return fig


def plot_timelines(panels, classes, *, obs: float):
    """Fig. 8: ground truth and predicted future of a few videos as colour bars, one panel per video.

    Parameters
    ----------
    panels : list of dict
        One per video, top to bottom: ``{"title": str, "gt": int array (N,), "past": int,
        "rows": [(label, pred int array (n,)), ...]}``; each prediction covers frames
        ``past .. past + n`` (clipped to N); label ids outside ``classes`` (NONE) are drawn white.
    classes : list of str
        Action names; label ``i`` is ``classes[i]``, one colour each (tab20, cycling).
    obs : float
        The observation ratio (the cut point is drawn at ``past``).

    The observed part of each prediction row is grey: the model sees it, it predicts only the
    future. The legend lists the classes that appear in the panels.
    """
    plt = _mpl()
    from matplotlib.patches import Patch

    cmap = plt.get_cmap("tab20")
    cols = [cmap(i % 20) for i in range(len(classes))]
    n_rows = sum(1 + len(p["rows"]) for p in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(9.5, 0.9 + 0.42 * n_rows), squeeze=False)
    used = set()

    def bar(ax, y, labels, start):
        labels = np.asarray(labels)
        if labels.size == 0:
            return
        change = np.flatnonzero(np.diff(labels)) + 1
        for s, e in zip(np.r_[0, change], np.r_[change, labels.size]):
            k = int(labels[s])
            known = 0 <= k < len(classes)
            used.update([k] if known else [])
            ax.broken_barh([(start + s, e - s)], (y - 0.4, 0.8), facecolors=cols[k] if known else "white",
                           edgecolor="none")

    for ax, p in zip(axes[:, 0], panels):
        gt, past = np.asarray(p["gt"]), int(p["past"])
        n = gt.size
        names = ["ground truth"] + [label for label, _ in p["rows"]]
        bar(ax, 0, gt, 0)
        for i, (_, pred) in enumerate(p["rows"], start=1):
            ax.broken_barh([(0, past)], (i - 0.4, 0.8), facecolors="0.85", edgecolor="none")
            bar(ax, i, np.asarray(pred)[: max(0, n - past)], past)
        ax.axvline(past, color="k", linewidth=1.2)
        ax.set_xlim(0, n)
        ax.set_ylim(len(names) - 0.5, -0.5)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_title(p["title"], fontsize=9, loc="left")
        ax.tick_params(axis="x", labelsize=7)
    axes[-1, 0].set_xlabel(f"frame (black line: cut point at {obs:g} of the video; grey: observed)")
    handles = [Patch(facecolor=cols[k], label=classes[k]) for k in sorted(used)]
    fig.legend(handles=handles, loc="lower center", ncol=min(6, max(1, len(handles))), fontsize=7,
               frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.025 * math.ceil(len(handles) / 6), 1, 1))
    return fig


def plot_collapse(cells, ranks, *, arms, baseline: str, alone: str, partner: str = "depth"):
    """Modality collapse: the partner's use against the collapse level per arm, MoC per arm, and
    the partner's effective rank over epochs.

    Parameters
    ----------
    cells : DataFrame
        ``level, arm, quantity, mean, sd, n_seeds`` (:class:`rankfusion.figures.collapse.CollapseCell`
        rows; quantities ``decidable_gain``, ``moc``, ...; sd over seeds, drawn as error bars).
    ranks : DataFrame
        ``level, arm, seed, epoch, effective_rank``: the partner's tokens before the fuser.
    arms : list of str
        The arms in drawing order; ``baseline`` is plain fusion, ``alone`` the partner alone.
    partner : str
    """
    plt = _mpl()
    fig, axes = plt.subplots(1, 3, figsize=(15.0, 4.2))
    cmap = plt.get_cmap("tab10")
    style = {a: cmap(i) for i, a in enumerate(arms)}
    ax = axes[0]
    gain = cells[cells.quantity == "decidable_gain"]
    ks = sorted(cells["level"].unique())
    span = (ks[-1] - ks[0]) if len(ks) > 1 else 1.0
    for i, arm in enumerate(arms):
        part = gain[gain.arm == arm].sort_values("level")
        if not len(part):
            continue
        kw = dict(color="black", ls="-", marker="o", lw=2) if arm == alone else dict(color=style[arm], marker="s")
        label = f"{arm} (attainable)" if arm == alone else arm
        _dose_errorbars(ax, part, 0.015 * span * (i - len(arms) / 2), label=label,
                        ls=kw.pop("ls", "--" if len(part) > 1 else "none"), **kw)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("collapse level K")
    ax.set_ylabel(f"MoC drop when {partner} is swapped (points)")
    ax.set_title(f"Use of {partner} where only it decides\nerror bars: std over seeds")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[1]
    hi = ks[-1] if ks else None
    moc = cells[(cells.quantity == "moc") & (cells.level == hi)]
    present = [a for a in arms if (moc.arm == a).any()]
    vals = [moc[moc.arm == a].iloc[0] for a in present]
    ax.bar(range(len(present)), [v["mean"] for v in vals], color=[style[a] for a in present],
           yerr=[v["sd"] if v["sd"] == v["sd"] else 0.0 for v in vals], capsize=3)
    ax.set_xticks(range(len(present)), present, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("test MoC (%)")
    lo = min((v["mean"] - (v["sd"] if v["sd"] == v["sd"] else 0.0)) for v in vals) if vals else 0.0
    ax.set_ylim(max(0.0, lo - 5.0), None)
    ax.set_title(f"MoC per arm at K = {hi:g}\nerror bars: std over seeds" if hi is not None else "MoC per arm")
    ax.grid(True, axis="y", alpha=0.3)
    ax = axes[2]
    for (level, arm), part in ranks.groupby(["level", "arm"], sort=True):
        m = part.groupby("epoch")["effective_rank"].agg(["mean", "std"]).reset_index()
        c = "black" if arm == alone else style.get(arm, "grey")
        ls = "-" if level == (ks[-1] if ks else level) else ":"
        ax.plot(m["epoch"], m["mean"], ls, color=c, label=f"{arm}, K = {level:g}")
        ax.fill_between(m["epoch"], m["mean"] - m["std"].fillna(0.0), m["mean"] + m["std"].fillna(0.0), color=c,
                        alpha=0.12)
    ax.set_xlabel("epoch (0: initialisation)")
    ax.set_ylabel(f"ERank of {partner}'s tokens")
    ax.set_title(f"{partner}'s effective rank over training\nband: std over seeds")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
