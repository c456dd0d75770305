"""Probe and decode videos to uint8 RGB frames through PyAV.

Inputs: anything FFmpeg demuxes and decodes (mp4/mov, mkv/webm, avi, y4m, ... with H.264,
HEVC, VP8/VP9, AV1, FFV1, ...), and folders of PNG frames.

Rules (what every function here does the same way):

- Stream selection: ``stream=None`` is the first video stream; ``stream=N`` is the N-th
  *video* stream (0-based, counting video streams only, attached cover pictures excluded),
  not the absolute stream index. ``VideoInfo.stream_index`` reports the absolute index.
- Frame count: ``VideoInfo.frames`` is exactly the number of frames :func:`read_frames`
  returns. :func:`probe_video` counts them by demuxing and decoding the stream (no pixel
  conversion), because container metadata is missing (Matroska/WebM), or disagrees with
  what the decoder outputs (MP4 edit lists, hidden VP8/VP9 frames). ``exact=False`` takes
  the container's count (or the number of packets) instead, which is fast but may be off.
- Frames are decoded as stored: no frame-rate conversion (variable-frame-rate sources give
  their decoded frames, ``fps`` is the average rate), no rotation from display matrices
  (reported in ``VideoInfo.rotation``), no sample-aspect-ratio correction. If the
  resolution changes mid-stream, later frames are scaled to the first frame's size.
- Colour: frames are converted to ``rgb24`` by swscale honouring the stream's matrix
  (``colorspace``) and range (``color_range``, ``yuvj*`` formats are full range). Untagged
  YUV is treated as BT.601, like FFmpeg. No transfer-function or gamut conversion and no
  HDR tone mapping. Chroma is upsampled with bicubic interpolation, accurate rounding and
  full chroma interpolation.
- PNG folders: every ``*.png`` file (case-insensitive, dotfiles skipped) in natural name
  order (``frame2`` before ``frame10``); all must have the same size; alpha is dropped,
  16-bit and grey PNGs are converted to 8-bit RGB; the frame rate is :data:`PNG_DIR_FPS`.
"""

from __future__ import annotations

import operator
import os
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from av.video.reformatter import Interpolation

from nvcodec.errors import InputError, NvcodecError, UsageError
from nvcodec.progress import ProgressCallback, emit

__all__ = [
    "MAX_WIDTH",
    "MAX_HEIGHT",
    "MAX_PIXELS",
    "PNG_DIR_FPS",
    "VideoInfo",
    "probe_video",
    "read_frames",
    "iter_frames",
]

MAX_WIDTH = 8192
MAX_HEIGHT = 8192
MAX_PIXELS = 8192 * 4320
PNG_DIR_FPS = 25.0

_RGB_INTERP = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PIX_FMT = {
    (0, 8): "gray", (0, 16): "gray16be", (2, 8): "rgb24", (2, 16): "rgb48be",
    (4, 8): "ya8", (4, 16): "ya16be", (6, 8): "rgba", (6, 16): "rgba64be",
}
_COLORSPACE = {
    0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco",
    9: "bt2020nc", 10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc",
    13: "chroma-derived-c", 14: "ictcp",
}
_COLOR_RANGE = {1: "tv", 2: "pc"}
_PRIMARIES = {
    1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
    9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213",
}
_TRC = {
    1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
    9: "log100", 10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1",
    14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 17: "smpte428", 18: "arib-std-b67",
}
_UNSPECIFIED = {id(_COLORSPACE): (2, 3), id(_COLOR_RANGE): (0,), id(_PRIMARIES): (0, 2, 3), id(_TRC): (0, 2, 3)}


@dataclass
class VideoInfo:
    """What :func:`probe_video` knows about one video stream (see the module notes).

    ``width``/``height``: size of the decoded frames; ``frames``: exact decoded frame count
    (``frames_exact`` False when probed with ``exact=False``); ``fps`` (= ``fps_num /
    fps_den``): average frame rate; ``codec``: FFmpeg codec name ("h264", "hevc", "vp9",
    "av1", ...); ``pix_fmt``: decoded pixel format; ``color_*``: FFmpeg names of the stream's
    colour tags ("bt709", "tv"/"pc", ...) or None when untagged; ``container``: FFmpeg
    demuxer name ("png_dir" for PNG folders); ``stream_index``: absolute index of the
    stream in the file; ``bit_rate``: bits/s from the stream header, else measured from
    packet sizes; ``duration_s``: stream duration, else ``frames / fps``; ``rotation``:
    display-matrix rotation in degrees (not applied to frames).
    """

    width: int
    height: int
    frames: int
    fps: float
    fps_num: int
    fps_den: int
    codec: str
    pix_fmt: str | None
    color_space: str | None
    color_range: str | None
    color_primaries: str | None
    color_trc: str | None
    container: str
    stream_index: int
    bit_rate: int | None
    duration_s: float
    rotation: int = 0
    frames_exact: bool = True

    def to_dict(self) -> dict:
        """Plain-type dict (JSON/msgpack ready)."""
        return asdict(self)


PathLike = str | os.PathLike


def probe_video(path: PathLike, stream: int | None = None, *, exact: bool = True) -> VideoInfo:
    """Describe a video stream of a file or PNG folder; counts frames exactly unless ``exact=False``."""
    p = _check_path(path)
    if p.is_dir():
        with _media_errors(p):
            return _probe_png_dir(p, stream)
    with _media_errors(p):
        _check_y4m(p)
    with _media_errors(p), _open(p) as container:
        vs = _select_stream(container, stream, p)
        if exact:
            return _probe_av(p, container, vs)
        return _probe_av_fast(p, container, vs)


def read_frames(
    path: PathLike,
    *,
    stream: int | None = None,
    frames: tuple[int, int] | None = None,
    max_frames: int | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, VideoInfo]:
    """Decode frames ``[a, b)`` (all by default, at most ``max_frames``) as uint8 RGB ``(N, H, W, 3)``.

    The returned :class:`VideoInfo` describes the whole stream, not the selection.
    ``progress`` gets ``stage="read_frames"`` events, one per frame.
    """
    info = probe_video(path, stream)
    start, stop = _resolve_range(info.frames, frames, max_frames)
    try:
        out = np.empty((stop - start, info.height, info.width, 3), dtype=np.uint8)
    except MemoryError:
        gib = (stop - start) * info.height * info.width * 3 / 2**30
        raise InputError(
            f"{path}: {stop - start} frames of {info.width}x{info.height} need {gib:.1f} GiB;"
            " read fewer (frames=, max_frames=) or use iter_frames"
        ) from None
    n = 0
    for n, frame in enumerate(_iter_rgb(Path(path), stream, info, start, stop), start=1):
        out[n - 1] = frame
        emit(progress, "read_frames", n, stop - start)
    if n != stop - start:
        raise InputError(f"{path}: decoder returned {n} frames of the {stop - start} requested on a second pass")
    return out, info


def iter_frames(
    path: PathLike,
    *,
    stream: int | None = None,
    frames: tuple[int, int] | None = None,
    max_frames: int | None = None,
) -> Iterator[np.ndarray]:
    """Yield frames ``[a, b)`` one at a time as uint8 RGB ``(H, W, 3)`` (bounded memory).

    Probes first (one decode pass without pixel conversion) so that range errors are raised
    before the first frame is yielded.
    """
    info = probe_video(path, stream)
    start, stop = _resolve_range(info.frames, frames, max_frames)
    return _iter_rgb(Path(path), stream, info, start, stop)


def _iter_rgb(p: Path, stream: int | None, info: VideoInfo, start: int, stop: int) -> Iterator[np.ndarray]:
    if p.is_dir():
        files = _png_files(p)
        for f in files[start:stop]:
            yield _read_png_rgb(f, info.width, info.height)
        return
    with _media_errors(p), _open(p) as container:
        vs = _select_stream(container, stream, p)
        for i, frame in enumerate(_decode(container, vs)):
            if i >= stop:
                break
            if i >= start:
                yield _to_rgb(frame, info.width, info.height)


def _resolve_range(total: int, frames: tuple[int, int] | None, max_frames: int | None) -> tuple[int, int]:
    if frames is None:
        start, stop = 0, total
    else:
        try:
            start, stop = (int(v) for v in frames)
        except (TypeError, ValueError):
            raise UsageError(f"frame range must be two integers (start, stop), got {frames!r}") from None
        if not 0 <= start < stop <= total:
            raise UsageError(
                f"frame range [{start}, {stop}) is out of range for a {total}-frame video"
                f" (half-open, 0 <= start < stop <= {total})"
            )
    if max_frames is not None:
        if int(max_frames) < 1:
            raise UsageError(f"max_frames must be at least 1, got {max_frames}")
        stop = min(stop, start + int(max_frames))
    return start, stop


def _check_path(path: PathLike) -> Path:
    try:
        p = Path(os.fspath(path))
    except TypeError:
        raise UsageError(f"not a path: {path!r}") from None
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: permission denied")
    return p


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


@contextmanager
def _media_errors(p: Path) -> Iterator[None]:
    """Turn PyAV / OS errors raised while reading ``p`` into one-line InputErrors."""
    try:
        yield
    except NvcodecError:
        raise
    except av.error.FFmpegError as e:
        raise InputError(f"{p}: cannot read as video (corrupt or unsupported): {_reason(e)}") from e
    except (OSError, EOFError, ValueError, RuntimeError) as e:
        raise InputError(f"{p}: cannot read as video: {_reason(e)}") from e


def _open(p: Path) -> av.container.InputContainer:
    return av.open(str(p), mode="r")


def _video_streams(container: av.container.InputContainer) -> list:
    return [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]


def _select_stream(container: av.container.InputContainer, stream: int | None, p: Path):
    streams = _video_streams(container)
    if not streams:
        raise InputError(f"{p}: no video stream")
    if stream is None:
        vs = streams[0]
    else:
        if isinstance(stream, bool):
            raise UsageError(f"stream must be an integer (video stream number), got {stream!r}")
        try:
            stream = operator.index(stream)
        except TypeError:
            raise UsageError(f"stream must be an integer (video stream number), got {stream!r}") from None
        if not 0 <= stream < len(streams):
            raise UsageError(
                f"{p}: video stream {stream} out of range: the file has {len(streams)} video stream(s)"
                " (stream= counts video streams only, from 0)"
            )
        vs = streams[stream]
    cc = vs.codec_context
    _check_size(p, cc.width or 0, cc.height or 0, allow_zero=True)
    vs.thread_type = "AUTO"
    return vs


def _check_size(p: Path, width: int, height: int, *, allow_zero: bool = False) -> None:
    if not allow_zero and (width < 1 or height < 1):
        raise InputError(f"{p}: invalid frame size {width}x{height}")
    if width > MAX_WIDTH or height > MAX_HEIGHT or width * height > MAX_PIXELS:
        raise InputError(
            f"{p}: resolution {width}x{height} exceeds the supported maximum"
            f" ({MAX_WIDTH}x{MAX_HEIGHT}, {MAX_PIXELS} pixels)"
        )


_Y4M_MAGIC = b"YUV4MPEG2 "
_Y4M_MAX_HEADER = 4096
_Y4M_MAX_FRAME_HEADER = 4096
# y4m colour spaces: (chroma width divisor, chroma height divisor or 0 for no chroma, bytes per sample,
# extra full-size planes (alpha)).
_Y4M_LAYOUTS = {
    "420jpeg": (2, 2, 1, 0), "420paldv": (2, 2, 1, 0), "420mpeg2": (2, 2, 1, 0), "420": (2, 2, 1, 0),
    "411": (4, 1, 1, 0), "422": (2, 1, 1, 0), "444": (1, 1, 1, 0), "444alpha": (1, 1, 1, 1),
    "mono": (1, 0, 1, 0), "mono9": (1, 0, 2, 0), "mono10": (1, 0, 2, 0), "mono12": (1, 0, 2, 0),
    "mono16": (1, 0, 2, 0),
    **{f"{sub}p{bits}": ({"420": 2, "422": 2, "444": 1}[sub], {"420": 2, "422": 1, "444": 1}[sub], 2, 0)
       for sub in ("420", "422", "444") for bits in (9, 10, 12, 14, 16)},
}


def _check_y4m(p: Path) -> None:
    """For y4m files: frame size within limits before FFmpeg allocates, and no frame cut short.

    (FFmpeg's y4m demuxer drops a truncated last frame silently and reports oversized headers
    with unrelated errors.)
    """
    with open(p, "rb") as fh:
        head = fh.read(_Y4M_MAX_HEADER)
        if not head.startswith(_Y4M_MAGIC):
            return
        end = head.find(b"\n")
        if end < 0:
            raise InputError(f"{p}: y4m header is not terminated within {_Y4M_MAX_HEADER} bytes")
        fields = {tok[:1]: tok[1:] for tok in head[len(_Y4M_MAGIC):end].split(b" ") if tok}
        try:
            width, height = int(fields[b"W"]), int(fields[b"H"])
        except (KeyError, ValueError):
            raise InputError(f"{p}: y4m header lacks a valid W or H") from None
        _check_size(p, width, height)
        layout = _Y4M_LAYOUTS.get(fields.get(b"C", b"420jpeg").decode("ascii", "replace"))
        if layout is None:
            return
        cw, ch, sample, extra = layout
        chroma = 2 * (-(-width // cw)) * (-(-height // ch)) if ch else 0
        frame_bytes = sample * (width * height * (1 + extra) + chroma)
        size = os.fstat(fh.fileno()).st_size
        pos, index = end + 1, 0
        while pos < size:
            fh.seek(pos)
            line = fh.read(_Y4M_MAX_FRAME_HEADER)
            stop = line.find(b"\n")
            if not line.startswith(b"FRAME") or stop < 0:
                raise InputError(f"{p}: y4m frame {index} has no FRAME header at byte {pos}")
            data = pos + stop + 1
            if data + frame_bytes > size:
                raise InputError(f"{p}: y4m frame {index} is cut short: {size - data} of {frame_bytes} bytes")
            pos, index = data + frame_bytes, index + 1


def _decode(container: av.container.InputContainer, vs) -> Iterator[av.VideoFrame]:
    for packet in container.demux(vs):
        yield from packet.decode()


def _to_rgb(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    rgb = frame.reformat(width=width, height=height, format="rgb24", interpolation=_RGB_INTERP)
    return np.ascontiguousarray(rgb.to_ndarray())


def _rate(vs) -> Fraction | None:
    for rate in (vs.average_rate, vs.guessed_rate, vs.base_rate):
        if rate is not None and rate > 0:
            return Fraction(rate)
    return None


def _name(table: dict[int, str], value: int | None) -> str | None:
    """FFmpeg's name for a colour enum value; None when unspecified."""
    if value is None or int(value) in _UNSPECIFIED[id(table)]:
        return None
    return table.get(int(value), f"unknown-{int(value)}")


def _stream_duration(container, vs) -> float | None:
    if vs.duration is not None and vs.time_base is not None and vs.duration > 0:
        return float(vs.duration * vs.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _make_info(container, vs, *, width, height, frames, exact, pix_fmt, cs, rng, prim, trc, rotation,
               bit_rate) -> VideoInfo:
    rate = _rate(vs)
    duration = _stream_duration(container, vs)
    if rate is None:
        rate = Fraction(frames / duration).limit_denominator(1001) if duration else Fraction(PNG_DIR_FPS)
    if duration is None or duration <= 0:
        duration = frames / float(rate)
    range_name = _name(_COLOR_RANGE, rng)
    if range_name is None and pix_fmt and pix_fmt.startswith("yuvj"):
        range_name = "pc"
    return VideoInfo(
        width=int(width),
        height=int(height),
        frames=int(frames),
        fps=float(rate),
        fps_num=rate.numerator,
        fps_den=rate.denominator,
        codec=vs.codec_context.codec.canonical_name,
        pix_fmt=pix_fmt,
        color_space=_name(_COLORSPACE, cs),
        color_range=range_name,
        color_primaries=_name(_PRIMARIES, prim),
        color_trc=_name(_TRC, trc),
        container=container.format.name,
        stream_index=int(vs.index),
        bit_rate=int(bit_rate) if bit_rate else None,
        duration_s=float(duration),
        rotation=int(rotation or 0),
        frames_exact=exact,
    )


def _probe_av(p: Path, container, vs) -> VideoInfo:
    count = 0
    nbytes = 0
    first = None
    for packet in container.demux(vs):
        nbytes += packet.size
        for frame in packet.decode():
            if first is None:
                first = frame
                _check_size(p, frame.width, frame.height)
            count += 1
    if count == 0 or first is None:
        raise InputError(f"{p}: no decodable video frames")
    bit_rate = vs.codec_context.bit_rate
    duration = _stream_duration(container, vs)
    if not bit_rate and duration:
        bit_rate = round(nbytes * 8 / duration)
    return _make_info(
        container, vs, width=first.width, height=first.height, frames=count, exact=True,
        pix_fmt=first.format.name, cs=first.colorspace, rng=first.color_range,
        prim=first.color_primaries, trc=first.color_trc, rotation=first.rotation, bit_rate=bit_rate,
    )


def _probe_av_fast(p: Path, container, vs) -> VideoInfo:
    cc = vs.codec_context
    _check_size(p, cc.width or 0, cc.height or 0)
    count = vs.frames or sum(1 for pkt in container.demux(vs) if pkt.size and not pkt.is_discard)
    if count == 0:
        raise InputError(f"{p}: no video frames")
    return _make_info(
        container, vs, width=cc.width, height=cc.height, frames=count, exact=False,
        pix_fmt=cc.pix_fmt, cs=cc.colorspace, rng=cc.color_range, prim=cc.color_primaries,
        trc=cc.color_trc, rotation=0, bit_rate=cc.bit_rate,
    )


def _natural_key(name: str) -> list:
    return [(0, int(tok), "") if tok.isdigit() else (1, 0, tok.lower()) for tok in re.split(r"(\d+)", name) if tok]


def _png_files(folder: Path) -> list[Path]:
    try:
        names = [e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")]
    except OSError as e:
        raise InputError(f"{folder}: cannot list folder: {_reason(e)}") from e
    names = [n for n in names if n.lower().endswith(".png")]
    return [folder / n for n in sorted(names, key=_natural_key)]


def _png_header(f: Path) -> tuple[int, int, int, int]:
    try:
        with open(f, "rb") as fh:
            head = fh.read(29)
    except OSError as e:
        raise InputError(f"{f}: cannot read: {_reason(e)}") from e
    if len(head) < 29 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise InputError(f"{f}: not a PNG file")
    width = int.from_bytes(head[16:20], "big")
    height = int.from_bytes(head[20:24], "big")
    return width, height, head[24], head[25]


def _probe_png_dir(folder: Path, stream: int | None) -> VideoInfo:
    if stream not in (None, 0):
        raise UsageError(
            f"{folder}: video stream {stream} out of range: a PNG folder has 1 video stream"
            " (stream= counts video streams only, from 0)"
        )
    files = _png_files(folder)
    if not files:
        raise InputError(f"{folder}: folder holds no PNG frames (*.png)")
    width, height, depth, ctype = _png_header(files[0])
    _check_size(files[0], width, height)
    nbytes = 0
    for f in files:
        w, h, _, _ = _png_header(f)
        if (w, h) != (width, height):
            raise InputError(
                f"{folder}: PNG frames differ in size: {files[0].name} is {width}x{height},"
                f" {f.name} is {w}x{h}"
            )
        nbytes += f.stat().st_size
    duration = len(files) / PNG_DIR_FPS
    rate = Fraction(PNG_DIR_FPS).limit_denominator(1001)
    return VideoInfo(
        width=width, height=height, frames=len(files), fps=float(rate), fps_num=rate.numerator,
        fps_den=rate.denominator, codec="png", pix_fmt=_PNG_PIX_FMT.get((ctype, depth), "pal8" if ctype == 3 else None),
        color_space=None, color_range=None, color_primaries=None, color_trc=None, container="png_dir",
        stream_index=0, bit_rate=round(nbytes * 8 / duration), duration_s=duration,
    )


def _read_png_rgb(f: Path, width: int, height: int) -> np.ndarray:
    with _media_errors(f), _open(f) as container:
        vs = _select_stream(container, None, f)
        for frame in _decode(container, vs):
            if (frame.width, frame.height) != (width, height):
                raise InputError(f"{f}: PNG is {frame.width}x{frame.height}, expected {width}x{height}")
            return _to_rgb(frame, width, height)
    raise InputError(f"{f}: PNG holds no decodable image")

