"""`atomic_output`: write to a temporary path next to the target, rename onto it only on success."""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from nvcodec.errors import UsageError, no_space_as_error


@contextmanager
def atomic_output(target: Path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` if the block succeeds.

    On any exception the temporary file/folder is removed and the exception propagates.
    With ``directory=True`` the temporary path is a fresh folder.
    """
    target = Path(os.fspath(target))
    parent = target.parent
    if not parent.is_dir():
        raise UsageError(f"{target}: output folder {parent} does not exist")
    if target.is_dir() and not directory:
        raise UsageError(f"{target}: is a folder")
    tmp = parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        if directory:
            with no_space_as_error(target):
                tmp.mkdir()
        yield tmp
        if not directory:
            os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()
    except OSError:
        pass
