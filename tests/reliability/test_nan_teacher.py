"""Broken teachers: NaN/Inf weights are refused by every command that loads one, naming the tensor; a teacher
whose weights are finite but whose logits are not makes error rows ("teacher produced NaN/Inf"), never "ok".

Before: a NaN teacher was accepted (exit 0), every label all-ignore, mean_confidence NaN, `verify` passed.
The commands that load a teacher: `generate` (in process and on Dask: tests/reliability/test_checkpoints.py,
case ``nan_weights``), `evaluate` and `import-checkpoint` (here).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from autolabel import labelset
from autolabel.config import DataConfig, GenerateConfig, ModelConfig
from autolabel.data.datasets import Sample
from autolabel.errors import EXIT_FINISHED_WITH_ERRORS, EXIT_USER_ERROR
from autolabel.generate.runner import NON_FINITE_MESSAGE, Chunk, process_chunks
from autolabel.generate.teacher import Teacher
from autolabel.labelset.confidence import make_ladder
from autolabel.labelset.files import WriteSettings
from autolabel.labelset.verify import verify_labelset
from autolabel.models.checkpoint import LoadedCheckpoint

from .helpers import folder_args, invoke, write_images

WEIGHT_KEY = "ocr.cls_head.weight"


def broken_copy(teacher: Path, dest: Path, key: str, value: float, index: int = 0) -> str:
    """``teacher`` with one value of tensor ``key`` set to ``value``; returns the key."""
    payload = torch.load(teacher, weights_only=True)
    tensor = payload["state_dict"][key]
    tensor.view(-1)[index] = value
    torch.save(payload, dest)
    return key


def first_buffer_key(teacher: Path, suffix: str) -> str:
    return next(k for k in torch.load(teacher, weights_only=True)["state_dict"] if k.endswith(suffix))


@pytest.mark.parametrize("kind", ["nan_weight", "inf_buffer"])
def test_evaluate_refuses_a_teacher_with_non_finite_values(kind, teacher, city, tmp_path):
    bad = tmp_path / "bad.pt"
    if kind == "nan_weight":
        key = broken_copy(teacher, bad, WEIGHT_KEY, math.nan, index=5)
    else:
        key = broken_copy(teacher, bad, first_buffer_key(teacher, "running_var"), math.inf)
    result = invoke("evaluate", "--checkpoint", str(bad), "--data", f"cityscapes:{city}:val", code=EXIT_USER_ERROR)
    assert str(bad) in result.output and repr(key) in result.output and "non-finite" in result.output
    assert ("NaN" if kind == "nan_weight" else "Inf") in result.output


def test_import_checkpoint_refuses_published_weights_with_a_nan(teacher, tmp_path):
    state = torch.load(teacher, weights_only=True)["state_dict"]
    state[WEIGHT_KEY].view(-1)[0] = math.nan
    src, dst = tmp_path / "nvidia.pth", tmp_path / "imported.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, src)
    result = invoke(
        "import-checkpoint", str(src), str(dst), "--classes", "cityscapes", "--set", "model.width=tiny",
        code=EXIT_USER_ERROR,
    )  # fmt: skip
    assert repr(WEIGHT_KEY) in result.output and "non-finite" in result.output
    assert not dst.exists()


def test_finite_weights_with_overflowing_logits_give_error_rows_not_labels(teacher, tmp_path):
    """Weights near float32's limit are finite, so the load check passes; the logits overflow to Inf/NaN."""
    payload = torch.load(teacher, weights_only=True)
    payload["state_dict"][WEIGHT_KEY].mul_(1e38)
    overflowing = tmp_path / "overflow.pt"
    torch.save(payload, overflowing)
    images, out = tmp_path / "images", tmp_path / "out"
    write_images(images, ["a.png", "b.png", "c.png"], seed=4)
    result = invoke(*folder_args(overflowing, images, out), code=EXIT_FINISHED_WITH_ERRORS)
    assert "0 labelled" in result.output and "teacher produced NaN/Inf" in result.output
    rows = labelset.read_manifest(out, status=None).to_pylist()
    assert [r["status"] for r in rows] == ["error"] * 3
    assert all(r["error"] == NON_FINITE_MESSAGE and r["mean_confidence"] is None for r in rows)
    assert not list((out / labelset.LABELS_DIR).rglob("*.png")) and not (out / "confidence.zarr" / "a").exists()
    report = verify_labelset(out)
    assert report.ok and len(report.error_rows) == 3  # what is there is consistent: three error rows


class HalfBlind:
    """A stand-in model (the model contract): confident colour classes, NaN logits for all-black images."""

    training = False

    def eval(self):
        return self

    def to(self, *args, **kwargs):
        return self

    def __call__(self, images, scales=None):
        logits = images * 4.0  # (B, 3, H, W)
        black = images.flatten(1).amax(dim=1) <= images.min()  # (B,) an image of one value
        return {"pred": torch.where(black[:, None, None, None], torch.nan, logits)}


def test_only_the_images_with_non_finite_logits_in_a_batch_become_error_rows(tmp_path):
    from autolabel.classes import custom_class_set

    cfg = ModelConfig(width="tiny", num_classes=3)
    loaded = LoadedCheckpoint(model=HalfBlind(), model_cfg=cfg, class_names=("r", "g", "b"), sha256="0")  # type: ignore[arg-type]
    settings = GenerateConfig(device="cpu", batch_size=4, scales=(1.0,))
    data = DataConfig(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    stand_in = Teacher(loaded, custom_class_set(("r", "g", "b")), torch.device("cpu"), settings, data, make_ladder(0.5))
    write_images(tmp_path / "in", ["0.png", "1.png", "3.png"], seed=5, size=(12, 8))
    from PIL import Image

    Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(tmp_path / "in" / "2.png")
    samples = [Sample(id=str(i), image=tmp_path / "in" / f"{i}.png") for i in range(4)]
    out = tmp_path / "out"
    rows = process_chunks(
        stand_in,
        [Chunk(samples=samples, finished_rows={})],
        WriteSettings(out=out, num_classes=3, shard="0/1"),
        max_pixels=None,
    )
    by_id = {r["id"]: r for r in rows}
    assert by_id["2"]["status"] == "error" and by_id["2"]["error"] == NON_FINITE_MESSAGE
    assert all(by_id[i]["status"] == "ok" and math.isfinite(by_id[i]["mean_confidence"]) for i in "013")
    assert not (out / "labels" / "2.png").exists() and (out / "labels" / "0.png").is_file()
