"""Writing files so that a reader (or a rerun after a kill) never sees half of one.

Every output of the project goes through here: :func:`atomic_write_bytes` for a file, :func:`write_json` for a
JSON document, :func:`replace_dir` for a folder built next to its final place. Temporary names always start
with a dot and carry :data:`TEMP_MARK` (folders) or end in ``.tmp`` (files), so :func:`is_temp_name` can tell
what an interrupted write left behind and :func:`temp_target` what it was going to become.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from autolabel.errors import OutputError

TEMP_MARK = ".tmp-"  # in the name of every temporary folder (and some files) this package creates
FINAL_FILE_MODE = 0o644  # mkstemp creates 0600 files; written outputs should be readable like any other file


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the complete new one, never a partial one.

    The bytes go to a temporary file in the same directory (same filesystem, so the rename is atomic), are
    fsynced (skip that with ``durable=False`` for files that are cheap to remake: the rename stays atomic,
    only a power cut could then lose them), and then replace ``path``. Parent directories are created. On any
    failure the temporary file is removed and :class:`OutputError` names the path.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"{path}: cannot create file ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), FINAL_FILE_MODE)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"{path}: write failed ({exc.strerror or exc})") from None
        raise


def write_json(path: str | Path, payload: Any, *, durable: bool = True) -> None:
    """``payload`` as indented JSON (with a final newline), written atomically."""
    atomic_write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode("utf-8"), durable=durable)


def temp_sibling(path: Path, tag: str = "") -> Path:
    """A fresh temporary name next to ``path`` (``.NAME.tmp-TAGXXXX``) that :func:`is_temp_name` recognises."""
    return path.parent / f".{path.name}{TEMP_MARK}{tag}{uuid.uuid4().hex[:12]}"


def replace_dir(src: Path, dst: Path) -> None:
    """``os.replace`` for a folder: an existing ``dst`` is moved aside first, then removed."""
    if dst.exists():
        trash = temp_sibling(dst, "old-")
        os.replace(dst, trash)
        os.replace(src, dst)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)


def output_dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot be an output folder (a file in the way, nowhere this process may write), or None.

    Checked before any work starts, so a bad output folder is one message and not a half-made output.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        return "exists and is not a folder"
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot be made: {existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write in {existing} (permission denied)"
    return None


def is_temp_name(name: str) -> bool:
    """Names of temporary files/folders an interrupted atomic write leaves (ours, ``atomic_write_bytes``')."""
    return name.startswith(".") and (name.endswith(".tmp") or TEMP_MARK in name)


def temp_target(path: Path) -> Path | None:
    """The file a temporary file/folder was going to become (``.NAME.XXXX.tmp``, ``.NAME.tmp-XXXX``)."""
    name = path.name
    if TEMP_MARK in name:
        return path.with_name(name[1:].split(TEMP_MARK)[0])
    if name.startswith(".") and name.endswith(".tmp"):
        return path.with_name(name[1:-4].rsplit(".", 1)[0])
    return None


def link_or_copy(src: str | Path, dst: str | Path) -> bool:
    """Make ``dst`` a hard link to ``src`` (a copy where the filesystem cannot link), atomically; True if linked.

    Safe for files nobody rewrites in place: every writer here replaces files by rename, which leaves the other
    name's inode alone. A ``dst`` that already is ``src`` (same inode) is left as it is.
    """
    src, dst = Path(src), Path(dst)
    try:
        if dst.exists() and os.path.samefile(src, dst):
            return True
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.parent / f".{dst.name}.{uuid.uuid4().hex[:12]}.tmp"
    except OSError as exc:
        raise OutputError(f"{dst}: cannot create file ({exc.strerror or exc})") from None
    try:
        try:
            os.link(src, tmp)
            linked = True
        except OSError:
            shutil.copyfile(src, tmp)  # another filesystem, or one without hard links
            os.chmod(tmp, FINAL_FILE_MODE)
            linked = False
        os.replace(tmp, dst)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"{dst}: cannot write a copy of {src} ({exc.strerror or exc})") from None
    return linked
