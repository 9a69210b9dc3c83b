"""Hostile paths: `..` components, symlinks leading outside the input tree, output inside the input, odd names.

Nothing may ever be written outside ``--out`` (the whole temporary tree, working directory included, is
snapshotted before and after), the output folder is never read back as input, an output folder that holds the
inputs is refused, and a name that cannot be an output file's is one error row, not the end of the run.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from autolabel import labelset
from autolabel.cli import main
from autolabel.errors import EXIT_FINISHED_WITH_ERRORS, EXIT_USER_ERROR

from .helpers import GENERATE_SETTINGS, SPLIT, assert_verified, tree_snapshot


def _image(path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(path, format="PNG")


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


def test_odd_names_in_a_file_list_become_error_rows_and_the_run_goes_on(world, teacher):
    """`...png` once gave the id `..`, whose confidence path was OUT itself: the whole run died (exit 2)."""
    imgs = world / "data" / "imgs"
    odd = {
        "...png": "'..' path component",
        ".hidden.png": "hidden path component",
        "sub/.x.png": "hidden path component",
        ("n" * 210) + ".png": "longer than 200 bytes",
        "zarr.json.png": "reserved by the confidence store",
        "sub.png": "other images' ids lie under it",  # next to sub/b.png: a file and a folder of one name
    }
    for name in odd:
        _image(imgs / name, len(name))
    listing = imgs / "list.txt"  # entries relative to it: `...png` has the id `..`
    listing.write_text("".join(f"{name}\n" for name in ["a.png", "sub/b.png", *odd]))
    out = world / "result"
    before = tree_snapshot(world)
    result = _generate(teacher, "--dataset", f"list:{listing}", "--out", str(out), code=EXIT_FINISHED_WITH_ERRORS)
    assert _changes_outside(before, tree_snapshot(world), "result") == []
    rows = {r["id"]: r for r in labelset.read_manifest(out, status=None).to_pylist()}
    assert {i for i, r in rows.items() if r["status"] == "ok"} == {"a", "sub/b"}
    errors = {i: r["error"] for i, r in rows.items() if r["status"] != "ok"}
    assert len(errors) == len(odd)
    for name, reason in odd.items():
        message = next(m for m in errors.values() if m.startswith(f"{imgs / name}:"))
        assert "unusable image id" in message and reason in message, message
    assert (out / "confidence.zarr" / "zarr.json").is_file() and (out / labelset.LABELSET_FILE).is_file()
    assert sorted(p.relative_to(out / "labels").as_posix() for p in (out / "labels").rglob("*.png")) == [
        "a.png",
        "sub/b.png",
    ]
    assert "unusable image id" in result.output
    assert_verified(out)


@pytest.mark.parametrize("where", ["the images folder", "a dataset root above it"])
def test_an_out_that_contains_the_inputs_is_refused(where, world, teacher, city, tmp_path):
    """It used to exit 0 with "0 labelled" and write labelset.json and confidence.zarr into the input tree."""
    if where == "the images folder":
        images = world / "data" / "imgs"
        args = ["--images", str(images), "--out", str(images)]
    else:
        shutil.copytree(city, tmp_path / "city")
        images = tmp_path / "city"
        args = ["--dataset", f"cityscapes:{images}:{SPLIT}", "--out", str(images / "leftImg8bit")]
    before = tree_snapshot(images)
    result = _generate(teacher, *args, code=EXIT_USER_ERROR)
    assert "contains the" in result.output and "Choose an output folder outside" in result.output
    assert tree_snapshot(images) == before


def test_a_label_set_inside_the_images_tree_is_not_labelled_as_images(world, teacher):
    """Label PNGs of another label set lying in an --images tree used to be labelled like photos."""
    imgs = world / "data" / "imgs"
    _generate(teacher, "--images", str(imgs / "sub"), "--out", str(imgs / "old_labels"))  # lies inside imgs
    assert (imgs / "old_labels" / "labels" / "b.png").is_file()
    out = world / "new"
    _generate(teacher, "--images", str(imgs), "--out", str(out))
    assert sorted(labelset.rows_by_id(labelset.read_manifest(out, status=None))) == ["a", "sub/b"]
