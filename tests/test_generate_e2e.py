"""`autolabel generate` end to end: a tiny trained teacher on a tiny synthetic city (64x32 images)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from autolabel import labelset
from autolabel.classes import CITYSCAPES
from autolabel.cli import main
from autolabel.config import ModelConfig
from autolabel.data.datasets import discover_cityscapes
from autolabel.data.io import read_image, read_label
from autolabel.errors import EXIT_FINISHED_WITH_ERRORS, EXIT_USER_ERROR
from autolabel.generate import runner
from autolabel.labelset import TIMING_COLUMNS, part_paths, read_labelset, read_manifest
from autolabel.labelset.confidence import load_maps
from autolabel.labelset.lock import LOCKS_DIR
from autolabel.models.build import build_model
from autolabel.models.checkpoint import load_checkpoint, save_checkpoint
from autolabel.models.predict import normalise, predict_logits

SPLIT = "train_extra"
N_EXTRA = 10
CHUNK = ["--set", "generate.chunk_size=3"]


# ---------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def city(synthetic_city) -> Path:
    # version 1: on version 2's one-surface ground at 64x32 the blob-trained fixture teacher is confident on
    # every pixel, and these tests need labels that are partly ignore (255)
    root = synthetic_city(train=1, val=1, extra=N_EXTRA, size=(64, 32), seed=0, version=1)
    return root


def _fit_tiny_teacher(steps: int = 40) -> torch.nn.Module:
    """A few steps on smooth colour blobs: enough for confident, spatially varying predictions."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(width="tiny", num_classes=19))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        blobs = torch.rand(2, 3, 4, 8, generator=gen)
        x = torch.nn.functional.interpolate(blobs, size=(32, 64), mode="bilinear")  # (2, 3, 32, 64)
        y = (x[:, 0] * 4).long().clamp(0, 3) + 4 * (x[:, 1] > 0.5).long()
        loss = torch.nn.functional.cross_entropy(model((x - 0.5) / 0.25)["pred"], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def teacher(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint(path, _fit_tiny_teacher(), ModelConfig(width="tiny", num_classes=19), CITYSCAPES.names)
    return path


def base_args(teacher: Path, city: Path, out: Path) -> list[str]:
    return [
        "generate",
        "--teacher",
        str(teacher),
        "--dataset",
        f"cityscapes:{city}:{SPLIT}",
        "--out",
        str(out),
        "--device",
        "cpu",
        *CHUNK,
    ]


def run(args: list[str], code: int = 0):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, (result.output, result.exception)
    return result


@pytest.fixture(scope="session")
def reference(tmp_path_factory, teacher, city) -> Path:
    """An uninterrupted run everything else is compared with."""
    out = tmp_path_factory.mktemp("ref") / "out"
    run(base_args(teacher, city, out))
    return out


def snapshot(out: Path) -> tuple[dict[str, bytes], list[dict], list[str]]:
    """Every file's bytes (manifest and shard locks aside), the manifest rows without timing, the part names."""
    files = {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and not {labelset.MANIFEST_DIR, LOCKS_DIR} & set(p.relative_to(out).parts)
    }
    rows = [
        {k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in read_manifest(out, status=None).to_pylist()
    ]
    return files, rows, [p.name for p in part_paths(out)]


def assert_same(a: Path, b: Path, ignore_shard: bool = False) -> None:
    fa, ra, pa = snapshot(a)
    fb, rb, pb = snapshot(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        assert fa[name] == fb[name], name
    if ignore_shard:
        ra = [{k: v for k, v in r.items() if k != "shard"} for r in ra]
        rb = [{k: v for k, v in r.items() if k != "shard"} for r in rb]
    assert ra == rb
    assert pa == pb


# ---------------------------------------------------------------------------------------------------------
# files, values, sizes, rows


def test_files_values_sizes_and_rows(reference, city, teacher):
    samples = discover_cityscapes(city, SPLIT)
    meta = read_labelset(reference)
    assert meta["teacher_sha256"] == load_checkpoint(teacher).sha256
    assert meta["scales"] == [0.5, 1.0, 2.0] and meta["threshold"] == 0.5 and meta["ladder"][0] == 0.3
    rows = {r["id"]: r for r in read_manifest(reference).to_pylist()}
    assert sorted(rows) == [s.id for s in samples]
    loaded = load_checkpoint(teacher)
    kept = 0
    for sample in samples:
        row = rows[sample.id]
        image = read_image(sample.image)
        path = reference / row["label"]
        assert path.name.endswith("_gtAuto_labelTrainIds.png") and path.parent.name == sample.id.split("/")[1]
        with Image.open(path) as png:
            assert png.mode == "L" and png.size == (image.shape[1], image.shape[0])
        label = read_label(path)
        assert set(np.unique(label)) <= set(range(19)) | {255}
        assert (row["height"], row["width"]) == label.shape
        assert sum(row["class_counts"]) + row["ignore_count"] == label.size
        assert row["class_counts"] == np.bincount(label.ravel(), minlength=256)[:19].tolist()
        for c in row["centroids"]:
            assert row["class_counts"][c["cls"]] > 0
            assert 0 <= c["y"] < label.shape[0] and 0 <= c["x"] < label.shape[1]
        # an independent recomputation in float64 from the checkpoint
        x = normalise(torch.from_numpy(image)[None], (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        probs = torch.softmax(predict_logits(loaded.model, x, [0.5, 1.0, 2.0])["pred"].double(), 1)[0]
        pmax, arg = probs.max(0)
        expected = torch.where(pmax > 0.5, arg, 255).numpy()
        near = (pmax - 0.5).abs().numpy() < 1e-5
        assert ((label == expected) | near).all()
        assert abs(row["mean_confidence"] - float(pmax.mean())) < 1e-4
        maps = load_maps(reference, sample.id)
        at = meta["ladder"].index(0.5)  # ignored <=> the code is at or below the threshold's rung
        assert maps.codes.shape == label.shape and np.array_equal(maps.codes <= at, label == 255)
        # the class plane is the argmax of every pixel, the label's class where it keeps one
        assert (((maps.classes == arg.numpy()) | near).all()) and np.array_equal(
            maps.classes[label != 255], label[label != 255]
        )
        kept += (label != 255).sum()
    total = sum(r["height"] * r["width"] for r in rows.values())
    assert 0 < kept < total  # the fixture teacher is confident in some places, not everywhere


def test_thresholding_exactly_at_threshold_is_ignored(tmp_path, city):
    """All-zero logits give p == 0.5 exactly for 2 classes: ignored at threshold 0.5, kept below it."""
    cfg = ModelConfig(width="tiny", num_classes=2, infer_scales=(1.0,))
    model = build_model(cfg)
    with torch.no_grad():
        model.ocr.cls_head.weight.zero_()
        model.ocr.cls_head.bias.zero_()
    save_checkpoint(tmp_path / "flat.pt", model, cfg, ["a", "b"])
    config = tmp_path / "two.toml"
    config.write_text("[classes]\npreset = 'custom'\nnames = ['a', 'b']\n[model]\nnum_classes = 2\n")
    common = [
        "generate",
        "--teacher",
        str(tmp_path / "flat.pt"),
        "--config",
        str(config),
        "--dataset",
        f"cityscapes:{city}:{SPLIT}",
        "--device",
        "cpu",
        "--scales",
        "1.0",
        "--limit",
        "2",
    ]
    run([*common, "--out", str(tmp_path / "at"), "--threshold", "0.5"])
    run([*common, "--out", str(tmp_path / "below"), "--threshold", "0.45"])
    for row in read_manifest(tmp_path / "at").to_pylist():
        assert np.all(read_label(tmp_path / "at" / row["label"]) == 255)
    for row in read_manifest(tmp_path / "below").to_pylist():
        assert np.all(read_label(tmp_path / "below" / row["label"]) == 0)  # argmax of a tie: the first class


def test_tiled_generate_equals_whole_when_the_image_fits(tmp_path, reference, teacher, city):
    out = tmp_path / "tiled"
    run([*base_args(teacher, city, out), "--tile-size", "128"])  # 64x32 at 2.0x is 128x64: one window
    for row in read_manifest(reference).to_pylist():
        assert (out / row["label"]).read_bytes() == (reference / row["label"]).read_bytes()
    assert read_labelset(out)["tiling"]["tile_size"] == 128


def test_tiled_teacher_runs_windows_when_the_image_does_not_fit(teacher, city):
    loaded = load_checkpoint(teacher)
    image = read_image(discover_cityscapes(city, SPLIT)[0].image)
    x = normalise(torch.from_numpy(image)[None], (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    whole = predict_logits(loaded.model, x, [0.5, 1.0, 2.0])
    tiled = predict_logits(loaded.model, x, [0.5, 1.0, 2.0], tile_size=96, tile_overlap=0.5)  # 48 px windows
    assert {k: v.shape for k, v in tiled.items()} == {k: v.shape for k, v in whole.items()}
    # windows see less context, so only most pixels agree
    agree = (tiled["pred"].argmax(1) == whole["pred"].argmax(1)).float().mean()
    assert agree > 0.5


# ---------------------------------------------------------------------------------------------------------
# shards, resume


def test_shards_are_disjoint_and_their_union_is_everything(tmp_path, reference, teacher, city):
    out = tmp_path / "out"
    ids_per_shard = []
    for i in range(3):
        run([*base_args(teacher, city, out), "--shard", f"{i}/3"])
        ids_per_shard.append({r["id"] for r in read_manifest(out).to_pylist() if r["shard"] == f"{i}/3"})
    assert sum(len(s) for s in ids_per_shard) == N_EXTRA
    assert set().union(*ids_per_shard) == {s.id for s in discover_cityscapes(city, SPLIT)}
    fa, ra, _ = snapshot(out)
    fb, rb, _ = snapshot(reference)
    assert fa == fb
    assert [{k: v for k, v in r.items() if k != "shard"} for r in ra] == [
        {k: v for k, v in r.items() if k != "shard"} for r in rb
    ]


def test_shard_from_slurm_environment(tmp_path, teacher, city):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, base_args(teacher, city, out), env={"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"}
    )
    assert result.exit_code == 0, result.output
    assert {r["shard"] for r in read_manifest(out).to_pylist()} == {"1/2"}


def test_resume_after_simulated_crash_gives_identical_output(tmp_path, reference, teacher, city, monkeypatch):
    out = tmp_path / "out"
    real = runner.finalise_image
    calls = []

    def crash_after_four(*args, **kwargs):
        calls.append(1)
        if len(calls) > 4:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "finalise_image", crash_after_four)
    result = CliRunner().invoke(main, base_args(teacher, city, out))
    assert isinstance(result.exception, RuntimeError)
    monkeypatch.setattr(runner, "finalise_image", real)
    assert 0 < len(part_paths(out)) < len(part_paths(reference))
    # what a kill in the middle of a write leaves behind
    victim = next((out / "labels").rglob("*.png"))
    (victim.parent / f".{victim.name}.abc123.tmp").write_bytes(b"half a png")
    calls.clear()
    monkeypatch.setattr(runner, "finalise_image", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    run(base_args(teacher, city, out))
    assert 0 < len(calls) < N_EXTRA  # finished images were not redone
    assert_same(out, reference)


def test_rerun_of_a_finished_job_does_nothing(tmp_path, reference, teacher, city, monkeypatch):
    out = tmp_path / "out"
    run(base_args(teacher, city, out))

    def outputs() -> dict[Path, int]:  # every file but the shard locks (each run takes its shard's)
        return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and LOCKS_DIR not in p.parts}

    mtimes = outputs()
    result = run(base_args(teacher, city, out))
    assert f"0 labelled, {N_EXTRA} already done" in result.output
    assert outputs() == mtimes


def test_damaged_label_is_redone(tmp_path, reference, teacher, city):
    out = tmp_path / "out"
    run(base_args(teacher, city, out))
    victim = sorted((out / "labels").rglob("*.png"))[3]
    victim.write_bytes(victim.read_bytes()[:-10])
    result = run(base_args(teacher, city, out))
    assert f"1 labelled, {N_EXTRA - 1} already done" in result.output
    assert_same(out, reference)


def test_limit_then_full_run_has_no_duplicate_rows(tmp_path, reference, teacher, city):
    out = tmp_path / "out"
    run([*base_args(teacher, city, out), "--limit", "4"])
    assert len(read_manifest(out)) == 4
    run(base_args(teacher, city, out))
    assert_same(out, reference)


@pytest.mark.slow
def test_resume_after_sigkill_gives_identical_output(tmp_path, reference, teacher, city):
    out = tmp_path / "out"
    # one chunk per image and a slow writer so the kill lands in the middle of the job
    args = [*base_args(teacher, city, out), "--set", "generate.chunk_size=1"]
    code = (
        "import sys, time, torch; torch.set_num_threads(1)\n"
        "import autolabel.generate.runner as r\n"
        "real = r.finalise_image\n"
        "r.finalise_image = lambda *a, **k: (time.sleep(0.3), real(*a, **k))[1]\n"
        "from autolabel.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(part_paths(out)) < 3:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 3 <= len(part_paths(out)) < N_EXTRA
    run([*base_args(teacher, city, out), "--set", "generate.chunk_size=1"])
    # same labels and rows as the reference (whose parts are chunks of 3)
    fa, ra, _ = snapshot(out)
    fb, rb, _ = snapshot(reference)
    assert fa == fb and ra == rb
    run(["verify", str(out)])


# ---------------------------------------------------------------------------------------------------------
# bad input, refusals, dry run


@pytest.fixture()
def broken_folder(tmp_path, city) -> Path:
    """A folder of good images plus an empty, a truncated, a non-image and a huge one."""
    root = tmp_path / "images"
    for i, sample in enumerate(discover_cityscapes(city, SPLIT)[:4]):
        (root / "good").mkdir(parents=True, exist_ok=True)
        (root / "good" / f"img{i}.png").write_bytes(sample.image.read_bytes())
    (root / "bad").mkdir()
    (root / "bad" / "empty.png").write_bytes(b"")
    data = (root / "good" / "img0.png").read_bytes()
    (root / "bad" / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "bad" / "text.png").write_text("not a png")
    Image.new("L", (9000, 9000)).save(root / "bad" / "huge.png")
    return root


def test_corrupt_inputs_become_error_rows_and_exit_3(tmp_path, teacher, broken_folder):
    out = tmp_path / "out"
    args = [
        "generate",
        "--teacher",
        str(teacher),
        "--images",
        str(broken_folder),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--set",
        "data.max_image_pixels=1000000",
    ]
    result = run(args, code=EXIT_FINISHED_WITH_ERRORS)
    rows = {r["id"]: r for r in read_manifest(out, status=None).to_pylist()}
    assert len(rows) == 8
    errors = {i: r["error"] for i, r in rows.items() if r["status"] == "error"}
    assert sorted(errors) == ["bad/empty", "bad/huge", "bad/text", "bad/truncated"]
    assert "empty" in errors["bad/empty"] and "too large" in errors["bad/huge"]
    assert "truncated" in errors["bad/truncated"] or "corrupt" in errors["bad/truncated"]
    assert "bad/empty" in result.output
    assert all(r["status"] == "ok" for i, r in rows.items() if i.startswith("good/"))
    # verify lists the error rows and, like generate, exits 3: some images have no label
    assert run(["verify", str(out)], code=3).output.count("error row:") == 4


def test_fail_fast_stops_at_the_first_bad_image(tmp_path, teacher, broken_folder):
    out = tmp_path / "out"
    args = [
        "generate",
        "--teacher",
        str(teacher),
        "--images",
        str(broken_folder),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--fail-fast",
        "--set",
        "generate.chunk_size=1",
    ]
    result = run(args, code=EXIT_FINISHED_WITH_ERRORS)
    assert "bad/empty" in result.output
    rows = read_manifest(out, status=None).to_pylist()
    assert [r["id"] for r in rows] == ["bad/empty"]  # "bad/..." sorts first; nothing after it was labelled


def test_corrupt_checkpoint_fails_before_any_work(tmp_path, teacher, city):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(teacher.read_bytes()[:1000])
    out = tmp_path / "out"
    result = run(base_args(bad, city, out), code=EXIT_USER_ERROR)
    assert "bad.pt" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_another_label_set_in_out_is_refused_unless_overwrite(tmp_path, teacher, city):
    out = tmp_path / "out"
    run([*base_args(teacher, city, out), "--limit", "2"])
    result = run([*base_args(teacher, city, out), "--limit", "2", "--threshold", "0.6"], code=EXIT_USER_ERROR)
    assert "--overwrite" in result.output and "threshold" in result.output
    run([*base_args(teacher, city, out), "--limit", "2", "--threshold", "0.6", "--overwrite"])
    assert read_labelset(out)["threshold"] == 0.6 and len(read_manifest(out)) == 2


def test_dry_run_writes_nothing(tmp_path, teacher, city):
    out = tmp_path / "out"
    result = run([*base_args(teacher, city, out), "--dry-run", "--shard", "0/2"])
    assert not out.exists()
    assert f"inputs: {N_EXTRA} images" in result.output and "estimate:" in result.output
    counts = result.output.split("per shard: ")[1].splitlines()[0]
    assert sum(int(part.split(": ")[1]) for part in counts.split(", ")) == N_EXTRA


def test_output_inside_the_input_folder_is_never_an_input(tmp_path, teacher, city):
    root = tmp_path / "images"
    for i, sample in enumerate(discover_cityscapes(city, SPLIT)[:3]):
        (root / "x").mkdir(parents=True, exist_ok=True)
        (root / "x" / f"{i}.png").write_bytes(sample.image.read_bytes())
    args = [
        "generate",
        "--teacher",
        str(teacher),
        "--images",
        str(root),
        "--out",
        str(root / "auto"),
        "--device",
        "cpu",
        "--attention",
    ]
    run(args)
    run(args)
    assert sorted(r["id"] for r in read_manifest(root / "auto").to_pylist()) == ["x/0", "x/1", "x/2"]
    attention = sorted(p.name for p in (root / "auto" / "attention" / "x").glob("0_*.png"))
    assert attention == ["0_attn_0.5x.png", "0_attn_1.0x.png"]  # the largest scale's attention is unused
    with Image.open(root / "auto" / "attention" / "x" / "0_attn_0.5x.png") as png:
        assert png.mode == "L" and png.size == (32, 16)  # the 0.5x scale's own resolution of 64x32
    run(["verify", str(root / "auto")])


def test_label_ids_writes_dataset_label_values(tmp_path, reference, teacher, city):
    out = tmp_path / "out"
    run([*base_args(teacher, city, out), "--label-ids"])
    lut = CITYSCAPES.train_to_label_lut(void_label=0)
    for row in read_manifest(out).to_pylist():
        assert row["label"].endswith("_gtAuto_labelIds.png")
        ref_label = read_label(reference / row["label"].replace("_labelIds", "_labelTrainIds"))
        assert np.array_equal(read_label(out / row["label"]), lut[ref_label])
    run(["verify", str(out)])


# ---------------------------------------------------------------------------------------------------------
# rethreshold, verify, manifest


def test_rethreshold_equals_a_fresh_generate(tmp_path, reference, teacher, city):
    fresh = tmp_path / "fresh"
    run([*base_args(teacher, city, fresh), "--threshold", "0.7"])
    re_out = tmp_path / "re"
    run(["rethreshold", str(reference), "--threshold", "0.7", "--out", str(re_out)])
    for row in read_manifest(fresh).to_pylist():
        assert (re_out / row["label"]).read_bytes() == (fresh / row["label"]).read_bytes()
    # rows equal, confidence files and their checksums included: both stores hold every pixel on the same grid
    strip = lambda out: [  # noqa: E731
        {k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in read_manifest(out).to_pylist()
    ]
    assert strip(re_out) == strip(fresh)
    # the re-thresholded set can itself be re-thresholded (its store was copied), and verifies clean
    run(["verify", str(re_out)])
    run(["rethreshold", str(re_out), "--threshold", "0.8", "--in-place"])
    assert read_labelset(re_out)["threshold"] == 0.8


def test_rethreshold_refuses_thresholds_off_the_grid_and_below_it(reference):
    result = run(["rethreshold", str(reference), "--threshold", "0.725"], code=EXIT_USER_ERROR)
    assert "0.725" in result.output and "0.3, 0.31, 0.32" in result.output and "0.98" in result.output
    run(["rethreshold", str(reference), "--threshold", "0.2"], code=EXIT_USER_ERROR)


def test_rethreshold_in_place_is_safe_to_repeat(tmp_path, teacher, city):
    out = tmp_path / "out"
    run([*base_args(teacher, city, out), "--limit", "3"])
    run(["rethreshold", str(out), "--threshold", "0.9", "--in-place"])
    first = snapshot(out)
    # a second pass at the same value (what rerunning after a kill does) changes nothing but the id link
    meta = read_labelset(out)
    meta["threshold"] = 0.5
    labelset.write_labelset(out, meta)
    run(["rethreshold", str(out), "--threshold", "0.9", "--in-place"])
    assert snapshot(out)[1] == first[1]


def test_verify_catches_flipped_byte_missing_file_and_temp_file(tmp_path, reference):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    assert "0 problems" in run(["verify", str(out)]).output
    labels = sorted((out / "labels").rglob("*.png"))
    data = bytearray(labels[0].read_bytes())
    data[len(data) // 2] ^= 0x01
    labels[0].write_bytes(bytes(data))
    labels[1].unlink()
    (labels[2].parent / f".{labels[2].name}.x1y2.tmp").write_bytes(b"partial")
    result = run(["verify", str(out)], code=EXIT_FINISHED_WITH_ERRORS)
    assert f"{labels[0]}: sha256" in result.output
    assert f"{labels[1]}: missing label file" in result.output
    assert ".x1y2.tmp: temporary file" in result.output


def test_verify_catches_missing_and_duplicate_rows(tmp_path, reference):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    parts = part_paths(out)
    shutil.copy(parts[0], parts[0].with_name("part-duplicate.parquet"))
    parts[1].unlink()
    result = run(["verify", str(out)], code=EXIT_FINISHED_WITH_ERRORS)
    assert "input image has no manifest row" in result.output
    assert "2 manifest rows" in result.output
    assert "label file with no manifest row" in result.output


def test_manifest_merges_parts_and_summarises(tmp_path, reference):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    result = run(["manifest", str(out)])
    merged = pq.read_table(out / "manifest.parquet")
    assert merged.num_rows == N_EXTRA and set(merged.column_names) >= {"id", "class_counts", "centroids"}
    assert f"{N_EXTRA} images, {N_EXTRA} ok, 0 errors" in result.output
    assert "road" in result.output


# ---------------------------------------------------------------------------------------------------------
# Dask


@pytest.mark.slow
def test_local_dask_cluster_with_two_workers_equals_single_process(tmp_path, reference, teacher, city):
    out = tmp_path / "out"
    run([*base_args(teacher, city, out), "--workers", "2"])
    assert_same(out, reference)
