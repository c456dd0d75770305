"""Encoding, parsing and locating the index + trailer pair that ends every generation."""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass

from nvcodec import __version__
from nvcodec.container.layout import (
    ALIGNMENT, DICT_FEATURE, FIRST_DATA_OFFSET, INDEX_ENTRY, INDEX_HEADER, INDEX_MAGIC, MAGIC, MAJOR_VERSION,
    MAX_FEATURES, MAX_GENERATION, MAX_INDEX_LENGTH, MAX_RAW_LENGTH, MAX_SCAN_CANDIDATES, MAX_SCAN_INDEX_BYTES, MAX_SECTIONS,
    PREAMBLE, SCAN_CHUNK, SUPPORTED_FEATURES, TRAILER, TRAILER_MAGIC, Codec, SectionInfo,
)
from nvcodec.container.names import decode_name, encode_name
from nvcodec.errors import FormatError

MIN_FILE_SIZE = FIRST_DATA_OFFSET + INDEX_HEADER.size + TRAILER.size


@dataclass
class IndexState:
    """One generation: its trailer fields and the parsed index."""

    generation: int
    index_offset: int
    index_length: int
    index_crc32: int
    prev_trailer_offset: int
    prefix_crc32: int
    sections: list[SectionInfo]
    features: list[str]

    @property
    def trailer_offset(self) -> int:
        return self.index_offset + self.index_length

    @property
    def end(self) -> int:
        return self.trailer_offset + TRAILER.size


def read_exact(fd: int, length: int, offset: int) -> bytes:
    """Read exactly `length` bytes at `offset` or raise FormatError."""
    chunks = []
    remaining = length
    pos = offset
    while remaining > 0:
        try:
            chunk = os.pread(fd, min(remaining, 1 << 30), pos)
        except OSError as exc:
            raise FormatError(f"cannot read {length} bytes: {exc}", offset=offset) from None
        if not chunk:
            raise FormatError(f"unexpected end of file reading {length} bytes", offset=offset)
        chunks.append(chunk)
        remaining -= len(chunk)
        pos += len(chunk)
    return b"".join(chunks)


def encode_index(generation: int, prev_trailer_offset: int, prefix_crc32: int, sections: list[SectionInfo],
                 features: list[str]) -> bytes:
    """Serialize an index (without trailer)."""
    if len(sections) > MAX_SECTIONS:
        raise FormatError(f"too many sections: {len(sections)} > {MAX_SECTIONS}")
    if len(features) > MAX_FEATURES:
        raise FormatError(f"too many required features: {len(features)} > {MAX_FEATURES}")
    parts = [INDEX_HEADER.pack(INDEX_MAGIC, generation, len(sections), len(features), prev_trailer_offset,
                               prefix_crc32, 0)]
    for s in sections:
        raw = encode_name(s.name)
        parts.append(INDEX_ENTRY.pack(s.offset, s.stored_length, s.raw_length, s.crc32, s.kind, s.codec, len(raw)))
        parts.append(raw)
    for f in features:
        raw = encode_name(f, "feature name")
        parts.append(bytes([len(raw)]) + raw)
    data = b"".join(parts)
    if len(data) > MAX_INDEX_LENGTH:
        raise FormatError(f"index too large: {len(data)} > {MAX_INDEX_LENGTH} bytes")
    return data


def encode_trailer(index_offset: int, index: bytes, generation: int) -> bytes:
    """Serialize the trailer that points at `index`."""
    return TRAILER.pack(index_offset, len(index), zlib.crc32(index), generation, TRAILER_MAGIC)


def parse_index(buf: bytes, index_offset: int, trailer_generation: int) -> IndexState:
    """Validate and decode an index whose CRC already matched its trailer."""
    at = index_offset
    if len(buf) < INDEX_HEADER.size:
        raise FormatError("index shorter than its header", offset=at)
    magic, generation, count, nfeat, prev, prefix_crc, reserved = INDEX_HEADER.unpack_from(buf, 0)
    if magic != INDEX_MAGIC:
        raise FormatError("bad index magic", offset=at)
    if generation != trailer_generation or generation == 0:
        raise FormatError(f"index generation {generation} does not match trailer ({trailer_generation})", offset=at)
    if reserved != 0:
        raise FormatError("reserved index field is not zero", offset=at + 28)
    if count > MAX_SECTIONS:
        raise FormatError(f"section count {count} exceeds limit {MAX_SECTIONS}", offset=at + 8)
    if nfeat > MAX_FEATURES:
        raise FormatError(f"feature count {nfeat} exceeds limit {MAX_FEATURES}", offset=at + 12)
    if INDEX_HEADER.size + count * INDEX_ENTRY.size + nfeat > len(buf):
        raise FormatError(f"index of {len(buf)} bytes cannot hold {count} sections", offset=at)
    if generation == 1:
        if prev != 0:
            raise FormatError("first generation must have prev_trailer_offset 0", offset=at + 16)
    elif prev < FIRST_DATA_OFFSET or prev + TRAILER.size > index_offset:
        raise FormatError(f"previous trailer offset {prev} out of range", offset=at + 16)
    pos = INDEX_HEADER.size
    sections: list[SectionInfo] = []
    seen: set[str] = set()
    for _ in range(count):
        if pos + INDEX_ENTRY.size > len(buf):
            raise FormatError("index entry runs past end of index", offset=at + pos)
        off, stored, raw_len, crc, kind, codec, nlen = INDEX_ENTRY.unpack_from(buf, pos)
        entry_at = at + pos
        pos += INDEX_ENTRY.size
        if pos + nlen > len(buf):
            raise FormatError("section name runs past end of index", offset=entry_at)
        name = decode_name(buf[pos:pos + nlen], offset=at + pos)
        pos += nlen
        if name in seen:
            raise FormatError("duplicate section name in index", section=name, offset=entry_at)
        seen.add(name)
        _check_entry(name, entry_at, off, stored, raw_len, kind, codec, index_offset)
        sections.append(SectionInfo(name, kind, codec, off, stored, raw_len, crc))
    features: list[str] = []
    for _ in range(nfeat):
        if pos >= len(buf):
            raise FormatError("feature list runs past end of index", offset=at + pos)
        flen = buf[pos]
        pos += 1
        if pos + flen > len(buf):
            raise FormatError("feature name runs past end of index", offset=at + pos)
        feature = decode_name(buf[pos:pos + flen], "feature name", offset=at + pos)
        if feature in features:
            raise FormatError(f"duplicate required feature {feature!r}", offset=at + pos)
        features.append(feature)
        pos += flen
    if pos != len(buf):
        raise FormatError(f"{len(buf) - pos} unexpected bytes at end of index", offset=at + pos)
    if DICT_FEATURE not in features:
        for s in sections:
            if s.codec == Codec.ZSTD_DICT:
                raise FormatError(f"section uses codec {Codec.ZSTD_DICT} but the index does not require "
                                  f"{DICT_FEATURE!r}", section=s.name, offset=s.offset)
    _check_overlap(sections)
    return IndexState(generation, index_offset, len(buf), zlib.crc32(buf), prev, prefix_crc, sections, features)


def _check_entry(name: str, at: int, off: int, stored: int, raw_len: int, kind: int, codec: int,
                 index_offset: int) -> None:
    if kind == 0:
        raise FormatError("section kind 0 is invalid", section=name, offset=at)
    if codec not in (Codec.RAW, Codec.ZSTD, Codec.ZSTD_DICT):
        raise FormatError(f"unknown codec {codec}", section=name, offset=at)
    if off % ALIGNMENT or off < FIRST_DATA_OFFSET:
        raise FormatError(f"section offset {off} is not a multiple of {ALIGNMENT} >= {FIRST_DATA_OFFSET}",
                          section=name, offset=at)
    if stored > index_offset or off > index_offset - stored:
        raise FormatError(f"section [{off}, {off + stored}) extends past its index at {index_offset}",
                          section=name, offset=at)
    if raw_len > MAX_RAW_LENGTH:
        raise FormatError(f"raw length {raw_len} exceeds limit {MAX_RAW_LENGTH}", section=name, offset=at)
    if codec == Codec.RAW and stored != raw_len:
        raise FormatError(f"raw section with stored length {stored} != raw length {raw_len}",
                          section=name, offset=at)


def _check_overlap(sections: list[SectionInfo]) -> None:
    ordered = sorted(sections, key=lambda s: (s.offset, s.stored_length))
    for a, b in zip(ordered, ordered[1:]):
        if a.offset + a.stored_length > b.offset:
            raise FormatError(f"section overlaps {b.name!r}", section=a.name, offset=a.offset)


def check_features(features: list[str]) -> None:
    """Refuse files that need features this reader lacks."""
    missing = [f for f in features if f not in SUPPORTED_FEATURES]
    if missing:
        raise FormatError(f"file requires features {missing} that this reader (nvcodec {__version__}) "
                          "does not support")


def try_trailer(fd: int, trailer_offset: int, budget: list[int] | None = None) -> IndexState | None:
    """Parse the trailer at `trailer_offset` and its index.

    Returns None when the trailer is not a complete one whose index checksum verifies (a torn or
    foreign candidate). Raises FormatError when the checksum verifies but the index is invalid.
    """
    if trailer_offset < FIRST_DATA_OFFSET + INDEX_HEADER.size:
        return None
    if budget is not None:
        budget[1] -= 1
        if budget[1] < 0:
            raise FormatError(f"no valid trailer found among {MAX_SCAN_CANDIDATES} candidates", offset=trailer_offset)
    try:
        raw = read_exact(fd, TRAILER.size, trailer_offset)
    except FormatError:
        return None
    index_offset, index_length, index_crc, generation, magic = TRAILER.unpack(raw)
    if magic != TRAILER_MAGIC or generation == 0:
        return None
    if not INDEX_HEADER.size <= index_length <= MAX_INDEX_LENGTH:
        return None
    if index_offset % ALIGNMENT or index_offset < FIRST_DATA_OFFSET or index_offset + index_length != trailer_offset:
        return None
    if budget is not None:
        budget[0] -= index_length
        if budget[0] < 0:
            raise FormatError(f"no valid trailer found within the scan budget of {MAX_SCAN_INDEX_BYTES} index bytes",
                              offset=trailer_offset)
    buf = read_exact(fd, index_length, index_offset)
    if zlib.crc32(buf) != index_crc:
        return None
    return parse_index(buf, index_offset, generation)


def read_preamble(fd: int, file_size: int) -> tuple[int, int]:
    """Check magic, major version and flags; return (major, minor)."""
    if file_size < MIN_FILE_SIZE:
        raise FormatError(f"file of {file_size} bytes is too small to be an .nvp file", offset=0)
    magic, major, minor, flags = PREAMBLE.unpack(read_exact(fd, PREAMBLE.size, 0))
    if magic != MAGIC:
        raise FormatError("not an .nvp file (bad magic)", offset=0)
    if major != MAJOR_VERSION:
        raise FormatError(f"unsupported major version {major}.{minor} (this reader handles {MAJOR_VERSION}.x)",
                          offset=8)
    if flags != 0:
        raise FormatError(f"unknown preamble flags {flags:#x}", offset=12)
    return major, minor


def find_last_generation(fd: int, file_size: int) -> IndexState:
    """Locate the last complete trailer: at the very end, or by a bounded backwards scan."""
    state = try_trailer(fd, file_size - TRAILER.size)
    if state is not None:
        return state
    budget = [MAX_SCAN_INDEX_BYTES, MAX_SCAN_CANDIDATES]
    magic_shift = TRAILER.size - len(TRAILER_MAGIC)
    lowest = FIRST_DATA_OFFSET + INDEX_HEADER.size + magic_shift
    window_end = file_size - 1
    while window_end - lowest >= len(TRAILER_MAGIC):
        window_start = max(lowest, window_end - SCAN_CHUNK)
        chunk = read_exact(fd, window_end - window_start, window_start)
        end = len(chunk)
        while (pos := chunk.rfind(TRAILER_MAGIC, 0, end)) >= 0:
            state = try_trailer(fd, window_start + pos - magic_shift, budget)
            if state is not None:
                return state
            end = pos + len(TRAILER_MAGIC) - 1
        window_end = window_start + len(TRAILER_MAGIC) - 1
        if window_start == lowest:
            break
    raise FormatError("no complete trailer found: not an .nvp file, or truncated before its first index")


def prev_generation(fd: int, state: IndexState) -> IndexState:
    """Return the generation before `state` (FormatError if its trailer is not valid)."""
    prev = try_trailer(fd, state.prev_trailer_offset)
    if prev is None or prev.generation != state.generation - 1:
        raise FormatError(f"generation {state.generation} points at an invalid previous trailer",
                          offset=state.prev_trailer_offset)
    return prev


def check_generation_limit(generation: int) -> None:
    """Refuse to write past the largest generation number."""
    if generation > MAX_GENERATION:
        raise FormatError(f"generation limit {MAX_GENERATION} reached")
