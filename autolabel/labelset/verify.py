"""``autolabel verify OUT``: check a label set on disk against its manifest and its inputs."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autolabel import labelset
from autolabel.data.io import read_label
from autolabel.data.sources import Source
from autolabel.errors import AutolabelError
from autolabel.fs import is_temp_name
from autolabel.labelset import confidence

log = logging.getLogger(__name__)


@dataclass
class VerifyReport:
    """Problems make a label set invalid; error rows (images the teacher could not label) are listed apart."""

    checked: int = 0
    problems: list[str] = field(default_factory=list)
    error_rows: list[tuple[str, str]] = field(default_factory=list)

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
    """Every label decodes, has the recorded size and sha256 and only valid values; confidence maps exist;
    no temporary files remain; no label file lacks a row; every input has exactly one row.

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
    referenced = {out / r["label"] for r in rows if r["label"]}
    labels_dir = out / labelset.LABELS_DIR
    strays = [p for p in sorted(labels_dir.rglob("*.png")) if p not in referenced]
    report.problems += [f"{p}: label file with no manifest row" for p in strays]
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
        if meta.get("confidence"):
            problem = _codes_problem(out, row)
            if problem:
                report.problems.append(f"{confidence.store_path(out) / row['id']}: {problem}")


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


def _codes_problem(out: Path, row: dict) -> str | None:
    meta_path = confidence.store_path(out) / row["id"] / "zarr.json"
    try:
        shape = json.loads(meta_path.read_text())["shape"]
    except FileNotFoundError:
        return "missing confidence map"
    except (OSError, ValueError, KeyError) as exc:
        return f"unreadable confidence metadata ({exc})"
    if list(shape) != [row["height"], row["width"]]:
        return f"confidence shape {shape}, label is {row['height']}x{row['width']}"
    return None


def _check_inputs(
    out: Path, meta: dict, rows: list[dict], input_ids: Sequence[str] | None, report: VerifyReport
) -> None:
    if input_ids is None:
        if not meta.get("source"):
            log.warning("%s: no input description recorded; skipping the input check", out)
            return
        try:
            input_ids = [s.id for s in Source.from_dict(meta["source"]).discover(exclude=out)]
        except AutolabelError as exc:
            report.problems.append(f"cannot list the inputs again: {exc}")
            return
    have = {r["id"] for r in rows}
    wanted = set(input_ids)
    missing = sorted(wanted - have)
    extra = sorted(have - wanted)
    report.problems += [f"{i}: input image has no manifest row" for i in missing[:50]]
    if len(missing) > 50:
        report.problems.append(f"... and {len(missing) - 50} more input images without a row")
    report.problems += [f"{i}: manifest row for an image that is not among the inputs" for i in extra[:50]]
