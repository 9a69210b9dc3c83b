"""Dataset discovery: Cityscapes (on a generated synthetic city), Mapillary, folders, file lists."""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autolabel.config import DataConfig
from autolabel.data import datasets, io
from autolabel.data.datasets import Sample, auto_label_relpath
from autolabel.data.sources import discover_split
from autolabel.errors import ConfigError, DataError

COUNTS = {"train": 3, "val": 2, "train_extra": 4}


@pytest.fixture(scope="module")
def city(synthetic_city) -> Path:
    root = synthetic_city(train=COUNTS["train"], val=COUNTS["val"], extra=COUNTS["train_extra"], size=(64, 32))
    return root


def _image(path: Path, size=(4, 3)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (1, 2, 3)).save(path)
    return path


# ---------------------------------------------------------------------------------------------------------
# Cityscapes


@pytest.mark.parametrize("split", sorted(COUNTS))
def test_cityscapes_counts_and_pairs(city, split):
    samples = datasets.discover_cityscapes(city, split)
    assert len(samples) == COUNTS[split]
    assert [s.id for s in samples] == sorted(s.id for s in samples)
    for sample in samples:
        assert re.fullmatch(rf"{split}/synthcity\d+/synthcity\d+_\d{{6}}_\d{{6}}_leftImg8bit", sample.id)
        stem = sample.image.name.removesuffix("_leftImg8bit.png")
        assert sample.image == city / "leftImg8bit" / f"{sample.id}.png"
        assert sample.coarse is not None and sample.coarse.name == f"{stem}_gtCoarse_labelIds.png"
        assert sample.coarse.parent.relative_to(city) == Path("gtCoarse") / Path(sample.id).parent
        if split == "train_extra":  # like Cityscapes: no fine labels for the extra images
            assert sample.label is None
        else:
            assert sample.label == city / "gtFine" / Path(sample.id).parent / f"{stem}_gtFine_labelIds.png"
            assert io.read_label(sample.label).shape == io.read_image(sample.image).shape[:2]


def test_ids_do_not_depend_on_where_the_tree_is(city, tmp_path, monkeypatch):
    copy = tmp_path / "elsewhere"
    shutil.copytree(city, copy)
    monkeypatch.chdir(tmp_path)
    original = [s.id for s in datasets.discover_cityscapes(city, "train")]
    assert [s.id for s in datasets.discover_cityscapes(Path("elsewhere"), "train")] == original
    assert [s.id for s in datasets.discover_cityscapes(city, "train")] == original


def test_cityscapes_unknown_split_lists_available(city):
    with pytest.raises(DataError, match="available splits: train, train_extra, val") as info:
        datasets.discover_cityscapes(city, "test")
    assert "test" in str(info.value)


def test_cityscapes_not_a_root(tmp_path):
    with pytest.raises(DataError, match="not found"):
        datasets.discover_cityscapes(tmp_path / "nope", "train")
    with pytest.raises(DataError, match="is this a Cityscapes root"):
        datasets.discover_cityscapes(tmp_path, "train")


def test_discover_dispatches_on_layout(city, tmp_path):
    val = datasets.discover_cityscapes(city, "val")
    assert discover_split(DataConfig(layout="cityscapes", root=city), "val") == val
    folder = discover_split(DataConfig(layout="folder", root=city / "leftImg8bit"), "val")
    assert [s.id for s in folder] == [s.id.removeprefix("val/") for s in val]
    with pytest.raises(ConfigError, match="data.root"):
        discover_split(DataConfig(layout="folder"), "val")


def test_auto_label_relpath():
    assert auto_label_relpath("train_extra/aachen/aachen_000000_000019_leftImg8bit") == (
        "train_extra/aachen/aachen_000000_000019_gtAuto_labelTrainIds"
    )
    assert auto_label_relpath("holiday/beach_leftImg8bit_2") == "holiday/beach_leftImg8bit_2"
    assert auto_label_relpath("frames/0001") == "frames/0001"


# ---------------------------------------------------------------------------------------------------------
# a plain folder


def test_folder_recursive_case_insensitive_skips_hidden_and_non_images(tmp_path):
    root = tmp_path / "pool"
    for name in ("a.png", "sub/b.JPG", "sub/deeper/c.JpEg", ".hidden.png", ".cache/d.png"):
        _image(root / name)
    for name in ("notes.txt", "e.gif"):
        (root / name).write_text("not a png/jpg")
    samples = datasets.discover_folder(root)
    assert [s.id for s in samples] == ["a", "sub/b", "sub/deeper/c"]
    assert samples[1] == Sample(id="sub/b", image=root / "sub" / "b.JPG")


def test_folder_exclude_skips_an_output_dir_inside_the_input(tmp_path):
    root = tmp_path / "pool"
    _image(root / "a.png")
    _image(root / "out" / "labels" / "a.png")
    assert [s.id for s in datasets.discover_folder(root)] == ["a", "out/labels/a"]
    assert [s.id for s in datasets.discover_folder(root, exclude=[root / "out"])] == ["a"]


def test_folder_symlinks_inside_followed_outside_skipped_loops_end(tmp_path):
    root, outside = tmp_path / "pool", tmp_path / "secret"
    _image(root / "real" / "a.png")
    _image(outside / "s.png")
    os.symlink(outside, root / "to_outside")
    os.symlink(outside / "s.png", root / "outside_file.png")
    os.symlink(root / "real" / "a.png", root / "alias.png")
    os.symlink(root, root / "real" / "loop")
    ids = [s.id for s in datasets.discover_folder(root)]
    assert ids == ["alias", "real/a"]


def test_folder_same_id_twice_is_an_error(tmp_path):
    _image(tmp_path / "x.png")
    _image(tmp_path / "x.jpg")
    with pytest.raises(DataError, match="same id 'x'"):
        datasets.discover_folder(tmp_path)


def test_folder_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("no images")
    with pytest.raises(DataError, match="found no images"):
        datasets.discover_folder(tmp_path)


# ---------------------------------------------------------------------------------------------------------
# a file list


def test_filelist_relative_to_list_comments_and_labels(tmp_path, monkeypatch):
    data = tmp_path / "data"
    _image(data / "imgs" / "b.png")
    _image(data / "imgs" / "a.jpg")
    io.write_label_png(data / "labels" / "a.png", np.zeros((3, 4), np.uint8))
    listing = data / "lists" / "train.txt"
    listing.parent.mkdir()
    listing.write_text("# training images\n../imgs/b.png\n\n  # indented comment\n../imgs/a.jpg\t../labels/a.png\n")
    monkeypatch.chdir(tmp_path)  # paths are relative to the list file, not the working directory
    samples = datasets.discover_filelist(Path("data/lists/train.txt"))
    assert [s.id for s in samples] == ["imgs/a", "imgs/b"]
    assert samples[0].label == data / "lists" / ".." / "labels" / "a.png"  # absolute, as listed
    assert samples[1].label is None
    by_config = discover_split(DataConfig(layout="filelist", root=data / "lists"), "train")
    assert by_config == datasets.discover_filelist(listing)


def test_filelist_missing_file_names_the_line(tmp_path):
    _image(tmp_path / "a.png")
    listing = tmp_path / "list.txt"
    listing.write_text("a.png\n# fine\nmissing.png\n")
    with pytest.raises(DataError, match=r"list\.txt:3: image .*missing\.png not found"):
        datasets.discover_filelist(listing)
    with pytest.raises(DataError, match="file list not found"):
        datasets.discover_filelist(tmp_path / "nope.txt")


def test_filelist_ids_never_climb_out(tmp_path):
    _image(tmp_path / "outside" / "x.png")
    _image(tmp_path / "lists" / "in" / "y.png")
    listing = tmp_path / "lists" / "l.txt"
    listing.write_text(f"../outside/./x.png\n{tmp_path / 'lists' / 'in' / 'y.png'}\n")
    assert [s.id for s in datasets.discover_filelist(listing)] == ["in/y", "outside/x"]
    listing.write_text(f"in/y.png\n{tmp_path / 'lists' / 'in' / 'y.png'}\n")
    with pytest.raises(DataError, match="same id 'in/y'"):  # two spellings of one file
        datasets.discover_filelist(listing)


def test_filelist_duplicate_id(tmp_path):
    _image(tmp_path / "a.png")
    _image(tmp_path / "a.jpg")
    (tmp_path / "l.txt").write_text("a.png\na.jpg\n")
    with pytest.raises(DataError, match=r"l\.txt:2"):
        datasets.discover_filelist(tmp_path / "l.txt")


# ---------------------------------------------------------------------------------------------------------
# Mapillary Vistas


@pytest.fixture
def vistas(tmp_path) -> Path:
    root = tmp_path / "vistas"
    labels = [
        {"name": "construction--flat--road", "color": [128, 64, 128], "evaluate": True},
        {"name": "nature--sky", "color": [70, 130, 180], "evaluate": True},
        {"name": "void--unlabeled", "color": [0, 0, 0], "evaluate": False},
        {"name": "object--vehicle--car", "color": [0, 0, 142], "evaluate": True},
    ]
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"labels": labels}))
    for split, names in (("training", ["t2", "t1"]), ("validation", ["v1"])):
        for name in names:
            _image(root / split / "images" / f"{name}.jpg")
            io.write_label_png(root / split / "labels" / f"{name}.png", np.array([[0, 1, 2, 3]], np.uint8))
    _image(root / "training" / "images" / "unlabelled.jpg")
    return root


def test_mapillary_discovery(vistas):
    train = datasets.discover_mapillary(vistas, "training")
    assert [s.id for s in train] == ["training/images/t1", "training/images/t2", "training/images/unlabelled"]
    assert train[0].label == vistas / "training" / "labels" / "t1.png" and train[2].label is None
    assert discover_split(DataConfig(layout="mapillary", root=vistas), "val") == datasets.discover_mapillary(
        vistas, "validation"
    )
    with pytest.raises(DataError, match="train_extra"):
        datasets.discover_mapillary(vistas, "train_extra")


def test_mapillary_class_set_from_config(vistas):
    classes = datasets.mapillary_class_set(vistas)
    assert classes.names == ("construction--flat--road", "nature--sky", "object--vehicle--car")
    assert classes.label_ids == (0, 1, 3)
    assert classes.colors[2] == (0, 0, 142)
    label = io.read_label(vistas / "validation" / "labels" / "v1.png", lut=classes.label_to_train_lut())
    np.testing.assert_array_equal(label, [[0, 1, 255, 2]])  # the unevaluated class becomes ignore


def test_mapillary_bad_config(vistas):
    (vistas / "config.json").write_text('{"classes": []}')
    with pytest.raises(DataError, match="config.json"):
        datasets.mapillary_class_set(vistas)
    (vistas / "config.json").unlink()
    with pytest.raises(DataError, match="config.json: Mapillary config not found"):
        datasets.mapillary_class_set(vistas)
