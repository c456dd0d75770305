"""Writing `.nvp` files: atomic creation, and locked, append-only updates."""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from nvcodec.container.compression import encode_payload, too_expansive
from nvcodec.container.index import (
    check_generation_limit, encode_index, encode_trailer, read_exact,
)
from nvcodec.container.layout import (
    DICT_FEATURE, MAGIC, MAJOR_VERSION, MAX_SECTIONS, MINOR_VERSION, PREAMBLE, Codec, SectionInfo, align_up,
)
from nvcodec.container.names import encode_name
from nvcodec.container.reader import NvpReader, load_state
from nvcodec.errors import FormatError, NoSpaceError, is_no_space, no_space_as_error

_LOCK_RETRIES = 100


@dataclass
class Section:
    """A section to write: name, kind (`SectionKind` or any other non-zero u16), payload and codec.

    `features` names required features its payload uses; the writer lists them in the index. Codec
    ZSTD_DICT stores the payload with the built-in dictionary when that is smaller than plain ZSTD (and
    then lists the `zstd-dict-1` feature), else as ZSTD; either becomes RAW if zstd would expand too much.
    """

    name: str
    kind: int
    payload: bytes
    codec: int = Codec.ZSTD
    features: tuple[str, ...] = ()


def _validate(sections: list[Section]) -> None:
    names: set[str] = set()
    for s in sections:
        if not isinstance(s, Section):
            raise FormatError(f"expected Section, got {type(s).__name__}")
        encode_name(s.name)
        if s.name in names:
            raise FormatError("section name given twice", section=s.name)
        names.add(s.name)
        if isinstance(s.kind, bool) or not isinstance(s.kind, int) or not 1 <= s.kind <= 0xFFFF:
            raise FormatError(f"section kind {s.kind!r} is not an integer in 1..65535", section=s.name)
        if s.codec not in (Codec.RAW, Codec.ZSTD, Codec.ZSTD_DICT):
            raise FormatError(f"unknown codec {s.codec!r}", section=s.name)
        if not isinstance(s.payload, (bytes, bytearray, memoryview)) or not memoryview(s.payload).c_contiguous:
            raise FormatError(f"payload must be contiguous bytes, got {type(s.payload).__name__}", section=s.name)


def _section_features(sections: list[Section]) -> list[str]:
    return [f for s in sections for f in s.features]


def _codec_features(infos: list[SectionInfo]) -> list[str]:
    return [DICT_FEATURE] if any(i.codec == Codec.ZSTD_DICT for i in infos) else []


def _stored(payload: bytes | bytearray | memoryview, codec: int) -> tuple[bytes | bytearray | memoryview, int]:
    """The stored bytes and the codec actually used (see `Section`)."""
    stored = encode_payload(payload, codec)
    if codec == Codec.ZSTD_DICT:
        plain = encode_payload(payload, Codec.ZSTD)
        if len(plain) <= len(stored):
            stored, codec = plain, Codec.ZSTD
    if codec != Codec.RAW and too_expansive(memoryview(payload).nbytes, len(stored)):
        return memoryview(payload).cast("B"), Codec.RAW
    return stored, codec


def _features(existing: Iterable[str], added: Iterable[str]) -> list[str]:
    out = list(existing)
    for f in added:
        encode_name(f, "feature name")
        if f not in out:
            out.append(f)
    return out


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


class _Emitter:
    """Writes padding and sections at increasing offsets, keeping the running CRC-32 of the file prefix."""

    def __init__(self, fd: int, pos: int, crc: int) -> None:
        self.fd, self.pos, self.crc = fd, pos, crc

    def put(self, data: bytes) -> None:
        _pwrite_all(self.fd, data, self.pos)
        self.crc = zlib.crc32(data, self.crc)
        self.pos += len(data)

    def pad(self) -> None:
        self.put(bytes(align_up(self.pos) - self.pos))

    def sections(self, sections: list[Section]) -> list[SectionInfo]:
        infos = []
        for s in sections:
            self.pad()
            stored, codec = _stored(s.payload, int(s.codec))
            raw_length = memoryview(s.payload).nbytes
            infos.append(SectionInfo(s.name, int(s.kind), int(codec), self.pos, len(stored), raw_length,
                                     zlib.crc32(stored)))
            self.put(stored)
        self.pad()
        return infos

    def finish(self, index: bytes, generation: int) -> None:
        index_offset = self.pos
        _pwrite_all(self.fd, index, index_offset)
        os.fsync(self.fd)
        _pwrite_all(self.fd, encode_trailer(index_offset, index, generation), index_offset + len(index))
        os.fsync(self.fd)


def write_nvp(path: str | os.PathLike[str], sections: list[Section], required_features: Iterable[str] = ()) -> None:
    """Create (or atomically replace) an `.nvp` file holding `sections` as generation 1."""
    path = os.fspath(path)
    sections = list(sections)
    _validate(sections)
    if len(sections) > MAX_SECTIONS:
        raise FormatError(f"too many sections: {len(sections)} > {MAX_SECTIONS}")
    features = _features((), [*required_features, *_section_features(sections)])
    directory = os.path.dirname(os.path.abspath(path))
    tmp = _write_temp(path, sections, features)
    try:
        with no_space_as_error(path):
            _replace_locked(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
    _fsync_dir(directory)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _write_temp(path: str, sections: list[Section], features: list[str]) -> str:
    """A complete generation-1 file of `sections` in a temporary file beside `path`; returns its name."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".tmp")
    except OSError as exc:
        if is_no_space(exc):
            raise NoSpaceError(path) from None
        raise FormatError(f"cannot create a temporary file in {directory}: {exc.strerror}") from None
    try:
        try:
            with no_space_as_error(path):
                emit = _Emitter(fd, 0, 0)
                emit.put(PREAMBLE.pack(MAGIC, MAJOR_VERSION, MINOR_VERSION, 0))
                infos = emit.sections(sections)
                features = _features(features, _codec_features(infos))
                emit.finish(encode_index(1, 0, emit.crc, infos, features), 1)
                os.fchmod(fd, _mode_for(path))
        finally:
            os.close(fd)
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def _mode_for(path: str) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o644


def _replace_locked(tmp: str, path: str) -> None:
    """Rename `tmp` over `path` while holding the lock of any existing file, so no append is cut short."""
    try:
        old = os.open(path, os.O_RDONLY)
    except OSError:
        old = None
    try:
        if old is not None:
            fcntl.flock(old, fcntl.LOCK_EX)
        os.replace(tmp, path)
    finally:
        if old is not None:
            os.close(old)


def _fsync_quietly(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError:
        pass


def _fsync_dir(directory: str) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _open_locked(path: str) -> int:
    """Open `path` read-write and take its exclusive lock, retrying if it was replaced meanwhile."""
    for _ in range(_LOCK_RETRIES):
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise FormatError(f"cannot open {path} for appending: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            current = os.stat(path)
            mine = os.fstat(fd)
        except OSError:
            os.close(fd)
            continue
        if (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
            return fd
        os.close(fd)
    raise FormatError(f"{path} keeps being replaced; cannot lock it for appending")


def append_nvp(path: str | os.PathLike[str], sections: list[Section], remove: Iterable[str] = (),
               required_features: Iterable[str] = (),
               update: Callable[[NvpReader], Iterable[Section]] | None = None) -> None:
    """Append `sections` as a new generation (same name supersedes), dropping `remove` names from the index.

    `update(reader)` runs while the file is locked, on a reader of its latest generation, and returns
    further sections: read-modify-write of shared metadata (routing) goes there, so that concurrent
    appends never write back a stale copy.
    """
    path = os.fspath(path)
    sections = list(sections)
    _validate(sections)
    remove_set = {remove} if isinstance(remove, str) else set(remove)
    fd = _open_locked(path)
    try:
        if update is not None:
            with NvpReader(path) as latest:
                sections += list(update(latest))
            _validate(sections)
        _, file_size, state = load_state(fd)
        generation = state.generation + 1
        check_generation_limit(generation)
        new_names = {s.name for s in sections}
        kept = [s for s in state.sections if s.name not in remove_set and s.name not in new_names]
        if len(kept) + len(sections) > MAX_SECTIONS:
            raise FormatError(f"too many sections: {len(kept) + len(sections)} > {MAX_SECTIONS}")
        features = _features(state.features, [*required_features, *_section_features(sections)])
        if file_size > state.end:
            os.ftruncate(fd, state.end)
            os.fsync(fd)
        last = read_exact(fd, state.end - state.index_offset, state.index_offset)
        emit = _Emitter(fd, state.end, zlib.crc32(last, state.prefix_crc32))
        try:
            with no_space_as_error(path):
                infos = emit.sections(sections)
                features = _features(features, _codec_features(infos))
                index = encode_index(generation, state.trailer_offset, emit.crc, kept + infos, features)
                emit.finish(index, generation)
        except BaseException:
            os.ftruncate(fd, state.end)
            _fsync_quietly(fd)
            raise
    finally:
        os.close(fd)


def compact_nvp(path: str | os.PathLike[str]) -> dict[str, int]:
    """Rewrite `path` with only its live sections, as generation 1 (superseded generations dropped).

    The file stays locked from reading to the atomic rename, so no append can slip in between;
    on any failure the original is untouched. Returns bytes before and after.
    """
    path = os.fspath(path)
    fd = _open_locked(path)
    try:
        before = os.fstat(fd).st_size
        with NvpReader(path) as reader:
            sections = [Section(s.name, s.kind, reader.read(s.name), s.codec) for s in reader.sections]
            features = list(reader.required_features)
        tmp = _write_temp(path, sections, _features((), features))
        try:
            after = os.path.getsize(tmp)
            os.replace(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise
        _fsync_dir(os.path.dirname(os.path.abspath(path)))
    finally:
        os.close(fd)
    return {"bytes_before": before, "bytes_after": after}
