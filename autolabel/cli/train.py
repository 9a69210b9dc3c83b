"""`autolabel train-teacher` and `autolabel train-student`: thin wrappers of :func:`autolabel.train.loop.fit`.

Both run under ``torchrun --nproc_per_node N -m autolabel train-...`` as well; only rank 0 shows progress.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from autolabel import api
from autolabel.cli.base import config_option, load_pipeline, main, progress, set_option
from autolabel.train.loop import FitResult
from autolabel.train.state import Position


class EpochProgress:
    """One progress bar per epoch, fed by :func:`fit`'s hooks (which only run on the main process)."""

    def __init__(self, epochs: int):
        self.epochs = epochs
        self.bar: Any = None

    def start(self, epoch: int, steps: int) -> None:
        self.close()
        self.bar = progress(length=steps, label=f"epoch {epoch + 1}/{self.epochs}")
        self.bar.__enter__()

    def step(self, pos: Position, parts: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _run(
    config_path: Path | None,
    overrides: Sequence[str],
    *,
    student: bool,
    resume: bool,
    overwrite: bool,
    labels: Sequence[Path] = (),
) -> FitResult:
    cfg = load_pipeline(config_path, overrides)
    bar = EpochProgress(cfg.epochs(student=student))
    train = api.train_student if student else api.train_teacher
    try:
        return train(cfg, resume=resume, overwrite=overwrite, on_step=bar.step, on_epoch_start=bar.start)
    finally:
        bar.close()


def _report(result: FitResult) -> None:
    best = "n/a" if result.best_miou is None else f"{100 * result.best_miou:.2f}"
    click.echo(f"{result.run_dir}: {result.global_step} steps, {result.epochs_done} epochs, best mIoU {best}")


resume_option = click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in train.out_dir exactly where "
    "it stopped (weights, optimizer, LR schedule, sampler position, RNG).",
)
overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace a previous run in train.out_dir instead of refusing."
)


@main.command("train-teacher")
@config_option
@set_option
@resume_option
@overwrite_option
def train_teacher(config_path: Path | None, overrides: tuple[str, ...], resume: bool, overwrite: bool) -> None:
    """Train a segmentation network on fine labels (the teacher)."""
    _report(_run(config_path, overrides, student=False, resume=resume, overwrite=overwrite))


def _toml(value) -> str:
    """A value as a TOML literal for an override (JSON strings and arrays are valid TOML)."""
    return json.dumps(value)


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


@main.command("train-student")
@config_option
@set_option
@click.option(
    "--labels",
    "labels",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Auto-label set written by `autolabel generate` (repeatable; replaces student.labels).",
)
@click.option("--auto-fraction", type=float, default=None, help="Share of auto-labelled samples per epoch.")
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Re-threshold the auto labels at this confidence (a value on the set's ladder).",
)
@click.option("--class-uniform", type=float, default=None, help="Fraction of class-uniform crops per epoch.")
@click.option(
    "--boost-classes",
    default=None,
    metavar="NAME,...",
    help="Classes whose centroids are taken from auto-labelled images.",
)
@click.option("--drop-auto-after-epoch", type=int, default=None, help="Epochs from this one on use fine data only.")
@click.option(
    "--coarse-fusion-classes",
    default=None,
    metavar="NAME,...",
    help="Take human coarse labels for these classes where the coarse label has them.",
)
@click.option("--fine-weight", type=float, default=None, help="Loss weight of fine-labelled samples.")
@click.option("--auto-weight", type=float, default=None, help="Loss weight of auto-labelled samples.")
@resume_option
@overwrite_option
def train_student(
    config_path: Path | None,
    overrides: tuple[str, ...],
    labels: tuple[Path, ...],
    auto_fraction: float | None,
    threshold: float | None,
    class_uniform: float | None,
    boost_classes: str | None,
    drop_auto_after_epoch: int | None,
    coarse_fusion_classes: str | None,
    fine_weight: float | None,
    auto_weight: float | None,
    resume: bool,
    overwrite: bool,
) -> None:
    """Train on fine labels plus one or more auto-label sets (the student)."""
    options = {
        "student.auto_fraction": auto_fraction,
        "student.threshold": threshold,
        "train.class_uniform_pct": class_uniform,
        "student.boost_classes": _names(boost_classes),
        "student.drop_auto_after_epoch": drop_auto_after_epoch,
        "student.coarse_fusion_classes": _names(coarse_fusion_classes),
        "student.fine_loss_weight": fine_weight,
        "student.auto_loss_weight": auto_weight,
        "student.labels": [str(p) for p in labels] or None,
    }
    # options go through the config's checks like any --set, and win over it
    extra = [f"{key}={_toml(value)}" for key, value in options.items() if value is not None]
    _report(_run(config_path, (*overrides, *extra), student=True, resume=resume, overwrite=overwrite))
