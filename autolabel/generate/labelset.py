"""A label set on disk: ``labelset.json`` (provenance + id) and the manifest parts.

The label-set id hashes everything that determines the labels (teacher weights, model config, scales, flip,
threshold, ladder, classes, normalisation, tiling, code version); runs into an existing folder must agree on
it. The manifest is a folder of parquet parts, one per chunk of images, each written atomically once all of
its images' files are final; a part's name is a hash of its image ids, so rerunning the same chunk replaces
the same file and never duplicates rows.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from autolabel import __version__
from autolabel.data.io import atomic_write_bytes
from autolabel.errors import LabelSetError

log = logging.getLogger(__name__)

LABELSET_FILE = "labelset.json"
MANIFEST_DIR = "manifest"
MERGED_MANIFEST = "manifest.parquet"
LABELS_DIR = "labels"
ATTENTION_DIR = "attention"
FORMAT_VERSION = 1
# Keys of labelset.json that are not part of the id: where the inputs came from, and the id itself.
_UNHASHED = ("labelset_id", "source", "rethresholded_from")

CENTROID_TYPE = pa.struct([("cls", pa.int32()), ("y", pa.int32()), ("x", pa.int32())])
MANIFEST_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("image", pa.string()),  # source image path as discovered
        ("label", pa.string()),  # label PNG path relative to OUT (null on error rows)
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("status", pa.string()),  # "ok" | "error"
        ("error", pa.string()),
        ("class_counts", pa.list_(pa.int64())),  # pixels per train id 0..C-1
        ("ignore_count", pa.int64()),
        ("mean_confidence", pa.float32()),  # mean max softmax probability over all pixels
        ("centroids", pa.list_(CENTROID_TYPE)),  # per tile and class present: centre of mass (image coords)
        ("label_sha256", pa.string()),
        ("shard", pa.string()),  # "I/N"
        ("seconds", pa.float32()),  # wall time per image; the only column that differs between identical runs
    ]
)
TIMING_COLUMNS = ("seconds",)


# ---------------------------------------------------------------------------------------------------------
# labelset.json


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
    atomic_write_bytes(Path(out) / LABELSET_FILE, (json.dumps(meta, indent=2) + "\n").encode("utf-8"))


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
    from autolabel.generate.confidence import STORE_NAME

    for name in (LABELS_DIR, ATTENTION_DIR, MANIFEST_DIR, STORE_NAME):
        shutil.rmtree(Path(out) / name, ignore_errors=True)
    for name in (MERGED_MANIFEST, LABELSET_FILE):
        (Path(out) / name).unlink(missing_ok=True)
    log.info("removed the previous label set in %s", out)


# ---------------------------------------------------------------------------------------------------------
# manifest parts


def part_name(ids: Sequence[str]) -> str:
    """A part's file name: a hash of the (sorted) image ids it covers."""
    digest = hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()[:16]
    return f"part-{digest}.parquet"


def rows_to_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Manifest rows (dicts with the schema's keys) as a table sorted by id."""
    rows = sorted(rows, key=lambda r: r["id"])
    return pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)


def write_part(out: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write one manifest part atomically; returns its path."""
    table = rows_to_table(rows)
    path = Path(out) / MANIFEST_DIR / part_name(table.column("id").to_pylist())
    atomic_write_bytes(path, table_to_parquet(table))
    return path


def table_to_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def part_paths(out: Path) -> list[Path]:
    folder = Path(out) / MANIFEST_DIR
    return sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []


def read_part(path: Path) -> pa.Table:
    try:
        return pq.read_table(path, schema=MANIFEST_SCHEMA)
    except (OSError, pa.ArrowInvalid) as exc:
        raise LabelSetError(f"{path}: unreadable manifest part ({exc})") from None


def read_all_rows(out: str | Path) -> pa.Table:
    """Every row of every part, duplicates and error rows included (sorted by id, then part name)."""
    paths = part_paths(Path(out))
    tables = [_with_part(read_part(p), p.name) for p in paths]
    if not tables:
        return _with_part(MANIFEST_SCHEMA.empty_table(), "")
    table = pa.concat_tables(tables)
    return table.sort_by([("id", "ascending"), ("part", "ascending")])


def _with_part(table: pa.Table, name: str) -> pa.Table:
    return table.append_column("part", pa.array([name] * table.num_rows, pa.string()))


def read_manifest(out: str | Path, status: str | None = "ok") -> pa.Table:
    """The manifest of a label set: all parts merged, one row per image, sorted by id.

    ``status="ok"`` (default) keeps the usable rows only; ``None`` keeps error rows too. Should an id have
    rows in several parts (a run over a different input list was interrupted), an ok row wins, then the
    first part by name.
    """
    table = read_all_rows(out)
    table = dedupe(table).drop_columns(["part"])
    if status is not None:
        table = table.filter(pc.equal(table.column("status"), status))
    return table


def dedupe(table: pa.Table) -> pa.Table:
    """One row per id (ok rows first, then first part by name)."""
    ids = table.column("id").to_pylist()
    ok = [s == "ok" for s in table.column("status").to_pylist()]
    best: dict[str, int] = {}
    for i, image_id in enumerate(ids):
        j = best.get(image_id)
        if j is None or (ok[i] and not ok[j]):
            best[image_id] = i
    return table.take(pa.array(sorted(best.values()), pa.int64()))


def rows_by_id(table: pa.Table) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in table.to_pylist()}


def merge_manifest(out: str | Path) -> pa.Table:
    """Merge all parts (every status) into ``OUT/manifest.parquet`` atomically; returns the merged table."""
    table = read_manifest(out, status=None)
    atomic_write_bytes(Path(out) / MERGED_MANIFEST, table_to_parquet(table))
    return table


def summarise(table: pa.Table, class_names: Sequence[str]) -> dict[str, Any]:
    """Counts, errors and per-class pixel coverage of a manifest (all statuses)."""
    rows = table.to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    totals = [0] * len(class_names)
    present = [0] * len(class_names)
    for row in ok:
        for c, n in enumerate(row["class_counts"] or []):
            totals[c] += n
            present[c] += n > 0
    pixels = sum((r["height"] or 0) * (r["width"] or 0) for r in ok)
    ignored = sum(r["ignore_count"] or 0 for r in ok)
    return {
        "images": len(rows),
        "ok": len(ok),
        "errors": [(r["id"], r["error"]) for r in rows if r["status"] != "ok"],
        "pixels": pixels,
        "ignored_fraction": ignored / pixels if pixels else 0.0,
        "mean_confidence": sum(r["mean_confidence"] for r in ok) / len(ok) if ok else 0.0,
        "classes": [
            {"name": n, "pixel_fraction": totals[c] / pixels if pixels else 0.0, "images": present[c]}
            for c, n in enumerate(class_names)
        ],
    }
