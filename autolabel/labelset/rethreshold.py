"""``autolabel rethreshold``: new labels at a higher threshold from the confidence store, without the teacher.

Only thresholds on the stored ladder at or above the label set's threshold are possible (below it the class
was not kept); at those the result equals a fresh ``generate`` at that threshold, pixel for pixel.
Rewriting in place is safe to interrupt and rerun: thresholding already-thresholded labels at the same value
changes nothing, and ``labelset.json`` is updated last. A damaged image never stops the run: it becomes an
error row, and the result is complete otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autolabel import labelset
from autolabel.data.datasets import Sample
from autolabel.data.io import read_label
from autolabel.errors import AutolabelError, LabelSetError
from autolabel.labelset import confidence
from autolabel.labelset.checksums import FINGERPRINT_KEYS, file_sha256
from autolabel.labelset.files import WriteSettings, error_row, finalise_image, remove_image_outputs

log = logging.getLogger(__name__)


@dataclass
class RethresholdResult:
    labelset_id: str
    images: int
    out: Path
    errors: int = 0  # images whose label or confidence map was missing or damaged (error rows now)


def rethresholded_meta(meta: dict[str, Any], threshold: float) -> dict[str, Any]:
    """``labelset.json`` of the re-thresholded set: new threshold and id, same ladder, link to the source."""
    new = {k: v for k, v in meta.items() if k != "labelset_id"}
    new["threshold"] = float(threshold)
    new.setdefault("rethresholded_from", meta["labelset_id"])
    new["labelset_id"] = labelset.labelset_id(new)
    return new


def _luts(meta: dict[str, Any]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(stored -> train id, train id -> stored) tables when labels hold dataset label values, else Nones."""
    if not meta.get("label_ids"):
        return None, None
    to_train = np.full(256, meta["ignore_index"], dtype=np.uint8)
    to_stored = np.zeros(256, dtype=np.uint8)
    for train_id, label_id in enumerate(meta["label_ids"]):
        to_train[label_id] = train_id
        to_stored[train_id] = label_id
    return to_train, to_stored


def rethreshold(
    out: str | Path,
    threshold: float,
    dest: str | Path | None = None,
    overwrite: bool = False,
    on_image: Callable[[int], None] | None = None,
) -> RethresholdResult:
    """Re-threshold the label set in ``out`` at ``threshold`` (a ladder value), in place or into ``dest``.

    An image whose label or confidence map is missing or damaged (checked against the manifest's checksums)
    becomes an error row naming the file, and the run goes on: every other image is done, every part and
    ``labelset.json`` written, so the result is a complete label set (``errors`` counts the error rows).
    """
    out = Path(out)
    dest = Path(dest) if dest is not None else out
    meta = labelset.read_labelset(out)
    if not meta.get("confidence"):
        raise LabelSetError(f"{out}: was generated with --no-confidence; re-thresholding needs the confidence store")
    confidence.rung_index(threshold, meta["ladder"], floor=meta["threshold"])  # refuses off-ladder values
    new_meta = rethresholded_meta(meta, threshold)
    in_place = dest.resolve() == out.resolve()
    if not in_place:
        labelset.prepare_output(dest, new_meta, overwrite)
        confidence.init_store(dest, meta["ladder"])
    to_train, to_stored = _luts(meta)
    images = errors = 0
    for part in labelset.part_paths(out):
        rows = []
        for row in labelset.read_part(part).to_pylist():
            if row["status"] == "ok":
                try:
                    row = _rethreshold_row(out, dest, row, meta, threshold, to_train, to_stored, not in_place)
                    images += 1
                except AutolabelError as exc:
                    log.warning("%s: %s", row["id"], exc)
                    row = _failed_row(out, dest, row, str(exc), in_place, bool(meta.get("label_ids")))
                    errors += 1
                if on_image is not None:
                    on_image(1)
            rows.append(row)
        labelset.write_part(dest, rows)
    if in_place:
        labelset.write_labelset(out, new_meta)
    log.info("re-thresholded %d images at %g into %s (%d errors)", images, threshold, dest, errors)
    return RethresholdResult(labelset_id=new_meta["labelset_id"], images=images, out=dest, errors=errors)


def _failed_row(out: Path, dest: Path, row: dict[str, Any], message: str, in_place: bool, label_ids: bool) -> dict:
    """The error row of an image that could not be re-thresholded. In place, its old files go (they hold the
    old threshold, or are damaged), so that a rerun of ``generate`` at the new threshold labels it afresh."""
    if in_place:
        remove_image_outputs(out, row["id"], label_ids)
    failed = error_row(Sample(id=row["id"], image=Path(row["image"])), f"re-threshold: {message}", row["shard"])
    return failed


def _rethreshold_row(
    out: Path,
    dest: Path,
    row: dict[str, Any],
    meta: dict[str, Any],
    threshold: float,
    to_train: np.ndarray | None,
    to_stored: np.ndarray | None,
    copy_codes: bool,
) -> dict:
    label_path = out / row["label"]
    intact = file_sha256(label_path) == row["label_sha256"]
    if not intact and copy_codes:
        raise LabelSetError(f"{label_path}: label missing or changed since it was written (sha256 differs)")
    old = read_label(label_path, lut=to_train)
    codes = confidence.load_confidence(out, row["id"], expected=row.get("output_files"))
    labels = confidence.rethreshold_array(old, codes, threshold, meta["ladder"], meta["ignore_index"])
    if not intact and not np.array_equal(labels, old):
        # in place, a label already at the new threshold (an interrupted earlier attempt rewrote it before its
        # part) is unchanged by re-thresholding; any other difference from the manifest is damage
        raise LabelSetError(f"{label_path}: label changed since it was written (sha256 differs from the manifest)")
    settings = WriteSettings(
        out=dest,
        num_classes=meta["num_classes"],
        shard=row["shard"],
        confidence=copy_codes,
        centroid_tile=meta.get("centroid_tile", 1024),
        compress_level=meta.get("png_compress_level", 9),
        train_to_label=to_stored,
        ignore_index=meta["ignore_index"],
    )
    sample = Sample(id=row["id"], image=Path(row["image"]))
    fingerprint = {k: row.get(k) for k in FINGERPRINT_KEYS}  # the same input as the source row's
    # the teacher's ranking signals and the label's source belong to the image, not to the threshold
    signals = {name: row.get(name) for name in labelset.SIGNAL_COLUMNS}
    new = finalise_image(
        settings,
        sample,
        labels,
        codes,
        row["mean_confidence"],
        {},
        row["seconds"],
        fingerprint,
        signals=signals,
        source=row.get("source") or "teacher",
    )
    if not copy_codes:  # in place: the confidence array (and any attention map) stays as it is
        new["output_files"] = row.get("output_files")
    return new
