"""Which frames each epoch of a fit trains on.

`uniform`: every frame once per epoch, in a random order (`torch.randperm`, seeded by the fit's seed and
the epoch), as every kind did before this module existed.

`loss`: after a first uniform epoch, an epoch's `n` draws are made with replacement, each frame with
probability proportional to its latest training loss (the loss of its last visit), plus LOSS_FLOOR of
the mean loss so that no frame is starved. The training loss is not reweighted: frames that are still
badly fitted get more of the steps, so in an epoch plan of a fixed length a clip whose difficulty is
uneven in time (car: 55 near-static frames, then a car driving through) spends its steps where the
error is.

`auto` (hinerv's default): uniform epochs while the clip is measured; after DECIDE_EPOCHS epochs, loss
draws for the rest of the fit when the frames' latest losses vary by a coefficient of variation of
UNEVEN_CV or more, else uniform epochs to the end, exactly as `uniform`. Measured after 3 uniform epochs
(25-epoch plans, 0.03-0.2 bpp): car 0.99-1.02, the other shared clips 0.11-0.35, `make demo`'s clip 0.13
(README, "Frame sampling"). Loss draws on clips of even difficulty changed nothing beyond seed noise
in benchmarks/rd.py but moved where a `--psnr` stop lands, so only uneven clips get them.

The sampler's state (each frame's latest loss and the decision) travels in the fit's checkpoints.
"""

from __future__ import annotations

import torch
from torch import Tensor

SAMPLINGS = ("uniform", "loss", "auto")
LOSS_FLOOR = 0.05
DECIDE_EPOCHS = 3
UNEVEN_CV = 0.6

_UNDECIDED, _UNIFORM, _LOSS = -1, 0, 1


class FrameSampler:
    """Per-epoch frame orders for `n` frames under one of SAMPLINGS."""

    def __init__(self, n: int, mode: str, device: torch.device) -> None:
        if mode not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {mode!r}")
        self.n, self.mode = n, mode
        self.losses = torch.zeros(n, device=device)
        self.seen = torch.zeros(n, dtype=torch.bool, device=device)
        self.decision = {"uniform": _UNIFORM, "loss": _LOSS, "auto": _UNDECIDED}[mode]

    @property
    def tracks_loss(self) -> bool:
        """Whether the fit should report per-frame losses (`record`)."""
        return self.decision != _UNIFORM

    @property
    def draws_by_loss(self) -> bool:
        """Whether epochs (after the first) draw frames by their loss."""
        return self.decision == _LOSS

    def spread(self) -> float | None:
        """Coefficient of variation of the frames' latest losses (None until every frame has one)."""
        if not bool(self.seen.all()):
            return None
        losses = self.losses.detach().double()
        mean = float(losses.mean())
        return float(losses.std(unbiased=False)) / mean if mean > 0.0 else 0.0

    def probabilities(self) -> Tensor | None:
        """Draw probabilities (n,) float64 on the CPU, or None while an epoch should be uniform."""
        if self.decision != _LOSS or not bool(self.seen.all()):
            return None
        losses = self.losses.detach().double().cpu().clamp(min=0.0)
        mean = float(losses.mean())
        if not mean > 0.0:
            return None
        weights = losses + LOSS_FLOOR * mean
        return weights / weights.sum()

    def epoch_order(self, seed: int, epoch: int) -> Tensor:
        """The frame indices (n,) that epoch `epoch` trains on, in order (int64, CPU)."""
        if self.decision == _UNDECIDED and epoch >= DECIDE_EPOCHS:
            spread = self.spread()
            if spread is not None:
                self.decision = _LOSS if spread >= UNEVEN_CV else _UNIFORM
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
        return {"losses": self.losses.detach().cpu(), "seen": self.seen.cpu(),
                "decision": torch.tensor(self.decision, dtype=torch.int8)}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`; ValueError when it does not fit this sampler."""
        losses, seen, decision = state.get("losses"), state.get("seen"), state.get("decision")
        if not isinstance(losses, Tensor) or not isinstance(seen, Tensor) or losses.shape != (self.n,) \
                or seen.shape != (self.n,):
            raise ValueError("sampler state does not fit this clip")
        self.losses.copy_(losses.to(self.losses))
        self.seen.copy_(seen.to(device=self.seen.device, dtype=torch.bool))
        if self.mode == "auto" and isinstance(decision, Tensor) and decision.numel() == 1 \
                and int(decision) in (_UNDECIDED, _UNIFORM, _LOSS):
            self.decision = int(decision)
