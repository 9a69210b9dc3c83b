"""One interface, end to end: EXIF photos, the demo from any folder, evaluating a folder of predictions (ours
and the official Cityscapes script), and the training log a SLURM file gets."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from autolabel import labelset as labelsets
from autolabel.classes import CITYSCAPES
from autolabel.cli import main
from autolabel.config import DataConfig, ModelConfig
from autolabel.data.io import image_size, read_image, read_label
from autolabel.evaluate.official import numpy_in1d
from autolabel.evaluate.predictions import LABEL_IDS_DIR, TRAIN_IDS_DIR
from autolabel.models import build_model
from autolabel.models.checkpoint import save_checkpoint
from autolabel.models.predict import normalise

REPO = Path(__file__).resolve().parents[1]
ORIENTATION = 0x0112


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _fit_tiny_teacher(city: Path, steps: int = 60) -> torch.nn.Module:
    """A few steps on the city's own images and labels: predictions with several of its classes right, so IoUs
    are not all zero. (A teacher fitted to colour blobs predicted two city classes on one machine and one on
    another: which classes blobs map to depends on the CPU's arithmetic.)"""
    lut = CITYSCAPES.label_to_train_lut()
    images = sorted((city / "leftImg8bit").glob("*/*/*_leftImg8bit.png"))
    x = normalise(torch.from_numpy(np.stack([read_image(p) for p in images])), DataConfig().mean, DataConfig().std)
    y = torch.from_numpy(np.stack([read_label(_gtfine_label(p), lut) for p in images])).long()  # (N, H, W)
    torch.manual_seed(0)
    model = build_model(ModelConfig(width="tiny", num_classes=19, infer_scales=(0.5, 1.0)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x)["pred"], y, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _gtfine_label(image: Path) -> Path:
    """The gtFine labelIds file of a Cityscapes image."""
    split, town = image.parent.parent.name, image.parent.name
    name = image.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
    return image.parents[3] / "gtFine" / split / town / name


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, city) -> Path:
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    cfg = ModelConfig(width="tiny", num_classes=19, infer_scales=(0.5, 1.0))
    save_checkpoint(path, _fit_tiny_teacher(city), cfg, CITYSCAPES.names)
    return path


@pytest.fixture(scope="module")
def city(synthetic_city) -> Path:
    return synthetic_city(train=2, val=3, extra=0, size=(64, 32), seed=6)


# ---------------------------------------------------------------------------------------------------------
# EXIF orientation


def _sideways_photo(path: Path, orientation: int = 6) -> np.ndarray:
    """A 40x24 JPEG whose EXIF says "turn me a quarter clockwise" (6); returns how a viewer shows it."""
    stored = np.zeros((24, 40, 3), np.uint8)
    stored[:, :20] = (250, 10, 10)  # the left half red, the right half blue, as stored
    stored[:, 20:] = (10, 10, 250)
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    return np.rot90(stored, k=-1)  # orientation 6: rotate 90 degrees clockwise to display


def test_read_image_turns_a_photo_upright_by_its_exif_orientation(tmp_path):
    upright = _sideways_photo(tmp_path / "p.jpg")
    image = read_image(tmp_path / "p.jpg")
    assert image.shape == upright.shape == (40, 24, 3)
    assert image[0, :, 0].mean() > 200 and image[-1, :, 2].mean() > 200  # red on top, blue below, as shown
    assert read_image(tmp_path / "p.jpg", exif_transpose=False).shape == (24, 40, 3)
    assert image_size(tmp_path / "p.jpg") == (24, 40) and image_size(tmp_path / "p.jpg", exif_transpose=False) == (
        40,
        24,
    )


@pytest.mark.parametrize(("setting", "shape", "transposed"), [(None, (40, 24), True), ("false", (24, 40), False)])
def test_generate_labels_a_sideways_photo_upright_and_records_it(teacher, tmp_path, setting, shape, transposed):
    photos = tmp_path / "photos"
    photos.mkdir()
    _sideways_photo(photos / "side.jpg")
    Image.fromarray(np.full((24, 40, 3), 128, np.uint8)).save(photos / "plain.png")
    out = tmp_path / "labels"
    extra = ["--set", f"data.exif_transpose={setting}"] if setting else []
    result = invoke("generate", "--teacher", teacher, "--data", photos, "--out", out, "--scales", "0.5,1.0", *extra)
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in labelsets.read_manifest(out).to_pylist()}
    assert read_label(out / rows["side"]["label"]).shape == shape
    assert (rows["side"]["height"], rows["side"]["width"]) == shape
    assert rows["side"]["exif_transposed"] is transposed and rows["plain"]["exif_transposed"] is False
    assert invoke("verify", out).exit_code == 0


def test_a_manifest_written_before_the_exif_column_still_loads(tmp_path, teacher, city):
    out = tmp_path / "labels"
    assert invoke("generate", "--teacher", teacher, "--data", f"cityscapes:{city}:val", "--out", out,
                  "--scales", "0.5,1.0").exit_code == 0  # fmt: skip
    for part in labelsets.part_paths(out):
        table = pq.read_table(part).drop_columns(["exif_transposed"])  # what older code wrote
        pq.write_table(table, part)
    table = labelsets.read_manifest(out)
    assert table.num_rows == 3 and table.column("exif_transposed").null_count == 3
    assert table.schema.field("exif_transposed").type == pa.bool_()


# ---------------------------------------------------------------------------------------------------------
# the shipped pipelines


@pytest.mark.slow
def test_demo_runs_from_another_folder_with_the_shipped_pipeline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no pipelines/ here: the demo must find its own
    # one epoch of a tiny teacher may label nothing at 0.5: the student is told to accept that
    tiny = ["train.epochs=1", "student.epochs=1", "train.batch_size=2", "train.crop_size=32,64",
            "train.class_uniform_tile=32", "generate.centroid_tile=32", "student.drop_auto_after_epoch=0",
            "train.val_every=0", "student.allow_empty_labels=true"]  # fmt: skip
    sets = [arg for item in tiny for arg in ("--set", item)]
    result = invoke("demo", "--out", "d", "--train", 2, "--val", 1, "--extra", 2, "--size", "64x32", *sets)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d" / "report" / "index.html").is_file()
    assert "mIoU" in result.stdout


def test_a_pipeline_name_finds_the_shipped_file_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("show-config", "--set", "train.lr=0.02")
    named = CliRunner().invoke(main, ["train-teacher", "--config", "demo", "--help"])
    assert result.exit_code == 0 and named.exit_code == 0
    shipped = invoke("show-config", "cityscapes")
    assert shipped.exit_code == 0 and 'name = "cityscapes"' in shipped.stdout


def test_a_copied_pipeline_whose_relative_paths_point_nowhere_says_so(tmp_path):
    copy = tmp_path / "elsewhere" / "demo.toml"
    copy.parent.mkdir()
    shutil.copy(REPO / "pipelines" / "demo.toml", copy)
    result = invoke("train-teacher", "--config", copy, "--out", tmp_path / "run")
    assert result.exit_code == 2
    message = result.stderr
    assert "data.root" in message and "relative paths" in message and "--data" in message
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------------------
# evaluating a folder of predictions


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, teacher, city) -> tuple[Path, dict]:
    """``evaluate --checkpoint`` with its predictions saved."""
    out = tmp_path_factory.mktemp("eval")
    result = invoke("evaluate", "--checkpoint", teacher, "--data", f"cityscapes:{city}:val", "--device", "cpu",
                    "--out", out, "--save-predictions", out / "pred")  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "evaluation.json").read_text())
    assert sum(v is not None and v > 0 for v in payload["iou"].values()) >= 2  # a comparison worth making
    return out / "pred", payload


def test_evaluating_saved_predictions_equals_evaluating_the_model(evaluated, city, tmp_path):
    pred, model = evaluated
    spec = f"cityscapes:{city}:val"
    runs = {
        "export folder": invoke("evaluate", "--predictions", pred, "--data", spec, "--json", tmp_path / "a.json"),
        "train ids": invoke(
            "evaluate",
            "--predictions",
            pred / TRAIN_IDS_DIR,
            "--data",
            spec,
            "--prediction-values",
            "train-ids",
            "--json",
            tmp_path / "b.json",
        ),  # fmt: skip
        # flat <city>_<seq>_<frame>_leftImg8bit.png label ids, matched by Cityscapes name
        "label ids": invoke(
            "evaluate", "--predictions", pred / LABEL_IDS_DIR, "--data", spec, "--json", tmp_path / "c.json"
        ),  # fmt: skip
    }
    for name, run in runs.items():
        assert run.exit_code == 0, (name, run.output)
    for name in ("a", "b", "c"):
        theirs = json.loads((tmp_path / f"{name}.json").read_text())
        assert theirs["iou"] == model["iou"] and theirs["miou"] == model["miou"], name
        assert theirs["pixels"] == model["pixels"] and theirs["images"] == model["images"]
    assert runs["export folder"].stdout == runs["label ids"].stdout  # the same table


def test_missing_or_misnamed_predictions_are_a_clean_error(evaluated, city, tmp_path):
    pred, _ = evaluated
    partial = tmp_path / "partial"
    shutil.copytree(pred / TRAIN_IDS_DIR, partial)
    next(partial.rglob("*.png")).unlink()
    result = invoke("evaluate", "--predictions", partial, "--data", f"cityscapes:{city}:val")
    assert result.exit_code == 2 and "no prediction for 1 of 3 labelled images" in result.stderr


def test_label_id_predictions_read_as_train_ids_are_warned_about(evaluated, city):
    pred, _ = evaluated
    result = invoke("evaluate", "--predictions", pred / LABEL_IDS_DIR, "--data", f"cityscapes:{city}:val",
                    "--prediction-values", "train-ids")  # fmt: skip
    assert result.exit_code == 0 and "not train ids" in result.stderr


# ---------------------------------------------------------------------------------------------------------
# the official Cityscapes evaluation


def _with_instance_ids(city: Path, dest: Path) -> Path:
    """A copy of the city's val split with ``*_gtFine_instanceIds.png`` as Cityscapes has them: instance-class
    pixels hold ``labelId * 1000 + k`` (one instance per class and image here), the rest their labelId."""
    from cityscapesscripts.helpers.labels import labels as cs_labels

    has_instances = np.zeros(256, bool)
    for label in cs_labels:
        if label.id >= 0 and label.hasInstances:
            has_instances[label.id] = True
    shutil.copytree(city, dest)
    for path in (dest / "gtFine" / "val").rglob("*_gtFine_labelIds.png"):
        ids = np.asarray(Image.open(path)).astype(np.int32)
        instances = np.where(has_instances[ids], ids * 1000, ids).astype(np.uint16)  # 16-bit, as Cityscapes'
        Image.fromarray(instances).save(str(path).replace("labelIds", "instanceIds"))
    return dest


def test_official_script_runs_in_full_and_agrees_with_our_numbers(evaluated, city, tmp_path):
    pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
    pred, model = evaluated
    full = _with_instance_ids(city, tmp_path / "city")
    assert not hasattr(np, "in1d") or np.lib.NumpyVersion(np.__version__) < "2.4.0"
    result = invoke("evaluate", "--predictions", pred, "--data", f"cityscapes:{full}:val", "--official",
                    "--prediction-values", "label-ids", "--json", tmp_path / "o.json")  # fmt: skip
    assert result.exit_code == 0, result.output
    official = json.loads((tmp_path / "o.json").read_text())["official"]
    assert official["miou"] == pytest.approx(model["miou"], abs=1e-6)
    for name, iou in model["iou"].items():
        if iou is not None:
            assert official["iou"][name] == pytest.approx(iou, abs=1e-6), name
    assert official["iiou"] is not None and 0.0 <= official["iiou"] <= 1.0  # the instance-level part ran
    assert "official Cityscapes script" in result.stdout


def test_official_script_scores_ground_truth_as_perfect_on_classes_and_instances(city, tmp_path):
    pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
    full = _with_instance_ids(city, tmp_path / "city")
    perfect = tmp_path / "perfect"
    perfect.mkdir()
    for path in (full / "gtFine" / "val").rglob("*_gtFine_labelIds.png"):
        shutil.copy(path, perfect / path.name)  # the ground truth itself, as label-id predictions
    result = invoke("evaluate", "--predictions", perfect, "--data", f"cityscapes:{full}:val", "--official",
                    "--json", "-")  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["miou"] == 1.0 and payload["official"]["miou"] == pytest.approx(1.0)
    assert payload["official"]["iiou"] == pytest.approx(1.0) and payload["official"]["category_miou"] == pytest.approx(
        1.0
    )


def test_the_numpy_shim_is_only_there_while_the_script_runs():
    had = hasattr(np, "in1d")
    with numpy_in1d():
        found = np.in1d(np.array([[1, 2], [3, 4]]), [2, 3])  # type: ignore[attr-defined]
        assert found.tolist() == [False, True, True, False]  # flattened, as numpy < 2.4 returned it
    assert hasattr(np, "in1d") is had


def test_official_needs_saved_predictions_and_cityscapes_labels(teacher, city, tmp_path):
    result = invoke("evaluate", "--checkpoint", teacher, "--data", f"cityscapes:{city}:val", "--official")
    assert result.exit_code == 2 and "--out DIR or --save-predictions DIR" in result.stderr


# ---------------------------------------------------------------------------------------------------------
# the training log


def test_training_prints_a_log_line_every_log_every_steps_and_the_val_miou(city, tmp_path):
    tiny = ["model.width=tiny", "train.crop_size=32,32", "train.batch_size=2", "train.workers=0", "train.device=cpu",
            "train.class_uniform_tile=32", "loss.main=ce", "train.log_every=1", "train.val_every=1"]  # fmt: skip
    sets = [arg for item in tiny for arg in ("--set", item)]
    result = invoke("train-teacher", "--data", f"cityscapes:{city}:train", "--out", tmp_path / "run", *sets,
                    "--epochs", 2)  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    number = r"-?\d+\.\d{4}"
    step = re.compile(
        rf"^epoch ([12])/2 step 1/1 \(([12])\) loss {number} \(main {number}, aux {number}, .*\) "
        r"lr [\d.e-]+ [\d.]+ img/s ETA \d+s$"
    )
    steps = [s for s in lines if " step " in s]
    assert len(steps) == 2 and all(step.match(s) for s in steps), steps
    assert [step.match(s).groups() for s in steps] == [("1", "1"), ("2", "2")]
    validations = [s for s in lines if "val mIoU" in s]
    assert len(validations) == 2 and all(re.match(r"^epoch [12]/2 val mIoU \d+\.\d\d$", s) for s in validations)
    assert len(lines) == 4, lines  # nothing else: no progress-bar words in a log file
    assert "2 steps, 2 epochs" in result.stdout
