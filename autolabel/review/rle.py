"""Label Studio's brush masks: the bit-packed run-length code of its ``"format": "rle"`` results.

A brush result holds the mask as an RGBA image of ``original_height x original_width`` pixels, flattened
(4 bytes per pixel, row by row) and packed as a stream of bits, most significant bit first:

    32 bits   n, the number of values (4 x width x height)
     5 bits   word size - 1 (8-bit values: 7)
    4 x 4 bits  the four run-length field sizes - 1 (Label Studio uses 3, 4, 8 and 16 bits)
    chunks until n values are out, each:
         1 bit   1 = a run of one repeated value, 0 = a list of literal values
         2 bits  which run-length field size follows
         k bits  the chunk's length - 1
         then    one value (run) or ``length`` values (literals), word-size bits each
    zero bits up to the next byte

The brush is the alpha channel (Label Studio paints all four channels alike; 255 = painted). This is the
scheme of the ``rle-pack`` package Label Studio's front end uses, written here from that description and
checked against Label Studio's own encoder and decoder in the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from autolabel.errors import ReviewError

RLE_SIZES = (3, 4, 8, 16)  # the run-length field sizes Label Studio writes
WORD_SIZE = 8
PAINTED = 128  # alpha at or above this counts as painted (Label Studio paints 255)


class _BitWriter:
    """Collects fields as strings of '0'/'1' and packs them once at the end (linear time)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, value: int, bits: int) -> None:
        self.parts.append(format(value, f"0{bits}b"))

    def write_words(self, values: np.ndarray, bits: int) -> None:
        self.parts.append("".join(format(int(v), f"0{bits}b") for v in values))

    def to_bytes(self) -> list[int]:
        bits = np.frombuffer("".join(self.parts).encode("ascii"), dtype=np.uint8) - ord("0")
        return np.packbits(bits).tolist()  # pads the last byte with zeros


def _size_class(count: int, sizes: Sequence[int]) -> int:
    for k, size in enumerate(sizes):
        if count - 1 < (1 << size):
            return k
    raise AssertionError("chunks are split to fit the largest field")  # pragma: no cover


def encode(values: np.ndarray, rle_sizes: Sequence[int] = RLE_SIZES, word_size: int = WORD_SIZE) -> list[int]:
    """Pack a 1-D array of ``word_size``-bit values; returns the byte list Label Studio stores."""
    values = np.asarray(values).ravel()
    if values.size and (values.min() < 0 or values.max() >= (1 << word_size)):
        raise ValueError(f"values must fit in {word_size} bits")
    longest = 1 << rle_sizes[-1]
    out = _BitWriter()
    out.write(values.size, 32)
    out.write(word_size - 1, 5)
    for size in rle_sizes:
        out.write(size - 1, 4)
    # runs of equal values: starts and lengths
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]]) if values.size else np.zeros(0, np.int64)
    lengths = np.diff(np.r_[starts, values.size])
    i = 0
    while i < len(starts):
        if lengths[i] > 1:  # a run, split into chunks the length field can hold
            remaining, value = int(lengths[i]), int(values[starts[i]])
            while remaining:
                count = min(remaining, longest)
                out.write(1, 1)
                k = _size_class(count, rle_sizes)
                out.write(k, 2)
                out.write(count - 1, rle_sizes[k])
                out.write(value, word_size)
                remaining -= count
            i += 1
            continue
        j = i  # consecutive single values go out as one literal chunk
        while j < len(starts) and lengths[j] == 1 and j - i < longest:
            j += 1
        literal = values[starts[i] : starts[i] + (j - i)]
        out.write(0, 1)
        k = _size_class(len(literal), rle_sizes)
        out.write(k, 2)
        out.write(len(literal) - 1, rle_sizes[k])
        out.write_words(literal, word_size)
        i = j
    return out.to_bytes()


class _BitReader:
    def __init__(self, data: Sequence[int]):
        try:
            raw = np.asarray(data, dtype=np.int64)
        except (TypeError, ValueError):
            raise ReviewError("brush RLE: expected a list of byte values") from None
        if raw.ndim != 1 or (raw.size and (raw.min() < 0 or raw.max() > 255)):
            raise ReviewError("brush RLE: expected a list of byte values 0..255")
        self.bits = np.unpackbits(raw.astype(np.uint8))
        self.pos = 0

    def read(self, bits: int) -> int:
        end = self.pos + bits
        if end > self.bits.size:
            raise ReviewError("brush RLE: the data ends in the middle of a chunk (truncated export?)")
        value = 0
        for bit in self.bits[self.pos : end]:
            value = (value << 1) | int(bit)
        self.pos = end
        return value

    def read_words(self, count: int, bits: int) -> np.ndarray:
        end = self.pos + count * bits
        if end > self.bits.size:
            raise ReviewError("brush RLE: the data ends in the middle of a chunk (truncated export?)")
        words = self.bits[self.pos : end].reshape(count, bits).astype(np.int64)  # (count, bits)
        self.pos = end
        return words @ (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))


def decode(data: Sequence[int]) -> np.ndarray:
    """The values (uint8 when 8-bit, else uint16/uint32) of a packed stream; a :class:`ReviewError` if malformed."""
    reader = _BitReader(data)
    num = reader.read(32)
    word_size = reader.read(5) + 1
    sizes = [reader.read(4) + 1 for _ in range(4)]
    dtype = np.uint8 if word_size <= 8 else np.uint16 if word_size <= 16 else np.uint32
    out = np.zeros(num, dtype=dtype)
    i = 0
    while i < num:
        repeat = reader.read(1)
        count = reader.read(sizes[reader.read(2)]) + 1
        if i + count > num:
            raise ReviewError(f"brush RLE: a chunk runs past the {num} values the header announces")
        if repeat:
            out[i : i + count] = reader.read(word_size)
        else:
            out[i : i + count] = reader.read_words(count, word_size)
        i += count
    return out


def encode_mask(mask: np.ndarray) -> list[int]:
    """A boolean (H, W) mask as Label Studio's brush RLE (all four RGBA channels 255 where painted)."""
    painted = np.where(np.asarray(mask, dtype=bool), np.uint8(255), np.uint8(0))
    return encode(np.repeat(painted.ravel(), 4))  # (H * W * 4,) RGBA


def decode_mask(data: Sequence[int], height: int, width: int) -> np.ndarray:
    """A brush result's RLE as a boolean (H, W) mask (alpha >= 128 is painted)."""
    values = decode(data)
    if values.size != height * width * 4:
        raise ReviewError(
            f"brush RLE holds {values.size} values, but a {width}x{height} RGBA mask has {height * width * 4}"
        )
    return values.reshape(height, width, 4)[:, :, 3] >= PAINTED
