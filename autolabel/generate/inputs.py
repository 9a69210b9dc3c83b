"""Naming the images to label (``--images``, ``--dataset``, ``--config``) as a recordable source description.

The description is stored in ``labelset.json`` so ``autolabel verify OUT`` can list the same inputs again
and check that every one of them has exactly one manifest row.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autolabel.config import DataConfig
from autolabel.data.datasets import (
    Sample,
    discover,
    discover_cityscapes,
    discover_filelist,
    discover_folder,
    discover_mapillary,
)
from autolabel.errors import ConfigError, LabelSetError

LAYOUTS = ("cityscapes", "mapillary", "folder", "filelist")


def folder_source(root: Path) -> dict[str, Any]:
    return {"layout": "folder", "root": str(Path(root).resolve()), "split": ""}


def parse_dataset_spec(spec: str) -> dict[str, Any]:
    """``cityscapes:ROOT:SPLIT`` (or mapillary/folder/filelist) -> a source description."""
    layout, sep, rest = spec.partition(":")
    root, _, split = rest.rpartition(":") if rest.count(":") >= 1 else (rest, "", "")
    if not sep or layout not in LAYOUTS or not root:
        raise ConfigError(
            f"--dataset {spec!r}: expected LAYOUT:ROOT:SPLIT with LAYOUT one of "
            f"{', '.join(LAYOUTS)}, e.g. cityscapes:/data/cityscapes:train_extra"
        )
    return {"layout": layout, "root": str(Path(root).resolve()), "split": split}


def config_source(data: DataConfig, split: str) -> dict[str, Any]:
    if data.root is None:
        raise ConfigError("data.root: not set; expected the dataset's root folder (or use --images)")
    return {"layout": data.layout, "root": str(Path(data.root).resolve()), "split": split}


def exclude_output(samples: Sequence[Sample], out: Path) -> list[Sample]:
    """Drop inputs that live inside the output folder (output written inside the input tree)."""
    out = Path(out).resolve()
    return [s for s in samples if not Path(s.image).resolve().is_relative_to(out)]


def discover_source(source: dict[str, Any], out: Path | None = None) -> list[Sample]:
    """The samples a source description names, without any inside the output folder ``out``."""
    samples = _discover(source, out)
    return exclude_output(samples, out) if out is not None else samples


def _discover(source: dict[str, Any], out: Path | None) -> list[Sample]:
    try:
        layout, root, split = source["layout"], Path(source["root"]), source.get("split", "")
    except (KeyError, TypeError):
        raise LabelSetError(f"input description {source!r}: expected layout/root/split") from None
    if layout == "folder":
        return discover_folder(root / split if split else root, exclude=[out] if out is not None else [])
    if layout == "cityscapes":
        return discover_cityscapes(root, split)
    if layout == "mapillary":
        return discover_mapillary(root, split)
    if layout == "filelist":
        return discover_filelist(root)
    return discover(DataConfig(layout=layout, root=root), split)
