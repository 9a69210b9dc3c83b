"""The journal: manifest rows of finished images that no manifest part holds yet.

A manifest part covers a whole chunk and is written once every image of the chunk is final, so without more a
kill would lose every finished image of the chunks in flight. Each labelling process therefore appends the
row of every image it finishes, right after the image's files are final, to its own journal::

    OUT/manifest/.journal-<I>-of-<N>-<host>-<pid>.jsonl      one JSON row per line

(flushed per image, fsynced per batch). The next run of the shard, holding the shard's lock, *absorbs* the
journals left by dead runs: a row whose image already has a row in a part replaces it there (the part keeps
its name, which hashes only ids), the others go into one part per chunk. A journal is deleted only once its
rows are in parts; a torn last line (a kill mid-append) is skipped, losing at most that image.

Readers of the manifest ignore journals; ``verify`` reports one that is left (an interrupted run) and counts
the files its rows name as known. The name starts with a dot but is no temporary name
(:func:`autolabel.fs.is_temp_name`), so stale-temp cleaning never removes it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autolabel.errors import OutputError
from autolabel.labelset.manifest import part_paths, read_part, write_part
from autolabel.labelset.meta import MANIFEST_DIR

log = logging.getLogger(__name__)

JOURNAL_PREFIX = ".journal-"
JOURNAL_SUFFIX = ".jsonl"


def shard_tag(shard: str) -> str:
    """``"0/4"`` -> ``"0-of-4"`` (for file names)."""
    index, _, count = str(shard).partition("/")
    return f"{int(index)}-of-{int(count or 1)}"


def _host() -> str:
    # only [A-Za-z0-9_-]: a '.' could form the temporary-name mark ".tmp-"
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64] or "host"


def journal_path(out: Path, shard: str, pid: int | None = None) -> Path:
    """This process's journal for ``shard`` in ``out``."""
    name = f"{JOURNAL_PREFIX}{shard_tag(shard)}-{_host()}-{pid or os.getpid()}{JOURNAL_SUFFIX}"
    return Path(out) / MANIFEST_DIR / name


def journal_paths(out: Path, shard: str | None = None) -> list[Path]:
    """Journals in ``out`` (of ``shard`` only, when given)."""
    folder = Path(out) / MANIFEST_DIR
    if not folder.is_dir():
        return []
    prefix = JOURNAL_PREFIX + (f"{shard_tag(shard)}-" if shard is not None else "")
    return sorted(p for p in folder.iterdir() if p.name.startswith(prefix) and p.name.endswith(JOURNAL_SUFFIX))


def journal_shard(path: Path) -> str | None:
    """The shard (``"I/N"``) a journal's name says it belongs to."""
    match = re.match(rf"{re.escape(JOURNAL_PREFIX)}(\d+)-of-(\d+)-", path.name)
    return f"{match.group(1)}/{match.group(2)}" if match else None


class Journal:
    """Appends finished rows to one journal file; thread-safe (the writer threads append)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fh: Any = None
        self._dirty = False

    def append(self, row: dict[str, Any]) -> None:
        """One row, flushed to the OS at once (a killed process loses nothing already appended)."""
        line = json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n"
        with self._lock:
            try:
                if self._fh is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._fh = open(self.path, "a", encoding="utf-8")
                self._fh.write(line)
                self._fh.flush()
            except OSError as exc:
                raise OutputError(f"{self.path}: cannot append to the journal ({exc.strerror or exc})") from None
            self._dirty = True

    def sync(self) -> None:
        """fsync what was appended (called once per batch: survives a power cut too)."""
        with self._lock:
            if self._fh is not None and self._dirty:
                try:
                    os.fsync(self._fh.fileno())
                except OSError as exc:
                    raise OutputError(f"{self.path}: cannot sync the journal ({exc.strerror or exc})") from None
                self._dirty = False

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                try:
                    if self._dirty:
                        os.fsync(self._fh.fileno())
                finally:
                    self._fh.close()
                    self._fh = None
                    self._dirty = False


def _lines(path: Path) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """(line number, byte offset, row) of every well-formed line; torn lines (a kill mid-append) skipped."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return
    with fh:
        number, offset = 0, 0
        for raw in fh:
            number += 1
            start, offset = offset, offset + len(raw)
            try:
                row = json.loads(raw)
            except ValueError:
                log.warning("%s:%d: skipped a torn journal line", path, number)
                continue
            if isinstance(row, dict) and isinstance(row.get("id"), str) and raw.endswith(b"\n"):
                yield number, start, row


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The rows of a journal in the order they were appended (torn lines skipped)."""
    return [row for _, _, row in _lines(path)]


def _wins(new_status: str, old_status: str | None) -> bool:
    # the later row wins, except that an error row never hides an ok row of another journal (a retried task)
    return old_status is None or new_status == "ok" or old_status != "ok"


def journal_rows(paths: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """Latest row per id over ``paths`` (see :func:`index`)."""
    rows: dict[str, dict[str, Any]] = {}
    for path in paths:
        for _, _, row in _lines(path):
            if _wins(row["status"], rows.get(row["id"], {}).get("status")):
                rows[row["id"]] = row
    return rows


# what identifies a row's content, apart from timing (cheap to compare with a part's rows)
_KEY_COLUMNS = ("status", "error", "label_sha256", "input_sha256", "shard")


@dataclass(frozen=True)
class Entry:
    """Where the latest row of an id is in the journals, and its identifying values."""

    key: tuple[Any, ...]
    path: Path
    offset: int

    @property
    def status(self) -> str:
        return self.key[0]

    @property
    def error(self) -> str | None:
        return self.key[1]


def index(paths: Iterable[Path]) -> dict[str, Entry]:
    """id -> :class:`Entry` of its latest row over ``paths``, keeping no row in memory (a journal of a long
    run holds every row it finished)."""
    entries: dict[str, Entry] = {}
    for path in paths:
        for _, offset, row in _lines(path):
            old = entries.get(row["id"])
            if _wins(row["status"], old.status if old else None):
                entries[row["id"]] = Entry(tuple(row.get(k) for k in _KEY_COLUMNS), Path(path), offset)
    return entries


def _load(entry: Entry) -> dict[str, Any]:
    with open(entry.path, "rb") as fh:
        fh.seek(entry.offset)
        return json.loads(fh.readline())


def absorb(out: Path, paths: Sequence[Path], chunks: Sequence[Sequence[str]] = ()) -> dict[str, Entry]:
    """Move the rows of the journals ``paths`` into manifest parts, then delete the journals.

    A row whose id is in an existing part replaces that row where they differ (the part is rewritten under
    the same name); the rest go into one part per chunk of ``chunks`` (lists of ids) they belong to, and one
    more for ids in no chunk. Returns the journals' index (what they held, by id).
    """
    out = Path(out)
    entries = index(paths)
    if entries:
        placed: set[str] = set()
        changed = 0
        for part in part_paths(out):
            table = read_part(part)
            ids = table.column("id").to_pylist()
            if not any(i in entries for i in ids):
                continue
            keys = zip(*(table.column(k).to_pylist() for k in _KEY_COLUMNS), strict=True)
            stale = {i for i, key in zip(ids, keys, strict=True) if i in entries and entries[i].key != key}
            placed.update(i for i in ids if i in entries)
            if stale:
                write_part(out, [_load(entries[r["id"]]) if r["id"] in stale else r for r in table.to_pylist()])
                changed += len(stale)
        chunk_of = {i: k for k, ids in enumerate(chunks) for i in ids}
        groups: dict[int, list[str]] = {}
        for image_id in entries:
            if image_id not in placed:
                groups.setdefault(chunk_of.get(image_id, -1), []).append(image_id)
        for group in groups.values():
            write_part(out, [_load(entries[i]) for i in group])
            changed += len(group)
        if changed:
            log.info("moved %d journal rows of an interrupted run into the manifest", changed)
    for path in paths:
        path.unlink(missing_ok=True)
    return entries
