"""One function builds every network from its :class:`~autolabel.config.ModelConfig`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypedDict

from autolabel.config import ModelConfig
from autolabel.models.deeplab import DeepLabV3Plus
from autolabel.models.hrnet import HRNET_SPECS
from autolabel.models.mscale import MscaleMode, MultiScaleSegmenter
from autolabel.models.ocr import HRNetOCR

logger = logging.getLogger(__name__)


class _SegmenterArgs(TypedDict):
    """The keyword arguments every :class:`MultiScaleSegmenter` takes."""

    num_classes: int
    mscale: MscaleMode
    train_scales: Sequence[float]
    infer_scales: Sequence[float]


def build_model(cfg: ModelConfig) -> MultiScaleSegmenter:
    """The network ``cfg`` describes, freshly initialised (train mode, on the CPU)."""
    common = _SegmenterArgs(
        num_classes=cfg.num_classes, mscale=cfg.mscale, train_scales=cfg.train_scales, infer_scales=cfg.infer_scales
    )
    if cfg.arch == "hrnet_ocr":
        model: MultiScaleSegmenter = HRNetOCR(
            spec=HRNET_SPECS[cfg.width], dropout=cfg.dropout, attn_inner_3x3=cfg.attn_inner_3x3, **common
        )
    else:  # deeplabv3plus: a ResNet-50 trunk, `width` does not apply
        model = DeepLabV3Plus(attn_inner_3x3=cfg.attn_inner_3x3, **common)
    logger.debug(
        "built %s/%s (%s): %.1fM parameters",
        cfg.arch,
        cfg.width,
        cfg.mscale,
        sum(p.numel() for p in model.parameters()) / 1e6,
    )
    return model
