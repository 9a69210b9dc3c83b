"""Evaluating a model on labelled images: mIoU, and predictions exported for the official Cityscapes script.

:func:`evaluate_model` runs :func:`autolabel.generate.inference.predict_logits` (multi-scale, optional flip,
optional tiling) over whole images, accumulates a :class:`ConfusionMatrix` on the device, and can write each
prediction twice: as train ids (``DIR/trainIds/<id>.png``) and as dataset label ids
(``DIR/labelIds/<name>.png``). For Cityscapes ids the label-id file is named
``<city>_<seq>_<frame>_leftImg8bit.png`` in one flat folder, the layout
``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling`` searches (``CITYSCAPES_RESULTS``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torch.distributed as dist
import torch.utils.data
from torch import nn

from autolabel.classes import ClassSet
from autolabel.config import DataConfig, load_config
from autolabel.data.datasets import (
    Sample,
    discover,
    discover_cityscapes,
    discover_filelist,
    discover_folder,
    discover_mapillary,
)
from autolabel.data.io import write_label_png
from autolabel.errors import ConfigError, DataError
from autolabel.evaluate.metrics import ConfusionMatrix, SegMetrics
from autolabel.generate.inference import normalise, predict_logits
from autolabel.train.datasets import EvalDataset

logger = logging.getLogger(__name__)

TRAIN_IDS_DIR = "trainIds"
LABEL_IDS_DIR = "labelIds"
_CITYSCAPES_TAG = "_leftImg8bit"
DATA_SPEC_HELP = (
    "cityscapes:ROOT:SPLIT, mapillary:ROOT:SPLIT, folder:IMAGES:LABELS, filelist:LIST, "
    "a pipeline .toml (its data section, val split), or a folder holding images/ and labels/"
)


@dataclass(frozen=True)
class EvalSettings:
    """How to run the model over the images."""

    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    tile_size: int = 0
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    max_pixels: int | None = None
    workers: int = 0


# ---------------------------------------------------------------------------------------------------------
# what to evaluate on


def _folder_with_labels(images: Path, labels: Path) -> list[Sample]:
    """Images under ``images``; the label of image id X is ``labels/X.png``."""
    if not labels.is_dir():
        raise DataError(f"{labels}: label folder not found")
    return [Sample(id=s.id, image=s.image, label=_existing(labels / f"{s.id}.png")) for s in discover_folder(images)]


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def resolve_data_spec(spec: str, data_cfg: DataConfig | None = None) -> list[Sample]:
    """The labelled samples a ``--data`` value names (see :data:`DATA_SPEC_HELP`)."""
    kind, _, rest = spec.partition(":")
    if kind in ("cityscapes", "mapillary") and rest:
        root, sep, split = rest.rpartition(":")
        if not sep or not root or not split:
            raise ConfigError(f"--data {spec!r}: expected {kind}:ROOT:SPLIT, e.g. {kind}:/data/{kind}:val")
        find = discover_cityscapes if kind == "cityscapes" else discover_mapillary
        return find(Path(root), split)
    if kind == "folder" and rest:
        images, sep, labels = rest.rpartition(":")
        if not sep or not images or not labels:
            raise ConfigError(f"--data {spec!r}: expected folder:IMAGES_DIR:LABELS_DIR")
        return _folder_with_labels(Path(images), Path(labels))
    if kind == "filelist" and rest:
        return discover_filelist(Path(rest))
    if kind == "config" and data_cfg is not None:
        return discover(data_cfg, rest or data_cfg.val_split)
    path = Path(spec)
    if path.suffix == ".toml":
        cfg = load_config(path).data
        return discover(cfg, cfg.val_split)
    if path.is_dir() and (path / "images").is_dir() and (path / "labels").is_dir():
        return _folder_with_labels(path / "images", path / "labels")
    raise ConfigError(f"--data {spec!r}: not understood; expected one of {DATA_SPEC_HELP}")


def labelled_only(samples: Sequence[Sample], where: str) -> list[Sample]:
    """The samples that have a label; a :class:`DataError` when none has."""
    labelled = [s for s in samples if s.label is not None]
    if not labelled:
        raise DataError(f"{where}: none of the {len(samples)} images has a label to evaluate against")
    if len(labelled) < len(samples):
        logger.warning(
            "%s: %d of %d images have no label and are not evaluated", where, len(samples) - len(labelled), len(samples)
        )
    return labelled


# ---------------------------------------------------------------------------------------------------------
# prediction export


def label_id_name(sample_id: str) -> str:
    """Relative path of the label-id prediction: flat ``<city>_<seq>_<frame>_leftImg8bit.png`` for
    Cityscapes ids (the official script matches ``<city>_<seq>_<frame>*.png``), else the id itself."""
    name = PurePosixPath(sample_id).name
    if name.endswith(_CITYSCAPES_TAG):
        return f"{name}.png"
    return f"{sample_id}.png"


class PredictionWriter:
    """Writes predictions as train-id PNGs and (with a class set) dataset label-id PNGs under ``out``."""

    def __init__(self, out: Path, classes: ClassSet | None = None):
        self.out = Path(out)
        self.to_label = classes.train_to_label_lut() if classes is not None else None

    def write(self, sample_id: str, pred: np.ndarray) -> None:
        write_label_png(self.out / TRAIN_IDS_DIR / f"{sample_id}.png", pred, compress_level=6)
        if self.to_label is not None:
            write_label_png(self.out / LABEL_IDS_DIR / label_id_name(sample_id), self.to_label[pred], compress_level=6)


# ---------------------------------------------------------------------------------------------------------
# evaluation


def _shard(samples: Sequence[Sample], rank: int, world_size: int) -> list[Sample]:
    return list(samples)[rank::world_size]


@torch.inference_mode()
def evaluate_model(
    model: nn.Module,
    samples: Sequence[Sample],
    lut: np.ndarray | None,
    class_names: Sequence[str],
    *,
    device: torch.device | str = "cpu",
    settings: EvalSettings = EvalSettings(),
    writer: PredictionWriter | None = None,
    on_image: Callable[[], None] | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> SegMetrics:
    """mIoU of ``model`` on ``samples`` (labels mapped to train ids by ``lut``), whole images, one at a time.

    With ``world_size > 1`` each rank evaluates every ``world_size``-th image and the confusion matrices are
    summed across ranks (torch.distributed must be initialised); every rank returns the same metrics.
    """
    device = torch.device(device)
    dataset = EvalDataset(_shard(samples, rank, world_size), lut, settings.max_pixels)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=1, num_workers=settings.workers, pin_memory=device.type == "cuda"
    )
    num_classes = len(class_names)
    matrix = ConfusionMatrix(num_classes, device=device)
    was_training = model.training
    model.eval()
    try:
        for batch in loader:
            images = normalise(batch["image"].to(device, non_blocking=True), settings.mean, settings.std)
            logits = predict_logits(model, images, settings.scales, flip=settings.flip, tile_size=settings.tile_size)[
                "pred"
            ]  # (1, C, H, W)
            pred = logits.argmax(1)  # (1, H, W)
            matrix.update(pred, batch["label"].to(device))
            if writer is not None:
                sample_id = dataset.samples[int(batch["index"][0])].id
                writer.write(sample_id, pred[0].to(torch.uint8).cpu().numpy())
            if on_image is not None:
                on_image()
    finally:
        model.train(was_training)
    if world_size > 1:
        dist.all_reduce(matrix.matrix)
        dist.all_reduce(matrix.missed)
    return matrix.compute(class_names)
