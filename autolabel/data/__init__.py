"""Data: reading and writing images and labels, discovering datasets on disk."""

from autolabel.data.datasets import (
    Sample,
    auto_label_relpath,
    discover,
    discover_cityscapes,
    discover_filelist,
    discover_folder,
    discover_mapillary,
    mapillary_class_set,
)
from autolabel.data.io import (
    atomic_write_bytes,
    encode_image_png,
    encode_label_png,
    read_image,
    read_label,
    write_image_png,
    write_label_png,
)

__all__ = [
    "Sample",
    "atomic_write_bytes",
    "auto_label_relpath",
    "discover",
    "discover_cityscapes",
    "discover_filelist",
    "discover_folder",
    "discover_mapillary",
    "encode_image_png",
    "encode_label_png",
    "mapillary_class_set",
    "read_image",
    "read_label",
    "write_image_png",
    "write_label_png",
]
