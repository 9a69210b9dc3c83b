"""`autolabel train-teacher` and `autolabel train-student`: thin wrappers of :mod:`autolabel.api`.

Both run under ``torchrun --nproc_per_node N -m autolabel train-...`` as well; only rank 0 reports. On a
terminal a progress bar shows each epoch; anywhere else (a SLURM log, CI) every ``train.log_every`` steps
one line goes to stderr::

    epoch 3/48 step 20/25 (70/1200) loss 1.2345 (ce 1.0000, aux 0.2100, ...) lr 0.01950 31.2 img/s ETA 4m10s
    epoch 3/48 val mIoU 41.27
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from autolabel.cli.base import (
    FOLDER,
    Flag,
    apply_flags,
    check_not_installed,
    check_out_dir,
    config_option,
    interactive,
    load_pipeline,
    main,
    parse_names,
    plural,
    progress,
    set_option,
)
from autolabel.config import PipelineConfig

if TYPE_CHECKING:
    from autolabel.metrics import SegMetrics
    from autolabel.train.loop import FitResult, LossParts
    from autolabel.train.state import Position


def duration(seconds: float) -> str:
    """``4m10s``, ``1h02m``, ``12s``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class TrainReport:
    """What a person (or a log file) sees while a run trains, fed by the loop's hooks (main process only).

    On a terminal: one progress bar per epoch. Elsewhere: every ``log_every`` steps (and each epoch's last)
    one line with epoch/step, the loss and its parts, the learning rate, images per second and the ETA, and
    the validation mIoU after each validation.
    """

    def __init__(self, epochs: int, batch_size: int, log_every: int, *, bar: bool | None = None) -> None:
        self.epochs = epochs
        self.images_per_step = batch_size * int(os.environ.get("WORLD_SIZE", "1"))  # every rank runs a batch
        self.log_every = log_every
        self.bar_wanted = interactive() if bar is None else bar
        self.bar: Any = None
        self.epoch = 0
        self.epoch_steps = 0  # steps of the current epoch (all of it, also when resumed mid-epoch)
        self.epoch_left = 0
        self.started = 0.0
        self.steps_timed = 0

    def start(self, epoch: int, steps: int) -> None:
        """The loop's ``on_epoch_start(epoch, steps still to run in it)``."""
        self.close()
        self.epoch, self.epoch_left, self.epoch_steps = epoch, steps, steps
        if not self.started:
            self.started = time.perf_counter()
        if self.bar_wanted:
            self.bar = progress(length=steps, label=f"epoch {epoch + 1}/{self.epochs}")
            self.bar.__enter__()

    def step(self, pos: Position, parts: LossParts) -> None:
        """The loop's ``on_step(position, loss parts incl. lr)``; the parts (device tensors) are read only
        for the steps a line is printed for, so the other steps never wait for the device."""
        self.steps_timed += 1
        self.epoch_left = max(0, self.epoch_left - 1)
        if self.bar is not None:
            self.bar.update(1)
            return
        if pos.global_step % self.log_every == 0 or self.epoch_left == 0:
            click.echo(self.line(pos, parts), err=True)

    def line(self, pos: Position, parts: LossParts) -> str:
        elapsed = time.perf_counter() - self.started
        per_step = elapsed / self.steps_timed if self.steps_timed else 0.0
        # later epochs are taken to be as long as this one (a student's get shorter once auto labels drop)
        left = self.epoch_left + (self.epochs - self.epoch - 1) * self.epoch_steps
        loss = parts.get("total", float("nan"))
        terms = ", ".join(f"{k} {v:.4f}" for k, v in parts.items() if k not in ("total", "lr"))
        rate = self.images_per_step * self.steps_timed / elapsed if elapsed > 0 else 0.0
        step_in_epoch = self.epoch_steps - self.epoch_left
        return (
            f"epoch {self.epoch + 1}/{self.epochs} step {step_in_epoch}/{self.epoch_steps} ({pos.global_step}) "
            f"loss {loss:.4f}" + (f" ({terms})" if terms else "") + f" lr {parts.get('lr', 0.0):.5g} "
            f"{rate:.1f} img/s ETA {duration(left * per_step)}"
        )

    def validated(self, epochs_done: int, metrics: SegMetrics) -> None:
        """The loop's ``on_validate(epochs done, metrics)``."""
        self.close()
        click.echo(f"epoch {epochs_done}/{self.epochs} val mIoU {100 * metrics.miou:.2f}", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _run(
    cfg: PipelineConfig,
    *,
    student: bool,
    data: str | None,
    out: Path | None,
    resume: bool,
    overwrite: bool,
    labels: Sequence[Path] = (),
) -> FitResult:
    from autolabel import api  # torch loads here, not for --help

    report = TrainReport(cfg.epochs(student=student), cfg.train.batch_size, cfg.train.log_every)
    train = api.train_student if student else api.train_teacher
    kwargs: dict[str, Any] = {"labels": labels} if student else {}
    try:
        return train(
            cfg,
            data=data,
            out=out,
            resume=resume,
            overwrite=overwrite,
            on_step=report.step,
            on_epoch_start=report.start,
            on_validate=report.validated,
            **kwargs,
        )
    finally:
        report.close()


def _report(result: FitResult) -> None:
    best = "n/a" if result.best_miou is None else f"{100 * result.best_miou:.2f}"
    click.echo(
        f"{result.run_dir}: {plural(result.global_step, 'step')}, {plural(result.epochs_done, 'epoch')}, "
        f"best mIoU {best}"
    )


def _checked_out(out: Path | None, cfg: PipelineConfig) -> Path | None:
    """--out, checked (or the config's train.out_dir) before anything is read or written."""
    if out is not None:
        check_out_dir(out)
        return out
    check_not_installed(Path(cfg.train.out_dir), "train.out_dir")
    check_out_dir(Path(cfg.train.out_dir), "train.out_dir")
    return None


data_option = click.option(
    "--data",
    "data_spec",
    default=None,
    metavar="SPEC",
    help="Fine-labelled training images: cityscapes:ROOT:SPLIT, mapillary:ROOT:SPLIT, list:FILE or config[:SPLIT]; "
    "the split trains, validation reads data.val_split of the same dataset [default: the config's "
    "data.train_split].",
)
out_option = click.option(
    "--out",
    type=FOLDER,
    default=None,
    help="Run folder: last.pt, best.pt, log.jsonl, config.toml [default: train.out_dir].",
)
resume_option = click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out exactly where it stopped (weights, optimizer, LR schedule, sampler position, RNG).",
)
overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace a previous run in --out instead of refusing."
)
common = [
    click.option("--epochs", type=int, default=None, help="Training epochs [train.epochs; student: student.epochs]."),
    click.option("--batch-size", type=int, default=None, help="Crops per step and process [train.batch_size]."),
    click.option("--lr", type=float, default=None, help="Base learning rate of the poly schedule [train.lr]."),
    click.option(
        "--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="Where to train [train.device]."
    ),
]


def common_options(command: Any) -> Any:
    for option in reversed([data_option, out_option, config_option, *common]):
        command = option(command)
    return command


def _common_flags(epochs: int | None, batch_size: int | None, lr: float | None, device: str | None, *, student: bool):
    return [
        Flag("--epochs", "student.epochs" if student else "train.epochs", epochs),
        Flag("--batch-size", "train.batch_size", batch_size),
        Flag("--lr", "train.lr", lr),
        Flag("--device", "train.device", device),
    ]


@main.command("train-teacher", short_help="Train the teacher on fine labels.", compute=True)
@common_options
@set_option("train.epochs=48")
@resume_option
@overwrite_option
def train_teacher(
    data_spec: str | None,
    out: Path | None,
    config_path: Path | None,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    device: str | None,
    overrides: tuple[str, ...],
    resume: bool,
    overwrite: bool,
) -> None:
    """Train a segmentation network on fine labels (the teacher) into the run folder --out.

    \b
    Examples:
      autolabel train-teacher --config pipelines/cityscapes.toml --data cityscapes:/data/cs:train --out run/t
      torchrun --nproc_per_node 8 -m autolabel train-teacher --config P.toml --out run/t
    """
    flags = _common_flags(epochs, batch_size, lr, device, student=False)
    cfg = apply_flags(load_pipeline(config_path, overrides), flags)
    out = _checked_out(out, cfg)
    _report(_run(cfg, student=False, data=data_spec, out=out, resume=resume, overwrite=overwrite))


@main.command("train-student", short_help="Train a student on fine + auto labels.", compute=True)
@common_options
@set_option("student.auto_fraction=0.5")
@click.option(
    "--labels",
    "labels",
    multiple=True,
    type=FOLDER,
    help="Auto-label set written by `autolabel generate` (repeatable; replaces student.labels).",
)
@click.option(
    "--auto-fraction",
    type=float,
    default=None,
    help="Share of auto-labelled samples per epoch [student.auto_fraction].",
)
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Re-threshold the auto labels at this confidence, a value on the set's ladder [student.threshold].",
)
@click.option(
    "--class-uniform",
    type=float,
    default=None,
    help="Fraction of class-uniform crops per epoch [train.class_uniform_pct].",
)
@click.option(
    "--boost-classes",
    default=None,
    metavar="NAME,...",
    help="Classes whose centroids are taken from auto-labelled images [student.boost_classes].",
)
@click.option(
    "--drop-auto-after-epoch",
    type=int,
    default=None,
    help="Epochs from this one on use fine data only [student.drop_auto_after_epoch].",
)
@click.option(
    "--coarse-fusion-classes",
    default=None,
    metavar="NAME,...",
    help="Take human coarse labels for these classes where the coarse label has them [student.coarse_fusion_classes].",
)
@click.option(
    "--fine-weight", type=float, default=None, help="Loss weight of fine-labelled samples [student.fine_loss_weight]."
)
@click.option(
    "--auto-weight", type=float, default=None, help="Loss weight of auto-labelled samples [student.auto_loss_weight]."
)
@resume_option
@overwrite_option
def train_student(
    data_spec: str | None,
    out: Path | None,
    config_path: Path | None,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    device: str | None,
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
    """Train a student on fine labels plus one or more auto-label sets into the run folder --out.

    \b
    Example:
      autolabel train-student --config P.toml --data cityscapes:/data/cs:train --labels labels --out run/s
    """
    flags = [
        *_common_flags(epochs, batch_size, lr, device, student=True),
        Flag("--auto-fraction", "student.auto_fraction", auto_fraction),
        Flag("--threshold", "student.threshold", threshold),
        Flag("--class-uniform", "train.class_uniform_pct", class_uniform),
        Flag("--boost-classes", "student.boost_classes", parse_names(boost_classes)),
        Flag("--drop-auto-after-epoch", "student.drop_auto_after_epoch", drop_auto_after_epoch),
        Flag("--coarse-fusion-classes", "student.coarse_fusion_classes", parse_names(coarse_fusion_classes)),
        Flag("--fine-weight", "student.fine_loss_weight", fine_weight),
        Flag("--auto-weight", "student.auto_loss_weight", auto_weight),
        Flag("--labels", "student.labels", tuple(str(p) for p in labels) or None),
    ]
    # the options go through the config's checks like any config value, and win over --set
    cfg = apply_flags(load_pipeline(config_path, overrides), flags)
    out = _checked_out(out, cfg)
    result = _run(cfg, student=True, data=data_spec, out=out, resume=resume, overwrite=overwrite, labels=labels)
    _report(result)
