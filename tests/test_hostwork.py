"""The host work per image: EXIF orientation known from the decode, statistics, encoders, the measured cost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autolabel.classes import CITYSCAPES
from autolabel.config import GenerateConfig, ModelConfig
from autolabel.data.datasets import discover_folder
from autolabel.data.io import read_image_upright
from autolabel.generate.runner import GenerateJob, run_generate
from autolabel.labelset import read_manifest
from autolabel.models.build import build_model
from autolabel.models.checkpoint import save_checkpoint

ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(width="tiny", infer_scales=(0.5, 1.0))
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint(path, build_model(cfg), cfg, CITYSCAPES.names)
    return path


def _sideways_photo(path: Path) -> None:
    """A 40x24 JPEG whose EXIF says "turn me a quarter clockwise" (orientation 6)."""
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    Image.fromarray(np.full((24, 40, 3), 90, np.uint8)).save(path, exif=exif.tobytes(), quality=95)


def test_read_image_upright_says_whether_it_turned_the_pixels(tmp_path):
    _sideways_photo(tmp_path / "side.jpg")
    Image.fromarray(np.zeros((24, 40, 3), np.uint8)).save(tmp_path / "plain.png")
    image, turned = read_image_upright(tmp_path / "side.jpg")
    assert image.shape == (40, 24, 3) and turned is True
    image, turned = read_image_upright(tmp_path / "side.jpg", exif_transpose=False)
    assert image.shape == (24, 40, 3) and turned is False
    assert read_image_upright(tmp_path / "plain.png")[1] is False


def test_generate_records_the_orientation_from_the_decode_without_reading_the_file_again(
    monkeypatch, teacher, tmp_path
):
    # asking a PNG for its EXIF after the decode made Pillow decode the whole file a second time
    def reread(*args, **kwargs):
        raise AssertionError("the row's exif_transposed must come from the decode")

    monkeypatch.setattr("autolabel.labelset.files.is_transposed", reread)
    photos = tmp_path / "photos"
    photos.mkdir()
    _sideways_photo(photos / "side.jpg")
    Image.fromarray(np.full((24, 40, 3), 128, np.uint8)).save(photos / "plain.png")
    job = GenerateJob(teacher=teacher, out=tmp_path / "labels", generate=GenerateConfig(device="cpu", scales=(1.0,)))
    result = run_generate(job, discover_folder(photos))
    assert result.ok == 2, result.errors
    rows = {r["id"]: r for r in read_manifest(tmp_path / "labels").to_pylist()}
    assert rows["side"]["exif_transposed"] is True and rows["plain"]["exif_transposed"] is False
    assert (rows["side"]["height"], rows["side"]["width"]) == (40, 24)
