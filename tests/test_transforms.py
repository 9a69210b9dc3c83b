"""Joint image/label transforms: alignment, padding, determinism, crop centres."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autolabel.train.transforms import TrainTransform, color_jitter, crop_pair, crop_window, resize_pair

# one distinct colour per class, far apart so a colour identifies its class even after bilinear blending
PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255]], dtype=np.uint8)


def blocky_pair(rng: np.random.Generator, height: int = 96, width: int = 160, block: int = 16):
    """A label of constant blocks and an image whose pixels *are* the label (its class colour)."""
    blocks = rng.integers(0, len(PALETTE), size=(height // block, width // block))
    label = np.kron(blocks, np.ones((block, block), dtype=np.int64)).astype(np.uint8)
    return PALETTE[label], label


def decode(image: np.ndarray) -> np.ndarray:
    """Class of each pixel from its colour (nearest palette entry)."""
    dist = ((image[:, :, None, :].astype(np.int32) - PALETTE[None, None].astype(np.int32)) ** 2).sum(-1)
    return dist.argmin(-1).astype(np.uint8)


def agreement(image: np.ndarray, label: np.ndarray) -> float:
    labelled = label != 255
    return float((decode(image)[labelled] == label[labelled]).mean())


@pytest.mark.parametrize("seed", range(6))
def test_transform_keeps_image_and_label_aligned(seed):
    rng = np.random.default_rng(seed)
    image, label = blocky_pair(rng)
    transform = TrainTransform(crop_size=(64, 96), scale_range=(0.5, 2.0), flip=True, jitter=0.0)
    out_image, out_label = transform(image, label, np.random.default_rng(100 + seed))
    assert out_image.shape == (64, 96, 3) and out_label.shape == (64, 96)
    assert out_image.dtype == np.uint8 and out_label.dtype == np.uint8
    # block borders blend under bilinear resizing; everywhere else the colour must name the label
    assert agreement(out_image, out_label) > 0.93
    # padding: ignore in the label exactly where the image is padded black
    padded = out_label == 255
    assert np.all(out_image[padded] == 0)


def test_alignment_check_detects_a_misaligned_label():
    """The alignment measure used above really fails for a label flipped without its image."""
    rng = np.random.default_rng(3)
    image, label = blocky_pair(rng)
    assert agreement(image, label) == 1.0
    assert agreement(image, label[:, ::-1]) < 0.6


def test_colour_jitter_changes_the_image_but_never_the_label():
    rng = np.random.default_rng(0)
    image, label = blocky_pair(rng)
    plain = TrainTransform(crop_size=(96, 160), scale_range=(1.0, 1.0), flip=False, jitter=0.0)
    jittered = TrainTransform(crop_size=(96, 160), scale_range=(1.0, 1.0), flip=False, jitter=0.5)
    img_a, lab_a = plain(image, label, np.random.default_rng(7))
    img_b, lab_b = jittered(image, label, np.random.default_rng(7))
    np.testing.assert_array_equal(lab_a, label)
    np.testing.assert_array_equal(lab_b, label)
    np.testing.assert_array_equal(img_a, image)
    assert np.abs(img_b.astype(int) - image.astype(int)).mean() > 1.0


def test_same_generator_seed_same_crop():
    image, label = blocky_pair(np.random.default_rng(1))
    transform = TrainTransform(crop_size=(48, 48))
    a = transform(image, label, np.random.default_rng(5))
    b = transform(image, label, np.random.default_rng(5))
    c = transform(image, label, np.random.default_rng(6))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_crop_larger_than_image_pads_with_ignore():
    image = np.full((10, 20, 3), 200, dtype=np.uint8)
    label = np.zeros((10, 20), dtype=np.uint8)
    transform = TrainTransform(crop_size=(32, 40), scale_range=(1.0, 1.0), flip=False, jitter=0.0)
    out_image, out_label = transform(image, label, np.random.default_rng(0))
    assert (out_label == 0).sum() == 200  # every source pixel is inside the crop
    assert (out_label == 255).sum() == 32 * 40 - 200
    assert np.all(out_image[out_label == 0] == 200)


def test_crop_pair_copies_the_window_and_pads_outside():
    image = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    label = np.arange(30, dtype=np.uint8).reshape(5, 6)
    img, lab = crop_pair(image, label, (-1, 4), (3, 4))
    # rows -1..1, columns 4..7 of the source
    np.testing.assert_array_equal(lab, [[255, 255, 255, 255], [4, 5, 255, 255], [10, 11, 255, 255]])
    np.testing.assert_array_equal(img[1, 0], image[0, 4])
    assert np.all(img[0] == 0)


@settings(max_examples=200, deadline=None)
@given(
    length=st.integers(1, 300),
    window=st.integers(1, 300),
    seed=st.integers(0, 10_000),
    center=st.one_of(st.none(), st.integers(0, 299)),
)
def test_crop_window_contains_the_centre_and_stays_in_bounds(length, window, seed, center):
    if center is not None and center >= length:
        center = length - 1
    rng = np.random.default_rng(seed)
    where = None if center is None else (center, center)
    y0, x0 = crop_window((length, length), (window, window), rng, where)
    for start in (y0, x0):
        if window <= length:
            assert 0 <= start <= length - window  # never pads when the image is big enough
        else:
            assert length - window <= start <= 0  # the whole image is inside the crop
        if center is not None:
            assert start <= center < start + window


def test_resize_pair_keeps_label_values_and_scales_size():
    rng = np.random.default_rng(0)
    image, label = blocky_pair(rng, height=32, width=48, block=8)
    img, lab = resize_pair(image, label, 1.5)
    assert lab.shape == (48, 72) and img.shape == (48, 72, 3)
    assert set(np.unique(lab)) <= set(np.unique(label))  # nearest: no invented values
    small_img, small_lab = resize_pair(image, label, 0.5)
    assert small_lab.shape == (16, 24)
    assert agreement(small_img, small_lab) > 0.9


def test_color_jitter_zero_is_identity():
    image = np.random.default_rng(0).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    assert color_jitter(image, 0.0, np.random.default_rng(0)) is image


def test_mismatched_sizes_are_rejected():
    transform = TrainTransform(crop_size=(8, 8))
    with pytest.raises(ValueError, match="differ in size"):
        transform(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 11), np.uint8), np.random.default_rng(0))
