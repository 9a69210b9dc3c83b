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

from autolabel.cli import main
from autolabel.generate import labelset

from .helpers import N_EXTRA, assert_verified, generate_args, labelset_state


def kill_a_worker_once_labelling_starts(out: Path, pid: int, killed: threading.Event,
                                        timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any((out / labelset.LABELS_DIR).rglob("*.png")):
            os.kill(pid, signal.SIGKILL)
            killed.set()
            return
        time.sleep(0.005)


@pytest.mark.slow
def test_worker_killed_mid_run(teacher, city, reference, tmp_path):
    out = tmp_path / "out"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        pids = sorted(client.run(os.getpid).values())
        killed = threading.Event()
        killer = threading.Thread(target=kill_a_worker_once_labelling_starts, args=(out, pids[0], killed))
        killer.start()
        result = CliRunner().invoke(main, [*generate_args(teacher, city, out),
                                           "--scheduler", cluster.scheduler_address])
        killer.join()
        assert killed.is_set(), "the run finished before a worker could be killed"
        assert result.exit_code == 0, (result.output, result.exception)
        # the nanny replaced the dead worker
        assert pids[0] not in client.run(os.getpid).values()
    ids = labelset.read_all_rows(out).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == N_EXTRA
    assert_verified(out)
    assert labelset_state(out) == reference
