"""Steps the workflows share: the synthetic city, training, labelling and evaluating, each resumable.

Every step calls a stage's own Python API and leaves that stage's usual output, and a rerun skips what is
finished (the city is complete, training resumes from ``last.pt`` and stops at once when done, ``generate``
skips labelled images, evaluations are keyed by checkpoint hash).
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from autolabel.classes import ClassSet
from autolabel.config import PipelineConfig, load_config, replace
from autolabel.data.datasets import Sample
from autolabel.data.sources import Source
from autolabel.errors import DataError
from autolabel.evaluate import checkpoint as evaluate
from autolabel.evaluate.audit import audit_labelset
from autolabel.fs import write_json
from autolabel.generate.runner import GenerateJob, GenerateResult, run_generate
from autolabel.models.checkpoint import checkpoint_sha256
from autolabel.models.evaluation import EvalSettings
from autolabel.synth import make_synthetic_city
from autolabel.train.loop import fit
from autolabel.train.state import LAST, STATE


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


def demo_config(settings: DemoSettings) -> PipelineConfig:
    """The pipeline config with its data root pointed at the demo's city."""
    return load_config(settings.config, (*settings.overrides, f"data.root={settings.out / 'city'}"))


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
    source = Source.from_config(cfg.data, cfg.generate.split)
    job = GenerateJob(teacher=teacher, out=out, generate=cfg.generate, data=cfg.data, source=source)
    result = run_generate(job, source.discover(exclude=out), classes)
    if result.errors:
        raise DataError(f"{out}: {len(result.errors)} images could not be labelled, e.g. {result.errors[0]}")
    return result


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
    settings = EvalSettings(scales=scales, mean=cfg.data.mean, std=cfg.data.std, max_pixels=cfg.data.max_image_pixels)
    payload = evaluate.evaluate_checkpoint(checkpoint, samples, classes, settings=settings)
    write_json(out_json, payload)
    return payload


def audit(labels: Path, classes: ClassSet, out_json: Path) -> dict[str, Any]:
    """``evaluate-labels`` of a label set against the city's true fine labels, written to ``out_json``."""
    report = audit_labelset(labels, "gtFine", classes)
    write_json(out_json, report)
    return report


def audit_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The audit numbers the results table shows."""
    return {
        "coverage": report["coverage"],
        "accuracy": report["accuracy"],
        "miou": report["miou"],
        "images": report["images"],
    }
