"""``manifest.json``: per figure family its files, runs (config hash, seed), parameters and findings."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..files import entry_lock, write_json
from ..runcache import git_commit
from .context import FigureContext


def write_manifest(ctx: FigureContext, results: dict, *, command: str = "") -> Path:
    """Write/merge ``<out>/manifest.json`` with the entries of ``results`` (``{name: FigureResult}``).

    The read-merge-write holds the manifest's file lock, so processes writing figures into one
    folder at once keep each other's entries.
    """
    path = ctx.out / "manifest.json"
    with entry_lock(path):
        return _merge_manifest(ctx, path, results, command)


def _relative_root(root, out) -> str:
    """The data folder as seen from the manifest's folder (POSIX separators), so that a manifest
    names no folder of the machine that made it; the absolute path where no relative one exists
    (another drive). Symbolic links are kept as named (resolving them would name the machine's
    folders again)."""
    try:
        return Path(os.path.relpath(os.path.abspath(root), os.path.abspath(out))).as_posix()
    except ValueError:
        return os.path.abspath(root)


def _merge_manifest(ctx: FigureContext, path: Path, results: dict, command: str) -> Path:
    manifest = {}
    if path.exists():
        try:
            manifest = json.loads(path.read_text())
        except ValueError:
            manifest = {}
    figs = manifest.get("figures", {})
    prof = ctx.profile
    for n, r in results.items():
        figs[n] = {
            "files": r.files,
            "runs": ctx.cache.manifest_runs(r.run_keys) + [d for c in r.caches if c is not ctx.cache
                                                              for d in c.manifest_runs(r.run_keys)],
            "params": r.params,
            "findings": r.findings,
            "seconds": r.seconds,
            "git_commit": git_commit(),
            "command": command,
            "dataset": {"root": _relative_root(ctx.data_root, ctx.out), "fingerprint": ctx.cache.fingerprint},
            "profile": {"model": prof.model, "train": prof.train, "seeds": list(prof.seeds),
                        "obs_ratios": list(prof.obs_ratios)},
        }
    for n, entry in figs.items():
        root = entry.get("dataset", {}).get("root") if n not in results else None
        if isinstance(root, str) and os.path.isabs(root):  # as older versions wrote it: the same folder, relative
            entry["dataset"]["root"] = _relative_root(root, ctx.out)
    manifest["figures"] = figs
    manifest["anchor"] = ctx.anchor
    manifest["partner"] = ctx.partner
    write_json(path, manifest)
    return path
