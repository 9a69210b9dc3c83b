"""Training: one loop for teacher and student.

- :mod:`~autolabel.train.transforms`: joint image/label augmentation (scale, crop with ignore padding, flip,
  colour jitter), seeded per crop.
- :mod:`~autolabel.train.sampling`: epoch plans -- fine/auto mixing, dropping auto data, class-uniform crops
  around class centroids, DDP sharding.
- :mod:`~autolabel.train.datasets`: fine labels, auto-label sets (re-thresholding, coarse fusion), validation.
- :mod:`~autolabel.train.losses`: RMI, cross-entropy and the multi-scale composite loss.
- :mod:`~autolabel.train.data`: what a run iterates over -- the sources a config names, their centroids,
  the epoch planner, the loader.
- :mod:`~autolabel.train.distributed`: this process's place in a torchrun job, barriers, BN-buffer averaging.
- :mod:`~autolabel.train.state`: the run directory (file names, ``log.jsonl``), checkpoints and the training
  state that makes resuming exact.
- :mod:`~autolabel.train.loop`: :func:`~autolabel.train.loop.fit` (SGD + poly LR, AMP on CUDA, DDP,
  validation, checkpoints, exact resume).

The loop is not imported here: :mod:`autolabel.evaluate` uses the datasets and must not pull in the loop.
"""
