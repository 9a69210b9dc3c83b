"""Ranking signals measured at generate time (scale and flip disagreement) and the manifest columns they add."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from autolabel import labelset
from autolabel.classes import custom_class_set
from autolabel.config import DataConfig, GenerateConfig, ModelConfig
from autolabel.generate.teacher import Teacher
from autolabel.labelset.confidence import make_ladder
from autolabel.models.checkpoint import LoadedCheckpoint


def stand_in_teacher(model: nn.Module, scales=(1.0,), flip=False, tile_size=0) -> Teacher:
    """A two-class teacher around a model that follows the contract (model(images, scales=...) -> dict)."""
    classes = custom_class_set(("a", "b"))
    loaded = LoadedCheckpoint(model=model, model_cfg=ModelConfig(width="tiny"), class_names=classes.names)
    settings = GenerateConfig(device="cpu", scales=scales, flip=flip, tile_size=tile_size)
    return Teacher(loaded, classes, torch.device("cpu"), settings, DataConfig(), make_ladder(0.5))


def test_manifest_without_the_review_columns_still_loads(tmp_path: Path):
    old_columns = [f for f in labelset.MANIFEST_SCHEMA if f.name not in ("source", *labelset.SIGNAL_COLUMNS)]
    row = {f.name: None for f in old_columns} | {"id": "a", "status": "ok", "mean_confidence": 0.5}
    (tmp_path / labelset.MANIFEST_DIR).mkdir()
    pq.write_table(pa.Table.from_pylist([row], schema=pa.schema(old_columns)), tmp_path / "manifest/part-x.parquet")
    loaded = labelset.read_manifest(tmp_path).to_pylist()[0]
    assert loaded["source"] is None and loaded["scale_disagreement"] is None and loaded["mean_confidence"] == 0.5


class ScalesDisagree(nn.Module):
    """Smallest scale: class 0 everywhere; largest scale: class 1 wherever the pixel is bright (per pixel of its
    own input, so tiling changes nothing); fused: class 0."""

    def forward(self, images: torch.Tensor, scales=None) -> dict[str, torch.Tensor]:
        b, _, h, w = images.shape
        out = {"pred": torch.zeros(b, 2, h, w).index_fill_(1, torch.tensor([0]), 5.0)}
        for s in scales:
            x = nn.functional.interpolate(images, scale_factor=s, mode="bilinear")
            p = torch.zeros(b, 2, *x.shape[-2:])
            if s == max(scales):
                p[:, 1] = 10.0 * x[:, 0]  # normalised red: about +2.2 bright, -2.1 dark
            else:
                p[:, 0] = 5.0
            out[f"pred_{float(s)}x"] = p
        return out


class MirrorAsymmetric(nn.Module):
    """Class 0's logit grows with the column, class 1's is 0.25: a mirror image moves the boundary."""

    def forward(self, images: torch.Tensor, scales=None) -> dict[str, torch.Tensor]:
        b, _, h, w = images.shape
        ramp = torch.linspace(0, 1, w).expand(b, h, w)
        return {"pred": torch.stack([ramp, torch.full_like(ramp, 0.25)], dim=1)}


@pytest.mark.parametrize("tile_size", [0, 12])
def test_scale_disagreement_is_the_share_of_pixels_where_smallest_and_largest_scale_differ(tile_size: int):
    teacher = stand_in_teacher(ScalesDisagree(), scales=(0.5, 1.0, 2.0), tile_size=tile_size)
    images = np.zeros((2, 8, 16, 3), dtype=np.uint8)
    images[0, :, :8] = 255  # left half bright: the largest scale says class 1 there
    images[1, :2] = 255  # top quarter bright
    predicted = teacher.predict(images)
    # 12-pixel windows of the 2x input: 6 input pixels, so the 16x8 image is stitched from several windows
    assert predicted.signals["scale_disagreement"].tolist() == [0.5, 0.25]
    assert "flip_disagreement" not in predicted.signals


def test_flip_disagreement_compares_the_image_with_its_mirror_image():
    teacher = stand_in_teacher(MirrorAsymmetric(), flip=True)
    predicted = teacher.predict(np.zeros((1, 4, 8, 3), dtype=np.uint8))
    # ramp over 8 columns: 0, 1/7, ..., 1; class 0 where ramp > 0.25, i.e. columns 2..7; mirrored: 0..5.
    # They differ in columns 0, 1, 6, 7: half the pixels.
    assert predicted.signals["flip_disagreement"].tolist() == [0.5]
    assert "scale_disagreement" not in predicted.signals
