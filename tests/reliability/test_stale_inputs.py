"""An input replaced under the same name is labelled again; one only touched is not; old manifests still work.

Resume used to trust a label's own sha256 and know nothing of the input: a swapped image kept its stale label
and `verify` passed. Now each row fingerprints its input (size, mtime, sha256).
"""

from __future__ import annotations

import os
import shutil

import pyarrow.parquet as pq

from autolabel import labelset
from autolabel.labelset.checksums import FINGERPRINT_KEYS
from autolabel.labelset.verify import verify_labelset

from .helpers import folder_args, invoke, write_images

NAMES = ["a.png", "b.png", "sub/c.png"]


def _labels(out):
    return {r["id"]: r["label_sha256"] for r in labelset.read_manifest(out).to_pylist()}


def test_a_swapped_input_is_stale_in_verify_and_relabelled_by_a_rerun(tmp_path, teacher):
    images, out = tmp_path / "images", tmp_path / "out"
    write_images(images, NAMES, seed=1)
    invoke(*folder_args(teacher, images, out))
    before = _labels(out)
    write_images(tmp_path / "other", ["b.png"], seed=99)
    shutil.copy(tmp_path / "other" / "b.png", images / "b.png")  # same name, other pixels

    report = verify_labelset(out)
    stale = [p for p in report.problems if "stale label" in p]
    assert len(stale) == 1 and stale[0].startswith("b:"), report.problems
    result = invoke(*folder_args(teacher, images, out))
    assert "1 labelled, 2 already done" in result.output
    after = _labels(out)
    assert after["a"] == before["a"] and after["sub/c"] == before["sub/c"]
    # b's label is now what a fresh run over the new image gives
    fresh = tmp_path / "fresh"
    invoke(*folder_args(teacher, tmp_path / "other", fresh))
    assert after["b"] == _labels(fresh)["b"] != before["b"]
    assert verify_labelset(out).ok


def test_a_touched_but_identical_input_is_not_relabelled(tmp_path, teacher):
    images, out = tmp_path / "images", tmp_path / "out"
    write_images(images, NAMES, seed=2)
    invoke(*folder_args(teacher, images, out))
    label = out / labelset.read_manifest(out).to_pylist()[0]["label"]
    inode = label.stat().st_ino
    stat = (images / "a.png").stat()
    os.utime(images / "a.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # `touch`

    result = invoke(*folder_args(teacher, images, out))
    assert "0 labelled, 3 already done" in result.output
    assert label.stat().st_ino == inode
    row = labelset.rows_by_id(labelset.read_manifest(out))["a"]
    assert row["input_mtime_ns"] == (images / "a.png").stat().st_mtime_ns  # the new fingerprint is recorded
    assert verify_labelset(out).ok


def _strip_fingerprints(out):
    """What a manifest written before fingerprints and output checksums existed looks like."""
    for part in labelset.part_paths(out):
        table = pq.read_table(part)
        pq.write_table(table.drop_columns([*FINGERPRINT_KEYS, "output_files"]), part)


def test_rows_without_fingerprints_are_unknown_once_and_relabelled_only_when_asked(tmp_path, teacher):
    images, out = tmp_path / "images", tmp_path / "out"
    write_images(images, NAMES, seed=3)
    invoke(*folder_args(teacher, images, out))
    _strip_fingerprints(out)
    assert labelset.read_manifest(out).column("input_sha256").null_count == 3  # old parts still load

    report = verify_labelset(out)
    assert report.ok, report.problems
    assert len(report.notes) == 1 and "3 rows have no input fingerprint" in report.notes[0]
    result = invoke("verify", str(out))
    assert result.output.count("no input fingerprint") == 1

    assert "0 labelled, 3 already done" in invoke(*folder_args(teacher, images, out)).output
    assert "3 labelled, 0 already done" in invoke(*folder_args(teacher, images, out, "--recheck-inputs")).output
    assert labelset.read_manifest(out).column("input_sha256").null_count == 0
    assert verify_labelset(out).notes == []
