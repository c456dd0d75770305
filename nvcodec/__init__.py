"""nvcodec: videos stored as implicit neural representations, serving ML tasks from them.

    v = nvcodec.open("clip.nvp")
    v[0]                              # uint8 (H, W, 3) frame, decoded without its neighbours
    v.frames(range(8))                # (8, H, W, 3)
    v.features(layer=2, frames=[0])   # decoder block 2 activations, reading blocks 0..2 only
    v.infer("resnet50", frames=[0])   # a task served from the INR (after `attach`)
    nvcodec.batch("videos/", "out/")  # every video of a folder, on Ray when installed
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["open", "encode", "EncodeOptions", "NvpVideo", "batch", "batch_infer", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy so that `import nvcodec` stays cheap and light modules (errors, container) load alone.
    if name in ("open", "NvpVideo"):
        from . import api

        return getattr(api, name)
    if name in ("encode", "EncodeOptions"):
        from .codec import encode

        return getattr(encode, name)
    if name in ("batch", "batch_infer"):
        from . import jobs

        return getattr(jobs, name)
    raise AttributeError(f"module 'nvcodec' has no attribute {name!r}")
