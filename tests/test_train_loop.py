"""The training loop on a tiny synthetic city: learning, checkpoints, exact resume, run-dir safety, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from autolabel.classes import CITYSCAPES
from autolabel.cli import main
from autolabel.config import load_config
from autolabel.errors import CheckpointError, OutputError
from autolabel.models.checkpoint import load_checkpoint
from autolabel.train.data import build_train_data, make_loader
from autolabel.train.loop import fit, poly_lr
from autolabel.train.sampling import PlanSampler
from autolabel.train.state import BEST, CONFIG, LAST, STATE, iter_log


@pytest.fixture(scope="module")
def city(synthetic_city):
    root = synthetic_city(train=4, val=2, extra=0, size=(96, 48), seed=0)
    return root


def tiny_cfg(city, out, *extra):
    """A few-second run: tiny HRNet, 48x48 crops, two images per batch, no validation unless asked."""
    return load_config(
        None,
        [
            f"data.root={json.dumps(str(city))}",
            f"train.out_dir={json.dumps(str(out))}",
            "model.width='tiny'",
            "train.crop_size=[48, 48]",
            "train.batch_size=2",
            "train.workers=0",
            "train.epochs=2",
            "train.val_every=0",
            "train.class_uniform_tile=32",
            "train.log_every=1",
            "train.device='cpu'",
            *extra,
        ],
    )


def train_losses(run_dir):
    return [r["total"] for r in iter_log(run_dir) if r["event"] == "train"]


def test_loss_decreases_checkpoints_are_written_and_evaluate_agrees(city, tmp_path):
    out = tmp_path / "run"
    # fixed crops (whole image, no scaling/flip/jitter) so the loss curve is not augmentation noise
    cfg = tiny_cfg(
        city,
        out,
        "train.epochs=8",
        "train.crop_size=[48, 96]",
        "train.scale_min=1.0",
        "train.scale_max=1.0",
        "train.flip=false",
        "train.color_jitter=0.0",
        "train.class_uniform_pct=0.0",
        "loss.main='ce'",
        "train.lr=0.05",
        "train.val_every=4",
        "model.dropout=0.0",
    )
    result = fit(cfg)
    assert result.global_step == 16 and result.epochs_done == 8
    losses = train_losses(out)
    assert len(losses) == 16
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
    for name in (LAST, BEST, STATE, CONFIG):
        assert (out / name).is_file()
    ckpt = load_checkpoint(out / LAST)
    assert ckpt.metadata["global_step"] == 16 and ckpt.class_names[0] == "road"
    vals = [r for r in iter_log(out) if r["event"] == "val"]
    assert [v["epoch"] for v in vals] == [4, 8]
    assert result.best_miou == pytest.approx(max(v["miou"] for v in vals), abs=1e-6)
    # `autolabel evaluate` on the final weights reproduces the last validation (same images, scale 1.0)
    report = tmp_path / "eval.json"
    run = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--checkpoint",
            str(out / LAST),
            "--data",
            f"cityscapes:{city}:val",
            "--scales",
            "1.0",
            "--device",
            "cpu",
            "--out",
            str(report),
        ],
    )
    assert run.exit_code == 0, run.output
    assert json.loads(report.read_text())["miou"] == pytest.approx(vals[-1]["miou"], abs=1e-6)


def test_resume_continues_exactly(city, tmp_path):
    # dropout, class-uniform crops and augmentation all on: every RNG stream has to be restored
    common = ("train.epochs=3", "model.dropout=0.3", "train.class_uniform_pct=0.5")
    straight = fit(tiny_cfg(city, tmp_path / "a", *common, "train.max_iters=5"))
    first = fit(tiny_cfg(city, tmp_path / "b", *common, "train.max_iters=3"))  # stops mid-epoch 2
    assert first.global_step == 3
    resumed = fit(tiny_cfg(city, tmp_path / "b", *common, "train.max_iters=5"), resume=True)
    assert straight.global_step == resumed.global_step == 5
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:3]
    assert train_losses(tmp_path / "a") == train_losses(tmp_path / "b")


def test_resume_refuses_a_state_file_from_another_step(city, tmp_path):
    out = tmp_path / "run"
    fit(tiny_cfg(city, out, "train.max_iters=1"))
    stale = (out / STATE).read_bytes()
    fit(tiny_cfg(city, out, "train.max_iters=2"), resume=True)
    (out / STATE).write_bytes(stale)
    with pytest.raises(CheckpointError, match="interrupted while saving"):
        fit(tiny_cfg(city, out, "train.max_iters=3"), resume=True)


def test_resume_with_another_model_is_refused(city, tmp_path):
    out = tmp_path / "run"
    fit(tiny_cfg(city, out, "train.max_iters=1"))
    with pytest.raises(CheckpointError, match=r"same \[model\] section"):
        fit(tiny_cfg(city, out, "train.max_iters=2", "model.mscale='avgpool'"), resume=True)


def test_a_previous_run_is_never_overwritten_silently(city, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(CheckpointError, match="nothing to resume"):
        fit(tiny_cfg(city, out, "train.max_iters=1"), resume=True)
    fit(tiny_cfg(city, out, "train.max_iters=1"))
    before = (out / LAST).read_bytes()
    with pytest.raises(OutputError, match="--overwrite"):
        fit(tiny_cfg(city, out, "train.max_iters=1"))
    assert (out / LAST).read_bytes() == before
    fit(tiny_cfg(city, out, "train.max_iters=1", "train.seed=5"), overwrite=True)
    assert (out / LAST).read_bytes() != before
    starts = [r for r in iter_log(out) if r["event"] == "start"]
    assert len(starts) == 1  # the old log went with the old run


def test_poly_lr_with_warmup():
    assert poly_lr(0, 100, 0.01, 2.0) == pytest.approx(0.01)
    assert poly_lr(50, 100, 0.01, 2.0) == pytest.approx(0.01 * 0.25)
    assert poly_lr(100, 100, 0.01, 2.0) == 0.0
    assert poly_lr(0, 100, 0.01, 1.0, warmup_iters=4) == pytest.approx(0.0025)
    assert poly_lr(3, 100, 0.01, 1.0, warmup_iters=4) == pytest.approx(0.01)
    assert poly_lr(4, 100, 0.01, 1.0, warmup_iters=4) == pytest.approx(0.01 * 0.96)


def test_loader_batches_do_not_depend_on_worker_count(city, tmp_path):
    batches = {}
    for workers in (0, 2):
        cfg = tiny_cfg(city, tmp_path / "run", f"train.workers={workers}", "train.class_uniform_pct=0.5")
        data = build_train_data(cfg, CITYSCAPES, tmp_path / "run", student=False)
        sampler = PlanSampler(data.planner)
        sampler.set_epoch(1)
        batches[workers] = list(make_loader(data, sampler, cfg.train, torch.device("cpu")))
    assert len(batches[0]) == len(batches[2]) == 2
    for a, b in zip(batches[0], batches[2], strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
        assert a["image"].shape == (2, 48, 48, 3) and a["label"].dtype == torch.uint8


def test_train_teacher_cli(city, tmp_path):
    out = tmp_path / "cli-run"
    args = [
        "train-teacher",
        "--set",
        f"data.root={json.dumps(str(city))}",
        "--set",
        f"train.out_dir={json.dumps(str(out))}",
        "--set",
        "model.width='tiny'",
        "--set",
        "train.crop_size=[48,48]",
        "--set",
        "train.workers=0",
        "--set",
        "train.epochs=1",
        "--set",
        "train.val_every=1",
        "--set",
        "train.device='cpu'",
    ]
    run = CliRunner().invoke(main, args)
    assert run.exit_code == 0, run.output
    assert "2 steps, 1 epoch," in run.output
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2
    assert "holds a previous run" in again.output and "Traceback" not in again.output
