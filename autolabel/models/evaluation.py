"""A model over labelled images: the confusion matrix and mIoU that evaluation and validation report.

:func:`evaluate_model` runs :func:`~autolabel.models.predict.predict_logits` (multi-scale, optional flip, optional
tiling) over whole images one at a time and accumulates a :class:`~autolabel.metrics.ConfusionMatrix` on the
device; only the argmax (and, when asked, the uint8 prediction) crosses to the host. ``EvalSettings.precision``
runs the forward under autocast (``auto``: bf16/fp16 on a GPU, fp32 on the CPU); the argmax is taken in fp32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.utils.data
from torch import nn

from autolabel.data.datasets import Sample
from autolabel.data.loading import EvalDataset
from autolabel.metrics import ConfusionMatrix, SegMetrics
from autolabel.models.device import Precision, resolve_precision
from autolabel.models.predict import normalise, predict_logits


@dataclass(frozen=True)
class EvalSettings:
    """How to run the model over the images."""

    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    tile_size: int = 0
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    max_pixels: int | None = None
    workers: int = 0
    precision: Precision = "auto"  # fp32, bf16, fp16, or auto (see autolabel.models.device.resolve_precision)


def _shard(samples: Sequence[Sample], rank: int, world_size: int) -> list[Sample]:
    return list(samples)[rank::world_size]


@torch.inference_mode()
def evaluate_model(
    model: nn.Module,
    samples: Sequence[Sample],
    lut: np.ndarray | None,
    class_names: Sequence[str],
    *,
    device: torch.device | str = "cpu",
    settings: EvalSettings = EvalSettings(),
    on_prediction: Callable[[str, np.ndarray], None] | None = None,
    on_image: Callable[[], None] | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> SegMetrics:
    """mIoU of ``model`` on ``samples`` (labels mapped to train ids by ``lut``), whole images, one at a time.

    ``on_prediction(sample_id, train_ids)`` receives each prediction (uint8, H x W) on the host, e.g. to save it.

    With ``world_size > 1`` each rank evaluates every ``world_size``-th image and the confusion matrices are
    summed across ranks (torch.distributed must be initialised); every rank returns the same metrics.
    """
    device = torch.device(device)
    dataset = EvalDataset(_shard(samples, rank, world_size), lut, settings.max_pixels)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=1, num_workers=settings.workers, pin_memory=device.type == "cuda"
    )
    num_classes = len(class_names)
    precision = resolve_precision(settings.precision, device)
    matrix = ConfusionMatrix(num_classes, device=device)
    was_training = model.training
    model.eval()
    try:
        for batch in loader:
            images = normalise(batch["image"].to(device, non_blocking=True), settings.mean, settings.std)
            logits = predict_logits(
                model,
                images,
                settings.scales,
                flip=settings.flip,
                tile_size=settings.tile_size,
                keys={"pred"},  # tiling then stitches no per-scale canvas, flip averages no per-scale output
                precision=precision,
            )["pred"]  # (1, C, H, W) fp32
            pred = logits.argmax(1)  # (1, H, W)
            matrix.update(pred, batch["label"].to(device))
            if on_prediction is not None:
                sample_id = dataset.samples[int(batch["index"][0])].id
                on_prediction(sample_id, pred[0].to(torch.uint8).cpu().numpy())
            if on_image is not None:
                on_image()
    finally:
        model.train(was_training)
    if world_size > 1:
        dist.all_reduce(matrix.matrix)
        dist.all_reduce(matrix.missed)
    return matrix.compute(class_names)
