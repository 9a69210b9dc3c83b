"""Generate building blocks: sharding, the confidence ladder and store, the writer, the pipelined loop."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from autolabel import labelset
from autolabel.classes import CITYSCAPES
from autolabel.config import DataConfig, GenerateConfig, ModelConfig
from autolabel.data.datasets import Sample
from autolabel.data.io import read_label, write_image_png
from autolabel.errors import ConfigError, LabelSetError
from autolabel.fs import is_temp_name, temp_target
from autolabel.generate.runner import Chunk, process_chunks, remove_stale_temp_files
from autolabel.generate.sharding import (
    Shard,
    chunked,
    parse_shard,
    select_shard,
    shard_counts,
    shard_from_env,
    shard_of,
)
from autolabel.generate.teacher import Teacher, threshold_batch
from autolabel.labelset import confidence
from autolabel.labelset.confidence import (
    load_confidence,
    make_ladder,
    quantise,
    rethreshold_array,
    rung_index,
    write_codes,
)
from autolabel.labelset.files import WriteSettings, finalise_image, label_relpath, label_stats
from autolabel.models.checkpoint import LoadedCheckpoint

# ---------------------------------------------------------------------------------------------------------
# sharding


def test_parse_shard():
    assert parse_shard("2/5") == Shard(2, 5)
    for bad in ("5/5", "-1/3", "1", "a/b", "1/0"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def test_shards_partition_the_ids_and_are_stable_when_ids_are_added():
    ids = [f"city/img_{i:04d}" for i in range(500)]
    parts = [set(ids[i] for i in select_shard(ids, Shard(k, 7))) for k in range(7)]
    assert sum(len(p) for p in parts) == len(ids) and set().union(*parts) == set(ids)
    assert min(len(p) for p in parts) > 40  # roughly balanced
    assert shard_counts(ids, 7) == [len(p) for p in parts]
    more = ids + [f"new/{i}" for i in range(100)]
    for k in range(7):
        assert parts[k] <= {more[i] for i in select_shard(more, Shard(k, 7))}


def test_shard_of_is_a_fixed_function_of_the_id():
    # sha256 based, so it cannot depend on PYTHONHASHSEED or the machine
    assert [shard_of(f"a{i}", 4) for i in range(8)] == [shard_of(f"a{i}", 4) for i in range(8)]
    assert shard_of("x", 1) == 0


def test_shard_from_env():
    assert shard_from_env({}) is None
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}) == Shard(3, 4)
    assert shard_from_env(
        {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}
    ) == Shard(3, 4)
    assert shard_from_env({"RANK": "1", "WORLD_SIZE": "2"}) == Shard(1, 2)
    with pytest.raises(ConfigError, match="SLURM_ARRAY_TASK_ID"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4"})


def test_chunked():
    assert chunked(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]


# ---------------------------------------------------------------------------------------------------------
# the confidence ladder


def test_make_ladder():
    assert make_ladder(0.5) == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    assert make_ladder(0.9, 0.05, 0.95) == (0.9, 0.95)
    assert make_ladder(0.3, 0.2, 0.95) == (0.3, 0.5, 0.7, 0.9)


def test_rung_index_refuses_values_off_the_ladder_naming_the_valid_ones():
    ladder = make_ladder(0.5)
    assert rung_index(0.7, ladder) == 4
    with pytest.raises(LabelSetError, match=r"0\.72.*0\.5, 0\.55"):
        rung_index(0.72, ladder)
    with pytest.raises(LabelSetError, match="valid thresholds: 0.7, 0.75"):
        rung_index(0.6, ladder, floor=0.7)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), rung=st.integers(0, 9))
def test_rethreshold_from_codes_equals_thresholding_the_probabilities(seed, rung):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, 4, 9, 11, generator=gen) * 3
    ladder = make_ladder(0.5)
    base = threshold_batch(logits, 0.5, ladder)
    direct = threshold_batch(logits, ladder[rung], make_ladder(ladder[rung]))
    again = rethreshold_array(base.labels[0].numpy(), base.codes[0].numpy(), ladder[rung], ladder)
    assert np.array_equal(again, direct.labels[0].numpy())


def test_quantise_bins():
    p = torch.tensor([0.2, 0.5, 0.5000001, 0.55, 0.56, 0.95, 0.99])
    assert quantise(p, make_ladder(0.5)).tolist() == [0, 0, 1, 1, 2, 9, 10]


def test_code_store_round_trip_and_overwrite(tmp_path):
    codes = np.random.default_rng(0).integers(0, 11, (7, 13), dtype=np.uint8)
    confidence.init_store(tmp_path, make_ladder(0.5))
    nbytes = write_codes(tmp_path, "city/a/img", codes)
    assert nbytes > 0 and np.array_equal(load_confidence(tmp_path, "city/a/img"), codes)
    write_codes(tmp_path, "city/a/img", codes[::-1].copy())
    assert np.array_equal(load_confidence(tmp_path, "city/a/img"), codes[::-1])
    leftovers = [p for p in (tmp_path / "confidence.zarr").rglob("*") if p.name.startswith(".")]
    assert leftovers == []
    with pytest.raises(LabelSetError, match="no confidence map"):
        load_confidence(tmp_path, "city/a/other")


def test_code_arrays_are_the_arrays_zarr_itself_would_write(tmp_path):
    """Plain zarr v3 (bytes + zstd) of the up-filtered codes, byte for byte what zarr writes for that array."""
    import json

    import zarr
    from zarr.codecs import ZstdCodec

    codes = np.random.default_rng(1).integers(0, 11, (5, 7), dtype=np.uint8)
    ref = zarr.create_array(
        store=str(tmp_path / "ref"),
        shape=(5, 7),
        chunks=(5, 7),
        dtype="uint8",
        fill_value=0,
        compressors=ZstdCodec(level=confidence.ZSTD_LEVEL),
        zarr_format=3,
        attributes=confidence.UP_FILTER,
    )
    ref[...] = confidence.up_filter(codes)
    expected = json.loads((tmp_path / "ref" / "zarr.json").read_text())
    assert json.loads(confidence.array_metadata((5, 7))) == expected
    write_codes(tmp_path, "img", codes)
    ours = tmp_path / "confidence.zarr" / "img"
    assert (ours / "c" / "0" / "0").read_bytes() == (tmp_path / "ref" / "c" / "0" / "0").read_bytes()
    # a plain zarr reader gets the filtered rows; the documented cumsum gives the codes back
    stored = zarr.open_array(str(ours), mode="r")[...]
    assert np.array_equal(np.cumsum(stored, axis=0, dtype=np.uint8), codes)


def test_up_filter_is_each_row_minus_the_row_above_mod_256():
    codes = np.array([[3, 10], [4, 0], [4, 255]], dtype=np.uint8)
    assert confidence.up_filter(codes).tolist() == [[3, 10], [1, (0 - 10) % 256], [0, 255]]


def test_arrays_of_the_first_format_still_load(tmp_path):
    """Label sets written before the up filter hold the plain codes and no "filter" attribute."""
    import zarr

    codes = np.random.default_rng(2).integers(0, 11, (6, 4), dtype=np.uint8)
    array = zarr.create_array(
        store=str(tmp_path / "confidence.zarr" / "old"),
        shape=(6, 4),
        chunks=(6, 4),
        dtype="uint8",
        fill_value=0,
        zarr_format=3,
    )
    array[...] = codes
    assert np.array_equal(load_confidence(tmp_path, "old"), codes)


def test_rethreshold_array_checks_shapes():
    with pytest.raises(LabelSetError, match="shape"):
        rethreshold_array(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8), 0.5, (0.5,))


# ---------------------------------------------------------------------------------------------------------
# the writer


def test_label_relpath():
    assert (
        label_relpath("train_extra/aachen/aachen_000000_000019_leftImg8bit")
        == "labels/train_extra/aachen/aachen_000000_000019_gtAuto_labelTrainIds.png"
    )
    assert label_relpath("val/x/x_1_2_leftImg8bit", label_ids=True) == "labels/val/x/x_1_2_gtAuto_labelIds.png"
    assert label_relpath("a/b/photo") == "labels/a/b/photo.png"


def test_label_stats_against_brute_force():
    rng = np.random.default_rng(1)
    labels = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=(10, 13), p=[0.5, 0.2, 0.2, 0.1])
    counts, ignored, centroids = label_stats(labels, num_classes=4, tile=6)
    assert counts == [int((labels == c).sum()) for c in range(4)] and counts[3] == 0
    assert ignored == int((labels == 255).sum())
    expected = []
    for y0 in range(0, 10, 6):
        for x0 in range(0, 13, 6):
            tile = labels[y0 : y0 + 6, x0 : x0 + 6]
            for c in range(4):
                ys, xs = np.nonzero(tile == c)
                if len(ys):
                    expected.append({"cls": c, "y": y0 + int(round(ys.mean())), "x": x0 + int(round(xs.mean()))})
    assert centroids == expected


def test_finalise_writes_label_codes_and_a_matching_row(tmp_path):
    labels = np.array([[0, 1, 255], [18, 255, 2]], np.uint8)
    codes = np.array([[3, 1, 0], [10, 0, 2]], np.uint8)
    settings = WriteSettings(out=tmp_path, num_classes=19, shard="1/2", centroid_tile=8)
    sample = Sample(id="train_extra/c/c_0_0_leftImg8bit", image=Path("/in/c.png"))
    row = finalise_image(settings, sample, labels, codes, 0.8, {}, 0.5)
    path = tmp_path / row["label"]
    assert np.array_equal(read_label(path), labels)
    assert row["label_sha256"] == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    assert np.array_equal(load_confidence(tmp_path, sample.id), codes)
    assert row["class_counts"][:3] == [1, 1, 1] and row["class_counts"][18] == 1 and row["ignore_count"] == 2
    assert (row["shard"], row["status"], row["height"], row["width"]) == ("1/2", "ok", 2, 3)
    # with label ids the PNG holds Cityscapes labelIds (ignore -> 0) and the row still counts train ids
    lut = CITYSCAPES.train_to_label_lut(void_label=0)
    ids_settings = WriteSettings(out=tmp_path, num_classes=19, shard="1/2", train_to_label=lut, confidence=False)
    row2 = finalise_image(ids_settings, sample, labels, codes, 0.8, {}, 0.5)
    assert row2["label"].endswith("_gtAuto_labelIds.png")
    assert read_label(tmp_path / row2["label"]).tolist() == [[7, 8, 0], [33, 0, 11]]
    assert row2["class_counts"] == row["class_counts"]


# ---------------------------------------------------------------------------------------------------------
# temp files


def test_temp_names():
    assert is_temp_name(".a.png.x8y.tmp") and is_temp_name(".img.tmp-0a1b") and not is_temp_name("a.tmp.png")
    assert temp_target(Path("/o/.a.png.x8y.tmp")) == Path("/o/a.png")
    assert temp_target(Path("/o/.img.tmp-old-12")) == Path("/o/img")


def test_stale_temp_files_of_other_shards_are_left_alone(tmp_path):
    mine = Sample(id="x/mine", image=Path("/in/x/mine.png"))
    (tmp_path / "labels" / "x").mkdir(parents=True)
    own = tmp_path / "labels" / "x" / ".mine.png.abc.tmp"
    other = tmp_path / "labels" / "x" / ".theirs.png.abc.tmp"
    own_codes = tmp_path / "confidence.zarr" / "x" / ".mine.tmp-1234"
    for p in (own, other):
        p.write_bytes(b"partial")
    own_codes.mkdir(parents=True)
    removed = remove_stale_temp_files(tmp_path, [Chunk(samples=[mine], finished_rows={})], label_ids=False)
    assert removed == 2 and not own.exists() and not own_codes.exists() and other.exists()


# ---------------------------------------------------------------------------------------------------------
# the pipelined loop, with a stand-in model


class ColourTeacher(nn.Module):
    """Follows the model contract: class = brightest channel, confident where it clearly dominates."""

    num_classes = 3

    def forward(self, images, scales=None):
        return {"pred": images * 4.0, "attn_1.0x": torch.sigmoid(images[:, :1])}


def stand_in_teacher(batch_size: int) -> Teacher:
    cfg = ModelConfig(width="tiny", num_classes=3)
    loaded = LoadedCheckpoint(model=ColourTeacher(), model_cfg=cfg, class_names=("r", "g", "b"), sha256="0")
    settings = GenerateConfig(device="cpu", batch_size=batch_size, scales=(1.0,))
    data = DataConfig(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    from autolabel.classes import custom_class_set

    return Teacher(loaded, custom_class_set(("r", "g", "b")), torch.device("cpu"), settings, data, make_ladder(0.5))


def test_pipeline_batches_by_size_and_keeps_rows_in_chunks(tmp_path):
    rng = np.random.default_rng(0)
    samples, images = [], {}
    for i in range(7):
        size = (8, 12) if i % 3 else (5, 6)  # two sizes interleaved: a batch never mixes them
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        path = tmp_path / "in" / f"{i}.png"
        write_image_png(path, image)
        samples.append(Sample(id=f"im{i}", image=path))
        images[f"im{i}"] = image
    (tmp_path / "in" / "bad.png").write_bytes(b"nope")
    samples.append(Sample(id="im_bad", image=tmp_path / "in" / "bad.png"))
    chunks = [Chunk(samples=c, finished_rows={}) for c in chunked(samples, 3)]
    out = tmp_path / "out"
    seen = []
    settings = WriteSettings(out=out, num_classes=3, shard="0/1")
    rows = process_chunks(stand_in_teacher(batch_size=3), chunks, settings, max_pixels=None, on_image=seen.append)
    assert sum(seen) == len(samples) == len(rows)
    assert len(labelset.part_paths(out)) == 3
    by_id = {r["id"]: r for r in labelset.read_manifest(out, status=None).to_pylist()}
    assert by_id["im_bad"]["status"] == "error" and "not an image" in by_id["im_bad"]["error"]
    for image_id, image in images.items():
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255  # the stand-in's input
        expected = threshold_batch(x * 4.0, 0.5, make_ladder(0.5)).labels[0].numpy()
        assert np.array_equal(read_label(out / by_id[image_id]["label"]), expected)
