"""The demo orchestration: the human-coarse label set, the printed table, (slow) the whole run + resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autolabel.classes import CITYSCAPES
from autolabel.config import DataConfig
from autolabel.data.datasets import discover
from autolabel.data.io import read_label
from autolabel.data.synth import make_synthetic_city
from autolabel.demo import MODELS, DemoResult, DemoSettings, coarse_labelset, results_table, run_demo
from autolabel.generate import labelset
from autolabel.generate.inputs import config_source
from autolabel.generate.verify import verify_labelset
from autolabel.train.datasets import AutoLabelSource

REPO = Path(__file__).resolve().parents[1]
# a city and a training run small enough for a test: 64x32 images, 2 short epochs, no periodic validation
TINY = ("train.epochs=2", "train.batch_size=4", "train.crop_size=[32, 64]", "train.class_uniform_tile=32",
        "generate.centroid_tile=32", "student.drop_auto_after_epoch=1", "train.val_every=0")


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("city")
    make_synthetic_city(root, train=2, val=1, extra=4, size=(64, 32), seed=3, workers=0)
    return root


def test_coarse_labelset_holds_the_human_labels(city: Path, tmp_path: Path):
    data = DataConfig(layout="cityscapes", root=city)
    samples = discover(data, "train_extra")
    out = coarse_labelset(samples, tmp_path / "coarse", CITYSCAPES, config_source(data, "train_extra"),
                          centroid_tile=32)
    rows = labelset.read_manifest(out).to_pylist()
    assert [r["id"] for r in rows] == [s.id for s in samples]
    lut = CITYSCAPES.label_to_train_lut()
    for row, sample in zip(rows, samples, strict=True):
        expected = read_label(sample.coarse, lut)
        assert np.array_equal(read_label(out / row["label"]), expected)
        counts = np.bincount(expected.ravel(), minlength=256)
        assert row["class_counts"] == counts[:19].tolist() and row["ignore_count"] == counts[255]
        assert {c["cls"] for c in row["centroids"]} == set(np.flatnonzero(counts[:19]).tolist())
    assert verify_labelset(out).ok
    # the student reads it exactly like an auto-label set
    source = AutoLabelSource(out, CITYSCAPES)
    assert len(source) == len(samples)


def test_coarse_labelset_is_skipped_when_complete(city: Path, tmp_path: Path):
    data = DataConfig(layout="cityscapes", root=city)
    samples = discover(data, "train_extra")
    out = coarse_labelset(samples, tmp_path / "coarse", CITYSCAPES, config_source(data, "train_extra"))
    parts = {p: p.stat().st_mtime_ns for p in labelset.part_paths(out)}
    coarse_labelset(samples, out, CITYSCAPES, config_source(data, "train_extra"))
    assert {p: p.stat().st_mtime_ns for p in labelset.part_paths(out)} == parts


def test_results_table_shows_models_label_sets_and_time(tmp_path: Path):
    result = DemoResult(out=tmp_path, report=tmp_path / "report" / "index.html",
                        miou={"teacher (fine)": 0.4321, "student (fine + auto coarse)": None},
                        labels={"auto": {"coverage": 0.9, "accuracy": 0.875, "miou": 0.5, "images": 3}},
                        seconds={"synth": 30.0, "teacher": 90.0})
    text = results_table(result)
    assert "teacher (fine)" in text and "43.2" in text and "n/a" in text
    assert "90.0  87.5  50.0" in text
    assert "2.0 min" in text


@pytest.mark.slow
def test_demo_runs_end_to_end_and_a_rerun_skips_finished_stages(tmp_path: Path):
    settings = DemoSettings(out=tmp_path / "demo", config=REPO / "pipelines" / "demo.toml", overrides=TINY,
                            train=8, val=4, extra=8, size=(64, 32), seed=1, synth_workers=0)
    result = run_demo(settings)
    out = settings.out
    assert set(result.miou) == set(MODELS)
    assert all(0.0 <= v <= 1.0 for v in result.miou.values())
    # human coarse labels are fine labels shrunk away from boundaries: wherever they say a class, it is right
    assert result.labels["coarse"]["accuracy"] == 1.0 and 0 < result.labels["coarse"]["coverage"] < 1
    assert result.report.is_file() and (out / "labels" / "labelset.json").is_file()
    saved = json.loads((out / "results.json").read_text())
    assert saved["miou"] == result.miou
    for name, (run, _) in MODELS.items():
        assert json.loads((out / "eval" / f"{run}.json").read_text())["miou"] == result.miou[name]
    stamps = {p: p.stat().st_mtime_ns for p in (out / "teacher" / "last.pt", out / "student_auto" / "last.pt",
                                                 out / "eval" / "teacher.json")}
    again = run_demo(settings)
    assert again.miou == result.miou
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing retrained or re-evaluated
