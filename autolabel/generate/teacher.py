"""The teacher, ready to label batches: a checkpoint on a device, multi-scale prediction, thresholding there.

:func:`threshold_batch` turns fused logits into uint8 labels and confidence codes on the logits' device, so only
``2 x H x W`` bytes per image ever cross to the host, never the ``C x H x W`` float probabilities. With
``generate.precision`` the forward runs under autocast; softmax, argmax and the threshold stay in fp32.
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
from autolabel.labelset import confidence
from autolabel.labelset.confidence import IGNORE, mean_probability, quantise
from autolabel.models.checkpoint import LoadedCheckpoint, load_checkpoint
from autolabel.models.device import precision_name, resolve_device, resolve_precision
from autolabel.models.predict import device_constant, normalise, predict_logits


@dataclass
class ThresholdedBatch:
    """What leaves the device for a batch: uint8 maps and one float per image."""

    labels: torch.Tensor  # (B, H, W) uint8: argmax, or 255 where max prob <= threshold
    codes: torch.Tensor  # (B, H, W) uint8: confidence ladder codes (see autolabel.labelset.confidence)
    mean_confidence: torch.Tensor  # (B,) float64: mean max probability over all pixels (exact, any order)
    finite: torch.Tensor  # (B,) bool: every logit of the image finite (else its maps are meaningless)


def threshold_batch(
    logits: torch.Tensor, threshold: float, ladder: Sequence[float], ignore_index: int = IGNORE
) -> ThresholdedBatch:
    """Softmax, max and argmax on the logits' device; ``max prob <= threshold`` gives ``ignore_index``.

    The comparison is made in float32 against ``float32(threshold)``, the same comparison the confidence codes
    use, so a probability exactly at the threshold is ignored and re-thresholding from codes is exact.
    """
    probs = torch.softmax(logits.float(), dim=1)  # (B, C, H, W)
    max_prob, argmax = probs.max(dim=1)  # (B, H, W) each
    keep = max_prob > device_constant(float(threshold), logits.device, torch.float32)
    labels = torch.where(keep, argmax, torch.full_like(argmax, ignore_index)).to(torch.uint8)
    return ThresholdedBatch(
        labels=labels,
        codes=quantise(max_prob, ladder),
        mean_confidence=mean_probability(max_prob),
        finite=torch.isfinite(logits).flatten(1).all(dim=1),
    )


@dataclass
class PredictedBatch:
    """Host-side uint8 results of one batch."""

    labels: np.ndarray  # (B, H, W)
    codes: np.ndarray  # (B, H, W)
    mean_confidence: np.ndarray  # (B,)
    finite: np.ndarray  # (B,) bool: False where the teacher produced NaN/Inf logits
    attention: dict[str, np.ndarray]  # key -> (B, h, w) uint8 (0..255 = 0..1)
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
    ):
        self.loaded = loaded
        self.classes = classes
        self.device = device
        self.settings = settings
        self.mean, self.std = data.mean, data.std
        self.ladder = tuple(ladder)
        self.precision = resolve_precision(settings.precision, device)  # autocast dtype; None = fp32
        self.model = loaded.model.to(device).eval()
        if device.type == "cuda":
            # Module.to(memory_format=...) is documented, but torch's overloads omit it
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

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
        ladder = confidence.make_ladder(settings.threshold, settings.ladder_step, settings.ladder_top)
        return cls(loaded, classes, dev, settings, data, ladder)

    def output_keys(self) -> set[str]:
        """The model outputs labelling needs: the fused logits, attention maps when they are kept, and what the
        ranking signals are computed from."""
        attention = {f"attn_{s}x" for s in self.settings.scales} if self.settings.attention else set()
        return {"pred", *attention, *signal_keys(self.settings.scales, self.settings.flip)[0]}

    def predict(self, images: np.ndarray) -> PredictedBatch:
        """uint8 (B, H, W, 3) RGB -> thresholded labels, confidence codes, mean confidence, attention."""
        batch = torch.from_numpy(images)
        if self.device.type == "cuda":
            batch = batch.pin_memory()
        x = normalise(batch.to(self.device, non_blocking=True), self.mean, self.std)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        outputs = predict_logits(
            self.model,
            x,
            self.settings.scales,
            flip=self.settings.flip,
            tile_size=self.settings.tile_size,
            tile_overlap=self.settings.tile_overlap,
            keys=self.output_keys(),
            input_size_keys=signal_keys(self.settings.scales, self.settings.flip)[1],
            precision=self.precision,
        )
        signals = ranking_signals(outputs, self.settings.scales, self.settings.flip)
        result = threshold_batch(outputs["pred"], self.settings.threshold, self.ladder)
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
            signals={name: value.cpu().numpy() for name, value in signals.items()},
        )
