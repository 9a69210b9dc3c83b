"""Student training: auto-label sets from `generate`, mixing, dropping, re-thresholding, fusion, weights."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from autolabel.classes import CITYSCAPES, custom_class_set
from autolabel.cli import main
from autolabel.config import GenerateConfig, ModelConfig, load_config
from autolabel.data.datasets import discover_cityscapes
from autolabel.data.io import read_label
from autolabel.errors import LabelSetError
from autolabel.generate.runner import GenerateJob, run_generate
from autolabel.labelset import read_labelset, read_manifest
from autolabel.labelset.confidence import load_confidence
from autolabel.models import build_model
from autolabel.models.checkpoint import save_checkpoint
from autolabel.train import datasets as train_datasets
from autolabel.train.datasets import AutoLabelSource, fuse_coarse
from autolabel.train.loop import StepContext, fit, make_grad_scaler, train_step
from autolabel.train.losses import build_loss
from autolabel.train.state import iter_log


@pytest.fixture(scope="module")
def city(synthetic_city):
    return synthetic_city(train=4, val=1, extra=6, size=(96, 48), seed=1)


@pytest.fixture(scope="module")
def labelset(city, tmp_path_factory):
    """A label set written by `generate` from a random tiny teacher; a low threshold keeps most pixels."""
    tmp = tmp_path_factory.mktemp("labelset")
    torch.manual_seed(0)
    model_cfg = ModelConfig(width="tiny")
    save_checkpoint(tmp / "teacher.pt", build_model(model_cfg), model_cfg, CITYSCAPES.names)
    out = tmp / "auto"
    job = GenerateJob(
        teacher=tmp / "teacher.pt",
        out=out,
        generate=GenerateConfig(threshold=0.01, scales=(1.0,), device="cpu", confidence=True),
    )
    result = run_generate(job, discover_cityscapes(city, "train_extra"))
    assert result.ok == 6
    return out


def student_cfg(city, out, *extra):
    return load_config(
        None,
        [
            f"data.root={json.dumps(str(city))}",
            f"train.out_dir={json.dumps(str(out))}",
            "model.width='tiny'",
            "train.crop_size=[32, 32]",
            "train.batch_size=2",
            "train.workers=0",
            "train.val_every=0",
            "train.class_uniform_tile=32",
            "train.device='cpu'",
            "loss.main='ce'",
            *extra,
        ],
    )


def test_auto_data_is_mixed_in_and_really_dropped(city, labelset, tmp_path, monkeypatch):
    """Count what the auto source actually loads, per epoch (workers=0: loading happens in this process)."""
    loads: Counter = Counter()
    epoch = {"now": -1}
    real_load = AutoLabelSource.load

    def counting_load(self, index):
        loads[epoch["now"]] += 1
        return real_load(self, index)

    monkeypatch.setattr(train_datasets.AutoLabelSource, "load", counting_load)
    cfg = student_cfg(
        city,
        tmp_path / "run",
        "train.epochs=3",
        "student.auto_fraction=0.5",
        "student.drop_auto_after_epoch=2",
        "train.class_uniform_pct=0.5",
    )
    result = fit(cfg, student=True, labels=[labelset], on_epoch_start=lambda e, steps: epoch.update(now=e))
    # 4 fine + 4 auto items per epoch while mixing, 4 fine after the drop -> 4 + 4 + 2 batches of 2
    assert result.global_step == 10
    assert loads[0] == 4 and loads[1] == 4
    assert loads[2] == 0
    records = list(iter_log(tmp_path / "run"))
    start = next(r for r in records if r["event"] == "start")
    assert start["sources"] == [4, 6] and start["student"] is True
    assert [r["items_per_source"] for r in records if r["event"] == "epoch"] == [[4, 4], [4, 4], [4, 0]]


def test_a_student_trains_its_own_schedule_and_records_it(city, labelset, tmp_path):
    cfg = student_cfg(city, tmp_path / "run", "train.epochs=3", "student.epochs=1", "student.auto_fraction=0.5")
    assert cfg.epochs(student=False) == 3 and cfg.epochs(student=True) == 1
    result = fit(cfg, student=True, labels=[labelset])
    assert result.epochs_done == 1 and result.global_step == 4  # 4 fine + 4 auto items, batches of 2
    assert load_config(tmp_path / "run" / "config.toml").train.epochs == 1
    teacher = fit(student_cfg(city, tmp_path / "teacher", "train.epochs=2", "student.epochs=1"))
    assert teacher.epochs_done == 2  # student.epochs is not the teacher's


def test_rethreshold_at_load_time_uses_the_confidence_store(labelset):
    meta = read_labelset(labelset)
    ladder = meta["ladder"]
    threshold = ladder[3]
    source = AutoLabelSource(labelset, CITYSCAPES, threshold=threshold)
    stored = AutoLabelSource(labelset, CITYSCAPES)
    row = read_manifest(labelset).to_pylist()[2]
    _, label = source.load(2)
    _, original = stored.load(2)
    codes = load_confidence(labelset, row["id"])
    np.testing.assert_array_equal(original, read_label(labelset / row["label"]))
    # a pixel survives ladder[j] iff its code is > j
    expected = np.where(codes > 3, original, 255)
    np.testing.assert_array_equal(label, expected)
    assert (label == 255).sum() > (original == 255).sum()


def test_rethreshold_errors_name_the_valid_values(labelset):
    with pytest.raises(LabelSetError, match="valid thresholds"):
        AutoLabelSource(labelset, CITYSCAPES, threshold=0.123)
    with pytest.raises(LabelSetError, match="classes"):
        AutoLabelSource(labelset, custom_class_set(("a", "b")))


def test_a_label_set_without_a_labelled_pixel_is_refused_unless_allowed(city, labelset, tmp_path):
    from autolabel.labelset.manifest import quality_warnings

    teacher = labelset.parent / "teacher.pt"  # the random tiny teacher: nowhere near 0.98 sure of anything
    job = GenerateJob(teacher=teacher, out=tmp_path / "empty", generate=GenerateConfig(threshold=0.98, device="cpu"))
    run_generate(job, discover_cityscapes(city, "train_extra"))
    manifest = read_manifest(tmp_path / "empty")
    assert not any(sum(c) for c in manifest.column("class_counts").to_pylist())  # the premise
    assert "only 0.00% of the pixels carry a label" in quality_warnings(manifest)[0]
    with pytest.raises(LabelSetError, match="student.allow_empty_labels"):
        AutoLabelSource(tmp_path / "empty", CITYSCAPES)
    assert len(AutoLabelSource(tmp_path / "empty", CITYSCAPES, allow_empty=True)) == 6
    # re-thresholded down at load time it is not refused (format 2 keeps every pixel's class)
    _, label = AutoLabelSource(tmp_path / "empty", CITYSCAPES, threshold=0.3).load(0)
    assert quality_warnings(read_manifest(labelset)) == []  # the 0.01 set is fine


def test_coarse_fusion_takes_the_human_label_for_chosen_classes(city, labelset):
    samples = {s.id: s.coarse for s in discover_cityscapes(city, "train_extra")}
    sky, road = CITYSCAPES.index("sky"), CITYSCAPES.index("road")
    fused_source = AutoLabelSource(labelset, CITYSCAPES, coarse=samples, coarse_classes=[sky, road])
    plain_source = AutoLabelSource(labelset, CITYSCAPES)
    row = read_manifest(labelset).to_pylist()[0]
    coarse = read_label(samples[row["id"]], CITYSCAPES.label_to_train_lut())
    _, fused = fused_source.load(0)
    _, plain = plain_source.load(0)
    chosen = np.isin(coarse, [sky, road])
    assert chosen.any()
    np.testing.assert_array_equal(fused[chosen], coarse[chosen])
    np.testing.assert_array_equal(fused[~chosen], plain[~chosen])


def test_fuse_coarse_only_overrides_chosen_classes():
    label = np.array([[1, 1, 255]], dtype=np.uint8)
    coarse = np.array([[3, 255, 4]], dtype=np.uint8)
    np.testing.assert_array_equal(fuse_coarse(label, coarse, np.array([3], np.uint8)), [[3, 1, 255]])
    np.testing.assert_array_equal(fuse_coarse(label, coarse, np.array([3, 4], np.uint8)), [[3, 1, 4]])


def test_source_loss_weight_zero_means_no_gradient():
    torch.manual_seed(0)
    model = build_model(ModelConfig(width="tiny", dropout=0.0))
    loss_fn = build_loss(load_config(None, ["loss.main='ce'"]).loss, 19)
    ctx = StepContext(device=torch.device("cpu"), amp="off", mean=(0.5,) * 3, std=(0.25,) * 3)
    batch = {
        "image": torch.randint(0, 255, (2, 32, 32, 3), dtype=torch.uint8),
        "label": torch.randint(0, 19, (2, 32, 32), dtype=torch.uint8),
    }
    params = {k: v.clone() for k, v in model.named_parameters()}

    def step(weights):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        scaler = make_grad_scaler(ctx.device, "off")
        train_step(model, {**batch, "weight": torch.tensor(weights)}, loss_fn, opt, scaler, ctx)
        changed = any(not torch.equal(params[k], v) for k, v in model.named_parameters())
        return changed

    assert not step([0.0, 0.0])
    assert step([0.0, 1.0])


def test_train_student_cli_records_the_options(city, labelset, tmp_path):
    out = tmp_path / "cli"
    args = [
        "train-student",
        "--set",
        f"data.root={json.dumps(str(city))}",
        "--set",
        f"train.out_dir={json.dumps(str(out))}",
        "--set",
        "model.width='tiny'",
        "--set",
        "train.crop_size=[32,32]",
        "--set",
        "train.workers=0",
        "--set",
        "train.epochs=1",
        "--set",
        "train.val_every=0",
        "--set",
        "train.device='cpu'",
        "--set",
        "loss.main='ce'",
        "--labels",
        str(labelset),
        "--auto-fraction",
        "0.25",
        "--boost-classes",
        "traffic light,bus",
        "--drop-auto-after-epoch",
        "3",
        "--auto-weight",
        "0.5",
        "--class-uniform",
        "1.0",
    ]
    run = CliRunner().invoke(main, args)
    assert run.exit_code == 0, run.output
    saved = load_config(out / "config.toml")
    assert saved.student.labels == (labelset,)
    assert saved.student.auto_fraction == 0.25
    assert saved.student.boost_classes == ("traffic light", "bus")
    assert saved.student.auto_loss_weight == 0.5 and saved.train.class_uniform_pct == 1.0


def test_train_student_without_labels_is_a_user_error(city, tmp_path):
    run = CliRunner().invoke(
        main,
        [
            "train-student",
            "--set",
            f"data.root={json.dumps(str(city))}",
            "--set",
            f"train.out_dir={json.dumps(str(tmp_path / 'x'))}",
        ],
    )
    assert run.exit_code == 2 and "student.labels" in run.output
