"""The montage builder of the fidelity benchmark: crop/resize, joining pieces, two RGB conversions."""

import numpy as np
import pytest

from nvcodec.bench.montage import build_montage, clip_frames, constant_label_share, fit_frames
from nvcodec.errors import UsageError

from conftest import synthetic_frames, write_clip


def test_fit_frames_crops_to_the_aspect_then_resizes():
    frames = np.zeros((2, 40, 80, 3), dtype=np.uint8)
    frames[:, :, 20:60] = 200  # the centre 40 columns: what a square crop keeps
    out = fit_frames(frames, 10, 10)
    assert out.shape == (2, 10, 10, 3) and out.dtype == np.uint8 and (out == 200).all()
    tall = np.zeros((1, 90, 30, 3), dtype=np.uint8)
    tall[:, 30:60] = 90
    assert (fit_frames(tall, 30, 30) == 90).all()
    same = synthetic_frames(1, 16, 24)
    assert np.array_equal(fit_frames(same, 24, 16), same)
    with pytest.raises(UsageError):
        fit_frames(same, 0, 16)


def test_build_montage_joins_pieces_in_order(tmp_path):
    a = write_clip(str(tmp_path / "a.mp4"), synthetic_frames(6, 32, 48, seed=1))
    b = write_clip(str(tmp_path / "b.mp4"), synthetic_frames(6, 48, 48, seed=2))
    frames, layout = build_montage([(a, 1), (b, 0)], 3, 24, 16)
    assert frames.shape == (6, 16, 24, 3)
    assert [p["montage_frames"] for p in layout] == [[0, 3], [3, 6]]
    assert layout[0]["source_frames"] == [1, 4]
    assert np.array_equal(frames[:3], fit_frames(clip_frames(a, 1, 3), 24, 16))
    other, _ = build_montage([(a, 1), (b, 0)], 3, 24, 16, "pyav")
    assert other.shape == frames.shape
    diff = np.abs(other.astype(int) - frames.astype(int))
    assert diff.mean() < 8  # the same pictures, converted to RGB another way
    with pytest.raises(UsageError):
        build_montage([(a, 4)], 3, 24, 16)  # runs past the clip's 6 frames
    with pytest.raises(UsageError):
        clip_frames(a, 0, 2, "yuv")


def test_constant_label_share():
    assert constant_label_share([3, 3, 1, 2]) == 0.5
    assert constant_label_share(np.arange(10)) == pytest.approx(0.1)
    assert constant_label_share([]) == 0.0
