"""Evaluation in padded batches (rankfusion.evaluate.eval_batches): each video scored as it is alone."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rankfusion._validation import InputError  # noqa: E402
from rankfusion.config import R3DConfig, RunConfig, TrainConfig, load_config, observed_frames  # noqa: E402
from rankfusion.data.torchdata import EVAL_BATCH_STEPS, pad_videos, video_inputs  # noqa: E402
from rankfusion.evaluate import _queries, eval_batches, moc_grid, observed_cuts, predict_future  # noqa: E402
from rankfusion.metrics import MoCAccumulator  # noqa: E402
from rankfusion.model import R3D  # noqa: E402
from rankfusion.train import open_data, resolve_config  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from rankfusion.data import synthesize

    root = synthesize(tmp_path_factory.mktemp("eb") / "syn", seed=4, split_fractions=(0.4, 0.1, 0.5),
                      n_videos=16, min_frames=50, max_frames=140, channels={"rgb": 8, "depth": 6})
    config = RunConfig(model=R3DConfig(modalities=("rgb", "depth"), d_model=8, n_heads=2, n_layers=1,
                                       exchange_ratio=0.25), train=TrainConfig(sample_rate=2))
    ds = open_data(root, config)
    config = resolve_config(config, ds)
    torch.manual_seed(0)
    model = R3D(config.model)
    model.train()  # training rows decide the channels eval mode blends
    rows = [video_inputs(ds, v, ("rgb", "depth"), 40, 2, torch.device("cpu")) for v in ds.split("train")]
    with torch.no_grad():
        model(*pad_videos(rows))
    model.eval()
    return ds, config, model


def test_a_batch_gives_each_video_its_own_outputs(setup):
    ds, config, model = setup
    assert model.videos_independent
    inputs = [video_inputs(ds, v, ("rgb", "depth"), int(0.3 * ds.n_frames(v)), 2, torch.device("cpu"))
              for v in ds.split("test")]
    assert len({m.shape[1] for _, m in inputs}) > 2  # different lengths: padding is exercised
    together = _queries(model, inputs)
    for inp, (logits, durations) in zip(inputs, together):
        [(one_l, one_d)] = _queries(model, [inp])
        # the same valid rows through float32 layers, summed in another order (padding, batch
        # shape): agreement to float32 rounding amplified by a few layers
        scale = float(abs(one_l).max())
        assert abs(logits - one_l).max() <= 1e-5 * scale
        assert abs(durations - one_d).max() <= 1e-5 * max(1.0, float(abs(one_d).max()))


def test_batches_cover_each_cut_once_by_ratio_and_length_within_the_step_bound(setup, monkeypatch):
    ds, config, model = setup
    obs = (0.2, 0.5, 1.0)
    cuts = list(observed_cuts(ds, ds.split("test"), obs))
    monkeypatch.setattr("rankfusion.data.torchdata.EVAL_BATCH_STEPS", 120)
    batches = eval_batches(model, cuts, 2)
    assert sorted(i for b in batches for i in b) == list(range(len(cuts)))
    steps = [len(range(0, c[3], 2)) for c in cuts]
    assert len(batches) > len(obs)  # the bound splits a ratio's cuts
    for b in batches:
        assert len({cuts[i][0] for i in b}) == 1  # one ratio per batch
        assert [steps[i] for i in b] == sorted(steps[i] for i in b)
        assert len(b) == 1 or len(b) * max(steps[i] for i in b) <= 120
    assert EVAL_BATCH_STEPS >= 1024  # the default holds many short videos
    # a model whose batch chooses the channels: one video per pass
    model.rtf.unfreeze()
    try:
        assert not model.videos_independent
        assert eval_batches(model, cuts, 2) == [[i] for i in range(len(cuts))]
    finally:
        model.rtf.is_frozen.fill_(True)


def test_moc_grid_scores_each_cut_with_its_own_outputs_in_padded_passes(setup, monkeypatch):
    from rankfusion.metrics import MoCAccumulator

    ds, config, model = setup
    sizes, scored = [], []
    add = MoCAccumulator.add_queries

    def record(self, gt, obs, logits, durations, **kw):
        scored.append((len(gt), obs, logits, durations))
        return add(self, gt, obs, logits, durations, **kw)

    monkeypatch.setattr(MoCAccumulator, "add_queries", record)
    handle = model.register_forward_pre_hook(lambda mod, args: sizes.append(args[1].shape[0]))
    try:
        moc_grid(model, ds, "test", config, torch.device("cpu"))
    finally:
        handle.remove()
    cuts = list(observed_cuts(ds, ds.split("test"), config.train.eval_obs))
    assert sum(sizes) == len(cuts) and len(sizes) < len(cuts) and max(sizes) > 1
    # each cut was scored once, with the outputs of its own video observed up to its own cut
    # (one video per pass, to float32 rounding: see the first test)
    assert len(scored) == len(cuts)
    for obs, gt, video, past, _ in cuts:
        [(logits, durations)] = _queries(model, [video_inputs(ds, video, ("rgb", "depth"), past, 2, torch.device("cpu"))])
        match = [s for s in scored if s[0] == len(gt) and s[1] == obs
                 and abs(s[2] - logits).max() <= 1e-5 * float(abs(logits).max())
                 and abs(s[3] - durations).max() <= 1e-5 * max(1.0, float(abs(durations).max()))]
        assert len(match) == 1, (video, obs)


def test_validation_loss_is_each_items_own_loss_in_padded_passes(setup):
    import dataclasses

    from rankfusion.data import AnticipationDataset, collate_anticipation
    from rankfusion.train import _validation_loss, compute_losses

    ds, config, model = setup
    tc = dataclasses.replace(config.train, transition_weight=3.0)  # the weighted anticipation CE uses each item's own targets
    items = AnticipationDataset(ds, "test", obs_ratios=tc.obs_ratios, future_ratio=tc.future_ratio,
                                sample_rate=tc.sample_rate, n_queries=config.model.n_queries)
    lengths = [int(items[i]["seg_labels"].shape[0]) for i in range(len(items))]
    assert len(set(lengths)) > 2  # padding is exercised
    assert [items.steps(i) for i in range(len(items))] == lengths  # the lengths the passes are grouped by
    sizes = []
    handle = model.register_forward_pre_hook(lambda mod, args: sizes.append(args[1].shape[0]))
    try:
        got = _validation_loss(model, items, tc, torch.device("cpu"))
    finally:
        handle.remove()
    assert sum(sizes) == len(items) and len(sizes) < len(items) and max(sizes) > 1
    # one item per pass (the computation before padded passes), each item's loss from its own outputs
    parts = []
    with torch.no_grad():
        for i in range(len(items)):
            batch = collate_anticipation([items[i]])
            p = compute_losses(model(batch["features"], batch["mask"]), batch, torch.device("cpu"),
                               transition_weight=tc.transition_weight)
            parts.append({k: float(v) for k, v in p.items()})
    # positive float32 terms summed in another order (see the first test): float32 rounding; each
    # term on its own, so that one term's error is not hidden in the others' (durations mixed up
    # between items change the total by less than that)
    want = sum(tc.loss_seg * p["seg"] + tc.loss_cls * p["cls"] + tc.loss_dur * p["dur"] for p in parts) / len(parts)
    assert got == pytest.approx(want, rel=1e-5, abs=0)
    for term in ("seg", "cls", "dur"):
        only = dataclasses.replace(tc, **{f"loss_{t}": float(t == term) for t in ("seg", "cls", "dur")})
        assert _validation_loss(model, items, only, torch.device("cpu")) == pytest.approx(
            sum(p[term] for p in parts) / len(parts), rel=1e-5, abs=0), term
    # a model whose batch chooses the channels: one item per pass
    model.rtf.unfreeze()
    sizes.clear()
    handle = model.register_forward_pre_hook(lambda mod, args: sizes.append(args[1].shape[0]))
    try:
        _validation_loss(model, items, tc, torch.device("cpu"))
        assert sizes == [1] * len(items)
    finally:
        handle.remove()
        model.rtf.is_frozen.fill_(True)


class _OneVideo:
    """A dataset of one 10-frame video (class 0 for 7 frames, then class 1) and a 2-channel feature."""

    labels_ = {"v": [0] * 7 + [1] * 3}

    def split(self, name):
        return ["v"]

    def labels(self, video):
        return np.array(self.labels_[video])

    def n_frames(self, video):
        return len(self.labels_[video])

    def features(self, video, modality):
        return np.zeros((self.n_frames(video), 2), np.float32)


class _SaysOne(torch.nn.Module):
    """Predicts class 1 for the whole future (two queries: class 1, then NONE)."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(n_classes=2)

    def forward(self, feats, mask):
        logits = torch.full((mask.shape[0], 2, 3), -10.0)
        logits[:, 0, 1], logits[:, 1, 2] = 10.0, 10.0
        return SimpleNamespace(class_logits=logits, durations=torch.zeros(mask.shape[0], 2))


def test_the_model_is_fed_the_frames_scoring_counts_as_observed():
    # a float32 ratio 0.7 (0.69999999) fed the model int(0.69999999 * 10) = 6 frames while the
    # scoring, rounding the ratio, counted the future from frame 7: frame 6 (seen) was scored
    ds, obs = _OneVideo(), np.float32(0.7)
    assert float(obs) * 10 < 7 and observed_frames(10, obs) == 7
    assert [c[3] for c in observed_cuts(ds, ["v"], (obs,))] == [7]
    config = load_config(model={"modalities": ("x",)}, train={"sample_rate": 1, "eval_betas": (0.3,)})
    gt, past, pred = predict_future(_SaysOne(), ds, "v", config, torch.device("cpu"), obs)
    assert past == 7
    acc = MoCAccumulator(2, betas=(0.3,))
    acc.add(gt, obs, pred)
    assert float(acc.result().iloc[0, 0]) == 1.0  # frames 7..9 are class 1: all right


def test_a_configured_ratio_has_at_most_six_decimals():
    with pytest.raises(InputError, match=r"eval_obs entry 0\.3333333333333333 has more than 6 decimals.*give 0\.333333$"):
        load_config(train={"eval_obs": (1 / 3,)})
    assert load_config(train={"eval_obs": (0.333333,)}).train.eval_obs == (0.333333,)


def test_training_samples_cut_where_evaluation_does(setup):
    # AnticipationDataset's items, steps and reads used int(r * n) while its length check rounded r
    from rankfusion.data import AnticipationDataset

    ds = setup[0]
    r = np.float32(0.7)
    data = AnticipationDataset(ds, "train", obs_ratios=(r,), sample_rate=1)
    for i, (video, _) in enumerate(data.items):
        n = ds.n_frames(video)
        assert data.steps(i) == observed_frames(n, r) == len(data[i]["seg_labels"])
    assert any(int(float(r) * ds.n_frames(v)) != observed_frames(ds.n_frames(v), r) for v, _ in data.items)
