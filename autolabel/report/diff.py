"""The report's "Changes from the previous label set" section, from a ``diff.json`` of ``autolabel diff``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autolabel.errors import DataError
from autolabel.labelset.diff import largest_transitions
from autolabel.report import html


def read_diff(path: str | Path) -> dict[str, Any]:
    """A diff written by ``autolabel diff --json`` (or ``rounds``); a :class:`DataError` when it is not one."""
    path = Path(path)
    try:
        diff = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the label-set diff ({exc})") from None
    if not isinstance(diff, dict) or not {"a", "b", "classes", "confusion", "top_images"} <= diff.keys():
        raise DataError(f"{path}: not a label-set diff (expected the JSON of `autolabel diff`)")
    return diff


def _pct(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:+.1f}" if sign else f"{100 * value:.1f}"


def diff_section(diff: dict[str, Any], transitions: int = 10) -> str:
    """Totals, per-class gains / losses / flips, the largest transitions and the most-changed images."""
    a, b = diff["a"], diff["b"]
    facts = [
        ("previous label set (A)", f"{a['labelset_id']} ({a['path']})"),
        ("this label set (B)", f"{b['labelset_id']}"),
        ("images compared", f"{diff['images']:,}"),
        ("pixels changed", f"{_pct(diff['changed_share'])}%"),
        ("newly labelled (ignore -> class)", f"{_pct(diff['gained_share'])}%"),
        ("no longer labelled (class -> ignore)", f"{_pct(diff['lost_share'])}%"),
        ("class changed", f"{_pct(diff['flipped_share'])}%"),
        ("coverage A -> B", f"{_pct(diff['coverage_a'])}% -> {_pct(diff['coverage_b'])}%"),
        ("agreement where both label", f"{_pct(diff['agreement'])}%"),
    ]
    if diff["only_in_a"] or diff["only_in_b"]:
        facts.append(("not compared (in one set only)", f"A {diff['only_in_a']:,}, B {diff['only_in_b']:,}"))
    cols = ("pixels_a", "pixels_b", "gained", "lost", "flipped_from", "flipped_to")
    rows = [
        [name, *(f"{v[k]:,}" for k in cols), _pct(v["net_change"], sign=True)]
        for name, v in diff["classes"].items()
        if v["pixels_a"] or v["pixels_b"]
    ]
    moves = [[src, dst, f"{n:,}"] for src, dst, n in largest_transitions(diff, transitions)]
    top = [[r["id"], _pct(r["changed_share"]), f"{r['changed']:,}"] for r in diff["top_images"]]
    return html.section(
        "Changes from the previous label set",
        html.paragraph(
            "Pixel by pixel over the images both sets labelled (`autolabel diff`). Gained: A left the "
            "pixel unlabelled, B labels it with the class; lost: the reverse; flipped: the class changed."
        ),
        html.table(None, facts),
        html.table(
            ["class", "pixels in A", "pixels in B", "gained", "lost", "flipped from", "flipped to", "net %"],
            rows,
            [False] + [True] * 7,
        ),
        html.paragraph("Largest transitions A -> B:"),
        html.table(["A", "B", "pixels"], moves, [False, False, True]) if moves else html.paragraph("None."),
        html.paragraph("Images that changed most:"),
        html.table(["image id", "changed %", "pixels"], top, [False, True, True]) if top else html.paragraph("None."),
        anchor="diff",
    )
