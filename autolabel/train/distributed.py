"""This process's place in a (possibly single-process) torchrun job and the few collectives training needs.

Every helper is a no-op (or the single-process answer) outside a distributed job, so the loop calls them
unconditionally.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun job described by ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` if there is one.

    ``device`` is the resolved ``train.device``. gloo on CPU, nccl on CUDA (one GPU per process,
    ``cuda:LOCAL_RANK``). An already initialised process group (e.g. set up by a test) is used as it is.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 and not dist.is_initialized():
        return DistInfo(device=device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)


def barrier(info: DistInfo) -> None:
    """Wait for every rank (nothing to wait for in a single process)."""
    if info.distributed:
        dist.barrier()


def gather_object(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` in rank order, collected on every rank (every rank must call this)."""
    if not info.distributed:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (the model itself when there is none)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def average_buffers(model: nn.Module, info: DistInfo) -> None:
    """Average float buffers (BN running statistics) across ranks.

    DDP keeps parameters in sync but each rank's BN statistics drift apart between the broadcasts at the
    start of each forward; averaging them before validating or saving gives every rank the same model as the
    checkpoint (and a better estimate than rank 0's alone).
    """
    if not info.distributed:
        return
    for buffer in unwrap(model).buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer.div_(info.world_size)
