"""``make reproduce``: the paper's findings in miniature on the synthetic city, over several training seeds.

1. Table 3 analogue: single scale 1.0; average pooling over 0.5/1.0/2.0; explicit attention trained and
   evaluated on 0.5/1.0/2.0; hierarchical attention trained on 0.5/1.0 and evaluated on 0.5/1.0/2.0 and on
   0.25/0.5/1.0/2.0 -- val mIoU and training step time (relative to single scale).
2. Failure modes: per-class IoU of the single-scale model run at 0.5 and at 2.0 only, thin vs large classes;
   and where the hierarchical model's learned attention puts its weight, per class.
3. Table 4 analogue: the hierarchical model trained on fine labels only (Table 3's); students on fine +
   human coarse and on fine + auto coarse labels (threshold 0.5), and how right those auto labels are. The
   auto labels come from a teacher of the same architecture trained longer (``train.epochs`` against the
   ``student.epochs`` of every compared row), as the published teacher is.

4. The claims (:data:`CLAIMS`), each decided from the per-seed numbers by :mod:`autolabel.workflows.claims`,
   and the city's design measured against the trained network (receptive field per scale,
   :mod:`autolabel.workflows.geometry`).

Every training is the stage's own :func:`autolabel.train.loop.fit` in a worker process (one thread each, two
side by side on two cores); runs resume like the demo's, so an interrupted ``make reproduce`` continues.
Results: ``results/reproduce.json`` (every seed's numbers, mean and spread), ``results/claims.json`` and
``results/reproduce.md`` (what the README quotes).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autolabel.classes import ClassSet, class_set_from_config
from autolabel.config import PipelineConfig, replace
from autolabel.data.datasets import Sample
from autolabel.data.io import read_image
from autolabel.data.sources import Source, discover_split
from autolabel.errors import DataError
from autolabel.fs import atomic_write_bytes
from autolabel.labelset.human import coarse_labelset
from autolabel.models.checkpoint import load_checkpoint
from autolabel.models.predict import normalise
from autolabel.synth import v2
from autolabel.synth.render import SYNTH_VERSION
from autolabel.train.state import LAST, iter_log
from autolabel.workflows import claims as claims_module
from autolabel.workflows.claims import Claim
from autolabel.workflows.geometry import city_vs_network, receptive_field
from autolabel.workflows.steps import (
    LARGE,
    THIN,
    DemoSettings,
    attention_by_class,
    audit,
    demo_config,
    evaluate_checkpoint,
    group_mean,
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
}

HIER, EXPLICIT, AVGPOOL, SINGLE = (
    "hierarchical 0.5/1.0/2.0",
    "explicit 0.5/1.0/2.0",
    "avgpool 0.5/1.0/2.0",
    "single 1.0",
)
AUTO, COARSE, FINE = "fine + auto coarse (p > 0.5)", "fine + human coarse", "fine only"


def _miou_gain(seed: Mapping[str, Any], better: str, worse: str, table: str = "table3") -> float | None:
    rows = seed[table]
    a, b = (rows[n]["miou"] if table == "table3" else rows[n] for n in (better, worse))
    return None if a is None or b is None else a - b


def _step_ratio(seed: Mapping[str, Any]) -> float | None:
    hier, explicit = (seed["table3"][n]["step_seconds"] for n in (HIER, EXPLICIT))
    return hier / explicit if hier and explicit else None


def _failure_gain(seed: Mapping[str, Any], names: Sequence[str], better: str, worse: str) -> float | None:
    a, b = (group_mean(seed["failure_iou"][s], names) for s in (better, worse))
    return None if a is None or b is None else a - b


def _attention_gap(seed: Mapping[str, Any]) -> float | None:
    attn = seed["attention"].get("attn_0.5x", {})
    large, thin = group_mean(attn, LARGE), group_mean(attn, THIN)
    return None if large is None or thin is None else large - thin


# The paper's claims (docs/reproduce.md); per seed each is one number, decided by workflows.claims.judge.
CLAIMS = (
    Claim(
        "table3_hierarchical_beats_explicit",
        "hierarchical attention (trained on 0.5/1.0) beats explicit attention (trained on 0.5/1.0/2.0), "
        "both evaluated on 0.5/1.0/2.0: mIoU difference",
        lambda s: _miou_gain(s, HIER, EXPLICIT),
    ),
    Claim(
        "table3_hierarchical_beats_avgpool",
        "hierarchical attention beats averaging the scales' logits: mIoU difference",
        lambda s: _miou_gain(s, HIER, AVGPOOL),
    ),
    Claim(
        "table3_hierarchical_beats_single",
        "hierarchical attention on 0.5/1.0/2.0 beats the single-scale model: mIoU difference",
        lambda s: _miou_gain(s, HIER, SINGLE),
    ),
    Claim(
        "table3_pair_cost_vs_explicit",
        "a hierarchical training step (scale pair) costs less than half an explicit one (three scales; the "
        "paper: about a quarter): step time ratio",
        _step_ratio,
        rule="below",
        threshold=0.5,
        unit="ratio",
    ),
    Claim(
        "fig2_thin_better_at_2x",
        f"the single-scale model segments thin classes ({', '.join(THIN)}) better run at 2.0x than at "
        "0.5x: group mean IoU difference",
        lambda s: _failure_gain(s, THIN, "2x", "0.5x"),
        unit="IoU points",
    ),
    Claim(
        "fig2_large_better_at_05x",
        f"... and large regions ({', '.join(LARGE)}) better at 0.5x than at 2.0x: group mean IoU difference",
        lambda s: _failure_gain(s, LARGE, "0.5x", "2x"),
        unit="IoU points",
    ),
    Claim(
        "fig5_attention_05x_large_over_thin",
        "the hierarchical model's attention trusts 0.5x more on large-region pixels than on thin-class "
        "pixels: difference of the group means of attn_0.5x",
        _attention_gap,
        unit="attention",
    ),
    Claim(
        "table4_auto_beats_coarse",
        "the student on fine + auto coarse labels (p > 0.5) beats the one on fine + human coarse labels: "
        "mIoU difference",
        lambda s: _miou_gain(s, AUTO, COARSE, "table4"),
    ),
    Claim(
        "table4_auto_beats_fine_only",
        "... and the model on fine labels only: mIoU difference",
        lambda s: _miou_gain(s, AUTO, FINE, "table4"),
    ),
    Claim(
        "auto_label_precision_at_05",
        "auto labels at p > 0.5 are right on at least 95 % of the pixels they label (train_extra, against "
        "its true fine labels): precision",
        lambda s: s["auto_labels"]["precision"],
        rule="at_least",
        threshold=0.95,
        unit="precision",
    ),
)


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
    size: tuple[int, int] = v2.DESIGN_SIZE
    version: int = SYNTH_VERSION  # of the synthetic city
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
        version=settings.version,
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
    say("the city against the trained network")
    design = city_design(settings, per_seed)
    results = summarise(per_seed, classes, settings, time.perf_counter() - started)
    results["epochs"] = {"teacher": cfg.epochs(student=False), "compared": cfg.epochs(student=True)}
    results["city_design"] = design
    results["claims"] = claims_module.evaluate_claims(CLAIMS, results["per_seed"])
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
    labels = run_dir(work, seed, "labels")
    report = audit(labels, classes, labels.parent / "audit_labels.json")
    auto_labels = {"coverage": report["coverage"], "precision": report["accuracy"], "miou": report["miou"]}
    return {
        "table3": table3,
        "failure_iou": failure,
        "attention": attention,
        "table4": table4,
        "auto_labels": auto_labels,
        "receptive_field_px": single_scale_receptive_field(cfg, single / LAST, val),
    }


def single_scale_receptive_field(
    cfg: PipelineConfig, checkpoint: Path, val: Sequence[Sample], images: int = 4
) -> dict[str, dict[str, int]]:
    """The trained single-scale model's effective receptive field at 0.5x, 1.0x and 2.0x (pixels of the
    image), from the first ``images`` val images."""
    model = load_checkpoint(checkpoint).model
    batch = torch.from_numpy(np.stack([read_image(s.image) for s in val[:images]]))  # (B, H, W, 3) uint8
    return receptive_field(model, normalise(batch, cfg.data.mean, cfg.data.std))


def city_design(settings: ReproduceSettings, per_seed: dict[int, dict[str, Any]], scenes: int = 30) -> dict:
    """The city's measured properties against each seed's trained single-scale model: thin widths vs logit
    strides, and the share of bare ground whose nearest cue lies beyond its receptive field at 2.0x and within
    it at 0.5x (version 2; version 1 draws no bare-ground masks)."""
    if settings.version != 2:
        return {"version": settings.version}
    radii = {str(seed): numbers["receptive_field_px"] for seed, numbers in per_seed.items()}
    return {"version": settings.version, **city_vs_network(radii, scenes=scenes, size=settings.size)}


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
            scale: mean_std([group_mean(per_seed[s]["failure_iou"][scale], names) for s in seeds])
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
    attention_groups = {
        key: {
            group: mean_std([group_mean(per_seed[s]["attention"].get(key, {}), names) for s in seeds])
            for group, names in (("thin", THIN), ("large", LARGE))
        }
        for key in attention
    }
    table4 = {name: mean_std([per_seed[s]["table4"].get(name) for s in seeds]) for name in (TEACHER, *STUDENTS)}
    auto_labels = {
        key: mean_std([per_seed[s].get("auto_labels", {}).get(key) for s in seeds])
        for key in ("coverage", "precision", "miou")
    }
    return {
        "command": settings.command,
        "seeds": seeds,
        "minutes": round(seconds / 60, 1),
        "machine": {
            "cpus": multiprocessing.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "city": {
            "train": settings.train,
            "val": settings.val,
            "extra": settings.extra,
            "size": list(settings.size),
            "version": settings.version,
        },
        "config": str(settings.config),
        "overrides": list(settings.overrides),
        "table3": table3,
        "failure_modes": {"groups": failure, "classes": failure_classes, "thin": list(THIN), "large": list(LARGE)},
        "attention": attention,
        "attention_groups": attention_groups,
        "table4": table4,
        "auto_labels": auto_labels,
        "per_seed": {str(s): v for s, v in per_seed.items()},
    }


def _fmt(stat: dict[str, float | None], scale: float = 100.0, digits: int = 1, unit: str = "") -> str:
    if stat["mean"] is None:
        return "n/a"
    spread = f" ± {scale * stat['std']:.{digits}f}" if stat["std"] is not None else ""
    return f"{scale * stat['mean']:.{digits}f}{spread}{unit}"


def markdown(results: dict[str, Any]) -> str:
    """The tables the README includes, with the command that produced them."""
    n = len(results["seeds"])
    city, machine = results["city"], results["machine"]
    lines = [
        f"Produced by `{results['command']}` ({n} seeds: mean ± sample std; {results['minutes']} min "
        f"on {machine['cpus']} CPU cores, torch {machine['torch']}). Synthetic city version "
        f"{city.get('version', 1)}: {city['train']} fine / {city['extra']} extra / {city['val']} val images of "
        f"{city['size'][0]}x{city['size'][1]}.",
        "",
    ]
    if results.get("claims"):
        held = sum(c["holds"] for c in results["claims"])
        lines += [
            f"**Claims** ({held} of {len(results['claims'])} hold; `results/claims.json`). A difference holds "
            "when its mean over seeds is more than two standard errors above zero, a bound when the mean is "
            "more than two standard errors on the right side of it; with one seed nothing can hold.",
            "",
            claims_module.markdown(results["claims"]).rstrip(),
            "",
        ]
    lines += [
        "**Table 3 analogue** (val mIoU %, training step time relative to single scale)",
        "",
        "| method | mIoU | step time |",
        "| --- | ---: | ---: |",
    ]
    lines += [
        f"| {name} | {_fmt(v['miou'])} | {_fmt(v['step_time_vs_single'], 1.0, 2, 'x')} |"
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
    design = results.get("city_design") or {}
    if design.get("thin_widths"):
        lines += ["", *_design_lines(design)]
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
        for group, label in (("thin", "**thin (group mean)**"), ("large", "**large (group mean)**")):
            cells = " | ".join(_fmt(results["attention_groups"][k][group], 1.0, 2) for k in keys)
            lines.append(f"| {label} | {cells} |")
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
    auto = results.get("auto_labels") or {}
    if auto.get("precision", {}).get("mean") is not None:
        lines += [
            "",
            f"Auto labels (p > 0.5) of train_extra against its true fine labels: coverage {_fmt(auto['coverage'])} %, "
            f"precision {_fmt(auto['precision'])} %.",
        ]
    return "\n".join(lines) + "\n"


def _design_lines(design: dict[str, Any]) -> list[str]:
    """The city's thin widths against the logit strides, and its context distances against the trained
    single-scale model's receptive field."""
    lines = [
        "**The city against the network** (measured on "
        f"{design['scenes']} scenes; docs/synthetic_city.md): share of thin-structure pixels by width in "
        "logit pixels of the scale they are seen at",
        "",
        "| class | width px (5/50/95 %) | 0.5x: under 1 | 1.0x: 1 to 2 | 2.0x: 2 or more |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, w in design["thin_widths"].items():
        p, lp = w["width_px"], w["logit_px"]
        lines.append(
            f"| {name} | {p['p5']:.0f} / {p['p50']:.0f} / {p['p95']:.0f} | {100 * lp['0.5x']['under_1']:.0f} % | "
            f"{100 * lp['1x']['1_to_2']:.0f} % | {100 * lp['2x']['2_or_more']:.0f} % |"
        )
    lines += [
        "",
        "Bare road, sidewalk and terrain whose nearest cue lies beyond the trained single-scale model's "
        "receptive field at 2.0x and within it at 0.5x (radius holding 50 % / 90 % of the centre pixel's "
        "input gradient; per seed):",
        "",
        "| seed | radius 2.0x / 1.0x / 0.5x px (50 %) | share (50 %) | radius (90 %) | share (90 %) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for seed, shares in design["context_vs_receptive_field"].items():
        cells = []
        for share in ("50%", "90%"):
            r = shares[share]["radius_px"]
            within = shares[share]["beyond_2x_within_0.5x"]
            cells += [f"{r['2x']} / {r['1x']} / {r['0.5x']}", "n/a" if within is None else f"{100 * within:.0f} %"]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    return lines


def write_results(folder: Path, results: dict[str, Any]) -> None:
    """``reproduce.json`` (everything), ``claims.json`` (the claims alone) and ``reproduce.md``."""
    folder = Path(folder)
    atomic_write_bytes(folder / "reproduce.json", (json.dumps(results, indent=2) + "\n").encode())
    atomic_write_bytes(folder / "claims.json", (json.dumps(results.get("claims", []), indent=2) + "\n").encode())
    atomic_write_bytes(folder / "reproduce.md", markdown(results).encode())


# ---------------------------------------------------------------------------------------------------------
# the README quotes results/reproduce.md between two markers

README_START = "<!-- begin results/reproduce.md (python -m autolabel.workflows.reproduce README.md copies it) -->"
README_END = "<!-- end results/reproduce.md -->"


def splice_readme(readme: str, tables: str) -> str:
    """``readme`` with the text between :data:`README_START` and :data:`README_END` replaced by ``tables``."""
    if readme.count(README_START) != 1 or readme.count(README_END) != 1:
        raise DataError(f"README: expected one {README_START!r} and one {README_END!r} line")
    head, rest = readme.split(README_START)
    _, tail = rest.split(README_END)
    return f"{head}{README_START}\n\n{tables.strip()}\n\n{README_END}{tail}"


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m autolabel.workflows.reproduce README.md [results/reproduce.md]``: put the tables of the
    last ``make reproduce`` into the README (the only file it writes is the one it is given)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("readme", type=Path)
    parser.add_argument("tables", type=Path, nargs="?", default=Path("results/reproduce.md"))
    args = parser.parse_args(argv)
    text = splice_readme(args.readme.read_text(encoding="utf-8"), args.tables.read_text(encoding="utf-8"))
    atomic_write_bytes(args.readme, text.encode("utf-8"))


if __name__ == "__main__":
    main()
