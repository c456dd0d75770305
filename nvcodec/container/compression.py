"""Section codecs: RAW, or exactly one zstd frame with its content size in the header."""

from __future__ import annotations

from collections.abc import Iterator

import zstandard

from nvcodec.container.layout import (
    MAX_RAW_LENGTH, MAX_ZSTD_RATIO, MAX_ZSTD_WINDOW, ZSTD_FRAME_MAGIC, Codec, max_zstd_raw_length,
)
from nvcodec.errors import FormatError

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
    if codec == Codec.ZSTD:
        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True, write_checksum=False,
                                              write_dict_id=False)
        return compressor.compress(payload)
    raise FormatError(f"unknown codec {codec!r}")


def zstd_size(payload: bytes | bytearray | memoryview | object) -> int:
    """Bytes `payload` (any buffer) takes compressed the way ZSTD sections are written."""
    return len(encode_payload(memoryview(payload).cast("B"), Codec.ZSTD))


def too_expansive(raw_length: int, stored_length: int) -> bool:
    """Whether a ZSTD section of these lengths would break the expansion limit (store it RAW then)."""
    return raw_length > max_zstd_raw_length(stored_length)


def decode_payload(stored: bytes, codec: int, raw_length: int, name: str, offset: int) -> bytes:
    """Decode stored bytes, never producing more than `raw_length` bytes."""
    if codec == Codec.RAW:
        if len(stored) != raw_length:
            raise FormatError("raw section length mismatch", section=name, offset=offset)
        return stored
    if codec != Codec.ZSTD:
        raise FormatError(f"unknown codec {codec}", section=name, offset=offset)
    check_zstd_frame(stored, raw_length, name, offset)
    try:
        out = zstandard.ZstdDecompressor(max_window_size=MAX_ZSTD_WINDOW).decompress(
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
    if codec != Codec.ZSTD:
        raise FormatError(f"unknown codec {codec}", section=name, offset=offset)
    check_zstd_frame(stored, raw_length, name, offset)
    produced = 0
    try:
        with zstandard.ZstdDecompressor(max_window_size=MAX_ZSTD_WINDOW).stream_reader(
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
