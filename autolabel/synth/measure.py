"""The synthetic city's properties, measured on its scenes without a network (numpy only).

- :func:`local_widths`: how wide a structure is at each of its pixels (the shorter of the horizontal and the
  vertical run through it), to set thin structures against the network's logit stride at each scale;
- :func:`context_distance`: for every pixel of bare ground (``Scene.plain``: road, sidewalk or terrain with
  nothing on it that tells which), the Chebyshev distance to the nearest pixel that does tell (an edge sign, a
  building, a hedge, a pole, a car...), to set against the network's receptive field at each scale;
- :func:`class_shares`: each class's share of the pixels.

:func:`measure_city` renders scenes the way ``autolabel synth`` does and summarises all three; the numbers
quoted in docs/synthetic_city.md come from it (``python -m autolabel.synth.measure``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence

import numpy as np

from autolabel.synth import v2
from autolabel.synth.draw import LABEL_ID, SYNTH_CLASSES, Scene
from autolabel.synth.render import SYNTH_VERSION, render_scene
from autolabel.synth.write import image_rng

# logit stride of a stride-4 network run at each scale, in pixels of the 1.0x image
LOGIT_STRIDE_AT = {0.5: 2 * v2.LOGIT_STRIDE_PX, 1.0: v2.LOGIT_STRIDE_PX, 2.0: v2.LOGIT_STRIDE_PX // 2}
WIDTH_CLASSES = ("pole", "fence")  # drawn v2.THIN_WIDTH_PX wide; the other thin classes are small objects


def _runs(mask: np.ndarray) -> np.ndarray:
    """Length of the horizontal run of true pixels through each pixel (0 where false)."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)  # +1 where a run starts, -1 just after it ends
    out = np.zeros((h, w), dtype=np.int32)
    rows, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)  # same row-major order as the starts
    lengths = ends - starts
    # paint each run's length over it: +len at its start and -len after its end, then a running sum
    paint = np.zeros((h, w + 1), dtype=np.int32)
    np.add.at(paint, (rows, starts), lengths)
    np.add.at(paint, (rows, ends), -lengths)
    out[:] = np.cumsum(paint, axis=1)[:, :w]
    return out


def local_widths(mask: np.ndarray) -> np.ndarray:
    """(H, W) int: at each true pixel, the shorter of the horizontal and vertical runs of ``mask`` through it
    (a vertical pole's width, a horizontal rail's height); 0 elsewhere."""
    return np.minimum(_runs(mask), _runs(mask.T).T)


def _box_count(integral: np.ndarray, ys: np.ndarray, xs: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Number of set pixels in the (2r+1)-square around each (y, x), from a summed-area table."""
    h, w = integral.shape[0] - 1, integral.shape[1] - 1
    y0, y1 = np.clip(ys - radius, 0, h), np.clip(ys + radius + 1, 0, h)
    x0, x1 = np.clip(xs - radius, 0, w), np.clip(xs + radius + 1, 0, w)
    return integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]


def context_distance(plain: np.ndarray) -> np.ndarray:
    """(H, W) int: for each ``plain`` pixel the Chebyshev distance to the nearest pixel that is not plain
    (0 at non-plain pixels). The image border is not a cue: a pixel sees no further than the image, and the
    distance is then capped at the image's larger side. Binary search on a summed-area table per pixel."""
    h, w = plain.shape
    cue = ~plain
    out = np.zeros((h, w), dtype=np.int32)
    ys, xs = np.nonzero(plain)
    if not cue.any():
        out[ys, xs] = max(h, w)
        return out
    integral = np.zeros((h + 1, w + 1), dtype=np.int64)
    integral[1:, 1:] = cue.cumsum(0).cumsum(1)
    lo = np.ones(ys.size, dtype=np.int64)  # the answer is >= 1 at a plain pixel
    hi = np.full(ys.size, max(h, w), dtype=np.int64)
    while True:
        open_ = lo < hi
        if not open_.any():
            break
        mid = (lo + hi) // 2
        found = _box_count(integral, ys, xs, mid) > 0
        hi = np.where(open_ & found, mid, hi)
        lo = np.where(open_ & ~found, mid + 1, lo)
    out[ys, xs] = lo
    return out


def class_shares(labels: Iterable[np.ndarray]) -> dict[str, float]:
    """Each synthetic class's share of all pixels of ``labels`` (labelIds)."""
    counts = np.zeros(256, dtype=np.int64)
    for label in labels:
        counts += np.bincount(label.ravel(), minlength=256)
    total = max(int(counts.sum()), 1)
    return {name: float(counts[LABEL_ID[name]] / total) for name in SYNTH_CLASSES}


def _percentiles(values: np.ndarray, qs: Sequence[int] = (5, 25, 50, 75, 95)) -> dict[str, float | None]:
    if values.size == 0:
        return {f"p{q}": None for q in qs}
    return {f"p{q}": float(np.percentile(values, q)) for q in qs}


def width_summary(scenes: Sequence[Scene]) -> dict[str, dict]:
    """Per thin structure class: width percentiles, and the share of its pixels that are under one logit
    pixel, one to two, and two or more, at each scale's stride."""
    out = {}
    for name in WIDTH_CLASSES:
        widths = np.concatenate(
            [local_widths(s.label == LABEL_ID[name])[s.label == LABEL_ID[name]] for s in scenes] or [np.zeros(0)]
        )
        logit_px = {
            f"{scale:g}x": {
                "stride_px": stride,
                "under_1": float(np.mean(widths < stride)) if widths.size else None,
                "1_to_2": float(np.mean((widths >= stride) & (widths < 2 * stride))) if widths.size else None,
                "2_or_more": float(np.mean(widths >= 2 * stride)) if widths.size else None,
            }
            for scale, stride in LOGIT_STRIDE_AT.items()
        }
        out[name] = {"pixels": int(widths.size), "width_px": _percentiles(widths), "logit_px": logit_px}
    return out


def distance_histogram(scenes: Sequence[Scene]) -> dict[str, np.ndarray]:
    """Per context class: how many bare-ground pixels lie at each Chebyshev distance from the nearest cue."""
    hists: dict[str, np.ndarray] = {}
    for scene in scenes:
        if scene.plain is None:
            continue
        distance = context_distance(scene.plain)
        for name in v2.CONTEXT_CLASSES:
            values = distance[scene.plain & (scene.label == LABEL_ID[name])]
            hists[name] = _add(hists.get(name), np.bincount(values, minlength=1))
    return hists


def _add(a: np.ndarray | None, b: np.ndarray) -> np.ndarray:
    """Sum of two histograms of different lengths."""
    if a is None:
        return b.astype(np.int64)
    size = max(a.size, b.size)
    return np.pad(a, (0, size - a.size)) + np.pad(b, (0, size - b.size))


def total_histogram(hists: dict[str, np.ndarray]) -> np.ndarray:
    """The histograms of every context class added up."""
    total = np.zeros(1, dtype=np.int64)
    for hist in hists.values():
        total = _add(total, hist)
    return total


def share_within(hist: np.ndarray, lo: float, hi: float) -> float | None:
    """Share of a distance histogram's pixels with ``lo < distance <= hi``."""
    total = hist.sum()
    if not total:
        return None
    d = np.arange(hist.size)
    return float(hist[(d > lo) & (d <= hi)].sum() / total)


def distance_summary(hists: dict[str, np.ndarray]) -> dict[str, dict]:
    """Percentiles of the distance to the nearest cue per context class (and all three together)."""
    out = {}
    for name, hist in {**hists, "all": total_histogram(hists)}.items():
        values = np.repeat(np.arange(hist.size), hist.astype(np.int64))
        out[name] = {"pixels": int(hist.sum()), "distance_px": _percentiles(values)}
    return out


def render_sample(
    count: int, size: tuple[int, int], *, version: int = SYNTH_VERSION, seed: int = 0, split: str = "train"
) -> list[Scene]:
    """The first ``count`` scenes of ``split`` exactly as ``autolabel synth`` draws them."""
    return [render_scene(image_rng(seed, split, i), size[0], size[1], version) for i in range(count)]


def measure_city(
    count: int = 40, size: tuple[int, int] = v2.DESIGN_SIZE, *, version: int = SYNTH_VERSION, seed: int = 0
) -> dict:
    """Widths vs logit strides, distances to the nearest cue and class shares over ``count`` scenes."""
    scenes = render_sample(count, size, version=version, seed=seed)
    hists = distance_histogram(scenes)
    return {
        "version": version,
        "size": list(size),
        "seed": seed,
        "scenes": count,
        "thin_widths": width_summary(scenes),
        "context_distance": distance_summary(hists),
        "context_histogram": {name: hist.tolist() for name, hist in hists.items()},
        "class_shares": class_shares(s.label for s in scenes),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m autolabel.synth.measure [--scenes N] [--size WxH] [--version V]``: print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--size", default="x".join(map(str, v2.DESIGN_SIZE)))
    parser.add_argument("--version", type=int, default=SYNTH_VERSION)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    result = measure_city(args.scenes, (width, height), version=args.version, seed=args.seed)
    result.pop("context_histogram")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
