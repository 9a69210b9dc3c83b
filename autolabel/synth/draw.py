"""What every version of the synthetic city draws alike: its classes, the canvas, one scene's result, and
the vertical world (sky, building facades, hedges) and the signs and lights that sit on poles.

See :mod:`autolabel.synth` for what the scenes model and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from autolabel.classes import CITYSCAPES
from autolabel.synth.coarse import VOID_LABEL_ID, coarse_band_px, coarse_from_fine

SYNTH_CLASSES = (
    "road",
    "sidewalk",
    "building",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "car",
)
LABEL_ID = {name: CITYSCAPES.label_ids[CITYSCAPES.index(name)] for name in SYNTH_CLASSES}


class View(Protocol):
    """The perspective the vertical world is drawn in: horizon row and vanishing point column."""

    @property
    def horizon(self) -> float: ...

    @property
    def vp_x(self) -> float: ...


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Unit-variance-ish noise that varies over ``cell`` pixels (bilinear interpolation of a coarse grid)."""
    gh, gw = int(height / cell) + 2, int(width / cell) + 2
    grid = rng.standard_normal((gh, gw))
    y = (np.arange(height) + 0.5) / cell
    x = (np.arange(width) + 0.5) / cell
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


class Canvas:
    """Label map, instance map and colour image painted back to front."""

    def __init__(self, width: int, height: int, rng: np.random.Generator) -> None:
        self.width, self.height, self.rng = width, height, rng
        self.label = np.full((height, width), VOID_LABEL_ID, dtype=np.uint8)
        self.inst = np.zeros((height, width), dtype=np.int32)
        self.rgb = np.zeros((height, width, 3), dtype=np.float32)
        self.keep: list[bool] = [False]  # per instance: does the coarse annotator label it at all?
        self.loose: list[bool] = [False]  # per instance: a sloppier polygon (twice the band)
        self.grain = rng.standard_normal((height, width, 3), dtype=np.float32)
        self.blotch = smooth_noise(rng, height, width, cell=max(4.0, height / 24))

    def instance(self, keep_prob: float) -> int:
        """A new instance id; whether (and how loosely) the coarse annotator will draw it is decided now."""
        self.keep.append(bool(self.rng.random() < keep_prob))
        self.loose.append(bool(self.rng.random() < 0.2))
        return len(self.keep) - 1

    def paint(
        self,
        mask: np.ndarray,
        name: str,
        colour,
        *,
        ys: slice = slice(None),
        xs: slice = slice(None),
        grain: float = 5.0,
        blotch: float = 6.0,
        keep_prob: float = 0.95,
        inst: int | None = None,
        rgb_mask: np.ndarray | None = None,
    ) -> int:
        """Paint class ``name`` where ``mask`` (the window ``ys, xs``) is true; colour + texture noise go
        where ``rgb_mask`` is true (default: ``mask``). Returns the instance id."""
        inst = self.instance(keep_prob) if inst is None else inst
        self.label[ys, xs][mask] = LABEL_ID[name]
        self.inst[ys, xs][mask] = inst
        self.shade(mask if rgb_mask is None else rgb_mask, colour, ys=ys, xs=xs, grain=grain, blotch=blotch)
        return inst

    def shade(
        self,
        mask: np.ndarray,
        colour,
        *,
        ys: slice = slice(None),
        xs: slice = slice(None),
        grain: float = 5.0,
        blotch: float = 6.0,
    ) -> None:
        """Colour pixels without changing their label (windows, lane markings, fence gaps)."""
        region = self.rgb[ys, xs]
        colour = np.asarray(colour, dtype=np.float32)
        if colour.ndim > 1:  # a per-pixel colour (the sky's gradient): take the masked pixels
            colour = np.broadcast_to(colour, region.shape)[mask]
        # only the masked pixels are computed: most masks cover a small part of their window
        region[mask] = colour + grain * self.grain[ys, xs][mask] + blotch * self.blotch[ys, xs][mask][:, None]

    def rect(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice, np.ndarray] | None:
        """Window slices and an all-true mask for a rectangle clipped to the image (None if empty)."""
        xa, xb = max(0, int(round(x0))), min(self.width, int(round(x1)))
        ya, yb = max(0, int(round(y0))), min(self.height, int(round(y1)))
        if xa >= xb or ya >= yb:
            return None
        return slice(ya, yb), slice(xa, xb), np.ones((yb - ya, xb - xa), dtype=bool)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> tuple[slice, slice, np.ndarray] | None:
        window = self.rect(cx - rx, cx + rx + 1, cy - ry, cy + ry + 1)
        if window is None:
            return None
        ys, xs, _ = window
        yy = np.arange(ys.start, ys.stop)[:, None] + 0.5
        xx = np.arange(xs.start, xs.stop)[None, :] + 0.5
        mask = ((xx - cx) / max(rx, 0.5)) ** 2 + ((yy - cy) / max(ry, 0.5)) ** 2 <= 1.0
        return ys, xs, mask


@dataclass(frozen=True)
class Scene:
    """One rendered street scene."""

    rgb: np.ndarray  # (H, W, 3) uint8
    label: np.ndarray  # (H, W) uint8 Cityscapes labelIds
    inst: np.ndarray  # (H, W) int32 instance ids (stuff regions are instances too)
    keep: np.ndarray  # (num_instances,) bool: the coarse annotator draws a polygon for it
    loose: np.ndarray  # (num_instances,) bool: ... a sloppier one (twice the band)
    # (H, W) bool: bare ground, whose class only context tells (version 2; None where a version has no such idea)
    plain: np.ndarray | None = None

    def coarse(self) -> np.ndarray:
        """Coarse labelIds for this scene (see :func:`coarse_from_fine`)."""
        return coarse_from_fine(self.label, self.inst, self.keep, self.loose, coarse_band_px(self.label.shape[0]))


def draw_sky(canvas: Canvas, street: View, rng: np.random.Generator) -> None:
    rows = np.linspace(0.0, 1.0, canvas.height, dtype=np.float32)[:, None, None]  # (H, 1, 1) gradient
    top = np.array([rng.uniform(60, 110), rng.uniform(110, 150), rng.uniform(170, 220)], dtype=np.float32)
    bottom = np.array([rng.uniform(170, 215), rng.uniform(190, 225), rng.uniform(215, 245)], dtype=np.float32)
    colour = top + (bottom - top) * np.minimum(rows * canvas.height / max(street.horizon, 1.0), 1.0)
    canvas.paint(
        np.ones((canvas.height, canvas.width), dtype=bool),
        "sky",
        colour,
        grain=2.0,
        blotch=4.0,
        keep_prob=0.95,
    )


def facade_coords(canvas: Canvas, street: View, side: int, foot_u: float):
    """Columns of one side of the street and, per column, nearness ``s`` of a vertical plane standing on the
    ground line ``u = foot_u`` (s = 1 where that plane meets the bottom row)."""
    cols = np.arange(canvas.width, dtype=np.float32) + 0.5
    on_side = cols < street.vp_x if side == 0 else cols > street.vp_x
    s = (cols - street.vp_x) / (foot_u - street.vp_x)
    return np.flatnonzero(on_side & (s > 0)), s


def draw_buildings(canvas: Canvas, street: View, side: int, foot_u: float, rng: np.random.Generator) -> None:
    """A row of building blocks on the plane over ``foot_u``: per-block height and colour, window grid."""
    cols, s_all = facade_coords(canvas, street, side, foot_u)
    if cols.size == 0:
        return
    ground = canvas.height - street.horizon
    s = s_all[cols]
    depth = 1.0 / s  # distance along the street, in units of the near distance
    block_len = rng.uniform(0.25, 0.6)
    # blocks along the street; everything beyond the 16th (a few pixels near the vanishing point) is one block
    block = np.minimum(np.floor(depth / block_len + rng.uniform()).astype(int), 15)
    n_blocks = int(block.max()) + 1
    heights = rng.uniform(0.8, 3.5, size=n_blocks)
    palette = rng.uniform(70, 200, size=(n_blocks, 1)) + rng.uniform(-25, 25, size=(n_blocks, 3))
    rows = np.arange(canvas.height, dtype=np.float32)[:, None] + 0.5
    foot = street.horizon + s * ground
    roof = street.horizon - s * ground * heights[block]
    inside = (rows < foot) & (rows >= roof)  # (H, n_cols)
    window_x = np.modf(depth * rng.uniform(5, 9))[0]
    z = (foot - rows) / (s * ground)  # height above the ground, in camera heights
    windows = inside & (z > 1.3) & (np.abs(window_x - 0.5) < 0.22) & (np.abs(np.modf(z * 1.4)[0] - 0.5) < 0.2)
    window_colour = rng.uniform(25, 70, size=3)
    for b in np.unique(block):
        in_block = block == b
        sub = cols[in_block]
        xs = slice(int(sub.min()), int(sub.max()) + 1)
        canvas.paint(inside[:, in_block], "building", palette[b], xs=xs, grain=5.0, blotch=9.0)
        canvas.shade(windows[:, in_block], window_colour, xs=xs, grain=3.0, blotch=3.0)


def draw_hedge(canvas: Canvas, street: View, side: int, foot_u: float, rng: np.random.Generator) -> None:
    """A wall of trees and bushes on ``foot_u`` with a bumpy top: what park terrain borders."""
    cols, s_all = facade_coords(canvas, street, side, foot_u)
    if cols.size == 0:
        return
    ground = canvas.height - street.horizon
    s = s_all[cols]
    depth = 1.0 / s
    crown = (
        rng.uniform(0.7, 1.8)
        + 0.35 * np.sin(depth * rng.uniform(3, 8) + rng.uniform(0, 6.3))
        + 0.2 * np.sin(depth * rng.uniform(11, 19))
    )
    rows = np.arange(canvas.height, dtype=np.float32)[:, None] + 0.5
    mask = (rows < street.horizon + s * ground) & (rows >= street.horizon - s * ground * crown)
    xs = slice(int(cols.min()), int(cols.max()) + 1)
    canvas.paint(mask, "vegetation", vegetation_colour(rng), xs=xs, grain=16.0, blotch=22.0)


def draw_car_body(canvas: Canvas, x: float, foot: float, w: float, h: float, rng: np.random.Generator) -> None:
    """A car seen from behind standing at ``(x, foot)``, ``w`` x ``h`` px: body, cabin, two wheels and the rear
    window (one instance; small cars are often left out of the instance set, as far-away ones in Cityscapes)."""
    inst = canvas.instance(keep_prob=0.85 if h > 0.12 * canvas.height else 0.3)
    body = rng.uniform(20, 220, size=3)
    cabin_w = w * rng.uniform(0.65, 0.8)
    parts = [
        (canvas.rect(x - w / 2, x + w / 2, foot - 0.65 * h, foot - 0.1 * h), body),
        (canvas.rect(x - cabin_w / 2, x + cabin_w / 2, foot - h, foot - 0.6 * h), body),
        (canvas.ellipse(x - 0.32 * w, foot - 0.1 * h, 0.11 * w, 0.1 * h), np.full(3, 25.0)),
        (canvas.ellipse(x + 0.32 * w, foot - 0.1 * h, 0.11 * w, 0.1 * h), np.full(3, 25.0)),
    ]
    for window, colour in parts:
        if window is not None:
            ys, xs, mask = window
            canvas.paint(mask, "car", colour, ys=ys, xs=xs, grain=4.0, blotch=3.0, inst=inst)
    glass = canvas.rect(x - cabin_w * 0.42, x + cabin_w * 0.42, foot - 0.93 * h, foot - 0.66 * h)
    if glass is not None:
        ys, xs, mask = glass
        canvas.shade(mask, rng.uniform(30, 80, size=3), ys=ys, xs=xs, grain=3.0, blotch=4.0)


def vegetation_colour(rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.uniform(35, 95), rng.uniform(80, 145), rng.uniform(20, 65)])


def draw_sign(canvas: Canvas, cx: float, top: float, size: float, rng: np.random.Generator) -> None:
    shape = rng.choice(["disc", "square", "diamond"])
    colour = {"disc": (200, 30, 35), "square": (30, 80, 190), "diamond": (235, 200, 30)}[str(shape)]
    window = canvas.ellipse(cx, top + size / 2, size / 2, size / 2)
    if window is None:
        return
    ys, xs, mask = window
    if shape != "disc":
        yy = np.arange(ys.start, ys.stop)[:, None] + 0.5 - (top + size / 2)
        xx = np.arange(xs.start, xs.stop)[None, :] + 0.5 - cx
        mask = (
            np.abs(xx) + np.abs(yy) <= size / 2
            if shape == "diamond"
            else (np.abs(xx) <= size / 2) & (np.abs(yy) <= size / 2)
        )
    inst = canvas.paint(
        mask,
        "traffic sign",
        np.array(colour, dtype=np.float32),
        ys=ys,
        xs=xs,
        grain=4.0,
        blotch=2.0,
        keep_prob=0.3,
    )
    inner = canvas.ellipse(cx, top + size / 2, size / 4, size / 4)
    if inner is not None and size >= 6:
        iys, ixs, imask = inner
        canvas.shade(imask & (canvas.inst[iys, ixs] == inst), (235, 235, 235), ys=iys, xs=ixs, grain=3.0)


def draw_traffic_light(canvas: Canvas, cx: float, top: float, width: float, rng: np.random.Generator) -> None:
    height = 2.6 * width
    window = canvas.rect(cx - width / 2, cx + width / 2, top, top + height)
    if window is None:
        return
    ys, xs, mask = window
    canvas.paint(mask, "traffic light", rng.uniform(20, 45, size=3), ys=ys, xs=xs, grain=3.0, blotch=2.0, keep_prob=0.3)
    lamp = int(rng.integers(0, 3))
    colour = ((230, 40, 30), (240, 180, 20), (40, 220, 90))[lamp]
    bulb = canvas.ellipse(cx, top + height * (lamp + 0.5) / 3, width * 0.3, width * 0.3)
    if bulb is not None:
        bys, bxs, bmask = bulb
        canvas.shade(
            bmask & (canvas.label[bys, bxs] == LABEL_ID["traffic light"]),
            colour,
            ys=bys,
            xs=bxs,
            grain=3.0,
            blotch=0.0,
        )
