"""The report's review section: the images `review export` selected, with their scores and links to the files."""

from __future__ import annotations

import os
from html import escape
from pathlib import Path
from typing import Any

from autolabel.report import html
from autolabel.review.names import SIGNALS
from autolabel.review.package import read_package


def _link(target: Path, page_dir: Path, text: str) -> str:
    """A relative link from the page's folder (file links work wherever the two folders are moved together)."""
    href = Path(os.path.relpath(target.resolve(), page_dir.resolve())).as_posix()
    return f'<a href="{escape(href)}">{escape(text)}</a>'


def _value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def review_section(package_file: Path, page_dir: Path, meta: dict[str, Any]) -> str:
    """A table of the review selection (rank, id, score, signals, links to image, package label, set label)."""
    package = read_package(package_file)
    folder = package.path.parent
    signals = list(package.data.get("signals_used") or [])
    labelset = Path(package.data.get("labelset") or ".")
    head = ["rank", "image id", "score", *(SIGNALS.get(s, s) for s in signals), "files"]
    rows = []
    for entry in package.images:
        files = entry.get("files") or {}
        links = [
            _link(folder / files["image"], page_dir, "image") if "image" in files else "",
            _link(folder / files["label"], page_dir, f"{package.format} label") if "label" in files else "",
            _link(labelset / entry["label"], page_dir, "label set's label"),
        ]
        cells = [
            str(entry["rank"]),
            escape(entry["id"]),
            f"{entry['score']:.3f}",
            *(_value(entry["signals"].get(s)) for s in signals),
            " · ".join(link for link in links if link),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    table = (
        "<table>\n<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>\n" + "\n".join(rows) + "\n</table>"
    )
    intro = (
        f"{len(package.images)} of {package.data.get('candidates', '?')} images selected by "
        f"{', '.join(signals) or 'nothing'} for {package.format} ({package.path}). "
        f"Score: {package.data.get('scoring')}."
    )
    parts = [html.paragraph(intro), table]
    if package.labelset_id != meta.get("labelset_id"):
        parts.insert(
            1,
            html.paragraph(
                f"The package was exported from label set {package.labelset_id}, not from this one "
                f"({meta.get('labelset_id')}).",
                "note",
            ),
        )
    return html.section(f"Review selection ({len(package.images)})", *parts, anchor="review")
