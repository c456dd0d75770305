"""A default-size encode never writes a file above the source stream's bits per pixel."""

from __future__ import annotations

import os

import pytest

from conftest import ROOT, synthetic_frames, write_clip
from nvcodec.codec import ratecap
from nvcodec.codec.encode import EncodeOptions, encode, source_bpp
from nvcodec.inr.plan import plan_config
from nvcodec.video import probe_video

DOG = os.path.join(ROOT, "fixtures", "dog_320x180.mp4")


@pytest.mark.parametrize("kind", ["hnerv", "nerv"])
def test_capped_config_fits_under_the_cap(kind: str) -> None:
    cap, n = 0.1, 32
    plain = plan_config(320, 180, n, kind=kind, source_bpp=cap)
    assert ratecap.file_bpp(plain, 8, 6, n) > cap  # what the plan alone gives: above the cap (issue 19)
    c = ratecap.capped_config(lambda s: plan_config(320, 180, n, kind=kind, source_bpp=s), cap, 8, 6, n)
    assert ratecap.file_bpp(c, 8, 6, n) <= cap
    assert c.num_params() < plain.num_params()


def test_default_size_encode_stays_at_or_below_the_source_bpp(tmp_path) -> None:
    info = probe_video(DOG)
    out = str(tmp_path / "dog.nvp")
    s = encode(DOG, out, EncodeOptions(psnr=None, epochs=1, device="cpu", frames=(0, 32)))
    assert s["bytes"] == os.path.getsize(out)
    assert s["bpp"] <= source_bpp(info), (s["bpp"], source_bpp(info))
    assert s["kbps"] <= s["source_kbps"]


def test_bpp_is_a_cap_on_the_file(tmp_path) -> None:
    """--bpp counts the file's bytes (quantization parameters, headers, metadata), not only the model's bits."""
    n, cap = 32, 0.12
    plain = plan_config(320, 180, n, kind="hinerv", bpp=cap)
    assert ratecap.file_bpp(plain, 8, 6, n) > cap  # the model's bits alone put the file above the target
    out = str(tmp_path / "dog.nvp")
    s = encode(DOG, out, EncodeOptions(bpp=cap, psnr=None, epochs=1, device="cpu", frames=(0, n)))
    assert s["bpp"] <= cap and s["target_bpp"] == cap and s["warnings"] == []
    assert s["bpp"] > 0.6 * cap  # at, or a little below, the cap: not a much smaller model


def test_bpp_below_the_smallest_model_warns(tmp_path) -> None:
    clip = write_clip(str(tmp_path / "c.mp4"), synthetic_frames(8, 40, 64))
    s = encode(clip, str(tmp_path / "c.nvp"), EncodeOptions(bpp=0.001, psnr=None, epochs=15, device="cpu"))
    assert s["bpp"] > 0.001
    assert len(s["warnings"]) == 1 and "above --bpp 0.001" in s["warnings"][0]


def test_cap_holds_where_plans_come_in_coarse_steps() -> None:
    """Small models grow in whole channel widths: the plan for 0.1 bpp (7 channels) predicts a file just
    above 0.1, and re-planning a few percent lower gives the same plan; the search still finds one under
    the cap, and the largest that is."""
    n = 96

    def plan(b: float):
        return plan_config(160, 90, n, kind="hinerv", bpp=b, weight_bits=6, embed_bits=5)

    assert ratecap.file_bpp(plan(0.1), 6, 5, n) > 0.1 * ratecap.MARGIN
    c = ratecap.capped_config(plan, 0.1, 6, 5, n)
    assert ratecap.file_bpp(c, 6, 5, n) <= 0.1 * ratecap.MARGIN
    wider = plan_config(160, 90, n, kind="hinerv", bpp=0.1, weight_bits=6, embed_bits=5)
    assert c.channels[0] == wider.channels[0] - 1  # one width step below, not more
    tiny = ratecap.capped_config(plan, 1e-4, 6, 5, n)  # nothing fits: the smallest plan
    assert tiny.channels == plan(1e-6).channels
