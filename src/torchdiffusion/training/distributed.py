"""Multi-process training on PyTorch DistributedDataParallel, launched by ``torchrun``.

``torchrun --nproc_per_node N -m torchdiffusion.cli train ...`` sets RANK, WORLD_SIZE and
LOCAL_RANK; :func:`init` then joins the process group (gloo on CPU, NCCL on CUDA). Every
rank draws the same global batch from the same seeded generator and keeps its own slice, so
a run on N processes computes the same gradient as one process with the same global batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from torchdiffusion.errors import ConfigError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init(device: str) -> DistInfo:
    """Join the process group if launched by torchrun; a single-process DistInfo otherwise."""
    if not launched_by_torchrun():
        return DistInfo()
    world = int(os.environ["WORLD_SIZE"])
    if world == 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
    return DistInfo(rank, world, local)


def check_batch(batch_size: int, world_size: int, grad_accum: int) -> int:
    """The per-rank micro-batch, or a clear error when the global batch does not split."""
    if batch_size % (world_size * grad_accum):
        raise ConfigError(f"--batch-size {batch_size} does not divide over {world_size} processes × "
                          f"{grad_accum} accumulation steps; use a multiple of {world_size * grad_accum}")
    return batch_size // (world_size * grad_accum)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def any_rank(flag: bool, info: DistInfo, device) -> bool:
    """True on every rank if ``flag`` is true on rank 0 (rank 0 decides, e.g. a time budget)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def max_over_ranks(value: int, info: DistInfo, device) -> int:
    """The largest ``value`` over all ranks, on every rank (an all-reduce MAX; e.g. the number of
    a stop signal that reached any one process: a signal sent to rank 3 alone stops every rank)."""
    if not info.enabled:
        return int(value)
    t = torch.tensor([float(value)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def max_weight_difference(module: torch.nn.Module, info: DistInfo) -> float:
    """max |θ_rank - θ_rank0| over all parameters and ranks (0 means identical replicas)."""
    if not info.enabled:
        return 0.0
    worst = torch.zeros(1, device=next(module.parameters()).device)
    for p in module.parameters():
        ref = p.detach().clone()
        dist.broadcast(ref, src=0)
        worst = torch.maximum(worst, (p.detach() - ref).abs().max().reshape(1))
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst.item())


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
