"""Exporting predictions as label PNGs, in our naming and in the one the official Cityscapes script searches.

:class:`PredictionWriter` writes each prediction twice: as train ids (``DIR/trainIds/<id>.png``) and as dataset
label ids (``DIR/labelIds/<name>.png``). For Cityscapes ids the label-id file is named
``<city>_<seq>_<frame>_leftImg8bit.png`` in one flat folder, the layout
``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling`` searches (``CITYSCAPES_RESULTS``).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np

from autolabel.classes import ClassSet
from autolabel.data.io import write_label_png

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
