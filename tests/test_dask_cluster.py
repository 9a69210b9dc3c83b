"""``generate`` on a real Dask cluster: ``dask scheduler`` and two ``dask worker`` processes on localhost.

Each worker has two threads and declares ``--resources GPU=1`` (as on a GPU node), the coordinator is
``autolabel generate --scheduler`` in its own process, and the label set must be byte for byte the one an
in-process run writes, also when a worker is killed mid-run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from distributed import Client

from autolabel import labelset
from autolabel.classes import CITYSCAPES
from autolabel.cli import main
from autolabel.config import GenerateConfig, ModelConfig
from autolabel.generate import dask_runner
from autolabel.generate.runner import GenerateJob
from autolabel.generate.teacher import Teacher
from autolabel.labelset import TIMING_COLUMNS, read_manifest
from autolabel.labelset.lock import LOCKS_DIR
from autolabel.models import build_model
from autolabel.models.checkpoint import save_checkpoint

N_IMAGES = 12
SETTINGS = ["--device", "cpu", "--threshold", "0.1", "--set", "generate.chunk_size=1"]
START_TIMEOUT = 90  # seconds for the scheduler and a worker to come up on a loaded 2-core machine

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env() -> dict[str, str]:
    """One thread per process (the machine is shared) and no launcher variables that would pick a shard."""
    skip = ("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "OMPI_", "CUDA_VISIBLE_DEVICES")
    out = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    out.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    return out


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dask scheduler exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"no dask scheduler on port {port} after {timeout}s")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``tcp://127.0.0.1:PORT`` of a scheduler with two nanny-managed workers (``--nthreads 2 --resources
    GPU=1``), stopped (by process id) at the end."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scratch = tmp_path_factory.mktemp("dask")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-dashboard",
            ],
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    ]
    try:
        wait_for_port(port, procs[0], START_TIMEOUT)
        for i in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "distributed.cli.dask_worker",
                        address,
                        "--nthreads",
                        "2",
                        "--resources",
                        "GPU=1",
                        "--no-dashboard",
                        "--name",
                        f"w{i}",
                        "--death-timeout",
                        "60",
                        "--local-directory",
                        str(scratch / f"w{i}"),
                    ],
                    env=env(),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        with Client(address, timeout=START_TIMEOUT) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT)
        yield address
    finally:
        for proc in reversed(procs):  # workers first: the nannies stop their worker processes
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def city(synthetic_city) -> Path:
    return synthetic_city(train=1, val=1, extra=N_IMAGES, size=(64, 32), seed=1)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A tiny teacher fit for a few steps to colour blobs: confident, spatially varying labels."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(width="tiny", num_classes=19))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        x = torch.nn.functional.interpolate(torch.rand(2, 3, 4, 8, generator=gen), size=(32, 64), mode="bilinear")
        y = (x[:, 0] * 4).long().clamp(0, 3)
        loss = torch.nn.functional.cross_entropy(model((x - 0.5) / 0.25)["pred"], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint(path, model.eval(), ModelConfig(width="tiny", num_classes=19), CITYSCAPES.names)
    return path


def generate_cmd(teacher: Path, city: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "autolabel",
        "generate",
        "--teacher",
        str(teacher),
        "--data",
        f"cityscapes:{city}:train_extra",
        "--out",
        str(out),
        *SETTINGS,
        *extra,
    ]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, teacher, city) -> Path:
    """The same label set written in this process, no Dask."""
    out = tmp_path_factory.mktemp("ref") / "out"
    result = CliRunner().invoke(main, generate_cmd(teacher, city, out)[3:])
    assert result.exit_code == 0, (result.output, result.exception)
    return out


def snapshot(out: Path) -> tuple[dict[str, bytes], list[dict]]:
    """Every file's bytes (manifest parts aside) and the manifest rows without their timing columns."""
    files = {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and not {labelset.MANIFEST_DIR, LOCKS_DIR} & set(p.relative_to(out).parts)
    }
    rows = [
        {k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in read_manifest(out, status=None).to_pylist()
    ]
    return files, sorted(rows, key=lambda r: r["id"])


def executing(dask_worker) -> int:
    """How many tasks this worker is computing right now (run on the worker)."""
    return len(dask_worker.state.executing)


def test_external_cluster_writes_the_in_process_label_set_one_task_per_gpu_worker(
    cluster, reference, teacher, city, tmp_path
):
    out = tmp_path / "out"
    most = 0
    with Client(cluster) as client:
        started = time.perf_counter()
        run = subprocess.Popen(
            generate_cmd(teacher, city, out, "--dask-scheduler", cluster),
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        while run.poll() is None:  # a worker with GPU=1 computes one chunk at a time, though it has two threads
            most = max(most, *client.run(executing).values())
            time.sleep(0.01)
        stdout, stderr = run.communicate(timeout=300)
        seconds = time.perf_counter() - started
    assert run.returncode == 0, stderr[-3000:]
    print(f"external Dask run of {N_IMAGES} images: {seconds:.1f}s")
    assert snapshot(out) == snapshot(reference)
    assert most == 1
    # a successful run says what it did and nothing of Dask's own chatter
    assert "Traceback" not in stderr and "distributed." not in stderr, stderr[-3000:]
    assert f"{N_IMAGES} labelled" in stdout


def test_a_worker_killed_mid_run_changes_nothing(cluster, reference, teacher, city, tmp_path):
    out = tmp_path / "out"
    with Client(cluster) as client:
        pids = client.run(os.getpid)  # worker address -> pid (the nanny's child)
        run = subprocess.Popen(
            generate_cmd(teacher, city, out, "--dask-scheduler", cluster),
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        killed = None
        deadline = time.monotonic() + 300
        while killed is None and run.poll() is None and time.monotonic() < deadline:
            # once labels are being written, kill a worker that still has chunks assigned
            busy = [w for w, keys in client.processing().items() if keys and w in pids]
            written = len(list((out / labelset.LABELS_DIR).rglob("*.png"))) if out.exists() else 0
            if busy and 0 < written < N_IMAGES:
                killed = pids[busy[0]]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.005)
        stdout, stderr = run.communicate(timeout=300)
        assert killed is not None, "the run ended before a worker could be killed"
        assert run.returncode == 0, stderr[-3000:]
        client.wait_for_workers(2, timeout=START_TIMEOUT)  # the nanny started a new one
        assert killed not in client.run(os.getpid).values()
    assert snapshot(out) == snapshot(reference)
    assert not list(out.glob(f"{dask_runner.SCRATCH_PREFIX}*"))


def test_the_coordinator_checks_the_checkpoint_on_the_cpu_only(monkeypatch, teacher, city, tmp_path):
    # `--device cuda --scheduler ...` from a login node without a GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    devices = []
    init = Teacher.__init__

    def spy(self, loaded, classes, device, *args, **kwargs):
        devices.append(device)
        init(self, loaded, classes, device, *args, **kwargs)

    monkeypatch.setattr(Teacher, "__init__", spy)
    job = GenerateJob(teacher=teacher, out=tmp_path / "out", generate=GenerateConfig(device="cuda"))
    classes, meta = dask_runner.check_on_coordinator(job, None)
    assert classes.names == CITYSCAPES.names and meta["classes"] == list(CITYSCAPES.names)
    assert devices == [torch.device("cpu")]
    assert not (tmp_path / "out").exists()  # checking writes nothing


def test_workers_that_cannot_use_the_device_stop_the_run_with_a_clear_error(cluster, teacher, city, tmp_path):
    cmd = [*generate_cmd(teacher, city, tmp_path / "out", "--dask-scheduler", cluster), "--device", "cuda"]
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-2000:])
    assert "sees no CUDA device" in proc.stderr and "Traceback" not in proc.stderr


def test_a_local_gpu_cluster_gives_each_worker_its_own_gpu(tmp_path):
    # on this CPU machine the workers only see the variable; on a GPU host each then sees one GPU as cuda:0
    with (
        dask_runner.GPUCluster(
            gpus=["7", "GPU-5a3f"],
            n_workers=3,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            local_directory=str(tmp_path / "scratch"),
        ) as local,
        Client(local) as client,
    ):
        client.wait_for_workers(3, timeout=START_TIMEOUT)
        seen = client.run(lambda: os.environ["CUDA_VISIBLE_DEVICES"])
        names = client.run(lambda dask_worker: (dask_worker.name, dask_worker.state.total_resources))
        dirs = client.run(lambda dask_worker: dask_worker.local_directory)
    by_name = {names[w][0]: seen[w] for w in seen}
    assert by_name == {0: "7", 1: "GPU-5a3f", 2: "7"}
    assert all(resources == {"GPU": 1} for _, resources in names.values())
    assert all(Path(d).is_relative_to(tmp_path / "scratch") for d in dirs.values())


def test_a_local_clusters_scratch_space_is_under_out_unless_the_user_named_one(tmp_path, teacher, city):
    import dask

    first, second = dask_runner.scratch_directory(tmp_path), dask_runner.scratch_directory(tmp_path)
    assert first.parent == second.parent == tmp_path and first != second  # one per run: shards side by side
    assert first.name.startswith(".dask-scratch-") and first.is_dir()
    with dask.config.set({"temporary-directory": str(tmp_path / "mine")}):
        assert dask_runner.scratch_directory(tmp_path / "out") is None  # Dask's own setting then applies
    assert dask_runner.visible_gpus({"CUDA_VISIBLE_DEVICES": "2,5"}, 2) == ["2", "5"]
    assert dask_runner.visible_gpus({}, 2) == ["0", "1"]
    # a local-cluster run leaves none behind
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [*generate_cmd(teacher, city, out)[3:], "--dask-workers", "1", "--limit", "2"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert sorted(p.name for p in out.iterdir()) == [
        LOCKS_DIR,
        "confidence.zarr",
        "labels",
        "labelset.json",
        "manifest",
    ]
