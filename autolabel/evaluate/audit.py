"""Auditing an auto-label set against human labels (`autolabel evaluate-labels`).

For every image of the set that has a reference label, one pass counts pixels by (reference class, auto
class, confidence code). Everything else follows from that histogram: at the set's own threshold, per-class
precision / recall / IoU on the pixels both label (auto-label "ignore" is not an error, it is missing
coverage), and the coverage (share of pixels the auto label does not ignore); and, when the confidence store
exists, the same precision and coverage for every threshold on the set's ladder (a pixel survives threshold
``ladder[j]`` iff its code is ``> j``), without reading any image twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from autolabel.classes import ClassSet
from autolabel.data.io import read_label
from autolabel.errors import DataError, LabelSetError
from autolabel.labelset import read_labelset, read_manifest
from autolabel.labelset.confidence import has_codes, load_confidence

logger = logging.getLogger(__name__)

CITYSCAPES_REFERENCES = ("gtFine", "gtCoarse")
_IMAGE_DIR, _IMAGE_TAG = "leftImg8bit", "_leftImg8bit"


def cityscapes_reference(image: str | Path, kind: str) -> Path | None:
    """``<root>/leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` -> ``<root>/<kind>/<split>/<city>/
    <stem>_<kind>_labelIds.png``; None when the image is not in the Cityscapes layout."""
    parts = PurePath(image).parts
    if _IMAGE_DIR not in parts[:-1]:
        return None
    at = len(parts) - 1 - parts[::-1].index(_IMAGE_DIR)  # the last leftImg8bit folder
    name = PurePath(parts[-1]).stem
    if not name.endswith(_IMAGE_TAG) or len(parts) - at != 4:
        return None
    root, split, city = Path(*parts[:at]), parts[at + 1], parts[at + 2]
    return root / kind / split / city / f"{name[: -len(_IMAGE_TAG)]}_{kind}_labelIds.png"


def reference_path(row: dict[str, Any], reference: str | Mapping[str, Path]) -> Path | None:
    """The human label of a manifest row: Cityscapes gtFine/gtCoarse next to the image, the label a mapping
    gives for its id, or ``DIR/<id>.png``."""
    if isinstance(reference, Mapping):
        path = reference.get(row["id"])
    elif reference in CITYSCAPES_REFERENCES:
        path = cityscapes_reference(row["image"], reference)
    else:
        path = Path(reference) / f"{row['id']}.png"
    return path if path is not None and path.is_file() else None


class AuditHistogram:
    """Pixel counts by (reference class or ignore, auto class or ignore, confidence code)."""

    def __init__(self, num_classes: int, num_codes: int):
        self.num_classes = num_classes
        self.counts = np.zeros((num_classes + 1, num_classes + 1, num_codes), dtype=np.int64)

    def update(self, reference: np.ndarray, auto: np.ndarray, codes: np.ndarray) -> None:
        """Add one image; labels >= C (ignore) go to the last bin of their axis."""
        c = self.num_classes
        ref = np.minimum(reference, c).astype(np.int64).ravel()
        pred = np.minimum(auto, c).astype(np.int64).ravel()
        code = np.minimum(codes, self.counts.shape[2] - 1).astype(np.int64).ravel()
        flat = (ref * (c + 1) + pred) * self.counts.shape[2] + code
        self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)

    def kept(self, rung: int) -> np.ndarray:
        """(C+1, C+1) counts of pixels that survive threshold ``ladder[rung]`` (code > rung); the auto-ignore
        column also receives every pixel dropped by that threshold."""
        kept = self.counts[:, :, rung + 1 :].sum(2)
        dropped = self.counts[:, :, : rung + 1].sum(2).sum(1)
        kept[:, self.num_classes] = dropped
        return kept


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def _clean(value: float) -> float | None:
    return None if value != value else round(float(value), 6)


def scores(kept: np.ndarray, class_names: tuple[str, ...]) -> dict[str, Any]:
    """Precision / recall / IoU per class on pixels both labels have, and coverage, from a (C+1, C+1)
    table."""
    c = len(class_names)
    both = kept[:c, :c]  # reference labelled and auto labelled
    tp = np.diag(both).astype(np.float64)
    precision = _ratio(tp, both.sum(0))
    recall = _ratio(tp, both.sum(1))
    iou = _ratio(tp, both.sum(0) + both.sum(1) - tp)
    ref_pixels = kept[:c].sum(1)
    total = kept.sum()
    return {
        "coverage": _clean(1.0 - kept[:, c].sum() / total) if total else None,
        "coverage_of_reference": (_clean(1.0 - kept[:c, c].sum() / ref_pixels.sum()) if ref_pixels.sum() else None),
        "accuracy": _clean(tp.sum() / both.sum()) if both.sum() else None,
        "miou": _clean(np.nanmean(iou)) if np.isfinite(iou).any() else None,
        "classes": {
            name: {
                "precision": _clean(precision[i]),
                "recall": _clean(recall[i]),
                "iou": _clean(iou[i]),
                "coverage": _clean(1.0 - kept[i, c] / ref_pixels[i]) if ref_pixels[i] else None,
                "reference_pixels": int(ref_pixels[i]),
            }
            for i, name in enumerate(class_names)
        },
    }


def sweep(hist: AuditHistogram, ladder: tuple[float, ...], class_names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Precision and coverage per class (and overall) at every threshold of the ladder."""
    out = []
    for rung, threshold in enumerate(ladder):
        s = scores(hist.kept(rung), class_names)
        out.append(
            {
                "threshold": threshold,
                "coverage": s["coverage"],
                "accuracy": s["accuracy"],
                "precision": {n: v["precision"] for n, v in s["classes"].items()},
                "class_coverage": {n: v["coverage"] for n, v in s["classes"].items()},
            }
        )
    return out


def audit_labelset(
    out: str | Path,
    reference: str | Mapping[str, Path],
    classes: ClassSet,
    *,
    reference_train_ids: bool = False,
    max_pixels: int | None = None,
    on_image: Callable[[], None] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Compare the label set in ``out`` with human labels: ``gtFine``, ``gtCoarse``, a folder
    ``DIR/<id>.png``, or a mapping from image id to label file (``name`` says what it is in messages and the
    report; default: ``reference`` itself).

    Reference labels hold dataset label values (mapped by ``classes``) unless ``reference_train_ids``.
    """
    out = Path(out)
    name = name or str(reference)
    if isinstance(reference, str) and reference not in CITYSCAPES_REFERENCES and not Path(reference).is_dir():
        raise DataError(f"--data {reference}: expected gtFine, gtCoarse or a dataset spec with labels")
    meta = read_labelset(out)
    if tuple(meta.get("classes") or ()) != classes.names:
        raise LabelSetError(
            f"{out}: the label set's classes {meta.get('classes')} differ from the "
            f"configured classes {list(classes.names)}"
        )
    ladder = tuple(float(t) for t in meta["ladder"])
    lut = classes.label_to_train_lut()
    auto_lut = lut if meta.get("label_values") == "label_ids" else None
    hist = AuditHistogram(classes.num_classes, len(ladder) + 1)
    images, with_codes, without_reference = 0, 0, 0
    for row in read_manifest(out).to_pylist():
        ref_path = reference_path(row, reference)
        if ref_path is None:
            without_reference += 1
            continue
        auto = read_label(out / row["label"], auto_lut, max_pixels)
        ref = read_label(ref_path, None if reference_train_ids else lut, max_pixels)
        if ref.shape != auto.shape:
            raise DataError(
                f"{ref_path}: reference is {ref.shape[1]}x{ref.shape[0]}, the auto label "
                f"{out / row['label']} is {auto.shape[1]}x{auto.shape[0]}"
            )
        codes = _codes(out, row["id"], auto)
        if codes is None:  # without a store: labelled pixels are "above the set's threshold", code 1
            codes = (auto != classes.ignore_index).astype(np.uint8)
        else:
            with_codes += 1
        hist.update(ref, auto, codes)
        images += 1
        if on_image is not None:
            on_image()
    if images == 0:
        raise DataError(f"{out}: none of the label set's images has a {name} reference label")
    if without_reference:
        logger.warning("%s: %d images have no %s reference and are not audited", out, without_reference, name)
    report = {
        "labelset": str(out),
        "labelset_id": meta["labelset_id"],
        "reference": name,
        "threshold": meta["threshold"],
        "images": images,
        "images_without_reference": without_reference,
        **scores(hist.kept(0), classes.names),
    }
    # the sweep needs every audited image's codes; a partial store would mix thresholds
    report["sweep"] = sweep(hist, ladder, classes.names) if with_codes == images else None
    return report


def _codes(out: Path, image_id: str, auto: np.ndarray) -> np.ndarray | None:
    if not has_codes(out, image_id):
        return None
    codes = load_confidence(out, image_id)
    if codes.shape != auto.shape:
        raise LabelSetError(f"{out}: confidence map of {image_id!r} is {codes.shape}, its label {auto.shape}")
    return codes


def audit_table(report: dict[str, Any]) -> str:
    """Per-class precision / recall / IoU / coverage as plain text."""
    names = list(report["classes"])
    width = max(len(n) for n in names + ["coverage"])

    def pct(v: float | None) -> str:
        return "  n/a" if v is None else f"{100 * v:5.1f}"

    lines = [f"{'class':<{width}}  prec.  recall  IoU    cover."]
    for name, v in report["classes"].items():
        lines.append(
            f"{name:<{width}}  {pct(v['precision'])}  {pct(v['recall'])}   {pct(v['iou'])}  {pct(v['coverage'])}"
        )
    lines.append(f"{'mIoU':<{width}}  {pct(report['miou'])}")
    lines.append(f"{'coverage':<{width}}  {pct(report['coverage'])}")
    return "\n".join(lines)
