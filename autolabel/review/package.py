"""What every review format shares: the package's ``review.json``, image keys, class names, reading exports.

An exported image is named by its *key*: the last part of its id (Cityscapes' ``_leftImg8bit`` dropped), or
the whole id with ``/`` as ``__`` where two images of the label set would share that name. Keys depend only
on the label set's ids, so the files a tool exports (whatever folders it puts them in) are matched back to
images by their file name alone.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from autolabel.classes import ClassSet
from autolabel.data.datasets import CITYSCAPES_IMAGE_TAG
from autolabel.data.io import read_image, read_label, write_image_png
from autolabel.errors import ReviewError
from autolabel.fs import atomic_write_bytes, is_temp_name, link_or_copy

REVIEW_FILE = "review.json"
PACKAGE_VERSION = 1
BACKGROUND = "background"  # the CVAT formats' name for unlabelled pixels (index 0, colour black)
_BACKGROUND_NAMES = {"background", "unlabeled", "unlabelled", "void", "ignore"}


def image_keys(ids: Iterable[str]) -> dict[str, str]:
    """Image id -> its key: a file-name-safe name unique among ``ids`` (see the module docstring)."""
    ids = sorted(set(ids))
    short = {i: _short_key(i) for i in ids}
    taken = Counter(short.values())
    return {i: short[i] if taken[short[i]] == 1 else i.replace("/", "__") for i in ids}


def _short_key(image_id: str) -> str:
    name = PurePosixPath(image_id).name
    return name[: -len(CITYSCAPES_IMAGE_TAG)] if name.endswith(CITYSCAPES_IMAGE_TAG) else name


def city_of(image_id: str) -> str | None:
    """The city folder of a Cityscapes-style id (``<split>/<city>/<name>_leftImg8bit``), else None."""
    parts = PurePosixPath(image_id).parts
    return parts[-2] if len(parts) >= 2 and parts[-1].endswith(CITYSCAPES_IMAGE_TAG) else None


def key_of_file(name: str, suffixes: Sequence[str]) -> str:
    """The key a tool's exported file stands for: its name without the extension and the format's suffixes."""
    stem = PurePosixPath(name).name
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    for suffix in suffixes:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return stem[: -len(CITYSCAPES_IMAGE_TAG)] if stem.endswith(CITYSCAPES_IMAGE_TAG) else stem


def tool_label_name(name: str) -> str:
    """A class name as the CVAT formats write it: no spaces (CVAT's Cityscapes colour file splits on them)."""
    return re.sub(r"\s+", "_", name.strip())


def normalise_name(name: str) -> str:
    """Class names compared loosely: ``traffic light``, ``traffic_light``, ``TrafficLight`` are one class."""
    return re.sub(r"[\s_\-]+", "", name).lower()


def is_background(name: str) -> bool:
    return normalise_name(name) in _BACKGROUND_NAMES


def class_lookup(classes: ClassSet) -> dict[str, int]:
    """Normalised class name -> train id."""
    return {normalise_name(n): i for i, n in enumerate(classes.names)}


def check_mask_colors(classes: ClassSet) -> None:
    """The colour-mask formats need a distinct colour per class, none of them black (unlabelled)."""
    seen: dict[tuple[int, int, int], str] = {}
    for name, color in zip(classes.names, classes.colors, strict=True):
        rgb = (int(color[0]), int(color[1]), int(color[2]))
        if rgb == (0, 0, 0):
            raise ReviewError(
                f"class {name!r} is black, the colour the mask formats keep for unlabelled pixels; "
                "give it another colour in classes.colors"
            )
        if rgb in seen:
            raise ReviewError(
                f"classes {seen[rgb]!r} and {name!r} share the colour {rgb}; colour masks need one colour per "
                "class (set classes.colors)"
            )
        seen[rgb] = name


def hex_color(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb))


# ---------------------------------------------------------------------------------------------------------
# review.json


@dataclass(frozen=True)
class ReviewPackage:
    """A parsed ``review.json``: which label set, which images (in rank order) and how they were chosen."""

    path: Path
    data: dict[str, Any]

    @property
    def labelset_id(self) -> str:
        return str(self.data["labelset_id"])

    @property
    def format(self) -> str:
        return str(self.data["format"])

    @property
    def images(self) -> list[dict[str, Any]]:
        return list(self.data["images"])

    def by_key(self) -> dict[str, dict[str, Any]]:
        return {entry["key"]: entry for entry in self.images}

    def by_id(self) -> dict[str, dict[str, Any]]:
        return {entry["id"]: entry for entry in self.images}


def read_package(path: str | Path) -> ReviewPackage:
    """``review.json`` (or the folder holding it); a :class:`ReviewError` naming the file otherwise."""
    path = Path(path)
    if path.is_dir():
        path = path / REVIEW_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReviewError(f"{path}: not found; pass the review.json that `autolabel review export` wrote") from None
    except (OSError, ValueError) as exc:
        raise ReviewError(f"{path}: unreadable review package description ({exc})") from None
    required = ("labelset_id", "format", "images")
    if not isinstance(data, dict) or any(k not in data for k in required):
        raise ReviewError(f"{path}: not a review.json of `autolabel review export` (needs {', '.join(required)})")
    return ReviewPackage(path=path, data=data)


def find_package(exported: Path) -> ReviewPackage | None:
    """The review.json next to (or inside) an export, if the user kept the export in the package folder."""
    for folder in (exported, exported.parent, exported.parent.parent):
        if (folder / REVIEW_FILE).is_file():
            return read_package(folder / REVIEW_FILE)
    return None


def digest_labels(items: Iterable[tuple[str, np.ndarray]]) -> str:
    """sha256 over (image id, shape, pixels) of each correction, in id order: the corrections' identity,
    the same whether they came as a zip, a folder, or re-exported by the tool."""
    digest = hashlib.sha256()
    for image_id, labels in sorted(items, key=lambda item: item[0]):
        digest.update(f"{image_id}\0{labels.shape[0]}x{labels.shape[1]}\0".encode())
        digest.update(hashlib.sha256(np.ascontiguousarray(labels, dtype=np.uint8).tobytes()).digest())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------
# reading what a tool exported: a folder or a zip archive, never extracted


class ExportTree:
    """The files of an export (a folder or a ``.zip``) by POSIX path relative to its root."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        if self.path.is_dir():
            self.names = sorted(
                p.relative_to(self.path).as_posix()
                for p in self.path.rglob("*")
                if p.is_file() and not any(is_temp_name(part) for part in p.relative_to(self.path).parts)
            )
        elif zipfile.is_zipfile(self.path):
            self._zip = zipfile.ZipFile(self.path)
            self.names = sorted(i.filename for i in self._zip.infolist() if not i.is_dir() and not _junk(i.filename))
        elif self.path.exists():
            raise ReviewError(f"{self.path}: expected a folder or a .zip archive exported by the tool")
        else:
            raise ReviewError(f"{self.path}: not found")

    def where(self, name: str) -> str:
        """How messages name a file of the export."""
        return f"{self.path}!{name}" if self._zip is not None else str(self.path / name)

    def read(self, name: str) -> bytes:
        try:
            if self._zip is not None:
                return self._zip.read(name)
            return (self.path / name).read_bytes()
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            raise ReviewError(f"{self.where(name)}: cannot read ({exc})") from None

    def find(self, basename: str) -> str | None:
        """The shallowest file with this name (tools put their export one folder down, or not)."""
        hits = [n for n in self.names if PurePosixPath(n).name == basename]
        return min(hits, key=lambda n: (n.count("/"), n)) if hits else None

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> ExportTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _junk(name: str) -> bool:
    """What archivers add beside the files (macOS resource forks)."""
    parts = PurePosixPath(name).parts
    return "__MACOSX" in parts or parts[-1].startswith("._")


@dataclass
class Correction:
    """One corrected label map read from an export (train ids, ignore where nothing is labelled)."""

    labels: np.ndarray  # (H, W) uint8
    where: str  # the file (or task) it came from, for messages
    key: str | None = None  # matched by key (CVAT formats) ...
    image_id: str | None = None  # ... or by image id (Label Studio tasks carry it)


# ---------------------------------------------------------------------------------------------------------
# pictures in and out of packages


def decode_index_png(data: bytes, where: str) -> np.ndarray:
    """A single-channel 8-bit PNG (grey or palette indices) as (H, W) uint8."""
    image = _open_png(data, where)
    if image.mode not in ("L", "P"):
        raise ReviewError(f"{where}: mode {image.mode!r}; expected an 8-bit single-channel label map")
    return np.asarray(image, dtype=np.uint8).copy()


def decode_rgb_png(data: bytes, where: str) -> np.ndarray:
    """A colour mask (RGB, RGBA or palette) as (H, W, 3) uint8."""
    image = _open_png(data, where)
    if image.mode not in ("RGB", "RGBA", "P"):
        raise ReviewError(f"{where}: mode {image.mode!r}; expected a colour mask (RGB or palette)")
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _open_png(data: bytes, where: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ReviewError(f"{where}: not a readable image ({exc})") from None
    return image


def encode_png(array: np.ndarray) -> bytes:
    """(H, W) uint8 / uint16 or (H, W, 3) uint8 as a PNG (uint16: a 16-bit grey PNG, as Cityscapes' ids)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def write_zip(path: Path, root: Path, names: Iterable[str]) -> None:
    """A deflated zip of ``root/<name>`` files, with fixed timestamps so the same files give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(names):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, (root / name).read_bytes())
    atomic_write_bytes(path, buffer.getvalue())


@dataclass(frozen=True)
class ExportItem:
    """One selected image as the format writers see it."""

    id: str
    key: str
    image: Path  # the original image file
    label: Path  # its label PNG in the label set
    lut: np.ndarray | None  # stored value -> train id (label sets written with --label-ids), else None
    rank: int
    score: float
    mean_confidence: float | None
    upright: bool = False  # the label set read the image turned by its EXIF orientation (manifest exif_transposed)

    @property
    def image_suffix(self) -> str:
        """The packaged image's suffix: a turned image is written as PNG, any other keeps its own."""
        return ".png" if self.upright else (self.image.suffix.lower() or ".png")

    def place_image(self, path: Path) -> None:
        """The image as its label sees it at ``path``: a hard link (or copy) of the file, or, when the label set
        turned it upright by its EXIF orientation, the upright pixels as a PNG (tools differ in honouring EXIF)."""
        if self.upright:
            write_image_png(path, read_image(self.image, exif_transpose=True))
        else:
            link_or_copy(self.image, path)

    def labels(self) -> np.ndarray:
        """(H, W) uint8 train ids, ignore where unlabelled (read when a writer needs them)."""
        return read_label(self.label, self.lut)
