"""Started by torchrun from tests/test_ddp.py (not a test module itself).

``python -m torch.distributed.run ... tests/ddp_worker.py checks OUT.json``: the distributed pieces
against their single-process counterparts on each rank. ``... train DATA RUN CONFIG.json
[--stop-after K] [--resume]``: a distributed training run, optionally interrupted after epoch K.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch


class Interrupt(Exception):
    pass


def run_train(data, run, config_json, stop_after=None, resume=False):
    from rankfusion.config import RunConfig
    from rankfusion.distributed import setup, teardown
    from rankfusion.train import train

    cfg = RunConfig.from_dict(json.loads(open(config_json).read()))
    ctx, dev = setup("cpu")

    def stop(epoch, row):
        if stop_after is not None and epoch == stop_after:
            raise Interrupt

    try:
        train(cfg, data, run, seed=1, device=dev, resume=resume, progress=False, on_epoch_end=stop,
              distributed=ctx)
    except Interrupt:
        pass  # every process stops after the same epoch
    except BaseException:
        teardown()  # no barrier: the other processes may never reach it
        raise
    # a process that tears down while another still talks to it can abort at exit
    teardown(wait=True)


def checks(out_json, data):
    """RTF's global selection vs one process on the concatenated batch; sharded MoC vs whole MoC."""
    import torch.distributed as dist

    from rankfusion.config import R3DConfig, RunConfig, TrainConfig
    from rankfusion.data import open_dataset
    from rankfusion.distributed import setup, teardown
    from rankfusion.model import R3D, RankEnhancingTokenFuser
    from rankfusion.evaluate import moc_grid
    from rankfusion.train import resolve_config

    ctx, dev = setup("cpu")
    res = {}
    g = torch.Generator().manual_seed(0)
    # two modalities, 3 videos on rank 0 and 2 on rank 1 (unequal batches), 16 channels
    # rank 0's videos are weak in the low channels, rank 1's in the high ones: the processes'
    # own batches disagree about the low-informativeness set, the whole batch decides otherwise
    scale = torch.cat([torch.linspace(0.1, 3.0, 16).expand(3, 1, 16), torch.linspace(4.0, 0.2, 16).expand(2, 1, 16)])
    x_all = [torch.randn(5, 7, 16, generator=g) * scale for _ in range(2)]
    m_all = torch.rand(5, 7, generator=g) < 0.8
    m_all[:, 0] = True
    rows = slice(0, 3) if ctx.rank == 0 else slice(3, 5)
    for k in (None, 3):
        fuser = RankEnhancingTokenFuser(("a", "b"), 16, exchange_ratio=0.25, informativeness_k=k).train()
        whole = [t.tolist() for t in fuser.select(x_all, m_all)]
        local = [t.tolist() for t in fuser.select([x[rows] for x in x_all], m_all[rows])]
        fuser.stats_group = dist.group.WORLD
        glob = [t.tolist() for t in fuser.select([x[rows] for x in x_all], m_all[rows])]
        res[f"k={k}"] = {"whole": whole, "global": glob, "local": local}
    # MoC: each rank counts its share of the val videos; the summed tables give the whole MoC
    ds = open_dataset(data)
    cfg = resolve_config(RunConfig(model=R3DConfig(modalities=("rgb", "depth"), d_model=8, n_heads=2, n_layers=1),
                                   train=TrainConfig(sample_rate=2)), ds)
    torch.manual_seed(5)
    model = R3D(cfg.model).eval()
    res["moc_whole"] = {str(k): v for k, v in moc_grid(model, ds, "test", cfg, dev).items()}
    res["moc_sharded"] = {str(k): v for k, v in moc_grid(model, ds, "test", cfg, dev, ctx=ctx).items()}
    # with the channels chosen on training rows the videos go in padded batches: the processes
    # share out the same batches, so the summed tables are again exactly the whole MoC
    feats = [torch.randn(4, 30, d, generator=g) for d in (ds.channels("rgb"), ds.channels("depth"))]
    model.train()
    with torch.no_grad():
        model(dict(zip(("rgb", "depth"), feats)), torch.ones(4, 30, dtype=torch.bool))
    model.eval()
    res["batched"] = bool(model.videos_independent)
    res["moc_whole_batched"] = {str(k): v for k, v in moc_grid(model, ds, "test", cfg, dev).items()}
    res["moc_sharded_batched"] = {str(k): v for k, v in moc_grid(model, ds, "test", cfg, dev, ctx=ctx).items()}
    if ctx.is_main:
        with open(out_json, "w") as fh:
            json.dump(res, fh)
    teardown(wait=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "checks":
        checks(sys.argv[2], sys.argv[3])
    else:
        args = sys.argv[2:]
        stop = int(args[args.index("--stop-after") + 1]) if "--stop-after" in args else None
        run_train(args[0], args[1], args[2], stop_after=stop, resume="--resume" in args)
