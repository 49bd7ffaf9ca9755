"""Multi-process data-parallel training over :mod:`torch.distributed`.

``transduce train CONFIG --nproc N`` spawns N worker processes on this machine;
``torchrun --nproc-per-node N -m transduce.cli train CONFIG`` (or any launcher that
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) does the
same. The backend is gloo on CPU and nccl on CUDA (device
``cuda:LOCAL_RANK``).

How one update works with N processes and ``train.accumulate = A``:

* Every rank builds the same batch list for the epoch (it is a pure function of
  seed and epoch); update k consumes batches ``[k*N*A, (k+1)*N*A)`` and rank r
  takes the r-th run of A consecutive ones. An incomplete tail group is dropped,
  so the position in the data is one number for all ranks and resume stays exact.
* The target tokens of the whole update are summed over the ranks *before* the
  backward passes, so every rank divides by the same count, then one all-reduce
  (sum) of the flattened gradients follows the local backward passes. N processes
  therefore compute the gradient one process computes over the same N*A batches
  with accumulation (up to the order of floating-point additions), and, as every
  rank then takes the same optimizer step, the replicas stay identical.

Why one explicit all-reduce and not ``DistributedDataParallel``: the trainer calls
``encode``/``decode`` and the auxiliary losses (CTC head, coverage) outside any
single ``forward``; some configs leave parameters unused (a CTC head without the
CTC loss), which DDP only tolerates with ``find_unused_parameters`` (a graph walk
every step) and ``static_graph`` breaks under ``no_sync`` (the accumulation case).
A single all-reduce per update has none of these cases, needs no wrapper module
and no ``no_sync``, and costs the same communication as DDP with ``no_sync``; what
it gives up is DDP's overlap of communication with the backward pass, which
matters for large models on many GPUs, not for the model sizes here.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from transduce.config import Config, TransduceError

# Rank 0 validates while the others wait at a collective; allow long validations.
TIMEOUT = datetime.timedelta(hours=2)
_device = torch.device("cpu")  # where collectives put their tensors (cuda for nccl)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes; the default is one process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1  # processes on this machine

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @classmethod
    def from_env(cls) -> World:
        """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (set by torchrun or :func:`spawn`)."""
        env = os.environ
        if "WORLD_SIZE" not in env:
            return cls()
        try:
            size = int(env["WORLD_SIZE"])
            rank = int(env.get("RANK", "0"))
            local_rank = int(env.get("LOCAL_RANK", str(rank)))
            local_size = int(env.get("LOCAL_WORLD_SIZE", str(size)))
        except ValueError:
            raise TransduceError(
                "RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE must be integers"
            ) from None
        if not 0 <= rank < size:
            raise TransduceError(f"RANK={rank} is not in [0, WORLD_SIZE={size})")
        return cls(rank, size, local_rank, local_size)


def setup(world: World, device: torch.device) -> bool:
    """Join the process group if ``world`` has several processes; True if this call joined."""
    global _device
    if not world.distributed or dist.is_initialized():
        return False
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise TransduceError(f"multi-process training needs {name} in the environment")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        rank=world.rank,
        world_size=world.size,
        timeout=TIMEOUT,
    )
    _device = device
    return True


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


# -- collectives: all are no-ops in a single process ----------------------------------


def barrier() -> None:
    if _active():
        dist.barrier()


def all_reduce_sum(value: float | int) -> float | int:
    """The sum of ``value`` over all ranks (float64, so token counts stay exact)."""
    if not _active():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=_device)
    dist.all_reduce(t)
    return int(t.item()) if isinstance(value, int) else float(t.item())


def broadcast_number(value: float) -> float:
    """Rank 0's ``value`` on every rank."""
    if not _active():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=_device)
    dist.broadcast(t, src=0)
    return float(t.item())


def broadcast_flag(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank (stop decisions must agree)."""
    return bool(broadcast_number(float(flag))) if _active() else flag


def gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank; ``[obj]`` in one process."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (in place)."""
    if not _active():
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():  # views of the parameters
            dist.broadcast(tensor, src=0)


def all_reduce_gradients(module: nn.Module) -> None:
    """Sum the gradients over all ranks with one flat all-reduce.

    A parameter without a gradient on some ranks counts zero there; one without a
    gradient on every rank keeps ``grad = None``, as in a single process (so the
    optimizer skips it exactly as it would there).
    """
    if not _active():
        return
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        return
    used = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)
    flat = torch.cat(
        [
            (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
            for p in params
        ]
        + [used.to(params[0].device)]
    )
    dist.all_reduce(flat)
    offset = 0
    counts = flat[-len(params) :].tolist()
    for p, count in zip(params, counts):
        n = p.numel()
        if count == 0:
            p.grad = None
        else:
            chunk = flat[offset : offset + n].view_as(p)
            if p.grad is None:
                p.grad = chunk.to(p.dtype).clone()
            else:
                p.grad.copy_(chunk)
        offset += n


# -- launching N local processes -------------------------------------------------------


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(
    local_rank: int, nproc: int, port: int, cfg: Config, run_dir: str, resume: bool, talk: str
) -> None:
    """One spawned process: set the torchrun-style environment, train, report back."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(local_rank),
        WORLD_SIZE=str(nproc),
        LOCAL_RANK=str(local_rank),
        LOCAL_WORLD_SIZE=str(nproc),
    )
    from transduce.training.trainer import Trainer

    try:
        summary = Trainer(cfg, run_dir, resume=resume, world=World.from_env()).fit()
    except TransduceError as e:
        # the parent prints it as one `error:` line; the other ranks are stopped by spawn
        (Path(talk) / f"error-rank{local_rank}.txt").write_text(str(e), encoding="utf-8")
        sys.exit(2)
    if local_rank == 0:
        (Path(talk) / "summary.json").write_text(json.dumps(summary), encoding="utf-8")


def spawn(nproc: int, cfg: Config, run_dir: str | Path, resume: bool = False) -> dict:
    """Train ``cfg`` with ``nproc`` processes on this machine; return rank 0's summary.

    The processes rendezvous on a free loopback port (``MASTER_ADDR=127.0.0.1``).
    With CUDA, process r uses ``cuda:r``. A :class:`TransduceError` in any process
    is raised here with its message.
    """
    import torch.multiprocessing as mp

    if nproc < 1:
        raise TransduceError(f"--nproc must be at least 1, got {nproc}")
    from transduce.training.trainer import resolve_device

    device = resolve_device(cfg.train.device)
    if device.type == "cuda" and nproc > torch.cuda.device_count():
        raise TransduceError(
            f"--nproc {nproc} needs {nproc} CUDA devices, this machine has "
            f"{torch.cuda.device_count()}; use fewer processes or train.device=cpu"
        )
    with tempfile.TemporaryDirectory(prefix="transduce-spawn-") as talk:
        try:
            mp.spawn(
                _worker,
                args=(nproc, free_port(), cfg, str(run_dir), resume, talk),
                nprocs=nproc,
                join=True,
            )
        except (mp.ProcessRaisedException, mp.ProcessExitedException):
            errors = sorted(Path(talk).glob("error-rank*.txt"))
            if errors:
                raise TransduceError(errors[0].read_text(encoding="utf-8")) from None
            raise
        return json.loads((Path(talk) / "summary.json").read_text(encoding="utf-8"))
