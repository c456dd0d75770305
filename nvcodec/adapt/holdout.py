"""How attach and tune split a frame sample into training and held-out frames, and their learning rates."""

from __future__ import annotations

HOLDOUT_FRACTION = 0.25
"""Share of the sample held out to score adapters (at least one frame when the sample has more than 2)."""
DISTILL_LR = 1e-3
"""Adapter learning rate with distillation through the frozen tail."""
FEATURE_LR = 1e-4
"""Adapter learning rate on the feature loss alone."""


def split(n: int) -> tuple[list[int], list[int]]:
    """(train, held-out) positions of a sample of `n`: held-out ones spread evenly; both all of it when n <= 2."""
    hold = max(1, round(n * HOLDOUT_FRACTION)) if n > 2 else 0
    if hold == 0:
        return list(range(n)), list(range(n))
    step = n / hold
    val = sorted({min(n - 1, int(i * step + step / 2)) for i in range(hold)})
    return [i for i in range(n) if i not in val], val
