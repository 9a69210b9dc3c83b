"""Scaling of ``generate`` over Dask workers: images/s with 1 and with 2 worker processes.

    python bench/bench_scaling.py [--images 16] [--size 256x128] [--workers 1,2]

Each cluster is started, warmed up (teacher loaded, one chunk labelled) and only then timed, so the figure
is steady-state throughput, not process start-up. Worker ``k`` of ``n`` gets ``cores // n`` torch threads:
the cores are split, not oversubscribed. On a 2-core machine shared with other jobs, 2 workers can at best
double a 1-core worker's rate and usually do not; the ratio is reported as measured. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_generate import _tiny_teacher
from common import timed
from distributed import Client, LocalCluster

from autolabel.config import GenerateConfig
from autolabel.data.datasets import discover_folder
from autolabel.data.io import write_image_png
from autolabel.generate.dask_runner import run_generate_dask
from autolabel.generate.runner import GenerateJob
from autolabel.synth import render_scene


def _write_inputs(folder: Path, count: int, size: tuple[int, int]) -> None:
    for i in range(count):
        write_image_png(folder / f"{i:04d}.png", render_scene(np.random.default_rng(i), *size, version=1).rgb)


def _rate_on_cluster(workers: int, teacher: Path, inputs: Path, out: Path, settings: GenerateConfig) -> float:
    """Steady-state images/s of ``run_generate_dask`` on a local cluster of ``workers`` processes."""
    samples = discover_folder(inputs)
    threads = max(1, (os.cpu_count() or 1) // workers)
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.WARNING,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(torch.set_num_threads, threads)  # the plugin leaves threads alone on an existing cluster
        warm = GenerateJob(teacher=teacher, out=out / f"warm{workers}", generate=settings)
        run_generate_dask(warm, samples[: settings.chunk_size * workers], scheduler=cluster.scheduler_address)
        job = GenerateJob(teacher=teacher, out=out / f"run{workers}", generate=settings)
        with timed() as t:
            result = run_generate_dask(job, samples, scheduler=cluster.scheduler_address)
    if result.ok != len(samples):
        raise RuntimeError(f"{workers} workers labelled {result.ok} of {len(samples)} images")
    return len(samples) / t.wall


def bench_scaling(
    images: int = 16,
    size: tuple[int, int] = (256, 128),
    worker_counts: tuple[int, ...] = (1, 2),
    scales: tuple[float, ...] = (0.5, 1.0, 2.0),
    rounds: int = 1,
) -> dict[str, Any]:
    """Images/s of Dask ``generate`` per worker count, and each count's rate over the first count's.

    With ``rounds`` > 1 the counts are measured alternately and each keeps its best rate, so a burst of load
    from other processes does not decide the ratio.
    """
    # chunks of a quarter of the images: enough tasks for every worker, each with a few batches
    settings = GenerateConfig(
        device="cpu", scales=scales, chunk_size=max(1, images // 4), encode_workers=1, decode_workers=1
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _tiny_teacher(tmp / "t.pt")
        _write_inputs(tmp / "in", images, size)
        rates = dict.fromkeys(worker_counts, 0.0)
        for r in range(rounds):
            for n in worker_counts:
                rate = _rate_on_cluster(n, tmp / "t.pt", tmp / "in", tmp / f"round{r}", settings)
                rates[n] = max(rates[n], rate)
    base = rates[worker_counts[0]]
    return {
        "images": images,
        "size": f"{size[0]}x{size[1]}",
        "scales": list(scales),
        "chunk_size": settings.chunk_size,
        "rounds": rounds,
        "images_per_s": {str(n): r for n, r in rates.items()},
        "speedup": {str(n): r / base for n, r in rates.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", default="256x128", help="image size WxH")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best rate is kept")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    counts = tuple(int(v) for v in args.workers.split(","))
    print(json.dumps(bench_scaling(args.images, (width, height), counts, rounds=args.rounds), indent=2))


if __name__ == "__main__":
    main()
