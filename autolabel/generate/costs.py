"""What labelling costs: the teacher's forward measured (seconds, peak memory), a cost model fitted on a few
small probes, host work per image, and the tile size whose predicted peak fits a memory budget.

Peak memory is what a forward adds to the process with the model loaded. On the CPU that is the growth of the
resident set (Linux ``VmHWM``): freed memory is first handed back to the kernel (``malloc_trim``) and the
high-water mark reset (``/proc/self/clear_refs``), so a probe counts its own pages even in a process that has
computed before. Where the mark cannot be reset a thread samples the resident set instead. On a GPU it is
``torch.cuda.max_memory_allocated`` above what was allocated before.

The cost model, for an image of ``P`` pixels labelled in ``n`` windows of ``Pw`` pixels each (``Pw = P`` and
``n = 1`` for the whole image)::

    peak    = a + b * Pw + c * P         a: fixed, b: one window's forward, c: the full-size canvases + threshold
    seconds = t0 * n + k * n * Pw + kc * P

Every coefficient is non-negative and fitted on probes with the real scales, flip, precision, batch size and
model: the whole image at two reduced sizes, and the larger of them in windows (which separates ``b`` from
``c``). Memory and time of a forward scale with its pixels, so the fit extrapolates to the real size and to
any tile size.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from autolabel.config import GenerateConfig, format_size
from autolabel.data.io import encode_label_png, read_image
from autolabel.errors import ConfigError
from autolabel.generate.pools import pool_sizes
from autolabel.labelset import confidence
from autolabel.labelset.files import WriteSettings, encode_attention, label_stats
from autolabel.models.predict import tile_layout

log = logging.getLogger(__name__)

Predict = Callable[[np.ndarray], Any]  # uint8 (B, H, W, 3) -> the batch's outputs

# A plan fits a budget when the baseline plus HEADROOM x the predicted growth does: the model is meant to be
# within 25 % (make bench, planner_accuracy), and glibc's fragmentation of a CPU forward varies about that much.
HEADROOM = 1.25
# The tile sizes the planner chooses from: round numbers about 1.4x apart, so window areas about 2x apart and a
# few percent of measurement noise cannot flip a choice (which would change the label set's id between shards).
TILE_SERIES = tuple(sorted(base * 2**k for base in (64, 96) for k in range(9)))  # 64, 96, 128, ..., 24576
# Probes keep at least this many pixels on the short side at the smallest scale (fewer is mostly fixed cost).
MIN_PROBE_SIDE = 32
# Windows keep at least this many at the smallest scale: what api.check_scales demands of any input.
MIN_WINDOW_SIDE = 8
# probe sides as fractions of the real image's: a quarter and half its pixels. Larger probes cost more but
# extrapolate less far: at a sixteenth of the pixels fixed costs and allocator noise swamp the per-pixel part.
PROBE_FRACTIONS = (0.5, 0.71)


# ---------------------------------------------------------------------------------------------------------
# geometry


@dataclass(frozen=True)
class Geometry:
    """How one image of ``width x height`` is labelled at a tile size: its windows and their size."""

    width: int
    height: int
    tile_size: int
    window: tuple[int, int] | None  # (h, w) of each window; None: the whole image in one forward
    windows: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def window_pixels(self) -> int:
        return self.window[0] * self.window[1] if self.window is not None else self.pixels

    @property
    def tiled(self) -> bool:
        return self.window is not None


def geometry(width: int, height: int, settings: GenerateConfig, tile_size: int | None = None) -> Geometry:
    """The :class:`Geometry` of an image under ``settings`` (its scales, overlap, and tile size unless given)."""
    tile = settings.tile_size if tile_size is None else tile_size
    window, count = tile_layout((height, width), settings.scales, tile, settings.tile_overlap)
    return Geometry(width=width, height=height, tile_size=tile, window=window, windows=count)


def tile_candidates(width: int, height: int, settings: GenerateConfig) -> list[int]:
    """Tile sizes of :data:`TILE_SERIES` that really tile this image, largest first (0, the whole image, first).

    A window must keep :data:`MIN_WINDOW_SIDE` pixels at the smallest scale.
    """
    low, high = min(settings.scales), max(settings.scales)
    usable = [
        t
        for t in TILE_SERIES
        if geometry(width, height, settings, t).tiled and int(max(1, int(t / high)) * low) >= MIN_WINDOW_SIDE
    ]
    return [0, *sorted(usable, reverse=True)]


# ---------------------------------------------------------------------------------------------------------
# measuring memory


def _proc_status() -> dict[str, int]:
    """``VmRSS``/``VmHWM`` of this process in bytes (empty off Linux)."""
    values = {}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return {}
    return values


def _rss_now() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def release_free_memory() -> None:
    """Hand memory the allocator keeps for reuse back to the kernel (glibc ``malloc_trim``; elsewhere nothing)."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_high_water() -> bool:
    """Reset this process's ``VmHWM`` to its current resident set (Linux 4.0+); False where that is refused."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class _Sampler(threading.Thread):
    """The largest resident set seen while it runs, read every millisecond (where VmHWM cannot be reset)."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.peak = _rss_now() or 0
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss_now() or 0)

    def finish(self) -> int:
        self._stop.set()
        self.join()
        return max(self.peak, _rss_now() or 0)


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` sets ``peak.baseline`` and ``peak.growth`` (bytes; None where
    this platform cannot tell): the resident set on the CPU, what torch allocated on a GPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.baseline: int | None = None
        self.growth: int | None = None
        self._sampler: _Sampler | None = None
        self._reset = False

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
            return self
        release_free_memory()
        self._reset = _reset_high_water()
        self.baseline = _rss_now()
        if not self._reset and self.baseline is not None:
            self._sampler = _Sampler()
            self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.growth = torch.cuda.max_memory_allocated(self.device) - (self.baseline or 0)
            return
        if self.baseline is None:
            return
        if self._reset:
            peak = _proc_status().get("VmHWM")
        else:
            peak = self._sampler.finish() if self._sampler is not None else None
        self.growth = max(0, peak - self.baseline) if peak is not None else None


# ---------------------------------------------------------------------------------------------------------
# measuring forwards


@dataclass(frozen=True)
class Measurement:
    """One probe: ``repeats`` forwards of one batch at one geometry."""

    geometry: Geometry
    batch_size: int
    baseline_bytes: int | None  # the process (CPU: resident set; GPU: allocated) before the forwards
    peak_bytes: int | None  # the high-water growth over all the forwards; None where it cannot be measured
    seconds: tuple[float, ...]  # wall seconds of each forward of the batch

    @property
    def steady_seconds(self) -> float:
        """Seconds of a forward once warm: the mean of all but the first (the only one if there is one)."""
        rest = self.seconds[1:] or self.seconds
        return sum(rest) / len(rest)

    def to_dict(self) -> dict[str, Any]:
        g = self.geometry
        return {
            "size": [g.width, g.height],
            "tile_size": g.tile_size,
            "windows": g.windows,
            "batch_size": self.batch_size,
            "peak_bytes": self.peak_bytes,
            "seconds": [round(s, 4) for s in self.seconds],
        }


def measure_forward(
    predict: Predict,
    batches: Sequence[np.ndarray],
    geom: Geometry,
    device: torch.device,
    on_output: Callable[[int, Any], None] | None = None,
) -> tuple[Measurement, Any]:
    """Run ``predict`` on each batch in turn (all of one geometry); the measurement and the last outputs.

    ``on_output(i, outputs)`` sees each batch's outputs after its forward was timed (host work, say); the
    memory it takes counts in the peak, as a run's writer threads' does.
    """
    seconds = []
    outputs: Any = None
    with PeakMemory(device) as peak:
        for i, batch in enumerate(batches):
            outputs = None  # the previous batch's outputs are gone before the next forward, as in a run
            start = time.perf_counter()
            outputs = predict(batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds.append(time.perf_counter() - start)
            if on_output is not None:
                on_output(i, outputs)
    measurement = Measurement(
        geometry=geom,
        batch_size=len(batches[0]),
        baseline_bytes=peak.baseline,
        peak_bytes=peak.growth,
        seconds=tuple(seconds),
    )
    log.debug(
        "probe %dx%d tile %d: %s, %s s",
        geom.width,
        geom.height,
        geom.tile_size,
        format_size(peak.growth) if peak.growth is not None else "?",
        ", ".join(f"{s:.3f}" for s in seconds),
    )
    return measurement, outputs


# ---------------------------------------------------------------------------------------------------------
# the cost model


def _nonnegative_fit(rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Least squares ``rows @ x ~ values`` with every ``x >= 0``: the best of all subsets of free coefficients
    (the others zero) whose solution is non-negative; exact for the few coefficients here."""
    n = rows.shape[1]
    best, best_error = np.zeros(n), float(np.sum(values**2))
    for size in range(1, n + 1):
        for subset in itertools.combinations(range(n), size):
            columns = list(subset)
            solution, *_ = np.linalg.lstsq(rows[:, columns], values, rcond=None)
            if np.any(solution < 0):
                continue
            x = np.zeros(n)
            x[columns] = solution
            error = float(np.sum((rows @ x - values) ** 2))
            if error < best_error - 1e-9 * max(1.0, best_error):
                best, best_error = x, error
    return best


@dataclass(frozen=True)
class CostModel:
    """Peak memory and seconds of one batch's forward as a function of its :class:`Geometry` (module doc)."""

    base_bytes: float  # a
    window_bytes: float  # b, per pixel of a window
    image_bytes: float  # c, per pixel of the image
    forward_seconds: float  # t0, per window's forward
    window_seconds: float  # k, per pixel of a window
    image_seconds: float  # kc, per pixel of the image
    baseline_bytes: float = 0.0  # the process before labelling (model loaded)
    tiled: bool = True  # a tiled probe separated b from c (without one, only whole images are predicted)

    def peak_bytes(self, geom: Geometry) -> float:
        """Predicted growth of the forward of one batch."""
        if geom.tiled and not self.tiled:
            raise ConfigError(f"no tiled probe was measured, so tile size {geom.tile_size} cannot be predicted")
        return self.base_bytes + self.window_bytes * geom.window_pixels + self.image_bytes * geom.pixels

    def seconds(self, geom: Geometry) -> float:
        """Predicted wall seconds of one batch's forward (warm)."""
        n = geom.windows
        return (
            self.forward_seconds * n + self.window_seconds * n * geom.window_pixels + self.image_seconds * geom.pixels
        )

    @classmethod
    def fit(cls, measurements: Sequence[Measurement]) -> CostModel:
        """Fit on probes (at least one whole-image probe with a measured peak); see the module doc."""
        whole = [m for m in measurements if not m.geometry.tiled]
        if not whole:
            raise ValueError("the cost model needs at least one whole-image probe")
        tiled = any(m.geometry.tiled for m in measurements)
        g = [m.geometry for m in measurements]
        memory_rows = np.array([[1.0, x.window_pixels, x.pixels] for x in g])
        time_rows = np.array([[x.windows, x.windows * x.window_pixels, x.pixels] for x in g])
        seconds = np.array([m.steady_seconds for m in measurements])
        peaks = [m.peak_bytes for m in measurements]
        if len(whole) == 1 and not tiled:
            # one probe: both in proportion to its pixels
            only = whole[0]
            per_pixel = (only.peak_bytes or 0) / only.geometry.pixels
            return cls(0.0, per_pixel, 0.0, 0.0, only.steady_seconds / only.geometry.pixels, 0.0,
                       float(only.baseline_bytes or 0), tiled=False)  # fmt: skip
        if not tiled:  # b and c are one slope: give it to b (whole images use b + c)
            memory_rows, time_rows = memory_rows[:, :2], time_rows[:, :2]
        known = [i for i, p in enumerate(peaks) if p is not None]
        if known:
            memory = _nonnegative_fit(memory_rows[known], np.array([peaks[i] for i in known], dtype=float))
        else:
            memory = np.zeros(memory_rows.shape[1])
        timing = _nonnegative_fit(time_rows, seconds)
        memory = np.pad(memory, (0, 3 - len(memory)))
        timing = np.pad(timing, (0, 3 - len(timing)))
        baseline = min((m.baseline_bytes for m in measurements if m.baseline_bytes is not None), default=0)
        return cls(
            base_bytes=float(memory[0]),
            window_bytes=float(memory[1]),
            image_bytes=float(memory[2]),
            forward_seconds=float(timing[0]),
            window_seconds=float(timing[1]),
            image_seconds=float(timing[2]),
            baseline_bytes=float(baseline),
            tiled=tiled,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "base_bytes": round(self.base_bytes),
            "window_bytes_per_pixel": round(self.window_bytes, 3),
            "image_bytes_per_pixel": round(self.image_bytes, 3),
            "forward_seconds": round(self.forward_seconds, 6),
            "window_seconds_per_pixel": self.window_seconds,
            "image_seconds_per_pixel": self.image_seconds,
            "tiled": self.tiled,
        }


def host_buffer_bytes(width: int, height: int, settings: GenerateConfig) -> int:
    """Host memory of the images a run keeps in flight besides the batch on the device: decoded ones waiting
    for the model (``generate/runner.py``: ``2 x batch + decode_workers``) and finished maps waiting for a
    writer (``2 x encode_workers`` batches)."""
    pixels = width * height
    batch = settings.batch_size
    pools = pool_sizes("cpu", settings.decode_workers, settings.encode_workers)  # on a GPU nothing is counted
    waiting = 2 * batch + pools.decode
    pending = max(2, 2 * pools.encode) * batch
    attention = sum(s * s for s in settings.scales[:-1]) if settings.attention else 0.0
    return int(waiting * 3 * pixels + pending * (2 + attention) * pixels)


def total_bytes(
    model: CostModel, geom: Geometry, settings: GenerateConfig, on_gpu: bool, headroom: float = 1.0
) -> float:
    """The process's memory while labelling: baseline + ``headroom`` x the forward's growth (+ the images in
    flight on the CPU, where they share the budget with the forward)."""
    host = 0 if on_gpu else host_buffer_bytes(geom.width, geom.height, settings)
    return model.baseline_bytes + headroom * model.peak_bytes(geom) + host


# ---------------------------------------------------------------------------------------------------------
# choosing the tile size


@dataclass(frozen=True)
class Candidate:
    """One tile size the planner considered (0: the whole image)."""

    tile_size: int
    peak_bytes: float  # predicted growth of the forward
    total_bytes: float  # predicted process memory (no headroom)
    seconds_per_image: float
    fits: bool  # baseline + HEADROOM x growth (+ host buffers) <= budget

    def to_dict(self) -> dict[str, Any]:
        return {
            "tile_size": self.tile_size,
            "peak_bytes": round(self.peak_bytes),
            "total_bytes": round(self.total_bytes),
            "seconds_per_image": round(self.seconds_per_image, 4),
            "fits": self.fits,
        }


def candidates(
    model: CostModel, width: int, height: int, settings: GenerateConfig, budget: int | None, on_gpu: bool
) -> list[Candidate]:
    """Every tile size of :func:`tile_candidates` with its predictions, largest first."""
    result = []
    for tile in tile_candidates(width, height, settings):
        geom = geometry(width, height, settings, tile)
        if geom.tiled and not model.tiled:
            continue
        fits = budget is None or total_bytes(model, geom, settings, on_gpu, HEADROOM) <= budget
        result.append(
            Candidate(
                tile_size=tile,
                peak_bytes=model.peak_bytes(geom),
                total_bytes=total_bytes(model, geom, settings, on_gpu),
                seconds_per_image=model.seconds(geom) / settings.batch_size,
                fits=fits,
            )
        )
    return result


def choose_tile_size(
    model: CostModel,
    width: int,
    height: int,
    settings: GenerateConfig,
    budget: int,
    *,
    on_gpu: bool,
    prefer: int | None = None,
    key: str = "generate.memory_budget",
) -> Candidate:
    """The largest tile size (0, the whole image, before any) whose predicted memory fits ``budget``.

    ``prefer`` (the tiling an earlier run into the same folder chose) wins whenever it fits too, so shards and
    reruns keep one label set although the free memory they see differs. A :class:`ConfigError` naming
    ``key`` when not even the smallest tile fits.
    """
    options = candidates(model, width, height, settings, budget, on_gpu)
    preferred = [c for c in options if c.tile_size == prefer and c.fits]
    if preferred:
        return preferred[0]
    for option in options:
        if option.fits:
            return option
    smallest = options[-1]
    canvas = model.image_bytes * width * height
    raise ConfigError(
        f"{key}: {format_size(budget)} is too little for {width}x{height} images: even tile size "
        f"{smallest.tile_size or 'whole'} needs about {format_size(smallest.total_bytes)} "
        f"(the full-size canvases alone {format_size(canvas)}, the process {format_size(model.baseline_bytes)}; "
        f"x{HEADROOM} headroom on the forward); raise the budget or lower the scales or the batch size"
    )


# ---------------------------------------------------------------------------------------------------------
# calibration


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 (H, W, 3) resized (bilinear) to ``width x height``."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def probe_sizes(width: int, height: int, settings: GenerateConfig) -> list[tuple[int, int]]:
    """The whole-image probe sizes for ``width x height`` images: :data:`PROBE_FRACTIONS` of each side, at
    least :data:`MIN_PROBE_SIDE` px on the short side at the smallest scale, at most the real size."""
    shortest = min(width, height)
    least = min(1.0, math.ceil(MIN_PROBE_SIDE / min(settings.scales)) / shortest)
    sizes = []
    for fraction in PROBE_FRACTIONS:
        f = min(1.0, max(fraction, least))
        size = (max(1, round(width * f)), max(1, round(height * f)))
        if size not in sizes:
            sizes.append(size)
    return sizes


def tiled_probe_tile(width: int, height: int, settings: GenerateConfig) -> int | None:
    """A tile size whose windows (half the short side) tile a ``width x height`` probe, or None if none can."""
    window = min(width, height) // 2
    if int(window * min(settings.scales)) < MIN_WINDOW_SIDE:
        return None
    tile = math.ceil(window * max(settings.scales))
    return tile if geometry(width, height, settings, tile).tiled else None


@dataclass(frozen=True)
class Calibration:
    """The probes and the model fitted on them."""

    model: CostModel
    measurements: tuple[Measurement, ...]
    outputs: Any  # the outputs of the largest whole-image probe (for host work when the real size is not run)
    seconds: float  # how long calibrating took
    # what the first forward allocated for good (thread pools, kernel caches): a run's growth over the loaded
    # teacher includes it, a probe's does not
    first_forward_bytes: int = 0
    # how much longer the process's first forward took than a warm one of its size (oneDNN set-up, thread
    # pools): a fresh run pays it once, the probes and the timed images after them do not
    cold_seconds: float = 0.0


def calibrate(
    predict_for: Callable[[int], Predict],
    image: np.ndarray,
    target: tuple[int, int],
    settings: GenerateConfig,
    device: torch.device,
    *,
    limit: int | None = None,
    tiles: bool = True,
    repeats: int = 2,
) -> Calibration:
    """Probe the forward of ``predict_for(tile_size)`` on ``image`` resized to :func:`probe_sizes` of
    ``target`` (W, H) and, with ``tiles``, in windows at the larger size; fit the :class:`CostModel`.

    A probe that the probes before it predict to exceed ``limit`` bytes (with :data:`HEADROOM`) is skipped.
    """
    start = time.perf_counter()
    measurements: list[Measurement] = []
    outputs: Any = None
    batch_size = settings.batch_size
    sizes = probe_sizes(*target, settings)
    # a first forward allocates what a process keeps for good (thread pools, kernel caches): not a probe's growth
    small = (max(1, sizes[0][0] // 4), max(1, sizes[0][1] // 4))
    first_forward, cold = 0, None
    if min(small) * min(settings.scales) >= MIN_WINDOW_SIDE:
        warm_up = np.stack([resize_image(image, *small)] * batch_size)
        before = _held(device)
        cold = measure_forward(predict_for(0), [warm_up, warm_up], geometry(*small, settings, 0), device)[0]
        first_forward = max(0, _held(device) - before)
    for width, height in sizes:
        geom = geometry(width, height, settings, 0)
        if measurements and limit is not None and _too_big(measurements, geom, settings, device, limit):
            log.info("probe %dx%d skipped: it would not fit %s", width, height, format_size(limit))
            break
        batch = np.stack([resize_image(image, width, height)] * batch_size)  # (B, H, W, 3)
        measurement, outputs = measure_forward(predict_for(0), [batch] * repeats, geom, device)
        measurements.append(measurement)
    largest = measurements[-1].geometry
    tile = tiled_probe_tile(largest.width, largest.height, settings) if tiles else None
    if tile is not None:
        geom = geometry(largest.width, largest.height, settings, tile)
        batch = np.stack([resize_image(image, largest.width, largest.height)] * batch_size)
        measurement, _ = measure_forward(predict_for(tile), [batch] * repeats, geom, device)
        measurements.append(measurement)
    model = CostModel.fit(measurements)
    cold_seconds = max(0.0, cold.seconds[0] - cold.seconds[1]) if cold is not None else 0.0
    return Calibration(model, tuple(measurements), outputs, time.perf_counter() - start, first_forward, cold_seconds)


def _held(device: torch.device) -> int:
    """What this process holds now: allocated on a GPU, else the resident set once freed memory is returned."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return int(torch.cuda.memory_allocated(device))
    release_free_memory()
    return _rss_now() or 0


def _too_big(
    done: Sequence[Measurement], geom: Geometry, settings: GenerateConfig, device: torch.device, limit: int
) -> bool:
    """Whether the next probe, predicted in proportion to the largest so far, would exceed ``limit``."""
    last = done[-1]
    if last.peak_bytes is None:
        return False
    growth = last.peak_bytes * geom.pixels / last.geometry.pixels
    host = 0 if device.type == "cuda" else host_buffer_bytes(geom.width, geom.height, settings)
    return (last.baseline_bytes or 0) + HEADROOM * growth + host > limit


# ---------------------------------------------------------------------------------------------------------
# host work


@dataclass(frozen=True)
class HostWork:
    """The CPU work of one image besides the forward, and what it writes."""

    decode_seconds: float
    encode_seconds: float
    label_bytes: int
    confidence_bytes: int
    attention_bytes: int

    @property
    def seconds(self) -> float:
        return self.decode_seconds + self.encode_seconds

    @property
    def output_bytes(self) -> int:
        return self.label_bytes + self.confidence_bytes + self.attention_bytes

    @classmethod
    def mean(cls, items: Sequence[HostWork]) -> HostWork:
        n = max(1, len(items))
        return cls(
            decode_seconds=sum(h.decode_seconds for h in items) / n,
            encode_seconds=sum(h.encode_seconds for h in items) / n,
            label_bytes=round(sum(h.label_bytes for h in items) / n),
            confidence_bytes=round(sum(h.confidence_bytes for h in items) / n),
            attention_bytes=round(sum(h.attention_bytes for h in items) / n),
        )


def measure_host_work(
    image: Path,
    labels: np.ndarray,
    codes: np.ndarray,
    attention: dict[str, np.ndarray],
    settings: WriteSettings,
    *,
    max_pixels: int | None,
    classes: np.ndarray | None = None,
    histogram: np.ndarray | None = None,
) -> HostWork:
    """Decode ``image`` and encode one image's outputs as the writer threads do (label statistics, label PNG
    and its sha256, the confidence store's class and code planes and the row's histogram, attention PNGs),
    writing nothing; seconds and encoded bytes. Without ``classes`` the class plane is ``labels`` (the same
    layout, with the ignored pixels' holes).

    The stand-in for a host-cost measurement shared with the pipeline's own benchmarks: anything that returns a
    :class:`HostWork` for one image can replace it.
    """
    start = time.perf_counter()
    read_image(image, max_pixels=max_pixels, exif_transpose=settings.exif_transpose)
    decoded = time.perf_counter()
    label_stats(labels, settings.num_classes, settings.centroid_tile, settings.ignore_index)
    stored = labels if settings.train_to_label is None else settings.train_to_label[labels]
    png = encode_label_png(stored, settings.compress_level)
    hashlib.sha256(png).hexdigest()
    confidence_bytes = 0
    if settings.confidence:
        files = confidence.array_files(labels if classes is None else classes, codes)
        confidence_bytes = sum(len(data) for data in files.values())
        if histogram is not None:
            confidence.encode_histogram(histogram)
    attention_bytes = sum(len(encode_attention(value)) for value in attention.values())
    return HostWork(
        decode_seconds=decoded - start,
        encode_seconds=time.perf_counter() - decoded,
        label_bytes=len(png),
        confidence_bytes=confidence_bytes,
        attention_bytes=attention_bytes,
    )


def upsample_nearest(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """A uint8 (H, W) map at ``width x height`` (nearest neighbour): probe outputs encoded at the real size."""
    return np.asarray(Image.fromarray(array).resize((width, height), Image.Resampling.NEAREST))


def with_tile_size(settings: GenerateConfig, tile_size: int) -> GenerateConfig:
    """``settings`` with another tile size (already a checked value: no config check needed)."""
    return replace(settings, tile_size=tile_size)
