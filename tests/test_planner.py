"""The planner (issue #20): sizes, peak memory, the cost model, the tile that fits a budget, ``--dry-run --json``,
and a tiling chosen for a budget naming the same label set as that tiling given by hand."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from autolabel import api
from autolabel.classes import CITYSCAPES
from autolabel.cli import main
from autolabel.config import GenerateConfig, ModelConfig, format_size, parse_size
from autolabel.errors import ConfigError
from autolabel.generate import costs
from autolabel.generate.costs import CostModel, Measurement
from autolabel.labelset import read_labelset
from autolabel.models import build_model
from autolabel.models.checkpoint import save_checkpoint
from autolabel.models.predict import tile_layout

REPO = Path(__file__).resolve().parents[1]
SCALES = (0.5, 1.0, 2.0)
MiB = 2**20


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def city(synthetic_city) -> Path:
    return synthetic_city(train=1, val=1, extra=3, size=(64, 32), seed=7)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(width="tiny", num_classes=19)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint(path, build_model(cfg), cfg, CITYSCAPES.names)
    return path


# ---------------------------------------------------------------------------------------------------------
# sizes


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8GiB", 8 * 2**30), ("8G", 8 * 2**30), ("8g", 8 * 2**30), ("500MB", 500 * 10**6), ("1.5GiB", 3 * 2**29),
     ("4096", 4096), (" 2 MiB ", 2 * MiB), ("1T", 2**40)],
)  # fmt: skip
def test_sizes_read_binary_letters_and_decimal_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "8 gigs", "-1G", "0", "1e9", "GiB", "8GiBs"])
def test_a_bad_size_names_the_key_and_the_expected_form(text):
    with pytest.raises(ConfigError, match=r"^generate\.memory_budget: .*(not a size|not a positive size)"):
        parse_size(text, key="generate.memory_budget")


def test_format_size_reads_back_within_its_rounding():
    for value in (512, 5000, 3 * MiB + 12345, 7 * 2**30 + 2**28):
        text = format_size(value)
        assert abs(parse_size(text.replace(" ", "")) - value) <= 0.01 * value + 1, text


def test_the_memory_budget_key_is_checked_like_every_config_value():
    assert GenerateConfig(memory_budget="16GiB").memory_budget == "16GiB"
    assert GenerateConfig(memory_budget="none").memory_budget == "none"
    with pytest.raises(ConfigError, match=r"generate\.memory_budget: 'lots' is not a size.*auto.*none"):
        GenerateConfig(memory_budget="lots")


def test_the_memory_budget_flag_names_itself_in_its_error(teacher, city, tmp_path):
    result = invoke("generate", "--teacher", teacher, "--data", f"cityscapes:{city}:train_extra", "--out",
                    tmp_path / "o", "--memory-budget", "lots", "--dry-run")  # fmt: skip
    assert result.exit_code != 0 and "--memory-budget lots" in result.output, result.output
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------------------
# peak memory and the cost model


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_peak_memory_counts_what_a_forward_touches_and_frees():
    size = 48 * MiB
    with costs.PeakMemory(torch.device("cpu")) as peak:
        block = np.ones(size, np.uint8)  # written: resident
        del block
    assert peak.growth is not None and 0.9 * size <= peak.growth <= 1.2 * size + 4 * MiB
    with costs.PeakMemory(torch.device("cpu")) as again:  # a second probe in the same process sees it again
        block = np.ones(size // 2, np.uint8)
        del block
    assert again.growth is not None and 0.9 * size / 2 <= again.growth <= 1.2 * size / 2 + 4 * MiB


def _measurement(model: CostModel, width: int, height: int, tile: int, settings: GenerateConfig) -> Measurement:
    geom = costs.geometry(width, height, settings, tile)
    seconds = model.seconds(geom)
    return Measurement(geom, 1, 100 * MiB, round(model.peak_bytes(geom)), (2 * seconds, seconds, seconds))


def test_the_cost_model_fit_recovers_known_coefficients():
    settings = GenerateConfig(scales=SCALES)
    truth = CostModel(3 * MiB, 250.0, 40.0, 0.02, 2e-7, 3e-8, tiled=True)
    probes = [_measurement(truth, 256, 128, 0, settings), _measurement(truth, 362, 181, 0, settings),
              _measurement(truth, 362, 181, 182, settings)]  # fmt: skip
    fitted = CostModel.fit(probes)
    target = costs.geometry(2048, 1024, settings, 1024)
    for geom in (costs.geometry(2048, 1024, settings, 0), target):
        assert fitted.peak_bytes(geom) == pytest.approx(truth.peak_bytes(geom), rel=1e-3)
        assert fitted.seconds(geom) == pytest.approx(truth.seconds(geom), rel=1e-3)
    assert fitted.baseline_bytes == 100 * MiB


def _stand_in(window_bytes: int, canvas_bytes: int, per_window: float, per_pixel: float) -> Any:
    """A 'teacher' whose forward of a (B, H, W, 3) batch holds ``canvas_bytes`` per image pixel for the whole
    forward plus ``window_bytes`` per window pixel while each window runs, and sleeps ``per_window`` +
    ``per_pixel`` x window pixels per window: its peak and time are known for any geometry."""

    def predict_for(tile: int) -> Any:
        def predict(batch: np.ndarray) -> np.ndarray:
            _, height, width, _ = batch.shape
            window, count = tile_layout((height, width), SCALES, tile, 0.25)
            pixels = window[0] * window[1] if window is not None else height * width
            canvas = np.ones(canvas_bytes * height * width, np.uint8)  # written, so resident
            for _ in range(count):
                scratch = np.ones(window_bytes * pixels, np.uint8)
                time.sleep(per_window + per_pixel * pixels)
                del scratch
            return canvas[:8].copy()

        return predict

    return predict_for


def _extrapolation_misses() -> list[str]:
    """Calibrate on the stand-in of known memory and time, in this process; where the model's predictions at the
    real size miss the stand-in's true peak and seconds, one line each."""
    window_bytes, canvas_bytes, per_window, per_pixel = 60, 20, 0.005, 1e-6  # sleeps dominate the CPU work
    settings = GenerateConfig(scales=SCALES, device="cpu")
    target = (1024, 512)
    image = np.full((512, 1024, 3), 128, np.uint8)
    calibration = costs.calibrate(
        _stand_in(window_bytes, canvas_bytes, per_window, per_pixel), image, target, settings, torch.device("cpu")
    )
    misses = [] if calibration.model.tiled else ["the fitted model is not tiled"]
    if not all(m.geometry.pixels <= 0.51 * target[0] * target[1] for m in calibration.measurements):
        misses.append("a probe was not small")
    for tile in (0, 512):
        geom = costs.geometry(*target, settings, tile)
        peak = canvas_bytes * geom.pixels + window_bytes * geom.window_pixels
        seconds = geom.windows * (per_window + per_pixel * geom.window_pixels)
        if calibration.model.peak_bytes(geom) != pytest.approx(peak, rel=0.1, abs=2 * MiB):
            misses.append(f"tile {tile}: peak {calibration.model.peak_bytes(geom):.0f} vs {peak}")
        if calibration.model.seconds(geom) != pytest.approx(seconds, rel=0.35):
            misses.append(f"tile {tile}: seconds {calibration.model.seconds(geom):.3f} vs {seconds:.3f}")
    return misses


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_small_probes_extrapolate_to_the_real_size_on_a_model_of_known_memory_and_time():
    # The probes read the resident set and the wall clock of their process. A planner probes at the start of its
    # job, in a process of its own; so does this test: inside a long pytest session, threads and heap state left
    # by earlier tests (seen once in CI: a tiled probe measured ~2 MB short, three times running) are not what is
    # under test. The wall clock of a loaded machine can still be disturbed once; a wrong fit misses every time.
    code = f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); " \
        "import test_planner; print(json.dumps(test_planner._extrapolation_misses()))"  # fmt: skip
    misses: list[str] = []
    for _attempt in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        misses = json.loads(out.stdout.strip().splitlines()[-1])
        if not misses:
            break
    assert not misses, misses


# ---------------------------------------------------------------------------------------------------------
# the tile that fits


MODEL = CostModel(5 * MiB, 300.0, 40.0, 0.01, 1e-6, 1e-7, baseline_bytes=300 * MiB, tiled=True)


def _extent(tile: int) -> float:
    return float("inf") if tile == 0 else tile


@pytest.mark.parametrize("on_gpu", [False, True])
def test_the_tile_choice_grows_with_the_budget_and_never_exceeds_it_in_the_model(on_gpu):
    settings = GenerateConfig(scales=SCALES)
    width, height = 2048, 1024
    options = costs.candidates(MODEL, width, height, settings, None, on_gpu)
    assert [c.tile_size for c in options] == costs.tile_candidates(width, height, settings) and len(options) > 4
    least = min(costs.total_bytes(MODEL, costs.geometry(width, height, settings, c.tile_size), settings, on_gpu,
                                  costs.HEADROOM) for c in options)  # fmt: skip
    previous = 0.0
    for budget in np.geomspace(200 * MiB, 20 * 2**30, 80).astype(int):
        try:
            chosen = costs.choose_tile_size(MODEL, width, height, settings, int(budget), on_gpu=on_gpu)
        except ConfigError as exc:
            assert budget < least and str(exc).startswith("generate.memory_budget: ")
            assert previous == 0.0  # nothing fitted at a smaller budget either
            continue
        geom = costs.geometry(width, height, settings, chosen.tile_size)
        assert costs.total_bytes(MODEL, geom, settings, on_gpu, costs.HEADROOM) <= budget
        judged = costs.candidates(MODEL, width, height, settings, int(budget), on_gpu)
        assert not any(c.fits for c in judged if _extent(c.tile_size) > _extent(chosen.tile_size))  # the largest
        assert _extent(chosen.tile_size) >= previous
        previous = _extent(chosen.tile_size)
    assert previous == float("inf")  # the largest budget fits the whole image


def test_an_earlier_runs_tile_is_kept_while_it_fits():
    settings = GenerateConfig(scales=SCALES)
    generous = 64 * 2**30
    assert costs.choose_tile_size(MODEL, 2048, 1024, settings, generous, on_gpu=True).tile_size == 0
    assert costs.choose_tile_size(MODEL, 2048, 1024, settings, generous, on_gpu=True, prefer=768).tile_size == 768
    tight = costs.choose_tile_size(MODEL, 2048, 1024, settings, 420 * MiB, on_gpu=True)
    assert tight.tile_size != 0
    assert costs.choose_tile_size(MODEL, 2048, 1024, settings, 420 * MiB, on_gpu=True, prefer=0) == tight


# ---------------------------------------------------------------------------------------------------------
# --dry-run


def _leaves(value: Any, prefix: str = "") -> set[str]:
    """Dotted paths of a JSON document's fields; list items of objects as ``name[].field``."""
    if isinstance(value, dict):
        paths = set()
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            paths |= {path} if not isinstance(item, (dict, list)) or key in ("sizes_seen",) else set()
            paths |= _leaves(item, path) if key not in ("sizes_seen",) else set()
        return paths
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return set().union(*(_leaves(item, f"{prefix}[]") for item in value))
    return {prefix} if prefix else set()


def test_dry_run_json_is_the_documented_plan(teacher, city, tmp_path):
    out = tmp_path / "o"
    result = invoke("generate", "--teacher", teacher, "--data", f"cityscapes:{city}:train_extra", "--out", out,
                    "--device", "cpu", "--scales", "0.5,1.0,2.0", "--shard", "0/2", "--devices", "1",
                    "--memory-budget", "64GiB", "--dry-run", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)  # stdout holds the JSON alone
    assert not out.exists()
    assert plan["format"] == "autolabel-plan" and plan["format_version"] == 1
    images, timing, memory, output = plan["images"], plan["timing"], plan["memory"], plan["output_bytes"]
    assert images["inputs"] == 3 and sum(images["per_shard"]) == 3 and images["size"] == [64, 32]
    assert images["todo"] == images["per_shard"][0] and images["todo_all_shards"] == 3
    assert timing["measured"] == "real size" and timing["timed_images"] >= 1
    assert timing["seconds_per_image"] > 0
    assert timing["images_per_hour"] == pytest.approx(3600 / timing["seconds_per_image"], rel=0.01)
    assert timing["seconds_per_image"] >= timing["forward_seconds_per_image"] * 0.999
    assert timing["bottleneck"] in ("device", "host")
    walls = plan["wall_seconds"]
    assert walls["devices"] == 1 and walls["all_shards"] >= walls["this_shard"] > 0
    assert memory["kind"] == "rss" and memory["forward_peak_bytes"] > 0
    assert (
        memory["total_bytes"] == memory["baseline_bytes"] + memory["forward_peak_bytes"] + memory["host_buffer_bytes"]
    )
    assert memory["budget_bytes"] == 64 * 2**30 and memory["fits"] is True
    per_image = output["per_image"]
    assert per_image["labels"] > 0 and per_image["confidence"] > 0 and per_image["attention"] == 0
    assert per_image["total"] == per_image["labels"] + per_image["confidence"] + per_image["attention"]
    assert output["this_shard"] == per_image["total"] * images["todo"]
    tiling = plan["tiling"]
    assert tiling["choice"] == "auto" and tiling["tile_size"] == 0 and tiling["window"] is None
    assert [c["tile_size"] for c in tiling["candidates"]] == [0, 96, 64] and all(
        c["fits"] for c in tiling["candidates"]
    )
    assert plan["settings"]["scales"] == list(SCALES) and plan["settings"]["tile_size"] == 0
    usage = (REPO / "docs" / "usage.md").read_text()
    missing = sorted(path for path in _leaves(plan) if f"`{path}`" not in usage)
    assert not missing, f"docs/usage.md does not describe {missing}"


def test_dry_run_reports_time_memory_output_and_bottleneck_and_json_file(teacher, city, tmp_path):
    file = tmp_path / "plan.json"
    result = invoke("generate", "--teacher", teacher, "--data", f"cityscapes:{city}:train_extra", "--out",
                    tmp_path / "o", "--device", "cpu", "--scales", "0.5,1.0", "--dry-run", "--json", file)  # fmt: skip
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert re.search(r"estimate: [0-9.e+-]+ s per image, [0-9]+ images/hour, measured on [0-9]+ images? at the real "
                     r"size; .* the (device|host) is the bottleneck", text), text  # fmt: skip
    assert re.search(r"wall time: .* for this shard \(3 images.*all shards on 1 device", text), text
    assert "peak memory: " in text and "RSS growth of the forward" in text
    assert re.search(r"output: .* per image \(labels .*, confidence .*, attention 0 B\)", text), text
    assert "tiling: none, whole images (no memory budget)" in text
    plan = json.loads(file.read_text())
    assert plan["timing"]["bottleneck"] in text and plan["images"]["todo"] == 3
    assert not (tmp_path / "o").exists()


def test_plan_flags_need_dry_run(teacher, city, tmp_path):
    for flag in (["--json"], ["--devices", "4"]):
        result = invoke("generate", "--teacher", teacher, "--data", f"cityscapes:{city}:train_extra", "--out",
                        tmp_path / "o", *flag)  # fmt: skip
        assert result.exit_code == 2 and f"{flag[0]} plans a run" in result.output, result.output
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------------------
# generate with a budget: the id


def _fake_calibration(monkeypatch) -> CostModel:
    """Calibration replaced by a known model (the real probes of a 64x32 image differ by less than their noise)."""
    model = CostModel(0.0, 1000.0, 0.0, 0.01, 1e-6, 0.0, baseline_bytes=0.0, tiled=True)
    calls = []

    def calibrate(*args: Any, **kwargs: Any) -> costs.Calibration:
        calls.append(args)
        return costs.Calibration(model, (), None, 0.0)

    monkeypatch.setattr(costs, "calibrate", calibrate)
    return model


def test_a_tile_chosen_for_a_budget_names_the_label_set_of_that_tile_given_by_hand(
    teacher, city, tmp_path, monkeypatch
):
    model = _fake_calibration(monkeypatch)
    settings = GenerateConfig(scales=SCALES)
    need = {
        c.tile_size: costs.total_bytes(
            model, costs.geometry(64, 32, settings, c.tile_size), settings, False, costs.HEADROOM
        )
        for c in costs.candidates(model, 64, 32, settings, None, False)
    }
    assert need[0] > need[96] > need[64]
    tight = f"{int((need[0] + need[96]) / 2)}"  # bytes: fits tile 96, not the whole image
    data = f"cityscapes:{city}:train_extra"
    common = {"device": "cpu", "scales": SCALES, "chunk_size": 8}
    auto = api.generate_labels(teacher, data, tmp_path / "auto", memory_budget=tight, **common)
    given = api.generate_labels(teacher, data, tmp_path / "given", tile_size=96, memory_budget="none", **common)
    assert auto.ok == given.ok == 3
    auto_meta, given_meta = read_labelset(tmp_path / "auto"), read_labelset(tmp_path / "given")
    assert auto_meta["tiling"]["tile_size"] == given_meta["tiling"]["tile_size"] == 96
    assert auto.labelset_id == given.labelset_id == auto_meta["labelset_id"]
    assert auto_meta["tiling_plan"]["choice"] == "auto" and auto_meta["tiling_plan"]["memory_budget_bytes"] == int(
        tight
    )
    assert "tiling_plan" not in given_meta
    for path in sorted((tmp_path / "auto" / "labels").rglob("*.png")):  # the same labels, byte for byte
        assert path.read_bytes() == (tmp_path / "given" / path.relative_to(tmp_path / "auto")).read_bytes()
    # a rerun with more memory keeps the tiling it chose (the whole image would fit now): same set, nothing redone
    again = api.generate_labels(teacher, data, tmp_path / "auto", memory_budget="64GiB", **common)
    assert again.labelset_id == auto.labelset_id and again.ok == 0 and again.skipped == 3
    # a fresh folder with that much memory labels whole images: the tiling is hashed, so another id
    whole = api.generate_labels(teacher, data, tmp_path / "whole", memory_budget="64GiB", **common)
    assert read_labelset(tmp_path / "whole")["tiling"]["tile_size"] == 0 and whole.labelset_id != auto.labelset_id


def test_a_budget_too_small_for_any_tile_refuses_before_writing(teacher, city, tmp_path, monkeypatch):
    _fake_calibration(monkeypatch)
    with pytest.raises(ConfigError, match=r"generate\.memory_budget: .* too little for 64x32 images"):
        api.generate_labels(teacher, f"cityscapes:{city}:train_extra", tmp_path / "o", device="cpu", scales=SCALES,
                            memory_budget="1000")  # fmt: skip
    assert not (tmp_path / "o").exists()
