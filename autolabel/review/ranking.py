"""Which images most need a human look: ranking signals from the manifest, one documented score.

Signals (higher means "look at me"):

    confidence    1 - mean confidence (mean max softmax probability over the image)
    ignored       share of pixels the threshold left unlabelled (ignore_count / pixels)
    rare          share of pixels labelled with a boost class (student.boost_classes): rare classes are
                  where a teacher errs most and where a student's class-uniform sampling looks most
    disagreement  scale disagreement: share of pixels whose argmax differs between the smallest and the
                  largest inference scale (recorded by `generate`, see autolabel.generate.signals)
    flip          share of pixels whose argmax differs between the image and its mirror image (with flip)

Score: each chosen signal becomes its percentile among the candidate images (the share of the other
candidates it is higher than, ties counting half), so signals on different scales weigh alike; an image's
score is the mean of its percentiles. An image without a value of a signal (a manifest written before the
signal existed) gets percentile 0 for it; a signal no candidate has is left out with a warning, so old
label sets rank by what they have. Candidates are the ``ok`` images whose label came from the teacher
(human corrections are not reviewed twice). The top N by score are selected; ties go to the smaller image id.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autolabel.errors import ReviewError
from autolabel.review.names import SIGNALS

log = logging.getLogger(__name__)

SCORING = (
    "each signal -> its percentile among the candidates (share of others it exceeds, ties half); "
    "score = mean percentile of the chosen signals; missing value -> 0; ties -> smaller id first"
)


def parse_signals(by: str | Sequence[str]) -> tuple[str, ...]:
    """``"confidence,disagreement"`` or a sequence of names -> checked names, in order, without repeats."""
    names = [n.strip() for n in (by.split(",") if isinstance(by, str) else by) if n.strip()]
    if not names:
        raise ReviewError(f"--by: expected one or more of {', '.join(SIGNALS)}")
    for name in names:
        if name not in SIGNALS:
            raise ReviewError(f"--by {name!r}: unknown signal; expected one of {', '.join(SIGNALS)}")
    return tuple(dict.fromkeys(names))


def signal_value(row: dict[str, Any], name: str, boost_ids: Sequence[int] = ()) -> float | None:
    """One image's value of a signal (None when the manifest does not have it)."""
    pixels = (row.get("height") or 0) * (row.get("width") or 0)
    if name == "confidence":
        return None if row.get("mean_confidence") is None else 1.0 - float(row["mean_confidence"])
    if name == "ignored":
        return None if row.get("ignore_count") is None or not pixels else row["ignore_count"] / pixels
    if name == "rare":
        counts = row.get("class_counts")
        return None if counts is None or not pixels else sum(counts[i] for i in boost_ids) / pixels
    column = {"disagreement": "scale_disagreement", "flip": "flip_disagreement"}[name]
    value = row.get(column)
    return None if value is None else float(value)


def percentiles(values: Sequence[float | None]) -> np.ndarray:
    """Each value's share of the other (non-missing) values it exceeds, ties counting half; missing -> 0."""
    present = np.array([v for v in values if v is not None], dtype=np.float64)
    out = np.zeros(len(values), dtype=np.float64)
    if present.size < 2:
        out[[i for i, v in enumerate(values) if v is not None]] = 0.5
        return out
    ordered = np.sort(present)
    for i, v in enumerate(values):
        if v is None:
            continue
        below = np.searchsorted(ordered, v, side="left")
        equal = np.searchsorted(ordered, v, side="right") - below
        out[i] = (below + 0.5 * (equal - 1)) / (present.size - 1)
    return out


@dataclass(frozen=True)
class Ranked:
    """One candidate image with its score and raw signal values."""

    id: str
    score: float
    signals: dict[str, float | None]
    row: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class Ranking:
    """All candidates best first, and which requested signals could be used."""

    ranked: list[Ranked]
    used: tuple[str, ...]
    missing: tuple[str, ...]  # requested, but no candidate has a value

    def top(self, n: int) -> list[Ranked]:
        return self.ranked[:n]


def is_candidate(row: dict[str, Any]) -> bool:
    """Usable images whose label the teacher made (null source: a manifest from before sources existed)."""
    return row.get("status") == "ok" and (row.get("source") or "teacher") == "teacher"


def rank_rows(
    rows: Sequence[dict[str, Any]], by: str | Sequence[str], boost_ids: Sequence[int] | None = None
) -> Ranking:
    """Rank manifest rows by the signals ``by`` (see the module docstring for the score)."""
    names = parse_signals(by)
    if "rare" in names and not boost_ids:
        raise ReviewError(
            "signal 'rare' needs the rare classes: give --boost-classes NAMES or a --config whose "
            "student.boost_classes lists them"
        )
    candidates = [r for r in rows if is_candidate(r)]
    values = {n: [signal_value(r, n, boost_ids or ()) for r in candidates] for n in names}
    used = tuple(n for n in names if any(v is not None for v in values[n]))
    missing = tuple(n for n in names if n not in used)
    for name in missing:
        log.warning("no image has a value of signal %r (%s); ranking without it", name, SIGNALS[name])
    if candidates and not used:
        raise ReviewError(f"none of the signals {', '.join(names)} is recorded in this label set's manifest")
    scores = np.mean([percentiles(values[n]) for n in used], axis=0) if used else np.zeros(len(candidates))
    ranked = [
        Ranked(id=r["id"], score=float(scores[i]), signals={n: values[n][i] for n in names}, row=r)
        for i, r in enumerate(candidates)
    ]
    ranked.sort(key=lambda item: (-round(item.score, 12), item.id))  # rounding: equal scores tie exactly
    return Ranking(ranked=ranked, used=used, missing=missing)
