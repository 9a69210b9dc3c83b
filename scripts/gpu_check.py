#!/usr/bin/env python3
"""``make gpu-check``: what the CPU test suite cannot check about GPUs, in one run of a few minutes.

Run once on a machine with one or more GPUs (about 3 minutes on one H200, at most 5). It prints one JSON
object and exits 1 if any check failed, a process computing on another GPU than its own included:

- ``devices``: what torch sees;
- ``generate``: W18-small (fit for a few seconds to the synthetic city) labelling synthetic 1024x512 images
  at 0.5/1.0/2.0 in fp32, bf16 and fp16: images/s, peak ``torch.cuda.max_memory_allocated``, labels equal to
  fp32's;
- ``shards`` (2+ GPUs): two ``generate --shard i/2`` processes side by side, as ``make -j2 generate`` starts
  them, and ``torchrun --nproc_per_node 2 -m autolabel generate``: each process on its own GPU;
- ``dask``: a local Dask cluster, one worker per GPU, each seeing only its own; labels equal to in-process;
- ``train``: 5 steps with fp16 + GradScaler + RMI and 5 with bf16 + RMI: finite losses; ``ddp`` (2+ GPUs):
  two ranks under torchrun, each on its own GPU;
- ``w48``: HRNetV2-W48 + OCR (random weights) on a 2048x1024 image at 0.5/1.0/2.0, tiled (tile_size 2048)
  and whole: seconds per image and peak memory.

On a machine without CUDA it prints ``{"cuda": false, "message": "no CUDA device: nothing was run"}`` and
exits 0. ``--rehearse`` runs every section on the CPU at toy sizes instead (the test suite does, to keep this
script working where it never otherwise runs).

The GPU machine may lack zarr and dask: ``make gpu-wheels`` (where pip reaches PyPI) saves their wheels in
``.whl/``; this script then installs them with ``pip install --no-index --no-deps --target`` into a
temporary folder and runs itself again with it on ``PYTHONPATH``. It never installs, upgrades or shadows torch.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
WHEELS = REPO / ".whl"
NEEDED_MODULES = ("zarr", "numcodecs", "dask", "distributed")
NEVER_INSTALL = ("torch", "nvidia", "triton", "numpy")  # the machine's own builds stay
SITE_ENV = "AUTOLABEL_GPU_CHECK_SITE"  # set once the wheels are installed (stops a second re-run)
BUDGET_S = 300.0
NO_CUDA = {"cuda": False, "message": "no CUDA device: nothing was run"}


class CheckFailed(Exception):
    """A check found something wrong (wrong device, non-finite loss, ...)."""


# ---------------------------------------------------------------------------------------------------------
# pure helpers (unit-tested on the CPU)


def installable_wheels(folder: Path) -> list[Path]:
    """The wheels in ``folder`` to install: everything but torch and the packages built with it."""
    wheels = sorted(Path(folder).glob("*.whl"))
    return [w for w in wheels if not w.name.lower().startswith(NEVER_INSTALL)]


def pip_install_command(python: str, wheels: Sequence[Path], target: Path) -> list[str]:
    """``pip install`` of exactly these wheel files into ``target``: no index, no dependencies, no upgrades of
    anything already installed elsewhere."""
    return [
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--no-cache-dir",
        "--upgrade",
        "--target",
        str(target),
        *map(str, wheels),
    ]


def with_pythonpath(env: Mapping[str, str], *paths: Path | str) -> dict[str, str]:
    """``env`` with ``paths`` in front of its ``PYTHONPATH``."""
    old = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**env, "PYTHONPATH": os.pathsep.join([*map(str, paths), *old])}


def placement_problems(reports: Sequence[Mapping[str, Any]], *, distinct: bool) -> list[str]:
    """What is wrong with where the processes of one launch computed.

    Each report is a probe's: ``device`` (the device it computed on, e.g. ``"cuda:1"``) and ``peak_bytes``
    (``max_memory_allocated`` per visible GPU). A process must have allocated memory on its own GPU only,
    and with ``distinct`` no two processes may share a GPU.
    """
    problems = []
    for report in reports:
        device, peaks = report["device"], report.get("peak_bytes") or []
        if not device.startswith("cuda"):
            problems.append(f"{report.get('name', '?')}: computed on {device}, not on a GPU")
            continue
        own = int(device.partition(":")[2] or 0)
        stray = [i for i, peak in enumerate(peaks) if peak > 0 and i != own]
        if stray:
            problems.append(f"{report.get('name', '?')}: on {device} but also allocated memory on GPU {stray}")
        if own < len(peaks) and peaks[own] == 0:
            problems.append(f"{report.get('name', '?')}: on {device} but allocated nothing there")
    if distinct:
        seen: dict[str, str] = {}
        for report in reports:
            key = report.get("physical") or report["device"]
            if key in seen:
                problems.append(f"{report.get('name', '?')} and {seen[key]} share {key}")
            seen[key] = report.get("name", "?")
    return problems


def agreement(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """Fraction of pixels where two label sets (id -> uint8 array) agree; ids must match."""
    if set(a) != set(b):
        raise CheckFailed(f"label sets hold different images: {sorted(set(a) ^ set(b))[:3]}")
    same = sum(int((a[k] == b[k]).sum()) for k in a)
    total = sum(a[k].size for k in a)
    return same / total if total else 1.0


def read_reports(folder: Path) -> list[dict[str, Any]]:
    """The JSON reports that probe processes wrote into ``folder`` (one file each, in name order)."""
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]


def write_report(folder: Path, report: Mapping[str, Any]) -> None:
    """A probe's report, one file per process (processes of one launch share stdout, and lines interleave)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{os.getpid()}.tmp"
    tmp.write_text(json.dumps(report))
    tmp.rename(folder / f"{os.environ.get('RANK', '0')}-{os.getpid()}.json")


# ---------------------------------------------------------------------------------------------------------
# setting up: packages and sizes


def ensure_packages(argv: Sequence[str]) -> None:
    """Install zarr/dask from ``.whl`` when missing, then run this script again with them on the path."""
    missing = [m for m in NEEDED_MODULES if importlib.util.find_spec(m) is None]
    if not missing:
        return
    if os.environ.get(SITE_ENV):
        raise CheckFailed(f"{missing} still missing after installing the wheels in {WHEELS}")
    wheels = installable_wheels(WHEELS)
    if not wheels:
        raise CheckFailed(f"{missing} are not installed and {WHEELS} has no wheels: run `make gpu-wheels` first")
    site = Path(tempfile.mkdtemp(prefix="autolabel-site-"))
    subprocess.run(pip_install_command(sys.executable, wheels, site), check=True)
    env = with_pythonpath({**os.environ, SITE_ENV: str(site)}, site, REPO)
    os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *argv], env)


class Sizes:
    """What the sections run at: the real check, or a toy rehearsal on the CPU."""

    def __init__(self, rehearse: bool):
        self.rehearse = rehearse
        self.device = "cpu" if rehearse else "auto"
        self.image = (64, 32) if rehearse else (1024, 512)  # (W, H)
        self.width = "tiny" if rehearse else "w18_small"
        self.images = 4 if rehearse else 8
        self.teacher_steps = 30 if rehearse else 60
        self.train_steps = 2 if rehearse else 5
        self.big_width = "tiny" if rehearse else "w48"
        self.big_image = (128, 64) if rehearse else (2048, 1024)
        self.big_tile = 128 if rehearse else 2048
        self.precisions = ("fp32", "bf16") if rehearse else ("fp32", "bf16", "fp16")


# ---------------------------------------------------------------------------------------------------------
# sections


def cuda_peaks() -> list[int]:
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count())]


def assert_on(module: Any, device: Any) -> None:
    """Every parameter and buffer of ``module`` on ``device``; a CheckFailed naming the first that is not."""
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if tensor.device != device:
            raise CheckFailed(f"{name} is on {tensor.device}, expected {device}")


def devices_section() -> dict[str, Any]:
    import torch

    count = torch.cuda.device_count()
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "count": count,
        "names": [torch.cuda.get_device_name(i) for i in range(count)],
        "bf16_supported": bool(count and torch.cuda.is_bf16_supported()),
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def make_city(work: Path, sizes: Sizes) -> Path:
    from autolabel.synth import make_synthetic_city

    city = work / "city"
    make_synthetic_city(
        city,
        train=8,
        val=1,
        extra=sizes.images,
        size=sizes.image,
        seed=0,
        workers=min(8, os.cpu_count() or 1),
        version=1,
    )
    return city


def train_config(city: Path, out: Path, sizes: Sizes, *extra: str) -> Any:
    from autolabel.config import load_config

    width, height = sizes.image
    return load_config(
        None,
        [
            f"data.root={json.dumps(str(city))}",
            f"train.out_dir={json.dumps(str(out))}",
            f"model.width='{sizes.width}'",
            f"train.crop_size=[{height}, {width}]",
            "train.batch_size=2",
            "train.workers=2",
            "train.epochs=100",
            "train.val_every=0",
            f"train.class_uniform_tile={min(width, 1024)}",
            "train.log_every=1",
            f"train.device='{sizes.device}'",
            *extra,
        ],
    )


def train_section(city: Path, work: Path, sizes: Sizes) -> dict[str, Any]:
    """A few steps with fp16 + GradScaler + RMI and with bf16 + RMI; losses must be finite."""
    from autolabel.train.loop import fit
    from autolabel.train.state import iter_log

    result: dict[str, Any] = {}
    for amp in ("fp16", "bf16"):
        out = work / f"train-{amp}"
        cfg = train_config(
            city, out, sizes, f"train.amp='{amp}'", "loss.main='rmi'", f"train.max_iters={sizes.train_steps}"
        )
        started = time.perf_counter()
        fit(cfg)
        records = [r for r in iter_log(out) if r["event"] == "train"]
        losses = [r["total"] for r in records]
        start = next(r for r in iter_log(out) if r["event"] == "start")
        if len(losses) != sizes.train_steps or not all(math.isfinite(v) for v in losses):
            raise CheckFailed(f"train {amp}: losses {losses}")
        expected = "cpu" if sizes.rehearse else "cuda:0"
        if start["device"] != expected:
            raise CheckFailed(f"train {amp}: trained on {start['device']}, expected {expected}")
        result[f"{amp}_rmi"] = {
            "losses": [round(v, 4) for v in losses],
            "seconds": round(time.perf_counter() - started, 2),
            "device": start["device"],
        }
    return result


def fit_teacher(city: Path, work: Path, sizes: Sizes) -> Path:
    """A teacher that knows the city a little (a random one's labels would flip at every rounding)."""
    from autolabel.train.loop import fit

    out = work / "teacher"
    amp = "off" if sizes.rehearse else "bf16"
    fit(
        train_config(
            city,
            out,
            sizes,
            f"train.amp='{amp}'",
            "loss.main='ce'",
            "train.lr=0.02",
            f"train.max_iters={sizes.teacher_steps}",
            "train.log_every=20",
        )
    )
    return out / "last.pt"


def read_labels(out: Path) -> dict[str, Any]:
    from autolabel.data.io import read_label
    from autolabel.labelset import read_manifest

    return {row["id"]: read_label(out / row["label"]) for row in read_manifest(out).to_pylist()}


def generate_section(teacher: Path, city: Path, work: Path, sizes: Sizes) -> dict[str, Any]:
    """In-process labelling in each precision: speed, peak memory, labels against fp32."""
    import torch

    from autolabel.config import DataConfig, GenerateConfig
    from autolabel.data.datasets import discover_cityscapes
    from autolabel.data.io import read_image
    from autolabel.generate.runner import GenerateJob, run_generate
    from autolabel.generate.teacher import Teacher

    samples = discover_cityscapes(city, "train_extra")
    result: dict[str, Any] = {
        "images": len(samples),
        "size": list(sizes.image),
        "model": sizes.width,
        "scales": [0.5, 1.0, 2.0],
    }
    labels: dict[str, dict[str, Any]] = {}
    for precision in sizes.precisions:
        settings = GenerateConfig(device=sizes.device, precision=precision, scales=(0.5, 1.0, 2.0))
        loaded = Teacher.load(teacher, settings, DataConfig())
        expected = torch.device("cpu") if sizes.rehearse else torch.device("cuda", 0)
        if loaded.device != expected:
            raise CheckFailed(f"generate {precision}: teacher on {loaded.device}, expected {expected}")
        assert_on(loaded.model, expected)
        first = discover_cityscapes(city, "train")[0]
        loaded.predict(read_image(first.image)[None])  # warm-up: cuDNN autotuning, allocator growth
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        out = work / f"labels-{precision}"
        started = time.perf_counter()
        run = run_generate(GenerateJob(teacher=teacher, out=out, generate=settings), samples, teacher=loaded)
        seconds = time.perf_counter() - started
        if run.ok != len(samples):
            raise CheckFailed(f"generate {precision}: {run.ok} of {len(samples)} labelled, errors {run.errors[:3]}")
        peaks = cuda_peaks()
        problems = (
            placement_problems(
                [{"name": f"generate {precision}", "device": str(loaded.device), "peak_bytes": peaks}], distinct=False
            )
            if peaks
            else []
        )
        if problems:
            raise CheckFailed("; ".join(problems))
        labels[precision] = read_labels(out)
        result[precision] = {
            "resolved": loaded.precision_name,
            "images_per_s": round(len(samples) / seconds, 3),
            "peak_mib": round(max(peaks) / 2**20, 1) if peaks else None,
            "labels_equal_to_fp32": round(agreement(labels["fp32"], labels[precision]), 5),
        }
        del loaded
    return result


def run_probes(commands: Sequence[Sequence[str]], reports: Path, timeout: float) -> list[dict[str, Any]]:
    """Run probe processes side by side, each writing its report into ``reports``; the reports, or a
    CheckFailed with the output of one that failed."""
    env = with_pythonpath(os.environ, REPO)
    procs = [
        subprocess.Popen(
            [*c, "--reports", str(reports)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for c in commands
    ]
    for cmd, proc in zip(commands, procs, strict=True):
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode != 0:
            raise CheckFailed(f"{' '.join(cmd[:6])} ... exited {proc.returncode}: {err[-1500:]}")
    return read_reports(reports)


def shards_section(teacher: Path, city: Path, work: Path, sizes: Sizes, gpus: int) -> dict[str, Any]:
    """Two shard processes side by side (make -j2) and two torchrun ranks: each on its own GPU."""
    if gpus < 2 and not sizes.rehearse:
        return {"skipped": f"{gpus} GPU: nothing to tell apart"}
    me = str(Path(__file__).resolve())
    spec = f"cityscapes:{city}:train_extra"
    common = ["--teacher", str(teacher), "--dataset", spec, "--device", sizes.device]
    make_j2 = run_probes(
        [
            [sys.executable, me, "--probe", "generate", *common, "--out", str(work / "shards"), "--shard", f"{i}/2"]
            for i in range(2)
        ],
        work / "reports-make-j2",
        timeout=240,
    )
    torchrun = run_probes(
        [
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node=2",
                me,
                "--probe",
                "generate",
                *common,
                "--out",
                str(work / "torchrun"),
            ]
        ],
        work / "reports-torchrun",
        timeout=240,
    )
    for name, reports in (("make -j2", make_j2), ("torchrun", torchrun)):
        if len(reports) != 2:
            raise CheckFailed(f"{name}: {len(reports)} processes reported, expected 2")
        problems = [] if sizes.rehearse else placement_problems(reports, distinct=True)
        if problems:
            raise CheckFailed(f"{name}: " + "; ".join(problems))
    return {"make_j2": make_j2, "torchrun": torchrun}


def dask_section(teacher: Path, city: Path, work: Path, sizes: Sizes, reference: Path) -> dict[str, Any]:
    """A local cluster, one worker per GPU: each worker's own GPU, the in-process labels."""
    from distributed import Client

    from autolabel.config import GenerateConfig
    from autolabel.data.datasets import discover_cityscapes
    from autolabel.generate import dask_runner
    from autolabel.generate.runner import GenerateJob

    out = work / "dask"
    settings = GenerateConfig(device=sizes.device, precision="bf16", scales=(0.5, 1.0, 2.0))
    job = GenerateJob(teacher=teacher, out=out, generate=settings)
    samples = discover_cityscapes(city, "train_extra")
    cluster = dask_runner.local_cluster(0, sizes.device, work / "dask-scratch")
    try:
        started = time.perf_counter()
        run = dask_runner.run_generate_dask(job, samples, scheduler=cluster.scheduler_address)
        seconds = time.perf_counter() - started
        with Client(cluster) as client:
            workers = list(client.run(_worker_report).values())
    finally:
        cluster.close()
    if run.ok != len(samples):
        raise CheckFailed(f"dask: {run.ok} of {len(samples)} labelled, errors {run.errors[:3]}")
    if not sizes.rehearse:
        problems = placement_problems(workers, distinct=True)
        if any(w["device"] != "cuda:0" for w in workers):
            problems.append(f"workers on {[w['device'] for w in workers]}: each should see its own GPU as cuda:0")
        if problems:
            raise CheckFailed("dask: " + "; ".join(problems))
    return {
        "workers": workers,
        "seconds": round(seconds, 2),
        "labels_equal_to_in_process": round(agreement(read_labels(reference), read_labels(out)), 5),
    }


def _worker_report(dask_worker: Any) -> dict[str, Any]:
    teacher = dask_worker.plugins[dask_runner_plugin()].teacher
    return {
        "name": str(dask_worker.name),
        "device": str(teacher.device),
        "physical": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "precision": teacher.precision_name,
        "peak_bytes": cuda_peaks(),
    }


def dask_runner_plugin() -> str:
    from autolabel.generate.dask_runner import PLUGIN_NAME

    return PLUGIN_NAME


def ddp_section(city: Path, work: Path, sizes: Sizes, gpus: int) -> dict[str, Any]:
    """Two ranks under torchrun: each on its own GPU, finite losses."""
    if gpus < 2 and not sizes.rehearse:
        return {"skipped": f"{gpus} GPU"}
    me = str(Path(__file__).resolve())
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        me,
        "--probe",
        "train",
        "--city",
        str(city),
        "--out",
        str(work / "ddp"),
        *(["--rehearse"] if sizes.rehearse else []),
    ]
    reports = run_probes([cmd], work / "reports-ddp", timeout=300)
    problems = [] if sizes.rehearse else placement_problems(reports, distinct=True)
    losses = [v for r in reports for v in r.get("losses", [])]
    if len(reports) != 2 or problems or not losses or not all(math.isfinite(v) for v in losses):
        raise CheckFailed(f"ddp: reports {reports}; {problems}")
    return {"ranks": reports}


def w48_section(sizes: Sizes) -> dict[str, Any]:
    """The published teacher's size: a 2048x1024 image at 0.5/1.0/2.0, tiled and whole."""
    import torch

    from autolabel.config import ModelConfig
    from autolabel.models import build_model
    from autolabel.models.device import precision_name, resolve_device, resolve_precision
    from autolabel.models.predict import predict_logits

    device = resolve_device(sizes.device)
    dtype = resolve_precision("auto", device)
    model = build_model(ModelConfig(width=sizes.big_width, num_classes=19)).to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    assert_on(model, device)
    width, height = sizes.big_image
    x = torch.randn(1, 3, height, width, device=device)
    result: dict[str, Any] = {"size": [width, height], "precision": precision_name(dtype)}
    for name, tile in (("tiled", sizes.big_tile), ("whole", 0)):

        def run(tile: int = tile) -> Any:
            return predict_logits(model, x, (0.5, 1.0, 2.0), tile_size=tile, keys={"pred"}, precision=dtype)["pred"]

        try:
            run()  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            for _ in range(2):
                out = run()
            if device.type == "cuda":
                torch.cuda.synchronize()
        except torch.cuda.OutOfMemoryError:  # whole images at 2.0x need a big GPU; that is what tiling is for
            torch.cuda.empty_cache()
            result[name] = {"tile_size": tile, "out_of_memory": True}
            continue
        if out.device != device or out.dtype != torch.float32 or not torch.isfinite(out).all():
            raise CheckFailed(
                f"w48 {name}: output {out.dtype} on {out.device}, finite {bool(torch.isfinite(out).all())}"
            )
        peaks = cuda_peaks()
        result[name] = {
            "tile_size": tile,
            "seconds_per_image": round((time.perf_counter() - started) / 2, 3),
            "peak_mib": round(max(peaks) / 2**20, 1) if peaks else None,
        }
    return result


# ---------------------------------------------------------------------------------------------------------
# probes: one process of a launch, reporting where it computed


def probe_generate(args: argparse.Namespace) -> None:
    import torch

    from autolabel.api import generate_labels

    result = generate_labels(
        args.teacher,
        args.dataset,
        args.out,
        device=args.device,
        shard=args.shard,
        precision="auto",
        scales=(0.5, 1.0, 2.0),
    )
    cuda = torch.cuda.is_available()
    device = f"cuda:{torch.cuda.current_device()}" if cuda and args.device != "cpu" else "cpu"
    report = {
        "name": f"rank {os.environ.get('RANK', '-')} shard {args.shard or os.environ.get('RANK', '0')}",
        "device": device,
        "physical": _physical(device),
        "labelled": result.ok,
        "peak_bytes": cuda_peaks(),
    }
    write_report(Path(args.reports), report)


def probe_train(args: argparse.Namespace) -> None:
    import torch

    from autolabel.train.loop import fit
    from autolabel.train.state import iter_log

    sizes = Sizes(args.rehearse)
    cfg = train_config(
        Path(args.city),
        Path(args.out),
        sizes,
        "train.amp='bf16'",
        "loss.main='rmi'",
        f"train.max_iters={sizes.train_steps}",
    )
    fit(cfg)
    cuda = torch.cuda.is_available() and not sizes.rehearse
    device = f"cuda:{torch.cuda.current_device()}" if cuda else "cpu"
    rank = int(os.environ.get("RANK", "0"))
    losses = [r["total"] for r in iter_log(Path(args.out)) if r["event"] == "train"] if rank == 0 else []
    report = {
        "name": f"rank {rank}",
        "device": device,
        "physical": _physical(device),
        "losses": losses,
        "peak_bytes": cuda_peaks(),
    }
    write_report(Path(args.reports), report)


def _physical(device: str) -> str:
    """A GPU's identity across processes (its PCI bus id), so two ranks on one GPU show even if their
    CUDA_VISIBLE_DEVICES differ."""
    import torch

    if not device.startswith("cuda"):
        return device
    props = torch.cuda.get_device_properties(int(device.partition(":")[2] or 0))
    uuid = getattr(props, "uuid", None)
    if uuid is not None:
        return str(uuid)
    bus = [getattr(props, key, "") for key in ("pci_domain_id", "pci_bus_id", "pci_device_id")]
    return ":".join(map(str, bus))


# ---------------------------------------------------------------------------------------------------------
# the run


def run_sections(sizes: Sizes, work: Path, budget: float) -> dict[str, Any]:
    """Every section in order; one that fails is recorded and the rest still run while time is left."""
    import torch

    report: dict[str, Any] = {"cuda": torch.cuda.is_available(), "rehearsal": sizes.rehearse, "failures": []}
    started = time.perf_counter()
    gpus = torch.cuda.device_count()
    state: dict[str, Path] = {}

    def section(name: str, fn: Callable[[], Any]) -> None:
        if time.perf_counter() - started > budget:
            report[name] = {"skipped": "out of time"}
            return
        t0 = time.perf_counter()
        try:
            report[name] = fn()
        except Exception as exc:  # noqa: BLE001 -- every failure is reported, then the next section runs
            report["failures"].append(f"{name}: {type(exc).__name__}: {exc}")
            report[name] = {"error": str(exc)[-2000:], "traceback": traceback.format_exc()[-3000:]}
        if isinstance(report[name], dict):
            report[name].setdefault("section_seconds", round(time.perf_counter() - t0, 1))

    section("devices", devices_section)
    section("city", lambda: str(state.setdefault("city", make_city(work, sizes))))
    section("train", lambda: train_section(state["city"], work, sizes))
    section("teacher", lambda: str(state.setdefault("teacher", fit_teacher(state["city"], work, sizes))))
    section("generate", lambda: generate_section(state["teacher"], state["city"], work, sizes))
    section("dask", lambda: dask_section(state["teacher"], state["city"], work, sizes, work / "labels-bf16"))
    section("shards", lambda: shards_section(state["teacher"], state["city"], work, sizes, gpus))
    section("ddp", lambda: ddp_section(state["city"], work, sizes, gpus))
    section("w48", lambda: w48_section(sizes))
    report["ok"] = not report["failures"]
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rehearse", action="store_true", help="every section on the CPU at toy sizes")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds after which sections are skipped")
    parser.add_argument("--probe", choices=["generate", "train"], help=argparse.SUPPRESS)
    for name in ("--teacher", "--dataset", "--out", "--shard", "--city", "--device", "--reports"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    if args.probe:
        (probe_generate if args.probe == "generate" else probe_train)(args)
        return 0
    try:
        import torch
    except ImportError as exc:
        print(json.dumps({"ok": False, "failures": [f"torch is not importable with {sys.executable}: {exc}"]}))
        return 2
    if not torch.cuda.is_available() and not args.rehearse:
        print(json.dumps(NO_CUDA))
        return 0
    try:
        ensure_packages(argv)
    except (CheckFailed, subprocess.CalledProcessError) as exc:
        print(json.dumps({"ok": False, "failures": [f"packages: {exc}"]}))
        return 1
    os.environ.update(with_pythonpath(os.environ, REPO))  # for every process started from here
    with tempfile.TemporaryDirectory(prefix="autolabel-gpu-check-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        report = run_sections(Sizes(args.rehearse), work, args.budget)
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
