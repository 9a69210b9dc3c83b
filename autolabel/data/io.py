"""Reading images and label maps, and writing label PNGs atomically.

Every failure a user can cause (a missing, empty, truncated, 16-bit or oversized file, something that is not
an image) raises :class:`~autolabel.errors.DataError` naming the file and the reason; write failures raise
:class:`~autolabel.errors.OutputError`. Images are returned exactly as stored (no EXIF rotation), because
label maps are aligned with the stored pixel grid, not with how a photo viewer would display it.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from autolabel.errors import DataError
from autolabel.fs import atomic_write_bytes

logger = logging.getLogger(__name__)

# Modes whose pixels have more than 8 bits per channel (or are not integers); converting them to 8-bit RGB
# would silently throw information away, so they are rejected instead.
_WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_LABEL_MODES = frozenset({"L", "P"})  # P: the palette index is the label value (Mapillary stores labels so)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_FILTER_UP = 2


def _png_bit_depth(path: Path) -> int | None:
    """Bit depth from a PNG's IHDR chunk (Pillow reads 16-bit RGB PNGs as 8-bit 'RGB' without telling)."""
    with open(path, "rb") as fh:
        head = fh.read(33)
    if len(head) < 25 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return head[24]


def _has_16_bit_samples(image: ImageFile.ImageFile, path: Path) -> bool:
    """True for wide sample formats Pillow would silently narrow to 8 bits (16-bit RGB PNG or TIFF)."""
    if image.mode in _WIDE_MODES:
        return True
    if image.format == "PNG":
        return _png_bit_depth(path) == 16
    for tile in image.tile:  # the decoder's raw mode, e.g. 'RGB;16N' for a 48-bit TIFF
        args = tile[3]
        rawmode = args if isinstance(args, str) else args[0] if args else ""
        if ";16" in str(rawmode):
            return True
    return False


def _open(path: Path, max_pixels: int | None) -> Image.Image:
    """Open ``path`` lazily (header only) and check it before any pixel is decoded."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow warns about (and above 2x its limit refuses) very large images; we apply our own limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image header ({exc})") from None
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        image.close()
        raise DataError(
            f"{path}: image too large ({width}x{height} = {width * height} pixels, "
            f"limit {max_pixels}; raise data.max_image_pixels if this is intended)"
        )
    if _has_16_bit_samples(image, path):
        image.close()
        raise DataError(f"{path}: 16-bit or floating-point image (mode {image.mode!r}); expected 8 bits per channel")
    return image


def _decode(image: Image.Image, path: Path) -> None:
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow raises OSError("image file is truncated ...") and friends for damaged data.
        raise DataError(f"{path}: corrupt or truncated image ({exc})") from None


def read_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Read an image as an (H, W, 3) uint8 RGB array.

    Grayscale, palette, RGBA/LA (alpha dropped), CMYK and YCbCr images are converted to RGB. ``max_pixels``
    is checked against the header before decoding, so an absurd size never allocates.
    """
    path = Path(path)
    with _open(path, max_pixels) as image:
        _decode(image, path)
        if image.mode != "RGB":
            image = image.convert("RGB")
        return np.asarray(image, dtype=np.uint8).copy()


def read_label(path: str | Path, lut: np.ndarray | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Read a single-channel label map as (H, W) uint8; ``lut`` (256 entries) maps stored values, e.g.
    Cityscapes labelIds to trainIds with :meth:`ClassSet.label_to_train_lut`."""
    path = Path(path)
    with _open(path, max_pixels) as image:
        if image.mode not in _LABEL_MODES:
            raise DataError(
                f"{path}: label map has mode {image.mode!r}; expected a single-channel 8-bit "
                "image ('L', or 'P' whose indices are the labels)"
            )
        _decode(image, path)
        # np.asarray of a 'P' image gives the palette indices, which is what the label values are.
        label = np.asarray(image, dtype=np.uint8)
    if lut is None:
        return label.copy()
    lut = np.asarray(lut)
    if lut.shape != (256,) or lut.dtype != np.uint8:
        raise ValueError(f"lut must be a (256,) uint8 table, got {lut.shape} {lut.dtype}")
    return lut[label]


def _as_uint8_2d(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (H, W) array, got shape {array.shape}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if not np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_:
        raise ValueError(f"{what} must hold integers, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(f"{what} values must lie in 0..255, got {array.min()}..{array.max()}")
    return array.astype(np.uint8)


def _encode_png(image: Image.Image, compress_level: int) -> bytes:
    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be 0..9, got {compress_level}")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def encode_label_png(array: np.ndarray, compress_level: int = 9) -> bytes:
    """Encode an (H, W) label map (values 0..255) as an 8-bit grayscale PNG, every row "up"-filtered.

    A label row mostly repeats the row above, so PNG's "up" filter (each byte minus the one above it) leaves
    mostly zeros: about 3 % smaller than the filters Pillow picks per row, at the same zlib level (``make
    bench``, label_footprint). Any PNG reader decodes it; the format is PNG 1.2 with a fixed filter choice.
    """
    labels = _as_uint8_2d(array, "label map")
    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be 0..9, got {compress_level}")
    height, width = labels.shape
    rows = np.empty((height, width + 1), dtype=np.uint8)  # (H, 1 + W): each scanline starts with its filter
    rows[:, 0] = _PNG_FILTER_UP
    rows[0, 1:] = labels[0]  # the row above the first one counts as zeros
    np.subtract(labels[1:], labels[:-1], out=rows[1:, 1:])  # uint8 wraps: mod 256, as PNG specifies
    deflate = zlib.compressobj(compress_level, zlib.DEFLATED, 15, 9)  # memLevel 9: a little smaller output
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey, deflate, no interlace
    return b"".join(
        (
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", deflate.compress(rows.tobytes()) + deflate.flush()),
            _png_chunk(b"IEND", b""),
        )
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_image_png(array: np.ndarray, compress_level: int = 6) -> bytes:
    """Encode an (H, W, 3) uint8 RGB array as a PNG."""
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 array, got {array.shape} {array.dtype}")
    return _encode_png(Image.fromarray(np.ascontiguousarray(array)), compress_level)


def write_label_png(path: str | Path, array: np.ndarray, compress_level: int = 9) -> None:
    """Encode ``array`` as an 8-bit 'L' PNG and write it atomically to ``path``."""
    # Encoding happens before the temporary file exists, so a bad array leaves nothing behind.
    atomic_write_bytes(path, encode_label_png(array, compress_level))


def write_image_png(path: str | Path, array: np.ndarray, compress_level: int = 6) -> None:
    """Encode an (H, W, 3) uint8 RGB array as PNG and write it atomically to ``path``."""
    atomic_write_bytes(path, encode_image_png(array, compress_level))
