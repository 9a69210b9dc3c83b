"""Config loading: unknown keys, wrong types, ranges, cross-field checks, overrides, path resolution."""

from pathlib import Path

import pytest

from autolabel.config import PipelineConfig, dump_toml, load_config, parse_override, to_dict
from autolabel.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_published_recipe():
    cfg = load_config()
    assert isinstance(cfg, PipelineConfig)
    assert cfg.model.width == "w48" and cfg.model.mscale == "hierarchical"
    assert cfg.generate.scales == (0.5, 1.0, 2.0) and cfg.generate.threshold == 0.5
    assert cfg.train.poly_power == 2.0 and cfg.train.class_uniform_pct == 0.5


@pytest.mark.parametrize(
    "text, key",
    [
        ("[train]\nlrr = 0.1\n", "train.lrr"),
        ("bogus = 1\n", "bogus"),
        ("[model]\nnum_classes = 'nineteen'\n", "model.num_classes"),
        ("[train]\nflip = 1\n", "train.flip"),
        ("[train]\nlr = -0.1\n", "train.lr"),
        ("[generate]\nthreshold = 1.0\n", "generate.threshold"),
        ("[model]\nmscale = 'pyramid'\n", "model.mscale"),
        ("[model]\ninfer_scales = [0.5, 2.0]\n", "model.infer_scales"),
        ("[model]\ntrain_scales = [1.0, 0.5]\n", "model.train_scales"),
        ("[train]\ncrop_size = [512]\n", "train.crop_size"),
        ("[classes]\npreset = 'custom'\n", "classes.names"),
        ("[student]\nlabels = [3]\n", "student.labels[0]"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert key in str(info.value)
    assert "p.toml" in str(info.value)


def test_int_is_accepted_for_float_but_not_bool_for_int(tmp_path):
    cfg = load_config(write(tmp_path, "[train]\nlr = 1\n"))
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(write(tmp_path, "[train]\nepochs = true\n"))


def test_relative_paths_resolve_against_the_config_file(tmp_path, monkeypatch):
    sub = tmp_path / "configs"
    sub.mkdir()
    path = sub / "x.toml"
    path.write_text("[data]\nroot = '../data/city'\n[train]\nout_dir = 'runs/t'\n")
    monkeypatch.chdir("/")
    cfg = load_config(path)
    assert cfg.data.root == (tmp_path / "data" / "city").resolve()
    assert cfg.train.out_dir == (sub / "runs" / "t").resolve()


def test_overrides_apply_and_go_through_the_same_checks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "[train]\nlr = 0.1\n")
    cfg = load_config(
        path,
        ["train.lr=0.01", "model.infer_scales=[0.25, 0.5, 1.0]", "generate.flip=true", "data.root=here", "name=my run"],
    )
    assert cfg.train.lr == 0.01
    assert cfg.model.infer_scales == (0.25, 0.5, 1.0)
    assert cfg.generate.flip is True
    assert cfg.data.root == (tmp_path / "here").resolve()
    assert cfg.name == "my run"
    for bad, key in [
        ("train.lr=-1", "train.lr"),
        ("train.nope=1", "train.nope"),
        ("train=3", "train"),
        ("train.lr", "train.lr"),
    ]:
        with pytest.raises(ConfigError, match=key):
            load_config(path, [bad])


def test_cross_section_check_class_count(tmp_path):
    text = "[classes]\npreset = 'custom'\nnames = ['a', 'b']\n[model]\nnum_classes = 3\n"
    with pytest.raises(ConfigError, match="model.num_classes"):
        load_config(write(tmp_path, text))
    ok = load_config(write(tmp_path, text.replace("= 3", "= 2")))
    assert ok.classes.names == ("a", "b")


def test_config_is_frozen():
    cfg = load_config()
    with pytest.raises(AttributeError):
        cfg.train.lr = 3.0  # type: ignore[misc]


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[train\n"))


def test_dump_round_trips(tmp_path):
    cfg = load_config(None, ["train.lr=0.003", "data.root=/data/cs", "student.threshold=0.9"])
    again = load_config(write(tmp_path, dump_toml(cfg)))
    assert again == cfg
    assert to_dict(again)["data"]["root"] == "/data/cs"


def test_parse_override_values():
    assert parse_override("a.b=0.5") == (["a", "b"], 0.5)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=hello world") == (["a"], "hello world")
    with pytest.raises(ConfigError):
        parse_override("a..b=1")


def test_default_relative_paths_resolve_too(tmp_path):
    cfg = load_config(write(tmp_path, "name = 'x'\n"))
    assert cfg.train.out_dir == (tmp_path / "runs" / "teacher").resolve()


@pytest.mark.parametrize(
    "change, key",
    [
        ({"threshold": 2.0}, "generate.threshold"),
        ({"threshold": -1.0}, "generate.threshold"),
        ({"batch_size": 0}, "generate.batch_size"),
        ({"tile_size": -5}, "generate.tile_size"),
        ({"scales": (-1.0, 0.0)}, "generate.scales"),
        ({"flip": "yes"}, "generate.flip"),
        ({"scales": (1.0, 0.5)}, "generate.scales"),  # a cross-field rule (__post_init__)
        ({"bogus": 1}, "generate.bogus"),
    ],
)
def test_replace_checks_every_changed_value_like_loading(change, key):
    from autolabel.config import GenerateConfig, replace

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        replace(GenerateConfig(), **change)


def test_replace_converts_like_loading_and_keeps_checked_sections():
    from autolabel.config import GenerateConfig, TrainConfig, replace

    g = replace(GenerateConfig(), scales=[0.5, 1], threshold=0)
    assert g.scales == (0.5, 1.0) and isinstance(g.threshold, float)
    cfg = replace(PipelineConfig(), train=TrainConfig(epochs=3))
    assert cfg.train.epochs == 3
    t = replace(TrainConfig(), out_dir="runs/x")
    assert t.out_dir == (Path.cwd() / "runs/x").resolve()
