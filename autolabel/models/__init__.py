"""Segmentation networks (HRNetV2-OCR, DeepLabV3+), multi-scale fusion and checkpoint files."""

from autolabel.models.build import build_model
from autolabel.models.checkpoint import LoadedCheckpoint, checkpoint_sha256, load_checkpoint, save_checkpoint
from autolabel.models.mscale import MultiScaleSegmenter

__all__ = [
    "LoadedCheckpoint",
    "MultiScaleSegmenter",
    "build_model",
    "checkpoint_sha256",
    "load_checkpoint",
    "save_checkpoint",
]
