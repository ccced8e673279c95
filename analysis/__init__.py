"""Figure scripts, one per family: run as files (``python analysis/spectra.py``) or as modules
(``python -m analysis.spectra``) from the repository root."""
