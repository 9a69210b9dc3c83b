"""How many decode and encode threads a ``generate`` process runs: from the cores it may use, not fixed numbers.

The cores are this process's CPU affinity (what a batch scheduler's cgroup/cpuset grants), narrowed by
``SLURM_CPUS_PER_TASK`` when Slurm sets it (a task may see more cores than it was given when the cluster does
not bind tasks to cores). ``generate.decode_workers`` / ``generate.encode_workers`` (or ``--decode-workers`` /
``--encode-workers``) override the automatic choice.

On a GPU the model needs about one host core to drive it; the rest decode and encode, split by what each part
costs per image (``make bench``, host_work: decoding + hashing the input is about 2/5 of the host work, encoding
and writing the outputs 3/5). On the CPU the model itself uses the cores, so one thread of each keeps the
pipeline overlapped without taking cores from the model (``make bench``, pipeline_efficiency).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

SLURM_CPUS = "SLURM_CPUS_PER_TASK"
DECODE_SHARE = 0.4  # of the spare cores: decode + input fingerprint vs the encoders (make bench, host_work)
MAX_THREADS = 32  # per pool: past this the GIL-holding Python between the C calls serialises the threads


@dataclass(frozen=True)
class PoolSizes:
    """Thread counts of the two pools, and the cores they were sized from."""

    decode: int
    encode: int
    cores: int


def usable_cores(env: Mapping[str, str] | None = None) -> int:
    """Cores this process may run on: its CPU affinity, at most ``SLURM_CPUS_PER_TASK`` when that is set."""
    env = os.environ if env is None else env
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:  # macOS, Windows: no affinity call
        cores = os.cpu_count() or 1
    slurm = env.get(SLURM_CPUS, "").strip()
    if slurm:
        try:
            cores = min(cores, int(slurm))
        except ValueError:
            log.warning("%s=%r is not a number of cores; using the CPU affinity (%d)", SLURM_CPUS, slurm, cores)
    return max(1, cores)


def pool_sizes(
    device_type: str,
    decode_workers: int | None = None,
    encode_workers: int | None = None,
    *,
    cores: int | None = None,
) -> PoolSizes:
    """Decode and encode thread counts for a teacher on ``device_type`` (``"cpu"``, ``"cuda"``); a given
    count is kept as it is, a None one is chosen from ``cores`` (default :func:`usable_cores`)."""
    cores = usable_cores() if cores is None else max(1, cores)
    if device_type == "cpu":
        auto_decode, auto_encode = 1, 1
    else:
        spare = max(1, cores - 1)  # one core drives the device
        auto_decode = min(MAX_THREADS, max(1, round(spare * DECODE_SHARE)))
        auto_encode = min(MAX_THREADS, max(1, spare - auto_decode))
    return PoolSizes(
        decode=auto_decode if decode_workers is None else max(1, decode_workers),
        encode=auto_encode if encode_workers is None else max(1, encode_workers),
        cores=cores,
    )
