"""Which frames each epoch of a fit trains on.

`uniform`: every frame once per epoch, in a random order (`torch.randperm`, seeded by the fit's seed and
the epoch), as every kind did before this module existed.

`loss`: after a first uniform epoch, an epoch's `n` draws are made with replacement, each frame with
probability proportional to its latest training loss (the loss of its last visit), plus LOSS_FLOOR of
the mean loss so that no frame is starved. The training loss is not reweighted: frames that are
still badly fitted get more of the steps, so in an epoch plan of a fixed length a clip whose
difficulty is uneven in time (car: 55 near-static frames, then a car driving through) spends its
steps where the error is; on clips whose frames are about equally hard the draws are close to
uniform. Measured in `benchmarks/results/RD.md` (variant `uniform`) and the README's "Frame sampling".

The sampler's state (each frame's latest loss) travels in the fit's checkpoints.
"""

from __future__ import annotations

import torch
from torch import Tensor

SAMPLINGS = ("uniform", "loss")
LOSS_FLOOR = 0.05


class FrameSampler:
    """Per-epoch frame orders for `n` frames under one of SAMPLINGS."""

    def __init__(self, n: int, mode: str, device: torch.device) -> None:
        if mode not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {mode!r}")
        self.n, self.mode = n, mode
        self.losses = torch.zeros(n, device=device)
        self.seen = torch.zeros(n, dtype=torch.bool, device=device)

    @property
    def tracks_loss(self) -> bool:
        """Whether the fit should report per-frame losses (`record`)."""
        return self.mode == "loss"

    def probabilities(self) -> Tensor | None:
        """Draw probabilities (n,) float64 on the CPU, or None while an epoch should be uniform."""
        if self.mode != "loss" or not bool(self.seen.all()):
            return None
        losses = self.losses.detach().double().cpu().clamp(min=0.0)
        mean = float(losses.mean())
        if not mean > 0.0:
            return None
        weights = losses + LOSS_FLOOR * mean
        return weights / weights.sum()

    def epoch_order(self, seed: int, epoch: int) -> Tensor:
        """The frame indices (n,) that epoch `epoch` trains on, in order (int64, CPU)."""
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        probs = self.probabilities()
        if probs is None:
            return torch.randperm(self.n, generator=gen)
        return torch.multinomial(probs, self.n, replacement=True, generator=gen)

    def record(self, idx: Tensor, losses: Tensor) -> None:
        """Each frame's loss (`losses` (B,) for frames `idx` (B,)) at its latest visit."""
        idx = idx.to(self.losses.device)
        self.losses[idx] = losses.detach().to(self.losses)
        self.seen[idx] = True

    def mean_loss(self) -> float | None:
        """Mean over frames of their latest loss once every frame has one (an estimate of the clip's loss
        that loss-driven draws do not bias towards hard frames), else None."""
        if not bool(self.seen.all()):
            return None
        return float(self.losses.double().mean())

    def state_dict(self) -> dict[str, Tensor]:
        """What a checkpoint keeps (CPU tensors)."""
        return {"losses": self.losses.detach().cpu(), "seen": self.seen.cpu()}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`; ValueError when it does not fit this sampler."""
        losses, seen = state.get("losses"), state.get("seen")
        if not isinstance(losses, Tensor) or not isinstance(seen, Tensor) or losses.shape != (self.n,) \
                or seen.shape != (self.n,):
            raise ValueError("sampler state does not fit this clip")
        self.losses.copy_(losses.to(self.losses))
        self.seen.copy_(seen.to(device=self.seen.device, dtype=torch.bool))
