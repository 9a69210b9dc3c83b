"""The confidence store: per image, the teacher's class of every pixel and its confidence on a fine grid.

The grid (``labelset.json`` "ladder") is every multiple of ``generate.ladder_step`` from
``generate.ladder_bottom`` to ``generate.ladder_top``, plus the label set's own thresholds (the global one and
every per-class one), so that each of them is a rung. Code ``k`` of a pixel means ``ladder[k-1] < p <=
ladder[k]`` (code 0: ``p <= ladder[0]``; code ``len(ladder)``: above the top rung). A pixel survives a
threshold ``ladder[j]`` iff its code is ``> j``: the same float32 comparison ``generate`` makes
(``p > float32(threshold)``), so the labels re-thresholded at any rung, globally or per class, above or below
the set's own thresholds, are exactly the labels ``generate`` writes at those thresholds.

On disk: ``OUT/confidence.zarr`` is a zarr v3 group with one uint8 array per image at the image's id.

- Format 2 (``"planes": ["class", "code"]``): shape ``(2, H, W)``, one chunk per plane, the core spec's bytes
  + zstd codecs. Plane 0 is the argmax class of every pixel (train ids, whatever the label PNG ignores),
  plane 1 the code. ``labelset.json`` says ``"store_format": 2``.
- Format 1 (older label sets, no ``store_format``): shape ``(H, W)``, the codes alone on a ladder that starts
  at the set's threshold; the classes are the label PNG's, so such a set re-thresholds only upwards, at its
  rungs.

Both planes change slowly from one row to the next, so an array stores them "up"-filtered as PNG does, each
row minus the row above (mod 256): mostly zeros, which zstd packs much better. The array's attribute
``"filter": "up"`` says so; the values are ``np.cumsum(stored, axis=-2, dtype=np.uint8)`` (:func:`load_maps`
does that; format-1 arrays without the attribute hold the codes as they are). zarr v3 has no delta codec in its
core spec, so the filter is the store's own, documented in every array's attributes.

Each array is written into a temporary folder next to its final place and renamed into place, so a reader
never sees half an array and no two writers ever share a file (no sharding codec); the manifest row lists
each of its files with a checksum (``output_files``), which :func:`load_maps` checks when given them.

Per image, generate also records a histogram of (class, code) over all pixels in the manifest
(``confidence_histogram``, :func:`encode_histogram`): per-class thresholds by portion (CBST) and coverage
curves come from it without reading the store.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import zarr
import zarr.errors
import zarr.storage
from numcodecs import Zstd

from autolabel.errors import LabelSetError, OutputError
from autolabel.fs import replace_dir, temp_sibling
from autolabel.labelset.checksums import entries_problems
from autolabel.labelset.meta import STORE_FORMAT, STORE_NAME

log = logging.getLogger(__name__)


IGNORE = 255
PLANES = ("class", "code")
MAX_RUNGS = 255  # codes 0..len(ladder) fit in a uint8
# make bench, confidence_store: zstd level vs bytes and write time of both planes at 2048x1024
ZSTD_LEVEL = 9
UP_FILTER = {"filter": "up", "decode": "values = cumsum(stored, axis=-2) mod 256"}  # attributes of each array
PLANES_ATTRIBUTE = {"planes": list(PLANES), "codes": "k: ladder[k-1] < p <= ladder[k]"}


def make_grid(
    step: float, bottom: float, top: float, thresholds: Sequence[float] = (), *, key: str = "generate.ladder_step"
) -> tuple[float, ...]:
    """The store's rungs: every multiple of ``step`` in ``[bottom, top]`` (rounded to 6 decimals so values print
    and compare cleanly) and every value of ``thresholds`` as it is, sorted; at most :data:`MAX_RUNGS`."""
    if step <= 0:
        raise LabelSetError(f"{key}: {step}, expected a positive step")
    first, last = math.ceil(bottom / step - 1e-9), math.floor(top / step + 1e-9)
    rungs = {round(k * step, 6) for k in range(first, last + 1)}
    rungs |= {float(t) for t in thresholds}
    rungs = {t for t in rungs if 0.0 <= t < 1.0}
    if len(rungs) > MAX_RUNGS:
        raise LabelSetError(
            f"{key}: {step} gives {len(rungs)} confidence levels between {bottom} and {top}; at most {MAX_RUNGS} "
            "fit in the store (a larger step, or a narrower range)"
        )
    return tuple(sorted(rungs))


def make_ladder(threshold: float, step: float = 0.05, top: float = 0.95) -> tuple[float, ...]:
    """``threshold, threshold + step, ...`` up to ``top`` (rounded to 6 decimals): the ladder of format-1 label
    sets, which start at their threshold (they re-threshold only upwards)."""
    if step <= 0:
        raise LabelSetError(f"ladder step {step}: expected a positive number")
    rungs = [round(threshold, 6)]
    while True:
        nxt = round(threshold + len(rungs) * step, 6)
        if nxt > top + 1e-9 or nxt >= 1.0:
            return tuple(rungs)
        rungs.append(nxt)


def quantise(max_prob: torch.Tensor, ladder: Sequence[float]) -> torch.Tensor:
    """Codes (uint8, same shape): the number of rungs strictly below each probability. Runs on any device."""
    # float32 rungs: the comparison must be the one `threshold_batch` (generate.teacher) makes
    rungs = _rungs(tuple(ladder), max_prob.dtype, max_prob.device)
    return torch.bucketize(max_prob, rungs, right=False).to(torch.uint8)


@functools.lru_cache(maxsize=16)
def _rungs(ladder: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The ladder as a tensor on ``device``, made once: a fresh one per batch would wait for the host on a GPU."""
    with torch.inference_mode(False):
        return torch.tensor(ladder, dtype=dtype, device=device)


def rung_index(threshold: float, ladder: Sequence[float], floor: float | None = None, what: str = "threshold") -> int:
    """Position of ``threshold`` on the ladder; a :class:`LabelSetError` naming the valid values otherwise.

    ``floor`` (a format-1 set's current threshold) excludes lower rungs: their pixels were already dropped.
    """
    valid = [t for t in ladder if floor is None or t >= floor - 1e-9]
    for i, t in enumerate(ladder):
        if abs(t - threshold) < 1e-9 and t in valid:
            return i
    raise LabelSetError(
        f"{what} {threshold:g} is not on this label set's confidence ladder; valid thresholds: {_listing(valid)}"
    )


def _listing(values: Sequence[float], limit: int = 12) -> str:
    """``0.3, 0.31, ..., 0.98`` for long ladders (every value when there are few)."""
    shown = [f"{t:g}" for t in values]
    if len(shown) <= limit:
        return ", ".join(shown)
    return ", ".join(shown[:3]) + ", ..., " + ", ".join(shown[-2:]) + f" ({len(shown)} values)"


def next_rung(threshold: float, ladder: Sequence[float]) -> float | None:
    """The lowest rung at or above ``threshold`` (None above the top rung)."""
    for t in ladder:
        if t >= threshold - 1e-9:
            return t
    return None


def threshold_lut(rungs: Sequence[int], ignore_index: int = IGNORE) -> np.ndarray:
    """(256,) int16: the rung index each class must exceed to keep its label; classes past the list (and the
    ignore index) are never kept."""
    lut = np.full(256, MAX_RUNGS + 1, dtype=np.int16)
    lut[: len(rungs)] = np.asarray(rungs, dtype=np.int16)
    lut[ignore_index] = MAX_RUNGS + 1
    return lut


def apply_rungs(classes: np.ndarray, codes: np.ndarray, rungs: Sequence[int], ignore_index: int = IGNORE) -> np.ndarray:
    """Labels: ``classes`` where the pixel's code exceeds its class's rung (``rungs[c]``), else ``ignore_index``.

    ``classes`` is the store's class plane (format 2), or a format-1 set's label map (ignored pixels stay
    ignored: only upward re-thresholding is meaningful there).
    """
    if classes.shape != codes.shape:
        raise LabelSetError(f"label shape {classes.shape} != confidence shape {codes.shape}")
    keep = codes.astype(np.int16) > threshold_lut(rungs, ignore_index)[classes]
    return np.where(keep, classes, np.uint8(ignore_index)).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------
# the zarr store


def store_path(out: Path) -> Path:
    return Path(out) / STORE_NAME


def init_store(out: Path, ladder: Sequence[float]) -> None:
    """Create the root group once (the coordinator does this before any worker writes an image)."""
    path = store_path(out)
    if (path / "zarr.json").exists():
        return
    try:
        zarr.create_group(
            store=zarr.storage.LocalStore(path),
            zarr_format=3,
            overwrite=False,
            attributes={"store_format": STORE_FORMAT, "ladder": list(ladder), **PLANES_ATTRIBUTE},
        )
    except zarr.errors.ContainsGroupError:
        pass  # another shard job created it a moment ago (zarr writes its zarr.json atomically)


def array_metadata(shape: Sequence[int], level: int = ZSTD_LEVEL) -> bytes:
    """``zarr.json`` of a format-2 array (2, H, W) of up-filtered planes, one chunk per plane (zarr v3 spec:
    bytes + zstd codecs)."""
    meta = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(shape),
        "data_type": "uint8",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, *list(shape)[1:]]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": [{"name": "bytes"}, {"name": "zstd", "configuration": {"level": level, "checksum": False}}],
        "attributes": {**UP_FILTER, **PLANES_ATTRIBUTE},
        "storage_transformers": [],
    }
    return json.dumps(meta, indent=2).encode("utf-8")


def up_filter(values: np.ndarray) -> np.ndarray:
    """Each row minus the row above it, mod 256 (the first row as it is), along the second-last axis."""
    values = np.asarray(values, dtype=np.uint8)
    filtered = values.copy()
    np.subtract(values[..., 1:, :], values[..., :-1, :], out=filtered[..., 1:, :])  # uint8 arithmetic wraps
    return filtered


def encode_plane(plane: np.ndarray, level: int = ZSTD_LEVEL) -> bytes:
    """The stored chunk of an (H, W) plane: its up-filtered bytes, row by row, zstd-compressed."""
    return Zstd(level=level).encode(up_filter(plane).tobytes())


def array_files(classes: np.ndarray, codes: np.ndarray, level: int = ZSTD_LEVEL) -> dict[str, bytes]:
    """The files of one image's format-2 array, by path inside the array's folder (what :func:`write_array`
    stores): ``zarr.json`` and one chunk per plane."""
    if classes.shape != codes.shape:
        raise LabelSetError(f"class plane {classes.shape} != code plane {codes.shape}")
    return {
        "zarr.json": array_metadata((2, *codes.shape), level),
        "c/0/0/0": encode_plane(classes, level),
        "c/1/0/0": encode_plane(codes, level),
    }


def array_relpath(image_id: str) -> str:
    """The array folder of an image, relative to OUT (its files are ``<this>/<name>``)."""
    return f"{STORE_NAME}/{image_id}"


def write_maps(out: Path, image_id: str, classes: np.ndarray, codes: np.ndarray, level: int = ZSTD_LEVEL) -> int:
    """Store one image's class and code planes atomically (temp folder + rename); returns the bytes written."""
    files = array_files(classes, codes, level)
    write_array(out, image_id, files)
    return sum(len(data) for data in files.values())


def write_array(out: Path, image_id: str, files: dict[str, bytes]) -> None:
    """Store the files of one image's array atomically: written into a temp folder, then renamed into place.

    The files of a small zarr v3 array are written directly: going through zarr's async machinery costs
    ~10 ms of GIL-holding Python per image, which a CPU-bound teacher in the next thread would feel. Any zarr
    v3 reader opens the result (see :func:`load_maps`).
    """
    final = store_path(out) / image_id
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    try:
        for name, data in files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        replace_dir(tmp, final)
    except OSError as exc:
        raise OutputError(f"{final}: cannot write confidence map ({exc.strerror or exc})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def copy_array(src: Path, dest: Path, image_id: str) -> dict[str, bytes]:
    """Copy one image's array from the label set ``src`` into ``dest`` as it is (atomically); returns its files
    by path relative to OUT (as a manifest row lists them)."""
    folder = store_path(src) / image_id
    try:
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    except OSError as exc:
        raise LabelSetError(f"{folder}: cannot read confidence map ({exc.strerror or exc})") from None
    write_array(dest, image_id, files)
    return {f"{array_relpath(image_id)}/{name}": data for name, data in files.items()}


def has_codes(out: Path, image_id: str) -> bool:
    return (store_path(out) / image_id / "zarr.json").is_file()


def chunk_keys(meta: dict) -> list[str] | None:
    """The chunk files a zarr v3 array's metadata implies (regular grid, default key encoding), or None when
    the layout is one this function does not know."""
    try:
        shape = [int(n) for n in meta["shape"]]
        grid = meta["chunk_grid"]
        chunks = [int(n) for n in grid["configuration"]["chunk_shape"]]
        encoding = meta.get("chunk_key_encoding", {"name": "default"})
        separator = encoding.get("configuration", {}).get("separator", "/")
    except (KeyError, TypeError, ValueError):
        return None
    if grid.get("name") != "regular" or encoding.get("name") != "default" or len(shape) != len(chunks):
        return None
    counts = [-(-n // c) if c > 0 else 0 for n, c in zip(shape, chunks, strict=True)]
    keys = [""]
    for count in counts:
        keys = [f"{k}{separator}{i}" for k in keys for i in range(count)]
    return [f"c{k}" for k in keys]


def codes_problem(out: Path, image_id: str, shape: Sequence[int] | None = None) -> str | None:
    """What is wrong with an image's array on disk, judged from the array alone (no checksums): missing or
    unreadable metadata, another image size than ``shape`` (H, W), a missing chunk file. None when nothing is."""
    folder = store_path(Path(out)) / image_id
    try:
        meta = json.loads((folder / "zarr.json").read_text())
    except FileNotFoundError:
        return "no confidence map"
    except (OSError, ValueError) as exc:
        return f"unreadable confidence metadata ({exc})"
    if not isinstance(meta, dict) or not isinstance(meta.get("shape"), list) or len(meta["shape"]) not in (2, 3):
        return "unreadable confidence metadata (no (H, W) or (2, H, W) shape)"
    if len(meta["shape"]) == 3 and meta["shape"][0] != len(PLANES):
        return f"confidence array of shape {meta['shape']}, expected {len(PLANES)} planes"
    if shape is not None and list(meta["shape"][-2:]) != list(shape):
        return f"confidence shape {meta['shape']}, label is {shape[0]}x{shape[1]}"
    missing = [k for k in chunk_keys(meta) or [] if not (folder / k).is_file()]
    if missing:
        # zarr would read a missing chunk as its fill value: an all-"ignore" code map
        return f"missing chunk {missing[0]} ({len(missing)} of the array's chunk files missing)"
    return None


@dataclass(frozen=True)
class StoredMaps:
    """One image's store: the class of every pixel (None in format 1) and the confidence codes, (H, W) uint8."""

    classes: np.ndarray | None
    codes: np.ndarray


def load_maps(out: str | Path, image_id: str, expected: Sequence[Mapping[str, str]] | None = None) -> StoredMaps:
    """One image's class and code planes; the ladder is in ``read_labelset(out)["ladder"]``.

    A missing chunk is an error, never the fill value. With ``expected`` (a manifest row's ``output_files``)
    the array's files must have the recorded checksums. Any problem raises a :class:`LabelSetError` naming
    the array.
    """
    out = Path(out)
    root = store_path(out)
    problem = codes_problem(out, image_id)
    if problem is None and expected is not None:
        prefix = array_relpath(image_id) + "/"
        problems = entries_problems(out, [e for e in expected if e["path"].startswith(prefix)])
        problem = problems[0] if problems else None
    if problem is not None:
        raise LabelSetError(f"{root / image_id}: {problem} for image {image_id!r}")
    try:
        array = zarr.open_array(store=zarr.storage.LocalStore(root, read_only=True), path=image_id, mode="r")
        stored = np.asarray(array[...], dtype=np.uint8)
        filtered = array.attrs.get("filter") == UP_FILTER["filter"]
    except Exception as exc:  # a damaged chunk fails inside the codec with many exception types
        raise LabelSetError(f"{root / image_id}: unreadable confidence map ({type(exc).__name__}: {exc})") from None
    values = np.cumsum(stored, axis=-2, dtype=np.uint8) if filtered else stored  # uint8 cumsum wraps: mod 256
    if values.ndim == 3:
        return StoredMaps(classes=values[0], codes=values[1])
    return StoredMaps(classes=None, codes=values)


def load_confidence(out: str | Path, image_id: str, expected: Sequence[Mapping[str, str]] | None = None) -> np.ndarray:
    """One image's code map (H, W) uint8 (see :func:`load_maps`)."""
    return load_maps(out, image_id, expected).codes


def codes_nbytes(out: Path, image_id: str) -> int:
    """Bytes one image's array takes on disk."""
    return sum(f.stat().st_size for f in (store_path(out) / image_id).rglob("*") if f.is_file())


# ---------------------------------------------------------------------------------------------------------
# per-image statistics of the probabilities

FIXED_POINT = 2**32  # probabilities summed as integers of 2**-32: exact, so in any order


def mean_probability(max_prob: torch.Tensor) -> torch.Tensor:
    """(B, H, W) probabilities -> (B,) float64 means, bit-identical whatever the device, thread count or
    batch composition.

    A float sum's rounding depends on the order the additions are made in, which differs between devices,
    thread counts and batch sizes; integers add exactly. Each probability is truncated to a multiple of
    2**-32 (below float32's own resolution for p >= 2**-9), summed in int64 (at most 2**32 per pixel: room
    for 2**31 pixels) and divided once.
    """
    fixed = (max_prob.float() * FIXED_POINT).to(torch.int64)  # (B, H, W); scaling by 2**32 is exact
    total = fixed.sum(dim=(1, 2))  # (B,)
    pixels = max_prob.shape[1] * max_prob.shape[2]
    return total.double() / float(FIXED_POINT) / float(pixels)


def class_code_histogram(classes: torch.Tensor, codes: torch.Tensor, num_classes: int, levels: int) -> torch.Tensor:
    """(B, H, W) classes and codes -> (B, C, levels) int64 pixel counts per (class, code), on their device."""
    batch = classes.shape[0]
    flat = classes.long() * levels + codes.long()  # (B, H, W)
    flat = flat + torch.arange(batch, device=flat.device).view(-1, 1, 1) * (num_classes * levels)
    counts = torch.bincount(flat.flatten(), minlength=batch * num_classes * levels)
    return counts.view(batch, num_classes, levels)


def encode_histogram(hist: np.ndarray) -> str:
    """The manifest's ``confidence_histogram`` of an image: (C, levels) counts as little-endian int64, zstd,
    base64 (about 0.3 KB for 19 classes x 70 levels)."""
    return base64.b64encode(Zstd(level=3).encode(np.ascontiguousarray(hist, dtype="<i8").tobytes())).decode("ascii")


def decode_histogram(data: str, num_classes: int, levels: int) -> np.ndarray:
    """(C, levels) int64 counts from :func:`encode_histogram`'s text; a :class:`LabelSetError` when it does not
    hold that many."""
    try:
        flat = np.frombuffer(Zstd().decode(base64.b64decode(data, validate=True)), dtype="<i8")
    except Exception as exc:  # binascii and numcodecs raise several types on damaged input
        raise LabelSetError(f"unreadable confidence histogram ({type(exc).__name__}: {exc})") from None
    if flat.size != num_classes * levels:
        raise LabelSetError(f"confidence histogram of {flat.size} counts, expected {num_classes} x {levels}")
    return flat.reshape(num_classes, levels).astype(np.int64)


def summed_histogram(rows: Sequence[Mapping], num_classes: int, levels: int) -> np.ndarray | None:
    """(C, levels) counts over the ok rows' histograms; None when a row has none (an older label set)."""
    total = np.zeros((num_classes, levels), dtype=np.int64)
    for row in rows:
        data = row.get("confidence_histogram")
        if data is None:
            return None
        total += decode_histogram(data, num_classes, levels)
    return total
