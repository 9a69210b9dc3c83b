"""`make soak`: many tiny synthetic images through `autolabel generate` on 2 Dask workers, killed twice.

Steps: a synthetic city (``--images`` train_extra images), a tiny random teacher, then `autolabel generate
--workers 2` in its own process group, SIGKILLed as a whole (coordinator and workers, like a lost node) when
the manifest has passed 1/3 and 2/3 of the images, and rerun until it finishes. The resident memory of the
whole process tree is sampled every second. After each kill the labels on disk and the journal rows not yet in a
manifest part are counted, and after the next run how many of those labels it wrote again (work the kill
lost: at most a batch per worker). Finally `autolabel manifest` and `autolabel verify`, and a JSON report in
WORK/soak.json: wall times, peak RSS over time, manifest rows, labels redone, verify result.

    python scripts/soak.py [--work runs/soak] [--images 20000] [--size 64x32] [--workers 2] [--interrupts 2]

Everything is written under ``--work``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("soak")

PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss_bytes(root_pid: int) -> tuple[int, int]:
    """Resident memory of ``root_pid`` alone and of it with all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            statm = Path(f"/proc/{entry}/statm").read_text().split()
        except OSError:
            continue  # the process ended while we looked
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = int(statm[1]) * PAGE
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return rss.get(root_pid, 0), total


def manifest_rows(out: Path) -> int:
    """Rows in the manifest parts written so far (cheap: parquet footers only)."""
    import pyarrow.parquet as pq

    total = 0
    for part in sorted((out / "manifest").glob("part-*.parquet")):
        try:
            total += pq.ParquetFile(part).metadata.num_rows
        except (OSError, ValueError):
            continue
    return total


def label_files(out: Path) -> dict[str, tuple[int, int]]:
    """Each label file's identity (inode, change time): an atomic rewrite gives it a new inode."""
    found = {}
    for path in (out / "labels").rglob("*.png") if (out / "labels").is_dir() else ():
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        found[str(path)] = (stat.st_ino, stat.st_ctime_ns)
    return found


def journal_lines(out: Path) -> int:
    """Rows in journals of interrupted runs (what the next run moves into the manifest)."""
    total = 0
    for path in (out / "manifest").glob(".journal-*.jsonl"):
        with open(path, "rb") as fh:
            total += sum(1 for _ in fh)
    return total


def prepare_inputs(work: Path, images: int, size: tuple[int, int], seed: int) -> tuple[Path, Path]:
    """The synthetic city and the tiny teacher (reused when already there)."""
    import torch

    from autolabel.classes import CITYSCAPES
    from autolabel.config import ModelConfig
    from autolabel.models import build_model
    from autolabel.models.checkpoint import save_checkpoint
    from autolabel.synth import make_synthetic_city

    city, teacher = work / "city", work / "teacher.pt"
    if not (city / "synth.json").exists():
        start = time.perf_counter()
        make_synthetic_city(city, train=1, val=1, extra=images, size=size, seed=seed, workers=2)
        log.info("synthetic city of %d images in %.0fs", images, time.perf_counter() - start)
    if not teacher.exists():
        torch.manual_seed(seed)
        cfg = ModelConfig(width="tiny", num_classes=19, infer_scales=(0.5, 1.0))
        save_checkpoint(teacher, build_model(cfg).eval(), cfg, CITYSCAPES.names)
    return city, teacher


def run_once(cmd: list[str], out: Path, kill_at_rows: int | None, timeline: list[dict], t0: float) -> dict:
    """One generate run, sampled every second; SIGKILL its process group once ``kill_at_rows`` rows exist."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = False
    peak = 0
    while proc.poll() is None:
        coordinator, rss = tree_rss_bytes(proc.pid)
        rows = manifest_rows(out)
        peak = max(peak, rss)
        timeline.append(
            {
                "t": round(time.perf_counter() - t0, 1),
                "rss_mb": round(rss / 2**20, 1),
                "coordinator_mb": round(coordinator / 2**20, 1),
                "rows": rows,
            }
        )
        if kill_at_rows is not None and rows >= kill_at_rows:
            os.killpg(proc.pid, signal.SIGKILL)  # coordinator and Dask workers at once, like a lost node
            killed = True
            break
        time.sleep(1.0)
    output = proc.communicate()[0]
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "killed": killed,
        "returncode": proc.returncode,
        "rows_after": manifest_rows(out),
        "peak_rss_mb": round(peak / 2**20, 1),
        "tail": output.strip().splitlines()[-3:] if output else [],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/soak"))
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--size", default="64x32", help="WxH of the synthetic images")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--interrupts", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    width, height = (int(v) for v in args.size.lower().split("x"))
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    city, teacher = prepare_inputs(work, args.images, (width, height), args.seed)
    out = work / "labels"
    autolabel = [sys.executable, "-m", "autolabel"]
    cmd = [
        *autolabel,
        "generate",
        "--teacher",
        str(teacher),
        "--data",
        f"cityscapes:{city}:train_extra",
        "--out",
        str(out),
        "--scales",
        "0.5,1.0",
        "--device",
        "cpu",
        "--batch-size",
        "8",
        "--dask-workers",
        str(args.workers),
    ]
    timeline: list[dict] = []
    runs = []
    t0 = time.perf_counter()
    kill_points = [args.images * (k + 1) // (args.interrupts + 1) for k in range(args.interrupts)]
    at_kill: dict[str, tuple[int, int]] | None = None
    for kill_at in [*kill_points, None]:
        run = run_once(cmd, out, kill_at, timeline, t0)
        if at_kill is not None:  # labels on disk at the last kill that this run wrote again
            now = label_files(out)
            run["labels_redone_from_last_kill"] = sum(now.get(p, ident) != ident for p, ident in at_kill.items())
        if run["killed"]:
            at_kill = label_files(out)
            run["labels_on_disk_at_kill"] = len(at_kill)
            run["journal_rows_at_kill"] = journal_lines(out)
        log.info("run: %s", run)
        runs.append(run)
        if kill_at is None and run["returncode"] != 0:
            break
    wall = time.perf_counter() - t0
    merged = subprocess.run([*autolabel, "manifest", str(out)], capture_output=True, text=True)
    verify = subprocess.run([*autolabel, "verify", str(out)], capture_output=True, text=True)
    import pyarrow.parquet as pq

    rows = pq.read_metadata(out / "manifest.parquet").num_rows if merged.returncode == 0 else None
    report = {
        "images": args.images,
        "size": [width, height],
        "workers": args.workers,
        "interrupts": sum(r["killed"] for r in runs),
        "runs": runs,
        "wall_seconds": round(wall, 1),
        "images_per_second": round(args.images / wall, 1),
        "manifest_rows": rows,
        "rows_ok": rows == args.images,
        "labels_redone_per_kill": [
            r["labels_redone_from_last_kill"] for r in runs if "labels_redone_from_last_kill" in r
        ],
        "verify_returncode": verify.returncode,
        "verify_summary": verify.stdout.strip().splitlines()[-1:] if verify.stdout else [],
        "peak_rss_mb": max((s["rss_mb"] for s in timeline), default=0.0),
        "rss_timeline": timeline,
    }
    (work / "soak.json").write_text(json.dumps(report, indent=1) + "\n")
    log.info(
        "soak: %d images, %d interrupts, wall %.0fs, manifest rows %s, verify rc %d, peak RSS %.0f MB -> %s",
        args.images,
        report["interrupts"],
        wall,
        rows,
        verify.returncode,
        report["peak_rss_mb"],
        work / "soak.json",
    )
    return 0 if report["rows_ok"] and verify.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
