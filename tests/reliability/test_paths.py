"""Hostile paths: `..` components, symlinks leading outside the input tree, output inside the input.

Nothing may ever be written outside ``--out`` (the whole temporary tree, working directory included, is
snapshotted before and after), and the output folder is never read back as input.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from autolabel import labelset
from autolabel.cli import main

from .helpers import GENERATE_SETTINGS, assert_verified, tree_snapshot


def _image(path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def world(tmp_path, monkeypatch):
    """An input tree with escape hatches, and a working directory inside the snapshotted tree."""
    _image(tmp_path / "data" / "imgs" / "a.png", 1)
    _image(tmp_path / "data" / "imgs" / "sub" / "b.png", 2)
    _image(tmp_path / "outside" / "secret.png", 3)
    _image(tmp_path / "outside_dir" / "x.png", 4)
    (tmp_path / "data" / "imgs" / "escape.png").symlink_to(tmp_path / "outside" / "secret.png")
    (tmp_path / "data" / "imgs" / "escape_dir").symlink_to(tmp_path / "outside_dir", target_is_directory=True)
    (tmp_path / "data" / "imgs" / "up").symlink_to("../..", target_is_directory=True)  # a loop back up
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path


def _changes_outside(before: dict, after: dict, out_rel: str) -> list[str]:
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    return sorted(k for k in changed if k != out_rel and not k.startswith(out_rel + "/"))


def _generate(teacher, *args: str, code: int = 0):
    result = CliRunner().invoke(main, ["generate", "--teacher", str(teacher), *args, *GENERATE_SETTINGS])
    assert result.exit_code == code, (result.output, result.exception)
    return result


def test_output_inside_input_with_dotdot_and_outward_symlinks(world, teacher):
    images = "../data/imgs/sub/../../imgs"  # relative to the working directory, with `..` parts
    out = "../data/imgs/sub/../labels_out"  # inside the input tree
    before = tree_snapshot(world)
    for _ in range(2):  # the second run must not pick up the first run's label PNGs as new images
        result = _generate(teacher, "--images", images, "--out", out)
    assert "2 already done" in result.output
    out_dir = world / "data" / "imgs" / "labels_out"
    assert _changes_outside(before, tree_snapshot(world), "data/imgs/labels_out") == []
    rows = labelset.read_manifest(out_dir, status=None).to_pylist()
    # the symlinks leading outside the input tree are not followed; the loop `up` adds nothing
    assert sorted(r["id"] for r in rows) == ["a", "sub/b"]
    assert all(r["status"] == "ok" for r in rows)
    assert_verified(out_dir)


def test_file_list_entries_pointing_outside_stay_inside_out(world, teacher):
    listing = world / "data" / "list.txt"
    listing.write_text("imgs/a.png\n../outside/secret.png\n" + str(world / "outside_dir" / "x.png") + "\n")
    before = tree_snapshot(world)
    _generate(teacher, "--dataset", f"filelist:{listing}:", "--out", "result")
    assert _changes_outside(before, tree_snapshot(world), "cwd/result") == []
    rows = labelset.read_manifest(world / "cwd" / "result").to_pylist()
    assert len(rows) == 3
    for row in rows:
        assert ".." not in row["id"].split("/") and not row["id"].startswith("/")
        label = (world / "cwd" / "result" / row["label"]).resolve()
        assert label.is_relative_to(world / "cwd" / "result") and label.is_file()


def test_out_given_through_a_symlink_writes_to_its_target_only(world, teacher):
    """A user may point --out at a symlink to scratch space: writes go to the target and nowhere else."""
    (world / "scratch").mkdir()
    (world / "cwd" / "out_link").symlink_to(world / "scratch", target_is_directory=True)
    before = tree_snapshot(world)
    _generate(teacher, "--images", str(world / "data" / "imgs"), "--out", "out_link")
    assert _changes_outside(before, tree_snapshot(world), "scratch") == []
    assert len(labelset.read_manifest(world / "scratch")) == 2
