"""Benchmarks for `autolabel generate` (CPU; every speed figure is a ratio measured within one run).

    python bench/bench_generate.py png          # label KB/image and encode ms at 2048x1024, per PNG setting
    python bench/bench_generate.py confidence   # confidence-store bytes / label bytes, per zstd level
    python bench/bench_generate.py throughput   # generate images/s / bare-model images/s (tiny teacher)
    python bench/bench_generate.py rss          # peak RSS of generate for 100 vs 1000 images
    python bench/bench_generate.py all

Label maps are Cityscapes-like scenes from the synthetic city (2048x1024, real class layout); a teacher's
thresholding is imitated by ignoring pixels near class boundaries (confidence grows with the distance to the
nearest boundary), which is where real teachers are unsure.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from autolabel.classes import CITYSCAPES
from autolabel.config import GenerateConfig
from autolabel.data.io import encode_label_png, write_image_png
from autolabel.generate import hostcost
from autolabel.labelset import confidence
from autolabel.synth import render_scene

SIZE = (2048, 1024)  # (W, H)


def teacher_like_maps(seed: int, ladder_len: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(labels with ignore, confidence codes) imitating a thresholded teacher on a Cityscapes-like scene."""
    return hostcost.teacher_like_maps(*SIZE, seed=seed, ladder_len=ladder_len)


# Teachers the store is measured with: how far from a class boundary (in px at 2048x1024) the logit margin
# reaches 1 ("reach"), and how much broad, low-frequency doubt (the std of a logit offset varying over
# ~128 px) is added. "confident" is a strong Cityscapes teacher (interiors above 0.98 beyond ~16 px from an
# edge); "unsure" a weak one, with doubtful regions, like the demo teacher on the synthetic city.
TEACHERS = {"confident": (4.0, 0.0), "unsure": (6.0, 1.5)}


def teacher_like_probabilities(seed: int, teacher: str = "confident") -> tuple[np.ndarray, np.ndarray]:
    """(argmax class of every pixel, max softmax probability float32) imitating a teacher on a Cityscapes-like
    2048x1024 scene: the margin grows with the distance to the nearest class boundary, computed at stride 4 and
    upsampled bilinearly as a network's logits are, plus (``"unsure"``) smooth doubt over broad regions."""
    reach, doubt = TEACHERS[teacher]
    rng = np.random.default_rng(seed)
    # version 1: the scenes the store's figures (docs/label_quality.md, docs/bench.md) were measured with
    scene = render_scene(rng, *SIZE, version=1)
    train = CITYSCAPES.label_to_train_lut()[scene.label]
    small = train[2::4, 2::4]  # stride 4: what the network resolves
    boundary = np.zeros(small.shape, bool)
    boundary[:, 1:] |= small[:, 1:] != small[:, :-1]
    boundary[1:, :] |= small[1:, :] != small[:-1, :]
    distance = np.full(small.shape, 12.0, np.float32)  # in stride-4 pixels, capped at 48 px
    for radius in range(11, -1, -1):
        distance[hostcost._dilate(boundary, radius)] = radius
    margin = torch.from_numpy(4.0 * distance / reach)[None, None]
    margin = torch.nn.functional.interpolate(margin, size=train.shape, mode="bilinear", align_corners=False)[0, 0]
    if doubt:
        margin = margin - torch.from_numpy(np.abs(_smooth_noise(rng, *train.shape, cell=128.0)) * doubt)
    prob = torch.sigmoid(margin).clamp(min=1 / 19).numpy().astype(np.float32)  # two-class softmax of the margin
    classes = np.where(train == 255, CITYSCAPES.index("building"), train).astype(np.uint8)  # void: its neighbour
    return classes, prob


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Unit-variance noise varying over ``cell`` pixels (bilinear interpolation of a coarse grid)."""
    grid = torch.from_numpy(rng.standard_normal((int(height / cell) + 2, int(width / cell) + 2)).astype(np.float32))
    return torch.nn.functional.interpolate(grid[None, None], size=(height, width), mode="bilinear")[0, 0].numpy()


def bench_store_levels(
    n: int,
    levels: tuple[int, ...] = (10, 25, 50, 100),
    threshold: float = 0.5,
    teachers: tuple[str, ...] = ("confident", "unsure"),
) -> dict:
    """Bytes of the confidence store (class plane + code plane) per label PNG, at ``levels`` grid steps per unit
    of probability (step 1/levels from 0.30 to 0.98, plus the threshold), for each imitated teacher."""
    results: dict = {}
    for teacher in teachers:
        maps = [teacher_like_probabilities(i, teacher) for i in range(n)]
        label_bytes = []
        for classes, prob in maps:
            label_bytes.append(
                len(encode_label_png(np.where(prob > np.float32(threshold), classes, 255).astype(np.uint8), 9))
            )
        per_teacher = {
            "label_kb": statistics.mean(label_bytes) / 1024,
            "above_0.98": round(statistics.mean(float((p > 0.98).mean()) for _, p in maps), 3),
            "labelled_at_threshold": round(statistics.mean(float((p > threshold).mean()) for _, p in maps), 3),
        }
        for count in levels:
            grid = confidence.make_grid(1 / count, 0.3, 0.98, (threshold,))
            sizes, times = [], []
            with tempfile.TemporaryDirectory() as tmp:
                for i, (classes, prob) in enumerate(maps):
                    codes = confidence.quantise(torch.from_numpy(prob), grid).numpy()
                    start = time.perf_counter()
                    sizes.append(confidence.write_maps(Path(tmp), f"img{i}", classes, codes))
                    times.append(time.perf_counter() - start)
            per_teacher[f"{count} levels"] = {
                "step": round(1 / count, 4),
                "rungs": len(grid),
                "kb": statistics.mean(sizes) / 1024,
                "ratio_to_label": sum(sizes) / sum(label_bytes),
                "write_ms": 1000 * statistics.median(times),
            }
        results[teacher] = per_teacher
    return {"images": n, "threshold": threshold, "zstd_level": confidence.ZSTD_LEVEL, "teachers": results}


def pillow_png(labels: np.ndarray, level: int) -> bytes:
    """The label as Pillow writes an 'L' PNG (its own per-row filter choice): the setting not chosen."""
    buffer = io.BytesIO()
    Image.fromarray(labels).save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def up_png(labels: np.ndarray, level: int, strategy: int) -> bytes:
    """The pipeline's PNG (every row up-filtered) with another zlib strategy: a setting not chosen."""
    height, width = labels.shape
    rows = np.empty((height, width + 1), dtype=np.uint8)  # (H, 1 + W): filter byte + row
    rows[:, 0] = 2
    rows[0, 1:] = labels[0]
    np.subtract(labels[1:], labels[:-1], out=rows[1:, 1:])
    deflate = zlib.compressobj(level, zlib.DEFLATED, 15, 9, strategy)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = deflate.compress(rows.tobytes()) + deflate.flush()
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


PNG_WRITERS = {  # setting name -> encoder; the pipeline's is encode_label_png ("up" filter on every row)
    **{
        f"up filter, zlib {level}": functools.partial(encode_label_png, compress_level=level)
        for level in (1, 3, 6, 8, 9)
    },
    "up filter, zlib 9, Z_RLE": functools.partial(up_png, level=9, strategy=zlib.Z_RLE),
    "up filter, zlib 9, Z_FILTERED": functools.partial(up_png, level=9, strategy=zlib.Z_FILTERED),
    **{f"Pillow, zlib {level}": functools.partial(pillow_png, level=level) for level in (1, 6, 9)},
}


def bench_png(n: int) -> dict:
    """KB and encode CPU ms (this thread, median over maps) of every PNG setting at 2048x1024."""
    maps = [teacher_like_maps(i)[0] for i in range(n)]
    results = {}
    for name, encode in PNG_WRITERS.items():
        sizes, times = [], []
        for labels in maps:
            start = time.thread_time()
            data = encode(labels)
            times.append(time.thread_time() - start)
            sizes.append(len(data))
        results[name] = {"kb": statistics.mean(sizes) / 1024, "encode_ms": 1000 * statistics.median(times)}
    ignored = statistics.mean(float((m == 255).mean()) for m in maps)
    return {"images": n, "ignored_fraction": round(ignored, 3), "settings": results}


def bench_confidence(n: int, levels: tuple[int, ...] = (3, 9, 15, 17, 19)) -> dict:
    """Bytes and write time of the store (class + code planes on the default grid) per zstd level, for the
    "confident" imitated teacher at the default threshold."""
    defaults = GenerateConfig()
    grid = confidence.make_grid(
        defaults.ladder_step, defaults.ladder_bottom, defaults.ladder_top, (defaults.threshold,)
    )
    maps = [teacher_like_probabilities(i) for i in range(n)]
    planes = [(classes, confidence.quantise(torch.from_numpy(prob), grid).numpy()) for classes, prob in maps]
    label_bytes = statistics.mean(
        len(encode_label_png(np.where(p > np.float32(defaults.threshold), c, 255).astype(np.uint8), 9)) for c, p in maps
    )
    results = {}
    for level in levels:
        encode_s = []
        for classes, codes in planes:
            start = time.thread_time()
            confidence.array_files(classes, codes, level)
            encode_s.append(time.thread_time() - start)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            sizes = [confidence.write_maps(Path(tmp), f"img{i}", c, k, level) for i, (c, k) in enumerate(planes)]
            ms = 1000 * (time.perf_counter() - start) / n
        results[f"zstd level {level}"] = {
            "kb": statistics.mean(sizes) / 1024,
            "encode_ms": 1000 * statistics.median(encode_s),  # CPU time of this thread: the host cost
            "write_ms": ms,  # wall time of encode + write (temp folder, fsync, rename)
            "ratio_to_label": statistics.mean(sizes) / label_bytes,
        }
    return {"images": n, "label_kb": label_bytes / 1024, "rungs": len(grid), "settings": results}


def _tiny_teacher(path: Path, width: str = "tiny") -> None:
    from autolabel.config import ModelConfig
    from autolabel.models.build import build_model
    from autolabel.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = ModelConfig(width=width, num_classes=19)
    save_checkpoint(path, build_model(cfg), cfg, CITYSCAPES.names)


def bench_throughput(
    n: int,
    width: int,
    height: int,
    batch_size: int,
    rounds: int = 3,
    model_width: str = "tiny",
    generate: GenerateConfig | None = None,
) -> dict:
    """generate (decode + infer + encode + write, from disk) vs the bare model on preloaded tensors.

    The two are measured alternately, ``rounds`` times, so load from other processes hits both alike
    (median of the per-round wall-clock ratios); ``cpu_ratio`` compares CPU seconds of the same runs.
    ``generate``: the settings of the run (e.g. the demo's; on the CPU, ``batch_size`` replaced), default
    scales 0.5/1/2 with the confidence store and no attention maps.
    """
    from autolabel.config import DataConfig, replace
    from autolabel.data.datasets import discover_folder
    from autolabel.generate.runner import GenerateJob, run_generate
    from autolabel.generate.teacher import Teacher
    from autolabel.models.predict import normalise, predict_logits

    # one core for the model, the other for decode/encode threads: the split a GPU host has (model on the
    # GPU, pipeline on the CPU); two intra-op threads would also spin-wait on a loaded machine
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _tiny_teacher(tmp / "t.pt", model_width)
        images = []
        for i in range(n):
            rgb = render_scene(np.random.default_rng(i), width, height, version=1).rgb
            write_image_png(tmp / "in" / f"{i:04d}.png", rgb)
            images.append(rgb)
        settings = replace(generate or GenerateConfig(scales=(0.5, 1.0, 2.0)), device="cpu", batch_size=batch_size)
        teacher = Teacher.load(tmp / "t.pt", settings, DataConfig())
        batches = [torch.from_numpy(np.stack(images[i : i + batch_size])) for i in range(0, n, batch_size)]
        samples = discover_folder(tmp / "in")
        arrays = [batch.numpy() for batch in batches]
        warm = normalise(batches[0], teacher.mean, teacher.std)
        predict_logits(teacher.model, warm, settings.scales)
        bare, full, bare_cpu, full_cpu, predict_cpu = [], [], 0.0, 0.0, 0.0
        for r in range(rounds):
            start, cpu = time.perf_counter(), time.process_time()
            for batch in batches:
                predict_logits(teacher.model, normalise(batch, teacher.mean, teacher.std), settings.scales)
            bare.append(n / (time.perf_counter() - start))
            bare_cpu += time.process_time() - cpu
            # the teacher's whole device side: forward, softmax/threshold/codes, attention maps, to uint8
            cpu = time.process_time()
            for array in arrays:
                teacher.predict(array)
            predict_cpu += time.process_time() - cpu
            job = GenerateJob(teacher=tmp / "t.pt", out=tmp / f"out{r}", generate=settings)
            start, cpu = time.perf_counter(), time.process_time()
            run_generate(job, samples, teacher=teacher)
            full.append(n / (time.perf_counter() - start))
            full_cpu += time.process_time() - cpu
    return {
        "images": n,
        "size": f"{width}x{height}",
        "batch_size": batch_size,
        "scales": list(settings.scales),
        "model_width": model_width,
        "generate": {k: getattr(settings, k) for k in ("confidence", "attention", "encode_workers", "decode_workers")}
        | {"centroid_tile": settings.centroid_tile, "chunk_size": settings.chunk_size},
        "bare_model_img_s": bare,
        "generate_img_s": full,
        "ratio_best": max(full) / max(bare),
        "ratio_per_round": [f / b for f, b in zip(full, bare, strict=True)],
        "ratio_median": statistics.median(f / b for f, b in zip(full, bare, strict=True)),
        # CPU seconds of all threads: on a CPU-only host every extra CPU second is lost model time,
        # so this ratio bounds the wall-clock one and is robust to other processes' load;
        # predict_cpu_ratio: against Teacher.predict (the forward plus what runs on the device with it)
        "predict_cpu_ratio": predict_cpu / full_cpu,
        "host_core_ms_per_image": 1000 * (full_cpu - predict_cpu) / (n * rounds),
        "threshold_core_ms_per_image": 1000 * (predict_cpu - bare_cpu) / (n * rounds),
        "cpu_ratio": bare_cpu / full_cpu,
    }


_RSS_CHILD = """
import sys, torch
from pathlib import Path
torch.set_num_threads(1)
from autolabel.config import GenerateConfig
from autolabel.data.datasets import discover_folder
from autolabel.generate.runner import GenerateJob, run_generate
tmp, n = Path(sys.argv[1]), int(sys.argv[2])
samples = discover_folder(tmp / "in")[:n]
settings = GenerateConfig(device="cpu", scales=(1.0,))
job = GenerateJob(teacher=tmp / "t.pt", out=tmp / f"out{n}", generate=settings)
run_generate(job, samples)
# VmHWM, not ru_maxrss: after fork + exec, ru_maxrss still holds the (larger) parent's peak
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def bench_rss(counts: tuple[int, ...] = (100, 1000), width: int = 128, height: int = 64) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _tiny_teacher(tmp / "t.pt")
        rng = np.random.default_rng(0)
        for i in range(max(counts)):
            write_image_png(tmp / "in" / f"{i:05d}.png", rng.integers(0, 255, (height, width, 3), np.uint8))
        for n in counts:
            out = subprocess.run(
                [sys.executable, "-c", _RSS_CHILD, str(tmp), str(n)], check=True, capture_output=True, text=True
            )
            results[n] = int(out.stdout.strip().splitlines()[-1]) / 1024  # VmHWM is in kB
    return {"peak_rss_mb": results, "size": f"{width}x{height}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["png", "confidence", "throughput", "rss", "all"])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", default="256x128", help="throughput image size WxH")
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    report = {}
    if args.what in ("png", "all"):
        report["png"] = bench_png(args.images)
    if args.what in ("confidence", "all"):
        report["confidence"] = bench_confidence(args.images)
    if args.what in ("throughput", "all"):
        report["throughput"] = bench_throughput(args.images, width, height, args.batch_size)
    if args.what in ("rss", "all"):
        report["rss"] = bench_rss()
    print(json.dumps(_rounded(report), indent=2))


def _rounded(value):
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


if __name__ == "__main__":
    main()
