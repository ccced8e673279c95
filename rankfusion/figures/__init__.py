"""The paper's figure families, regenerated from cached R3D runs (``rankfusion figures``).

Each family is a module with ``jobs(ctx)``, the runs it reads (:class:`RunSet` s), and
``make(ctx)``, which reads those runs (training any the process pool did not), writes CSV/Markdown
tables and PNG+PDF figures into ``ctx.out`` and returns a :class:`FigureResult` whose ``data`` is
the family's typed result. :data:`FAMILIES` registers them; :func:`plan_jobs` is the union of
their jobs, so :func:`make_figures` can train every run in a process pool while it makes each
family whose runs are done, and write ``manifest.json`` (runs, seeds, config hashes, git commit, command).

=============  ===============================================================================
family         paper counterpart
=============  ===============================================================================
spectra        Figs. 2 / 9: normalised spectra before / after RTF and of a plain fusion (rtf=False)
modality       Fig. 3: harmonic mean of ERank gains of the anchor with each candidate
noise          Figs. 6 / 7: ERank gains and MoC under calibrated Gaussian noise on one modality
exchange       Fig. 5: MoC against the exchange ratio 0.1 / 0.2 / 0.3
angles         Table 6: principal angles between X's dominant subspace and Y's injected channels
ablation       Tables 2, 3, 8, 9 (+ R3D (Uni) of Table 1): MoC per variant
dose           (not in the paper) MoC and modality reliance against the generator's dials
collapse       (not in the paper) use of a modality with unique information against the collapse dial,
               for plain fusion, RTF and the remedies, against what that modality alone attains
dynamics       (no paper figure) effective rank of each modality over epochs, with / without RTF
timeline       Fig. 8: ground truth vs predicted future per test video, with / without RTF, anchor alone
theorem        Theorem 3.1 on the exported features, both directions (``theorem.md``)
spectrum       numerical and effective rank of every exported array (``spectrum.md``)
=============  ===============================================================================
"""

from __future__ import annotations

import time

from tqdm.auto import tqdm

from .._progress import bar_disabled
from .._validation import InputError, check_int
from ..runcache import group_jobs
from ..threads import limited_threads
from . import ablation, angles, collapse, dose, dynamics, exchange, modality, noise, spectra, spectrum, theorem, timeline
from .common import FigureResult, RunSet
from .context import FigureContext
from .manifest import write_manifest

#: The one registry of figure families: name -> module (``jobs``, ``make``), in the order
#: ``rankfusion figures`` makes them.
FAMILIES = {"spectra": spectra, "modality": modality, "noise": noise, "exchange": exchange, "angles": angles,
            "ablation": ablation, "dose": dose, "collapse": collapse, "dynamics": dynamics, "timeline": timeline,
            "theorem": theorem, "spectrum": spectrum}

__all__ = ["FAMILIES", "FigureContext", "FigureResult", "RunSet", "check_names", "make_figures", "plan_jobs",
           "write_manifest"]


def check_names(names) -> list[str]:
    """``names`` as a list without repeats (default: every family); InputError naming an unknown one."""
    names = list(FAMILIES) if not names else list(dict.fromkeys(names))
    for n in names:
        if n not in FAMILIES:
            raise InputError(f"--only must be among {list(FAMILIES)}, got {n!r}")
    return names


def plan_jobs(ctx: FigureContext, names) -> list:
    """The runs the families ``names`` read, as :class:`rankfusion.runcache.RunJob` s: the union of
    their ``jobs(ctx)``, without repeats, in first-asked order.

    Each job trains (or reuses) one run and makes the MoC grid and feature exports its families
    read, so :func:`make_figures` can do all of them in a process pool; each family then finds
    its runs finished in the cache. Work a family does after that (noisy copies, the
    calibration, the analyses) runs in the calling process: it depends on finished runs and is short.
    """
    return _union(_family_jobs(ctx, names).values())


def _family_jobs(ctx: FigureContext, names) -> dict:
    """``{family: its jobs}`` for the families ``names``."""
    return {n: [j for runset in FAMILIES[n].jobs(ctx) for j in runset.jobs()] for n in check_names(names)}


def _union(job_lists) -> list:
    out = []
    for jobs in job_lists:
        for j in jobs:
            if j not in out:
                out.append(j)
    return out


def make_figures(ctx: FigureContext, only=None, *, command: str = "", progress: bool = True,
                 workers: int = 1) -> dict:
    """Make the selected families and write ``<out>/manifest.json``; return ``{name: FigureResult}``.

    With ``workers > 1`` the runs every family needs (:func:`plan_jobs`) are trained, evaluated
    and exported in that many processes (:func:`rankfusion.runcache.run_jobs`) while this process
    makes each family, in order, as soon as all of its runs are in the cache (:class:`_Prefetch`),
    so the families' own work overlaps the training of later families' runs. The manifest is
    merged with an existing one, so ``--only`` updates just those figures' entries.
    """
    names = check_names(only)
    workers = check_int(workers, "workers", low=1)
    created = not ctx.out.exists()
    ctx.out.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        with _Prefetch(ctx, names, workers, progress) as prefetch:
            bar = tqdm(names, desc="figures", disable=bar_disabled(progress), unit="fig")
            for n in bar:
                prefetch.wait(n)
                bar.set_postfix_str(n)
                t0 = time.perf_counter()
                r = FAMILIES[n].make(ctx)
                r.seconds = round(time.perf_counter() - t0, 2)
                results[n] = r
    except BaseException:
        if created and not any(ctx.out.iterdir()):
            ctx.out.rmdir()  # a failure before the first family leaves no empty output folder behind
        raise
    write_manifest(ctx, results, command=command)
    return results


class _Prefetch:
    """The families' runs trained in a process pool, driven from a thread of this process.

    :meth:`wait` returns once every run of a family is in the cache (or the pool has stopped);
    an error in a worker is raised there. Leaving the ``with`` block early (an error, Ctrl-C)
    cancels the groups not yet started and waits for the running ones.
    """

    def __init__(self, ctx: FigureContext, names, workers: int, progress: bool):
        import threading

        self.ctx = ctx
        self.thread = None
        # every family plans its runs before any is made, also with one worker: a family that
        # refuses this context (e.g. collapse with another partner) says so before hours of training
        self.jobs = _family_jobs(ctx, names)
        if workers == 1:
            return
        self.done: set[str] = set()
        self.error: BaseException | None = None
        self.cond = threading.Condition()
        self.stop = threading.Event()
        planned = _union(self.jobs.values())
        if len(group_jobs(planned)) <= 1:
            # one group trains in this process anyway (run_jobs): here, where Ctrl-C stops it at once
            ctx.cache.prefetch(planned, workers=workers, progress=progress)
            return
        self.thread = threading.Thread(target=self._run, args=(planned, workers, progress), daemon=True)

    def _run(self, jobs, workers, progress):
        try:
            self.ctx.cache.prefetch(jobs, workers=workers, progress=progress, on_done=self._landed, stop=self.stop)
        except BaseException as exc:  # raised in the main thread by wait() / __exit__
            self.error = exc
        finally:
            with self.cond:
                self.cond.notify_all()

    def _landed(self, run_dir: str):
        with self.cond:
            self.done.add(run_dir)
            self.cond.notify_all()

    def __enter__(self):
        if self.thread is not None:
            # this process shares the cores with the workers: one torch and one BLAS thread, as
            # each worker uses (rankfusion.threads)
            self.limits = limited_threads(1)
            self.limits.__enter__()
            self.thread.start()
        return self

    def wait(self, name: str) -> None:
        if self.thread is None:
            return
        need = {str(j.run_dir()) for j in self.jobs[name]}
        with self.cond:
            while not need <= self.done and self.thread.is_alive() and self.error is None:
                self.cond.wait(timeout=1.0)
        if self.error is not None:
            raise self.error

    def __exit__(self, exc_type, exc, tb):
        if self.thread is None:
            return False
        try:
            if exc_type is not None:
                self.stop.set()
            self.thread.join()
        finally:
            self.limits.__exit__(None, None, None)
        if exc_type is None and self.error is not None:
            raise self.error
        return False
