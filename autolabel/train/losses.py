"""Training losses, kept outside the models: RMI, cross-entropy and the composite multi-scale loss.

RMI (region mutual information, Zhao et al. 2019) follows docs/method.md with the published defaults. Its
covariance algebra runs in float64 with autocast switched off, so it is safe inside a mixed-precision
training step on any device. Its solve and Cholesky factorisation never check for errors on the host (that
would wait for the GPU every step): a NaN or non-positive-definite input, e.g. from an fp16 overflow, gives a
non-finite loss, and GradScaler skips that step as it skips any other overflow.

Every loss takes ``(logits (B, C, H, W), target (B, H, W) int64, pixel_weight (B, H, W) | None)``; labels
outside ``0..C-1`` (the ignore index 255 among them) do not count. ``pixel_weight`` scales each pixel's
contribution (e.g. fine vs auto-labelled sources in student training) without renormalising, so a weight of
0.5 halves a pixel's pull.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autolabel.classes import IGNORE_INDEX
from autolabel.config import LossConfig
from autolabel.errors import ConfigError
from autolabel.models.mscale import resize_to


def valid_one_hot(target: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """(one-hot (B, C, H, W) float, valid (B, H, W) bool); pixels with a label >= C are all-zero."""
    valid = (target >= 0) & (target < num_classes)
    one_hot = F.one_hot(torch.where(valid, target, 0), num_classes).permute(0, 3, 1, 2)  # (B, C, H, W)
    return one_hot * valid.unsqueeze(1), valid


def sigmoid_bce(logits: Tensor, one_hot: Tensor, valid: Tensor, pixel_weight: Tensor | None = None) -> Tensor:
    """Per-class sigmoid BCE summed over valid pixels / (n_valid + 1): RMI's first part."""
    weight = valid.to(logits.dtype) if pixel_weight is None else valid * pixel_weight.to(logits.dtype)
    per_pixel = F.binary_cross_entropy_with_logits(logits, one_hot.to(logits.dtype), reduction="none").sum(1)
    return (per_pixel * weight).sum() / (valid.sum() + 1.0)


def neighbourhoods(x: Tensor, radius: int) -> Tensor:
    """Each pixel's radius x radius window as a vector: (B, C, H, W) -> (B, C, radius², (H-r+1)(W-r+1))."""
    b, c, h, w = x.shape
    new_h, new_w = h - radius + 1, w - radius + 1
    shifts = [x[:, :, dy : dy + new_h, dx : dx + new_w] for dy in range(radius) for dx in range(radius)]
    return torch.stack(shifts, dim=2).reshape(b, c, radius * radius, -1)


def rmi_lower_bound(
    one_hot: Tensor,
    probs: Tensor,
    *,
    radius: int = 3,
    pool_size: int = 4,
    pool_stride: int = 4,
    pos_alpha: float = 5e-4,
) -> Tensor:
    """0.5 * logdet of the posterior covariance of label windows given prediction windows, per (image, class).

    one_hot, probs: (B, C, H, W). Returns (B, C) float64.
    """
    if pool_stride > 1:
        one_hot = F.avg_pool2d(one_hot, pool_size, stride=pool_stride, padding=pool_size // 2)
        probs = F.avg_pool2d(probs, pool_size, stride=pool_stride, padding=pool_size // 2)
    labels = neighbourhoods(one_hot, radius).double()  # (B, C, d, N), d = radius²
    preds = neighbourhoods(probs, radius).double()
    labels = labels - labels.mean(dim=3, keepdim=True)
    preds = preds - preds.mean(dim=3, keepdim=True)
    eye = torch.eye(radius * radius, dtype=torch.float64, device=labels.device)
    cov_l = labels @ labels.transpose(2, 3)  # (B, C, d, d)
    cov_p = preds @ preds.transpose(2, 3) + pos_alpha * eye
    cov_lp = labels @ preds.transpose(2, 3)
    # the _ex variants leave their error codes on the device instead of raising (no host sync); a failed
    # factorisation leaves NaN or garbage in the result, which makes the loss non-finite
    solved, _ = torch.linalg.solve_ex(cov_p, cov_lp.transpose(2, 3))
    posterior = cov_l - cov_lp @ solved
    chol, _ = torch.linalg.cholesky_ex(posterior + pos_alpha * eye)
    return torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # 0.5 * logdet = sum(log(diag(L)))


def _autocast_off(device: torch.device) -> torch.autocast:
    return torch.autocast(device_type=device.type, enabled=False)


def _float(logits: Tensor) -> Tensor:
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


class SigmoidBCELoss(nn.Module):
    """The BCE part of RMI alone: what the published recipe uses for the aux and per-scale terms."""

    def __init__(self, *, num_classes: int):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, logits: Tensor, target: Tensor, pixel_weight: Tensor | None = None) -> Tensor:
        with _autocast_off(logits.device):
            logits = _float(logits)
            one_hot, valid = valid_one_hot(target, self.num_classes)
            return sigmoid_bce(logits, one_hot, valid, pixel_weight)


class RMILoss(nn.Module):
    """``bce_weight * BCE + (1 - bce_weight) * RMI``, RMI summed over classes (published defaults).

    With ``pixel_weight``, each image's RMI term is weighted by the mean weight of its valid pixels (RMI is a
    statistic over regions, not pixels). A batch with no valid pixel gives exactly 0 (with a zero gradient).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        radius: int = 3,
        pool_size: int = 4,
        pool_stride: int = 4,
        bce_weight: float = 0.5,
        pos_alpha: float = 5e-4,
        clip_min: float = 1e-6,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.radius = radius
        self.pool_size = pool_size
        self.pool_stride = pool_stride
        self.bce_weight = bce_weight
        self.pos_alpha = pos_alpha
        self.clip_min = clip_min

    def forward(self, logits: Tensor, target: Tensor, pixel_weight: Tensor | None = None) -> Tensor:
        with _autocast_off(logits.device):
            logits = _float(logits)
            one_hot, valid = valid_one_hot(target, self.num_classes)
            one_hot = one_hot.to(logits.dtype)
            bce = sigmoid_bce(logits, one_hot, valid, pixel_weight)
            probs = torch.sigmoid(logits) * valid.unsqueeze(1) + self.clip_min
            per_class = rmi_lower_bound(
                one_hot,
                probs,
                radius=self.radius,
                pool_size=self.pool_size,
                pool_stride=self.pool_stride,
                pos_alpha=self.pos_alpha,
            )  # (B, C)
            image_weight = self._image_weight(valid, pixel_weight)  # (B,)
            rmi = ((per_class * image_weight[:, None]).mean(0) / self.radius**2).sum().to(logits.dtype)
            loss = self.bce_weight * bce + (1 - self.bce_weight) * rmi
            # no valid pixel: RMI would be a meaningless constant; return 0 without a host sync
            return torch.where(valid.any(), loss, torch.zeros_like(loss) + logits.sum() * 0)

    @staticmethod
    def _image_weight(valid: Tensor, pixel_weight: Tensor | None) -> Tensor:
        if pixel_weight is None:
            return torch.ones(valid.shape[0], dtype=torch.float64, device=valid.device)
        count = valid.flatten(1).sum(1)
        weight_sum = (pixel_weight * valid).flatten(1).sum(1).double()
        return torch.where(count > 0, weight_sum / count.clamp_min(1), 1.0)


class CrossEntropyLoss(nn.Module):
    """Pixel-wise cross-entropy averaged over valid pixels (labels >= C, e.g. 255, are ignored).

    ``class_weights`` (C,) scale each pixel's term by its true class's weight, like ``pixel_weight`` without
    renormalising (a class of weight 3 pulls three times as hard as before).
    """

    class_weights: Tensor | None  # a buffer (moves with the module), declared for the type checker

    def __init__(
        self, *, num_classes: int, ignore_index: int = IGNORE_INDEX, class_weights: Sequence[float] | None = None
    ):
        super().__init__()
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        if class_weights is not None and len(class_weights) != num_classes:
            raise ConfigError(
                f"loss.class_weights: {len(class_weights)} values, expected one per class ({num_classes})"
            )
        weight = None if class_weights is None else torch.tensor([float(w) for w in class_weights])
        self.register_buffer("class_weights", weight, persistent=False)

    def forward(self, logits: Tensor, target: Tensor, pixel_weight: Tensor | None = None) -> Tensor:
        valid = (target >= 0) & (target < self.num_classes)
        target = torch.where(valid, target, self.ignore_index)
        with _autocast_off(logits.device):
            weight = None if self.class_weights is None else self.class_weights.to(logits.device)
            per_pixel = F.cross_entropy(
                _float(logits), target, weight=weight, ignore_index=self.ignore_index, reduction="none"
            )
            if pixel_weight is not None:
                per_pixel = per_pixel * pixel_weight
            return per_pixel.sum() / valid.sum().clamp_min(1)


class MultiScaleLoss(nn.Module):
    """``main(pred) + aux_weight * side(aux) + scale_weight * sum_s side(up(pred_s))`` on a model's outputs.

    ``side`` is the main criterion without its region term (BCE for RMI, as published). The per-scale term
    applies when the outputs hold two or more ``pred_{s}x`` predictions. Returns (total, parts): the parts are
    detached 0-dim tensors on the loss's device, so nothing waits for the device until someone asks for a
    value (``float(parts["total"])``; the training loop does so only on the steps it logs).
    """

    def __init__(self, *, main: nn.Module, side: nn.Module, aux_weight: float = 0.4, scale_weight: float = 0.05):
        super().__init__()
        self.main = main
        self.side = side
        self.aux_weight = aux_weight
        self.scale_weight = scale_weight

    def forward(
        self, outputs: Mapping[str, Tensor], target: Tensor, pixel_weight: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        size = target.shape[-2:]
        terms = {"main": self.main(resize_to(outputs["pred"], size), target, pixel_weight)}
        total = terms["main"]
        if self.aux_weight and "aux" in outputs:
            terms["aux"] = self.side(resize_to(outputs["aux"], size), target, pixel_weight)
            total = total + self.aux_weight * terms["aux"]
        scale_keys = [key for key in outputs if key.startswith("pred_")]
        if self.scale_weight and len(scale_keys) > 1:
            for key in scale_keys:
                terms[key] = self.side(resize_to(outputs[key], size), target, pixel_weight)
                total = total + self.scale_weight * terms[key]
        parts = {name: value.detach() for name, value in terms.items()}
        parts["total"] = total.detach()
        return total, parts


def build_loss(loss_cfg: LossConfig, num_classes: int, ignore_index: int = IGNORE_INDEX) -> MultiScaleLoss:
    """The composite loss ``loss_cfg`` describes: ``loss_fn(outputs, target, pixel_weight=None)``."""
    if loss_cfg.main == "rmi":
        main: nn.Module = RMILoss(num_classes=num_classes)
        side: nn.Module = SigmoidBCELoss(num_classes=num_classes)
    else:
        weights = loss_cfg.class_weights or None
        main = side = CrossEntropyLoss(num_classes=num_classes, ignore_index=ignore_index, class_weights=weights)
    return MultiScaleLoss(main=main, side=side, aux_weight=loss_cfg.aux_weight, scale_weight=loss_cfg.scale_weight)
