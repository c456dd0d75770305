"""`NvpReader`: opens an `.nvp` file, reading only the preamble, the last trailer and its index."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from nvcodec.container.compression import decode_payload, iter_payload
from nvcodec.container.index import (
    IndexState, check_features, find_last_generation, read_exact, read_preamble,
)
from nvcodec.container.layout import MAX_MSGPACK_BYTES, RANS_FEATURE, SectionInfo
from nvcodec.container.msgpack_io import ValueBudget, unpack_msgpack
from nvcodec.errors import FormatError

if TYPE_CHECKING:
    from nvcodec.container.tensors import TensorBundle

# Reader policy for untrusted files (spec section 16): one read decodes at most
# max(READ_FLOOR, READ_PER_FILE_BYTE x file size) bytes, and all msgpack decoding of one open
# file together at most VALUE_FLOOR + file size / VALUE_BYTES values.
READ_FLOOR = 16 * 1024 * 1024
READ_PER_FILE_BYTE = 16
VALUE_FLOOR = 1 << 19
VALUE_BYTES = 8


def load_state(fd: int) -> tuple[tuple[int, int], int, IndexState]:
    """Read preamble and last complete generation of an open file: (version, file_size, state)."""
    try:
        file_size = os.fstat(fd).st_size
    except OSError as exc:
        raise FormatError(f"cannot stat file: {exc}") from None
    version = read_preamble(fd, file_size)
    state = find_last_generation(fd, file_size)
    check_features(state.features)
    return version, file_size, state


class NvpReader:
    """Random access to the sections of an `.nvp` file. Use as a context manager."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            self._fd: int | None = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise FormatError(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            self.version, self.file_size, self._state = load_state(self._fd)
        except BaseException:
            self.close()
            raise
        self.generation: int = self._state.generation
        self.tail_bytes: int = self.file_size - self._state.end
        self.sections: list[SectionInfo] = list(self._state.sections)
        self.required_features: list[str] = list(self._state.features)
        self._by_name = {s.name: s for s in self.sections}
        self.max_read_bytes: int = max(READ_FLOOR, READ_PER_FILE_BYTE * self.file_size)
        self.value_budget = ValueBudget(VALUE_FLOOR + self.file_size // VALUE_BYTES)
        self._msgpack: dict[str, Any] = {}

    def __enter__(self) -> NvpReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._by_name

    def info(self, name: str) -> SectionInfo:
        """Index entry of section `name`."""
        try:
            return self._by_name[name]
        except (KeyError, TypeError):
            raise FormatError("no such section", section=str(name)) from None

    def read_stored(self, name: str) -> bytes:
        """Stored (possibly compressed) bytes of a section, checksum verified."""
        info = self.info(name)
        if self._fd is None:
            raise FormatError("reader is closed", section=name)
        stored = read_exact(self._fd, info.stored_length, info.offset)
        if zlib.crc32(stored) != info.crc32:
            raise FormatError("section checksum mismatch", section=name, offset=info.offset)
        return stored

    def check_size(self, name: str, max_bytes: int | None = None) -> SectionInfo:
        """Index entry of `name`, FormatError if its raw length exceeds `max_bytes` or the reader's cap."""
        info = self.info(name)
        limit = self.max_read_bytes if max_bytes is None else min(max_bytes, self.max_read_bytes)
        if info.raw_length > limit:
            raise FormatError(f"section holds {info.raw_length} bytes, more than the {limit} this reader "
                              "accepts for it", section=name, offset=info.offset)
        return info

    def read(self, name: str, max_bytes: int | None = None) -> bytes:
        """Decoded payload of a section, checksum verified; its raw length is checked before decoding."""
        info = self.check_size(name, max_bytes)
        return decode_payload(self.read_stored(name), info.codec, info.raw_length, name, info.offset)

    def iter_read(self, name: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        """Decoded payload of a section in pieces of at most `chunk` bytes, checksum verified first."""
        info = self.info(name)
        return iter_payload(self.read_stored(name), info.codec, info.raw_length, name, info.offset, chunk)

    def read_msgpack(self, name: str, max_bytes: int = MAX_MSGPACK_BYTES) -> Any:
        """Payload of a section decoded as bounded msgpack; parsed once per reader.

        The same object is returned on every call: callers must not modify it.
        """
        info = self.check_size(name, max_bytes)
        if name not in self._msgpack:
            self._msgpack[name] = unpack_msgpack(self.read(name), section=name, offset=info.offset,
                                                 budget=self.value_budget)
        return self._msgpack[name]

    def read_tensors(self, name: str, max_bytes: int | None = None) -> TensorBundle:
        """Payload of a section decoded as a tensor bundle.

        Its raw length, and the bytes its entropy-coded tensors decode to, are checked against
        `max_bytes` (and the reader's cap) before decoding.
        """
        from nvcodec.container.tensors import unpack_tensors  # numpy loads only when tensors are read

        limit = self.max_read_bytes if max_bytes is None else min(max_bytes, self.max_read_bytes)
        return unpack_tensors(self.read(name, max_bytes), section=name, budget=self.value_budget,
                              max_decoded=limit, allow_coded=RANS_FEATURE in self.required_features)

    def fileno(self) -> int:
        """The open file descriptor (FormatError once closed)."""
        if self._fd is None:
            raise FormatError("reader is closed")
        return self._fd

    @property
    def index_state(self) -> IndexState:
        """Trailer and index fields of the generation this reader shows."""
        return self._state

    def close(self) -> None:
        """Release the file descriptor (idempotent)."""
        fd = getattr(self, "_fd", None)
        if fd is not None:
            self._fd = None
            os.close(fd)

    def __del__(self) -> None:
        self.close()
