"""The whole pipeline on a synthetic city, as one resumable Python call (``autolabel demo`` / ``make demo``).

synth -> teacher on fine labels -> ``generate`` on ``train_extra`` -> two students: fine + auto labels, and
the baseline fine + human coarse labels -> evaluate all three on ``val`` -> audit both label sets against the
true fine labels -> where the teacher's attention goes (thin vs large classes) -> report. Every stage calls
the stage's own Python API and leaves its usual output, and a rerun skips what is finished (the city is
complete, training resumes from ``last.pt`` and stops at once when done, ``generate`` skips labelled images,
evaluations and attention are keyed by checkpoint hash).

Layout under ``out``::

    city/  teacher/  labels/  coarse_labels/  student_auto/  student_coarse/
    eval/{teacher,student_coarse,student_auto,attention}.json  audit/{auto,coarse}.json  report/index.html
    results.json
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autolabel.classes import class_set_from_config
from autolabel.config import replace
from autolabel.data.sources import Source, discover_split
from autolabel.fs import write_json
from autolabel.labelset.human import coarse_labelset
from autolabel.report import build_report
from autolabel.train.state import LAST
from autolabel.workflows.steps import (
    LARGE,
    THIN,
    DemoSettings,
    audit,
    audit_summary,
    cached_attention,
    demo_config,
    evaluate_checkpoint,
    group_mean,
    label_pool,
    make_city,
    run_side_by_side,
    train_model,
)

log = logging.getLogger(__name__)

StageFn = Callable[[str], None]


@dataclass
class DemoResult:
    """Where everything went and the headline numbers."""

    out: Path
    report: Path
    miou: dict[str, float | None] = field(default_factory=dict)  # model name -> val mIoU (multi-scale)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)  # label set -> coverage / audit numbers
    # the teacher's mean attention per scale key over the val pixels of each group (THIN, LARGE)
    attention: dict[str, dict[str, float | None]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall time

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "report": str(self.report),
            "miou": self.miou,
            "labels": self.labels,
            "attention": self.attention,
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
        }


MODELS = {  # result name -> (run folder, label-set folder or None for the teacher)
    "teacher (fine)": ("teacher", None),
    "student (fine + human coarse)": ("student_coarse", "coarse_labels"),
    "student (fine + auto coarse)": ("student_auto", "labels"),
}


def run_demo(settings: DemoSettings, on_stage: StageFn | None = None) -> DemoResult:
    """Run (or finish) every stage of the demo under ``settings.out``; returns the numbers and the report."""
    out = Path(settings.out).resolve()
    settings = replace(settings, out=out)
    cfg = demo_config(settings)
    classes = class_set_from_config(cfg.classes)
    result = DemoResult(out=out, report=out / "report" / "index.html")
    stage = functools.partial(_timed_stage, result, on_stage)

    with stage("synth"):
        make_city(settings)
    with stage("teacher"):
        teacher = train_model(cfg, out / "teacher")
    with stage("generate"):
        label_pool(cfg, teacher, out / "labels", classes)
    with stage("coarse label set"):
        extra = discover_split(cfg.data, cfg.generate.split)
        coarse_labelset(
            extra,
            out / "coarse_labels",
            classes,
            Source.from_config(cfg.data, cfg.generate.split),
            centroid_tile=cfg.generate.centroid_tile,
        )
    with stage("students"):
        # two small trainings side by side, one thread each, use two cores better than one after the other
        run_side_by_side(
            [(train_model, (cfg, out / run, [out / labels])) for run, labels in MODELS.values() if labels is not None],
            jobs=2,
        )
    val = [s for s in discover_split(cfg.data, cfg.data.val_split) if s.label is not None]
    for name, (run, _) in MODELS.items():
        with stage(f"evaluate: {name}"):
            metrics = evaluate_checkpoint(cfg, out / run / LAST, val, classes, out / "eval" / f"{run}.json")
            result.miou[name] = metrics["miou"]
    with stage("audit"):
        for key, folder in (("auto", "labels"), ("coarse", "coarse_labels")):
            result.labels[key] = audit_summary(audit(out / folder, classes, out / "audit" / f"{key}.json"))
    with stage("attention"):
        per_class = cached_attention(cfg, teacher, val, classes, out / "eval" / "attention.json")
        result.attention = {
            key: {group: group_mean(values, names) for group, names in (("thin", THIN), ("large", LARGE))}
            for key, values in per_class.items()
        }
    with stage("report"):
        build_report(
            out / "labels",
            out / "report",
            classes=classes,
            evaluations={name: out / "eval" / f"{run}.json" for name, (run, _) in MODELS.items()},
            audits={"auto labels": out / "audit" / "auto.json", "human coarse": out / "audit" / "coarse.json"},
        )
    write_json(out / "results.json", result.to_dict())
    return result


@contextlib.contextmanager
def _timed_stage(result: DemoResult, on_stage: StageFn | None, name: str) -> Iterator[None]:
    """Tell the caller a stage starts, and record its wall time in ``result.seconds``."""
    log.info("demo stage: %s", name)
    if on_stage is not None:
        on_stage(name)
    start = time.perf_counter()
    try:
        yield
    finally:
        result.seconds[name] = time.perf_counter() - start


# ---------------------------------------------------------------------------------------------------------
# the printed summary


def results_table(result: DemoResult) -> str:
    """A short plain-text table of the demo's numbers."""

    def pct(v: float | None) -> str:
        return "  n/a" if v is None else f"{100 * v:5.1f}"

    width = max(len(n) for n in result.miou) if result.miou else 10
    lines = [f"{'model (val, scales 0.5/1/2)':<{width}}  mIoU"]
    lines += [f"{name:<{width}}  {pct(v)}" for name, v in result.miou.items()]
    lines.append("")
    # precision: of the pixels a label set labels, the share its label is right (audit "accuracy")
    lines.append(f"{'label set vs true fine labels':<{width}}  cover  prec.  mIoU")
    for key, name in (("coarse", "human coarse"), ("auto", "auto (teacher, p > threshold)")):
        if key in result.labels:
            v = result.labels[key]
            lines.append(f"{name:<{width}}  {pct(v['coverage'])}  {pct(v['accuracy'])} {pct(v['miou'])}")
    if result.attention:
        lines.append("")
        lines.append(f"{'teacher attention on val pixels':<{width}}  thin  large")
        for key, groups in result.attention.items():
            cells = "  ".join("  n/a" if groups.get(g) is None else f"{groups[g]:.2f}" for g in ("thin", "large"))
            lines.append(f"{key + ' (1 = use this scale)':<{width}}  {cells}")
    total = sum(result.seconds.values())
    lines.append("")
    stages = ", ".join(f"{k} {v:.0f}s" for k, v in result.seconds.items())
    lines.append(f"time: {total / 60:.1f} min ({stages})")
    return "\n".join(lines)
