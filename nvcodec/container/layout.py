"""Byte layout of `.nvp` files: magic numbers, struct layouts, enums and limits.

Everything here mirrors `spec/nvp-format.md`; change both together.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

MAGIC = b"\x89NVP\r\n\x1a\n"
TRAILER_MAGIC = b"\x89NVPEND\n"
INDEX_MAGIC = b"NVPI"
TENSOR_MAGIC = b"NVPT"
ZSTD_FRAME_MAGIC = b"\x28\xb5\x2f\xfd"

MAJOR_VERSION = 1
MINOR_VERSION = 0

ALIGNMENT = 64
TENSOR_ALIGNMENT = 64

# preamble: magic, u16 major, u16 minor, u32 flags
PREAMBLE = struct.Struct("<8sHHI")
# trailer: u64 index_offset, u64 index_length, u32 index_crc32, u32 generation, magic
TRAILER = struct.Struct("<QQII8s")
# index header: magic, u32 generation, u32 section_count, u32 feature_count,
# u64 prev_trailer_offset, u32 prefix_crc32, u32 reserved
INDEX_HEADER = struct.Struct("<4sIIIQII")
# index entry (followed by name_length bytes of UTF-8 name):
# u64 offset, u64 stored_length, u64 raw_length, u32 crc32, u16 kind, u8 codec, u8 name_length
INDEX_ENTRY = struct.Struct("<QQQIHBB")
# tensor bundle prefix: magic, u32 header_length
TENSOR_PREFIX = struct.Struct("<4sI")

assert PREAMBLE.size == 16 and TRAILER.size == 32 and INDEX_HEADER.size == 32 and INDEX_ENTRY.size == 32

FIRST_DATA_OFFSET = ALIGNMENT

MAX_INDEX_LENGTH = 16 * 1024 * 1024
MAX_SECTIONS = 65536
MAX_FEATURES = 256
MAX_NAME_BYTES = 255
MAX_RAW_LENGTH = 1 << 32
MAX_GENERATION = 0xFFFFFFFF
MAX_ZSTD_WINDOW = 1 << 27
# A ZSTD section never expands to more than MAX_ZSTD_RATIO x its stored bytes + ZSTD_RATIO_SLACK
# (writers store such payloads RAW), so decompressing costs at most ~1024 x the file's size.
MAX_ZSTD_RATIO = 1024
ZSTD_RATIO_SLACK = 4096
MAX_SCAN_INDEX_BYTES = 64 * 1024 * 1024
MAX_SCAN_CANDIDATES = 65536
SCAN_CHUNK = 1 << 20

MAX_MSGPACK_BYTES = 64 * 1024 * 1024
MAX_MSGPACK_VALUES = 1 << 20
MAX_MSGPACK_DEPTH = 64

MAX_TENSOR_HEADER = 16 * 1024 * 1024
MAX_TENSORS = 65536
MAX_NDIM = 8


class SectionKind(IntEnum):
    """What a section holds. Values are never reused; 0 is invalid."""

    VIDEO = 1
    MODEL = 2
    INR_BLOCK = 3
    EMBEDDINGS = 4
    SEGMENTS = 5
    ROUTING = 6
    ADAPTER = 7
    PROVENANCE = 8
    INR_HEAD = 9


class Codec(IntEnum):
    """How a section's payload is stored."""

    RAW = 0
    ZSTD = 1
    ZSTD_DICT = 2


MSGPACK_KINDS = frozenset({SectionKind.VIDEO, SectionKind.MODEL, SectionKind.SEGMENTS, SectionKind.ROUTING,
                           SectionKind.PROVENANCE})
TENSOR_KINDS = frozenset({SectionKind.INR_BLOCK, SectionKind.INR_HEAD, SectionKind.EMBEDDINGS, SectionKind.ADAPTER})

# Features this reader implements. A file listing a required feature not in here is refused.
# "tensor-rans": tensor bundles may hold rANS-coded tensors (spec section 11.1).
# "zstd-dict-1": sections may use codec ZSTD_DICT, zstd with the built-in dictionary 1 (spec section 4.1).
# "hinerv-fine-grid": `hinerv` models may hold a fine base-grid level in block 0 (spec section 9).
RANS_FEATURE = "tensor-rans"
DICT_FEATURE = "zstd-dict-1"
FINE_GRID_FEATURE = "hinerv-fine-grid"
MID_GRID_FEATURE = "hinerv-mid-grid"
SUPPORTED_FEATURES: frozenset[str] = frozenset({RANS_FEATURE, DICT_FEATURE, FINE_GRID_FEATURE, MID_GRID_FEATURE})
ZSTD_CODECS = frozenset({Codec.ZSTD, Codec.ZSTD_DICT})
DICT_SHA256 = "ee03a20cef4cad7e8bfc89763c0c159df500942256b6ab727bab01c83deefb49"


@dataclass(frozen=True)
class SectionInfo:
    """One index entry: where a section lives and how to decode it."""

    name: str
    kind: int
    codec: int
    offset: int
    stored_length: int
    raw_length: int
    crc32: int


def max_zstd_raw_length(stored_length: int) -> int:
    """The largest raw_length a ZSTD section of `stored_length` stored bytes may declare."""
    return min(MAX_RAW_LENGTH, MAX_ZSTD_RATIO * stored_length + ZSTD_RATIO_SLACK)


def align_up(value: int, alignment: int = ALIGNMENT) -> int:
    """Round `value` up to a multiple of `alignment`."""
    return -(-value // alignment) * alignment
