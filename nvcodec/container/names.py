"""Validation of section, feature and tensor names (UTF-8, 1..255 bytes, no NUL)."""

from __future__ import annotations

from nvcodec.container.layout import MAX_NAME_BYTES
from nvcodec.errors import FormatError


def encode_name(name: object, what: str = "section name") -> bytes:
    """Return the UTF-8 bytes of a valid name, or raise FormatError."""
    if not isinstance(name, str):
        raise FormatError(f"{what} must be a str, got {type(name).__name__}")
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError(f"{what} {name!r} is not encodable as UTF-8") from None
    _check_raw(raw, what, name)
    return raw


def decode_name(raw: bytes, what: str = "section name", *, offset: int | None = None) -> str:
    """Decode and validate a stored name."""
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{what} is not valid UTF-8", offset=offset) from None
    _check_raw(raw, what, name, offset)
    return name


def _check_raw(raw: bytes, what: str, name: str, offset: int | None = None) -> None:
    if not 1 <= len(raw) <= MAX_NAME_BYTES:
        raise FormatError(f"{what} {name!r} must be 1..{MAX_NAME_BYTES} bytes of UTF-8, got {len(raw)}",
                          offset=offset)
    if b"\x00" in raw:
        raise FormatError(f"{what} {name!r} contains a NUL byte", offset=offset)
