"""Property tests: MoC against a literal, loop-by-loop transcription of the MoC protocol (docs/datasets.md)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rankfusion.metrics import MoCAccumulator, decode_queries, expand_transcript

BETAS = (0.1, 0.2, 0.3, 0.5)


def reference_moc(videos, n_classes, obs):
    """The MoC protocol of docs/datasets.md, line by line (slow, obvious)."""
    T = [[0] * n_classes for _ in BETAS]
    F = [[0] * n_classes for _ in BETAS]
    none = n_classes
    for gt, logits, d in videos:
        N = len(gt)
        past = int(obs * N)
        fut = int(0.5 * N)
        a = [max(range(len(row)), key=lambda j: (row[j], -j)) for row in logits]  # first max on ties
        k = next((q for q, x in enumerate(a) if x == none), len(a))
        pred = []
        if k > 0:
            m = max(d[:k])
            w = [math.exp(d[q] - m) for q in range(k)]
            s = sum(w)
            w = [x / s for x in w]
            L = [math.floor(0.5 + fut * x) for x in w]
            for q in range(k):
                if q < k - 1:
                    pred += [a[q]] * L[q]
                else:
                    pred += [a[q]] * max(0, fut - len(pred))
            pred = pred[:fut]
        else:
            pred = [none] * fut
        seq = list(gt[:past]) + pred
        for i, beta in enumerate(BETAS):
            end = min(int((obs + beta) * N), len(seq), N)
            for t in range(past, end):
                if gt[t] == seq[t]:
                    T[i][gt[t]] += 1
                else:
                    F[i][gt[t]] += 1
    out = []
    for i in range(len(BETAS)):
        vals = [T[i][c] / (T[i][c] + F[i][c]) for c in range(n_classes) if T[i][c] + F[i][c] > 0]
        out.append(sum(vals) / len(vals) if vals else float("nan"))
    return out


@st.composite
def video(draw, n_classes):
    n = draw(st.integers(4, 60))
    gt = draw(st.lists(st.integers(0, n_classes - 1), min_size=n, max_size=n))
    q = draw(st.integers(1, 5))
    # small integer logits make ties (and NONE ties) frequent
    logits = draw(st.lists(st.lists(st.integers(0, 3), min_size=n_classes + 1, max_size=n_classes + 1),
                           min_size=q, max_size=q))
    d = draw(st.lists(st.floats(-3, 3), min_size=q, max_size=q))
    return gt, logits, d


@settings(max_examples=150)
@given(st.integers(1, 4).flatmap(lambda c: st.tuples(st.just(c), st.lists(video(c), min_size=1, max_size=4))),
       st.sampled_from([0.2, 0.3]))
def test_moc_matches_reference(case, obs):
    n_classes, videos = case
    acc = MoCAccumulator(n_classes, BETAS)
    for gt, logits, d in videos:
        acc.add_queries(gt, obs, np.array(logits, float), np.array(d))
    got = acc.result().loc[obs].to_numpy()
    np.testing.assert_allclose(got, reference_moc(videos, n_classes, obs), equal_nan=True)


@given(st.lists(st.integers(0, 5), min_size=1, max_size=6).flatmap(
    lambda c: st.tuples(st.just(c), st.lists(st.floats(0.01, 10), min_size=len(c), max_size=len(c)))),
    st.integers(0, 200))
def test_expand_transcript_properties(cd, n):
    classes, w = cd
    out = expand_transcript(classes, w, n)
    assert out.shape == (n,)
    # labels appear in transcript order (positions never go back), no gaps, no foreign labels
    pos = [0]
    for x in out:
        while classes[pos[-1]] != x:
            pos[-1] += 1
            assert pos[-1] < len(classes)
    if n:
        assert out[-1] in classes


@given(st.lists(st.integers(0, 2), min_size=10, max_size=80), st.sampled_from([0.2, 0.3, 0.5]))
def test_perfect_prediction_scores_one(gt, obs):
    acc = MoCAccumulator(3)
    n = len(gt)
    acc.add(gt, obs, gt[int(obs * n):])
    vals = acc.result().loc[obs].to_numpy()
    assert np.all((vals == 1.0) | np.isnan(vals))


def test_decode_is_deterministic_under_torch_and_numpy():
    import torch

    rng = np.random.default_rng(0)
    logits = rng.integers(0, 3, size=(8, 5)).astype(float)
    d = rng.standard_normal(8)
    a = decode_queries(logits, d, 37, 4)
    b = decode_queries(torch.tensor(logits), torch.tensor(d), 37, 4)
    np.testing.assert_array_equal(a, b)


def _levenshtein_table(a, b):
    D = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        D[i][0] = i
    for j in range(len(b) + 1):
        D[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            D[i][j] = min(D[i - 1][j] + 1, D[i][j - 1] + 1, D[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return D[-1][-1]


@given(st.lists(st.integers(0, 3), max_size=15), st.lists(st.integers(0, 3), max_size=15))
def test_vectorised_levenshtein_matches_table(a, b):
    from rankfusion.metrics import _levenshtein

    assert _levenshtein(a, b) == _levenshtein_table(a, b)
