"""Multi-scale prediction (flip, tiling) and thresholding on the device, with a stand-in model."""

import numpy as np
import pytest
import torch
from torch import nn

from autolabel.generate.teacher import threshold_batch
from autolabel.labelset.confidence import make_ladder, quantise
from autolabel.models.predict import _starts, normalise, predict_logits


class PointwiseTeacher(nn.Module):
    """Follows the model contract with a 1x1 conv per pixel, so any tiling must reproduce it exactly."""

    def __init__(self, num_classes: int = 4, mirror_asymmetric: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.cls = nn.Conv2d(3, num_classes, 1)
        self.attn = nn.Conv2d(3, 1, 1)
        self.mirror_asymmetric = mirror_asymmetric

    def forward(self, images, scales=None):
        out = {}
        for s in scales or [1.0]:
            x = images if s == 1.0 else nn.functional.interpolate(images, scale_factor=s, mode="bilinear")
            out[f"pred_{s}x"] = self.cls(x)
            out[f"attn_{s}x"] = torch.sigmoid(self.attn(x))
        pred = self.cls(images)
        if self.mirror_asymmetric:  # a model whose output depends on the column: flip averaging shows
            pred = pred + torch.linspace(0, 1, images.shape[-1])
        out["pred"] = pred
        return out


def test_flip_averages_logits_of_flipped_input():
    torch.manual_seed(0)
    model = PointwiseTeacher(mirror_asymmetric=True).eval()
    x = torch.randn(2, 3, 8, 10)
    plain = predict_logits(model, x, [1.0])["pred"]
    flipped = predict_logits(model, x, [1.0], flip=True)["pred"]
    # (f(x) + flip(f(flip(x)))) / 2: the column ramp averages to a constant 0.5
    expected = model.cls(x) + 0.5
    assert torch.allclose(flipped, expected, atol=1e-6)
    assert not torch.allclose(plain, flipped)


def test_predict_puts_model_in_eval_and_needs_no_grad():
    model = PointwiseTeacher().train()
    out = predict_logits(model, torch.randn(1, 3, 4, 4), [1.0])
    assert not model.training
    assert not out["pred"].requires_grad


@pytest.mark.parametrize("size,window", [((37, 50), 16), ((16, 40), 16), ((9, 9), 4)])
def test_tiled_equals_whole_for_a_pointwise_model(size, window):
    torch.manual_seed(1)
    model = PointwiseTeacher().eval()
    x = torch.randn(1, 3, *size)
    whole = predict_logits(model, x, [1.0])
    tiled = predict_logits(model, x, [1.0], tile_size=window, tile_overlap=0.3)
    for key in ("pred", "pred_1.0x", "attn_1.0x"):
        assert tiled[key].shape == whole[key].shape
        assert torch.allclose(tiled[key], whole[key], atol=1e-5), key


def test_tile_size_counts_the_largest_scale():
    # 20 px at 2x is 40 px: a 32 px tile budget forces windows of 16 input pixels
    calls = []

    class Spy(PointwiseTeacher):
        def forward(self, images, scales=None):
            calls.append(tuple(images.shape[-2:]))
            return super().forward(images, [1.0])

    predict_logits(Spy().eval(), torch.randn(1, 3, 20, 20), [1.0, 2.0], tile_size=32)
    assert calls and all(h <= 16 and w <= 16 for h, w in calls)
    calls.clear()
    predict_logits(Spy().eval(), torch.randn(1, 3, 20, 20), [1.0, 2.0], tile_size=40)
    assert calls == [(20, 20)]


@pytest.mark.parametrize("length,window,overlap", [(10, 4, 0.25), (100, 33, 0.5), (5, 5, 0.0), (17, 16, 0.9)])
def test_window_starts_cover_everything(length, window, overlap):
    starts = _starts(length, window, overlap)
    covered = np.zeros(length, bool)
    for s in starts:
        assert 0 <= s <= length - window
        covered[s : s + window] = True
    assert covered.all()


def test_threshold_exactly_at_threshold_is_ignored():
    # two equal logits give probability exactly 0.5 (a float32-representable value)
    logits = torch.zeros(1, 2, 1, 3)
    logits[0, 0, 0, 1] = 0.01  # slightly above 0.5
    logits[0, 1, 0, 2] = 5.0  # class 1, confident
    out = threshold_batch(logits, 0.5, make_ladder(0.5))
    labels, codes = out.labels, out.codes
    assert labels.dtype == torch.uint8 and codes.dtype == torch.uint8
    assert labels.tolist() == [[[255, 0, 1]]]
    assert codes[0, 0, 0] == 0 and codes[0, 0, 1] == 1 and codes[0, 0, 2] == 10


def test_threshold_matches_a_float64_reference():
    torch.manual_seed(2)
    logits = torch.randn(3, 5, 16, 16) * 3
    ladder = make_ladder(0.4, 0.1, 0.9)
    out = threshold_batch(logits, 0.4, ladder)
    probs = torch.softmax(logits.double(), 1)
    pmax, arg = probs.max(1)
    expected = torch.where(pmax > 0.4, arg, 255)
    # float32 vs float64 rounding may disagree only within a hair of the threshold
    close = (pmax - 0.4).abs() < 1e-6
    assert ((out.labels.long() == expected) | close).all()
    assert torch.allclose(out.mean_confidence.double(), pmax.mean((1, 2)), atol=1e-6)
    ref_codes = sum((pmax > t).long() for t in ladder)
    assert ((out.codes.long() == ref_codes) | close).all()


def test_codes_agree_with_labels_and_with_quantise():
    torch.manual_seed(3)
    logits = torch.randn(2, 4, 8, 8) * 2
    ladder = make_ladder(0.5)
    out = threshold_batch(logits, 0.5, ladder)
    assert torch.equal(out.labels == 255, out.codes == 0)
    assert torch.equal(out.codes, quantise(torch.softmax(logits, 1).max(1).values, ladder))


def test_normalise_is_uint8_hwc_to_chw_float():
    images = torch.tensor([[[[255, 0, 51]]]], dtype=torch.uint8)  # (1, 1, 1, 3)
    x = normalise(images, (0.5, 0.0, 0.2), (0.5, 1.0, 0.1))
    assert x.shape == (1, 3, 1, 1)
    assert torch.allclose(x.flatten(), torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)


@pytest.mark.parametrize("tile_size", [0, 16])
def test_keys_limits_the_outputs_and_leaves_them_unchanged(tile_size):
    torch.manual_seed(2)
    model = PointwiseTeacher().eval()
    x = torch.randn(1, 3, 24, 40)
    full = predict_logits(model, x, [0.5, 1.0], tile_size=tile_size)
    only = predict_logits(model, x, [0.5, 1.0], tile_size=tile_size, keys={"pred", "attn_0.5x"})
    assert set(only) == {"pred", "attn_0.5x"}
    for key, value in only.items():
        assert torch.allclose(value, full[key], atol=1e-6), key
