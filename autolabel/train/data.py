"""What a training run iterates over: its sources, their class centroids, the epoch planner, the loader.

:func:`build_train_data` reads the fine labels (and, for a student, the auto-label sets) a config names;
the class centroids of the fine labels are cached in the run directory (``cache/``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.utils.data

from autolabel.classes import ClassSet
from autolabel.config import PipelineConfig, TrainConfig
from autolabel.data.sources import discover_split
from autolabel.errors import DataError
from autolabel.train.datasets import AutoLabelSource, FineSource, TrainDataset
from autolabel.train.sampling import (
    CentroidTable,
    EpochPlanner,
    PlanSampler,
    cached_centroids,
    manifest_centroids,
)
from autolabel.train.state import CACHE
from autolabel.train.transforms import TrainTransform

logger = logging.getLogger(__name__)


@dataclass
class TrainData:
    """Everything the loop iterates over."""

    dataset: TrainDataset
    planner: EpochPlanner
    val_samples: list = field(default_factory=list)


def build_train_data(
    cfg: PipelineConfig, classes: ClassSet, run_dir: Path, *, student: bool, labels: Sequence[Path] = ()
) -> TrainData:
    """Fine data (+ auto-label sets for a student), their centroids, the epoch planner and validation set."""
    lut = classes.label_to_train_lut()
    max_pixels = cfg.data.max_image_pixels
    fine = FineSource(discover_split(cfg.data, cfg.data.train_split), lut, max_pixels, cfg.data.exif_transpose)
    sources: list[FineSource | AutoLabelSource] = [fine]
    centroids = [_fine_centroids(fine, lut, cfg, classes, run_dir)]
    weights = [cfg.student.fine_loss_weight]
    if student:
        for out in labels:
            source = _auto_source(out, cfg, classes)
            sources.append(source)
            centroids.append(manifest_centroids(source.manifest, _boost_ids(cfg, classes)))
            weights.append(cfg.student.auto_loss_weight)
    else:
        weights = [1.0]
    if len(fine) == 0 and len(sources) == 1:
        raise DataError(f"{cfg.data.root}: no labelled training images in split {cfg.data.train_split!r}")
    transform = TrainTransform(
        crop_size=(cfg.train.crop_size[0], cfg.train.crop_size[1]),
        scale_range=(cfg.train.scale_min, cfg.train.scale_max),
        flip=cfg.train.flip,
        jitter=cfg.train.color_jitter,
        ignore_index=classes.ignore_index,
    )
    planner = EpochPlanner(
        sizes=tuple(len(s) for s in sources),
        centroids=tuple(centroids),
        auto_fraction=cfg.student.auto_fraction if student else 0.0,
        class_uniform_pct=cfg.train.class_uniform_pct,
        drop_auto_after_epoch=cfg.student.drop_auto_after_epoch if student else None,
        seed=cfg.train.seed,
    )
    val = discover_split(cfg.data, cfg.data.val_split) if cfg.train.val_every else []
    labelled_val = [s for s in val if s.label is not None]
    human = cfg.student.human_loss_weight if cfg.student.human_loss_weight is not None else cfg.student.fine_loss_weight
    dataset = TrainDataset(sources, transform, weights, human_loss_weight=human if student else None)
    return TrainData(dataset, planner, labelled_val)


def _fine_centroids(
    fine: FineSource, lut: np.ndarray, cfg: PipelineConfig, classes: ClassSet, run_dir: Path
) -> CentroidTable:
    if cfg.train.class_uniform_pct == 0 or len(fine) == 0:
        return CentroidTable.empty()
    return cached_centroids(
        fine.label_paths, lut, classes.num_classes, cfg.train.class_uniform_tile, run_dir / CACHE, classes.ignore_index
    )


def _boost_ids(cfg: PipelineConfig, classes: ClassSet) -> list[int] | None:
    """Train ids whose centroids come from auto labels; every class when no boost classes are named."""
    if not cfg.student.boost_classes:
        return None
    return [classes.index(name) for name in cfg.student.boost_classes]


def _auto_source(out: Path, cfg: PipelineConfig, classes: ClassSet) -> AutoLabelSource:
    fusion = [classes.index(name) for name in cfg.student.coarse_fusion_classes]
    coarse = {}
    if fusion:
        coarse = {s.id: s.coarse for s in discover_split(cfg.data, cfg.data.extra_split) if s.coarse is not None}
        if not coarse:
            logger.warning(
                "student.coarse_fusion_classes is set but split %r has no coarse labels", cfg.data.extra_split
            )
    return AutoLabelSource(
        out,
        classes,
        threshold=cfg.student.threshold,
        coarse=coarse,
        coarse_classes=fusion,
        max_pixels=cfg.data.max_image_pixels,
    )


def make_loader(
    data: TrainData, sampler: PlanSampler, cfg: TrainConfig, device: torch.device
) -> torch.utils.data.DataLoader:
    """Batches of crops; the loader gets its own generator so creating it never draws from the global RNG
    (which would make a resumed run's dropout differ from an uninterrupted one)."""
    return torch.utils.data.DataLoader(
        data.dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg.seed),
        persistent_workers=cfg.workers > 0,
    )  # the sampler runs in this process: workers survive epochs
