"""The HTML report: numbers it shows against hand-built label sets, pictures, links, atomic output, CLI."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from autolabel import labelset
from autolabel.classes import CITYSCAPES
from autolabel.cli import main
from autolabel.data.io import write_image_png, write_label_png
from autolabel.errors import DataError, LabelSetError
from autolabel.labelset import confidence
from autolabel.labelset.files import WriteSettings, error_row, finalise_image
from autolabel.report import ReportOptions, build_report, collect, plots

H, W = 8, 16
LADDER = confidence.make_ladder(0.5)  # 0.5, 0.55, ..., 0.95: codes 0..10
ROAD, CAR, SKY = CITYSCAPES.index("road"), CITYSCAPES.index("car"), CITYSCAPES.index("sky")
LABEL_ID = dict(zip(CITYSCAPES.names, CITYSCAPES.label_ids, strict=True))


def sample_id(i: int) -> str:
    return f"train_extra/town/town_{i:06d}_000019_leftImg8bit"


def auto_maps(i: int) -> tuple[np.ndarray, np.ndarray]:
    """Image i: top half road at code 3 (0.6 < p <= 0.65), bottom-left eighth car at code 10 (p > 0.95), rest
    ignored (code 0); image 0 is all ignored."""
    labels = np.full((H, W), 255, np.uint8)
    codes = np.zeros((H, W), np.uint8)
    if i > 0:
        labels[: H // 2] = ROAD
        codes[: H // 2] = 3
        labels[H // 2 :, : W // 4] = CAR
        codes[H // 2 :, : W // 4] = 10
    return labels, codes


def make_city(root: Path, n: int) -> None:
    """A Cityscapes tree: n train_extra images with coarse labels (all sky) and 2 train images with fine
    labels (all road)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        stem = f"town_{i:06d}_000019"
        write_image_png(
            root / f"leftImg8bit/train_extra/town/{stem}_leftImg8bit.png",
            rng.integers(0, 255, (H, W, 3), dtype=np.uint8),
        )
        coarse = np.zeros((H, W), np.uint8)
        coarse[:2] = LABEL_ID["sky"]
        write_label_png(root / f"gtCoarse/train_extra/town/{stem}_gtCoarse_labelIds.png", coarse)
    for i in range(2):
        stem = f"fine_{i:06d}_000019"
        image = np.zeros((H, W, 3), np.uint8)
        write_image_png(root / f"leftImg8bit/train/town/{stem}_leftImg8bit.png", image)
        write_label_png(
            root / f"gtFine/train/town/{stem}_gtFine_labelIds.png", np.full((H, W), LABEL_ID["road"], np.uint8)
        )


def make_labelset(
    out: Path, root: Path, n: int, errors: int = 0, attention: bool = True, nan_confidence: bool = False
) -> dict:
    """A label set written with generate's own writers: n images (auto_maps), mean confidence 0.1 * i (NaN for
    image 1 with ``nan_confidence``, as a teacher that produced NaN probabilities would record)."""
    from autolabel.data.datasets import discover_cityscapes

    meta = labelset.make_labelset_meta(
        teacher_sha256="ab" * 32,
        model_config={"width": "tiny"},
        scales=(0.5, 1.0, 2.0),
        flip=False,
        threshold=0.5,
        ladder=LADDER,
        class_names=CITYSCAPES.names,
        label_ids=None,
        ignore_index=255,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        tile_size=0,
        tile_overlap=0.25,
        confidence=True,
        source={"layout": "cityscapes", "root": str(root), "split": "train_extra"},
    )
    labelset.prepare_output(out, meta, overwrite=False)
    confidence.init_store(out, LADDER)
    settings = WriteSettings(out=out, num_classes=19, shard="0/1")
    samples = discover_cityscapes(root, "train_extra")
    rows = []
    for i, sample in enumerate(samples[:n]):
        labels, codes = auto_maps(i)
        attn = {"attn_0.5x": np.full((H // 2, W // 2), 200, np.uint8), "attn_1x": np.full((H, W), 50, np.uint8)}
        # the teacher's class of every pixel: where the label ignores it, a class the curves do not check
        classes = np.where(labels == 255, CITYSCAPES.index("bicycle"), labels).astype(np.uint8)
        kept_attn = attn if attention else {}
        mean = float("nan") if nan_confidence and i == 1 else 0.1 * i
        rows.append(finalise_image(settings, sample, labels, codes, mean, kept_attn, 0.25, classes=classes))
    rows += [error_row(s, "corrupt or truncated image", "0/1", 0.5) for s in samples[n : n + errors]]
    labelset.write_part(out, rows)
    return meta


@pytest.fixture()
def labelled(tmp_path: Path) -> Path:
    root = tmp_path / "city"
    make_city(root, 6)
    out = tmp_path / "labels"
    make_labelset(out, root, n=5, errors=1)
    return out


# ---------------------------------------------------------------------------------------------------------
# numbers


def test_overview_counts_errors_time_and_coverage(labelled: Path):
    meta, manifest = collect.load_meta_and_manifest(labelled)
    ov = collect.overview(labelled, manifest, CITYSCAPES.names)
    assert (ov.images, ov.ok) == (6, 5)
    assert ov.errors == [(sample_id(5), "corrupt or truncated image")]
    assert ov.seconds_total == pytest.approx(5 * 0.25 + 0.5)
    # images 1..4 label 1/2 + 1/8 of their pixels, image 0 none
    assert ov.labelled_fraction == pytest.approx(4 * 0.625 / 5)
    assert ov.mean_confidence == pytest.approx(np.mean([0.0, 0.1, 0.2, 0.3, 0.4]), abs=1e-6)
    assert ov.label_bytes == sum(p.stat().st_size for p in (labelled / "labels").rglob("*.png"))


def test_coverage_curve_counts_codes_above_each_rung(labelled: Path):
    meta, manifest = collect.load_meta_and_manifest(labelled)
    rows = labelset.read_manifest(labelled).to_pylist()
    cov = collect.coverage_curve(labelled, rows, meta, CITYSCAPES)
    assert cov is not None and cov.images == 5 and cov.thresholds == list(LADDER)
    # 4 of 5 images: half the pixels at code 3 (kept for rungs 0..2), an eighth at code 10 (kept always)
    road, car = 4 * 0.5 / 5, 4 * 0.125 / 5
    expected = [road + car if j < 3 else car for j in range(len(LADDER))]
    assert cov.overall == pytest.approx(expected)
    assert cov.per_class[ROAD].tolist() == [1.0, 1.0, 1.0] + [0.0] * (len(LADDER) - 3)
    assert cov.per_class[CAR].tolist() == [1.0] * len(LADDER)
    assert np.isnan(cov.per_class[SKY]).all()


def test_no_coverage_without_a_confidence_store(labelled: Path):
    meta, _ = collect.load_meta_and_manifest(labelled)
    rows = labelset.read_manifest(labelled).to_pylist()
    assert collect.coverage_curve(labelled, rows, {**meta, "confidence": False}, CITYSCAPES) is None


def test_class_shares_of_auto_coarse_and_fine_labels(labelled: Path):
    meta, manifest = collect.load_meta_and_manifest(labelled)
    auto = collect.shares_from_counts(collect.auto_class_counts(manifest, 19))
    assert auto[ROAD] == pytest.approx(0.8) and auto[CAR] == pytest.approx(0.2)
    source = collect.source_data(meta, None)
    assert len(source.samples) == 6 and len(source.fine) == 2  # the train split of the Cityscapes source
    lut = CITYSCAPES.label_to_train_lut()
    coarse = collect.shares_from_counts(
        collect.label_class_counts([s.coarse for s in source.samples.values()], lut, 19)
    )
    fine = collect.shares_from_counts(collect.label_class_counts([s.label for s in source.fine], lut, 19))
    assert coarse[SKY] == 1.0 and fine[ROAD] == 1.0 and coarse.sum() == fine.sum() == 1.0


def test_missing_sources_become_notes(labelled: Path, tmp_path: Path):
    meta, _ = collect.load_meta_and_manifest(labelled)
    gone = {"layout": "cityscapes", "root": str(tmp_path / "gone"), "split": "train_extra"}
    moved = {**meta, "source": gone}
    data = collect.source_data(moved, None)
    assert not data.samples and not data.fine
    assert len(data.notes) == 2 and all("gone" in n for n in data.notes)


def test_worst_and_random_sheets_pick_the_right_rows(labelled: Path):
    rows = labelset.read_manifest(labelled).to_pylist()
    worst = collect.worst_rows(rows, 2)
    assert [r["id"] for r in worst] == [sample_id(0), sample_id(1)]
    picks = [tuple(r["id"] for r in collect.random_rows(rows, 2, seed, exclude=worst)) for seed in range(8)]
    assert picks[0] == tuple(r["id"] for r in collect.random_rows(rows, 2, 0, exclude=worst))
    assert all(set(p).isdisjoint({sample_id(0), sample_id(1)}) and list(p) == sorted(p) for p in picks)
    assert len(set(picks)) > 1  # the seed matters


def test_thin_sheet_takes_the_images_with_the_most_thin_class_pixels():
    pole, light = CITYSCAPES.index("pole"), CITYSCAPES.index("traffic light")

    def row(name: str, pole_px: int, light_px: int) -> dict:
        counts = [0] * 19
        counts[ROAD], counts[pole], counts[light] = 500, pole_px, light_px
        return {"id": name, "class_counts": counts}

    rows = [row("a", 10, 0), row("b", 0, 0), row("c", 3, 30), row("d", 10, 0), row("e", 50, 0)]
    picked = collect.thin_rows(rows, CITYSCAPES.names, ("pole", "traffic light"), 3)
    assert [r["id"] for r in picked] == ["e", "c", "a"]  # 50, 33, then the tie 10/10 by id
    assert [r["id"] for r in collect.thin_rows(rows, CITYSCAPES.names, ("pole",), 9, exclude=rows[4:])] == [
        "a",
        "d",
        "c",
    ]  # "b" has none
    assert collect.thin_rows(rows, CITYSCAPES.names, ("not a class",), 3) == []


def test_scale_weights_multiply_the_hierarchical_attention_out():
    a05, a1 = np.array([[0.8, 0.0]]), np.array([[0.5, 0.25]])
    weights = collect.scale_weights({0.5: a05, 1.0: a1}, (0.5, 1.0, 2.0), "hierarchical")
    # P = a_.5 p_.5 + (1 - a_.5) [a_1 p_1 + (1 - a_1) p_2]
    np.testing.assert_allclose(weights[0.5], [[0.8, 0.0]])
    np.testing.assert_allclose(weights[1.0], [[0.1, 0.25]])
    np.testing.assert_allclose(weights[2.0], [[0.1, 0.75]])
    np.testing.assert_allclose(sum(weights.values()), 1.0)
    assert collect.scale_weights({0.5: a05}, (0.5, 1.0, 2.0), "hierarchical") == {}  # 1.0x map missing
    softmax = {0.5: np.array([[0.2]]), 1.0: np.array([[0.3]]), 2.0: np.array([[0.5]])}
    assert collect.scale_weights(softmax, (0.5, 1.0, 2.0), "explicit") == softmax  # already the weights
    assert collect.scale_weights(softmax, (0.5, 1.0, 2.0), "avgpool") == {}


def test_attention_maps_are_found_by_scale(labelled: Path):
    maps = collect.attention_maps(labelled, sample_id(1))
    assert list(maps) == [0.5, 1.0]
    assert all(p.is_file() for p in maps.values())
    assert collect.attention_maps(labelled, "train_extra/town/nothing") == {}


def test_evaluation_json_is_read_or_refused(tmp_path: Path):
    path = tmp_path / "student.json"
    path.write_text(json.dumps({"metrics": {"miou": 0.5, "iou": {"road": 0.9, "car": None}}}))
    ev = collect.read_evaluation(path, "student")
    assert (ev.name, ev.miou, ev.iou["road"], ev.iou["car"]) == ("student", 0.5, 0.9, None)
    (tmp_path / "bad.json").write_text('{"accuracy": 1}')
    with pytest.raises(DataError, match="bad.json"):
        collect.read_evaluation(tmp_path / "bad.json", "x")
    with pytest.raises(DataError, match="missing.json"):
        collect.read_evaluation(tmp_path / "missing.json", "x")


# ---------------------------------------------------------------------------------------------------------
# pictures


def test_heatmap_spans_the_ramp():
    ramp = plots.ramp_table()
    tile = np.asarray(plots.heatmap(np.array([[0, 5, 10]], np.uint8), levels=10))
    assert (tile[0, 0] == ramp[0]).all() and (tile[0, 2] == ramp[255]).all()
    assert not (tile[0, 1] == ramp[0]).all() and not (tile[0, 1] == ramp[255]).all()


def test_label_colours_are_the_class_colours():
    labels = np.array([[ROAD, CAR, 255]], np.uint8)
    rgb = np.asarray(plots.colorize_labels(labels, CITYSCAPES.palette()))
    assert rgb[0].tolist() == [list(CITYSCAPES.colors[ROAD]), list(CITYSCAPES.colors[CAR]), [0, 0, 0]]


def _bar_length(chart: Image.Image, color: tuple[int, int, int]) -> int:
    hits = np.all(np.asarray(chart) == color, axis=-1)
    rows = hits.sum(axis=1)
    return int(rows.max())


def test_bar_lengths_are_proportional_to_values():
    series = [plots.Series("x", [0.1, 0.0]), plots.Series("y", [0.0, 0.2])]
    short = plots.grouped_bar_chart(["a", "b"], series, title="t")
    x_len, y_len = _bar_length(short, plots.SERIES_COLORS[0]), _bar_length(short, plots.SERIES_COLORS[1])
    assert abs(y_len - 2 * x_len) <= 2, (x_len, y_len)


def test_line_chart_dots_rise_with_the_values():
    chart = plots.line_chart(
        [0.5, 0.7, 0.9], [plots.Series("s", [10.0, 50.0, 90.0])], title="t", x_label="x", y_label="y"
    )
    ys, xs = np.nonzero(np.all(np.asarray(chart) == plots.SERIES_COLORS[0], axis=-1))
    plot = ys > 50  # below the title and legend
    left, right = ys[plot & (xs < xs[plot].min() + 3)], ys[plot & (xs > xs[plot].max() - 3)]
    assert right.mean() < left.mean()  # higher value = nearer the top


# ---------------------------------------------------------------------------------------------------------
# the page


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [v for k, v in attrs if k in ("src", "href") and v]


def page_links(page: Path) -> list[str]:
    parser = _Links()
    parser.feed(page.read_text())
    return parser.links


def test_report_references_only_files_that_exist(labelled: Path, tmp_path: Path):
    evaluation = tmp_path / "eval.json"
    evaluation.write_text(json.dumps({"miou": 0.4567, "iou": {"road": 0.9, "car": 0.0123}}))
    page = build_report(
        labelled, evaluations={"student": evaluation}, options=ReportOptions(worst=2, sample=2, thumb_width=32)
    )
    assert page == labelled / "report" / "index.html"
    links = page_links(page)
    assert len(links) >= 4 + 2 * 2 * 6  # charts + legends + two sheets of 2 rows x 6 pictures
    for link in links:
        assert not re.match(r"^[a-z]+:", link) and not link.startswith("/"), link  # relative, no network
        assert (page.parent / link).is_file(), link
    text = page.read_text()
    for needle in (
        "45.7",
        "1.2",
        "corrupt or truncated image",
        "weight 0.5x",
        "weight 2x",
        "human coarse label",
        sample_id(0),
        sample_id(1),
    ):
        assert needle in text, needle


def test_sheet_pictures_show_the_label_set(labelled: Path):
    page = build_report(labelled, options=ReportOptions(worst=2, sample=0, thumb_width=W))
    assets = page.parent / "assets"
    label = np.asarray(Image.open(assets / "worst_001_label.png").convert("RGB"))
    assert label.shape == (H, W, 3)
    assert (label[0, 0] == CITYSCAPES.colors[ROAD]).all() and (label[-1, 0] == CITYSCAPES.colors[CAR]).all()
    assert (label[-1, -1] == 0).all()
    coarse = np.asarray(Image.open(assets / "worst_001_coarse.png").convert("RGB"))
    assert (coarse[0, 0] == CITYSCAPES.colors[SKY]).all() and (coarse[-1, -1] == 0).all()
    conf = np.asarray(Image.open(assets / "worst_001_confidence.png").convert("RGB"))
    assert (conf[-1, 0] == plots.ramp_table()[255]).all()  # code 10 = top of the ladder
    # attention 0.5x = 200/255 everywhere, 1.0x = 50/255: 0.5x takes 78 % of the prediction, 2.0x 17 %, 1.0x 4 %
    bright = {s: np.asarray(Image.open(assets / f"worst_001_weight_{s}x.png").convert("L")).mean() for s in (0.5, 1, 2)}
    assert bright[0.5] > bright[2] > bright[1]  # the ramp gets lighter with the weight


def test_overlay_keeps_the_scene_visible_under_the_heat_map():
    base = Image.fromarray(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8))
    heat = plots.heatmap(np.array([[128, 128]], np.uint8))
    mixed = np.asarray(plots.overlay(heat, base, alpha=0.7)).astype(int)
    assert (np.abs(mixed[0, 1] - mixed[0, 0] - 0.3 * 255) <= 1).all()  # the dark and the light pixel still differ


def test_thin_sheet_appears_with_the_images_that_have_those_classes(labelled: Path):
    options = ReportOptions(worst=1, thin=2, thin_classes=("car",), sample=0, thumb_width=16)
    text = build_report(labelled, options=options).read_text()
    assert "Most thin-structure pixels (2)" in text
    sheet = text[text.index('id="thin"') :]
    assert sample_id(1) in sheet and sample_id(2) in sheet  # every labelled image has the same car; by id
    none = build_report(labelled, options=ReportOptions(worst=1, thin_classes=("pole",), sample=0, thumb_width=16))
    assert "Most thin-structure pixels" not in none.read_text()  # no auto label has a pole pixel


def test_rerun_replaces_the_report_and_leaves_no_temporary_folders(labelled: Path):
    build_report(labelled, options=ReportOptions(worst=3, sample=2, thumb_width=16))
    page = build_report(labelled, options=ReportOptions(worst=1, sample=0, thumb_width=16))
    names = {p.name for p in (page.parent / "assets").iterdir()}
    assert not any(n.startswith("worst_001") or n.startswith("random") for n in names)
    assert [p.name for p in labelled.iterdir() if p.name.startswith(".")] == []


def test_report_without_attention_or_coarse_drops_those_columns(tmp_path: Path):
    root = tmp_path / "city"
    make_city(root, 3)
    for path in (root / "gtCoarse").rglob("*.png"):
        path.unlink()
    out = tmp_path / "labels"
    make_labelset(out, root, n=3, attention=False)
    text = build_report(out, tmp_path / "html", options=ReportOptions(worst=2, thumb_width=16)).read_text()
    assert "weight 0.5x" not in text and "human coarse label" not in text
    assert not (out / "report").exists()  # written where asked, nowhere else


def test_class_list_must_match_the_label_set(labelled: Path):
    from autolabel.classes import custom_class_set

    with pytest.raises(LabelSetError, match="class list"):
        build_report(labelled, classes=custom_class_set(("a", "b")))


def test_cli_writes_the_report_and_names_it(labelled: Path, tmp_path: Path):
    evaluation = tmp_path / "teacher.json"
    evaluation.write_text(json.dumps({"miou": 0.25, "iou": {"road": 0.5}}))
    result = CliRunner().invoke(
        main, ["report", str(labelled), "--evaluation", str(evaluation), "--worst", "1", "--sample", "1"]
    )
    assert result.exit_code == 0, result.output
    page = labelled / "report" / "index.html"
    assert str(page) in result.output
    assert "<th>teacher</th>" in page.read_text()


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path: Path):
    result = CliRunner().invoke(main, ["report", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "Error:" in result.output and "labelset.json" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["report", str(tmp_path), "--evaluation", "=x.json"])
    assert result.exit_code == 2 and "--evaluation" in result.output


def _audit_json(path: Path, labelset_id: str, accuracy: float) -> Path:
    sweep = [{"threshold": t, "coverage": 0.5, "accuracy": accuracy} for t in LADDER]
    path.write_text(
        json.dumps(
            {
                "labelset_id": labelset_id,
                "reference": "gtFine",
                "images": 5,
                "coverage": 0.5,
                "accuracy": accuracy,
                "miou": 0.25,
                "sweep": sweep,
            }
        )
    )
    return path


def test_audits_become_a_table_and_an_accuracy_curve(labelled: Path, tmp_path: Path):
    meta, _ = collect.load_meta_and_manifest(labelled)
    own = _audit_json(tmp_path / "own.json", meta["labelset_id"], 0.875)
    other = _audit_json(tmp_path / "other.json", "someone-else", 0.5)
    build_report(
        labelled, tmp_path / "with", audits={"auto": own, "coarse": other}, options=ReportOptions(worst=0, sample=0)
    )
    build_report(labelled, tmp_path / "without", options=ReportOptions(worst=0, sample=0))
    text = (tmp_path / "with" / "index.html").read_text()
    assert (
        '<td>auto</td><td>gtFine</td><td class="num">5</td><td class="num">50.0</td><td class="num">87.5</td>' in text
    )
    assert "<td>coarse</td>" in text
    # the own audit adds a second line to the coverage chart, the other label set's audit does not
    with_curve = np.asarray(Image.open(tmp_path / "with" / "assets" / "coverage.png").convert("RGB"))
    without = np.asarray(Image.open(tmp_path / "without" / "assets" / "coverage.png").convert("RGB"))
    second = np.all(with_curve == plots.SERIES_COLORS[1], axis=-1).sum()
    assert second > 50 and np.all(without == plots.SERIES_COLORS[1], axis=-1).sum() == 0


def test_audit_json_must_be_an_audit(tmp_path: Path):
    (tmp_path / "eval.json").write_text(json.dumps({"miou": 0.5, "iou": {}}))
    with pytest.raises(DataError, match="eval.json"):
        collect.read_audit(tmp_path / "eval.json", "x")
