"""What the report shows, read from a label set on disk (no pictures here, only numbers and choices).

Everything comes from what ``autolabel generate`` wrote (``labelset.json``, the manifest, the confidence
store, attention maps) plus, when available, the dataset the label set was made from (human coarse labels of
the same images, fine labels of the training split) and evaluation JSON files. Sources that cannot be read
are reported as missing, never guessed.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autolabel import labelset
from autolabel.classes import CITYSCAPES, ClassSet, custom_class_set
from autolabel.data.datasets import Sample
from autolabel.data.io import read_label
from autolabel.data.sources import Source
from autolabel.errors import AutolabelError, DataError, LabelSetError
from autolabel.labelset import confidence

log = logging.getLogger(__name__)


def classes_of(meta: dict[str, Any]) -> ClassSet:
    """The class set a label set was made with (Cityscapes colours when its class list is Cityscapes')."""
    names = tuple(meta["classes"])
    if names == CITYSCAPES.names:
        return CITYSCAPES
    return custom_class_set(names, label_ids=tuple(meta.get("label_ids") or ()), ignore_index=int(meta["ignore_index"]))


def stored_to_train_lut(meta: dict[str, Any], classes: ClassSet) -> np.ndarray | None:
    """The table turning label PNG values into train ids (None when the PNGs already hold train ids)."""
    return classes.label_to_train_lut() if meta.get("label_values") == "label_ids" else None


def read_auto_label(out: Path, row: dict[str, Any], meta: dict[str, Any], classes: ClassSet) -> np.ndarray:
    """An image's auto label as train ids (H, W) uint8."""
    return read_label(Path(out) / row["label"], stored_to_train_lut(meta, classes))


# ---------------------------------------------------------------------------------------------------------
# counts, errors, time


@dataclass(frozen=True)
class Overview:
    """The label set at a glance."""

    images: int
    ok: int
    errors: list[tuple[str, str]]
    labelled_fraction: float  # non-ignore pixels / all pixels of ok images
    mean_confidence: float
    seconds_total: float  # sum of per-image wall time over all rows (the work, not the elapsed time)
    seconds_per_image: float
    shards: list[str]
    label_bytes: int  # bytes of all label PNGs of ok rows


def overview(out: Path, manifest: Any, class_names: Sequence[str]) -> Overview:
    """Counts, errors and time from the full manifest (``read_manifest(out, status=None)``)."""
    summary = labelset.summarise(manifest, class_names)
    seconds = [s or 0.0 for s in manifest.column("seconds").to_pylist()]
    labels = [
        Path(out) / p
        for p, s in zip(manifest.column("label").to_pylist(), manifest.column("status").to_pylist(), strict=True)
        if s == "ok"
    ]
    return Overview(
        images=summary["images"],
        ok=summary["ok"],
        errors=summary["errors"],
        labelled_fraction=1.0 - summary["ignored_fraction"] if summary["pixels"] else 0.0,
        mean_confidence=summary["mean_confidence"],
        seconds_total=float(sum(seconds)),
        seconds_per_image=float(sum(seconds) / max(len(seconds), 1)),
        shards=sorted(set(manifest.column("shard").to_pylist()) - {None}),
        label_bytes=sum(p.stat().st_size for p in labels if p.is_file()),
    )


# ---------------------------------------------------------------------------------------------------------
# per-class pixel shares


def shares_from_counts(counts: np.ndarray) -> np.ndarray:
    """Each class's share of the labelled (non-ignore) pixels."""
    total = counts.sum()
    return counts / total if total else np.zeros_like(counts, dtype=np.float64)


def auto_class_counts(manifest: Any, num_classes: int) -> np.ndarray:
    """Pixels per class summed over the ok rows' ``class_counts``."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for row_counts in manifest.column("class_counts").to_pylist():
        if row_counts:
            counts += np.asarray(row_counts, dtype=np.int64)
    return counts


def label_class_counts(paths: Sequence[Path], lut: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixels per class over label files holding dataset label values (mapped through ``lut``)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for path in paths:
        counts += np.bincount(read_label(path, lut).ravel(), minlength=256)[:num_classes]
    return counts


def spread(items: Sequence[Any], limit: int) -> list[Any]:
    """At most ``limit`` items evenly spaced over ``items`` (all of them when there are fewer)."""
    if len(items) <= limit:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


# ---------------------------------------------------------------------------------------------------------
# coverage vs threshold (from the confidence store)


@dataclass(frozen=True)
class Coverage:
    """Share of pixels that keep a class at each ladder threshold, overall and per (auto-label) class."""

    thresholds: list[float]
    overall: list[float]
    # (C, T): of the pixels the teacher predicts as c (a format-1 store: labelled c at the set's threshold),
    # the share kept at T
    per_class: np.ndarray
    images: int  # how many images the numbers are computed from


def coverage_curve(
    out: Path, rows: Sequence[dict[str, Any]], meta: dict[str, Any], classes: ClassSet, limit: int = 200
) -> Coverage | None:
    """Coverage at every ladder rung from up to ``limit`` images; None without a confidence store.

    A pixel survives threshold ``ladder[j]`` iff its code is > j (see :mod:`autolabel.labelset.confidence`).
    """
    ladder = [float(t) for t in meta["ladder"]]
    picked = [r for r in spread(rows, limit) if confidence.has_codes(Path(out), r["id"])]
    if not meta.get("confidence") or not picked:
        return None
    levels = len(ladder) + 1
    joint = np.zeros((classes.num_classes + 1, levels), dtype=np.int64)  # last row: ignore
    for row in picked:
        maps = confidence.load_maps(out, row["id"])
        codes = maps.codes
        labels = read_auto_label(out, row, meta, classes) if maps.classes is None else maps.classes
        cls = np.where(labels < classes.num_classes, labels, classes.num_classes).astype(np.int64)
        joint += np.bincount((cls * levels + codes).ravel(), minlength=joint.size).reshape(joint.shape)
    # survivors at rung j: codes j+1 .. levels-1, i.e. a reversed cumulative sum
    kept = np.cumsum(joint[:, ::-1], axis=1)[:, ::-1][:, 1:]  # (C+1, T)
    total = joint.sum()
    labelled = joint[: classes.num_classes].sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(labelled > 0, kept[: classes.num_classes] / np.maximum(labelled, 1), np.nan)
    return Coverage(
        thresholds=ladder,
        overall=[float(v) for v in kept.sum(axis=0) / max(total, 1)],
        per_class=per_class,
        images=len(picked),
    )


# ---------------------------------------------------------------------------------------------------------
# which images to show


def worst_rows(rows: Sequence[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The ``n`` ok rows with the lowest mean confidence (ties broken by id)."""
    return sorted(rows, key=lambda r: (r["mean_confidence"], r["id"]))[:n]


def random_rows(
    rows: Sequence[dict[str, Any]], n: int, seed: int = 0, exclude: Sequence[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """``n`` rows drawn uniformly with ``seed`` (not among ``exclude``), in id order."""
    skip = {r["id"] for r in exclude}
    pool = [r for r in rows if r["id"] not in skip]
    picked = random.Random(seed).sample(pool, min(n, len(pool)))
    return sorted(picked, key=lambda r: r["id"])


def thin_rows(
    rows: Sequence[dict[str, Any]],
    class_names: Sequence[str],
    thin_classes: Sequence[str],
    n: int,
    exclude: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The ``n`` ok rows whose auto labels have the most pixels of ``thin_classes`` (most first, ties by id;
    none when the class list has none of them)."""
    index = [class_names.index(c) for c in thin_classes if c in class_names]
    skip = {r["id"] for r in exclude}

    def thin_pixels(row: dict[str, Any]) -> int:
        counts = row.get("class_counts") or []
        return sum(int(counts[i]) for i in index if i < len(counts))

    pool = [r for r in rows if r["id"] not in skip and thin_pixels(r) > 0] if index else []
    return sorted(pool, key=lambda r: (-thin_pixels(r), r["id"]))[:n]


def scale_weights(
    maps: dict[float, np.ndarray], scales: Sequence[float], mscale: str | None
) -> dict[float, np.ndarray]:
    """How much of the fused prediction each scale contributes at every pixel, in 0..1, from the attention
    maps (resized to one size) that ``generate`` dumped.

    Hierarchical attention chains from the largest scale down (docs/method.md): with scales s_0 < ... < s_n
    and attention a_i of s_i, the prediction is a_0 p_0 + (1 - a_0)(a_1 p_1 + (1 - a_1)(... p_n)), so s_i's
    weight is a_i times the product of (1 - a_j) over the smaller scales, and the largest scale takes what
    is left. Explicit attention's maps already are the weights. Returns {} when a map is missing.
    """
    order = sorted(float(s) for s in scales)
    if mscale == "explicit":
        return {s: maps[s] for s in order} if all(s in maps for s in order) else {}
    if mscale not in (None, "hierarchical") or not all(s in maps for s in order[:-1]):
        return {}
    weights, rest = {}, None
    for s in order[:-1]:
        a = maps[s]
        rest = np.ones_like(a) if rest is None else rest
        weights[s] = rest * a
        rest = rest * (1.0 - a)
    weights[order[-1]] = rest if rest is not None else np.ones((1, 1))
    return weights


def attention_maps(out: Path, image_id: str) -> dict[float, Path]:
    """Per-scale attention PNGs ``generate --attention`` dumped for an image, by scale."""
    folder = (Path(out) / labelset.ATTENTION_DIR / image_id).parent
    stem = Path(image_id).name
    found = {}
    for path in folder.glob(f"{glob.escape(stem)}_attn_*x.png"):
        try:
            found[float(path.name[len(stem) + len("_attn_") : -len("x.png")])] = path
        except ValueError:
            continue
    return dict(sorted(found.items()))


# ---------------------------------------------------------------------------------------------------------
# the dataset behind the label set


@dataclass
class SourceData:
    """Samples of the labelled images (for coarse labels) and of the fine reference split, when found."""

    samples: dict[str, Sample] = field(default_factory=dict)
    fine: list[Sample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def source_data(meta: dict[str, Any], fine_source: Source | None) -> SourceData:
    """Re-list the label set's inputs and the fine split; what cannot be listed becomes a note."""
    data = SourceData()
    source = None
    if meta.get("source"):
        try:
            source = Source.from_dict(meta["source"])
            data.samples = {s.id: s for s in source.discover()}
        except AutolabelError as exc:
            data.notes.append(f"inputs not found, so no human coarse labels: {exc}")
    if fine_source is None and source is not None and source.layout == "cityscapes":
        fine_source = dataclasses.replace(source, split="train")
    if fine_source is not None:
        try:
            data.fine = [s for s in fine_source.discover() if s.label is not None]
        except AutolabelError as exc:
            data.notes.append(f"fine labels not found: {exc}")
    return data


# ---------------------------------------------------------------------------------------------------------
# evaluations


@dataclass(frozen=True)
class Evaluation:
    """One model's (or label set's) scores: mIoU and IoU per class, in 0..1 (None = not present)."""

    name: str
    miou: float | None
    iou: dict[str, float | None]
    source: Path


def read_evaluation(path: Path, name: str | None = None) -> Evaluation:
    """An evaluation JSON: ``SegMetrics.to_dict()`` at the top level or under ``"metrics"``."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: evaluation file not found") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable evaluation JSON ({exc})") from None
    metrics = raw.get("metrics", raw) if isinstance(raw, dict) else None
    if not isinstance(metrics, dict) or "miou" not in metrics or not isinstance(metrics.get("iou"), dict):
        raise DataError(
            f"{path}: expected {{'miou': ..., 'iou': {{class: value}}}} (the JSON `autolabel evaluate` writes)"
        )
    return Evaluation(name=name or Path(path).stem, miou=metrics["miou"], iou=dict(metrics["iou"]), source=Path(path))


@dataclass(frozen=True)
class Audit:
    """A label set compared with human labels (``autolabel evaluate-labels --out``), in 0..1."""

    name: str
    labelset_id: str | None
    reference: str
    images: int
    coverage: float | None
    accuracy: float | None
    miou: float | None
    sweep: list[dict[str, Any]]  # per ladder threshold: threshold, coverage, accuracy (empty without codes)
    # per class at the set's own thresholds: precision, recall, iou, coverage, reference_pixels (older files: none)
    classes: dict[str, Any] = field(default_factory=dict)


def read_audit(path: Path, name: str) -> Audit:
    """An ``evaluate-labels`` JSON; a :class:`DataError` naming the file when it is not one."""
    try:
        raw = json.loads(Path(path).read_text())
        return Audit(
            name=name,
            labelset_id=raw.get("labelset_id"),
            reference=str(raw["reference"]),
            images=int(raw["images"]),
            coverage=raw["coverage"],
            accuracy=raw["accuracy"],
            miou=raw["miou"],
            sweep=list(raw.get("sweep") or []),
            classes=dict(raw.get("classes") or {}),
        )
    except FileNotFoundError:
        raise DataError(f"{path}: audit file not found") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: not an `autolabel evaluate-labels` JSON ({exc})") from None


def load_meta_and_manifest(out: Path) -> tuple[dict[str, Any], Any]:
    """``labelset.json`` and the full manifest (every status); a LabelSetError when there are no rows."""
    meta = labelset.read_labelset(out)
    manifest = labelset.read_manifest(out, status=None)
    if manifest.num_rows == 0:
        raise LabelSetError(f"{out}: the manifest has no rows yet; run `autolabel generate` first")
    return meta, manifest
