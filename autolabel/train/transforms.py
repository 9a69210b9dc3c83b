"""Joint image + label transforms for training crops (numpy/torch, no torchvision).

Every random choice comes from a :class:`numpy.random.Generator` the caller passes in, so a crop depends only
on the (seed, epoch, slot) the sampler derived that generator from -- not on the DataLoader worker that made
it, nor on how many crops were made before.

Images stay uint8 (H, W, 3) until the training loop normalises them on the device (uint8 moves 4x fewer
bytes to a GPU than float32); labels are uint8 (H, W) train ids with ``ignore_index`` where unlabelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from autolabel.classes import IGNORE_INDEX

# ITU-R BT.601 luma weights, the usual grey level for saturation/contrast jitter
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# source pixels kept around a crop's window so the resize filter (antialiased when shrinking) sees its support
_MARGIN = 3


def resize_pair(image: np.ndarray, label: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize by ``scale``: bilinear for the image (antialiased when shrinking), nearest for the label."""
    height, width = label.shape
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    if size == (height, width):
        return image, label
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
    img = F.interpolate(img, size=size, mode="bilinear", align_corners=False, antialias=scale < 1.0)
    lab = torch.from_numpy(np.ascontiguousarray(label))[None, None]  # (1, 1, H, W)
    # nearest-exact keeps labels aligned with the bilinear image grid (plain "nearest" shifts by half a pixel)
    lab = F.interpolate(lab, size=size, mode="nearest-exact")
    image_out = img[0].permute(1, 2, 0).round_().clamp_(0, 255).to(torch.uint8).numpy()
    return image_out, lab[0, 0].numpy()


def crop_window(
    size: tuple[int, int], crop: tuple[int, int], rng: np.random.Generator, center: tuple[int, int] | None = None
) -> tuple[int, int]:
    """Top-left (y0, x0) of a ``crop`` window in an image of ``size``; may be negative or overhang (padding).

    Without ``center`` the window is uniform over the positions that keep it inside the image (or, when the
    image is smaller than the crop, that keep the image inside it). With ``center`` the window contains that
    point at a random offset (the published class-uniform crop), shifted to stay inside the image if it can.
    """
    positions = []
    for length, window, c in zip(size, crop, center or (None, None), strict=True):
        lo, hi = min(0, length - window), max(0, length - window)
        if c is None:
            positions.append(int(rng.integers(lo, hi + 1)))
            continue
        # any start that keeps c in the window, clipped to the image-covering range
        start_lo, start_hi = max(lo, c - window + 1), min(hi, c)
        positions.append(
            int(rng.integers(start_lo, start_hi + 1)) if start_lo <= start_hi else int(np.clip(c - window // 2, lo, hi))
        )
    return positions[0], positions[1]


def crop_pair(
    image: np.ndarray,
    label: np.ndarray,
    top_left: tuple[int, int],
    crop: tuple[int, int],
    ignore_index: int = IGNORE_INDEX,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut the (crop_h, crop_w) window at ``top_left``; parts outside the image are 0 (image) and ignore
    (label)."""
    y0, x0 = top_left
    ch, cw = crop
    height, width = label.shape
    out_image = np.zeros((ch, cw, 3), dtype=np.uint8)
    out_label = np.full((ch, cw), ignore_index, dtype=np.uint8)
    sy0, sy1 = max(y0, 0), min(y0 + ch, height)  # source rows
    sx0, sx1 = max(x0, 0), min(x0 + cw, width)
    if sy1 > sy0 and sx1 > sx0:
        out_image[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
        out_label[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = label[sy0:sy1, sx0:sx1]
    return out_image, out_label


def color_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and saturation each scaled by a factor in [1 - s, 1 + s], in random order."""
    if strength <= 0:
        return image
    x: np.ndarray = image.astype(np.float32)
    for op in rng.permutation(3):
        factor = np.float32(rng.uniform(max(0.0, 1.0 - strength), 1.0 + strength))
        if op == 0:  # brightness
            x = x * factor
        elif op == 1:  # contrast: blend with the mean grey level
            grey = float((x @ _LUMA).mean())
            x = grey + factor * (x - grey)
        else:  # saturation: blend with each pixel's grey level
            pixel_grey = (x @ _LUMA)[..., None]  # (H, W, 1)
            x = pixel_grey + factor * (x - pixel_grey)
        np.clip(x, 0, 255, out=x)
    return np.rint(x).astype(np.uint8)


@dataclass(frozen=True)
class TrainTransform:
    """Random scale, crop (padding with ignore), horizontal flip and colour jitter of an (image, label) pair.

    ``center`` (a pixel of the *unscaled* image, e.g. a class centroid) makes the crop contain that pixel.
    """

    crop_size: tuple[int, int]  # (height, width)
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    jitter: float = 0.25
    ignore_index: int = IGNORE_INDEX

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator, center: Sequence[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if image.shape[:2] != label.shape:
            raise ValueError(f"image {image.shape[:2]} and label {label.shape} differ in size")
        scale = float(rng.uniform(*self.scale_range))
        height, width = label.shape
        scaled = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled_center = (
            None
            if center is None
            else (min(int(center[0] * scale), scaled[0] - 1), min(int(center[1] * scale), scaled[1] - 1))
        )
        top_left = crop_window(scaled, self.crop_size, rng, scaled_center)
        image, label = self._scaled_window(image, label, scale, top_left)
        if self.flip and rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        image = color_jitter(image, self.jitter, rng)
        return np.ascontiguousarray(image), np.ascontiguousarray(label)

    def _scaled_window(
        self, image: np.ndarray, label: np.ndarray, scale: float, top_left: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The crop at ``top_left`` of the image scaled by ``scale``, resizing only the pixels under it.

        Scaling a 2048x1024 image by 2 to cut a 512x1024 crop would resize 16x more pixels than the crop
        holds; instead the source window under the crop (plus a margin for the filter support) is cut first.
        """
        bounds = []
        for start, size, length in zip(top_left, self.crop_size, label.shape, strict=True):
            lo = max(0, int(np.floor(start / scale)) - _MARGIN)
            hi = min(length, int(np.ceil((start + size) / scale)) + _MARGIN)
            bounds.append((lo, hi))
        (y0, y1), (x0, x1) = bounds
        patch_image, patch_label = resize_pair(image[y0:y1, x0:x1], label[y0:y1, x0:x1], scale)
        # where the patch's first pixel lands in the scaled image; image and label share it: they stay aligned
        offset = (top_left[0] - round(y0 * scale), top_left[1] - round(x0 * scale))
        return crop_pair(patch_image, patch_label, offset, self.crop_size, self.ignore_index)
