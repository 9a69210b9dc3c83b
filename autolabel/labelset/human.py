"""Human label maps written as a label set, so a student trains on them through the path it trains on auto labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autolabel import labelset
from autolabel.classes import ClassSet
from autolabel.data.datasets import Sample
from autolabel.data.io import read_label
from autolabel.data.sources import Source
from autolabel.errors import DataError
from autolabel.labelset.checksums import input_fingerprint
from autolabel.labelset.files import WriteSettings, finalise_image

HUMAN_LABELS = "human-coarse"  # stands in for the teacher hash of a label set made from human labels


def coarse_labelset(
    samples: Sequence[Sample],
    out: Path,
    classes: ClassSet,
    source: Source,
    *,
    centroid_tile: int = 1024,
    chunk_size: int = 64,
) -> Path:
    """The human coarse labels of ``samples`` written as a label set (same format as ``generate``'s), so a
    student trains on them through exactly the path it trains on auto labels. Skipped when complete."""
    with_coarse = [s for s in samples if s.coarse is not None]
    if not with_coarse:
        raise DataError(f"{source.spec()}: no human coarse labels")
    meta = labelset.make_labelset_meta(
        teacher_sha256=HUMAN_LABELS,
        model_config={"labels": "gtCoarse"},
        scales=(1.0,),
        flip=False,
        # one rung at 0: every human-labelled pixel is "above threshold" (code 1), as the audit expects
        threshold=0.0,
        ladder=(0.0,),
        class_names=classes.names,
        label_ids=None,
        ignore_index=classes.ignore_index,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        tile_size=0,
        tile_overlap=0.0,
        confidence=False,
        centroid_tile=centroid_tile,
        source=source.to_dict(),
    )
    labelset.prepare_output(out, meta, overwrite=True)
    if labelset.read_manifest(out).num_rows == len(with_coarse):
        return out
    settings = WriteSettings(
        out=out,
        num_classes=classes.num_classes,
        shard="0/1",
        confidence=False,
        centroid_tile=centroid_tile,
        ignore_index=classes.ignore_index,
    )
    lut = classes.label_to_train_lut()
    for start in range(0, len(with_coarse), chunk_size):  # one manifest part per chunk
        chunk = with_coarse[start : start + chunk_size]
        rows = []
        for sample in chunk:
            assert sample.coarse is not None  # with_coarse holds only samples with coarse labels
            labels = read_label(sample.coarse, lut)
            # human labels are certain where they exist: confidence 1 on labelled pixels
            rows.append(
                finalise_image(
                    settings,
                    sample,
                    labels,
                    np.zeros_like(labels),
                    float((labels != classes.ignore_index).mean()),
                    {},
                    0.0,
                    input_fingerprint(Path(sample.image)),  # the image the labels belong to, as for auto labels
                    source="coarse",
                )
            )
        labelset.write_part(out, rows)
    return out
