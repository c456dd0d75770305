"""attach warns when the INR's features barely vary across frames (a near-constant encode)."""

from __future__ import annotations

import torch

from nvcodec.tasks.attach import FEATURE_VARIATION_MIN, Candidate, feature_variation, quality_warnings


def test_feature_variation_flags_frame_independent_features() -> None:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 8, 6, 6, generator=g)
    flat = {0: base.expand(5, -1, -1, -1) + 1e-3 * torch.randn(5, 8, 6, 6, generator=g),
            1: torch.full((5, 4, 12, 12), 0.3)}
    varied = {0: torch.randn(5, 8, 6, 6, generator=g), 1: torch.full((5, 4, 12, 12), 0.3)}
    assert feature_variation(flat) < FEATURE_VARIATION_MIN < feature_variation(varied)
    assert feature_variation({0: torch.zeros(3, 2, 2, 2)}) == 0.0
    good = [Candidate(0, "stem", 0.4, 0.8)]
    (w,) = quality_warnings(good, 0.988, variation=feature_variation(flat))
    assert "barely vary" in w
    assert quality_warnings(good, 0.988, variation=feature_variation(varied)) == []


def test_hinerv_time_channel_does_not_count_as_variation() -> None:
    """A hinerv block's last channel is the frame time, which varies by construction: features that are
    otherwise the same for every frame still barely vary."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 8, 6, 6, generator=g).expand(5, -1, -1, -1)
    t = torch.linspace(0, 1, 5).view(5, 1, 1, 1).expand(5, 1, 6, 6)
    block = {0: torch.cat([base, t], dim=1)}
    assert feature_variation(block) > FEATURE_VARIATION_MIN
    assert feature_variation(block, time_channel=True) < FEATURE_VARIATION_MIN
