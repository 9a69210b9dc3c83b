"""Label quality end to end: calibrate, generate with a calibration or per-class thresholds, rethreshold down,
up, per class and by portion, all with the tiny teacher on the tiny city (64x32 images)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autolabel.errors import EXIT_USER_ERROR
from autolabel.labelset import read_labelset, read_manifest
from autolabel.labelset.confidence import load_maps
from autolabel.labelset.meta import available_thresholds
from tests.test_generate_e2e import base_args, run
from tests.test_generate_e2e import city as city  # noqa: F401  (fixtures)
from tests.test_generate_e2e import reference as reference  # noqa: F401
from tests.test_generate_e2e import teacher as teacher  # noqa: F401


def labels_of(out: Path) -> dict[str, bytes]:
    return {row["id"]: (out / row["label"]).read_bytes() for row in read_manifest(out).to_pylist()}


@pytest.fixture(scope="module")
def low(tmp_path_factory, teacher, city) -> Path:  # noqa: F811
    """A label set generated at 0.3: the one everything is re-thresholded from."""
    out = tmp_path_factory.mktemp("low") / "out"
    run([*base_args(teacher, city, out), "--threshold", "0.3"])
    return out


@pytest.fixture(scope="module")
def calibration(tmp_path_factory, teacher, city) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("cal")
    result = run(
        ["calibrate", "--teacher", str(teacher), "--data", f"cityscapes:{city}:val", "--out", str(out),
         "--set", "generate.device=cpu", "--min-pixels", "20", "--target-precision", "0.6"]
    )  # fmt: skip
    assert "temperature" in result.output and "ECE (15 bins)" in result.output
    return out / "calibration.json"


def test_rethreshold_down_equals_a_fresh_generate_there(tmp_path, reference, low):  # noqa: F811
    assert read_labelset(reference)["threshold"] == 0.5
    down = tmp_path / "down"
    run(["rethreshold", str(reference), "--threshold", "0.3", "--out", str(down)])
    assert labels_of(down) == labels_of(low)
    # and back up again: the labels of the original set
    up = tmp_path / "up"
    run(["rethreshold", str(down), "--threshold", "0.5", "--out", str(up)])
    assert labels_of(up) == labels_of(reference)
    meta = read_labelset(up)
    assert meta["parent_labelset_id"] == read_labelset(down)["labelset_id"]
    assert meta["ladder_available"][0] == 0.3 and meta["ladder_available"][-1] == 0.98


def test_per_class_generate_equals_rethreshold_of_a_low_set(tmp_path, teacher, city, low):  # noqa: F811
    by_hand = {"road": 0.7, "building": 0.42, "sky": 0.9, "car": 0.35}
    direct = tmp_path / "direct"
    sets = [f"--set=generate.class_thresholds.{name}={t}" for name, t in by_hand.items()]
    run([*base_args(teacher, city, direct), *sets])
    meta = read_labelset(direct)
    assert meta["class_thresholds"]["sky"] == 0.9 and meta["class_thresholds"]["person"] == 0.5
    assert meta["threshold_source"] == {"kind": "class_thresholds"}
    derived = tmp_path / "derived"
    spec = ",".join(f"{name}={t}" for name, t in by_hand.items())
    run(["rethreshold", str(low), "--threshold", "0.5", "--class-thresholds", spec, "--out", str(derived)])
    assert labels_of(derived) == labels_of(direct)
    assert read_labelset(derived)["class_thresholds"] == meta["class_thresholds"]


def test_portion_keeps_the_share_closest_to_it_per_class(tmp_path, low):
    out = tmp_path / "cbst"
    run(["rethreshold", str(low), "--portion", "0.5", "--out", str(out)])
    meta = read_labelset(out)
    assert meta["threshold_source"] == {"kind": "portion", "portion": 0.5}
    # from the store itself (not the manifest's histograms): per class, the share kept at every rung
    ladder = np.asarray(meta["ladder"])
    classes, codes = [], []
    for row in read_manifest(low).to_pylist():
        maps = load_maps(low, row["id"])
        classes.append(maps.classes.ravel())
        codes.append(maps.codes.ravel())
    cls, code = np.concatenate(classes), np.concatenate(codes)
    for c, name in enumerate(meta["classes"]):
        mine = code[cls == c]
        if mine.size == 0:
            continue
        shares = np.array([(mine > j).mean() for j in range(len(ladder))])
        chosen = int(np.flatnonzero(np.isclose(ladder, meta["class_thresholds"][name]))[0])
        assert abs(shares[chosen] - 0.5) <= np.abs(shares - 0.5).min() + 1e-12, name
        assert meta["derived"]["kept_share"][name] == pytest.approx(shares[chosen], abs=1e-6)


def test_calibrate_writes_the_teacher_split_and_figures(calibration, teacher):  # noqa: F811
    from autolabel.labelset.checksums import file_sha256

    doc = json.loads(calibration.read_text())
    assert doc["teacher_sha256"] == file_sha256(teacher) and doc["split"] == "val"
    assert doc["ece"]["bins"] == 15 and len(doc["reliability"]["before"]) == 15
    assert doc["temperature"] > 0 and doc["nll"]["after"] <= doc["nll"]["before"] + 1e-9
    curve = doc["curves"]["after"]["road"]
    assert len(curve["precision"]) == len(doc["curves"]["thresholds"]) == 100
    assert set(doc["thresholds"]["calibrated"]["classes"]) == set(doc["classes"])
    # every class is either given its own threshold or named as falling back to the global one
    few = [n for n in doc["classes"] if doc["curves"]["after"][n]["pixels"] < doc["min_pixels"]]
    assert doc["thresholds"]["fallback_classes"] == few


def test_generate_with_a_calibration_records_it_and_matches_its_thresholds(
    tmp_path,
    teacher,
    city,
    calibration,
    reference,  # noqa: F811
):
    out = tmp_path / "cal"
    run([*base_args(teacher, city, out), "--calibration", str(calibration)])
    meta = read_labelset(out)
    doc = json.loads(calibration.read_text())
    assert meta["temperature"] == pytest.approx(doc["temperature"])
    assert meta["class_thresholds"] == doc["thresholds"]["calibrated"]["classes"]
    assert meta["threshold_source"]["kind"] == "calibration"
    assert meta["calibration"]["ece_after"] == doc["ece"]["after"] and meta["calibration"]["applied"]
    assert meta["labelset_id"] != read_labelset(reference)["labelset_id"]
    run(["verify", str(out)])


def test_a_calibration_for_another_teacher_is_refused(tmp_path, teacher, city, calibration, reference):  # noqa: F811
    doc = json.loads(calibration.read_text())
    doc["teacher_sha256"] = "f" * 64
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    out = tmp_path / "refused"
    result = run([*base_args(teacher, city, out), "--calibration", str(other)], code=EXIT_USER_ERROR)
    assert "calibration made for teacher sha256 ffff" in result.output
    assert not (out / "labelset.json").exists()
    result = run(["rethreshold", str(reference), "--calibration", str(other)], code=EXIT_USER_ERROR)
    assert "calibration made for teacher sha256 ffff" in result.output


def test_rethreshold_with_the_uncalibrated_thresholds_of_a_calibration(tmp_path, low, calibration):
    out = tmp_path / "by-cal"
    run(["rethreshold", str(low), "--calibration", str(calibration), "--out", str(out)])
    meta = read_labelset(out)
    doc = json.loads(calibration.read_text())
    # the set holds uncalibrated probabilities: the calibration's thresholds on those are the ones used, each
    # raised to the lowest rung of the low set's ladder at or above it (a calibration may choose below 0.30,
    # the store's bottom; how far depends on the fixture teacher's numerics on the machine)
    ladder = available_thresholds(read_labelset(low))
    wanted = doc["thresholds"]["uncalibrated"]["classes"]
    expected = {name: min(r for r in ladder if r >= t - 1e-9) for name, t in wanted.items()}
    assert meta["class_thresholds"] == pytest.approx(expected)
    raised = {name for name, t in wanted.items() if abs(expected[name] - t) > 1e-9}
    assert set(meta["derived"].get("rounded_up", {})) == raised  # the rounding is recorded, class by class
    assert meta["calibration"]["applied"] is False


def test_rethreshold_refusals(tmp_path, reference):  # noqa: F811
    result = run(["rethreshold", str(reference), "--threshold", "0.305"], code=EXIT_USER_ERROR)
    assert "0.305" in result.output and "0.3, 0.31" in result.output
    result = run(["rethreshold", str(reference), "--threshold", "0.5", "--portion", "0.5"], code=EXIT_USER_ERROR)
    assert "not several" in result.output
    result = run(["rethreshold", str(reference)], code=EXIT_USER_ERROR)
    assert "--portion" in result.output
    result = run(["rethreshold", str(reference), "--threshold", "0.6", "--out", str(reference)], code=EXIT_USER_ERROR)
    assert "--in-place" in result.output
    result = run(["rethreshold", str(reference), "--class-thresholds", "roads=0.6"], code=EXIT_USER_ERROR)
    assert "unknown class 'roads'" in result.output
