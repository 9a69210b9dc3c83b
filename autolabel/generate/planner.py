"""Planning a ``generate`` run before launch: the tiling that fits a memory budget, and ``--dry-run``.

``generate --dry-run`` loads the teacher, probes its forward with the real settings (scales, flip, tiling,
precision, batch size, device) on reduced copies of the first image (:mod:`autolabel.generate.costs`), picks
the tiling, and then labels a couple of the real images at their real size when the model predicts they fit
(else it extrapolates from the probes and says so). It writes nothing. :func:`plan_labels` returns the
:class:`LabelPlan`; :meth:`LabelPlan.to_json` is the ``--dry-run --json`` document (docs/usage.md, "Planning
a run", lists every field).

With a memory budget and ``generate.tile_size = 0`` a real run chooses its tiling the same way
(:func:`auto_tiling`): the largest tile size of :data:`~autolabel.generate.costs.TILE_SERIES` whose predicted
peak fits, or none when the whole image does. The label-set id hashes the tiling actually used, so a tile size
chosen for a budget names the same label set as that tile size given by hand (the labels are the same); how
it was chosen is recorded in ``labelset.json`` under ``tiling_plan``, which is not hashed. A rerun into a
folder whose tiling was chosen automatically keeps that tiling whenever it still fits.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from autolabel import labelset
from autolabel.classes import ClassSet
from autolabel.config import GenerateConfig, format_size, parse_size
from autolabel.data.datasets import Sample
from autolabel.data.io import image_size, read_image
from autolabel.data.sources import exclude_output
from autolabel.errors import DataError, LabelSetError
from autolabel.generate import costs
from autolabel.generate.costs import Calibration, CostModel, Geometry, HostWork, Measurement
from autolabel.generate.pools import pool_sizes
from autolabel.generate.runner import GenerateJob, Plan, load_teacher, prepare, write_settings
from autolabel.generate.sharding import select_shard, shard_counts
from autolabel.generate.teacher import PredictedBatch, Teacher
from autolabel.models.device import resolve_device

log = logging.getLogger(__name__)

PLAN_FORMAT = "autolabel-plan"
PLAN_VERSION = 1
TIMED_BATCHES = 3  # at the real size: the first (cold) and two more, timed
SIZE_PROBE = 16  # image headers read to find the largest image size of the shard
MEMORY_AVAILABLE_SHARE = 0.9  # of /proc/meminfo's MemAvailable, the CPU limit of a dry run without a budget


# ---------------------------------------------------------------------------------------------------------
# the budget


@dataclass(frozen=True)
class Budget:
    """The memory labelling may use, and where that number came from."""

    bytes: int | None  # None: no budget
    source: str  # "generate.memory_budget", "free GPU memory" or "none"


def resolve_budget(option: str, device: torch.device) -> Budget:
    """``generate.memory_budget`` on ``device``: a size; ``auto``, a GPU's free memory (plus what this process
    already holds there) and no budget on the CPU; ``none``."""
    if option == "none":
        return Budget(None, "none")
    if option != "auto":
        return Budget(parse_size(option, key="generate.memory_budget"), "generate.memory_budget")
    if device.type != "cuda":
        return Budget(None, "none")
    free, _total = torch.cuda.mem_get_info(device)
    return Budget(int(free + torch.cuda.memory_reserved(device)), "free GPU memory")


def memory_limit(budget: Budget, device: torch.device) -> int | None:
    """What a dry run may use for its own probes: the budget, else (CPU) most of the memory free now."""
    if budget.bytes is not None or device.type == "cuda":
        return budget.bytes
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            available = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return int(MEMORY_AVAILABLE_SHARE * available) + (costs._rss_now() or 0)


# ---------------------------------------------------------------------------------------------------------
# the shard's images


def shard_samples(job: GenerateJob, samples: Sequence[Sample]) -> list[Sample]:
    """This job's images in the order a run takes them (sorted, this shard, ``--limit``)."""
    inputs = exclude_output(sorted(samples, key=lambda s: s.id), job.out)
    mine = [inputs[i] for i in select_shard([s.id for s in inputs], job.shard)]
    return mine[: job.limit] if job.limit is not None else mine


def image_sizes(samples: Sequence[Sample], exif: bool) -> Counter[tuple[int, int]]:
    """(W, H) of the first :data:`SIZE_PROBE` readable images (headers only)."""
    sizes: Counter[tuple[int, int]] = Counter()
    for sample in samples[:SIZE_PROBE]:
        try:
            sizes[image_size(sample.image, exif_transpose=exif)] += 1
        except DataError:
            continue
    return sizes


def readable_images(
    samples: Sequence[Sample], count: int, max_pixels: int | None, exif: bool, size: tuple[int, int] | None = None
) -> list[tuple[Sample, np.ndarray]]:
    """Up to ``count`` decoded images from the first :data:`SIZE_PROBE` (only ``size`` (W, H) ones if given)."""
    found: list[tuple[Sample, np.ndarray]] = []
    for sample in samples[:SIZE_PROBE]:
        if len(found) >= count:
            break
        try:
            image = read_image(sample.image, max_pixels=max_pixels, exif_transpose=exif)
        except DataError:
            continue
        if size is None or (image.shape[1], image.shape[0]) == size:
            found.append((sample, image))
    return found


def teacher_with(teacher: Teacher, settings: GenerateConfig, job: GenerateJob) -> Teacher:
    """The loaded teacher with other ``[generate]`` settings (another tile size); the model is shared."""
    if settings == teacher.settings:
        return teacher
    return Teacher(teacher.loaded, teacher.classes, teacher.device, settings, job.data, teacher.ladder)


def _predict_for(teacher: Teacher, job: GenerateJob) -> Any:
    def predict_for(tile_size: int) -> costs.Predict:
        return teacher_with(teacher, costs.with_tile_size(teacher.settings, tile_size), job).predict

    return predict_for


# ---------------------------------------------------------------------------------------------------------
# choosing the tiling


@dataclass(frozen=True)
class TilingChoice:
    """The tiling a run uses and why."""

    tile_size: int
    choice: str  # "auto": chosen for the budget; "given": generate.tile_size; "whole": no tiling asked for
    budget: Budget
    candidates: tuple[costs.Candidate, ...] = ()

    def record(self, size: tuple[int, int]) -> dict[str, Any] | None:
        """What ``labelset.json`` keeps under ``tiling_plan`` (automatic choices only)."""
        if self.choice != "auto":
            return None
        chosen = next((c for c in self.candidates if c.tile_size == self.tile_size), None)
        return {
            "choice": "auto",
            "tile_size": self.tile_size,
            "memory_budget_bytes": self.budget.bytes,
            "budget_from": self.budget.source,
            "image_size": list(size),
            "predicted_total_bytes": round(chosen.total_bytes) if chosen is not None else None,
        }


def previous_auto_tile(job: GenerateJob) -> int | None:
    """The tile size an earlier run into ``job.out`` chose for its budget, if it did."""
    try:
        meta = labelset.read_labelset(job.out)
    except LabelSetError:
        return None
    plan = meta.get("tiling_plan") or {}
    return int(meta["tiling"]["tile_size"]) if plan.get("choice") == "auto" else None


def choose_tiling(
    job: GenerateJob, calibration: Calibration | None, size: tuple[int, int], budget: Budget, on_gpu: bool
) -> TilingChoice:
    """Tiling for ``size`` (W, H) images: as given (``tile_size > 0``), else the largest that fits the budget."""
    settings = job.generate
    options: tuple[costs.Candidate, ...] = ()
    if calibration is not None:
        options = tuple(costs.candidates(calibration.model, *size, settings, budget.bytes, on_gpu))
    if settings.tile_size > 0:
        return TilingChoice(settings.tile_size, "given", budget, options)
    if budget.bytes is None or calibration is None:
        return TilingChoice(0, "whole", budget, options)
    chosen = costs.choose_tile_size(
        calibration.model, *size, settings, budget.bytes, on_gpu=on_gpu, prefer=previous_auto_tile(job)
    )
    return TilingChoice(chosen.tile_size, "auto", budget, options)


def needs_calibration(job: GenerateJob, size: tuple[int, int], budget: Budget) -> bool:
    """Whether a real run must probe to choose its tiling: a budget, ``tile_size`` 0, and images that can
    be tiled at all."""
    return (
        budget.bytes is not None and job.generate.tile_size == 0 and len(costs.tile_candidates(*size, job.generate)) > 1
    )


def auto_tiling(
    job: GenerateJob, samples: Sequence[Sample], classes: ClassSet | None
) -> tuple[GenerateJob, Teacher | None]:
    """The job with the tile size that fits its memory budget (see the module doc), and the teacher when
    choosing it had to load one (reuse it: it is on the run's device with the chosen settings).

    Without a budget, with ``tile_size > 0`` or with images too small to tile, the job is returned as it is.
    """
    device = resolve_device(str(job.generate.device), slot=job.shard.index)
    budget = resolve_budget(job.generate.memory_budget, device)
    if budget.bytes is None or job.generate.tile_size > 0:
        return job, None
    mine = shard_samples(job, samples)
    sizes = image_sizes(mine, job.data.exif_transpose)
    if not sizes:
        return job, None
    size = max(sizes, key=lambda s: s[0] * s[1])
    if not needs_calibration(job, size, budget):
        choice = TilingChoice(0, "auto", budget)
        return replace(job, tiling_plan=choice.record(size)), None
    images = readable_images(mine, 1, job.data.max_image_pixels, job.data.exif_transpose, size)
    if not images:
        return job, None
    teacher = load_teacher(job, classes)
    calibration = costs.calibrate(
        _predict_for(teacher, job), images[0][1], size, job.generate, teacher.device, limit=budget.bytes
    )
    choice = choose_tiling(job, calibration, size, budget, teacher.device.type == "cuda")
    log.info(
        "tile size %s for %dx%d images within %s (%s), probed in %.1f s",
        choice.tile_size or "0 (whole images)",
        *size,
        format_size(budget.bytes),
        budget.source,
        calibration.seconds,
    )
    settings = costs.with_tile_size(job.generate, choice.tile_size)
    job = replace(job, generate=settings, tiling_plan=choice.record(size))
    return job, teacher_with(teacher, settings, job)


# ---------------------------------------------------------------------------------------------------------
# the plan


@dataclass(frozen=True)
class Timing:
    """Seconds per image and where they go."""

    measured: str  # "real size": timed on real images; "extrapolated": from the probes; "none": nothing timed
    timed_images: int
    seconds_per_image: float
    model_seconds_per_image: float  # the same with the cost model's forward (what the probes alone predict)
    forward_seconds: float  # the teacher's forward per image (batch seconds / batch size)
    decode_seconds: float
    encode_seconds: float
    first_image_extra_seconds: float  # the cold first forward's extra time, once per process
    startup_seconds: float  # loading the teacher and planning (and probing, when a run chooses its tiling)
    bottleneck: str  # "device" or "host"
    cores: int
    torch_threads: int

    @property
    def host_seconds(self) -> float:
        return self.decode_seconds + self.encode_seconds

    @property
    def images_per_hour(self) -> float:
        return 3600.0 / self.seconds_per_image if self.seconds_per_image > 0 else math.inf


@dataclass(frozen=True)
class Memory:
    """Peak memory of labelling (bytes): RSS on the CPU, torch's allocations on a GPU."""

    kind: str  # "rss" or "cuda"
    baseline_bytes: int  # the process with the teacher loaded
    forward_peak_bytes: int  # growth of a forward (measured at the real size, else the model's)
    model_forward_peak_bytes: int | None  # the cost model's prediction of the same
    host_buffer_bytes: int  # images in flight besides the batch (CPU only)
    budget_bytes: int | None
    first_forward_bytes: int = 0  # of the baseline: what the first forward kept (a run's growth includes it)

    @property
    def total_bytes(self) -> int:
        return self.baseline_bytes + self.forward_peak_bytes + self.host_buffer_bytes

    @property
    def fits(self) -> bool | None:
        if self.budget_bytes is None:
            return None
        return (
            self.baseline_bytes + costs.HEADROOM * self.forward_peak_bytes + self.host_buffer_bytes <= self.budget_bytes
        )


@dataclass(frozen=True)
class LabelPlan:
    """The plan of one ``generate`` job (its shard) with predicted time, memory and output size."""

    labelset_id: str
    inputs: int  # images given (after excluding OUT)
    shard: str  # "I/N"
    per_shard: tuple[int, ...]  # images in each shard (all shards, for sizing an array job)
    shard_size: int
    done: int
    todo: int
    chunks: int
    seconds_per_image: float | None  # None when no image could be read
    timed_images: int
    with_fine: int = 0  # inputs with a fine (human) label next to them
    with_coarse: int = 0  # inputs with a coarse (human) label next to them
    todo_all_shards: int = 0
    devices: int = 1
    settings: dict[str, Any] = field(default_factory=dict)
    image_size: tuple[int, int] | None = None  # (W, H) planned for: the largest of the first images
    sizes_seen: dict[str, int] = field(default_factory=dict)
    tiling: TilingChoice | None = None
    geometry: Geometry | None = None
    timing: Timing | None = None
    memory: Memory | None = None
    output: HostWork | None = None  # per image
    model: CostModel | None = None
    probes: tuple[Measurement, ...] = ()
    calibration_seconds: float = 0.0

    @property
    def wall_seconds(self) -> float | None:
        """This shard: startup, the cold first image, then the images still to do."""
        if self.timing is None:
            return None
        return self._wall(self.todo)

    @property
    def wall_seconds_all_shards(self) -> float | None:
        """Every shard's remaining images spread over :attr:`devices` devices, one process each."""
        if self.timing is None:
            return None
        return self._wall(math.ceil(self.todo_all_shards / max(1, self.devices)))

    def _wall(self, images: int) -> float:
        assert self.timing is not None
        if images == 0:
            return 0.0
        t = self.timing
        return t.startup_seconds + t.first_image_extra_seconds + images * t.seconds_per_image

    def to_json(self) -> dict[str, Any]:
        """The ``--dry-run --json`` document (docs/usage.md, "Planning a run")."""
        t, m, o, g = self.timing, self.memory, self.output, self.geometry
        return {
            "format": PLAN_FORMAT,
            "format_version": PLAN_VERSION,
            "labelset_id": self.labelset_id,
            "settings": self.settings,
            "images": {
                "inputs": self.inputs,
                "with_fine": self.with_fine,
                "with_coarse": self.with_coarse,
                "shard": self.shard,
                "per_shard": list(self.per_shard),
                "shard_size": self.shard_size,
                "done": self.done,
                "todo": self.todo,
                "todo_all_shards": self.todo_all_shards,
                "chunks": self.chunks,
                "size": list(self.image_size) if self.image_size else None,
                "sizes_seen": self.sizes_seen,
            },
            "tiling": None
            if self.tiling is None
            else {
                "tile_size": self.tiling.tile_size,
                "choice": self.tiling.choice,
                "window": list(g.window) if g is not None and g.window is not None else None,
                "windows": g.windows if g is not None else 1,
                "memory_budget_bytes": self.tiling.budget.bytes,
                "budget_from": self.tiling.budget.source,
                "candidates": [c.to_dict() for c in self.tiling.candidates],
            },
            "timing": None
            if t is None
            else {
                "measured": t.measured,
                "timed_images": t.timed_images,
                "seconds_per_image": round(t.seconds_per_image, 4),
                "model_seconds_per_image": round(t.model_seconds_per_image, 4),
                "images_per_hour": round(t.images_per_hour, 1),
                "forward_seconds_per_image": round(t.forward_seconds, 4),
                "host_seconds_per_image": round(t.host_seconds, 4),
                "decode_seconds_per_image": round(t.decode_seconds, 4),
                "encode_seconds_per_image": round(t.encode_seconds, 4),
                "first_image_extra_seconds": round(t.first_image_extra_seconds, 3),
                "startup_seconds": round(t.startup_seconds, 3),
                "bottleneck": t.bottleneck,
                "cores": t.cores,
                "torch_threads": t.torch_threads,
            },
            "wall_seconds": None
            if t is None
            else {
                "this_shard": round(self.wall_seconds or 0.0, 1),
                "all_shards": round(self.wall_seconds_all_shards or 0.0, 1),
                "devices": self.devices,
            },
            "memory": None
            if m is None
            else {
                "kind": m.kind,
                "baseline_bytes": m.baseline_bytes,
                "forward_peak_bytes": m.forward_peak_bytes,
                "model_forward_peak_bytes": m.model_forward_peak_bytes,
                "host_buffer_bytes": m.host_buffer_bytes,
                "first_forward_bytes": m.first_forward_bytes,
                "total_bytes": m.total_bytes,
                "budget_bytes": m.budget_bytes,
                "headroom": costs.HEADROOM,
                "fits": m.fits,
            },
            "output_bytes": None
            if o is None
            else {
                "per_image": {
                    "labels": o.label_bytes,
                    "confidence": o.confidence_bytes,
                    "attention": o.attention_bytes,
                    "total": o.output_bytes,
                },
                "this_shard": o.output_bytes * self.todo,
                "all_shards": o.output_bytes * self.todo_all_shards,
            },
            "model": None
            if self.model is None
            else {
                **self.model.to_dict(),
                "probes": [p.to_dict() for p in self.probes],
                "seconds": round(self.calibration_seconds, 3),
            },
        }


def _done_everywhere(job: GenerateJob, meta: dict[str, Any], ids: Sequence[str]) -> int:
    """Images of ``ids`` that ``job.out`` already holds ok rows for, in any shard (rows only; files unchecked)."""
    try:
        old = labelset.read_labelset(job.out)
    except LabelSetError:
        return 0
    if old["labelset_id"] != meta["labelset_id"]:
        return 0
    rows = labelset.rows_by_id(labelset.dedupe(labelset.read_all_rows(job.out)))
    return sum(1 for i in ids if i in rows and rows[i]["status"] == "ok")


def pipeline_seconds(
    forward: float, host: float, device: torch.device, settings: GenerateConfig
) -> tuple[float, str, int, int]:
    """Seconds per image of the pipelined run, the bottleneck, cores and torch threads.

    The forward runs in one thread (on ``torch_threads`` cores when on the CPU) while decoder and writer
    threads do the host work; a run takes at least the forward, at least the host work spread over its
    threads, and on the CPU at least all the CPU work spread over the cores.
    """
    pools = pool_sizes(device.type, settings.decode_workers, settings.encode_workers)
    cores, threads = pools.cores, torch.get_num_threads()
    host_threads = max(1, min(cores, pools.decode + pools.encode))
    spread_host = host / host_threads
    busy = (forward * min(threads, cores) + host) / cores if device.type == "cpu" else 0.0
    per_image = max(forward, spread_host, busy)
    return per_image, "host" if spread_host > forward else "device", cores, threads


def _settings_record(teacher: Teacher, settings: GenerateConfig) -> dict[str, Any]:
    return {
        "device": str(teacher.device),
        "precision": teacher.precision_name,
        "scales": list(settings.scales),
        "flip": settings.flip,
        "batch_size": settings.batch_size,
        "tile_size": settings.tile_size,
        "tile_overlap": settings.tile_overlap,
        "confidence": settings.confidence,
        "attention": settings.attention,
        "model_width": teacher.loaded.model_cfg.width,
        "memory_budget": settings.memory_budget,
    }


def plan_labels(
    job: GenerateJob, samples: Sequence[Sample], classes: ClassSet | None = None, *, devices: int | None = None
) -> LabelPlan:
    """Plan the run, choose its tiling, and time it on a couple of the images still to do; writes nothing.

    ``devices``: how many devices the shards share for the all-shards wall time (default: the shard count).
    """
    start = time.perf_counter()
    teacher = load_teacher(job, classes)
    teacher, plan = prepare(job, samples, classes, teacher)
    on_gpu = teacher.device.type == "cuda"
    budget = resolve_budget(job.generate.memory_budget, teacher.device)
    todo = [s for c in plan.chunks if not c.complete for s in c.todo]
    mine = todo or shard_samples(job, samples)
    sizes = image_sizes(mine, job.data.exif_transpose)
    size = max(sizes, key=lambda s: s[0] * s[1]) if sizes else None
    exif, max_pixels = job.data.exif_transpose, job.data.max_image_pixels
    first = readable_images(mine, 1, max_pixels, exif, size) if size is not None else []
    calibration = None
    if first and size is not None:
        tiles = job.generate.tile_size > 0 or len(costs.tile_candidates(*size, job.generate)) > 1
        calibration = costs.calibrate(
            _predict_for(teacher, job),
            first[0][1],
            size,
            job.generate,
            teacher.device,
            limit=memory_limit(budget, teacher.device),
            tiles=tiles,
        )
    tiling = choose_tiling(job, calibration, size, budget, on_gpu) if size is not None else None
    if tiling is not None and tiling.tile_size != job.generate.tile_size:
        settings = costs.with_tile_size(job.generate, tiling.tile_size)
        job = replace(job, generate=settings, tiling_plan=tiling.record(size or (0, 0)))
        teacher, plan = prepare(job, samples, classes, teacher_with(teacher, settings, job))
    setup_seconds = time.perf_counter() - start - (calibration.seconds if calibration is not None else 0.0)
    inputs = exclude_output(samples, job.out)
    ids = [s.id for s in inputs]
    common: dict[str, Any] = dict(
        labelset_id=plan.meta["labelset_id"],
        inputs=plan.inputs,
        shard=str(job.shard),
        per_shard=tuple(shard_counts(ids, job.shard.count)),
        shard_size=plan.shard_size,
        done=plan.done,
        todo=plan.todo,
        chunks=len(plan.chunks),
        with_fine=sum(s.label is not None for s in inputs),
        with_coarse=sum(s.coarse is not None for s in inputs),
        todo_all_shards=max(0, len(ids) - _done_everywhere(job, plan.meta, ids)),
        devices=devices or job.shard.count,
        settings=_settings_record(teacher, job.generate),
        sizes_seen={f"{w}x{h}": n for (w, h), n in sorted(sizes.items())},
    )
    if size is None or calibration is None or tiling is None:
        return LabelPlan(seconds_per_image=None, timed_images=0, **common)
    # a run that chooses its own tiling probes first: part of its start-up
    startup = setup_seconds + (calibration.seconds if needs_calibration(job, size, budget) else 0.0)
    measured = _measure_real_size(job, teacher, plan, mine, size, calibration, budget)
    return LabelPlan(
        seconds_per_image=measured.timing.seconds_per_image,
        timed_images=measured.timing.timed_images,
        image_size=size,
        tiling=tiling,
        geometry=costs.geometry(*size, job.generate),
        timing=replace(measured.timing, startup_seconds=startup),
        memory=measured.memory,
        output=measured.output,
        model=calibration.model,
        probes=calibration.measurements,
        calibration_seconds=calibration.seconds,
        **common,
    )


@dataclass(frozen=True)
class _Measured:
    timing: Timing
    memory: Memory
    output: HostWork


def _measure_real_size(
    job: GenerateJob,
    teacher: Teacher,
    plan: Plan,
    samples: Sequence[Sample],
    size: tuple[int, int],
    calibration: Calibration,
    budget: Budget,
) -> _Measured:
    """Time and measure :data:`TIMED_BATCHES` batches of real images at the real size when the model predicts
    they fit the memory limit, else extrapolate the probes to it."""
    settings = job.generate
    geom = costs.geometry(*size, settings)
    model = calibration.model
    on_gpu = teacher.device.type == "cuda"
    limit = memory_limit(budget, teacher.device)
    predicted_peak = model.peak_bytes(geom) if model.tiled or not geom.tiled else None
    host_buffers = 0 if on_gpu else costs.host_buffer_bytes(*size, settings)
    write = write_settings(job, teacher.classes)
    max_pixels = job.data.max_image_pixels
    fits = predicted_peak is not None and (
        limit is None or model.baseline_bytes + costs.HEADROOM * predicted_peak + host_buffers <= limit
    )
    images = readable_images(samples, TIMED_BATCHES * settings.batch_size, max_pixels, job.data.exif_transpose, size)
    if fits and images and plan.todo:
        batches = [
            np.stack([images[(i * settings.batch_size + b) % len(images)][1] for b in range(settings.batch_size)])
            for i in range(TIMED_BATCHES)
        ]  # each (B, H, W, 3)
        host: list[HostWork] = []

        def encode(i: int, outputs: PredictedBatch) -> None:
            for b in range(settings.batch_size):
                sample = images[(i * settings.batch_size + b) % len(images)][0]
                attention = {k: v[b] for k, v in outputs.attention.items()}
                host.append(
                    costs.measure_host_work(
                        sample.image,
                        outputs.labels[b],
                        outputs.codes[b],
                        attention,
                        write,
                        max_pixels=max_pixels,
                        classes=outputs.classes[b] if outputs.classes is not None else None,
                        histogram=outputs.histogram[b] if outputs.histogram is not None else None,
                    )
                )

        measurement, _ = costs.measure_forward(teacher.predict, batches, geom, teacher.device, encode)
        forward = measurement.steady_seconds / settings.batch_size
        first_extra = max(0.0, measurement.seconds[0] - measurement.steady_seconds)
        peak = measurement.peak_bytes if measurement.peak_bytes is not None else round(predicted_peak or 0)
        baseline = measurement.baseline_bytes if measurement.baseline_bytes is not None else model.baseline_bytes
        how, timed = "real size", min(len(images), TIMED_BATCHES * settings.batch_size)
        work = HostWork.mean(host)
    else:
        if predicted_peak is None:
            predicted_peak = 0.0
        forward = model.seconds(geom) / settings.batch_size
        largest = max((m for m in calibration.measurements if not m.geometry.tiled), key=lambda m: m.geometry.pixels)
        scale = geom.pixels / largest.geometry.pixels
        first_extra = max(0.0, largest.seconds[0] - largest.steady_seconds) * scale
        peak, baseline, how, timed = round(predicted_peak), model.baseline_bytes, "extrapolated", 0
        work = _extrapolated_host_work(calibration.outputs, samples[0], size, write, max_pixels)
        log.info(
            "the real size %dx%d is predicted to need %s; extrapolated from the probes instead of running it",
            *size,
            format_size(model.baseline_bytes + predicted_peak + host_buffers),
        )
    per_image, bottleneck, cores, threads = pipeline_seconds(forward, work.seconds, teacher.device, settings)
    model_forward = model.seconds(geom) / settings.batch_size if model.tiled or not geom.tiled else forward
    timing = Timing(
        measured=how,
        timed_images=timed,
        seconds_per_image=per_image,
        model_seconds_per_image=pipeline_seconds(model_forward, work.seconds, teacher.device, settings)[0],
        forward_seconds=forward,
        decode_seconds=work.decode_seconds,
        encode_seconds=work.encode_seconds,
        first_image_extra_seconds=first_extra + calibration.cold_seconds,
        startup_seconds=0.0,
        bottleneck=bottleneck,
        cores=cores,
        torch_threads=threads,
    )
    memory = Memory(
        kind="cuda" if on_gpu else "rss",
        baseline_bytes=round(baseline),
        forward_peak_bytes=round(peak),
        model_forward_peak_bytes=round(predicted_peak) if predicted_peak is not None else None,
        host_buffer_bytes=host_buffers,
        budget_bytes=budget.bytes,
        first_forward_bytes=calibration.first_forward_bytes,
    )
    return _Measured(timing, memory, work)


def _extrapolated_host_work(
    outputs: Any, sample: Sample, size: tuple[int, int], write: Any, max_pixels: int | None
) -> HostWork:
    """Host work at the real size from the largest probe's outputs, upsampled (nearest) to it."""
    if not isinstance(outputs, PredictedBatch):
        return HostWork(0.0, 0.0, 0, 0, 0)
    width, height = size
    labels = costs.upsample_nearest(outputs.labels[0], width, height)
    codes = costs.upsample_nearest(outputs.codes[0], width, height)
    classes = costs.upsample_nearest(outputs.classes[0], width, height) if outputs.classes is not None else None
    attention = {
        k: costs.upsample_nearest(v[0], round(width * v.shape[2] / outputs.labels.shape[2]),
                                  round(height * v.shape[1] / outputs.labels.shape[1]))
        for k, v in outputs.attention.items()
    }  # fmt: skip
    histogram = outputs.histogram[0] if outputs.histogram is not None else None  # encoded once: its size is fixed
    return costs.measure_host_work(
        sample.image, labels, codes, attention, write, max_pixels=max_pixels, classes=classes, histogram=histogram
    )
