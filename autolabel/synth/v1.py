"""Version 1 of the synthetic city's street scene (``synth --version 1``): layout, ground and objects.

Kept as it was, so that results made with it can be made again; see docs/synthetic_city.md.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from autolabel.synth.draw import (
    Canvas,
    Scene,
    draw_buildings,
    draw_car_body,
    draw_hedge,
    draw_sign,
    draw_sky,
    draw_traffic_light,
    facade_coords,
    vegetation_colour,
)


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


def _draw_ground(canvas: Canvas, street: _Street, rng: np.random.Generator) -> None:
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


def _draw_pole(canvas: Canvas, street: _Street, side: int, kind: str, rng: np.random.Generator, t: float) -> None:
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
        draw_sign(canvas, x + width / 2, top, max(3.0, scale * rng.uniform(0.22, 0.35)), rng)
    elif kind == "light":
        draw_traffic_light(canvas, x + width / 2, top, max(2.0, scale * rng.uniform(0.09, 0.14)), rng)


def _draw_person(canvas: Canvas, street: _Street, rng: np.random.Generator, t: float) -> None:
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


def _draw_car(canvas: Canvas, street: _Street, rng: np.random.Generator, t: float) -> None:
    x, foot, scale = street.ground_point(rng.uniform(*street.road), t, canvas.height)
    w, h = scale * rng.uniform(1.4, 1.7), scale * rng.uniform(1.1, 1.35)
    draw_car_body(canvas, x, foot, w, h, rng)
    for offset in (-0.42, 0.42):
        light = canvas.rect(x + offset * w - 0.06 * w, x + offset * w + 0.06 * w, foot - 0.55 * h, foot - 0.47 * h)
        if light is not None:
            ys, xs, mask = light
            canvas.shade(mask, (200, 30, 30), ys=ys, xs=xs, grain=3.0, blotch=0.0)


def _draw_fence(canvas: Canvas, street: _Street, side: int, rng: np.random.Generator) -> None:
    """A fence along the outer edge of the sidewalk over a stretch of the street; labelled as a whole (bars
    and gaps, as Cityscapes does), painted only on its bars and rails."""
    lo, hi = street.band("sidewalk", side)
    cols, s_all = facade_coords(canvas, street, side, lo if side == 0 else hi)
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


def _draw_tree(canvas: Canvas, street: _Street, side: int, rng: np.random.Generator, t: float) -> None:
    lo, hi = street.band("terrain", side)
    x, foot, scale = street.ground_point(rng.uniform(lo, hi), t, canvas.height)
    inst = canvas.instance(keep_prob=0.7)
    trunk = canvas.rect(x - 0.05 * scale, x + 0.05 * scale + 1, foot - 1.6 * scale, foot)
    crown = canvas.ellipse(x, foot - 2.1 * scale, scale * rng.uniform(0.5, 0.9), scale * rng.uniform(0.6, 1.0))
    for window, colour, grain in (
        (trunk, rng.uniform(50, 90) * np.array([1, 0.8, 0.6]), 4.0),
        (crown, vegetation_colour(rng), 16.0),
    ):
        if window is not None:
            ys, xs, mask = window
            canvas.paint(mask, "vegetation", colour, ys=ys, xs=xs, grain=grain, blotch=18.0, inst=inst)


def _draw_backdrop(canvas: Canvas, street: _Street, rng: np.random.Generator) -> None:
    """Sky, the vertical world on both sides (buildings, or a hedge with buildings behind it), the ground."""
    draw_sky(canvas, street, rng)
    for side, mode in enumerate(street.modes):
        if mode == "park":  # buildings further back, seen above the hedge
            shift = canvas.width * rng.uniform(0.3, 0.8) * (-1 if side == 0 else 1)
            draw_buildings(canvas, street, side, street.outer[side] + shift, rng)
            draw_hedge(canvas, street, side, street.outer[side], rng)
        else:
            draw_buildings(canvas, street, side, street.outer[side], rng)
    _draw_ground(canvas, street, rng)


def _place_objects(
    canvas: Canvas, street: _Street, rng: np.random.Generator
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
    """Draw one version-1 street scene of ``width`` x ``height`` pixels with ``rng``."""
    canvas = Canvas(width, height, rng)
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
