"""Metrics against hand-worked values (the working is in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rankfusion.metrics import (
    MoCAccumulator,
    decode_queries,
    edit_score,
    expand_transcript,
    f1_at_overlap,
    frame_accuracy,
    moc,
    segment_matches,
    segmentation_scores,
)

# ----------------------------------------------------------------------------- expand / decode


def test_expand_rounding_overshoot_last_query_gets_remainder():
    # n=10, w = .25 .25 .5 -> floor(0.5 + 2.5) = 3, 3, floor(0.5 + 5) = 5: 11 > 10 frames.
    # a a a | b b b | c fills what is left: 4 frames, not 5.
    out = expand_transcript([0, 1, 2], [1, 1, 2], 10)
    assert out.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert out.dtype == np.int64


def test_expand_rounding_undershoot_last_query_fills_gap():
    # w = 1/3 each -> floor(0.5 + 3.33) = 3 each = 9 frames; the last one fills the 10th.
    assert expand_transcript([5, 6, 7], [1, 1, 1], 10).tolist() == [5, 5, 5, 6, 6, 6, 7, 7, 7, 7]


def test_expand_overshoot_can_squeeze_out_the_last_query():
    # n=4, w = .4999 .4999 .0002 -> 2, 2, 0: the window is full before the last action starts.
    assert expand_transcript([0, 1, 2], [0.4999, 0.4999, 0.0002], 4).tolist() == [0, 0, 1, 1]


def test_expand_stops_at_none_and_empty():
    # NONE (3) at position 1: only class 1 kept, it takes the whole window.
    assert expand_transcript([1, 3, 2], [1, 5, 1], 4, none_index=3).tolist() == [1, 1, 1, 1]
    # NONE first: nothing kept, every frame NONE.
    assert expand_transcript([3, 1], [1, 1], 3, none_index=3).tolist() == [3, 3, 3]
    assert expand_transcript([], [], 2).tolist() == [-1, -1]
    assert expand_transcript([0], [1], 0).tolist() == []


def test_expand_validation():
    with pytest.raises(ValueError, match="same length"):
        expand_transcript([0, 1], [1], 5)
    with pytest.raises(ValueError, match="non-negative"):
        expand_transcript([0, 1], [1, -1], 5)
    with pytest.raises(ValueError, match="sum to 0"):
        expand_transcript([0, 1], [0, 0], 5)
    with pytest.raises(TypeError, match="classes"):
        expand_transcript([0.5], [1], 5)


def test_decode_queries_basic():
    # 2 classes + NONE (column 2). argmax per query: 1, 0, NONE -> keep 2 queries.
    logits = [[0, 5, 1], [3, 0, 0], [0, 0, 9]]
    # exp(d) over kept = 1, 3 -> w = .25 .75; n=8 -> floor(.5+2)=2, then the last fills 6.
    d = [0.0, math.log(3), 100.0]
    assert decode_queries(logits, d, 8, 2).tolist() == [1, 1, 0, 0, 0, 0, 0, 0]


def test_decode_queries_ties_and_no_none():
    # Ties: [2,2,2] -> class 0 (first maximum); [0,4,4] -> class 1 beats NONE.
    # No NONE predicted: all queries kept (FUTR would leave none_idx unset).
    logits = np.array([[2.0, 2, 2], [0, 4, 4]])
    # equal durations: floor(0.5 + 2.5) = 3 for the first, the last fills 2.
    assert decode_queries(logits, [0.0, 0.0], 5, 2).tolist() == [0, 0, 0, 1, 1]
    # torch in, numpy out; huge durations do not overflow
    out = decode_queries(torch.tensor(logits), torch.tensor([1000.0, 1000.0]), 5, 2)
    assert isinstance(out, np.ndarray) and out.tolist() == [0, 0, 0, 1, 1]


def test_decode_queries_none_first_and_fraction_durations():
    assert decode_queries([[0, 0, 1.0], [1.0, 0, 0]], [0, 0], 3, 2).tolist() == [2, 2, 2]
    # durations as fractions: .2 .8 of 5 frames -> floor(1.5)=1, then 4
    out = decode_queries([[1.0, 0, 0], [0, 1.0, 0]], [0.2, 0.8], 5, 2, log_durations=False)
    assert out.tolist() == [0, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="none_index"):
        decode_queries([[1.0, 0, 0]], [0], 5, 3)
    with pytest.raises(ValueError, match="one entry per query"):
        decode_queries([[1.0, 0, 0]], [0, 1], 5, 2)


# ----------------------------------------------------------------------------- MoC

GT_A = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]  # N = 10
PRED_A = [0, 1, 1, 2, 2]  # future window t = 2..6 at obs 0.2 (past = 2)
GT_B = [2, 2, 2, 2, 0]  # N = 5
PRED_B = [2, 0]  # t = 1..2 at obs 0.2 (past = 1)


def test_moc_hand_worked_pooled():
    # Video A, past = 2; t=2 (c0 T), 3 (c1 T), 4 (c1 T), 5 (c1 F), 6 (c1 F).
    #   beta .1: end = int(0.30000000000000004 * 10) = 3 -> t=2
    #   beta .2: end = 4 -> t=2,3     beta .3: end = 5 -> t=2..4     beta .5: end = 7 -> t=2..6
    # Video B, past = 1; t=1 (c2 T), t=2 (c2 F).
    #   beta .1: end = int(1.5000000000000002) = 1 -> nothing; .2: end 2 -> t=1; .3: end 2 -> t=1;
    #   .5: end = min(int(3.5)=3, 1+2, 5) = 3 -> t=1,2
    # Pooled: .1  c0 1/1                       -> 1
    #         .2  c0 1/1 c1 1/1 c2 1/1         -> 1
    #         .3  c0 1/1 c1 2/2 c2 1/1         -> 1
    #         .5  c0 1/1 c1 2/4 c2 1/2         -> (1 + .5 + .5) / 3 = 2/3
    # (averaging per video instead would give (.75 + .5) / 2 = .625)
    acc = MoCAccumulator(3)
    acc.add(GT_A, 0.2, PRED_A)
    acc.add(GT_B, 0.2, PRED_B)
    df = acc.result()
    assert df.index.tolist() == [0.2] and df.columns.tolist() == [0.1, 0.2, 0.3, 0.5]
    np.testing.assert_allclose(df.loc[0.2].to_numpy(), [1, 1, 1, 2 / 3])
    t, f = acc.counts(0.2)
    assert t[3].tolist() == [1, 2, 1] and f[3].tolist() == [0, 2, 1]
    tidy = acc.tidy()
    assert tidy["n_classes"].tolist() == [1, 3, 3, 3] and tidy["n_frames"].tolist() == [1, 3, 4, 7]
    assert tidy["n_videos"].tolist() == [2] * 4
    # the convenience function gives the same table
    np.testing.assert_allclose(moc([(GT_A, 0.2, PRED_A), (GT_B, 0.2, PRED_B)], 3).to_numpy(), df.to_numpy())


def test_moc_class_absent_from_test_set():
    # A 4th class that never occurs is not averaged in (T+F = 0): same numbers as above.
    acc = MoCAccumulator(4)
    acc.add(GT_A, 0.2, PRED_A)
    acc.add(GT_B, 0.2, PRED_B)
    np.testing.assert_allclose(acc.result().loc[0.2].to_numpy(), [1, 1, 1, 2 / 3])


def test_moc_prediction_longer_and_shorter_than_video():
    gt = [0] * 10
    acc = MoCAccumulator(2, betas=(0.5,))
    # obs .6: past 6, end = min(int(1.1 * 10) = 11, 6 + 20, 10) = 10: 4 frames, extra prediction ignored
    acc.add(gt, 0.6, [0] * 20)
    t, f = acc.counts(0.6)
    assert t.tolist() == [[4, 0]] and f.tolist() == [[0, 0]]
    # a prediction of 2 frames counts only 2 frames (the protocol's min(..., len(seq)))
    acc.add(gt, 0.3, [1, 0])
    t, f = acc.counts(0.3)
    assert t.tolist() == [[1, 0]] and f.tolist() == [[1, 0]]


def test_moc_none_never_matches_and_empty_cells():
    acc = MoCAccumulator(2, betas=(0.1,))
    # N=5, obs .2: past 1, end int(1.5000000000000002) = 1 -> nothing counted -> NaN
    acc.add([0, 0, 0, 0, 0], 0.2, [2, 2])
    assert math.isnan(acc.result().iloc[0, 0])
    acc2 = MoCAccumulator(2, betas=(0.5,))
    acc2.add([0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0.2, [2] * 5)  # NONE everywhere: all false
    assert acc2.result().iloc[0, 0] == 0.0


def test_moc_from_queries_no_none_and_rounding():
    # N = 20, obs .3: past 6, window int(0.5 * 20) = 10 frames (t = 6..15).
    # Queries: argmax 1, 0, 0 (no NONE) -> all kept; exp(d) = 1, 1, 2 -> w .25 .25 .5
    # lengths floor(.5 + 2.5) = 3, 3, then the last fills 4: 1 1 1 0 0 0 0 0 0 0
    gt = [0] * 6 + [1] * 3 + [0] * 11
    logits = np.array([[0, 9, 0], [9, 0, 0], [9, 0, 0]], dtype=float)
    acc = MoCAccumulator(2, betas=(0.2, 0.5))
    acc.add_queries(gt, 0.3, logits, np.log([1.0, 1.0, 2.0]))
    # beta .2: end = int(0.5 * 20) = 10 -> t=6..9: gt 1 1 1 0 vs pred 1 1 1 0 -> all true -> 1
    # beta .5: end = 16 -> t=6..15: all true -> 1
    np.testing.assert_allclose(acc.result().to_numpy(), [[1.0, 1.0]])
    # Same through a transcript with NONE in the middle: 1 then NONE -> class 1 fills the window
    acc2 = MoCAccumulator(2, betas=(0.5,))
    acc2.add_transcript(gt, 0.3, [1, 2, 0], [1, 1, 1], none_index=2)
    # t=6..15: gt = 1 1 1 0*7, pred all 1 -> c1 3/3, c0 0/7 -> (1 + 0) / 2
    assert acc2.result().iloc[0, 0] == 0.5


def test_moc_float32_ratio_and_merge():
    a, b = MoCAccumulator(3), MoCAccumulator(3)
    a.add(GT_A, np.float32(0.2), PRED_A)
    b.add(GT_B, torch.tensor(0.2), PRED_B)
    a.merge(b)
    assert a.obs_ratios == [0.2]
    np.testing.assert_allclose(a.result().loc[0.2].to_numpy(), [1, 1, 1, 2 / 3])


def test_moc_validation():
    acc = MoCAccumulator(3)
    with pytest.raises(ValueError, match="gt holds label 3"):
        acc.add([0, 3], 0.2, [0])
    with pytest.raises(ValueError, match="obs_ratio"):
        acc.add([0, 1], 1.5, [0])
    with pytest.raises(ValueError, match="n_classes \\+ 1 = 4 columns"):
        acc.add_queries([0, 1, 2], 0.3, np.zeros((2, 3)), [0, 0])
    with pytest.raises(KeyError, match="0.5"):
        acc.counts(0.5)
    with pytest.raises(ValueError, match="n_classes"):
        MoCAccumulator(0)


# ----------------------------------------------------------------------------- segmentation

GT = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]  # segments 0[0,3) 1[3,7) 2[7,10)


def test_segmentation_shifted_boundaries():
    pred = [0, 0, 1, 1, 1, 1, 1, 1, 2, 2]  # 0[0,2) 1[2,8) 2[8,10)
    # accuracy: wrong at t=2 and t=7 -> 8/10; edit: same transcript -> 1
    assert frame_accuracy(GT, pred) == 0.8
    assert edit_score(GT, pred) == 1.0
    # IoUs: 2/3, 4/6, 2/3 -> all true positives up to 0.5, none at 0.75
    assert f1_at_overlap(GT, pred, 0.5) == 1.0
    assert segment_matches(GT, pred, 0.75) == (0, 3, 3)
    assert f1_at_overlap(GT, pred, 0.75) == 0.0


def test_segmentation_over_segmented():
    pred = [0, 0, 0, 1, 1, 0, 1, 2, 2, 2]  # 0[0,3) 1[3,5) 0[5,6) 1[6,7) 2[7,10)
    assert frame_accuracy(GT, pred) == 0.9
    # transcripts 0 1 0 1 2 vs 0 1 2: two deletions -> 1 - 2/5
    assert edit_score(GT, pred) == pytest.approx(0.6)
    # @.5: 0 (IoU 1) tp, 1[3,5) (2/4) tp, 0[5,6) (IoU 0) fp, 1[6,7) (1/4, gt taken) fp, 2 tp
    #   tp 3 fp 2 fn 0 -> P .6 R 1 -> F1 = 1.2 / 1.6 = .75
    assert segment_matches(GT, pred, 0.5) == (3, 2, 0)
    assert f1_at_overlap(GT, pred, 0.5) == pytest.approx(0.75)
    # @.75: 1[3,5) now fp: tp 2 fp 3 fn 1 -> P .4 R 2/3 -> F1 = 2 * .4 * 2/3 / (.4 + 2/3) = .5
    assert f1_at_overlap(GT, pred, 0.75) == pytest.approx(0.5)


def test_f1_tie_goes_to_first_true_segment():
    # one predicted 0-segment over [0,6) overlaps 0[0,2) and 0[4,6) equally (IoU 1/3):
    # matched to the first -> tp 1, fp 0, fn 2 (the second 0 and the 1) -> P 1 R 1/3 -> F1 .5
    assert segment_matches([0, 0, 1, 1, 0, 0], [0] * 6, 0.25) == (1, 0, 2)
    assert f1_at_overlap([0, 0, 1, 1, 0, 0], [0] * 6, 0.25) == pytest.approx(0.5)


def test_background_ignored_and_edge_cases():
    # class 9 = background: transcripts become 0 1 vs 0 1
    assert edit_score([9, 0, 0, 9, 1], [0, 0, 0, 1, 1], ignore_classes=(9,)) == 1.0
    assert edit_score([9, 9], [9, 9], ignore_classes=(9,)) == 1.0
    assert f1_at_overlap([9, 9], [0, 0], 0.1, ignore_classes=(9,)) == 0.0  # only a false positive
    assert math.isnan(frame_accuracy([-100, -100], [0, 0]))
    assert frame_accuracy([-100, 1, 2], [5, 1, 0]) == 0.5
    with pytest.raises(ValueError, match="same length"):
        frame_accuracy([0, 1], [0])


def test_segmentation_scores_pooled():
    p1 = [0, 0, 0, 1, 1, 0, 1, 2, 2, 2]
    p2 = [0, 0, 1, 1, 1, 1, 1, 1, 2, 2]
    s = segmentation_scores([(GT, p1), (GT, p2)])
    # accuracy (9 + 8) / 20; edit mean(.6, 1); F1@50 from tp 3+3, fp 2+0, fn 0: P .75 R 1 -> 6/7
    assert s["accuracy"] == pytest.approx(0.85)
    assert s["edit"] == pytest.approx(0.8)
    assert s["f1@50"] == pytest.approx(2 * 0.75 / 1.75)
    assert set(s) == {"accuracy", "edit", "f1@10", "f1@25", "f1@50", "n_videos"}
    with pytest.raises(ValueError, match="pairs"):
        segmentation_scores([])


def test_eval_table_prints_a_rounding_error_below_zero_as_zero():
    # a partner-alone run against itself: a collapse index of -1e-15 is 0.00, not -0.00
    import pandas as pd

    from rankfusion.evaluate import format_eval_table

    df = pd.DataFrame([{"metric": "collapse_index", "modality": "depth", "obs": float("nan"), "beta": float("nan"),
                        "mean": -1e-15, "std": 2e-16, "n_seeds": 2},
                       {"metric": "decidable_gain", "modality": "depth", "obs": float("nan"), "beta": float("nan"),
                        "mean": -0.004, "std": float("nan"), "n_seeds": 1}])
    text = format_eval_table(df)
    assert "collapse_index: depth 0.00 +- 0.00" in text and "decidable_gain: depth -0.00" not in text
    assert "decidable_gain: depth 0.00" in text
