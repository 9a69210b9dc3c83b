"""Where a label set came from: its parent label set and, for self-training rounds, its round.

Two keys of ``labelset.json``, neither part of the label-set id (the teacher's sha256 already pins the
labels; these say how the set came about):

- ``parent_labelset_id``: the id of the label set this one was derived from (None for a first set);
- ``round``: for ``autolabel rounds``, ``{"index": k, "teacher": ..., "teacher_sha256": ..., "parent": ...}``
  where ``teacher`` and ``parent`` are paths relative to this label set's folder, so a moved run still
  resolves its chain.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from autolabel.errors import LabelSetError
from autolabel.labelset.meta import read_labelset, write_labelset

PARENT_KEY = "parent_labelset_id"
ROUND_KEY = "round"


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()


def record_round(
    out: str | Path,
    *,
    index: int,
    teacher: str | Path,
    teacher_sha256: str,
    parent: str | Path | None,
    threshold_schedule: str = "global",
) -> dict[str, Any]:
    """Write round ``index``'s lineage into ``OUT/labelset.json`` (its id unchanged); returns the new content.

    ``teacher`` is the checkpoint that labelled the set, ``parent`` the previous round's label set (None in
    round 1). Refuses a teacher whose sha256 is not the set's own ``teacher_sha256``.
    """
    out = Path(out)
    meta = read_labelset(out)
    if meta.get("teacher_sha256") != teacher_sha256:
        raise LabelSetError(
            f"{out}: labelled by teacher {str(meta.get('teacher_sha256'))[:12]}, not by {teacher} "
            f"({teacher_sha256[:12]}); remove the folder to relabel it"
        )
    parent_id = read_labelset(parent)["labelset_id"] if parent is not None else None
    block = {
        "index": int(index),
        "teacher": _relative(Path(teacher), out),
        "teacher_sha256": teacher_sha256,
        "parent": _relative(Path(parent), out) if parent is not None else None,
        "threshold_schedule": threshold_schedule,
    }
    new = {**meta, PARENT_KEY: parent_id, ROUND_KEY: block}
    if new != meta:
        write_labelset(out, new)
    return new


def lineage(out: str | Path) -> list[dict[str, Any]]:
    """``labelset.json`` of ``out``, then of its parent, and so on back to the first round (following the
    ``round.parent`` paths); a :class:`LabelSetError` when a parent is missing or is another label set."""
    chain = [read_labelset(out)]
    folder = Path(out)
    seen = {chain[0]["labelset_id"]}
    while (block := chain[-1].get(ROUND_KEY)) and block.get("parent"):
        folder = folder / block["parent"]
        parent = read_labelset(folder)
        expected = chain[-1].get(PARENT_KEY)
        if parent["labelset_id"] != expected:
            raise LabelSetError(f"{folder}: holds label set {parent['labelset_id']}, its child names {expected}")
        if parent["labelset_id"] in seen:
            raise LabelSetError(f"{folder}: label set {parent['labelset_id']} is its own ancestor")
        seen.add(parent["labelset_id"])
        chain.append(parent)
    return chain
