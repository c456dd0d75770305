import os

# Tiny models: one thread avoids OpenMP spin-waits that make tiny ops 10x slower on a busy
# 2-core machine. Set before torch is imported; subprocesses (CLI tests) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption("--regen-golden", action="store_true", help="rewrite golden files in fixtures/")


# Plumbing tests fit tiny models for a few epochs (fits a few tenths of a dB above the clip's mean
# colour): they keep only the bare "better than a constant frame" rule. Tests of the degenerate-fit
# margin itself delete this with monkeypatch (see `real_fit_margin`). Set here, so that CLI
# subprocesses inherit it.
os.environ["NVCODEC_MIN_FIT_GAIN_DB"] = "0"


@pytest.fixture
def real_fit_margin(monkeypatch):
    """The shipped degenerate-fit margin (MIN_GAIN_DB), not the plumbing tests' relaxed one."""
    monkeypatch.delenv("NVCODEC_MIN_FIT_GAIN_DB", raising=False)


@pytest.fixture(autouse=True)
def _fresh_backbone_cache():
    """Each test builds its own backbones (infer keeps built ones per process)."""
    import sys

    runtime = sys.modules.get("nvcodec.route.runtime")
    if runtime is not None:
        runtime.clear_backbone_cache()
    yield


@pytest.fixture
def regen_golden(request) -> bool:
    return request.config.getoption("--regen-golden")


import av  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_CLIPS = os.path.join(ROOT, "..", "shared", "clips")


def synthetic_frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus a moving square: easy for an INR, non-trivial for a codec."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / max(w - 1, 1), yy / max(h - 1, 1), 0.5 + 0.5 * np.sin(xx / 5 + yy / 7)], -1)
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    side = max(2, min(h, w) // 4)
    color = rng.uniform(0.2, 1.0, 3)
    for t in range(n):
        img = base.copy()
        y0 = (t * 2) % max(1, h - side)
        x0 = (t * 3) % max(1, w - side)
        img[y0:y0 + side, x0:x0 + side] = color
        out[t] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def write_clip(path: str, frames: np.ndarray, fps: int = 25, codec: str = "libx264") -> str:
    """Write frames with PyAV (H.264 yuv444p high quality by default, FFV1 for lossless)."""
    with av.open(path, "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height = frames.shape[2], frames.shape[1]
        if codec == "libx264":
            s.pix_fmt = "yuv444p"
            s.options = {"crf": "4", "preset": "ultrafast"}
        elif codec == "ffv1":
            s.pix_fmt = "bgr0"
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def encode_tiny(directory, frames: int = 8, epochs: int = 15, params: int = 8000) -> str:
    """Encode a synthetic 40x64 clip of `frames` frames into `directory`/c.nvp (fixed epochs, seed 0); its path."""
    from nvcodec.codec.encode import EncodeOptions, encode

    clip = write_clip(str(directory / "c.mp4"), synthetic_frames(frames, 40, 64))
    out = str(directory / "c.nvp")
    encode(clip, out, EncodeOptions(psnr=None, epochs=epochs, params=params, device="cpu", seed=0))
    return out


def copy_nvp(src: str, directory, name: str = "t.nvp") -> str:
    """A private copy of the `.nvp` at `src` in `directory` (tests that append must not share files)."""
    import shutil

    return shutil.copy(src, str(directory / name))


@pytest.fixture
def tiny_clip(tmp_path):
    """Path of a 6-frame 32x48 H.264 clip made for the test."""
    return write_clip(str(tmp_path / "tiny.mp4"), synthetic_frames(6, 32, 48))
