"""``autolabel generate`` as a Python API: plan, resume, and the pipelined in-process run.

One process overlaps three things: a pool of threads decodes the next images, the calling thread runs the
teacher batch by batch, and a pool of writer threads encodes and writes the previous batch's files. A chunk's
manifest part is written as soon as all of its images' files are final, so killing the job at any moment
loses at most the chunks in flight, and a rerun redoes exactly those.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autolabel import labelset
from autolabel.classes import ClassSet
from autolabel.config import DataConfig, GenerateConfig, to_dict
from autolabel.data.datasets import Sample
from autolabel.data.io import read_image
from autolabel.data.sources import Source, exclude_output
from autolabel.errors import AutolabelError, DataError, LabelSetError
from autolabel.fs import temp_target
from autolabel.generate.sharding import Shard, chunked, select_shard
from autolabel.generate.teacher import Teacher
from autolabel.labelset import confidence
from autolabel.labelset.files import (
    WriteSettings,
    attention_relpath,
    error_row,
    file_sha256,
    finalise_image,
    label_relpath,
)

log = logging.getLogger(__name__)

ProgressFn = Callable[[int], None]


class FailFastError(AutolabelError):
    """``--fail-fast``: the run stopped at the first image that could not be labelled."""


@dataclass(frozen=True)
class GenerateJob:
    """One ``generate`` run: the settings (config sections) plus the run-time choices of the command line."""

    teacher: Path
    out: Path
    generate: GenerateConfig = GenerateConfig()
    data: DataConfig = DataConfig()
    shard: Shard = Shard()
    limit: int | None = None
    fail_fast: bool = False
    overwrite: bool = False
    source: Source | None = None  # how the inputs were named (kept in labelset.json)
    tiling_plan: dict[str, Any] | None = None  # how the planner chose generate.tile_size (kept in labelset.json)


@dataclass
class Chunk:
    """A piece of the shard's image list: one task, one manifest part."""

    samples: list[Sample]
    finished_rows: dict[str, dict[str, Any]]  # image id -> its row, for images already labelled (resume)
    complete: bool = False  # its part exists and everything in it checks out: nothing to do

    @property
    def todo(self) -> list[Sample]:
        return [s for s in self.samples if s.id not in self.finished_rows]


@dataclass
class Plan:
    """What a run will do."""

    meta: dict[str, Any]
    chunks: list[Chunk]
    inputs: int  # images given (after excluding OUT)
    shard_size: int  # images in this shard (after --limit)

    @property
    def todo(self) -> int:
        return sum(len(c.todo) for c in self.chunks if not c.complete)

    @property
    def done(self) -> int:
        return self.shard_size - self.todo


@dataclass
class GenerateResult:
    """What a run did."""

    labelset_id: str
    planned: int
    skipped: int
    ok: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------------------
# planning


def labelset_meta(job: GenerateJob, teacher: Teacher, classes: ClassSet) -> dict[str, Any]:
    return labelset.make_labelset_meta(
        teacher_sha256=teacher.loaded.sha256,
        model_config=to_dict(teacher.loaded.model_cfg),
        scales=job.generate.scales,
        flip=job.generate.flip,
        threshold=job.generate.threshold,
        ladder=teacher.ladder,
        class_names=classes.names,
        label_ids=classes.label_ids if job.generate.label_ids else None,
        ignore_index=classes.ignore_index,
        mean=job.data.mean,
        std=job.data.std,
        tile_size=job.generate.tile_size,
        tile_overlap=job.generate.tile_overlap,
        confidence=job.generate.confidence,
        png_compress_level=job.generate.png_compress_level,
        centroid_tile=job.generate.centroid_tile,
        source=job.source.to_dict() if job.source is not None else {},
        tiling_plan=job.tiling_plan,
    )


def row_is_done(out: Path, row: dict[str, Any], need_codes: bool) -> bool:
    """An ok row whose label file is there with the recorded sha256 (and its confidence map, if kept)."""
    if row["status"] != "ok" or not row["label"]:
        return False
    if file_sha256(out / row["label"]) != row["label_sha256"]:
        return False
    return not need_codes or confidence.has_codes(out, row["id"])


def plan_run(job: GenerateJob, samples: Sequence[Sample], meta: dict[str, Any]) -> Plan:
    """Shard, limit, chunk, and find what an earlier run of the same label set already did."""
    out = Path(job.out)
    inputs = exclude_output(sorted(samples, key=lambda s: s.id), out)
    ids = [s.id for s in inputs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"two input images have the same id {dup!r}; ids must be unique")
    mine = [inputs[i] for i in select_shard(ids, job.shard)]
    if job.limit is not None:
        mine = mine[: job.limit]
    previous = _previous_rows(out, meta)
    existing_parts = {p.name for p in labelset.part_paths(out)}
    chunks = []
    for piece in chunked(mine, job.generate.chunk_size):
        done = {
            s.id: previous[s.id]
            for s in piece
            if s.id in previous and row_is_done(out, previous[s.id], job.generate.confidence)
        }
        name = labelset.part_name([s.id for s in piece])
        # nothing to do: every image done, and their rows are exactly this chunk's part
        complete = (
            len(done) == len(piece) and name in existing_parts and all(previous[s.id]["part"] == name for s in piece)
        )
        chunks.append(Chunk(samples=piece, finished_rows=done, complete=complete))
    return Plan(meta=meta, chunks=chunks, inputs=len(inputs), shard_size=len(mine))


def _previous_rows(out: Path, meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Rows of the same label set already in ``out`` (none when it holds another one or nothing)."""
    try:
        old = labelset.read_labelset(out)
    except LabelSetError:
        return {}
    if old["labelset_id"] != meta["labelset_id"]:
        return {}
    return labelset.rows_by_id(labelset.dedupe(labelset.read_all_rows(out)))


def remove_superseded_parts(out: Path, chunks: Sequence[Chunk]) -> None:
    """Delete parts left by an earlier run over another image list whose rows this run's parts now hold."""
    planned = {labelset.part_name([s.id for s in c.samples]) for c in chunks}
    covered = {s.id for c in chunks for s in c.samples}
    for path in labelset.part_paths(out):
        if path.name in planned:
            continue
        ids = set(labelset.read_part(path).column("id").to_pylist())
        if ids and ids <= covered:
            log.info("removing %s: its rows are now in this run's parts", path.name)
            path.unlink(missing_ok=True)


def remove_stale_temp_files(out: Path, chunks: Sequence[Chunk], label_ids: bool) -> int:
    """Delete temporary files a killed run left for this run's images and parts.

    Only paths this run owns are touched, so shard jobs running side by side never remove each other's
    writes in progress.
    """
    mine = [s for c in chunks for s in c.samples]
    owned = {out / label_relpath(s.id, label_ids) for s in mine}
    owned |= {confidence.store_path(out) / s.id for s in mine}
    owned |= {out / labelset.MANIFEST_DIR / labelset.part_name([s.id for s in c.samples]) for c in chunks}
    attention_prefixes = {(out / attention_relpath(s.id, "")).as_posix() for s in mine}
    removed = 0
    for path in sorted(out.rglob(".*")):
        target = temp_target(path)
        if target is None or not path.exists():
            continue
        if target in owned or any(target.as_posix().startswith(p) for p in attention_prefixes):
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            removed += 1
    if removed:
        log.info("removed %d temporary files left by an interrupted run", removed)
    return removed


# ---------------------------------------------------------------------------------------------------------
# the pipelined loop


def write_settings(job: GenerateJob, classes: ClassSet) -> WriteSettings:
    return WriteSettings(
        out=Path(job.out),
        num_classes=classes.num_classes,
        shard=str(job.shard),
        compress_level=job.generate.png_compress_level,
        confidence=job.generate.confidence,
        centroid_tile=job.generate.centroid_tile,
        ignore_index=classes.ignore_index,
        train_to_label=classes.train_to_label_lut() if job.generate.label_ids else None,
        exif_transpose=job.data.exif_transpose,
    )


def _decode(
    sample: Sample, max_pixels: int | None, exif_transpose: bool = True
) -> tuple[np.ndarray | DataError, float]:
    start = time.perf_counter()
    try:
        image: np.ndarray | DataError = read_image(sample.image, max_pixels=max_pixels, exif_transpose=exif_transpose)
    except DataError as exc:
        image = exc
    return image, time.perf_counter() - start


def _prefetch(
    pool: ThreadPoolExecutor, samples: Sequence[Sample], max_pixels: int | None, depth: int, exif_transpose: bool = True
) -> Iterator[tuple[Sample, np.ndarray | DataError, float]]:
    """Decode ahead of the consumer, at most ``depth`` images in flight."""
    queue: deque[tuple[Sample, Future]] = deque()
    items = iter(samples)
    for sample in items:
        queue.append((sample, pool.submit(_decode, sample, max_pixels, exif_transpose)))
        if len(queue) >= depth:
            break
    while queue:
        sample, future = queue.popleft()
        nxt = next(items, None)
        if nxt is not None:
            queue.append((nxt, pool.submit(_decode, nxt, max_pixels, exif_transpose)))
        image, seconds = future.result()
        yield sample, image, seconds


class ChunkTracker:
    """Collects each chunk's rows and writes its manifest part once every image in it is final."""

    def __init__(self, out: Path, chunks: Sequence[Chunk]):
        self.out = out
        self.rows: list[dict[str, dict[str, Any]]] = [dict(c.finished_rows) for c in chunks]
        self.sizes = [len(c.samples) for c in chunks]
        self.chunk_of = {s.id: i for i, c in enumerate(chunks) for s in c.samples}
        self.pending: deque[tuple[str, Future]] = deque()
        self.written: set[int] = set()

    def add_row(self, row: dict[str, Any]) -> None:
        self.rows[self.chunk_of[row["id"]]][row["id"]] = row

    def collect(self, block: bool = False, keep: int = 0) -> list[dict[str, Any]]:
        """Rows of finished writes (oldest first; waits while more than ``keep`` are pending if ``block``)."""
        finished = []
        while self.pending and (self.pending[0][1].done() or (block and len(self.pending) > keep)):
            _, future = self.pending.popleft()
            row = future.result()  # re-raises a write failure (disk full, permissions)
            self.add_row(row)
            finished.append(row)
        return finished

    def flush(self, shard: str) -> None:
        """Write the parts of chunks whose rows are all in."""
        for i, rows in enumerate(self.rows):
            if i not in self.written and len(rows) == self.sizes[i]:
                for row in rows.values():
                    row["shard"] = shard
                labelset.write_part(self.out, list(rows.values()))
                self.written.add(i)


def process_chunks(
    teacher: Teacher,
    chunks: Sequence[Chunk],
    settings: WriteSettings,
    *,
    max_pixels: int | None,
    fail_fast: bool = False,
    encode_workers: int = 2,
    decode_workers: int = 2,
    on_image: ProgressFn | None = None,
) -> list[dict[str, Any]]:
    """Label the chunks' remaining images with decode, inference and writing overlapped; returns new rows.

    Raises :class:`FailFastError` at the first unreadable image when ``fail_fast`` (after writing the parts of
    the chunks that were already complete).
    """
    todo = [s for c in chunks if not c.complete for s in c.todo]
    tracker = ChunkTracker(settings.out, [c for c in chunks if not c.complete])
    new_rows: list[dict[str, Any]] = []
    batch_size = teacher.settings.batch_size
    # enough writes in flight to keep the encoders busy, few enough to bound memory
    max_pending = max(2, 2 * max(1, encode_workers)) * batch_size

    def finished(rows: list[dict[str, Any]]) -> None:
        new_rows.extend(rows)
        if on_image is not None and rows:
            on_image(len(rows))

    with (
        ThreadPoolExecutor(max(1, decode_workers), thread_name_prefix="decode") as decoders,
        ThreadPoolExecutor(max(1, encode_workers), thread_name_prefix="encode") as encoders,
    ):
        batch: list[tuple[Sample, np.ndarray, float]] = []

        def run_batch() -> None:
            start = time.perf_counter()
            predicted = teacher.predict(np.stack([image for _, image, _ in batch]))  # (B, H, W, 3)
            share = (time.perf_counter() - start) / len(batch)
            for b, (sample, _, decode_s) in enumerate(batch):
                attention = {k: v[b] for k, v in predicted.attention.items()}
                future = encoders.submit(
                    _timed_finalise,
                    settings,
                    sample,
                    predicted.labels[b],
                    predicted.codes[b],
                    float(predicted.mean_confidence[b]),
                    attention,
                    decode_s + share,
                )
                tracker.pending.append((sample.id, future))
            batch.clear()

        depth = 2 * batch_size + decode_workers
        for sample, image, decode_s in _prefetch(decoders, todo, max_pixels, depth, settings.exif_transpose):
            if isinstance(image, DataError):
                log.warning("%s", image)
                row = error_row(sample, str(image), settings.shard, decode_s)
                tracker.add_row(row)
                finished([row])
                if fail_fast:
                    if batch:
                        run_batch()
                    finished(tracker.collect(block=True))
                    tracker.flush(settings.shard)
                    raise FailFastError(f"stopped at the first unreadable image (--fail-fast): {image}")
                continue
            if batch and (len(batch) == batch_size or batch[0][1].shape != image.shape):
                run_batch()
            batch.append((sample, image, decode_s))
            if len(batch) == batch_size:
                run_batch()
            finished(tracker.collect(block=True, keep=max_pending))
            tracker.flush(settings.shard)
        if batch:
            run_batch()
        finished(tracker.collect(block=True))
        tracker.flush(settings.shard)
    return new_rows


def _timed_finalise(
    settings: WriteSettings,
    sample: Sample,
    labels: np.ndarray,
    codes: np.ndarray,
    mean_confidence: float,
    attention: dict[str, np.ndarray],
    seconds: float,
) -> dict[str, Any]:
    start = time.perf_counter()
    row = finalise_image(settings, sample, labels, codes, mean_confidence, attention, 0.0)
    row["seconds"] = seconds + time.perf_counter() - start
    return row


# ---------------------------------------------------------------------------------------------------------
# the whole run


def prepare(
    job: GenerateJob, samples: Sequence[Sample], classes: ClassSet | None = None, teacher: Teacher | None = None
) -> tuple[Teacher, Plan]:
    """Load the teacher (failing before any work if it does not fit) and plan the run; writes nothing."""
    # the shard index picks the GPU when shards run side by side on one node (make -j N generate)
    teacher = teacher or Teacher.load(job.teacher, job.generate, job.data, classes, slot=job.shard.index)
    meta = labelset_meta(job, teacher, teacher.classes)
    return teacher, plan_run(job, samples, meta)


def start_output(job: GenerateJob, plan: Plan) -> None:
    """Create/check OUT: labelset.json (refusing another label set unless --overwrite), confidence root, and
    remove what a killed run left half-written for this run's images."""
    out = Path(job.out)
    labelset.prepare_output(out, plan.meta, job.overwrite)
    if job.generate.confidence:
        confidence.init_store(out, plan.meta["ladder"])
    remove_stale_temp_files(out, plan.chunks, job.generate.label_ids)


def run_generate(
    job: GenerateJob,
    samples: Sequence[Sample],
    classes: ClassSet | None = None,
    *,
    on_image: ProgressFn | None = None,
    teacher: Teacher | None = None,
) -> GenerateResult:
    """Label ``samples`` (this job's shard of them) into ``job.out`` in this process; resumable.

    ``classes`` defaults to the teacher's own class names. Returns counts; error rows are in the manifest.
    """
    start = time.perf_counter()
    teacher, plan = prepare(job, samples, classes, teacher)
    if on_image is not None and plan.done:
        on_image(plan.done)
    start_output(job, plan)
    result = GenerateResult(labelset_id=plan.meta["labelset_id"], planned=plan.shard_size, skipped=plan.done)
    try:
        rows = process_chunks(
            teacher,
            plan.chunks,
            write_settings(job, teacher.classes),
            max_pixels=job.data.max_image_pixels,
            fail_fast=job.fail_fast,
            encode_workers=job.generate.encode_workers,
            decode_workers=job.generate.decode_workers,
            on_image=on_image,
        )
    finally:
        result.seconds = time.perf_counter() - start
    remove_superseded_parts(Path(job.out), plan.chunks)
    result.ok = sum(r["status"] == "ok" for r in rows)
    result.errors = [(r["id"], r["error"]) for r in rows if r["status"] != "ok"]
    log.info(
        "labelled %d images (%d errors, %d already done) in %.1fs",
        result.ok,
        len(result.errors),
        result.skipped,
        result.seconds,
    )
    return result


def estimate_seconds_per_image(
    teacher: Teacher, samples: Sequence[Sample], max_pixels: int | None, count: int = 2
) -> float | None:
    """Time the teacher on a few readable images (nothing is written); None when none can be read."""
    times: list[float] = []
    for sample in samples:
        if len(times) >= count:
            break
        image, decode_s = _decode(sample, max_pixels)
        if isinstance(image, DataError):
            continue
        begin = time.perf_counter()
        teacher.predict(image[None])
        times.append(decode_s + time.perf_counter() - begin)
    return sum(times) / len(times) if times else None
