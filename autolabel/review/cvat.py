"""CVAT's two mask formats, written for task creation and read back from CVAT's export after correction.

``cvat-cityscapes`` is CVAT's "Cityscapes 1.0"::

    label_colors.txt                  "R G B name" per line; line i is index i; index 0 = background
    gtFine/default/<city>/<key>_gtFine_labelIds.png     8-bit, the label-colour index of each pixel
    gtFine/default/<city>/<key>_gtFine_instanceIds.png  16-bit, the same indices (no instances: < 1000)
    gtFine/default/<city>/<key>_gtFine_color.png        RGB, each pixel in its class colour
    leftImg8bit/default/<city>/<key>_leftImg8bit.png    the image (for creating the task)

``cvat-mask`` is CVAT's "Segmentation mask 1.1" (Pascal VOC style)::

    labelmap.txt                      "name:R,G,B:parts:actions" per line; background first
    ImageSets/Segmentation/default.txt  the keys, one per line
    SegmentationClass/<key>.png       RGB, each pixel in its class colour, black = unlabelled
    JPEGImages/<key>.<ext>            the image (for creating the task)

The city folder exists for Cityscapes ids only. Ignored pixels (255) are background (index 0 / black): CVAT
leaves them unlabelled. Class names lose their spaces (``traffic_light``): CVAT's Cityscapes colour file is
split on whitespace. ``annotations.zip`` holds the annotation files alone, what CVAT's "Upload annotations"
takes. CVAT exports the same layouts (in a zip, possibly under other folders), which is what the readers take.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from autolabel.classes import ClassSet
from autolabel.errors import ReviewError
from autolabel.fs import atomic_write_bytes
from autolabel.review.package import (
    BACKGROUND,
    Correction,
    ExportItem,
    ExportTree,
    check_mask_colors,
    city_of,
    class_lookup,
    decode_index_png,
    decode_rgb_png,
    encode_png,
    hex_color,
    is_background,
    key_of_file,
    normalise_name,
    tool_label_name,
    write_zip,
)

SUBSET = "default"  # CVAT's subset of a task without subsets
CITYSCAPES_COLORS = "label_colors.txt"
CITYSCAPES_SUFFIXES = ("_gtFine_labelIds", "_gtFine_instanceIds", "_gtFine_color", "_gtFine_labelTrainIds")
VOC_LABELMAP = "labelmap.txt"
VOC_CLASS_DIR = "SegmentationClass"
ANNOTATIONS_ZIP = "annotations.zip"
CVAT_LABELS = "cvat_labels.json"  # the task's labels, for CVAT's "Raw" label editor
_UNDEFINED, _FOREIGN = -1, -2  # index -> train id table: no such index / a label that is none of our classes


def _index_to_train(classes: ClassSet) -> np.ndarray:
    """Train id -> export index (0 = background/ignore, class t -> t + 1) as a 256-entry table."""
    table = np.zeros(256, dtype=np.uint8)
    table[: classes.num_classes] = np.arange(1, classes.num_classes + 1, dtype=np.uint8)
    return table


def _palette(classes: ClassSet) -> np.ndarray:
    """Export index -> RGB (index 0 black)."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[1 : classes.num_classes + 1] = np.asarray(classes.colors, dtype=np.uint8)
    return palette


def _write_labels_json(staging: Path, classes: ClassSet) -> None:
    labels = [
        {"name": tool_label_name(n), "color": hex_color(c), "type": "mask", "attributes": []}
        for n, c in zip(classes.names, classes.colors, strict=True)
    ]
    atomic_write_bytes(staging / CVAT_LABELS, (json.dumps(labels, indent=2) + "\n").encode("utf-8"))


# ---------------------------------------------------------------------------------------------------------
# Cityscapes 1.0


def cityscapes_stem(item: ExportItem) -> str:
    """``<city>/<key>`` for Cityscapes ids, else ``<key>``."""
    city = city_of(item.id)
    return f"{city}/{item.key}" if city else item.key


def write_cityscapes(staging: Path, items: Sequence[ExportItem], classes: ClassSet) -> dict[str, dict[str, str]]:
    """Write the package's files into ``staging``; returns key -> {"image": path, "label": path}."""
    check_mask_colors(classes)
    lines = [f"0 0 0 {BACKGROUND}"] + [
        f"{c[0]} {c[1]} {c[2]} {tool_label_name(n)}" for n, c in zip(classes.names, classes.colors, strict=True)
    ]
    atomic_write_bytes(staging / CITYSCAPES_COLORS, ("\n".join(lines) + "\n").encode("utf-8"))
    _write_labels_json(staging, classes)
    to_index, palette = _index_to_train(classes), _palette(classes)
    annotations = [CITYSCAPES_COLORS]
    files = {}
    for item in items:
        stem = cityscapes_stem(item)
        index = to_index[item.labels()]  # (H, W) export indices
        base = f"gtFine/{SUBSET}/{stem}_gtFine_"
        outputs = {
            f"{base}labelIds.png": encode_png(index),
            f"{base}instanceIds.png": encode_png(index.astype(np.uint16)),
            f"{base}color.png": encode_png(palette[index]),
        }
        for name, data in outputs.items():
            atomic_write_bytes(staging / name, data, durable=False)
        annotations += list(outputs)
        image = f"leftImg8bit/{SUBSET}/{stem}_leftImg8bit{item.image_suffix}"
        item.place_image(staging / image)
        files[item.key] = {"image": image, "label": f"{base}labelIds.png"}
    write_zip(staging / ANNOTATIONS_ZIP, staging, annotations)
    return files


def parse_cityscapes_colors(text: str, where: str) -> list[tuple[str, tuple[int, int, int] | None]]:
    """``label_colors.txt``: one ``R G B name`` (or ``name``) per line; the line order gives the index.

    Names may contain spaces here (CVAT would have split them; they are matched loosely anyway)."""
    entries: list[tuple[str, tuple[int, int, int] | None]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) >= 4:
            try:
                rgb = (int(parts[0]), int(parts[1]), int(parts[2]))
            except ValueError:
                raise ReviewError(f"{where} line {number}: expected 'R G B name', got {line!r}") from None
            entries.append((" ".join(parts[3:]), rgb))
        elif len(parts) == 1:
            entries.append((parts[0], None))
        else:
            raise ReviewError(f"{where} line {number}: expected 'R G B name' or 'name', got {line!r}")
    return entries


def _name_table(names: Sequence[str], classes: ClassSet) -> np.ndarray:
    """Export index -> train id (255 for background, _FOREIGN for names that are none of our classes)."""
    lookup = class_lookup(classes)
    table = np.full(256, _UNDEFINED, dtype=np.int16)
    for index, name in enumerate(names[:256]):
        table[index] = classes.ignore_index if is_background(name) else lookup.get(normalise_name(name), _FOREIGN)
    return table


def _apply_table(index: np.ndarray, table: np.ndarray, names: Sequence[str], where: str, table_file: str) -> np.ndarray:
    mapped = table[index]
    if (mapped < 0).any():
        bad = int(index[mapped < 0][0])
        y, x = (int(v[0]) for v in np.nonzero(mapped < 0))
        if table[bad] == _UNDEFINED:
            raise ReviewError(f"{where}: value {bad} at x={x}, y={y} has no line in {table_file}")
        raise ReviewError(
            f"{where}: unknown class {names[bad]!r} (value {bad} at x={x}, y={y}); "
            f"{table_file} names it, but the label set has no such class"
        )
    return mapped.astype(np.uint8)


def read_cityscapes(tree: ExportTree, classes: ClassSet) -> list[Correction]:
    """The corrected label maps of a "Cityscapes 1.0" export (``*_gtFine_labelIds.png`` + ``label_colors.txt``)."""
    colors = tree.find(CITYSCAPES_COLORS)
    if colors is None:
        raise ReviewError(
            f"{tree.path}: no {CITYSCAPES_COLORS}; expected CVAT's 'Cityscapes 1.0' export (or pass --format)"
        )
    entries = parse_cityscapes_colors(tree.read(colors).decode("utf-8", "replace"), tree.where(colors))
    names = [name for name, _ in entries]
    table = _name_table(names, classes)
    out = []
    for name in tree.names:
        if not name.endswith("_gtFine_labelIds.png"):
            continue
        where = tree.where(name)
        index = decode_index_png(tree.read(name), where)
        labels = _apply_table(index, table, names, where, CITYSCAPES_COLORS)
        out.append(Correction(labels=labels, where=where, key=key_of_file(name, CITYSCAPES_SUFFIXES)))
    if not out:
        raise ReviewError(f"{tree.path}: no *_gtFine_labelIds.png files; is this a 'Cityscapes 1.0' export?")
    return out


# ---------------------------------------------------------------------------------------------------------
# Segmentation mask 1.1


def write_voc(staging: Path, items: Sequence[ExportItem], classes: ClassSet) -> dict[str, dict[str, str]]:
    """Write the package's files into ``staging``; returns key -> {"image": path, "label": path}."""
    check_mask_colors(classes)
    lines = ["# label:color_rgb:parts:actions", f"{BACKGROUND}:0,0,0::"] + [
        f"{tool_label_name(n)}:{c[0]},{c[1]},{c[2]}::" for n, c in zip(classes.names, classes.colors, strict=True)
    ]
    atomic_write_bytes(staging / VOC_LABELMAP, ("\n".join(lines) + "\n").encode("utf-8"))
    subset = f"ImageSets/Segmentation/{SUBSET}.txt"
    atomic_write_bytes(staging / subset, "".join(f"{item.key}\n" for item in items).encode("utf-8"))
    _write_labels_json(staging, classes)
    to_index, palette = _index_to_train(classes), _palette(classes)
    annotations = [VOC_LABELMAP, subset]
    files = {}
    for item in items:
        mask = f"{VOC_CLASS_DIR}/{item.key}.png"
        atomic_write_bytes(staging / mask, encode_png(palette[to_index[item.labels()]]), durable=False)
        annotations.append(mask)
        image = f"JPEGImages/{item.key}{item.image_suffix}"
        item.place_image(staging / image)
        files[item.key] = {"image": image, "label": mask}
    write_zip(staging / ANNOTATIONS_ZIP, staging, annotations)
    return files


def parse_voc_labelmap(text: str, where: str) -> list[tuple[str, tuple[int, int, int] | None]]:
    """``labelmap.txt``: ``name:R,G,B:parts:actions`` per line (colour may be empty)."""
    entries: list[tuple[str, tuple[int, int, int] | None]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(":")
        color = rest.split(":", 1)[0].strip()
        rgb = None
        if color:
            try:
                r, g, b = (int(c) for c in color.split(","))
            except ValueError:
                raise ReviewError(f"{where} line {number}: colour {color!r}; expected 'R,G,B'") from None
            rgb = (r, g, b)
        entries.append((name.strip(), rgb))
    return entries


def _color_table(
    entries: Sequence[tuple[str, tuple[int, int, int] | None]], classes: ClassSet, where: str
) -> dict[int, int | str]:
    """Packed colour (R << 16 | G << 8 | B) -> train id (or the foreign class name)."""
    lookup = class_lookup(classes)
    table: dict[int, int | str] = {}
    for name, rgb in entries:
        if rgb is None:
            continue
        packed = (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]
        if packed in table:
            raise ReviewError(f"{where}: colour {rgb} is given to two labels")
        table[packed] = classes.ignore_index if is_background(name) else lookup.get(normalise_name(name), name)
    return table


def read_voc(tree: ExportTree, classes: ClassSet) -> list[Correction]:
    """The corrected label maps of a "Segmentation mask 1.1" export (``SegmentationClass/*.png`` + labelmap)."""
    labelmap = tree.find(VOC_LABELMAP)
    if labelmap is None:
        raise ReviewError(
            f"{tree.path}: no {VOC_LABELMAP}; expected CVAT's 'Segmentation mask 1.1' export (or pass --format)"
        )
    where = tree.where(labelmap)
    table = _color_table(parse_voc_labelmap(tree.read(labelmap).decode("utf-8", "replace"), where), classes, where)
    out = []
    for name in tree.names:
        parts = PurePosixPath(name).parts
        if VOC_CLASS_DIR not in parts[:-1] or not name.lower().endswith(".png"):
            continue
        where = tree.where(name)
        labels = _unpaint(decode_rgb_png(tree.read(name), where), table, where)
        out.append(Correction(labels=labels, where=where, key=key_of_file(name, ())))
    if not out:
        raise ReviewError(f"{tree.path}: no {VOC_CLASS_DIR}/*.png masks; is this a 'Segmentation mask 1.1' export?")
    return out


def _unpaint(rgb: np.ndarray, table: dict[int, int | str], where: str) -> np.ndarray:
    """(H, W, 3) colour mask -> (H, W) train ids; a colour outside the label map is a :class:`ReviewError`."""
    wide = rgb.astype(np.int32)
    packed = (wide[..., 0] << 16) | (wide[..., 1] << 8) | wide[..., 2]  # (H, W)
    colors, inverse = np.unique(packed, return_inverse=True)
    ids = np.zeros(len(colors), dtype=np.uint8)
    for j, color in enumerate(colors.tolist()):
        target = table.get(color)
        if isinstance(target, int):
            ids[j] = target
            continue
        y, x = (int(v[0]) for v in np.nonzero(packed == color))
        rgb_text = ((color >> 16) & 255, (color >> 8) & 255, color & 255)
        if target is None:
            raise ReviewError(f"{where}: unknown class colour {rgb_text} at x={x}, y={y} (not in {VOC_LABELMAP})")
        raise ReviewError(
            f"{where}: unknown class {target!r} (colour {rgb_text} at x={x}, y={y}); the label set has no such class"
        )
    return ids[inverse.reshape(packed.shape)]
