"""Image and label I/O: conversions, bad files, lossless atomic PNG writing."""

import os
import struct
import zlib
from io import BytesIO

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from autolabel.classes import CITYSCAPES
from autolabel.data import io
from autolabel.errors import DataError


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def handmade_png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes | None) -> bytes:
    """A PNG written by hand, for headers Pillow will not write (16-bit RGB, absurd sizes)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    body = b"" if rows is None else _png_chunk(b"IDAT", zlib.compress(rows))
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + body + _png_chunk(b"IEND", b"")


def handmade_rgb48_tiff(width: int, height: int) -> bytes:
    """An uncompressed 16-bit-per-channel RGB TIFF (Pillow reads it as 8-bit 'RGB' unless told otherwise)."""
    entries = [
        (256, 3, 1, width),
        (257, 3, 1, height),
        (258, 3, 3, 0),
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (273, 4, 1, 0),
        (277, 3, 1, 3),
        (278, 3, 1, height),
        (279, 4, 1, width * height * 6),
        (284, 3, 1, 1),
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    bits_at, data_at = 8 + ifd_size, 8 + ifd_size + 6
    fixed = {258: bits_at, 273: data_at}
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", tag, kind, count, fixed.get(tag, value))
        if kind == 4 or tag in fixed
        else struct.pack("<HHIHH", tag, kind, count, value, 0)
        for tag, kind, count, value in entries
    )
    pixels = struct.pack("<H", 40000) * (width * height * 3)
    header = b"II*\x00" + struct.pack("<I", 8)
    return header + ifd + struct.pack("<I", 0) + struct.pack("<HHH", 16, 16, 16) + pixels


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------------------
# read_image


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("L", 77, (77, 77, 77)),
        ("RGBA", (10, 20, 30, 0), (10, 20, 30)),  # alpha dropped, colour kept even where transparent
        ("LA", (200, 255), (200, 200, 200)),
        ("CMYK", (0, 0, 0, 0), (255, 255, 255)),
        ("1", 1, (255, 255, 255)),
    ],
)
def test_read_image_converts_to_rgb(tmp_path, mode, value, expected):
    path = tmp_path / ("img.tif" if mode == "CMYK" else "img.png")  # PNG has no CMYK
    Image.new(mode, (5, 3), value).save(path)
    image = io.read_image(path)
    assert image.shape == (3, 5, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image.reshape(-1, 3), np.tile(expected, (15, 1)))


def test_read_image_palette_uses_palette_colours(tmp_path):
    indices = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    image = Image.fromarray(indices).convert("P")
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    image.putdata(indices.ravel().tolist())
    image.save(tmp_path / "p.png")
    rgb = io.read_image(tmp_path / "p.png")
    assert rgb[0, 0].tolist() == [255, 0, 0]
    assert rgb[0, 1].tolist() == [0, 255, 0] and rgb[1, 1].tolist() == [0, 255, 0]
    assert rgb[1, 0].tolist() == [0, 0, 255]


def test_read_image_rgb_roundtrip_png(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(7, 9, 3), dtype=np.uint8)
    io.write_image_png(tmp_path / "x.png", rgb)
    np.testing.assert_array_equal(io.read_image(tmp_path / "x.png"), rgb)


def _bad_file(tmp_path, kind):
    path = tmp_path / f"{kind}.png"
    if kind == "missing":
        return path
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not an image\n")
    elif kind == "truncated":
        rgb = np.random.default_rng(1).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        data = io.encode_image_png(rgb, compress_level=0)
        path.write_bytes(data[: len(data) // 2])
    elif kind == "gray16":
        Image.fromarray(np.full((4, 4), 1000, dtype=np.uint16)).save(path)
    elif kind == "rgb16":  # Pillow would silently read this as 8-bit RGB
        row = b"\x00" + b"\x12\x34" * 3 * 2
        path.write_bytes(handmade_png(2, 2, 16, 2, row * 2))
    elif kind == "rgb48_tiff":
        path = path.with_suffix(".tif")
        path.write_bytes(handmade_rgb48_tiff(3, 2))
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("missing", "not found"),
        ("empty", "empty file"),
        ("text", "not an image"),
        ("truncated", "truncated"),
        ("gray16", "16-bit"),
        ("rgb16", "16-bit"),
        ("rgb48_tiff", "16-bit"),
    ],
)
def test_bad_images_raise_data_error_naming_file(tmp_path, kind, reason):
    path = _bad_file(tmp_path, kind)
    with pytest.raises(DataError) as info:
        io.read_image(path)
    assert str(path) in str(info.value) and reason in str(info.value)


def test_too_large_is_refused_from_the_header(tmp_path):
    # 100000 x 100000 declared, no pixel data at all: decoding would need 30 GB, the header check needs none
    path = tmp_path / "huge.png"
    path.write_bytes(handmade_png(100_000, 100_000, 8, 2, rows=None))
    with pytest.raises(DataError, match="too large") as info:
        io.read_image(path, max_pixels=64_000_000)
    assert str(path) in str(info.value)
    with pytest.raises(DataError, match="too large"):  # Pillow's own bomb limit, also as a DataError
        io.read_image(path)


def test_max_pixels_is_a_limit_not_a_cap(tmp_path):
    Image.new("RGB", (10, 10)).save(tmp_path / "a.png")
    assert io.read_image(tmp_path / "a.png", max_pixels=100).shape == (10, 10, 3)
    with pytest.raises(DataError, match="10x10 = 100 pixels"):
        io.read_image(tmp_path / "a.png", max_pixels=99)


# ---------------------------------------------------------------------------------------------------------
# read_label


def test_read_label_maps_cityscapes_label_ids_to_train_ids(tmp_path):
    label_ids = np.array([[7, 8, 0], [26, 33, 1]], dtype=np.uint8)  # road, sidewalk, unlabeled, car, bicycle
    io.write_label_png(tmp_path / "l.png", label_ids)
    np.testing.assert_array_equal(io.read_label(tmp_path / "l.png"), label_ids)
    train_ids = io.read_label(tmp_path / "l.png", lut=CITYSCAPES.label_to_train_lut())
    np.testing.assert_array_equal(train_ids, [[0, 1, 255], [13, 18, 255]])


def test_read_label_palette_gives_indices(tmp_path):
    indices = np.array([[3, 0], [65, 12]], dtype=np.uint8)
    image = Image.fromarray(indices).convert("P")
    image.putpalette(list(range(256)) * 3)
    image.putdata(indices.ravel().tolist())
    image.save(tmp_path / "p.png")
    np.testing.assert_array_equal(io.read_label(tmp_path / "p.png"), indices)


def test_read_label_rejects_colour_and_16_bit(tmp_path):
    Image.new("RGB", (3, 3)).save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match="single-channel"):
        io.read_label(tmp_path / "rgb.png")
    with pytest.raises(DataError, match="16-bit"):
        io.read_label(_bad_file(tmp_path, "gray16"))


# ---------------------------------------------------------------------------------------------------------
# writing


@settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40))), st.integers(0, 9))
def test_label_png_roundtrip_is_lossless(label, level):
    data = io.encode_label_png(label, compress_level=level)
    with Image.open(BytesIO(data)) as image:
        assert image.mode == "L" and image.size == (label.shape[1], label.shape[0])
        np.testing.assert_array_equal(np.asarray(image), label)


def test_write_label_png_is_atomic_and_leaves_no_temp_files(tmp_path):
    label = np.arange(60, dtype=np.uint8).reshape(6, 10)
    target = tmp_path / "nested" / "dir" / "label.png"
    io.write_label_png(target, label)
    assert _files(target.parent) == ["label.png"]
    np.testing.assert_array_equal(io.read_label(target), label)
    assert os.stat(target).st_mode & 0o777 == 0o644


def test_write_label_png_accepts_wider_ints_in_range_and_rejects_others(tmp_path):
    io.write_label_png(tmp_path / "a.png", np.array([[0, 255]], dtype=np.int64))
    np.testing.assert_array_equal(io.read_label(tmp_path / "a.png"), [[0, 255]])
    bad_arrays = (np.array([[0, 256]]), np.array([[-1, 0]]), np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2)))
    for bad in bad_arrays:
        with pytest.raises(ValueError):
            io.write_label_png(tmp_path / "b.png", bad)
    assert _files(tmp_path) == ["a.png"]


def test_failed_encoding_keeps_the_old_file(tmp_path):
    target = tmp_path / "label.png"
    io.write_label_png(target, np.ones((2, 2), np.uint8))
    before = target.read_bytes()
    with pytest.raises(ValueError):
        io.write_label_png(target, np.full((2, 2), 300))
    assert target.read_bytes() == before and _files(tmp_path) == ["label.png"]
