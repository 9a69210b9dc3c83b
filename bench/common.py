"""Shared pieces of the benchmarks: machine description, the figure record, timing and memory helpers.

Every figure of ``make bench`` is a ratio of two things measured in the same run, so it is recorded together
with the machine it ran on and the command that reproduces it.
"""

from __future__ import annotations

import os
import platform
import resource
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


def machine_info() -> dict[str, Any]:
    """Cores, torch version and threads, CPU model and Python: what a ratio measured here depends on."""
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "malloc_keeps_freed_memory": os.environ.get("MALLOC_MMAP_MAX_") == "0",  # autolabel/models/device.py
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def current_command() -> str:
    """The command line of this process, with BENCH_QUICK when it is set (it changes every figure)."""
    prefix = f"BENCH_QUICK={os.environ['BENCH_QUICK']} " if os.environ.get("BENCH_QUICK") else ""
    return prefix + shlex.join([os.path.basename(sys.executable), *sys.argv])


@dataclass
class Figure:
    """One benchmark figure: a ratio with its definition, its goal, and the measurements behind it."""

    name: str
    definition: str
    value: float
    goal: str  # e.g. ">= 0.95", "<= 15", or "" when the issue sets none (the figure is reported only)
    unit: str = "ratio"
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # how long measuring it took

    @property
    def met(self) -> bool | None:
        """Whether ``value`` meets ``goal`` (None without a goal)."""
        if not self.goal:
            return None
        op, bound = self.goal.split()
        return self.value >= float(bound) if op == ">=" else self.value <= float(bound)

    def to_dict(self, machine: dict[str, Any], command: str) -> dict[str, Any]:
        return rounded({**asdict(self), "met": self.met, "machine": machine, "command": command})


def rounded(value: Any, digits: int = 4) -> Any:
    """Floats in nested dicts/lists rounded for a readable JSON file."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {str(k): rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    return value


@dataclass
class Timing:
    """Wall-clock and process-CPU seconds of one timed block."""

    wall: float = 0.0
    cpu: float = 0.0


class timed:
    """``with timed() as t: ...`` fills ``t.wall`` and ``t.cpu`` (CPU seconds of all threads of this process)."""

    def __enter__(self) -> Timing:
        self.timing = Timing()
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self.timing

    def __exit__(self, *exc: object) -> None:
        self.timing.wall = time.perf_counter() - self._wall
        self.timing.cpu = time.process_time() - self._cpu


def best_of(fn: Callable[[], float], repeats: int) -> float:
    """The largest of ``repeats`` rates returned by ``fn`` (other jobs on a shared machine only slow a run)."""
    return max(fn() for _ in range(max(1, repeats)))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB.

    Linux ``VmHWM`` rather than ``ru_maxrss``: a child started by fork + exec inherits its parent's
    ``ru_maxrss``, so a small child of a large benchmark process would report the parent's peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mb() -> float:
    """Resident set size of this process now, MiB (Linux ``/proc``; the peak where that is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()
