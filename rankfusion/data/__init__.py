"""Datasets: the multi-modal MS-TCN / FUTR layout, anticipation samples, the synthetic dataset, importers.

``open_dataset`` and ``synthesize`` need only NumPy; ``AnticipationDataset`` and
``collate_anticipation`` import torch on first use.
"""

from __future__ import annotations

from .layout import PLAIN_MODALITY, CheckReport, MultiModalDataset, open_dataset, read_mapping, write_dataset
from .importer import import_csv
from .r3d_folder import import_r3d
from .skeleton import import_ntu_skeleton, import_utkinect_joints
from .synth import SynthConfig, synthesize

_TORCH_NAMES = ("AnticipationDataset", "collate_anticipation", "anticipation_targets", "transcript", "PAD_LABEL")

__all__ = [
    "PLAIN_MODALITY",
    "CheckReport",
    "MultiModalDataset",
    "open_dataset",
    "read_mapping",
    "write_dataset",
    "import_csv",
    "import_r3d",
    "import_ntu_skeleton",
    "import_utkinect_joints",
    "SynthConfig",
    "synthesize",
    *_TORCH_NAMES,
]


def __getattr__(name):
    # torch is heavy to import; `rankfusion data check` and the synthetic generator do not need it.
    if name in _TORCH_NAMES:
        from . import torchdata

        return getattr(torchdata, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
