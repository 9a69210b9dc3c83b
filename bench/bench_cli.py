"""How long ``autolabel --help`` takes: fresh interpreters, the time until the help text is printed."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

COMMANDS = (("--help",), ("generate", "--help"), ("train-teacher", "--help"), ("evaluate", "--help"))


def _seconds(args: tuple[str, ...]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "autolabel", *args], check=True, capture_output=True)
    return time.perf_counter() - start


def bench_cli_startup(repeats: int) -> dict:
    """Median wall seconds of each help command over ``repeats`` fresh processes, the slowest of them, and
    what a bare interpreter and one that imports torch take on the same machine, for scale."""
    _seconds(("--help",))  # warm the file cache: the figure is about imports, not the disk
    medians = {" ".join(args): statistics.median(_seconds(args) for _ in range(repeats)) for args in COMMANDS}

    def bare(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        return time.perf_counter() - start

    return {
        "median_s": medians,
        "slowest_median_s": max(medians.values()),
        "python_s": statistics.median(bare("pass") for _ in range(repeats)),
        "import_torch_s": statistics.median(bare("import torch") for _ in range(repeats)),
        "repeats": repeats,
    }
