"""``labelset.json``: a label set's provenance and its id, and the layout of a label-set folder.

The label-set id hashes everything that determines the labels (teacher weights, model config, scales, flip,
threshold, ladder, classes, normalisation, tiling, code version); runs into an existing folder must agree on
it.
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
REPORT_DIR = "report"  # `autolabel report`'s default destination: not part of the label set, never checked
FORMAT_VERSION = 1
# Keys of labelset.json that are not part of the id: where the inputs and the set came from (the parent
# label set, the self-training round), and the id itself. The teacher's sha256 already pins the labels.
_UNHASHED = ("labelset_id", "source", "rethresholded_from", "parent_labelset_id", "round")


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
) -> dict[str, Any]:
    """The content of ``labelset.json`` including its id. ``label_ids`` is set when labels hold dataset label
    values (``--label-ids``) instead of train ids."""
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "code_version": __version__,
        "teacher_sha256": teacher_sha256,
        "model": model_config,
        "scales": [float(s) for s in scales],
        "flip": bool(flip),
        "threshold": float(threshold),
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
    meta["labelset_id"] = labelset_id(meta)
    return meta


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
