"""A default-size encode never writes a file above the source stream's bits per pixel."""

from __future__ import annotations

import os

import pytest

from conftest import ROOT
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
