"""The host work per image: EXIF orientation known from the decode, statistics, encoders, the measured cost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autolabel.classes import CITYSCAPES
from autolabel.config import GenerateConfig, ModelConfig
from autolabel.data.datasets import discover_folder
from autolabel.data.io import read_image_upright
from autolabel.generate.runner import GenerateJob, run_generate
from autolabel.labelset import read_manifest
from autolabel.models.build import build_model
from autolabel.models.checkpoint import save_checkpoint

ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(width="tiny", infer_scales=(0.5, 1.0))
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint(path, build_model(cfg), cfg, CITYSCAPES.names)
    return path


def _sideways_photo(path: Path) -> None:
    """A 40x24 JPEG whose EXIF says "turn me a quarter clockwise" (orientation 6)."""
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    Image.fromarray(np.full((24, 40, 3), 90, np.uint8)).save(path, exif=exif.tobytes(), quality=95)


def test_read_image_upright_says_whether_it_turned_the_pixels(tmp_path):
    _sideways_photo(tmp_path / "side.jpg")
    Image.fromarray(np.zeros((24, 40, 3), np.uint8)).save(tmp_path / "plain.png")
    image, turned = read_image_upright(tmp_path / "side.jpg")
    assert image.shape == (40, 24, 3) and turned is True
    image, turned = read_image_upright(tmp_path / "side.jpg", exif_transpose=False)
    assert image.shape == (24, 40, 3) and turned is False
    assert read_image_upright(tmp_path / "plain.png")[1] is False


def test_generate_records_the_orientation_from_the_decode_without_reading_the_file_again(
    monkeypatch, teacher, tmp_path
):
    # asking a PNG for its EXIF after the decode made Pillow decode the whole file a second time
    def reread(*args, **kwargs):
        raise AssertionError("the row's exif_transposed must come from the decode")

    monkeypatch.setattr("autolabel.labelset.files.is_transposed", reread)
    photos = tmp_path / "photos"
    photos.mkdir()
    _sideways_photo(photos / "side.jpg")
    Image.fromarray(np.full((24, 40, 3), 128, np.uint8)).save(photos / "plain.png")
    job = GenerateJob(teacher=teacher, out=tmp_path / "labels", generate=GenerateConfig(device="cpu", scales=(1.0,)))
    result = run_generate(job, discover_folder(photos))
    assert result.ok == 2, result.errors
    rows = {r["id"]: r for r in read_manifest(tmp_path / "labels").to_pylist()}
    assert rows["side"]["exif_transposed"] is True and rows["plain"]["exif_transposed"] is False
    assert (rows["side"]["height"], rows["side"]["width"]) == (40, 24)


# ---------------------------------------------------------------------------------------------------------
# statistics


def _brute_force_stats(labels: np.ndarray, num_classes: int, tile: int) -> tuple[list, int, list]:
    """Counts with ==, centroids as the mean of np.nonzero within each tile (rounded there, then offset)."""
    counts = [int((labels == c).sum()) for c in range(num_classes)]
    centroids = []
    for y0 in range(0, labels.shape[0], tile):
        for x0 in range(0, labels.shape[1], tile):
            part = labels[y0 : y0 + tile, x0 : x0 + tile]
            for c in range(num_classes):
                ys, xs = np.nonzero(part == c)
                if len(ys):
                    centroids.append({"cls": c, "y": y0 + int(round(ys.mean())), "x": x0 + int(round(xs.mean()))})
    return counts, int((labels == 255).sum()), centroids


@pytest.mark.parametrize("kind", ["blocky", "speckled"])
@pytest.mark.parametrize(("shape", "tile"), [((37, 53), 16), ((64, 32), 7), ((9, 200), 8), ((1, 1), 8), ((40, 40), 64)])
def test_label_stats_match_a_brute_force_count(kind, shape, tile):
    from autolabel.labelset.files import label_stats

    rng = np.random.default_rng(sum(shape) + tile)
    if kind == "blocky":  # runs along rows, as label maps have (the fast path)
        labels = np.repeat(rng.integers(0, 6, (shape[0], -(-shape[1] // 5))), 5, axis=1)[:, : shape[1]]
    else:  # every pixel its own run (the per-pixel path when the tiles are few)
        labels = rng.integers(0, 6, shape)
    labels = np.where(labels == 5, 255, labels).astype(np.uint8)
    assert label_stats(labels, 5, tile) == _brute_force_stats(labels, 5, tile)


def test_label_stats_round_centroids_within_the_tile():
    from autolabel.labelset.files import label_stats

    labels = np.full((1, 14), 255, np.uint8)
    labels[0, 8:10] = 3  # columns 8, 9 of the tile at x0 = 7: mean 1.5 there (-> 2, half to even), 8.5 in the image
    # in the tile, then offset: 7 + 2 = 9, as centroids have always been recorded (8 if rounded in the image)
    assert label_stats(labels, 4, tile=7)[2] == [{"cls": 3, "y": 0, "x": 9}]


# ---------------------------------------------------------------------------------------------------------
# encoders: the label PNG kept byte for byte; arrays at another zstd level than this version's still valid


def _pattern() -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:32, 0:64]
    labels = ((x // 9 + y // 5) % 7).astype(np.uint8)
    labels[(x + y) % 11 == 0] = 255
    return labels, ((x * 4 + y * 2) % 256).astype(np.uint8)


def test_label_and_attention_pngs_are_the_bytes_earlier_versions_wrote():
    # pinned from the code before the host-work changes (main at 7127371): a label set's label_sha256 and
    # output_files must keep matching what a newer version writes for the same maps, or resuming it after an
    # upgrade would relabel every image; also the labelset id records png_compress_level 9
    import hashlib

    from autolabel.data.io import encode_label_png
    from autolabel.labelset.files import encode_attention

    labels, attention = _pattern()
    assert GenerateConfig().png_compress_level == 9
    png = encode_label_png(labels, GenerateConfig().png_compress_level)
    assert hashlib.sha256(png).hexdigest() == "1cefb27d0cdcbb1c42f0291953b588ed6229dd0366621fea2c67807358494f5d"
    attention_png = encode_attention(attention)
    assert hashlib.sha256(attention_png).hexdigest() == (
        "b8c5251ae46e14f419f615c816d95d31fa4c0c1aae88b62c1539bfabd2c81a3d"
    )


def _zstd_level(out: Path, image_id: str) -> int:
    import json

    from autolabel.labelset import confidence

    meta = json.loads((confidence.store_path(out) / image_id / "zarr.json").read_text())
    return next(c["configuration"]["level"] for c in meta["codecs"] if c["name"] == "zstd")


def test_a_label_set_written_at_zstd_17_still_verifies_resumes_and_reads_the_same_planes(
    monkeypatch, teacher, tmp_path, synthetic_city
):
    from autolabel.labelset import confidence
    from autolabel.labelset.checksums import file_sha256
    from autolabel.labelset.verify import verify_labelset

    samples = discover_folder(synthetic_city(train=3, val=0, extra=0, size=(64, 32), seed=4) / "leftImg8bit")
    settings = GenerateConfig(device="cpu", scales=(0.5, 1.0))
    old_out, new_out = tmp_path / "old", tmp_path / "new"
    write_array_files = confidence.array_files
    monkeypatch.setattr(
        confidence, "array_files", lambda classes, codes, level=17: write_array_files(classes, codes, 17)
    )
    assert run_generate(GenerateJob(teacher=teacher, out=old_out, generate=settings), samples).ok == len(samples)
    monkeypatch.undo()  # from here on: this version's level
    ids = [s.id for s in samples]
    assert {_zstd_level(old_out, i) for i in ids} == {17}
    assert confidence.ZSTD_LEVEL == 9  # format 2's level (make bench, confidence_store)

    report = verify_labelset(old_out, check_inputs=False)  # no --data source recorded here
    assert report.ok, report.problems
    outputs = [p for folder in ("labels", "confidence.zarr") for p in (old_out / folder).rglob("*") if p.is_file()]
    before = {p: file_sha256(p) for p in outputs}
    again = run_generate(GenerateJob(teacher=teacher, out=old_out, generate=settings), samples)
    assert (again.ok, again.skipped) == (0, len(samples))  # nothing relabelled: the old arrays are kept
    assert {p: file_sha256(p) for p in before} == before

    assert run_generate(GenerateJob(teacher=teacher, out=new_out, generate=settings), samples).ok == len(samples)
    assert {_zstd_level(new_out, i) for i in ids} == {9}
    for image_id in ids:  # either level decodes to the same class and code planes
        old, new = confidence.load_maps(old_out, image_id), confidence.load_maps(new_out, image_id)
        assert old.classes is not None and new.classes is not None
        assert np.array_equal(old.classes, new.classes) and np.array_equal(old.codes, new.codes)


# ---------------------------------------------------------------------------------------------------------
# the measured host cost (what the planner asks)


def test_measure_host_cost_times_every_part_and_writes_nothing(tmp_path):
    from autolabel.config import DataConfig
    from autolabel.data.io import write_image_png
    from autolabel.generate.hostcost import PARTS, host_seconds_per_image, measure_host_cost

    image = tmp_path / "in.png"
    write_image_png(image, np.random.default_rng(0).integers(0, 255, (32, 64, 3), np.uint8))
    labels, _ = _pattern()
    codes = np.where(labels == 255, 0, 5).astype(np.uint8)
    cost = measure_host_cost(image, GenerateConfig(), labels=labels, codes=codes, repeats=2)
    assert set(cost.seconds) == set(PARTS) and all(v >= 0 for v in cost.seconds.values())
    assert cost.seconds["attention_encode"] == 0.0  # attention maps are off by default: nothing to encode
    assert cost.total == pytest.approx(sum(cost.seconds.values())) and cost.total > 0
    assert cost.images_per_core_second == pytest.approx(1 / cost.total)
    assert (cost.width, cost.height) == (64, 32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]
    assert 0 < host_seconds_per_image(image, GenerateConfig(), DataConfig(), labels=labels, codes=codes) < 10


def test_measure_host_cost_makes_teacher_like_maps_and_attention_when_none_are_given(tmp_path, monkeypatch):
    from autolabel.data.io import write_image_png
    from autolabel.generate import hostcost

    image = tmp_path / "in.png"
    write_image_png(image, np.zeros((32, 64, 3), np.uint8))
    made = {}
    real = hostcost.attention_like_maps

    def spy(codes, scales):
        made.update(real(codes, scales))
        return made

    monkeypatch.setattr(hostcost, "attention_like_maps", spy)
    cost = hostcost.measure_host_cost(image, GenerateConfig(attention=True, scales=(0.5, 1.0, 2.0)))
    assert (cost.width, cost.height) == (64, 32)
    # a hierarchical teacher's maps: every scale but the largest, each at its own resolution
    assert {k: v.shape for k, v in made.items()} == {"attn_0.5x": (16, 32), "attn_1.0x": (32, 64)}
    assert cost.seconds["attention_encode"] > 0


def test_teacher_like_maps_ignore_exactly_the_pixels_with_code_zero():
    from autolabel.generate.hostcost import teacher_like_maps

    labels, codes = teacher_like_maps(128, 64, seed=1, ladder_len=10)
    assert labels.shape == codes.shape == (64, 128)
    assert np.array_equal(labels == 255, codes == 0)
    assert 0 < (labels == 255).mean() < 0.5 and codes.max() == 10


def test_teacher_like_store_keeps_the_same_labels_on_the_fine_grid_at_the_threshold():
    from autolabel.generate.hostcost import store_grid, teacher_like_maps, teacher_like_store
    from autolabel.labelset import confidence

    grid = store_grid(GenerateConfig())
    labels, classes, codes = teacher_like_store(128, 64, grid, seed=1)
    old_labels, _ = teacher_like_maps(128, 64, seed=1)
    assert np.array_equal(labels, old_labels)  # 0.5 is a rung of the grid: the same pixels survive
    assert classes.max() < 19 and np.array_equal(classes[labels != 255], labels[labels != 255])
    higher = confidence.apply_rungs(classes, codes, [confidence.rung_index(0.9, grid)] * 19)
    assert 0 < (higher != 255).sum() < (labels != 255).sum()  # re-thresholding up drops the pixels near edges
