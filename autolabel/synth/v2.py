"""Version 2 of the synthetic city's street scene (``synth --version 2``, the default): designed from the
network's geometry so that the multi-scale method's failure modes show (docs/synthetic_city.md).

- **Thin structures** (poles, fence bars and rails) are :data:`THIN_WIDTH_PX` pixels wide at the generated
  size, whatever the distance: one to two logit pixels of a stride-4 network at 1.0x, under one at 0.5x
  (stride 8 in image pixels), two to four at 2.0x.
- **Large regions decided by context**: road, sidewalk and terrain are painted as *one* surface (same colour,
  same texture) in each image; only their edges carry a sign of which is which (a white line inside the road,
  a red kerb with dark joints on the sidewalk, brown dashes on terrain) and the street's layout (the road
  in the middle, a sidewalk before the buildings, terrain before a hedge). The bands are wide, so most of
  their pixels are far from every such sign: a network that only sees a small window there cannot know which
  class it is looking at, one that sees far enough can.
- The objects that stand on the ground (poles, people, trees, parked cars) keep to the bands' edges, so they do
  not give the inside of the bands away either.

Every length is in pixels of the generated image: the thin widths do not scale with the image size; the layout
(band widths, object sizes) does. The properties are measured in :mod:`autolabel.synth.measure`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from autolabel.synth.draw import (
    LABEL_ID,
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

# one to two logit pixels of the teacher at 1.0x: HRNet predicts at stride 4 of its input
LOGIT_STRIDE_PX = 4
THIN_WIDTH_PX = (LOGIT_STRIDE_PX, 2 * LOGIT_STRIDE_PX)  # [lo, hi) of every pole, fence bar and rail
THIN_CLASSES = ("pole", "traffic light", "traffic sign", "person", "fence")
CONTEXT_CLASSES = ("road", "sidewalk", "terrain")  # one surface: only context says which
DESIGN_SIZE = (512, 256)  # the size the layout's distances were chosen for (see docs/synthetic_city.md)
# The effective receptive field of a tiny HRNet-OCR trained on this city, in pixels of the 1.0x image: the
# Chebyshev radius around a pixel that holds 50 % / 90 % of the gradient of its decision w.r.t. the input,
# run at each scale (`python -m autolabel.workflows.geometry --checkpoint ...`; `make reproduce` measures it
# again for every seed). The layout puts the cues that tell bare ground apart between the 2.0x and the
# 0.5x radius for as much of the ground as perspective allows at DESIGN_SIZE.
RECEPTIVE_FIELD_PX = {"0.5x": {"50%": 62, "90%": 134}, "1x": {"50%": 45, "90%": 93}, "2x": {"50%": 22, "90%": 49}}

_HORIZON = (0.15, 0.25)  # of the height
_ROAD_WIDTH = (0.4, 0.6)  # of the image width, at the bottom row
_BAND_WIDTH = {"sidewalk": (0.35, 0.6), "terrain": (0.35, 0.6)}
_MARKER = 10.0  # width of the edge signs at the bottom row, shrinking with distance like the bands
_OBJECT = 0.4  # object sizes relative to the camera height (people 0.5-0.6 of it)
_POLES = (8, 15)  # per image: a thin class needs enough pixels to be learned (measure.class_shares)
_FENCE_PAINT = ((40, 95, 55), (215, 215, 205), (120, 80, 45))


@dataclass(frozen=True)
class _Street:
    """Perspective of a straight street seen from a camera over its road.

    Like version 1, a ground pixel's *bottom coordinate* ``u`` is where the line from the vanishing point
    through it meets the bottom row; bands are intervals of ``u``, listed left to right. ``ends`` are the
    vertical worlds beyond the outermost bands: ``("building" | "hedge", u of its foot line)``.
    """

    horizon: float
    vp_x: float
    bands: tuple[tuple[str, float, float], ...]
    ends: tuple[tuple[str, float], tuple[str, float]]

    def ground_point(self, u: float, t: float, height: int) -> tuple[float, float, float]:
        """Image (x, y) of ground point (u, t) (t: nearness, 1 at the bottom row) and the camera height there."""
        return (
            self.vp_x + t * (u - self.vp_x),
            self.horizon + t * (height - self.horizon),
            t * (height - self.horizon),
        )

    def bands_of(self, name: str) -> list[tuple[float, float]]:
        return [(lo, hi) for cls, lo, hi in self.bands if cls == name]


_SIDES = {"urban": ("sidewalk",), "park": ("sidewalk", "terrain"), "lawn": ("terrain", "sidewalk")}


def _layout(rng: np.random.Generator, width: int, height: int) -> _Street:
    """The road under the camera, and on each side bands outwards: urban (a sidewalk, then buildings), park (a
    sidewalk, terrain, then a hedge) or lawn (terrain, a sidewalk, then buildings)."""
    horizon = height * rng.uniform(*_HORIZON)
    vp_x = width * rng.uniform(0.45, 0.55)
    half = 0.5 * width * rng.uniform(*_ROAD_WIDTH)
    centre = vp_x + width * rng.uniform(-0.05, 0.05)
    lo, hi = centre - half, centre + half
    sides: list[list[tuple[str, float, float]]] = [[], []]
    ends = []
    for side in (0, 1):
        names = _SIDES[str(rng.choice(list(_SIDES), p=[0.4, 0.35, 0.25]))]
        cursor, step = (lo, -1.0) if side == 0 else (hi, 1.0)
        for name in names:
            band = width * rng.uniform(*_BAND_WIDTH[name])
            a, b = sorted((cursor, cursor + step * band))
            sides[side].append((name, a, b))
            cursor += step * band
        ends.append(("hedge" if names[-1] == "terrain" else "building", cursor))
    bands = (*reversed(sides[0]), ("road", lo, hi), *sides[1])
    return _Street(horizon, vp_x, bands, (ends[0], ends[1]))


def _draw_ground(canvas: Canvas, street: _Street, rng: np.random.Generator) -> np.ndarray:
    """Every band in one surface colour and texture, the signs along the edges between bands; returns the
    mask of those edge signs."""
    top = int(math.ceil(street.horizon))
    rows = np.arange(top, canvas.height, dtype=np.float32)[:, None] + 0.5
    t = (rows - street.horizon) / (canvas.height - street.horizon)
    cols = np.arange(canvas.width, dtype=np.float32)[None, :] + 0.5
    u = street.vp_x + (cols - street.vp_x) / t  # (H - top, W) bottom coordinate
    depth = np.broadcast_to(1.0 / t, u.shape)  # distance along the street, in units of the nearest row's
    ys = slice(top, canvas.height)
    surface = rng.uniform(70, 170) + rng.uniform(-12, 12, size=3)  # road, sidewalk and terrain alike
    line = rng.uniform(215, 245) + rng.uniform(-5, 5, size=3)
    kerb = np.array([rng.uniform(135, 165), rng.uniform(85, 105), rng.uniform(70, 90)])
    edging = np.array([rng.uniform(75, 95), rng.uniform(55, 70), rng.uniform(35, 48)])
    period = rng.uniform(1.5, 3.0)
    outer = {street.ends[0][1], street.ends[1][1]}  # the foot of a building or hedge: no sign needed there
    signs = np.zeros((canvas.height, canvas.width), dtype=bool)
    for name, lo, hi in street.bands:
        canvas.paint((u >= lo) & (u < hi), name, surface, ys=ys, grain=7.0, blotch=10.0)
        for edge, inwards in ((lo, 1.0), (hi, -1.0)):
            if edge in outer:
                continue
            gap = 3.0 if name == "road" else 0.0  # the road's line is painted a little inside its edge
            a, b = sorted((edge + inwards * gap, edge + inwards * (gap + _MARKER)))
            strip = (u >= a) & (u < b)
            signs[ys] |= strip
            if name == "road":
                canvas.shade(strip, line, ys=ys, grain=3.0, blotch=2.0)
            elif name == "sidewalk":
                joints = np.modf(depth * period * 4)[0] < 0.18
                canvas.shade(strip & ~joints, kerb, ys=ys, grain=4.0, blotch=3.0)
                canvas.shade(strip & joints, kerb * 0.45, ys=ys, grain=3.0, blotch=2.0)
            else:
                dashes = np.modf(depth * period * 2)[0] < 0.5
                canvas.shade(strip & dashes, edging, ys=ys, grain=4.0, blotch=3.0)
    return signs


def _near_edge(rng: np.random.Generator, band: tuple[float, float], lo: float, hi: float) -> float:
    """A ``u`` inside ``band`` at a fraction in [lo, hi) of its width from one of its two edges."""
    a, b = band
    edge = rng.uniform(lo, hi)
    return a + (b - a) * (edge if rng.random() < 0.5 else 1 - edge)


def _draw_pole(
    canvas: Canvas, street: _Street, band: tuple[float, float], kind: str, rng: np.random.Generator, t: float
) -> None:
    """A pole :data:`THIN_WIDTH_PX` wide near a sidewalk's edge, carrying a sign, a traffic light or nothing."""
    x, foot, scale = street.ground_point(_near_edge(rng, band, 0.02, 0.08), t, canvas.height)
    top = foot - scale * _OBJECT * rng.uniform(1.8, 2.8)
    width = int(rng.integers(*THIN_WIDTH_PX))
    grey = rng.uniform(35, 95)
    window = canvas.rect(x - width / 2, x + width / 2, top, foot)
    if window is not None:
        ys, xs, mask = window
        colour = grey + rng.uniform(-5, 5, size=3)
        canvas.paint(mask, "pole", colour, ys=ys, xs=xs, grain=3.0, blotch=2.0, keep_prob=0.1)
    if kind == "sign":
        draw_sign(canvas, x, top, max(12.0, scale * _OBJECT * rng.uniform(0.3, 0.45)), rng)
    elif kind == "light":
        draw_traffic_light(canvas, x, top, max(8.0, scale * _OBJECT * rng.uniform(0.12, 0.17)), rng)


def _draw_person(
    canvas: Canvas, street: _Street, band: tuple[float, float], rng: np.random.Generator, t: float
) -> None:
    x, foot, scale = street.ground_point(_near_edge(rng, band, 0.03, 0.12), t, canvas.height)
    h = scale * _OBJECT * rng.uniform(1.2, 1.5)
    inst = canvas.instance(keep_prob=0.6 if h > 0.15 * canvas.height else 0.2)
    shirt, trousers = rng.uniform(20, 230, size=3), rng.uniform(15, 90, size=3)
    leg = max(float(THIN_WIDTH_PX[0]), 0.07 * h)
    parts = [
        (
            canvas.ellipse(x, foot - 0.9 * h, max(2.5, 0.07 * h), max(2.5, 0.08 * h)),
            rng.uniform(150, 220) * np.array([1, 0.8, 0.7]),
        ),
        (canvas.rect(x - 0.1 * h, x + 0.1 * h, foot - 0.82 * h, foot - 0.45 * h), shirt),
        (canvas.rect(x - 0.09 * h, x - 0.09 * h + leg, foot - 0.45 * h, foot), trousers),
        (canvas.rect(x + 0.09 * h - leg, x + 0.09 * h, foot - 0.45 * h, foot), trousers),
    ]
    for window, colour in parts:
        if window is not None:
            ys, xs, mask = window
            canvas.paint(mask, "person", colour, ys=ys, xs=xs, grain=4.0, blotch=3.0, inst=inst)


def _draw_car(canvas: Canvas, street: _Street, band: tuple[float, float], rng: np.random.Generator, t: float) -> None:
    """A car parked near one edge of the road (a car in the middle would say "road" to the middle)."""
    x, foot, scale = street.ground_point(_near_edge(rng, band, 0.1, 0.2), t, canvas.height)
    w, h = scale * _OBJECT * rng.uniform(1.3, 1.6), scale * _OBJECT * rng.uniform(1.0, 1.2)
    draw_car_body(canvas, x, foot, w, h, rng)


def _draw_fence(
    canvas: Canvas, street: _Street, side: int, foot_u: float, rng: np.random.Generator, t: float = 0.0
) -> None:
    """A fence in front of a building or hedge over a stretch of the street: bars and two rails
    :data:`THIN_WIDTH_PX` wide, labelled fence only where they are (the gaps show what is behind). It runs
    along the street, so it has no single nearness ``t``."""
    cols, s_all = facade_coords(canvas, street, side, foot_u)
    if cols.size == 0:
        return
    s = s_all[cols]
    near, far = sorted(rng.uniform(0.3, 1.5, size=2))  # farther, its bars and rails would merge into a blob
    ground = canvas.height - street.horizon
    rows = np.arange(canvas.height, dtype=np.float32)[:, None] + 0.5
    foot = street.horizon + s * ground
    fence_top = foot - s * ground * _OBJECT * rng.uniform(0.7, 1.1)
    span = (s >= near) & (s <= far + 0.05) & (rows < foot) & (rows >= fence_top)
    if not span.any():
        return
    bar = int(rng.integers(*THIN_WIDTH_PX))
    period = bar + int(rng.integers(10, 18))
    bars = ((cols + int(rng.integers(0, period))) % period < bar)[None, :]
    rail = int(rng.integers(*THIN_WIDTH_PX))
    rails = (np.abs(rows - (fence_top + rail / 2)) < rail / 2) | (np.abs(rows - 0.5 * (fence_top + foot)) < rail / 2)
    xs = slice(int(cols.min()), int(cols.max()) + 1)
    # painted green, white or brown: a bar alone looks like a pole otherwise (poles are grey)
    colour = np.array(_FENCE_PAINT[int(rng.integers(len(_FENCE_PAINT)))]) + rng.uniform(-12, 12, size=3)
    canvas.paint(span & (bars | rails), "fence", colour, xs=xs, grain=3.0, blotch=3.0, keep_prob=0.6)


def _draw_tree(canvas: Canvas, street: _Street, band: tuple[float, float], rng: np.random.Generator, t: float) -> None:
    x, foot, scale = street.ground_point(_near_edge(rng, band, 0.03, 0.1), t, canvas.height)
    scale *= _OBJECT
    inst = canvas.instance(keep_prob=0.7)
    trunk = canvas.rect(x - 0.05 * scale - 2, x + 0.05 * scale + 2, foot - 1.6 * scale, foot)
    crown = canvas.ellipse(x, foot - 2.1 * scale, scale * rng.uniform(0.5, 0.9), scale * rng.uniform(0.6, 1.0))
    for window, colour, grain in (
        (trunk, rng.uniform(50, 90) * np.array([1, 0.8, 0.6]), 4.0),
        (crown, vegetation_colour(rng), 16.0),
    ):
        if window is not None:
            ys, xs, mask = window
            canvas.paint(mask, "vegetation", colour, ys=ys, xs=xs, grain=grain, blotch=18.0, inst=inst)


def _draw_backdrop(canvas: Canvas, street: _Street, rng: np.random.Generator) -> np.ndarray:
    """Sky, the vertical world at both ends (buildings, or a hedge with buildings behind it), the ground;
    returns the mask of the ground's edge signs."""
    draw_sky(canvas, street, rng)
    for side, (kind, foot_u) in enumerate(street.ends):
        if kind == "hedge":  # buildings further back, seen above the hedge
            shift = canvas.width * rng.uniform(0.3, 0.8) * (-1 if side == 0 else 1)
            draw_buildings(canvas, street, side, foot_u + shift, rng)
            draw_hedge(canvas, street, side, foot_u, rng)
        else:
            draw_buildings(canvas, street, side, foot_u, rng)
    return _draw_ground(canvas, street, rng)


def _place_objects(
    canvas: Canvas, street: _Street, rng: np.random.Generator
) -> list[tuple[float, Callable[[float], None]]]:
    """(nearness, draw) for every object: poles on sidewalks (at least one sign and one light), people on
    sidewalks, cars on roads, trees on terrain, maybe a fence on each side (nearness 0: behind everything
    else)."""
    objects: list[tuple[float, Callable[[float], None]]] = []
    sidewalks, roads, terrains = street.bands_of("sidewalk"), street.bands_of("road"), street.bands_of("terrain")

    def pick(bands: list[tuple[float, float]]) -> tuple[float, float]:
        return bands[int(rng.integers(len(bands)))]

    for i in range(int(rng.integers(*_POLES))):
        kinds = ("sign", "light", "lamp")  # a lamp post is a bare pole here
        kind = kinds[i] if i < 2 else str(rng.choice(kinds, p=[0.4, 0.3, 0.3]))
        band = pick(sidewalks)
        objects.append((float(rng.uniform(0.25, 1.0)), partial(_draw_pole, canvas, street, band, kind, rng)))
    for _ in range(int(rng.integers(1, 5))):
        objects.append((float(rng.uniform(0.2, 0.8)), partial(_draw_person, canvas, street, pick(sidewalks), rng)))
    for _ in range(int(rng.integers(1, 4)) if roads else 0):
        objects.append((float(rng.uniform(0.15, 0.7)), partial(_draw_car, canvas, street, pick(roads), rng)))
    for band in terrains:
        for _ in range(int(rng.integers(0, 3))):
            objects.append((float(rng.uniform(0.2, 0.9)), partial(_draw_tree, canvas, street, band, rng)))
    for side in (0, 1):
        if rng.random() < 0.6:
            objects.append((0.0, partial(_draw_fence, canvas, street, side, street.ends[side][1], rng)))
    return objects


def render_scene(rng: np.random.Generator, width: int, height: int) -> Scene:
    """Draw one version-2 street scene of ``width`` x ``height`` pixels with ``rng``."""
    canvas = Canvas(width, height, rng)
    street = _layout(rng, width, height)
    signs = _draw_backdrop(canvas, street, rng)
    for t, draw in sorted(_place_objects(canvas, street, rng), key=lambda item: item[0]):
        draw(t)  # far to near, so near objects occlude far ones
    exposure = rng.uniform(0.85, 1.15)
    image = canvas.rgb * exposure + rng.normal(0, 2.0, size=canvas.rgb.shape).astype(np.float32)
    ground = np.isin(canvas.label, [LABEL_ID[name] for name in CONTEXT_CLASSES])
    return Scene(
        rgb=np.clip(np.rint(image), 0, 255).astype(np.uint8),
        label=canvas.label,
        inst=canvas.inst,
        keep=np.array(canvas.keep, dtype=bool),
        loose=np.array(canvas.loose, dtype=bool),
        plain=ground & ~signs,
    )
