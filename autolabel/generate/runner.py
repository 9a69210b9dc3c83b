"""``autolabel generate`` as a Python API: plan, resume, and the pipelined in-process run.

One process overlaps three things: a pool of threads decodes the next images, the calling thread runs the
teacher batch by batch, and a pool of writer threads encodes and writes the previous batch's files. A chunk's
manifest part is written as soon as all of its images' files are final; before that, each finished image's
row is appended to the process's journal (:mod:`autolabel.labelset.journal`), so killing the job at any moment
loses at most the images in flight (about one batch), and a rerun redoes exactly those.

Around the labelling, a :class:`LabellingSession` holds the shard's lock, turns SIGTERM/SIGINT into "finish
the batch in flight, then stop", plans (an image is done when its label, every other output file and its
input's fingerprint check out), prepares OUT, and at the end moves the journals' rows into manifest parts.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from autolabel import labelset
from autolabel.classes import ClassSet
from autolabel.config import DataConfig, GenerateConfig, to_dict
from autolabel.data.datasets import Sample
from autolabel.data.io import read_image_upright
from autolabel.data.sources import Source, exclude_output
from autolabel.errors import AutolabelError, DataError, LabelSetError
from autolabel.fs import temp_target
from autolabel.generate.pools import pool_sizes
from autolabel.generate.sharding import Shard, chunked, select_shard
from autolabel.generate.teacher import Teacher
from autolabel.labelset import confidence, journal
from autolabel.labelset.checksums import check_input, entries_problems, file_sha256, input_fingerprint
from autolabel.labelset.files import (
    WriteSettings,
    attention_relpath,
    error_row,
    finalise_image,
    label_relpath,
    remove_image_outputs,
)
from autolabel.labelset.lock import WaitStopped, is_locked, shard_lock

log = logging.getLogger(__name__)

ProgressFn = Callable[[int], None]
NON_FINITE_MESSAGE = "teacher produced NaN/Inf logits for this image (its labels would be meaningless)"


class FailFastError(AutolabelError):
    """``--fail-fast``: the run stopped at the first unreadable image."""


class Stopped(Exception):  # noqa: N818 (not an error: a request)
    """Raised where waiting can be cut short (a Dask run waiting for its tasks) when a stop was requested."""


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
    recheck_inputs: bool = False  # hash every input again; relabel rows without a fingerprint (older manifests)
    wait: bool = False  # another job holds the shard's lock: wait for it instead of refusing
    tiling_plan: dict[str, Any] | None = None  # how the planner chose generate.tile_size (kept in labelset.json)


@dataclass
class Chunk:
    """A piece of the shard's image list: one task, one manifest part."""

    samples: list[Sample]
    # rows of images already labelled (resume); none kept for a complete chunk: nothing reads them, and the
    # rows of a large label set would otherwise stay in memory for the whole run
    finished_rows: dict[str, dict[str, Any]]  # image id -> its row
    complete: bool = False  # its part exists and everything in it checks out: nothing to do

    @property
    def todo(self) -> list[Sample]:
        return [] if self.complete else [s for s in self.samples if s.id not in self.finished_rows]

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.samples]


@dataclass
class Plan:
    """What a run will do."""

    meta: dict[str, Any]
    chunks: list[Chunk]
    inputs: int  # images given (after excluding OUT)
    shard_size: int  # images in this shard (after --limit)
    changed_inputs: int = 0  # images done before whose input changed since (relabelled)
    unknown_inputs: int = 0  # done rows without an input fingerprint (an older manifest): kept as they are

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
    stopped: int | None = None  # the signal (SIGTERM, SIGINT) that stopped the run early; None: it finished

    @property
    def finished_images(self) -> int:
        """Images this run labelled or recorded as errors."""
        return self.ok + len(self.errors)


# ---------------------------------------------------------------------------------------------------------
# stopping on a signal


class StopFlag:
    """Set by SIGTERM/SIGINT while a run is in progress: the run finishes the batch in flight and returns."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._interruptible = 0

    def is_set(self) -> bool:
        return self.signum is not None

    def request(self, signum: int) -> None:
        first = self.signum is None
        self.signum = signum
        if first:
            log.warning("%s: finishing the batch in flight, then stopping", signal.Signals(signum).name)
        if self._interruptible:
            raise Stopped(signum)

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """A block in which a stop request raises :class:`Stopped` at once (safe only around pure waiting)."""
        if self.is_set():
            raise Stopped(self.signum)
        self._interruptible += 1
        try:
            yield
        finally:
            self._interruptible -= 1


@contextmanager
def stop_on_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """SIGTERM and SIGINT set ``flag`` instead of killing the process (main thread only); a second signal of
    the same kind does what it would have done (a hard stop: the journal still holds every finished row)."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        if flag.signum == signum:  # the second time: give up waiting
            signal.signal(signum, previous.get(signum, signal.SIG_DFL))
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            os.kill(os.getpid(), signum)
            return
        flag.request(signum)

    for caught in (signal.SIGTERM, signal.SIGINT):
        previous[caught] = signal.signal(caught, handler)
    try:
        yield flag
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


# ---------------------------------------------------------------------------------------------------------
# planning


def labelset_meta(job: GenerateJob, teacher: Teacher, classes: ClassSet) -> dict[str, Any]:
    limits = teacher.thresholds
    calibration = limits.calibration
    return labelset.make_labelset_meta(
        teacher_sha256=teacher.loaded.sha256,
        model_config=to_dict(teacher.loaded.model_cfg),
        scales=job.generate.scales,
        flip=job.generate.flip,
        threshold=limits.global_threshold,
        class_thresholds=limits.per_class,
        threshold_source=limits.source,
        temperature=limits.temperature,
        calibration=calibration.summary(applied=True) if calibration is not None else None,
        calibration_file=str(calibration.path.resolve()) if calibration is not None else None,
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


def outputs_intact(out: Path, row: dict[str, Any], need_codes: bool) -> bool:
    """An ok row whose label file has the recorded sha256 and whose other output files (confidence array,
    attention maps) all have theirs; rows from before ``output_files`` existed: the array is complete."""
    if row["status"] != "ok" or not row["label"]:
        return False
    if file_sha256(out / row["label"]) != row["label_sha256"]:
        return False
    if row.get("output_files") is not None:
        if entries_problems(out, row["output_files"]):
            return False
        listed = {e["path"] for e in row["output_files"]}
        if need_codes and f"{confidence.array_relpath(row['id'])}/zarr.json" not in listed:
            return False  # written with --no-confidence, wanted now
        return True
    return not need_codes or confidence.codes_problem(out, row["id"]) is None


def done_row(
    out: Path, row: dict[str, Any], sample: Sample, need_codes: bool, recheck: bool = False
) -> tuple[dict[str, Any] | None, str]:
    """The row to keep for an image labelled before, or None when it must be labelled again; and why.

    Done means: outputs intact (:func:`outputs_intact`) and the input is the file that was labelled (same
    size and mtime, or, when they changed, the same bytes: the row is then returned with the new
    fingerprint). A row without a fingerprint is kept as it is ("unknown") unless ``recheck``, which also
    hashes every input whatever its size and mtime.
    """
    if sample.problem is not None or not outputs_intact(out, row, need_codes):
        return None, "outputs"
    check = check_input(row, Path(sample.image), rehash=recheck)
    if check.state == "unknown":
        return (None, "unknown") if recheck else (row, "unknown")
    if check.state in ("changed", "missing"):
        log.info("%s: relabelling, %s", sample.id, check.reason)
        return None, "changed"
    if check.state == "touched" or str(sample.image) != row["image"]:
        return {**row, **(check.fingerprint or {}), "image": str(sample.image)}, "touched"
    return row, "same"


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
    changed = unknown = 0
    for piece in chunked(mine, job.generate.chunk_size):
        done: dict[str, dict[str, Any]] = {}
        refreshed = False
        for sample in piece:
            if sample.id not in previous:
                continue
            row, why = done_row(out, previous[sample.id], sample, job.generate.confidence, job.recheck_inputs)
            changed += why == "changed"
            unknown += why == "unknown" and row is not None
            if row is not None:
                done[sample.id] = row
                refreshed |= why == "touched"
        name = labelset.part_name([s.id for s in piece])
        # nothing to do: every image done, and their rows are exactly this chunk's part
        complete = (
            not refreshed
            and len(done) == len(piece)
            and name in existing_parts
            and all(previous[s.id]["part"] == name for s in piece)
        )
        chunks.append(Chunk(samples=piece, finished_rows={} if complete else done, complete=complete))
    if changed:
        log.warning("%d images changed since they were labelled; they are labelled again", changed)
    if unknown:
        log.warning(
            "%d rows have no input fingerprint (an older manifest): whether their inputs changed is unknown; "
            "--recheck-inputs labels them again",
            unknown,
        )
    return Plan(
        meta=meta,
        chunks=chunks,
        inputs=len(inputs),
        shard_size=len(mine),
        changed_inputs=changed,
        unknown_inputs=unknown,
    )


def _previous_rows(out: Path, meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Rows of the same label set already in ``out`` (none when it holds another one or nothing): the parts',
    and newer ones from journals of interrupted runs (``part`` is "" for those)."""
    try:
        old = labelset.read_labelset(out)
    except LabelSetError:
        return {}
    if old["labelset_id"] != meta["labelset_id"]:
        return {}
    rows = labelset.rows_by_id(labelset.dedupe(labelset.read_all_rows(out)))
    for image_id, row in journal.journal_rows(journal.journal_paths(out)).items():
        if row["status"] == "ok" or rows.get(image_id, {}).get("status") != "ok":
            rows[image_id] = {**row, "part": ""}
    return rows


def remove_superseded_parts(out: Path, chunks: Sequence[Chunk]) -> None:
    """Delete parts whose rows the parts of this run's chunks now hold (a partial part absorbed from a
    journal, or a part of an earlier run over another image list). Only chunks whose part exists count."""
    existing = {p.name for p in labelset.part_paths(out)}
    planned = {labelset.part_name(c.ids) for c in chunks}
    covered = {i for c in chunks if labelset.part_name(c.ids) in existing for i in c.ids}
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
    writes in progress (and the shard's lock keeps a second job of the same shard out).
    """
    mine = [s for c in chunks for s in c.samples if s.problem is None]
    owned = {out / label_relpath(s.id, label_ids) for s in mine}
    owned |= {confidence.store_path(out) / s.id for s in mine}
    owned |= {out / labelset.MANIFEST_DIR / labelset.part_name(c.ids) for c in chunks}
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


@dataclass
class Decoded:
    """An input as the decode threads hand it on: pixels (or why not), time taken, fingerprint."""

    image: np.ndarray | DataError
    seconds: float
    fingerprint: dict[str, Any] | None = None
    transposed: bool = False  # turned upright by its EXIF orientation (the row's exif_transposed)


def _decode(sample: Sample, max_pixels: int | None, exif_transpose: bool = True) -> Decoded:
    start = time.perf_counter()
    # stat, hash, then decode: should the file change meanwhile, its recorded mtime or hash is the old one,
    # so the next run sees a changed input and labels it again (never a new file under an old label)
    fingerprint = input_fingerprint(Path(sample.image))
    try:
        image, turned = read_image_upright(sample.image, max_pixels=max_pixels, exif_transpose=exif_transpose)
    except DataError as exc:
        return Decoded(exc, time.perf_counter() - start)
    return Decoded(image, time.perf_counter() - start, fingerprint if fingerprint["input_sha256"] else None, turned)


def _prefetch(
    pool: ThreadPoolExecutor,
    samples: Sequence[Sample],
    max_pixels: int | None,
    depth: int,
    exif_transpose: bool = True,
) -> Iterator[tuple[Sample, Decoded]]:
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
        yield sample, future.result()


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
    encode_workers: int | None = None,
    decode_workers: int | None = None,
    on_image: ProgressFn | None = None,
    stop: StopFlag | None = None,
) -> list[dict[str, Any]]:
    """Label the chunks' remaining images with decode, inference and writing overlapped; returns new rows.

    Every batch is padded to the full batch size, so an image's results are the same whichever images share
    its batch (in process or one task per chunk on Dask, resumed or not). Every finished row goes to this
    process's journal at once. When ``stop`` is set (a signal), the batch in flight is finished and written,
    and the function returns early. Raises :class:`FailFastError` at the first unreadable image when
    ``fail_fast`` (after writing the parts of the chunks that were already complete). A pool size of None is
    chosen from the cores this process may use (:func:`~autolabel.generate.pools.pool_sizes`).
    """
    pools = pool_sizes(teacher.device.type, decode_workers, encode_workers)
    log.debug("%d decode and %d encode threads (%d usable cores)", pools.decode, pools.encode, pools.cores)
    active = [c for c in chunks if not c.complete]
    tracker = ChunkTracker(settings.out, active)
    rows_journal = journal.Journal(journal.journal_path(settings.out, settings.shard))
    try:
        return _label(
            teacher,
            active,
            tracker,
            rows_journal,
            settings,
            max_pixels=max_pixels,
            fail_fast=fail_fast,
            encode_workers=pools.encode,
            decode_workers=pools.decode,
            on_image=on_image,
            stop=stop,
        )
    finally:
        rows_journal.close()


def _label(
    teacher: Teacher,
    chunks: Sequence[Chunk],
    tracker: ChunkTracker,
    rows_journal: journal.Journal,
    settings: WriteSettings,
    *,
    max_pixels: int | None,
    fail_fast: bool,
    encode_workers: int,
    decode_workers: int,
    on_image: ProgressFn | None,
    stop: StopFlag | None,
) -> list[dict[str, Any]]:
    new_rows: list[dict[str, Any]] = []
    batch_size = teacher.settings.batch_size
    # enough writes in flight to keep the encoders busy, few enough to bound memory
    max_pending = max(2, 2 * max(1, encode_workers)) * batch_size
    label_ids = settings.train_to_label is not None

    def finished(rows: list[dict[str, Any]]) -> None:
        new_rows.extend(rows)
        if on_image is not None and rows:
            on_image(len(rows))

    def failed(sample: Sample, message: str, seconds: float) -> None:
        row = error_row(sample, message, settings.shard, seconds)
        if sample.problem is None:  # files named after a bad id were never written, and are never touched
            remove_image_outputs(settings.out, sample.id, label_ids)
        rows_journal.append(row)
        tracker.add_row(row)
        finished([row])

    todo = []
    for sample in (s for c in chunks for s in c.todo):
        if sample.problem is not None:  # logged when the inputs were listed
            failed(sample, sample.problem, 0.0)
        else:
            todo.append(sample)

    with (
        ThreadPoolExecutor(max(1, decode_workers), thread_name_prefix="decode") as decoders,
        ThreadPoolExecutor(max(1, encode_workers), thread_name_prefix="encode") as encoders,
    ):
        batch: list[tuple[Sample, np.ndarray, Decoded]] = []

        def run_batch() -> None:
            start = time.perf_counter()
            images = [image for _, image, _ in batch]
            # always a full batch (the last image repeated): the kernels a device picks, and so the last bits of
            # every probability, depend on the batch size; this way an image's results do not depend on which
            # images share its batch (chunk ends, resumed runs, Dask tasks)
            images += [images[-1]] * (batch_size - len(images))
            predicted = teacher.predict(np.stack(images))  # (B, H, W, 3)
            share = (time.perf_counter() - start) / len(batch)
            for b, (sample, _, decoded) in enumerate(batch):
                if not predicted.finite[b]:
                    log.warning("%s: %s", sample.id, NON_FINITE_MESSAGE)
                    failed(sample, NON_FINITE_MESSAGE, decoded.seconds + share)
                    continue
                attention = {k: v[b] for k, v in predicted.attention.items()}
                future = encoders.submit(
                    _timed_finalise,
                    settings,
                    sample,
                    predicted.labels[b],
                    predicted.codes[b],
                    float(predicted.mean_confidence[b]),
                    attention,
                    decoded.seconds + share,
                    decoded,
                    rows_journal,
                    {k: float(v[b]) for k, v in predicted.signals.items()},
                    predicted.classes[b] if predicted.classes is not None else None,
                    predicted.histogram[b] if predicted.histogram is not None else None,
                )
                tracker.pending.append((sample.id, future))
            batch.clear()
            rows_journal.sync()  # the rows appended since the last batch (one fsync per batch)

        depth = 2 * batch_size + decode_workers
        for sample, decoded in _prefetch(decoders, todo, max_pixels, depth, settings.exif_transpose):
            if stop is not None and stop.is_set():
                break  # what is decoded but not predicted yet is dropped: a rerun does it
            image = decoded.image
            if isinstance(image, DataError):
                log.warning("%s", image)
                failed(sample, str(image), decoded.seconds)
                if fail_fast:
                    if batch:
                        run_batch()
                    finished(tracker.collect(block=True))
                    tracker.flush(settings.shard)
                    raise FailFastError(f"stopped at the first unreadable image (--fail-fast): {image}")
                continue
            if batch and (len(batch) == batch_size or batch[0][1].shape != image.shape):
                run_batch()
            batch.append((sample, image, decoded))
            if len(batch) == batch_size:
                run_batch()
            finished(tracker.collect(block=True, keep=max_pending))
            tracker.flush(settings.shard)
        if batch and not (stop is not None and stop.is_set()):
            run_batch()
        batch.clear()
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
    decoded: Decoded,
    rows_journal: journal.Journal | None,
    signals: dict[str, float] | None = None,
    classes: np.ndarray | None = None,
    histogram: np.ndarray | None = None,
) -> dict[str, Any]:
    start = time.perf_counter()
    row = finalise_image(
        settings,
        sample,
        labels,
        codes,
        mean_confidence,
        attention,
        0.0,
        decoded.fingerprint,
        exif_transposed=decoded.transposed,
        signals=signals,
        classes=classes,
        histogram=confidence.encode_histogram(histogram) if histogram is not None and settings.confidence else None,
    )
    row["seconds"] = seconds + time.perf_counter() - start
    if rows_journal is not None:
        rows_journal.append(row)  # the moment the image's files are final: a kill from now on loses nothing
    return row


# ---------------------------------------------------------------------------------------------------------
# the whole run


def load_teacher(job: GenerateJob, classes: ClassSet | None = None, device: str | None = None) -> Teacher:
    """The job's teacher, checked (class names, finite weights) before anything is written.

    The shard index picks the GPU when shards run side by side on one node (``make -j N generate``).
    """
    return Teacher.load(job.teacher, job.generate, job.data, classes, device=device, slot=job.shard.index)


def prepare(
    job: GenerateJob, samples: Sequence[Sample], classes: ClassSet | None = None, teacher: Teacher | None = None
) -> tuple[Teacher, Plan]:
    """Load the teacher (failing before any work if it does not fit) and plan the run; writes nothing."""
    teacher = teacher or load_teacher(job, classes)
    meta = labelset_meta(job, teacher, teacher.classes)
    return teacher, plan_run(job, samples, meta)


def start_output(job: GenerateJob, plan: Plan) -> None:
    """Create/check OUT: labelset.json (refusing another label set unless --overwrite), confidence root; move
    the rows of dead runs' journals into parts; remove what a killed run left half-written for this run's
    images. Call with the shard's lock held."""
    out = Path(job.out)
    labelset.prepare_output(out, plan.meta, job.overwrite)
    if job.generate.confidence:
        confidence.init_store(out, plan.meta["ladder"])
    mine = str(job.shard)
    dead = [
        p
        for p in journal.journal_paths(out)
        if journal.journal_shard(p) == mine or not is_locked(out, journal.journal_shard(p) or mine)
    ]
    journal.absorb(out, dead, [c.ids for c in plan.chunks])
    remove_stale_temp_files(out, plan.chunks, job.generate.label_ids)


def finish_output(job: GenerateJob, plan: Plan) -> dict[str, journal.Entry]:
    """After a run (finished, stopped or failed): move the rows of this shard's journals (this process's
    and its workers') into parts, and drop parts the run's chunk parts supersede. Returns what the journals
    held: the images this run finished, by id."""
    out = Path(job.out)
    entries = journal.absorb(out, journal.journal_paths(out, str(job.shard)), [c.ids for c in plan.chunks])
    remove_superseded_parts(out, plan.chunks)
    return entries


class LabellingSession:
    """What every ``generate`` run does around the labelling, in process or on Dask::

        with LabellingSession(job, samples, meta) as session:   # lock, signals, plan, prepare OUT
            ... label session.plan's chunks, checking session.stop ...
        # journals absorbed; a Stopped raised inside is swallowed: session.stopped says so

    ``stop`` may be given when the signals are already caught (the caller's :func:`stop_on_signals`).
    """

    def __init__(self, job: GenerateJob, samples: Sequence[Sample], meta: dict[str, Any], stop: StopFlag | None = None):
        self.job = job
        self.samples = samples
        self.meta = meta
        self.stop = stop or StopFlag()
        self._own_signals = stop is None
        self.plan: Plan | None = None
        self.finished: dict[str, journal.Entry] = {}  # what the run finished (its journals), once exited
        self._stack = ExitStack()

    @property
    def stopped(self) -> int | None:
        return self.stop.signum

    def __enter__(self) -> LabellingSession:
        try:
            if self._own_signals:
                self._stack.enter_context(stop_on_signals(self.stop))
            self._stack.enter_context(
                shard_lock(Path(self.job.out), str(self.job.shard), wait=self.job.wait, should_stop=self.stop.is_set)
            )
            self.plan = plan_run(self.job, self.samples, self.meta)
            start_output(self.job, self.plan)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        try:
            if self.plan is not None:
                self.finished = finish_output(self.job, self.plan)
        except AutolabelError as failure:
            if exc is None:
                raise
            log.error("could not move the journal into the manifest (a rerun will): %s", failure)
        finally:
            self._stack.close()
        return exc_type is Stopped


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
    SIGTERM/SIGINT (main thread) finish the batch in flight and return with ``stopped`` set.
    """
    start = time.perf_counter()
    stop = StopFlag()
    with stop_on_signals(stop):
        teacher = teacher or load_teacher(job, classes)
        meta = labelset_meta(job, teacher, teacher.classes)
        rows: list[dict[str, Any]] = []
        result = GenerateResult(labelset_id=meta["labelset_id"], planned=0, skipped=0)
        try:
            with LabellingSession(job, samples, meta, stop=stop) as session:
                assert session.plan is not None
                plan = session.plan
                if on_image is not None and plan.done:
                    on_image(plan.done)
                result.planned, result.skipped = plan.shard_size, plan.done
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
                        stop=stop,
                    )
                finally:
                    result.seconds = time.perf_counter() - start
        except WaitStopped:
            log.warning("stopped while waiting for the shard's lock; nothing was labelled")
    result.ok = sum(r["status"] == "ok" for r in rows)
    result.errors = [(r["id"], r["error"]) for r in rows if r["status"] != "ok"]
    result.stopped = stop.signum
    log.info(
        "labelled %d images (%d errors, %d already done) in %.1fs%s",
        result.ok,
        len(result.errors),
        result.skipped,
        result.seconds,
        " (stopped early)" if result.stopped else "",
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
        if sample.problem is not None:
            continue
        decoded = _decode(sample, max_pixels)
        if isinstance(decoded.image, DataError):
            continue
        begin = time.perf_counter()
        teacher.predict(decoded.image[None])
        times.append(decoded.seconds + time.perf_counter() - begin)
    return sum(times) / len(times) if times else None
