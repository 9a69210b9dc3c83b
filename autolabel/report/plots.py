"""Pictures for the report, drawn with numpy and Pillow: label maps in class colours, heat maps, charts.

Every function returns an RGB ``PIL.Image``; the caller decides where it goes. Charts are drawn at a fixed
pixel size with a sans font so they look the same on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# anchors of a dark-blue -> teal -> yellow ramp (perceptually ordered, readable for colour-blind viewers)
_RAMP_ANCHORS = np.array(
    [
        [0.00, 20, 12, 60],
        [0.25, 50, 70, 140],
        [0.50, 35, 140, 140],
        [0.75, 110, 200, 90],
        [1.00, 250, 230, 40],
    ]
)
SERIES_COLORS = ((70, 110, 200), (230, 140, 40), (90, 170, 90), (200, 70, 90))
BACKGROUND = (255, 255, 255)
INK = (40, 40, 40)
GRID = (225, 225, 225)


@lru_cache(maxsize=8)
def font(size: int = 13) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in sans font at ``size`` px (the fixed-size bitmap font without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def ramp_table() -> np.ndarray:
    """(256, 3) uint8 colours of the heat-map ramp, index 0 = low."""
    x = np.linspace(0.0, 1.0, 256)
    return (
        np.stack([np.interp(x, _RAMP_ANCHORS[:, 0], _RAMP_ANCHORS[:, c]) for c in (1, 2, 3)], axis=1)
        .round()
        .astype(np.uint8)
    )


def colorize_labels(labels: np.ndarray, palette: np.ndarray) -> Image.Image:
    """(H, W) class ids -> RGB image through a (256, 3) palette (ignore is whatever the palette says)."""
    return Image.fromarray(palette[labels], mode="RGB")


def heatmap(values: np.ndarray, levels: int = 255) -> Image.Image:
    """(H, W) integers in 0..levels -> RGB image on the ramp (``levels`` maps to the top colour)."""
    index = np.clip(values.astype(np.float32) * (255.0 / max(levels, 1)), 0, 255).round().astype(np.uint8)
    return Image.fromarray(ramp_table()[index], mode="RGB")


def overlay(heat: Image.Image, base: Image.Image, alpha: float = 0.7) -> Image.Image:
    """``heat`` laid over a grey version of ``base`` (same size) with opacity ``alpha``: the values stay
    readable and the scene's structures (poles, kerbs) show through."""
    grey = base.convert("L").convert("RGB")
    return Image.blend(grey, heat.convert("RGB"), alpha)


def placeholder(width: int, height: int, text: str) -> Image.Image:
    """A grey tile saying why a picture is missing."""
    tile = Image.new("RGB", (width, height), (238, 238, 238))
    draw = ImageDraw.Draw(tile)
    draw.rectangle([0, 0, width - 1, height - 1], outline=(190, 190, 190))
    draw.text((width // 2, height // 2), text, fill=(120, 120, 120), font=font(12), anchor="mm")
    return tile


def ramp_legend(width: int, low: str, high: str) -> Image.Image:
    """A horizontal strip of the heat-map ramp with its end labels."""
    strip = np.repeat(ramp_table()[None, np.linspace(0, 255, width).astype(int)], 12, axis=0)
    legend = Image.new("RGB", (width, 30), BACKGROUND)
    legend.paste(Image.fromarray(strip, mode="RGB"), (0, 0))
    draw = ImageDraw.Draw(legend)
    draw.text((0, 15), low, fill=INK, font=font(11))
    draw.text((width, 15), high, fill=INK, font=font(11), anchor="ra")
    return legend


# ---------------------------------------------------------------------------------------------------------
# charts


@dataclass(frozen=True)
class Series:
    """One named set of values in a chart (``None`` = no value)."""

    name: str
    values: Sequence[float | None]


def _legend(draw: ImageDraw.ImageDraw, series: Sequence[Series], x: int, y: int) -> None:
    for i, s in enumerate(series):
        color = SERIES_COLORS[i % len(SERIES_COLORS)]
        draw.rectangle([x, y + 3, x + 12, y + 13], fill=color)
        draw.text((x + 18, y), s.name, fill=INK, font=font(12))
        x += 30 + int(draw.textlength(s.name, font=font(12)))


def _nice_step(top: float, ticks: int = 5) -> float:
    """A round tick step (1, 2, 2.5 or 5 x 10^k) giving about ``ticks`` ticks up to ``top``."""
    raw = max(top, 1e-9) / ticks
    magnitude = 10 ** np.floor(np.log10(raw))
    return float(next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw))


def grouped_bar_chart(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    swatches: Sequence[tuple[int, int, int]] | None = None,
    unit: str = "%",
    scale: float = 100.0,
    width: int = 860,
) -> Image.Image:
    """Horizontal bars, one group per category, one bar per series; values are multiplied by ``scale``."""
    bar_h, gap = 9, 8
    group_h = bar_h * len(series) + gap
    left, top, right = 150, 56, 30
    height = top + group_h * len(categories) + 40
    chart = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(chart)
    draw.text((10, 8), title, fill=INK, font=font(15))
    _legend(draw, series, left, 32)
    peak = max((v * scale for s in series for v in s.values if v is not None), default=1.0) or 1.0
    step = _nice_step(peak)
    axis_top = step * np.ceil(peak / step)
    plot_w = width - left - right
    bottom = top + group_h * len(categories)
    for tick in np.arange(0.0, axis_top + step / 2, step):
        x = left + int(plot_w * tick / axis_top)
        draw.line([x, top - 4, x, bottom], fill=GRID)
        draw.text((x, bottom + 6), f"{tick:g}{unit}", fill=INK, font=font(11), anchor="ma")
    for row, name in enumerate(categories):
        y = top + row * group_h
        if swatches is not None:
            draw.rectangle([left - 16, y + 2, left - 6, y + 12], fill=tuple(swatches[row]), outline=INK)
        draw.text((left - 22, y + group_h // 2 - 4), name, fill=INK, font=font(12), anchor="rm")
        for i, s in enumerate(series):
            value = s.values[row]
            if value is None:
                continue
            x1 = left + int(plot_w * value * scale / axis_top)
            draw.rectangle(
                [left, y + i * bar_h, max(left + 1, x1), y + (i + 1) * bar_h - 2],
                fill=SERIES_COLORS[i % len(SERIES_COLORS)],
            )
    draw.line([left, top - 4, left, bottom], fill=INK)
    return chart


def line_chart(
    x: Sequence[float],
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    marker_x: float | None = None,
    y_range: tuple[float, float] = (0.0, 100.0),
    size: tuple[int, int] = (640, 380),
    x_ticks: Sequence[float] | None = None,
) -> Image.Image:
    """Lines with dots over shared ``x`` values; ``marker_x`` draws a dashed vertical line (a threshold);
    ``x_ticks`` labels those x values only (default: every one of ``x``; a 100-point curve needs fewer)."""
    width, height = size
    left, right, top, bottom = 64, 20, 58, height - 48
    chart = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(chart)
    draw.text((10, 8), title, fill=INK, font=font(15))
    _legend(draw, series, left, 32)
    x_lo, x_hi = (min(x), max(x)) if len(x) > 1 and min(x) < max(x) else (min(x) - 0.5, max(x) + 0.5)
    y_lo, y_hi = y_range

    def px(xv: float, yv: float) -> tuple[int, int]:
        return (
            left + round((width - left - right) * (xv - x_lo) / (x_hi - x_lo)),
            bottom - round((bottom - top) * (yv - y_lo) / (y_hi - y_lo)),
        )

    step = _nice_step(y_hi - y_lo)
    for tick in np.arange(y_lo, y_hi + step / 2, step):
        _, y = px(x_lo, tick)
        draw.line([left, y, width - right, y], fill=GRID)
        draw.text((left - 6, y), f"{tick:g}", fill=INK, font=font(11), anchor="rm")
    for xv in x if x_ticks is None else x_ticks:
        px_x, _ = px(xv, y_lo)
        draw.text((px_x, bottom + 6), f"{xv:g}", fill=INK, font=font(11), anchor="ma")
    if marker_x is not None:
        mx, _ = px(marker_x, y_lo)
        for y in range(top, bottom, 8):
            draw.line([mx, y, mx, min(y + 4, bottom)], fill=(150, 150, 150))
    for i, s in enumerate(series):
        color = SERIES_COLORS[i % len(SERIES_COLORS)]
        points = [px(xv, yv) for xv, yv in zip(x, s.values, strict=True) if yv is not None]
        if len(points) > 1:
            draw.line(points, fill=color, width=2)
        for cx, cy in points:
            draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=color)
    draw.line([left, top, left, bottom, width - right, bottom], fill=INK)
    draw.text(((left + width - right) // 2, height - 18), x_label, fill=INK, font=font(12), anchor="ma")
    draw.text((10, top - 16), y_label, fill=INK, font=font(11))
    return chart
