"""Media I/O through PyAV: probe and read videos, PNG folders and y4m; write mp4/mkv/y4m/PNG; contact sheets.

Benchmark helpers for conventional codecs live in :mod:`nvcodec.video.codecs`.
"""

from __future__ import annotations

from nvcodec.video.png import encode_png, write_png
from nvcodec.video.reader import (
    MAX_HEIGHT,
    MAX_PIXELS,
    MAX_WIDTH,
    PNG_DIR_FPS,
    VideoInfo,
    iter_frames,
    probe_video,
    read_frames,
)
from nvcodec.video.sheet import contact_sheet, feature_sheet, side_by_side
from nvcodec.video.writer import write_png_dir, write_video, write_y4m

__all__ = [
    "MAX_HEIGHT",
    "MAX_PIXELS",
    "MAX_WIDTH",
    "PNG_DIR_FPS",
    "VideoInfo",
    "contact_sheet",
    "encode_png",
    "feature_sheet",
    "iter_frames",
    "probe_video",
    "read_frames",
    "side_by_side",
    "write_png",
    "write_png_dir",
    "write_video",
    "write_y4m",
]
