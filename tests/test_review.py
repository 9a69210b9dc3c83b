"""The review loop: ranking signals, `review export` read by the real clients, corrections taken back in.

The formats are checked against independent code: datumaro (the library CVAT's formats are written with)
and Label Studio's SDK run in the tools venv (``make review-venv``: .venv-review, or AUTOLABEL_REVIEW_PYTHON)
through tests/tools/review_client.py, which never imports autolabel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from autolabel import labelset
from autolabel.classes import CITYSCAPES
from autolabel.cli import main
from autolabel.config import DataConfig, GenerateConfig, ModelConfig
from autolabel.data.io import read_label, write_label_png
from autolabel.data.sources import Source
from autolabel.errors import EXIT_USER_ERROR, ReviewError
from autolabel.generate.runner import GenerateJob, run_generate
from autolabel.generate.teacher import Teacher
from autolabel.labelset import confidence
from autolabel.labelset.checksums import FINGERPRINT_KEYS
from autolabel.labelset.confidence import make_ladder
from autolabel.labelset.verify import verify_labelset
from autolabel.models.checkpoint import LoadedCheckpoint
from autolabel.review import rle
from autolabel.review.export import export_review
from autolabel.review.importing import import_review
from autolabel.review.package import image_keys, read_package
from autolabel.review.ranking import rank_rows

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "tests" / "tools" / "review_client.py"
SPLIT = "train_extra"
N_IMAGES = 8
TOP = 4


# ---------------------------------------------------------------------------------------------------------
# stand-in teachers (the model contract: model(images, scales=...) -> {"pred", "pred_{s}x", ...})


class PixelTeacher(nn.Module):
    """Per-pixel logits from fixed weights (varied, partly confident labels); the smallest scale's classes are
    shifted by one where the red channel is bright, so scale disagreement varies from image to image."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.randn(19, 3, generator=torch.Generator().manual_seed(0)) * 3

    def forward(self, images: torch.Tensor, scales=None) -> dict[str, torch.Tensor]:
        pred = torch.einsum("kc,bchw->bkhw", self.weight, images)
        out = {"pred": pred}
        scales = sorted(scales or [1.0])
        for s in scales:
            p = pred.roll(1, dims=1) * (images[:, :1] > 0.5) + pred * (images[:, :1] <= 0.5) if s == scales[0] else pred
            out[f"pred_{float(s)}x"] = nn.functional.interpolate(p, scale_factor=s, mode="bilinear")
        return out


class AttentionPixelTeacher(PixelTeacher):
    """PixelTeacher with per-scale attention maps (what ``generate --attention`` keeps)."""

    def forward(self, images: torch.Tensor, scales=None) -> dict[str, torch.Tensor]:
        out = super().forward(images, scales)
        for s in scales or [1.0]:
            out[f"attn_{float(s)}x"] = torch.sigmoid(images[:, :1] * float(s))  # (B, 1, H, W)
        return out


def stand_in_teacher(
    model: nn.Module, scales=(0.5, 1.0, 2.0), flip=False, tile_size=0, num_classes=19, attention=False
) -> Teacher:
    names = CITYSCAPES.names if num_classes == 19 else tuple(f"c{i}" for i in range(num_classes))
    loaded = LoadedCheckpoint(model=model, model_cfg=ModelConfig(width="tiny"), class_names=names, sha256="stand-in")
    settings = GenerateConfig(
        device="cpu", scales=scales, flip=flip, tile_size=tile_size, chunk_size=3, attention=attention
    )
    from autolabel.classes import class_set_for_names

    return Teacher(loaded, class_set_for_names(names), torch.device("cpu"), settings, DataConfig(), make_ladder(0.5))


# ---------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def city(synthetic_city) -> Path:
    return synthetic_city(train=1, val=1, extra=N_IMAGES, size=(64, 32), seed=3, extra_fine=True)


@pytest.fixture(scope="module")
def labels(city: Path, tmp_path_factory) -> Path:
    """A label set generated from the city's train_extra by the stand-in teacher (read-only: copy to change)."""
    out = tmp_path_factory.mktemp("review") / "labels"
    teacher = stand_in_teacher(PixelTeacher())
    source = Source(layout="cityscapes", root=city, split=SPLIT)
    job = GenerateJob(teacher=Path("stand-in.pt"), out=out, generate=teacher.settings, data=DataConfig(), source=source)
    result = run_generate(job, source.discover(exclude=out), teacher.classes, teacher=teacher)
    assert result.ok == N_IMAGES
    return out


def true_fine(city: Path, image_id: str) -> np.ndarray:
    """The city's true fine label of an image, in train ids."""
    split, town, name = image_id.split("/")
    path = city / "gtFine" / split / town / name.replace("_leftImg8bit", "_gtFine_labelIds.png")
    return read_label(path, CITYSCAPES.label_to_train_lut())


def review_python() -> str:
    """The tools venv's interpreter; tests that need it skip without it, except in CI, where they fail."""
    given = os.environ.get("AUTOLABEL_REVIEW_PYTHON")
    python = str(Path(given).absolute()) if given else str(REPO / ".venv-review" / "bin" / "python")
    if not Path(python).is_file():
        message = f"no tools venv at {python}: run `make review-venv` (datumaro, label-studio-sdk)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return python


def run_client(*args: str | Path) -> None:
    done = subprocess.run(
        [review_python(), str(CLIENT), *map(str, args)], capture_output=True, text=True, timeout=300, cwd="/"
    )
    assert done.returncode == 0, done.stderr[-3000:]


def edits_folder(folder: Path, edits: dict[str, np.ndarray], names) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "names.json").write_text(json.dumps(list(names)))
    for key, labels in edits.items():
        write_label_png(folder / f"{key}.png", labels)
    return folder


# ---------------------------------------------------------------------------------------------------------
# ranking


def _row(image_id: str, conf: float, ignored: int, counts: list[int], dis: float | None, source=None) -> dict:
    return {
        "id": image_id,
        "status": "ok",
        "height": 10,
        "width": 10,
        "mean_confidence": conf,
        "ignore_count": ignored,
        "class_counts": counts,
        "scale_disagreement": dis,
        "flip_disagreement": None,
        "source": source,
    }


def test_ranking_scores_mean_percentiles_and_breaks_ties_by_id():
    rows = [
        _row("d", 0.9, 10, [90, 0], 0.30),  # confident but scales disagree most
        _row("a", 0.5, 40, [50, 10], 0.10),  # least confident
        _row("c", 0.7, 0, [100, 0], 0.20),
        _row("b", 0.7, 0, [99, 1], 0.20),  # ties with c on both signals
        _row("h", 0.1, 90, [5, 5], 0.90, source="human"),  # corrected already: not a candidate
        {**_row("e", 0.0, 100, [0, 0], 1.0), "status": "error"},
    ]
    ranking = rank_rows(rows, "confidence,disagreement")
    # percentiles among the 4 candidates (share of the 3 others exceeded, ties half):
    #   1 - confidence: a 1, b/c 0.5, d 0;  disagreement: d 1, b/c 0.5, a 0  -> every score 0.5
    assert [r.id for r in ranking.ranked] == ["a", "b", "c", "d"]
    assert [r.score for r in ranking.ranked] == [0.5, 0.5, 0.5, 0.5]
    by_confidence = rank_rows(rows, ["confidence"])
    assert [r.id for r in by_confidence.ranked] == ["a", "b", "c", "d"]
    assert by_confidence.ranked[0].signals["confidence"] == pytest.approx(0.5)
    rare = rank_rows(rows, "rare,ignored", boost_ids=[1])
    # rare share: a 0.1, b 0.01, c/d 0;  ignored: a 0.4, d 0.1, b/c 0
    assert [r.id for r in rare.ranked] == ["a", "b", "d", "c"]


def test_ranking_uses_what_an_old_manifest_has():
    rows = [_row("x", 0.9, 0, [100], None), _row("y", 0.4, 0, [100], None)]
    ranking = rank_rows(rows, "disagreement,confidence")
    assert ranking.used == ("confidence",) and ranking.missing == ("disagreement",)
    assert [r.id for r in ranking.ranked] == ["y", "x"]
    with pytest.raises(ReviewError, match="none of the signals"):
        rank_rows(rows, "disagreement")
    with pytest.raises(ReviewError, match="unknown signal"):
        rank_rows(rows, "confusion")
    with pytest.raises(ReviewError, match="boost-classes"):
        rank_rows(rows, "rare")


def test_generate_records_the_signals_and_the_source(labels: Path):
    rows = labelset.read_manifest(labels).to_pylist()
    assert {r["source"] for r in rows} == {"teacher"}
    shares = [r["scale_disagreement"] for r in rows]
    assert all(0.0 <= s <= 1.0 for s in shares) and len(set(shares)) > 1
    assert all(r["flip_disagreement"] is None for r in rows)  # generated without flip


def test_rethresholding_keeps_the_signals_and_the_source(labels: Path, tmp_path: Path):
    from autolabel.labelset.rethreshold import ThresholdRequest, rethreshold

    rethreshold(labels, ThresholdRequest(threshold=0.6), tmp_path / "at_0.6")
    before = labelset.rows_by_id(labelset.read_manifest(labels))
    after = labelset.rows_by_id(labelset.read_manifest(tmp_path / "at_0.6"))
    for image_id, row in after.items():
        assert row["scale_disagreement"] == before[image_id]["scale_disagreement"] and row["source"] == "teacher"


# ---------------------------------------------------------------------------------------------------------
# Label Studio's brush RLE


def test_brush_rle_round_trips_runs_literals_and_long_runs():
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [np.zeros(70_000, np.uint8), rng.integers(0, 256, 300).astype(np.uint8), np.full(9, 255, np.uint8)]
    )
    assert np.array_equal(rle.decode(rle.encode(values)), values)
    mask = rng.random((13, 17)) > 0.5
    assert np.array_equal(rle.decode_mask(rle.encode_mask(mask), 13, 17), mask)
    with pytest.raises(ReviewError, match="truncated"):
        rle.decode(rle.encode(values)[:-40])
    with pytest.raises(ReviewError, match="RGBA mask"):
        rle.decode_mask(rle.encode_mask(mask), 13, 18)


# ---------------------------------------------------------------------------------------------------------
# export -> the real client reads it -> it writes a corrected export -> import


def _edits_for(city: Path, package_dir: Path, n: int) -> dict[str, np.ndarray]:
    """The true fine labels for the first n images of a package, with a void strip (stays unlabelled)."""
    package = read_package(package_dir)
    edits = {}
    for entry in package.images[:n]:
        fine = true_fine(city, entry["id"])
        fine[:, :3] = 255
        edits[entry["key"]] = fine
    return edits


def _assert_import(labels: Path, out: Path, city: Path, edits: dict[str, np.ndarray], package_dir: Path) -> None:
    """Exactly the edited pixels changed, everything else byte-identical, provenance set, verify clean."""
    package = read_package(package_dir)
    keys = {e["id"]: e["key"] for e in package.images}
    old = labelset.rows_by_id(labelset.read_manifest(labels))
    new = labelset.rows_by_id(labelset.read_manifest(out))
    assert set(old) == set(new)
    meta, new_meta = labelset.read_labelset(labels), labelset.read_labelset(out)
    assert new_meta["parent_labelset_id"] == meta["labelset_id"] != new_meta["labelset_id"]
    assert len(new_meta["review"]["corrections_sha256"]) == 64
    ladder = new_meta["ladder"]
    for image_id, row in new.items():
        before = read_label(labels / old[image_id]["label"])
        after = read_label(out / row["label"])
        key = keys.get(image_id)
        if key in edits:
            assert np.array_equal(after, edits[key]) and row["source"] == "human"
            codes = confidence.load_confidence(out, image_id)
            assert np.array_equal(codes == len(ladder), after != 255) and not ((codes > 0) & (after == 255)).any()
        elif key is not None:  # reviewed, accepted as it was
            assert np.array_equal(after, before) and row["source"] == "human"
        else:
            assert (out / row["label"]).read_bytes() == (labels / old[image_id]["label"]).read_bytes()
            assert row == {**old[image_id], "source": "teacher"}
            codes = confidence.load_confidence(labels, image_id)
            assert np.array_equal(confidence.load_confidence(out, image_id), codes)
    report = verify_labelset(out)
    assert report.ok, report.problems


@pytest.mark.parametrize(("fmt", "dm_format"), [("cvat-cityscapes", "cityscapes"), ("cvat-mask", "voc_segmentation")])
def test_cvat_packages_read_and_written_by_datumaro(labels: Path, city: Path, tmp_path: Path, fmt: str, dm_format: str):
    package = tmp_path / "package"
    result = export_review(labels, package, top=TOP, by="disagreement,confidence", fmt=fmt)
    assert len(result.images) == TOP
    edits = _edits_for(city, package, 2)
    exported, seen = tmp_path / "exported", tmp_path / "seen"
    task_labels = [n.replace(" ", "_") for n in CITYSCAPES.names]  # as the package's label list names them
    run_client("dm", dm_format, package, edits_folder(tmp_path / "edits", edits, task_labels), exported, seen)
    names = json.loads((seen / "names.json").read_text())
    to_train = np.full(256, 255, np.uint8)
    for index, name in enumerate(names):
        if name != "background":
            to_train[index] = CITYSCAPES.names.index(name.replace("_", " "))
    manifest = labelset.rows_by_id(labelset.read_manifest(labels))
    for entry in read_package(package).images:  # datumaro read exactly our labels; ignore stayed unlabelled
        read = to_train[np.asarray(Image.open(seen / f"{entry['key']}.png"))]
        assert np.array_equal(read, read_label(labels / manifest[entry["id"]]["label"]))
    out = tmp_path / "labels_v2"
    imported = import_review(labels, exported, out, review=package / "review.json")
    assert imported.format == fmt and imported.corrected == sorted(e["id"] for e in read_package(package).images)
    _assert_import(labels, out, city, edits, package)


def test_label_studio_package_read_and_written_by_the_sdk(labels: Path, city: Path, tmp_path: Path):
    package = tmp_path / "package"
    export_review(labels, package, top=TOP, fmt="label-studio")
    edits = _edits_for(city, package, 2)
    exported, seen = tmp_path / "export.json", tmp_path / "seen"
    run_client("ls", package / "tasks.json", edits_folder(tmp_path / "edits", edits, CITYSCAPES.names), exported, seen)
    names = json.loads((seen / "names.json").read_text())
    assert names == list(CITYSCAPES.names)
    manifest = labelset.rows_by_id(labelset.read_manifest(labels))
    for entry in read_package(package).images:
        read = np.asarray(Image.open(seen / f"{entry['key']}.png"))
        assert np.array_equal(read, read_label(labels / manifest[entry["id"]]["label"]))
    out = tmp_path / "labels_v2"
    import_review(labels, exported, out, review=package / "review.json")
    _assert_import(labels, out, city, edits, package)


def test_image_keys_are_file_names_unique_within_the_label_set():
    keys = image_keys(["train_extra/a/a_000001_leftImg8bit", "x/img", "y/img", "z/other"])
    assert keys == {
        "train_extra/a/a_000001_leftImg8bit": "a_000001",
        "x/img": "x__img",
        "y/img": "y__img",
        "z/other": "other",
    }


# ---------------------------------------------------------------------------------------------------------
# refusing what does not belong, idempotence, the command line


@pytest.fixture()
def mask_package(labels: Path, tmp_path: Path) -> Path:
    package = tmp_path / "package"
    result = CliRunner().invoke(
        main, ["review", "export", str(labels), "--top", "3", "--format", "cvat-mask", "--out", str(package)]
    )
    assert result.exit_code == 0, result.output
    assert "3 of 8 images by confidence,disagreement" in result.output
    return package


def _import_cli(labels: Path, exported: Path, out: Path, *extra: str):
    return CliRunner().invoke(main, ["review", "import", str(labels), str(exported), "--out", str(out), *extra])


def _one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == EXIT_USER_ERROR, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_import_refuses_an_unknown_image_a_wrong_size_and_an_unknown_colour(labels: Path, mask_package: Path, tmp_path):
    keys = [e["key"] for e in read_package(mask_package).images]
    masks = mask_package / "SegmentationClass"

    def export_with(change) -> Path:
        exported = tmp_path / f"exported_{change.__name__}"
        shutil.copytree(mask_package, exported)
        change(exported / "SegmentationClass")
        return exported

    def rename(folder: Path) -> None:
        (folder / f"{keys[0]}.png").rename(folder / "someone_else.png")

    def shrink(folder: Path) -> None:
        path = folder / f"{keys[1]}.png"
        Image.open(path).resize((32, 16), Image.Resampling.NEAREST).save(path)

    def repaint(folder: Path) -> None:
        path = folder / f"{keys[2]}.png"
        rgb = np.asarray(Image.open(path).convert("RGB")).copy()
        rgb[5, 7] = (1, 2, 3)
        Image.fromarray(rgb).save(path)

    out = tmp_path / "v2"
    _one_line_error(_import_cli(labels, export_with(rename), out), "unknown image 'someone_else'", "review.json")
    _one_line_error(_import_cli(labels, export_with(shrink), out), "wrong size 32x16", "is 64x32", keys[1])
    _one_line_error(_import_cli(labels, export_with(repaint), out), "unknown class colour (1, 2, 3) at x=7, y=5")
    assert not out.exists()  # nothing written before the export checked out
    assert masks.is_dir()


def test_import_refuses_another_label_sets_package_and_unknown_classes(labels: Path, mask_package: Path, tmp_path):
    package = json.loads((mask_package / "review.json").read_text())
    other = tmp_path / "other_review.json"
    other.write_text(json.dumps({**package, "labelset_id": "0123456789abcdef"}))
    result = _import_cli(labels, mask_package, tmp_path / "v2", "--review", str(other))
    _one_line_error(result, "belongs to label set 0123456789abcdef")
    tasks = [
        {
            "data": {"autolabel_id": package["images"][0]["id"]},
            "annotations": [
                {
                    "result": [
                        {
                            "type": "brushlabels",
                            "original_width": 64,
                            "original_height": 32,
                            "value": {
                                "format": "rle",
                                "rle": rle.encode_mask(np.ones((32, 64))),
                                "brushlabels": ["tree"],
                            },
                        }
                    ]
                }
            ],
        }
    ]
    exported = tmp_path / "ls.json"
    exported.write_text(json.dumps(tasks))
    result = _import_cli(labels, exported, tmp_path / "v2", "--review", str(mask_package / "review.json"))
    _one_line_error(result, "unknown class 'tree'")


def test_a_second_import_of_the_same_export_changes_nothing(labels: Path, mask_package: Path, tmp_path: Path):
    out = tmp_path / "v2"
    first = _import_cli(labels, mask_package, out)  # the package itself: its masks, accepted as they are
    assert first.exit_code == 0, first.output
    assert "3 images corrected (0 pixels changed), 5 carried over" in first.output
    files = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(out.rglob("*")) if p.is_file()}
    second = _import_cli(labels, mask_package, out)
    assert second.exit_code == 0 and "already holds this import" in second.output
    assert files == {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(out.rglob("*")) if p.is_file()}
    # the same corrections from the zip a tool hands out (read without extracting): the same label set
    from_zip = tmp_path / "v2_zip"
    assert _import_cli(labels, mask_package / "annotations.zip", from_zip).exit_code == 0
    assert labelset.read_labelset(from_zip) == labelset.read_labelset(out)
    carried = next(r for r in labelset.read_manifest(out).to_pylist() if r["source"] == "teacher")
    assert os.path.samefile(out / carried["label"], labels / carried["label"])  # hard-linked, not copied
    # different corrections into the same folder are another label set: refused without --overwrite
    changed = tmp_path / "changed"
    shutil.copytree(mask_package, changed)
    mask = next((changed / "SegmentationClass").glob("*.png"))
    rgb = np.asarray(Image.open(mask).convert("RGB")).copy()
    rgb[:4, :4] = CITYSCAPES.colors[CITYSCAPES.index("sky")]
    Image.fromarray(rgb).save(mask)
    _one_line_error(_import_cli(labels, changed, out), "--overwrite")


def test_corrected_rows_keep_the_input_fingerprint_and_list_the_linked_attention_maps(city: Path, tmp_path: Path):
    labels = tmp_path / "labels"
    teacher = stand_in_teacher(AttentionPixelTeacher(), attention=True)
    source = Source(layout="cityscapes", root=city, split=SPLIT)
    job = GenerateJob(teacher=Path("t.pt"), out=labels, generate=teacher.settings, data=DataConfig(), source=source)
    assert run_generate(job, source.discover(exclude=labels), teacher.classes, teacher=teacher).ok == N_IMAGES
    package = tmp_path / "package"
    export_review(labels, package, top=3, fmt="cvat-mask")
    out = tmp_path / "v2"
    import_review(labels, package, out)  # the package itself: the teacher's masks, accepted as they are
    old = labelset.rows_by_id(labelset.read_manifest(labels))
    human = [r for r in labelset.read_manifest(out).to_pylist() if r["source"] == "human"]
    assert len(human) == 3
    for row in human:
        parent = old[row["id"]]
        assert [row[k] for k in FINGERPRINT_KEYS] == [parent[k] for k in FINGERPRINT_KEYS]
        assert parent["input_sha256"] is not None
        attention = sorted(e["path"] for e in parent["output_files"] if e["path"].startswith("attention/"))
        assert len(attention) == 3 and set(attention) <= {e["path"] for e in row["output_files"]}
    report = verify_labelset(out)
    assert report.ok, report.problems


def test_a_student_weights_corrected_images_with_the_human_weight(labels: Path, mask_package: Path, tmp_path: Path):
    from autolabel.train.datasets import AutoLabelSource, TrainDataset
    from autolabel.train.sampling import PlanItem

    out = tmp_path / "v2"
    import_review(labels, mask_package, out)
    source = AutoLabelSource(out, CITYSCAPES)
    corrected = {e["id"] for e in read_package(mask_package).images}
    assert [source.ids[i] in corrected for i in range(len(source))] == source.human
    dataset = TrainDataset([source], transform=None, loss_weights=[0.25], human_loss_weight=2.0)  # type: ignore[arg-type]
    weights = [dataset.loss_weight(PlanItem(0, i, -1, -1, 0)) for i in range(len(source))]
    assert weights == [2.0 if human else 0.25 for human in source.human] and sum(source.human) == 3


def test_re_thresholding_down_or_up_leaves_the_human_corrections_as_they_are(
    labels: Path, mask_package: Path, tmp_path: Path
):
    from autolabel.labelset.rethreshold import ThresholdRequest, rethreshold
    from autolabel.train.datasets import AutoLabelSource

    out = tmp_path / "v2"
    import_review(labels, mask_package, out)
    human = [r for r in labelset.read_manifest(out).to_pylist() if r["source"] == "human"]
    assert human
    ladder = labelset.read_labelset(out)["ladder"]  # this fixture's: 0.5, 0.55, ..., 0.95
    source_set = out
    for threshold in (ladder[-2], ladder[0]):  # up from the set's 0.5, then from there down again
        dest = tmp_path / f"at_{threshold}"
        rethreshold(source_set, ThresholdRequest(threshold=threshold), dest)
        source_set = dest
        for row in human:
            assert (dest / row["label"]).read_bytes() == (out / row["label"]).read_bytes()
        source = AutoLabelSource(out, CITYSCAPES, threshold=threshold)  # the student's re-threshold at load time
        for i, image_id in enumerate(source.ids):
            if source.human[i]:
                row = next(r for r in human if r["id"] == image_id)
                assert np.array_equal(source.load(i)[1], read_label(out / row["label"], source.label_lut))


def test_the_report_lists_the_review_selection_with_scores_and_links(labels: Path, mask_package: Path, tmp_path):
    from autolabel.report import build_report

    page = build_report(labels, tmp_path / "report", review=mask_package / "review.json")
    text = page.read_text()
    section = text[text.index('id="review"') : text.index('id="worst"')]
    package = read_package(mask_package)
    for entry in package.images:
        assert entry["id"] in section and f"{entry['score']:.3f}" in section
        for target in (mask_package / entry["files"]["image"], labels / entry["label"]):
            href = os.path.relpath(target, page.parent)
            assert f'href="{href}"' in section and (page.parent / href).is_file()


def test_label_sets_that_store_dataset_label_ids_round_trip(city: Path, tmp_path: Path):
    out = tmp_path / "ids"
    teacher = stand_in_teacher(PixelTeacher())
    teacher.settings = GenerateConfig(device="cpu", scales=(0.5, 1.0, 2.0), chunk_size=3, label_ids=True)
    source = Source(layout="cityscapes", root=city, split=SPLIT)
    job = GenerateJob(teacher=Path("stand-in.pt"), out=out, generate=teacher.settings, data=DataConfig(), source=source)
    run_generate(job, source.discover(exclude=out), teacher.classes, teacher=teacher)
    package = tmp_path / "package"
    export_review(out, package, top=2, fmt="cvat-mask")
    entry = read_package(package).images[0]
    mask = package / entry["files"]["label"]
    rgb = np.asarray(Image.open(mask).convert("RGB")).copy()
    rgb[:8, :8] = CITYSCAPES.colors[CITYSCAPES.index("sky")]  # what a reviewer paints
    rgb[8:10, :8] = 0  # and erases
    Image.fromarray(rgb).save(mask)
    import_review(out, package, tmp_path / "ids_v2")
    stored = read_label(tmp_path / "ids_v2" / labelset.rows_by_id(labelset.read_manifest(out))[entry["id"]]["label"])
    sky, void = CITYSCAPES.label_ids[CITYSCAPES.index("sky")], 0  # label ids: unlabelled is 0 there, not 255
    assert (stored[:8, :8] == sky).all() and (stored[8:10, :8] == void).all()
    assert verify_labelset(tmp_path / "ids_v2").ok
