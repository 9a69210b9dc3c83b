"""What each epoch trains on: source mixing, class-uniform crops, and deterministic sharding across ranks.

An epoch is a *plan*: a list of :class:`PlanItem` (which source, which item, optionally a pixel the crop must
contain, and the seed of that crop's augmentation). The plan is a pure function of (seed, epoch), so every
DDP rank computes the same plan and takes its own slice, and a resumed run recomputes exactly the plan it
stopped in and skips what it already did.

Class-uniform sampling (Zhu et al. 2019): label maps are split into tiles and, per tile and class present,
the class's centre of mass is recorded. In an epoch a fraction of the slots draws a class uniformly among the
classes that have centroids, then one of that class's centroids, and crops around it. Fine labels get their
centroids computed here (cached by the label files' content); auto-label sets bring theirs in the generate
manifest, and only the "boost" classes' centroids are used from them.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import torch.utils.data

from autolabel.data.io import read_label
from autolabel.fs import atomic_write_bytes
from autolabel.labelset.files import label_stats

logger = logging.getLogger(__name__)

FINE = 0  # source index of the fine (human) labels; auto-label sets follow as 1, 2, ...
_CACHE_VERSION = 1


class PlanItem(NamedTuple):
    """One slot of an epoch: ``source``/``item`` pick the item; the centre is (y, x), or (-1, -1) for a
    random crop."""

    source: int
    item: int  # not ``index``, which would hide tuple.index
    center_y: int
    center_x: int
    seed: int

    @property
    def center(self) -> tuple[int, int] | None:
        return None if self.center_y < 0 else (self.center_y, self.center_x)


@dataclass(frozen=True)
class CentroidTable:
    """Class centroids of one source: row i says item ``item[i]`` has class ``cls[i]`` around (y[i], x[i])."""

    cls: np.ndarray  # (N,) int32
    item: np.ndarray  # (N,) int32
    y: np.ndarray  # (N,) int32
    x: np.ndarray  # (N,) int32

    @staticmethod
    def empty() -> CentroidTable:
        zero = np.zeros(0, dtype=np.int32)
        return CentroidTable(zero, zero, zero, zero)

    @staticmethod
    def from_rows(rows: Sequence[tuple[int, int, int, int]]) -> CentroidTable:
        """From (cls, item, y, x) tuples."""
        if not rows:
            return CentroidTable.empty()
        arr = np.asarray(rows, dtype=np.int32).reshape(-1, 4)  # (N, 4)
        return CentroidTable(arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy(), arr[:, 3].copy())

    def __len__(self) -> int:
        return len(self.cls)

    def only_classes(self, classes: Sequence[int]) -> CentroidTable:
        keep = np.isin(self.cls, np.asarray(list(classes), dtype=np.int32))
        return CentroidTable(self.cls[keep], self.item[keep], self.y[keep], self.x[keep])

    def by_class(self) -> dict[int, np.ndarray]:
        """Row indices of each class that has at least one centroid."""
        return {int(c): np.flatnonzero(self.cls == c) for c in np.unique(self.cls)}


# ---------------------------------------------------------------------------------------------------------
# centroids of fine labels (cached) and of auto-label sets (from the manifest)


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def centroid_cache_key(label_paths: Sequence[Path], lut: np.ndarray | None, num_classes: int, tile: int) -> str:
    """A key over the label files' *content* (not their names), the label mapping, class count and tile."""
    digest = hashlib.sha256(f"v{_CACHE_VERSION}:{num_classes}:{tile}:".encode())
    digest.update(b"" if lut is None else np.asarray(lut, dtype=np.uint8).tobytes())
    for path in label_paths:
        digest.update(_file_sha256(path).encode())
    return digest.hexdigest()[:24]


def compute_centroids(
    label_paths: Sequence[Path | None], lut: np.ndarray | None, num_classes: int, tile: int, ignore_index: int = 255
) -> CentroidTable:
    """Per tile and class present, the class's centre of mass in every label map (None = unlabelled item)."""
    rows: list[tuple[int, int, int, int]] = []
    for item, path in enumerate(label_paths):
        if path is None:
            continue
        _, _, centroids = label_stats(read_label(path, lut), num_classes, tile, ignore_index)
        rows.extend((c["cls"], item, c["y"], c["x"]) for c in centroids)
    return CentroidTable.from_rows(rows)


def cached_centroids(
    label_paths: Sequence[Path | None],
    lut: np.ndarray | None,
    num_classes: int,
    tile: int,
    cache_dir: Path | None,
    ignore_index: int = 255,
) -> CentroidTable:
    """:func:`compute_centroids`, stored in ``cache_dir/centroids-<content key>.npz`` and reused from
    there."""
    if cache_dir is None:
        return compute_centroids(label_paths, lut, num_classes, tile, ignore_index)
    present = [p for p in label_paths if p is not None]
    # item positions are part of the content: the same files in another order give other item indices
    layout = "".join("1" if p is not None else "0" for p in label_paths)
    key = centroid_cache_key(present, lut, num_classes, tile)
    key += hashlib.sha256(layout.encode()).hexdigest()[:8]
    path = Path(cache_dir) / f"centroids-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            logger.info("class centroids from cache %s", path)
            return CentroidTable(data["cls"], data["item"], data["y"], data["x"])
    table = compute_centroids(label_paths, lut, num_classes, tile, ignore_index)
    buffer = io.BytesIO()
    np.savez(buffer, cls=table.cls, item=table.item, y=table.y, x=table.x)
    atomic_write_bytes(path, buffer.getvalue())
    logger.info("computed %d class centroids of %d label maps -> %s", len(table), len(present), path)
    return table


def manifest_centroids(manifest: pa.Table, classes: Sequence[int] | None = None) -> CentroidTable:
    """Centroids from a generate manifest (item i = row i), restricted to ``classes`` when given."""
    rows: list[tuple[int, int, int, int]] = []
    for item, centroids in enumerate(manifest.column("centroids").to_pylist()):
        rows.extend((c["cls"], item, c["y"], c["x"]) for c in centroids or ())
    table = CentroidTable.from_rows(rows)
    return table if classes is None else table.only_classes(classes)


# ---------------------------------------------------------------------------------------------------------
# epoch plans


@dataclass(frozen=True)
class EpochPlanner:
    """Builds each epoch's plan from the sources' sizes and centroids.

    Source 0 holds the fine labels; sources 1.. are auto-label sets. An epoch has every fine item once plus
    ``round(n_fine * f / (1 - f))`` auto-labelled slots (all auto items when there is no fine data or f = 1),
    so the auto share is ``auto_fraction``; from epoch ``drop_auto_after_epoch`` on, it has fine items only.
    ``class_uniform_pct`` of the slots then become crops around a centroid of a uniformly drawn class of that
    slot's kind (fine or auto).
    """

    sizes: tuple[int, ...]
    centroids: tuple[CentroidTable, ...]
    auto_fraction: float = 0.0
    class_uniform_pct: float = 0.0
    drop_auto_after_epoch: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.sizes) != len(self.centroids) or not self.sizes:
            raise ValueError("one size and one centroid table per source are needed")

    def uses_auto(self, epoch: int) -> bool:
        dropped = self.drop_auto_after_epoch is not None and epoch >= self.drop_auto_after_epoch
        return sum(self.sizes[1:]) > 0 and self.auto_fraction > 0 and not dropped

    def num_auto_slots(self, epoch: int) -> int:
        if not self.uses_auto(epoch):
            return 0
        n_fine, n_auto = self.sizes[0], sum(self.sizes[1:])
        if n_fine == 0 or self.auto_fraction >= 1.0:
            return n_auto
        return round(n_fine * self.auto_fraction / (1.0 - self.auto_fraction))

    def epoch_length(self, epoch: int) -> int:
        return self.sizes[0] + self.num_auto_slots(epoch)

    def plan(self, epoch: int) -> list[PlanItem]:
        """The epoch's slots in training order; identical for the same (seed, epoch) everywhere."""
        rng = np.random.default_rng([self.seed, epoch])
        picks = [(FINE, int(i)) for i in rng.permutation(self.sizes[0])] + self._auto_picks(epoch, rng)
        order = rng.permutation(len(picks))
        picks = [picks[i] for i in order]
        uniform = rng.random(len(picks)) < self.class_uniform_pct
        seeds = rng.integers(0, 2**31 - 1, size=len(picks))
        return [
            self._slot(source, index, bool(u), int(s), rng)
            for (source, index), u, s in zip(picks, uniform, seeds, strict=True)
        ]

    def _auto_picks(self, epoch: int, rng: np.random.Generator) -> list[tuple[int, int]]:
        """(source, index) of the auto slots: without replacement while there are enough auto items."""
        count = self.num_auto_slots(epoch)
        if count == 0:
            return []
        bounds = np.cumsum((0,) + self.sizes[1:])  # flat auto index -> (source, index)
        flat = rng.choice(bounds[-1], size=count, replace=count > bounds[-1])
        sources = np.searchsorted(bounds, flat, side="right")
        return [(int(s), int(f - bounds[s - 1])) for s, f in zip(sources, flat, strict=True)]

    def _slot(self, source: int, index: int, uniform: bool, seed: int, rng: np.random.Generator) -> PlanItem:
        pool = self._pool(FINE if source == FINE else 1) if uniform else {}
        if not pool:
            return PlanItem(source, index, -1, -1, seed)
        classes = sorted(pool)
        entries = pool[classes[int(rng.integers(len(classes)))]]  # (n, 2): source, centroid row
        src, row = (int(v) for v in entries[int(rng.integers(len(entries)))])
        table = self.centroids[src]
        return PlanItem(src, int(table.item[row]), int(table.y[row]), int(table.x[row]), seed)

    @functools.cached_property
    def _pools(self) -> dict[int, dict[int, np.ndarray]]:
        """Per kind (0 = fine, 1 = auto): class -> (n, 2) array of (source, centroid row)."""
        pools: dict[int, dict[int, np.ndarray]] = {}
        for kind, sources in ((FINE, [FINE]), (1, list(range(1, len(self.sizes))))):
            entries: dict[int, list[np.ndarray]] = {}
            for src in sources:
                for cls, rows in self.centroids[src].by_class().items():
                    entries.setdefault(cls, []).append(np.stack([np.full_like(rows, src), rows], axis=1))
            pools[kind] = {cls: np.concatenate(parts) for cls, parts in entries.items()}
        return pools

    def _pool(self, kind: int) -> dict[int, np.ndarray]:
        return self._pools[kind]


class PlanSampler(torch.utils.data.Sampler):
    """Yields this rank's :class:`PlanItem` s of an epoch (DistributedSampler-style sharding of the plan).

    The plan is padded by repeating its head to a multiple of ``world_size``; rank r takes items r, r + W, ...
    ``start`` skips the first items of this rank's share (a resumed run continues mid-epoch).
    """

    def __init__(self, planner: EpochPlanner, *, rank: int = 0, world_size: int = 1):
        self.planner = planner
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0
        self._cache: tuple[int, list[PlanItem]] | None = None

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch = epoch
        self.start = start

    def shard(self, epoch: int) -> list[PlanItem]:
        """This rank's items of ``epoch`` (all ranks get the same count)."""
        if self._cache is None or self._cache[0] != epoch:
            plan = self.planner.plan(epoch)
            padded = plan + plan[: (-len(plan)) % self.world_size] if plan else []
            self._cache = (epoch, padded[self.rank :: self.world_size])
        return self._cache[1]

    def __iter__(self) -> Iterator[PlanItem]:
        return iter(self.shard(self.epoch)[self.start :])

    def __len__(self) -> int:
        return max(0, len(self.shard(self.epoch)) - self.start)
