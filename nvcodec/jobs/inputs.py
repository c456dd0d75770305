"""Batch inputs: a folder (recursive) or a text/CSV list, each input mapped to its `.nvp` output."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

from ..codec.frames import parse_range
from ..errors import UsageError

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".y4m", ".ts", ".mts", ".flv", ".mpg", ".mpeg")
LIST_EXTENSIONS = (".txt", ".csv", ".lst")
MAX_LIST_BYTES = 64 << 20
MAX_INPUTS = 1_000_000


@dataclass(frozen=True)
class BatchInput:
    """One video to encode: its path, optional half-open frame range and the `.nvp` it becomes."""

    path: str
    output: str
    frames: tuple[int | None, int | None] | None = None


def _is_png_dir(path: str) -> bool:
    try:
        return any(e.is_file() and e.name.lower().endswith(".png") and not e.name.startswith(".")
                   for e in os.scandir(path))
    except OSError:
        return False


def _range_suffix(frames: tuple[int | None, int | None] | None) -> str:
    if frames is None:
        return ""
    a, b = frames
    return f".{'' if a is None else a}-{'' if b is None else b}"


def _output_for(rel: str, out_dir: str, frames: tuple[int | None, int | None] | None) -> str:
    stem = rel.rstrip(os.sep)
    root, ext = os.path.splitext(stem)
    if ext.lower() in VIDEO_EXTENSIONS:
        stem = root
    return os.path.join(out_dir, stem + _range_suffix(frames) + ".nvp")


def scan_folder(folder: str, out_dir: str) -> list[BatchInput]:
    """Every video file (by extension) and every folder holding PNG frames under `folder`, in name order.

    Outputs mirror the folder tree under `out_dir` (`a/b.mp4` -> `OUT/a/b.nvp`); `out_dir` itself
    is not scanned when it lies inside `folder`.
    """
    found: list[BatchInput] = []
    out_abs = os.path.abspath(out_dir)
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and os.path.abspath(os.path.join(root, d)) != out_abs)
        rel_root = os.path.relpath(root, folder)
        if rel_root != "." and _is_png_dir(root):
            found.append(BatchInput(root, _output_for(rel_root, out_dir, None)))
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(VIDEO_EXTENSIONS):
                continue
            rel = os.path.normpath(os.path.join(rel_root, name))
            found.append(BatchInput(os.path.join(root, name), _output_for(rel, out_dir, None)))
        if len(found) > MAX_INPUTS:
            raise UsageError(f"{folder}: more than {MAX_INPUTS:,} inputs; split the batch")
    if _is_png_dir(folder):
        found.append(BatchInput(folder, _output_for(os.path.basename(os.path.abspath(folder)), out_dir, None)))
    return found


def read_list(list_path: str, out_dir: str) -> list[BatchInput]:
    """Rows of `PATH[,A:B]` (CSV; `#` comments, blank lines and a `path` header skipped).

    Relative paths are relative to the list's folder. Outputs are `OUT/<name>.nvp`, with
    `.A-B` added when a row has a frame range, so one video can be listed with several ranges.
    """
    if os.path.getsize(list_path) > MAX_LIST_BYTES:
        raise UsageError(f"{list_path}: list larger than {MAX_LIST_BYTES >> 20} MiB")
    base = os.path.dirname(os.path.abspath(list_path))
    found: list[BatchInput] = []
    try:
        with open(list_path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(line for line in fh if line.strip() and not line.lstrip().startswith("#")))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{list_path}: not a text/CSV list of paths ({exc})") from None
    for n, row in enumerate(rows, 1):
        cells = [c.strip() for c in row]
        if n == 1 and cells and cells[0].lower() == "path":
            continue
        if not cells or not cells[0] or len(cells) > 2:
            raise UsageError(f"{list_path}: row {n} must be PATH or PATH,A:B")
        frames = parse_range(cells[1]) if len(cells) == 2 and cells[1] else None
        path = cells[0] if os.path.isabs(cells[0]) else os.path.join(base, cells[0])
        found.append(BatchInput(path, _output_for(os.path.basename(os.path.normpath(cells[0])), out_dir, frames), frames))
        if len(found) > MAX_INPUTS:
            raise UsageError(f"{list_path}: more than {MAX_INPUTS:,} inputs; split the batch")
    return found


def collect_inputs(source: str, out_dir: str) -> list[BatchInput]:
    """The inputs of `nvcodec batch SOURCE OUT_DIR`: a folder, or a list file; UsageError when none or clashing."""
    if os.path.isdir(source):
        inputs = scan_folder(source, out_dir)
    elif os.path.isfile(source) and source.lower().endswith(LIST_EXTENSIONS):
        inputs = read_list(source, out_dir)
    elif os.path.exists(source):
        raise UsageError(f"{source}: give a folder of videos or a list file ({', '.join(LIST_EXTENSIONS)})")
    else:
        raise UsageError(f"{source}: no such file or folder")
    if not inputs:
        raise UsageError(f"{source}: no videos found (extensions: {' '.join(VIDEO_EXTENSIONS)}, or PNG folders)")
    seen: dict[str, str] = {}
    for item in inputs:
        if item.output in seen:
            raise UsageError(f"{seen[item.output]} and {item.path} would both be written to {item.output}")
        seen[item.output] = item.path
    return inputs
