"""The planner's predictions against real runs: ``generate --dry-run --json`` vs ``generate`` on the same images.

    python bench/bench_planner.py                               # the full table (about an hour on 2 idle cores)
    python bench/bench_planner.py --models tiny --sizes 512x256 --images 5
    nice python bench/bench_planner.py --out results/planner.json

For each teacher width, image size and tiling (whole, or tile size = the image height: windows of half the
height at scale 2.0) at scales 0.5/1/2 on the CPU: the dry run in a fresh ``autolabel`` process (exactly
what a user runs), then ``generate`` of the same images in another fresh process that notes its resident set
after loading the teacher and its high-water mark after the run. Ratios predicted / measured:

- time: the dry run's predicted seconds for the images (the cold first one's extra, then seconds per image for
  each) / the run's seconds (``run_generate``, teacher already loaded);
- peak: the dry run's forward peak + images in flight + what the first forward keeps / the run's high-water
  growth over the loaded teacher;
- model time, model peak: the same from the cost model alone (the probes at reduced sizes, extrapolated).

Prints a Markdown table and JSON. Absolute seconds need an otherwise idle machine; memory does not.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("bench.planner")

SCALES = "0.5,1.0,2.0"
MODELS = ("tiny", "w18_small")
SIZES = ((512, 256), (1024, 512), (2048, 1024))
# W18-small at 2048x1024 whole takes the better part of a minute per image on 2 cores, tiled about twice that
FEWER = {("w18_small", (2048, 1024)): 5}
GOAL = 0.25  # |ratio - 1| (or |1 / ratio - 1|) of every time and peak ratio
ROOT = Path(__file__).resolve().parents[1]  # the checkout the child processes import autolabel from

# The real run: the teacher is loaded first (as the dry run's start-up covers it), then the resident set is
# noted, then generate labels every image; prints the seconds and the high-water growth (bytes).
_RUN_CHILD = """
import json, sys, time
from pathlib import Path
from autolabel.models.device import keep_freed_memory
keep_freed_memory()  # what the autolabel command does (autolabel/cli/base.py)
from autolabel.config import DataConfig, GenerateConfig
from autolabel.data.sources import parse_source
from autolabel.generate.costs import _proc_status
from autolabel.generate.runner import GenerateJob, run_generate
from autolabel.generate.teacher import Teacher
checkpoint, spec, out, tile = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
settings = GenerateConfig(device="cpu", scales=(0.5, 1.0, 2.0), tile_size=tile)
source = parse_source(spec, flag="--data", config=DataConfig(), split="train_extra")
samples = source.discover(exclude=out)
teacher = Teacher.load(checkpoint, settings, DataConfig())
before = _proc_status()["VmRSS"]
start = time.perf_counter()
result = run_generate(GenerateJob(teacher=checkpoint, out=out, generate=settings, source=source), samples,
                      teacher=teacher)
seconds = time.perf_counter() - start
peak = _proc_status()["VmHWM"]
print(json.dumps({"seconds": seconds, "images": result.ok, "rss_before": before, "growth": peak - before,
                  "errors": len(result.errors)}))
"""


@dataclass(frozen=True)
class Case:
    model: str
    size: tuple[int, int]  # (W, H)
    tile_size: int  # 0: whole
    images: int

    @property
    def name(self) -> str:
        mode = f"tile {self.tile_size}" if self.tile_size else "whole"
        return f"{self.model} {self.size[0]}x{self.size[1]} {mode}"


def cases(models: Sequence[str], sizes: Sequence[tuple[int, int]], modes: Sequence[str], images: int) -> list[Case]:
    """Every combination; tiled means tile size = the image height (windows of H/2 at scale 2.0)."""
    result = []
    for model in models:
        for size in sizes:
            for mode in modes:
                count = min(images, FEWER.get((model, size), images))
                result.append(Case(model, size, size[1] if mode == "tiled" else 0, count))
    return result


def make_images(root: Path, size: tuple[int, int], count: int) -> str:
    """A synthetic city with ``count`` extra images of ``size``; its --data spec."""
    from autolabel.synth import make_synthetic_city

    city = root / f"city_{size[0]}x{size[1]}_{count}"
    if not city.exists():
        make_synthetic_city(city, train=1, val=1, extra=count, size=size, seed=0, workers=0)
    return f"cityscapes:{city}:train_extra"


def make_teacher(root: Path, width: str) -> Path:
    """A randomly initialised teacher of ``width`` (time and memory do not depend on the weights)."""
    import torch

    from autolabel.classes import CITYSCAPES
    from autolabel.config import ModelConfig
    from autolabel.models.build import build_model
    from autolabel.models.checkpoint import save_checkpoint

    path = root / f"{width}.pt"
    if not path.exists():
        torch.manual_seed(0)
        cfg = ModelConfig(width=width, num_classes=19)
        save_checkpoint(path, build_model(cfg), cfg, CITYSCAPES.names)
    return path


def dry_run(teacher: Path, spec: str, out: Path, tile_size: int) -> dict[str, Any]:
    """``autolabel generate --dry-run --json`` in a fresh process."""
    args = [sys.executable, "-m", "autolabel", "generate", "--teacher", str(teacher), "--data", spec,
            "--out", str(out), "--device", "cpu", "--scales", SCALES, "--tile-size", str(tile_size),
            "--dry-run", "--json"]  # fmt: skip
    proc = subprocess.run(args, check=True, capture_output=True, text=True, env=_env())
    return json.loads(proc.stdout)


def real_run(teacher: Path, spec: str, out: Path, tile_size: int) -> dict[str, Any]:
    """``generate`` of every image in a fresh process; seconds and high-water growth."""
    args = [sys.executable, "-c", _RUN_CHILD, str(teacher), spec, str(out), str(tile_size)]
    proc = subprocess.run(args, check=True, capture_output=True, text=True, env=_env())
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _env() -> dict[str, str]:
    """This environment with this checkout first on the path (not whichever autolabel is installed)."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


def measure_case(case: Case, root: Path) -> dict[str, Any]:
    """One row: the plan, the run, and the ratios."""
    teacher = make_teacher(root, case.model)
    spec = make_images(root, case.size, case.images)
    out = root / f"out_{case.model}_{case.size[0]}x{case.size[1]}_{case.tile_size}"
    start = time.perf_counter()
    plan = dry_run(teacher, spec, out, case.tile_size)
    plan_seconds = time.perf_counter() - start
    run = real_run(teacher, spec, out, case.tile_size)
    timing, memory = plan["timing"], plan["memory"]
    n = run["images"]

    def run_seconds(per_image: float) -> float:
        return timing["first_image_extra_seconds"] + n * per_image

    predicted_time = run_seconds(timing["seconds_per_image"])
    model_time = run_seconds(timing["model_seconds_per_image"])
    # the run's growth over the loaded teacher includes what its first forward keeps for good
    extra = memory["host_buffer_bytes"] + memory["first_forward_bytes"]
    predicted_peak = memory["forward_peak_bytes"] + extra
    model_peak = (memory["model_forward_peak_bytes"] or 0) + extra
    return {
        "case": case.name,
        "model": case.model,
        "size": list(case.size),
        "tile_size": case.tile_size,
        "images": n,
        "measured": timing["measured"],
        "plan_seconds": round(plan_seconds, 1),
        "predicted_seconds": round(predicted_time, 2),
        "run_seconds": round(run["seconds"], 2),
        "predicted_peak_bytes": predicted_peak,
        "run_peak_bytes": run["growth"],
        "time_ratio": predicted_time / run["seconds"],
        "peak_ratio": predicted_peak / run["growth"],
        "model_time_ratio": model_time / run["seconds"],
        "model_peak_ratio": model_peak / run["growth"],
        "plan": {"timing": timing, "memory": memory, "model": plan["model"], "tiling": plan["tiling"]},
        "run": run,
    }


def worst(rows: Sequence[dict[str, Any]], keys: Sequence[str] = ("time_ratio", "peak_ratio")) -> float:
    """The largest relative miss over ``keys``: max(r, 1/r) - 1."""
    return max((max(r[k], 1 / r[k]) - 1 for r in rows for k in keys), default=0.0)


def bench_planner(
    models: Sequence[str] = MODELS,
    sizes: Sequence[tuple[int, int]] = SIZES,
    modes: Sequence[str] = ("whole", "tiled"),
    images: int = 20,
) -> dict[str, Any]:
    """Every case of :func:`cases`, measured one after another (nothing else of ours runs meanwhile)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-planner-") as tmp:
        for case in cases(models, sizes, modes, images):
            log.info("planner: %s, %d images", case.name, case.images)
            rows.append(measure_case(case, Path(tmp)))
            log.info("planner: %s", row_text(rows[-1]))
    return {
        "rows": rows,
        "worst_miss": worst(rows),
        "worst_model_miss": worst(rows, ("model_time_ratio", "model_peak_ratio")),
        "goal_miss": GOAL,
        "scales": SCALES,
        "fewer_images": {f"{m} {w}x{h}": n for (m, (w, h)), n in FEWER.items()},
    }


def row_text(row: dict[str, Any]) -> str:
    return (
        f"time {row['time_ratio']:.2f}, peak {row['peak_ratio']:.2f}, model time {row['model_time_ratio']:.2f}, "
        f"model peak {row['model_peak_ratio']:.2f}"
    )


def table(result: dict[str, Any]) -> str:
    """The Markdown table of predicted / measured ratios."""
    lines = [
        "| case | images | dry run | time | peak | model time | model peak | run s | run peak MiB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['case']} | {r['images']} | {r['measured']} | {r['time_ratio']:.2f} | {r['peak_ratio']:.2f} | "
            f"{r['model_time_ratio']:.2f} | {r['model_peak_ratio']:.2f} | {r['run_seconds']:.1f} | "
            f"{r['run_peak_bytes'] / 2**20:.0f} |"
        )
    return "\n".join(lines)


def _size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in SIZES))
    parser.add_argument("--modes", default="whole,tiled")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    result = bench_planner(
        [m for m in args.models.split(",") if m],
        [_size(s) for s in args.sizes.split(",") if s],
        [m for m in args.modes.split(",") if m],
        args.images,
    )
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(table(result))
    print(f"\nworst miss {result['worst_miss']:.2f} (goal <= {GOAL}); model alone {result['worst_model_miss']:.2f}")


if __name__ == "__main__":
    main()
