"""``labelset.json``: a label set's provenance and its id, and the layout of a label-set folder.

The label-set id hashes everything that determines the labels (teacher weights, model config, scales, flip,
thresholds and where they came from, temperature and calibration, ladder, classes, normalisation, tiling,
code version); runs into an existing folder must agree on it. Provenance that does not change the labels (where
the inputs and the calibration file were, which label set a re-thresholded one came from) is kept outside the
hash.

Thresholds: ``threshold`` is the global one (the fallback of classes without their own), ``class_thresholds``
maps every class name to the threshold its pixels must exceed (label sets of format 1 have only
``threshold``), ``threshold_source`` says where they came from: ``{"kind": "threshold"}`` (one global value),
``"class_thresholds"`` (by hand), ``"calibration"`` (a calibration file's per-class thresholds, its sha256),
``"portion"`` (CBST: the most confident share of each class). ``temperature`` is what the logits were divided
by before the softmax (None: not calibrated), ``calibration`` the calibration's figures (ECE before and
after, target precision, classes that fell back to the global threshold, reliability-diagram data).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autolabel import __version__
from autolabel.data.datasets import LABELSET_FILE  # defined there: folder scans skip label sets
from autolabel.errors import LabelSetError
from autolabel.fs import write_json

log = logging.getLogger(__name__)

# the layout of OUT
MANIFEST_DIR = "manifest"
MERGED_MANIFEST = "manifest.parquet"
LABELS_DIR = "labels"
ATTENTION_DIR = "attention"
STORE_NAME = "confidence.zarr"
STORE_FORMAT = 2  # of confidence.zarr (autolabel.labelset.confidence); labelset.json "store_format", absent: 1
REPORT_DIR = "report"  # `autolabel report`'s default destination: not part of the label set, never checked
FORMAT_VERSION = 1
# Keys of labelset.json that are not part of the id: where the inputs and the set came from (the parent
# label set, the self-training round, how a derived set was derived, the calibration file's path), how the
# tiling was chosen (the tiling itself is hashed: a tile size chosen for a memory budget names the same label
# set as that tile size given by hand), the thresholds that remain available (a function of the hashed keys),
# and the id itself. The teacher's sha256 already pins the labels.
_UNHASHED = (
    "labelset_id",
    "source",
    "rethresholded_from",
    "parent_labelset_id",
    "round",
    "derived",
    "calibration_file",
    "ladder_available",
    "tiling_plan",
)
GLOBAL_SOURCE = {"kind": "threshold"}


def labelset_id(meta: dict[str, Any]) -> str:
    """Hash of every field that determines the labels (canonical JSON, sha256, first 16 hex digits)."""
    hashed = {k: v for k, v in meta.items() if k not in _UNHASHED}
    text = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def make_labelset_meta(
    *,
    teacher_sha256: str,
    model_config: dict[str, Any],
    scales: Sequence[float],
    flip: bool,
    threshold: float,
    ladder: Sequence[float],
    class_names: Sequence[str],
    label_ids: Sequence[int] | None,
    ignore_index: int,
    mean: Sequence[float],
    std: Sequence[float],
    tile_size: int,
    tile_overlap: float,
    confidence: bool,
    png_compress_level: int = 9,
    centroid_tile: int = 1024,
    source: dict[str, Any] | None = None,
    class_thresholds: Sequence[float] | None = None,
    threshold_source: dict[str, Any] | None = None,
    temperature: float | Sequence[float] | None = None,
    calibration: dict[str, Any] | None = None,
    calibration_file: str | None = None,
    store_format: int = STORE_FORMAT,
    tiling_plan: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of ``labelset.json`` including its id. ``label_ids`` is set when labels hold dataset label
    values (``--label-ids``) instead of train ids; ``class_thresholds`` (one per class, default: ``threshold``
    for every class) and the other threshold keys are described in the module docstring; ``tiling_plan``
    records a tiling the planner chose for a memory budget (not hashed)."""
    per_class = [float(threshold)] * len(class_names) if class_thresholds is None else list(class_thresholds)
    if len(per_class) != len(class_names):
        raise LabelSetError(f"{len(per_class)} class thresholds for {len(class_names)} classes")
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "code_version": __version__,
        "teacher_sha256": teacher_sha256,
        "model": model_config,
        "scales": [float(s) for s in scales],
        "flip": bool(flip),
        "threshold": float(threshold),
        "class_thresholds": {name: float(t) for name, t in zip(class_names, per_class, strict=True)},
        "threshold_source": dict(threshold_source or GLOBAL_SOURCE),
        "temperature": _plain_temperature(temperature),
        "calibration": calibration,
        "store_format": int(store_format),
        "ladder": [float(t) for t in ladder],
        "confidence": bool(confidence),
        "classes": list(class_names),
        "num_classes": len(class_names),
        "ignore_index": int(ignore_index),
        "label_values": "label_ids" if label_ids is not None else "train_ids",
        "label_ids": list(label_ids) if label_ids is not None else None,
        "normalisation": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
        "tiling": {"tile_size": int(tile_size), "overlap": float(tile_overlap)},
        # these change the files' bytes (sha256) and the manifest, so they belong to the label set too
        "png_compress_level": int(png_compress_level),
        "centroid_tile": int(centroid_tile),
        "source": source or {},
    }
    if calibration_file is not None:
        meta["calibration_file"] = calibration_file
    if tiling_plan is not None:
        meta["tiling_plan"] = tiling_plan
    meta["ladder_available"] = available_thresholds(meta)
    meta["labelset_id"] = labelset_id(meta)
    return meta


def _plain_temperature(value: float | Sequence[float] | None) -> float | list[float] | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    return [float(v) for v in value]


def store_format(meta: dict[str, Any]) -> int:
    """1 for label sets written before the store kept every pixel's class, else the recorded format."""
    return int(meta.get("store_format") or 1)


def class_thresholds(meta: dict[str, Any]) -> list[float]:
    """The threshold of each class (in class order): the recorded ones, else the global threshold."""
    recorded = meta.get("class_thresholds")
    if recorded:
        return [float(recorded[name]) for name in meta["classes"]]
    return [float(meta["threshold"])] * len(meta["classes"])


def available_thresholds(meta: dict[str, Any]) -> list[float]:
    """The ladder values at which every class of the set can still be re-thresholded exactly: the whole ladder
    for a format-2 store, the rungs at or above every class's threshold for format 1 (below them the class
    was not kept), none without a store."""
    if not meta.get("confidence"):
        return []
    ladder = [float(t) for t in meta["ladder"]]
    if store_format(meta) >= 2:
        return ladder
    floor = max(class_thresholds(meta))
    return [t for t in ladder if t >= floor - 1e-9]


def read_labelset(out: str | Path) -> dict[str, Any]:
    """The parsed ``OUT/labelset.json``; a :class:`LabelSetError` when missing or malformed."""
    path = Path(out) / LABELSET_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise LabelSetError(f"{path}: not found; is {out} a label set written by `autolabel generate`?") from None
    except (OSError, ValueError) as exc:
        raise LabelSetError(f"{path}: unreadable ({exc})") from None
    if not isinstance(meta, dict) or "labelset_id" not in meta or "ladder" not in meta:
        raise LabelSetError(f"{path}: not a label-set description (missing labelset_id/ladder)")
    return meta


def write_labelset(out: Path, meta: dict[str, Any]) -> None:
    write_json(Path(out) / LABELSET_FILE, meta)


def prepare_output(out: Path, meta: dict[str, Any], overwrite: bool) -> None:
    """Make ``out`` hold the label set ``meta`` describes.

    An existing label set with another id is refused unless ``overwrite``, which removes only what this
    package writes (labels, confidence, attention, manifest), never anything else in ``out``.
    """
    out = Path(out)
    if (out / LABELSET_FILE).exists():
        old = read_labelset(out)
        if old["labelset_id"] != meta["labelset_id"]:
            if not overwrite:
                changed = sorted(k for k in set(old) | set(meta) if k not in _UNHASHED and old.get(k) != meta.get(k))
                raise LabelSetError(
                    f"{out}: holds label set {old['labelset_id']}, this run would write "
                    f"{meta['labelset_id']} (differs in: {', '.join(changed)}); use "
                    "--overwrite to replace it or choose another --out"
                )
            remove_labelset_files(out)
        elif old == meta:
            return
    write_labelset(out, meta)


def remove_labelset_files(out: Path) -> None:
    """Delete what a previous label set wrote into ``out`` (and nothing else)."""
    for name in (LABELS_DIR, ATTENTION_DIR, MANIFEST_DIR, STORE_NAME):
        shutil.rmtree(Path(out) / name, ignore_errors=True)
    for name in (MERGED_MANIFEST, LABELSET_FILE):
        (Path(out) / name).unlink(missing_ok=True)
    log.info("removed the previous label set in %s", out)
