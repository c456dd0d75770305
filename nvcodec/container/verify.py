"""`check_nvp` / `verify_nvp`: full integrity check of an `.nvp` file.

`check_nvp` runs every check and collects the problems it finds, each naming the section (or
the container structure: ``trailer``, ``index``, ``padding``) and its byte range; `verify_nvp`
raises `FormatError` when there is any.
"""

from __future__ import annotations

import os
import zlib
from typing import Any

from nvcodec.container.index import IndexState, prev_generation, read_exact
from nvcodec.container.layout import (
    MAX_MSGPACK_BYTES, MSGPACK_KINDS, RANS_FEATURE, TENSOR_KINDS, SectionInfo, SectionKind,
)
from nvcodec.container.msgpack_io import unpack_msgpack
from nvcodec.container.reader import NvpReader
from nvcodec.container.tensors import check_tensors, tensor_head_length
from nvcodec.errors import FormatError

_CHUNK = 1 << 22
MAX_PROBLEMS = 64
"""Problems listed per file; a file damaged in more places reports the first ones and a count."""


def verify_nvp(path: str | os.PathLike[str]) -> dict[str, Any]:
    """`check_nvp`, raising FormatError naming the first damaged section (and how many more) if any."""
    report = check_nvp(path)
    problems = report["problems"]
    if problems:
        first = problems[0]
        more = f"; {report['problem_count'] - 1} more problem(s)" if report["problem_count"] > 1 else ""
        err = FormatError(describe_problem(first) + more)
        err.section, err.offset = first.get("section"), first.get("start")
        raise err
    return report


def describe_problem(p: dict[str, Any]) -> str:
    """One line for a problem of `check_nvp`: where (section, kind, generation, bytes) and what."""
    where = f"section {p['section']!r}" if p.get("section") else p.get("region", "file")
    if p.get("kind"):
        where += f" ({p['kind']}"
        where += f", superseded, generation {p['generation']})" if p.get("superseded") else ")"
    if p.get("start") is not None:
        where += f" at bytes [{p['start']}, {p['end']})" if p.get("end") is not None else f" at offset {p['start']}"
    return f"{where}: {p['message']}"


def check_nvp(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check every section (live and superseded), every generation's index and the whole-file checksum.

    Returns ``{"ok", "problems", "problem_count", ...}``; each problem has ``section`` (or
    ``region``), ``kind``, ``generation``, ``superseded``, ``start``/``end`` byte offsets and
    ``message``. Payloads of live msgpack and tensor-bundle sections are decoded too. Memory
    stays bounded: other payloads and tensor data are decoded in pieces and dropped, only msgpack
    sections (at most 64 MiB) and tensor headers (at most 16 MiB) are held whole.
    """
    problems: list[dict[str, Any]] = []
    try:
        reader = NvpReader(path)
    except FormatError as exc:
        return _report(os.fspath(path), [_problem(exc, region="trailer or index")], {})
    with reader:
        state = reader.index_state
        if reader.tail_bytes:
            start = reader.file_size - reader.tail_bytes
            problems.append({"region": "tail", "start": start, "end": reader.file_size,
                             "message": f"{reader.tail_bytes} bytes after the last valid trailer (generation "
                                        f"{reader.generation}): an interrupted append or a damaged newer index"})
        fd = reader.fileno()
        chain, chain_problem = _chain(fd, state)
        if chain_problem:
            problems.append(chain_problem)
        damaged = _check_sections(reader, chain, problems)
        problems.extend(_check_prefix_crcs(fd, chain, damaged))
        problems.extend(_check_not_in_indexes(state, chain))
        return _report(reader.path, problems, {
            "version": f"{reader.version[0]}.{reader.version[1]}",
            "generation": reader.generation,
            "generations_checked": len(chain),
            "sections": len(reader.sections),
            "stored_bytes": sum(i.stored_length for i in reader.sections),
            "raw_bytes": sum(i.raw_length for i in reader.sections),
            "bytes": reader.file_size,
            "required_features": list(reader.required_features),
        })


def _report(path: str, problems: list[dict[str, Any]], fields: dict[str, Any]) -> dict[str, Any]:
    return {"path": path, **fields, "ok": not problems, "problem_count": len(problems),
            "problems": problems[:MAX_PROBLEMS]}


def _problem(exc: FormatError, **where: Any) -> dict[str, Any]:
    message = str(exc)
    if exc.section is not None or exc.offset is not None:
        message = message.rsplit(" (", 1)[0]
    if exc.section is not None:
        where.setdefault("section", exc.section)
    if exc.offset is not None:
        where.setdefault("start", exc.offset)
    return {**where, "message": message}


def _kind_name(kind: int) -> str:
    try:
        return SectionKind(kind).name.lower()
    except ValueError:
        return f"kind {kind}"


def _check_sections(reader: NvpReader, chain: list[IndexState], problems: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Every section of every generation once (newest entry wins); returns the damaged byte ranges."""
    seen: set[tuple[int, int, int]] = set()
    damaged: list[tuple[int, int]] = []
    for gen in reversed(chain):
        for info in gen.sections:
            key = (info.offset, info.stored_length, info.crc32)
            if key in seen:
                continue
            seen.add(key)
            is_live = info.name in reader and reader.info(info.name) == info
            try:
                if is_live:
                    _check_live(reader, info)
                else:
                    _check_crc(reader.fileno(), info)
            except FormatError as exc:
                damaged.append((info.offset, info.offset + info.stored_length))
                problems.append(_problem(exc, section=info.name, kind=_kind_name(info.kind),
                                         generation=gen.generation, superseded=not is_live,
                                         start=info.offset, end=info.offset + info.stored_length))
    return damaged


def _check_live(reader: NvpReader, info: SectionInfo) -> None:
    if info.kind in MSGPACK_KINDS:
        unpack_msgpack(reader.read(info.name, MAX_MSGPACK_BYTES), section=info.name, offset=info.offset,
                       budget=reader.value_budget)
    elif info.kind in TENSOR_KINDS:
        _check_tensor_section(reader, info)
    else:
        for _ in reader.iter_read(info.name):
            pass


def _check_crc(fd: int, info: SectionInfo) -> None:
    """Stored bytes of a superseded section against its index entry's CRC-32 (read in pieces)."""
    crc, pos, end = 0, info.offset, info.offset + info.stored_length
    while pos < end:
        n = min(_CHUNK, end - pos)
        crc = zlib.crc32(read_exact(fd, n, pos), crc)
        pos += n
    if crc != info.crc32:
        raise FormatError("section checksum mismatch", section=info.name, offset=info.offset)


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
    check_tensors(bytes(head), info.raw_length, section=info.name, budget=reader.value_budget,
                  allow_coded=RANS_FEATURE in reader.required_features)


def _chain(fd: int, state: IndexState) -> tuple[list[IndexState], dict[str, Any] | None]:
    """All readable generations, oldest first, each pointing at a valid trailer of the one before."""
    chain = [state]
    try:
        while chain[-1].generation > 1:
            prev = prev_generation(fd, chain[-1])
            if prev.end > chain[-1].index_offset:
                raise FormatError(f"generation {prev.generation} ends after the index of generation "
                                  f"{chain[-1].generation}", offset=prev.trailer_offset)
            chain.append(prev)
    except FormatError as exc:
        return chain[::-1], _problem(exc, region=f"index of generation {chain[-1].generation - 1}")
    return chain[::-1], None


def _check_prefix_crcs(fd: int, chain: list[IndexState], damaged: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """CRC-32 of the prefix before each index against its stored value, once over the file.

    A mismatch already explained by a damaged section inside that prefix is not reported again;
    otherwise the damage lies outside every section: in padding or an older index or trailer.
    """
    out: list[dict[str, Any]] = []
    crc = pos = 0
    for state in chain:
        while pos < state.index_offset:
            n = min(_CHUNK, state.index_offset - pos)
            crc = zlib.crc32(read_exact(fd, n, pos), crc)
            pos += n
        explained = any(start < state.index_offset for start, _ in damaged)
        if crc != state.prefix_crc32 and not explained:
            out.append({"region": "padding or an older index", "start": 0, "end": state.index_offset,
                        "generation": state.generation,
                        "message": f"file checksum of bytes [0, {state.index_offset}) does not match generation "
                                   f"{state.generation}'s index, while every section inside is intact"})
    return out


def _check_not_in_indexes(state: IndexState, chain: list[IndexState]) -> list[dict[str, Any]]:
    """Live sections must not overlap any generation's index or trailer."""
    out: list[dict[str, Any]] = []
    spans = sorted([(info.offset, info.offset + info.stored_length, info.name) for info in state.sections]
                   + [(g.index_offset, g.end, None) for g in chain], key=lambda span: span[:2])
    for (a_start, a_end, a_name), (b_start, b_end, b_name) in zip(spans, spans[1:]):
        if a_end > b_start and (a_name is None) != (b_name is None):
            name = a_name if a_name is not None else b_name
            out.append({"section": name, "start": max(a_start, b_start), "end": min(a_end, b_end),
                        "message": "section overlaps an index or trailer"})
    return out
