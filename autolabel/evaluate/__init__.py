"""The evaluation stage: how good a model is, and how good a label set is.

- :mod:`~autolabel.evaluate.checkpoint`: per-class IoU and mIoU of a checkpoint on labelled images.
- :mod:`~autolabel.evaluate.predictions`: predictions exported as label PNGs (ours and the official Cityscapes naming).
- :mod:`~autolabel.evaluate.audit`: a label set against human labels (precision, recall, coverage, threshold sweep).
"""
