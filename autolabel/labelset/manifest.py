"""The manifest of a label set: one row per image, in parquet parts under ``OUT/manifest/``.

Each part covers one chunk of images and is written atomically once all of its images' files are final; a
part's name is a hash of its image ids, so rerunning the same chunk replaces the same file and never
duplicates rows.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from autolabel.errors import LabelSetError
from autolabel.fs import atomic_write_bytes
from autolabel.labelset.meta import MANIFEST_DIR, MERGED_MANIFEST

log = logging.getLogger(__name__)

CENTROID_TYPE = pa.struct([("cls", pa.int32()), ("y", pa.int32()), ("x", pa.int32())])
OUTPUT_FILE_TYPE = pa.struct([("path", pa.string()), ("sha256", pa.string())])
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
        # the image was turned upright by its EXIF orientation, and its label with it (null in older sets,
        # which read every image as stored)
        ("exif_transposed", pa.bool_()),
        # the input as it was labelled (see autolabel.labelset.checksums): resume relabels an image whose input
        # changed; null in manifests written before fingerprints existed ("unknown")
        ("input_size", pa.int64()),
        ("input_mtime_ns", pa.int64()),
        ("input_sha256", pa.string()),
        # every file written for the image besides the label (confidence store, attention maps), relative to OUT
        ("output_files", pa.list_(OUTPUT_FILE_TYPE)),
        # added for `review` (null in manifests written before them; readers take null source as "teacher"):
        ("source", pa.string()),  # "teacher" | "human" (a `review import` correction) | "coarse" (labelset.human)
        ("scale_disagreement", pa.float32()),  # share of pixels whose argmax differs, smallest vs largest scale
        ("flip_disagreement", pa.float32()),  # share of pixels whose argmax differs, image vs its flip
    ]
)
TIMING_COLUMNS = ("seconds",)
SIGNAL_COLUMNS = ("scale_disagreement", "flip_disagreement")  # measured by the teacher (generate.signals)
SOURCES = ("teacher", "human", "coarse")


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
    """One part in the current schema; columns an older part lacks (added at the schema's end) are null."""
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
    """Merge all parts (every status) into ``OUT/manifest.parquet`` atomically; returns the merged table.

    Rows still in journals of an interrupted run (:mod:`autolabel.labelset.journal`) are not parts yet: they
    are left out, with a warning (the next ``generate`` of their shard moves them in).
    """
    journals = sorted((Path(out) / MANIFEST_DIR).glob(".journal-*.jsonl"))
    if journals:
        log.warning(
            "%s: %d journal(s) of an interrupted run hold rows not in the manifest yet (e.g. %s); rerun "
            "`autolabel generate` for that shard to move them in",
            out,
            len(journals),
            journals[0].name,
        )
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
