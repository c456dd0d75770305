"""`verify_nvp`: full integrity check of an `.nvp` file."""

from __future__ import annotations

import os
import zlib
from typing import Any

from nvcodec.container.index import IndexState, prev_generation, read_exact
from nvcodec.container.layout import MAX_MSGPACK_BYTES, MSGPACK_KINDS, TENSOR_KINDS, SectionInfo
from nvcodec.container.msgpack_io import unpack_msgpack
from nvcodec.container.reader import NvpReader
from nvcodec.container.tensors import check_tensors, tensor_head_length
from nvcodec.errors import FormatError

_CHUNK = 1 << 22


def verify_nvp(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check every section, every generation's index and the whole-file checksum; FormatError on the first problem.

    Payloads of known msgpack and tensor-bundle kinds are decoded too. Memory stays bounded:
    other payloads and tensor data are decoded in pieces and dropped, only msgpack sections
    (at most 64 MiB) and tensor headers (at most 16 MiB) are held whole.
    """
    with NvpReader(path) as reader:
        if reader.tail_bytes:
            raise FormatError(f"{reader.tail_bytes} bytes after the last complete trailer (interrupted append?)",
                              offset=reader.file_size - reader.tail_bytes)
        state = reader.index_state
        fd = reader.fileno()
        chain = _chain(fd, state)
        _check_prefix_crcs(fd, chain)
        _check_not_in_indexes(state, chain)
        stored_bytes = raw_bytes = 0
        for info in reader.sections:
            if info.kind in MSGPACK_KINDS:
                unpack_msgpack(reader.read(info.name, MAX_MSGPACK_BYTES), section=info.name, offset=info.offset,
                               budget=reader.value_budget)
            elif info.kind in TENSOR_KINDS:
                _check_tensor_section(reader, info)
            else:
                for _ in reader.iter_read(info.name):
                    pass
            stored_bytes += info.stored_length
            raw_bytes += info.raw_length
        return {
            "path": reader.path,
            "version": f"{reader.version[0]}.{reader.version[1]}",
            "generation": reader.generation,
            "generations_checked": len(chain),
            "sections": len(reader.sections),
            "stored_bytes": stored_bytes,
            "raw_bytes": raw_bytes,
            "bytes": reader.file_size,
            "required_features": list(reader.required_features),
            "ok": True,
        }


def _check_tensor_section(reader: NvpReader, info: SectionInfo) -> None:
    """Tensor bundle rules from the prefix and header; the data is decoded in pieces and dropped."""
    head = bytearray()
    need = tensor_head_length(b"", info.raw_length)
    for piece in reader.iter_read(info.name):
        while len(head) < need and piece:
            take = need - len(head)
            head += piece[:take]
            piece = piece[take:]
            need = tensor_head_length(bytes(head[:8]), info.raw_length)
    check_tensors(bytes(head), info.raw_length, section=info.name, budget=reader.value_budget)


def _chain(fd: int, state: IndexState) -> list[IndexState]:
    """All generations, oldest first, each pointing at a valid trailer of the one before."""
    chain = [state]
    while chain[-1].generation > 1:
        prev = prev_generation(fd, chain[-1])
        if prev.end > chain[-1].index_offset:
            raise FormatError(f"generation {prev.generation} ends after the index of generation "
                              f"{chain[-1].generation}", offset=prev.trailer_offset)
        chain.append(prev)
    return chain[::-1]


def _check_prefix_crcs(fd: int, chain: list[IndexState]) -> None:
    """Stream the file once, comparing the CRC-32 of the prefix before each index with its stored value."""
    crc = 0
    pos = 0
    for state in chain:
        while pos < state.index_offset:
            n = min(_CHUNK, state.index_offset - pos)
            crc = zlib.crc32(read_exact(fd, n, pos), crc)
            pos += n
        if crc != state.prefix_crc32:
            raise FormatError(f"file checksum of bytes [0, {state.index_offset}) does not match generation "
                              f"{state.generation}'s index (damaged data or padding)", offset=state.index_offset)


def _check_not_in_indexes(state: IndexState, chain: list[IndexState]) -> None:
    """Live sections must not overlap any generation's index or trailer."""
    spans = sorted([(info.offset, info.offset + info.stored_length, info.name) for info in state.sections]
                   + [(g.index_offset, g.end, None) for g in chain], key=lambda span: span[:2])
    for (a_start, a_end, a_name), (b_start, _, b_name) in zip(spans, spans[1:]):
        if a_end > b_start and (a_name is None) != (b_name is None):
            name = a_name if a_name is not None else b_name
            raise FormatError("section overlaps an index or trailer", section=name, offset=max(a_start, b_start))
