"""labelset.json (id, refusal, overwrite) and manifest parts (atomic, named by content, merged, deduped)."""

import json

import pyarrow.parquet as pq
import pytest

from autolabel import labelset
from autolabel.errors import LabelSetError
from autolabel.labelset import (
    make_labelset_meta,
    merge_manifest,
    part_name,
    part_paths,
    prepare_output,
    read_labelset,
    read_manifest,
    summarise,
    write_part,
)

BASE = dict(
    teacher_sha256="ab" * 32,
    model_config={"width": "tiny"},
    scales=(0.5, 1.0),
    flip=False,
    threshold=0.5,
    ladder=(0.5, 0.75),
    class_names=("a", "b"),
    label_ids=None,
    ignore_index=255,
    mean=(0.5, 0.5, 0.5),
    std=(0.2, 0.2, 0.2),
    tile_size=0,
    tile_overlap=0.25,
    confidence=True,
)


def meta(**changes):
    return make_labelset_meta(**{**BASE, **changes})


def row(image_id, status="ok", counts=(3, 1), shard="0/1"):
    ok = status == "ok"
    return {
        "id": image_id,
        "image": f"/in/{image_id}.png",
        "label": f"labels/{image_id}.png" if ok else None,
        "height": 2 if ok else None,
        "width": 3 if ok else None,
        "status": status,
        "error": None if ok else "broken",
        "class_counts": list(counts) if ok else None,
        "ignore_count": 6 - sum(counts) if ok else None,
        "mean_confidence": 0.75 if ok else None,
        "centroids": [{"cls": 0, "y": 1, "x": 2}] if ok else None,
        "label_sha256": "f" * 64 if ok else None,
        "shard": shard,
        "seconds": 0.1,
    }


@pytest.mark.parametrize(
    "change",
    [
        dict(teacher_sha256="cd" * 32),
        dict(threshold=0.6),
        dict(scales=(1.0,)),
        dict(flip=True),
        dict(ladder=(0.5,)),
        dict(class_names=("a", "c")),
        dict(label_ids=(7, 8)),
        dict(tile_size=512),
        dict(mean=(0.4, 0.5, 0.5)),
    ],
)
def test_id_changes_with_everything_that_shapes_the_labels(change):
    assert meta(**change)["labelset_id"] != meta()["labelset_id"]


def test_id_ignores_where_the_inputs_came_from():
    assert meta(source={"layout": "folder", "root": "/a"})["labelset_id"] == meta()["labelset_id"]
    assert labelset.labelset_id(meta()) == meta()["labelset_id"]


def test_prepare_output_refuses_another_label_set_and_names_the_difference(tmp_path):
    prepare_output(tmp_path, meta(), overwrite=False)
    (tmp_path / "notes.txt").write_text("mine")
    write_part(tmp_path, [row("x")])
    with pytest.raises(LabelSetError, match="threshold") as info:
        prepare_output(tmp_path, meta(threshold=0.7), overwrite=False)
    assert "--overwrite" in str(info.value)
    prepare_output(tmp_path, meta(threshold=0.7), overwrite=True)
    assert read_labelset(tmp_path)["threshold"] == 0.7
    assert part_paths(tmp_path) == []  # the old label set's files are gone ...
    assert (tmp_path / "notes.txt").read_text() == "mine"  # ... and nothing else


def test_prepare_output_is_a_no_op_for_the_same_label_set(tmp_path):
    prepare_output(tmp_path, meta(), overwrite=False)
    before = (tmp_path / "labelset.json").stat().st_mtime_ns
    prepare_output(tmp_path, meta(), overwrite=False)
    assert (tmp_path / "labelset.json").stat().st_mtime_ns == before


def test_read_labelset_errors_name_the_file(tmp_path):
    with pytest.raises(LabelSetError, match="labelset.json"):
        read_labelset(tmp_path)
    (tmp_path / "labelset.json").write_text("{not json")
    with pytest.raises(LabelSetError, match="unreadable"):
        read_labelset(tmp_path)
    (tmp_path / "labelset.json").write_text(json.dumps({"x": 1}))
    with pytest.raises(LabelSetError, match="labelset_id"):
        read_labelset(tmp_path)


def test_part_name_depends_only_on_the_ids():
    assert part_name(["b", "a"]) == part_name(["a", "b"]) != part_name(["a"])


def test_parts_round_trip_sorted_with_schema(tmp_path):
    path = write_part(tmp_path, [row("b"), row("a"), row("c", status="error")])
    assert path.name == part_name(["a", "b", "c"])
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp file left
    assert pq.read_schema(path).names == labelset.MANIFEST_SCHEMA.names
    table = read_manifest(tmp_path, status=None)
    assert table.column("id").to_pylist() == ["a", "b", "c"]
    assert table.to_pylist()[0]["centroids"] == [{"cls": 0, "y": 1, "x": 2}]
    assert read_manifest(tmp_path).column("id").to_pylist() == ["a", "b"]


def test_duplicate_rows_resolve_to_the_ok_one(tmp_path):
    write_part(tmp_path, [row("a", status="error"), row("b")])
    write_part(tmp_path, [row("a")])
    table = read_manifest(tmp_path, status=None)
    assert table.column("id").to_pylist() == ["a", "b"]
    assert table.column("status").to_pylist() == ["ok", "ok"]


def test_merge_and_summary(tmp_path):
    write_part(tmp_path, [row("a", counts=(6, 0)), row("b", counts=(2, 2))])
    write_part(tmp_path, [row("c", status="error")])
    merged = merge_manifest(tmp_path)
    assert pq.read_table(tmp_path / "manifest.parquet").equals(merged)
    summary = summarise(merged, ["a", "b"])
    assert (summary["images"], summary["ok"], summary["errors"]) == (3, 2, [("c", "broken")])
    assert summary["pixels"] == 12 and summary["ignored_fraction"] == pytest.approx(2 / 12)
    assert summary["classes"][0] == {"name": "a", "pixel_fraction": pytest.approx(8 / 12), "images": 2}
    assert summary["classes"][1]["images"] == 1


def test_read_manifest_of_an_empty_set_is_empty(tmp_path):
    assert read_manifest(tmp_path).num_rows == 0
