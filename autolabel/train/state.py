"""A training run's directory: its files, its log, and the state that makes resuming exact.

A run directory holds::

    config.toml        the resolved config the run started with
    log.jsonl          one JSON object per line: {"event": "train" | "val" | "checkpoint" | ..., ...}
    last.pt            the latest weights (a normal checkpoint, loadable by `autolabel evaluate`)
    last.state.pt      what resuming needs besides the weights: optimizer, GradScaler, position, RNG states
    best.pt            the weights with the best validation mIoU so far
    cache/             class centroids of the fine labels, keyed by the label files' content

``last.state.pt`` holds tensors and plain values only (it loads with ``weights_only=True``), including the
weights of the step it belongs to: the two files are written one after the other, and a kill between the two
writes must still leave a run that resumes exactly.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autolabel.classes import ClassSet
from autolabel.config import ModelConfig, PipelineConfig, to_dict
from autolabel.data.io import atomic_write_bytes
from autolabel.errors import CheckpointError, OutputError
from autolabel.models.checkpoint import load_checkpoint, save_checkpoint
from autolabel.train.distributed import DistInfo, gather_object, unwrap

logger = logging.getLogger(__name__)

LAST, BEST, STATE = "last.pt", "best.pt", "last.state.pt"
LOG, CONFIG, CACHE = "log.jsonl", "config.toml", "cache"
RUN_FILES = (LAST, BEST, STATE, LOG, CONFIG)
STATE_FORMAT = "autolabel-train-state"


class RunLog:
    """Appends JSON lines to ``log.jsonl`` (main process only)."""

    def __init__(self, path: Path | None):
        self.path = path

    def write(self, event: str, **fields: Any) -> None:
        if self.path is None:
            return
        record = {"event": event, "time": datetime.now(UTC).isoformat(timespec="seconds"), **fields}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


def iter_log(run_dir: Path) -> Iterator[dict[str, Any]]:
    """The records of a run's ``log.jsonl``."""
    with open(Path(run_dir) / LOG, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber a previous run unless ``overwrite``; ``resume`` needs one to continue."""
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if resume:
        if not (run_dir / LAST).is_file() or not (run_dir / STATE).is_file():
            raise CheckpointError(f"{run_dir}: nothing to resume (expected {LAST} and {STATE} from an earlier run)")
        return
    if existing and not overwrite:
        raise OutputError(
            f"{run_dir}: holds a previous run ({', '.join(existing)}); pass --resume to "
            "continue it, --overwrite to replace it, or choose another train.out_dir"
        )
    for name in existing:
        (run_dir / name).unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


@dataclass
class Position:
    """Where training is: completed epochs, batches done in the current epoch, total steps, best mIoU."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_miou: float = float("-inf")

    @property
    def best(self) -> float | None:
        """The best validation mIoU so far; None before the first validation."""
        return None if self.best_miou == float("-inf") else self.best_miou


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """This process's RNG states: the CPU generator's, and ``device``'s on CUDA."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def checkpoint_metadata(cfg: PipelineConfig, pos: Position) -> dict[str, Any]:
    """What ``last.pt``/``best.pt`` record about the run besides the weights."""
    return {
        "global_step": pos.global_step,
        "epoch": pos.epoch,
        "step_in_epoch": pos.step_in_epoch,
        "best_miou": pos.best,
        "config": to_dict(cfg),
    }


def save_best(run_dir: Path, model: nn.Module, cfg: PipelineConfig, classes: ClassSet, pos: Position) -> None:
    """``best.pt``: the weights at ``pos`` (main process only)."""
    save_checkpoint(run_dir / BEST, model, cfg.model, classes.names, metadata=checkpoint_metadata(cfg, pos))


def save_training_state(
    run_dir: Path,
    model: nn.Module,
    cfg: PipelineConfig,
    classes: ClassSet,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    pos: Position,
    info: DistInfo,
) -> None:
    """``last.state.pt`` then ``last.pt`` (both atomic); every rank must call this (RNG states are
    gathered: ranks draw different dropout masks)."""
    rng = gather_object(rng_state(info.device), info)
    if not info.is_main:
        return
    state = {
        "format": STATE_FORMAT,
        "global_step": pos.global_step,
        "epoch": pos.epoch,
        "step_in_epoch": pos.step_in_epoch,
        "best_miou": pos.best_miou,
        "world_size": info.world_size,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": rng,
        "model": {key: value.detach().cpu() for key, value in unwrap(model).state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(run_dir / STATE, buffer.getvalue())
    save_checkpoint(run_dir / LAST, model, cfg.model, classes.names, metadata=checkpoint_metadata(cfg, pos))


def load_training_state(
    run_dir: Path,
    model: nn.Module,
    cfg_model: ModelConfig,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    info: DistInfo,
    num_classes: int,
) -> Position:
    """Restore weights, optimizer, scaler and this rank's RNG state; returns where to continue."""
    ckpt = load_checkpoint(run_dir / LAST, expected_num_classes=num_classes)
    try:
        state = torch.load(run_dir / STATE, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- any failure means the same: the state file is unusable
        raise CheckpointError(f"{run_dir / STATE}: unreadable training state ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{run_dir / STATE}: not an autolabel training state")
    # a state one save ahead of last.pt (killed between the two writes) carries its own weights; any other
    # mismatch means the files do not belong together
    weights = state.get("model")
    ahead = weights is not None and state["global_step"] > (ckpt.metadata.get("global_step") or 0)
    if state["global_step"] != ckpt.metadata.get("global_step") and not ahead:
        raise CheckpointError(
            f"{run_dir}: {STATE} is at step {state['global_step']} but {LAST} at step "
            f"{ckpt.metadata.get('global_step')}; the run was interrupted while saving"
        )
    if ckpt.model_cfg != cfg_model:
        raise CheckpointError(
            f"{run_dir / LAST}: the run was trained with model config "
            f"{to_dict(ckpt.model_cfg)}; resume it with the same [model] section"
        )
    unwrap(model).load_state_dict(weights if weights is not None else ckpt.model.state_dict())
    optimizer.load_state_dict(state["optimizer"])
    if state["scaler"] or not scaler.is_enabled():
        scaler.load_state_dict(state["scaler"])  # a disabled scaler ignores what it is given
    else:  # saved without loss scaling (train.amp was not fp16, or on the CPU): nothing to restore
        logger.info("%s: saved without loss scaling; the fp16 GradScaler starts from its initial scale", run_dir)
    rng = state["rng"]
    if len(rng) == info.world_size:
        set_rng_state(rng[info.rank], info.device)
    else:
        logger.warning(
            "resuming with %d processes, saved with %d: dropout RNG streams restart", info.world_size, len(rng)
        )
    return Position(
        epoch=state["epoch"],
        step_in_epoch=state["step_in_epoch"],
        global_step=state["global_step"],
        best_miou=state["best_miou"],
    )
