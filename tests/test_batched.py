"""Seeds trained as one batched model: the same computation as the serial runs, resume after kill -9.

Tolerance of the loss comparison: a batched seed computes the same float32 terms as its serial
run in another order (a batched matrix product per Linear over each seed's packed valid steps,
masked sums over time padded to the longest batch of all seeds, the attention written out
instead of the fused kernel, AdamW's fused kernel instead of its per-tensor loop). Each such
reduction differs by a few units of eps32 = 1.19e-7 relative; the losses are sums of positive
terms (condition number ~1), so a step's losses agree to that, and AdamW carries the difference
forward without amplifying it over a few steps (measured on these tiny runs: 2e-7 relative over
two epochs). RTOL = 2e-5 (~170 eps32) leaves room for other BLAS kernels; a seed trained with
another dropout mask or another batch order misses it by four orders of magnitude (measured:
0.03-0.4 absolute on losses near 2.5).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rankfusion.batched as batched  # noqa: E402
import rankfusion.model as model_mod  # noqa: E402
import rankfusion.remedies as remedies  # noqa: E402
import rankfusion.train as train_mod  # noqa: E402
from rankfusion.config import R3DConfig, RunConfig, TrainConfig  # noqa: E402
from rankfusion.spectral import blended_channel_count  # noqa: E402
from rankfusion.train import load_checkpoint, train  # noqa: E402
from rankfusion.trainstate import PACKED  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RTOL = 2e-5
SEEDS = [1, 10, 7]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from rankfusion.data import synthesize

    root = tmp_path_factory.mktemp("data") / "syn"
    return synthesize(root, seed=3, split_fractions=(0.7, 0.15, 0.15), n_videos=9, min_frames=60, max_frames=110,
                      channels={"rgb": 8, "depth": 6, "imu": 4})


def config(epochs=2, model=None, **train_kw):
    m = dict(modalities=("rgb", "depth"), d_model=8, n_heads=2, n_layers=1, exchange_ratio=0.25, dropout=0.1)
    m.update(model or {})
    kw = dict(epochs=epochs, warmup_epochs=1, batch_size=4, sample_rate=2)
    kw.update(train_kw)
    return RunConfig(model=R3DConfig(**m), train=TrainConfig(**kw))


def _ranks(run):
    import csv

    with open(run / "ranks.csv") as fh:
        return [(r["epoch"], r["name"], r["n_rows"], float(r["effective_rank"])) for r in csv.DictReader(fh)]


def _record_serial(monkeypatch):
    """Per-step training losses (and unimodal heads' losses) and RTF channels of serial runs, in call order."""
    losses, channels, uni = [], [], []
    compute = train_mod.compute_losses
    select = model_mod.RankEnhancingTokenFuser.select
    unimodal = remedies.unimodal_losses

    def rec_unimodal(logits, target):
        out = unimodal(logits, target)
        uni.append(out.detach().tolist())
        return out

    def rec_losses(out, batch, dev, **kw):
        parts = compute(out, batch, dev, **kw)
        if out.seg_logits.requires_grad:
            losses.append([float(parts[k].detach()) for k in ("seg", "cls", "dur")])
        return parts

    def rec_select(self, feats, mask):
        low = select(self, feats, mask)
        if self.training:
            channels.append([x.tolist() for x in low])
        return low

    monkeypatch.setattr(train_mod, "compute_losses", rec_losses)
    monkeypatch.setattr(model_mod.RankEnhancingTokenFuser, "select", rec_select)
    monkeypatch.setattr(remedies, "unimodal_losses", rec_unimodal)
    return losses, channels, uni


def _record_batched(monkeypatch):
    losses, channels, uni = [], [], []
    forward, stacked, unimodal = batched.stacked_forward, batched.stacked_losses, batched.stacked_unimodal_losses

    def rec_unimodal(logits, target):
        out = unimodal(logits, target)
        uni.append(out.detach().tolist())
        return out

    def rec_forward(*a, training, **kw):
        out = forward(*a, training=training, **kw)
        if training and out["low"][0] is not None:
            channels.append([x.tolist() for x in out["low"]])
        return out

    def rec_losses(out, targets, **kw):
        parts = stacked(out, targets, **kw)
        if out["seg"].requires_grad:
            losses.append(torch.stack([parts[k].detach() for k in ("seg", "cls", "dur")], 1).tolist())
        return parts

    monkeypatch.setattr(batched, "stacked_forward", rec_forward)
    monkeypatch.setattr(batched, "stacked_losses", rec_losses)
    monkeypatch.setattr(batched, "stacked_unimodal_losses", rec_unimodal)
    return losses, channels, uni


#: name: (model options, training options)
VARIANTS = {
    "spectral": ({}, {}),
    "bn_gamma-shared-static": (dict(selection="bn_gamma", latent="shared", exchange="static", static_alpha=0.7), {}),
    "sample-topk-recency": (dict(selection_scope="sample", informativeness_k=3, positional="recency"), {}),
    # k' = round(0.05 * 8) = 0: nothing blended, but bn_gamma's BatchNorm still normalises the tokens
    "bn_gamma-nothing-blended": (dict(selection="bn_gamma", exchange_ratio=0.05), {}),
    "three-ring-raw": (dict(modalities=("rgb", "depth", "imu"), fusion_rule="ring", alpha_param="raw", n_layers=2),
                       dict(transition_weight=10.0)),
    # the remedies of rankfusion.remedies: each seed's keep masks and OGM-GE noise come from its own
    # dropout stream, between the same draws as in its serial run
    "modality-dropout": ({}, dict(modality_dropout=0.4)),
    "modality-dropout-per-modality-plain": (dict(rtf=False, modalities=("rgb", "depth", "imu")),
                                            dict(modality_dropout={"depth": 1.0, "imu": 0.3})),
    "unimodal-heads": ({}, dict(unimodal_heads=0.5)),
    "heads-ogm-plain": (dict(rtf=False), dict(unimodal_heads=1.0, ogm=0.5)),
    "heads-ogm-dropout": ({}, dict(unimodal_heads=1.0, ogm=2.0, modality_dropout={"rgb": 0.5})),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_batched_seeds_match_their_serial_runs(tiny_data, tmp_path, monkeypatch, variant):
    epochs = 2 if variant == "spectral" else 1
    model_kw, train_kw = VARIANTS[variant]
    cfg = config(epochs, model_kw, **train_kw)
    assert batched.serial_reason(cfg) is None
    with monkeypatch.context() as m:
        s_loss, s_chan, s_uni = _record_serial(m)
        train(cfg, tiny_data, tmp_path / "serial", seed=SEEDS, progress=False)
    with monkeypatch.context() as m:
        b_loss, b_chan, b_uni = _record_batched(m)
        batched.train_seeds(cfg, tiny_data, tmp_path / "batched", seed=SEEDS, progress=False)
    K = len(SEEDS)
    serial = np.array(s_loss).reshape(K, -1, 3)  # seeds one after another
    got = np.array(b_loss).transpose(1, 0, 2)  # steps x seeds -> seeds x steps
    assert got.shape == serial.shape and got.shape[1] >= 3 * epochs
    np.testing.assert_allclose(got, serial, rtol=RTOL, atol=0)
    # the unimodal heads' losses, per (seed, step, modality)
    assert (len(s_uni) > 0) == (cfg.train.unimodal_heads > 0)
    if s_uni:
        np.testing.assert_allclose(np.array(b_uni).transpose(1, 0, 2), np.array(s_uni).reshape(K, got.shape[1], -1),
                                   rtol=RTOL, atol=0)
    # the same channels blended at every step: serial (seed, step, modality), batched (step, modality, seed)
    n = len(b_chan)
    blends = cfg.model.rtf and blended_channel_count(cfg.model.exchange_ratio, cfg.model.d_model) > 0
    assert n == (got.shape[1] if blends else 0) and len(s_chan) == K * n
    for k in range(K):
        for i in range(n):
            for mod, want in enumerate(s_chan[k * n + i]):
                assert b_chan[i][mod][k] == want, (SEEDS[k], i, mod)
    for s in SEEDS:
        a, b = tmp_path / "serial" / f"seed-{s}", tmp_path / "batched" / f"seed-{s}"
        assert sorted(p.name for p in b.rglob("*")) == sorted(p.name for p in a.rglob("*"))
        ca, cb = load_checkpoint(a / "checkpoints" / "last.pt"), load_checkpoint(b / "checkpoints" / "last.pt")
        assert ca["config_hash"] == cb["config_hash"] and ca["seed"] == cb["seed"] == s
        assert ca["scheduler"] == cb["scheduler"]
        assert ca["optimizer"]["param_groups"] == cb["optimizer"]["param_groups"]
        assert ca["best"]["epoch"] == cb["best"]["epoch"]
        assert ca["optimizer"][PACKED]["ids"].tolist() == cb["optimizer"][PACKED]["ids"].tolist()
        assert sorted(ca["optimizer"][PACKED]) == sorted(cb["optimizer"][PACKED])
        assert list(ca["model"]) == list(cb["model"])  # the unimodal heads' weights too, where there are any
        # the epoch's training loss (with the unimodal heads' term, where there is one)
        np.testing.assert_allclose([r["train_loss"] for r in cb["history"]],
                                   [r["train_loss"] for r in ca["history"]], rtol=RTOL, atol=0)
        if cfg.model.rtf:
            # validation blended the channels chosen on each seed's training rows, as the serial run did
            tracked = model_kw.get("selection") != "bn_gamma" and model_kw.get("selection_scope") != "sample"
            assert bool(ca["model"]["rtf.is_frozen"]) == bool(cb["model"]["rtf.is_frozen"]) == tracked
            assert ca["model"]["rtf.frozen_low"].tolist() == cb["model"]["rtf.frozen_low"].tolist()
        if "bn_gamma" not in variant:  # not with bn_gamma: eval mode's running statistics, see below
            np.testing.assert_allclose([r["val_loss"] for r in cb["history"]],
                                       [r["val_loss"] for r in ca["history"]], rtol=RTOL, atol=0)
        # the rank monitor: the same rows; the initial model's effective ranks equal to rounding
        ra, rb = _ranks(a), _ranks(b)
        assert [r[:3] for r in ra] == [r[:3] for r in rb]
        first = [i for i, r in enumerate(ra) if r[0] == "0"]
        np.testing.assert_allclose([rb[i][3] for i in first], [ra[i][3] for i in first], rtol=1e-6)
        if "bn_gamma" not in variant:
            # after training, too. Not with bn_gamma: BatchNorm removes any constant shift of its
            # input in training mode, so the bias feeding it has a zero gradient but for rounding,
            # which AdamW's normalised step turns into lr-sized moves (measured 1.7e-3 on
            # shared.bias), and eval mode (running statistics) sees them: 1e-3 in effective rank.
            np.testing.assert_allclose([r[3] for r in rb], [r[3] for r in ra], rtol=1e-4)


def test_serial_path_is_the_serial_trainer(tiny_data, tmp_path):
    cfg = config(1)
    batched.train_seeds(cfg, tiny_data, tmp_path / "forced", seed=SEEDS[:2], serial_seeds=True, progress=False)
    for s in SEEDS[:2]:
        one = train(cfg, tiny_data, tmp_path / f"one-{s}", seed=s, progress=False)
        a = load_checkpoint(one / "checkpoints" / "last.pt")
        b = load_checkpoint(tmp_path / "forced" / f"seed-{s}" / "checkpoints" / "last.pt")
        for k in a["model"]:  # the same computation on the same machine
            assert torch.equal(a["model"][k], b["model"][k]), k


def test_serial_reason():
    cfg = config(1)
    assert batched.serial_reason(cfg) is None

    class Ctx:
        pass

    assert "distributed" in batched.serial_reason(cfg, distributed=Ctx())
    # the collapse remedies (modality dropout, unimodal heads, OGM-GE) are batched, alone and together
    for kw in (dict(modality_dropout=0.3), dict(modality_dropout={"rgb": 1.0}), dict(unimodal_heads=0.5),
               dict(unimodal_heads=0.5, ogm=0.1), dict(modality_dropout=0.2, unimodal_heads=1.0, ogm=0.5)):
        for model in ({}, {"rtf": False}):
            assert batched.serial_reason(config(1, model, **kw)) is None, (kw, model)
    # an option the batched trainer does not know about, set away from its default, forces the serial path
    fields = batched.BATCHED_FIELDS["train"]
    batched.BATCHED_FIELDS["train"] = fields - {"grad_clip"}
    try:
        assert "train.grad_clip" in batched.serial_reason(config(1, grad_clip=0.5))
        assert batched.serial_reason(config(1)) is None  # at its default: batched
    finally:
        batched.BATCHED_FIELDS["train"] = fields


_KILL = """
import os, signal, sys
import rankfusion.train as T
from rankfusion.batched import train_seeds
from rankfusion.config import RunConfig
cfg = RunConfig.from_dict(__import__("json").loads(sys.argv[1]))
seeds, kill_epoch, kill_seed = {seeds!r}, int(sys.argv[3]), int(sys.argv[4])
save = T._save_epoch
def save_then_die(r, epoch, row):
    save(r, epoch, row)
    if epoch == kill_epoch and r.info["seed"] == kill_seed:
        os.kill(os.getpid(), signal.SIGKILL)
import rankfusion.batched as B
B._save_epoch = save_then_die
train_seeds(cfg, sys.argv[2], sys.argv[5], seed=seeds, progress=False)
"""


def _killed_run(cfg, data, out, epoch, seed):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    code = _KILL.format(seeds=SEEDS)
    res = subprocess.run([sys.executable, "-c", code, json.dumps(cfg.to_dict()), str(data), str(epoch), str(seed),
                          str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == -9, res.stderr  # killed by SIGKILL, not finished or failed


@pytest.mark.slow
@pytest.mark.parametrize("kill_seed", [SEEDS[-1], SEEDS[0]], ids=["after-all-seeds", "between-seeds"])
def test_kill9_then_resume_gives_the_uninterrupted_weights(tiny_data, tmp_path, kill_seed):
    torch.set_num_threads(1)
    cfg = config(3)
    ref = batched.train_seeds(cfg, tiny_data, tmp_path / "ref", seed=SEEDS, progress=False)
    cut = tmp_path / "cut"
    _killed_run(cfg, tiny_data, cut, 2, kill_seed)
    ck = {s: cut / f"seed-{s}" / "checkpoints" for s in SEEDS}
    assert {s: load_checkpoint(ck[s] / "last.pt")["epoch"] for s in SEEDS} == {s: 1 for s in SEEDS}
    # epoch 2 written by every seed (then committed on resume) or by the first only (then redone)
    written = SEEDS if kill_seed == SEEDS[-1] else SEEDS[:1]
    assert {s: (ck[s] / "last.pending.pt").exists() for s in SEEDS} == {s: s in written for s in SEEDS}
    batched.train_seeds(cfg, tiny_data, cut, seed=SEEDS, progress=False, resume=True)
    for s in SEEDS:
        a = load_checkpoint(ref / f"seed-{s}" / "checkpoints" / "last.pt")
        b = load_checkpoint(cut / f"seed-{s}" / "checkpoints" / "last.pt")
        assert a["epoch"] == b["epoch"] == 3 and a["best"] == b["best"]
        for k in a["model"]:
            assert torch.equal(a["model"][k], b["model"][k]), (s, k)
        drop = {"epoch_s", "epoch_cpu_s", "frames_per_s"}
        assert [{k: v for k, v in r.items() if k not in drop} for r in a["history"]] == \
            [{k: v for k, v in r.items() if k not in drop} for r in b["history"]]


def test_cli_batches_seeds_unless_told_not_to(tiny_data, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from rankfusion.cli import main

    calls = []
    real = batched._train_members  # the batched trainer's training step (train_seeds and train_batched)
    monkeypatch.setattr(batched, "_train_members", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    base = ["train", str(tiny_data), "--seeds", "1,10", "--epochs", "1", "--d-model", "8", "--layers", "1",
            "--batch-size", "4", "--sample-rate", "2", "--quiet", "--no-monitor"]
    res = CliRunner().invoke(main, base + ["--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert calls == [1] and (tmp_path / "b" / "seed-10" / "checkpoints" / "last.pt").exists()
    res = CliRunner().invoke(main, base + ["--out", str(tmp_path / "s"), "--serial-seeds"])
    assert res.exit_code == 0, res.output
    assert calls == [1] and (tmp_path / "s" / "seed-10" / "checkpoints" / "last.pt").exists()


@pytest.mark.slow
def test_batched_resume_of_seeds_left_at_different_epochs(tiny_data, tmp_path):
    # a serial run interrupted in its second seed: seed 1 finished, seed 10 at epoch 1. The batched
    # trainer resumes the serial checkpoints, bringing seed 10 level on its own first.
    cfg = config(3)
    ref = train(cfg, tiny_data, tmp_path / "ref", seed=[1, 10], progress=False)

    class Stop(Exception):
        pass

    def stop(epoch, row):
        if row["epoch"] == 1 and (tmp_path / "cut" / "seed-10" / "metrics.csv").exists():
            raise Stop

    with pytest.raises(Stop):
        train(cfg, tiny_data, tmp_path / "cut", seed=[1, 10], progress=False, on_epoch_end=stop)
    batched.train_seeds(cfg, tiny_data, tmp_path / "cut", seed=[1, 10], progress=False, resume=True)
    a1, b1 = (load_checkpoint(d / "seed-1" / "checkpoints" / "last.pt") for d in (ref, tmp_path / "cut"))
    assert all(torch.equal(a1["model"][k], b1["model"][k]) for k in a1["model"])  # finished: untouched
    a, b = (load_checkpoint(d / "seed-10" / "checkpoints" / "last.pt") for d in (ref, tmp_path / "cut"))
    assert a["epoch"] == b["epoch"] == 3
    keys = ("train_loss", "train_seg", "train_cls", "train_dur", "val_loss")
    np.testing.assert_allclose([[r[k] for k in keys] for r in b["history"]],
                               [[r[k] for k in keys] for r in a["history"]], rtol=RTOL, atol=0)


def test_every_seed_measures_the_monitors_videos_as_its_serial_run(tmp_path):
    # several validation videos of different lengths: the monitor's padded pass must keep each
    # seed's valid rows only (the same rows as the serial run, which measures its own R3D)
    from rankfusion.data import synthesize

    root = synthesize(tmp_path / "syn", seed=3, split_fractions=(0.4, 0.3, 0.3), n_videos=20, min_frames=60,
                      max_frames=110, channels={"rgb": 8, "depth": 6})
    cfg = config(1)
    train(cfg, root, tmp_path / "serial", seed=[1, 2, 3], progress=False)
    batched.train_seeds(cfg, root, tmp_path / "batched", seed=[1, 2, 3], progress=False)
    for s in (1, 2, 3):
        ra, rb = _ranks(tmp_path / "serial" / f"seed-{s}"), _ranks(tmp_path / "batched" / f"seed-{s}")
        assert len({r[2] for r in ra}) == 1 and int(ra[0][2]) > 60  # every epoch: all valid rows of ~6 videos
        assert [r[:3] for r in rb] == [r[:3] for r in ra], s
        # weights equal to float reordering after one epoch (as above)
        np.testing.assert_allclose([r[3] for r in rb], [r[3] for r in ra], rtol=1e-4)


def test_packed_layout_reads_and_writes_each_seeds_valid_steps():
    g = torch.Generator().manual_seed(0)
    K, B, T, C = 3, 4, 7, 5
    lengths = torch.randint(1, T + 1, (K, B), generator=g)
    mask = torch.arange(T)[None, None] < lengths[..., None]  # valid steps first, as collate pads
    pk = batched._Packed(mask)
    assert pk.N == int(lengths.sum(1).max())
    x = torch.randn(K, B, T, C, generator=g, requires_grad=True)
    packed = pk.pack(x)
    assert packed.shape == (K, pk.N, C)
    for k in range(K):
        n = int(lengths[k].sum())
        # the seed's valid steps first, video by video in time order; video and step of each row
        assert torch.equal(packed[k, :n], x[k][mask[k]])
        assert pk.video[k, :n].tolist() == torch.arange(B).repeat_interleave(lengths[k]).tolist()
        assert pk.step[k, :n].tolist() == torch.cat([torch.arange(int(n_)) for n_ in lengths[k]]).tolist()
        # the rest of the rows come from the seed's own padded steps
        assert not mask[k].reshape(-1)[pk.index[k * pk.N + n:(k + 1) * pk.N] - k * B * T].any()
    keep = torch.randn(K, B, 2, generator=g)
    assert torch.equal(pk.per_video(keep)[0, :int(lengths[0].sum())], keep[0].repeat_interleave(lengths[0], 0))
    # the positions are distinct: unpack writes every packed row back where it came from
    assert len(set(pk.index.tolist())) == K * pk.N
    back = pk.unpack(packed)
    assert torch.equal(back[mask], x[mask])
    written = torch.zeros(K * B * T, dtype=torch.bool)
    written[pk.index] = True
    assert not back.reshape(K * B * T, C)[~written].any()
    assert torch.equal(pk.pack(back), packed)
    # both are differentiable: the gradient reaches exactly the valid steps read
    (back * mask[..., None]).sum().backward()
    assert torch.equal(x.grad, mask[..., None].expand(K, B, T, C).to(x.dtype))


def test_dropout_masks_are_each_seeds_serial_draws_padded():
    """The masks drawn straight into the padded (K, ...) buffers are, bit for bit, what each seed's
    generator gives for the serial forward's shapes in its order (drawn on their own, then padded),
    and every generator ends in the same state."""
    import types

    import torch

    cfg = types.SimpleNamespace(dropout=0.1, d_model=8, modalities=("rgb", "depth"), n_heads=2, n_queries=3,
                                mlp_ratio=2, n_layers=2, temporal_fuser=True)
    lengths, B = [7, 11, 9], 4
    gens = [torch.Generator().manual_seed(s) for s in (1, 10, 13452)]
    refs = [torch.Generator().manual_seed(s) for s in (1, 10, 13452)]
    group = types.SimpleNamespace(config=types.SimpleNamespace(model=cfg), drop_gens=gens)
    got = batched._Group._draw_dropout(group, [{"mask": torch.ones(B, t, dtype=torch.bool)} for t in lengths])
    W, H, Q, hid, T = 16, 2, 3, 32, max(lengths)
    for k, (t, gen) in enumerate(zip(lengths, refs)):
        def draw(*shape):
            return torch.empty(shape).bernoulli_(0.9, generator=gen).div_(0.9)

        want = []
        for _ in range(2):
            want += [draw(B, H, t, t), draw(t, B, W).transpose(0, 1), draw(B, t, hid), draw(B, t, W)]
        want += [draw(B, H, Q, t), draw(Q, B, W).transpose(0, 1), draw(B, Q, hid), draw(B, Q, W)]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape[0] == 3 and all(n >= m for n, m in zip(g.shape[1:], w.shape))
            inside = (k,) + tuple(slice(0, n) for n in w.shape)
            assert torch.equal(g[inside], w)
            # zero beyond the seed's own steps
            rest = g[k].clone()
            rest[inside[1:]] = 0
            assert not rest.any()
    assert all(torch.equal(a.get_state(), b.get_state()) for a, b in zip(gens, refs))
    assert got[0].shape == (3, B, H, T, T) and got[1].shape == (3, B, T, W)


def test_grouped_linear_and_its_gradients():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    want = torch.einsum("kbti,koi->kbto", x, w) + b[:, None, None]
    torch.testing.assert_close(batched.grouped_linear(x, w, b), want, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(batched.grouped_linear, (x, w, b))
    # a slice of a stacked weight (the anticipation's split in-projection)
    wq, wkv = w.split([2, 4], dim=1)
    assert torch.autograd.gradcheck(lambda x, w: batched.grouped_linear(x, w, b[:, 2:]), (x, wkv))


def test_stacked_adamw_without_a_fused_cpu_kernel(tiny_data, tmp_path, monkeypatch):
    # torch before 2.4 has no fused AdamW on the CPU: the stacked optimiser takes the multi-tensor
    # path, the same element-wise update, and each seed's checkpoint still says how its serial
    # run steps
    real = torch.optim.AdamW

    def adamw(params, **kw):
        if kw.get("fused"):
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")
        return real(params, **kw)

    batched._stacked_adamw.cache_clear()
    monkeypatch.setattr(torch.optim, "AdamW", adamw)
    try:
        assert batched._stacked_adamw() == {"fused": None, "foreach": True}
        cfg = config(1)
        batched.train_seeds(cfg, tiny_data, tmp_path / "batched", seed=SEEDS[:2], progress=False)
        train(cfg, tiny_data, tmp_path / "serial", seed=SEEDS[:2], progress=False)
    finally:
        batched._stacked_adamw.cache_clear()
    for s in SEEDS[:2]:
        a = load_checkpoint(tmp_path / "serial" / f"seed-{s}" / "checkpoints" / "last.pt")
        b = load_checkpoint(tmp_path / "batched" / f"seed-{s}" / "checkpoints" / "last.pt")
        assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
        np.testing.assert_allclose([r["val_loss"] for r in b["history"]], [r["val_loss"] for r in a["history"]],
                                   rtol=RTOL, atol=0)


def test_a_kill_while_the_seeds_ranks_rows_are_written_is_made_up_on_resume(tiny_data, tmp_path, monkeypatch):
    # the batched run writes every seed's pending checkpoint, then the seeds' ranks.csv rows one by
    # one, then commits: a kill while the second seed's rows were written left every pending file,
    # so the resume committed epoch 2 and the later seeds' ranks.csv lacked it for good

    torch.set_num_threads(1)
    cfg = config(3)
    ref = batched.train_seeds(cfg, tiny_data, tmp_path / "ref", seed=SEEDS, progress=False)

    cut = tmp_path / "cut"
    _kill_while_ranks_written(cfg, tiny_data, cut, SEEDS, monkeypatch)
    assert all((cut / f"seed-{s}" / "checkpoints" / "last.pending.pt").exists() for s in SEEDS)
    assert {e for e, *_ in _ranks(cut / f"seed-{SEEDS[1]}")} == {"0", "1"}
    batched.train_seeds(cfg, tiny_data, cut, seed=SEEDS, progress=False, resume=True)
    for s in SEEDS:
        a, b = _ranks(ref / f"seed-{s}"), _ranks(cut / f"seed-{s}")
        assert [r[:3] for r in a] == [r[:3] for r in b], s
        assert [r[3] for r in a] == pytest.approx([r[3] for r in b], rel=1e-12), s


def _kill_while_ranks_written(cfg, data, cut, seeds, monkeypatch):
    """Train ``seeds`` batched into ``cut``, killed while epoch 2's ranks.csv rows are written, at the
    second seed's (every seed's last.pending.pt of epoch 2 already written)."""
    from rankfusion.monitor import EpochRanks

    class Killed(Exception):
        pass

    record = EpochRanks.record

    def die_at_2(self, model, epoch):
        if epoch == 2 and self.path.parent.name == f"seed-{seeds[1]}":
            raise Killed
        return record(self, model, epoch)

    with monkeypatch.context() as m:
        m.setattr(EpochRanks, "record", die_at_2)
        with pytest.raises(Killed):
            batched.train_seeds(cfg, data, cut, seed=seeds, progress=False)


def _kill_in_commit(cfg, data, cut, monkeypatch):
    """Train seeds 1 and 10 batched into ``cut``, killed between the renames of epoch 1's commit:
    seed 1's last.pt written, seed 10's last.pending.pt not yet renamed."""

    class Killed(Exception):
        pass

    replace = os.replace

    def die(src, dst):
        if Path(src).name == "last.pending.pt" and Path(dst).parent.parent.name == "seed-10":
            raise Killed
        replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", die)
        with pytest.raises(Killed):
            batched.train_seeds(cfg, data, cut, seed=[1, 10], progress=False, monitor=False)


def test_a_batched_run_killed_in_its_commit_resumed_one_seed_after_another(tiny_data, tmp_path, monkeypatch):
    # killed between the renames of epoch 1's commit: seed 1's last.pt written, seed 10's still
    # pending. --serial-seeds --resume ignored the pending file: seed 10 started again from scratch,
    # and its stale last.pending.pt stayed, for a later batched resume to rename over a newer last.pt
    cfg = config(2)
    cut = tmp_path / "cut"
    _kill_in_commit(cfg, tiny_data, cut, monkeypatch)
    assert load_checkpoint(cut / "seed-1" / "checkpoints" / "last.pt")["epoch"] == 1
    assert not (cut / "seed-10" / "checkpoints" / "last.pt").exists()
    trained = []
    batched.train_seeds(cfg, tiny_data, cut, seed=[1, 10], serial_seeds=True, progress=False, monitor=False,
                        resume=True, on_epoch_end=lambda epoch, row: trained.append(epoch))
    assert trained == [2, 2]  # the commit completed: both seeds resumed from epoch 1
    assert not list(cut.rglob("last.pending.pt"))
    for s in (1, 10):
        ck = load_checkpoint(cut / f"seed-{s}" / "checkpoints" / "last.pt")
        assert ck["epoch"] == 2 and [r["epoch"] for r in ck["history"]] == [1, 2]


def test_a_commit_interrupted_by_a_kill_is_completed_when_the_resume_adds_a_seed(tiny_data, tmp_path, monkeypatch):
    # killed between the renames of epoch 1's commit, resumed with a seed added: the new seed's
    # missing folder counted as a seed without the pending file, so seed 10's was deleted and seed
    # 10 started again from scratch while seed 1 went on from epoch 1
    cfg = config(2)
    cut = tmp_path / "cut"
    _kill_in_commit(cfg, tiny_data, cut, monkeypatch)
    trained = []
    batched.train_seeds(cfg, tiny_data, cut, seed=[1, 10, 7], progress=False, monitor=False, resume=True,
                        on_epoch_end=lambda epoch, row: trained.append(epoch))
    assert trained == [1, 2, 2, 2]  # seed 7's first epoch alone, then every seed's second
    assert not list(cut.rglob("last.pending.pt"))
    assert all(load_checkpoint(cut / f"seed-{s}" / "checkpoints" / "last.pt")["epoch"] == 2 for s in (1, 10, 7))


def test_a_kill_while_the_last_epochs_ranks_rows_are_written_is_made_up_on_resume(tiny_data, tmp_path, monkeypatch):
    # as above, in the final epoch: the resume committed it and had no epoch left to train, so the
    # later seeds' ranks.csv lacked the last epoch for good
    torch.set_num_threads(1)
    cfg = config(2)
    seeds = SEEDS[:2]
    ref = batched.train_seeds(cfg, tiny_data, tmp_path / "ref", seed=seeds, progress=False)

    cut = tmp_path / "cut"
    _kill_while_ranks_written(cfg, tiny_data, cut, seeds, monkeypatch)
    assert {e for e, *_ in _ranks(cut / f"seed-{seeds[1]}")} == {"0", "1"}
    batched.train_seeds(cfg, tiny_data, cut, seed=seeds, progress=False, resume=True)
    for s in seeds:
        assert load_checkpoint(cut / f"seed-{s}" / "checkpoints" / "last.pt")["epoch"] == 2
        a, b = _ranks(ref / f"seed-{s}"), _ranks(cut / f"seed-{s}")
        assert [r[:3] for r in a] == [r[:3] for r in b], s
        # the same weights measured in a batched pass of another set of seeds: float32 rounding of
        # the tokens (a few eps32 relative) moves an effective rank by about as much
        assert [r[3] for r in a] == pytest.approx([r[3] for r in b], rel=1e-5), s


def test_a_finished_serial_seed_killed_before_its_last_rows_is_completed_by_a_batched_resume(tiny_data, tmp_path,
                                                                                             monkeypatch):
    # a serial run of seeds [1, 10] died after seed 1's final last.pt, before its metrics.csv and
    # ranks.csv rows; the batched resume trained seed 10 but left seed 1's files without epoch 2
    cfg = config(2)
    ref = train(cfg, tiny_data, tmp_path / "ref", seed=[1, 10], progress=False)

    class Killed(Exception):
        pass

    write = train_mod._write_metrics

    def die(path, history):
        if path.parent.name == "seed-1" and len(history) == 2:
            raise Killed
        write(path, history)

    monkeypatch.setattr(train_mod, "_write_metrics", die)
    cut = tmp_path / "cut"
    with pytest.raises(Killed):
        train(cfg, tiny_data, cut, seed=[1, 10], progress=False)
    monkeypatch.setattr(train_mod, "_write_metrics", write)
    assert load_checkpoint(cut / "seed-1" / "checkpoints" / "last.pt")["epoch"] == 2
    assert {e for e, *_ in _ranks(cut / "seed-1")} == {"0", "1"}
    batched.train_seeds(cfg, tiny_data, cut, seed=[1, 10], progress=False, resume=True)
    timing = {"epoch_s", "epoch_cpu_s", "frames_per_s"}
    for s in (1, 10):
        rows = [[{k: v for k, v in r.items() if k not in timing} for r in csv.DictReader(open(d / f"seed-{s}" / "metrics.csv"))]
                for d in (ref, cut)]
        assert [r["epoch"] for r in rows[0]] == [r["epoch"] for r in rows[1]] == ["1", "2"], s
        if s == 1:  # the serial computation throughout, on the same machine: the same rows
            assert rows[0] == rows[1]
        a, b = _ranks(ref / f"seed-{s}"), _ranks(cut / f"seed-{s}")
        assert [r[:3] for r in a] == [r[:3] for r in b], s
    # seed 1's epoch 2 measured in a batched pass of its weights, the serial run on its module
    a, b = _ranks(ref / "seed-1"), _ranks(cut / "seed-1")
    assert [r[3] for r in a] == pytest.approx([r[3] for r in b], rel=1e-5)


@pytest.mark.parametrize("metric", ["val_loss", "val_moc"])
def test_a_blow_up_in_an_epochs_last_step_stops_the_batched_run_in_that_epoch(tiny_data, tmp_path, metric):
    # one step per epoch, no warm-up: the summed losses stay finite while the last step's update
    # overflows; validation then gave NaN (a seed's best epoch) or a decoder error naming no seed
    cfg = config(2, warmup_epochs=0, batch_size=64, lr=1e30, select_metric=metric)
    with pytest.raises(ValueError, match=r"^training seed 1 diverged in epoch 1: .*1e\+30.*\(the batched seeds stop together; "
                       r"--serial-seeds trains the seeds listed before it to the end\)$"):
        batched.train_seeds(cfg, tiny_data, tmp_path / "r", seed=[1, 10], progress=False, monitor=False)
    assert not list((tmp_path / "r").rglob("best.pt"))
