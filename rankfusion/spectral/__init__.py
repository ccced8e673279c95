"""Spectra, effective rank, channel informativeness, principal angles and rank gains.

Pure functions on NumPy arrays or torch tensors (the backend follows the input; torch
results stay on the input's device). Equation and definition numbers refer to Kim et al.,
"Countering Multi-modal Representation Collapse through Rank-targeted Fusion" (WACV 2026).
Numerical conventions are documented in ``docs/spectral.md``:

* singular values below the tolerance ``tol = sqrt(max(N, D)) * eps(dtype) * sigma_max`` are
  not part of the spectrum (numerical rank);
* Eq. 1 is computed without an epsilon inside the logarithm (``xlogy``);
* the all-zero matrix has numerical rank 0, an empty spectrum and effective rank 0.0;
* tall or wide inputs are resolved from the float64 Gram matrix of their short side, with an
  a-posteriori error bound that falls back to an exact float64 SVD whenever the Gram matrix
  cannot decide the rank or pin the effective rank down to far below test tolerances.

The parts, each importing only those above it:

* :mod:`~rankfusion.spectral.routes`: singular values by the Gram or the SVD route, the rank
  tolerance, :func:`spectrum_info`;
* :mod:`~rankfusion.spectral.conventions`: Eq. 1 on a spectrum and other tools' conventions;
* :mod:`~rankfusion.spectral.erank`: effective rank of a matrix (Eq. 1) and gains (Sec. 3.2);
* :mod:`~rankfusion.spectral.informativeness`: Definition 1 and the low-informative set (Eq. 3);
* :mod:`~rankfusion.spectral.inputs`: token flattening (Sec. 4.2) and column standardisation;
* :mod:`~rankfusion.spectral.angles`: principal angles and Table 6's injection angles;
* :mod:`~rankfusion.spectral.stream`: :class:`GramAccumulator`, the streamed Gram matrix.
"""

from .angles import InjectionAngles, dominant_k, injection_angles, principal_angles
from .conventions import CONVENTIONS, RankConvention, convention_matrix, rank_of_spectrum
from .erank import effective_rank, harmonic_mean_gain, rank_gain
from .informativeness import (blended_channel_count, channel_informativeness, channel_statistic,
                              informativeness_from_statistic, low_informative_channels,
                              topk_informativeness)
from .inputs import flatten_tokens, standardize_columns
from .routes import GRAM_RATIO, SpectrumInfo, numerical_rank, rank_tolerance, singular_values, spectrum_info
from .stream import GramAccumulator

__all__ = [
    "singular_values",
    "effective_rank",
    "numerical_rank",
    "channel_informativeness",
    "channel_statistic",
    "informativeness_from_statistic",
    "topk_informativeness",
    "low_informative_channels",
    "flatten_tokens",
    "principal_angles",
    "injection_angles",
    "InjectionAngles",
    "rank_gain",
    "harmonic_mean_gain",
    "GramAccumulator",
    "SpectrumInfo",
    "spectrum_info",
    "rank_tolerance",
    "blended_channel_count",
    "dominant_k",
    "RankConvention",
    "CONVENTIONS",
    "convention_matrix",
    "rank_of_spectrum",
    "standardize_columns",
    "GRAM_RATIO",
]
