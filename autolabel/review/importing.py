"""``autolabel review import``: a tool's corrected export becomes a new version of the label set.

The new label set ``OUT2`` is the old one with the corrected images' labels replaced by the human's:

* corrected images: the human label PNG (same path as before), a confidence map that marks every labelled
  pixel certain (the top code, so any re-threshold keeps it) and every unlabelled one ignored, and manifest
  ``source = "human"`` (the teacher's signals are cleared: they described the old label);
* every other image: its files hard-linked from ``OUT`` (copied where the filesystem cannot link), its
  manifest row unchanged; the teacher never runs;
* ``labelset.json``: the old provenance plus ``parent_labelset_id`` and ``review`` (format, number of images
  and the corrections' sha256), which give it a new label-set id.

Files are written before the manifest parts that point at them, so an interrupted import is finished by
running it again; a second import of the same corrections finds ``OUT2`` complete and changes nothing.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autolabel import labelset
from autolabel.classes import ClassSet
from autolabel.data.datasets import Sample
from autolabel.data.io import read_label
from autolabel.errors import LabelSetError, ReviewError
from autolabel.fs import link_or_copy
from autolabel.labelset import confidence
from autolabel.labelset.checksums import FINGERPRINT_KEYS
from autolabel.labelset.files import WriteSettings, attention_relpath, finalise_image
from autolabel.review import cvat, label_studio
from autolabel.review.export import labelset_classes, stored_to_train_lut, train_to_stored_lut
from autolabel.review.names import FORMATS
from autolabel.review.package import (
    Correction,
    ExportTree,
    ReviewPackage,
    digest_labels,
    find_package,
    read_package,
)

log = logging.getLogger(__name__)


@dataclass
class ImportResult:
    """What an import did."""

    out: Path
    labelset_id: str
    parent_labelset_id: str
    format: str
    corrected: list[str]  # image ids now labelled by a human
    carried: int  # images carried over unchanged
    pixels_changed: dict[str, int] = field(default_factory=dict)  # image id -> pixels whose label changed
    already_done: bool = False  # OUT2 already held exactly this import


def detect_format(exported: Path) -> str:
    """The export's format from its content: a JSON file is Label Studio's, else which colour file it has."""
    if exported.is_file() and exported.suffix.lower() == ".json":
        return "label-studio"
    with ExportTree(exported) as tree:
        if tree.find(cvat.CITYSCAPES_COLORS) is not None:
            return "cvat-cityscapes"
        if tree.find(cvat.VOC_LABELMAP) is not None:
            return "cvat-mask"
    raise ReviewError(
        f"{exported}: neither a Label Studio JSON export nor a CVAT 'Cityscapes 1.0' / 'Segmentation mask 1.1' "
        f"export (no {cvat.CITYSCAPES_COLORS} or {cvat.VOC_LABELMAP}); pass --format to say which it is"
    )


def read_corrections(exported: Path, fmt: str, classes: ClassSet, package: ReviewPackage) -> list[Correction]:
    """Every corrected label map in the export (train ids)."""
    if fmt == "label-studio":
        sizes = {e["id"]: (int(e["height"]), int(e["width"])) for e in package.images}
        return label_studio.read_label_studio(exported, classes, package.labelset_id, sizes)
    with ExportTree(exported) as tree:
        return cvat.read_cityscapes(tree, classes) if fmt == "cvat-cityscapes" else cvat.read_voc(tree, classes)


def match_corrections(corrections: Sequence[Correction], package: ReviewPackage) -> dict[str, np.ndarray]:
    """Image id -> corrected labels; an unknown image, a wrong size or a duplicate is a :class:`ReviewError`."""
    by_key, by_id = package.by_key(), package.by_id()
    matched: dict[str, np.ndarray] = {}
    for corr in corrections:
        entry = by_id.get(corr.image_id or "") or by_key.get(corr.key or "")
        if entry is None:
            name = corr.image_id or corr.key
            examples = ", ".join(repr(e["key"]) for e in package.images[:3])
            raise ReviewError(
                f"{corr.where}: unknown image {name!r}; not one of the {len(by_key)} images of "
                f"{package.path} (e.g. {examples})"
            )
        size = (int(entry["height"]), int(entry["width"]))
        if corr.labels.shape != size:
            raise ReviewError(
                f"{corr.where}: wrong size {corr.labels.shape[1]}x{corr.labels.shape[0]}; image {entry['id']!r} "
                f"is {size[1]}x{size[0]}"
            )
        if entry["id"] in matched:
            raise ReviewError(f"{corr.where}: a second correction of image {entry['id']!r} in the same export")
        matched[entry["id"]] = corr.labels
    return matched


def imported_meta(meta: dict[str, Any], fmt: str, corrections: dict[str, np.ndarray]) -> dict[str, Any]:
    """``labelset.json`` of the new version: the parent's provenance, its id, and the corrections' identity."""
    new = {k: v for k, v in meta.items() if k not in ("labelset_id", "review")}
    new["parent_labelset_id"] = meta["labelset_id"]
    new["review"] = {
        "format": fmt,
        "images": len(corrections),
        "corrections_sha256": digest_labels(corrections.items()),
    }
    new["labelset_id"] = labelset.labelset_id(new)
    return new


def import_review(
    labels: str | Path,
    exported: str | Path,
    out: str | Path,
    *,
    review: str | Path | None = None,
    fmt: str | None = None,
    classes: ClassSet | None = None,
    overwrite: bool = False,
) -> ImportResult:
    """Write ``out``: the label set ``labels`` with the corrections of ``exported`` taken in (see module doc).

    Args:
        labels: the label set the review package was exported from.
        exported: what the tool exported (a CVAT zip or folder, a Label Studio JSON file).
        out: the new label set's folder (not ``labels`` itself).
        review: the package's ``review.json`` (default: one beside or inside ``exported``).
        fmt: the export's format (default: recognised from its content).
        classes: the config's class set (default: the label set's names).
        overwrite: replace another label set in ``out``.
    """
    src, exported, out = Path(labels), Path(exported), Path(out)
    if out.resolve() == src.resolve():
        raise ReviewError(f"--out {out}: the corrected label set must go to a new folder, not over {src}")
    meta = labelset.read_labelset(src)
    package = read_package(review) if review is not None else find_package(exported)
    if package is None:
        raise ReviewError(
            f"{exported}: no review.json beside it; pass --review PATH/review.json (the file `review export` wrote)"
        )
    if package.labelset_id != meta["labelset_id"]:
        raise ReviewError(
            f"{package.path} belongs to label set {package.labelset_id}, but {src} holds {meta['labelset_id']}"
        )
    fmt = fmt or detect_format(exported)
    if fmt not in FORMATS:
        raise ReviewError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    class_set = labelset_classes(meta, classes)
    corrections = match_corrections(read_corrections(exported, fmt, class_set, package), package)
    new_meta = imported_meta(meta, fmt, corrections)
    parts = labelset.part_paths(src)
    result = ImportResult(
        out=out,
        labelset_id=new_meta["labelset_id"],
        parent_labelset_id=meta["labelset_id"],
        format=fmt,
        corrected=sorted(corrections),
        carried=0,
    )
    if _complete(out, new_meta, parts):
        result.already_done = True
        log.info("%s already holds this import (label set %s)", out, new_meta["labelset_id"])
        return result
    labelset.prepare_output(out, new_meta, overwrite)
    if meta.get("confidence"):
        confidence.init_store(out, meta["ladder"])
    writer = _Writer(src, out, meta, class_set, corrections)
    for part in parts:
        rows = [writer.row(row) for row in labelset.read_part(part).to_pylist()]
        labelset.write_part(out, rows)
    if (src / labelset.MERGED_MANIFEST).is_file():
        labelset.merge_manifest(out)
    missing = sorted(set(corrections) - writer.written)
    if missing:
        raise LabelSetError(f"{src}: corrected images without an ok manifest row: {', '.join(missing[:5])}")
    result.carried, result.pixels_changed = writer.carried, writer.changed
    log.info("took in %d corrections, carried %d images over, into %s", len(corrections), writer.carried, out)
    return result


def _complete(out: Path, meta: dict[str, Any], parts: Sequence[Path]) -> bool:
    """``out`` holds this very import, every manifest part written (parts go last)."""
    try:
        if labelset.read_labelset(out) != meta:
            return False
    except LabelSetError:
        return False
    have = {p.name for p in labelset.part_paths(out)}
    return all(p.name in have for p in parts)


class _Writer:
    """Turns each manifest row of the parent into the new version's row, writing or linking its files."""

    def __init__(
        self, src: Path, out: Path, meta: dict[str, Any], classes: ClassSet, corrections: dict[str, np.ndarray]
    ):
        self.src, self.out, self.meta = src, out, meta
        self.classes = classes
        self.corrections = corrections
        self.lut = stored_to_train_lut(meta, classes.ignore_index)
        self.top_code = np.uint8(len(meta["ladder"]))  # above every rung: certain at any threshold
        self.carried = 0
        self.written: set[str] = set()
        self.changed: dict[str, int] = {}

    def row(self, row: dict[str, Any]) -> dict[str, Any]:
        if row["status"] != "ok":
            return row
        if row["id"] in self.corrections:
            return self._human(row, self.corrections[row["id"]])
        self._carry(row)
        return {**row, "source": row.get("source") or "teacher"}

    def _carry(self, row: dict[str, Any]) -> None:
        link_or_copy(self.src / row["label"], self.out / row["label"])
        self._carry_extras(row)
        self.carried += 1

    def _carry_extras(self, row: dict[str, Any]) -> None:
        """Confidence map (unless the image was corrected) and attention maps, linked file by file."""
        if self.meta.get("confidence") and row["id"] not in self.corrections:
            self._carry_codes(row["id"])
        first = Path(attention_relpath(row["id"], "attn_"))  # attention/<id>_attn_.png: folder and name stem
        folder = self.src / first.parent
        if folder.is_dir():
            for path in folder.glob(f"{glob.escape(Path(row['id']).name)}_attn_*.png"):
                link_or_copy(path, self.out / first.parent / path.name)

    def _carry_codes(self, image_id: str) -> None:
        array = confidence.store_path(self.src) / image_id
        if not array.is_dir():  # a store that keeps no folder per image: through the store's own API
            confidence.write_codes(self.out, image_id, confidence.load_confidence(self.src, image_id))
            return
        # the chunk before zarr.json: a reader takes an array with zarr.json for complete
        for path in sorted(array.rglob("*"), key=lambda p: (p.name == "zarr.json", p.as_posix())):
            if path.is_file():
                link_or_copy(path, confidence.store_path(self.out) / image_id / path.relative_to(array))

    def _human(self, row: dict[str, Any], labels: np.ndarray) -> dict[str, Any]:
        old = read_label(self.src / row["label"], self.lut)
        self.changed[row["id"]] = int((old != labels).sum())
        labelled = labels != self.classes.ignore_index
        settings = WriteSettings(
            out=self.out,
            num_classes=self.classes.num_classes,
            shard=row["shard"],
            compress_level=self.meta.get("png_compress_level", 9),
            confidence=bool(self.meta.get("confidence")),
            centroid_tile=self.meta.get("centroid_tile", 1024),
            train_to_label=train_to_stored_lut(self.meta),
            ignore_index=self.classes.ignore_index,
            exif_transpose=bool(row.get("exif_transposed")),  # the human label is in the old label's orientation
        )
        codes = np.where(labelled, self.top_code, np.uint8(0)).astype(np.uint8)
        sample = Sample(id=row["id"], image=Path(row["image"]))
        # a human label is certain where it labels: confidence 1 there, 0 on unlabelled pixels
        fingerprint = {k: row.get(k) for k in FINGERPRINT_KEYS}  # the same image as the parent's row
        new = finalise_image(
            settings, sample, labels, codes, float(labelled.mean()), {}, 0.0, fingerprint, source="human"
        )
        self._carry_extras(row)
        if row.get("output_files") is None:  # a row from before output_files: verify owns its files by prefix
            new["output_files"] = None
        else:  # the attention maps come over linked, so the parent's checksums of them still hold
            attention = [e for e in row["output_files"] if e["path"].startswith(f"{labelset.ATTENTION_DIR}/")]
            new["output_files"] = sorted([*new["output_files"], *attention], key=lambda e: e["path"])
        self.written.add(row["id"])
        return new
