"""ConfusionMatrix / SegMetrics: hand-computed cases and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from autolabel.metrics import ConfusionMatrix

IGNORE = 255


def numpy_iou(pred: np.ndarray, target: np.ndarray, num_classes: int) -> tuple[np.ndarray, float]:
    """Independent reference: IoU per class over non-ignored target pixels; a prediction outside the classes
    is wrong for its pixel; classes with an empty union are NaN and left out of the mean."""
    valid = target < num_classes
    p, t = pred[valid].astype(np.int64), target[valid].astype(np.int64)
    ious = np.full(num_classes, np.nan)
    for c in range(num_classes):
        inter = np.sum((p == c) & (t == c))
        union = np.sum((p == c) | (t == c))
        if union:
            ious[c] = inter / union
    return ious, float(np.nanmean(ious)) if np.isfinite(ious).any() else float("nan")


def test_hand_computed_example():
    # target: 0 0 1 1 / 2 2 255 255 ; pred: 0 1 1 1 / 2 0 2 2
    target = torch.tensor([[0, 0, 1, 1], [2, 2, IGNORE, IGNORE]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 2]])
    m = ConfusionMatrix(3)
    m.update(pred, target)
    assert m.matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    out = m.compute(["a", "b", "c"])
    # class 0: tp 1, fn 1, fp 1 -> 1/3; class 1: tp 2, fp 1 -> 2/3; class 2: tp 1, fn 1 -> 1/2
    assert out.iou == pytest.approx((1 / 3, 2 / 3, 1 / 2))
    assert out.miou == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert out.pixel_accuracy == pytest.approx(4 / 6)
    assert out.pixels == 6


def test_absent_class_is_nan_and_excluded_from_the_mean():
    m = ConfusionMatrix(4)
    m.update(torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1]))
    out = m.compute()
    assert math.isnan(out.iou[2]) and math.isnan(out.iou[3])
    assert out.miou == 1.0
    assert out.to_dict()["iou"]["2"] is None


def test_prediction_outside_the_classes_is_a_miss():
    m = ConfusionMatrix(2)
    m.update(torch.tensor([0, IGNORE, 1, 1]), torch.tensor([0, 0, 1, 1]))
    out = m.compute()
    assert out.iou[0] == pytest.approx(0.5)  # one of its two pixels predicted as "ignore"
    assert out.iou[1] == 1.0
    assert out.pixel_accuracy == pytest.approx(3 / 4)


def target_pred(c: int, shape: tuple[int, int] = (5, 7)):
    """(target with ignore pixels, prediction) for ``c`` classes."""
    return st.tuples(
        arrays(np.uint8, shape, elements=st.sampled_from(list(range(c)) + [IGNORE])),
        arrays(np.uint8, shape, elements=st.integers(0, c - 1)),
    )


label_maps = st.integers(1, 6).flatmap(lambda c: target_pred(c).map(lambda tp: (c, *tp)))


@settings(max_examples=150, deadline=None)
@given(label_maps)
def test_matches_independent_numpy_computation(case):
    c, target, pred = case
    m = ConfusionMatrix(c)
    m.update(torch.from_numpy(pred), torch.from_numpy(target))
    out = m.compute()
    ref_iou, ref_miou = numpy_iou(pred, target, c)
    np.testing.assert_allclose(np.array(out.iou), ref_iou, equal_nan=True)
    if math.isnan(ref_miou):
        assert math.isnan(out.miou)
    else:
        assert out.miou == pytest.approx(ref_miou)


@settings(max_examples=100, deadline=None)
@given(label_maps)
def test_perfect_prediction_scores_one(case):
    c, target, _ = case
    m = ConfusionMatrix(c)
    m.update(torch.from_numpy(np.where(target == IGNORE, 0, target)), torch.from_numpy(target))
    out = m.compute()
    if (target != IGNORE).any():
        assert out.miou == 1.0 and out.pixel_accuracy == 1.0
    else:
        assert out.pixels == 0 and math.isnan(out.miou)


@settings(max_examples=100, deadline=None)
@given(label_maps, st.integers(0, 2**32 - 1))
def test_ignored_pixels_never_count(case, seed):
    c, target, pred = case
    other = pred.copy()
    ignored = target == IGNORE
    other[ignored] = np.random.default_rng(seed).integers(0, c, size=int(ignored.sum()))
    a, b = ConfusionMatrix(c), ConfusionMatrix(c)
    a.update(torch.from_numpy(pred), torch.from_numpy(target))
    b.update(torch.from_numpy(other), torch.from_numpy(target))
    assert torch.equal(a.matrix, b.matrix) and torch.equal(a.missed, b.missed)
    assert int(a.matrix.sum() + a.missed.sum()) == int((~ignored).sum())


@settings(max_examples=100, deadline=None)
@given(st.lists(target_pred(4), min_size=1, max_size=5))
def test_accumulating_batches_equals_one_big_batch(batches):
    acc, big = ConfusionMatrix(4), ConfusionMatrix(4)
    for target, pred in batches:
        acc.update(torch.from_numpy(pred), torch.from_numpy(target))
    big.update(
        torch.from_numpy(np.concatenate([p for _, p in batches])),
        torch.from_numpy(np.concatenate([t for t, _ in batches])),
    )
    assert torch.equal(acc.matrix, big.matrix)
    assert acc.compute().to_dict() == big.compute().to_dict()


def test_merge_adds_matrices():
    a, b, both = ConfusionMatrix(3), ConfusionMatrix(3), ConfusionMatrix(3)
    x1, y1 = torch.tensor([0, 1, 2]), torch.tensor([0, 2, 2])
    x2, y2 = torch.tensor([1, 1, 0]), torch.tensor([1, 0, IGNORE])
    a.update(x1, y1)
    b.update(x2, y2)
    both.update(torch.cat([x1, x2]), torch.cat([y1, y2]))
    a.merge(b)
    assert torch.equal(a.matrix, both.matrix)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        ConfusionMatrix(2).update(torch.zeros(3, dtype=torch.long), torch.zeros(4, dtype=torch.long))


def test_table_lists_every_class_and_the_mean():
    m = ConfusionMatrix(2)
    m.update(torch.tensor([0, 1]), torch.tensor([0, 0]))
    table = m.compute(["road", "sky"]).table()
    assert "road" in table and "sky" in table and "mIoU" in table
    assert " 50.0" in table  # road: 1 / (1 + 1)
