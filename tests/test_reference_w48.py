"""The published teacher: W48 state_dict layout and number-for-number agreement with the NVIDIA code.

Reference data (keys and golden outputs of the published model, see its README) lives in
``../shared/reference`` next to the repository. These tests build the 72M-parameter model once per module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from autolabel.classes import CITYSCAPES
from autolabel.config import ModelConfig
from autolabel.models import build_model
from autolabel.models.checkpoint import import_nvidia_checkpoint, load_checkpoint
from autolabel.train.losses import RMILoss, SigmoidBCELoss

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
KEYS_TSV = REFERENCE / "nvidia_mscaleocr_w48_keys.tsv"
GOLDEN_NPZ = REFERENCE / "nvidia_mscaleocr_w48_golden.npz"

pytestmark = pytest.mark.skipif(
    not KEYS_TSV.exists() or not GOLDEN_NPZ.exists(),
    reason=f"reference data for the published model not found in {REFERENCE}",
)


def reference_rows() -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, dtype) of every state_dict entry of the published model, in its order."""
    rows = []
    for line in KEYS_TSV.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, dtype = line.split("\t")
        rows.append((key, () if shape == "scalar" else tuple(int(n) for n in shape.split("x")), dtype))
    return rows


def reference_state_dict(rows) -> dict[str, torch.Tensor]:
    """The random state dict of the golden outputs, rebuilt exactly as the reference README prescribes."""
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, shape, dtype in rows:
        if dtype == "int64":
            value = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("running_var"):
            value = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("running_mean"):
            value = torch.randn(shape, generator=g) * 0.1
        elif len(shape) == 4:
            value = torch.randn(shape, generator=g) * 0.75 / (shape[1] * shape[2] * shape[3]) ** 0.5
        elif key.endswith(".weight"):
            value = 1 + torch.randn(shape, generator=g) * 0.1
        else:
            value = torch.randn(shape, generator=g) * 0.1
        state[key] = value
    return state


@pytest.fixture(scope="module")
def rows():
    return reference_rows()


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN_NPZ) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def w48(rows):
    torch.manual_seed(0)
    model = build_model(ModelConfig(width="w48", num_classes=19))
    model.load_state_dict(reference_state_dict(rows))
    return model.eval()


def assert_matches(got: torch.Tensor, expected: np.ndarray, name: str) -> None:
    got = got.detach().numpy()
    assert got.shape == expected.shape, name
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= 1e-4 * scale, f"{name}: max error {np.abs(got - expected).max()}"


def test_w48_state_dict_has_exactly_the_published_keys_shapes_and_dtypes(rows):
    with torch.device("meta"):  # shapes and dtypes without allocating 72M parameters
        model = build_model(ModelConfig(width="w48", num_classes=19))
    ours = {
        key: (tuple(value.shape), str(value.dtype).removeprefix("torch.")) for key, value in model.state_dict().items()
    }
    published = {key: (shape, dtype) for key, shape, dtype in rows}
    assert sorted(set(published) - set(ours)) == []
    assert sorted(set(ours) - set(published)) == []
    assert {k: v for k, v in ours.items() if published[k] != v} == {}
    assert sum(p.numel() for p in model.parameters()) == 72_143_430


@pytest.mark.slow
def test_w48_reproduces_the_published_two_scale_and_hierarchical_outputs(w48, golden):
    images = torch.randn(1, 3, 128, 256, generator=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(images.numpy(), golden["input"])
    with torch.no_grad():
        pair = w48(images, scales=(0.5, 1.0))
        chain = w48(images, scales=(0.5, 1.0, 2.0))
    for ours, theirs in (
        ("pred", "pred"),
        ("pred_0.5x", "pred_05x"),
        ("pred_1.0x", "pred_10x"),
        ("attn_0.5x", "attn_05x"),
    ):
        assert_matches(pair[ours], golden[f"two_scale.{theirs}"], f"two_scale.{theirs}")
    for key in ("pred", "pred_2.0x", "pred_1.0x", "pred_0.5x", "attn_1.0x", "attn_0.5x"):
        assert_matches(chain[key], golden[f"nscale_0.5_1.0_2.0.{key}"], f"nscale.{key}")


def test_rmi_reproduces_the_published_loss_values(golden):
    logits = torch.from_numpy(golden["rmi.logits"])
    labels = torch.from_numpy(golden["rmi.labels"]).long()
    rmi = RMILoss(num_classes=19)(logits, labels).item()
    assert rmi == pytest.approx(float(golden["rmi.loss_rmi"]), rel=1e-4)
    bce = SigmoidBCELoss(num_classes=19)(logits, labels).item()
    assert bce == pytest.approx(float(golden["rmi.loss_bce_only"]), rel=1e-4)


@pytest.mark.slow
def test_import_of_a_published_style_checkpoint_round_trips(tmp_path, rows, w48, golden):
    state = reference_state_dict(rows)
    published = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 1}
    torch.save(published, tmp_path / "best.pth")
    del published, state  # 290 MB each
    import_nvidia_checkpoint(tmp_path / "best.pth", tmp_path / "teacher.pt", ModelConfig(width="w48"), CITYSCAPES.names)
    loaded = load_checkpoint(tmp_path / "teacher.pt", expected_num_classes=19)
    images = torch.from_numpy(golden["input"])
    with torch.no_grad():
        expected, got = w48(images, scales=(0.5, 1.0)), loaded.model(images, scales=(0.5, 1.0))
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
