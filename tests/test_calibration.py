"""Calibration: the temperature fit, ECE, the per-class threshold choice, and calibration files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from autolabel.classes import custom_class_set
from autolabel.errors import ConfigError
from autolabel.evaluate.calibrate import (
    CURVE_THRESHOLDS,
    CalibrationSettings,
    PixelSample,
    choose_class_thresholds,
    class_curves,
    expected_calibration_error,
    fit_class_temperatures,
    fit_temperature,
    nll,
    summarise,
)
from autolabel.labelset.calibration import parse_class_thresholds, read_calibration, thresholds_by_class
from autolabel.models.predict import apply_temperature


def _calibrated_sample(n: int = 20_000, classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose softmax is the true class distribution (labels drawn from it): calibrated at T = 1."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=gen) * 3.0
    labels = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=gen)[:, 0]
    return logits, labels


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_the_temperature_fit_recovers_the_temperature_logits_were_scaled_by(true_t):
    logits, labels = _calibrated_sample()
    fitted = fit_temperature(logits * true_t, labels)  # over/under-confident by true_t: dividing undoes it
    assert fitted == pytest.approx(true_t, rel=0.05)
    # it is the NLL minimum: a little either side is worse
    best = nll(logits * true_t, labels, fitted)
    assert best < nll(logits * true_t, labels, fitted * 1.05) and best < nll(logits * true_t, labels, fitted / 1.05)


def test_per_class_temperatures_recover_each_class_and_keep_the_argmax():
    logits, labels = _calibrated_sample(n=40_000, classes=3)
    scale = torch.tensor([0.5, 1.0, 3.0])
    scaled = logits * scale[logits.argmax(1)][:, None]  # each predicted class over/under-confident its own way
    temperatures, kept_scalar = fit_class_temperatures(scaled, labels, scalar=1.0, min_pixels=500)
    assert kept_scalar == []
    assert temperatures == pytest.approx(scale.tolist(), rel=0.1)
    assert torch.equal(apply_temperature(scaled, temperatures).argmax(1), scaled.argmax(1))
    # a class with too few predicted pixels keeps the scalar
    _, few = fit_class_temperatures(scaled[:1000], labels[:1000], scalar=1.7, min_pixels=800)
    assert few == [0, 1, 2]


def test_ece_matches_a_hand_computed_case():
    confidence = np.array([0.1, 0.5, 0.52, 0.95, 1.0], dtype=np.float32)
    correct = np.array([0, 1, 0, 1, 1], dtype=bool)
    ece, bins = expected_calibration_error(confidence, correct, bins=15)
    # bins (1/15 wide): 0.1 alone in bin 1; 0.5 and 0.52 in bin 7 (7/15 < p <= 8/15); 0.95 and 1.0 in bin 14
    # ECE = 1/5 |0 - 0.1| + 2/5 |0.5 - 0.51| + 2/5 |1 - 0.975| = 0.02 + 0.004 + 0.01
    assert ece == pytest.approx(0.034, abs=1e-6)
    assert [b["pixels"] for b in bins] == [0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 2]
    assert bins[7]["accuracy"] == 0.5 and bins[7]["confidence"] == pytest.approx(0.51)


def test_temperature_scaling_lowers_the_ece_of_an_overconfident_teacher():
    logits, labels = _calibrated_sample()
    classes = custom_class_set(tuple("abcde"))
    doc = summarise(
        PixelSample(logits=logits * 2.0, labels=labels, images=1, labelled_pixels=len(labels)),
        classes,
        CalibrationSettings(),
        teacher_sha256="0" * 64,
    )
    assert doc["temperature"] == pytest.approx(2.0, rel=0.05)
    assert doc["ece"]["after"] < 0.02 < doc["ece"]["before"]
    assert doc["nll"]["after"] < doc["nll"]["before"]


def _constructed_curves() -> tuple[np.ndarray, np.ndarray]:
    """(3, 100) kept and correct pixels: class 0's precision is 0.5 + t (reaches 0.95 at t = 0.45), class 1
    has 100 pixels in all, class 2 a flat precision of 0.8."""
    j = np.arange(len(CURVE_THRESHOLDS))
    kept = np.zeros((3, len(j)), dtype=np.int64)
    correct = np.zeros_like(kept)
    kept[0] = 100 * (100 - j)
    correct[0] = (50 + j) * (100 - j)  # = (0.5 + j/100) * kept, exactly
    kept[1], correct[1] = 100, 100
    kept[2] = 10 * (100 - j)
    correct[2] = 8 * (100 - j)
    return kept, correct


def test_the_threshold_choice_on_a_constructed_curve():
    kept, correct = _constructed_curves()
    choice = choose_class_thresholds(kept, correct, ["a", "b", "c"], target=0.95, min_pixels=500)
    assert choice.per_class[0] == 0.45
    # the global threshold: the lowest at which the pooled precision reaches the target (computed here from
    # its definition), and what the class with too few pixels falls back to
    pooled = next(t for t, k, c in zip(CURVE_THRESHOLDS, kept.sum(0), correct.sum(0), strict=True) if c >= 0.95 * k)
    assert choice.global_threshold == pooled and choice.per_class[1] == pooled
    assert choice.fallback == ["b"]
    # class c never reaches 0.95: it is named, and takes the lowest threshold of its (flat) best precision
    assert choice.unreached == ["c"] and choice.per_class[2] == 0.0


def test_thresholds_never_fall_as_the_target_rises():
    logits, labels = _calibrated_sample(n=30_000)
    probs = torch.softmax(logits, 1)
    conf, pred = probs.max(1)
    kept, correct = class_curves(conf.numpy(), pred.numpy(), labels.numpy(), 5)
    previous = None
    for target in (0.6, 0.7, 0.8, 0.9, 0.95):
        chosen = choose_class_thresholds(kept, correct, list("abcde"), target=target, min_pixels=200)
        assert not chosen.fallback
        if previous is not None:
            assert all(a >= b for a, b in zip(chosen.per_class, previous, strict=True))
        previous = chosen.per_class
    # and each chosen threshold really reaches its target on the sample
    assert not chosen.unreached
    for c, t in enumerate(chosen.per_class):
        keep = (pred.numpy() == c) & (conf.numpy() > np.float32(t))
        assert (labels.numpy()[keep] == c).mean() >= 0.95


def test_class_curves_count_kept_pixels_with_generates_comparison():
    conf = np.array([0.5, 0.505, 0.51, 0.9], dtype=np.float32)
    pred = np.array([0, 0, 0, 1])
    labels = np.array([0, 1, 0, 1])
    kept, correct = class_curves(conf, pred, labels, 2)
    at = CURVE_THRESHOLDS.index(0.5)
    assert kept[0, at] == 2 and correct[0, at] == 1  # 0.5 itself is not above 0.5
    assert kept[0, at + 1] == 0 and kept[1, at + 1] == 1  # 0.51 > float32(0.51) is false


def test_class_thresholds_by_hand_name_the_key_on_errors(tmp_path):
    assert thresholds_by_class({"b": 0.9}, ["a", "b"], 0.5, "k") == [0.5, 0.9]
    with pytest.raises(ConfigError, match=r"k: unknown class 'x'"):
        thresholds_by_class({"x": 0.9}, ["a", "b"], 0.5, "k")
    with pytest.raises(ConfigError, match=r"k.b: 1.0 is out of range"):
        thresholds_by_class({"b": 1.0}, ["a", "b"], 0.5, "k")
    assert parse_class_thresholds("road=0.9, car=0.8") == {"road": 0.9, "car": 0.8}
    file = tmp_path / "t.json"
    file.write_text(json.dumps({"road": 0.7}))
    assert parse_class_thresholds(str(file)) == {"road": 0.7}
    with pytest.raises(ConfigError, match="expected name=threshold"):
        parse_class_thresholds("road=high")


def test_read_calibration_refuses_other_files_and_teachers(tmp_path):
    logits, labels = _calibrated_sample(n=5000, classes=2)
    doc = summarise(
        PixelSample(logits=logits, labels=labels, images=1, labelled_pixels=5000),
        custom_class_set(("a", "b")),
        CalibrationSettings(min_pixels=100),
        teacher_sha256="ab" * 32,
    )
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(doc))
    cal = read_calibration(path)
    assert cal.teacher_sha256 == "ab" * 32 and math.isfinite(cal.temperature)  # type: ignore[arg-type]
    cal.check_teacher("ab" * 32)
    with pytest.raises(ConfigError, match="calibration made for teacher sha256 abab"):
        cal.check_teacher("cd" * 32)
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ConfigError, match="not a calibration file"):
        read_calibration(tmp_path / "other.json")
    with pytest.raises(ConfigError, match="file not found"):
        read_calibration(tmp_path / "missing.json")
