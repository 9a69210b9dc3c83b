"""Choosing the device a process computes on, and process-wide settings for running on a CPU.

:func:`resolve_device` turns the ``device`` option into a torch device.

glibc hands every freed block over its mmap threshold (at most 32 MB) straight back to the kernel, so a
multi-scale forward that frees and re-allocates 19 x H x W float logit maps (40 MB at 512x1024) faults fresh
zeroed pages in on every call. On the tiny teacher at 256x512 with scales 0.5/1/2 that page faulting was 28 %
of the forward's CPU time (96 of 345 ms) and nearly all of what the hierarchical fusion seemed to add over
the single-scale forwards (``make bench``: hierarchical_overhead). With mmap off and a high trim threshold
freed blocks stay mapped and are reused; peak RSS grew by 15 MB in that measurement.

The price is fragmentation on huge single images: labelling a 2048x1024 image whole at scales up to 2.0 peaked
at 1.6 GB instead of 1.2 GB (tiled: 0.43 GB, ``make bench`` tiled_memory). To opt out, start the process with
``MALLOC_MMAP_MAX_`` set to anything but 0 (e.g. 65536, glibc's default): it is then left alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

import torch

from autolabel.errors import ConfigError

log = logging.getLogger(__name__)

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB of freed memory at the top of the heap
# glibc reads these at process start: child processes (DataLoader, Dask and demo workers) inherit them
ALLOCATOR_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}


def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed large blocks in this process and the processes it starts.

    Leaves everything alone where a user already chose (``MALLOC_MMAP_MAX_`` set) and off Linux; returns
    whether this process now runs with the setting.
    """
    if not sys.platform.startswith("linux"):
        return False
    if "MALLOC_MMAP_MAX_" in os.environ:  # the user's choice, applied by glibc at start-up
        return os.environ["MALLOC_MMAP_MAX_"] == "0"
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


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: CUDA is not available on this machine; use cpu or auto")
    return device
