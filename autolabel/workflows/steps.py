"""Steps the workflows share: the synthetic city, training, labelling and evaluating (each resumable), and the
class groups and per-class attention of the paper's failure modes.

Every step calls a stage's own Python API and leaves that stage's usual output, and a rerun skips what is
finished (the city is complete, training resumes from ``last.pt`` and stops at once when done, ``generate``
skips labelled images, evaluations are keyed by checkpoint hash).
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from autolabel.classes import ClassSet
from autolabel.config import PipelineConfig, load_config, replace
from autolabel.data.datasets import Sample
from autolabel.data.io import read_image, read_label
from autolabel.data.sources import Source
from autolabel.errors import DataError
from autolabel.evaluate import checkpoint as evaluate
from autolabel.evaluate.audit import audit_labelset
from autolabel.fs import write_json
from autolabel.generate.runner import GenerateJob, GenerateResult, run_generate
from autolabel.models.checkpoint import checkpoint_sha256, load_checkpoint
from autolabel.models.evaluation import EvalSettings
from autolabel.models.predict import normalise, predict_logits
from autolabel.synth import make_synthetic_city, v2
from autolabel.synth.render import SYNTH_VERSION
from autolabel.train.loop import fit
from autolabel.train.state import LAST, STATE

# the class groups of the paper's failure modes (fixed before any result: thin structures vs large regions)
THIN = ("pole", "traffic light", "traffic sign", "person", "fence")
LARGE = ("road", "sidewalk", "building", "vegetation", "terrain", "sky", "car")


def group_mean(values: Mapping[str, float | None], names: Sequence[str]) -> float | None:
    """Mean of ``values`` over the classes of a group that have a value (None when none has)."""
    present: list[float] = [v for v in (values.get(c) for c in names) if v is not None]
    return float(np.mean(present)) if present else None


@dataclass(frozen=True)
class DemoSettings:
    """What the demo makes: the synthetic city's size, and the pipeline config that trains on it."""

    out: Path
    config: Path  # pipelines/demo.toml
    overrides: tuple[str, ...] = ()
    train: int = 200
    val: int = 50
    extra: int = 400
    size: tuple[int, int] = v2.DESIGN_SIZE  # (width, height)
    seed: int = 0
    synth_workers: int = 2
    version: int = SYNTH_VERSION  # of the synthetic city (1 remakes the results made before version 2)


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
        version=settings.version,
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


@torch.inference_mode()
def attention_by_class(
    cfg: PipelineConfig,
    checkpoint: Path,
    samples: Sequence[Sample],
    classes: ClassSet,
    scales: Sequence[float] = (0.5, 1.0, 2.0),
) -> dict[str, dict[str, float]]:
    """Mean attention of each attended scale over the pixels of each ground-truth class (at full size)."""
    model = load_checkpoint(checkpoint, expected_num_classes=classes.num_classes).model
    lut = classes.label_to_train_lut()
    sums: dict[str, np.ndarray] = {}
    counts = np.zeros(classes.num_classes, dtype=np.int64)
    for sample in samples:
        if sample.label is None:
            raise DataError(f"{sample.image}: no label; attention by class needs labelled images")
        image = torch.from_numpy(read_image(sample.image))[None]  # (1, H, W, 3) uint8
        outputs = predict_logits(model, normalise(image, cfg.data.mean, cfg.data.std), scales)
        label = torch.from_numpy(read_label(sample.label, lut).astype(np.int64)).flatten()
        valid = label < classes.num_classes
        counts += np.bincount(label[valid].numpy(), minlength=classes.num_classes)
        for key in (k for k in outputs if k.startswith("attn_")):
            attn = F.interpolate(outputs[key], size=image.shape[1:3], mode="bilinear", align_corners=False)
            per_class = torch.bincount(
                label[valid], weights=attn.flatten()[valid].double(), minlength=classes.num_classes
            )
            sums[key] = sums.get(key, 0) + per_class.numpy()
    return {
        key: {name: float(total[c] / counts[c]) for c, name in enumerate(classes.names) if counts[c]}
        for key, total in sums.items()
    }


def cached_attention(
    cfg: PipelineConfig, checkpoint: Path, samples: Sequence[Sample], classes: ClassSet, out_json: Path
) -> dict[str, dict[str, float]]:
    """:func:`attention_by_class` at ``model.infer_scales``, written to ``out_json`` and reused while the JSON
    belongs to this checkpoint."""
    sha = checkpoint_sha256(checkpoint)
    scales = list(cfg.model.infer_scales)
    if out_json.is_file():
        previous = json.loads(out_json.read_text())
        if previous.get("checkpoint_sha256") == sha and previous.get("scales") == scales:
            return previous["attention"]
    attention = attention_by_class(cfg, checkpoint, samples, classes, scales)
    write_json(out_json, {"checkpoint_sha256": sha, "scales": scales, "attention": attention})
    return attention
