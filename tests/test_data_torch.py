"""AnticipationDataset items and collate_anticipation batches, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rankfusion._validation import InputError
from rankfusion.data import (
    AnticipationDataset,
    anticipation_targets,
    collate_anticipation,
    open_dataset,
    transcript,
    write_dataset,
)
from rankfusion.data.torchdata import video_inputs

CLASSES = ["a", "b", "c", "d"]


@pytest.fixture
def ds(tmp_path):
    # v0 (20 frames): a*4 b*6 c*2 d*3 a*5 ; v1, v2, v3 (10 frames): c*10 (v2: val, v3: test)
    labels = {"v0": [0] * 4 + [1] * 6 + [2] * 2 + [3] * 3 + [0] * 5, "v1": [2] * 10, "v2": [2] * 10, "v3": [2] * 10}
    feats = {
        "rgb": {v: np.arange(len(l) * 3, dtype=np.float32).reshape(len(l), 3) for v, l in labels.items()},
        "depth": {v: -np.arange(len(l) * 2, dtype=np.float32).reshape(len(l), 2) for v, l in labels.items()},
    }
    root = write_dataset(tmp_path / "d", CLASSES, labels, feats, {"train": ["v0", "v1"], "val": ["v2"], "test": ["v3"]})
    return open_dataset(root)


def test_transcript():
    cls, ln = transcript([3, 3, 1, 1, 1, 3])
    assert cls.tolist() == [3, 1, 3] and ln.tolist() == [2, 3, 1]
    assert transcript([]).__len__() == 2 and transcript([])[0].size == 0


def test_targets_padding_and_truncation():
    # future a a b c c c (6 frames): transcript a,b,c durations 2/6, 1/6, 3/6, then NONE=4, pad
    c, d, m = anticipation_targets([0, 0, 1, 2, 2, 2], n_queries=5, none_index=4)
    assert c.tolist() == [0, 1, 2, 4, -100]
    np.testing.assert_allclose(d, [2 / 6, 1 / 6, 3 / 6, 0, 0])
    assert m.tolist() == [True, True, True, True, False]
    # n_queries=3 keeps 2 actions + NONE; durations no longer sum to 1
    c, d, m = anticipation_targets([0, 0, 1, 2, 2, 2], n_queries=3, none_index=4)
    assert c.tolist() == [0, 1, 4] and m.all()
    np.testing.assert_allclose(d, [2 / 6, 1 / 6, 0])
    assert c.dtype == np.int64 and d.dtype == np.float32


def test_item_obs_and_future(ds):
    ad = AnticipationDataset(ds, "train", obs_ratios=(0.3,), sample_rate=2, n_queries=4)
    assert len(ad) == 2
    it = ad[0]
    # v0: past = int(0.3*20) = 6 -> frames 0,2,4 ; future = frames 6..15 (int(0.5*20) = 10)
    assert it["video"] == "v0" and it["n_frames"] == 20
    np.testing.assert_array_equal(it["features"]["rgb"].numpy(), np.arange(60).reshape(20, 3)[[0, 2, 4]])
    assert it["seg_labels"].tolist() == [0, 0, 1]
    # frames 6..15: b*4 (6-9) c*2 d*3 a*1 -> transcript b c d a; N_q=4 keeps b c d + NONE
    assert it["future_classes"].tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(it["future_durations"].numpy(), [0.4, 0.2, 0.3, 0.0])
    assert it["future_mask"].tolist() == [True] * 4
    assert it["last_observed"] == 1  # frame 5 (past - 1) is 'b', as the future's first action


def test_feature_cache_is_bounded_and_items_do_not_share_memory(ds, monkeypatch):
    from rankfusion.data import torchdata

    ad = AnticipationDataset(ds, "train", obs_ratios=(0.3, 0.55), sample_rate=3, n_queries=4)
    want = {(v, r): np.arange(len_ * 3).reshape(len_, 3)[: int(r * len_): 3]
            for v, len_ in (("v0", 20), ("v1", 10)) for r in (0.3, 0.55)}
    for _ in range(2):  # the second pass reads the cache
        for it in ad:
            np.testing.assert_array_equal(it["features"]["rgb"].numpy(), want[(it["video"], it["obs_ratio"])])
    assert len(ad._cache) == 4  # 2 videos x 2 modalities
    it = ad[0]
    it["features"]["rgb"][:] = -1.0  # a caller writing into an item leaves the next items intact
    np.testing.assert_array_equal(ad[0]["features"]["rgb"].numpy(), want[("v0", 0.3)])
    # a budget of v0's rgb up to obs 0.3 (frames 0 and 3: 2 rows x 3 x 4 bytes): the first read stays,
    # the next does not fit and is read again each time
    monkeypatch.setattr(torchdata, "FEATURE_CACHE_BYTES", 2 * 3 * 4)
    small = AnticipationDataset(ds, "train", obs_ratios=(0.3,), sample_rate=3, modalities=["rgb"])
    small[0]
    assert small._cache.keys() == [("v0", "rgb")]
    for _ in range(2):
        np.testing.assert_array_equal(small[1]["features"]["rgb"].numpy(), want[("v1", 0.3)])
    assert small._cache.keys() == [("v0", "rgb")] and small._cache.nbytes == 2 * 3 * 4


def test_non_finite_features_name_video_modality_and_frame(tmp_path):
    labels = {"v0": [0] * 12, "v1": [1] * 12, "v2": [1] * 12}
    x = np.zeros((12, 2), np.float32)
    x[6, 1] = np.nan  # on the sample grid (0, 3, 6, 9)
    zeros = np.zeros((12, 2), np.float32)
    root = write_dataset(tmp_path / "nf", CLASSES, labels, {"rgb": {"v0": x, "v1": zeros, "v2": zeros}},
                         {"train": ["v0"], "val": ["v1"], "test": ["v2"]})
    ds = open_dataset(root)
    # the video is read up to its longest observed part (int(0.6 * 12) = 7 frames): every item of
    # it reports the bad frame, also the one that observes only frames 0-2
    ad = AnticipationDataset(ds, "train", obs_ratios=(0.25, 0.6), sample_rate=3)
    with pytest.raises(InputError, match=r"video 'v0': modality 'rgb' has a non-finite value at frame 6"):
        ad[0]
    # check_finite reads every video of the split the same way, before any item is asked for
    with pytest.raises(InputError, match=r"video 'v0': modality 'rgb' has a non-finite value at frame 6"):
        AnticipationDataset(ds, "train", obs_ratios=(0.25, 0.6), sample_rate=3).check_finite()
    AnticipationDataset(ds, "val", obs_ratios=(0.25, 0.6), sample_rate=3).check_finite()
    # a frame no item observes is never read
    item = AnticipationDataset(ds, "train", obs_ratios=(0.25,), sample_rate=3)[0]
    assert np.isfinite(item["features"]["rgb"].numpy()).all()
    AnticipationDataset(ds, "train", obs_ratios=(0.25,), sample_rate=3).check_finite()
    # evaluation's reads (video_inputs), straight and as a reliance donor read at other frames
    with pytest.raises(InputError, match=r"video 'v0': modality 'rgb' has a non-finite value at frame 6"):
        video_inputs(ds, "v0", ["rgb"], 12, 3, "cpu")
    video_inputs(ds, "v0", ["rgb"], 6, 3, "cpu")  # frames 0 and 3 only
    with pytest.raises(InputError, match=r"video 'v0': modality 'rgb' has a non-finite value at frame 6"):
        video_inputs(ds, "v1", ["rgb"], 12, 2, "cpu", donors={"rgb": "v0"})  # donor frames 0, 2, ..., 10


def test_future_clipped_at_video_end(ds):
    ad = AnticipationDataset(ds, "train", obs_ratios=(0.7,), n_queries=8)
    it = ad[0]
    # past 14, future int(0.5*20)=10 frames but only 6 remain: d (14) a*5 -> durations 1/6, 5/6
    assert it["future_classes"].tolist()[:3] == [3, 0, 4]
    np.testing.assert_allclose(it["future_durations"].numpy()[:2], [1 / 6, 5 / 6])


def test_collate(ds):
    ad = AnticipationDataset(ds, "train", obs_ratios=(0.2, 0.5), n_queries=3)
    batch = collate_anticipation([ad[i] for i in range(len(ad))])
    assert set(batch) == {"features", "mask", "seg_labels", "future_classes", "future_durations", "future_mask",
                          "last_observed", "video", "obs_ratio", "n_frames"}
    assert batch["last_observed"].dtype == torch.int64 and batch["last_observed"].shape == (4,)
    # lengths: v0 0.2 -> 4, v0 0.5 -> 10, v1 0.2 -> 2, v1 0.5 -> 5
    assert batch["mask"].sum(1).tolist() == [4, 10, 2, 5]
    assert batch["features"]["rgb"].shape == (4, 10, 3) and batch["features"]["rgb"].dtype == torch.float32
    assert batch["features"]["depth"].shape == (4, 10, 2)
    assert batch["seg_labels"][2].tolist() == [2, 2] + [-100] * 8
    assert float(batch["features"]["rgb"][2, 2:].abs().sum()) == 0.0
    assert batch["mask"].dtype == torch.bool and batch["seg_labels"].dtype == torch.int64
    assert batch["future_classes"].dtype == torch.int64 and batch["future_durations"].dtype == torch.float32
    assert batch["future_mask"].dtype == torch.bool
    assert batch["obs_ratio"].dtype == torch.float32 and batch["n_frames"].tolist() == [20, 20, 10, 10]
    assert batch["video"] == ["v0", "v0", "v1", "v1"]
    # v1 future: c only -> [c, NONE, pad]
    assert batch["future_classes"][3].tolist() == [2, 4, -100]


def test_modality_subset_and_validation(ds):
    ad = AnticipationDataset(ds, "val", modalities=["depth"])
    assert list(ad[0]["features"]) == ["depth"]
    with pytest.raises(ValueError, match="modalities"):
        AnticipationDataset(ds, "val", modalities=["imu"])
    with pytest.raises(ValueError, match="obs_ratios"):
        AnticipationDataset(ds, "val", obs_ratios=(1.2,))
    with pytest.raises(ValueError, match="sample_rate"):
        AnticipationDataset(ds, "val", sample_rate=0)
    with pytest.raises(InputError, match="video 'v2' .* too short"):
        AnticipationDataset(ds, "val", obs_ratios=(0.05,))
    with pytest.raises(ValueError, match="items"):
        collate_anticipation([])


from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(st.lists(st.integers(0, 3), min_size=1, max_size=60), st.integers(1, 8))
def test_targets_properties(future, n_queries):
    c, d, m = anticipation_targets(future, n_queries, none_index=4)
    cls, ln = transcript(future)
    keep = min(len(cls), n_queries - 1)
    assert c.shape == d.shape == m.shape == (n_queries,)
    assert c[:keep].tolist() == cls[:keep].tolist() and c[keep] == 4
    assert (c[keep + 1:] == -100).all() and m.sum() == keep + 1 and m[: keep + 1].all()
    np.testing.assert_allclose(d[:keep] * len(future), ln[:keep], rtol=1e-5)
    assert (d[keep:] == 0).all()
    if keep == len(cls):
        assert abs(d.sum() - 1) < 1e-5


def test_cached_features_read_each_array_once_keep_it_read_only_and_stay_within_budget(ds, monkeypatch):
    import copy
    import pickle

    from rankfusion.data.torchdata import CachedFeatures

    reads = []
    original = type(ds).features
    monkeypatch.setattr(type(ds), "features", lambda self, v, m: reads.append((v, m)) or original(self, v, m))
    video, m = ds.videos[0], ds.modalities[0]
    one = np.asarray(original(ds, video, m)).nbytes
    kept = CachedFeatures(ds, max_bytes=one + one // 2)
    first = kept.features(video, m)
    np.testing.assert_array_equal(first, original(ds, video, m))
    assert first.dtype == np.float32 and first.flags.c_contiguous and not first.flags.writeable
    reads.clear()
    assert kept.features(video, m) is first and reads == []  # from memory
    assert kept.split("train") == ds.split("train") and kept.classes == ds.classes  # the rest is the dataset's
    halves = [v for v in ds.videos[1:] if np.asarray(original(ds, v, m)).nbytes == one // 2][:2]
    assert len(halves) == 2
    kept.features(halves[0], m)  # fills the budget
    assert kept._kept.keys() == [(video, m), (halves[0], m)] and kept._kept.nbytes == one + one // 2
    reads.clear()
    for _ in range(2):  # does not fit beside them: read through the dataset each time, as it gives it
        np.testing.assert_array_equal(kept.features(halves[1], m), original(ds, halves[1], m))
    assert reads == [(halves[1], m)] * 2 and kept._kept.keys() == [(video, m), (halves[0], m)]
    tiny = CachedFeatures(ds, max_bytes=0)  # keeps nothing: every read goes to the dataset
    reads.clear()
    tiny.features(video, m), tiny.features(video, m)
    assert reads == [(video, m)] * 2
    assert copy.copy(kept).features(video, m) is not None and pickle.loads(pickle.dumps(tiny)).classes == ds.classes


def test_memo_keeps_the_first_values_that_fit_and_makes_the_rest_each_time():
    from rankfusion.data.memo import Memo

    made = []

    def make(key, size):
        return lambda: made.append(key) or np.zeros(size, np.uint8)

    memo = Memo(10)
    for _ in range(3):  # a repeated scan larger than the budget: the kept part hits every time
        for key, size in (("a", 4), ("b", 5), ("c", 3), ("d", 1)):
            assert memo.get(key, make(key, size)).nbytes == size
    assert made == ["a", "b", "c", "d", "c", "c"]
    assert memo.keys() == ["a", "b", "d"] and memo.nbytes == 10 and "c" not in memo and len(memo) == 3
    assert memo.fits(0) and not memo.fits(1)
    sized = Memo(3, size=len)
    assert sized.get("x", lambda: [1, 2, 3]) == [1, 2, 3] and "x" in sized and not sized.fits(1)
