"""Multi-scale prediction for a batch: what labelling, evaluation and validation all run.

:func:`predict_logits` wraps the model's own multi-scale mode (``model(images, scales=...)``) with optional
flip averaging and sliding-window tiling; :func:`normalise` turns uint8 image batches into the network's input.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import torch
from torch import nn

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
        keys: the output keys to return (None: all). Tiling stitches only these: a full-size canvas per
            per-scale key (``pred_2.0x`` alone is C x 2H x 2W floats) would cost more than the whole image.
        input_size_keys: keys resized (bilinear) to the input's resolution, window by window before stitching,
            so that e.g. ``pred_2.0x`` costs one C x H x W canvas instead of C x 2H x 2W.
    """
    if model.training:
        model.eval()
    window = _window_size(images.shape[-2:], scales, tile_size)
    if window is None:
        outputs = _predict_flip(model, images, scales, flip, keys, input_size_keys)
        return outputs if keys is None else {k: v for k, v in outputs.items() if k in keys}
    return _predict_tiled(model, images, scales, flip, window, tile_overlap, keys, input_size_keys)


def _predict_flip(
    model: nn.Module,
    images: torch.Tensor,
    scales: Sequence[float],
    flip: bool,
    keys: Collection[str] | None = None,
    input_size_keys: Collection[str] = (),
) -> Outputs:
    outputs = dict(model(images, scales=list(scales)))
    if flip:
        flipped = model(images.flip(-1), scales=list(scales))
        averaged = {key: 0.5 * (value + flipped[key].flip(-1)) for key, value in outputs.items()}
        if keys is not None and FLIP_KEY in keys:
            averaged[FLIP_KEY] = flipped["pred"].flip(-1)
        outputs = averaged
    for key in input_size_keys:
        if key in outputs:
            outputs[key] = resize_to(outputs[key], images.shape[-2:])
    return outputs


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
) -> Outputs:
    """Sliding-window prediction; every output key is stitched at its own resolution and averaged."""
    height, width = images.shape[-2:]
    sums: Outputs = {}
    counts: dict[str, torch.Tensor] = {}
    for y0 in _starts(height, window[0], overlap):
        for x0 in _starts(width, window[1], overlap):
            crop = images[..., y0 : y0 + window[0], x0 : x0 + window[1]]
            for key, value in _predict_flip(model, crop, scales, flip, keys, input_size_keys).items():
                if keys is not None and key not in keys:
                    continue
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


def normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> normalised float (B, 3, H, W) on the images' device (uint8 moves 4x less)."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)
    m = torch.tensor(list(mean), dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(list(std), dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x.sub_(m).div_(s)
