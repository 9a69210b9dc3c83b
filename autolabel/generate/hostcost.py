"""What the host spends per image while a device labels: measured, part by part, in single-core CPU seconds.

On a GPU node the teacher's forward runs on the device while host threads decode the next images and encode the
previous ones; the host work per image therefore decides whether the device waits. :func:`measure_host_cost`
times each part once (or ``repeats`` times, keeping the least) with :func:`time.thread_time`, the CPU time of
the one thread doing the work: it equals the process CPU time while nothing else runs, and other jobs on the
machine, or torch's idle threads spinning after a forward, do not inflate it.

The parts are those of :func:`autolabel.generate.runner.process_chunks` (decode threads, batching) and
:func:`autolabel.labelset.files.finalise_image` (encoder threads), with the same functions and settings. What
is not included: the file writes themselves (a few syscalls and fsyncs, mostly waiting; ``make bench``,
host_work, measures them), and the device-to-host copies of the uint8 maps (DMA on a GPU).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from autolabel.classes import CITYSCAPES
from autolabel.config import DataConfig, GenerateConfig
from autolabel.data.datasets import Sample
from autolabel.data.io import encode_label_png, read_image_upright
from autolabel.labelset import confidence, manifest
from autolabel.labelset.checksums import file_entries, input_fingerprint
from autolabel.labelset.files import encode_attention, error_row, label_stats

PARTS: dict[str, str] = {
    "input_fingerprint": "stat + sha256 of the input file (what resume and verify compare)",
    "image_decode": "the image file to an (H, W, 3) uint8 RGB array",
    "input_preparation": "the image stacked into its batch and copied once more (the pinned-memory upload)",
    "statistics": "class counts, ignore count, per-tile class centroids",
    "label_encode": "the label PNG (up filter, generate.png_compress_level)",
    "confidence_encode": "the confidence array's files (up-filtered class and code planes, zstd) and the row's "
    "(class, code) histogram",
    "attention_encode": "the attention maps' PNGs (with generate.attention)",
    "hashes": "sha256 of every output file (label_sha256, output_files)",
    "manifest_row": "the row, its journal line (JSON), its share of the chunk's parquet part",
}

T = TypeVar("T")


@dataclass(frozen=True)
class HostCost:
    """Single-core CPU seconds per image, by part (:data:`PARTS`), for images of ``width`` x ``height``."""

    seconds: dict[str, float]
    width: int
    height: int
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> float:
        """Core-seconds of host work per image."""
        return sum(self.seconds.values())

    @property
    def images_per_core_second(self) -> float:
        """Images one host core can feed per second (``inf`` when nothing was measured)."""
        return 1.0 / self.total if self.total > 0 else float("inf")


def teacher_like_maps(width: int, height: int, seed: int = 0, ladder_len: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(labels with ignore, confidence codes) imitating a thresholded teacher on a Cityscapes-like scene.

    A synthetic city scene's class layout; pixels near class boundaries are where real teachers are unsure, so
    confidence grows with the distance to the nearest boundary: code ``k`` within ``1 + 2k`` px of one, and
    the pixels with code 0 are ignored (255), as thresholding does.
    """
    train, codes = _teacher_like_codes(width, height, seed, ladder_len)
    labels = np.where(codes > 0, train, 255).astype(np.uint8)
    return labels, codes


def teacher_like_store(
    width: int, height: int, ladder: Sequence[float], seed: int = 0, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, class plane, codes on ``ladder``): :func:`teacher_like_maps`' teacher as a format-2 store holds it.

    Each code ``k`` of :func:`teacher_like_maps`' ladder 0.5, 0.55, ..., 0.95 stands for the middle of its
    interval (0.45 below the ladder, 0.975 above it), quantised on ``ladder``; the class plane is the scene's
    classes, void taking ``building`` (a teacher labels every pixel). ``labels`` keep the pixels above
    ``threshold`` (a rung of ``ladder``): at 0.5 exactly :func:`teacher_like_maps`' labels.
    """
    train, coarse = _teacher_like_codes(width, height, seed, 10)
    middles = np.array([0.45, *(0.525 + 0.05 * k for k in range(9)), 0.975], dtype=np.float32)
    codes = confidence.quantise(torch.from_numpy(middles[coarse]), ladder).numpy()
    classes = np.where(train == 255, CITYSCAPES.index("building"), train).astype(np.uint8)
    keep = codes > confidence.rung_index(threshold, ladder)
    labels = np.where(keep, classes, 255).astype(np.uint8)
    return labels, classes, codes


def store_grid(generate: GenerateConfig) -> tuple[float, ...]:
    """The confidence store's rungs for these settings (by hand: the global and per-class thresholds)."""
    thresholds = (generate.threshold, *generate.class_thresholds.values())
    return confidence.make_grid(generate.ladder_step, generate.ladder_bottom, generate.ladder_top, thresholds)


def _teacher_like_codes(width: int, height: int, seed: int, ladder_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(the scene's train ids, codes: ``k`` within ``1 + 2k`` px of a class boundary, 0 on void)."""
    from autolabel.synth import render_scene

    # version 1: the scenes the host-cost figures (docs/bench.md) were measured with; version 2's fixed-width
    # thin structures put a boundary near almost every pixel of a small map
    scene = render_scene(np.random.default_rng(seed), width, height, version=1)
    train = CITYSCAPES.label_to_train_lut()[scene.label]
    boundary = np.zeros(train.shape, bool)
    boundary[:, 1:] |= train[:, 1:] != train[:, :-1]
    boundary[1:, :] |= train[1:, :] != train[:-1, :]
    codes = np.full(train.shape, ladder_len, np.uint8)
    for code in range(ladder_len - 1, -1, -1):
        codes[_dilate(boundary, 1 + 2 * code)] = code
    codes[train == 255] = 0
    return train, codes


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Box dilation by an integral image (no scipy here)."""
    pad = np.pad(mask.astype(np.int32), radius + 1)
    integral = pad.cumsum(0).cumsum(1)
    k = 2 * radius + 1
    h, w = mask.shape
    total = integral[k : k + h, k : k + w] - integral[:h, k : k + w] - integral[k : k + h, :w] + integral[:h, :w]
    return total > 0


def attention_like_maps(codes: np.ndarray, scales: tuple[float, ...]) -> dict[str, np.ndarray]:
    """uint8 attention maps as a hierarchical teacher returns them (every scale but the largest, each at its
    own resolution): smooth, high where the codes say the teacher is unsure (near boundaries)."""
    height, width = codes.shape
    unsure = 1.0 - codes.astype(np.float32) / max(1, int(codes.max()))
    maps = {}
    for scale in scales[:-1]:
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        # the attention head runs at 1/8 of the scaled input and is upsampled: blocky-smooth values
        coarse = _block_mean(unsure, max(1, round(8 / scale)))
        ys = np.minimum((np.arange(h) * coarse.shape[0]) // h, coarse.shape[0] - 1)
        xs = np.minimum((np.arange(w) * coarse.shape[1]) // w, coarse.shape[1] - 1)
        maps[f"attn_{scale}x"] = np.round(coarse[ys][:, xs] * 255).astype(np.uint8)
    return maps


def _block_mean(values: np.ndarray, block: int) -> np.ndarray:
    """Means of ``block`` x ``block`` squares (the edge rows/columns that do not fill one are dropped)."""
    block = max(1, min(block, *values.shape))
    h, w = (values.shape[0] // block) * block, (values.shape[1] // block) * block
    return values[:h, :w].reshape(h // block, block, w // block, block).mean(axis=(1, 3))  # (h/b, w/b)


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.thread_time()
    value = fn()
    return value, time.thread_time() - start


def measure_host_cost(
    image: str | Path,
    generate: GenerateConfig = GenerateConfig(),
    data: DataConfig = DataConfig(),
    *,
    num_classes: int = 19,
    ignore_index: int = 255,
    labels: np.ndarray | None = None,
    codes: np.ndarray | None = None,
    attention: Mapping[str, np.ndarray] | None = None,
    classes: np.ndarray | None = None,
    repeats: int = 1,
) -> HostCost:
    """Measure the host work ``generate`` does for the image file ``image`` with these settings (nothing is
    written to disk); the least of ``repeats`` runs per part.

    ``labels``/``codes``/``classes`` (and ``attention`` when ``generate.attention``) are the teacher's maps for
    the image, e.g. from :meth:`~autolabel.generate.teacher.Teacher.predict`; missing ones are made by
    :func:`teacher_like_store` / :func:`attention_like_maps` (about a second for a 2048x1024 image). Without
    ``classes`` the store's class plane is ``labels`` (the same layout, with the ignored pixels' holes).
    Raises :class:`~autolabel.errors.DataError` when the image cannot be read.
    """
    path = Path(image)
    best: dict[str, float] = {}
    shape: tuple[int, ...] = ()
    for _ in range(max(1, repeats)):
        seconds, (labels, codes, classes, attention) = _measure_once(
            path, generate, data, num_classes, ignore_index, labels, codes, classes, attention
        )
        best = {k: min(v, best.get(k, v)) for k, v in seconds.items()}
        shape = labels.shape
    height, width = shape
    return HostCost(seconds=best, width=width, height=height, details={"repeats": max(1, repeats)})


def _measure_once(
    path: Path,
    generate: GenerateConfig,
    data: DataConfig,
    num_classes: int,
    ignore_index: int,
    labels: np.ndarray | None,
    codes: np.ndarray | None,
    classes: np.ndarray | None,
    attention: Mapping[str, np.ndarray] | None,
) -> tuple[dict[str, float], tuple[np.ndarray, np.ndarray, np.ndarray, Mapping[str, np.ndarray]]]:
    """One pass over every part in the order generate runs them; returns the seconds and the maps used."""
    s: dict[str, float] = {}
    fingerprint, s["input_fingerprint"] = _timed(lambda: input_fingerprint(path))
    (pixels, turned), s["image_decode"] = _timed(
        lambda: read_image_upright(path, max_pixels=data.max_image_pixels, exif_transpose=data.exif_transpose)
    )
    _, s["input_preparation"] = _timed(lambda: np.stack([pixels]).copy())  # (1, H, W, 3): batch, then upload copy
    ladder = store_grid(generate)
    if labels is None or codes is None:
        labels, classes, codes = teacher_like_store(
            pixels.shape[1], pixels.shape[0], ladder, threshold=generate.threshold
        )
    planes = labels if classes is None else classes
    # the histogram is counted on the device (generate.teacher.threshold_batch); the host only encodes it
    levels = max(len(ladder) + 1, int(codes.max()) + 1)
    histogram = np.bincount((planes.astype(np.int64) * levels + codes).ravel(), minlength=256 * levels)
    histogram = histogram.reshape(256, levels)[:num_classes]
    if attention is None:
        attention = attention_like_maps(codes, generate.scales) if generate.attention else {}
    stats, s["statistics"] = _timed(lambda: label_stats(labels, num_classes, generate.centroid_tile, ignore_index))
    png, s["label_encode"] = _timed(lambda: encode_label_png(labels, generate.png_compress_level))
    written: dict[str, bytes] = {}
    s["confidence_encode"] = s["attention_encode"] = 0.0  # parts the settings turn off cost nothing
    encoded_histogram = None
    if generate.confidence:
        (files, encoded_histogram), s["confidence_encode"] = _timed(
            lambda: (confidence.array_files(planes, codes), confidence.encode_histogram(histogram))
        )
        written.update({f"confidence/{name}": data for name, data in files.items()})
    if generate.attention and attention:
        maps, s["attention_encode"] = _timed(lambda: {k: encode_attention(v) for k, v in attention.items()})
        written.update({f"attention/{k}.png": data for k, data in maps.items()})
    (label_sha, entries), s["hashes"] = _timed(lambda: (hashlib.sha256(png).hexdigest(), file_entries(written)))
    row, row_seconds = _timed(lambda: _row(path, stats, label_sha, entries, fingerprint, turned, encoded_histogram))
    chunk = [{**row, "id": f"x/image{i}"} for i in range(generate.chunk_size)]
    _, part_seconds = _timed(lambda: manifest.table_to_parquet(manifest.rows_to_table(chunk)))
    s["manifest_row"] = row_seconds + part_seconds / generate.chunk_size  # a part is written once per chunk
    return s, (labels, codes, planes, attention)


def _row(
    path: Path,
    stats: tuple[list[int], int, list[dict[str, int]]],
    label_sha: str,
    entries: list[dict[str, str]],
    fingerprint: dict[str, Any],
    turned: bool,
    histogram: str | None,
) -> dict[str, Any]:
    """The row as finalise_image makes it, serialised once as the journal does."""
    counts, ignored, centroids = stats
    row = error_row(Sample(id="x/image", image=path), "", "0/1")
    row.update(
        status="ok",
        error=None,
        class_counts=counts,
        ignore_count=ignored,
        mean_confidence=0.9,
        centroids=centroids,
        label_sha256=label_sha,
        exif_transposed=turned,
        output_files=entries,
        confidence_histogram=histogram,
        **fingerprint,
    )
    json.dumps(row, separators=(",", ":"), ensure_ascii=False)
    return row


def host_seconds_per_image(image: str | Path, generate: GenerateConfig, data: DataConfig, **kwargs: Any) -> float:
    """Core-seconds of host work per image for ``image`` at these settings (:func:`measure_host_cost`)."""
    return measure_host_cost(image, generate, data, **kwargs).total
