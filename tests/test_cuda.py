"""CUDA paths end to end; skipped on machines without a CUDA device (CI has none)."""

import pytest
import torch

import nvcodec
from nvcodec.codec.encode import EncodeOptions, encode
from nvcodec.tasks.attach import attach
from nvcodec.tasks.infer import infer

from conftest import synthetic_frames, write_clip

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_encode_decode_attach_infer_on_cuda(tmp_path):
    clip = write_clip(str(tmp_path / "c.mp4"), synthetic_frames(6, 32, 48))
    out = str(tmp_path / "c.nvp")
    s = encode(clip, out, EncodeOptions(psnr=None, epochs=30, params=8000, device="cuda"))
    assert s["device"].startswith("cuda")
    with nvcodec.open(out) as v:
        gpu = v.frames(device="cuda")
        cpu = v.frames(device="cpu")
        assert gpu.device.type == "cuda"
        assert (gpu.cpu().int() - cpu.int()).abs().max() <= 2
        assert v.features(1, [0], device="cuda").device.type == "cuda"
    attach(out, "resnet50", weights="random-tiny", top_k=0.2, epochs=2, device="cuda")
    r = infer(out, ["resnet50"], frames=(0, 2), device="cuda", compare_pixels=True)
    assert r["device"].startswith("cuda")
    assert r["tasks"]["resnet50"]["timing_ms"]["total"] > 0
