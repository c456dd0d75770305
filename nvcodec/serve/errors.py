"""Errors as HTTP: each nvcodec exit code (README's table) has a status; the service's own errors carry one.

Every error answers JSON: ``{"error": {"status", "type", "message", "exit_code"}}`` with a one-line
message (`exit_code` is the code `nvcodec infer` would exit with, or null for the service's own errors).
"""

from __future__ import annotations

from ..errors import (DegenerateFitError, FormatError, InputError, Interrupted, NoSpaceError, NotAttachedError,
                      NvcodecError, UsageError, WeightsError, as_nvcodec_error)

STATUS_BY_ERROR: list[tuple[type[NvcodecError], int]] = [
    (UsageError, 400),         # exit 2: bad arguments, unknown task, frames out of range
    (FormatError, 422),        # exit 3: not a valid .nvp file, or a damaged one
    (InputError, 422),         # exit 4: input media unreadable
    (WeightsError, 500),       # exit 5: task weights missing on the server
    (NotAttachedError, 409),   # exit 6: the task is not attached to this video
    (DegenerateFitError, 500),  # exit 7: never raised while serving
    (NoSpaceError, 507),       # exit 1: no space left on device
    (Interrupted, 503),        # exit 130
]


class ServeError(NvcodecError):
    """An error of the service itself (not of a file or a task), with its HTTP status; `cli_code`: the
    exit code `nvcodec infer` gives for the same mistake (None where the CLI has no such case)."""

    status = 500
    exit_code = 1
    cli_code: int | None = None


class BadName(ServeError):
    """A video name that is never served: absolute, `..`, encoded, NUL, hidden, not `.nvp`."""

    status = 400
    exit_code = cli_code = 2


class NotFound(ServeError):
    """No such video under LIBRARY (or a link leaving it)."""

    status = 404
    exit_code = cli_code = 2


class Unauthorized(ServeError):
    """A missing or wrong bearer token."""

    status = 401


class RequestTimeout(ServeError):
    """The client took longer than the request time limit to send its body."""

    status = 408


class TooLarge(ServeError):
    """A body over --max-body bytes, or more frames than --max-frames."""

    status = 413
    exit_code = 2


class Busy(ServeError):
    """More requests in flight than --max-concurrent."""

    status = 429


class ShuttingDown(ServeError):
    """The service is draining: it takes no new work."""

    status = 503


class Timeout(ServeError):
    """The request's work took longer than --request-timeout; its work is cancelled."""

    status = 504


class Abandoned(ServeError):
    """Nobody waits for this request any more (client gone or timed out); its work was dropped."""

    status = 499


def status_of(exc: BaseException) -> int:
    """The HTTP status answering `exc`."""
    if isinstance(exc, ServeError):
        return exc.status
    err = as_nvcodec_error(exc)
    if err is None:
        return 500
    if isinstance(exc, MemoryError):
        return 503
    for cls, status in STATUS_BY_ERROR:
        if isinstance(err, cls):
            return status
    return 500


def one_line(text: str, limit: int = 500) -> str:
    """`text` on one line, at most `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


def error_body(exc: BaseException) -> dict:
    """The JSON body answering `exc`: status, type, a one-line message and the infer exit code."""
    status = status_of(exc)
    err = exc if isinstance(exc, ServeError) else as_nvcodec_error(exc)
    if err is None:
        message, kind, code = f"internal error: {type(exc).__name__}: {exc}", "InternalError", None
    else:
        message, kind = str(err), type(err).__name__
        code = err.cli_code if isinstance(err, ServeError) else err.exit_code
    return {"error": {"status": status, "type": kind, "message": one_line(message), "exit_code": code}}
