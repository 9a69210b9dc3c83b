"""Session fixtures of the reliability suite: a tiny synthetic city, a tiny teacher, an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autolabel.classes import CITYSCAPES
from autolabel.models import build_model
from autolabel.models.checkpoint import save_checkpoint

from .helpers import IMAGE_SIZE, N_EXTRA, TEACHER_CFG, assert_verified, generate_args, labelset_state, run_cli


@pytest.fixture(scope="session")
def city(synthetic_city) -> Path:
    return synthetic_city(train=1, val=1, extra=N_EXTRA, size=IMAGE_SIZE, seed=3)


@pytest.fixture(scope="session")
def teacher(tmp_path_factory) -> Path:
    """A randomly initialised tiny teacher (what matters here is that the run is deterministic)."""
    path = tmp_path_factory.mktemp("rel_teacher") / "teacher.pt"
    torch.manual_seed(0)
    save_checkpoint(path, build_model(TEACHER_CFG).eval(), TEACHER_CFG, CITYSCAPES.names)
    return path


@pytest.fixture(scope="session")
def reference(tmp_path_factory, teacher, city) -> dict[str, object]:
    """The state of an uninterrupted single-process CLI run, which every fault scenario must reproduce."""
    out = tmp_path_factory.mktemp("rel_ref") / "out"
    run_cli(*generate_args(teacher, city, out))
    assert_verified(out)
    return labelset_state(out)
