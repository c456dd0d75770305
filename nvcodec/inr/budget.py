"""The time budget of a fit: robust step-time statistics, the final pass's reserve, when to stop.

Every optimisation step's wall time is recorded. The per-frame training cost is the median of the
last WINDOW steps after the first WARMUP_STEPS (allocator, oneDNN kernel selection and cold caches
make those slow), so a few slow steps, and a load that comes and goes, move the estimate by little
and the estimate follows a lasting change of load within about WINDOW / 2 steps.

The final pass (quantize, embed every frame, evaluate the dequantized model with SSIM and the float
model) is predicted from that cost: frames x per-frame step cost x `eval_ratio` x FINAL_PASSES,
where `eval_ratio` (the cost of one periodic check per frame over a training step per frame) is
measured at every periodic check (median), DEFAULT_EVAL_RATIO before the first one. The reserve is
MARGIN times that prediction. When the reserve would take more than 1 - MIN_TRAIN_SHARE of the
budget, the final pass goes lean (the float model is not evaluated: `psnr_float` is NaN), which
roughly halves it.

Training stops for time when elapsed + reserve reaches the budget, but only once SETTLE_STEPS steps
after warm-up have been timed; before that only past UNSETTLED_SHARE of the budget. When even the
lean reserve takes more than HOPELESS_SHARE of the budget, no usable fit can come out of it and the
fit stops at once with `BudgetTooSmallError`, naming the budget that would do (`suggest_budget`).

`now`, `on_step` and `on_eval_batch` are module-level hooks so that tests can replay contention
deterministically (a fake clock advanced per step and per evaluated frame).
"""

from __future__ import annotations

import math
import statistics
import time

from ..errors import DegenerateFitError

WARMUP_STEPS = 2
WINDOW = 16
SETTLE_STEPS = 3
MIN_TRAIN_SHARE = 0.8
UNSETTLED_SHARE = 0.5
HOPELESS_SHARE = 0.5
DEFAULT_EVAL_RATIO = 0.5
FINAL_PASSES = 2.0
LEAN_PASSES = 1.2
MARGIN = 1.25
SUGGEST_EPOCHS = 20


def now() -> float:
    """The clock a fit's budget reads (monotonic seconds); tests replace it."""
    return time.monotonic()


def on_step(step: int) -> None:
    """Called after every optimisation step (`step` counts from 1 in this run); a test hook."""


def on_eval_batch(frames: int) -> None:
    """Called after every evaluated batch of `frames` frames; a test hook."""


class BudgetTooSmallError(DegenerateFitError):
    """The time budget cannot produce a usable fit of this clip on this machine (nothing written).

    `reason` says what happened, `suggested` is the budget (seconds, for this fit) that would do at
    the measured speed (None when unknown), for about `epochs` epochs of training, `speed` the measured
    speed in words; `option` names the budget in the message (the CLI's `--time-budget`)."""

    def __init__(self, reason: str, suggested: float | None, speed: str = "", *,
                 option: str = "the time budget", note: str = "", epochs: int = SUGGEST_EPOCHS) -> None:
        self.reason, self.suggested, self.speed, self.option = reason, suggested, speed, option
        self.epochs = epochs
        if suggested is None:
            advice = f"raise {option}"
        else:
            advice = f"raise {option} to at least {round_up(suggested)} s (about {epochs} epochs"
            advice += f" at the measured speed: {speed})" if speed else ")"
        super().__init__(f"{reason}: not writing it; {advice}{note}")


class Budget:
    """Timing of one fit: `seconds` (None: no time limit) for `frames` frames in batches of `batch`,
    `elapsed_before` seconds already spent (a resumed fit)."""

    def __init__(self, seconds: float | None, frames: int, batch: int, elapsed_before: float = 0.0) -> None:
        self.seconds = seconds
        self.frames = frames
        self.batch = batch
        self.before = elapsed_before
        self.start = now()
        self.steps: list[float] = []
        self.ratios: list[float] = []
        self.lean = False

    def elapsed(self) -> float:
        """Seconds spent on this fit, a resumed run's earlier ones included."""
        return self.before + now() - self.start

    def record_step(self, seconds: float) -> None:
        """Record one optimisation step's wall time; goes lean when the full final pass would not fit."""
        self.steps.append(max(seconds, 0.0))
        if len(self.steps) > WARMUP_STEPS + 4 * WINDOW:
            del self.steps[WARMUP_STEPS:WARMUP_STEPS + WINDOW]
        if self.seconds is not None and self.settled() and not self.lean:
            self.lean = self.reserve() > (1.0 - MIN_TRAIN_SHARE) * self.seconds

    def record_eval(self, seconds: float) -> None:
        """Record a periodic check's wall time (quantize, embed, evaluate every frame)."""
        step = self.frame_step_seconds()
        if step is not None and step > 0:
            self.ratios.append(seconds / self.frames / step)

    def settled(self) -> bool:
        """Whether enough steps after warm-up were timed to trust the estimates."""
        return len(self.steps) >= WARMUP_STEPS + SETTLE_STEPS

    def frame_step_seconds(self) -> float | None:
        """Robust training cost per frame: median of the last WINDOW steps after warm-up, per frame."""
        if not self.steps:
            return None
        later = self.steps[WARMUP_STEPS:] or self.steps
        return statistics.median(later[-WINDOW:]) / self.batch

    def eval_ratio(self) -> float:
        """One periodic check's cost per frame over a training step's cost per frame."""
        return statistics.median(self.ratios) if self.ratios else DEFAULT_EVAL_RATIO

    def eval_seconds(self) -> float:
        """Predicted seconds of one periodic check."""
        step = self.frame_step_seconds()
        return 0.0 if step is None else self.frames * step * self.eval_ratio()

    def epoch_seconds(self) -> float:
        """Predicted seconds of one training epoch."""
        step = self.frame_step_seconds()
        return 0.0 if step is None else self.frames * step

    def final_seconds(self, lean: bool | None = None) -> float:
        """Predicted seconds of the final quantize-and-evaluate pass (lean: without the float model)."""
        lean = self.lean if lean is None else lean
        return (LEAN_PASSES if lean else FINAL_PASSES) * self.eval_seconds()

    def reserve(self) -> float:
        """Seconds kept for the final pass: MARGIN x its prediction (before settling, the larger of
        that and 1 - MIN_TRAIN_SHARE of the budget)."""
        r = MARGIN * self.final_seconds()
        if not self.settled() and self.seconds is not None:
            r = max(r, (1.0 - MIN_TRAIN_SHARE) * self.seconds)
        return r

    def train_seconds(self) -> float:
        """Training time the budget leaves (for a time-driven learning-rate schedule)."""
        assert self.seconds is not None
        return max(self.seconds - self.reserve(), 1e-9)

    def out_of_time(self) -> bool:
        """Whether training must stop now to finish within the budget."""
        if self.seconds is None:
            return False
        if not self.settled():
            return self.elapsed() >= UNSETTLED_SHARE * self.seconds
        return self.elapsed() + self.reserve() >= self.seconds

    def check_fits(self) -> bool:
        """Whether a periodic check still fits before the final pass."""
        return self.seconds is None or self.elapsed() + self.eval_seconds() + self.reserve() < self.seconds

    def hopeless(self) -> bool:
        """Whether the lean final pass alone takes more than HOPELESS_SHARE of the budget, judged on a
        full WINDOW of steps after warm-up (or sooner when training must stop anyway); or whether
        UNSETTLED_SHARE of the budget went by before the speed could even be measured."""
        if self.seconds is None:
            return False
        if not self.settled():
            return self.elapsed() >= UNSETTLED_SHARE * self.seconds
        if MARGIN * self.final_seconds(lean=True) <= HOPELESS_SHARE * self.seconds:
            return False
        return len(self.steps) >= WARMUP_STEPS + WINDOW or self.elapsed() + self.reserve() >= self.seconds

    def suggest_budget(self, epochs: int = SUGGEST_EPOCHS) -> float | None:
        """Seconds that would train `epochs` epochs and run the full final pass at the measured speed,
        and train for at least MIN_TRAIN_SHARE of it; None before any step was timed."""
        if self.frame_step_seconds() is None:
            return None
        reserve = MARGIN * self.final_seconds(lean=False)
        return max(epochs * self.epoch_seconds() + reserve, reserve / (1.0 - MIN_TRAIN_SHARE))

    def describe_speed(self) -> str:
        """A short account of the measured speed for messages."""
        step = self.frame_step_seconds()
        if step is None:
            return "no step was timed"
        return (f"{step:.3g} s per frame per training step, one epoch ~{_secs(self.epoch_seconds())}, "
                f"the final quantize-and-evaluate pass ~{_secs(self.final_seconds(lean=True))}")


def _secs(s: float) -> str:
    return f"{s:,.0f} s" if s >= 10 else f"{s:.2g} s"


def round_up(seconds: float) -> int:
    """A budget suggestion rounded up to 2 significant digits (at least 1 s)."""
    if seconds <= 1:
        return 1
    step = 10 ** max(int(math.floor(math.log10(seconds))) - 1, 0)
    return int(math.ceil(seconds / step) * step)
