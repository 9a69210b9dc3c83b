"""Losses: RMI against a slow float64 reference written from the formula, gradients, ignore handling,
autocast, pixel weights and the composite multi-scale loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from autolabel.config import LossConfig
from autolabel.errors import ConfigError
from autolabel.train.losses import (
    CrossEntropyLoss,
    MultiScaleLoss,
    RMILoss,
    SigmoidBCELoss,
    build_loss,
)


def random_batch(b=2, c=4, h=24, w=32, seed=0, ignore_rows=5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, h, w, generator=g) * 2
    labels = torch.randint(0, c, (b, h, w), generator=g)
    labels[:, :ignore_rows] = 255
    labels[:, -1, :4] = c + 3  # a label value >= C that is not 255 is ignored as well
    return logits, labels


# ---------------------------------------------------------------------------------------------------------
# slow reference, straight from docs/method.md, in float64 with explicit loops


def reference_parts(logits, labels, num_classes, radius=3):
    """(BCE part, per-(image, class) 0.5*logdet terms as a list of lists)."""
    x = logits.double()
    valid = labels < num_classes
    one_hot = torch.stack([(labels == c) & valid for c in range(num_classes)], dim=1).double()
    log_p, log_not_p = torch.log(torch.sigmoid(x)), torch.log(1 - torch.sigmoid(x))
    bce_pixels = -(one_hot * log_p + (1 - one_hot) * log_not_p).sum(1)
    bce = (bce_pixels * valid).sum() / (valid.sum() + 1)
    probs = torch.sigmoid(x) * valid.unsqueeze(1) + 1e-6
    terms = []
    for b in range(x.shape[0]):
        row = []
        for c in range(num_classes):
            lab, prob = pool(one_hot[b, c]), pool(probs[b, c])
            lab_vecs, prob_vecs = windows(lab, radius), windows(prob, radius)
            lab_vecs = lab_vecs - lab_vecs.mean(1, keepdim=True)
            prob_vecs = prob_vecs - prob_vecs.mean(1, keepdim=True)
            eye = torch.eye(radius * radius, dtype=torch.float64)
            cov_l = lab_vecs @ lab_vecs.T
            cov_p = prob_vecs @ prob_vecs.T + 5e-4 * eye
            cov_lp = lab_vecs @ prob_vecs.T
            v = cov_l - cov_lp @ torch.inverse(cov_p) @ cov_lp.T
            row.append(0.5 * torch.logdet(v + 5e-4 * eye))
        terms.append(row)
    return bce, terms


def pool(img, k=4, stride=4, pad=2):
    """Average pooling with zero padding counted in the denominator (PyTorch's default)."""
    h, w = img.shape
    out_h, out_w = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    out = torch.zeros(out_h, out_w, dtype=img.dtype)
    for i in range(out_h):
        for j in range(out_w):
            y0, x0 = i * stride - pad, j * stride - pad
            window = img[max(y0, 0) : y0 + k, max(x0, 0) : x0 + k]
            out[i, j] = window.sum() / (k * k)
    return out


def windows(img, radius):
    """(radius², N): every radius x radius window fully inside the image, as a column."""
    h, w = img.shape
    cols = [
        img[i : i + radius, j : j + radius].reshape(-1) for i in range(h - radius + 1) for j in range(w - radius + 1)
    ]
    return torch.stack(cols, dim=1)


def reference_rmi_loss(logits, labels, num_classes):
    bce, terms = reference_parts(logits, labels, num_classes)
    rmi = sum(sum(terms[b][c] for b in range(len(terms))) / len(terms) for c in range(num_classes)) / 9
    return 0.5 * bce + 0.5 * rmi


@pytest.mark.parametrize("seed", [0, 1])
def test_rmi_matches_slow_reference(seed):
    logits, labels = random_batch(seed=seed)
    got = RMILoss(num_classes=4)(logits, labels)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(reference_rmi_loss(logits, labels, 4).item(), rel=1e-5, abs=1e-6)


def test_bce_part_matches_reference():
    logits, labels = random_batch(seed=3)
    bce, _ = reference_parts(logits, labels, 4)
    assert SigmoidBCELoss(num_classes=4)(logits, labels).item() == pytest.approx(bce.item(), rel=1e-5)


def test_rmi_gradcheck_on_a_tiny_input():
    logits, labels = random_batch(b=1, c=2, h=16, w=16, seed=4, ignore_rows=3)
    logits = logits.double().requires_grad_(True)
    loss = RMILoss(num_classes=2)
    assert torch.autograd.gradcheck(lambda x: loss(x, labels), (logits,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_all_ignore_batch_gives_a_finite_zero_and_zero_gradient():
    logits = torch.randn(2, 3, 16, 16, requires_grad=True)
    labels = torch.full((2, 16, 16), 255)
    for loss_fn in (RMILoss(num_classes=3), SigmoidBCELoss(num_classes=3), CrossEntropyLoss(num_classes=3)):
        loss = loss_fn(logits, labels)
        loss.backward()
        assert torch.isfinite(loss) and loss.item() == 0.0
        assert torch.equal(logits.grad, torch.zeros_like(logits))
        logits.grad = None


def test_one_image_without_valid_pixels_keeps_the_batch_finite():
    logits, labels = random_batch(seed=5)
    labels[1] = 255
    logits.requires_grad_(True)
    loss = RMILoss(num_classes=4)(logits, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert logits.grad[1].abs().sum() == 0  # nothing to learn from the unlabelled image


def test_rmi_is_computed_in_float32_and_64_under_autocast():
    logits, labels = random_batch(seed=6)
    expected = RMILoss(num_classes=4)(logits.bfloat16().float(), labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = RMILoss(num_classes=4)(logits.bfloat16(), labels)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_rmi_pixel_weight_scales_each_images_share():
    logits, labels = random_batch(seed=7)
    loss = RMILoss(num_classes=4)
    assert loss(logits, labels, torch.ones(2, 24, 32)).item() == pytest.approx(loss(logits, labels).item())
    half = loss(logits, labels, torch.full((2, 24, 32), 0.5)).item()
    assert half == pytest.approx(0.5 * loss(logits, labels).item(), rel=1e-5)
    # weight 0 on image 1: only image 0 counts (normalised by the batch's pixels and images)
    weight = torch.stack([torch.ones(24, 32), torch.zeros(24, 32)])
    bce_all, terms = reference_parts(logits, labels, 4)
    bce0, _ = reference_parts(logits[:1], labels[:1], 4)
    n0, n_all = (labels[0] < 4).sum().item(), (labels < 4).sum().item()
    bce_w = bce0 * (n0 + 1) / (n_all + 1)
    rmi_w = sum(terms[0][c] / 2 for c in range(4)) / 9
    assert loss(logits, labels, weight).item() == pytest.approx((0.5 * bce_w + 0.5 * rmi_w).item(), rel=1e-5)


# ---------------------------------------------------------------------------------------------------------
# cross-entropy


def test_cross_entropy_ignores_255_and_other_out_of_range_labels():
    logits, labels = random_batch(seed=8)
    expected_labels = torch.where(labels < 4, labels, 255)
    expected = F.cross_entropy(logits, expected_labels, ignore_index=255)
    assert CrossEntropyLoss(num_classes=4)(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_cross_entropy_pixel_weight_is_not_renormalised():
    logits, labels = random_batch(seed=9)
    ce = CrossEntropyLoss(num_classes=4)
    doubled = ce(logits, labels, torch.full((2, 24, 32), 2.0)).item()
    assert doubled == pytest.approx(2 * ce(logits, labels).item())
    weight = torch.zeros(2, 24, 32)
    weight[0] = 1
    clean = torch.where(labels < 4, labels, 255)
    per_pixel = F.cross_entropy(logits, clean, ignore_index=255, reduction="none")
    expected = per_pixel[0].sum() / (labels < 4).sum()
    assert ce(logits, labels, weight).item() == pytest.approx(expected.item(), rel=1e-6)


def test_cross_entropy_class_weights_scale_each_pixel_by_its_true_class():
    logits, labels = random_batch(seed=13)
    weights = [1.0, 3.0, 0.5, 2.0]
    clean = torch.where(labels < 4, labels, 255)
    per_pixel = F.cross_entropy(logits, clean, ignore_index=255, reduction="none")  # 0 at ignored pixels
    by_class = torch.tensor(weights)[torch.where(labels < 4, labels, 0)]
    expected = (per_pixel * by_class).sum() / (labels < 4).sum()
    weighted = CrossEntropyLoss(num_classes=4, class_weights=weights)(logits, labels).item()
    assert weighted == pytest.approx(expected.item(), rel=1e-6)
    assert weighted != pytest.approx(CrossEntropyLoss(num_classes=4)(logits, labels).item(), rel=1e-3)
    built = build_loss(LossConfig(main="ce", class_weights=tuple(weights)), num_classes=4).main
    assert built(logits, labels).item() == pytest.approx(weighted)


def test_class_weights_need_one_per_class_and_cross_entropy():
    with pytest.raises(ConfigError, match="one per class"):
        CrossEntropyLoss(num_classes=4, class_weights=[1.0, 2.0])
    with pytest.raises(ConfigError, match="loss.class_weights"):
        LossConfig(main="rmi", class_weights=(1.0,) * 4)


# ---------------------------------------------------------------------------------------------------------
# composite


def mscale_outputs(seed=10):
    g = torch.Generator().manual_seed(seed)
    return {
        "pred": torch.randn(2, 4, 24, 32, generator=g),
        "aux": torch.randn(2, 4, 24, 32, generator=g),
        "pred_0.5x": torch.randn(2, 4, 12, 16, generator=g),
        "pred_1.0x": torch.randn(2, 4, 24, 32, generator=g),
        "attn_0.5x": torch.rand(2, 1, 12, 16, generator=g),
    }


def test_composite_loss_is_main_plus_weighted_aux_and_per_scale_terms():
    out = mscale_outputs()
    _, labels = random_batch(seed=11)
    total, parts = build_loss(LossConfig(), num_classes=4)(out, labels)
    rmi, bce = RMILoss(num_classes=4), SigmoidBCELoss(num_classes=4)
    up = F.interpolate(out["pred_0.5x"], size=(24, 32), mode="bilinear", align_corners=False)
    expected = (
        rmi(out["pred"], labels)
        + 0.4 * bce(out["aux"], labels)
        + 0.05 * bce(up, labels)
        + 0.05 * bce(out["pred_1.0x"], labels)
    )
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(parts) == {"main", "aux", "pred_0.5x", "pred_1.0x", "total"}
    assert float(parts["total"]) == pytest.approx(total.item())
    assert float(parts["main"]) == pytest.approx(rmi(out["pred"], labels).item(), rel=1e-6)


def test_composite_weights_come_from_the_config_and_missing_terms_are_skipped():
    out = mscale_outputs()
    _, labels = random_batch(seed=12)
    ce = CrossEntropyLoss(num_classes=4)
    loss_fn = build_loss(LossConfig(main="ce", aux_weight=0.0, scale_weight=0.5), num_classes=4)
    total, parts = loss_fn(out, labels)
    up = F.interpolate(out["pred_0.5x"], size=(24, 32), mode="bilinear", align_corners=False)
    expected = ce(out["pred"], labels) + 0.5 * (ce(up, labels) + ce(out["pred_1.0x"], labels))
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert "aux" not in parts
    single = {"pred": out["pred"], "pred_1.0x": out["pred"]}  # one scale: no per-scale supervision
    total, parts = loss_fn(single, labels)
    assert set(parts) == {"main", "total"} and total.item() == pytest.approx(ce(out["pred"], labels).item())


def test_composite_backpropagates_with_pixel_weights():
    out = {k: v.requires_grad_(True) for k, v in mscale_outputs().items()}
    _, labels = random_batch(seed=13)
    weight = torch.rand(2, 24, 32)
    loss_fn = MultiScaleLoss(main=RMILoss(num_classes=4), side=SigmoidBCELoss(num_classes=4))
    total, _ = loss_fn(out, labels, weight)
    total.backward()
    for key in ("pred", "aux", "pred_0.5x", "pred_1.0x"):
        assert torch.isfinite(out[key].grad).all() and out[key].grad.abs().sum() > 0
    assert math.isfinite(total.item())
