"""Section codecs: RAW, or exactly one zstd frame with its content size in the header (ZSTD), or the same
with the built-in raw-content dictionary 1 (ZSTD_DICT, `zstd_dict_1.bin`, spec section 4.1)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from importlib import resources

import zstandard

from nvcodec.container.layout import (
    DICT_SHA256, MAX_RAW_LENGTH, MAX_ZSTD_RATIO, MAX_ZSTD_WINDOW, ZSTD_CODECS, ZSTD_FRAME_MAGIC, Codec,
    max_zstd_raw_length,
)
from nvcodec.errors import FormatError

DICT_FILE = "zstd_dict_1.bin"

ZSTD_LEVEL = 9
_BLOCK_HEADER = 3
_CHECKSUM = 4
_RLE_BLOCK, _RESERVED_BLOCK = 1, 3


def encode_payload(payload: bytes | bytearray | memoryview, codec: int) -> bytes | bytearray | memoryview:
    """Return the stored bytes for `payload` under `codec` (RAW returns `payload` itself)."""
    payload = memoryview(payload).cast("B")
    if len(payload) > MAX_RAW_LENGTH:
        raise FormatError(f"payload of {len(payload)} bytes exceeds limit {MAX_RAW_LENGTH}")
    if codec == Codec.RAW:
        return payload
    if codec in ZSTD_CODECS:
        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True, write_checksum=False,
                                              write_dict_id=False, dict_data=_dict_for(codec))
        return compressor.compress(payload)
    raise FormatError(f"unknown codec {codec!r}")


def dictionary_bytes() -> bytes:
    """The bytes of the built-in zstd dictionary 1, checked against the SHA-256 the spec gives."""
    return _dictionary_bytes()


@functools.cache
def _dictionary_bytes() -> bytes:
    data = resources.files("nvcodec.container").joinpath(DICT_FILE).read_bytes()
    if hashlib.sha256(data).hexdigest() != DICT_SHA256:
        raise FormatError(f"the built-in zstd dictionary {DICT_FILE} is damaged (SHA-256 mismatch): reinstall nvcodec")
    return data


@functools.cache
def _dictionary() -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(_dictionary_bytes(), dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def _dict_for(codec: int) -> zstandard.ZstdCompressionDict | None:
    return _dictionary() if codec == Codec.ZSTD_DICT else None


def _decompressor(codec: int) -> zstandard.ZstdDecompressor:
    return zstandard.ZstdDecompressor(max_window_size=MAX_ZSTD_WINDOW, dict_data=_dict_for(codec))


def zstd_size(payload: bytes | bytearray | memoryview | object, codec: int = Codec.ZSTD) -> int:
    """Bytes `payload` (any buffer) takes compressed the way ZSTD (or ZSTD_DICT) sections are written."""
    return len(encode_payload(memoryview(payload).cast("B"), codec))


def too_expansive(raw_length: int, stored_length: int) -> bool:
    """Whether a ZSTD (or ZSTD_DICT) section of these lengths would break the expansion limit (store it RAW then)."""
    return raw_length > max_zstd_raw_length(stored_length)


def decode_payload(stored: bytes, codec: int, raw_length: int, name: str, offset: int) -> bytes:
    """Decode stored bytes, never producing more than `raw_length` bytes."""
    if codec == Codec.RAW:
        if len(stored) != raw_length:
            raise FormatError("raw section length mismatch", section=name, offset=offset)
        return stored
    if codec not in ZSTD_CODECS:
        raise FormatError(f"unknown codec {codec}", section=name, offset=offset)
    check_zstd_frame(stored, raw_length, name, offset)
    try:
        out = _decompressor(codec).decompress(
            stored, max_output_size=raw_length)
    except (zstandard.ZstdError, ValueError, MemoryError, OverflowError) as exc:
        raise FormatError(f"zstd decompression failed: {exc}", section=name, offset=offset) from None
    if len(out) != raw_length:
        raise FormatError(f"zstd frame decoded to {len(out)} bytes, index says {raw_length}",
                          section=name, offset=offset)
    return out


def iter_payload(stored: bytes, codec: int, raw_length: int, name: str, offset: int,
                 chunk: int = 1 << 20) -> Iterator[bytes]:
    """Yield the decoded payload in pieces of at most `chunk` bytes (bounded memory, for checks).

    Exactly `raw_length` bytes come out or FormatError is raised; never more are decoded.
    """
    if codec == Codec.RAW:
        if len(stored) != raw_length:
            raise FormatError("raw section length mismatch", section=name, offset=offset)
        view = memoryview(stored)
        for start in range(0, raw_length, chunk):
            yield bytes(view[start:start + chunk])
        return
    if codec not in ZSTD_CODECS:
        raise FormatError(f"unknown codec {codec}", section=name, offset=offset)
    check_zstd_frame(stored, raw_length, name, offset)
    produced = 0
    try:
        with _decompressor(codec).stream_reader(
                stored, read_across_frames=False) as reader:
            while True:
                piece = reader.read(min(chunk, raw_length - produced + 1))
                if not piece:
                    break
                produced += len(piece)
                if produced > raw_length:
                    break
                yield piece
    except (zstandard.ZstdError, ValueError, MemoryError, OverflowError) as exc:
        raise FormatError(f"zstd decompression failed: {exc}", section=name, offset=offset) from None
    if produced != raw_length:
        raise FormatError(f"zstd frame decoded to {'more than ' if produced > raw_length else ''}{produced} "
                          f"bytes, index says {raw_length}", section=name, offset=offset)


def check_zstd_frame(stored: bytes, raw_length: int, name: str, offset: int) -> None:
    """Check that `stored` is exactly one zstd frame declaring `raw_length` bytes of content.

    Also refuses frames expanding beyond MAX_ZSTD_RATIO (decompression bombs) before any work.
    """
    if too_expansive(raw_length, len(stored)):
        raise FormatError(f"zstd section of {len(stored)} bytes claims {raw_length} raw bytes, more than "
                          f"{MAX_ZSTD_RATIO}x (decompression bomb?)", section=name, offset=offset)
    if stored[:4] != ZSTD_FRAME_MAGIC:
        raise FormatError("section is not a zstd frame", section=name, offset=offset)
    try:
        params = zstandard.get_frame_parameters(stored)
        pos = zstandard.frame_header_size(stored)
    except (zstandard.ZstdError, ValueError) as exc:
        raise FormatError(f"bad zstd frame header: {exc}", section=name, offset=offset) from None
    if params.content_size != raw_length:
        raise FormatError(f"zstd frame content size {params.content_size} != raw length {raw_length}",
                          section=name, offset=offset)
    if params.dict_id != 0:
        raise FormatError("zstd frame needs a dictionary", section=name, offset=offset)
    if params.window_size > MAX_ZSTD_WINDOW:
        raise FormatError(f"zstd window {params.window_size} exceeds limit {MAX_ZSTD_WINDOW}",
                          section=name, offset=offset)
    while True:
        if pos + _BLOCK_HEADER > len(stored):
            raise FormatError("zstd frame truncated", section=name, offset=offset + pos)
        header = int.from_bytes(stored[pos:pos + _BLOCK_HEADER], "little")
        last, block_type, size = header & 1, (header >> 1) & 3, header >> 3
        if block_type == _RESERVED_BLOCK:
            raise FormatError("reserved zstd block type", section=name, offset=offset + pos)
        pos += _BLOCK_HEADER + (1 if block_type == _RLE_BLOCK else size)
        if last:
            break
    if params.has_checksum:
        pos += _CHECKSUM
    if pos != len(stored):
        raise FormatError(f"section holds {len(stored)} bytes but its zstd frame is {pos} bytes",
                          section=name, offset=offset)
