"""Checksums of a label set's files and fingerprints of its inputs, as the manifest records them.

Outputs: besides ``label_sha256``, a row's ``output_files`` lists every other file written for the image (its
confidence-store files, its attention maps) as ``{"path": <relative to OUT>, "sha256": ...}``, hashed from the
bytes as they were written. Nothing here knows the files' format, so the list stays right when the
confidence store's layout changes: whatever a writer puts on disk for an image is listed and checked.

Inputs: ``input_size``, ``input_mtime_ns`` and ``input_sha256`` of the image file that was labelled. A file
whose size and modification time are unchanged is taken as unchanged (no read); otherwise it is hashed again,
so a file that was only touched (same bytes) is still recognised as the same input.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

FINGERPRINT_KEYS = ("input_size", "input_mtime_ns", "input_sha256")
_READ_BLOCK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str | None:
    """sha256 of a file's bytes, or None when it does not exist."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(_READ_BLOCK), b""):
                digest.update(block)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    return digest.hexdigest()


def file_entries(files: Mapping[str, bytes]) -> list[dict[str, str]]:
    """``output_files`` entries of files just written: ``{relative path: bytes}`` -> sorted path/sha256 pairs."""
    return [{"path": path, "sha256": sha256_bytes(data)} for path, data in sorted(files.items())]


def entry_problem(out: Path, entry: Mapping[str, str]) -> str | None:
    """What is wrong with one listed output file on disk (missing, or other bytes), or None."""
    path = Path(out) / entry["path"]
    got = file_sha256(path)
    if got is None:
        return f"{path}: missing (listed in the manifest)"
    if got != entry["sha256"]:
        return f"{path}: sha256 differs from the manifest (file changed or damaged)"
    return None


def entries_problems(out: Path, entries: Sequence[Mapping[str, str]] | None) -> list[str]:
    return [p for p in (entry_problem(out, e) for e in entries or ()) if p is not None]


# ---------------------------------------------------------------------------------------------------------
# input fingerprints


def input_fingerprint(path: Path, stat: os.stat_result | None = None) -> dict[str, Any]:
    """``input_size``, ``input_mtime_ns`` (from ``stat``, taken before the bytes are read, when given) and
    ``input_sha256`` of an input file; all None when it cannot be read."""
    try:
        stat = stat or os.stat(path)
    except OSError:
        return dict.fromkeys(FINGERPRINT_KEYS)
    digest = file_sha256(path)
    if digest is None:
        return dict.fromkeys(FINGERPRINT_KEYS)
    return {"input_size": stat.st_size, "input_mtime_ns": stat.st_mtime_ns, "input_sha256": digest}


InputState = Literal["same", "touched", "changed", "missing", "unknown"]


@dataclass(frozen=True)
class InputCheck:
    """An input compared with the fingerprint its row recorded.

    ``same``: size and mtime unchanged (or, with ``rehash``, the same bytes); ``touched``: size or mtime
    changed but the bytes are the same (``fingerprint`` is the new one to record); ``changed``: other bytes;
    ``missing``: the file cannot be read; ``unknown``: the row has no fingerprint (an older manifest).
    """

    state: InputState
    fingerprint: dict[str, Any] | None = None
    reason: str = ""


def check_input(row: Mapping[str, Any], path: Path, rehash: bool = False) -> InputCheck:
    """Compare the input file at ``path`` with the fingerprint in ``row`` (reads it only when size or mtime
    changed, or with ``rehash``)."""
    if row.get("input_sha256") is None:
        return InputCheck("unknown")
    try:
        stat = os.stat(path)
    except OSError as exc:
        return InputCheck("missing", reason=f"cannot read {path} ({exc.strerror or exc})")
    same_stat = stat.st_size == row["input_size"] and stat.st_mtime_ns == row["input_mtime_ns"]
    if same_stat and not rehash:
        return InputCheck("same")
    fingerprint = input_fingerprint(path, stat)
    if fingerprint["input_sha256"] is None:
        return InputCheck("missing", reason=f"cannot read {path}")
    if fingerprint["input_sha256"] != row["input_sha256"]:
        detail = f"{row['input_size']} -> {stat.st_size} bytes" if stat.st_size != row["input_size"] else "same size"
        return InputCheck("changed", fingerprint, reason=f"{path}: other content than when labelled ({detail})")
    return InputCheck("same" if same_stat else "touched", fingerprint)
