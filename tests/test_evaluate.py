"""`evaluate` (mIoU, prediction export, the official Cityscapes script) and `evaluate-labels` (audits)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from autolabel.classes import CITYSCAPES
from autolabel.cli import main
from autolabel.config import GenerateConfig, ModelConfig
from autolabel.data.datasets import discover_cityscapes
from autolabel.data.io import read_label, write_label_png
from autolabel.data.sources import parse_source
from autolabel.errors import ConfigError, DataError
from autolabel.evaluate.audit import audit_labelset, cityscapes_reference
from autolabel.evaluate.predictions import LABEL_IDS_DIR, TRAIN_IDS_DIR, PredictionWriter, label_id_name
from autolabel.generate.runner import GenerateJob, run_generate
from autolabel.labelset import read_labelset, read_manifest
from autolabel.labelset.confidence import write_maps
from autolabel.models import build_model
from autolabel.models.checkpoint import save_checkpoint
from autolabel.models.evaluation import EvalSettings, evaluate_model

LUT = CITYSCAPES.label_to_train_lut()


@pytest.fixture(scope="module")
def city(synthetic_city):
    root = synthetic_city(train=1, val=4, extra=0, size=(96, 48), seed=2)
    return root


class ColourModel(nn.Module):
    """Follows the model contract with a fixed random 1x1 conv over the pixels: many classes, no training."""

    def __init__(self, num_classes: int = 19, seed: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv2d(3, num_classes, 1)
        with torch.no_grad():
            generator = torch.Generator().manual_seed(seed)
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))

    def forward(self, images, scales=None):
        return {"pred": self.conv(images)}


def numpy_miou(pred_dir: Path, samples, num_classes: int = 19) -> float:
    """Independent mIoU from the written train-id PNGs and the ground truth."""
    inter = np.zeros(num_classes)
    union = np.zeros(num_classes)
    for s in samples:
        pred = read_label(pred_dir / TRAIN_IDS_DIR / f"{s.id}.png").astype(np.int64)
        gt = read_label(s.label, LUT).astype(np.int64)
        valid = gt != 255
        for c in range(num_classes):
            inter[c] += np.sum((pred == c) & (gt == c) & valid)
            union[c] += np.sum(((pred == c) | (gt == c)) & valid)
    present = union > 0
    return float(np.mean(inter[present] / union[present]))


def test_mIoU_equals_numpy_and_the_official_cityscapes_script(city, tmp_path):
    evaluation = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
    samples = discover_cityscapes(city, "val")
    out = tmp_path / "pred"
    metrics = evaluate_model(
        ColourModel(), samples, LUT, CITYSCAPES.names, on_prediction=PredictionWriter(out, CITYSCAPES).write
    )
    assert sum(v == v and v > 0 for v in metrics.iou) >= 2  # a meaningful comparison, not all-zero
    assert metrics.miou == pytest.approx(numpy_miou(out, samples), abs=1e-12)
    # the official script on the exported label-id PNGs
    args = copy.copy(evaluation.args)
    args.predictionPath, args.predictionWalk = str(out / LABEL_IDS_DIR), None
    args.evalInstLevelScore, args.JSONOutput, args.quiet, args.evalPixelAccuracy = False, False, True, False
    gts = [str(s.label) for s in samples]
    preds = [evaluation.getPrediction(args, gt) for gt in gts]
    official = evaluation.evaluateImgLists(preds, gts, args)
    assert official["averageScoreClasses"] == pytest.approx(metrics.miou, abs=1e-9)
    for name, iou in zip(CITYSCAPES.names, metrics.iou, strict=True):
        theirs = official["classScores"][name]
        assert (np.isnan(theirs) and np.isnan(iou)) or theirs == pytest.approx(iou, abs=1e-9)


def test_prediction_files_use_the_cityscapes_naming(city, tmp_path):
    samples = discover_cityscapes(city, "val")[:1]
    evaluate_model(
        ColourModel(), samples, LUT, CITYSCAPES.names, on_prediction=PredictionWriter(tmp_path, CITYSCAPES).write
    )
    name = Path(samples[0].id).name
    assert name.endswith("_leftImg8bit")
    label_ids = read_label(tmp_path / LABEL_IDS_DIR / f"{name}.png")
    train_ids = read_label(tmp_path / TRAIN_IDS_DIR / f"{samples[0].id}.png")
    np.testing.assert_array_equal(label_ids, CITYSCAPES.train_to_label_lut()[train_ids])
    name = "aachen_000001_000019_leftImg8bit"
    assert label_id_name(f"val/aachen/{name}") == f"{name}.png"
    assert label_id_name("scans/p1/slice7") == "scans/p1/slice7.png"


def test_flip_and_scales_reach_the_model(city):
    samples = discover_cityscapes(city, "val")[:2]
    model = ColourModel()
    plain = evaluate_model(model, samples, LUT, CITYSCAPES.names)
    flipped = evaluate_model(model, samples, LUT, CITYSCAPES.names, settings=EvalSettings(flip=True))
    # a 1x1 conv is flip-equivariant: flip averaging must not change anything
    assert flipped.iou == pytest.approx(plain.iou, nan_ok=True)


def test_evaluate_cli_writes_json_and_table(city, tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(width="tiny")
    save_checkpoint(tmp_path / "m.pt", build_model(cfg), cfg, CITYSCAPES.names)
    report = tmp_path / "metrics.json"
    run = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--checkpoint",
            str(tmp_path / "m.pt"),
            "--data",
            f"cityscapes:{city}:val",
            "--scales",
            "0.5,1.0",
            "--flip",
            "--device",
            "cpu",
            "--save-predictions",
            str(tmp_path / "p"),
            "--out",
            str(report),
        ],
    )
    assert run.exit_code == 0, run.output
    assert "mIoU" in run.output
    data = json.loads(report.read_text())
    assert data["scales"] == [0.5, 1.0] and data["flip"] is True and data["images"] == 4
    assert set(data["iou"]) == set(CITYSCAPES.names)
    assert len(list((tmp_path / "p" / LABEL_IDS_DIR).glob("*.png"))) == 4


def test_evaluate_cli_rejects_bad_input_cleanly(city, tmp_path):
    run = CliRunner().invoke(
        main, ["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--data", f"cityscapes:{city}:val"]
    )
    assert run.exit_code == 2 and "checkpoint file not found" in run.output
    torch.manual_seed(0)
    cfg = ModelConfig(width="tiny")
    save_checkpoint(tmp_path / "m.pt", build_model(cfg), cfg, CITYSCAPES.names)
    run = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(tmp_path / "m.pt"), "--data", "nonsense"])
    assert run.exit_code == 2 and "not a dataset spec" in run.output and "Traceback" not in run.output


def test_data_specs(city, tmp_path):
    val = discover_cityscapes(city, "val")
    assert [s.id for s in parse_source(f"cityscapes:{city}:val").discover()] == [s.id for s in val]
    # a folder of images with labels under the same relative names
    images, labels = tmp_path / "images", tmp_path / "labels"
    for s in val[:2]:
        name = Path(s.id).name
        (images).mkdir(exist_ok=True)
        (images / f"{name}.png").write_bytes(Path(s.image).read_bytes())
        write_label_png(labels / f"{name}.png", read_label(s.label))
    folder = parse_source(f"folder:{images}:{labels}").discover()
    assert len(folder) == 2 and all(s.label is not None for s in folder)
    assert [s.id for s in parse_source(str(tmp_path)).discover()] == [s.id for s in folder]
    with pytest.raises(ConfigError, match="cityscapes:ROOT:SPLIT"):
        parse_source("cityscapes:onlyroot")
    with pytest.raises(DataError):
        parse_source(f"folder:{images}:{tmp_path / 'missing'}").discover()


# ---------------------------------------------------------------------------------------------------------
# evaluate-labels


@pytest.fixture(scope="module")
def audited_set(city, tmp_path_factory):
    """A label set over the val images (which have gtFine) whose store and labels we then control: the teacher's
    class is the ground truth with 20% of pixels changed, confidence codes at random, the label that class where
    the code is above the set's threshold's rung (as generate writes)."""
    tmp = tmp_path_factory.mktemp("audit")
    torch.manual_seed(0)
    cfg = ModelConfig(width="tiny")
    save_checkpoint(tmp / "t.pt", build_model(cfg), cfg, CITYSCAPES.names)
    out = tmp / "set"
    run_generate(
        GenerateJob(teacher=tmp / "t.pt", out=out, generate=GenerateConfig(threshold=0.5, scales=(1.0,), device="cpu")),
        discover_cityscapes(city, "val"),
    )
    rng = np.random.default_rng(0)
    ladder = read_labelset(out)["ladder"]
    own = ladder.index(0.5)
    truth = {}
    for row in read_manifest(out).to_pylist():
        gt = read_label(cityscapes_reference(row["image"], "gtFine"), LUT)
        classes = np.where(rng.random(gt.shape) < 0.2, rng.integers(0, 19, gt.shape), gt).astype(np.uint8)
        classes[gt == 255] = rng.integers(0, 19)
        codes = rng.integers(0, len(ladder) + 1, gt.shape).astype(np.uint8)
        auto = np.where(codes > own, classes, 255).astype(np.uint8)
        write_label_png(out / row["label"], auto)
        write_maps(out, row["id"], classes, codes)
        truth[row["id"]] = (gt, auto, codes, classes)
    return out, truth


def expected_precision(truth, rung: int, cls: int) -> float | None:
    """Precision of class ``cls`` among the pixels whose code is above ``rung`` (the store's classes)."""
    tp = fp = 0
    for gt, _, codes, classes in truth.values():
        kept = (codes > rung) & (gt != 255)
        tp += np.sum(kept & (classes == cls) & (gt == cls))
        fp += np.sum(kept & (classes == cls) & (gt != cls))
    return None if tp + fp == 0 else tp / (tp + fp)


def test_audit_matches_a_direct_computation(audited_set):
    out, truth = audited_set
    report = audit_labelset(out, "gtFine", CITYSCAPES)
    assert report["images"] == 4 and report["images_without_reference"] == 0
    total = sum(a.size for _, a, _, _ in truth.values())
    ignored = sum(np.sum(a == 255) for _, a, _, _ in truth.values())
    assert report["coverage"] == pytest.approx(1 - ignored / total, abs=1e-6)
    road = CITYSCAPES.index("road")
    recall_num = sum(np.sum((a == road) & (g == road)) for g, a, _, _ in truth.values())
    recall_den = sum(np.sum((g == road) & (a != 255)) for g, a, _, _ in truth.values())
    assert report["classes"]["road"]["recall"] == pytest.approx(recall_num / recall_den, abs=1e-6)
    own = read_labelset(out)["ladder"].index(0.5)  # at the set's own threshold: what its labels say
    want = expected_precision(truth, own, road)
    assert report["classes"]["road"]["precision"] == pytest.approx(want, abs=1e-6)
    # the sweep: a pixel survives rung j iff its code > j
    sweep = report["sweep"]
    assert [s["threshold"] for s in sweep] == read_labelset(out)["ladder"]
    coverages = [s["coverage"] for s in sweep]
    assert coverages == sorted(coverages, reverse=True) and coverages[0] > coverages[-1]
    for rung in (0, 3, own, len(sweep) - 1):  # below the set's threshold too: the store has every class
        for name in ("road", "building", "sky"):
            want = expected_precision(truth, rung, CITYSCAPES.index(name))
            got = sweep[rung]["precision"][name]
            assert got == (None if want is None else pytest.approx(want, abs=1e-6))


def test_audit_of_a_perfect_label_set_is_perfect(audited_set, tmp_path):
    out, truth = audited_set
    # a folder reference holding the auto labels themselves (as train ids) must score 1.0 everywhere
    for image_id, (_, auto, _, _) in truth.items():
        write_label_png(tmp_path / f"{image_id}.png", auto)
    report = audit_labelset(out, str(tmp_path), CITYSCAPES, reference_train_ids=True)
    assert report["miou"] == 1.0 and report["accuracy"] == 1.0


def test_evaluate_labels_cli(audited_set, tmp_path):
    out, _ = audited_set
    dest = tmp_path / "audit.json"
    run = CliRunner().invoke(main, ["evaluate-labels", str(out), "--reference", "gtFine", "--out", str(dest)])
    assert run.exit_code == 0, run.output
    assert "coverage" in run.output
    data = json.loads(dest.read_text())
    assert data["sweep"] and set(data["classes"]) == set(CITYSCAPES.names)
    missing = CliRunner().invoke(main, ["evaluate-labels", str(out), "--reference", "gtCoarse-nope"])
    assert missing.exit_code == 2 and "reference" in missing.output


def test_cityscapes_reference_paths():
    img = "/d/cs/leftImg8bit/train_extra/bonn/bonn_000001_000019_leftImg8bit.png"
    assert cityscapes_reference(img, "gtCoarse") == Path(
        "/d/cs/gtCoarse/train_extra/bonn/bonn_000001_000019_gtCoarse_labelIds.png"
    )
    assert cityscapes_reference("/x/y.png", "gtFine") is None
