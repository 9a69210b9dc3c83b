"""SIGKILL `autolabel generate` at seeded random moments and rerun: nothing lost, nothing duplicated."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from autolabel.generate import labelset

from .helpers import autolabel_cmd, cli_env, generate_args, labelset_state, run_cli, temp_leftovers

MIN_KILLS = 20
SEED = 20261124


def _start(teacher: Path, city: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(autolabel_cmd(*generate_args(teacher, city, out)), env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for_work(proc: subprocess.Popen, out: Path, timeout: float = 120) -> bool:
    """Wait until the run has claimed OUT (the teacher is loaded and writing starts); False if it exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (out / labelset.LABELSET_FILE).exists():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    raise AssertionError("generate did not start writing in time")


def _work_seconds(teacher: Path, city: Path, out: Path) -> float:
    """How long an uninterrupted run writes for (from claiming OUT to exiting): the window kills land in."""
    proc = _start(teacher, city, out)
    _wait_for_work(proc, out)
    begin = time.monotonic()
    assert proc.wait(timeout=300) == 0
    return time.monotonic() - begin


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun_gives_the_uninterrupted_result(teacher, city, reference,
                                                                               tmp_path):
    window = _work_seconds(teacher, city, tmp_path / "timing")
    rng = random.Random(SEED)
    kills, campaigns = 0, 0
    while kills < MIN_KILLS:
        # one campaign: a fresh OUT, killed again and again until a run gets to finish
        out = tmp_path / f"campaign{campaigns}"
        campaigns += 1
        while True:
            proc = _start(teacher, city, out)
            if not _wait_for_work(proc, out) and proc.returncode == 0:
                break  # nothing was left to do: it finished while loading
            time.sleep(rng.uniform(0.0, window))
            if proc.poll() is not None:
                assert proc.returncode == 0
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        assert temp_leftovers(out) == []
        run_cli("verify", str(out))
        state = labelset_state(out)
        assert state["files"] == reference["files"]
        assert state["rows"] == reference["rows"]
    assert kills >= MIN_KILLS
