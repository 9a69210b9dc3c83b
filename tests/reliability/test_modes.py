"""Identical rows in every mode: in process, `--workers 2` and an external Dask scheduler write byte-identical
manifest rows (timing aside) and files.

Before: `--workers` changed mean_confidence by ~1e-7 against the in-process run. Two causes: a float32 mean
whose rounding depends on how the reduction is split (now an exact fixed-point sum), and batches of
different sizes, whose kernels round differently (every batch is now padded to the full size). One condition
remains, and is set here as it is on a cluster: each process runs the teacher with the same number of torch
threads (a local cluster's workers get cores // workers; CPU convolutions round differently with another
thread count).
"""

from __future__ import annotations

import logging
import os
import subprocess

import pytest
import torch
from distributed import Client, LocalCluster

from .helpers import assert_verified, autolabel_cmd, cli_env, generate_args, invoke, labelset_state

WORKERS = 2


@pytest.mark.slow
def test_in_process_local_workers_and_an_external_scheduler_write_identical_rows(teacher, city, tmp_path):
    threads = max(1, (os.cpu_count() or 1) // WORKERS)  # what each local worker gets
    env = {**cli_env(), "OMP_NUM_THREADS": str(threads)}
    states = {}
    for mode, extra in (("in-process", []), ("workers", ["--workers", str(WORKERS)])):
        out = tmp_path / mode
        proc = subprocess.run(autolabel_cmd(*generate_args(teacher, city, out), *extra), env=env, capture_output=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        states[mode] = labelset_state(out)
    out = tmp_path / "scheduler"
    with (
        LocalCluster(
            n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(torch.set_num_threads, threads)
        invoke(*generate_args(teacher, city, out), "--scheduler", cluster.scheduler_address)
    states["scheduler"] = labelset_state(out)
    assert_verified(out)
    reference = states["in-process"]
    assert len({r["label_sha256"] for r in reference["rows"]}) > 1  # the labels carry information
    for mode in ("workers", "scheduler"):
        assert states[mode]["files"] == reference["files"], mode
        for got, want in zip(states[mode]["rows"], reference["rows"], strict=True):
            assert got == want, (mode, {k: (got[k], want[k]) for k in got if got[k] != want[k]})
