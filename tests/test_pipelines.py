"""Every ``pipelines/*.toml`` loads, passes every check, and says what it is for."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from autolabel.classes import class_set_from_config
from autolabel.cli import main
from autolabel.config import PipelineConfig, dump_toml, load_config

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"
ALL = sorted(PIPELINES.glob("*.toml"))


def test_the_documented_pipelines_exist():
    assert {"demo.toml", "cityscapes.toml", "folder.toml"} <= {p.name for p in ALL}


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_pipeline_loads_and_is_consistent(path: Path):
    cfg = load_config(path)
    assert isinstance(cfg, PipelineConfig)
    assert cfg.name == path.stem
    classes = class_set_from_config(cfg.classes)
    assert classes.num_classes == cfg.model.num_classes
    for name in cfg.student.boost_classes + cfg.student.coarse_fusion_classes:
        classes.index(name)  # raises ConfigError for a misspelt class
    # the scales the teacher labels with are the ones it is evaluated with
    assert cfg.generate.scales == cfg.model.infer_scales
    assert 1.0 in cfg.generate.scales
    # class-uniform centroids recorded by generate are usable by the student's sampler
    assert cfg.generate.centroid_tile == cfg.train.class_uniform_tile
    if cfg.student.drop_auto_after_epoch is not None:
        assert cfg.student.drop_auto_after_epoch < cfg.train.epochs


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_pipeline_is_documented_at_the_top(path: Path):
    head = path.read_text().splitlines()[:5]
    assert head[0].startswith(f"# {path.name}")
    assert all(line.startswith("#") for line in head)


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_default_paths_stay_inside_the_repository(path: Path):
    cfg = load_config(path)
    repo = PIPELINES.parent
    for p in (cfg.data.root, cfg.train.out_dir, *cfg.student.labels):
        assert p is not None and p.is_absolute() and repo in p.parents, p


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_resolved_config_round_trips_through_show_config(path: Path, tmp_path: Path):
    result = CliRunner().invoke(main, ["show-config", str(path)])
    assert result.exit_code == 0, result.output
    dumped = tmp_path / "resolved.toml"
    dumped.write_text(result.output)
    assert dump_toml(load_config(dumped)) == dump_toml(load_config(path))


def test_paths_are_user_settable_with_overrides(tmp_path: Path):
    cfg = load_config(
        PIPELINES / "cityscapes.toml", [f"data.root={tmp_path / 'cs'}", f"train.out_dir={tmp_path / 'run'}"]
    )
    assert cfg.data.root == tmp_path / "cs"
    assert cfg.train.out_dir == tmp_path / "run"


def test_cityscapes_is_the_published_recipe():
    cfg = load_config(PIPELINES / "cityscapes.toml")
    assert (cfg.model.arch, cfg.model.width, cfg.model.mscale) == ("hrnet_ocr", "w48", "hierarchical")
    assert cfg.model.train_scales == (0.5, 1.0)
    assert cfg.generate.scales == (0.5, 1.0, 2.0) and cfg.generate.threshold == 0.5
    assert cfg.generate.split == cfg.data.extra_split == "train_extra"
    assert (cfg.loss.main, cfg.loss.aux_weight, cfg.loss.scale_weight) == ("rmi", 0.4, 0.05)
    t = cfg.train
    assert (t.lr, t.momentum, t.weight_decay, t.poly_power) == (1e-2, 0.9, 1e-4, 2.0)
    assert t.crop_size == (1024, 2048) and (t.scale_min, t.scale_max) == (0.5, 2.0)
    assert t.class_uniform_pct == 0.5 and t.class_uniform_tile == 1024 and t.color_jitter == 0.25
    assert t.amp != "off"
    assert set(cfg.student.boost_classes) == {"truck", "bus", "train", "wall", "rider", "motorcycle", "fence"}


def test_demo_is_small_enough_for_a_cpu():
    cfg = load_config(PIPELINES / "demo.toml")
    assert cfg.model.width == "tiny" and cfg.train.device == "cpu" and cfg.generate.device == "cpu"
    assert cfg.model.mscale == "hierarchical" and cfg.generate.scales == (0.5, 1.0, 2.0)
    assert cfg.generate.attention and cfg.generate.confidence  # the report shows both


def test_folder_uses_a_custom_class_list():
    cfg = load_config(PIPELINES / "folder.toml")
    assert cfg.classes.preset == "custom" and cfg.data.layout == "folder"
    classes = class_set_from_config(cfg.classes)
    assert len(set(classes.colors)) == classes.num_classes
