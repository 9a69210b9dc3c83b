"""One training loop for teacher and student: SGD + poly LR, AMP on CUDA, DDP, validation, exact resume.

What the run iterates over is built by :mod:`autolabel.train.data`; what a run directory holds and how its
state is saved and restored is :mod:`autolabel.train.state`; the torchrun plumbing is
:mod:`autolabel.train.distributed`.

A step never waits for the device: the loss parts stay tensors on it, and only the steps that write a log
line turn them into numbers. Resuming is exact on the CPU. On CUDA it is not bit for bit: cuDNN picks its
fastest kernels (``cudnn.benchmark``, the crops have one fixed size) and several CUDA kernels, bilinear
upsampling's backward among them, add in a nondeterministic order.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.utils.data
from torch import nn

from autolabel.classes import ClassSet, class_set_from_config
from autolabel.config import PipelineConfig, TrainConfig, dump_toml, replace
from autolabel.errors import ConfigError, DataError
from autolabel.fs import atomic_write_bytes
from autolabel.metrics import SegMetrics
from autolabel.models import build_model
from autolabel.models.device import Precision, parse_precision
from autolabel.models.evaluation import EvalSettings, evaluate_model
from autolabel.models.predict import normalise
from autolabel.train.data import TrainData, build_train_data, make_loader
from autolabel.train.distributed import (
    DistInfo,
    average_buffers,
    barrier,
    finish_distributed,
    init_distributed,
    unwrap,
)
from autolabel.train.losses import build_loss
from autolabel.train.sampling import EpochPlanner, PlanSampler
from autolabel.train.state import (
    CONFIG,
    LOG,
    Position,
    RunLog,
    load_training_state,
    prepare_run_dir,
    save_best,
    save_training_state,
)

# ---------------------------------------------------------------------------------------------------------
# optimisation


def poly_lr(step: int, total_steps: int, base_lr: float, power: float, warmup_iters: int = 0) -> float:
    """Learning rate at ``step``: linear warm-up from 0 over ``warmup_iters``, then
    ``base * (1 - t/T)^power``."""
    if warmup_iters and step < warmup_iters:
        return base_lr * (step + 1) / warmup_iters
    progress = min(step, total_steps) / max(1, total_steps)
    return base_lr * (1.0 - progress) ** power


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with momentum; weight decay on weights only (BN parameters and biases are not decayed)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim > 1 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def autocast_for(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA only (bf16 or fp16); CPU always runs in fp32."""
    if device.type != "cuda" or amp == "off":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def make_grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """Loss scaling is needed for fp16 only; a disabled scaler passes everything through unchanged."""
    return torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and amp == "fp16")


def validation_precision(device: torch.device, amp: str) -> Precision:
    """Validation runs in the training's precision: ``train.amp`` on CUDA, fp32 on the CPU."""
    return parse_precision(amp) if device.type == "cuda" and amp != "off" else "fp32"


LossParts = dict[str, "torch.Tensor | float"]  # loss terms as detached 0-dim tensors, "lr" as a float


# ---------------------------------------------------------------------------------------------------------
# the loop


@dataclass(frozen=True)
class StepContext:
    """What a training step needs besides the batch."""

    device: torch.device
    amp: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels_last: bool = False


def train_step(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    loss_fn: Callable,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    ctx: StepContext,
) -> dict[str, torch.Tensor]:
    """Forward, loss (per-source weights as pixel weights), backward, optimizer step; returns the loss parts
    (detached 0-dim tensors on the device: reading them is left to whoever needs a number)."""
    images = normalise(batch["image"].to(ctx.device, non_blocking=True), ctx.mean, ctx.std)  # (B, 3, H, W)
    if ctx.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    target = batch["label"].to(ctx.device, non_blocking=True).long()  # (B, H, W)
    # unit weights (every teacher run) skip the weighting; decided on the host, so no device sync
    pixel_weight = None
    if not bool((batch["weight"] == 1).all()):
        pixel_weight = batch["weight"].to(ctx.device).view(-1, 1, 1).expand_as(target)  # (B, H, W)
    with autocast_for(ctx.device, ctx.amp):
        outputs = model(images)
    # losses switch autocast off themselves and compute in fp32/fp64 (RMI must never run in fp16)
    loss, parts = loss_fn(outputs, target, pixel_weight)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return parts


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_one_epoch(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    loss_fn: Callable,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    ctx: StepContext,
    pos: Position,
    *,
    lr_at: Callable[[int], float],
    max_iters: int = 0,
    on_step: Callable[[Position, LossParts], None] | None = None,
) -> None:
    """Train over what the loader yields (the rest of an epoch), advancing ``pos``; stops at ``max_iters``."""
    model.train()
    for batch in loader:
        if max_iters and pos.global_step >= max_iters:
            return
        lr = lr_at(pos.global_step)
        set_lr(optimizer, lr)
        parts = train_step(model, batch, loss_fn, optimizer, scaler, ctx)
        pos.global_step += 1
        pos.step_in_epoch += 1
        if on_step is not None:
            on_step(pos, {**parts, "lr": lr})


def evaluate(
    model: nn.Module,
    samples: Sequence,
    classes: ClassSet,
    *,
    device: torch.device,
    settings: EvalSettings,
    info: DistInfo = DistInfo(),
) -> SegMetrics:
    """Validation mIoU over whole images, split across ranks and summed (same result on every rank)."""
    return evaluate_model(
        unwrap(model),
        samples,
        classes.label_to_train_lut(),
        classes.names,
        device=device,
        settings=settings,
        rank=info.rank,
        world_size=info.world_size,
    )


def items_per_source(sampler: PlanSampler, num_sources: int) -> list[int]:
    """How many of this rank's items in the sampler's current epoch come from each source."""
    counts = [0] * num_sources
    for item in sampler.shard(sampler.epoch):
        counts[item.source] += 1
    return counts


def steps_per_epoch(planner: EpochPlanner, epoch: int, batch_size: int, world_size: int) -> int:
    """Batches each rank runs in ``epoch`` (the plan is padded to a multiple of the world size; last
    incomplete batch dropped)."""
    per_rank = -(-planner.epoch_length(epoch) // world_size)
    return per_rank // batch_size


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` leaves behind."""

    run_dir: Path
    global_step: int
    epochs_done: int
    best_miou: float | None
    last_metrics: SegMetrics | None
    model: nn.Module


@dataclass
class Trainer:
    """One run's training state, shared by the epoch loop, its logging, validation and saving.

    ``pos`` advances as the run trains; ``on_step``/``on_epoch_start``/``on_validate`` are called on the main
    process only.
    """

    cfg: PipelineConfig
    data: TrainData
    model: nn.Module  # DDP-wrapped in a distributed job
    optimizer: torch.optim.SGD
    scaler: torch.amp.GradScaler
    pos: Position
    info: DistInfo
    classes: ClassSet
    run_dir: Path
    log: RunLog
    loss_fn: Callable
    on_step: Callable[[Position, LossParts], None] | None = None
    on_epoch_start: Callable[[int, int], None] | None = None
    on_validate: Callable[[int, SegMetrics], None] | None = None

    def run(self) -> FitResult:
        """Train from ``pos`` to ``train.epochs`` (or ``train.max_iters``), validating and saving per epoch."""
        t, pos, info = self.cfg.train, self.pos, self.info
        sampler = PlanSampler(self.data.planner, rank=info.rank, world_size=info.world_size)
        loader = make_loader(self.data, sampler, t, info.device)
        epoch_steps = [steps_per_epoch(self.data.planner, e, t.batch_size, info.world_size) for e in range(t.epochs)]
        if not any(epoch_steps):
            raise DataError(f"{self.cfg.data.root}: too few training items for one batch of {t.batch_size} per process")
        total = sum(epoch_steps)
        ctx = StepContext(
            device=info.device,
            amp=t.amp,
            mean=self.cfg.data.mean,
            std=self.cfg.data.std,
            channels_last=info.device.type == "cuda",
        )
        metrics = None
        step_hook = self._step_hook(epoch_steps, started=time.perf_counter())
        while pos.epoch < t.epochs and not (t.max_iters and pos.global_step >= t.max_iters):
            self._start_epoch(sampler, epoch_steps[pos.epoch])
            train_one_epoch(
                self.model,
                loader,
                self.loss_fn,
                self.optimizer,
                self.scaler,
                ctx,
                pos,
                lr_at=lambda s: poly_lr(s, total, t.lr, t.poly_power, t.warmup_iters),
                max_iters=t.max_iters,
                on_step=step_hook,
            )
            average_buffers(self.model, info)
            if pos.step_in_epoch < epoch_steps[pos.epoch]:
                break  # stopped by max_iters mid-epoch: save below, resume continues from here
            pos.epoch, pos.step_in_epoch = pos.epoch + 1, 0
            metrics = self.validate()
            self.save()
        if pos.step_in_epoch:
            self.save()
        self.log.write("end", global_step=pos.global_step, epochs_done=pos.epoch, best_miou=pos.best)
        barrier(info)
        return FitResult(
            run_dir=self.run_dir,
            global_step=pos.global_step,
            epochs_done=pos.epoch,
            best_miou=pos.best,
            last_metrics=metrics,
            model=unwrap(self.model),
        )

    def _start_epoch(self, sampler: PlanSampler, steps: int) -> None:
        """Point the sampler at the rest of the current epoch (all of it unless resuming mid-epoch), log it."""
        pos = self.pos
        sampler.set_epoch(pos.epoch, start=pos.step_in_epoch * self.cfg.train.batch_size)
        self.log.write(
            "epoch",
            epoch=pos.epoch,
            steps=steps,
            start_step=pos.step_in_epoch,
            items_per_source=items_per_source(sampler, len(self.data.dataset.sources)),
        )
        if self.on_epoch_start is not None and self.info.is_main:
            self.on_epoch_start(pos.epoch, steps - pos.step_in_epoch)

    def _step_hook(self, epoch_steps: list[int], *, started: float) -> Callable[[Position, LossParts], None]:
        """Logs every ``log_every``-th step and each epoch's last, then calls ``on_step`` (main process only).

        Only a logged step reads the loss values, i.e. waits for the device to finish the step.
        """
        log_every = self.cfg.train.log_every

        def hook(p: Position, parts: LossParts) -> None:
            if not self.info.is_main:
                return
            if p.global_step % log_every == 0 or p.step_in_epoch == epoch_steps[p.epoch]:
                seconds = round(time.perf_counter() - started, 3)
                fields = {k: round(float(v), 6) for k, v in parts.items()}
                self.log.write("train", epoch=p.epoch, step=p.global_step, seconds=seconds, **fields)
            if self.on_step is not None:
                self.on_step(p, parts)

        return hook

    def validate(self) -> SegMetrics | None:
        """Validate after every ``val_every``-th epoch; a new best mIoU also writes ``best.pt``."""
        t, data, pos = self.cfg.train, self.cfg.data, self.pos
        if not t.val_every or pos.epoch % t.val_every or not self.data.val_samples:
            return None
        settings = EvalSettings(
            scales=t.val_scales,
            mean=data.mean,
            std=data.std,
            max_pixels=data.max_image_pixels,
            precision=validation_precision(self.info.device, t.amp),
        )
        metrics = evaluate(
            self.model, self.data.val_samples, self.classes, device=self.info.device, settings=settings, info=self.info
        )
        self.log.write("val", epoch=pos.epoch, step=pos.global_step, **metrics.to_dict())
        if self.on_validate is not None and self.info.is_main:
            self.on_validate(pos.epoch, metrics)
        if metrics.miou == metrics.miou and metrics.miou > pos.best_miou:
            pos.best_miou = metrics.miou
            if self.info.is_main:
                save_best(self.run_dir, self.model, self.cfg, self.classes, pos)
                self.log.write("best", epoch=pos.epoch, step=pos.global_step, miou=metrics.miou)
        return metrics

    def save(self) -> None:
        """``last.state.pt`` and ``last.pt`` at ``pos``; every rank calls this."""
        save_training_state(
            self.run_dir, self.model, self.cfg, self.classes, self.optimizer, self.scaler, self.pos, self.info
        )


def fit(
    cfg: PipelineConfig,
    *,
    student: bool = False,
    labels: Sequence[Path] = (),
    resume: bool = False,
    overwrite: bool = False,
    on_step: Callable[[Position, LossParts], None] | None = None,
    on_epoch_start: Callable[[int, int], None] | None = None,
    on_validate: Callable[[int, SegMetrics], None] | None = None,
) -> FitResult:
    """Train a teacher (fine labels) or a student (fine + auto-label sets ``labels``) as ``cfg`` says.

    Runs under torchrun and srun/mpirun as well (one process per GPU, see
    :func:`~autolabel.train.distributed.init_distributed`). ``on_step(position, parts)``,
    ``on_epoch_start(epoch, steps)`` and ``on_validate(epochs_done, metrics)`` are called on the main process
    only (the CLI hangs its progress bar and log lines on them); ``parts`` holds the loss terms as detached
    0-dim tensors on the training device and ``"lr"`` as a float: ``float(parts["total"])`` waits for the
    device, so a hook that only counts steps should not.
    """
    labels = tuple(Path(p) for p in labels) or cfg.student.labels
    if student and not labels:
        raise ConfigError("student.labels: no auto-label set given (pass --labels DIR or set student.labels)")
    if student:  # the run's config.toml records the label sets and the schedule actually used
        cfg = replace(
            cfg, student=replace(cfg.student, labels=labels), train=replace(cfg.train, epochs=cfg.epochs(student=True))
        )
    info = init_distributed(cfg.train.device)
    try:
        return _fit(
            cfg,
            info,
            student=student,
            labels=labels,
            resume=resume,
            overwrite=overwrite,
            on_step=on_step,
            on_epoch_start=on_epoch_start,
            on_validate=on_validate,
        )
    finally:
        finish_distributed(info)


def _fit(
    cfg: PipelineConfig,
    info: DistInfo,
    *,
    student: bool,
    labels: Sequence[Path],
    resume: bool,
    overwrite: bool,
    on_step: Callable[[Position, LossParts], None] | None,
    on_epoch_start: Callable[[int, int], None] | None,
    on_validate: Callable[[int, SegMetrics], None] | None,
) -> FitResult:
    """:func:`fit` once this process has its place in the job (``info``)."""
    if info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: the autotuned kernels are reused every step
    run_dir = Path(cfg.train.out_dir)
    classes = class_set_from_config(cfg.classes)
    if info.is_main:
        prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
    barrier(info)
    if not info.is_main:
        barrier(info)  # rank 0 fills the centroid cache first; the others then read it
    data = build_train_data(cfg, classes, run_dir, student=student, labels=labels)
    if info.is_main:
        barrier(info)
    model, optimizer, scaler = _build_model(cfg, info)
    pos = Position()
    if resume:
        pos = load_training_state(run_dir, model, cfg.model, optimizer, scaler, info, classes.num_classes)
    log = RunLog(run_dir / LOG if info.is_main else None)
    if info.is_main and not resume:
        atomic_write_bytes(run_dir / CONFIG, dump_toml(cfg).encode("utf-8"))
    log.write(
        "start",
        resume=resume,
        student=student,
        world_size=info.world_size,
        device=str(info.device),
        global_step=pos.global_step,
        sources=list(data.dataset.sizes),
    )
    trainer = Trainer(
        cfg=cfg,
        data=data,
        model=model,
        optimizer=optimizer,
        scaler=scaler,
        pos=pos,
        info=info,
        classes=classes,
        run_dir=run_dir,
        log=log,
        loss_fn=build_loss(cfg.loss, classes.num_classes, classes.ignore_index),
        on_step=on_step,
        on_epoch_start=on_epoch_start,
        on_validate=on_validate,
    )
    return trainer.run()


def _build_model(cfg: PipelineConfig, info: DistInfo) -> tuple[nn.Module, torch.optim.SGD, torch.amp.GradScaler]:
    """The (DDP-wrapped) model, seeded by ``train.seed``; then each rank gets its own dropout RNG stream."""
    torch.manual_seed(cfg.train.seed)
    model: nn.Module = build_model(cfg.model)
    torch.manual_seed(cfg.train.seed + 1 + info.rank)
    if info.device.type == "cuda":
        # Module.to(memory_format=...) is documented, but torch's overloads omit it
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if info.distributed:  # SyncBN only where it helps: per-GPU batches are tiny at full resolution
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(info.device)
    optimizer = build_optimizer(model, cfg.train)
    if info.distributed:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None
        )
    return model, optimizer, make_grad_scaler(info.device, cfg.train.amp)
