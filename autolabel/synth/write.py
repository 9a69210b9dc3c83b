"""Writing a synthetic city in the Cityscapes layout: naming, settings, ``synth.json``, a worker pool.

Each image is drawn from its own generator seeded by ``(seed, split, index)``, so the files do not depend on
how many workers made them or in which order.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from autolabel.classes import CITYSCAPES
from autolabel.data.io import encode_image_png, encode_label_png
from autolabel.errors import ConfigError, OutputError
from autolabel.fs import atomic_write_bytes, write_json
from autolabel.synth import v2
from autolabel.synth.coarse import coarse_band_px
from autolabel.synth.render import LABEL_ID, SYNTH_CLASSES, SYNTH_VERSION, SYNTH_VERSIONS, render_scene

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "train_extra")
# Cities never collide across splits (like Cityscapes, whose val cities are not train cities).
_CITY_BASE = {"train": 0, "val": 500, "train_extra": 1000}
IMAGES_PER_CITY = 100
_FRAME = 19  # Cityscapes annotates the 20th frame of each 30-frame snippet
_MIN_SIZE = (64, 32)
_MAX_PER_SPLIT = 500 * IMAGES_PER_CITY  # more would reach the next split's city numbers
_CHUNK = 8  # images per pool task: large enough to amortise pickling, small enough for a smooth progress bar


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator for one image: independent of worker count and order."""
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index])


def city_name(split: str, index: int) -> str:
    """``synthcity<N>``: 100 images per city, each split with its own cities."""
    return f"synthcity{_CITY_BASE[split] + index // IMAGES_PER_CITY}"


def image_stem(split: str, index: int) -> tuple[str, str]:
    """(city, ``<city>_<seq>_<frame>``) of image ``index`` of ``split``."""
    city = city_name(split, index)
    return city, f"{city}_{index % IMAGES_PER_CITY:06d}_{_FRAME:06d}"


@dataclass(frozen=True)
class SynthSettings:
    """What determines every file of a synthetic city (counts only decide how many there are)."""

    width: int
    height: int
    seed: int
    extra_fine: bool = False  # also write gtFine for train_extra (Cityscapes has none; handy for audits)
    version: int = SYNTH_VERSION

    def fine_splits(self) -> tuple[str, ...]:
        return SPLITS if self.extra_fine else ("train", "val")


def _write_image(out: Path, split: str, index: int, settings: SynthSettings) -> np.ndarray:
    """Render and write one image with its labels; returns its fine label histogram (256,)."""
    city, stem = image_stem(split, index)
    scene = render_scene(image_rng(settings.seed, split, index), settings.width, settings.height, settings.version)
    atomic_write_bytes(
        out / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
        encode_image_png(scene.rgb, compress_level=1),
        durable=False,
    )
    if split in settings.fine_splits():
        atomic_write_bytes(
            out / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png",
            encode_label_png(scene.label, compress_level=6),
            durable=False,
        )
    atomic_write_bytes(
        out / "gtCoarse" / split / city / f"{stem}_gtCoarse_labelIds.png",
        encode_label_png(scene.coarse(), compress_level=6),
        durable=False,
    )
    return np.bincount(scene.label.ravel(), minlength=256)


def _write_chunk(out: str, split: str, indices: range, settings: SynthSettings) -> np.ndarray:
    """Pool task: a few images of one split; returns their summed fine label histogram."""
    counts = np.zeros(256, dtype=np.int64)
    for index in indices:
        counts += _write_image(Path(out), split, index, settings)
    return counts


def _check_request(counts: dict[str, int], size: tuple[int, int], version: int) -> None:
    if version not in SYNTH_VERSIONS:
        raise ConfigError(f"synth version: {version!r}; expected one of {sorted(SYNTH_VERSIONS)}")
    for split, n in counts.items():
        if not isinstance(n, int) or not 0 <= n <= _MAX_PER_SPLIT:
            raise ConfigError(f"synth {split}: {n!r} images; expected a count in [0, {_MAX_PER_SPLIT}]")
    width, height = size
    if width < _MIN_SIZE[0] or height < _MIN_SIZE[1]:
        raise ConfigError(f"synth size: {width}x{height}; expected at least {_MIN_SIZE[0]}x{_MIN_SIZE[1]}")


def _describe(settings: dict | None) -> str:
    if not isinstance(settings, dict):
        return "unknown settings"
    return ", ".join(f"{key} {value}" for key, value in settings.items())


def _check_output(out: Path, settings: SynthSettings, counts: dict[str, int]) -> None:
    """Refuse to mix with other files: ``out`` must be empty or a synthetic city with the same settings and
    no more images than requested (rerunning then rewrites identical files, so it is idempotent)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputError(f"{out}: exists and is not a directory")
    meta_path = out / "synth.json"
    if not meta_path.is_file():
        if any(out.iterdir()):
            raise OutputError(
                f"{out}: directory is not empty and holds no synth.json; choose an empty or new "
                "directory for the synthetic city"
            )
        return
    try:
        previous = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise OutputError(f"{meta_path}: unreadable ({exc}); delete {out} or choose another directory") from None
    if previous.get("settings") != asdict(settings):
        raise OutputError(
            f"{out}: holds a synthetic city made with {_describe(previous.get('settings'))}, not "
            f"{_describe(asdict(settings))}; choose another directory"
        )
    for split, n in counts.items():
        if previous.get("counts", {}).get(split, 0) > n:
            raise OutputError(
                f"{out}: already holds {previous['counts'][split]} {split} images, more than the "
                f"{n} requested; choose another directory"
            )


def _metadata(settings: SynthSettings, counts: dict[str, int], histogram: np.ndarray | None) -> dict:
    total = histogram.sum() if histogram is not None else 0
    return {
        "generator": "autolabel.synth",
        "version": settings.version,  # SYNTH_VERSION of the scenes (docs/synthetic_city.md)
        "settings": asdict(settings),
        "size": [settings.width, settings.height],
        "counts": counts,
        "gtFine": [s for s in settings.fine_splits() if counts[s]],
        "gtCoarse": [s for s in SPLITS if counts[s]],
        "coarse_band_px": coarse_band_px(settings.height),
        # [min, max] of every pole (v2: fence bars and rails too), in pixels at the generated size
        "pole_width_px": [1, 3] if settings.version == 1 else [v2.THIN_WIDTH_PX[0], v2.THIN_WIDTH_PX[1] - 1],
        "images_per_city": IMAGES_PER_CITY,
        "complete": histogram is not None,
        "classes": [
            {
                "name": name,
                "label_id": LABEL_ID[name],
                "train_id": CITYSCAPES.index(name),
                "pixel_share": round(float(histogram[LABEL_ID[name]] / total), 5)
                if histogram is not None and total
                else None,
            }
            for name in SYNTH_CLASSES
        ],
    }


def make_synthetic_city(
    out: str | Path,
    train: int = 100,
    val: int = 50,
    extra: int = 300,
    size: tuple[int, int] = (256, 128),
    seed: int = 0,
    workers: int = 0,
    extra_fine: bool = False,
    on_progress: Callable[[int], None] | None = None,
    version: int = SYNTH_VERSION,
) -> dict:
    """Write a synthetic city in the Cityscapes layout under ``out`` and return its ``synth.json`` content.

    ``size`` is (width, height). ``workers`` > 1 renders in that many processes (0 or 1: in this one); the
    files are byte-identical either way. ``on_progress(n)`` is called after every ``n`` images written.
    ``version`` picks the scenes (:data:`~autolabel.synth.render.SYNTH_VERSIONS`; 1 remakes older results).
    """
    out = Path(out)
    counts = {"train": train, "val": val, "train_extra": extra}
    _check_request(counts, size, version)
    settings = SynthSettings(
        width=int(size[0]), height=int(size[1]), seed=int(seed), extra_fine=extra_fine, version=int(version)
    )
    _check_output(out, settings, counts)
    write_json(out / "synth.json", _metadata(settings, counts, None))  # claims the folder before the images
    tasks = [
        (split, range(start, min(start + _CHUNK, n))) for split, n in counts.items() for start in range(0, n, _CHUNK)
    ]
    histogram = np.zeros(256, dtype=np.int64)
    workers = min(workers, len(tasks))  # a pool costs a second or so to start: not worth it for one task
    if workers <= 1:
        for split, indices in tasks:
            histogram += _write_chunk(str(out), split, indices, settings)
            if on_progress is not None:
                on_progress(len(indices))
    else:
        # spawn, not fork: the parent may hold torch's threads, which fork does not copy safely
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {
                pool.submit(_write_chunk, str(out), split, indices, settings): len(indices) for split, indices in tasks
            }
            try:
                for future in as_completed(futures):
                    histogram += future.result()
                    if on_progress is not None:
                        on_progress(futures[future])
            except BaseException:
                # a failed write (disk full, ...) or Ctrl-C: don't render the rest before reporting it
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    meta = _metadata(settings, counts, histogram)
    write_json(out / "synth.json", meta)
    logger.info("synthetic city: %d images in %s", sum(counts.values()), out)
    return meta
