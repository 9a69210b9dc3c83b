"""One grammar for naming a set of images (and their labels), used by every command and kept in ``labelset.json``.

A dataset on the command line is always ``--data SPEC``::

    cityscapes:ROOT:SPLIT    ROOT/leftImg8bit/SPLIT/<city>/*_leftImg8bit.png, with gtFine (label) and gtCoarse
    mapillary:ROOT:SPLIT     ROOT/<split>/images/*.jpg with ROOT/<split>/labels/*.png (train/val or training/...)
    folder:IMAGES[:LABELS]   every .png/.jpg/.jpeg under IMAGES; the label of image id X is LABELS/X.png
    list:FILE                one image path per line, optionally a TAB and its label path, relative to FILE
    config[:SPLIT]           the pipeline config's [data] section, at SPLIT (default: the command's split)
    DIR                      a plain folder of images, like folder:DIR

A parsed spec is a frozen :class:`Source`. ``labelset.json`` stores it as ``{"layout", "root", "split"}`` (plus
``"labels"`` for a folder with labels), the form label sets have always used, so ``autolabel verify OUT`` can
list the same inputs again; :meth:`Source.from_dict` reads every stored form, including the old
``folder`` + ``split`` one.

Files found by other tools (predictions, reference labels) are matched to samples by image id, or by the
Cityscapes name ``<city>_<seq>_<frame>`` (:func:`cityscapes_name`), which every Cityscapes file carries.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from autolabel.config import DataConfig
from autolabel.data.datasets import (
    IMAGE_SUFFIXES,
    MAPILLARY_SPLITS,
    Sample,
    discover_cityscapes,
    discover_filelist,
    discover_folder,
    discover_mapillary,
)
from autolabel.errors import ConfigError, DataError, LabelSetError

log = logging.getLogger(__name__)

Layout = Literal["cityscapes", "mapillary", "folder", "filelist"]
LAYOUTS: tuple[Layout, ...] = ("cityscapes", "mapillary", "folder", "filelist")
SPEC_HELP = (
    "cityscapes:ROOT:SPLIT, mapillary:ROOT:SPLIT, folder:IMAGES[:LABELS], list:FILE, config[:SPLIT] "
    "(the config's [data] section) or a plain folder of images"
)
IMAGES_HELP = (
    f"Images are {'/'.join(s.lstrip('.') for s in IMAGE_SUFFIXES)} files in any letter case "
    "(Cityscapes: *_leftImg8bit.png, Mapillary: *.jpg), labels single-channel 8-bit PNGs"
)
_CITYSCAPES_NAME = re.compile(r"^(.+?_\d{6}_\d{6})(?:[_.]|$)")  # <city>_<seq>_<frame>, then _leftImg8bit, ...
_SPEC_KINDS: dict[str, Layout] = {
    "cityscapes": "cityscapes",
    "mapillary": "mapillary",
    "folder": "folder",
    "list": "filelist",
}


@dataclass(frozen=True)
class Source:
    """A set of images, and where their labels are: what a ``--data`` spec names."""

    layout: Layout
    root: Path  # the dataset root (cityscapes, mapillary), the image folder (folder) or the list file (filelist)
    split: str = ""  # cityscapes/mapillary split; a sub-folder of root for folder sources of old label sets
    labels: Path | None = None  # folder sources: the folder holding <id>.png labels

    def spec(self) -> str:
        """The spec that parses back to this source (for messages and provenance)."""
        if self.layout in ("cityscapes", "mapillary"):
            return f"{self.layout}:{self.root}:{self.split}"
        if self.layout == "filelist":
            return f"list:{self.root}"
        images = self.root / self.split if self.split else self.root
        return f"folder:{images}" + (f":{self.labels}" if self.labels is not None else "")

    def to_dict(self) -> dict[str, Any]:
        """The stored form (``labelset.json``'s ``source``)."""
        stored: dict[str, Any] = {"layout": self.layout, "root": str(self.root), "split": self.split}
        if self.labels is not None:
            stored["labels"] = str(self.labels)
        return stored

    @classmethod
    def from_dict(cls, stored: Any) -> Source:
        """A source from its stored form; a :class:`LabelSetError` when it is not one."""
        try:
            layout, root = stored["layout"], Path(stored["root"])
            split, labels = str(stored.get("split") or ""), stored.get("labels")
        except (KeyError, TypeError):
            raise LabelSetError(f"input description {stored!r}: expected layout/root/split") from None
        if layout not in LAYOUTS:
            raise LabelSetError(f"input description {stored!r}: unknown layout {layout!r}")
        return cls(layout=layout, root=root, split=split, labels=Path(labels) if labels else None)

    @classmethod
    def from_config(cls, data: DataConfig, split: str) -> Source:
        """The ``split`` of the dataset a config's ``[data]`` section describes."""
        if data.root is None:
            raise ConfigError("data.root: not set; expected the dataset's root folder (or give --data SPEC)")
        root = Path(data.root).resolve()
        if not root.exists():
            # the usual cause: a pipeline file copied elsewhere, whose relative paths now point nowhere
            raise DataError(
                f"data.root {root}: not found; relative paths in a pipeline file resolve against the file's "
                "folder, so give the dataset with --data SPEC or --set data.root=DIR"
            )
        if data.layout == "filelist":
            return cls(layout="filelist", root=root if root.is_file() else root / f"{split}.txt")
        if data.layout == "folder":
            return cls(layout="folder", root=root / split if split and split != "." else root)
        return cls(layout=data.layout, root=root, split=split)

    def scan_root(self) -> Path:
        """The folder whose files are the images (the list file for a file list)."""
        if self.layout == "cityscapes":
            return self.root / "leftImg8bit" / self.split
        if self.layout == "mapillary":
            return _mapillary_images(self.root, self.split)
        return self.root / self.split if self.split else self.root

    def discover(self, exclude: Path | None = None) -> list[Sample]:
        """The samples, sorted by id; none inside ``exclude`` (an output folder within the inputs).

        ``exclude`` is the output folder: one that contains the inputs themselves (the images' folder, or any
        image of a file list) is refused with a :class:`DataError`, since its outputs would be mixed into
        the dataset; one inside the scanned folder is left out of the scan.
        """
        if exclude is not None:
            check_output_placement(self, exclude)
        if self.layout == "cityscapes":
            samples = discover_cityscapes(self.root, self.split)
        elif self.layout == "mapillary":
            samples = discover_mapillary(self.root, self.split)
        elif self.layout == "filelist":
            samples = discover_filelist(self.root)
        else:
            images = self.root / self.split if self.split else self.root
            samples = discover_folder(images, exclude=[exclude] if exclude is not None else [], labels=self.labels)
        if exclude is not None and self.layout == "filelist":
            _refuse_inputs_inside(samples, Path(exclude))
        return exclude_output(samples, exclude) if exclude is not None else samples


def _mapillary_images(root: Path, split: str) -> Path:
    return root / MAPILLARY_SPLITS.get(split, split) / "images"


def check_output_placement(source: Source, out: Path) -> None:
    """A :class:`DataError` when the output folder ``out`` is, or contains, the folder ``source`` reads images
    from (or the dataset root): labelling would write its files among the inputs, and a rescan would find none
    of them (they are excluded as output)."""
    if source.layout == "filelist":
        return  # a list names its images one by one: they are checked once listed
    out = Path(out).resolve()
    for what, folder in (("the images' folder", source.scan_root()), ("the dataset root", source.root)):
        folder = folder.resolve()
        if folder == out or out in folder.parents:
            raise DataError(
                f"--out {out}: contains {what} {folder}; the label set would be written among the inputs. "
                "Choose an output folder outside the dataset"
            )


def _refuse_inputs_inside(samples: Sequence[Sample], out: Path) -> None:
    out = out.resolve()
    inside = [s for s in samples if Path(s.image).resolve().is_relative_to(out)]
    if inside:
        raise DataError(
            f"--out {out}: contains {len(inside)} of the listed images (e.g. {inside[0].image}); the label set "
            "would be written among the inputs. Choose an output folder outside them"
        )


def parse_source(spec: str, *, flag: str = "--data", config: DataConfig | None = None, split: str = "") -> Source:
    """The :class:`Source` a spec names (see the module docstring); errors name ``flag``.

    ``config`` and ``split`` resolve ``config[:SPLIT]`` (the command's default split when SPLIT is omitted).
    """
    kind, sep, rest = spec.partition(":")
    if kind == "config":
        if config is None:
            raise ConfigError(f"{flag} {spec!r}: 'config' names the [data] section, but no --config was given")
        return Source.from_config(config, rest or split)
    if kind == "filelist":  # autolabel 0.1's name, written filelist:FILE:SPLIT with the split ignored
        kind, rest = "list", rest.rpartition(":")[0] if ":" in rest else rest
    if sep and kind in _SPEC_KINDS:
        return _parse_kind(spec, flag, _SPEC_KINDS[kind], rest)
    path = Path(spec)
    if path.is_dir():  # a plain folder; one holding images/ and labels/ is a folder with labels
        if (path / "images").is_dir() and (path / "labels").is_dir():
            return Source(layout="folder", root=(path / "images").resolve(), labels=(path / "labels").resolve())
        return Source(layout="folder", root=path.resolve())
    raise ConfigError(f"{flag} {spec!r}: not a dataset spec or folder; expected one of {SPEC_HELP}")


def _parse_kind(spec: str, flag: str, layout: Layout, rest: str) -> Source:
    if layout in ("cityscapes", "mapillary"):
        root, sep, split = rest.rpartition(":")
        if not sep or not root or not split:
            raise ConfigError(f"{flag} {spec!r}: expected {layout}:ROOT:SPLIT, e.g. {layout}:/data/{layout}:val")
        return Source(layout=layout, root=Path(root).resolve(), split=split)
    if not rest:
        raise ConfigError(f"{flag} {spec!r}: expected a path after the colon ({SPEC_HELP})")
    if layout == "filelist":
        return Source(layout="filelist", root=Path(rest).resolve())
    images, sep, labels = rest.partition(":")
    if sep and not labels:
        raise ConfigError(f"{flag} {spec!r}: expected folder:IMAGES or folder:IMAGES:LABELS")
    return Source(layout="folder", root=Path(images).resolve(), labels=Path(labels).resolve() if labels else None)


def train_data(source: Source, data: DataConfig, flag: str = "--data") -> DataConfig:
    """The ``[data]`` section that trains on ``source``: its layout and root, its split as the training split.

    Validation reads ``data.val_split`` of the same dataset (a list file's neighbour ``<val_split>.txt``).
    A folder source cannot be a training set: ``[data]`` has no place for its labels folder.
    """
    if source.layout in ("cityscapes", "mapillary"):
        return replace(data, layout=source.layout, root=source.root, train_split=source.split)
    if source.layout == "filelist":  # data.root/<split>.txt is how [data] names a list per split
        return replace(data, layout="filelist", root=source.root.parent, train_split=source.root.stem)
    raise ConfigError(
        f"{flag} {source.spec()}: a training set needs labels the config can name: cityscapes:ROOT:SPLIT, "
        "mapillary:ROOT:SPLIT, list:FILE (image<TAB>label lines) or config[:SPLIT]"
    )


def cityscapes_name(sample_id: str) -> str | None:
    """``<city>_<seq>_<frame>`` of a Cityscapes id or file name (``val/bonn/bonn_000001_000019_leftImg8bit``
    -> ``bonn_000001_000019``); None for other names."""
    found = _CITYSCAPES_NAME.match(PurePosixPath(sample_id).name)
    return found.group(1) if found else None


def index_by_name(samples: Sequence[Sample]) -> dict[str, Sample]:
    """Samples by id and, where unique, by Cityscapes name: what files from elsewhere are matched with."""
    index: dict[str, Sample] = {}
    names: dict[str, list[Sample]] = {}
    for sample in samples:
        index[sample.id] = sample
        name = cityscapes_name(sample.id)
        if name is not None:
            names.setdefault(name, []).append(sample)
    for name, found in names.items():
        if len(found) == 1:
            index.setdefault(name, found[0])
    return index


def lookup(index: dict[str, Sample], sample_id: str) -> Sample | None:
    """The sample of ``index`` (:func:`index_by_name`) with this id, else with its Cityscapes name."""
    if sample_id in index:
        return index[sample_id]
    name = cityscapes_name(sample_id)
    return index.get(name) if name is not None else None


def discover_split(data: DataConfig, split: str) -> list[Sample]:
    """The samples of ``split`` of the config's dataset."""
    return Source.from_config(data, split).discover()


def exclude_output(samples: Sequence[Sample], out: Path) -> list[Sample]:
    """Drop inputs that live inside the output folder (output written inside the input tree)."""
    out = Path(out).resolve()
    return [s for s in samples if not Path(s.image).resolve().is_relative_to(out)]


def require_labels(samples: Sequence[Sample], where: str) -> list[Sample]:
    """The samples that have a label; a :class:`DataError` when none has (a warning for those without)."""
    labelled = [s for s in samples if s.label is not None]
    if not labelled:
        raise DataError(f"{where}: none of the {len(samples)} images has a label")
    if len(labelled) < len(samples):
        log.warning(
            "%s: %d of %d images have no label and are left out", where, len(samples) - len(labelled), len(samples)
        )
    return labelled
