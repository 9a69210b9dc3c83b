"""Evaluating a checkpoint on labelled images: the numbers ``autolabel evaluate`` prints and writes as JSON."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from autolabel.classes import ClassSet
from autolabel.data.datasets import Sample
from autolabel.errors import CheckpointError
from autolabel.evaluate.predictions import PredictionWriter
from autolabel.models.checkpoint import load_checkpoint
from autolabel.models.evaluation import EvalSettings, evaluate_model


def evaluate_checkpoint(
    checkpoint: str | Path,
    samples: Sequence[Sample],
    classes: ClassSet,
    *,
    settings: EvalSettings,
    device: torch.device | str = "cpu",
    labels_are_train_ids: bool = False,
    save_predictions: Path | None = None,
    on_image: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Per-class IoU and mIoU of ``checkpoint`` on ``samples``, as a JSON-friendly dict.

    Args:
        checkpoint: an autolabel checkpoint trained for ``classes`` (refused otherwise).
        samples: labelled images; their labels hold dataset label ids unless ``labels_are_train_ids``.
        classes: the class set the labels and the checkpoint use.
        settings: how to run the model; empty ``settings.scales`` means the model's own inference scales.
        device: where the model runs.
        save_predictions: also write every prediction under this folder (train ids, and label ids in the
            official Cityscapes naming).
        on_image: called once per evaluated image (progress).
    """
    loaded = load_checkpoint(checkpoint, device=device, expected_num_classes=classes.num_classes)
    if loaded.class_names != classes.names:
        raise CheckpointError(
            f"{checkpoint}: trained for classes {list(loaded.class_names)}, but the config's "
            f"classes are {list(classes.names)} (pass the training --config)"
        )
    if not settings.scales:
        settings = replace(settings, scales=loaded.model_cfg.infer_scales)
    writer = PredictionWriter(save_predictions, classes) if save_predictions is not None else None
    metrics = evaluate_model(
        loaded.model,
        samples,
        None if labels_are_train_ids else classes.label_to_train_lut(),
        classes.names,
        device=device,
        settings=settings,
        on_prediction=writer.write if writer is not None else None,
        on_image=on_image,
    )
    return {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": loaded.sha256,
        "images": len(samples),
        "scales": list(settings.scales),
        "flip": settings.flip,
        **metrics.to_dict(),
    }
