"""Distributed data-parallel training under ``torchrun`` (``torch.distributed``, DDP).

``torchrun --nproc_per_node N -m rankfusion train DATA --out RUN ...`` starts N copies of the
command; each finds its place in the job from the environment torchrun sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and
:func:`rankfusion.train.train` runs the distributed path (docs/scaling.md):

- every process holds a replica; ``DistributedDataParallel`` all-reduces (averages) gradients;
- a ``DistributedSampler`` (seed = the run's seed, ``set_epoch`` each epoch) gives each process
  every N-th sample of one permutation, so one step's N per-process batches of B samples are the
  batch of N*B samples one process would take from that permutation;
- losses are normalised by counts summed over processes (tokens, queries), so the averaged
  gradient is the gradient of the loss of the whole distributed batch;
- RTF's channel selection uses the statistic summed over processes (``rtf_stats="global"``) or
  each process's own batch (``"local"``);
- validation shards the videos over processes and sums loss totals and MoC count tables with
  all-reduce (MoC pools counts over videos, so the result is the single-process one);
- rank 0 writes every file (atomically, as a single-process run does).

Without torchrun (``WORLD_SIZE`` unset) nothing here is used: the single-process code path is
the one that reproduces the paper's runs.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

from ._validation import InputError, check_choice

#: What a distributed batch means for RTF's channel selection (docs/scaling.md).
RTF_STATS = ("global", "local")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a distributed job.

    Attributes
    ----------
    rank, world_size, local_rank : int
        From torchrun's environment.
    backend : {"gloo", "nccl"}
    rtf_stats : {"global", "local"}
        ``"global"``: RTF's selection statistic is summed over processes (N x B selects as one
        process with batch N*B). ``"local"``: each process selects from its own B videos.
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str
    rtf_stats: str = "global"

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes files and reports."""
        return self.rank == 0

    def describe(self) -> dict:
        """What a run records about its distribution (config.json and checkpoints)."""
        return {"world_size": self.world_size, "backend": self.backend, "rtf_stats": self.rtf_stats}


def under_torchrun() -> bool:
    """True when this process was started by torchrun (or another launcher that sets ``WORLD_SIZE``)."""
    return "WORLD_SIZE" in os.environ


def _env_int(name: str, default=None) -> int:
    value = os.environ.get(name, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"environment variable {name} must be an integer, got {value!r}") from None


def setup(device: str = "cpu", *, rtf_stats: str = "global", backend: str | None = None):
    """Join the torchrun job: ``init_process_group`` and this process's device.

    Parameters
    ----------
    device : str
        ``"cpu"`` (backend ``gloo``) or ``"cuda"`` (backend ``nccl``, device ``cuda:LOCAL_RANK``).
    rtf_stats : {"global", "local"}
    backend : {"gloo", "nccl"}, optional
        Overrides the choice above.

    Returns
    -------
    (DistContext, torch.device)
    """
    import torch
    import torch.distributed as dist

    check_choice(rtf_stats, "rtf_stats", set(RTF_STATS))
    rank, world, local = _env_int("RANK", 0), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK", 0)
    dev_type = "cuda" if str(device).startswith("cuda") or (device == "auto" and torch.cuda.is_available()) \
        else "cpu"
    if backend is not None:
        check_choice(backend, "backend", {"gloo", "nccl"})
    if dev_type == "cuda":
        # a machine's own condition: its first process says it (every process of a machine sees it)
        if not torch.cuda.is_available():
            _refuse_once(f"device {device!r} requested but CUDA is not available on this machine", speaks=local == 0)
        n_gpus = torch.cuda.device_count()
        if local >= n_gpus:
            # only the processes beyond the GPUs see it: the first of them says it
            _refuse_once(f"LOCAL_RANK {local} but this machine has {n_gpus} GPU(s): "
                         "use --nproc_per_node <= the number of GPUs", speaks=local == n_gpus)
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        if backend == "nccl":
            # the command line's own condition, alike everywhere: rank 0 says it
            _refuse_once("--dist-backend nccl runs on GPUs: add --device cuda, or use gloo on CPUs", speaks=rank == 0)
        dev = torch.device("cpu")
    backend = backend or ("nccl" if dev_type == "cuda" else "gloo")
    if not dist.is_initialized():
        kw = {"device_id": dev} if backend == "nccl" else {}
        dist.init_process_group(backend, rank=rank, world_size=world, **kw)
    return DistContext(rank, world, local, backend, rtf_stats), dev


# How long a process that found an error another process says waits to be stopped by the launcher.
STAND_DOWN_S = 30.0


def _refuse_once(message: str, *, speaks: bool):
    """A user error several processes find: the one chosen to say it raises it (one ``Error:`` line),
    the others stand down quietly (:func:`_stand_down`). Before the job is joined the caller chooses
    the speaker; after it, :func:`refuse` chooses rank 0."""
    if speaks:
        raise InputError(message)
    _stand_down()


@contextlib.contextmanager
def said_once():
    """Around reading the command line's configuration and data, which every process reads alike:
    under torchrun a user error raised inside is said by rank 0 alone, the other processes stand
    down (:func:`_refuse_once`); outside torchrun it propagates unchanged."""
    try:
        yield
    except InputError as exc:
        if not under_torchrun():
            raise
        _refuse_once(str(exc), speaks=_env_int("RANK", 0) == 0)


def _stand_down():
    """Leave the error to the process that says it: wait for the launcher to stop this one, then
    exit with status 2 quietly.

    Exiting at once would race the speaker: torchrun stops every process as soon as one fails,
    and a quiet process that fails first gets the speaker stopped before its line is written.
    The speaker exits with status 2 after its line, torchrun stops the others; a launcher that
    does not stop them gets status 2 from each after :data:`STAND_DOWN_S` seconds.
    """
    time.sleep(STAND_DOWN_S)
    raise SystemExit(2)


def teardown(*, wait: bool = False) -> None:
    """Leave the job (``destroy_process_group``) if this process joined one.

    ``wait=True`` (after a run every process finished) first waits for every process at a barrier,
    so that no process tears down its communication threads while another still talks to it (a
    process that leaves early can abort at exit). After an error there is no barrier: the other
    processes may never reach it.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(values, dev):
    """Sum a list of numbers (or a tensor) over all processes; float64 on ``dev``."""
    import torch
    import torch.distributed as dist

    t = values if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=torch.float64)
    t = t.to(dev).contiguous()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_list(values, dev) -> list:
    """:func:`all_reduce_sum` of a list of numbers, back as a list of Python floats."""
    return all_reduce_sum(values, dev).cpu().tolist()


def broadcast(obj, ctx: DistContext, dev):
    """Rank 0's ``obj`` on every process (pickled; for checkpoints and decisions)."""
    import torch.distributed as dist

    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0, device=dev if ctx.backend == "nccl" else None)
    return box[0]


def gather(obj, ctx: DistContext):
    """Every process's ``obj`` as a list indexed by rank (on every process)."""
    import torch.distributed as dist

    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def agree(check, ctx: DistContext, dev):
    """Run ``check()`` on rank 0 and share its verdict, so that every process stops together.

    A user error (``InputError``/``ValueError``) raised by ``check`` is re-raised on rank 0 (one
    ``Error:`` line from the CLI) while the other processes stand down quietly. Returns
    what ``check`` returned, on every process.
    """
    result = error = None
    if ctx.is_main:
        try:
            result = check()
        except (InputError, ValueError) as exc:
            error = exc
    verdict = broadcast((result, None if error is None else str(error)), ctx, dev)
    if verdict[1] is not None:
        if error is not None:
            raise error
        _stand_down()
    return verdict[0]


def refuse(message: str, ctx: DistContext):
    """A user error every process detects alike: rank 0 raises it, the others stand down quietly."""
    _refuse_once(message, speaks=ctx.is_main)


def shard(items, ctx: DistContext | None) -> list:
    """This process's share of ``items`` (every ``world_size``-th, from ``rank``); all without ``ctx``."""
    items = list(items)
    return items if ctx is None else items[ctx.rank::ctx.world_size]
