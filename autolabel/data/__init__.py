"""Data: reading and writing images and labels, finding datasets on disk, and the one dataset-spec grammar.

- :mod:`~autolabel.data.io`: images and label maps in and out (checked, atomic).
- :mod:`~autolabel.data.datasets`: the layouts on disk (Cityscapes, Mapillary, a folder, a file list).
- :mod:`~autolabel.data.sources`: ``--data SPEC`` parsed into a :class:`~autolabel.data.sources.Source`.
- :mod:`~autolabel.data.loading`: whole labelled images as a torch dataset.
"""

from autolabel.data.datasets import Sample
from autolabel.data.io import read_image, read_label, write_label_png
from autolabel.data.sources import Source, parse_source

__all__ = ["Sample", "Source", "parse_source", "read_image", "read_label", "write_label_png"]
