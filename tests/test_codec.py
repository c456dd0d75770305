"""Encode -> .nvp -> decode, end to end through the public API, with tiny clips made here."""

import os

import pytest
import torch

import nvcodec
from nvcodec.codec.encode import EncodeOptions, encode
from nvcodec.container import NvpReader
from nvcodec.errors import InputError, UsageError
from nvcodec.inr.metrics import psnr

from conftest import ROOT, synthetic_frames, write_clip

FAST = dict(psnr=None, epochs=60, seed=0, device="cpu", params=6000)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    d = tmp_path_factory.mktemp("enc")
    frames = synthetic_frames(6, 32, 48)
    clip = write_clip(str(d / "clip.mp4"), frames)
    out = str(d / "clip.nvp")
    summary = encode(clip, out, EncodeOptions(**FAST))
    return clip, out, summary, frames


def test_summary_fields_and_rate_is_the_file(encoded):
    _, out, s, _ = encoded
    for key in ("output", "bytes", "bpp", "psnr", "psnr_min", "ssim", "params", "frames", "width", "height", "encode_seconds"):
        assert key in s
    assert s["bytes"] == os.path.getsize(out)
    assert s["bpp"] == pytest.approx(s["bytes"] * 8 / (48 * 32 * 6))
    assert (s["frames"], s["width"], s["height"]) == (6, 48, 32)


def test_decode_beats_psnr_floor_and_matches_stored_psnr(encoded):
    _, out, s, frames = encoded
    with nvcodec.open(out) as v:
        dec = v.frames()
    assert dec.shape == frames.shape and dec.dtype == torch.uint8
    measured = float(psnr(dec, torch.from_numpy(frames)))
    assert measured > 22.0
    assert measured == pytest.approx(s["psnr"], abs=1.0)


def test_random_access_equals_sequential(encoded):
    _, out, _, _ = encoded
    with nvcodec.open(out) as v:
        seq = v.frames(batch_size=6)
        for i in (5, 0, 3, 2):
            assert torch.equal(v[i], seq[i])
        assert torch.equal(v.frames([4, 1]), seq[[4, 1]])
        assert torch.equal(v.frames(slice(1, 5, 2)), seq[1:5:2])
        assert torch.equal(v.frames(batch_size=4), seq)  # any batch size, the same pixels


def test_features_read_only_needed_sections(encoded, monkeypatch):
    _, out, _, _ = encoded
    read = []
    orig = NvpReader.read

    def spy(self, name, max_bytes=None):
        read.append(name)
        return orig(self, name, max_bytes)

    monkeypatch.setattr(NvpReader, "read", spy)
    with nvcodec.open(out) as v:
        read.clear()
        f = v.features(0, [1])
        assert f.ndim == 4 and f.shape[0] == 1
    assert "head" not in read
    assert not any(n.startswith("block/") and n != "block/0" for n in read)


def test_features_equal_full_forward_intermediates(encoded):
    _, out, _, _ = encoded
    with nvcodec.open(out) as v:
        seg = v.segments[0]
        dec, _ = v.decoder(seg, None, torch.device("cpu"))
        x = v.inputs(seg, [2], torch.device("cpu"), None)
        caught = []
        hooks = [b.register_forward_hook(lambda m, i, o: caught.append(o)) for b in dec.blocks]
        try:
            dec(x)
        finally:
            for h in hooks:
                h.remove()
        for k in range(v.num_layers):
            assert torch.equal(v.features(k, [2]), caught[k])


@pytest.mark.parametrize("h,w", [(27, 45), (17, 30)])
def test_odd_resolution_round_trips_at_exact_size(tmp_path, h, w):
    frames = synthetic_frames(3, h, w)
    clip = write_clip(str(tmp_path / "odd.mkv"), frames, codec="ffv1")
    out = str(tmp_path / "odd.nvp")
    s = encode(clip, out, EncodeOptions(**{**FAST, "epochs": 10}))
    assert (s["width"], s["height"]) == (w, h)
    with nvcodec.open(out) as v:
        assert v.frames().shape == (3, h, w, 3)
        assert (v.metadata.width, v.metadata.height) == (w, h)


def test_segments_cover_the_video(tmp_path):
    frames = synthetic_frames(5, 24, 32)
    clip = write_clip(str(tmp_path / "seg.mp4"), frames)
    out = str(tmp_path / "seg.nvp")
    s = encode(clip, out, EncodeOptions(**{**FAST, "epochs": 5, "segment_frames": 2}))
    assert s["segments"] == 3
    with nvcodec.open(out) as v:
        assert [(x.start, x.stop) for x in v.segments] == [(0, 2), (2, 4), (4, 5)]
        full = v.frames()
        assert full.shape[0] == 5
        assert torch.equal(v[4], full[4]) and torch.equal(v[1], full[1])


def test_frame_range_encodes_only_that_range(tmp_path):
    frames = synthetic_frames(6, 24, 32)
    clip = write_clip(str(tmp_path / "r.mp4"), frames)
    out = str(tmp_path / "r.nvp")
    s = encode(clip, out, EncodeOptions(**{**FAST, "epochs": 3, "frames": (2, 5)}))
    assert s["frames"] == 3
    with nvcodec.open(out) as v:
        assert v.metadata.source_frames == (2, 5)


def test_nerv_kind(tmp_path, tiny_clip):
    out = str(tmp_path / "n.nvp")
    s = encode(tiny_clip, out, EncodeOptions(**{**FAST, "kind": "nerv", "epochs": 5}))
    with nvcodec.open(out) as v:
        assert v.config().kind == "nerv"
        assert v.frames([0, 5]).shape == (2, 32, 48, 3)
    assert s["kind"] == "nerv"


def test_bad_inputs_fail_cleanly_and_leave_nothing(tmp_path, tiny_clip):
    out = str(tmp_path / "x.nvp")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(200))
    with pytest.raises(InputError):
        encode(str(bad), out, EncodeOptions(**FAST))
    assert not os.path.exists(out)
    with pytest.raises((InputError, UsageError)):
        encode(str(tmp_path / "missing.mp4"), out, EncodeOptions(**FAST))
    with pytest.raises(UsageError):
        encode(tiny_clip, out, EncodeOptions(**{**FAST, "frames": (4, 40)}))
    with pytest.raises(UsageError):
        encode(tiny_clip, str(tmp_path / "no" / "dir.nvp"), EncodeOptions(**FAST))
    assert not os.path.exists(out)


def test_existing_output_is_never_damaged(tmp_path, tiny_clip):
    out = tmp_path / "keep.nvp"
    out.write_bytes(b"precious")
    with pytest.raises(UsageError):
        encode(tiny_clip, str(out), EncodeOptions(**FAST))
    assert out.read_bytes() == b"precious"


def test_interrupt_then_resume(tmp_path, tiny_clip, monkeypatch):
    from nvcodec.errors import Interrupted

    out = str(tmp_path / "r.nvp")
    calls = {"n": 0}

    def interrupting(event):
        if event.stage == "fit":
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        encode(tiny_clip, out, EncodeOptions(**{**FAST, "epochs": 12}), progress=interrupting)
    assert not os.path.exists(out)
    assert os.path.isdir(out + ".ckpt")
    s = encode(tiny_clip, out, EncodeOptions(**{**FAST, "epochs": 12, "resume": True}))
    assert os.path.exists(out) and not os.path.exists(out + ".ckpt")
    assert s["epochs"] == [12]


@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, "fixtures", "dog_320x180.mp4")), reason="fixture clip missing")
def test_real_clip_fixture_beats_floor(tmp_path):
    clip = os.path.join(ROOT, "fixtures", "dog_320x180.mp4")
    out = str(tmp_path / "dog.nvp")
    s = encode(clip, out, EncodeOptions(psnr=None, epochs=40, seed=0, device="cpu", params=40000, frames=(0, 4)))
    assert s["psnr"] > 18.0
    with nvcodec.open(out) as v:
        assert v.frames([0]).shape == (1, 180, 320, 3)
