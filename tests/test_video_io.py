"""Media I/O: reading, writing, PNG encoding, contact sheets, benchmark codecs, the fixture clip."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nvcodec.errors import InputError, NvcodecError, UsageError
from nvcodec.video import (
    MAX_WIDTH,
    contact_sheet,
    encode_png,
    feature_sheet,
    iter_frames,
    probe_video,
    read_frames,
    side_by_side,
    write_png,
    write_png_dir,
    write_video,
    write_y4m,
)
from nvcodec.video.codecs import available_codecs, decode_frame_at, encode_at_bpp, encode_with_ffmpeg_codec

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "fixtures" / "dog_320x180.mp4"
SHARED_CLIPS = ROOT.parent / "shared" / "clips"


def moving_square(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour ramps with a white square moving right/down, plus mild texture."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 200 / max(width - 1, 1), y * 200 / max(height - 1, 1), 80 + 0 * x], axis=-1)
    texture = np.random.default_rng(seed).integers(0, 24, size=(height, width, 3))
    out = np.empty((n, height, width, 3), dtype=np.uint8)
    size = max(2, min(height, width) // 4)
    for i in range(n):
        frame = base + texture
        top, left = (2 * i) % max(height - size, 1), (3 * i) % max(width - size, 1)
        frame[top : top + size, left : left + size] = 250
        out[i] = np.clip(frame, 0, 255)
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def assert_one_line(err: NvcodecError) -> None:
    msg = str(err)
    assert msg and "\n" not in msg
    assert "av.error" not in msg and "Errno" not in msg and "Traceback" not in msg


def mux_raw(path: Path, frames: np.ndarray, codec: str, pix_fmt: str, **open_kw) -> None:
    """Write frames with PyAV directly (not through nvcodec's writer)."""
    with av.open(str(path), "w", **open_kw) as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for i, arr in enumerate(frames):
            f = av.VideoFrame.from_ndarray(arr, format="rgb24").reformat(format=pix_fmt)
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("clips")
    frames = moving_square(5, 24, 40)
    odd = moving_square(5, 45, 27, seed=1)
    write_video(d / "h264.mp4", frames, 25)
    write_video(d / "ffv1_odd.mkv", odd, 25, codec="ffv1", pix_fmt="bgr0")
    write_y4m(d / "odd.y4m", odd, 25)
    write_png_dir(d / "pngs", frames)
    return {"dir": d, "frames": frames, "odd": odd}


# ---------------------------------------------------------------- reading


def test_read_mp4_h264(clips):
    arr, info = read_frames(clips["dir"] / "h264.mp4")
    assert arr.shape == (5, 24, 40, 3) and arr.dtype == np.uint8
    assert (info.width, info.height, info.frames, info.codec) == (40, 24, 5, "h264")
    assert (info.fps, info.fps_num, info.fps_den) == (25.0, 25, 1)
    assert info.pix_fmt == "yuv420p" and info.color_space == "bt709" and info.color_range == "tv"
    assert info.container.startswith("mov,mp4") and info.stream_index == 0 and info.frames_exact
    assert psnr(arr, clips["frames"]) > 30
    json.dumps(info.to_dict())


def test_read_ffv1_odd_size_is_exact(clips):
    arr, info = read_frames(clips["dir"] / "ffv1_odd.mkv")
    assert (info.width, info.height, info.frames, info.codec) == (27, 45, 5, "ffv1")
    np.testing.assert_array_equal(arr, clips["odd"])


def test_read_odd_width_yuv420_source(tmp_path):
    frames = moving_square(3, 45, 27)
    mux_raw(tmp_path / "odd420.mkv", frames, "ffv1", "yuv420p")
    arr, info = read_frames(tmp_path / "odd420.mkv")
    assert arr.shape == (3, 45, 27, 3) and info.pix_fmt == "yuv420p"
    assert psnr(arr, frames) > 28


def test_png_folder_roundtrip_and_natural_order(clips, tmp_path):
    arr, info = read_frames(clips["dir"] / "pngs")
    np.testing.assert_array_equal(arr, clips["frames"])
    assert (info.container, info.codec, info.frames, info.fps) == ("png_dir", "png", 5, 25.0)
    frames = moving_square(3, 8, 10)
    for i, name in enumerate(["f2.png", "f10.png", "f1.PNG"]):
        write_png(tmp_path / name, frames[[1, 2, 0][i]])
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden.png").write_bytes(b"ignored")
    np.testing.assert_array_equal(read_frames(tmp_path)[0], frames)


@pytest.mark.parametrize("bit_depth, max_err", [(12, 0), (8, 2)])
def test_y4m_roundtrip(tmp_path, bit_depth, max_err):
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, size=(3, 45, 27, 3), dtype=np.uint8)
    write_y4m(tmp_path / "x.y4m", frames, 25, bit_depth=bit_depth)
    assert (tmp_path / "x.y4m").read_bytes().startswith(b"YUV4MPEG2 W27 H45 F25:1")
    arr, info = read_frames(tmp_path / "x.y4m")
    assert info.container == "yuv4mpegpipe" and info.frames == 3
    assert np.abs(arr.astype(int) - frames).max() <= max_err


def test_y4m_12bit_lossless_on_many_colours(tmp_path):
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 256, size=(2, 256, 256, 3), dtype=np.uint8)
    write_y4m(tmp_path / "x.y4m", frames, 30)
    np.testing.assert_array_equal(read_frames(tmp_path / "x.y4m")[0], frames)


def test_read_y4m_written_by_ffmpeg(tmp_path):
    frames = moving_square(4, 45, 27)
    mux_raw(tmp_path / "c420.y4m", frames, "rawvideo", "yuv420p", format="yuv4mpegpipe")
    arr, info = read_frames(tmp_path / "c420.y4m")
    assert arr.shape == (4, 45, 27, 3) and psnr(arr, frames) > 28


@pytest.mark.parametrize(
    "name, codec",
    [("v.webm", "libvpx-vp9"), ("v8.webm", "libvpx"), ("h.mkv", "libx265"), ("a.mkv", "libsvtav1"), ("m.avi", "mpeg4")],
)
def test_read_other_codecs(tmp_path, name, codec):
    try:
        av.Codec(codec, "w")
    except Exception:
        pytest.skip(f"{codec} not in this FFmpeg build")
    frames = moving_square(4, 64, 64)
    rate = {"bitrate": 4_000_000} if codec == "mpeg4" else {"crf": 10}
    write_video(tmp_path / name, frames, 25, codec=codec, **rate)
    arr, info = read_frames(tmp_path / name)
    assert arr.shape == (4, 64, 64, 3) and info.frames == 4
    assert psnr(arr, frames) > 28, (codec, psnr(arr, frames))


def test_probe_fast_and_progress(clips):
    fast = probe_video(clips["dir"] / "h264.mp4", exact=False)
    assert (fast.frames, fast.frames_exact, fast.width) == (5, False, 40)
    events = []
    read_frames(clips["dir"] / "ffv1_odd.mkv", frames=(1, 4), progress=events.append)
    assert [(e.stage, e.step, e.total) for e in events] == [("read_frames", i, 3) for i in (1, 2, 3)]


def test_frame_ranges_and_iter(clips):
    path = clips["dir"] / "ffv1_odd.mkv"
    full = clips["odd"]
    np.testing.assert_array_equal(read_frames(path, frames=(1, 4))[0], full[1:4])
    np.testing.assert_array_equal(read_frames(path, frames=(4, 5))[0], full[4:5])
    np.testing.assert_array_equal(read_frames(path, max_frames=2)[0], full[:2])
    np.testing.assert_array_equal(read_frames(path, frames=(2, 5), max_frames=2)[0], full[2:4])
    got = list(iter_frames(path, frames=(1, 3)))
    assert len(got) == 2 and got[0].shape == (45, 27, 3)
    np.testing.assert_array_equal(np.stack(got), full[1:3])
    np.testing.assert_array_equal(np.stack(list(iter_frames(clips["dir"] / "pngs"))), clips["frames"])
    _, info = read_frames(path, frames=(1, 2))
    assert info.frames == 5


@pytest.mark.parametrize("rng", [(0, 6), (3, 3), (4, 2), (-1, 2), (0, 0)])
def test_frame_range_out_of_range_is_usage_error(clips, rng):
    with pytest.raises(UsageError) as e:
        read_frames(clips["dir"] / "ffv1_odd.mkv", frames=rng)
    assert_one_line(e.value)
    with pytest.raises(UsageError):
        iter_frames(clips["dir"] / "pngs", frames=rng)


def _two_video_streams(path: Path) -> tuple[np.ndarray, np.ndarray]:
    a = moving_square(3, 16, 32, seed=5)
    b = moving_square(3, 12, 20, seed=6)
    with av.open(str(path), "w") as c:
        audio = c.add_stream("pcm_s16le", rate=8000, layout="mono")
        streams = []
        for arr in (a, b):
            s = c.add_stream("ffv1", rate=25)
            s.width, s.height, s.pix_fmt = arr.shape[2], arr.shape[1], "bgr0"
            streams.append(s)
        for i in range(3):
            for s, arr in zip(streams, (a, b)):
                f = av.VideoFrame.from_ndarray(arr[i], format="rgb24").reformat(format="bgr0")
                f.pts = i
                c.mux(s.encode(f))
        af = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        af.sample_rate, af.pts = 8000, 0
        c.mux(audio.encode(af))
        c.mux(audio.encode(None))
        for s in streams:
            c.mux(s.encode(None))
    return a, b


def test_stream_selection(tmp_path):
    a, b = _two_video_streams(tmp_path / "two.mkv")
    arr0, info0 = read_frames(tmp_path / "two.mkv")
    arr1, info1 = read_frames(tmp_path / "two.mkv", stream=1)
    np.testing.assert_array_equal(arr0, a)
    np.testing.assert_array_equal(arr1, b)
    assert (info0.stream_index, info1.stream_index) == (1, 2)
    assert probe_video(tmp_path / "two.mkv", stream=0).width == 32
    with pytest.raises(UsageError, match="video stream 2 out of range.*2 video stream.*counts video streams only") as e:
        probe_video(tmp_path / "two.mkv", stream=2)
    assert_one_line(e.value)


# ---------------------------------------------------------------- reading errors


def _write_wav(path: Path) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000, layout="mono")
        f = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        f.sample_rate, f.pts = 8000, 0
        c.mux(s.encode(f))
        c.mux(s.encode(None))


def _error_inputs(tmp: Path, clips: dict) -> dict[str, tuple[Path, str]]:
    (tmp / "junk.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (tmp / "empty.mp4").write_bytes(b"")
    _write_wav(tmp / "audio.wav")
    (tmp / "zero.y4m").write_bytes(b"YUV4MPEG2 W16 H16 F25:1 Ip A0:0 C420jpeg\n")
    w = MAX_WIDTH + 8
    (tmp / "huge.y4m").write_bytes(b"YUV4MPEG2 W%d H2 F25:1 Ip A0:0 C420jpeg\nFRAME\n" % w + bytes(w * 2 + w))
    (tmp / "emptydir").mkdir()
    (tmp / "mixed").mkdir()
    write_png(tmp / "mixed" / "a1.png", np.zeros((4, 4, 3), np.uint8))
    write_png(tmp / "mixed" / "a2.png", np.zeros((4, 5, 3), np.uint8))
    (tmp / "badpng").mkdir()
    (tmp / "badpng" / "f0.png").write_bytes(b"not a png at all, really not")
    full = (clips["dir"] / "h264.mp4").read_bytes()
    (tmp / "truncated.mp4").write_bytes(full[: len(full) // 3])
    return {
        "missing": (tmp / "nope.mp4", "no such file"),
        "corrupt": (tmp / "junk.mp4", "cannot read as video"),
        "empty file": (tmp / "empty.mp4", "cannot read as video"),
        "no video": (tmp / "audio.wav", "no video stream"),
        "zero frames": (tmp / "zero.y4m", "no decodable video frames"),
        "too large": (tmp / "huge.y4m", "exceeds the supported maximum"),
        "empty folder": (tmp / "emptydir", "no PNG frames"),
        "mixed sizes": (tmp / "mixed", "differ in size"),
        "bad png": (tmp / "badpng", "not a PNG"),
        "truncated": (tmp / "truncated.mp4", ""),
    }


def test_input_errors(tmp_path, clips):
    for label, (path, text) in _error_inputs(tmp_path, clips).items():
        for call in (probe_video, read_frames, lambda p: list(iter_frames(p))):
            with pytest.raises(InputError) as e:
                call(path)
            assert text in str(e.value), (label, str(e.value))
            assert_one_line(e.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_unreadable_file(tmp_path, clips):
    p = tmp_path / "locked.mp4"
    p.write_bytes((clips["dir"] / "h264.mp4").read_bytes())
    p.chmod(0)
    with pytest.raises(InputError, match="permission denied"):
        probe_video(p)


# ---------------------------------------------------------------- writing


def test_write_video_odd_size_pads_to_even(tmp_path):
    frames = moving_square(3, 45, 27)
    write_video(tmp_path / "odd.mp4", frames, 30)
    arr, info = read_frames(tmp_path / "odd.mp4")
    assert (info.width, info.height) == (28, 46)
    assert psnr(arr[:, :45, :27], frames) > 30
    assert psnr(arr[:, 45:, :27], frames[:, 44:45]) > 25


def test_write_video_fps_and_containers(tmp_path):
    frames = moving_square(3, 16, 16)
    write_video(tmp_path / "a.mkv", frames, 30000 / 1001, codec="ffv1", pix_fmt="bgr0")
    info = probe_video(tmp_path / "a.mkv")
    assert (info.fps_num, info.fps_den) == (30000, 1001)
    write_video(tmp_path / "b.mov", frames, 12.5, bitrate=200_000)
    assert probe_video(tmp_path / "b.mov").fps == 12.5


def _failing(frames: np.ndarray, at: int):
    for i, f in enumerate(frames):
        if i == at:
            raise RuntimeError("boom")
        yield f


def test_writers_leave_nothing_on_failure(tmp_path):
    frames = moving_square(4, 16, 16)
    for name, write in [
        ("v.mp4", lambda p, fr: write_video(p, fr, 25)),
        ("v.mkv", lambda p, fr: write_video(p, fr, 25, codec="ffv1", pix_fmt="bgr0")),
        ("v.y4m", lambda p, fr: write_y4m(p, fr, 25)),
        ("pngs", lambda p, fr: write_png_dir(p, fr)),
    ]:
        with pytest.raises(RuntimeError, match="boom"):
            write(tmp_path / name, _failing(frames, 2))
        assert os.listdir(tmp_path) == []
        with pytest.raises(UsageError, match="does not exist") as e:
            write(tmp_path / "missing" / name, frames)
        assert_one_line(e.value)
        assert os.listdir(tmp_path) == []
        bad = [frames[0], frames[1][:8]]
        with pytest.raises(UsageError, match="frame 1"):
            write(tmp_path / name, bad)
        with pytest.raises(UsageError, match="no frames"):
            write(tmp_path / name, [])
        assert os.listdir(tmp_path) == []


def test_writer_argument_errors(tmp_path):
    frames = moving_square(2, 16, 16)
    cases = [
        lambda: write_video(tmp_path / "x.xyz", frames, 25),
        lambda: write_video(tmp_path / "x.mp4", frames, 0),
        lambda: write_video(tmp_path / "x.mp4", frames, 25, codec="no-such-codec"),
        lambda: write_video(tmp_path / "x.mp4", frames, 25, pix_fmt="rgb48be"),
        lambda: write_video(tmp_path / "x.mp4", frames.astype(np.float32), 25),
        lambda: write_y4m(tmp_path / "x.y4m", frames, 25, bit_depth=9),
        lambda: write_png_dir(tmp_path / "p", frames, start_index=-1),
    ]
    for case in cases:
        with pytest.raises(UsageError) as e:
            case()
        assert_one_line(e.value)
    assert os.listdir(tmp_path) == []


def test_write_png_is_atomic(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        write_png(tmp_path / "missing" / "x.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(UsageError):
        write_png(tmp_path / "x.png", np.zeros((2, 2, 3), np.float64))
    assert os.listdir(tmp_path) == []
    write_png(tmp_path / "x.png", np.zeros((2, 2, 3), np.uint8))
    assert os.listdir(tmp_path) == ["x.png"]


def test_write_png_dir_appends_with_start_index(tmp_path):
    frames = moving_square(4, 8, 8)
    write_png_dir(tmp_path / "out", frames[:2])
    paths = write_png_dir(tmp_path / "out", frames[2:], start_index=2)
    assert [p.name for p in paths] == ["frame_000002.png", "frame_000003.png"]
    assert sorted(os.listdir(tmp_path)) == ["out"]
    np.testing.assert_array_equal(read_frames(tmp_path / "out")[0], frames)


# ---------------------------------------------------------------- PNG encoder


def _decode_png(data: bytes, path: Path, fmt: str) -> np.ndarray:
    path.write_bytes(data)
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        return frame.to_ndarray(format=fmt)


@pytest.mark.parametrize(
    "shape, dtype, fmt",
    [
        ((7, 5), np.uint8, "gray"),
        ((7, 5, 3), np.uint8, "rgb24"),
        ((6, 9, 4), np.uint8, "rgba"),
        ((5, 4, 3), np.uint16, "rgb48le"),
        ((5, 4), np.uint16, "gray16le"),
    ],
)
def test_png_encoder_decodes_exactly(tmp_path, shape, dtype, fmt):
    rng = np.random.default_rng(7)
    arr = rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)
    out = _decode_png(encode_png(arr), tmp_path / "x.png", fmt)
    np.testing.assert_array_equal(out.reshape(arr.shape), arr)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    seed=st.integers(0, 2**16),
    smooth=st.booleans(),
)
def test_png_encoder_property(tmp_path, h, w, seed, smooth):
    rng = np.random.default_rng(seed)
    if smooth:
        y, x = np.mgrid[0:h, 0:w]
        arr = np.stack([x * 7 + seed % 50, y * 5, (x + y) * 3], -1).astype(np.uint8)
    else:
        arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_decode_png(encode_png(arr), tmp_path / "p.png", "rgb24"), arr)


def test_png_encoder_uses_filters_and_rejects_bad_input():
    y, x = np.mgrid[0:32, 0:32]
    arr = np.stack([x * 8, y * 8, (x * y) % 256], -1).astype(np.uint8)
    data = encode_png(arr)
    idat = data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8]
    raw = zlib.decompress(idat)
    filters = {raw[r * (32 * 3 + 1)] for r in range(32)}
    assert filters - {0}
    for bad in (np.zeros((4, 4, 5), np.uint8), np.zeros((4, 4), np.float32), np.zeros((0, 4), np.uint8)):
        with pytest.raises(UsageError):
            encode_png(bad)


# ---------------------------------------------------------------- sheets


def test_contact_sheet_shapes():
    frames = list(moving_square(5, 24, 40))
    sheet = contact_sheet(frames)
    assert sheet.shape == (4 + 2 * (24 + 4), 4 + 3 * (40 + 4), 3) and sheet.dtype == np.uint8
    labelled = contact_sheet(frames, columns=5, labels=[f"PSNR {i}.5 dB" for i in range(5)])
    assert labelled.shape == (4 + (24 + 15 + 4), 4 + 5 * (40 + 4), 3)
    assert labelled[28:28 + 15].max() == 255
    small = contact_sheet(list(moving_square(4, 100, 100)), max_width=200)
    assert small.shape == (200, 200, 3)
    sbs = side_by_side(frames[0], frames[1], ["original", "decoded"])
    assert sbs.shape == (4 + 24 + 15 + 4, 4 + 2 * (40 + 4), 3)
    mixed = contact_sheet([frames[0], np.zeros((10, 10), np.uint8), np.ones((5, 6, 3), np.float32)], columns=3)
    assert mixed.shape == (4 + 24 + 4, 4 + 3 * 44, 3)
    with pytest.raises(UsageError):
        contact_sheet(frames, labels=["a"])
    with pytest.raises(UsageError):
        contact_sheet([])


def test_feature_sheet():
    import torch

    feat = np.random.default_rng(0).normal(size=(10, 6, 8)).astype(np.float32)
    feat[2] = 3.0
    sheet = feature_sheet(feat)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[2] == 3
    factor = 6
    assert sheet.shape == (4 + 3 * (6 * factor + 4), 4 + 4 * (8 * factor + 4), 3)
    assert feature_sheet(torch.from_numpy(feat[None]), max_channels=4, colormap="gray").shape[1] == 4 + 2 * (48 + 4)
    with pytest.raises(UsageError):
        feature_sheet(np.zeros((4, 4)))


# ---------------------------------------------------------------- benchmark codecs


def test_available_codecs_and_encode(tmp_path):
    codecs = available_codecs()
    assert "libx264" in codecs
    frames = moving_square(4, 32, 32)
    n = encode_with_ffmpeg_codec(frames, tmp_path / "x.mp4", 25, "libx264", crf=30, preset="ultrafast")
    assert n == (tmp_path / "x.mp4").stat().st_size
    with pytest.raises(UsageError):
        encode_with_ffmpeg_codec(frames, tmp_path / "y.mp4", 25, "libfoo")


def test_encode_at_bpp_within_tolerance(tmp_path):
    frames = moving_square(8, 64, 64, seed=9)
    res = encode_at_bpp(frames, tmp_path / "x.mkv", 25, "libx264", 0.4, tolerance=0.1, preset="ultrafast")
    size = (tmp_path / "x.mkv").stat().st_size
    assert res["bytes"] == size
    assert res["bpp"] == pytest.approx(size * 8 / (8 * 64 * 64))
    assert res["within_tolerance"] and abs(res["bpp"] - 0.4) <= 0.04
    assert sorted(os.listdir(tmp_path)) == ["x.mkv"]


def test_decode_frame_at_matches_sequential(tmp_path):
    frames = moving_square(12, 48, 64)
    write_video(tmp_path / "gop.mp4", frames, 25, options={"g": "4"})
    full, _ = read_frames(tmp_path / "gop.mp4")
    for i in (0, 5, 11, 3, 8, 4):
        np.testing.assert_array_equal(decode_frame_at(tmp_path / "gop.mp4", i), full[i])
    with pytest.raises(UsageError):
        decode_frame_at(tmp_path / "gop.mp4", 12)


# ---------------------------------------------------------------- real clips


def test_fixture_clip():
    assert FIXTURE.stat().st_size < 150_000
    info = probe_video(FIXTURE)
    assert (info.width, info.height, info.frames, info.fps, info.codec) == (320, 180, 32, 25.0, "h264")
    arr, _ = read_frames(FIXTURE, frames=(30, 32))
    assert arr.shape == (2, 180, 320, 3)


@pytest.mark.skipif(not (SHARED_CLIPS / "intel_asl_gestures_book.mkv").exists(), reason="shared clips not present")
def test_shared_full_range_mkv():
    info = probe_video(SHARED_CLIPS / "intel_asl_gestures_book.mkv")
    assert (info.width, info.height, info.frames) == (640, 480, 109)
    assert info.pix_fmt == "yuvj420p" and info.color_range == "pc"
