"""`autolabel diff`: counts on hand-made label sets, the table, the CLI, the report section, and lineage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from autolabel import labelset
from autolabel.cli import main
from autolabel.data.datasets import Sample
from autolabel.errors import LabelSetError
from autolabel.labelset.diff import diff_labelsets, diff_table, image_confusion, largest_transitions
from autolabel.labelset.files import WriteSettings, finalise_image
from autolabel.labelset.lineage import lineage, record_round
from autolabel.report.diff import diff_section, read_diff

N = 255  # ignore
CLASSES = ("road", "car", "sky")


def write_set(
    out: Path,
    images: dict[str, np.ndarray],
    *,
    teacher: str = "ab" * 32,
    classes: tuple[str, ...] = CLASSES,
    label_ids: tuple[int, ...] | None = None,
) -> Path:
    """A label set holding exactly ``images`` (id -> (H, W) train-id map), written as ``generate`` writes."""
    meta = labelset.make_labelset_meta(
        teacher_sha256=teacher,
        model_config={"arch": "test"},
        scales=(1.0,),
        flip=False,
        threshold=0.5,
        ladder=(0.5,),
        class_names=classes,
        label_ids=label_ids,
        ignore_index=N,
        mean=(0.5, 0.5, 0.5),
        std=(0.2, 0.2, 0.2),
        tile_size=0,
        tile_overlap=0.25,
        confidence=False,
        centroid_tile=8,
    )
    labelset.prepare_output(out, meta, overwrite=False)
    lut = None
    if label_ids is not None:
        lut = np.full(256, N, dtype=np.uint8)
        lut[: len(label_ids)] = label_ids
    settings = WriteSettings(
        out=out, num_classes=len(classes), shard="0/1", confidence=False, centroid_tile=8, train_to_label=lut
    )
    rows = [
        finalise_image(settings, Sample(id=i, image=Path(f"/in/{i}.png")), a.astype(np.uint8), a, 0.9, {}, 0.0)
        for i, a in images.items()
    ]
    labelset.write_part(out, rows)
    return out


# image "x": 2x3; A labels it   road road car / sky  N   N
#                   B labels it road car  car / N    sky road
A_X = np.array([[0, 0, 1], [2, N, N]])
B_X = np.array([[0, 1, 1], [N, 2, 0]])
# image "y": 1x4; identical in A and B except the last pixel, car -> ignore
A_Y = np.array([[2, 2, 1, 1]])
B_Y = np.array([[2, 2, 1, N]])


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path]:
    a = write_set(tmp_path / "a", {"x": A_X, "y": A_Y, "only_a": np.zeros((1, 2))})
    b = write_set(tmp_path / "b", {"x": B_X, "y": B_Y}, teacher="cd" * 32)
    return a, b


def test_image_confusion_counts_each_pixel_once_with_ignore_last():
    m = image_confusion(A_X.astype(np.uint8), B_X.astype(np.uint8), 3)
    expected = np.zeros((4, 4), dtype=np.int64)
    # (A, B) pairs of the six pixels: (road, road) (road, car) (car, car) (sky, N) (N, sky) (N, road)
    for a, b in ((0, 0), (0, 1), (1, 1), (2, 3), (3, 2), (3, 0)):
        expected[a, b] += 1
    assert np.array_equal(m, expected)


def test_diff_of_hand_made_sets_counts_gains_losses_and_flips(pair):
    a, b = pair
    diff = diff_labelsets(a, b)
    assert diff["images"] == 2 and diff["only_in_a"] == 1 and diff["only_in_b"] == 0
    assert diff["only_in_a_ids"] == ["only_a"]
    # 10 pixels; changed: x has 4 (road->car, sky->N, N->sky, N->road), y has 1 (car->N)
    assert diff["pixels"] == 10 and diff["changed"] == 5 and diff["changed_share"] == 0.5
    assert (diff["gained"], diff["lost"], diff["flipped"]) == (2, 2, 1)
    road, car, sky = (diff["classes"][n] for n in CLASSES)
    assert road == {
        "pixels_a": 2, "pixels_b": 2, "gained": 1, "lost": 0, "flipped_from": 1, "flipped_to": 0, "net_change": 0.0
    }  # fmt: skip
    # car: x gains one by a flip from road, y loses one to ignore: 3 pixels in both, net 0
    assert (car["pixels_a"], car["pixels_b"], car["gained"], car["lost"], car["flipped_to"]) == (3, 3, 0, 1, 1)
    assert car["net_change"] == 0.0
    assert (sky["gained"], sky["lost"], sky["flipped_from"], sky["flipped_to"]) == (1, 1, 0, 0)
    # coverage: A labels 8 of 10, B 8 of 10; both label 3 pixels of x (2 agree) and 3 of y (all agree)
    assert diff["coverage_a"] == diff["coverage_b"] == 0.8
    assert diff["agreement"] == pytest.approx(5 / 6, abs=1e-6)
    assert diff["confusion"]["labels"] == [*CLASSES, "ignore"]
    assert sum(map(sum, diff["confusion"]["matrix"])) == 10
    # x changed 4/6, y 1/4
    assert [(r["id"], r["changed"]) for r in diff["top_images"]] == [("x", 4), ("y", 1)]
    assert diff["top_images"][0]["changed_share"] == pytest.approx(4 / 6, abs=1e-6)


def test_diff_of_a_set_with_itself_changes_nothing(pair):
    a, _ = pair
    diff = diff_labelsets(a, a, top=1)
    assert diff["changed"] == 0 and diff["agreement"] == 1.0 and len(diff["top_images"]) == 1
    assert all(v["gained"] == v["lost"] == v["flipped_from"] == 0 for v in diff["classes"].values())


def test_diff_reads_label_id_sets_as_train_ids(tmp_path: Path):
    a = write_set(tmp_path / "a", {"x": A_X})
    b = write_set(tmp_path / "b", {"x": A_X}, label_ids=(7, 26, 23))
    assert diff_labelsets(a, b)["changed"] == 0


def test_diff_refuses_other_classes_or_no_common_images(tmp_path: Path):
    a = write_set(tmp_path / "a", {"x": A_X})
    other = write_set(tmp_path / "other", {"x": A_X}, classes=("road", "car", "bus"))
    with pytest.raises(LabelSetError, match="classes"):
        diff_labelsets(a, other)
    disjoint = write_set(tmp_path / "disjoint", {"z": A_X})
    with pytest.raises(LabelSetError, match="no labelled image in common"):
        diff_labelsets(a, disjoint)


def test_diff_refuses_images_of_different_sizes(tmp_path: Path):
    a = write_set(tmp_path / "a", {"x": A_X})
    b = write_set(tmp_path / "b", {"x": A_Y})
    with pytest.raises(LabelSetError, match="same images"):
        diff_labelsets(a, b)


def test_table_names_the_totals_classes_transitions_and_images(pair):
    diff = diff_labelsets(*pair)
    text = diff_table(diff, matrix=True)
    assert "pixels changed: 50.0% of 10" in text
    assert "road -> car: 1" in text and "car -> ignore: 1" in text
    assert "  x: 66.7%" in text and "confusion matrix" in text
    assert largest_transitions(diff, 1)[0][2] == 1 and len(largest_transitions(diff, 99)) == 5


def test_cli_diff_writes_json_and_table(pair, tmp_path: Path):
    a, b = pair
    result = CliRunner().invoke(
        main, ["diff", str(a), str(b), "--json", str(tmp_path / "d.json"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "pixels changed: 50.0%" in result.output
    saved = json.loads((tmp_path / "d.json").read_text())
    assert saved["changed"] == 5 and json.loads((tmp_path / "o" / "diff.json").read_text()) == saved
    assert "pixels changed" in (tmp_path / "o" / "diff.txt").read_text()
    printed = CliRunner().invoke(main, ["diff", str(a), str(b), "--json", "-"])
    assert printed.exit_code == 0 and json.loads(printed.stdout)["changed"] == 5  # the warning is on stderr


def test_report_section_shows_the_diff(pair, tmp_path: Path):
    a, b = pair
    path = tmp_path / "diff.json"
    path.write_text(json.dumps(diff_labelsets(a, b)))
    section = diff_section(read_diff(path))
    assert 'id="diff"' in section and "50.0%" in section and "road" in section
    path.write_text("{}")
    with pytest.raises(Exception, match="not a label-set diff"):
        read_diff(path)


def test_round_lineage_names_teacher_and_parent_and_keeps_the_id(tmp_path: Path):
    first = write_set(tmp_path / "round-1" / "labels", {"x": A_X}, teacher="ab" * 32)
    second = write_set(tmp_path / "round-2" / "labels", {"x": B_X}, teacher="cd" * 32)
    ids = [labelset.read_labelset(p)["labelset_id"] for p in (first, second)]
    record_round(first, index=1, teacher=tmp_path / "t.pt", teacher_sha256="ab" * 32, parent=None)
    meta = record_round(second, index=2, teacher=tmp_path / "s.pt", teacher_sha256="cd" * 32, parent=first)
    # lineage says where the set came from, not what it holds: the id is unchanged, recomputed or not
    assert meta["labelset_id"] == labelset.labelset_id(meta) == ids[1] and meta["parent_labelset_id"] == ids[0]
    assert meta["round"]["parent"] == "../../round-1/labels" and meta["round"]["teacher"] == "../../s.pt"
    assert [m["labelset_id"] for m in lineage(second)] == [ids[1], ids[0]]
    with pytest.raises(LabelSetError, match="labelled by teacher"):
        record_round(second, index=2, teacher=tmp_path / "t.pt", teacher_sha256="ab" * 32, parent=first)
