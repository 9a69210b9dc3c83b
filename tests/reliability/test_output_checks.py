"""Every output file checked: a deleted or garbled confidence chunk, and files nobody wrote.

Before: `verify` and resume looked only at each array's `zarr.json`; a deleted chunk read back as zeros (so
`rethreshold` wrote an all-ignore label), a garbled one made `rethreshold` abort half-way, and stray files
were ignored (or, a stray PNG, made `verify` fail with no way out).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from autolabel import labelset
from autolabel.data.io import read_label
from autolabel.errors import EXIT_FINISHED_WITH_ERRORS, LabelSetError
from autolabel.labelset import confidence
from autolabel.labelset.verify import verify_labelset

from .helpers import N_EXTRA, generate_args, invoke, labelset_state

THRESHOLD = "0.2"  # a rung of the label set's ladder (0.1, 0.15, ...) above its threshold


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, teacher, city) -> Path:
    out = tmp_path_factory.mktemp("rel_outputs") / "out"
    invoke(*generate_args(teacher, city, out))
    return out


def _damaged_copy(labelled: Path, dest: Path) -> tuple[dict, dict]:
    """A copy with the confidence chunk of one image deleted and another's garbled (same length); their rows."""
    shutil.copytree(labelled, dest)
    rows = labelset.read_manifest(dest).to_pylist()
    deleted, garbled = rows[3], rows[10]
    (confidence.store_path(dest) / deleted["id"] / "c" / "0" / "0").unlink()
    chunk = confidence.store_path(dest) / garbled["id"] / "c" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    return deleted, garbled


def test_verify_names_the_deleted_and_the_garbled_chunk_and_a_rerun_repairs_exactly_those(
    labelled, teacher, city, reference, tmp_path
):
    out = tmp_path / "out"
    deleted, garbled = _damaged_copy(labelled, out)
    problems = verify_labelset(out).problems
    assert len(problems) == 2, problems
    assert f"{deleted['id']}/c/0/0: missing" in problems[0] or f"{deleted['id']}/c/0/0: missing" in problems[1]
    assert any(f"{garbled['id']}/c/0/0: sha256 differs" in p for p in problems)
    result = invoke(*generate_args(teacher, city, out))
    assert f"2 labelled, {N_EXTRA - 2} already done" in result.output
    assert verify_labelset(out).ok
    assert labelset_state(out) == reference


def test_no_reader_takes_a_missing_chunk_for_zeros(labelled, tmp_path):
    out = tmp_path / "out"
    deleted, garbled = _damaged_copy(labelled, out)
    with pytest.raises(LabelSetError, match="missing chunk c/0/0"):
        confidence.load_confidence(out, deleted["id"])
    with pytest.raises(LabelSetError, match="sha256 differs"):
        confidence.load_confidence(out, garbled["id"], expected=garbled["output_files"])
    intact = labelset.read_manifest(out).to_pylist()[0]
    codes = confidence.load_confidence(out, intact["id"], expected=intact["output_files"])
    assert codes.shape == (intact["height"], intact["width"]) and codes.any()


@pytest.mark.parametrize("in_place", [False, True], ids=["into-dest", "in-place"])
def test_rethreshold_makes_error_rows_of_the_bad_chunks_and_finishes_the_rest(labelled, tmp_path, in_place):
    out = tmp_path / "out"
    deleted, garbled = _damaged_copy(labelled, out)
    clean = tmp_path / "clean"  # the same re-threshold of the undamaged set: what every other image must get
    invoke("rethreshold", str(labelled), "--threshold", THRESHOLD, "--out", str(clean))
    dest = out if in_place else tmp_path / "dest"
    args = ["rethreshold", str(out), "--threshold", THRESHOLD] + ([] if in_place else ["--out", str(dest)])
    result = invoke(*args, code=EXIT_FINISHED_WITH_ERRORS)
    assert "2 images could not be re-thresholded" in result.output
    assert labelset.read_labelset(dest)["threshold"] == float(THRESHOLD)
    rows = labelset.rows_by_id(labelset.read_manifest(dest, status=None))
    assert len(rows) == N_EXTRA
    assert "missing chunk" in rows[deleted["id"]]["error"] and "sha256 differs" in rows[garbled["id"]]["error"]
    expected = labelset.rows_by_id(labelset.read_manifest(clean))
    for image_id, row in rows.items():
        if image_id in (deleted["id"], garbled["id"]):
            assert row["status"] == "error" and row["label"] is None
            # in place, the failed image's old-threshold label is gone, not left under the new threshold
            assert not (dest / deleted["label"]).exists() or not in_place
            continue
        assert row["label_sha256"] == expected[image_id]["label_sha256"]
        assert np.array_equal(read_label(dest / row["label"]), read_label(clean / row["label"]))
    report = verify_labelset(dest, check_inputs=False)
    assert report.ok, report.problems
    assert sorted(i for i, _ in report.error_rows) == sorted([deleted["id"], garbled["id"]])


def test_extra_files_of_any_kind_are_listed_and_never_deleted(labelled, teacher, city, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(labelled, out)
    some_label = out / labelset.read_manifest(out).to_pylist()[0]["label"]
    strays = [
        out / labelset.LABELS_DIR / "train_extra" / "stray.png",
        out / "notes.txt",
        out / "confidence.zarr" / "junk" / "zarr.json",
        out / "attention" / "x.png",
    ]
    for path in strays:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(some_label, path)
    problems = verify_labelset(out).problems
    assert len(problems) == len(strays), problems
    for path in strays:
        assert any(p.startswith(f"{path}:") and "left in place" in p for p in problems), path
    assert "0 labelled" in invoke(*generate_args(teacher, city, out)).output
    assert all(path.is_file() for path in strays)  # neither verify nor generate removed them
