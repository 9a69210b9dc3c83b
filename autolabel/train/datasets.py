"""Training datasets: fine labels, auto-label sets from `autolabel generate`, and their mix.

A *source* is a list of (image, label) items that knows how to load item i as uint8 arrays with train ids.
:class:`TrainDataset` is indexed by :class:`~autolabel.train.sampling.PlanItem` (source, item, crop centre,
augmentation seed), so the sampler alone decides what an epoch holds and every crop is reproducible.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data

from autolabel.classes import ClassSet
from autolabel.data.datasets import Sample
from autolabel.data.io import read_image, read_label
from autolabel.data.loading import check_same_size
from autolabel.errors import DataError, LabelSetError
from autolabel.labelset import read_labelset, read_manifest
from autolabel.labelset.confidence import load_confidence, rethreshold_array, rung_index
from autolabel.train.sampling import PlanItem
from autolabel.train.transforms import TrainTransform

logger = logging.getLogger(__name__)


class FineSource:
    """Human-labelled samples; labels hold dataset label values mapped to train ids by ``lut``."""

    def __init__(
        self, samples: Sequence[Sample], lut: np.ndarray, max_pixels: int | None = None, exif_transpose: bool = True
    ):
        unlabelled = [s.id for s in samples if s.label is None]
        if unlabelled:
            logger.warning(
                "%d of %d training images have no label and are skipped (e.g. %s)",
                len(unlabelled),
                len(samples),
                unlabelled[0],
            )
        self.samples = [s for s in samples if s.label is not None]
        self.lut = lut
        self.max_pixels = max_pixels
        self.exif_transpose = exif_transpose

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def label_paths(self) -> list[Path]:
        return [s.label for s in self.samples if s.label is not None]  # all of them: __init__ kept labelled ones

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        sample = self.samples[index]
        assert sample.label is not None  # __init__ keeps labelled samples only
        image = read_image(sample.image, self.max_pixels, exif_transpose=self.exif_transpose)
        label = read_label(sample.label, self.lut, self.max_pixels)
        check_same_size(image, label, sample.label)
        return image, label


class AutoLabelSource:
    """An auto-label set (``OUT/`` of `autolabel generate`): ok manifest rows, optionally re-thresholded.

    Args:
        out: the label-set folder.
        classes: the class set being trained; the label set must have been made for the same classes.
        threshold: re-threshold at load time from ``confidence.zarr`` (a value on the set's ladder, not
            below the threshold the set was generated with); None keeps the stored labels.
        coarse: image id -> human coarse label (dataset label values) for coarse fusion.
        coarse_classes: train ids taken from the coarse label wherever it says one of them.
    """

    def __init__(
        self,
        out: str | Path,
        classes: ClassSet,
        threshold: float | None = None,
        coarse: dict[str, Path] | None = None,
        coarse_classes: Sequence[int] = (),
        max_pixels: int | None = None,
    ):
        self.out = Path(out)
        self.meta = read_labelset(self.out)
        self._check_classes(classes)
        self.manifest = read_manifest(self.out)
        if self.manifest.num_rows == 0:
            raise LabelSetError(f"{self.out}: the label set has no usable (status ok) images")
        self.rows = self.manifest.select(["id", "image", "label"]).to_pylist()
        # images a human corrected (`review import`) hold fine labels: own loss weight, no coarse fusion
        self.human = [source == "human" for source in self.manifest.column("source").to_pylist()]
        self.ladder = tuple(self.meta["ladder"])
        self.threshold = self._check_threshold(threshold)
        self.label_lut = self._stored_value_lut(classes)
        self.coarse = coarse or {}
        self.coarse_classes = np.asarray(sorted(coarse_classes), dtype=np.uint8)
        self.coarse_lut = classes.label_to_train_lut()
        self.max_pixels = max_pixels

    def _check_classes(self, classes: ClassSet) -> None:
        names = tuple(self.meta.get("classes") or ())
        if names != classes.names:
            raise LabelSetError(
                f"{self.out}: the label set has classes {list(names)}, but training uses {list(classes.names)}"
            )

    def _check_threshold(self, threshold: float | None) -> float | None:
        if threshold is None or abs(threshold - float(self.meta["threshold"])) < 1e-9:
            return None  # the stored labels already are this threshold
        if not self.meta.get("confidence"):
            raise LabelSetError(
                f"{self.out}: student.threshold = {threshold} needs the confidence store, "
                "but this label set was generated without one (generate.confidence = false)"
            )
        rung_index(threshold, self.ladder, floor=float(self.meta["threshold"]))  # raises naming valid values
        return threshold

    def _stored_value_lut(self, classes: ClassSet) -> np.ndarray | None:
        """Label sets written with ``--label-ids`` store dataset label values; map them back to train ids."""
        if self.meta.get("label_values") == "label_ids":
            return classes.label_to_train_lut()
        return None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def ids(self) -> list[str]:
        return [row["id"] for row in self.rows]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        row = self.rows[index]
        label_path = self.out / row["label"]
        # the image in the orientation its label was made in (older sets read every image as stored)
        image = read_image(row["image"], self.max_pixels, exif_transpose=bool(row.get("exif_transposed")))
        label = read_label(label_path, self.label_lut, self.max_pixels)
        check_same_size(image, label, label_path)
        if self.threshold is not None:
            codes = load_confidence(self.out, row["id"])
            label = rethreshold_array(label, codes, self.threshold, self.ladder)
        coarse_path = self.coarse.get(row["id"])
        if coarse_path is not None and self.coarse_classes.size and not self.human[index]:
            label = fuse_coarse(label, read_label(coarse_path, self.coarse_lut), self.coarse_classes)
        return image, label


def fuse_coarse(label: np.ndarray, coarse: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``label`` with the human coarse label's value wherever that value is one of ``classes``."""
    if coarse.shape != label.shape:
        raise DataError(
            f"coarse label is {coarse.shape[1]}x{coarse.shape[0]}, auto label {label.shape[1]}x{label.shape[0]}"
        )
    return np.where(np.isin(coarse, classes), coarse, label).astype(np.uint8)


class TrainDataset(torch.utils.data.Dataset):
    """Augmented crops of several sources, indexed by :class:`PlanItem`.

    Each item is ``{"image": uint8 (h, w, 3), "label": uint8 (h, w), "weight": float32, "source": int64}``
    where ``weight`` is the source's loss weight, or ``human_loss_weight`` for an auto-label set's image that
    a human corrected (when given).
    """

    def __init__(
        self,
        sources: Sequence[FineSource | AutoLabelSource],
        transform: TrainTransform,
        loss_weights: Sequence[float] | None = None,
        human_loss_weight: float | None = None,
    ):
        self.sources = list(sources)
        self.transform = transform
        self.loss_weights = list(loss_weights) if loss_weights is not None else [1.0] * len(self.sources)
        self.human_loss_weight = human_loss_weight

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.sources)

    def __len__(self) -> int:
        return sum(self.sizes)

    def __getitem__(self, item: PlanItem) -> dict[str, Any]:
        image, label = self.sources[item.source].load(item.item)
        rng = np.random.default_rng(item.seed)
        image, label = self.transform(image, label, rng, item.center)
        return {
            "image": torch.from_numpy(image),
            "label": torch.from_numpy(label),
            "weight": torch.tensor(self.loss_weight(item), dtype=torch.float32),
            "source": torch.tensor(item.source, dtype=torch.int64),
        }

    def loss_weight(self, item: PlanItem) -> float:
        """The loss weight of one item: its source's, or the human one for a corrected image."""
        source = self.sources[item.source]
        if self.human_loss_weight is not None and isinstance(source, AutoLabelSource) and source.human[item.item]:
            return self.human_loss_weight
        return self.loss_weights[item.source]
