"""Epoch plans: source mixing, dropping auto data, class-uniform draws, sharding, centroid caching."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from autolabel.data.io import write_label_png
from autolabel.labelset import CENTROID_TYPE
from autolabel.train import sampling
from autolabel.train.sampling import (
    CentroidTable,
    EpochPlanner,
    PlanSampler,
    cached_centroids,
    compute_centroids,
    manifest_centroids,
)


def skewed_centroids(num_items: int, counts: dict[int, int], seed: int = 0) -> CentroidTable:
    """``counts[c]`` centroids of class c; y = c so a drawn slot tells its class."""
    rng = np.random.default_rng(seed)
    rows = [(c, int(rng.integers(num_items)), c, int(rng.integers(100))) for c, n in counts.items() for _ in range(n)]
    return CentroidTable.from_rows(rows)


def source_share(plan, source_pred) -> float:
    return sum(1 for item in plan if source_pred(item.source)) / len(plan)


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.75])
def test_auto_share_is_the_configured_fraction(fraction):
    planner = EpochPlanner(
        sizes=(300, 1000, 500), centroids=(CentroidTable.empty(),) * 3, auto_fraction=fraction, seed=1
    )
    plan = planner.plan(0)
    assert source_share(plan, lambda s: s > 0) == pytest.approx(fraction, abs=0.01)
    # every fine item exactly once per epoch
    assert sorted(i.item for i in plan if i.source == 0) == list(range(300))
    # both auto sets are drawn from, roughly in proportion to their sizes
    counts = Counter(i.source for i in plan if i.source > 0)
    assert counts[1] / (counts[1] + counts[2]) == pytest.approx(1000 / 1500, abs=0.08)


def test_auto_items_are_dropped_from_the_drop_epoch_on():
    planner = EpochPlanner(
        sizes=(50, 200),
        centroids=(CentroidTable.empty(), skewed_centroids(200, {3: 20})),
        auto_fraction=0.5,
        class_uniform_pct=0.5,
        drop_auto_after_epoch=2,
        seed=0,
    )
    for epoch in (0, 1):
        assert source_share(planner.plan(epoch), lambda s: s > 0) == pytest.approx(0.5)
    for epoch in (2, 3, 7):
        plan = planner.plan(epoch)
        assert len(plan) == 50
        assert all(item.source == 0 for item in plan)


def test_class_uniform_fraction_one_draws_classes_uniformly():
    # class 0 has 100x the centroids of class 4: uniform over classes must ignore that
    counts = {0: 2000, 1: 300, 2: 50, 3: 50, 4: 20}
    planner = EpochPlanner(sizes=(400,), centroids=(skewed_centroids(400, counts),), class_uniform_pct=1.0, seed=3)
    drawn = Counter()
    for epoch in range(5):
        plan = planner.plan(epoch)
        assert all(item.center is not None for item in plan)
        drawn.update(item.center_y for item in plan)  # y == class by construction
    total = sum(drawn.values())
    for cls in counts:
        assert drawn[cls] / total == pytest.approx(1 / len(counts), abs=0.03)


def test_class_uniform_fraction_is_respected_and_centres_come_from_centroids():
    table = skewed_centroids(100, {0: 30, 5: 30})
    planner = EpochPlanner(sizes=(100,), centroids=(table,), class_uniform_pct=0.3, seed=0)
    plan = planner.plan(0)
    centred = [item for item in plan if item.center is not None]
    assert len(centred) / len(plan) == pytest.approx(0.3, abs=0.1)
    known = set(zip(table.item.tolist(), table.y.tolist(), table.x.tolist(), strict=True))
    assert all((i.item, i.center_y, i.center_x) in known for i in centred)


def test_auto_slots_only_use_boost_class_centroids():
    fine = skewed_centroids(20, {0: 5, 1: 5})
    manifest = pa.table(
        {
            "centroids": pa.array(
                [[{"cls": 7, "y": 7, "x": 1}, {"cls": 2, "y": 2, "x": 1}], [{"cls": 7, "y": 7, "x": 2}], []],
                type=pa.list_(CENTROID_TYPE),
            )
        }
    )
    auto = manifest_centroids(manifest, classes=[7])
    assert auto.cls.tolist() == [7, 7] and auto.item.tolist() == [0, 1]
    planner = EpochPlanner(sizes=(20, 3), centroids=(fine, auto), auto_fraction=0.5, class_uniform_pct=1.0, seed=0)
    plan = planner.plan(0)
    assert {i.center_y for i in plan if i.source == 1} == {7}
    assert {i.center_y for i in plan if i.source == 0} <= {0, 1}


def test_plans_are_deterministic_per_seed_and_epoch():
    planner = EpochPlanner(
        sizes=(30, 40),
        centroids=(skewed_centroids(30, {1: 9}), CentroidTable.empty()),
        auto_fraction=0.4,
        class_uniform_pct=0.5,
        seed=11,
    )
    assert planner.plan(2) == planner.plan(2)
    assert planner.plan(2) != planner.plan(3)
    other = EpochPlanner(sizes=(30, 40), centroids=planner.centroids, auto_fraction=0.4, class_uniform_pct=0.5, seed=12)
    assert other.plan(2) != planner.plan(2)


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_sharding_splits_the_plan_across_ranks(world_size):
    planner = EpochPlanner(sizes=(31,), centroids=(CentroidTable.empty(),), seed=0)
    samplers = [PlanSampler(planner, rank=r, world_size=world_size) for r in range(world_size)]
    for s in samplers:
        s.set_epoch(4)
    shards = [list(s) for s in samplers]
    assert len({len(s) for s in shards}) == 1  # equal length on every rank (DDP needs it)
    flat = [item for shard in shards for item in shard]
    plan = planner.plan(4)
    assert set(flat) == set(plan)
    assert len(flat) - len(plan) < world_size  # only padding repeats


def test_sampler_start_skips_what_was_already_trained():
    planner = EpochPlanner(sizes=(20,), centroids=(CentroidTable.empty(),), seed=0)
    sampler = PlanSampler(planner)
    sampler.set_epoch(1)
    full = list(sampler)
    sampler.set_epoch(1, start=6)
    assert list(sampler) == full[6:]
    assert len(sampler) == 14


def test_fraction_one_without_fine_data_uses_auto_only():
    planner = EpochPlanner(sizes=(0, 12), centroids=(CentroidTable.empty(),) * 2, auto_fraction=1.0, seed=0)
    plan = planner.plan(0)
    assert len(plan) == 12 and all(i.source == 1 for i in plan)
    assert sorted(i.item for i in plan) == list(range(12))  # without replacement while there are enough


def write_labels(folder, arrays):
    paths = []
    for i, array in enumerate(arrays):
        path = folder / f"l{i}.png"
        write_label_png(path, array)
        paths.append(path)
    return paths


def test_compute_centroids_are_tile_centres_of_mass(tmp_path):
    label = np.full((8, 8), 255, dtype=np.uint8)
    label[0:2, 0:4] = 3  # tile (0, 0): rows 0-1, cols 0-3 -> centre (0.5, 1.5)
    label[6, 6] = 3  # tile (4, 4): one pixel
    label[4:8, 0:2] = 1  # tile (4, 0): centre (5.5, 0.5)
    table = compute_centroids(write_labels(tmp_path, [label]), None, num_classes=5, tile=4)
    got = sorted(zip(table.cls.tolist(), table.y.tolist(), table.x.tolist(), strict=True))
    # numpy rounds halves to even: 0.5 -> 0, 1.5 -> 2, 5.5 -> 6
    assert got == [(1, 6, 0), (3, 0, 2), (3, 6, 6)]
    assert set(table.item.tolist()) == {0}


def test_centroid_cache_is_keyed_by_content(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 4, size=(16, 16), dtype=np.uint8) for _ in range(3)]
    paths = write_labels(tmp_path / "a", arrays)
    cache = tmp_path / "cache"
    first = cached_centroids(paths, None, 4, 8, cache)
    assert len(list(cache.glob("centroids-*.npz"))) == 1
    # a second call reads the cache: computing again would fail here
    monkeypatch.setattr(sampling, "compute_centroids", lambda *a, **k: pytest.fail("cache not used"))
    again = cached_centroids(paths, None, 4, 8, cache)
    np.testing.assert_array_equal(first.cls, again.cls)
    # the same content under other names hits the same entry
    renamed = write_labels(tmp_path / "b", arrays)
    cached_centroids(renamed, None, 4, 8, cache)
    monkeypatch.undo()
    # changed content under the same name is a new entry
    write_label_png(paths[1], np.zeros((16, 16), dtype=np.uint8))
    changed = cached_centroids(paths, None, 4, 8, cache)
    assert len(list(cache.glob("centroids-*.npz"))) == 2
    assert len(changed) != len(first) or not np.array_equal(changed.cls, first.cls)
