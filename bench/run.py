"""``make bench``: every performance figure of the pipeline, each a ratio of two things measured in one run.

    python bench/run.py                      # the full set (planner_accuracy: the tiny teacher at two sizes)
    BENCH_QUICK=1 python bench/run.py        # smaller inputs, fewer repeats (< 2 min)
    python bench/run.py --only label_footprint,confidence_store

Writes ``results/bench.json`` (one record per figure: value, goal, definition, the measurements behind it, the
machine and the command) and prints a table. Absolute times on this CPU say little about a GPU cluster; the
ratios compare two ways of doing the same work on the same machine, side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from bench_cli import bench_cli_startup
from bench_generate import bench_confidence, bench_png, bench_store_levels, bench_throughput, teacher_like_maps
from bench_hostwork import bench_hostwork
from bench_memory import bench_rss_growth, bench_tiled
from bench_models import NUM_CLASSES, bench_inference, bench_training
from bench_planner import bench_planner
from bench_planner import table as planner_table
from bench_scaling import bench_scaling
from bench_train import run_benchmark as bench_loader
from common import Figure, current_command, machine_info
from numcodecs import Zstd
from PIL import Image

import autolabel
from autolabel.config import GenerateConfig, load_config
from autolabel.data.io import encode_label_png, read_image
from autolabel.fs import atomic_write_bytes
from autolabel.labelset import checksums, confidence
from autolabel.models.device import keep_freed_memory
from autolabel.workflows.steps import DemoSettings

log = logging.getLogger("bench")

LABEL_SIZE = (2048, 1024)  # (W, H) of the label-footprint maps: Cityscapes resolution


@dataclass(frozen=True)
class BenchSize:
    """How much work each figure does; :data:`FULL` for ``make bench``, :data:`QUICK` for ``BENCH_QUICK=1``."""

    label_maps: int  # 2048x1024 label / confidence maps encoded
    zstd_levels: tuple[int, ...]  # confidence-store levels compared (the chosen one is always added)
    throughput_runs: tuple[tuple[str, int], ...]  # (teacher width, images); the last one is the figure
    throughput_rounds: int
    model_size: tuple[int, int]  # (H, W) of the hierarchical-overhead and training-step inputs
    model_repeats: int
    loader_images: int
    loader_size: tuple[int, int]  # (W, H) of the synthetic city the loader reads
    loader_epochs: int
    loader_repeats: int
    rss_counts: tuple[int, int]
    tiled_size: tuple[int, int]  # (W, H)
    tile_size: int
    scaling_images: int
    scaling_rounds: int
    fingerprint_repeats: int  # fingerprints (and decodes) of the ~2 MB PNG timed
    startup_repeats: int = 5  # fresh `autolabel ... --help` processes per command
    hostwork_images: int = 2  # 2048x1024 synthetic city images whose host work is measured part by part
    hostwork_repeats: int = 3  # each part's least CPU time of this many runs
    hostwork_size: tuple[int, int] = LABEL_SIZE  # (W, H)
    # planner_accuracy: teacher widths, image sizes (W, H) and images per real run (bench/bench_planner.py);
    # the whole table (W18-small, 2048x1024, 20 images) takes over an hour on 2 cores, so `make bench` runs the
    # tiny teacher at two sizes and `python bench/bench_planner.py --out results/planner.json` the rest
    planner_models: tuple[str, ...] = ("tiny",)
    planner_sizes: tuple[tuple[int, int], ...] = ((512, 256), (1024, 512))
    planner_images: int = 5


FULL = BenchSize(
    label_maps=4,
    zstd_levels=(3, 9, 11, 12, 15, 16, 17, 19),
    throughput_runs=(("tiny", 48),),  # the demo's teacher (pipelines/demo.toml)
    throughput_rounds=3,
    model_size=(256, 512),
    model_repeats=5,
    loader_images=16,
    loader_size=(1024, 512),
    loader_epochs=3,
    loader_repeats=3,
    rss_counts=(100, 1000),
    tiled_size=(2048, 1024),
    tile_size=1024,
    scaling_images=24,
    scaling_rounds=2,
    fingerprint_repeats=20,
)
QUICK = BenchSize(
    label_maps=2,
    zstd_levels=(),
    throughput_runs=(("tiny", 8),),
    throughput_rounds=2,
    model_size=(128, 256),
    model_repeats=2,
    loader_images=4,
    loader_size=(1024, 512),
    loader_epochs=2,
    loader_repeats=1,
    rss_counts=(10, 100),
    tiled_size=(1024, 512),
    tile_size=512,
    scaling_images=8,
    scaling_rounds=1,
    startup_repeats=2,
    fingerprint_repeats=5,
    hostwork_images=1,
    hostwork_repeats=1,
    planner_models=("tiny",),
    planner_sizes=((512, 256),),
    planner_images=3,
)


def demo_generate() -> tuple[GenerateConfig, tuple[int, int]]:
    """The demo's own generate settings (autolabel/pipelines/demo.toml) and its images' size (W, H)."""
    demo = Path(autolabel.__file__).parent / "pipelines" / "demo.toml"
    size = next(f.default for f in dataclasses.fields(DemoSettings) if f.name == "size")
    return load_config(demo).generate, size


def pipeline_efficiency(size: BenchSize) -> Figure:
    settings, (width, height) = demo_generate()
    runs = {
        model: bench_throughput(
            images,
            width,
            height,
            batch_size=settings.batch_size,
            rounds=size.throughput_rounds,
            model_width=model,
            generate=settings,
        )
        for model, images in size.throughput_runs
    }
    result = {**runs[size.throughput_runs[-1][0]], "by_teacher_width": runs}
    # the value is the CPU-time ratio: on a 2-core machine shared with other jobs the wall-clock ratio of one
    # round swings by 2x either way (details.ratio_per_round); CPU seconds of this process do not, and with
    # no idle core to hide the pipeline's threads on, they bound the wall-clock ratio from below
    return Figure(
        name="pipeline_efficiency",
        value=result["cpu_ratio"],
        goal=">= 0.95",
        definition="images per CPU-second of generate (decode + 3-scale model + threshold + PNG/zarr encode + "
        "attention maps + manifest, from disk) / images per CPU-second of the bare model forward on the same "
        "preloaded tensors, with the demo's settings (pipelines/demo.toml: its teacher width, image size, "
        "batch, scales, confidence and attention on, 1 decode + 1 encode thread; 1 torch thread), alternating "
        "rounds; details.predict_cpu_ratio: against Teacher.predict (forward + softmax/threshold/codes + "
        "attention maps, the device's share on a GPU), details.host_core_ms_per_image: what generate adds to "
        "that, details.ratio_median: the wall-clock ratio",
        details=result,
    )


def label_footprint(size: BenchSize) -> Figure:
    result = bench_png(size.label_maps)
    chosen = GenerateConfig().png_compress_level
    kb = result["settings"][f"up filter, zlib {chosen}"]["kb"]
    soft_bytes = NUM_CLASSES * LABEL_SIZE[0] * LABEL_SIZE[1] * 2  # C x H x W float16 probabilities
    result.update(
        chosen=f"up filter, zlib {chosen}",
        soft_label_kb=soft_bytes / 1024,
        soft_to_label_ratio=soft_bytes / (kb * 1024),
    )
    return Figure(
        name="label_footprint",
        value=kb,
        goal="<= 15",
        definition="KB per thresholded label PNG at 2048x1024 (Cityscapes-like scenes, pixels near class "
        "boundaries ignored), at the chosen PNG setting; details: KB and encode ms of every setting, and the "
        "soft-label footprint (19 x H x W fp16) as a multiple of the label",
        details=result,
        unit="KB",
    )


def confidence_store(size: BenchSize) -> Figure:
    chosen = confidence.ZSTD_LEVEL
    levels = tuple(sorted({*size.zstd_levels, chosen}))
    result = bench_confidence(size.label_maps, levels)
    result["chosen"] = f"zstd level {chosen}"
    result["plain_zstd_ratio_to_label"] = plain_zstd_ratio(size.label_maps, chosen)
    return Figure(
        name="confidence_store",
        value=result["settings"][result["chosen"]]["ratio_to_label"],
        goal="<= 2",
        definition="bytes per image of the confidence store (the class and code planes on the default grid, "
        "up-filtered, zarr + zstd at the chosen level; imitated confident teacher) / bytes of the label PNG of "
        "the same 2048x1024 map; details.plain_zstd_ratio_to_label: the plain codes of the store's first format "
        "(10 codes, no class plane)",
        details=result,
    )


STORE_LEVELS = (10, 25, 50, 100)  # grid steps per unit of probability compared (issue #13)


def confidence_levels(size: BenchSize) -> Figure:
    result = bench_store_levels(size.label_maps, STORE_LEVELS)
    chosen = f"{round(1 / GenerateConfig().ladder_step)} levels"
    result["chosen"] = chosen
    return Figure(
        name="confidence_levels",
        value=result["teachers"]["confident"][chosen]["ratio_to_label"],
        goal="<= 3",
        definition="bytes per image of the confidence store (class + code planes) / bytes of the label PNG at "
        "0.5, on a grid of 1/levels steps from 0.30 to 0.98, for 10, 25, 50, 100 levels and two imitated teachers "
        "(confident: a strong Cityscapes teacher; unsure: broad doubtful regions); value: the default grid "
        "(generate.ladder_step), confident teacher",
        details=result,
    )


def plain_zstd_ratio(maps: int, level: int) -> float:
    """The codes zstd-compressed as they are, without the column delta / label PNG bytes (what it saves)."""
    code_bytes, label_bytes = [], []
    for seed in range(maps):
        labels, codes = teacher_like_maps(seed)
        code_bytes.append(len(Zstd(level=level).encode(codes.tobytes())))
        label_bytes.append(len(encode_label_png(labels, GenerateConfig().png_compress_level)))
    return sum(code_bytes) / sum(label_bytes)


def _model_input(size: BenchSize) -> torch.Tensor:
    return torch.randn(1, 3, *size.model_size, generator=torch.Generator().manual_seed(0))


def hierarchical_overhead(size: BenchSize) -> Figure:
    result = bench_inference("tiny", _model_input(size), size.model_repeats)
    result["input_hw"] = list(size.model_size)
    return Figure(
        name="hierarchical_overhead",
        value=result["ratio_hierarchical_to_sum_single"],
        goal="<= 1.05",
        definition="CPU time of hierarchical 3-scale (0.5, 1, 2) inference / sum of the three single-scale "
        "forwards of the same network (tiny HRNet-OCR, best of interleaved repeats)",
        details=result,
    )


def training_cost(size: BenchSize) -> Figure:
    result = bench_training("tiny", _model_input(size), size.model_repeats)
    result["input_hw"] = list(size.model_size)
    return Figure(
        name="training_cost",
        value=result["ratio_pair_to_explicit"],
        goal="",
        definition="CPU time of a training step with the hierarchical pair (0.5, 1) / explicit attention on "
        "(0.5, 1, 2) (the paper: about 0.25); details: each relative to single-scale training",
        details=result,
    )


def loader(size: BenchSize) -> Figure:
    args = Namespace(
        size=size.loader_size,
        images=size.loader_images,
        crop=(256, 128),
        batch=2,
        steps=0,
        epochs=size.loader_epochs,
        workers=2,
        threads=1,
        repeats=size.loader_repeats,
    )
    result = bench_loader(args)
    return Figure(
        name="loader",
        value=result["loader_vs_decode_floor"],
        goal=">= 0.8",
        definition="samples/s of the student DataLoader in process (decode + scale/crop/flip/jitter, "
        "class-uniform crops, batching) / samples/s of only decoding the same image and label PNGs",
        details=result,
    )


def memory_growth(size: BenchSize) -> Figure:
    result = bench_rss_growth(size.rss_counts)
    few, many = size.rss_counts
    return Figure(
        name="memory_growth",
        value=result["ratio_many_to_few"],
        goal="<= 1.1",
        definition=f"peak RSS of generate over {many} images / over {few} images, each run in a fresh process "
        "(Linux VmHWM)",
        details=result,
    )


def tiled_memory(size: BenchSize) -> Figure:
    result = bench_tiled(size.tiled_size, size.tile_size)
    return Figure(
        name="tiled_memory",
        value=result["ratio_tiled_to_whole"],
        goal="",
        definition=f"peak RSS added by labelling one {size.tiled_size[0]}x{size.tiled_size[1]} image at "
        f"scales (0.5, 1, 2) in windows of at most {size.tile_size} px at scale 2.0 / the same for the whole "
        "image (fresh process each)",
        details=result,
    )


def scaling(size: BenchSize) -> Figure:
    result = bench_scaling(size.scaling_images, rounds=size.scaling_rounds)
    return Figure(
        name="scaling",
        value=result["speedup"]["2"],
        goal="",
        definition="images/s of generate on a local Dask cluster with 2 workers (1 torch thread each) / with 1 "
        "worker (2 threads), steady state after warm-up; at most 2 on 2 cores, less when other jobs share them",
        details=result,
    )


def cli_startup(size: BenchSize) -> Figure:
    result = bench_cli_startup(size.startup_repeats)
    return Figure(
        name="cli_startup",
        value=result["slowest_median_s"],
        goal="<= 1",
        unit="s",
        definition="wall seconds until `autolabel --help` (and `generate`/`train-teacher`/`evaluate --help`) "
        "has printed, fresh process each, median over repeats, the slowest command; details: each command, a "
        "bare interpreter and `import torch` on the same machine (the CLI must not import torch for help)",
        details=result,
    )


def photo_like_png(path: Path, size: tuple[int, int] = LABEL_SIZE, seed: int = 0) -> int:
    """A Cityscapes-sized RGB photo stand-in: smooth colour fields plus sensor-like noise, which PNG compresses
    to about 2 MB as it does real street scenes. Returns its size in bytes."""
    width, height = size
    rng = np.random.default_rng(seed)
    fields = Image.fromarray(rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    noise = rng.integers(0, 4, (height, width, 3), dtype=np.uint8)
    Image.fromarray(np.asarray(fields) // 2 + noise).save(path, format="PNG", compress_level=6)
    return path.stat().st_size


def input_fingerprint(size: BenchSize) -> Figure:
    """What resume and verify pay per input: stat + sha256 of the file (autolabel.labelset.checksums)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "photo.png"
        nbytes = photo_like_png(path)
        fingerprint_s, decode_s = [], []
        for _ in range(size.fingerprint_repeats):  # alternating, both from the page cache
            start = time.process_time()
            fingerprint = checksums.input_fingerprint(path)
            fingerprint_s.append(time.process_time() - start)
            start = time.process_time()
            read_image(path)
            decode_s.append(time.process_time() - start)
    assert fingerprint["input_sha256"] is not None
    hash_ms, decode_ms = 1000 * statistics.median(fingerprint_s), 1000 * statistics.median(decode_s)
    return Figure(
        name="input_fingerprint",
        value=hash_ms / decode_ms,
        goal="<= 0.2",
        definition="CPU time of an input fingerprint (stat + sha256 of the file's bytes) / CPU time of decoding "
        "the same file, a ~2 MB 2048x1024 RGB PNG (medians of alternating repeats, page cache warm); "
        "details.fingerprint_ms: the cost per image in ms",
        details={
            "file_mb": round(nbytes / 1e6, 2),
            "fingerprint_ms": round(hash_ms, 2),
            "decode_ms": round(decode_ms, 2),
            "sha256_mb_per_s": round(nbytes / 1e6 / (hash_ms / 1000), 1) if hash_ms > 0 else None,
            "repeats": size.fingerprint_repeats,
        },
    )


def host_work(size: BenchSize) -> Figure:
    result = bench_hostwork(size.hostwork_images, size.hostwork_repeats, size.hostwork_size)
    figure = result["variants"][next(iter(result["variants"]))]  # the defaults: confidence on, attention off
    return Figure(
        name="host_work",
        value=figure["total_core_ms"],
        goal="<= 150",
        unit="core-ms",
        definition=f"host CPU milliseconds (one core) generate spends per {result['size']} image besides the model: "
        "input fingerprint, decode, batch copy, statistics/centroids, label PNG, confidence store, hashes, "
        "manifest row, file writes, at the default settings (confidence on); details: each part, images/s one "
        "core feeds, the same with attention maps, a cProfile of where the time goes",
        details=result,
    )


def planner_accuracy(size: BenchSize) -> Figure:
    result = bench_planner(size.planner_models, size.planner_sizes, images=size.planner_images)
    result["table"] = planner_table(result)
    return Figure(
        name="planner_accuracy",
        value=result["worst_miss"],
        goal="<= 0.25",
        definition="the largest miss max(r, 1/r) - 1 over every case's ratios r = predicted / measured of time and "
        "peak memory: `generate --dry-run --json` (fresh process) vs `generate` of the same images (fresh process, "
        "teacher loaded first; its VmHWM growth), per teacher width, image size, whole and tiled, scales 0.5/1/2 "
        "on the CPU; details.rows: every ratio, details.table: the Markdown table",
        details=result,
    )


FIGURES: dict[str, Callable[[BenchSize], Figure]] = {
    "pipeline_efficiency": pipeline_efficiency,
    "label_footprint": label_footprint,
    "confidence_store": confidence_store,
    "confidence_levels": confidence_levels,
    "hierarchical_overhead": hierarchical_overhead,
    "training_cost": training_cost,
    "loader": loader,
    "memory_growth": memory_growth,
    "tiled_memory": tiled_memory,
    "scaling": scaling,
    "cli_startup": cli_startup,
    "input_fingerprint": input_fingerprint,
    "host_work": host_work,
    "planner_accuracy": planner_accuracy,
}


def run_figures(names: list[str], size: BenchSize) -> list[Figure]:
    """Measure the named figures in order (each reports how long it took)."""
    figures = []
    for name in names:
        log.info("measuring %s", name)
        torch.set_num_threads(1)  # figures that want more threads set them; none inherits another's choice
        start = time.perf_counter()
        figure = FIGURES[name](size)
        figure.seconds = time.perf_counter() - start
        figures.append(figure)
    return figures


def report(figures: list[Figure], quick: bool, command: str) -> dict:
    """The JSON document of ``results/bench.json``."""
    machine = machine_info()
    return {
        "mode": "quick" if quick else "full",
        "command": command,
        "machine": machine,
        "figures": {f.name: f.to_dict(machine, command) for f in figures},
    }


def table(figures: list[Figure]) -> str:
    """A Markdown table: figure, value, goal, met."""
    lines = ["| figure | value | goal | met | seconds |", "|---|---:|---|---|---:|"]
    for f in figures:
        met = {True: "yes", False: "**no**", None: "-"}[f.met]
        unit = "" if f.unit == "ratio" else f" {f.unit}"
        lines.append(f"| {f.name} | {f.value:.3f}{unit} | {f.goal or '(reported)'} | {met} | {f.seconds:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(FIGURES)}")
    parser.add_argument("--out", type=Path, default=Path("results/bench.json"))
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(FIGURES)
    unknown = sorted(set(names) - set(FIGURES))
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    keep_freed_memory()  # as the `autolabel` command does (autolabel/models/device.py); machine info records it
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    start = time.perf_counter()
    figures = run_figures(names, QUICK if quick else FULL)
    document = report(figures, quick, current_command())
    document["seconds"] = round(time.perf_counter() - start, 1)
    atomic_write_bytes(args.out, (json.dumps(document, indent=2) + "\n").encode("utf-8"))
    print(table(figures))
    print(f"\n{document['mode']} run, {document['seconds']} s; written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
