"""The service's options and limits (`nvcodec serve` flags), checked once at start-up."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from ..errors import UsageError

MAX_TOKEN_BYTES = 4096
MAX_BATCH_WINDOW_MS = 10_000.0


@dataclass(frozen=True)
class ServeSettings:
    """What `nvcodec serve` runs with; `checked()` refuses values outside their ranges (UsageError).

    `cache_mb` bounds the caches: three quarters for prefix activations (on the device), one quarter
    for results. `tasks`: backbones loaded at start-up. `token`: the bearer token (None: no auth).
    """

    library: str
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "auto"
    tasks: tuple[str, ...] = ()
    token: str | None = field(default=None, repr=False)
    max_frames: int = 256
    max_body: int = 64 * 1024
    max_concurrent: int = 32
    request_timeout: float = 60.0
    batch_window_ms: float = 10.0
    cache_mb: float = 256.0
    batch_size: int = 4
    max_tasks: int = 8

    def checked(self) -> "ServeSettings":
        """These settings, or UsageError naming the first value out of range."""
        if not os.path.isdir(self.library):
            raise UsageError(f"{self.library}: not a directory")
        if not 0 <= self.port <= 65535:
            raise UsageError(f"--port must be in 0..65535, got {self.port}")
        for name, value, low in (("--max-frames", self.max_frames, 1), ("--max-body", self.max_body, 64),
                                 ("--max-concurrent", self.max_concurrent, 1), ("batch size", self.batch_size, 1),
                                 ("max tasks", self.max_tasks, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
        if not (math.isfinite(self.request_timeout) and self.request_timeout > 0):
            raise UsageError(f"--request-timeout must be a positive number of seconds, got {self.request_timeout}")
        if not (math.isfinite(self.batch_window_ms) and 0 <= self.batch_window_ms <= MAX_BATCH_WINDOW_MS):
            raise UsageError(f"--batch-window-ms must be in 0..{MAX_BATCH_WINDOW_MS:g}, got {self.batch_window_ms}")
        if not (math.isfinite(self.cache_mb) and self.cache_mb >= 0):
            raise UsageError(f"--cache-mb must be a number >= 0, got {self.cache_mb}")
        if self.token is not None and not self.token:
            raise UsageError("the bearer token is empty")
        return self


def read_token(path: str) -> str:
    """The bearer token in the file at `path`: its first line, stripped (UsageError when unreadable or empty)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TOKEN_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"--token-file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_TOKEN_BYTES:
        raise UsageError(f"--token-file {path}: more than {MAX_TOKEN_BYTES} bytes")
    try:
        lines = data.decode("utf-8").strip().splitlines()
    except UnicodeDecodeError:
        raise UsageError(f"--token-file {path}: not UTF-8 text") from None
    token = lines[0].strip() if lines else ""
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        raise UsageError(f"--token-file {path}: the first line must hold a token without spaces")
    return token
