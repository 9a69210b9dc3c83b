"""Whole labelled images as a torch dataset: what evaluation and validation iterate over."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data

from autolabel.classes import IGNORE_INDEX
from autolabel.data.datasets import Sample
from autolabel.data.io import read_image, read_label
from autolabel.errors import DataError


def check_same_size(image: np.ndarray, label: np.ndarray, label_path: Path) -> None:
    """A :class:`DataError` naming ``label_path`` when the label's size is not its image's."""
    if image.shape[:2] != label.shape:
        raise DataError(
            f"{label_path}: label is {label.shape[1]}x{label.shape[0]} but its image is "
            f"{image.shape[1]}x{image.shape[0]}"
        )


class EvalDataset(torch.utils.data.Dataset):
    """Whole images with their labels (train ids) for validation and evaluation; batch them one at a time
    (image sizes may differ)."""

    def __init__(self, samples: Sequence[Sample], lut: np.ndarray | None, max_pixels: int | None = None):
        self.samples = list(samples)
        self.lut = lut
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        image = read_image(sample.image, self.max_pixels)
        if sample.label is None:
            label = np.full(image.shape[:2], IGNORE_INDEX, dtype=np.uint8)
        else:
            label = read_label(sample.label, self.lut, self.max_pixels)
            check_same_size(image, label, sample.label)
        return {"image": torch.from_numpy(image), "label": torch.from_numpy(label), "index": index}
