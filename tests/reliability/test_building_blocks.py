"""The pieces the fault scenarios rely on, each on its own: id checks, the exact mean, the journal, the lock,
checksums of what a writer wrote."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from autolabel import labelset
from autolabel.data.datasets import Sample, check_ids, id_problem
from autolabel.errors import LabelSetError
from autolabel.fs import is_temp_name
from autolabel.labelset import journal
from autolabel.labelset.checksums import check_input, entries_problems, input_fingerprint
from autolabel.labelset.confidence import FIXED_POINT, mean_probability
from autolabel.labelset.files import WriteSettings, finalise_image
from autolabel.labelset.lock import is_locked, shard_lock


@pytest.mark.parametrize(
    ("image_id", "reason"),
    [
        ("", "empty id"),
        ("..", "'..' path component"),
        ("a/./b", "'.' path component"),
        ("a//b", "empty path component"),
        ("a/", "empty path component"),
        ("/etc/passwd", "absolute path"),
        ("a/.b", "hidden path component"),
        ("a\x00b", "control character"),
        ("a\nb", "control character"),
        ("x" * 201, "longer than 200 bytes"),
        ("é" * 101, "longer than 200 bytes"),  # bytes, not characters
        ("/".join(["d" * 100] * 11), "longer than 1024 bytes"),
        ("zarr.json", "reserved"),
    ],
)
def test_ids_that_cannot_name_an_output_file_are_refused_with_the_reason(image_id, reason):
    assert reason in (id_problem(image_id) or "")


@pytest.mark.parametrize("image_id", ["a", "city/a_leftImg8bit", "odd names/with space ü 名前", "x" * 200, "a..b"])
def test_ordinary_ids_pass(image_id):
    assert id_problem(image_id) is None


def test_an_id_that_is_a_folder_of_other_ids_is_refused_and_the_others_kept(tmp_path):
    samples = check_ids([Sample("a", tmp_path / "a.png"), Sample("a/b", tmp_path / "a/b.png"), Sample("ab", tmp_path)])
    problems = {s.id: s.problem for s in samples}
    assert "other images' ids lie under it" in problems["a"] and problems["a/b"] is None and problems["ab"] is None


def test_the_mean_is_the_same_bits_whatever_the_order_and_batch():
    gen = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 17, 23, generator=gen)  # (B, H, W)
    shuffled = probs.flatten(1)[:, torch.randperm(17 * 23, generator=gen)].reshape(3, 23, 17)
    means = mean_probability(probs)
    assert torch.equal(means, mean_probability(shuffled))
    assert torch.equal(means[1:2], mean_probability(probs[1:2]))  # alone or in a batch
    exact = probs.double().mean(dim=(1, 2))
    assert torch.all((means - exact).abs() <= 1.0 / FIXED_POINT)  # truncation to 2**-32 at most


def test_a_journal_keeps_what_was_appended_and_skips_a_torn_last_line(tmp_path):
    path = journal.journal_path(tmp_path, "1/4", pid=123)
    assert journal.journal_shard(path) == "1/4" and not is_temp_name(path.name)
    log = journal.Journal(path)
    log.append({"id": "a", "status": "ok"})
    log.append({"id": "b", "status": "error", "error": "x"})
    log.close()
    with open(path, "a") as fh:
        fh.write('{"id": "c", "sta')  # a kill in the middle of an append
    assert [r["id"] for r in journal.read_journal(path)] == ["a", "b"]
    assert journal.journal_paths(tmp_path, "1/4") == [path] and journal.journal_paths(tmp_path, "0/4") == []


def _row(image_id: str, sha: str, status: str = "ok") -> dict:
    return {"id": image_id, "status": status, "label": f"labels/{image_id}.png", "label_sha256": sha, "shard": "0/1"}


def test_absorbing_replaces_rows_of_existing_parts_and_adds_the_rest_per_chunk(tmp_path):
    labelset.write_part(tmp_path, [_row("a", "old"), _row("b", "same")])
    log = journal.Journal(journal.journal_path(tmp_path, "0/1"))
    for row in (_row("a", "new"), _row("b", "same"), _row("c", "c1"), _row("d", "d1"), _row("z", "z1")):
        log.append(row)
    log.close()
    entries = journal.absorb(tmp_path, journal.journal_paths(tmp_path), chunks=[["a", "b"], ["c", "d", "e"]])
    assert sorted(entries) == ["a", "b", "c", "d", "z"] and journal.journal_paths(tmp_path) == []
    parts = {p.name: labelset.read_part(p).to_pylist() for p in labelset.part_paths(tmp_path)}
    assert set(parts) == {labelset.part_name(["a", "b"]), labelset.part_name(["c", "d"]), labelset.part_name(["z"])}
    rows = labelset.rows_by_id(labelset.read_manifest(tmp_path))
    assert rows["a"]["label_sha256"] == "new" and rows["b"]["label_sha256"] == "same"


def test_the_lock_names_its_holder_and_frees_on_exit(tmp_path):
    with shard_lock(tmp_path, "2/3") as path:
        assert is_locked(tmp_path, "2/3") and not is_locked(tmp_path, "1/3")
        assert f"pid {os.getpid()}" in path.read_text()
        with pytest.raises(LabelSetError, match=f"pid {os.getpid()}"):
            with shard_lock(tmp_path, "2/3"):
                pass
    assert not is_locked(tmp_path, "2/3")


def test_an_input_touched_but_unchanged_is_recognised_and_a_changed_one_is_not(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"pixels")
    row = input_fingerprint(path)
    assert check_input(row, path).state == "same"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = check_input(row, path)
    assert touched.state == "touched" and touched.fingerprint["input_mtime_ns"] == stat.st_mtime_ns + 10**9
    path.write_bytes(b"pixelz")  # same size, other bytes
    assert check_input(row, path).state == "changed"
    assert check_input({**row, "input_sha256": None}, path).state == "unknown"
    path.unlink()
    assert check_input(row, path).state == "missing"


def test_output_checksums_are_of_the_bytes_on_disk(tmp_path):
    """What finalise_image records for the confidence files is what verify finds: write, then re-hash."""
    sample = Sample("im", tmp_path / "im.png")
    labels = np.zeros((4, 6), np.uint8)
    row = finalise_image(WriteSettings(out=tmp_path, num_classes=2, shard="0/1"), sample, labels, labels, 0.5, {}, 0.0)
    assert [e["path"] for e in row["output_files"]] == ["confidence.zarr/im/c/0/0", "confidence.zarr/im/zarr.json"]
    assert entries_problems(tmp_path, row["output_files"]) == []
    assert json.loads((tmp_path / "confidence.zarr/im/zarr.json").read_text())["shape"] == [4, 6]
