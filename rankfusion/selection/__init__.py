"""Modality selection (Sec. 3.2, Fig. 3) with evidence.

Three numbers per candidate modality, meant to be read together (docs/analysis.md):

1. **The paper's criterion**: the harmonic mean ``H`` of the anchor's and the candidate's
   effective-rank gains through fusion (Eq. 1, Sec. 3.2), from feature files of any model
   (:func:`modality_selection`) or from a small fusion probe on paired features
   (:func:`select_modalities`).
2. **A spectrum-matched noise control**: ``H`` recomputed, through exactly the same fits and
   averaging, with the candidate replaced by surrogates that keep its column means and its exact
   singular spectrum but whose rows are random (:func:`spectral_surrogates`); the candidate's
   ``control_p`` is the empirical p-value of its ``H`` among theirs (:func:`noise_test`) and it is
   flagged ``noise_like`` unless that p is at most :data:`rankfusion.stats.ALPHA` (a discrete p-value
   that reaches alpha exactly is a rejection at level alpha: 1/20 with 19 surrogates).
3. **Task evidence**: the cross-validated accuracy gain of anchor+candidate over the anchor alone
   (the fusion probe), and the rank agreement between ``H`` and the task gains
   (:func:`rankfusion.stats.agreement`: Spearman's rho, tested by permutation over candidates).

The maths (effective rank, gains, harmonic mean) comes from :mod:`rankfusion.spectral`; the
exchange of the probe is the model's own RTF (Eqs. 3-5, :class:`rankfusion.model.RankEnhancingTokenFuser`).
Nothing here draws a plot (:mod:`rankfusion.plots`) or parses the command line.

The parts, each importing only those above it:

* :mod:`~rankfusion.selection.arrays`: host float64 copies and exact power-of-two scaling;
* :mod:`~rankfusion.selection.criterion`: the criterion on feature files and its ranking;
* :mod:`~rankfusion.selection.surrogates`: the noise surrogates and the empirical noise test;
* :mod:`~rankfusion.selection.probe`: the fusion probe (:class:`ProbeConfig`, :func:`fit_probe`);
* :mod:`~rankfusion.selection.paired`: reading and validating paired features;
* :mod:`~rankfusion.selection.results`: :class:`SelectionReport` and the ``--json`` schema;
* :mod:`~rankfusion.selection.evidence`: :func:`select_modalities` on paired features;
* :mod:`~rankfusion.selection.task_evidence`: task evidence for runs of a trained model.
"""

from .criterion import (SUMMARY_COLUMNS, compare_with_expected, modality_selection, nan_reason, pair_gains,
                        rank_candidates, summarize_selection)
from .evidence import corrected_ci, replicate_criterion, select_modalities, stratified_folds
from .paired import check_paired, load_paired
from .probe import ProbeConfig, ProbeMembers, fit_probe, fit_probe_members, probe_gains
from .results import CandidateEvidence, SelectionReport, agreement_json, ranking_json
from .task_evidence import runs_task_evidence
from .surrogates import min_surrogates, noise_test, spectral_surrogates

__all__ = [
    "SUMMARY_COLUMNS", "pair_gains", "nan_reason", "modality_selection", "summarize_selection", "rank_candidates",
    "compare_with_expected", "spectral_surrogates", "min_surrogates", "noise_test", "ProbeConfig",
    "fit_probe", "fit_probe_members", "ProbeMembers", "probe_gains", "check_paired", "load_paired",
    "stratified_folds", "corrected_ci", "CandidateEvidence", "SelectionReport", "replicate_criterion",
    "select_modalities", "runs_task_evidence", "ranking_json", "agreement_json",
]
