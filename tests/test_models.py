"""Networks and multi-scale fusion: output contract per mode and trunk, gradients, and the fusion formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autolabel.config import LossConfig, ModelConfig
from autolabel.models import build_model
from autolabel.models.hrnet import HRNET_SPECS, HRNetV2
from autolabel.models.mscale import (
    average_fuse,
    explicit_fuse,
    hierarchical_fuse,
    rescale,
    scale_key,
)
from autolabel.train.losses import build_loss

NUM_CLASSES = 5
MODES = ("hierarchical", "avgpool", "explicit", "single")


def tiny_cfg(mscale: str = "hierarchical", **changes) -> ModelConfig:
    train_scales = (1.0,) if mscale == "single" else (0.5, 1.0)
    fields = dict(
        width="tiny", num_classes=NUM_CLASSES, mscale=mscale, train_scales=train_scales, infer_scales=(0.5, 1.0, 2.0)
    )
    fields.update(changes)
    return ModelConfig(**fields)


def tiny_model(mscale: str = "hierarchical", seed: int = 0, **changes) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(tiny_cfg(mscale, **changes))


def images(b: int = 2, h: int = 64, w: int = 96, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


# ---------------------------------------------------------------------------------------------------------
# output contract


@pytest.mark.parametrize("mscale", MODES)
def test_train_forward_keys_and_shapes(mscale):
    model = tiny_model(mscale).train()
    out = model(images(h=64, w=96))
    scales = model.train_scales
    assert out["pred"].shape == (2, NUM_CLASSES, 64, 96)
    assert out["aux"].shape == (2, NUM_CLASSES, 64, 96)
    for s in scales:
        assert out[scale_key("pred", s)].shape == (2, NUM_CLASSES, int(64 * s), int(96 * s))
    has_attn = {s for s in scales if scale_key("attn", s) in out}
    expected_attn = {"hierarchical": set(scales[:-1]), "explicit": set(scales)}.get(mscale, set())
    assert has_attn == expected_attn
    assert all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize("mscale", MODES)
def test_eval_forward_uses_given_scales(mscale):
    model = tiny_model(mscale).eval()
    with torch.no_grad():
        out = model(images(b=1, h=64, w=64), scales=(0.5, 1.0, 2.0))
    assert out["pred"].shape == (1, NUM_CLASSES, 64, 64)
    assert {k for k in out if k.startswith("pred_")} == {"pred_0.5x", "pred_1.0x", "pred_2.0x"}
    assert out["pred_2.0x"].shape[-2:] == (128, 128)
    assert "aux" not in out and not any(k.startswith("aux_") for k in out)  # aux only on request in eval
    with torch.no_grad():
        default = model(images(b=1, h=64, w=64), with_aux=True)
    assert {k for k in default if k.startswith("pred_")} == {"pred_0.5x", "pred_1.0x", "pred_2.0x"}
    assert default["aux"].shape == (1, NUM_CLASSES, 64, 64) and default["aux_2.0x"].shape[-2:] == (128, 128)


def test_scale_keys_are_formatted_as_floats():
    assert scale_key("pred", 1) == "pred_1.0x"
    assert scale_key("attn", 0.25) == "attn_0.25x"


def test_rescale_floors_like_the_published_code():
    x = torch.zeros(1, 3, 130, 99)
    assert rescale(x, 0.25).shape[-2:] == (32, 24)
    assert rescale(x, 2.0).shape[-2:] == (260, 198)
    assert rescale(x, 1.0) is x


@pytest.mark.parametrize("mscale", MODES)
def test_every_parameter_gets_a_gradient_in_training(mscale):
    model = tiny_model(mscale).train()
    target = torch.randint(0, NUM_CLASSES, (2, 64, 96), generator=torch.Generator().manual_seed(2))
    target[:, :8] = 255
    loss, parts = build_loss(LossConfig(main="ce"), NUM_CLASSES)(model(images(h=64, w=96)), target)
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert torch.isfinite(loss) and float(parts["total"]) == pytest.approx(loss.item())


def test_modes_without_attention_have_no_attention_head():
    assert tiny_model("avgpool").scale_attn is None
    assert tiny_model("single").scale_attn is None
    assert tiny_model("explicit").scale_attn is not None


def test_attention_head_without_inner_conv():
    model = tiny_model(attn_inner_3x3=False)
    assert not hasattr(model.scale_attn, "conv1") and hasattr(model.scale_attn, "conv2")


@pytest.mark.parametrize("width", ["w18", "w18_small", "tiny"])
def test_hrnet_widths_concatenate_all_branches_at_stride_4(width):
    spec = HRNET_SPECS[width]
    trunk = HRNetV2(spec=spec).eval()
    with torch.no_grad():
        feats = trunk(torch.randn(1, 3, 64, 96))
    assert feats.shape == (1, sum(spec.stages[-1].channels), 16, 24)
    assert len(trunk.stage4) == spec.stages[-1].num_modules


# ---------------------------------------------------------------------------------------------------------
# fusion formulas, recomputed here from the returned per-scale tensors


def test_hierarchical_inference_three_scales_matches_chain_formula():
    model = tiny_model().eval()
    with torch.no_grad():
        out = model(images(b=1), scales=(0.5, 1.0, 2.0), with_aux=True)
    p05, p1, p2 = out["pred_0.5x"], out["pred_1.0x"], out["pred_2.0x"]
    a05, a1 = out["attn_0.5x"], out["attn_1.0x"]
    assert "attn_2.0x" not in out  # the largest scale's attention is never used
    inner = a1 * p1 + (1 - a1) * up(p2, p1)
    expected = up(a05 * p05, p1) + (1 - up(a05, p1)) * inner
    torch.testing.assert_close(out["pred"], expected, rtol=1e-5, atol=1e-5)
    a05_aux = up(a05 * out["aux_0.5x"], p1)
    expected_aux = a05_aux + (1 - up(a05, p1)) * (a1 * out["aux_1.0x"] + (1 - a1) * up(out["aux_2.0x"], p1))
    torch.testing.assert_close(out["aux"], expected_aux, rtol=1e-5, atol=1e-5)


def test_hierarchical_inference_four_scales_matches_chain_formula():
    model = tiny_model().eval()
    with torch.no_grad():
        out = model(images(b=1, h=64, w=64), scales=(0.25, 0.5, 1.0, 2.0))
    p = {s: out[scale_key("pred", s)] for s in (0.25, 0.5, 1.0, 2.0)}
    a = {s: out[scale_key("attn", s)] for s in (0.25, 0.5, 1.0)}
    ref = p[1.0]
    fused = a[1.0] * p[1.0] + (1 - a[1.0]) * up(p[2.0], ref)
    fused = up(a[0.5] * p[0.5], ref) + (1 - up(a[0.5], ref)) * fused
    fused = up(a[0.25] * p[0.25], ref) + (1 - up(a[0.25], ref)) * fused
    torch.testing.assert_close(out["pred"], fused, rtol=1e-5, atol=1e-5)


def test_hierarchical_training_pair_matches_joint_formula():
    model = tiny_model().train()
    out = model(images(), scales=(0.25, 1.0, 2.0))  # ignored in training: the train pair is used
    assert {k for k in out if k.startswith("pred_")} == {"pred_0.5x", "pred_1.0x"}
    p_lo, p_hi, a_lo = out["pred_0.5x"], out["pred_1.0x"], out["attn_0.5x"]
    joint = up(a_lo * p_lo, p_hi) + (1 - up(a_lo, p_hi)) * p_hi
    torch.testing.assert_close(out["pred"], joint, rtol=1e-5, atol=1e-5)
    joint_aux = up(a_lo * out["aux_0.5x"], p_hi) + (1 - up(a_lo, p_hi)) * out["aux_1.0x"]
    torch.testing.assert_close(out["aux"], joint_aux, rtol=1e-5, atol=1e-5)


class ConstantScore(nn.Module):
    """Stands in for the attention head: the same raw score everywhere."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.full_like(feats[:, :1], self.value)


@pytest.mark.parametrize(("score", "winner"), [(50.0, "lo"), (-50.0, "hi")])
def test_model_attention_forced_to_one_or_zero_selects_one_scale(score, winner):
    model = tiny_model().eval()
    model.scale_attn = ConstantScore(score)  # sigmoid(50) == 1, sigmoid(-50) ~ 2e-22
    with torch.no_grad():
        out = model(images(b=1), scales=(0.5, 1.0))
    expected = up(out["pred_0.5x"], out["pred"]) if winner == "lo" else out["pred_1.0x"]
    torch.testing.assert_close(out["pred"], expected, rtol=1e-5, atol=1e-5)


def test_fusion_function_attention_one_and_zero():
    g = torch.Generator().manual_seed(3)
    preds = {
        0.5: torch.randn(1, 4, 8, 8, generator=g),
        1.0: torch.randn(1, 4, 16, 16, generator=g),
        2.0: torch.randn(1, 4, 32, 32, generator=g),
    }
    ones = {s: torch.ones(1, 1, *p.shape[-2:]) for s, p in preds.items()}
    zeros = {s: torch.zeros(1, 1, *p.shape[-2:]) for s, p in preds.items()}
    torch.testing.assert_close(hierarchical_fuse(preds, ones), up(preds[0.5], preds[1.0]))
    torch.testing.assert_close(hierarchical_fuse(preds, zeros), up(preds[2.0], preds[1.0]))
    # attention 1 at 1.0 and 0 at 0.5: the 1.0 prediction wins
    mixed = {0.5: zeros[0.5], 1.0: ones[1.0]}
    torch.testing.assert_close(hierarchical_fuse(preds, mixed), preds[1.0])


def test_explicit_fusion_is_a_softmax_over_scales():
    model = tiny_model("explicit").eval()
    with torch.no_grad():
        out = model(images(b=1), scales=(0.5, 1.0, 2.0))
    weights = [out[scale_key("attn", s)] for s in (0.5, 1.0, 2.0)]
    torch.testing.assert_close(sum(weights), torch.ones_like(weights[0]))
    assert all(w.min() >= 0 for w in weights)
    preds = [up(out[scale_key("pred", s)], out["pred"]) for s in (0.5, 1.0, 2.0)]
    torch.testing.assert_close(
        out["pred"], sum(w * p for w, p in zip(weights, preds, strict=True)), rtol=1e-5, atol=1e-5
    )


def test_explicit_fuse_equal_scores_is_the_average():
    g = torch.Generator().manual_seed(4)
    preds = [torch.randn(2, 3, 8, 8, generator=g) for _ in range(3)]
    fused, weights = explicit_fuse(preds, [torch.zeros(2, 1, 8, 8)] * 3)
    torch.testing.assert_close(fused, (preds[0] + preds[1] + preds[2]) / 3)
    torch.testing.assert_close(weights, torch.full((2, 3, 8, 8), 1 / 3))


@pytest.mark.parametrize("mscale", ["avgpool", "single"])
def test_average_modes_mean_the_upsampled_scales(mscale):
    model = tiny_model(mscale).eval()
    with torch.no_grad():
        out = model(images(b=1), scales=(0.5, 1.0))
    expected = (up(out["pred_0.5x"], out["pred"]) + out["pred_1.0x"]) / 2
    torch.testing.assert_close(out["pred"], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(average_fuse([out["pred_1.0x"]], (64, 96)), out["pred_1.0x"])


def test_single_mode_trains_on_its_one_scale():
    model = tiny_model("single", train_scales=(1.0,)).train()
    out = model(images())
    assert {k for k in out if k.startswith("pred_")} == {"pred_1.0x"}
    torch.testing.assert_close(out["pred"], out["pred_1.0x"])


# ---------------------------------------------------------------------------------------------------------
# DeepLabV3+ (ResNet-50) under the same wrapper


@pytest.mark.parametrize("mscale", MODES)
def test_deeplab_forward_shapes_and_gradients(mscale):
    model = tiny_model(mscale, arch="deeplabv3plus").train()
    out = model(images(h=48, w=48))
    assert out["pred"].shape == (2, NUM_CLASSES, 48, 48)
    assert "aux" not in out  # DeepLabV3+ has no auxiliary head
    for s in model.train_scales:
        assert out[scale_key("pred", s)].shape == (2, NUM_CLASSES, int(48 * s), int(48 * s))
    target = torch.randint(0, NUM_CLASSES, (2, 48, 48), generator=torch.Generator().manual_seed(2))
    loss, _ = build_loss(LossConfig(), NUM_CLASSES)(out, target)
    loss.backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    with torch.no_grad():
        out = model.eval()(images(b=1, h=48, w=48), scales=(0.5, 1.0, 2.0))
    assert out["pred"].shape == (1, NUM_CLASSES, 48, 48) and out["pred_2.0x"].shape[-2:] == (96, 96)


def test_deeplab_trains_on_a_batch_of_one():
    model = tiny_model("single", arch="deeplabv3plus").train()
    assert model(images(b=1, h=48, w=48))["pred"].shape == (1, NUM_CLASSES, 48, 48)
