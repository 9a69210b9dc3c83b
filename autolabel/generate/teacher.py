"""The teacher, ready to label batches: a checkpoint on a device, multi-scale prediction, thresholding there.

:func:`threshold_batch` turns fused logits into uint8 labels, classes and confidence codes on the logits'
device, so only ``3 x H x W`` bytes per image (and a small histogram) ever cross to the host, never the
``C x H x W`` float probabilities. With ``generate.precision`` the forward runs under autocast; temperature,
softmax, argmax and the thresholds stay in fp32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from autolabel.classes import ClassSet, class_set_for_names
from autolabel.config import DataConfig, GenerateConfig
from autolabel.errors import CheckpointError
from autolabel.generate.signals import ranking_signals, signal_keys
from autolabel.generate.thresholds import LabellingThresholds, global_thresholds, resolve_thresholds
from autolabel.labelset import confidence
from autolabel.labelset.confidence import IGNORE, class_code_histogram, mean_probability, quantise
from autolabel.models.checkpoint import LoadedCheckpoint, load_checkpoint
from autolabel.models.device import precision_name, resolve_device, resolve_precision
from autolabel.models.predict import apply_temperature, device_constant, predict_images, prepare_for_inference


@dataclass
class ThresholdedBatch:
    """What leaves the device for a batch: uint8 maps, one float per image, per-image histograms."""

    labels: torch.Tensor  # (B, H, W) uint8: argmax, or 255 where max prob <= its class's threshold
    classes: torch.Tensor  # (B, H, W) uint8: argmax of every pixel
    codes: torch.Tensor  # (B, H, W) uint8: confidence codes on the ladder (see autolabel.labelset.confidence)
    mean_confidence: torch.Tensor  # (B,) float64: mean max probability over all pixels (exact, any order)
    finite: torch.Tensor  # (B,) bool: every logit of the image finite (else its maps are meaningless)
    histogram: torch.Tensor | None = None  # (B, C, len(ladder) + 1) int64 pixels per (class, code)


def threshold_batch(
    logits: torch.Tensor,
    threshold: float | Sequence[float],
    ladder: Sequence[float],
    ignore_index: int = IGNORE,
    *,
    temperature: float | Sequence[float] | None = None,
    histogram: bool = False,
) -> ThresholdedBatch:
    """Temperature, softmax, max and argmax on the logits' device; ``max prob <= threshold`` gives
    ``ignore_index``. ``threshold`` is one value, or one per class (the threshold of the pixel's argmax class).

    The comparison is made in float32 against ``float32(threshold)``, the same comparison the confidence codes
    use, so a probability exactly at the threshold is ignored and re-thresholding from codes is exact.
    """
    probs = torch.softmax(apply_temperature(logits.float(), temperature), dim=1)  # (B, C, H, W)
    max_prob, argmax = probs.max(dim=1)  # (B, H, W) each
    if isinstance(threshold, int | float):
        limit = device_constant(float(threshold), logits.device, torch.float32)
    else:
        per_class = device_constant(tuple(float(t) for t in threshold), logits.device, torch.float32)  # (C,)
        limit = per_class[argmax]  # (B, H, W): each pixel's class's threshold
    keep = max_prob > limit
    labels = torch.where(keep, argmax, torch.full_like(argmax, ignore_index)).to(torch.uint8)
    classes = argmax.to(torch.uint8)
    codes = quantise(max_prob, ladder)
    return ThresholdedBatch(
        labels=labels,
        classes=classes,
        codes=codes,
        mean_confidence=mean_probability(max_prob),
        finite=torch.isfinite(logits).flatten(1).all(dim=1),
        histogram=class_code_histogram(classes, codes, logits.shape[1], len(ladder) + 1) if histogram else None,
    )


@dataclass
class PredictedBatch:
    """Host-side uint8 results of one batch."""

    labels: np.ndarray  # (B, H, W)
    codes: np.ndarray  # (B, H, W)
    mean_confidence: np.ndarray  # (B,)
    finite: np.ndarray  # (B,) bool: False where the teacher produced NaN/Inf logits
    attention: dict[str, np.ndarray]  # key -> (B, h, w) uint8 (0..255 = 0..1)
    classes: np.ndarray | None = None  # (B, H, W) argmax of every pixel
    histogram: np.ndarray | None = None  # (B, C, len(ladder) + 1) int64
    signals: dict[str, np.ndarray] = field(default_factory=dict)  # ranking signal -> (B,) float32 (generate.signals)


class Teacher:
    """A loaded checkpoint on a device, labelling uint8 image batches."""

    def __init__(
        self,
        loaded: LoadedCheckpoint,
        classes: ClassSet,
        device: torch.device,
        settings: GenerateConfig,
        data: DataConfig,
        ladder: Sequence[float],
        thresholds: LabellingThresholds | None = None,
    ):
        self.loaded = loaded
        self.classes = classes
        self.device = device
        self.settings = settings
        self.mean, self.std = data.mean, data.std
        self.ladder = tuple(ladder)
        self.thresholds = thresholds or global_thresholds(settings.threshold, classes.num_classes)
        self.precision = resolve_precision(settings.precision, device)  # autocast dtype; None = fp32
        self.model = prepare_for_inference(loaded.model, device)

    @property
    def precision_name(self) -> str:
        """``fp32``, ``bf16`` or ``fp16``: what ``generate.precision`` resolved to on this device."""
        return precision_name(self.precision)

    @classmethod
    def load(
        cls,
        checkpoint: Path,
        settings: GenerateConfig,
        data: DataConfig,
        classes: ClassSet | None = None,
        device: str | torch.device | None = None,
        *,
        slot: int | None = None,
        own_gpu_required: bool = False,
    ) -> Teacher:
        """Load and check the checkpoint, failing with a :class:`CheckpointError` before any work.

        ``classes`` (from the config) must match the checkpoint's class names; when None, the checkpoint's
        names are used (the Cityscapes set when they are Cityscapes'). ``device`` (default
        ``generate.device``), ``slot`` and ``own_gpu_required`` choose the GPU as
        :func:`~autolabel.models.device.select_device` says: ``slot`` is the shard index, so shards started
        side by side on one node (``make -j N generate``) each take their own GPU.
        """
        dev = resolve_device(str(device or settings.device), slot=slot, own_gpu_required=own_gpu_required)
        loaded = load_checkpoint(
            checkpoint, device="cpu", expected_num_classes=classes.num_classes if classes is not None else None
        )
        if classes is None:
            classes = class_set_for_names(loaded.class_names)
        elif tuple(loaded.class_names) != tuple(classes.names):
            raise CheckpointError(
                f"{checkpoint}: teacher classes {list(loaded.class_names)} differ from the "
                f"configured classes {list(classes.names)}"
            )
        thresholds = resolve_thresholds(settings, classes.names, loaded.sha256)
        ladder = confidence.make_grid(
            settings.ladder_step,
            settings.ladder_bottom,
            settings.ladder_top,
            (thresholds.global_threshold, *thresholds.per_class),
        )
        return cls(loaded, classes, dev, settings, data, ladder, thresholds)

    def output_keys(self) -> set[str]:
        """The model outputs labelling needs: the fused logits, attention maps when they are kept, and what the
        ranking signals are computed from."""
        attention = {f"attn_{s}x" for s in self.settings.scales} if self.settings.attention else set()
        return {"pred", *attention, *signal_keys(self.settings.scales, self.settings.flip)[0]}

    def predict(self, images: np.ndarray) -> PredictedBatch:
        """uint8 (B, H, W, 3) RGB -> thresholded labels, confidence codes, mean confidence, attention."""
        outputs = predict_images(
            self.model,
            images,
            self.settings,
            device=self.device,
            mean=self.mean,
            std=self.std,
            input_size_keys=signal_keys(self.settings.scales, self.settings.flip)[1],
            precision=self.precision,
            keys=self.output_keys(),
        )
        limits = self.thresholds
        result = threshold_batch(
            outputs["pred"],
            limits.global_threshold if limits.uniform else limits.per_class,
            self.ladder,
            temperature=limits.temperature,
            histogram=self.settings.confidence,
        )
        signals = ranking_signals(outputs, self.settings.scales, self.settings.flip)
        attention = {}
        if self.settings.attention:
            attention = {
                key: (value[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
                for key, value in outputs.items()
                if key.startswith("attn_")
            }
        return PredictedBatch(
            labels=result.labels.cpu().numpy(),
            codes=result.codes.cpu().numpy(),
            mean_confidence=result.mean_confidence.cpu().numpy(),
            finite=result.finite.cpu().numpy(),
            attention=attention,
            classes=result.classes.cpu().numpy(),
            histogram=result.histogram.cpu().numpy() if result.histogram is not None else None,
            signals={name: value.cpu().numpy() for name, value in signals.items()},
        )
