"""Turning one image's thresholded maps into files and a manifest row (runs in a pool of writer threads).

zlib and the PNG encoder release the GIL, so a thread pool keeps encoding off the inference thread without
pickling arrays to other processes.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autolabel.data.datasets import AUTO_LABEL_TAG, Sample, auto_label_relpath
from autolabel.data.io import encode_label_png, is_transposed
from autolabel.fs import atomic_write_bytes
from autolabel.labelset import confidence
from autolabel.labelset.checksums import FINGERPRINT_KEYS, file_entries
from autolabel.labelset.manifest import SIGNAL_COLUMNS
from autolabel.labelset.meta import ATTENTION_DIR, LABELS_DIR


def label_relpath(image_id: str, label_ids: bool = False) -> str:
    """Label path relative to OUT, mirroring the image id (Cityscapes ``..._leftImg8bit`` becomes
    ``..._gtAuto_labelTrainIds``, or ``..._gtAuto_labelIds`` when the PNG holds dataset label values)."""
    rel = auto_label_relpath(image_id)
    if label_ids and rel.endswith(AUTO_LABEL_TAG):
        rel = rel[: -len("TrainIds")] + "Ids"
    return f"{LABELS_DIR}/{rel}.png"


def attention_relpath(image_id: str, key: str) -> str:
    """``attn_0.5x`` of image ``a/b`` -> ``attention/a/b_attn_0.5x.png``."""
    return f"{ATTENTION_DIR}/{image_id}_{key}.png"


@dataclass(frozen=True)
class WriteSettings:
    """Everything the writer threads need besides the arrays."""

    out: Path
    num_classes: int
    shard: str
    compress_level: int = 9
    confidence: bool = True
    centroid_tile: int = 1024
    train_to_label: np.ndarray | None = None  # (256,) uint8 lut when labels are stored as dataset label ids
    ignore_index: int = 255
    exif_transpose: bool = True  # images were read upright by their EXIF orientation (data.exif_transpose)


def label_stats(
    labels: np.ndarray, num_classes: int, tile: int, ignore_index: int = 255
) -> tuple[list[int], int, list[dict[str, int]]]:
    """Per-class pixel counts, ignore count, and per tile and class present the class's centre of mass
    (tiles row by row, classes ascending; coordinates rounded within the tile, half to even, then offset)."""
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    height, width = labels.shape
    tiles_x, tiles_y = -(-width // tile), -(-height // tile)
    starts = _run_starts(labels, tile)
    if len(starts) > labels.size // 8 and tiles_x * tiles_y <= 64:  # speckled: counting pixels is cheaper
        counts, ysum, xsum = _pixel_sums(labels, tile, tiles_x, tiles_y)
    else:
        counts, ysum, xsum = _run_sums(labels, starts, tile, tiles_x, tiles_y)
    total = counts.sum(axis=0)
    centroids: list[dict[str, int]] = []
    for t in range(tiles_x * tiles_y):
        y0, x0 = (t // tiles_x) * tile, (t % tiles_x) * tile
        n = counts[t, :num_classes]
        centroids.extend(
            {"cls": int(c), "y": y0 + int(round(ysum[t, c] / n[c])), "x": x0 + int(round(xsum[t, c] / n[c]))}
            for c in np.flatnonzero(n)
        )
    return [int(v) for v in total[:num_classes]], int(total[ignore_index]), centroids


def _run_starts(labels: np.ndarray, tile: int) -> np.ndarray:
    """Flat indices where a run of one value starts along a row (row starts and tile edges cut runs too)."""
    starts = np.empty(labels.shape, dtype=bool)
    starts[:, 0] = True
    np.not_equal(labels[:, 1:], labels[:, :-1], out=starts[:, 1:])
    starts[:, tile::tile] = True
    return np.flatnonzero(starts)


def _run_sums(
    labels: np.ndarray, starts: np.ndarray, tile: int, tiles_x: int, tiles_y: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tiles, 256) pixel counts and sums of the in-tile row and column index, from the rows' runs.

    Label maps are mostly long runs (a few % of pixels start one), so this touches each pixel about once
    (make bench, host_work: ~3 ms instead of ~35 ms for per-pixel weights at 2048x1024). The sums are exact
    integers in float64 (< 2**53).
    """
    lengths = np.diff(starts, append=labels.size)
    ys, xs = np.divmod(starts, labels.shape[1])
    keys = ((ys // tile) * tiles_x + xs // tile) * 256 + labels.ravel()[starts]
    size = tiles_x * tiles_y * 256
    counts = np.bincount(keys, weights=lengths, minlength=size)
    ysum = np.bincount(keys, weights=lengths * (ys % tile), minlength=size)
    local_x = xs % tile
    xsum = np.bincount(keys, weights=lengths * local_x + lengths * (lengths - 1) // 2, minlength=size)
    return counts.astype(np.int64).reshape(-1, 256), ysum.reshape(-1, 256), xsum.reshape(-1, 256)


def _pixel_sums(labels: np.ndarray, tile: int, tiles_x: int, tiles_y: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`_run_sums` returns, counting pixels per row and per column of each tile (integer bincounts
    over ``line * 256 + value``): for speckled maps, where runs are about as many as pixels."""
    counts, ysum, xsum = (np.zeros((tiles_x * tiles_y, 256), dtype=np.int64) for _ in range(3))
    for t in range(tiles_x * tiles_y):
        y0, x0 = (t // tiles_x) * tile, (t % tiles_x) * tile
        part = labels[y0 : y0 + tile, x0 : x0 + tile]
        h, w = part.shape
        keys = np.empty((h, w), dtype=np.intp)
        np.add(part, (np.arange(h, dtype=np.intp) * 256)[:, None], out=keys)
        per_row = np.bincount(keys.ravel(), minlength=h * 256).reshape(h, 256)  # (h, value)
        np.add(part, (np.arange(w, dtype=np.intp) * 256)[None, :], out=keys)
        per_col = np.bincount(keys.ravel(), minlength=w * 256).reshape(w, 256)  # (w, value)
        counts[t] = per_row.sum(axis=0)
        ysum[t] = np.arange(h, dtype=np.int64) @ per_row
        xsum[t] = np.arange(w, dtype=np.int64) @ per_col
    return counts, ysum, xsum


def encode_attention(attention: np.ndarray) -> bytes:
    """An attention map already quantised to uint8 (0..255 = 0..1) as an 8-bit PNG."""
    return encode_label_png(attention, compress_level=6)


def finalise_image(
    settings: WriteSettings,
    sample: Sample,
    labels: np.ndarray,
    codes: np.ndarray,
    mean_confidence: float,
    attention: dict[str, np.ndarray],
    seconds: float,
    fingerprint: dict[str, Any] | None = None,
    *,
    classes: np.ndarray | None = None,
    histogram: str | None = None,
    exif_transposed: bool | None = None,
    signals: Mapping[str, float | None] | None = None,
    source: str = "teacher",
) -> dict[str, Any]:
    """Write an image's label PNG (and confidence store, attention maps) atomically; return its manifest row.

    ``labels`` are train ids with ``ignore_index``; statistics are always in train ids, the PNG holds dataset
    label values when ``settings.train_to_label`` is set. With ``settings.confidence`` the store gets
    ``classes`` (the argmax of every pixel) and ``codes``. ``fingerprint`` describes the input as it was read
    (:func:`~autolabel.labelset.checksums.input_fingerprint`); the row lists every file written besides the
    label with its checksum (``output_files``) and carries ``histogram``
    (:func:`~autolabel.labelset.confidence.encode_histogram`). ``exif_transposed``: whether decoding turned the
    image (:func:`~autolabel.data.io.read_image_upright`); None asks the file (for a PNG, a second full decode).
    ``signals`` are the teacher's ranking signals (:data:`~autolabel.labelset.manifest.SIGNAL_COLUMNS`; missing
    ones are null), ``source`` who made the label.
    """
    class_counts, ignore_count, centroids = label_stats(
        labels, settings.num_classes, settings.centroid_tile, settings.ignore_index
    )
    stored = labels if settings.train_to_label is None else settings.train_to_label[labels]
    png = encode_label_png(stored, settings.compress_level)
    rel = label_relpath(sample.id, settings.train_to_label is not None)
    written: dict[str, bytes] = {}
    if settings.confidence:
        if classes is None:
            raise ValueError("finalise_image: the confidence store needs the class plane")  # a caller's bug
        files = confidence.array_files(classes, codes)
        confidence.write_array(settings.out, sample.id, files)
        prefix = confidence.array_relpath(sample.id)
        written.update({f"{prefix}/{name}": data for name, data in files.items()})
    for key, value in attention.items():
        data = encode_attention(value)
        atomic_write_bytes(settings.out / attention_relpath(sample.id, key), data)
        written[attention_relpath(sample.id, key)] = data
    # the label goes last: its presence with the right hash is what marks the image done
    atomic_write_bytes(settings.out / rel, png)
    return {
        "id": sample.id,
        "image": str(sample.image),
        "label": rel,
        "height": int(labels.shape[0]),
        "width": int(labels.shape[1]),
        "status": "ok",
        "error": None,
        "class_counts": class_counts,
        "ignore_count": ignore_count,
        "mean_confidence": float(np.float32(mean_confidence)),
        "centroids": centroids,
        "label_sha256": hashlib.sha256(png).hexdigest(),
        "shard": settings.shard,
        "seconds": float(seconds),
        # the label is in the orientation the image was read in: upright when this is true
        "exif_transposed": (
            is_transposed(sample.image, settings.exif_transpose) if exif_transposed is None else exif_transposed
        ),
        **(fingerprint or dict.fromkeys(FINGERPRINT_KEYS)),
        "output_files": file_entries(written),
        "confidence_histogram": histogram,
        "source": source,
        **signal_values(signals),
    }


def signal_values(signals: Mapping[str, float | None] | None) -> dict[str, float | None]:
    """The manifest's signal columns from ``signals`` (None where a signal was not measured)."""
    values: dict[str, float | None] = {}
    for name in SIGNAL_COLUMNS:
        value = (signals or {}).get(name)
        values[name] = None if value is None else float(value)
    return values


def error_row(sample: Sample, message: str, shard: str, seconds: float = 0.0) -> dict[str, Any]:
    """The manifest row of an image that could not be labelled."""
    return {
        "id": sample.id,
        "image": str(sample.image),
        "label": None,
        "height": None,
        "width": None,
        "status": "error",
        "error": message,
        "class_counts": None,
        "ignore_count": None,
        "mean_confidence": None,
        "centroids": None,
        "label_sha256": None,
        "shard": shard,
        "seconds": float(seconds),
        "exif_transposed": None,
        **dict.fromkeys(FINGERPRINT_KEYS),
        "output_files": None,
        "confidence_histogram": None,
        "source": None,
        **signal_values(None),
    }


def image_output_paths(out: Path, image_id: str, label_ids: bool = False) -> list[Path]:
    """Every path an image's outputs may have in ``out`` (label, confidence array, attention maps), existing
    or not; ``image_id`` must be a valid id (:func:`~autolabel.data.datasets.id_problem`)."""
    out = Path(out)
    paths = [out / label_relpath(image_id, label_ids), confidence.store_path(out) / image_id]
    folder = (out / attention_relpath(image_id, "")).parent
    prefix = Path(image_id).name + "_attn_"
    if folder.is_dir():
        paths += sorted(p for p in folder.iterdir() if p.name.startswith(prefix) and p.suffix == ".png")
    return paths


def remove_image_outputs(out: Path, image_id: str, label_ids: bool = False) -> int:
    """Delete what an earlier run wrote for an image that now has an error row (its files would otherwise be
    outputs without a usable row); returns how many were removed."""
    removed = 0
    for path in image_output_paths(out, image_id, label_ids):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        elif path.exists() or path.is_symlink():
            path.unlink(missing_ok=True)
            removed += 1
    return removed
