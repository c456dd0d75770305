"""Write uint8 RGB frames as mp4/mkv/webm/mov/avi video, y4m, or a folder of PNGs.

Every writer writes to a temporary file (or folder) next to the target and renames it into
place at the end; on any failure, including an exception raised by the frame iterable,
the temporary output is removed and nothing appears at the target path.

Colour: for YUV pixel formats, RGB is converted with the BT.709 matrix, limited range
(full range for ``yuvj*``), and the stream is tagged bt709 (matrix, primaries, transfer)
so that players and :func:`nvcodec.video.read_frames` convert it back the same way.
The tags travel in the mp4/mov/mkv/webm container or in the H.264/HEVC/VP9/AV1 bitstream;
where neither can carry them (y4m, avi or nut with other codecs) readers assume BT.601, so
BT.601 is used there, and for VP8 (``libvpx``), which is BT.601 by definition.
mp4/mov files get ``+faststart`` (index up front).
Chroma is downsampled with area averaging.

Odd sizes: a pixel format with chroma subsampling (``yuv420p`` needs even width and height)
cannot store odd sizes, so frames are padded on the right/bottom by repeating the last
column/row up to the next multiple; the file then has the padded size.

Errors: bad arguments or frames (wrong dtype/shape, unknown container or encoder, missing
output folder) raise :class:`UsageError`; encoder or I/O failures raise
:class:`NvcodecError`.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Mapping

import av
import numpy as np
from av.video.reformatter import Interpolation

from nvcodec.errors import NoSpaceError, NvcodecError, UsageError, is_no_space, no_space_as_error
from nvcodec.progress import ProgressCallback, emit
from nvcodec.video.atomic import _remove, atomic_output  # noqa: F401 - atomic_output re-exported
from nvcodec.video.png import encode_png

__all__ = ["CONTAINER_FORMATS", "atomic_output", "write_video", "write_y4m", "write_png_dir"]

CONTAINER_FORMATS = {
    ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
    ".avi": "avi", ".nut": "nut", ".y4m": "yuv4mpegpipe",
}
CRF_CODECS = frozenset({"libx264", "libx265", "libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1"})
_TAGGING_FORMATS = frozenset({"mp4", "mov", "matroska", "webm"})
_TAGGING_CODECS = frozenset({"libx264", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1"})
_YUV_INTERP = Interpolation.AREA | Interpolation.ACCURATE_RND
_Y4M_FORMATS = {8: "yuv444p", 10: "yuv444p10le", 12: "yuv444p12le", 16: "yuv444p16le"}

PathLike = str | os.PathLike


def write_video(
    path: PathLike,
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    codec: str = "libx264",
    crf: int | float | None = 18,
    bitrate: int | None = None,
    pix_fmt: str = "yuv420p",
    options: Mapping[str, str] | None = None,
    progress: ProgressCallback | None = None,
) -> None:
    """Encode uint8 RGB frames ``(H, W, 3)`` to a video file; the container follows the extension.

    ``crf`` applies to encoders that have it (x264, x265, VP8/VP9, AV1) and is ignored by
    others (ffv1, png, ...); ``bitrate`` (bits/s) replaces ``crf`` when given. ``options``
    are passed to the encoder as-is (e.g. ``{"preset": "slow"}``). ``progress`` gets
    ``stage="write_video"`` events, one per frame (total unknown).
    """
    encode_video(
        path, frames, fps, codec=codec, crf=crf, bitrate=bitrate, pix_fmt=pix_fmt, options=options, progress=progress
    )


def encode_video(
    path: PathLike,
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    codec: str = "libx264",
    crf: int | float | None = 18,
    bitrate: int | None = None,
    pix_fmt: str = "yuv420p",
    options: Mapping[str, str] | None = None,
    threads: int | None = None,
    container_options: Mapping[str, str] | None = None,
    progress: ProgressCallback | None = None,
) -> dict:
    """:func:`write_video` returning stats: frames, width, height (as stored), bytes, bitstream_bytes."""
    target = Path(os.fspath(path))
    fmt = CONTAINER_FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise UsageError(
            f"{target}: unknown video extension {target.suffix!r} (use one of {', '.join(sorted(CONTAINER_FORMATS))})"
        )
    rate = _fps_fraction(fps)
    _check_encoder(codec, pix_fmt)
    if bitrate is not None and (not isinstance(bitrate, (int, np.integer)) or bitrate <= 0):
        raise UsageError(f"bitrate must be a positive integer (bits/s), got {bitrate!r}")
    if crf is not None and not (isinstance(crf, (int, float, np.number)) and 0 <= crf <= 63):
        raise UsageError(f"crf must be a number in 0..63, got {crf!r}")
    opts = {k: str(v) for k, v in (options or {}).items()}
    if bitrate is None and crf is not None and codec in CRF_CODECS:
        opts.setdefault("crf", _fmt_num(crf))
    if codec == "libx265":
        opts.setdefault("x265-params", "log-level=error:info=0")
    matrix = "ITU709" if (fmt in _TAGGING_FORMATS or codec in _TAGGING_CODECS) and codec != "libvpx" else "ITU601"
    if fmt in ("mp4", "mov"):
        container_options = {"movflags": "+faststart", **(container_options or {})}
    if codec == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")
    stats = {"frames": 0, "width": 0, "height": 0, "bytes": 0, "bitstream_bytes": 0}
    with atomic_output(target) as tmp, no_space_as_error(target):
        container = _open_output(tmp, fmt, target, container_options)
        try:
            stream = None
            for i, frame in enumerate(frames):
                rgb = _check_frame(frame, i)
                if stream is None:
                    height, width = rgb.shape[:2]
                    stream = _add_stream(container, fmt, codec, rate, width, height, pix_fmt, bitrate, opts,
                                         threads, crf if codec in CRF_CODECS and bitrate is None else None, matrix, target)
                    stats.update(width=stream.width, height=stream.height)
                elif rgb.shape[:2] != (height, width):
                    raise UsageError(f"frame {i} is {rgb.shape[1]}x{rgb.shape[0]}, frame 0 was {width}x{height}")
                vf = _to_video_frame(rgb, stream.width, stream.height, pix_fmt, matrix)
                vf.pts = i
                stats["bitstream_bytes"] += _mux(container, stream.encode(vf), target)
                stats["frames"] = i + 1
                emit(progress, "write_video", i + 1)
            if stream is None:
                raise UsageError(f"{target}: no frames to write")
            stats["bitstream_bytes"] += _mux(container, stream.encode(None), target)
            _close(container, target)
            container = None
        finally:
            if container is not None:
                try:
                    container.close()
                except Exception:
                    pass
        _fsync(tmp)
        stats["bytes"] = tmp.stat().st_size
    return stats


def write_y4m(path: PathLike, frames: Iterable[np.ndarray], fps: float, *, bit_depth: int = 12) -> None:
    """Write frames as a YUV4MPEG2 file in 4:4:4, BT.601 matrix, limited range.

    ``bit_depth=12`` (C444p12, default) is lossless: reading it back (FFmpeg/swscale)
    returns the exact 8-bit RGB input (verified over all 2**24 colours). ``bit_depth=8``
    (C444) is the most widely readable y4m but loses up to 2 levels per channel (8-bit
    YCbCr cannot hold every RGB colour); 10 and 16 are also accepted. y4m has no field for
    the matrix, so readers assume BT.601, which is what this writes.
    """
    if bit_depth not in _Y4M_FORMATS:
        raise UsageError(f"y4m bit_depth must be one of {sorted(_Y4M_FORMATS)}, got {bit_depth!r}")
    target = Path(os.fspath(path))
    if target.suffix.lower() != ".y4m":
        raise UsageError(f"{target}: a y4m file name must end in .y4m")
    pix_fmt = _Y4M_FORMATS[bit_depth]
    container_options = {"strict": "-1"} if bit_depth > 8 else None
    encode_video(target, frames, fps, codec="rawvideo", crf=None, pix_fmt=pix_fmt,
                 container_options=container_options)


def write_png_dir(
    path: PathLike, frames: Iterable[np.ndarray], start_index: int = 0, *, compress_level: int = 6
) -> list[Path]:
    """Write frames as ``frame_000000.png``, ... (numbered from ``start_index``) into folder ``path``.

    The folder is created if missing. The PNGs are written into a temporary folder next to
    it and moved in only when every frame was encoded, so a failure leaves ``path`` as it
    was. Existing files with the same names are replaced. Returns the written paths.
    """
    target = Path(os.fspath(path))
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target}: exists and is not a folder")
    if not isinstance(start_index, (int, np.integer)) or start_index < 0:
        raise UsageError(f"start_index must be a non-negative integer, got {start_index!r}")
    names: list[str] = []
    with atomic_output(target, directory=True) as tmp:
        shape = None
        for i, frame in enumerate(frames):
            rgb = _check_frame(frame, i)
            if shape is None:
                shape = rgb.shape
            elif rgb.shape != shape:
                raise UsageError(f"frame {i} is {rgb.shape[1]}x{rgb.shape[0]}, frame 0 was {shape[1]}x{shape[0]}")
            name = f"frame_{start_index + i:06d}.png"
            with no_space_as_error(target / name), open(tmp / name, "wb") as fh:
                fh.write(encode_png(rgb, compress_level=compress_level))
            names.append(name)
        if not names:
            raise UsageError(f"{target}: no frames to write")
        try:
            if not target.exists():
                os.replace(tmp, target)
            else:
                for name in names:
                    os.replace(tmp / name, target / name)
                _remove(tmp)
        except OSError as e:
            _raise_if_no_space(e, target)
            raise NvcodecError(f"{target}: cannot move PNG frames into place: {_reason(e)}") from e
    return [target / n for n in names]


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{float(x):.3f}".rstrip("0")


def _fps_fraction(fps: float) -> Fraction:
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise UsageError(f"fps must be a number, got {fps!r}") from None
    if not math.isfinite(value) or value <= 0 or value > 1000:
        raise UsageError(f"fps must be in (0, 1000], got {fps!r}")
    if isinstance(fps, Fraction):
        return fps
    ntsc = round(value * 1001 / 1000)
    if abs(value - ntsc * 1000 / 1001) < 1e-3 and abs(value - round(value)) > 1e-3:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(value).limit_denominator(1000)


def _check_encoder(codec: str, pix_fmt: str) -> None:
    try:
        enc = av.Codec(codec, "w")
    except Exception:
        raise UsageError(f"encoder {codec!r} is not available in this FFmpeg build") from None
    if enc.type != "video":
        raise UsageError(f"{codec!r} is not a video encoder")
    try:
        av.VideoFormat(pix_fmt)
    except Exception:
        raise UsageError(f"unknown pixel format {pix_fmt!r}") from None
    formats = enc.video_formats
    if formats and pix_fmt not in {f.name for f in formats}:
        raise UsageError(
            f"encoder {codec!r} does not take pixel format {pix_fmt!r} (it takes {', '.join(f.name for f in formats)})"
        )


def _check_frame(frame: object, index: int) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise UsageError(f"frame {index} must be a uint8 (H, W, 3) RGB array, got {arr.dtype} {arr.shape}")
    return arr


def _subsampling(pix_fmt: str) -> tuple[int, int]:
    fmt = av.VideoFormat(pix_fmt)
    if fmt.is_rgb or len(fmt.components) < 3:
        return 1, 1
    return 64 // max(fmt.chroma_width(64), 1), 64 // max(fmt.chroma_height(64), 1)


def _is_yuv(pix_fmt: str) -> bool:
    fmt = av.VideoFormat(pix_fmt)
    return not fmt.is_rgb and len(fmt.components) >= 3


def _raise_if_no_space(exc: BaseException, target: Path) -> None:
    if is_no_space(exc):
        raise NoSpaceError(target) from None


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def _open_output(tmp: Path, fmt: str, target: Path, container_options: Mapping[str, str] | None):
    try:
        return av.open(str(tmp), mode="w", format=fmt, options=dict(container_options or {}))
    except av.error.FFmpegError as e:
        _raise_if_no_space(e, target)
        raise NvcodecError(f"{target}: cannot create output: {_reason(e)}") from e


def _add_stream(container, fmt, codec, rate, width, height, pix_fmt, bitrate, opts, threads, crf, matrix, target):
    sx, sy = _subsampling(pix_fmt)
    try:
        stream = container.add_stream(codec, rate=rate, options=opts)
        stream.width = -(-width // sx) * sx
        stream.height = -(-height // sy) * sy
        stream.pix_fmt = pix_fmt
        cc = stream.codec_context
        cc.bit_rate = int(bitrate) if bitrate is not None else 0
        if threads is not None:
            cc.thread_count = int(threads)
        if _is_yuv(pix_fmt):
            cc.color_range = 2 if pix_fmt.startswith("yuvj") else 1
            if matrix == "ITU709":
                cc.colorspace = cc.color_primaries = cc.color_trc = 1
            elif fmt != "yuv4mpegpipe":
                cc.colorspace, cc.color_primaries, cc.color_trc = 5, 5, 6
        if crf is not None and codec in ("libvpx", "libvpx-vp9"):
            cc.bit_rate = 0
        cc.open()
        container.start_encoding()
    except UsageError:
        raise
    except (av.error.FFmpegError, ValueError) as e:
        _raise_if_no_space(e, target)
        raise UsageError(f"{target}: cannot set up encoder {codec} ({pix_fmt}, {width}x{height}): {_reason(e)}") from e
    return stream


def _to_video_frame(rgb: np.ndarray, width: int, height: int, pix_fmt: str, matrix: str) -> av.VideoFrame:
    h, w = rgb.shape[:2]
    if (h, w) != (height, width):
        rgb = np.pad(rgb, ((0, height - h), (0, width - w), (0, 0)), mode="edge")
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    if pix_fmt == "rgb24":
        return frame
    if _is_yuv(pix_fmt):
        return frame.reformat(
            format=pix_fmt,
            dst_colorspace=matrix,
            dst_color_range="JPEG" if pix_fmt.startswith("yuvj") else "MPEG",
            interpolation=_YUV_INTERP,
        )
    return frame.reformat(format=pix_fmt, interpolation=_YUV_INTERP)


def _mux(container, packets, target: Path) -> int:
    nbytes = 0
    try:
        for packet in packets:
            nbytes += packet.size
            container.mux(packet)
    except av.error.FFmpegError as e:
        _raise_if_no_space(e, target)
        raise NvcodecError(f"{target}: encoding failed: {_reason(e)}") from e
    return nbytes


def _close(container, target: Path) -> None:
    try:
        container.close()
    except av.error.FFmpegError as e:
        _raise_if_no_space(e, target)
        raise NvcodecError(f"{target}: cannot finish the file: {_reason(e)}") from e


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
