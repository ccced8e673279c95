"""The figure scripts in analysis/ run both as files and as modules of the `analysis` package."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("form", [["analysis/spectra.py"], ["-m", "analysis.spectra"]], ids=["file", "module"])
def test_figure_script_runs_as_file_and_module(form, tmp_path):
    # a missing dataset reaches run_family's one-line error: the script imported and parsed its options
    missing = tmp_path / "no-such-data"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, *form, "--data", str(missing), "--out", str(tmp_path / "figs")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"Error: dataset folder {str(missing)!r} does not exist"]
    assert not (tmp_path / "figs").exists()
