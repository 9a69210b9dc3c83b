"""This process's place in a (possibly single-process) distributed job and the few collectives training needs.

Every helper is a no-op (or the single-process answer) outside a distributed job, so the loop calls them
unconditionally. A job is what torchrun describes with ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``, or what
``srun`` describes with ``SLURM_PROCID``/``SLURM_NTASKS`` (then ``MASTER_ADDR``/``MASTER_PORT`` must be set by
the batch script); each process takes the GPU of its local rank (:func:`autolabel.models.device.select_device`).
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from autolabel.errors import ConfigError
from autolabel.models.device import in_slurm_step, resolve_device

log = logging.getLogger(__name__)

# rank 0 computes the class centroids of the fine labels while the others wait in a barrier; NCCL's default
# of 10 minutes can run out for a large training set on a slow file system, and then kills the run
PROCESS_GROUP_TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this process started the process group (and so ends it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def job_from_env(env: Mapping[str, str]) -> tuple[int, int]:
    """``(rank, world_size)`` of this process in the job its launcher started, else ``(0, 1)``.

    torchrun: ``RANK``/``WORLD_SIZE``. Launchers that do not set those count only where ``MASTER_ADDR`` says
    where rank 0 listens (set it, and ``MASTER_PORT``, in the batch script): an ``srun`` step's
    ``SLURM_PROCID``/``SLURM_NTASKS`` and Open MPI's ``OMPI_COMM_WORLD_RANK``/``OMPI_COMM_WORLD_SIZE``. A
    batch script itself is no step (:func:`~autolabel.models.device.in_slurm_step`): a single process there
    trains alone.
    """
    pairs = [("RANK", "WORLD_SIZE")]
    if "MASTER_ADDR" in env:
        if in_slurm_step(env):
            pairs.append(("SLURM_PROCID", "SLURM_NTASKS"))
        pairs.append(("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"))
    for rank_key, size_key in pairs:
        if rank_key in env and size_key in env:
            try:
                return int(env[rank_key]), int(env[size_key])
            except ValueError:
                raise ConfigError(
                    f"{rank_key}={env[rank_key]!r}, {size_key}={env[size_key]!r}: expected integers"
                ) from None
    return 0, 1


def init_distributed(device_option: str) -> DistInfo:
    """Join the distributed job this process belongs to, if there is one, on the device it should use.

    ``device_option`` is ``train.device``; each process gets the GPU of its local rank (``LOCAL_RANK``,
    ``SLURM_LOCALID`` or ``OMPI_COMM_WORLD_LOCAL_RANK``), made current before NCCL starts. gloo on CPU, nccl on
    CUDA. An already initialised process group (e.g. set up by a test) is used as it is.
    """
    device = resolve_device(device_option)
    rank, world_size = job_from_env(os.environ)
    if world_size <= 1 and not dist.is_initialized():
        return DistInfo(device=device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            rank=rank,
            world_size=world_size,
            timeout=PROCESS_GROUP_TIMEOUT,
            device_id=device if device.type == "cuda" else None,
        )
    log.info("rank %d of %d on %s", dist.get_rank(), dist.get_world_size(), device)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device, owns_group=owns)


def finish_distributed(info: DistInfo) -> None:
    """End the process group this process started (NCCL warns about, and may hang on, one left open)."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


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
