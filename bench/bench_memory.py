"""Memory of ``generate``: peak RSS for many vs few images, and tiled vs whole-image inference at scale 2.0.

    python bench/bench_memory.py tiled [--size 2048x1024] [--tile-size 1024]
    python bench/bench_memory.py rss [--images 100,1000]

Every measurement runs in a fresh Python process and reads its ``ru_maxrss``, so nothing one run allocated
(and the allocator kept) can hide in another's figure. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_generate import _tiny_teacher, bench_rss

# One child per measurement: load the teacher, decode nothing (the image is made in memory), note the RSS,
# label one image, and report the RSS before and the peak after (MiB).
_TILED_CHILD = """
import json, sys
import numpy as np, torch
from pathlib import Path
sys.path.insert(0, sys.argv[5])
from common import current_rss_mb, peak_rss_mb, timed
from autolabel.config import DataConfig, GenerateConfig
from autolabel.synth import render_scene
from autolabel.generate.teacher import Teacher
torch.set_num_threads(int(sys.argv[6]))
checkpoint, width, height, tile = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
settings = GenerateConfig(device="cpu", scales=(0.5, 1.0, 2.0), tile_size=tile, confidence=False)
teacher = Teacher.load(checkpoint, settings, DataConfig())
image = render_scene(np.random.default_rng(0), width, height, version=1).rgb[None]  # (1, H, W, 3) uint8
before = current_rss_mb()
with timed() as t:
    labels = teacher.predict(image).labels[0]
np.save(sys.argv[7], labels)
print(json.dumps({"rss_before_mb": before, "peak_rss_mb": peak_rss_mb(), "seconds": t.wall}))
"""


def _run_child(
    checkpoint: Path, size: tuple[int, int], tile_size: int, labels_out: Path, threads: int
) -> dict[str, Any]:
    width, height = size
    args = [
        sys.executable,
        "-c",
        _TILED_CHILD,
        str(checkpoint),
        str(width),
        str(height),
        str(tile_size),
        str(Path(__file__).parent),
        str(threads),
        str(labels_out),
    ]
    proc = subprocess.run(args, check=True, capture_output=True, text=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["inference_peak_mb"] = result["peak_rss_mb"] - result["rss_before_mb"]
    return result


def bench_tiled(size: tuple[int, int] = (2048, 1024), tile_size: int = 1024, threads: int = 1) -> dict[str, Any]:
    """Peak RSS of labelling one ``size`` image at scales (0.5, 1, 2), whole vs in ``tile_size`` windows.

    ``tile_size`` bounds the largest *scaled* side, so at scale 2.0 a window covers ``tile_size / 2`` input
    pixels. The peak counted is what inference adds on top of the loaded teacher and the decoded image.
    """
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _tiny_teacher(tmp / "t.pt")
        whole = _run_child(tmp / "t.pt", size, 0, tmp / "whole.npy", threads)
        tiled = _run_child(tmp / "t.pt", size, tile_size, tmp / "tiled.npy", threads)
        # tiles see less context near their edges; the labels should still mostly agree
        agreement = float((np.load(tmp / "whole.npy") == np.load(tmp / "tiled.npy")).mean())
    return {
        "size": f"{size[0]}x{size[1]}",
        "scales": [0.5, 1.0, 2.0],
        "tile_size": tile_size,
        "whole": whole,
        "tiled": tiled,
        "label_agreement": agreement,
        "ratio_tiled_to_whole": tiled["inference_peak_mb"] / whole["inference_peak_mb"],
    }


def bench_rss_growth(counts: tuple[int, int] = (100, 1000), size: tuple[int, int] = (128, 64)) -> dict[str, Any]:
    """Peak RSS of ``generate`` over ``counts[1]`` images / over ``counts[0]`` (each in a fresh process)."""
    result = bench_rss(counts, width=size[0], height=size[1])
    few, many = (result["peak_rss_mb"][n] for n in counts)
    return {**result, "images": list(counts), "ratio_many_to_few": many / few}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["tiled", "rss", "all"])
    parser.add_argument("--size", default="2048x1024", help="tiled: image size WxH")
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--images", default="100,1000", help="rss: the two image counts")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    report = {}
    if args.what in ("tiled", "all"):
        width, height = (int(v) for v in args.size.lower().split("x"))
        report["tiled"] = bench_tiled((width, height), args.tile_size, args.threads)
    if args.what in ("rss", "all"):
        few, many = (int(v) for v in args.images.split(","))
        report["rss"] = bench_rss_growth((few, many))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
