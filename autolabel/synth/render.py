"""Drawing one street scene of the synthetic city: its classes, layout, canvas and objects.

See :mod:`autolabel.synth` for what the scenes model and why.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from autolabel.classes import CITYSCAPES
from autolabel.synth.coarse import VOID_LABEL_ID, coarse_band_px, coarse_from_fine

# The Cityscapes classes the generator draws, by name; their labelIds come from the Cityscapes class set.
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


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
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


class _Canvas:
    """Label map, instance map and colour image painted back to front."""

    def __init__(self, width: int, height: int, rng: np.random.Generator) -> None:
        self.width, self.height, self.rng = width, height, rng
        self.label = np.full((height, width), VOID_LABEL_ID, dtype=np.uint8)
        self.inst = np.zeros((height, width), dtype=np.int32)
        self.rgb = np.zeros((height, width, 3), dtype=np.float32)
        self.keep: list[bool] = [False]  # per instance: does the coarse annotator label it at all?
        self.loose: list[bool] = [False]  # per instance: a sloppier polygon (twice the band)
        self.grain = rng.standard_normal((height, width, 3), dtype=np.float32)
        self.blotch = _smooth_noise(rng, height, width, cell=max(4.0, height / 24))

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
class _Street:
    """Perspective of a straight street: horizon row, vanishing point column and ground bands.

    A ground pixel's *bottom coordinate* ``u`` is where the line from the vanishing point through it meets the
    bottom row, so bands parallel to the street are intervals of ``u``; ``t`` in (0, 1] is nearness (1 at the
    bottom row) and ``t * (height - horizon)`` is the camera height in pixels at that distance.
    """

    horizon: float
    vp_x: float
    road: tuple[float, float]
    bands: tuple[tuple[str, float, float], ...]  # (class, u_lo, u_hi) for road and every band beside it
    outer: tuple[float, float]  # u of the left / right foot line of the vertical world (buildings, hedges)
    modes: tuple[str, str]  # left / right side: "urban", "park" or "lawn"

    def ground_point(self, u: float, t: float, height: int) -> tuple[float, float, float]:
        """Image (x, y) of ground point (u, t) and the camera height in pixels there."""
        return (
            self.vp_x + t * (u - self.vp_x),
            self.horizon + t * (height - self.horizon),
            t * (height - self.horizon),
        )

    def band(self, name: str, side: int) -> tuple[float, float]:
        """(u_lo, u_hi) of the ``name`` band on side 0 (left) or 1 (right)."""
        matches = [(lo, hi) for cls, lo, hi in self.bands if cls == name and (hi <= self.road[0]) == (side == 0)]
        return matches[0]


_SIDE_BANDS = {"urban": ("sidewalk",), "park": ("sidewalk", "terrain"), "lawn": ("terrain", "sidewalk")}


def _layout(rng: np.random.Generator, width: int, height: int) -> _Street:
    horizon = height * rng.uniform(0.36, 0.5)
    vp_x = width * rng.uniform(0.38, 0.62)
    centre = vp_x + width * rng.uniform(-0.12, 0.12)
    half = width * rng.uniform(0.22, 0.4)
    road = (centre - half, centre + half)
    bands: list[tuple[str, float, float]] = [("road", *road)]
    modes = tuple(str(rng.choice(["urban", "park", "lawn"], p=[0.5, 0.3, 0.2])) for _ in range(2))
    outer = []
    for side, mode in enumerate(modes):
        cursor, step = (road[0], -1.0) if side == 0 else (road[1], 1.0)
        for name in _SIDE_BANDS[mode]:
            band_width = width * (rng.uniform(0.12, 0.3) if name == "sidewalk" else rng.uniform(0.1, 0.35))
            lo, hi = sorted((cursor, cursor + step * band_width))
            bands.append((name, lo, hi))
            cursor += step * band_width
        outer.append(cursor)
    return _Street(horizon, vp_x, road, tuple(bands), (outer[0], outer[1]), (modes[0], modes[1]))


def _ground_colour(rng: np.random.Generator) -> np.ndarray:
    """One colour for road, sidewalk and terrain alike: their appearance must not give the class away."""
    grey = rng.uniform(65, 175)
    return grey + rng.uniform(-14, 14, size=3)


def _draw_sky(canvas: _Canvas, street: _Street, rng: np.random.Generator) -> None:
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


def _facade_coords(canvas: _Canvas, street: _Street, side: int, foot_u: float):
    """Columns of one side of the street and, per column, nearness ``s`` of a vertical plane standing on the
    ground line ``u = foot_u`` (s = 1 where that plane meets the bottom row)."""
    cols = np.arange(canvas.width, dtype=np.float32) + 0.5
    on_side = cols < street.vp_x if side == 0 else cols > street.vp_x
    s = (cols - street.vp_x) / (foot_u - street.vp_x)
    return np.flatnonzero(on_side & (s > 0)), s


def _draw_buildings(canvas: _Canvas, street: _Street, side: int, foot_u: float, rng: np.random.Generator) -> None:
    """A row of building blocks on the plane over ``foot_u``: per-block height and colour, window grid."""
    cols, s_all = _facade_coords(canvas, street, side, foot_u)
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


def _draw_hedge(canvas: _Canvas, street: _Street, side: int, foot_u: float, rng: np.random.Generator) -> None:
    """A wall of trees and bushes on ``foot_u`` with a bumpy top: what park terrain borders."""
    cols, s_all = _facade_coords(canvas, street, side, foot_u)
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
    canvas.paint(mask, "vegetation", _vegetation_colour(rng), xs=xs, grain=16.0, blotch=22.0)


def _vegetation_colour(rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.uniform(35, 95), rng.uniform(80, 145), rng.uniform(20, 65)])


def _draw_ground(canvas: _Canvas, street: _Street, rng: np.random.Generator) -> None:
    """Road and the bands beside it (each band its own colour from one shared distribution)."""
    top = int(math.ceil(street.horizon))
    rows = np.arange(top, canvas.height, dtype=np.float32)[:, None] + 0.5
    t = (rows - street.horizon) / (canvas.height - street.horizon)
    cols = np.arange(canvas.width, dtype=np.float32)[None, :] + 0.5
    u = street.vp_x + (cols - street.vp_x) / t  # (H - top, W) bottom coordinate
    ys = slice(top, canvas.height)
    for name, lo, hi in street.bands:
        canvas.paint((u >= lo) & (u < hi), name, _ground_colour(rng), ys=ys, grain=7.0, blotch=10.0)
    # dashed centre line: a road cue, but only on the few pixels it covers
    centre = 0.5 * (street.road[0] + street.road[1])
    dashes = (np.abs(u - centre) < canvas.width * 0.008) & (np.modf(1.0 / t * 0.9)[0] < 0.5)
    canvas.shade(dashes, rng.uniform(200, 240, size=3), ys=ys, grain=3.0, blotch=2.0)


def _draw_pole(canvas: _Canvas, street: _Street, side: int, kind: str, rng: np.random.Generator, t: float) -> None:
    """A pole 1-3 px wide (at any image size) on a sidewalk, carrying a sign, a traffic light or nothing."""
    lo, hi = street.band("sidewalk", side)
    x, foot, scale = street.ground_point(rng.uniform(lo, hi), t, canvas.height)
    top = foot - scale * rng.uniform(1.8, 2.8)
    width = int(rng.integers(1, 4))
    grey = rng.uniform(70, 150)
    window = canvas.rect(x, x + width, top, foot)
    if window is not None:
        ys, xs, mask = window
        canvas.paint(
            mask,
            "pole",
            grey + rng.uniform(-6, 6, size=3),
            ys=ys,
            xs=xs,
            grain=3.0,
            blotch=2.0,
            keep_prob=0.1,
        )
    if kind == "sign":
        _draw_sign(canvas, x + width / 2, top, max(3.0, scale * rng.uniform(0.22, 0.35)), rng)
    elif kind == "light":
        _draw_traffic_light(canvas, x + width / 2, top, max(2.0, scale * rng.uniform(0.09, 0.14)), rng)


def _draw_sign(canvas: _Canvas, cx: float, top: float, size: float, rng: np.random.Generator) -> None:
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


def _draw_traffic_light(canvas: _Canvas, cx: float, top: float, width: float, rng: np.random.Generator) -> None:
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


def _draw_person(canvas: _Canvas, street: _Street, rng: np.random.Generator, t: float) -> None:
    side = int(rng.integers(0, 2))
    lo, hi = street.band("sidewalk", side)
    x, foot, scale = street.ground_point(rng.uniform(lo, hi), t, canvas.height)
    h = scale * rng.uniform(1.2, 1.5)
    # annotators skip people that look small: "small" relative to the image, so any size behaves alike
    inst = canvas.instance(keep_prob=0.6 if h > 0.15 * canvas.height else 0.2)
    shirt, trousers = rng.uniform(20, 230, size=3), rng.uniform(15, 90, size=3)
    parts = [
        (
            canvas.ellipse(x, foot - 0.9 * h, 0.08 * h, 0.09 * h),
            rng.uniform(150, 220) * np.array([1, 0.8, 0.7]),
        ),
        (canvas.ellipse(x, foot - 0.62 * h, 0.16 * h, 0.22 * h), shirt),
        (canvas.rect(x - 0.13 * h, x - 0.02 * h, foot - 0.45 * h, foot), trousers),
        (canvas.rect(x + 0.02 * h, x + 0.13 * h, foot - 0.45 * h, foot), trousers),
    ]
    for window, colour in parts:
        if window is not None:
            ys, xs, mask = window
            canvas.paint(mask, "person", colour, ys=ys, xs=xs, grain=4.0, blotch=3.0, inst=inst)


def _draw_car(canvas: _Canvas, street: _Street, rng: np.random.Generator, t: float) -> None:
    x, foot, scale = street.ground_point(rng.uniform(*street.road), t, canvas.height)
    w, h = scale * rng.uniform(1.4, 1.7), scale * rng.uniform(1.1, 1.35)
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
    for offset in (-0.42, 0.42):
        light = canvas.rect(x + offset * w - 0.06 * w, x + offset * w + 0.06 * w, foot - 0.55 * h, foot - 0.47 * h)
        if light is not None:
            ys, xs, mask = light
            canvas.shade(mask, (200, 30, 30), ys=ys, xs=xs, grain=3.0, blotch=0.0)


def _draw_fence(canvas: _Canvas, street: _Street, side: int, rng: np.random.Generator) -> None:
    """A fence along the outer edge of the sidewalk over a stretch of the street; labelled as a whole (bars
    and gaps, as Cityscapes does), painted only on its bars and rails."""
    lo, hi = street.band("sidewalk", side)
    cols, s_all = _facade_coords(canvas, street, side, lo if side == 0 else hi)
    if cols.size == 0:
        return
    s = s_all[cols]
    near, far = sorted(rng.uniform(0.15, 1.2, size=2))
    ground = canvas.height - street.horizon
    rows = np.arange(canvas.height, dtype=np.float32)[:, None] + 0.5
    foot = street.horizon + s * ground
    fence_top = foot - s * ground * rng.uniform(0.45, 0.8)
    mask = (s >= near) & (s <= far + 0.05) & (rows < foot) & (rows >= fence_top)
    if not mask.any():
        return
    z = (foot - rows) / (foot - fence_top)  # 0 at the foot, 1 at the top
    bars = np.modf(1.0 / s * rng.uniform(12, 20))[0] < 0.35
    rails = (np.abs(z - 0.9) < 0.08) | (np.abs(z - 0.45) < 0.06)
    xs = slice(int(cols.min()), int(cols.max()) + 1)
    canvas.paint(
        mask,
        "fence",
        np.full(3, rng.uniform(90, 170)),
        xs=xs,
        grain=3.0,
        blotch=3.0,
        keep_prob=0.6,
        rgb_mask=mask & (bars | rails),
    )


def _draw_tree(canvas: _Canvas, street: _Street, side: int, rng: np.random.Generator, t: float) -> None:
    lo, hi = street.band("terrain", side)
    x, foot, scale = street.ground_point(rng.uniform(lo, hi), t, canvas.height)
    inst = canvas.instance(keep_prob=0.7)
    trunk = canvas.rect(x - 0.05 * scale, x + 0.05 * scale + 1, foot - 1.6 * scale, foot)
    crown = canvas.ellipse(x, foot - 2.1 * scale, scale * rng.uniform(0.5, 0.9), scale * rng.uniform(0.6, 1.0))
    for window, colour, grain in (
        (trunk, rng.uniform(50, 90) * np.array([1, 0.8, 0.6]), 4.0),
        (crown, _vegetation_colour(rng), 16.0),
    ):
        if window is not None:
            ys, xs, mask = window
            canvas.paint(mask, "vegetation", colour, ys=ys, xs=xs, grain=grain, blotch=18.0, inst=inst)


@dataclass(frozen=True)
class Scene:
    """One rendered street scene."""

    rgb: np.ndarray  # (H, W, 3) uint8
    label: np.ndarray  # (H, W) uint8 Cityscapes labelIds
    inst: np.ndarray  # (H, W) int32 instance ids (stuff regions are instances too)
    keep: np.ndarray  # (num_instances,) bool: the coarse annotator draws a polygon for it
    loose: np.ndarray  # (num_instances,) bool: ... a sloppier one (twice the band)

    def coarse(self) -> np.ndarray:
        """Coarse labelIds for this scene (see :func:`coarse_from_fine`)."""
        return coarse_from_fine(self.label, self.inst, self.keep, self.loose, coarse_band_px(self.label.shape[0]))


def _draw_backdrop(canvas: _Canvas, street: _Street, rng: np.random.Generator) -> None:
    """Sky, the vertical world on both sides (buildings, or a hedge with buildings behind it), the ground."""
    _draw_sky(canvas, street, rng)
    for side, mode in enumerate(street.modes):
        if mode == "park":  # buildings further back, seen above the hedge
            shift = canvas.width * rng.uniform(0.3, 0.8) * (-1 if side == 0 else 1)
            _draw_buildings(canvas, street, side, street.outer[side] + shift, rng)
            _draw_hedge(canvas, street, side, street.outer[side], rng)
        else:
            _draw_buildings(canvas, street, side, street.outer[side], rng)
    _draw_ground(canvas, street, rng)


def _place_objects(
    canvas: _Canvas, street: _Street, rng: np.random.Generator
) -> list[tuple[float, Callable[[float], None]]]:
    """(nearness, draw) for every object in the scene: poles (at least one sign and one light), people,
    cars, trees on terrain, maybe a fence (nearness 0: behind everything else standing on the sidewalk)."""
    objects: list[tuple[float, Callable[[float], None]]] = []
    for i in range(int(rng.integers(3, 8))):
        kinds = ("sign", "light", "lamp")  # a lamp post is a bare pole here
        kind = kinds[i] if i < 2 else str(rng.choice(kinds, p=[0.4, 0.3, 0.3]))
        side = int(rng.integers(0, 2))
        draw = functools.partial(_draw_pole, canvas, street, side, kind, rng)  # binds this iteration's values
        objects.append((float(rng.uniform(0.2, 1.0)), draw))
    for _ in range(int(rng.integers(1, 5))):
        objects.append((float(rng.uniform(0.12, 0.7)), lambda t: _draw_person(canvas, street, rng, t)))
    for _ in range(int(rng.integers(1, 4))):
        objects.append((float(rng.uniform(0.12, 0.85)), lambda t: _draw_car(canvas, street, rng, t)))
    for side, mode in enumerate(street.modes):
        for _ in range(int(rng.integers(0, 3)) if mode != "urban" else 0):
            draw = functools.partial(_draw_tree, canvas, street, side, rng)
            objects.append((float(rng.uniform(0.2, 0.9)), draw))
    if rng.random() < 0.6:
        side = int(rng.integers(0, 2))
        objects.append((0.0, lambda t: _draw_fence(canvas, street, side, rng)))
    return objects


def render_scene(rng: np.random.Generator, width: int, height: int) -> Scene:
    """Draw one street scene of ``width`` x ``height`` pixels with ``rng``."""
    canvas = _Canvas(width, height, rng)
    street = _layout(rng, width, height)
    _draw_backdrop(canvas, street, rng)
    for t, draw in sorted(_place_objects(canvas, street, rng), key=lambda item: item[0]):
        draw(t)  # far to near, so near objects occlude far ones
    exposure = rng.uniform(0.8, 1.15)
    image = canvas.rgb * exposure + rng.normal(0, 2.0, size=canvas.rgb.shape).astype(np.float32)
    return Scene(
        rgb=np.clip(np.rint(image), 0, 255).astype(np.uint8),
        label=canvas.label,
        inst=canvas.inst,
        keep=np.array(canvas.keep, dtype=bool),
        loose=np.array(canvas.loose, dtype=bool),
    )
