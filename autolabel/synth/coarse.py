"""Cityscapes-like coarse labels degraded from a scene's fine labels and instances.

See :mod:`autolabel.synth` for what they model and why.
"""

from __future__ import annotations

import numpy as np

# unlabelled, in the fine labels (what the canvas starts as) and in the coarse ones (what they leave out)
VOID_LABEL_ID = 0


def coarse_band_px(height: int) -> int:
    """Minimum width of the unlabelled band coarse labels leave along every boundary (Chebyshev pixels)."""
    return max(3, round(0.025 * height))


def _box_any(mask: np.ndarray, radius: int) -> np.ndarray:
    """True where ``mask`` has a true pixel within Chebyshev distance ``radius`` (box sum of an integral
    image: cost independent of the radius)."""
    h, w = mask.shape
    integral = np.zeros((h + 1, w + 1), dtype=np.int32)
    integral[1:, 1:] = mask.cumsum(0, dtype=np.int32).cumsum(1, dtype=np.int32)
    y0 = np.clip(np.arange(h) - radius, 0, h)[:, None]
    y1 = np.clip(np.arange(h) + radius + 1, 0, h)[:, None]
    x0 = np.clip(np.arange(w) - radius, 0, w)[None, :]
    x1 = np.clip(np.arange(w) + radius + 1, 0, w)[None, :]
    return (integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]) > 0


def _edges(inst: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another instance."""
    edge = np.zeros(inst.shape, dtype=bool)
    horizontal = inst[:, 1:] != inst[:, :-1]
    vertical = inst[1:, :] != inst[:-1, :]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    return edge


def _blocks_all(mask: np.ndarray, block: int) -> np.ndarray:
    """Keep a pixel only if its whole aligned ``block`` x ``block`` cell is kept: staircase edges like a
    hand-drawn polygon's, not a copy of the fine contour."""
    h, w = mask.shape
    ph, pw = -h % block, -w % block
    padded = np.pad(mask, ((0, ph), (0, pw)), constant_values=True)
    cells = padded.reshape((h + ph) // block, block, (w + pw) // block, block).all(axis=(1, 3))
    return np.repeat(np.repeat(cells, block, axis=0), block, axis=1)[:h, :w] & mask


def coarse_from_fine(label: np.ndarray, inst: np.ndarray, keep: np.ndarray, loose: np.ndarray, band: int) -> np.ndarray:
    """Cityscapes-like coarse labelIds: regions shrunk away from every instance boundary by more than ``band``
    pixels (twice that for ``loose`` instances), blocky edges, unkept instances dropped, void = 0."""
    edge = _edges(inst)
    tight = ~_box_any(edge, band)
    sloppy = ~_box_any(edge, 2 * band)
    kept = np.where(loose[inst], sloppy, tight) & keep[inst]
    kept = _blocks_all(kept, max(2, band - 1))
    return np.where(kept, label, VOID_LABEL_ID).astype(np.uint8)
