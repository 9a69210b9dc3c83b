"""Predictions as label PNGs: exporting them in our naming and the official Cityscapes one, and reading a
folder of them back (ours or another tool's) to evaluate it like a model.

:class:`PredictionWriter` writes each prediction twice: as train ids (``DIR/trainIds/<id>.png``) and as dataset
label ids (``DIR/labelIds/<name>.png``). For Cityscapes ids the label-id file is named
``<city>_<seq>_<frame>_leftImg8bit.png`` in one flat folder, the layout
``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling`` searches (``CITYSCAPES_RESULTS``).

:func:`evaluate_predictions` reads such a folder, or any folder of PNGs named by image id or Cityscapes name
(``<city>_<seq>_<frame>*.png``, as the official script matches them), and counts them exactly as a model's
predictions are counted, so ``evaluate --predictions`` numbers compare with ``evaluate --checkpoint`` ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
import torch

from autolabel.classes import ClassSet
from autolabel.data.datasets import Sample
from autolabel.data.io import read_label, write_label_png
from autolabel.data.sources import cityscapes_name
from autolabel.errors import DataError
from autolabel.metrics import ConfusionMatrix, SegMetrics

log = logging.getLogger(__name__)

TRAIN_IDS_DIR = "trainIds"
LABEL_IDS_DIR = "labelIds"
_CITYSCAPES_TAG = "_leftImg8bit"


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
# reading a folder of predictions back (ours, or another tool's)

Values = Literal["train-ids", "label-ids"]


@dataclass(frozen=True)
class PredictionFolder:
    """Where the prediction PNGs of an evaluation are and what their values are."""

    root: Path
    values: Values
    files: dict[str, Path]  # match key (relative id, and unique Cityscapes names) -> PNG

    def find(self, sample: Sample) -> Path | None:
        """The prediction of ``sample``: by its id, else by its Cityscapes name (``<city>_<seq>_<frame>*``)."""
        found = self.files.get(sample.id)
        if found is None:
            name = cityscapes_name(sample.id)
            found = self.files.get(name) if name is not None else None
        return found


def prediction_folder(path: str | Path, values: Values | None, default: Values) -> PredictionFolder:
    """The PNGs under ``path``, matched by relative id or Cityscapes name.

    A folder :class:`PredictionWriter` wrote (``trainIds/`` and ``labelIds/`` inside) is read from
    ``trainIds/`` (or ``labelIds/`` with ``values="label-ids"``); any other folder holds ``values`` PNGs
    (``default`` when None: the values of the dataset's own labels).
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: predictions folder not found (expected a folder of PNGs)")
    ours = {TRAIN_IDS_DIR: "train-ids", LABEL_IDS_DIR: "label-ids"}
    layout = [name for name in ours if (root / name).is_dir()]
    if layout:
        wanted = [name for name in layout if values is None or ours[name] == values]
        if not wanted:
            raise DataError(f"{root}: holds {', '.join(layout)}/ but no {values} predictions")
        sub = wanted[0]
        return PredictionFolder(root / sub, ours[sub], _index_pngs(root / sub))  # type: ignore[arg-type]
    return PredictionFolder(root, values or default, _index_pngs(root))


def _index_pngs(root: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    by_name: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*.png")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # hidden files, and temporary ones an interrupted write left
        files[path.relative_to(root).with_suffix("").as_posix()] = path
        name = cityscapes_name(path.name)
        if name is not None:
            by_name.setdefault(name, []).append(path)
    for name, paths in by_name.items():
        if len(paths) == 1:
            files.setdefault(name, paths[0])
    if not files:
        raise DataError(f"{root}: no .png predictions found")
    return files


def evaluate_predictions(
    folder: PredictionFolder,
    samples: Sequence[Sample],
    classes: ClassSet,
    *,
    labels_are_train_ids: bool = False,
    max_pixels: int | None = None,
    on_image: Callable[[], None] | None = None,
) -> SegMetrics:
    """Per-class IoU and mIoU of the predictions in ``folder`` against ``samples``' labels, counted exactly as
    :func:`~autolabel.models.evaluation.evaluate_model` counts a model's (predictions outside the classes
    are misses)."""
    missing = [s for s in samples if folder.find(s) is None]
    if missing:
        example = missing[0]
        raise DataError(
            f"{folder.root}: no prediction for {len(missing)} of {len(samples)} labelled images, e.g. "
            f"{example.id} (expected {example.id}.png, or a file named after its Cityscapes name)"
        )
    to_train = classes.label_to_train_lut()
    matrix = ConfusionMatrix(classes.num_classes)
    outside = total = 0
    for sample in samples:
        path = folder.find(sample)
        assert path is not None and sample.label is not None
        raw = read_label(path, max_pixels=max_pixels)
        pred = to_train[raw] if folder.values == "label-ids" else raw
        label = read_label(sample.label, None if labels_are_train_ids else to_train, max_pixels)
        if pred.shape != label.shape:
            raise DataError(
                f"{path}: prediction is {pred.shape[1]}x{pred.shape[0]} but the label {sample.label} is "
                f"{label.shape[1]}x{label.shape[0]}"
            )
        if folder.values == "train-ids":
            outside += int(np.count_nonzero((raw >= classes.num_classes) & (raw != classes.ignore_index)))
            total += raw.size
        matrix.update(torch.from_numpy(pred), torch.from_numpy(label))
        if on_image is not None:
            on_image()
    if total and outside > 0.01 * total:
        log.warning(
            "%s: %.0f%% of predicted pixels hold values >= %d, which are not train ids; if these are dataset "
            "label ids, read them as label-ids",
            folder.root,
            100 * outside / total,
            classes.num_classes,
        )
    return matrix.compute(classes.names)
