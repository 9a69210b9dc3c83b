"""Atomic writes and the temporary names they leave when interrupted."""

from pathlib import Path

import pytest

from autolabel import fs
from autolabel.errors import OutputError


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_failed_rename_cleans_up_and_raises_output_error(tmp_path, monkeypatch):
    target = tmp_path / "label.png"
    target.write_bytes(b"old")

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fs.os, "replace", fail)
    with pytest.raises(OutputError, match="No space left") as info:
        fs.atomic_write_bytes(target, b"new")
    assert str(target) in str(info.value)
    assert target.read_bytes() == b"old" and _files(tmp_path) == ["label.png"]


def test_interrupt_during_write_cleans_up(tmp_path, monkeypatch):
    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(fs.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fs.atomic_write_bytes(tmp_path / "x.bin", b"data")
    assert _files(tmp_path) == []


def test_write_json_is_indented_with_a_final_newline(tmp_path):
    fs.write_json(tmp_path / "a" / "x.json", {"b": [1, 2]})
    assert (tmp_path / "a" / "x.json").read_text() == '{\n  "b": [\n    1,\n    2\n  ]\n}\n'


def test_replace_dir_swaps_a_folder_and_leaves_no_temporary_folder(tmp_path):
    old, new = tmp_path / "report", tmp_path / "staging"
    old.mkdir()
    (old / "a.txt").write_text("old")
    new.mkdir()
    (new / "b.txt").write_text("new")
    fs.replace_dir(new, old)
    assert _files(tmp_path) == ["report"] and _files(old) == ["b.txt"]


def test_temporary_names_are_recognised_and_mapped_to_their_targets(tmp_path):
    sibling = fs.temp_sibling(tmp_path / "img")
    assert fs.is_temp_name(sibling.name) and fs.temp_target(sibling) == tmp_path / "img"
    assert fs.is_temp_name(".a.png.x8y.tmp") and not fs.is_temp_name("a.tmp.png")
    assert fs.temp_target(Path("/o/.a.png.x8y.tmp")) == Path("/o/a.png")
    assert fs.temp_target(Path("/o/a.png")) is None
