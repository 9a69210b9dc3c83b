"""The report's label-quality parts: reliability diagram, per-class precision/coverage, classes below target,
and the banner of a useless label set; on hand-built calibration and audit files with known numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from autolabel.classes import CITYSCAPES
from autolabel.cli import main
from autolabel.errors import AutolabelError
from autolabel.report import ReportOptions, build_report, collect, plots, quality
from tests.test_report import make_city, make_labelset

NO_SHEETS = ReportOptions(worst=0, sample=0)
CURVE_X = [0.0, 0.25, 0.5, 0.75]
# precision per class on the uncalibrated probability at CURVE_X; the label set keeps p > 0.5 for every class
BEFORE = {
    "road": (100, [0.8, 0.9, 0.97, 0.99]),  # 0.97 at 0.5: fine
    "building": (40, [0.5, 0.6, 0.8, 0.85]),  # 0.8: below, and never reaches 0.95 (unreached)
    "sky": (3, [1.0, 1.0, 1.0, 1.0]),  # precise but too rare: a fallback class
    "person": (20, [0.99, 0.99, 0.99, 0.99]),  # fine (only the calibrated variant calls it unreached)
    "car": (50, [0.5, 0.6, 0.7, 0.9]),  # 0.7: below
}
BINS = 15


def _bins(accuracy: list[float | None]) -> list[dict]:
    return [
        {
            "lo": b / BINS,
            "hi": (b + 1) / BINS,
            "pixels": 0 if a is None else 10,
            "confidence": None if a is None else (b + 0.5) / BINS,
            "accuracy": a,
        }
        for b, a in enumerate(accuracy)
    ]


BEFORE_ACC: list[float | None] = [None] * 7 + [0.3, 0.35, 0.4, 0.5, 0.55, 0.6, 0.7, 0.8]
AFTER_ACC: list[float | None] = [None] * 7 + [0.5, 0.55, 0.62, 0.7, 0.75, 0.82, 0.9, 0.97]


def calibration_json(path: Path, target: float = 0.95) -> Path:
    names = list(CITYSCAPES.names)

    def curves() -> dict:
        out = {n: {"pixels": 0, "precision": [None] * 4, "coverage": [0.0] * 4} for n in names}
        for name, (pixels, precision) in BEFORE.items():
            out[name] = {"pixels": pixels, "precision": precision, "coverage": [1.0, 0.8, 0.6, 0.3]}
        return out

    chosen = {n: 0.5 for n in names}
    path.write_text(
        json.dumps(
            {
                "format": "autolabel-calibration",
                "version": 1,
                "teacher_sha256": "ab" * 32,
                "classes": names,
                "temperature": 1.5,
                "ece": {"bins": BINS, "before": 0.1234, "after": 0.0321},
                "reliability": {"before": _bins(BEFORE_ACC), "after": _bins(AFTER_ACC)},
                "target_precision": target,
                "data": "synthetic:val",
                "curves": {"thresholds": CURVE_X, "before": curves(), "after": curves()},
                "thresholds": {
                    "calibrated": {"global": 0.5, "classes": chosen},
                    "uncalibrated": {"global": 0.5, "classes": chosen},
                    "fallback_classes": [],
                    "unreached_classes": ["person"],
                    "uncalibrated_fallback_classes": ["sky"],
                    "uncalibrated_unreached_classes": ["building"],
                },
            }
        )
    )
    return path


@pytest.fixture()
def city(tmp_path: Path) -> Path:
    root = tmp_path / "city"
    make_city(root, 6)
    return root


@pytest.fixture()
def healthy(city: Path, tmp_path: Path) -> Path:
    out = tmp_path / "labels"
    make_labelset(out, city, n=5)  # 4 of 5 images 62.5 % labelled
    return out


def banner_of(page: Path) -> str:
    text = page.read_text()
    if 'class="banner"' not in text:
        return ""
    return text.split('class="banner"', 1)[1].split("</div>", 1)[0]


def test_healthy_label_set_without_quality_files_has_no_banner(healthy: Path, tmp_path: Path):
    page = build_report(healthy, tmp_path / "r", options=NO_SHEETS)
    assert banner_of(page) == ""
    assert 'id="quality"' not in page.read_text()


def test_label_set_with_under_one_percent_coverage_gets_a_banner(city: Path, tmp_path: Path):
    out = tmp_path / "empty"
    make_labelset(out, city, n=1)  # image 0 only: every pixel ignored
    banner = banner_of(build_report(out, tmp_path / "r", options=NO_SHEETS))
    assert "only 0.00% of the pixels carry a label" in banner


def test_label_set_with_non_finite_confidences_gets_a_banner(city: Path, tmp_path: Path):
    out = tmp_path / "nan"
    make_labelset(out, city, n=5, nan_confidence=True)
    banner = banner_of(build_report(out, tmp_path / "r", options=NO_SHEETS))
    assert "1 images have a mean confidence that is not finite" in banner
    assert "carry a label" not in banner  # the coverage is fine


def test_flagged_classes_are_exactly_those_below_target_unreached_or_too_rare(healthy: Path, tmp_path: Path):
    meta, _ = collect.load_meta_and_manifest(healthy)
    measured = quality.measure(meta, quality.read_calibration_json(calibration_json(tmp_path / "c.json")), None, 0.5)
    assert measured is not None
    # the set has no temperature: the uncalibrated lists count (person is unreached only after T)
    assert set(measured.flagged) == {"building", "car", "sky"}
    by_name = {c.name: c for c in measured.curves}
    assert set(by_name) == set(BEFORE)  # classes the teacher never predicted are left out
    assert by_name["car"].precision_at == 0.7 and by_name["car"].threshold == 0.5
    assert by_name["sky"].flags == ("too few pixels",)
    assert measured.target == 0.95  # the file's target, not the default given


def test_report_with_calibration_names_the_classes_below_target_in_the_banner(healthy: Path, tmp_path: Path):
    page = build_report(healthy, tmp_path / "r", options=NO_SHEETS, calibration=calibration_json(tmp_path / "c.json"))
    banner = banner_of(page)
    assert "3 class(es) below the target precision 95%" in banner
    assert banner.rstrip().endswith("building, sky, car</p>")  # in class order
    text = page.read_text()
    assert '<td>car</td><td class="num">0.5</td><td class="num">70.0</td>' in text
    assert "before T 0.1234, after T 0.0321" in text
    for name in ("reliability.png", f"quality_{CITYSCAPES.index('car'):03d}.png"):
        assert (tmp_path / "r" / "assets" / name).is_file() and f"assets/{name}" in text


def test_reliability_points_come_from_the_files_bins(tmp_path: Path):
    raw = quality.read_calibration_json(calibration_json(tmp_path / "c.json"))
    xs, before = quality.reliability_points(raw["reliability"]["before"])
    assert xs == pytest.approx([(2 * b + 1) / 30 for b in range(BINS)], abs=1e-4)
    assert before == [None if a is None else pytest.approx(100 * a) for a in BEFORE_ACC]


def test_reliability_diagram_draws_before_and_after_where_the_bins_say(tmp_path: Path):
    raw = quality.read_calibration_json(calibration_json(tmp_path / "c.json"))
    measured = quality.Quality("x", 0.95, [], raw["reliability"], (None, None), 1.5)
    chart = np.asarray(quality.reliability_chart(measured))
    before = np.all(chart == plots.SERIES_COLORS[0], axis=-1)
    after = np.all(chart == plots.SERIES_COLORS[1], axis=-1)
    plot_rows = slice(58, chart.shape[0] - 48)  # below the legend
    # accuracy after T is higher in every bin: its line lies above (smaller row) the before line
    rows_before = np.nonzero(before[plot_rows].any(axis=1))[0]
    rows_after = np.nonzero(after[plot_rows].any(axis=1))[0]
    assert rows_before.size and rows_after.size and rows_after.mean() < rows_before.mean()
    # empty bins (the first 7) draw nothing: no dot in the left third of the plot
    assert not before[plot_rows, 64 : 64 + (chart.shape[1] - 84) * 6 // 14].any()


def test_own_audit_gives_the_curves_and_marks_its_classes_below_target(healthy: Path, tmp_path: Path):
    meta, _ = collect.load_meta_and_manifest(healthy)
    thresholds = [0.5, 0.7, 0.9]

    def audit(labelset_id: str, path: Path) -> Path:
        path.write_text(
            json.dumps(
                {
                    "labelset_id": labelset_id,
                    "reference": "gtFine",
                    "images": 5,
                    "coverage": 0.5,
                    "accuracy": 0.9,
                    "miou": 0.5,
                    "classes": {
                        "road": {"precision": 0.99, "coverage": 0.6, "reference_pixels": 10},
                        "car": {"precision": 0.9, "coverage": 0.4, "reference_pixels": 5},
                        "sky": {"precision": None, "coverage": None, "reference_pixels": 0},
                    },
                    "sweep": [
                        {
                            "threshold": t,
                            "coverage": 0.5,
                            "accuracy": 0.9,
                            "precision": {"road": 0.99, "car": 0.9},
                            "class_coverage": {"road": 0.6, "car": 0.4},
                        }
                        for t in thresholds
                    ],
                }
            )
        )
        return path

    own, other = audit(meta["labelset_id"], tmp_path / "own.json"), audit("another", tmp_path / "other.json")
    page = build_report(healthy, tmp_path / "r", audits={"auto": own}, options=NO_SHEETS)
    assert "1 class(es) below the target precision 95%" in banner_of(page)
    assert banner_of(page).rstrip().endswith(": car</p>")
    assert (tmp_path / "r" / "assets" / f"quality_{CITYSCAPES.index('road'):03d}.png").is_file()
    assert f"quality_{CITYSCAPES.index('sky'):03d}.png" not in page.read_text()  # no pixels: not shown
    # another label set's audit says nothing about this one's quality
    page = build_report(healthy, tmp_path / "r2", audits={"coarse": other}, options=NO_SHEETS)
    assert banner_of(page) == "" and 'id="quality"' not in page.read_text()


def test_class_chart_marks_the_class_threshold():
    curve = quality.ClassCurve("car", 13, [0.0, 0.5, 1.0], [0.5, 0.6, 0.7], [1.0, 0.5, 0.1], 0.5, 0.6, 0.5, ())
    chart = np.asarray(quality.class_chart(curve).convert("RGB"))
    dashed = np.all(chart == (150, 150, 150), axis=-1)
    columns = np.nonzero(dashed.sum(axis=0) > 40)[0]  # a long dashed line, not stray grey of the text
    assert columns.size == 1 and abs(columns[0] - (64 + (440 - 84) / 2)) <= 1


def test_cli_report_takes_a_calibration_file(healthy: Path, tmp_path: Path):
    calib = calibration_json(tmp_path / "c.json")
    result = CliRunner().invoke(
        main, ["report", str(healthy), "--out", str(tmp_path / "r"), "--calibration", str(calib), "--worst", "0"]
    )
    assert result.exit_code == 0, result.output
    assert 'id="quality"' in (tmp_path / "r" / "index.html").read_text()


def test_a_file_that_is_not_a_calibration_is_refused_naming_it(healthy: Path, tmp_path: Path):
    bad = tmp_path / "eval.json"
    bad.write_text(json.dumps({"miou": 0.5}))
    with pytest.raises(AutolabelError, match="eval.json"):
        build_report(healthy, tmp_path / "r", options=NO_SHEETS, calibration=bad)
    assert not (tmp_path / "r").exists()
