"""The whole pipeline on a synthetic city, as one resumable Python call (``autolabel demo`` / ``make demo``).

synth -> teacher on fine labels -> ``generate`` on ``train_extra`` -> two students: fine + auto labels, and
the baseline fine + human coarse labels -> evaluate all three on ``val`` -> audit both label sets against the
true fine labels -> report. Every stage calls the stage's own Python API and leaves its usual output, and a
rerun skips what is finished (the city is complete, training resumes from ``last.pt`` and stops at once when
done, ``generate`` skips labelled images, evaluations are keyed by checkpoint hash).

Layout under ``out``::

    city/  teacher/  labels/  coarse_labels/  student_auto/  student_coarse/
    eval/{teacher,student_coarse,student_auto}.json  audit/{auto,coarse}.json  report/index.html  results.json
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autolabel.classes import ClassSet, class_set_from_config
from autolabel.config import PipelineConfig, load_config, replace
from autolabel.data.datasets import Sample, discover
from autolabel.data.io import atomic_write_bytes, read_label
from autolabel.data.synth import make_synthetic_city
from autolabel.errors import DataError
from autolabel.evaluate.audit import audit_labelset
from autolabel.evaluate.evaluate import EvalSettings, evaluate_model
from autolabel.generate import labelset
from autolabel.generate.inputs import config_source, discover_source
from autolabel.generate.runner import GenerateJob, GenerateResult, run_generate
from autolabel.generate.sharding import chunked
from autolabel.generate.writer import WriteSettings, finalise_image
from autolabel.models.checkpoint import checkpoint_sha256, load_checkpoint
from autolabel.report import build_report
from autolabel.train.loop import fit
from autolabel.train.state import LAST, STATE

log = logging.getLogger(__name__)

StageFn = Callable[[str], None]
HUMAN_COARSE = "human-coarse"  # stands in for the teacher hash of a label set made from human labels


@dataclass(frozen=True)
class DemoSettings:
    """What the demo makes: the synthetic city's size, and the pipeline config that trains on it."""

    out: Path
    config: Path  # pipelines/demo.toml
    overrides: tuple[str, ...] = ()
    train: int = 200
    val: int = 50
    extra: int = 400
    size: tuple[int, int] = (256, 128)  # (width, height)
    seed: int = 0
    synth_workers: int = 2


@dataclass
class DemoResult:
    """Where everything went and the headline numbers."""

    out: Path
    report: Path
    miou: dict[str, float | None] = field(default_factory=dict)  # model name -> val mIoU (multi-scale)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)  # label set -> coverage / audit numbers
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall time

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "report": str(self.report),
            "miou": self.miou,
            "labels": self.labels,
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
        }


MODELS = {  # result name -> (run folder, label-set folder or None for the teacher)
    "teacher (fine)": ("teacher", None),
    "student (fine + human coarse)": ("student_coarse", "coarse_labels"),
    "student (fine + auto coarse)": ("student_auto", "labels"),
}


def demo_config(settings: DemoSettings) -> PipelineConfig:
    """The pipeline config with its data root pointed at the demo's city."""
    return load_config(settings.config, (*settings.overrides, f"data.root={settings.out / 'city'}"))


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
        extra = discover(cfg.data, cfg.generate.split)
        coarse_labelset(
            extra,
            out / "coarse_labels",
            classes,
            config_source(cfg.data, cfg.generate.split),
            centroid_tile=cfg.generate.centroid_tile,
        )
    with stage("students"):
        # two small trainings side by side, one thread each, use two cores better than one after the other
        run_side_by_side(
            [(train_model, (cfg, out / run, [out / labels])) for run, labels in MODELS.values() if labels is not None],
            jobs=2,
        )
    val = [s for s in discover(cfg.data, cfg.data.val_split) if s.label is not None]
    for name, (run, _) in MODELS.items():
        with stage(f"evaluate: {name}"):
            metrics = evaluate_checkpoint(cfg, out / run / LAST, val, classes, out / "eval" / f"{run}.json")
            result.miou[name] = metrics["miou"]
    with stage("audit"):
        for key, folder in (("auto", "labels"), ("coarse", "coarse_labels")):
            result.labels[key] = audit_summary(audit(out / folder, classes, out / "audit" / f"{key}.json"))
    with stage("report"):
        build_report(
            out / "labels",
            out / "report",
            classes=classes,
            evaluations={name: out / "eval" / f"{run}.json" for name, (run, _) in MODELS.items()},
            audits={"auto labels": out / "audit" / "auto.json", "human coarse": out / "audit" / "coarse.json"},
        )
    atomic_write_bytes(out / "results.json", (json.dumps(result.to_dict(), indent=2) + "\n").encode())
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
# the stages


def make_city(settings: DemoSettings) -> Path:
    """The synthetic city, with gtFine for train_extra too so auto labels can be audited; skipped when
    complete."""
    city = settings.out / "city"
    meta_path = city / "synth.json"
    if meta_path.is_file() and json.loads(meta_path.read_text()).get("complete"):
        return city
    make_synthetic_city(
        city,
        train=settings.train,
        val=settings.val,
        extra=settings.extra,
        size=settings.size,
        seed=settings.seed,
        workers=settings.synth_workers,
        extra_fine=True,
    )
    return city


def train_model(cfg: PipelineConfig, run_dir: Path, labels: Sequence[Path] = ()) -> Path:
    """Train a teacher (no ``labels``) or a student into ``run_dir``; resumes an unfinished run, returns
    ``last.pt``."""
    cfg = replace(cfg, train=replace(cfg.train, out_dir=run_dir))
    resume = (run_dir / LAST).is_file() and (run_dir / STATE).is_file()
    # without a checkpoint, whatever an interrupted start left there (log, config) is of no use
    fit(cfg, student=bool(labels), labels=labels, resume=resume, overwrite=not resume)
    return run_dir / LAST


def run_side_by_side(tasks: Sequence[tuple[Callable[..., Any], tuple]], jobs: int) -> list[Any]:
    """Run ``fn(*args)`` for each task in ``jobs`` worker processes with one torch thread each (several small
    trainings share two cores best so); in this process when ``jobs`` <= 1."""
    if jobs <= 1 or len(tasks) <= 1:
        return [fn(*args) for fn, args in tasks]
    # spawn, not fork: this process may already hold torch's thread pools
    with ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("spawn"), initializer=torch.set_num_threads, initargs=(1,)
    ) as pool:
        return [f.result() for f in [pool.submit(fn, *args) for fn, args in tasks]]


def label_pool(cfg: PipelineConfig, teacher: Path, out: Path, classes: ClassSet) -> GenerateResult:
    """``autolabel generate`` of the config's split with the teacher into ``out`` (resumes)."""
    source = config_source(cfg.data, cfg.generate.split)
    job = GenerateJob(teacher=teacher, out=out, generate=cfg.generate, data=cfg.data, source=source)
    result = run_generate(job, discover_source(source, out), classes)
    if result.errors:
        raise DataError(f"{out}: {len(result.errors)} images could not be labelled, e.g. {result.errors[0]}")
    return result


def coarse_labelset(
    samples: Sequence[Sample],
    out: Path,
    classes: ClassSet,
    source: dict[str, Any],
    *,
    centroid_tile: int = 1024,
    chunk_size: int = 64,
) -> Path:
    """The human coarse labels of ``samples`` written as a label set (same format as ``generate``'s), so a
    student trains on them through exactly the path it trains on auto labels. Skipped when complete."""
    with_coarse = [s for s in samples if s.coarse is not None]
    if not with_coarse:
        raise DataError(f"{source.get('root')}: no human coarse labels in split {source.get('split')!r}")
    meta = labelset.make_labelset_meta(
        teacher_sha256=HUMAN_COARSE,
        model_config={"labels": "gtCoarse"},
        scales=(1.0,),
        flip=False,
        # one rung at 0: every human-labelled pixel is "above threshold" (code 1), as the audit expects
        threshold=0.0,
        ladder=(0.0,),
        class_names=classes.names,
        label_ids=None,
        ignore_index=classes.ignore_index,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        tile_size=0,
        tile_overlap=0.0,
        confidence=False,
        centroid_tile=centroid_tile,
        source=source,
    )
    labelset.prepare_output(out, meta, overwrite=True)
    if labelset.read_manifest(out).num_rows == len(with_coarse):
        return out
    settings = WriteSettings(
        out=out,
        num_classes=classes.num_classes,
        shard="0/1",
        confidence=False,
        centroid_tile=centroid_tile,
        ignore_index=classes.ignore_index,
    )
    lut = classes.label_to_train_lut()
    for chunk in chunked(with_coarse, chunk_size):
        rows = []
        for sample in chunk:
            labels = read_label(sample.coarse, lut)
            # human labels are certain where they exist: confidence 1 on labelled pixels
            rows.append(
                finalise_image(
                    settings,
                    sample,
                    labels,
                    np.zeros_like(labels),
                    float((labels != classes.ignore_index).mean()),
                    {},
                    0.0,
                )
            )
        labelset.write_part(out, rows)
    return out


def evaluate_checkpoint(
    cfg: PipelineConfig,
    checkpoint: Path,
    samples: Sequence[Sample],
    classes: ClassSet,
    out_json: Path,
    scales: Sequence[float] | None = None,
) -> dict[str, Any]:
    """mIoU of a checkpoint at ``scales`` (default ``model.infer_scales``), written to ``out_json``; reused
    when the JSON already belongs to this checkpoint and these scales."""
    sha = checkpoint_sha256(checkpoint)
    scales = tuple(float(s) for s in (scales or cfg.model.infer_scales))
    if out_json.is_file():
        previous = json.loads(out_json.read_text())
        if previous.get("checkpoint_sha256") == sha and tuple(previous.get("scales", ())) == scales:
            return previous
    loaded = load_checkpoint(checkpoint, expected_num_classes=classes.num_classes)
    settings = EvalSettings(scales=scales, mean=cfg.data.mean, std=cfg.data.std, max_pixels=cfg.data.max_image_pixels)
    metrics = evaluate_model(loaded.model, samples, classes.label_to_train_lut(), classes.names, settings=settings)
    payload = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha,
        "images": len(samples),
        "scales": list(settings.scales),
        **metrics.to_dict(),
    }
    atomic_write_bytes(out_json, (json.dumps(payload, indent=2) + "\n").encode())
    return payload


def audit(labels: Path, classes: ClassSet, out_json: Path) -> dict[str, Any]:
    """``evaluate-labels`` of a label set against the city's true fine labels, written to ``out_json``."""
    report = audit_labelset(labels, "gtFine", classes)
    atomic_write_bytes(out_json, (json.dumps(report, indent=2) + "\n").encode())
    return report


def audit_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The audit numbers the results table shows."""
    return {
        "coverage": report["coverage"],
        "accuracy": report["accuracy"],
        "miou": report["miou"],
        "images": report["images"],
    }


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
    lines.append(f"{'label set vs true fine labels':<{width}}  cover  acc.  mIoU")
    for key, name in (("coarse", "human coarse"), ("auto", "auto (teacher, p > threshold)")):
        if key in result.labels:
            v = result.labels[key]
            lines.append(f"{name:<{width}}  {pct(v['coverage'])} {pct(v['accuracy'])} {pct(v['miou'])}")
    total = sum(result.seconds.values())
    lines.append("")
    stages = ", ".join(f"{k} {v:.0f}s" for k, v in result.seconds.items())
    lines.append(f"time: {total / 60:.1f} min ({stages})")
    return "\n".join(lines)
