"""``autolabel review export``: the images that most need a human, as a package CVAT or Label Studio imports.

The package is built in a temporary folder next to ``dest`` and moved into place at the end; ``review.json``
in it records the label set, the selection with its scores, the signals and the format, so that
``review import`` can check a tool's export against it.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autolabel import __version__, labelset
from autolabel.classes import ClassSet, class_set_for_names
from autolabel.errors import ReviewError
from autolabel.fs import replace_dir, temp_sibling, write_json
from autolabel.review import cvat, label_studio
from autolabel.review.names import DEFAULT_BY, DEFAULT_IMAGE_URL, FORMATS, SIGNALS
from autolabel.review.package import PACKAGE_VERSION, REVIEW_FILE, ExportItem, image_keys, tool_label_name
from autolabel.review.ranking import SCORING, Ranked, rank_rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    """Where the package went and what is in it."""

    dest: Path
    format: str
    images: list[str]  # image ids, best first
    candidates: int
    signals: tuple[str, ...]  # the signals the score used

    @property
    def review_file(self) -> Path:
        return self.dest / REVIEW_FILE


def stored_to_train_lut(meta: dict[str, Any], ignore_index: int) -> np.ndarray | None:
    """Label PNGs hold dataset label values when the set was generated with ``--label-ids``."""
    if meta.get("label_values") != "label_ids" or not meta.get("label_ids"):
        return None
    lut = np.full(256, ignore_index, dtype=np.uint8)
    for train_id, label_id in enumerate(meta["label_ids"]):
        lut[label_id] = train_id
    return lut


def train_to_stored_lut(meta: dict[str, Any]) -> np.ndarray | None:
    """The inverse of :func:`stored_to_train_lut` (ignore -> 0, the datasets' "unlabelled"), or None."""
    if meta.get("label_values") != "label_ids" or not meta.get("label_ids"):
        return None
    lut = np.zeros(256, dtype=np.uint8)
    lut[: len(meta["label_ids"])] = meta["label_ids"]
    return lut


def labelset_classes(meta: dict[str, Any], classes: ClassSet | None) -> ClassSet:
    """The config's class set (colours) when given and matching, else the label set's own names."""
    names = tuple(meta.get("classes") or ())
    if classes is None:
        return class_set_for_names(names)
    if tuple(classes.names) != names:
        raise ReviewError(f"the configured classes {list(classes.names)} are not the label set's {list(names)}")
    return classes


def export_review(
    labels: str | Path,
    dest: str | Path,
    *,
    top: int = 20,
    by: str | Sequence[str] = DEFAULT_BY,
    fmt: str = "cvat-cityscapes",
    classes: ClassSet | None = None,
    boost_classes: Sequence[str] = (),
    image_url: str = DEFAULT_IMAGE_URL,
    overwrite: bool = False,
) -> ExportResult:
    """Rank the label set's images, and write the ``top`` of them in format ``fmt`` to the folder ``dest``."""
    out, dest = Path(labels), Path(dest)
    if fmt not in FORMATS:
        raise ReviewError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if top < 1:
        raise ReviewError(f"--top {top}: expected at least 1 image")
    _check_dest(dest, overwrite)
    meta = labelset.read_labelset(out)
    class_set = labelset_classes(meta, classes)
    boost_ids = [class_set.index(name) for name in boost_classes]
    rows = labelset.read_manifest(out).to_pylist()
    ranking = rank_rows(rows, by, boost_ids)
    chosen = ranking.top(top)
    if not chosen:
        raise ReviewError(f"{out}: no image to review (no ok rows with teacher labels)")
    keys = image_keys(r["id"] for r in rows)
    lut = stored_to_train_lut(meta, class_set.ignore_index)
    items = [_item(out, r, keys[r.id], rank, lut) for rank, r in enumerate(chosen, start=1)]
    staging = temp_sibling(dest)
    staging.mkdir(parents=True)
    try:
        if fmt == "cvat-cityscapes":
            files = cvat.write_cityscapes(staging, items, class_set)
        elif fmt == "cvat-mask":
            files = cvat.write_voc(staging, items, class_set)
        else:
            files = label_studio.write_label_studio(staging, items, class_set, meta["labelset_id"], image_url)
        write_json(
            staging / REVIEW_FILE,
            _description(
                out,
                meta,
                fmt,
                ranking.used,
                ranking.missing,
                by,
                boost_classes,
                class_set,
                chosen,
                items,
                files,
                len(ranking.ranked),
            ),  # fmt: skip
        )
        replace_dir(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("exported %d of %d images (%s) to %s", len(items), len(ranking.ranked), fmt, dest)
    return ExportResult(
        dest=dest, format=fmt, images=[r.id for r in chosen], candidates=len(ranking.ranked), signals=ranking.used
    )


def _check_dest(dest: Path, overwrite: bool) -> None:
    """``dest`` must be new, empty, or (with ``overwrite``) an earlier review package."""
    if not dest.exists():
        return
    if not dest.is_dir():
        raise ReviewError(f"--out {dest}: exists and is not a folder")
    if not any(dest.iterdir()):
        return
    if not (dest / REVIEW_FILE).is_file():
        raise ReviewError(f"--out {dest}: a non-empty folder that is not a review package; choose another --out")
    if not overwrite:
        raise ReviewError(f"--out {dest}: holds a review package already; use --overwrite to replace it")


def _item(out: Path, ranked: Ranked, key: str, rank: int, lut: np.ndarray | None) -> ExportItem:
    row = ranked.row
    return ExportItem(
        id=ranked.id,
        key=key,
        image=Path(row["image"]),
        label=out / row["label"],
        lut=lut,
        rank=rank,
        score=ranked.score,
        mean_confidence=row.get("mean_confidence"),
        upright=bool(row.get("exif_transposed")),
    )


def _description(
    out: Path,
    meta: dict[str, Any],
    fmt: str,
    used: Sequence[str],
    missing: Sequence[str],
    by: str | Sequence[str],
    boost_classes: Sequence[str],
    classes: ClassSet,
    chosen: Sequence[Ranked],
    items: Sequence[ExportItem],
    files: dict[str, dict[str, str]],
    candidates: int,
) -> dict[str, Any]:
    """The content of ``review.json``."""
    return {
        "kind": "autolabel review package",
        "package_version": PACKAGE_VERSION,
        "code_version": __version__,
        "format": fmt,
        "labelset": str(out.resolve()),
        "labelset_id": meta["labelset_id"],
        "by": list(by.split(",") if isinstance(by, str) else by),
        "signals_used": list(used),
        "signals_missing": list(missing),
        "signal_meaning": {name: SIGNALS[name] for name in (*used, *missing)},
        "scoring": SCORING,
        "boost_classes": list(boost_classes),
        "candidates": candidates,
        "classes": [
            {"train_id": i, "name": n, "tool_name": tool_label_name(n), "color": list(c)}
            for i, (n, c) in enumerate(zip(classes.names, classes.colors, strict=True))
        ],
        "images": [
            {
                "rank": item.rank,
                "id": item.id,
                "key": item.key,
                "score": round(ranked.score, 6),
                "signals": {k: None if v is None else round(v, 6) for k, v in ranked.signals.items()},
                "height": int(ranked.row["height"]),
                "width": int(ranked.row["width"]),
                "image": str(item.image),
                "label": ranked.row["label"],
                "label_sha256": ranked.row["label_sha256"],
                "files": files[item.key],
            }
            for ranked, item in zip(chosen, items, strict=True)
        ],
    }
