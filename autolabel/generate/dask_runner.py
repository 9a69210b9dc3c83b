"""``generate`` on a Dask cluster: one task per chunk, one teacher per worker (loaded once by a plugin).

Tasks are idempotent (every file and manifest part is written atomically and named by its content), so the
scheduler may rerun a chunk whose worker died without producing duplicates.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker

from autolabel.classes import ClassSet
from autolabel.config import DataConfig, GenerateConfig
from autolabel.data.datasets import Sample
from autolabel.generate.runner import (
    Chunk,
    GenerateJob,
    GenerateResult,
    LabellingSession,
    ProgressFn,
    StopFlag,
    labelset_meta,
    load_teacher,
    process_chunks,
    remove_stale_temp_files,
    stop_on_signals,
    write_settings,
)
from autolabel.generate.teacher import Teacher
from autolabel.labelset.files import WriteSettings
from autolabel.models.device import keep_freed_memory

log = logging.getLogger(__name__)

PLUGIN_NAME = "autolabel-teacher"
TASK_RETRIES = 2


def worker_device(device: str, worker_name: Any) -> str:
    """The device a worker uses: with CUDA, worker ``k`` gets GPU ``k mod count`` (one worker per GPU)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cuda":
        return device
    count = max(1, torch.cuda.device_count())
    index = worker_name if isinstance(worker_name, int) else zlib.crc32(str(worker_name).encode())
    return f"cuda:{index % count}"


class TeacherPlugin(WorkerPlugin):
    """Loads the teacher once per worker; tasks fetch it with :func:`worker_teacher`."""

    name = PLUGIN_NAME

    def __init__(
        self,
        checkpoint: Path,
        classes: ClassSet | None,
        settings: GenerateConfig,
        data: DataConfig,
        torch_threads: int | None = None,
    ):
        self.checkpoint = Path(checkpoint)
        self.classes = classes
        self.settings = settings
        self.data = data
        self.torch_threads = torch_threads
        self.teacher: Teacher | None = None

    def setup(self, worker: Any) -> None:
        keep_freed_memory()  # a remote worker did not inherit it from the CLI's environment
        if self.torch_threads is not None:  # workers of a local cluster share this machine's cores
            torch.set_num_threads(self.torch_threads)
        device = worker_device(self.settings.device, worker.name)
        self.teacher = Teacher.load(self.checkpoint, self.settings, self.data, self.classes, device=device)
        log.info("worker %s: teacher loaded on %s", worker.name, device)

    def teardown(self, worker: Any) -> None:
        self.teacher = None


def worker_teacher() -> Teacher:
    plugin = get_worker().plugins[PLUGIN_NAME]
    if plugin.teacher is None:  # setup failed earlier on this worker
        raise RuntimeError("the teacher is not loaded on this worker")
    return plugin.teacher


def label_chunk_task(
    chunk: Chunk,
    settings: WriteSettings,
    max_pixels: int | None,
    fail_fast: bool,
    encode_workers: int,
    decode_workers: int,
) -> list[dict[str, Any]]:
    """A Dask task: label one chunk on this worker's teacher and write its manifest part."""
    return process_chunks(
        worker_teacher(),
        [chunk],
        settings,
        max_pixels=max_pixels,
        fail_fast=fail_fast,
        encode_workers=encode_workers,
        decode_workers=decode_workers,
    )


def local_cluster(workers: int, device: str) -> LocalCluster:
    """Worker processes on this machine (one per GPU on a GPU host when ``workers`` is 0)."""
    if workers <= 0:
        workers = torch.cuda.device_count() if worker_device(device, 0).startswith("cuda") else 1
    return LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.WARNING
    )


def run_generate_dask(
    job: GenerateJob,
    samples: Sequence[Sample],
    classes: ClassSet | None = None,
    *,
    workers: int = 0,
    scheduler: str | None = None,
    on_image: ProgressFn | None = None,
) -> GenerateResult:
    """Like :func:`~autolabel.generate.runner.run_generate`, with chunks spread over a Dask cluster.

    ``scheduler`` is the address of an existing cluster; otherwise a local cluster of ``workers`` processes
    is started and stopped. The coordinator plans the run and checks the checkpoint before any task starts.
    """
    start = time.perf_counter()
    stop = StopFlag()
    with stop_on_signals(stop):
        teacher = load_teacher(job, classes)
        classes = teacher.classes
        meta = labelset_meta(job, teacher, classes)
        del teacher  # the coordinator only checks the checkpoint; the workers load their own
        with LabellingSession(job, samples, meta, stop=stop) as session:
            assert session.plan is not None
            plan = session.plan
            if on_image is not None and plan.done:
                on_image(plan.done)
            todo = [c for c in plan.chunks if not c.complete]
            cluster = None if scheduler else local_cluster(workers, job.generate.device)
            try:
                with Client(scheduler or cluster) as client:
                    _run_tasks(client, job, classes, todo, on_image, local=cluster is not None, stop=stop)
            finally:
                if cluster is not None:
                    cluster.close()
            # a worker that died mid-write left its temporary files; its chunk was redone elsewhere: junk
            remove_stale_temp_files(Path(job.out), plan.chunks, job.generate.label_ids)
    result = GenerateResult(labelset_id=meta["labelset_id"], planned=plan.shard_size, skipped=plan.done)
    # what the run finished: every row went to a worker's journal (also those of chunks a stop cut short)
    finished = session.finished
    result.ok = sum(e.status == "ok" for e in finished.values())
    result.errors = [(i, e.error or "") for i, e in sorted(finished.items()) if e.status != "ok"]
    result.stopped = stop.signum
    result.seconds = time.perf_counter() - start
    return result


def _run_tasks(
    client: Client,
    job: GenerateJob,
    classes: ClassSet,
    chunks: Sequence[Chunk],
    on_image: ProgressFn | None,
    local: bool,
    stop: StopFlag,
) -> None:
    """Submit one task per chunk and wait for them; a local cluster's workers split the cores.

    The rows stay on disk (each task writes its part, and every row to its worker's journal), so the
    coordinator keeps none in memory. A stop request (SIGTERM/SIGINT) cancels what is not finished: the
    workers' journals keep the images they finished, and the coordinator moves those into the manifest.
    """
    if not chunks:
        return
    threads = None
    if local:
        nworkers = max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
        threads = max(1, (os.cpu_count() or 1) // nworkers)
    client.register_plugin(TeacherPlugin(job.teacher, classes, job.generate, job.data, threads))
    settings = write_settings(job, classes)
    g = job.generate
    futures = {
        client.submit(
            label_chunk_task,
            chunk,
            settings,
            job.data.max_image_pixels,
            job.fail_fast,
            g.encode_workers,
            g.decode_workers,
            retries=TASK_RETRIES,
            pure=False,
        ): chunk
        for chunk in chunks
    }
    try:
        with stop.interruptible():  # only waiting happens in here: a signal may cut it short at any point
            for future in as_completed(futures):
                chunk = futures.pop(future)
                future.result()  # re-raises FailFastError / write failures from the worker
                future.release()  # else the worker keeps every chunk's rows in memory until the run ends
                if on_image is not None:
                    on_image(len(chunk.todo))
    finally:
        client.cancel(list(futures))
