"""Finding images (and their labels) on disk: Cityscapes, Mapillary Vistas, a plain folder, a file list.

Every sample has a stable ``id``: the image path relative to the dataset root, with POSIX separators and no
suffix. Ids are what label sets, manifests and shards are keyed by, so they never depend on the machine, the
working directory or the order files were listed in. Discovery returns samples sorted by id.

Ids also name output files (``OUT/labels/<id>.png``, ``OUT/confidence.zarr/<id>``), so every discovery checks
them (:func:`id_problem`): a sample whose id could not safely name a file inside an output folder keeps its
place in the list with :attr:`Sample.problem` set, and the labelling run turns it into an error row instead of
failing as a whole.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from autolabel.classes import ClassSet, custom_class_set
from autolabel.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LABELSET_FILE = "labelset.json"  # marks a label-set folder (autolabel.labelset.meta): never scanned for images
# limits on ids, leaving room under NAME_MAX (255 bytes) for the suffixes and temporary names outputs add
MAX_ID_PART_BYTES = 200
MAX_ID_BYTES = 1024
# names with a meaning inside the confidence store (a zarr v3 group): an id part may not be one of them
_RESERVED_PARTS = frozenset({"zarr.json"})
CITYSCAPES_IMAGE_TAG = "_leftImg8bit"
AUTO_LABEL_TAG = "_gtAuto_labelTrainIds"
# DataConfig's split names are Cityscapes-style; Mapillary calls the same splits differently.
MAPILLARY_SPLITS = {"train": "training", "val": "validation", "test": "testing"}


@dataclass(frozen=True)
class Sample:
    """One image and, when the dataset has them, its fine and coarse label maps."""

    id: str
    image: Path
    label: Path | None = None
    coarse: Path | None = None
    problem: str | None = None  # why the id cannot name output files (see id_problem); None when it can


def id_problem(sample_id: str) -> str | None:
    """Why ``sample_id`` cannot name files inside an output folder, or None when it can.

    An id must be a relative POSIX path of non-empty parts, none of them ``.``/``..`` or hidden (a leading dot
    is how temporary files are named), with no control characters (NUL included), each part at most
    :data:`MAX_ID_PART_BYTES` and the whole at most :data:`MAX_ID_BYTES` bytes of UTF-8, and no part that the
    confidence store reserves (``zarr.json``). Such an id never resolves outside the folder it is joined to.
    """
    if not sample_id:
        return "empty id"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in sample_id):
        return "control character (e.g. NUL or newline) in the name"
    if len(sample_id.encode("utf-8", "surrogateescape")) > MAX_ID_BYTES:
        return f"id longer than {MAX_ID_BYTES} bytes"
    if sample_id.startswith("/"):
        return "absolute path"
    for part in sample_id.split("/"):
        if not part:
            return "empty path component ('//' or a trailing '/')"
        if part in (".", ".."):
            return f"{part!r} path component"
        if part.startswith("."):
            return f"hidden path component {part!r} (a leading '.' marks temporary files)"
        if len(part.encode("utf-8", "surrogateescape")) > MAX_ID_PART_BYTES:
            return f"path component longer than {MAX_ID_PART_BYTES} bytes"
        if part in _RESERVED_PARTS:
            return f"path component {part!r} is reserved by the confidence store"
    return None


def check_ids(samples: Iterable[Sample]) -> list[Sample]:
    """``samples`` with :attr:`Sample.problem` set on every id that cannot name output files.

    Besides :func:`id_problem`, an id that is a folder of other ids (``a`` next to ``a/b``) is refused: its
    confidence map would be a folder holding theirs.
    """
    samples = list(samples)
    ids = {s.id for s in samples}
    parents = {sample_id.rsplit("/", k)[0] for sample_id in ids for k in range(1, sample_id.count("/") + 1)}
    checked = []
    for sample in samples:
        problem = id_problem(sample.id)
        if problem is None and sample.id in parents:
            problem = f"other images' ids lie under it ({sample.id}/...): a file and a folder would share a name"
        if problem is not None:
            logger.warning("%s: unusable image id %r: %s", sample.image, sample.id, problem)
            sample = replace(sample, problem=f"{sample.image}: unusable image id {sample.id!r}: {problem}")
        checked.append(sample)
    return checked


def auto_label_relpath(sample_id: str) -> str:
    """Relative path (no suffix) of the auto label for ``sample_id``.

    Cityscapes ids ``..._leftImg8bit`` become ``..._gtAuto_labelTrainIds`` (the naming of Cityscapes' own
    ``gtFine``/``gtCoarse`` files); any other id is used unchanged.
    """
    if sample_id.endswith(CITYSCAPES_IMAGE_TAG):
        return sample_id[: -len(CITYSCAPES_IMAGE_TAG)] + AUTO_LABEL_TAG
    return sample_id


def _sample_id(path: Path, root: Path) -> str:
    return PurePosixPath(path.relative_to(root).as_posix()).with_suffix("").as_posix()


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise DataError(f"{path}: {what} not found (expected a directory)")


def _nonempty(samples: list[Sample], where: Path) -> list[Sample]:
    """``samples`` (ids checked, see :func:`check_ids`); a :class:`DataError` when there are none."""
    if not samples:
        raise DataError(f"{where}: found no images")
    return check_ids(samples)


# ---------------------------------------------------------------------------------------------------------
# Cityscapes


def discover_cityscapes(root: str | Path, split: str) -> list[Sample]:
    """Samples of a Cityscapes tree: ``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` with
    ``gtFine/.../<name>_gtFine_labelIds.png`` as ``label`` and ``gtCoarse/...`` as ``coarse`` where present.

    Ids are relative to ``leftImg8bit/``, e.g. ``train_extra/aachen/aachen_000000_000019_leftImg8bit``.
    """
    root = Path(root).absolute()  # absolute: samples may be read by workers elsewhere
    _require_dir(root, "Cityscapes root")
    images_root = root / "leftImg8bit"
    split_dir = images_root / split
    if not split_dir.is_dir():
        available = sorted(p.name for p in images_root.glob("*") if p.is_dir())
        raise DataError(
            f"{split_dir}: split {split!r} not found; available splits: "
            f"{', '.join(available) or 'none (is this a Cityscapes root?)'}"
        )
    samples = []
    for image in sorted(split_dir.glob(f"*/*{CITYSCAPES_IMAGE_TAG}.png")):
        city, stem = image.parent.name, image.name[: -len(f"{CITYSCAPES_IMAGE_TAG}.png")]
        samples.append(
            Sample(
                id=_sample_id(image, images_root),
                image=image,
                label=_existing(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"),
                coarse=_existing(root / "gtCoarse" / split / city / f"{stem}_gtCoarse_labelIds.png"),
            )
        )
    _warn_partial_labels(samples, split_dir)
    return _nonempty(samples, split_dir)


def _warn_partial_labels(samples: list[Sample], where: Path) -> None:
    for kind in ("label", "coarse"):
        have = sum(getattr(s, kind) is not None for s in samples)
        if 0 < have < len(samples):
            logger.warning("%s: %d of %d images have no %s label map", where, len(samples) - have, len(samples), kind)


# ---------------------------------------------------------------------------------------------------------
# Mapillary Vistas


def _mapillary_split_dir(root: Path, split: str) -> Path:
    return root / MAPILLARY_SPLITS.get(split, split)


def discover_mapillary(root: str | Path, split: str) -> list[Sample]:
    """Samples of a Mapillary Vistas tree: ``<split>/images/*.jpg`` with ``<split>/labels/<name>.png``.

    ``split`` is ``training``/``validation``/``testing`` (``train``/``val``/``test`` are accepted too).
    Ids are relative to ``root``, e.g. ``training/images/abc123``.
    """
    root = Path(root).absolute()
    _require_dir(root, "Mapillary root")
    images_dir = _mapillary_split_dir(root, split) / "images"
    _require_dir(images_dir, f"Mapillary split {split!r}")
    labels_dir = images_dir.parent / "labels"
    samples = [
        Sample(id=_sample_id(image, root), image=image, label=_existing(labels_dir / f"{image.stem}.png"))
        for image in sorted(p for p in images_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    ]
    _warn_partial_labels(samples, images_dir)
    return _nonempty(samples, images_dir)


def mapillary_class_set(root: str | Path) -> ClassSet:
    """The evaluated classes listed in a Mapillary Vistas ``config.json``.

    A label value is the class's position in the config's ``labels`` list; entries with ``"evaluate": false``
    (e.g. ``unlabeled``) are not classes and map to the ignore index through ``label_to_train_lut()``.
    """
    path = Path(root) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        entries = config["labels"]
        classes = [(value, e["name"], e["color"]) for value, e in enumerate(entries) if e.get("evaluate", True)]
    except FileNotFoundError:
        raise DataError(f"{path}: Mapillary config not found (it lists the dataset's classes)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read Mapillary config ({exc})") from None
    except (KeyError, TypeError) as exc:
        raise DataError(
            f"{path}: expected {{'labels': [{{'name': ..., 'color': [r, g, b]}}, ...]}} (missing {exc})"
        ) from None
    try:
        return custom_class_set(
            names=tuple(name for _, name, _ in classes),
            colors=tuple("#{:02x}{:02x}{:02x}".format(*color) for _, _, color in classes),
            label_ids=tuple(value for value, _, _ in classes),
            name="mapillary",
        )
    except (ConfigError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: unusable class list ({exc})") from None


# ---------------------------------------------------------------------------------------------------------
# a plain folder


def _is_within(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def _walk_images(root: Path, excluded: tuple[Path, ...]) -> Iterator[Path]:
    """Image files under ``root`` (as paths under ``root``, not symlink targets), skipping hidden entries,
    excluded paths, label-set folders (holding a ``labelset.json``: their label PNGs are outputs, not images)
    and symlinks that resolve outside ``root``; each real directory is visited once, so symlink loops
    terminate."""
    real_root = root.resolve()
    seen_dirs: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real_dir = Path(dirpath).resolve()
        if real_dir in seen_dirs or not _is_within(real_dir, [real_root]) or _is_within(real_dir, excluded):
            dirnames.clear()
            continue
        seen_dirs.add(real_dir)
        if LABELSET_FILE in filenames:
            logger.warning("%s: skipped, it holds a label set (%s)", dirpath, LABELSET_FILE)
            dirnames.clear()
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            path = Path(dirpath) / name
            real = path.resolve()
            if not _is_within(real, [real_root]):
                logger.warning("%s: skipped, symlink points outside %s", path, root)
            elif not _is_within(real, excluded):
                yield path


def discover_folder(
    root: str | Path, exclude: Iterable[str | Path] = (), labels: str | Path | None = None
) -> list[Sample]:
    """Every ``.png``/``.jpg``/``.jpeg`` image under ``root`` (recursive, any letter case).

    Hidden files and folders are skipped, as is anything under an ``exclude`` path (e.g. an output folder
    inside the input folder), any folder holding a label set (``labelset.json``) and symlinks that lead
    outside ``root``. Two files that differ only in their
    suffix (``a.png``, ``a.jpg``) would share an id and raise :class:`DataError`. With ``labels`` (a folder),
    the label of image id X is ``labels/X.png`` where that file exists.
    """
    root = Path(root).absolute()
    _require_dir(root, "image folder")
    excluded = tuple(Path(p).resolve() for p in exclude)
    by_id: dict[str, Path] = {}
    for path in _walk_images(root, excluded):
        sample_id = _sample_id(path, root)
        if sample_id in by_id:
            raise DataError(f"{path}: same id {sample_id!r} as {by_id[sample_id]}; rename one of them")
        by_id[sample_id] = path
    label_dir = None if labels is None else Path(labels).absolute()
    if label_dir is not None:
        _require_dir(label_dir, "label folder")
    samples = [
        Sample(id=i, image=by_id[i], label=_existing(label_dir / f"{i}.png") if label_dir else None)
        for i in sorted(by_id)
    ]
    return _nonempty(samples, root)


# ---------------------------------------------------------------------------------------------------------
# a file list


def _list_entry_id(written: str, base: Path) -> str:
    """Id of a list entry: its path relative to the list's folder, normalised, without suffix. Leading ``..``
    parts are dropped (``../imgs/a.png`` -> ``imgs/a``) and absolute paths outside the folder lose their
    leading ``/``, so an id never leads out of an output folder."""
    path = Path(os.path.normpath(Path(written)))
    base = Path(os.path.normpath(base.absolute()))
    if path.is_absolute() and _is_within(path, [base]):
        path = path.relative_to(base)
    parts = PurePosixPath(path.as_posix()).parts
    kept = [p for i, p in enumerate(parts) if not all(q in ("/", "..") for q in parts[: i + 1])]
    return PurePosixPath(*kept).with_suffix("").as_posix()


def discover_filelist(path: str | Path) -> list[Sample]:
    """Samples from a text file with one image path per line, relative to the list file's folder.

    An optional label path may follow the image path after a tab. Blank lines and lines starting with ``#``
    are skipped. A missing file raises :class:`DataError` naming the list file and the line.
    """
    path = Path(path).absolute()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: file list not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read file list ({exc})") from None
    base = path.parent
    by_id: dict[str, Sample] = {}
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        image_text, _, label_text = text.partition("\t")
        image, label = base / image_text.strip(), (base / label_text.strip()) if label_text.strip() else None
        for kind, file in (("image", image), ("label", label)):
            if file is not None and not file.is_file():
                raise DataError(f"{path}:{number}: {kind} {file} not found")
        sample_id = _list_entry_id(image_text.strip(), base)
        if sample_id in by_id:
            raise DataError(f"{path}:{number}: {image_text.strip()!r} has the same id {sample_id!r} as an earlier line")
        by_id[sample_id] = Sample(id=sample_id, image=image, label=label)
    return _nonempty([by_id[i] for i in sorted(by_id)], path)
