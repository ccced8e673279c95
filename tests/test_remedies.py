"""Remedies against modality collapse (rankfusion.remedies) on toys whose effect is known by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from rankfusion import remedies  # noqa: E402
from rankfusion.cli import main  # noqa: E402
from rankfusion.config import R3DConfig, RunConfig, TrainConfig, load_config  # noqa: E402
from rankfusion.model import R3D  # noqa: E402
from rankfusion.train import _train_step, load_run, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
K = 4  # action classes of the toys


def _model(modalities=("rgb", "depth"), rtf=True, **train_kw):
    cfg = RunConfig(model=R3DConfig(modalities=modalities, d_model=8, n_heads=2, n_layers=1, exchange_ratio=0.25,
                                    rtf=rtf, dropout=0.0, n_queries=4, input_dims={m: 5 for m in modalities}, n_classes=K),
                    train=TrainConfig(**train_kw))
    torch.manual_seed(0)
    return R3D(cfg.model), cfg


def _batch(B=6, T=7, modalities=("rgb", "depth"), seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([T, T - 2, T - 1, 3, T, T - 3][:B])
    mask = torch.arange(T)[None] < lengths[:, None]
    feats = {m: torch.randn(B, T, 5, generator=g) for m in modalities}
    cls = torch.randint(0, K + 1, (B, 4), generator=g)
    cls[1, 0] = -100  # one sample without a first future target
    seg = torch.randint(0, K, (B, T), generator=g).masked_fill(~mask, -100)
    return {"features": feats, "mask": mask, "seg_labels": seg, "future_classes": cls,
            "future_durations": torch.rand(B, 4, generator=g), "last_observed": torch.zeros(B, dtype=torch.long)}


def _run(model, cfg):
    remedies.attach_unimodal_heads(model, cfg.train)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return SimpleNamespace(model=model, net=model, tc=cfg.train, config=cfg, dev=torch.device("cpu"), ctx=None,
                           opt=opt, sched=sched)


# ----------------------------------------------------------------------------- config and hash
def test_remedies_stay_out_of_the_config_hash_at_their_defaults():
    # every run recorded in figures/manifest.json keeps its hash: rebuild each configuration the
    # way the run cache does (preset + profile + the run's overrides) and compare
    from rankfusion.profiles import Profile
    from rankfusion.runcache import TRAIN_OVERRIDES, RunCache

    manifest = json.loads((ROOT / "figures" / "manifest.json").read_text())
    checked, with_remedy = set(), set()
    for fig in manifest["figures"].values():
        prof = fig["profile"]
        cache = RunCache(ROOT, ROOT / "unused", Profile(model=prof["model"], train=prof["train"]), fingerprint="x")
        for run in fig.get("runs", []):
            over = dict(run["overrides"])
            mods = over.pop("modalities")
            cfg = cache.config(mods, **over)
            if TRAIN_OVERRIDES & over.keys():  # the collapse family's remedy runs: their hash is rebuilt too
                with_remedy.add(run["config_hash"])
            else:
                assert cfg.train.modality_dropout == 0.0 and cfg.train.unimodal_heads == 0.0 and cfg.train.ogm == 0.0
            assert cfg.config_hash() == run["config_hash"], run
            checked.add(run["config_hash"])
    assert len(checked) >= 10 and len(with_remedy) == 3  # dropout, unimodal heads, OGM-GE
    base = load_config(preset="synthetic-small")
    hashes = {base.config_hash()}
    for kw in ({"modality_dropout": 0.3}, {"modality_dropout": {"depth": 1.0}}, {"unimodal_heads": 0.5},
               {"unimodal_heads": 0.5, "ogm": 0.1}):
        hashes.add(base.replace(train=kw).config_hash())
    assert len(hashes) == 5  # each setting is another run
    # a table of zeros is the default training, hence the default hash
    assert base.replace(train={"modality_dropout": {"rgb": 0.0}}).config_hash() == base.config_hash()


def test_remedy_options_are_validated_naming_the_option():
    with pytest.raises(ValueError, match="modality_dropout"):
        TrainConfig(modality_dropout=1.5)
    with pytest.raises(ValueError, match=r"modality_dropout\['depth'\]"):
        TrainConfig(modality_dropout={"depth": -0.1})
    with pytest.raises(ValueError, match="unimodal_heads"):
        TrainConfig(unimodal_heads=-1)
    with pytest.raises(ValueError, match="ogm 0.5 needs unimodal_heads"):
        TrainConfig(ogm=0.5)
    with pytest.raises(ValueError, match=r"modality_dropout names modalities \['imu'\]"):
        RunConfig(model=R3DConfig(modalities=("rgb", "depth")), train=TrainConfig(modality_dropout={"imu": 0.5}))
    with pytest.raises(ValueError, match="two or more modalities"):
        RunConfig(model=R3DConfig(modalities=("rgb",)), train=TrainConfig(unimodal_heads=1.0, ogm=0.5))


# ----------------------------------------------------------------------------- modality dropout
def test_keep_mask_probabilities_zero_and_one_are_exact():
    g = torch.Generator().manual_seed(1)
    keep = remedies.keep_mask([0.0, 1.0, 0.5], 2000, generator=g)
    assert keep.shape == (2000, 3)
    assert bool((keep[:, 0] == 1).all()) and bool((keep[:, 1] == 0).all())
    # the 0.5 column: a binomial(2000, 0.5) count, 5 sd = 112
    assert abs(float(keep[:, 2].sum()) - 1000) < 112


@pytest.mark.parametrize("rtf", [True, False])
def test_modality_dropout_one_leaves_the_dropped_encoder_without_gradient(rtf):
    # depth is dropped in every sample: its tokens are multiplied by 0 before anything reads them,
    # so the loss does not depend on depth's input or projection, and their gradients are exactly 0
    model, cfg = _model(rtf=rtf, modality_dropout={"depth": 1.0}, unimodal_heads=1.0, ogm=0.5)
    r = _run(model, cfg)
    before = {k: v.clone() for k, v in model.proj["depth"].state_dict().items()}
    batch = _batch()
    batch["features"]["depth"].requires_grad_(True)
    loss, parts, _ = _train_step(r, batch)
    for p in model.proj["depth"].parameters():
        assert p.grad is not None and bool((p.grad == 0).all())
    assert batch["features"]["depth"].grad is None or bool((batch["features"]["depth"].grad == 0).all())
    assert any(bool((p.grad != 0).any()) for p in model.proj["rgb"].parameters())
    # SGD without weight decay: the dropped encoder did not move
    for k, v in model.proj["depth"].state_dict().items():
        assert torch.equal(v, before[k])
    # and its input does not change the loss: another depth input gives the same loss
    other = _batch()
    other["features"]["depth"] = torch.randn_like(other["features"]["depth"]) * 100
    model2, cfg2 = _model(rtf=rtf, modality_dropout={"depth": 1.0})
    r2 = _run(model2, cfg2)
    a = _train_step(r2, _batch())[0]
    model3, _ = _model(rtf=rtf, modality_dropout={"depth": 1.0})
    b = _train_step(_run(model3, cfg2), other)[0]
    assert float(a.detach()) == float(b.detach())


def test_modality_dropout_one_keeps_the_dropped_encoder_at_its_initial_weights(tmp_path):
    # a whole (tiny) training run with depth always dropped: every depth projection step is a
    # zero gradient, so with weight decay off the trained depth encoder equals its initial weights
    from rankfusion.data import synthesize

    data = synthesize(tmp_path / "d", seed=3, split_fractions=(0.7, 0.15, 0.15), n_videos=9, min_frames=60,
                      max_frames=90, channels={"rgb": 6, "depth": 5})
    tc = dict(epochs=2, warmup_epochs=1, batch_size=4, sample_rate=3, select_metric="val_loss", weight_decay=0.0)
    cfg = RunConfig(model=R3DConfig(modalities=("rgb", "depth"), d_model=8, n_heads=2, n_layers=1,
                                    exchange_ratio=0.25, rtf=False),
                    train=TrainConfig(modality_dropout={"depth": 1.0}, **tc))
    run = train(cfg, data, tmp_path / "run", seed=2, progress=False, monitor=False)
    model, _, _ = load_run(run, checkpoint="last")
    torch.manual_seed(2)
    init = R3D(model.config)
    for k, v in init.proj["depth"].state_dict().items():
        assert torch.equal(model.proj["depth"].state_dict()[k], v)
    assert not torch.equal(model.proj["rgb"].weight, init.proj["rgb"].weight)


# ----------------------------------------------------------------------------- unimodal heads
def test_unimodal_heads_add_exactly_w_times_their_loss():
    import copy

    batch = _batch()
    model0, cfg0 = _model()
    loss0 = _train_step(_run(model0, cfg0), batch)[0]
    model, cfg = _model(unimodal_heads=0.7)
    r = _run(model, cfg)
    heads = copy.deepcopy(model.unimodal)  # as they are before the step
    ref, _ = _model()  # the same initial weights (no dropout, nothing random in the forward pass)
    loss_w = _train_step(r, batch)[0]
    # the auxiliary loss by hand: per modality, the CE of a linear head on [mean valid token, last valid token]
    out = ref(batch["features"], batch["mask"], return_features=True)
    m = batch["mask"]
    last = m.sum(1) - 1
    y = batch["future_classes"][:, 0]
    ok = y != -100
    aux = 0.0
    for name in cfg.model.modalities:
        x = out.features[name]["before"]
        pooled = torch.cat([(x * m[..., None]).sum(1) / m.sum(1, keepdim=True), x[torch.arange(6), last]], -1)
        lin = heads.heads[name]
        aux = aux + torch.nn.functional.cross_entropy((pooled @ lin.weight.T + lin.bias)[ok], y[ok])
    # float32 sums of a few terms of size ~1: agreement to ~1e-6 of the loss
    assert float((loss_w - loss0).detach()) == pytest.approx(0.7 * float(aux.detach()), abs=1e-5 * float(loss_w.detach()))
    assert float(aux.detach()) > 0.1


def test_unimodal_heads_travel_with_the_checkpoint(tmp_path):
    from rankfusion.data import synthesize

    data = synthesize(tmp_path / "d", seed=4, split_fractions=(0.7, 0.15, 0.15), n_videos=9, min_frames=60,
                      max_frames=90, channels={"rgb": 6, "depth": 5})
    cfg = RunConfig(model=R3DConfig(modalities=("rgb", "depth"), d_model=8, n_heads=2, n_layers=1),
                    train=TrainConfig(epochs=1, warmup_epochs=0, batch_size=4, sample_rate=3,
                                      select_metric="val_loss", unimodal_heads=0.5, ogm=0.3,
                                      modality_dropout=0.2))
    run = train(cfg, data, tmp_path / "run", seed=1, progress=False, monitor=False)
    model, config, _ = load_run(run)
    assert isinstance(model.unimodal, remedies.UnimodalHeads)
    assert config.train.ogm == 0.3 and config.train.modality_dropout == 0.2
    assert json.loads((run / "config.json").read_text())["config"]["train"]["unimodal_heads"] == 0.5


# ----------------------------------------------------------------------------- OGM-GE
def test_ogm_coefficient_matches_a_hand_computed_case():
    # two modalities, logits chosen so the softmax is known: modality 0 puts e^2/(e^2+2) on the
    # true class of both samples, modality 1 puts 1/3 (uniform) on it
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]],
                           [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    y = torch.tensor([0, 1])
    s = remedies.confidence_scores(logits, y)
    p = math.exp(2) / (math.exp(2) + 2)
    assert float(s[0]) == pytest.approx(2 * p, rel=1e-12) and float(s[1]) == pytest.approx(2 / 3, rel=1e-12)
    k = remedies.ogm_coefficients(s, alpha=0.5)
    rho = 2 * p / (2 / 3)  # = 3p = 2.36097
    assert k[0] == pytest.approx(1 - math.tanh(0.5 * rho), rel=1e-12)
    # by hand: tanh(1.180485) = (e^2.36097 - 1) / (e^2.36097 + 1) = 9.6008 / 11.6008 = 0.82760
    assert k[0] == pytest.approx(0.1724, abs=1e-4)
    assert k[1] == 1.0  # rho < 1: not modulated
    # three modalities: the ratio is to the mean of the others
    k3 = remedies.ogm_coefficients([3.0, 1.0, 2.0], alpha=1.0)
    assert k3 == pytest.approx([1 - math.tanh(2.0), 1.0, 1.0])
    assert remedies.ogm_coefficients([0.0, 0.0], alpha=1.0) == [1.0, 1.0]
    assert remedies.ogm_coefficients([1.0, 0.0], alpha=1.0) == [0.0, 1.0]


def test_ogm_scales_the_dominant_encoder_and_adds_noise_of_the_gradient_spread():
    model, cfg = _model(unimodal_heads=1.0, ogm=0.5)
    remedies.attach_unimodal_heads(model, cfg.train)
    batch = _batch()
    out = model(batch["features"], batch["mask"], return_features=True)
    out.class_logits.sum().backward()
    grads = {m: [p.grad.clone() for p in model.proj[m].parameters()] for m in ("rgb", "depth")}
    remedies.modulate_gradients(model, [0.25, 1.0], noise=False)
    for m, k in (("rgb", 0.25), ("depth", 1.0)):
        for p, g in zip(model.proj[m].parameters(), grads[m]):
            assert torch.equal(p.grad, g * k)
    # with noise (GE): the residual g' - k g is Gaussian with the tensor's own sd
    for p, g in zip(model.proj["rgb"].parameters(), grads["rgb"]):
        p.grad = g.clone()
    remedies.modulate_gradients(model, [0.25, 1.0], generator=torch.Generator().manual_seed(0))
    w, g = model.proj["rgb"].weight, grads["rgb"][0]
    resid = (w.grad - 0.25 * g) / g.std()
    assert abs(float(resid.mean())) < 5 / math.sqrt(resid.numel()) and 0.6 < float(resid.std()) < 1.4


def test_cli_train_remedy_options(tmp_path):
    from rankfusion.data import synthesize

    data = synthesize(tmp_path / "d", seed=5, split_fractions=(0.7, 0.15, 0.15), n_videos=9, min_frames=60,
                      max_frames=80, channels={"rgb": 6, "depth": 5})
    cfg = tmp_path / "c.toml"
    cfg.write_text("[model]\nd_model = 8\nn_heads = 2\nn_layers = 1\n[train]\nepochs = 1\nwarmup_epochs = 0\n"
                   "batch_size = 4\nsample_rate = 3\nselect_metric = \"val_loss\"\n")
    r = CliRunner().invoke(main, ["train", str(data), "--out", str(tmp_path / "r"), "--config", str(cfg), "--quiet",
                                  "--no-monitor", "--modality-dropout", "depth=0.5", "--unimodal-heads", "0.3",
                                  "--ogm", "0.2"])
    assert r.exit_code == 0, r.output
    info = json.loads((tmp_path / "r" / "config.json").read_text())["config"]["train"]
    assert info["modality_dropout"] == {"depth": 0.5} and info["unimodal_heads"] == 0.3 and info["ogm"] == 0.2
    for bad, needle in ((["--modality-dropout", "depth"], "--modality-dropout must be"),
                        (["--modality-dropout", "imu=0.5"], "names modalities"),
                        (["--ogm", "0.3"], "--ogm 0.3 needs --unimodal-heads W with W > 0")):
        r = CliRunner().invoke(main, ["train", str(data), "--out", str(tmp_path / "bad"), "--config", str(cfg),
                                      "--quiet", *bad])
        assert r.exit_code == 2 and needle in r.output, r.output
        assert not (tmp_path / "bad").exists()


def test_resume_with_every_remedy_is_exact(tmp_path):
    # the remedies draw from the global RNG (dropout masks, OGM-GE noise), which the checkpoint keeps
    from rankfusion.data import synthesize
    from rankfusion.runs import load_checkpoint

    data = synthesize(tmp_path / "d", seed=6, split_fractions=(0.7, 0.15, 0.15), n_videos=9, min_frames=60,
                      max_frames=80, channels={"rgb": 6, "depth": 5})
    cfg = RunConfig(model=R3DConfig(modalities=("rgb", "depth"), d_model=8, n_heads=2, n_layers=1),
                    train=TrainConfig(epochs=2, warmup_epochs=0, batch_size=4, sample_rate=3, select_metric="val_loss",
                                      modality_dropout=0.3, unimodal_heads=0.5, ogm=0.4))
    ref = train(cfg, data, tmp_path / "ref", seed=3, progress=False, monitor=False)

    class Interrupt(Exception):
        pass

    def stop(epoch, row):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, data, tmp_path / "cut", seed=3, progress=False, monitor=False, on_epoch_end=stop)
    cut = train(cfg, data, tmp_path / "cut", seed=3, progress=False, monitor=False, resume=True)
    a, b = load_checkpoint(ref / "checkpoints" / "last.pt"), load_checkpoint(cut / "checkpoints" / "last.pt")
    assert any(k.startswith("unimodal.") for k in a["model"])
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_ogm_is_refused_under_torchrun_from_the_configuration_alone():
    from rankfusion._validation import InputError

    tc = TrainConfig(unimodal_heads=1.0, ogm=0.5)
    remedies.check_supported(tc, distributed=False)  # one process: supported
    with pytest.raises(InputError, match=r"^ogm \(OGM-GE\) is not supported under torchrun"):
        remedies.check_supported(tc, distributed=True)
    remedies.check_supported(TrainConfig(unimodal_heads=1.0), distributed=True)
