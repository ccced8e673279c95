"""Modality reliance (rankfusion.evaluate.modality_reliance) on toy models with a known answer."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rankfusion.config import load_config  # noqa: E402
from rankfusion.data import open_dataset  # noqa: E402
from rankfusion.data.layout import write_dataset  # noqa: E402
from rankfusion.data.torchdata import relative_time_indices  # noqa: E402
from rankfusion.evaluate import modality_reliance, moc_grid  # noqa: E402

N_TEST = 6


@pytest.fixture(scope="module")
def coded(tmp_path_factory):
    """Videos: class 0 for the first 20 % of the frames, then class c (its own for each test video).

    Modality ``cue`` is the one-hot code of c on every frame (it decides the future); ``rgb`` is
    Gaussian noise (nothing to learn). Observed at 0.2 / 0.3, the whole future window is class c.
    """
    n_cls = N_TEST + 1
    classes = [f"a{i}" for i in range(n_cls)]
    rng = np.random.default_rng(0)
    labels, cue, rgb, splits = {}, {}, {}, {"train": [], "val": [], "test": []}
    for i in range(N_TEST + 2):
        v = f"v{i}"
        n = 60 + 7 * i
        c = 1 + i % N_TEST
        lab = np.full(n, c)
        lab[: n // 5] = 0
        labels[v] = lab
        cue[v] = np.tile(np.eye(n_cls)[c], (n, 1))
        rgb[v] = rng.standard_normal((n, 4))
        splits["test" if i < N_TEST else ("train" if i == N_TEST else "val")].append(v)
    root = write_dataset(tmp_path_factory.mktemp("rel") / "coded", classes, labels,
                         {"rgb": rgb, "cue": cue}, splits)
    return open_dataset(root)


class ToyModel(torch.nn.Module):
    """Predicts one action then NONE. ``use_cue``: the action is argmax of the last cue frame;
    otherwise a fixed linear read-out of the mean rgb frame (the cue is never looked at)."""

    def __init__(self, n_classes, use_cue):
        super().__init__()
        self.config = SimpleNamespace(n_classes=n_classes)
        self.use_cue = use_cue
        self.read = torch.nn.Linear(4, n_classes)
        torch.nn.init.normal_(self.read.weight, generator=torch.Generator().manual_seed(0))

    @property
    def none_index(self):
        return self.config.n_classes

    def forward(self, feats, mask):
        logits = torch.full((1, 2, self.config.n_classes + 1), -10.0)
        if self.use_cue:
            logits[0, 0, :-1] = 10.0 * feats["cue"][0, -1]
        else:
            logits[0, 0, :-1] = self.read(feats["rgb"][0].mean(0))
        logits[0, 1, -1] = 10.0  # then NONE: a one-action transcript
        return SimpleNamespace(class_logits=logits, durations=torch.zeros(1, 2))


def _config():
    return load_config(model={"modalities": ("rgb", "cue")}, train={"sample_rate": 2})


def test_model_that_ignores_a_modality_has_zero_reliance_on_it(coded):
    model = ToyModel(N_TEST + 1, use_cue=False)
    rel = {r.modality: r for r in modality_reliance(model, coded, "test", _config(), "cpu", seed=3)}
    # the cue never enters the computation, so the swapped predictions are the clean ones:
    # the drop is exactly zero by construction, in every cell
    assert rel["cue"].drop == 0.0 and all(d == 0.0 for _, _, d in rel["cue"].grid)
    assert rel["cue"].moc == rel["cue"].moc_swapped


def test_model_that_uses_a_modality_relies_on_it(coded):
    model = ToyModel(N_TEST + 1, use_cue=True)
    cfg = _config()
    rel = {r.modality: r for r in modality_reliance(model, coded, "test", cfg, "cpu", seed=3)}
    # with its own cue every test video's future is predicted exactly (MoC 100 in every cell);
    # a derangement gives each video another video's class (all distinct), so MoC falls to 0
    assert rel["cue"].moc == 100.0 and rel["cue"].moc_swapped == 0.0 and rel["cue"].drop == 100.0
    # and rgb, which this model ignores, has none
    assert rel["rgb"].drop == 0.0
    clean = moc_grid(model, coded, "test", cfg, "cpu")
    assert {(o, b) for o, b, _ in rel["cue"].grid} == set(clean)


def test_relative_times():
    idx = relative_time_indices(30, 100, 50)
    assert idx[0] == 0 and idx[-1] == 14 and np.all(np.diff(idx) >= 0)
    assert relative_time_indices(10, 10, 10).tolist() == list(range(10))
    assert relative_time_indices(5, 10, 1000).max() < 1000
    with pytest.raises(ValueError, match="past"):
        relative_time_indices(11, 10, 5)


def test_reliance_needs_two_videos(coded):
    from rankfusion._validation import InputError

    one = SimpleNamespace(split=lambda s: ["v0"])
    with pytest.raises(InputError, match="at least 2 videos"):
        modality_reliance(ToyModel(N_TEST + 1, False), one, "test", _config(), "cpu")
