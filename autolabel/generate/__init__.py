"""Auto-labelling: multi-scale teacher inference into thresholded label PNGs, manifest and confidence store.

Readers of a label set (train-student, report) need only :func:`read_labelset`, :func:`read_manifest`,
:func:`load_confidence` and :func:`rethreshold_array`; evaluation reuses :func:`predict_logits` and
:func:`threshold_on_device`. Running a job: :func:`autolabel.generate.runner.run_generate` (in process) or
:func:`autolabel.generate.dask_runner.run_generate_dask`.
"""

from autolabel.generate.confidence import load_confidence, make_ladder, rethreshold_array
from autolabel.generate.inference import predict_logits, threshold_on_device
from autolabel.generate.labelset import read_labelset, read_manifest

__all__ = [
    "load_confidence",
    "make_ladder",
    "predict_logits",
    "read_labelset",
    "read_manifest",
    "rethreshold_array",
    "threshold_on_device",
]
