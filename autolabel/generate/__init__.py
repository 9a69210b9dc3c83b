"""The labelling stage: a multi-scale teacher over many images into a label set (:mod:`autolabel.labelset`).

- :mod:`~autolabel.generate.teacher`: the teacher on a device, predicting and thresholding batches there.
- :mod:`~autolabel.generate.runner`: planning, resuming and the pipelined in-process run (:func:`run_generate`).
- :mod:`~autolabel.generate.dask_runner`: the same run spread over a Dask cluster.
- :mod:`~autolabel.generate.sharding`: deterministic shards by image id and the launchers' environment.
"""

from autolabel.generate.runner import GenerateJob, GenerateResult, run_generate

__all__ = ["GenerateJob", "GenerateResult", "run_generate"]
