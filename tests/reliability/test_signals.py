"""SIGTERM and SIGINT finish the batch in flight, write its rows, say so in one line and exit 143 / 130.

Before: SIGTERM exited 143 silently and SIGINT exited 1 with "Aborted!", both losing every unfinished chunk's
finished images (their labels were on disk, their rows nowhere), which the rerun then redid.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from autolabel import labelset
from autolabel.labelset import journal

from .helpers import (
    N_EXTRA,
    assert_verified,
    autolabel_cmd,
    cli_env,
    generate_args,
    labelset_state,
    run_cli,
    temp_leftovers,
)


def _labels_on_disk(out: Path) -> int:
    return len(list((out / labelset.LABELS_DIR).rglob("*.png"))) if out.is_dir() else 0


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_a_signal_stops_after_the_batch_in_flight_and_a_rerun_completes(
    signum, code, teacher, city, reference, tmp_path
):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        autolabel_cmd(*generate_args(teacher, city, out)),
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while _labels_on_disk(out) == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, (proc.returncode, stderr[-2000:])
    lines = [line for line in stderr.splitlines() if "rerun to continue" in line]
    assert len(lines) == 1, stderr[-2000:]
    finished = int(re.fullmatch(r"stopped after (\d+) images; rerun to continue", lines[0].strip()).group(1))
    assert 1 <= finished < N_EXTRA and "Aborted" not in stderr and "Traceback" not in stderr
    # every finished image's row is in the manifest (no journal left), and each of those labels is on disk
    assert journal.journal_paths(out) == [] and temp_leftovers(out) == []
    rows = labelset.read_manifest(out, status=None).to_pylist()
    assert len(rows) == finished == _labels_on_disk(out)
    rerun = run_cli(*generate_args(teacher, city, out))
    assert f"{N_EXTRA - finished} labelled, {finished} already done" in rerun.stdout
    assert_verified(out)
    assert labelset_state(out) == reference
