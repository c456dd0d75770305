"""The `.nvp` files under LIBRARY, named by their path relative to it, and nothing else.

`Library.resolve` refuses every name that could reach outside LIBRARY or hide what it names:
absolute paths, ``..`` and ``.`` parts, empty parts, backslashes, percent signs (encoded variants
such as ``%2e%2e`` arrive decoded once by the server; anything still encoded is refused), NUL and
other control characters, hidden parts (``.name``) and names not ending in ``.nvp``. A name that
passes is resolved with every symlink followed and must still lie under LIBRARY's real path and
be a regular file.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from ..errors import UsageError
from .errors import BadName, NotFound

MAX_NAME_CHARS = 1024
MAX_LISTED = 10_000
"""`videos()` stops after this many files (a LIBRARY is not a file system crawl)."""


@dataclass(frozen=True)
class VideoKey:
    """What identifies one version of a file: its real path, device, inode, size and modification time.

    Appending to a file (attach, tune) changes its size and time, so caches keyed by it never
    answer from an older version.
    """

    path: str
    device: int
    inode: int
    size: int
    mtime_ns: int


def check_name(name: str) -> str:
    """`name` when it is a plain relative `.nvp` path; BadName (400) saying why otherwise."""
    if not isinstance(name, str) or not name:
        raise BadName("a video name is a non-empty path relative to LIBRARY")
    if len(name) > MAX_NAME_CHARS:
        raise BadName(f"video name longer than {MAX_NAME_CHARS} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BadName("video name holds a control character")
    if "\\" in name or "%" in name:
        raise BadName("video name holds a backslash or a percent sign")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise BadName("video name must be relative to LIBRARY")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise BadName("video name must not hold empty, '.' or '..' parts")
    if any(p.startswith(".") for p in parts):
        raise BadName("video name must not name hidden files or folders")
    if not name.endswith(".nvp"):
        raise BadName("only .nvp files are served")
    return name


class Library:
    """The `.nvp` files under `root` (a directory); see the module docstring for what is refused."""

    def __init__(self, root: str) -> None:
        if not os.path.isdir(root):
            raise UsageError(f"{root}: not a directory")
        self.root = os.path.realpath(root)

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root.rstrip(os.sep) + os.sep)

    def resolve(self, name: str) -> str:
        """The real path of video `name`: BadName (400) for a refused name, NotFound (404) when it is
        not a regular file under LIBRARY (a symlink leaving LIBRARY counts as not found)."""
        check_name(name)
        real = os.path.realpath(os.path.join(self.root, *name.split("/")))
        if not self._inside(real):
            raise NotFound(f"no video {name!r} in the library")
        try:
            st = os.stat(real)
        except OSError:
            raise NotFound(f"no video {name!r} in the library") from None
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(f"no video {name!r} in the library")
        return real

    def key(self, name: str) -> VideoKey:
        """The identity of the current version of video `name` (see `VideoKey`)."""
        real = self.resolve(name)
        try:
            st = os.stat(real)
        except OSError:
            raise NotFound(f"no video {name!r} in the library") from None
        return VideoKey(real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def videos(self) -> list[str]:
        """Names of the `.nvp` files under LIBRARY, sorted (hidden entries and links leaving it skipped)."""
        out: list[str] = []
        for top, dirs, files in os.walk(self.root, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in sorted(files):
                rel = os.path.relpath(os.path.join(top, f), self.root).replace(os.sep, "/")
                try:
                    self.resolve(rel)
                except (BadName, NotFound):
                    continue
                out.append(rel)
                if len(out) >= MAX_LISTED:
                    return sorted(out)
        return sorted(out)
