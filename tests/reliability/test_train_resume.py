"""SIGKILL `autolabel train-student` mid-run and `--resume`: the final weights equal an uninterrupted run's."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from autolabel.config import GenerateConfig, load_config
from autolabel.data.datasets import discover_cityscapes
from autolabel.generate.runner import GenerateJob, run_generate
from autolabel.models.checkpoint import load_checkpoint
from autolabel.train import state
from autolabel.train.loop import fit
from autolabel.train.state import LAST, STATE

from .helpers import autolabel_cmd, cli_env, run_cli

SEED = 8
KILLS = 2

CONFIG = """
[data]
root = "{city}"
[model]
width = "tiny"
dropout = 0.3
[loss]
main = "ce"
[train]
epochs = 4
batch_size = 2
crop_size = [32, 32]
workers = 0
val_every = 0
class_uniform_pct = 0.5
class_uniform_tile = 32
device = "cpu"
[student]
auto_fraction = 0.5
"""


@pytest.fixture(scope="module")
def student_setup(tmp_path_factory, synthetic_city, teacher) -> tuple[Path, Path]:
    """A pipeline config and an auto-label set for it (labelled by the suite's tiny teacher)."""
    tmp = tmp_path_factory.mktemp("rel_student")
    city = synthetic_city(train=4, val=1, extra=4, size=(64, 32), seed=5)
    labels = tmp / "auto"
    job = GenerateJob(teacher=teacher, out=labels, generate=GenerateConfig(scales=(1.0,), threshold=0.1, device="cpu"))
    assert run_generate(job, discover_cityscapes(city, "train_extra")).ok == 4
    config = tmp / "student.toml"
    config.write_text(CONFIG.format(city=city))
    return config, labels


def _args(config: Path, labels: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "train-student",
        "--config",
        str(config),
        "--labels",
        str(labels),
        "--set",
        f'train.out_dir="{run_dir}"',
        *extra,
    ]


def _mtime(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.exists() else None


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / LAST).model.state_dict()


@pytest.mark.slow
def test_sigkill_train_student_then_resume_gives_the_same_weights(student_setup, tmp_path):
    config, labels = student_setup
    run_cli(*_args(config, labels, tmp_path / "straight"))
    run_dir = tmp_path / "killed"
    rng = random.Random(SEED)
    proc = subprocess.Popen(
        autolabel_cmd(*_args(config, labels, run_dir)),
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    kills = 0
    while kills < KILLS:
        # kill after this process saved a state (an epoch boundary), at a random moment of a later epoch
        saved = _mtime(run_dir / STATE)
        while _mtime(run_dir / STATE) == saved:
            assert proc.poll() is None, "training ended before it could be killed"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))
        assert proc.poll() is None, "training ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        if kills < KILLS:
            proc = subprocess.Popen(
                autolabel_cmd(*_args(config, labels, run_dir, "--resume")),
                env=cli_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
    run_cli(*_args(config, labels, run_dir, "--resume"))
    straight, resumed = _weights(tmp_path / "straight"), _weights(run_dir)
    different = [k for k in straight if not torch.equal(straight[k], resumed[k])]
    assert different == []
    meta = load_checkpoint(run_dir / LAST).metadata
    assert meta["global_step"] == load_checkpoint(tmp_path / "straight" / LAST).metadata["global_step"]


class Killed(BaseException):
    """Stands for SIGKILL at an exact moment (BaseException: nothing in the loop may catch it)."""


def test_killed_between_saving_the_state_and_the_weights_still_resumes(student_setup, tmp_path, monkeypatch):
    """`last.state.pt` and `last.pt` are two files written one after the other: a kill between the two writes
    must not leave a run that `--resume` refuses (the user would have to start over)."""
    config, _ = student_setup
    overrides = ["train.epochs=3", "model.dropout=0.0"]
    straight = fit(load_config(config, [*overrides, f'train.out_dir="{tmp_path / "straight"}"']))
    cfg = load_config(config, [*overrides, f'train.out_dir="{tmp_path / "killed"}"'])
    real_save = state.save_checkpoint
    calls = []

    def save_then_die_on_the_second_epoch(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # epoch 2's state file is written, its weights not yet
            raise Killed
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(state, "save_checkpoint", save_then_die_on_the_second_epoch)
    with pytest.raises(Killed):
        fit(cfg)
    monkeypatch.undo()
    resumed = fit(cfg, resume=True)
    assert resumed.global_step == straight.global_step
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
