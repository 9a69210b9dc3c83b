"""Every kind of bad input in one `generate` run: conversions work, the rest become precise error rows."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from autolabel import labelset
from autolabel.cli import main
from autolabel.data.io import read_label
from autolabel.data.sources import Source
from autolabel.errors import EXIT_FINISHED_WITH_ERRORS

from .helpers import GENERATE_SETTINGS, folder_args, temp_leftovers

W, H = 64, 32
MAX_PIXELS = 4 * W * H


def _rgb(seed: int, size: tuple[int, int] = (W, H)) -> np.ndarray:
    """Smooth random colours, so the teacher's labels vary over the image."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (4, 8, 3), dtype=np.uint8))
    return np.asarray(small.resize(size, Image.BILINEAR))


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _png_rgb48(array: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG, written by hand (Pillow cannot write one)."""
    height, width, _ = array.shape
    rows = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


# name -> (bytes, expected: "ok", "same as <name>" (a conversion, compared with its RGB equivalent), or an
# error phrase the row's message must contain)
def bad_input_folder(root: Path) -> dict[str, str]:
    rgb = _rgb(1)
    png = _encoded(Image.fromarray(rgb), "PNG")
    jpeg = _encoded(Image.fromarray(_rgb(2)), "JPEG")
    gray = Image.fromarray(_rgb(3)[..., 0])
    rgba = Image.fromarray(np.dstack([_rgb(4), np.full((H, W), 7, np.uint8)]))
    palette = Image.fromarray(_rgb(5)).quantize(colors=16)
    files = {
        "good/plain.png": (png, "ok"),
        "good/photo.jpg": (jpeg, "ok"),
        "odd names/with space ü 名前.png": (_encoded(Image.fromarray(_rgb(6)), "PNG"), "ok"),
        "conv/gray.png": (_encoded(gray, "PNG"), "same as conv/gray_rgb"),
        "conv/gray_rgb.png": (_encoded(gray.convert("RGB"), "PNG"), "ok"),
        "conv/rgba.png": (_encoded(rgba, "PNG"), "same as conv/rgba_rgb"),
        "conv/rgba_rgb.png": (_encoded(rgba.convert("RGB"), "PNG"), "ok"),
        "conv/palette.png": (_encoded(palette, "PNG"), "same as conv/palette_rgb"),
        "conv/palette_rgb.png": (_encoded(palette.convert("RGB"), "PNG"), "ok"),
        "bad/zero.png": (b"", "empty file"),
        "bad/cut_png.png": (png[: len(png) // 2], "truncated"),
        "bad/cut_jpeg.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "bad/text.png": (b"this is not an image\n" * 20, "not an image"),
        "bad/gray16.png": (_encoded(Image.fromarray(_rgb(7)[..., 0].astype(np.uint16) * 257), "PNG"), "16-bit"),
        "bad/rgb48.png": (_png_rgb48(_rgb(8).astype(np.uint16) * 257), "16-bit"),
        "bad/huge.png": (_encoded(Image.fromarray(_rgb(9, (3 * W, 2 * H))), "PNG"), "too large"),
        "bad/vanishing.png": (png, "not found"),
    }
    for name, (data, _) in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return {name: expected for name, (_, expected) in files.items()}


@pytest.fixture
def vanishing_after_listing(monkeypatch):
    """Delete ``bad/vanishing.png`` right after the CLI has listed the inputs."""
    real = Source.discover

    def listing_then_delete(source, exclude=None):
        samples = real(source, exclude)
        next(s.image for s in samples if s.id == "bad/vanishing").unlink()
        return samples

    monkeypatch.setattr(Source, "discover", listing_then_delete)


def test_each_bad_input_kind_in_one_run(tmp_path, teacher, vanishing_after_listing):
    images, out = tmp_path / "images", tmp_path / "out"
    expected = bad_input_folder(images)
    result = CliRunner().invoke(main, folder_args(teacher, images, out, "--set", f"data.max_image_pixels={MAX_PIXELS}"))
    assert result.exit_code == EXIT_FINISHED_WITH_ERRORS, (result.output, result.exception)

    rows = {r["id"]: r for r in labelset.read_manifest(out, status=None).to_pylist()}
    assert sorted(rows) == sorted(name.rsplit(".", 1)[0] for name in expected)
    for name, want in expected.items():
        row = rows[name.rsplit(".", 1)[0]]
        if want == "ok" or want.startswith("same as"):
            assert row["status"] == "ok", (name, row["error"])
            label = read_label(out / row["label"])
            assert label.shape == (H, W) == (row["height"], row["width"])
        else:
            assert row["status"] == "error" and row["label"] is None, name
            assert want in row["error"].lower() and name.rsplit("/", 1)[1] in row["error"], (name, row["error"])
            assert row["id"] in result.output  # the CLI names every failed image
        if want.startswith("same as"):
            # a conversion is exactly the RGB image it stands for
            twin = rows[want.removeprefix("same as ")]
            assert row["label_sha256"] == twin["label_sha256"], name
    assert "odd names/with space ü 名前" in rows
    assert (out / "labels" / "odd names" / "with space ü 名前.png").is_file()
    assert temp_leftovers(out) == []


def test_fail_fast_stops_at_the_first_bad_image(tmp_path, teacher):
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    for seed, name in enumerate(("a.png", "c.png")):
        Image.fromarray(_rgb(seed)).save(images / name)
    (images / "b.png").write_bytes(b"")
    result = CliRunner().invoke(
        main,
        [
            "generate",
            "--teacher",
            str(teacher),
            "--images",
            str(images),
            "--out",
            str(out),
            "--fail-fast",
            *GENERATE_SETTINGS,
        ],
    )
    assert result.exit_code == EXIT_FINISHED_WITH_ERRORS
    assert "b.png" in result.output and "empty file" in result.output
    rows = labelset.read_all_rows(out).to_pylist()
    # the image after the bad one was never labelled
    assert "c" not in {r["id"] for r in rows if r["status"] == "ok"}
    assert temp_leftovers(out) == []
