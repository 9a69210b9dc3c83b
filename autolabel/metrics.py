"""Confusion-matrix metrics: per-class IoU, mIoU, pixel accuracy. Accumulates on any device."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from autolabel.classes import IGNORE_INDEX


class ConfusionMatrix:
    """Accumulates a (C, C) matrix, rows = ground truth, columns = prediction; ignore pixels never count."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu", ignore_index: int = IGNORE_INDEX):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        # ground-truth pixels predicted as ignore (e.g. a thresholded label's 255) count as false negatives
        self.missed = torch.zeros(num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` and ``target`` are integer tensors of the same shape (class ids)."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        pred = pred.to(self.matrix.device, torch.int64).flatten()
        target = target.to(self.matrix.device, torch.int64).flatten()
        # pixels whose target is ignore (or any value outside the classes) are dropped
        valid = (target >= 0) & (target < self.num_classes)
        # a prediction outside the classes (e.g. 255 from a thresholded label) counts as a miss for its row
        pred_valid = (pred >= 0) & (pred < self.num_classes)
        keep = valid & pred_valid
        idx = target[keep] * self.num_classes + pred[keep]
        counts = torch.bincount(idx, minlength=self.num_classes**2)
        self.matrix += counts.view(self.num_classes, self.num_classes)  # (C*C,) -> (C, C)
        self.missed += torch.bincount(target[valid & ~pred_valid], minlength=self.num_classes)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another matrix (e.g. from another process)."""
        self.matrix += other.matrix.to(self.matrix.device)
        self.missed += other.missed.to(self.missed.device)

    def compute(self, class_names: Sequence[str] | None = None) -> SegMetrics:
        """IoU per class, mIoU over classes present in prediction or ground truth, pixel accuracy."""
        m = self.matrix.double().cpu()
        missed = self.missed.double().cpu()
        tp = m.diag()
        gt = m.sum(1) + missed
        pred = m.sum(0)
        union = gt + pred - tp
        present = union > 0
        iou = torch.where(present, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
        total = gt.sum().item()
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        return SegMetrics(
            class_names=tuple(names),
            iou=tuple(float(v) for v in iou),
            miou=float(iou[present].mean()) if present.any() else float("nan"),
            pixel_accuracy=float(tp.sum().item() / total) if total else float("nan"),
            pixels=int(total),
        )


@dataclass(frozen=True)
class SegMetrics:
    """Results of an evaluation; ``iou`` is NaN for classes absent from both prediction and ground truth."""

    class_names: tuple[str, ...]
    iou: tuple[float, ...]
    miou: float
    pixel_accuracy: float
    pixels: int

    def to_dict(self) -> dict:
        """JSON-ready (NaN -> None)."""

        def clean(v: float) -> float | None:
            return None if v != v else round(v, 6)

        return {
            "miou": clean(self.miou),
            "pixel_accuracy": clean(self.pixel_accuracy),
            "pixels": self.pixels,
            "iou": {n: clean(v) for n, v in zip(self.class_names, self.iou, strict=True)},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, payload: dict) -> SegMetrics:
        """The metrics :meth:`to_dict` wrote (None -> NaN), e.g. read back from an evaluation JSON."""

        def num(v: float | None) -> float:
            return float("nan") if v is None else float(v)

        return cls(
            class_names=tuple(payload["iou"]),
            iou=tuple(num(v) for v in payload["iou"].values()),
            miou=num(payload["miou"]),
            pixel_accuracy=num(payload["pixel_accuracy"]),
            pixels=int(payload["pixels"]),
        )

    def table(self) -> str:
        """A plain-text table of per-class IoU, mIoU and pixel accuracy."""
        width = max(len(n) for n in self.class_names + ("pixel accuracy",))
        lines = [f"{'class':<{width}}  IoU"]
        for name, v in zip(self.class_names, self.iou, strict=True):
            lines.append(f"{name:<{width}}  {'  n/a' if v != v else f'{100 * v:5.1f}'}")
        lines.append(f"{'mIoU':<{width}}  {100 * self.miou:5.1f}")
        lines.append(f"{'pixel accuracy':<{width}}  {100 * self.pixel_accuracy:5.1f}")
        return "\n".join(lines)
