"""`ClipSampling`: how a clip task (a task whose unit is a window of video frames) samples its frames.

Declared with the task (``TaskSpec.clip``); windows, clip adapters and their routing live in
`nvcodec.route.clips`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClipSampling:
    """How a clip task samples video frames: `frames` per clip, one every `rate` video frames.

    `tiny_frames` / `tiny_rate`: the same for the tiny test model. `sample_windows`: how many
    windows attach samples by default.
    """

    frames: int
    rate: int
    tiny_frames: int
    tiny_rate: int = 1
    sample_windows: int = 6

    def clip_len(self, tiny: bool = False) -> int:
        """Frames the backbone takes per clip."""
        return self.tiny_frames if tiny else self.frames

    def span(self, tiny: bool = False) -> int:
        """Video frames one window covers by default (frames x rate)."""
        return self.tiny_frames * self.tiny_rate if tiny else self.frames * self.rate

    def to_dict(self) -> dict[str, int]:
        """For `nvcodec tasks` listings."""
        return {"frames": self.frames, "rate": self.rate, "window": self.span()}
