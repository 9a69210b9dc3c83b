"""Host work per image of `autolabel generate` at 2048x1024, by part, in single-core CPU milliseconds.

    python bench/bench_hostwork.py                 # 2 images, 3 repeats: the parts, the profile
    python bench/bench_hostwork.py --images 4

On a GPU node the forward runs on the device while host threads decode the next images and encode the previous
ones: the host's core-milliseconds per image, divided over its cores, is the least time per image the device
can be kept fed at. The parts are measured by :func:`autolabel.generate.hostcost.measure_host_cost` (the same
functions generate calls, CPU time of the one thread doing them); this benchmark adds what that function leaves
out because it writes nothing (the file writes with their fsyncs), checks the sum against one whole
``finalise_image`` per image, and profiles a decode + finalise pass (cProfile) to say where the time goes.

Inputs: synthetic city scenes at 2048x1024 written as PNG; their maps imitate a thresholded teacher (pixels
near class boundaries ignored, confidence growing with the distance to a boundary).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from autolabel.config import GenerateConfig
from autolabel.data.datasets import Sample
from autolabel.data.io import encode_label_png, read_image_upright, write_image_png
from autolabel.fs import atomic_write_bytes
from autolabel.generate.hostcost import PARTS, attention_like_maps, measure_host_cost, store_grid, teacher_like_store
from autolabel.labelset import confidence
from autolabel.labelset.checksums import input_fingerprint
from autolabel.labelset.files import WriteSettings, encode_attention, finalise_image
from autolabel.synth import render_scene

SIZE = (2048, 1024)  # (W, H): Cityscapes
VARIANTS = {  # settings name -> generate settings; the first is the figure (the defaults: confidence on)
    "defaults (confidence on, attention off)": GenerateConfig(),
    "demo-like (confidence and attention on)": GenerateConfig(attention=True),
}


def _inputs(tmp: Path, images: int, size: tuple[int, int]) -> list[tuple[Path, np.ndarray, np.ndarray, np.ndarray]]:
    """(image file, labels, class plane, codes on the default store grid) per image."""
    width, height = size
    grid = store_grid(GenerateConfig())
    inputs = []
    for i in range(images):
        path = tmp / "in" / f"{i:03d}.png"
        write_image_png(path, render_scene(np.random.default_rng(100 + i), width, height, version=1).rgb)
        labels, classes, codes = teacher_like_store(width, height, grid, seed=i)
        inputs.append((path, labels, classes, codes))
    return inputs


def _histogram(classes: np.ndarray, codes: np.ndarray) -> str:
    """The row's encoded (class, code) histogram (counted on the device in generate)."""
    levels = len(store_grid(GenerateConfig())) + 1
    counts = np.bincount((classes.astype(np.int64) * levels + codes).ravel(), minlength=256 * levels)
    return confidence.encode_histogram(counts.reshape(256, levels)[:19])


def _thread_ms(fn: Any) -> float:
    start = time.thread_time()
    fn()
    return 1000 * (time.thread_time() - start)


def _write_ms(
    out: Path, image_id: str, labels: np.ndarray, classes: np.ndarray, codes: np.ndarray, settings: GenerateConfig
) -> float:
    """CPU ms of writing one image's files as finalise_image does (temp file, fsync, rename), encoders excluded."""
    png = encode_label_png(labels, settings.png_compress_level)
    files = confidence.array_files(classes, codes)
    maps = {k: encode_attention(v) for k, v in attention_like_maps(codes, settings.scales).items()}

    def write() -> None:
        if settings.confidence:
            confidence.write_array(out, image_id, files)
        if settings.attention:
            for key, data in maps.items():
                atomic_write_bytes(out / "attention" / f"{image_id}_{key}.png", data)
        atomic_write_bytes(out / "labels" / f"{image_id}.png", png)

    return _thread_ms(write)


def _finalise_ms(
    out: Path,
    image_id: str,
    path: Path,
    labels: np.ndarray,
    classes: np.ndarray,
    codes: np.ndarray,
    cfg: GenerateConfig,
) -> float:
    """CPU ms of one whole finalise_image (what an encoder thread does per image, the histogram's encoding
    included)."""
    settings = WriteSettings(out=out, num_classes=19, shard="0/1", confidence=cfg.confidence)
    attention = attention_like_maps(codes, cfg.scales) if cfg.attention else {}
    sample = Sample(id=image_id, image=path)

    def finalise() -> None:
        histogram = _histogram(classes, codes) if cfg.confidence else None
        finalise_image(
            settings,
            sample,
            labels,
            codes,
            0.9,
            attention,
            0.0,
            None,
            classes=classes,
            histogram=histogram,
            exif_transposed=False,
        )

    return _thread_ms(finalise)


def _variant(tmp: Path, inputs: list, cfg: GenerateConfig, repeats: int) -> dict[str, Any]:
    parts: dict[str, list[float]] = {name: [] for name in PARTS}
    writes, whole = [], []
    cpu_start = time.process_time()
    for i, (path, labels, classes, codes) in enumerate(inputs):
        cost = measure_host_cost(path, cfg, labels=labels, codes=codes, classes=classes, repeats=repeats)
        for name, seconds in cost.seconds.items():
            parts[name].append(1000 * seconds)
        writes.append(min(_write_ms(tmp / f"w{r}", f"img{i}", labels, classes, codes, cfg) for r in range(repeats)))
        whole.append(
            min(_finalise_ms(tmp / f"f{r}", f"img{i}", path, labels, classes, codes, cfg) for r in range(repeats))
        )
    n = len(inputs)
    process_ms = 1000 * (time.process_time() - cpu_start) / n
    part_ms = {name: statistics.mean(values) if values else 0.0 for name, values in parts.items()}
    part_ms["file_writes"] = statistics.mean(writes)
    total = sum(part_ms.values())
    finalise_parts = ("statistics", "label_encode", "confidence_encode", "attention_encode", "hashes", "file_writes")
    return {
        "core_ms": part_ms,
        "total_core_ms": total,
        "images_per_core_s": 1000 / total,
        "decode_side_core_ms": sum(part_ms[k] for k in ("input_fingerprint", "image_decode", "input_preparation")),
        "encode_side_core_ms": total
        - sum(part_ms[k] for k in ("input_fingerprint", "image_decode", "input_preparation")),
        # one whole finalise_image per image vs the sum of its parts as measured apart (a check of the split)
        "finalise_image_core_ms": statistics.mean(whole),
        "finalise_parts_sum_core_ms": sum(part_ms[k] for k in finalise_parts) + part_ms["manifest_row"],
        "process_cpu_ms_per_image_all_repeats": process_ms,
    }


def _profile(tmp: Path, inputs: list, cfg: GenerateConfig, top: int) -> list[dict[str, Any]]:
    """cProfile of decode + fingerprint + finalise_image per image: the functions with the most own time."""
    settings = WriteSettings(out=tmp / "profiled", num_classes=19, shard="0/1", confidence=cfg.confidence)
    profiler = cProfile.Profile(time.thread_time)  # CPU time of this thread, as the parts are measured
    profiler.enable()
    for i, (path, labels, classes, codes) in enumerate(inputs):
        fingerprint = input_fingerprint(path)
        image, turned = read_image_upright(path)
        np.stack([image]).copy()
        finalise_image(
            settings,
            Sample(id=f"p{i}", image=path),
            labels,
            codes,
            0.9,
            {},
            0.0,
            fingerprint,
            classes=classes,
            histogram=_histogram(classes, codes) if cfg.confidence else None,
            exif_transposed=turned,
        )
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:top]  # type: ignore[attr-defined]
    return [
        {
            "function": f"{Path(file).name}:{line}({name})",
            "own_core_ms_per_image": 1000 * own / len(inputs),
            "share": own / total if total else 0.0,
            "calls_per_image": calls / len(inputs),
        }
        for (file, line, name), (_, calls, own, _cum, _callers) in rows
    ]


def bench_hostwork(images: int = 2, repeats: int = 3, size: tuple[int, int] = SIZE, top: int = 12) -> dict[str, Any]:
    """Per-part core-ms for each of :data:`VARIANTS`, and a profile of the first."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        inputs = _inputs(tmp, images, size)
        variants = {label: _variant(tmp, inputs, cfg, repeats) for label, cfg in VARIANTS.items()}
        profile = _profile(tmp, inputs, next(iter(VARIANTS.values())), top)
        file_mb = statistics.mean(path.stat().st_size for path, *_ in inputs) / 1e6
    return {
        "size": f"{size[0]}x{size[1]}",
        "images": images,
        "repeats": repeats,
        "input_png_mb": round(file_mb, 2),
        "ignored_fraction": statistics.mean(float((labels == 255).mean()) for _, labels, *_ in inputs),
        "parts": {**PARTS, "file_writes": "the label, confidence and attention files: temp file, fsync, rename"},
        "settings": {
            "png_compress_level": GenerateConfig().png_compress_level,
            "zstd_level": confidence.ZSTD_LEVEL,
            "centroid_tile": GenerateConfig().centroid_tile,
        },
        "variants": variants,
        "profile_top": profile,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(bench_hostwork(args.images, args.repeats), indent=2, default=float))


if __name__ == "__main__":
    main()
