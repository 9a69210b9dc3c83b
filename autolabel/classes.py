"""Class sets: names, colours and the mapping between dataset label values and contiguous train ids."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autolabel.config import ClassesConfig
from autolabel.errors import ConfigError

IGNORE_INDEX = 255


@dataclass(frozen=True)
class ClassSet:
    """Classes 0..C-1 (train ids) with names, RGB colours and the label value each has on disk."""

    name: str
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    label_ids: tuple[int, ...]  # label_ids[train_id] = value in the dataset's label files
    ignore_index: int = IGNORE_INDEX

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def index(self, class_name: str) -> int:
        """Train id of ``class_name``; a :class:`ConfigError` listing the valid names if unknown."""
        try:
            return self.names.index(class_name)
        except ValueError:
            raise ConfigError(f"unknown class {class_name!r}; expected one of {', '.join(self.names)}") from None

    def label_to_train_lut(self) -> np.ndarray:
        """A 256-entry uint8 table: dataset label value -> train id (255 for everything not a class)."""
        lut = np.full(256, self.ignore_index, dtype=np.uint8)
        for train_id, label_id in enumerate(self.label_ids):
            lut[label_id] = train_id
        return lut

    def train_to_label_lut(self, void_label: int = 0) -> np.ndarray:
        """A 256-entry uint8 table: train id -> dataset label value (ignore -> ``void_label``)."""
        lut = np.full(256, void_label, dtype=np.uint8)
        for train_id, label_id in enumerate(self.label_ids):
            lut[train_id] = label_id
        return lut

    def palette(self) -> np.ndarray:
        """A (256, 3) uint8 colour table for train ids; ignore is black."""
        table = np.zeros((256, 3), dtype=np.uint8)
        table[: self.num_classes] = np.asarray(self.colors, dtype=np.uint8)
        return table


# (name, labelId, colour) of Cityscapes' 19 evaluation classes in train-id order.
_CITYSCAPES = (
    ("road", 7, (128, 64, 128)),
    ("sidewalk", 8, (244, 35, 232)),
    ("building", 11, (70, 70, 70)),
    ("wall", 12, (102, 102, 156)),
    ("fence", 13, (190, 153, 153)),
    ("pole", 17, (153, 153, 153)),
    ("traffic light", 19, (250, 170, 30)),
    ("traffic sign", 20, (220, 220, 0)),
    ("vegetation", 21, (107, 142, 35)),
    ("terrain", 22, (152, 251, 152)),
    ("sky", 23, (70, 130, 180)),
    ("person", 24, (220, 20, 60)),
    ("rider", 25, (255, 0, 0)),
    ("car", 26, (0, 0, 142)),
    ("truck", 27, (0, 0, 70)),
    ("bus", 28, (0, 60, 100)),
    ("train", 31, (0, 80, 100)),
    ("motorcycle", 32, (0, 0, 230)),
    ("bicycle", 33, (119, 11, 32)),
)

CITYSCAPES = ClassSet(
    name="cityscapes",
    names=tuple(n for n, _, _ in _CITYSCAPES),
    colors=tuple(c for _, _, c in _CITYSCAPES),
    label_ids=tuple(i for _, i, _ in _CITYSCAPES),
)


def _parse_hex(key: str, text: str) -> tuple[int, int, int]:
    digits = text.lstrip("#")
    if len(digits) != 6:
        raise ConfigError(f"{key}: {text!r} is not a colour; expected '#rrggbb'")
    try:
        return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))
    except ValueError:
        raise ConfigError(f"{key}: {text!r} is not a colour; expected '#rrggbb'") from None


def generated_colors(n: int) -> tuple[tuple[int, int, int], ...]:
    """``n`` distinct colours spread around the hue circle (for class lists that bring none)."""
    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.95 - 0.3 * (i % 2))
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return tuple(out)


def custom_class_set(
    names: tuple[str, ...],
    colors: tuple[str, ...] = (),
    label_ids: tuple[int, ...] = (),
    ignore_index: int = IGNORE_INDEX,
    name: str = "custom",
) -> ClassSet:
    """A class set described in config (Mapillary, medical, ...)."""
    if len(set(names)) != len(names):
        raise ConfigError("classes.names: class names must be unique")
    rgb = tuple(_parse_hex(f"classes.colors[{i}]", c) for i, c in enumerate(colors)) or generated_colors(len(names))
    ids = label_ids or tuple(range(len(names)))
    if any(not 0 <= i <= 255 or i == ignore_index for i in ids):
        raise ConfigError(f"classes.label_ids: values must be 0..255 and differ from the ignore index {ignore_index}")
    return ClassSet(name=name, names=tuple(names), colors=rgb, label_ids=tuple(ids), ignore_index=ignore_index)


def class_set_from_config(cfg: ClassesConfig) -> ClassSet:
    """The class set a config describes."""
    if cfg.preset == "cityscapes":
        return CITYSCAPES
    return custom_class_set(cfg.names, cfg.colors, cfg.label_ids, cfg.ignore_index)


def class_set_for_names(names: Sequence[str]) -> ClassSet:
    """The built-in Cityscapes set when ``names`` are its names, else a custom set of these names."""
    if tuple(names) == CITYSCAPES.names:
        return CITYSCAPES
    return custom_class_set(tuple(names))
