"""Choosing the device and precision a process computes with, and process-wide settings for running on a CPU.

:func:`select_device` turns the ``device`` option and the launcher's environment into this process's device:
one GPU per process, always (docs/usage.md, "GPUs"). :func:`resolve_device` calls it with this process's own
environment and GPU count. :func:`resolve_precision` turns a ``precision`` option into an autocast dtype.

glibc hands every freed block over its mmap threshold (at most 32 MB) straight back to the kernel, so a
multi-scale forward that frees and re-allocates 19 x H x W float logit maps (40 MB at 512x1024) faults fresh
zeroed pages in on every call. On the tiny teacher at 256x512 with scales 0.5/1/2 that page faulting was 28 %
of the forward's CPU time (96 of 345 ms) and nearly all of what the hierarchical fusion seemed to add over
the single-scale forwards (``make bench``: hierarchical_overhead). With mmap off and a high trim threshold
freed blocks stay mapped and are reused; peak RSS grew by 15 MB in that measurement.

The price is fragmentation on huge single images: labelling a 2048x1024 image whole at scales up to 2.0 peaked
at 1.6 GB instead of 1.2 GB (tiled: 0.43 GB, ``make bench`` tiled_memory). To opt out, start the process with
``MALLOC_MMAP_MAX_`` set to anything but 0 (e.g. 65536, glibc's default): it is then left alone. A process
that computes on a GPU does not need it and leaves it alone too.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import typing
from collections.abc import Mapping
from typing import Literal

import torch

from autolabel.errors import ConfigError

log = logging.getLogger(__name__)

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB of freed memory at the top of the heap
# glibc reads these at process start: child processes (DataLoader, Dask and demo workers) inherit them
ALLOCATOR_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}

# where launchers put a process's index on its node: torchrun, SLURM's srun, Open MPI's mpirun (in this order)
LOCAL_RANK_VARIABLES = ("LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK")
# what srun sets in each task of a step (older releases: SLURM_STEPID); a batch script has none of them
SLURM_STEP_VARIABLES = ("SLURM_STEP_ID", "SLURM_STEPID", "SLURM_STEP_NUM_TASKS")
Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")


def keep_freed_memory(device: torch.device | None = None) -> bool:
    """Make glibc's malloc reuse freed large blocks in this process and the processes it starts.

    Only for processes that compute on the CPU: with a CUDA ``device`` (or, when ``device`` is None, on a
    machine where CUDA devices are visible) it does nothing, since the big tensors then live on the GPU and the
    setting would only keep host memory mapped. Leaves everything alone where a user already chose
    (``MALLOC_MMAP_MAX_`` set) and off Linux; returns whether this process now runs with the setting.
    """
    if not sys.platform.startswith("linux"):
        return False
    if "MALLOC_MMAP_MAX_" in os.environ:  # the user's choice, applied by glibc at start-up
        return os.environ["MALLOC_MMAP_MAX_"] == "0"
    on_gpu = device.type == "cuda" if device is not None else torch.cuda.device_count() > 0
    if on_gpu:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl without mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    applied = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if applied:
        os.environ.update(ALLOCATOR_ENV)
    log.debug("malloc keeps freed memory: %s", applied)
    return applied


# ---------------------------------------------------------------------------------------------------------
# device selection


def in_slurm_step(env: Mapping[str, str]) -> bool:
    """Whether this process is a task of an ``srun`` step. A batch script is not, though its environment carries
    ``SLURM_PROCID=0`` and ``SLURM_LOCALID=0`` for the whole allocation: read as a rank there, every process the
    script starts itself (``make -j 8 generate``) would take GPU 0 and label shard 0."""
    return any(name in env for name in SLURM_STEP_VARIABLES)


def local_rank(env: Mapping[str, str]) -> tuple[str, int] | None:
    """``(variable, value)`` of the first launcher variable naming this process's index on its node, or None
    (``SLURM_LOCALID`` counts only inside an ``srun`` step, :func:`in_slurm_step`)."""
    for name in LOCAL_RANK_VARIABLES:
        if name == "SLURM_LOCALID" and not in_slurm_step(env):
            continue
        if name in env:
            try:
                value = int(env[name])
            except ValueError:
                raise ConfigError(f"{name}={env[name]!r}: expected a non-negative integer") from None
            if value < 0:
                raise ConfigError(f"{name}={value}: expected a non-negative integer")
            return name, value
    return None


def select_device(
    option: str,
    env: Mapping[str, str],
    cuda_count: int,
    *,
    slot: int | None = None,
    own_gpu_required: bool = False,
) -> torch.device:
    """This process's device for the ``device`` option ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (pure).

    Args:
        option: the option; ``auto`` is CUDA when a GPU is visible, else the CPU.
        env: the process environment: the launchers' local-rank variables (:data:`LOCAL_RANK_VARIABLES`) and
            ``CUDA_VISIBLE_DEVICES``.
        cuda_count: how many GPUs this process sees (``torch.cuda.device_count()``, which honours
            ``CUDA_VISIBLE_DEVICES``).
        slot: this process's index among processes that share the node without a launcher, e.g. the shard
            index of ``make -j N generate``; GPU ``slot mod cuda_count``.
        own_gpu_required: the process is one of several started on the node by something that names no index
            (a Dask worker): with several GPUs visible and no ``CUDA_VISIBLE_DEVICES`` there is no way to tell
            which is its own, so that is refused rather than putting every worker on GPU 0.

    With CUDA the GPU is, in order: the index ``N`` of ``cuda:N``; the launcher's local rank (``LOCAL_RANK``,
    ``SLURM_LOCALID`` inside an srun step, ``OMPI_COMM_WORLD_LOCAL_RANK``); ``slot``; else the first visible
    GPU. A local rank beyond the visible GPUs wraps round only when ``CUDA_VISIBLE_DEVICES`` is set (a
    launcher that gives each process its own GPUs, e.g. ``srun --gpus-per-task``); otherwise more processes
    than GPUs were started on the node, and that is a :class:`ConfigError`.
    """
    kind, _, index_text = option.partition(":")
    if kind not in ("auto", "cpu", "cuda") or (index_text and kind != "cuda"):
        raise ConfigError(f"device {option!r}: expected auto, cpu, cuda or cuda:N")
    if kind == "cpu" or (kind == "auto" and cuda_count == 0):
        return torch.device("cpu")
    if cuda_count == 0:
        visible = env.get("CUDA_VISIBLE_DEVICES")
        hint = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        raise ConfigError(f"device {option!r}: this process sees no CUDA device{hint}; use cpu or auto")
    if index_text:
        if not index_text.isdigit() or int(index_text) >= cuda_count:
            raise ConfigError(f"device {option!r}: expected cuda:N with 0 <= N < {cuda_count} (the GPUs visible here)")
        return torch.device("cuda", int(index_text))
    restricted = "CUDA_VISIBLE_DEVICES" in env
    rank = local_rank(env)
    if rank is not None:
        name, value = rank
        if value >= cuda_count and not restricted:
            raise ConfigError(
                f"{name}={value}, but this process sees {cuda_count} GPU(s): start at most one process per GPU "
                "on a node (e.g. torchrun --nproc_per_node <GPUs>), or give each its own with CUDA_VISIBLE_DEVICES"
            )
        return torch.device("cuda", value % cuda_count)
    if slot is not None:
        return torch.device("cuda", slot % cuda_count)
    if own_gpu_required and cuda_count > 1 and not restricted:
        raise ConfigError(
            f"this worker sees {cuda_count} GPUs and no CUDA_VISIBLE_DEVICES says which one is its own: start "
            "one worker per GPU with dask-cuda (dask cuda worker, LocalCUDACluster) or with "
            "CUDA_VISIBLE_DEVICES=i dask worker ... --nworkers 1"
        )
    return torch.device("cuda", 0)


def resolve_device(option: str, *, slot: int | None = None, own_gpu_required: bool = False) -> torch.device:
    """:func:`select_device` for this process (its environment, its visible GPUs); sets the current CUDA device.

    Making the chosen GPU current means stray ``cuda`` allocations (cuDNN workspaces, ``torch.cuda`` calls
    without an index) land on it rather than on GPU 0.
    """
    count = torch.cuda.device_count() if option != "cpu" else 0
    device = select_device(option, os.environ, count, slot=slot, own_gpu_required=own_gpu_required)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


# ---------------------------------------------------------------------------------------------------------
# precision


def resolve_precision(option: str, device: torch.device, *, bf16_supported: bool | None = None) -> torch.dtype | None:
    """The autocast dtype of a ``precision`` option on ``device``; None means plain fp32 (no autocast).

    ``auto``: bf16 on a GPU that supports it, fp16 on other GPUs, fp32 on the CPU (where bf16 autocast is
    slower than fp32 on most processors). ``bf16_supported`` defaults to asking the device.
    """
    option = parse_precision(option)
    if option == "fp32" or (option == "auto" and device.type != "cuda"):
        return None
    if option == "fp16":
        return torch.float16
    if bf16_supported is None:
        bf16_supported = device.type != "cuda" or torch.cuda.is_bf16_supported()
    if option == "auto":
        return torch.bfloat16 if bf16_supported else torch.float16
    if not bf16_supported:
        raise ConfigError(f"precision 'bf16': {device} does not support bfloat16; use fp16 or fp32")
    return torch.bfloat16


def parse_precision(option: str) -> Precision:
    """``option`` as a :data:`Precision`; a :class:`ConfigError` naming the valid values otherwise."""
    if option not in PRECISIONS:
        raise ConfigError(f"precision {option!r}: expected one of {', '.join(PRECISIONS)}")
    return typing.cast(Precision, option)


def precision_name(dtype: torch.dtype | None) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"`` for what :func:`resolve_precision` returned."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision with ``dtype`` on ``device``'s type; nothing at all for None (fp32 stays exactly fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
