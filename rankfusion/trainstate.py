"""The resumable training state a checkpoint records: RNG states and the optimiser's state, as a few tensors.

``last.pt`` is written every epoch, so its cost counts. ``torch.save`` writes one record per tensor
and pickles every Python object on its own: the optimiser's per-parameter state (a step count and
two moment tensors per parameter) and the Python and NumPy RNG states (about 1,250 integers as a
list) used to make up most of a small model's checkpoint time. Here each of them is a few
tensors: the moments of all parameters concatenated into one tensor per kind, the step counts
stacked, the generators' integer states as integer tensors.

Both trainers (serial and batched seeds) write and read checkpoints through these functions, and
a checkpoint written before this layout (the optimiser's own ``state_dict``, the RNG states as
lists) still loads.
"""

from __future__ import annotations

import random

import numpy as np
import torch

#: Key of the packed optimiser state in a checkpoint's ``"optimizer"`` entry.
PACKED = "packed_state"


def rng_state() -> dict:
    """The process's RNG states: torch's (and CUDA's, once initialised), Python's and NumPy's global generators."""
    version, words, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "python": [version, torch.tensor(words, dtype=torch.int64), gauss],
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()  # dropout on the GPU draws from these
    return state


def set_rng_state(state: dict):
    """Restore :func:`rng_state`'s states (or those of an older checkpoint, which held lists)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, words, gauss = state["python"]
    random.setstate((version, tuple(int(w) for w in _ints(words)), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(_ints(keys), dtype=np.uint32), pos, has_gauss, cached))


def _ints(x):
    return x.tolist() if isinstance(x, torch.Tensor) else x


def pack_optimizer(sd: dict) -> dict:
    """An optimiser ``state_dict`` with its per-parameter state as one tensor per kind.

    Each kind of state (e.g. AdamW's ``exp_avg``, ``exp_avg_sq``, ``step``) becomes one tensor: the
    parameters' tensors flattened and concatenated in parameter order, or stacked where each
    parameter holds a 0-dimensional value (the step counts). The values are copied exactly;
    :func:`unpack_optimizer` restores the ``state_dict`` given the optimiser's parameters. A state
    this cannot pack exactly (kinds that differ between parameters, non-tensor values, mixed dtypes
    or devices within a kind) is returned unchanged.
    """
    state = sd["state"]
    ids = sorted(state)
    if not ids:
        return sd
    kinds = list(state[ids[0]])
    if any(list(state[i]) != kinds for i in ids):
        return sd
    packed = {"ids": torch.tensor(ids, dtype=torch.int64)}
    for kind in kinds:
        values = [state[i][kind] for i in ids]
        if not all(isinstance(v, torch.Tensor) for v in values) or \
                len({(v.dtype, v.device) for v in values}) != 1:
            return sd
        if all(v.dim() == 0 for v in values):
            packed["stacked." + kind] = torch.stack(values)
        else:
            packed["flat." + kind] = torch.cat([v.reshape(-1) for v in values])
    return {"param_groups": sd["param_groups"], PACKED: packed}


def unpack_optimizer(sd: dict, params) -> dict:
    """The optimiser ``state_dict`` of :func:`pack_optimizer`'s output, for an optimiser over ``params``
    (its parameters in order: ``[p for g in opt.param_groups for p in g["params"]]``); an unpacked
    ``state_dict`` is returned unchanged."""
    if PACKED not in sd:
        return sd
    packed = sd[PACKED]
    ids = packed["ids"].tolist()
    params = list(params)
    if not ids or max(ids) >= len(params):
        raise ValueError(f"the checkpoint's optimiser state names parameter {max(ids, default=-1)} "
                         f"but the optimiser has {len(params)}")
    state = {i: {} for i in ids}
    for key, value in packed.items():
        if key == "ids":
            continue
        layout, kind = key.split(".", 1)
        if layout == "stacked":
            for j, i in enumerate(ids):
                state[i][kind] = value[j].clone()
            continue
        sizes = [params[i].numel() for i in ids]
        if sum(sizes) != value.numel():
            raise ValueError(f"the checkpoint's optimiser state {kind!r} holds {value.numel()} values, "
                             f"the optimiser's parameters {sum(sizes)}")
        for i, part in zip(ids, torch.split(value, sizes)):
            state[i][kind] = part.reshape(params[i].shape).clone()
    return {"state": state, "param_groups": sd["param_groups"]}


def optimizer_params(opt) -> list:
    """The optimiser's parameters in ``state_dict`` order (the ids of its state)."""
    return [p for g in opt.param_groups for p in g["params"]]
