"""``autolabel verify OUT``: check a label set on disk against its manifest and its inputs.

Every file is accounted for: each ok row's label (sha256, decodes, size, values) and every other file it lists
(``output_files``: confidence-store files, attention maps, each with its sha256; a missing or damaged chunk is
found here, never read as zeros); no temporary files; nothing else in OUT that the label set did not write
(reported, never deleted); no journal of an interrupted run left; every input has exactly one row, and its
input is still the file that was labelled (fingerprints; ``check_inputs=False`` skips all input checks).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autolabel import labelset
from autolabel.data.io import read_label
from autolabel.data.sources import Source
from autolabel.errors import AutolabelError
from autolabel.fs import is_temp_name
from autolabel.labelset import confidence, journal
from autolabel.labelset.checksums import check_input, entries_problems
from autolabel.labelset.lock import LOCKS_DIR

log = logging.getLogger(__name__)

MAX_LISTED = 50  # per kind of problem that can hit every image: the rest is counted


@dataclass
class VerifyReport:
    """Problems make a label set invalid; error rows (images the teacher could not label) are listed apart,
    and so are notes (what cannot be checked, e.g. rows from before input fingerprints existed)."""

    checked: int = 0
    problems: list[str] = field(default_factory=list)
    error_rows: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def temp_files(out: Path) -> Iterator[Path]:
    for path in sorted(Path(out).rglob(".*")):
        if is_temp_name(path.name):
            yield path


def allowed_values(meta: dict) -> np.ndarray:
    """A 256-entry bool table of the values a label PNG may hold."""
    allowed = np.zeros(256, dtype=bool)
    if meta.get("label_ids"):
        allowed[list(meta["label_ids"])] = True
        allowed[0] = True  # unlabelled/void: where train-id labels have the ignore index
    else:
        allowed[: meta["num_classes"]] = True
        allowed[meta["ignore_index"]] = True
    return allowed


def verify_labelset(out: str | Path, input_ids: Sequence[str] | None = None, check_inputs: bool = True) -> VerifyReport:
    """Check the label set in ``out`` (see the module docstring); returns what was found.

    ``input_ids`` defaults to re-listing the inputs recorded in ``labelset.json`` (when ``check_inputs``).
    """
    out = Path(out)
    report = VerifyReport()
    try:
        meta = labelset.read_labelset(out)
        table = labelset.read_all_rows(out)
    except AutolabelError as exc:
        report.problems.append(str(exc))
        return report
    rows = table.to_pylist()
    _check_rows(out, meta, rows, report)
    report.problems += [f"{p}: temporary file left by an interrupted write" for p in temp_files(out)]
    journal_rows = _check_journals(out, report)
    _check_extra_files(out, [*rows, *journal_rows], report)
    if check_inputs:
        _check_inputs(out, meta, rows, input_ids, report)
    return report


def _check_rows(out: Path, meta: dict, rows: list[dict], report: VerifyReport) -> None:
    allowed = allowed_values(meta)
    for image_id, n in Counter(r["id"] for r in rows).items():
        if n > 1:
            parts = sorted(r["part"] for r in rows if r["id"] == image_id)
            report.problems.append(f"{image_id}: {n} manifest rows (in {', '.join(parts)})")
    for row in rows:
        if row["status"] != "ok":
            report.error_rows.append((row["id"], row["error"] or ""))
            continue
        report.checked += 1
        report.problems += [f"{out / (row['label'] or '?')}: {p}" for p in _label_problems(out, row, allowed)]
        report.problems += _output_problems(out, row, bool(meta.get("confidence")))


def _label_problems(out: Path, row: dict, allowed: np.ndarray) -> list[str]:
    path = out / row["label"]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ["missing label file"]
    if hashlib.sha256(data).hexdigest() != row["label_sha256"]:
        return ["sha256 differs from the manifest (file changed or damaged)"]
    try:
        label = read_label(path)
    except AutolabelError as exc:
        return [f"does not decode ({exc})"]
    problems = []
    if label.shape != (row["height"], row["width"]):
        problems.append(f"size {label.shape[1]}x{label.shape[0]}, manifest says {row['width']}x{row['height']}")
    bad = np.unique(label[~allowed[label]])
    if bad.size:
        problems.append(f"invalid label values {bad.tolist()[:10]}")
    return problems


def _output_problems(out: Path, row: dict, has_confidence: bool) -> list[str]:
    """The row's other output files: each listed one with its checksum, then the confidence array as an
    array (metadata, shape, every chunk present), whether or not the row lists files."""
    problems = entries_problems(out, row.get("output_files"))
    if problems or not has_confidence:
        return problems
    problem = confidence.codes_problem(out, row["id"], (row["height"], row["width"]))
    return [f"{confidence.store_path(out) / row['id']}: {problem}"] if problem else []


def _check_journals(out: Path, report: VerifyReport) -> list[dict[str, Any]]:
    """One problem per journal left by an interrupted run; returns their rows (their files are known)."""
    rows: list[dict[str, Any]] = []
    for path in journal.journal_paths(out):
        found = journal.read_journal(path)
        rows += found
        report.problems.append(
            f"{path}: journal of an interrupted run ({len(found)} finished images whose rows are not in the "
            "manifest yet); rerun `autolabel generate` for this shard to move them in"
        )
    return rows


def _known_files(out: Path, rows: list[dict[str, Any]]) -> tuple[set[str], list[str]]:
    """Paths (relative to OUT) the label set accounts for, and path prefixes it owns wholesale (rows from
    before ``output_files``: the image's array folder and attention maps)."""
    known = {labelset.LABELSET_FILE, labelset.MERGED_MANIFEST, f"{labelset.STORE_NAME}/zarr.json"}
    prefixes = [f"{LOCKS_DIR}/", f"{labelset.REPORT_DIR}/"]
    for row in rows:
        if row.get("label"):
            known.add(row["label"])
        if row.get("output_files") is not None:
            known.update(e["path"] for e in row["output_files"])
        elif row.get("status") == "ok":
            prefixes += [f"{confidence.array_relpath(row['id'])}/", f"{labelset.ATTENTION_DIR}/{row['id']}_attn_"]
    return known, prefixes


def _check_extra_files(out: Path, rows: list[dict[str, Any]], report: VerifyReport) -> None:
    """Every file in OUT that no row, journal or the layout accounts for: listed, never removed."""
    known, prefixes = _known_files(out, rows)
    manifest_dir = f"{labelset.MANIFEST_DIR}/"
    extra = []
    for dirpath, dirnames, filenames in os.walk(out):
        dirnames[:] = sorted(d for d in dirnames if not is_temp_name(d))  # temp folders are reported apart
        rel_dir = Path(dirpath).relative_to(out).as_posix()
        for name in sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if is_temp_name(name) or rel in known or any(rel.startswith(p) for p in prefixes):
                continue
            if rel.startswith(manifest_dir) and "/" not in rel[len(manifest_dir) :]:
                if name.startswith("part-") and name.endswith(".parquet"):
                    continue  # every part was read above
                if name.startswith(journal.JOURNAL_PREFIX) and name.endswith(journal.JOURNAL_SUFFIX):
                    continue  # reported as a journal
            extra.append(rel)
    for rel in extra[:MAX_LISTED]:
        what = "label file" if rel.startswith(f"{labelset.LABELS_DIR}/") else "file not written by this label set:"
        report.problems.append(
            f"{out / rel}: {what} with no manifest row; left in place (verify never deletes): remove or move "
            "it if it does not belong here"
        )
    if len(extra) > MAX_LISTED:
        report.problems.append(f"... and {len(extra) - MAX_LISTED} more files not written by this label set")


def _check_inputs(
    out: Path, meta: dict, rows: list[dict], input_ids: Sequence[str] | None, report: VerifyReport
) -> None:
    paths: dict[str, Path] = {}
    if input_ids is None:
        if not meta.get("source"):
            log.warning("%s: no input description recorded; skipping the input check", out)
            return
        try:
            samples = Source.from_dict(meta["source"]).discover(exclude=out)
        except AutolabelError as exc:
            report.problems.append(f"cannot list the inputs again: {exc}")
            return
        input_ids = [s.id for s in samples]
        paths = {s.id: Path(s.image) for s in samples}
    have = {r["id"] for r in rows}
    wanted = set(input_ids)
    missing = sorted(wanted - have)
    extra = sorted(have - wanted)
    report.problems += [f"{i}: input image has no manifest row" for i in missing[:MAX_LISTED]]
    if len(missing) > MAX_LISTED:
        report.problems.append(f"... and {len(missing) - MAX_LISTED} more input images without a row")
    report.problems += [f"{i}: manifest row for an image that is not among the inputs" for i in extra[:MAX_LISTED]]
    _check_fingerprints(rows, paths, wanted, report)


def _check_fingerprints(rows: list[dict], paths: dict[str, Path], wanted: set[str], report: VerifyReport) -> None:
    """Each ok row's input is still the file that was labelled (hashed again only when size/mtime changed)."""
    stale, unknown = [], 0
    for row in rows:
        if row["status"] != "ok" or row["id"] not in wanted:
            continue
        check = check_input(row, paths.get(row["id"], Path(row["image"])))
        if check.state == "unknown":
            unknown += 1
        elif check.state in ("changed", "missing"):
            stale.append(f"{row['id']}: stale label, the input changed since it was labelled ({check.reason}); "
                         "rerun `autolabel generate` to label it again")  # fmt: skip
    report.problems += stale[:MAX_LISTED]
    if len(stale) > MAX_LISTED:
        report.problems.append(f"... and {len(stale) - MAX_LISTED} more stale labels")
    if unknown:
        report.notes.append(
            f"{unknown} rows have no input fingerprint (written before fingerprints existed): whether their "
            "inputs changed is unknown; `autolabel generate --recheck-inputs` labels them again"
        )
