"""Multi-scale prediction for a batch: what labelling, evaluation and validation all run.

:func:`predict_logits` wraps the model's own multi-scale mode (``model(images, scales=...)``) with optional
mixed precision, flip averaging and sliding-window tiling; :func:`normalise` turns uint8 image batches into the
network's input.

Mixed precision covers the model's forward only: every output is cast to fp32 as it leaves the model, so flip
averaging, the tiles' stitching and whatever the caller does next (softmax, argmax, thresholding) run in fp32.
Without a precision nothing is cast or wrapped, so fp32 prediction is exactly what it always was.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection, Sequence

import numpy as np
import torch
from torch import nn

from autolabel.config import GenerateConfig
from autolabel.models.device import autocast
from autolabel.models.mscale import resize_to

Outputs = dict[str, torch.Tensor]
# With flip: the flipped pass's own fused logits, flipped back (every other key is the average of both passes),
# returned only when asked for in ``keys``; ``2 * pred - pred_flip`` is then the unflipped pass's logits.
FLIP_KEY = "pred_flip"


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    scales: Sequence[float],
    flip: bool = False,
    tile_size: int = 0,
    tile_overlap: float = 0.25,
    keys: Collection[str] | None = None,
    input_size_keys: Collection[str] = (),
    precision: torch.dtype | None = None,
) -> Outputs:
    """Fused logits ``"pred"`` (B, C, H, W) plus the model's per-scale keys, in eval mode without gradients.

    Args:
        model: follows the model contract: ``model(images, scales=...) -> dict`` in eval mode.
        images: normalised float (B, 3, H, W) on the model's device.
        scales: inference scales, e.g. ``(0.5, 1.0, 2.0)``.
        flip: also run the horizontally flipped batch and average every output with it (logits, not
            probabilities, are averaged).
        tile_size: when the largest scaled input would exceed this many pixels on a side, run overlapping
            windows of ``tile_size / max(scales)`` input pixels, averaged where they overlap; 0 = never.
        tile_overlap: fraction of a window shared with its neighbour.
        keys: the output keys to return (None: all). Every other output is dropped as it leaves the model,
            before flip averaging or the next forward: ``pred_2.0x`` alone is C x 2H x 2W floats, more than
            the fused logits, and a full-size tiling canvas of it would cost more than the whole image.
        input_size_keys: keys resized (bilinear) to the input's resolution, window by window before stitching,
            so that e.g. ``pred_2.0x`` costs one C x H x W canvas instead of C x 2H x 2W.
        precision: the autocast dtype of the forward (``torch.bfloat16``/``torch.float16``), None for fp32;
            outputs are fp32 either way.
    """
    if model.training:
        model.eval()
    window = _window_size(images.shape[-2:], scales, tile_size)
    if window is None:
        return _predict_flip(model, images, scales, flip, keys, input_size_keys, precision)
    return _predict_tiled(model, images, scales, flip, window, tile_overlap, keys, input_size_keys, precision)


def _forward(
    model: nn.Module,
    images: torch.Tensor,
    scales: Sequence[float],
    keys: Collection[str] | None,
    precision: torch.dtype | None,
) -> Outputs:
    """One forward (under autocast with ``precision``); only ``keys`` kept, each in fp32 (no copy if it is)."""
    with autocast(images.device, precision):
        outputs = model(images, scales=list(scales))
    return {key: value.float() for key, value in outputs.items() if keys is None or key in keys}


def _predict_flip(
    model: nn.Module,
    images: torch.Tensor,
    scales: Sequence[float],
    flip: bool,
    keys: Collection[str] | None = None,
    input_size_keys: Collection[str] = (),
    precision: torch.dtype | None = None,
) -> Outputs:
    outputs = _forward(model, images, scales, keys, precision)
    if flip:
        flipped = _forward(model, images.flip(-1), scales, keys, precision)
        wants_flip = keys is not None and FLIP_KEY in keys and "pred" in flipped
        flip_pred = flipped["pred"].flip(-1) if wants_flip else None  # a copy: the pop below leaves it alone
        # (a + b) * 0.5 in place on the sum: the same values as 0.5 * (a + b), one temporary fewer
        outputs = {key: (value + flipped.pop(key).flip(-1)).mul_(0.5) for key, value in outputs.items()}
        if flip_pred is not None:
            outputs[FLIP_KEY] = flip_pred
    for key in input_size_keys:
        if key in outputs:
            outputs[key] = resize_to(outputs[key], images.shape[-2:])
    return outputs


def tile_layout(
    size: Sequence[int], scales: Sequence[float], tile_size: int, tile_overlap: float = 0.25
) -> tuple[tuple[int, int] | None, int]:
    """The window ``(h, w)`` :func:`predict_logits` slides over an image of ``size`` ``(H, W)`` (None: the
    whole image in one forward) and how many forwards that takes (per flip)."""
    window = _window_size(size, scales, tile_size)
    if window is None:
        return None, 1
    height, width = size
    return window, len(_starts(height, window[0], tile_overlap)) * len(_starts(width, window[1], tile_overlap))


def _window_size(size: Sequence[int], scales: Sequence[float], tile_size: int) -> tuple[int, int] | None:
    """Input-resolution window (h, w) when tiling is needed, else None."""
    if tile_size <= 0:
        return None
    side = max(1, int(tile_size / max(scales)))
    height, width = size
    if height <= side and width <= side:
        return None
    return min(height, side), min(width, side)


def _starts(length: int, window: int, overlap: float) -> list[int]:
    """Window starts covering ``[0, length)``; the last window ends exactly at ``length``."""
    if length <= window:
        return [0]
    stride = max(1, int(window * (1.0 - overlap)))
    count = math.ceil((length - window) / stride) + 1
    return sorted({min(i * stride, length - window) for i in range(count)})


def _predict_tiled(
    model: nn.Module,
    images: torch.Tensor,
    scales: Sequence[float],
    flip: bool,
    window: tuple[int, int],
    overlap: float,
    keys: Collection[str] | None = None,
    input_size_keys: Collection[str] = (),
    precision: torch.dtype | None = None,
) -> Outputs:
    """Sliding-window prediction; every kept output key is stitched at its own resolution and averaged."""
    height, width = images.shape[-2:]
    sums: Outputs = {}
    counts: dict[str, torch.Tensor] = {}
    for y0 in _starts(height, window[0], overlap):
        for x0 in _starts(width, window[1], overlap):
            crop = images[..., y0 : y0 + window[0], x0 : x0 + window[1]]
            for key, value in _predict_flip(model, crop, scales, flip, keys, input_size_keys, precision).items():
                # a key's resolution relative to the input (1 for "pred", s for "pred_{s}x")
                ry, rx = value.shape[-2] / window[0], value.shape[-1] / window[1]
                if key not in sums:
                    full = (*value.shape[:-2], round(height * ry), round(width * rx))
                    sums[key] = value.new_zeros(full)
                    counts[key] = value.new_zeros(full[-2:])
                top, left = round(y0 * ry), round(x0 * rx)
                h = min(value.shape[-2], sums[key].shape[-2] - top)
                w = min(value.shape[-1], sums[key].shape[-1] - left)
                sums[key][..., top : top + h, left : left + w] += value[..., :h, :w]
                counts[key][top : top + h, left : left + w] += 1
    return {key: sums[key].div_(counts[key].clamp(min=1)) for key in sums}  # in place: no second canvas


def prepare_for_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` on ``device`` in eval mode (channels-last on a GPU): how labelling and calibration run it."""
    model = model.to(device).eval()
    if device.type == "cuda":
        # Module.to(memory_format=...) is documented, but torch's overloads omit it
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def predict_images(
    model: nn.Module,
    images: np.ndarray,
    settings: GenerateConfig,
    *,
    device: torch.device,
    mean: Sequence[float],
    std: Sequence[float],
    precision: torch.dtype | None,
    keys: Collection[str] | None = None,
    input_size_keys: Collection[str] = (),
) -> Outputs:
    """uint8 (B, H, W, 3) RGB images -> the outputs ``keys`` of ``model`` (on ``device``) as ``generate`` runs
    it: ``settings`` gives the scales, flip and tiling, ``precision`` the autocast dtype of the forward
    (``input_size_keys``: see :func:`predict_logits`).

    The one forward path of the teacher: labelling (:class:`autolabel.generate.teacher.Teacher`) and
    calibration (:mod:`autolabel.evaluate.calibrate`) both call it, so a calibration describes exactly the
    probabilities that ``generate`` thresholds.
    """
    batch = torch.from_numpy(images)
    if device.type == "cuda":
        batch = batch.pin_memory()
    x = normalise(batch.to(device, non_blocking=True), mean, std)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return predict_logits(
        model,
        x,
        settings.scales,
        flip=settings.flip,
        tile_size=settings.tile_size,
        tile_overlap=settings.tile_overlap,
        keys=keys,
        input_size_keys=input_size_keys,
        precision=precision,
    )


def apply_temperature(logits: torch.Tensor, temperature: float | Sequence[float] | None) -> torch.Tensor:
    """Calibrated logits: ``logits / T`` (class axis 1, any shape ``(N, C, ...)``); a per-class temperature
    divides each pixel's logits by the temperature of its argmax class, so the argmax never changes. None
    (no calibration) returns ``logits`` as they are.

    The one place temperature scaling is computed: ``generate --calibration`` and ``autolabel calibrate``
    (which fits ``T`` and measures the calibrated probabilities) both call it.
    """
    if temperature is None:
        return logits
    if isinstance(temperature, int | float):
        return logits / float(temperature)
    per_class = device_constant(tuple(float(t) for t in temperature), logits.device, logits.dtype)  # (C,)
    return logits / per_class[logits.argmax(dim=1)].unsqueeze(1)  # (N, 1, ...) broadcast over the classes


def normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> normalised float (B, 3, H, W) on the images' device (uint8 moves 4x less)."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)
    m = device_constant(tuple(mean), x.device, x.dtype).view(1, 3, 1, 1)
    s = device_constant(tuple(std), x.device, x.dtype).view(1, 3, 1, 1)
    return x.sub_(m).div_(s)


@functools.lru_cache(maxsize=64)
def device_constant(values: float | tuple[float, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``torch.tensor(values)`` on ``device``, made once per process and reused (read-only: never modify it).

    Building a small tensor on a GPU is a host-to-device copy that waits for the host on every call; normalising
    and thresholding each batch would pay that for a handful of numbers.
    """
    with torch.inference_mode(False):  # a normal tensor, usable inside and outside inference mode
        return torch.tensor(values, dtype=dtype, device=device)
