"""A Dask worker process dies mid-run: the run completes with no duplicate and no missing rows."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from distributed import Client, LocalCluster

from autolabel import labelset
from autolabel.cli import main
from autolabel.fs import is_temp_name

from .helpers import N_EXTRA, assert_verified, generate_args, labelset_state, temp_leftovers


def writing_temp_file(pid: int) -> bool:
    """Whether process ``pid`` holds a temporary output file open (an atomic write in flight)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if is_temp_name(Path(os.readlink(f"/proc/{pid}/fd/{fd}")).name):
                return True
        except OSError:
            continue
    return False


def kill_a_worker_mid_write(out: Path, pids: list[int], killed: list[int], timeout: float = 120) -> None:
    """SIGKILL the first worker caught with a temporary file open, or, should none be caught, the first worker
    once a third of the labels are written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        writer = next((pid for pid in pids if writing_temp_file(pid)), None)
        if writer is None and len(list((out / labelset.LABELS_DIR).rglob("*.png"))) >= N_EXTRA // 3:
            writer = pids[0]
        if writer is not None:
            os.kill(writer, signal.SIGKILL)
            killed.append(writer)
            return
        time.sleep(0.001)


@pytest.mark.slow
def test_worker_killed_mid_run(teacher, city, reference, tmp_path):
    out = tmp_path / "out"
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
        ) as cluster,
        Client(cluster) as client,
    ):
        pids = sorted(client.run(os.getpid).values())
        killed: list[int] = []
        killer = threading.Thread(target=kill_a_worker_mid_write, args=(out, pids, killed))
        killer.start()
        result = CliRunner().invoke(
            main, [*generate_args(teacher, city, out), "--scheduler", cluster.scheduler_address]
        )
        killer.join()
        assert killed, "the run finished before a worker could be killed"
        assert result.exit_code == 0, (result.output, result.exception)
        # the nanny replaced the dead worker
        assert killed[0] not in client.run(os.getpid).values()
    ids = labelset.read_all_rows(out).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == N_EXTRA
    # what the dead worker was writing must not be left behind in a run that reports success
    assert temp_leftovers(out) == []
    assert_verified(out)
    assert labelset_state(out) == reference
