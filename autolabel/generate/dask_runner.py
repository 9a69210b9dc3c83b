"""``generate`` on a Dask cluster: one task per chunk, one teacher per worker (loaded once by a plugin).

Tasks are idempotent (every file and manifest part is written atomically and named by its content), so the
scheduler may rerun a chunk whose worker died without producing duplicates.

One GPU per worker: a worker labels on the first GPU its ``CUDA_VISIBLE_DEVICES`` names (dask-cuda's
``LocalCUDACluster`` and ``dask cuda worker`` set it so; the local cluster started here does the same), and
refuses to guess when it sees several GPUs and no such variable. Workers that declare a ``GPU`` resource
(``dask worker --resources GPU=1``) get one task at a time each, whatever their thread count. The coordinator
(this process) checks the checkpoint on the CPU only: it never computes, and may run where there is no GPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dask
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
GPU_RESOURCE = "GPU"  # the resource name of `dask worker --resources GPU=1` and of our local GPU workers
SCRATCH_PREFIX = ".dask-scratch-"  # in OUT: a local cluster's workers' folder (removed when the run ends)


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
        if self.torch_threads is not None:  # workers of a local cluster share this machine's cores
            torch.set_num_threads(self.torch_threads)
        # the worker's own environment picks its GPU (CUDA_VISIBLE_DEVICES); a ConfigError here reaches the
        # coordinator through register_plugin and stops the run before any task
        self.teacher = Teacher.load(self.checkpoint, self.settings, self.data, self.classes, own_gpu_required=True)
        keep_freed_memory(self.teacher.device)  # a CPU worker elsewhere did not inherit it from the CLI
        log.info(
            "worker %s: teacher on %s (%s, CUDA_VISIBLE_DEVICES=%s)",
            worker.name,
            self.teacher.device,
            self.teacher.precision_name,
            os.environ.get("CUDA_VISIBLE_DEVICES"),
        )

    def teardown(self, worker: Any) -> None:
        self.teacher = None


def worker_teacher() -> Teacher:
    plugin = get_worker().plugins[PLUGIN_NAME]
    if not isinstance(plugin, TeacherPlugin) or plugin.teacher is None:  # setup failed earlier on this worker
        raise RuntimeError("the teacher is not loaded on this worker")
    return plugin.teacher


def label_chunk_task(
    chunk: Chunk,
    settings: WriteSettings,
    max_pixels: int | None,
    fail_fast: bool,
    encode_workers: int | None,
    decode_workers: int | None,
) -> list[dict[str, Any]]:
    """A Dask task: label one chunk on this worker's teacher and write its manifest part (pools of None
    threads are sized from the worker's own cores)."""
    return process_chunks(
        worker_teacher(),
        [chunk],
        settings,
        max_pixels=max_pixels,
        fail_fast=fail_fast,
        encode_workers=encode_workers,
        decode_workers=decode_workers,
    )


def visible_gpus(env: Mapping[str, str], count: int) -> list[str]:
    """The ids to give workers in ``CUDA_VISIBLE_DEVICES``: those this process sees (its own variable's entries,
    which may be UUIDs, else ``0 .. count-1``)."""
    listed = [d.strip() for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


class GPUCluster(LocalCluster):
    """A local cluster whose worker ``i`` sees only GPU ``i mod len(gpus)`` (as dask-cuda's LocalCUDACluster).

    Each worker gets ``CUDA_VISIBLE_DEVICES`` set to its GPU and a ``GPU=1`` resource; a worker the nanny
    restarts keeps both.
    """

    def __init__(self, *, gpus: Sequence[str], n_workers: int, **kwargs: Any):
        self.gpus = list(gpus)
        super().__init__(n_workers=0, **kwargs)
        self.scale(n_workers)

    def new_worker_spec(self) -> dict[Any, dict[str, Any]]:
        spec = super().new_worker_spec()
        ((name, worker),) = spec.items()
        options = dict(worker["options"])
        options["env"] = {**options.get("env", {}), "CUDA_VISIBLE_DEVICES": self.gpus[int(name) % len(self.gpus)]}
        options["resources"] = {**options.get("resources", {}), GPU_RESOURCE: 1}
        return {name: {**worker, "options": options}}


def scratch_directory(out: Path) -> Path | None:
    """A new folder for a local cluster's workers: ``OUT/.dask-scratch-XXXX`` (one per run, so shard jobs
    side by side in one OUT never remove each other's; the caller removes it), or None where the user named
    a temporary directory in Dask's config (``DASK_TEMPORARY_DIRECTORY``, ``temporary-directory``) -- never a
    ``dask-scratch-space`` shared by every user of ``/tmp``."""
    if dask.config.get("temporary-directory", None):
        return None
    return Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=out))


def local_cluster(workers: int, device: str, scratch: Path | None = None) -> LocalCluster:
    """Worker processes on this machine, one task at a time each.

    With CUDA (``device`` ``cuda``, or ``auto`` on a machine with GPUs) ``workers`` 0 means one per visible
    GPU, and worker ``i`` sees only GPU ``i mod GPUs``; on the CPU 0 means one worker.
    """
    gpus = visible_gpus(os.environ, torch.cuda.device_count()) if device != "cpu" else []
    options: dict[str, Any] = dict(
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        # no dashboard, but the scheduler serves its HTTP routes anyway, by default on 8787: a free port
        # instead of a warning whenever another cluster has it
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        silence_logs=logging.WARNING,
        local_directory=str(scratch) if scratch is not None else None,
    )
    if gpus:
        return GPUCluster(gpus=gpus, n_workers=workers if workers > 0 else len(gpus), **options)
    return LocalCluster(n_workers=max(1, workers), **options)


@contextlib.contextmanager
def quiet_dask() -> Iterator[None]:
    """Dask's own INFO lines and the tracebacks of connections closed at shutdown, only with ``-v``.

    ``distributed`` configures its loggers itself (INFO, its own handler), ignoring the root logger's level;
    unless the root logger asks for INFO or more, they are lowered to ERROR for the run and restored after, and
    Dask's warnings are not shown.
    """
    if logging.getLogger().getEffectiveLevel() <= logging.INFO:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("distributed", "tornado", "asyncio")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"distributed\.")  # e.g. "Port 8787 is already in use"
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def check_on_coordinator(job: GenerateJob, classes: ClassSet | None) -> tuple[ClassSet, dict[str, Any]]:
    """Check the checkpoint on the CPU only (whatever ``generate.device`` says); its classes and the label set's
    ``labelset.json``. Writes nothing.

    The workers load their own teacher on their own device; a teacher on a GPU here would hold memory for the
    whole run on a GPU a worker may need, and fail on a login node without one.
    """
    teacher = load_teacher(job, classes, device="cpu")
    return teacher.classes, labelset_meta(job, teacher, teacher.classes)


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
        classes, meta = check_on_coordinator(job, classes)
        with LabellingSession(job, samples, meta, stop=stop) as session:
            assert session.plan is not None
            plan = session.plan
            if on_image is not None and plan.done:
                on_image(plan.done)
            todo = [c for c in plan.chunks if not c.complete]
            _run_on_cluster(job, classes, todo, workers, scheduler, on_image, stop)
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


def _run_on_cluster(
    job: GenerateJob,
    classes: ClassSet,
    chunks: Sequence[Chunk],
    workers: int,
    scheduler: str | None,
    on_image: ProgressFn | None,
    stop: StopFlag,
) -> None:
    """Run the chunks on the cluster at ``scheduler``, or on a local one started (and stopped) here."""
    scratch = None if scheduler else scratch_directory(job.out)
    with quiet_dask():
        cluster = None if scheduler else local_cluster(workers, job.generate.device, scratch)
        try:
            with Client(scheduler or cluster) as client:
                if cluster is not None:  # the split of cores and the GPU resources are known once all are up
                    client.wait_for_workers(len(cluster.worker_spec))
                _run_tasks(client, job, classes, chunks, on_image, local=cluster is not None, stop=stop)
        finally:
            if cluster is not None:
                cluster.close()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)


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

    Where workers declare a ``GPU`` resource every task asks for one, so such a worker runs one at a time
    (a second forward on the same GPU would only share it, at twice the memory).
    """
    if not chunks:
        return
    info = client.scheduler_info(n_workers=-1)["workers"]
    threads = None
    if local:
        threads = max(1, (os.cpu_count() or 1) // max(1, len(info)))
    gpu_workers = any(GPU_RESOURCE in (w.get("resources") or {}) for w in info.values())
    resources = {GPU_RESOURCE: 1} if gpu_workers else None
    client.register_plugin(TeacherPlugin(job.teacher, classes, job.generate, job.data, threads))
    settings = write_settings(job, classes)
    futures = {
        client.submit(
            label_chunk_task,
            chunk,
            settings,
            job.data.max_image_pixels,
            job.fail_fast,
            job.generate.encode_workers,
            job.generate.decode_workers,
            retries=TASK_RETRIES,
            pure=False,
            resources=resources,
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
