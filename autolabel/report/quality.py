"""Label quality in the report: the reliability diagram, per-class precision and coverage against the threshold
with the classes below the target precision marked, and the banner that makes a useless label set loud.

The numbers come from a ``calibration.json`` (``autolabel calibrate``) and from an ``evaluate-labels`` audit of
this very label set. The audit wins for the per-class curves when it is given: it measures the labels as written
against a reference, where the calibration measured the teacher on another split. The threshold marked for a
class is the label set's own (``class_thresholds`` in ``labelset.json``), read on the calibration's curves of the
probability the set was thresholded on: after the temperature when generate divided by one, before otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from autolabel.errors import DataError
from autolabel.labelset.calibration import read_calibration
from autolabel.report import html, plots
from autolabel.report.collect import Audit


@dataclass(frozen=True)
class ClassCurve:
    """One class: precision and coverage (0..1, None = nothing kept) at each threshold, and at its own."""

    name: str
    index: int
    thresholds: list[float]
    precision: list[float | None]
    coverage: list[float | None]
    threshold: float  # the label set's threshold for this class
    precision_at: float | None
    coverage_at: float | None
    flags: tuple[str, ...]  # why the class is marked (empty: it is fine)


@dataclass(frozen=True)
class Quality:
    """What the report shows of label quality."""

    source: str  # where the per-class curves come from
    target: float
    curves: list[ClassCurve]
    reliability: dict[str, list[dict[str, Any]]] | None  # "before"/"after": the calibration file's bins
    ece: tuple[float | None, float | None]
    temperature: Any

    @property
    def flagged(self) -> list[str]:
        """The classes marked as below the target (or unreached, or too rare to choose a threshold for)."""
        return [c.name for c in self.curves if c.flags]


def read_calibration_json(path: Path) -> dict[str, Any]:
    """The whole ``calibration.json`` (checked as generate checks it: a ConfigError naming the file)."""
    read_calibration(path, key="--calibration")
    raw = json.loads(Path(path).read_text())
    if not isinstance(raw.get("curves"), dict) or not isinstance(raw.get("reliability"), dict):
        raise DataError(f"--calibration {path}: no 'curves' or 'reliability' in the calibration file")
    return dict(raw)


def measure(
    meta: dict[str, Any], calibration: dict[str, Any] | None, audit: Audit | None, default_target: float
) -> Quality | None:
    """The label quality of the set described by ``meta`` (None when neither source is given). The target
    precision is the calibration file's, else the one ``labelset.json`` recorded, else ``default_target``."""
    if calibration is None and (audit is None or not audit.classes):
        return None
    names = list(meta["classes"])
    own = {n: float(meta["threshold"]) for n in names} | {
        n: float(t) for n, t in (meta.get("class_thresholds") or {}).items()
    }
    recorded = (meta.get("calibration") or {}).get("target_precision")
    target = float(calibration["target_precision"] if calibration else recorded or default_target)
    applied = meta.get("temperature") is not None
    marked: dict[str, list[str]] = {}
    if calibration is not None:
        chosen = calibration.get("thresholds") or {}
        prefix = "" if applied else "uncalibrated_"
        for why, key in (("unreached", "unreached_classes"), ("too few pixels", "fallback_classes")):
            for name in chosen.get(prefix + key) or ():
                marked.setdefault(name, []).append(why)
    if audit is not None and audit.classes:
        source = f"audit {audit.name} against {audit.reference}"
        rows = _audit_rows(audit, names, own)
    else:
        assert calibration is not None
        source = f"calibration on {calibration.get('data') or '?'} ({'after' if applied else 'before'} temperature)"
        rows = _calibration_rows(calibration, "after" if applied else "before", names, own)
    curves = []
    for c, thresholds, precision, coverage, at_p, at_c in rows:
        flags = list(marked.get(names[c], []))
        if at_p is not None and at_p < target:
            flags.insert(0, "below target")
        curves.append(ClassCurve(names[c], c, thresholds, precision, coverage, own[names[c]], at_p, at_c, tuple(flags)))
    ece = (calibration["ece"].get("before"), calibration["ece"].get("after")) if calibration else (None, None)
    return Quality(
        source=source,
        target=target,
        curves=curves,
        reliability=dict(calibration["reliability"]) if calibration else None,
        ece=ece,
        temperature=calibration.get("temperature") if calibration else None,
    )


_Row = tuple[int, list[float], list[float | None], list[float | None], float | None, float | None]


def _audit_rows(audit: Audit, names: Sequence[str], own: dict[str, float]) -> list[_Row]:
    """Per class with reference pixels or labels: the sweep's curves, and the figures at the set's thresholds."""
    sweep = audit.sweep or []
    xs = [float(s["threshold"]) for s in sweep]
    rows = []
    for c, name in enumerate(names):
        info = audit.classes.get(name) or {}
        if not info.get("reference_pixels") and info.get("precision") is None:
            continue  # the class is in neither label: nothing to say
        precision = [(s.get("precision") or {}).get(name) for s in sweep]
        coverage = [(s.get("class_coverage") or {}).get(name) for s in sweep]
        rows.append((c, xs, precision, coverage, info.get("precision"), info.get("coverage")))
    return rows


def _calibration_rows(raw: dict[str, Any], variant: str, names: Sequence[str], own: dict[str, float]) -> list[_Row]:
    """Per class the teacher predicted: the file's curves, read at the set's threshold (the grid point at or
    below it: ``p > t`` keeps the same pixels up to the next grid point's resolution)."""
    xs = [float(t) for t in raw["curves"]["thresholds"]]
    per = raw["curves"].get(variant) or {}
    rows = []
    for c, name in enumerate(names):
        curve = per.get(name)
        if not curve or not curve.get("pixels"):
            continue
        below = [j for j, t in enumerate(xs) if t <= own[name] + 1e-9]
        j = below[-1] if below else None
        precision, coverage = list(curve["precision"]), list(curve["coverage"])
        rows.append(
            (
                c,
                xs,
                precision,
                coverage,
                precision[j] if j is not None else None,
                coverage[j] if j is not None else None,
            )
        )
    return rows


def reliability_points(bins: Sequence[dict[str, Any]]) -> tuple[list[float], list[float | None]]:
    """(bin centres, accuracy in % or None for an empty bin) of a reliability table as calibrate writes it."""
    centres = [round((float(b["lo"]) + float(b["hi"])) / 2, 4) for b in bins]
    accuracy = [None if b.get("accuracy") is None else 100 * float(b["accuracy"]) for b in bins]
    return centres, accuracy


def reliability_chart(quality: Quality) -> Image.Image | None:
    """Accuracy per confidence bin before and after the temperature, and the diagonal of perfect calibration."""
    if not quality.reliability or not quality.reliability.get("before"):
        return None
    xs, before = reliability_points(quality.reliability["before"])
    series = [plots.Series("before T", before)]
    if quality.reliability.get("after"):
        after_x, after = reliability_points(quality.reliability["after"])
        if after_x == xs:
            series.append(plots.Series(f"after T = {_temperature_text(quality.temperature)}", after))
    series.append(plots.Series("perfectly calibrated", [100 * x for x in xs]))
    return plots.line_chart(
        xs,
        series,
        title="Reliability diagram",
        x_label="confidence (max softmax probability), bin centre",
        y_label="accuracy %",
        x_ticks=[x for j, x in enumerate(xs) if j % 2 == 0],
    )


def _temperature_text(temperature: Any) -> str:
    if isinstance(temperature, int | float):
        return f"{temperature:.3g}"
    return "per class" if temperature is not None else "?"


def _ticks(xs: Sequence[float]) -> list[float]:
    return [t for t in xs if abs(10 * t - round(10 * t)) < 1e-6] or list(xs[:1])


def class_chart(curve: ClassCurve) -> Image.Image:
    """Precision and coverage of one class against the threshold, its own threshold dashed."""
    return plots.line_chart(
        curve.thresholds,
        [
            plots.Series("precision %", [None if v is None else 100 * v for v in curve.precision]),
            plots.Series("coverage %", [None if v is None else 100 * v for v in curve.coverage]),
        ],
        title=f"{curve.name}  ({', '.join(curve.flags)})" if curve.flags else curve.name,
        x_label="threshold",
        y_label="%",
        marker_x=curve.threshold,
        size=(440, 280),
        x_ticks=_ticks(curve.thresholds),
    )


def quality_section(quality: Quality, save: Callable[[Image.Image, str], str]) -> str:
    """The "Label quality" section: reliability diagram, per-class table and curves."""
    parts = [
        html.paragraph(
            f"Per class: precision and coverage of the labels against the threshold (from the {quality.source}); "
            f"the class's own threshold in this label set is dashed. Target precision {100 * quality.target:g}%."
        )
    ]
    chart = reliability_chart(quality)
    if chart is not None:
        before, after = quality.ece
        parts.append(html.figure(save(chart, "reliability.png"), "reliability diagram", width=chart.width))
        parts.append(
            html.paragraph(f"Expected calibration error: before T {_num(before)}, after T {_num(after)}.", "muted")
        )
    rows = [
        [
            c.name,
            f"{c.threshold:g}",
            _pct(c.precision_at),
            _pct(c.coverage_at),
            ", ".join(c.flags) or "ok",
        ]
        for c in quality.curves
    ]
    parts.append(
        html.table(
            ["class", "threshold", "precision %", "coverage %", "status"], rows, [False, True, True, True, False]
        )
    )
    for c in quality.curves:
        if len(c.thresholds) > 1:
            chart = class_chart(c)
            parts.append(html.figure(save(chart, f"quality_{c.index:03d}.png"), f"{c.name} curves", width=chart.width))
    return html.section("Label quality per class", *parts, anchor="quality")


def banner_lines(warnings: Sequence[str], quality: Quality | None) -> list[str]:
    """What the banner says: the manifest's warnings (:func:`autolabel.labelset.manifest.quality_warnings`)
    and the classes below the target precision."""
    lines = list(warnings)
    if quality is not None and quality.flagged:
        lines.append(
            f"{len(quality.flagged)} class(es) below the target precision {100 * quality.target:g}% "
            "(or never reaching it, or too rare to choose a threshold for): " + ", ".join(quality.flagged)
        )
    return lines


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.1f}"
