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


def fit_teacher(steps: int = 12) -> torch.nn.Module:
    """A tiny teacher fitted for a few steps to colour regions of smooth random images, so that its labels vary
    from pixel to pixel and image to image (a randomly initialised one labels every pixel alike, which would
    make "same labels as the reference" a weak check)."""
    torch.manual_seed(0)
    model = build_model(TEACHER_CFG)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    width, height = IMAGE_SIZE[0] // 2, IMAGE_SIZE[1] // 2  # fully convolutional: small crops train faster
    model.train()
    for _ in range(steps):
        colours = torch.rand(2, 3, 4, 8)
        x = torch.nn.functional.interpolate(colours, size=(height, width), mode="bilinear")  # (2, 3, H, W)
        target = (x.argmax(dim=1) * 3 + (x.max(dim=1).values * 3).long().clamp(0, 2)).clamp(0, 18)  # (2, H, W)
        loss = torch.nn.functional.cross_entropy(model((x - 0.45) / 0.25)["pred"], target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="session")
def teacher(tmp_path_factory) -> Path:
    """A tiny teacher with varied, input-dependent labels (what matters here is that runs are deterministic)."""
    path = tmp_path_factory.mktemp("rel_teacher") / "teacher.pt"
    save_checkpoint(path, fit_teacher(), TEACHER_CFG, CITYSCAPES.names)
    return path


@pytest.fixture(scope="session")
def reference(tmp_path_factory, teacher, city) -> dict[str, object]:
    """The state of an uninterrupted single-process CLI run, which every fault scenario must reproduce."""
    out = tmp_path_factory.mktemp("rel_ref") / "out"
    run_cli(*generate_args(teacher, city, out))
    assert_verified(out)
    return labelset_state(out)
