"""Reading images and label maps, and writing label PNGs atomically.

Every failure a user can cause (a missing, empty, truncated, 16-bit or oversized file, something that is not
an image) raises :class:`~autolabel.errors.DataError` naming the file and the reason; write failures raise
:class:`~autolabel.errors.OutputError`.

Photos with an EXIF Orientation tag (a phone held sideways stores its pixels sideways and says so in the tag)
are turned upright by :func:`read_image`, as every viewer shows them, so their labels come out upright too
(``data.exif_transpose = false`` reads the stored pixels as they are). Label maps are never turned: they are
written in the orientation of the image they were made from, and the manifest's ``exif_transposed`` column
says which one that was.
"""

from __future__ import annotations

import io
import logging
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from autolabel.errors import DataError
from autolabel.fs import atomic_write_bytes

logger = logging.getLogger(__name__)

# Modes whose pixels have more than 8 bits per channel (or are not integers); converting them to 8-bit RGB
# would silently throw information away, so they are rejected instead.
_WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_LABEL_MODES = frozenset({"L", "P"})  # P: the palette index is the label value (Mapillary stores labels so)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_FILTER_UP = 2
_EXIF_ORIENTATION = 0x0112  # EXIF tag: 1 = upright, 2..8 = mirrored and/or rotated


def _png_bit_depth(path: Path) -> int | None:
    """Bit depth from a PNG's IHDR chunk (Pillow reads 16-bit RGB PNGs as 8-bit 'RGB' without telling)."""
    with open(path, "rb") as fh:
        head = fh.read(33)
    if len(head) < 25 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return head[24]


def _wide_samples(image: ImageFile.ImageFile, path: Path) -> str | None:
    """What makes an image wider than 8 bits per channel (a 16-bit RGB PNG, a 48-bit TIFF, a float image),
    which Pillow would otherwise silently narrow to 8 bits; None for 8-bit images."""
    if image.format == "PNG" and _png_bit_depth(path) == 16:
        kind = "grayscale" if image.mode.startswith("I") else image.mode
        return f"16-bit PNG ({kind}, {16 * len(image.getbands())} bits per pixel)"
    if image.mode == "F":
        return "floating-point samples (mode 'F')"
    if image.mode == "I":
        return "32-bit integer samples (mode 'I')"
    if image.mode in _WIDE_MODES:
        return f"16-bit samples (mode {image.mode!r})"
    for tile in image.tile:  # the decoder's raw mode, e.g. 'RGB;16N' for a 48-bit TIFF
        args = tile[3]
        rawmode = args if isinstance(args, str) else args[0] if args else ""
        if ";16" in str(rawmode):
            return f"16-bit {image.format or 'image'} ({image.mode}, {16 * len(image.getbands())} bits per pixel)"
    return None


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
        raise DataError(_bomb_message(path, str(exc), max_pixels)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image header ({exc})") from None
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        image.close()
        raise DataError(
            f"{path}: image too large ({width}x{height} = {width * height} pixels, "
            f"limit {max_pixels}; raise data.max_image_pixels if this is intended)"
        )
    wide = _wide_samples(image, path)
    if wide is not None:
        image.close()
        raise DataError(f"{path}: {wide}; expected 8 bits per channel")
    return image


def _bomb_message(path: Path, pillow_message: str, max_pixels: int | None) -> str:
    """Pillow refuses images above twice its own limit before we see their size; say it with our limit."""
    found = re.search(r"\((\d+) pixels\)", pillow_message)
    pixels = int(found.group(1)) if found else None
    size = f"{pixels} pixels" if pixels is not None else "too many pixels"
    if max_pixels is not None and (pixels is None or pixels > max_pixels):
        return f"{path}: image too large ({size}, limit {max_pixels}; raise data.max_image_pixels if this is intended)"
    pillow_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    return f"{path}: image too large ({size}); Pillow refuses images above {pillow_limit} pixels"


def _decode(image: Image.Image, path: Path) -> None:
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow raises OSError("image file is truncated ...") and friends for damaged data.
        raise DataError(f"{path}: corrupt or truncated image ({exc})") from None


def read_image(path: str | Path, max_pixels: int | None = None, *, exif_transpose: bool = True) -> np.ndarray:
    """Read an image as an (H, W, 3) uint8 RGB array, upright by its EXIF orientation (``exif_transpose``).

    Grayscale, palette, RGBA/LA (alpha dropped), CMYK and YCbCr images are converted to RGB. ``max_pixels``
    is checked against the header before decoding, so an absurd size never allocates.
    """
    return read_image_upright(path, max_pixels, exif_transpose=exif_transpose)[0]


def read_image_upright(
    path: str | Path, max_pixels: int | None = None, *, exif_transpose: bool = True
) -> tuple[np.ndarray, bool]:
    """:func:`read_image`, and whether it turned the pixels (what :func:`is_transposed` says, known here for
    free: asking a PNG for its EXIF afterwards makes Pillow decode the whole file again, about as long as this)."""
    path = Path(path)
    with _open(path, max_pixels) as image:
        _decode(image, path)
        turned = exif_transpose and _orientation(image) != 1
        if turned:
            image = ImageOps.exif_transpose(image)
        if image.mode != "RGB":
            image = image.convert("RGB")
        return np.asarray(image, dtype=np.uint8).copy(), turned


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError, struct.error):  # a damaged EXIF block: read the pixels as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def exif_orientation(path: str | Path) -> int:
    """The EXIF Orientation of an image file (1 = upright, also when it has no tag); reads the header only."""
    path = Path(path)
    with _open(path, None) as image:
        return _orientation(image)


def is_transposed(path: str | Path, exif_transpose: bool = True) -> bool:
    """Whether :func:`read_image` with ``exif_transpose`` turns this file's pixels (an orientation tag != 1);
    False for a file that cannot be opened (there are no pixels to turn)."""
    if not exif_transpose:
        return False
    try:
        return exif_orientation(path) != 1
    except DataError:
        return False


def image_size(path: str | Path, *, exif_transpose: bool = True) -> tuple[int, int]:
    """(width, height) of an image as :func:`read_image` returns it, from the header only."""
    path = Path(path)
    with _open(path, None) as image:
        width, height = image.size
        # orientations 5..8 swap the sides (a quarter turn, possibly mirrored)
        return (height, width) if exif_transpose and _orientation(image) >= 5 else (width, height)


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
