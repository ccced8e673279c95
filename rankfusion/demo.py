"""The end-to-end demo (``rankfusion demo``): dataset -> run cache -> figures -> report.

:func:`run_demo` generates the bundled synthetic dataset, opens its run cache, makes every figure
family (:mod:`rankfusion.figures`: the runs they need, cached by config hash, the figures and tables,
Theorem 3.1 on the exported features), and writes ``OUT/report.md`` (:mod:`rankfusion.report`),
which embeds the figures and states the findings in numbers.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from . import verdicts
from ._validation import InputError
from .files import write_json, write_text
from .data import open_dataset
from .data.synth import prepare_dataset
from .figures import FigureContext, make_figures
from .profiles import get_profile
from .threads import set_threads
from .runs import resolve_device
from .report import build_report


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the demo's worker processes)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_demo(out, *, quick: bool = False, device: str = "cpu", seed: int = 0, progress: bool = True,
             command: str = "rankfusion demo", threads: int | None = 1, workers: int = 1) -> dict:
    """Run the whole pipeline into ``out`` and write ``out/report.md``.

    Parameters
    ----------
    out : path-like
        Output folder: ``data/`` (the synthetic dataset), ``cache/`` (runs), ``figures/`` (figures,
        tables, manifest), ``report.md``. Re-running reuses the dataset and every finished run.
    quick : bool
        Tiny dataset and 1-epoch runs (the ``quick`` profile, about a minute on 2 cores).
    device : str
    seed : int
        Seed of the synthetic dataset.
    progress : bool
    command : str
        Recorded in the manifest.
    threads : int or None, default 1
        Torch and NumPy BLAS threads (:func:`rankfusion.threads.set_threads`; None keeps the defaults).
    workers : int, default 1
        Processes that train, evaluate and export the independent runs in parallel (one torch
        thread each; :func:`rankfusion.runcache.run_jobs`).

    Returns
    -------
    dict
        ``report`` (path), ``seconds`` (wall time), ``ranking`` (modality ranking), ``matches``.
    """
    t0, c0 = time.perf_counter(), _cpu_seconds()
    set_threads(threads)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"out {str(out)!r} exists and is not a folder")
    resolve_device(device)  # an unusable device fails before the dataset is written
    name = "quick" if quick else "full"
    profile = get_profile(name)
    data = prepare_dataset(out / "data", profile.synth, seed=seed, progress=progress)
    ctx = FigureContext.open(data, out=out / "figures", cache_dir=out / "cache", profile=profile, device=device,
                             progress=progress)
    results = make_figures(ctx, command=command, progress=progress, workers=workers)
    ds = open_dataset(data)
    videos = [v for s in ("train", "val", "test") for v in ds.split(s)]
    summary = {"videos": len(videos), "frames": int(sum(ds.n_frames(v) for v in videos)),
               "classes": len(ds.classes), "modalities": list(ds.modalities)}
    seconds = time.perf_counter() - t0
    text = build_report(ctx, results, seconds=seconds, profile_name=name,
                        dataset_summary=summary, cpu_seconds=_cpu_seconds() - c0, workers=workers)
    write_text(out / "report.md", text)
    mod = results.get("modality")
    info = {"report": str(out / "report.md"), "seconds": round(seconds, 1),
            "cpu_seconds": round(_cpu_seconds() - c0, 1), "workers": int(workers),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None, "profile": name,
            "ranking": list(mod.data.ranking) if mod else None,
            "matches": mod.data.comparison["matches"] if mod else None,
            "lead": _lead(mod.data) if mod else None}
    write_json(out / "demo.json", info)
    return info


def _lead(d) -> dict:
    """The ranking's first place as a finding or not: its lead over the second, tested
    (:func:`rankfusion.verdicts.top_lead`)."""
    second, lead, verdict, _ = verdicts.top_lead(d.ranking, d.scores, d.seed_scores)
    return {"over": second, "lead": lead if lead == lead else None, "verdict": verdict}
