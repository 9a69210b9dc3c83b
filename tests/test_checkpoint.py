"""Checkpoint files: round trip, every way a file can be wrong, unsafe pickles, importing NVIDIA weights."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from autolabel.cli import main
from autolabel.config import ModelConfig
from autolabel.errors import EXIT_USER_ERROR, CheckpointError
from autolabel.models import build_model
from autolabel.models.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    checkpoint_sha256,
    import_nvidia_checkpoint,
    load_checkpoint,
    save_checkpoint,
)

NAMES = ("road", "car", "sky")
CFG = ModelConfig(width="tiny", num_classes=3)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model(CFG).eval()


@pytest.fixture
def saved(tmp_path, model):
    path = tmp_path / "teacher.pt"
    metadata = {"epoch": np.int64(7), "miou": np.float64(0.5), "source": tmp_path}  # numpy, paths: made plain
    save_checkpoint(path, model, CFG, NAMES, metadata=metadata)
    return path


def outputs(net, seed: int = 1) -> dict[str, torch.Tensor]:
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return net.eval()(x, scales=(0.5, 1.0, 2.0))


def rewrite(path, **changes) -> None:
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)


def test_round_trip_gives_identical_outputs_and_description(saved, model):
    loaded = load_checkpoint(saved, expected_num_classes=3)
    assert loaded.model_cfg == CFG
    assert loaded.class_names == NAMES
    assert loaded.metadata == {"epoch": 7, "miou": 0.5, "source": str(saved.parent)}
    assert type(loaded.metadata["miou"]) is float
    assert loaded.sha256 == checkpoint_sha256(saved)
    assert not loaded.model.training
    expected, got = outputs(model), outputs(loaded.model)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def test_file_is_a_plain_dict_loadable_with_weights_only(saved):
    payload = torch.load(saved, weights_only=True)
    assert payload["format"] == FORMAT and payload["format_version"] == FORMAT_VERSION
    assert payload["model_config"]["width"] == "tiny"
    assert payload["model_config"]["train_scales"] == [0.5, 1.0]
    assert payload["class_names"] == list(NAMES)


def test_save_is_atomic_and_overwrites(tmp_path, model, saved):
    before = checkpoint_sha256(saved)
    torch.nn.init.constant_(model.ocr.cls_head.bias, 1.0)
    sha = save_checkpoint(saved, model, CFG, NAMES)
    assert sha == checkpoint_sha256(saved) != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher.pt"]  # no temp file left behind


def test_save_rejects_class_names_that_do_not_fit(tmp_path, model):
    with pytest.raises(CheckpointError, match="2 class names"):
        save_checkpoint(tmp_path / "x.pt", model, CFG, NAMES[:2])


def test_save_rejects_metadata_that_is_not_plain(tmp_path, model):
    with pytest.raises(TypeError, match=r"metadata.extra\[0\]: object"):
        save_checkpoint(tmp_path / "x.pt", model, CFG, NAMES, metadata={"extra": [object()]})
    assert not (tmp_path / "x.pt").exists()


def test_save_unwraps_data_parallel(tmp_path, model):
    save_checkpoint(tmp_path / "dp.pt", torch.nn.DataParallel(model), CFG, NAMES)
    keys = torch.load(tmp_path / "dp.pt", weights_only=True)["state_dict"].keys()
    assert all(not key.startswith("module.") for key in keys)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_checkpoint(saved)
    assert str(saved) in str(info.value)


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a checkpoint" * 20)
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_checkpoint(path)


def test_foreign_state_dict_points_to_import(tmp_path, model):
    path = tmp_path / "nvidia.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    with pytest.raises(CheckpointError, match="import-checkpoint"):
        load_checkpoint(path)


def test_future_format_version(saved):
    rewrite(saved, format_version=FORMAT_VERSION + 1)
    with pytest.raises(CheckpointError, match="format version"):
        load_checkpoint(saved)


def test_wrong_class_count(saved):
    with pytest.raises(CheckpointError, match="3 classes, expected 19"):
        load_checkpoint(saved, expected_num_classes=19)


def test_bad_model_config_is_named(saved):
    payload = torch.load(saved, weights_only=True)
    rewrite(saved, model_config={**payload["model_config"], "width": "w99"})
    with pytest.raises(CheckpointError, match="model.width"):
        load_checkpoint(saved)


def test_state_dict_shape_mismatch_names_key_and_shapes(saved):
    payload = torch.load(saved, weights_only=True)
    state = payload["state_dict"]
    state["ocr.cls_head.weight"] = torch.zeros(4, *state["ocr.cls_head.weight"].shape[1:])
    rewrite(saved, state_dict=state)
    expected = r"'ocr.cls_head.weight' has shape \(4, 32, 1, 1\).*expects \(3, 32, 1, 1\)"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(saved)


def test_state_dict_missing_and_unexpected_keys(saved):
    state = torch.load(saved, weights_only=True)["state_dict"]
    missing = dict(state)
    del missing["scale_attn.conv2.weight"]
    rewrite(saved, state_dict=missing)
    with pytest.raises(CheckpointError, match="'scale_attn.conv2.weight' is missing"):
        load_checkpoint(saved)
    rewrite(saved, state_dict={**state, "extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="unexpected key 'extra.weight'"):
        load_checkpoint(saved)


class RunsCode:
    """Unpickling this would create a marker file: proof that code in the checkpoint ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_code_is_refused_and_never_runs(tmp_path, model):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save(
        {"format": FORMAT, "format_version": 1, "state_dict": model.state_dict(), "metadata": RunsCode(marker)}, path
    )
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(path)
    assert not marker.exists()
    # the same payload as a bare pickle (not a torch zip file) is refused too
    path.write_bytes(pickle.dumps({"x": RunsCode(marker)}))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------------
# importing published checkpoints (the W48 version of this runs in test_reference_w48.py)


def random_like(key: str, value: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random weights that keep activations finite (fan-in scaled convs, positive BN variances)."""
    if not value.is_floating_point():
        return torch.zeros_like(value)
    if key.endswith("running_var"):
        return torch.rand(value.shape, generator=g) + 0.5
    if value.dim() == 4:
        return torch.randn(value.shape, generator=g) * 0.75 / value[0].numel() ** 0.5
    return torch.randn(value.shape, generator=g) * 0.1 + (1.0 if key.endswith(".weight") else 0.0)


def nvidia_style(model, prefix: str) -> dict:
    g = torch.Generator().manual_seed(5)
    state = {prefix + k: random_like(k, v, g) for k, v in model.state_dict().items()}
    return {"state_dict": state, "epoch": 174, "command": "train.py --arch ocrnet.HRNet_Mscale"}


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_import_round_trip_with_and_without_module_prefix(tmp_path, model, prefix):
    src, dst = tmp_path / "best.pth", tmp_path / "out" / "teacher.pt"
    torch.save(nvidia_style(model, prefix), src)
    sha = import_nvidia_checkpoint(src, dst, CFG, NAMES)
    loaded = load_checkpoint(dst)
    assert sha == loaded.sha256 and loaded.metadata["source_sha256"] == checkpoint_sha256(src)
    reference = build_model(CFG)
    state = torch.load(src, weights_only=True)["state_dict"]
    reference.load_state_dict({k.removeprefix(prefix): v for k, v in state.items()})
    expected, got = outputs(reference), outputs(loaded.model)
    assert torch.isfinite(expected["pred"]).all()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def test_import_numpy_scalars_beside_the_weights_are_accepted(tmp_path, model):
    src = tmp_path / "best.pth"
    torch.save({**nvidia_style(model, "module."), "mean_iu": np.float64(0.86)}, src)
    import_nvidia_checkpoint(src, tmp_path / "t.pt", CFG, NAMES)
    assert load_checkpoint(tmp_path / "t.pt").class_names == NAMES


def test_import_reports_wrong_shape_by_key(tmp_path, model):
    payload = nvidia_style(model, "module.")
    payload["state_dict"]["module.backbone.conv1.weight"] = torch.zeros(16, 3, 5, 5)
    torch.save(payload, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"'backbone.conv1.weight' has shape \(16, 3, 5, 5\)"):
        import_nvidia_checkpoint(tmp_path / "bad.pth", tmp_path / "t.pt", CFG, NAMES)
    assert not (tmp_path / "t.pt").exists()


def test_import_cli(tmp_path, model):
    torch.save(nvidia_style(model, "module."), tmp_path / "best.pth")
    src, dst = str(tmp_path / "best.pth"), str(tmp_path / "t.pt")
    args = ["import-checkpoint", src, dst, "--classes", "cityscapes", "--set", "model.width=tiny"]
    result = CliRunner().invoke(main, args)
    # cityscapes has 19 classes, the file 3: refused, naming the classifier's key
    assert result.exit_code == EXIT_USER_ERROR
    assert "ocr.cls_head.weight" in result.output and "Traceback" not in result.output
    config = tmp_path / "c.toml"
    config.write_text(
        '[classes]\npreset = "custom"\nnames = ["road", "car", "sky"]\n[model]\nwidth = "tiny"\nnum_classes = 3\n'
    )
    result = CliRunner().invoke(main, ["import-checkpoint", src, dst, "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "t.pt").class_names == NAMES
    assert checkpoint_sha256(tmp_path / "t.pt") in result.output
