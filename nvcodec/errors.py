"""Error types raised by nvcodec. Each carries the process exit code the CLI uses."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager


class NvcodecError(Exception):
    """Base class for every error nvcodec raises on purpose."""

    exit_code = 1


class UsageError(NvcodecError):
    """Wrong arguments: bad option values, unknown task, frames out of range."""

    exit_code = 2


class FormatError(NvcodecError):
    """Not a valid `.nvp` file, or a damaged one. Names the section and offset when known."""

    exit_code = 3

    def __init__(self, message: str, *, section: str | None = None, offset: int | None = None) -> None:
        self.section = section
        self.offset = offset
        where = []
        if section is not None:
            where.append(f"section {section!r}")
        if offset is not None:
            where.append(f"offset {offset}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)


class InputError(NvcodecError):
    """Input media that cannot be read: unreadable, corrupt, no video stream, zero frames, too large."""

    exit_code = 4


class WeightsError(NvcodecError):
    """Task weights that cannot be found or do not fit the backbone."""

    exit_code = 5


class NotAttachedError(NvcodecError):
    """The `.nvp` file has no routing entry for the requested task."""

    exit_code = 6


class LowFidelityError(NvcodecError):
    """`attach --strict`: the best adapter falls below the fidelity floor or the features are degenerate."""

    exit_code = 1


class NoSpaceError(NvcodecError):
    """The disk (or the user's quota) filled up while writing; nothing half-written is left behind."""

    exit_code = 1

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        super().__init__(f"no space left on device: {self.path}")


NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_no_space(exc: BaseException) -> bool:
    """Whether `exc` is an OSError saying the disk or quota is full."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS


@contextmanager
def no_space_as_error(path: str | os.PathLike[str]) -> Iterator[None]:
    """Re-raise an ENOSPC/EDQUOT OSError from the block as NoSpaceError(path); other errors pass."""
    try:
        yield
    except OSError as exc:
        if is_no_space(exc):
            raise NoSpaceError(path) from None
        raise


class DegenerateFitError(NvcodecError):
    """A fit that decodes the clip to a (near-)constant frame or does no better than one; not written."""

    exit_code = 7


def as_nvcodec_error(exc: BaseException) -> NvcodecError | None:
    """The NvcodecError reported for `exc` (full disk, other OSErrors, out of memory); None for a bug."""
    if isinstance(exc, NvcodecError):
        return exc
    if isinstance(exc, MemoryError):
        return NvcodecError("out of memory")
    if isinstance(exc, OSError):
        if is_no_space(exc):
            return NoSpaceError(exc.filename or "?")
        where = f"{exc.filename}: " if exc.filename else ""
        return NvcodecError(f"{where}{exc.strerror or exc}")
    return None


class Interrupted(NvcodecError):
    """The user interrupted a long operation (Ctrl-C)."""

    exit_code = 130


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "other failure (including no space left on device)",
    2: "usage error (bad arguments, unknown task, frames out of range)",
    3: "not a valid .nvp file, or a damaged one",
    4: "input media unreadable or unsupported",
    5: "task weights missing or not matching the backbone",
    6: "task not attached to this .nvp file (run `nvcodec attach`)",
    7: "no usable fit: a (near-)constant frame, or a time budget too small for the clip (nothing written)",
    130: "interrupted",
}
