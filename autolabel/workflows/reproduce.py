"""``make reproduce``: the paper's findings in miniature on the synthetic city, over several training seeds.

1. Table 3 analogue: single scale 1.0; average pooling over 0.5/1.0/2.0; explicit attention trained and
   evaluated on 0.5/1.0/2.0; hierarchical attention trained on 0.5/1.0 and evaluated on 0.5/1.0/2.0 and on
   0.25/0.5/1.0/2.0 -- val mIoU and training step time (relative to single scale).
2. Failure modes: per-class IoU of the single-scale model run at 0.5 and at 2.0 only, thin vs large classes;
   and where the hierarchical model's learned attention puts its weight, per class.
3. Table 4 analogue: the hierarchical model trained on fine labels only (Table 3's); students on fine +
   human coarse, fine + auto coarse at threshold 0.5, and at 0.9 (re-thresholded from the confidence store).
   The auto labels come from a teacher of the same architecture trained 3x longer (``train.epochs`` against
   the ``student.epochs`` of every compared row): at the short schedule its labels are too poor to help.

Every training is the stage's own :func:`autolabel.train.loop.fit` in a worker process (one thread each, two
side by side on two cores); runs resume like the demo's, so an interrupted ``make reproduce`` continues.
Results: ``results/reproduce.json`` (every seed's numbers, mean and spread) and ``results/reproduce.md``.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autolabel.classes import ClassSet, class_set_from_config
from autolabel.config import PipelineConfig, replace
from autolabel.data.datasets import Sample
from autolabel.data.sources import Source, discover_split
from autolabel.fs import atomic_write_bytes
from autolabel.labelset.human import coarse_labelset
from autolabel.train.state import LAST, iter_log
from autolabel.workflows.steps import (
    LARGE,
    THIN,
    DemoSettings,
    attention_by_class,
    demo_config,
    evaluate_checkpoint,
    label_pool,
    make_city,
    run_side_by_side,
    train_model,
)

log = logging.getLogger(__name__)

# Table 3: name -> (mscale, training scales, evaluation scales)
VARIANTS: dict[str, tuple[str, tuple[float, ...], tuple[float, ...]]] = {
    "single 1.0": ("single", (1.0,), (1.0,)),
    "avgpool 0.5/1.0/2.0": ("avgpool", (0.5, 1.0), (0.5, 1.0, 2.0)),
    "explicit 0.5/1.0/2.0": ("explicit", (0.5, 1.0, 2.0), (0.5, 1.0, 2.0)),
    "hierarchical 0.5/1.0/2.0": ("hierarchical", (0.5, 1.0), (0.5, 1.0, 2.0)),
    "hierarchical 0.25/0.5/1.0/2.0": ("hierarchical", (0.5, 1.0), (0.25, 0.5, 1.0, 2.0)),
}
TEACHER = "teacher"  # hierarchical, fine labels, train.epochs: labels train_extra for Table 4
# Table 4: name -> (label set or None, re-threshold)
STUDENTS: dict[str, tuple[str | None, float | None]] = {
    "fine only": (None, None),  # Table 3's hierarchical model: the students' schedule, no extra data
    "fine + human coarse": ("coarse_labels", None),
    "fine + auto coarse (p > 0.5)": ("labels", None),
    "fine + auto coarse (p > 0.9)": ("labels", 0.9),
}


@dataclass(frozen=True)
class ReproduceSettings:
    """Where to work, where the results go, and how many seeds."""

    work: Path  # runs, label sets, evaluations (resumable)
    results: Path  # reproduce.json + reproduce.md
    config: Path  # pipelines/reproduce.toml
    seeds: tuple[int, ...] = (0, 1, 2)
    overrides: tuple[str, ...] = ()
    train: int = 200
    val: int = 50
    extra: int = 400
    size: tuple[int, int] = (256, 128)
    jobs: int = 2  # trainings side by side, one thread each
    command: str = "make reproduce"


def run_dir(work: Path, seed: int, name: str) -> Path:
    safe = name.replace(" ", "_").replace("/", "-").replace("(", "").replace(")", "").replace(">", "gt")
    return work / f"seed{seed}" / safe


def variant_config(cfg: PipelineConfig, name: str, seed: int) -> PipelineConfig:
    """A Table 3 variant, trained on fine labels for the compared rows' schedule (``student.epochs``)."""
    mscale, train_scales, eval_scales = VARIANTS[name]
    model = replace(cfg.model, mscale=mscale, train_scales=train_scales, infer_scales=eval_scales)
    return replace(cfg, model=model, train=replace(cfg.train, seed=seed, epochs=cfg.epochs(student=True)))


def teacher_config(cfg: PipelineConfig, seed: int) -> PipelineConfig:
    """The labelling teacher: the base config's model on fine labels for ``train.epochs``."""
    return replace(cfg, train=replace(cfg.train, seed=seed))


def student_config(cfg: PipelineConfig, name: str, seed: int) -> PipelineConfig:
    _, threshold = STUDENTS[name]
    return replace(cfg, train=replace(cfg.train, seed=seed), student=replace(cfg.student, threshold=threshold))


# ---------------------------------------------------------------------------------------------------------
# the run


def run_reproduce(settings: ReproduceSettings, on_stage: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train, label, evaluate every seed; write ``results/reproduce.{json,md}``; return the JSON content."""
    started = time.perf_counter()
    say = on_stage or (lambda text: None)
    work = Path(settings.work).resolve()
    demo = DemoSettings(
        out=work,
        config=settings.config,
        overrides=settings.overrides,
        train=settings.train,
        val=settings.val,
        extra=settings.extra,
        size=settings.size,
    )
    cfg = demo_config(demo)
    classes = class_set_from_config(cfg.classes)
    say("synthetic city")
    make_city(demo)
    val = [s for s in discover_split(cfg.data, cfg.data.val_split) if s.label is not None]

    say(f"teachers and table 3: {len(_trained_variants()) + 1} trainings x {len(settings.seeds)} seeds")
    run_side_by_side(_fine_trainings(cfg, work, settings.seeds), settings.jobs)

    say("label sets: human coarse, and one auto-label set per seed's hierarchical teacher")
    extra = discover_split(cfg.data, cfg.generate.split)
    coarse_labelset(
        extra,
        work / "coarse_labels",
        classes,
        Source.from_config(cfg.data, cfg.generate.split),
        centroid_tile=cfg.generate.centroid_tile,
    )
    for seed in settings.seeds:
        teacher = run_dir(work, seed, TEACHER) / LAST
        label_pool(cfg, teacher, run_dir(work, seed, "labels"), classes)

    say(f"table 4: {len(STUDENTS) - 1} students x {len(settings.seeds)} seeds")
    run_side_by_side(
        [
            (
                train_model,
                (student_config(cfg, name, seed), run_dir(work, seed, name), [_labels_dir(work, seed, folder)]),
            )
            for seed in settings.seeds
            for name, (folder, _) in STUDENTS.items()
            if folder is not None
        ],
        settings.jobs,
    )

    say("evaluating")
    measured = run_side_by_side(
        [(evaluate_seed, (cfg, work, seed, val, classes)) for seed in settings.seeds], settings.jobs
    )
    per_seed = dict(zip(settings.seeds, measured, strict=True))
    results = summarise(per_seed, classes, settings, time.perf_counter() - started)
    results["epochs"] = {"teacher": cfg.epochs(student=False), "compared": cfg.epochs(student=True)}
    write_results(settings.results, results)
    return results


def _fine_trainings(cfg: PipelineConfig, work: Path, seeds: Sequence[int]) -> list[tuple[Callable, tuple]]:
    """Every training on fine labels only, the longest first so that two workers finish close together."""
    runs = [(teacher_config(cfg, seed), run_dir(work, seed, TEACHER)) for seed in seeds]
    runs += [
        (variant_config(cfg, name, seed), run_dir(work, seed, name))
        for name in sorted(_trained_variants(), key=lambda n: VARIANTS[n][0] != "explicit")
        for seed in seeds
    ]
    return [(train_model, (run_cfg, folder, ())) for run_cfg, folder in runs]


def _trained_variants() -> list[str]:
    """Variants that need a training of their own (the two hierarchical rows share one model)."""
    return [name for name in VARIANTS if _trained_name(name) == name]


def _trained_name(name: str) -> str:
    mscale, train_scales, _ = VARIANTS[name]
    return next(n for n, (m, t, _) in VARIANTS.items() if (m, t) == (mscale, train_scales))


def _labels_dir(work: Path, seed: int, folder: str) -> Path:
    return work / "coarse_labels" if folder == "coarse_labels" else run_dir(work, seed, "labels")


# ---------------------------------------------------------------------------------------------------------
# measuring one seed


def evaluate_seed(
    cfg: PipelineConfig, work: Path, seed: int, val: Sequence[Sample], classes: ClassSet
) -> dict[str, Any]:
    """Every number of one seed: Table 3, failure modes, Table 4."""
    table3 = {}
    for name, (_, _, scales) in VARIANTS.items():
        run = run_dir(work, seed, _trained_name(name))
        metrics = evaluate_checkpoint(cfg, run / LAST, val, classes, run / f"eval_{_scales_tag(scales)}.json", scales)
        table3[name] = {"miou": metrics["miou"], "iou": metrics["iou"], "step_seconds": step_seconds(run)}
    single = run_dir(work, seed, "single 1.0")
    failure = {
        f"{s:g}x": evaluate_checkpoint(cfg, single / LAST, val, classes, single / f"eval_{s:g}.json", (s,))["iou"]
        for s in (0.5, 2.0)
    }
    hier = run_dir(work, seed, "hierarchical 0.5/1.0/2.0")
    attention = attention_by_class(cfg, hier / LAST, val, classes)
    teacher = run_dir(work, seed, TEACHER)
    table4 = {
        TEACHER: evaluate_checkpoint(cfg, teacher / LAST, val, classes, teacher / "eval_0.5-1-2.json", (0.5, 1.0, 2.0))[
            "miou"
        ]
    }
    for name, (folder, _) in STUDENTS.items():
        run = hier if folder is None else run_dir(work, seed, name)
        table4[name] = evaluate_checkpoint(cfg, run / LAST, val, classes, run / "eval_0.5-1-2.json", (0.5, 1.0, 2.0))[
            "miou"
        ]
    return {"table3": table3, "failure_iou": failure, "attention": attention, "table4": table4}


def _scales_tag(scales: Sequence[float]) -> str:
    return "-".join(f"{s:g}" for s in scales)


def step_seconds(run: Path) -> float | None:
    """Mean wall time per training step from the run's log (first logged interval excluded: warm-up)."""
    points = [(r["step"], r["seconds"]) for r in iter_log(run) if r.get("event") == "train"]
    if len(points) < 3:
        return None
    (s0, t0), (s1, t1) = points[1], points[-1]
    return (t1 - t0) / (s1 - s0) if s1 > s0 else None


# ---------------------------------------------------------------------------------------------------------
# summary and files


def mean_std(values: Sequence[float | None]) -> dict[str, float | None]:
    """Mean and sample standard deviation (None when no value / one value for the spread)."""
    vals = [v for v in values if v is not None and v == v]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None, "n": len(vals)}


def summarise(
    per_seed: dict[int, dict[str, Any]], classes: ClassSet, settings: ReproduceSettings, seconds: float
) -> dict[str, Any]:
    """Per-seed numbers plus mean/spread of each headline figure, and what produced them."""
    seeds = list(per_seed)
    single_step = [per_seed[s]["table3"]["single 1.0"]["step_seconds"] for s in seeds]
    table3 = {}
    for name in VARIANTS:
        rel = [
            (per_seed[s]["table3"][name]["step_seconds"] or np.nan) / (t or np.nan)
            for s, t in zip(seeds, single_step, strict=True)
        ]
        table3[name] = {
            "miou": mean_std([per_seed[s]["table3"][name]["miou"] for s in seeds]),
            "step_time_vs_single": mean_std(rel),
        }
    failure = {
        group: {
            scale: mean_std([_group_mean(per_seed[s]["failure_iou"][scale], names) for s in seeds])
            for scale in ("0.5x", "2x")
        }
        for group, names in (("thin", THIN), ("large", LARGE))
    }
    failure_classes = {
        c: {scale: mean_std([per_seed[s]["failure_iou"][scale].get(c) for s in seeds]) for scale in ("0.5x", "2x")}
        for c in THIN + LARGE
    }
    attention = {
        key: {c: mean_std([per_seed[s]["attention"].get(key, {}).get(c) for s in seeds]) for c in THIN + LARGE}
        for key in sorted({k for s in seeds for k in per_seed[s]["attention"]})
    }
    table4 = {name: mean_std([per_seed[s]["table4"].get(name) for s in seeds]) for name in (TEACHER, *STUDENTS)}
    return {
        "command": settings.command,
        "seeds": seeds,
        "minutes": round(seconds / 60, 1),
        "machine": {
            "cpus": multiprocessing.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "city": {"train": settings.train, "val": settings.val, "extra": settings.extra, "size": list(settings.size)},
        "config": str(settings.config),
        "overrides": list(settings.overrides),
        "table3": table3,
        "failure_modes": {"groups": failure, "classes": failure_classes, "thin": list(THIN), "large": list(LARGE)},
        "attention": attention,
        "table4": table4,
        "per_seed": {str(s): v for s, v in per_seed.items()},
    }


def _group_mean(iou: dict[str, float | None], names: Sequence[str]) -> float | None:
    """Mean IoU over the classes of a group that have a value."""
    values = [iou[c] for c in names if iou.get(c) is not None]
    return float(np.mean(values)) if values else None


def _fmt(stat: dict[str, float | None], scale: float = 100.0, digits: int = 1) -> str:
    if stat["mean"] is None:
        return "n/a"
    spread = f" ± {scale * stat['std']:.{digits}f}" if stat["std"] is not None else ""
    return f"{scale * stat['mean']:.{digits}f}{spread}"


def markdown(results: dict[str, Any]) -> str:
    """The tables the README includes, with the command that produced them."""
    n = len(results["seeds"])
    city, machine = results["city"], results["machine"]
    lines = [
        f"Produced by `{results['command']}` ({n} seeds: mean ± sample std; {results['minutes']} min "
        f"on {machine['cpus']} CPU cores, torch {machine['torch']}). Synthetic city: {city['train']} "
        f"fine / {city['extra']} extra / {city['val']} val images of "
        f"{city['size'][0]}x{city['size'][1]}.",
        "",
    ]
    lines += [
        "**Table 3 analogue** (val mIoU %, training step time relative to single scale)",
        "",
        "| method | mIoU | step time |",
        "| --- | ---: | ---: |",
    ]
    lines += [
        f"| {name} | {_fmt(v['miou'])} | {_fmt(v['step_time_vs_single'], 1.0, 2)}x |"
        for name, v in results["table3"].items()
    ]
    groups = results["failure_modes"]["groups"]
    lines += [
        "",
        "**Failure modes** (single-scale model run at one scale; mean IoU % of the group)",
        "",
        "| classes | at 0.5x | at 2.0x |",
        "| --- | ---: | ---: |",
    ]
    lines += [
        f"| {g} ({', '.join(results['failure_modes'][g])}) | {_fmt(v['0.5x'])} | {_fmt(v['2x'])} |"
        for g, v in groups.items()
    ]
    if results["attention"]:
        keys = list(results["attention"])
        lines += [
            "",
            "**Learned attention** (hierarchical model, mean attention per ground-truth class; "
            "high = that scale's prediction is used)",
            "",
            "| class | " + " | ".join(keys) + " |",
            "| --- |" + " ---: |" * len(keys),
        ]
        for c in results["failure_modes"]["thin"] + results["failure_modes"]["large"]:
            cells = " | ".join(_fmt(results["attention"][k][c], 1.0, 2) for k in keys)
            lines.append(f"| {c} | {cells} |")
    epochs = results.get("epochs", {})
    lines += [
        "",
        "**Table 4 analogue** (val mIoU % of the student, hierarchical 0.5/1.0/2.0; every row "
        f"trains {epochs.get('compared', '?')} epochs except the teacher, "
        f"{epochs.get('teacher', '?')} epochs, whose labels the auto rows use)",
        "",
        "| training data | mIoU |",
        "| --- | ---: |",
    ]
    lines += [
        f"| {'teacher: fine only, long schedule' if name == TEACHER else name} | {_fmt(v)} |"
        for name, v in results["table4"].items()
    ]
    return "\n".join(lines) + "\n"


def write_results(folder: Path, results: dict[str, Any]) -> None:
    folder = Path(folder)
    atomic_write_bytes(folder / "reproduce.json", (json.dumps(results, indent=2) + "\n").encode())
    atomic_write_bytes(folder / "reproduce.md", markdown(results).encode())
