"""SIGKILL `autolabel generate` at seeded random moments and rerun: nothing lost, nothing duplicated, and at
most one batch of finished work redone (the journal keeps every finished image's row)."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from autolabel import labelset
from autolabel.labelset.lock import LOCKS_DIR

from .helpers import (
    BATCH_SIZE,
    assert_verified,
    autolabel_cmd,
    cli_env,
    generate_args,
    labelset_state,
    run_cli,
    temp_leftovers,
)

MIN_KILLS = 20
SEED = 20261124
STARTUP_WINDOW = 3.0  # seconds after starting the process
WRITING_WINDOW = 0.6  # seconds after it first wrote into OUT: a short window, so runs rarely finish


def _start(teacher: Path, city: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        autolabel_cmd(*generate_args(teacher, city, out)),
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_until_writing(proc: subprocess.Popen, out: Path, since: float, timeout: float = 120) -> bool:
    """Wait until the process has written something into OUT (True) or has exited (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if out.is_dir() and any(_mtime(p) >= since for p in out.rglob("*") if LOCKS_DIR not in p.parts):
            return True  # an output (the shard lock a run takes first is not one)
        time.sleep(0.02)
    raise AssertionError("generate wrote nothing in time")


def _label_files(out: Path) -> dict[Path, tuple[int, int]]:
    """Each label file's identity: inode and change time (an atomic rewrite gives a new inode)."""
    found = {}
    for path in (out / labelset.LABELS_DIR).rglob("*.png") if out.is_dir() else ():
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        found[path] = (stat.st_ino, stat.st_ctime_ns)
    return found


def _redone(before: dict[Path, tuple[int, int]], out: Path) -> int:
    """How many of the labels on disk at a kill the next run wrote again (work the kill lost)."""
    after = _label_files(out)
    return sum(after.get(path, ident) != ident for path, ident in before.items())


def _mtime(path: Path) -> float:
    """Modification time, or -inf for a file that is gone (a temp file renamed away while we look)."""
    try:
        return path.lstat().st_mtime
    except FileNotFoundError:
        return float("-inf")


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun_gives_the_uninterrupted_result(teacher, city, reference, tmp_path):
    rng = random.Random(SEED)
    kills, campaigns, kills_with_parts = 0, 0, 0
    redone: list[int] = []  # per kill: labels on disk at the kill that the next run wrote again
    while kills < MIN_KILLS:
        # one campaign: a fresh OUT, killed again and again until a run gets to finish
        out = tmp_path / f"campaign{campaigns}"
        campaigns += 1
        at_kill: dict[Path, tuple[int, int]] | None = None
        while True:
            since = time.time() - 0.01  # file times may be a little coarser than this clock
            proc = _start(teacher, city, out)
            if rng.random() < 0.2:
                delay = rng.uniform(0.0, STARTUP_WINDOW)  # while it imports, loads the teacher, plans
            elif _wait_until_writing(proc, out, since):
                delay = rng.uniform(0.0, WRITING_WINDOW)  # while it labels and writes
            else:
                delay = 0.0
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                pass
            if proc.poll() is not None:
                assert proc.returncode == 0
                if at_kill is not None:
                    redone.append(_redone(at_kill, out))
                break  # this run got to finish
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if at_kill is not None:
                redone.append(_redone(at_kill, out))
            at_kill = _label_files(out)
            kills += 1
            if any((out / labelset.MANIFEST_DIR).glob("*.parquet")):
                kills_with_parts += 1
        assert temp_leftovers(out) == []
        if kills >= MIN_KILLS:
            run_cli("verify", str(out))  # the command itself, once (a CLI start costs seconds)
        assert_verified(out)
        state = labelset_state(out)
        assert state["files"] == reference["files"]
        assert state["rows"] == reference["rows"]
    print(
        f"{kills} kills ({kills_with_parts} after a manifest part existed) over {campaigns} campaigns; labels "
        f"redone per kill: max {max(redone)}, total {sum(redone)} ({redone})"
    )
    assert kills >= MIN_KILLS
    # a kill loses at most one batch: the images whose files were final but whose row was not journaled yet
    assert max(redone) <= BATCH_SIZE, redone
    assert kills_with_parts >= MIN_KILLS // 2, "most kills should land after some chunks were finished"
