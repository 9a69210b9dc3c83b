"""DDP: two gloo processes on CPU, under torchrun and as srun starts them, train together and end with identical
weights; each ends its process group."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from autolabel.models.checkpoint import load_checkpoint
from autolabel.synth import make_synthetic_city
from autolabel.train.state import LAST, iter_log

SCRIPT = textwrap.dedent("""
    import os, sys, torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    from autolabel.config import load_config
    from autolabel.train.loop import fit
    result = fit(load_config(None, sys.argv[2:]))
    assert not dist.is_initialized(), "fit left its process group open"
    rank = os.environ.get("RANK", os.environ.get("SLURM_PROCID"))
    torch.save(result.model.state_dict(), os.path.join(sys.argv[1], f"rank{rank}.pt"))
""")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(script, args, env):
    """Two processes under torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", script, *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def srun(script, args, env):
    """Two processes as `srun -n 2` starts them: SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID, no RANK; the batch
    script exports MASTER_ADDR/MASTER_PORT."""
    common = {
        **env,
        "SLURM_NTASKS": "2",
        "SLURM_STEP_ID": "0",
        "SLURM_JOB_ID": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, script, *args],
            env={**common, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("launch", [torchrun, srun])
def test_two_gloo_processes_end_with_identical_weights(tmp_path, launch):
    city = tmp_path / "city"
    make_synthetic_city(city, train=8, val=2, extra=0, size=(64, 32), seed=0)
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    overrides = [
        f"data.root={json.dumps(str(city))}",
        f"train.out_dir={json.dumps(str(out))}",
        "model.width='tiny'",
        "train.crop_size=[32, 32]",
        "train.batch_size=2",
        "train.workers=0",
        "train.epochs=2",
        "train.val_every=1",
        "train.class_uniform_tile=16",
        "train.device='cpu'",
        "model.dropout=0.3",
        "train.log_every=1",
    ]
    launchers = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_", "OMPI_", "MASTER_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(launchers)}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    launch(str(script), [str(tmp_path), *overrides], env)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    saved = load_checkpoint(out / LAST).model.state_dict()
    assert all(torch.equal(rank0[k], saved[k]) for k in rank0)
    records = list(iter_log(out))
    start = next(r for r in records if r["event"] == "start")
    assert start["world_size"] == 2
    # 8 items split over 2 ranks, 2 per batch -> 2 steps per epoch on each rank
    assert max(r["step"] for r in records if r["event"] == "train") == 4
    assert sum(r["event"] == "val" for r in records) == 2
