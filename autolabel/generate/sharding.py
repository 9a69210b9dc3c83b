"""Deterministic sharding of an image list by id, and the cluster environment variables that select a shard.

A shard is chosen by hashing each image id, so an image stays in its shard when other images are added or
removed, every image is in exactly one shard, and no coordination between shard jobs is needed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from autolabel.errors import ConfigError
from autolabel.models.device import in_slurm_step

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"--shard {self.index}/{self.count}: expected I/N with 0 <= I < N")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def contains(self, image_id: str) -> bool:
        return shard_of(image_id, self.count) == self.index


def shard_of(image_id: str, count: int) -> int:
    """The shard an image id belongs to (stable across runs, machines and Python versions)."""
    digest = hashlib.sha256(image_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str) -> Shard:
    """``"I/N"`` -> :class:`Shard`; a :class:`ConfigError` for anything else."""
    index, sep, count = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return Shard(int(index), int(count))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None


def shard_from_env(env: Mapping[str, str]) -> Shard | None:
    """The shard named by the launcher's environment, or None when no launcher variable is set.

    Two levels, combined when both are there:

    - a SLURM array job: ``SLURM_ARRAY_TASK_ID`` of ``SLURM_ARRAY_TASK_COUNT`` (task ids are taken relative to
      ``SLURM_ARRAY_TASK_MIN`` so ``--array=1-8`` works too);
    - the processes of one launch: ``RANK`` of ``WORLD_SIZE`` (torchrun, MPI-style launchers), else, inside an
      ``srun`` step, ``SLURM_PROCID`` of ``SLURM_STEP_NUM_TASKS`` (``SLURM_NTASKS`` when a step id says it is a
      step). A batch script itself (no step) is not split, even when the allocation has several tasks: a
      single ``autolabel generate`` there must label everything.

    Array task ``a`` of ``A`` running process ``r`` of ``R`` labels shard ``a * R + r`` of ``A * R``.
    """
    outer = _env_shard(env, "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT")
    inner = _env_shard(env, "RANK", "WORLD_SIZE")
    if inner is None and in_slurm_step(env):
        count_key = "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in env else "SLURM_NTASKS"
        inner = _env_shard(env, "SLURM_PROCID", count_key)
    if outer is None or inner is None:
        return outer or inner
    return Shard(outer.index * inner.count + inner.index, outer.count * inner.count)


def _env_shard(env: Mapping[str, str], index_key: str, count_key: str) -> Shard | None:
    """Shard ``env[index_key]`` of ``env[count_key]``, None unless both are set; a ConfigError naming them."""
    if index_key not in env or count_key not in env:
        return None
    try:
        index, count = int(env[index_key]), int(env[count_key])
        if index_key == "SLURM_ARRAY_TASK_ID":
            index -= int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
    except ValueError:
        raise ConfigError(
            f"{index_key}={env[index_key]!r}, {count_key}={env[count_key]!r}: expected integers"
        ) from None
    try:
        return Shard(index, count)
    except ConfigError:
        raise ConfigError(
            f"{index_key}={env[index_key]}, {count_key}={env[count_key]}: expected 0 <= {index_key} < {count_key}"
        ) from None


def select_shard(ids: Sequence[str], shard: Shard) -> list[int]:
    """Positions of the ids that fall in ``shard`` (order kept)."""
    if shard.count == 1:
        return list(range(len(ids)))
    return [i for i, image_id in enumerate(ids) if shard_of(image_id, shard.count) == shard.index]


def shard_counts(ids: Sequence[str], count: int) -> list[int]:
    """How many of ``ids`` fall in each of ``count`` shards (for ``--dry-run``)."""
    counts = [0] * count
    for image_id in ids:
        counts[shard_of(image_id, count)] += 1
    return counts


def chunked(items: Sequence[T], size: int) -> list[list[T]]:
    """Consecutive pieces of at most ``size`` items."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
