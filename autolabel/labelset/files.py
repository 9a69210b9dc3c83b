"""Turning one image's thresholded maps into files and a manifest row (runs in a pool of writer threads).

zlib and the PNG encoder release the GIL, so a thread pool keeps encoding off the inference thread without
pickling arrays to other processes.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autolabel.data.datasets import AUTO_LABEL_TAG, Sample, auto_label_relpath
from autolabel.data.io import encode_label_png, is_transposed
from autolabel.fs import atomic_write_bytes
from autolabel.labelset import confidence
from autolabel.labelset.checksums import FINGERPRINT_KEYS, file_entries
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
    """Per-class pixel counts, ignore count, and per tile and class present the class's centre of mass."""
    counts = np.bincount(labels.ravel(), minlength=256)
    centroids = []
    height, width = labels.shape
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            centroids.extend(_tile_centroids(labels[y0 : y0 + tile, x0 : x0 + tile], y0, x0, num_classes))
    return [int(n) for n in counts[:num_classes]], int(counts[ignore_index]), centroids


def _tile_centroids(tile: np.ndarray, y0: int, x0: int, num_classes: int) -> list[dict[str, int]]:
    h, w = tile.shape
    flat = tile.ravel()
    counts = np.bincount(flat, minlength=256)[:num_classes]
    ys = np.bincount(flat, weights=np.repeat(np.arange(h, dtype=np.float64), w), minlength=256)[:num_classes]
    xs = np.bincount(flat, weights=np.tile(np.arange(w, dtype=np.float64), h), minlength=256)[:num_classes]
    return [
        {"cls": int(c), "y": y0 + int(round(ys[c] / counts[c])), "x": x0 + int(round(xs[c] / counts[c]))}
        for c in np.flatnonzero(counts)
    ]


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
) -> dict[str, Any]:
    """Write an image's label PNG (and confidence codes, attention maps) atomically; return its manifest row.

    ``labels`` are train ids with ``ignore_index``; statistics are always in train ids, the PNG holds dataset
    label values when ``settings.train_to_label`` is set. ``fingerprint`` describes the input as it was read
    (:func:`~autolabel.labelset.checksums.input_fingerprint`); the row lists every file written besides the
    label with its checksum (``output_files``).
    """
    class_counts, ignore_count, centroids = label_stats(
        labels, settings.num_classes, settings.centroid_tile, settings.ignore_index
    )
    stored = labels if settings.train_to_label is None else settings.train_to_label[labels]
    png = encode_label_png(stored, settings.compress_level)
    rel = label_relpath(sample.id, settings.train_to_label is not None)
    written: dict[str, bytes] = {}
    if settings.confidence:
        files = confidence.array_files(codes)
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
        "exif_transposed": is_transposed(sample.image, settings.exif_transpose),
        **(fingerprint or dict.fromkeys(FINGERPRINT_KEYS)),
        "output_files": file_entries(written),
    }


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
