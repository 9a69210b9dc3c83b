"""The confidence store: each pixel's max softmax probability quantised to a ladder of thresholds.

Code ``k`` of a pixel means ``ladder[k-1] < p <= ladder[k]`` (code 0: ``p <= ladder[0]``, the generation
threshold, so exactly the ignored pixels; code ``len(ladder)``: above the top rung). A pixel survives a
threshold ``ladder[j]`` iff its code is ``> j``, which makes re-thresholding at any rung exact, while a code
map takes a few bits per pixel and compresses to about the size of the label PNG.

On disk: ``OUT/confidence.zarr`` is a zarr v3 group with one uint8 array per image at the image's id (one
chunk, the core spec's bytes + zstd codecs). Codes change slowly from one row to the next, so an array stores
them "up"-filtered as PNG does, each row minus the row above (mod 256): mostly zeros, which zstd packs into
about 0.8x the bytes of the plain codes. The array's attribute ``"filter": "up"`` says so; the codes are
``np.cumsum(stored, axis=0, dtype=np.uint8)`` (:func:`load_confidence` does that; arrays without the attribute,
from the first version, hold the codes as they are). A delta codec would hide this from readers, but zarr v3
has none in its core spec, and zarr-python 3.1 does not round-trip numcodecs' delta behind a transpose.

Each array is written into a temporary folder next to its final place and renamed into place, so a reader
never sees half an array and no two writers ever share a file (no sharding codec).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
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
from autolabel.labelset.meta import STORE_NAME

log = logging.getLogger(__name__)


IGNORE = 255
# make bench, confidence_store (2048x1024): level 11 packs the up-filtered codes into ~2.05x the label PNG's
# bytes in ~15 CPU ms; 17 (the level before) into ~1.79x in ~87 ms, which alone would eat half the host
# budget per image of a GPU node (host_work). Every array's zarr.json records its level; any level decodes,
# so arrays written at 17 by earlier versions stay valid and are kept on resume (their checksums are theirs).
ZSTD_LEVEL = 11
UP_FILTER = {"filter": "up", "decode": "codes = cumsum(stored, axis=0) mod 256"}  # the attributes of each array


def make_ladder(threshold: float, step: float = 0.05, top: float = 0.95) -> tuple[float, ...]:
    """``threshold, threshold + step, ...`` up to ``top`` (rounded to 6 decimals so values print cleanly)."""
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


def rung_index(threshold: float, ladder: Sequence[float], floor: float | None = None) -> int:
    """Position of ``threshold`` on the ladder; a :class:`LabelSetError` naming the valid values otherwise.

    ``floor`` (the label set's current threshold) excludes lower rungs: their pixels were already dropped.
    """
    valid = [t for t in ladder if floor is None or t >= floor - 1e-9]
    for i, t in enumerate(ladder):
        if abs(t - threshold) < 1e-9 and t in valid:
            return i
    raise LabelSetError(
        f"threshold {threshold} is not on this label set's confidence ladder; valid "
        f"thresholds: {', '.join(f'{t:g}' for t in valid)}"
    )


def rethreshold_array(
    labels: np.ndarray, codes: np.ndarray, threshold: float, ladder: Sequence[float], ignore_index: int = IGNORE
) -> np.ndarray:
    """Labels (train ids) kept only where the probability is above ``threshold`` (a ladder value)."""
    if labels.shape != codes.shape:
        raise LabelSetError(f"label shape {labels.shape} != confidence shape {codes.shape}")
    j = rung_index(threshold, ladder)
    return np.where(codes > j, labels, np.uint8(ignore_index)).astype(np.uint8)


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
            attributes={"ladder": list(ladder), "codes": "k: ladder[k-1] < p <= ladder[k]"},
        )
    except zarr.errors.ContainsGroupError:
        pass  # another shard job created it a moment ago (zarr writes its zarr.json atomically)


def array_metadata(shape: Sequence[int], level: int = ZSTD_LEVEL) -> bytes:
    """``zarr.json`` of a one-chunk uint8 array of up-filtered codes (zarr v3 spec: bytes + zstd codecs)."""
    meta = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(shape),
        "data_type": "uint8",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(shape)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": [{"name": "bytes"}, {"name": "zstd", "configuration": {"level": level, "checksum": False}}],
        "attributes": UP_FILTER,
        "storage_transformers": [],
    }
    return json.dumps(meta, indent=2).encode("utf-8")


def up_filter(codes: np.ndarray) -> np.ndarray:
    """Each row minus the row above it, mod 256 (the first row as it is): what an array stores."""
    codes = np.asarray(codes, dtype=np.uint8)
    filtered = codes.copy()
    np.subtract(codes[1:], codes[:-1], out=filtered[1:])  # uint8 arithmetic wraps: mod 256
    return filtered


def encode_chunk(codes: np.ndarray, level: int = ZSTD_LEVEL) -> bytes:
    """The stored chunk of an (H, W) code map: its up-filtered bytes, row by row, zstd-compressed."""
    return Zstd(level=level).encode(up_filter(codes).tobytes())


def array_files(codes: np.ndarray, level: int = ZSTD_LEVEL) -> dict[str, bytes]:
    """The files of one image's array, by path inside the array's folder (what :func:`write_array` stores)."""
    return {"zarr.json": array_metadata(codes.shape, level), "c/0/0": encode_chunk(codes, level)}


def array_relpath(image_id: str) -> str:
    """The array folder of an image, relative to OUT (its files are ``<this>/<name>``)."""
    return f"{STORE_NAME}/{image_id}"


def write_codes(out: Path, image_id: str, codes: np.ndarray) -> int:
    """Store one image's code map atomically (temp folder + rename); returns the bytes written."""
    files = array_files(codes, ZSTD_LEVEL)
    write_array(out, image_id, files)
    return sum(len(data) for data in files.values())


def write_array(out: Path, image_id: str, files: dict[str, bytes]) -> None:
    """Store the files of one image's array atomically: written into a temp folder, then renamed into place.

    The two files of a one-chunk zarr v3 array are written directly: going through zarr's async machinery
    costs ~10 ms of GIL-holding Python per image, which a CPU-bound teacher in the next thread would feel.
    Any zarr v3 reader opens the result (see :func:`load_confidence`).
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
    unreadable metadata, another shape than ``shape``, a missing chunk file. None when nothing is."""
    folder = store_path(Path(out)) / image_id
    try:
        meta = json.loads((folder / "zarr.json").read_text())
    except FileNotFoundError:
        return "no confidence map"
    except (OSError, ValueError) as exc:
        return f"unreadable confidence metadata ({exc})"
    if not isinstance(meta, dict) or "shape" not in meta:
        return "unreadable confidence metadata (no shape)"
    if shape is not None and list(meta["shape"]) != list(shape):
        return f"confidence shape {meta['shape']}, label is {shape[0]}x{shape[1]}"
    missing = [k for k in chunk_keys(meta) or [] if not (folder / k).is_file()]
    if missing:
        # zarr would read a missing chunk as its fill value: an all-"ignore" code map
        return f"missing chunk {missing[0]} ({len(missing)} of the array's chunk files missing)"
    return None


def load_confidence(out: str | Path, image_id: str, expected: Sequence[Mapping[str, str]] | None = None) -> np.ndarray:
    """One image's code map (H, W) uint8; the ladder is in ``read_labelset(out)["ladder"]``.

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
    return np.cumsum(stored, axis=0, dtype=np.uint8) if filtered else stored  # uint8 cumsum wraps: mod 256


def codes_nbytes(out: Path, image_id: str) -> int:
    """Bytes one image's code map takes on disk."""
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
