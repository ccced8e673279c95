"""R3D model: RTF against a direct NumPy reading of Eqs. 3-5, gradients, masks, shapes, options."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rankfusion.config import R3DConfig  # noqa: E402
from rankfusion.model import R3D, RankEnhancingTokenFuser  # noqa: E402


def _np_informativeness(X, k=None):
    # Definition 1 straight from an SVD of the (n_valid, D) matrix (slow reference on purpose).
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    k = len(s) if k is None else k
    return ((s[:k, None] ** 2) * vt[:k] ** 2).sum(0)


def _np_rtf(feats, mask, alpha, k_prime, k=None, rule="mean"):
    """Eqs. 3-5 for M modalities: bottom-k' channels of each, blended with its partner."""
    M = len(feats)
    if M == 2:
        partners = [feats[1], feats[0]]
    elif rule == "ring":
        partners = [feats[(m + 1) % M] for m in range(M)]
    else:
        partners = [(sum(feats) - x) / (M - 1) for x in feats]
    out, lows = [], []
    for m, (x, y) in enumerate(zip(feats, partners)):
        I = _np_informativeness(x[mask], k)
        low = np.sort(np.argsort(I)[:k_prime])  # Eq. 3
        z = x.copy()
        z[..., low] = alpha[m, low] * y[..., low] + (1 - alpha[m, low]) * x[..., low]  # Eqs. 4-5
        out.append(z)
        lows.append(low)
    return out, lows


def _random_inputs(rng, M, B=3, T=7, D=20):
    # ReLU-like non-negative tokens with distinct channel scales, as after Eq. 2.
    scale = rng.uniform(0.1, 3.0, size=D)
    feats = [np.maximum(rng.normal(size=(B, T, D)), 0) * scale for _ in range(M)]
    mask = np.ones((B, T), dtype=bool)
    mask[0, 5:] = False
    mask[2, 3:] = False
    return feats, mask


@pytest.mark.parametrize("M,rule,k", [(2, "mean", None), (2, "mean", 3), (3, "mean", None), (3, "ring", None),
                                      (4, "mean", 5)])
def test_rtf_matches_numpy_reference(rng, M, rule, k):
    feats, mask = _random_inputs(rng, M)
    rtf = RankEnhancingTokenFuser([f"m{i}" for i in range(M)], 20, exchange_ratio=0.2,
                                  informativeness_k=k, fusion_rule=rule).double()
    alpha = rtf.alpha().detach().numpy()
    assert alpha.min() >= 0 and alpha.max() <= 1
    out = rtf([torch.from_numpy(f) for f in feats], torch.from_numpy(mask))
    ref, lows = _np_rtf(feats, mask, alpha, rtf.k_prime, k, rule)
    assert rtf.k_prime == 4
    for m in range(M):
        np.testing.assert_array_equal(out.low[m].numpy(), lows[m])
        np.testing.assert_allclose(out.after[m].detach().numpy(), ref[m], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(out.before[m].numpy(), feats[m])


def test_rtf_sample_scope_is_per_video_reference(rng):
    feats, mask = _random_inputs(rng, 2)
    rtf = RankEnhancingTokenFuser(["a", "b"], 20, exchange_ratio=0.2, selection_scope="sample").double()
    alpha = rtf.alpha().detach().numpy()
    out = rtf([torch.from_numpy(f) for f in feats], torch.from_numpy(mask))
    for b in range(mask.shape[0]):
        one = [f[b:b + 1] for f in feats]
        ref, lows = _np_rtf(one, mask[b:b + 1], alpha, rtf.k_prime)
        for m in range(2):
            np.testing.assert_array_equal(out.low[m][b].numpy(), lows[m])
            np.testing.assert_allclose(out.after[m][b:b + 1].detach().numpy(), ref[m], rtol=1e-12, atol=1e-12)


def test_rtf_gradients_reach_alpha_and_both_modalities(rng):
    feats, mask = _random_inputs(rng, 2)
    rtf = RankEnhancingTokenFuser(["rgb", "depth"], 20, exchange_ratio=0.2).double()
    xs = [torch.from_numpy(f).requires_grad_() for f in feats]
    out = rtf(xs, torch.from_numpy(mask))
    (out.after[0].sum() + 2 * out.after[1].sum()).backward()
    g = rtf.alpha_raw.grad
    for m in range(2):
        low = out.low[m]
        assert torch.all(g[m, low] != 0)
        others = torch.ones(20, dtype=torch.bool)
        others[low] = False
        assert torch.all(g[m, others] == 0)  # unselected channels are not blended
    # the depth input receives gradient through RGB's blended channels (weight alpha)
    low0 = out.low[0]
    assert torch.all(xs[1].grad[..., low0] != 0)


def test_static_exchange_has_fixed_alpha(rng):
    feats, mask = _random_inputs(rng, 2)
    rtf = RankEnhancingTokenFuser(["a", "b"], 20, exchange="static", static_alpha=1.0).double()
    assert not list(rtf.parameters())
    out = rtf([torch.from_numpy(f) for f in feats], torch.from_numpy(mask))
    low = out.low[0].numpy()
    np.testing.assert_allclose(out.after[0].numpy()[..., low], feats[1][..., low], atol=1e-15)  # hard swap


def test_raw_alpha_variant_is_unconstrained_parameter():
    rtf = RankEnhancingTokenFuser(["a", "b"], 10, alpha_param="raw")
    with torch.no_grad():
        rtf.alpha_raw.fill_(1.7)
    assert torch.all(rtf.alpha() == 1.7)


def test_bn_gamma_selects_smallest_abs_gamma(rng):
    feats, mask = _random_inputs(rng, 2)
    rtf = RankEnhancingTokenFuser(["a", "b"], 20, exchange_ratio=0.15, selection="bn_gamma").double()
    gammas = rng.normal(size=(2, 20))
    with torch.no_grad():
        for m in range(2):
            rtf.norms[m].weight.copy_(torch.from_numpy(gammas[m]))
    out = rtf([torch.from_numpy(f) for f in feats], torch.from_numpy(mask))
    for m in range(2):
        expected = np.sort(np.argsort(np.abs(gammas[m]))[:3])
        np.testing.assert_array_equal(out.low[m].numpy(), expected)


def test_one_modality_is_identity(rng):
    feats, mask = _random_inputs(rng, 1)
    rtf = RankEnhancingTokenFuser(["rgb"], 20).double()
    x = torch.from_numpy(feats[0])
    out = rtf([x], torch.from_numpy(mask))
    assert out.after[0] is x


def _model(mods, **kw):
    cfg = R3DConfig(modalities=mods, input_dims={m: 12 + i for i, m in enumerate(mods)}, n_classes=5,
                    d_model=16, n_heads=4, n_layers=2, **kw)
    torch.manual_seed(0)
    return R3D(cfg)


def _batch(mods, B=3, T=9):
    g = torch.Generator().manual_seed(1)
    feats = {m: torch.randn(B, T, 12 + i, generator=g) for i, m in enumerate(mods)}
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 6:] = False
    mask[2, 2:] = False
    return feats, mask


@pytest.mark.parametrize("mods", [("rgb",), ("rgb", "depth"), ("rgb", "depth", "imu")])
def test_shapes(mods):
    model = _model(mods)
    feats, mask = _batch(mods)
    out = model(feats, mask, return_features=True)
    assert out.seg_logits.shape == (3, 9, 5)
    assert out.class_logits.shape == (3, 8, 6)
    assert out.durations.shape == (3, 8)
    assert set(out.features) == set(mods)
    for m in mods:
        assert out.features[m]["before"].shape == out.features[m]["after"].shape == (3, 9, 16)
    assert model.none_index == 5
    assert model(feats, mask).features is None


OPTIONS = [
    {}, {"rtf": False}, {"selection": "bn_gamma"}, {"exchange": "static"}, {"temporal_fuser": False},
    {"latent": "shared"}, {"informativeness_k": 4}, {"positional": "none"}, {"positional": "recency"},
    {"alpha_param": "raw"}, {"exchange_ratio": 0.0}, {"selection_scope": "sample"},
]


def _opt_id(o):
    return ",".join(f"{k}={v}" for k, v in o.items()) or "default"


CASES = ([pytest.param(("rgb", "depth"), o, False, id=f"2mod-eval-{_opt_id(o)}") for o in OPTIONS]
         + [pytest.param(m, {}, False, id=f"{len(m)}mod-eval") for m in [("rgb",), ("a", "b", "c")]]
         + [pytest.param(("a", "b", "c"), {"fusion_rule": "ring"}, False, id="3mod-eval-ring")]
         + [pytest.param(("rgb", "depth"), o, True, id=f"2mod-train-{_opt_id(o)}")
            for o in ({}, {"selection": "bn_gamma"})])


@pytest.mark.parametrize("mods,opts,training", CASES)
def test_padding_never_changes_outputs(mods, opts, training):
    model = _model(mods, dropout=0.0, **opts)
    model.train(training)
    feats, mask = _batch(mods)
    out1 = model(feats, mask, return_features=True)
    feats2 = {m: torch.where(mask[..., None], v, torch.full_like(v, 1e3) * torch.randn_like(v))
              for m, v in feats.items()}
    if opts.get("selection") == "bn_gamma" and training:
        model = _model(mods, dropout=0.0, **opts).train()  # fresh running stats, same weights
    out2 = model(feats2, mask, return_features=True)
    torch.testing.assert_close(out1.class_logits, out2.class_logits)
    torch.testing.assert_close(out1.durations, out2.durations)
    torch.testing.assert_close(out1.seg_logits[mask], out2.seg_logits[mask])
    for m in mods:
        torch.testing.assert_close(out1.features[m]["after"][mask], out2.features[m]["after"][mask])


@pytest.mark.parametrize("opts", [{"rtf": False}, {"selection_scope": "sample"}])
def test_batch_row_independent_of_other_rows_in_eval(opts):
    # Without RTF, or with per-video selection, every video is processed independently; with the
    # default spectral RTF and no recorded choice the channel set is a batch statistic (Sec. 4.2),
    # which is why evaluation then runs one video per forward pass.
    mods = ("rgb", "depth")
    model = _model(mods, **opts).eval()
    feats, mask = _batch(mods)
    full = model(feats, mask)
    one = model({m: v[1:2] for m, v in feats.items()}, mask[1:2])
    torch.testing.assert_close(full.class_logits[1:2], one.class_logits)


def test_model_backward_reaches_alpha():
    mods = ("rgb", "depth")
    model = _model(mods)
    feats, mask = _batch(mods)
    out = model(feats, mask)
    (out.seg_logits[mask].logsumexp(-1).sum() + out.class_logits.sum()).backward()
    assert model.rtf.alpha_raw.grad is not None and model.rtf.alpha_raw.grad.abs().sum() > 0
    assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith("proj"))


def test_model_requires_resolved_config():
    with pytest.raises(ValueError, match="input_dims"):
        R3D(R3DConfig())
    model = _model(("rgb", "depth"))
    feats, mask = _batch(("rgb",))
    with pytest.raises(ValueError, match="depth"):
        model(feats, mask)


@pytest.mark.parametrize("k", [None, 4])
def test_rtf_never_takes_an_svd(monkeypatch, k):
    def boom(*a, **kw):
        raise AssertionError("RTF must not take an SVD of the (B*T) x D matrix")

    for name in ("svd", "svdvals"):
        monkeypatch.setattr(torch.linalg, name, boom)
    monkeypatch.setattr(torch, "svd", boom)
    model = _model(("rgb", "depth"), informativeness_k=k)
    feats, mask = _batch(("rgb", "depth"))
    model(feats, mask)


@pytest.mark.parametrize("latent", ["separated", "shared"])
def test_tokens_are_eq2_and_enter_the_fuser(latent):
    # Eq. 2: ReLU(F_m W_m) per modality; Table 9's "shared" adds one shared Linear(D, D) + ReLU
    mods = ("rgb", "depth")
    model = _model(mods, latent=latent).eval()
    feats, mask = _batch(mods)
    toks = model.tokens(feats, mask)
    out = model(feats, mask, return_features=True)
    for m, tok in zip(mods, toks):
        expected = torch.relu(torch.nn.functional.linear(feats[m], model.proj[m].weight, model.proj[m].bias))
        if latent == "shared":
            expected = torch.relu(torch.nn.functional.linear(expected, model.shared.weight, model.shared.bias))
        assert tok.shape == (3, 9, 16) and bool((tok >= 0).all())
        assert torch.equal(tok, expected)  # the same computation: bit-identical
        assert torch.equal(out.features[m]["before"], tok)  # RTF's input is Eq. 2's output


def test_freeze_fixes_the_channel_choice_of_eval_mode():
    from rankfusion.spectral import channel_informativeness, low_informative_channels

    torch.manual_seed(5)
    rtf = RankEnhancingTokenFuser(["a", "b"], 20, exchange_ratio=0.2).double().eval()
    # training rows whose lowest-energy channels are 0..3, evaluation rows whose are 16..19
    scale_tr = torch.cat([torch.full((4,), 0.01), torch.ones(16)]).double()
    scale_te = torch.cat([torch.ones(16), torch.full((4,), 0.01)]).double()
    tr = [torch.randn(6, 5, 20, dtype=torch.float64) * scale_tr for _ in range(2)]
    te = [torch.randn(3, 5, 20, dtype=torch.float64) * scale_te for _ in range(2)]
    m_tr, m_te = torch.ones(6, 5, dtype=torch.bool), torch.ones(3, 5, dtype=torch.bool)
    assert not rtf.frozen
    assert rtf(te, m_te).low[0].tolist() == [16, 17, 18, 19]  # eval mode: the evaluated batch decides
    low = rtf.freeze(tr, m_tr)
    assert rtf.frozen and [x.tolist() for x in low] == [[0, 1, 2, 3]] * 2
    ref = low_informative_channels(channel_informativeness(tr[0].reshape(-1, 20)), k_prime=4)
    assert low[0].tolist() == ref.tolist()
    out = rtf(te, m_te)
    assert [x.tolist() for x in out.low] == [[0, 1, 2, 3]] * 2  # the training rows' choice
    # only the frozen channels blend; the others pass unchanged
    assert torch.equal(out.after[0][..., 4:], te[0][..., 4:])
    rtf.train()
    assert rtf(te, m_te).low[0].tolist() == [16, 17, 18, 19]  # training always decides per batch
    rtf.eval()
    rtf.unfreeze()
    assert not rtf.frozen and rtf(te, m_te).low[0].tolist() == [16, 17, 18, 19]
    with pytest.raises(ValueError, match="selection_scope='batch'"):
        RankEnhancingTokenFuser(["a", "b"], 20, selection_scope="sample").freeze(tr, m_tr)
    with pytest.raises(ValueError, match="selection='spectral'"):
        RankEnhancingTokenFuser(["a", "b"], 20, selection="bn_gamma").freeze(tr, m_tr)


def _rows_with_low_channels(low, n_videos, seed, d=20):
    # (n_videos, 5, d) float64 tokens of two modalities whose lowest-energy channels are ``low``
    g = torch.Generator().manual_seed(seed)
    scale = torch.ones(d, dtype=torch.float64)
    scale[list(low)] = 0.01
    return [torch.randn(n_videos, 5, d, generator=g, dtype=torch.float64) * scale for _ in range(2)]


def test_eval_mode_blends_the_channels_of_the_training_rows_seen_since_training():
    from rankfusion.model import channels_from_statistic
    from rankfusion.spectral import channel_statistic

    torch.manual_seed(5)
    rtf = RankEnhancingTokenFuser(["a", "b"], 20, exchange_ratio=0.2).double()
    assert rtf.tracks_training_rows and not rtf.frozen
    # two training batches: their summed statistic, not either batch alone, decides
    b1 = _rows_with_low_channels([0, 1, 2, 3], 4, seed=1)
    b2 = _rows_with_low_channels([2, 3, 4, 5], 4, seed=2)
    b2 = [x * 3.0 for x in b2]
    m = torch.ones(4, 5, dtype=torch.bool)
    m[1, 3:] = False  # padded steps do not count
    for b in (b1, b2):
        rtf(b, m)
    assert not rtf.frozen and int(rtf.train_batches) == 2
    want = [channels_from_statistic(channel_statistic(b1[i][m], None) + channel_statistic(b2[i][m], None),
                                    None, 4).tolist() for i in range(2)]
    rtf.eval()
    assert rtf.frozen and [x.tolist() for x in rtf.frozen_low] == want
    assert int(rtf.train_batches) == 0 and not rtf.train_stat.any()  # the sum starts again
    te = _rows_with_low_channels([16, 17, 18, 19], 3, seed=3)
    assert [x.tolist() for x in rtf(te, torch.ones(3, 5, dtype=torch.bool)).low] == want
    # one video alone or in a batch: the same channels, so the same output up to rounding
    out_batch = rtf(te, torch.ones(3, 5, dtype=torch.bool)).after[0][1]
    out_alone = rtf([x[1:2] for x in te], torch.ones(1, 5, dtype=torch.bool)).after[0][0]
    assert torch.allclose(out_batch, out_alone, rtol=0, atol=1e-12)
    # switching to eval again without new training rows keeps the choice; new rows replace it
    rtf.eval()
    assert [x.tolist() for x in rtf.frozen_low] == want
    rtf.train()
    rtf(te, torch.ones(3, 5, dtype=torch.bool))
    rtf.eval()
    assert [x.tolist() for x in rtf.frozen_low] == [[16, 17, 18, 19]] * 2


def test_eval_channels_batch_lets_every_evaluated_batch_decide():
    rtf = RankEnhancingTokenFuser(["a", "b"], 20, exchange_ratio=0.2, eval_channels="batch").double()
    assert not rtf.tracks_training_rows
    rtf(_rows_with_low_channels([0, 1, 2, 3], 4, seed=1), torch.ones(4, 5, dtype=torch.bool))
    rtf.eval()
    assert not rtf.frozen
    te = _rows_with_low_channels([16, 17, 18, 19], 3, seed=3)
    assert rtf(te, torch.ones(3, 5, dtype=torch.bool)).low[0].tolist() == [16, 17, 18, 19]
    with pytest.raises(ValueError, match="eval_channels"):
        RankEnhancingTokenFuser(["a", "b"], 20, eval_channels="test")


def test_the_training_rows_choice_travels_in_the_state_dict_and_old_ones_load():
    rtf = RankEnhancingTokenFuser(["a", "b"], 20, exchange_ratio=0.2).double()
    rtf(_rows_with_low_channels([0, 1, 2, 3], 4, seed=1), torch.ones(4, 5, dtype=torch.bool))
    rtf.eval()
    state = rtf.state_dict()
    assert "frozen_low" in state and "train_stat" not in state  # the choice, not the running sum
    fresh = RankEnhancingTokenFuser(["a", "b"], 20, exchange_ratio=0.2).double().eval()
    fresh.load_state_dict(state)
    assert fresh.frozen and torch.equal(fresh.frozen_low, rtf.frozen_low)
    # a checkpoint written before the choice was saved: loads, and the evaluated batch decides
    old = {k: v for k, v in state.items() if k not in ("frozen_low", "is_frozen")}
    older = RankEnhancingTokenFuser(["a", "b"], 20, exchange_ratio=0.2).double().eval()
    older.load_state_dict(old)
    assert not older.frozen
    te = _rows_with_low_channels([16, 17, 18, 19], 3, seed=3)
    assert older(te, torch.ones(3, 5, dtype=torch.bool)).low[0].tolist() == [16, 17, 18, 19]


def test_bad_inputs_are_one_error_naming_the_argument():
    # they used to be torch's own errors ("mat1 and mat2 shapes cannot be multiplied", an IndexError
    # of the mask, a size mismatch at dimension 3, "X must not be empty")
    model = _model(("rgb", "depth"))
    feats, mask = _batch(("rgb", "depth"))
    B, T = mask.shape
    c = feats["rgb"].shape[2]
    cases = [
        ({**feats, "rgb": feats["rgb"][..., :-1]}, mask, rf"features\['rgb'\] must have shape \(B, T, C\) = \({B}, {T}, {c}\)"),
        (feats, torch.ones(B, T + 1, dtype=torch.bool), rf"features\['rgb'\] must have shape .* got shape \({B}, {T}, {c}\)"),
        (feats, mask.long(), "mask must be a bool tensor of shape \\(B, T\\).*torch.int64"),
        (feats, mask[0], "mask must be a bool tensor of shape \\(B, T\\)"),
        ({"rgb": feats["rgb"]}, mask, "features has no modality 'depth'"),
        ({**feats, "depth": feats["depth"].numpy()}, mask, r"features\['depth'\] must have shape .* got ndarray"),
        ({**feats, "rgb": feats["rgb"].double()}, mask, r"features\['rgb'\] must be torch.float32 like the model's "
                                                        r"weights, got torch.float64"),
    ]
    empty_row = mask.clone()
    empty_row[1] = False
    cases.append((feats, empty_row, "mask row 1 has no valid step"))
    for training in (True, False):
        model.train(training)
        for f, m, msg in cases:
            with pytest.raises(ValueError, match=msg):
                model(f, m)
