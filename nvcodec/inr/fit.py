"""Fitting an INR to a clip: Adam, linear warm-up + cosine decay, bf16 autocast, checkpoints.

Schedule: the learning rate follows warm-up then cosine decay over a progress fraction p in [0, 1].
With `epochs`, p = (epochs done) / epochs, and a `time_budget` beside it is only a safety cap that
stops training early (`stopped_by` "time"); with only `time_budget`, p = elapsed / (the training
time the budget leaves); with neither, `DEFAULT_EPOCHS`. Epoch-driven runs that are not cut short
are bit-reproducible on the same machine and torch build (a time-driven schedule depends on wall time).

Time budget (`budget.Budget`): checked before every optimisation step. Training stops when the
time spent plus a reserve for the final quantize-and-evaluate pass reaches the budget, so that the
whole fit ends within the budget, and a periodic check that would not fit is skipped. The reserve
comes from robust statistics of the step times after warm-up (re-estimated as load changes) and
the measured cost of the periodic checks, never from the first steps alone; when the final pass
would take much of the budget it goes lean (no float-model evaluation), and when even that leaves
no room for training the fit stops early with `BudgetTooSmallError` naming the budget that would do.

Frame order (`sampling.FrameSampler`): each epoch is `n / batch_size` steps; with `sampling="uniform"`
every frame once in a seeded random order, with "loss" frames drawn by their latest training loss after
a first uniform epoch, with "auto" (hinerv's encode default) uniform epochs unless the frames' losses
after three epochs vary enough to switch to loss draws. Checkpoints keep each frame's latest loss, the
decision and the epoch's order, so a resumed fit continues exactly.

Initialisation: the head bias starts at the clip's mean colour (`INRDecoder.init_output`), so the
first steps fit structure instead of shifting every pixel towards the mean; together with the
head's surrogate gradient (`model.OUT_LEAK`) this keeps dark, bright and low-contrast clips from
collapsing to a constant frame.

Collapse: a fit whose training loss (l2) over a whole epoch, once warm-up is over and at least
COLLAPSE_MIN_STEPS steps in, and before quantization-aware training, is still COLLAPSE_RATIO or more of
the constant-frame MSE (every pixel the clip's mean colour) has collapsed: its last activations died
and no gradient reaches the network. It starts again from a fresh initialisation (the next seed) at
COLLAPSE_LR_SCALE times the learning rate, at most MAX_RESTARTS times; the epoch plan starts over, a
time budget's schedule spans what is left.
The history marks each restart (`restart`, `lr_peak`).

Degenerate fits: the final check (`check_not_degenerate`) raises `DegenerateFitError` when the
source is not flat but the decoded output is (every channel's standard deviation below
FLAT_STD), or when the pooled PSNR is less than MIN_GAIN_DB above the constant-frame baseline (every
frame the clip's mean colour), i.e. the fit explains less than half of the clip's variance. A
genuinely constant clip (source std below FLAT_STD) and fits of HIGH_PSNR dB or more are exempt.
The PSNR target stops training only once the PSNR also clears that margin. The message names the
likely cause: too little training (`BudgetTooSmallError`, with the budget that would do, or more
epochs) or, after enough training, the seed / learning rate / model size.

Frames stay uint8 on the CPU and are moved/converted per batch. The decoder output (padded size)
is cropped top-left to the frame size before the loss, so padding never enters the loss.
For HNeRV the encoder sees the frames edge-padded to the padded size. HiNeRV has no encoder: its
temporal base grid (`grid_frames` x embed_channels x eh x ew, what the file stores as embeddings) is
a parameter learned directly, sampled at each frame's time like the decoder does (`input_for`),
initialised N(0, GRID_INIT^2) and trained at GRID_LR_SCALE times the decoder's learning rate (the
kind's default is `DEFAULT_LRS`). Measured on dog (96 frames, 160x90, 25 epochs, ~0.1 bpp): 4 grid
frames x 32 channels learned directly reached 34.2 dB in 30 s where per-frame encoder embeddings
gave 30.0 dB in 41 s. One learning rate of 0.02 for both was 0.4 dB better on dog but collapsed the
car clip to a constant frame; the decoder at 0.01 and the grid at 0.02 fit both (README, "Fitting speed").
The rate follows the plan's depth: 0.01 at DEPTH_LR_BLOCKS (4) blocks, twice that at 3 (frames under
120 px on the short side), half at 5 (640x360 to 720p), a quarter at 6; `hinerv` runs Adam with
beta2 = 0.99 (ADAM_BETAS), which forgets a burst of large gradients sooner. On bunny (132 frames, 60
steps after a 10-step warm-up), 4 blocks at 320x180 learnt at 0.01 (loss 0.057 -> 0.025), 5 blocks at
640x360 stayed at the constant frame's loss at 0.01 (0.058, spiking) and learnt at 0.005 (0.025), and 5
blocks at 1280x720 with 1.5M parameters spiked above the constant frame at 0.01 and learnt at 0.005.
At 3 blocks (quarter-size clips, 25 epochs, 0.1 bpp) 0.02 gave dog 33.52 dB against 32.79 at 0.01,
ASL 34.23 / 33.42, flower 34.65 / 34.04, but collapsed car at 0.2 bpp and cost it 2.7 dB at 0.05;
with beta2 0.99 dog reached 33.67 and car 27.86 / 27.74 dB at 0.2 / 0.05 bpp without a restart
(README, "Fitting speed").

Quality checks every `eval_every` epochs (and at the end) measure the *dequantized* model
(weights and embeddings quantized with `weight_bits` / `embed_bits`) in fp32, on outputs rounded to
8 bits, with the PSNR definition of `metrics` (pooled MSE); training stops once that PSNR reaches
`psnr_target`. With a target and the l2 loss, every epoch's mean training loss gives a training PSNR
(history `train_psnr`), and two things follow from it:
- a check also runs after any epoch whose training PSNR, less the last check's gap (training PSNR
  minus checked PSNR then; 0 before the first check), reaches the stop level, so the fit stops within
  an epoch of reaching the target instead of at the next scheduled check;
- QAT (`qat` > 0) also starts once the training PSNR comes within QAT_LEAD_DB of the stop level
  (history `qat_start`), so that a PSNR-stopped fit, which usually ends long before the last `qat`
  of its epoch plan, still stops on the values the file stores.
On `make demo`'s encode (dog 320x180, 32 frames, stop at 33 dB, 300-epoch plan, 6/5 bits) QAT started
at epoch 28 and the fit stopped at epoch 39 with 33.84 dB at 0.213 bpp, where checks every 10 epochs
and no QAT stopped at epoch 40 with 33.62 dB at 0.220 bpp, in the same time within the machine's noise
(QAT's per-step cost about pays for the epoch saved); early checks without QAT stopped at epoch 34
(33.27 dB, 0.217 bpp, 70 s against 76-84 s); QAT from the first epoch coded 0.182 bpp but reached only
33.33 dB by epoch 41; a lead of 2 or 3 dB (QAT from epoch 23) gave 33.51 dB (README, *Results*).

Checkpoints (`checkpoint_path`): written every `CHECKPOINT_SECONDS`, at the end and on Ctrl-C
(then `Interrupted` is raised), atomically (temp file + os.replace), with plain tensors, numbers,
strings, lists and dicts only. `resume=True` continues from the checkpoint when it exists (same
config, frame count and size required, else UsageError); `time_budget` then counts the time already
recorded in the checkpoint.
"""

from __future__ import annotations

import copy
import io
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DegenerateFitError, Interrupted, UsageError, no_space_as_error
from ..progress import ProgressCallback, emit
from . import budget as _budget
from .budget import SUGGEST_EPOCHS, Budget, BudgetTooSmallError
from .metrics import PSNR_CAP, frame_mse, mse_to_psnr, quality_from_mse
from .metrics import ssim as ssim_fn
from .model import HNeRVEncoder, INRDecoder, crop, pad_frames
from .plan import INRConfig
from .qat import WeightSTE, allocate_bits, fake_quant_ste, make_plan
from .quant import QuantizedINR, dequantize_into, quantize_inr, widen_to_fit
from .sampling import SAMPLINGS, FrameSampler

DEFAULT_EPOCHS = 300
DEFAULT_LR = 3e-3
DEFAULT_LRS = {"hinerv": 1e-2}
DEPTH_LR_BLOCKS = 4
MIN_LR_BLOCKS = 3
ADAM_BETAS = {"hinerv": (0.9, 0.99)}
GRID_INIT = 0.1
GRID_LR_SCALE = 2.0
COLLAPSE_RATIO = 0.98
COLLAPSE_MIN_STEPS = 200
COLLAPSE_LR_SCALE = 0.5
MAX_RESTARTS = 2
DEFAULT_BATCH = 1
WARMUP = 0.1
CHECKPOINT_SECONDS = 30.0
CKPT_FORMAT = "nvcodec-fit-checkpoint"
LOSSES = ("l2", "l1+ssim")
FLAT_STD = 0.5 / 255.0
DEFAULT_QAT = 0.0
MIN_GAIN_DB = 3.0
HIGH_PSNR = 45.0
MIN_GAIN_ENV = "NVCODEC_MIN_FIT_GAIN_DB"
QAT_LEAD_DB = 1.0


@dataclass
class FitResult:
    """Outcome of `fit`. Quality numbers are for the dequantized model: `psnr` pooled over the clip,
    `psnr_frame_mean` and `psnr_min` over frames, `mse` pooled (see `metrics`). `widen`: the rate
    control's step factor (1.0: the model was quantized at its planned step)."""

    decoder: INRDecoder
    encoder: HNeRVEncoder | None
    embeddings: Tensor | None
    quantized: QuantizedINR
    psnr: float
    psnr_min: float
    ssim: float
    epochs: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    device: str = "cpu"
    dtype: str = "fp32"
    params: int = 0
    stopped_by: str = "epochs"
    psnr_float: float = float("nan")
    psnr_frame_mean: float = float("nan")
    mse: float = float("nan")
    output_std: list[float] = field(default_factory=list)
    source_std: list[float] = field(default_factory=list)
    psnr_constant: float = float("nan")
    widen: float = 1.0


def auto_amp(device: torch.device) -> bool:
    """bf16 autocast where it helps: CUDA with bf16 support, CPUs with native bf16 (AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def make_optimizer(params: list[Tensor] | list[dict[str, Any]], lr: float,
                   betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """Adam (betas 0.9, 0.999 unless given), fused into one kernel per step where this torch build has it
    for the parameters' device (CPU since torch 2.4, CUDA): on the small INR models most of a step's Adam
    time was per-tensor dispatch. Falls back to the plain implementation elsewhere."""
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=betas)


def lr_factor(p: float, warmup: float = WARMUP) -> float:
    """Linear warm-up over the first `warmup` of progress, then cosine decay to 0 at p = 1."""
    p = min(max(p, 0.0), 1.0)
    if p < warmup:
        return max(p / warmup, 0.02)
    return 0.5 * (1.0 + math.cos(math.pi * (p - warmup) / (1.0 - warmup)))


def _loss(out: Tensor, target: Tensor, kind: str) -> Tensor:
    if kind == "l2":
        return F.mse_loss(out, target)
    return 0.7 * F.l1_loss(out, target) + 0.3 * (1.0 - ssim_fn(out, target))


def _frame_losses(out: Tensor, target: Tensor, kind: str) -> Tensor:
    """`_loss` of each frame (N,); their mean is `_loss` of the batch (frames of one size)."""
    if kind == "l2":
        return (out - target).square().flatten(1).mean(1)
    return 0.7 * (out - target).abs().flatten(1).mean(1) + 0.3 * (1.0 - ssim_fn(out, target, per_frame=True))


def _batch(frames: Tensor, idx: Tensor, device: torch.device) -> Tensor:
    x = frames[idx].to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last)


def mean_rgb(frames: Tensor, chunk: int = 64) -> Tensor:
    """Mean colour (3,) in [0, 1] of uint8 frames (N, H, W, 3), summed in float64 chunk by chunk."""
    total = torch.zeros(3, dtype=torch.float64)
    for i in range(0, frames.shape[0], chunk):
        total += frames[i:i + chunk].reshape(-1, 3).sum(0, dtype=torch.float64)
    return (total / (255.0 * frames[..., 0].numel())).float()


@torch.no_grad()
def _embed_all(encoder: HNeRVEncoder, frames: Tensor, config: INRConfig, device: torch.device,
               batch: int, amp: bool) -> Tensor:
    encoder.eval()
    out = []
    for i in range(0, frames.shape[0], batch):
        x = pad_frames(_batch(frames, torch.arange(i, min(i + batch, frames.shape[0])), device),
                       config.pad_width, config.pad_height)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(encoder(x).float())
    encoder.train()
    return torch.cat(out).contiguous()


def channel_std(frames: Tensor, chunk: int = 64) -> Tensor:
    """Per-channel standard deviation (3,) in [0, 1] units of uint8 frames (N, H, W, 3) over the clip."""
    s1 = torch.zeros(3, dtype=torch.float64)
    s2 = torch.zeros(3, dtype=torch.float64)
    for i in range(0, frames.shape[0], chunk):
        x = frames[i:i + chunk].reshape(-1, 3).double() / 255.0
        s1 += x.sum(0)
        s2 += x.pow(2).sum(0)
    n = frames[..., 0].numel()
    return ((s2 / n - (s1 / n) ** 2).clamp(min=0.0).sqrt()).float()


@dataclass
class Evaluation:
    """What `evaluate` measured: per-frame MSE (float64), per-frame SSIM (or None), per-channel
    standard deviation of the decoded clip."""

    mse: Tensor
    ssim: Tensor | None
    output_std: Tensor


@torch.no_grad()
def evaluate(decoder: INRDecoder, inputs_fn, frames: Tensor, device: torch.device, batch: int,
             with_ssim: bool = False) -> Evaluation:
    """Per-frame MSE (and SSIM) and output statistics of decoded frames, rounded to 8 bits, in fp32."""
    c = decoder.config
    was_training = decoder.training
    decoder.eval()
    ms, ss = [], []
    s1 = torch.zeros(3, dtype=torch.float64)
    s2 = torch.zeros(3, dtype=torch.float64)
    for i in range(0, frames.shape[0], batch):
        idx = torch.arange(i, min(i + batch, frames.shape[0]))
        out = crop(decoder(inputs_fn(idx)).float(), c.width, c.height)
        out = (out.clamp(0, 1) * 255.0).round() / 255.0
        target = _batch(frames, idx, device)
        ms.append(frame_mse(out, target))
        flat = out.double().transpose(0, 1).reshape(3, -1)
        s1 += flat.sum(1).cpu()
        s2 += flat.pow(2).sum(1).cpu()
        if with_ssim:
            ss.append(ssim_fn(out, target, per_frame=True).cpu())
        _budget.on_eval_batch(len(idx))
    decoder.train(was_training)
    n = frames[..., 0].numel()
    std = (s2 / n - (s1 / n) ** 2).clamp(min=0.0).sqrt().float()
    return Evaluation(torch.cat(ms), torch.cat(ss) if with_ssim else None, std)


def constant_psnr(source_std: Tensor) -> float:
    """Pooled PSNR of the constant frame of the clip's mean colour (its MSE is the mean variance)."""
    return quality_from_mse([float(torch.as_tensor(source_std, dtype=torch.float64).pow(2).mean())])["psnr"]


def min_gain_db() -> float:
    """The degenerate-fit margin in dB: MIN_GAIN_DB, or the environment's NVCODEC_MIN_FIT_GAIN_DB
    (0 keeps only the bare "better than a constant frame" rule; the test suite's plumbing tests,
    which fit tiny models for a few epochs, use that)."""
    text = os.environ.get(MIN_GAIN_ENV)
    if not text:
        return MIN_GAIN_DB
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{MIN_GAIN_ENV} must be a number of dB, not {text!r}") from None
    if not 0.0 <= value <= 50.0:
        raise UsageError(f"{MIN_GAIN_ENV} must be between 0 and 50 dB")
    return value


def usable_psnr(source_std: Tensor) -> float:
    """The PSNR a fit of this clip must reach to count as usable (see `check_not_degenerate`)."""
    return min(constant_psnr(source_std) + min_gain_db(), HIGH_PSNR)


def degenerate_problem(psnr: float, output_std: Tensor, source_std: Tensor) -> str | None:
    """What makes a fit degenerate (see `check_not_degenerate`), or None for a usable one."""
    src = torch.as_tensor(source_std, dtype=torch.float64)
    out = torch.as_tensor(output_std, dtype=torch.float64)
    if float(src.max()) < FLAT_STD:
        return None
    if float(out.max()) < FLAT_STD:
        return (f"the fit collapsed to a constant frame (output std {float(out.max()) * 255:.2f}/255, source "
                f"{float(src.max()) * 255:.2f}/255, PSNR {psnr:.2f} dB)")
    if psnr < usable_psnr(src) or psnr <= constant_psnr(src):
        return (f"the fit is not clearly better than a constant frame (PSNR {psnr:.2f} dB, the clip's mean colour "
                f"gives {constant_psnr(src):.2f} dB, a usable fit at least {min_gain_db():g} dB more)")
    return None


def check_not_degenerate(psnr: float, output_std: Tensor, source_std: Tensor, *,
                         advice: str = "try another --seed or --lr") -> None:
    """Raise DegenerateFitError for a fit that decodes a non-flat clip to a (near-)constant frame,
    or whose pooled PSNR is less than MIN_GAIN_DB above the clip's constant-frame (mean colour)
    baseline (unless it reaches HIGH_PSNR). `advice` ends the message."""
    problem = degenerate_problem(psnr, output_std, source_std)
    if problem is not None:
        raise DegenerateFitError(f"{problem}: not writing it; {advice}")


def _raise_degenerate(problem: str, budget: Budget, stopped_by: str, epochs_done: int, steps_done: int,
                      epochs_asked: int | None) -> None:
    """Raise for a degenerate fit with advice that fits its likely cause: too little training time
    (BudgetTooSmallError with the budget that would do), too few epochs, or else seed / lr / size."""
    trained = f"it trained only {steps_done} step(s) ({epochs_done} epoch(s)) in {budget.elapsed():.0f} s"
    if stopped_by == "time" and epochs_done < SUGGEST_EPOCHS:
        # At least twice the epochs already trained, so the advice always asks for more than this run had.
        epochs = max(SUGGEST_EPOCHS, 2 * epochs_done)
        raise BudgetTooSmallError(f"{problem}; {trained}", budget.suggest_budget(epochs), budget.describe_speed(),
                                  epochs=epochs)
    if stopped_by == "epochs" and epochs_asked is not None and epochs_asked < SUGGEST_EPOCHS:
        raise DegenerateFitError(f"{problem}: not writing it; {trained}: give more epochs (at least {SUGGEST_EPOCHS})")
    raise DegenerateFitError(f"{problem}: not writing it; after {epochs_done} epoch(s), try another --seed or --lr, "
                             f"or a larger model (--params/--bpp)")


def _init_models(config: INRConfig, clip_mean: Tensor, seed: int, dev: torch.device, embedded: bool,
                 learned_grid: bool, lr: float) -> tuple[INRDecoder, HNeRVEncoder | None, Tensor | None,
                                                         torch.optim.Optimizer, list[float]]:
    """Fresh decoder (head bias at the clip's mean colour), HNeRV encoder or HiNeRV base grid, their Adam
    (the grid at GRID_LR_SCALE x `lr`) and the groups' peak learning rates."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        decoder = INRDecoder(config)
        decoder.init_output(clip_mean)
        encoder = HNeRVEncoder(config) if embedded else None
        grid = torch.randn(config.embedding_shape()) * GRID_INIT if learned_grid else None
    decoder.to(dev, memory_format=torch.channels_last)
    if encoder is not None:
        encoder.to(dev, memory_format=torch.channels_last)
    if grid is not None:
        grid = torch.nn.Parameter(grid.to(dev))
    params = list(decoder.parameters()) + (list(encoder.parameters()) if encoder is not None else [])
    groups = [{"params": params, "lr": lr}]
    if grid is not None:
        groups.append({"params": [grid], "lr": lr * GRID_LR_SCALE})
    opt = make_optimizer(groups, lr, ADAM_BETAS.get(config.kind, (0.9, 0.999)))
    return decoder, encoder, grid, opt, [g["lr"] for g in opt.param_groups]


def default_lr(kind: str, blocks: int | None = None) -> float:
    """The peak learning rate of a kind when none is given: DEFAULT_LRS, else DEFAULT_LR; for `hinerv` that
    is the rate of a DEPTH_LR_BLOCKS-block plan, doubled per block fewer (down to MIN_LR_BLOCKS) and
    halved per block more (see the module docstring)."""
    lr = DEFAULT_LRS.get(kind, DEFAULT_LR)
    if kind == "hinerv" and blocks is not None:
        lr *= 2.0 ** (DEPTH_LR_BLOCKS - max(blocks, MIN_LR_BLOCKS))
    return lr


def _check_args(frames: Tensor, config: INRConfig, epochs, time_budget, psnr_target, loss, lr, batch_size,
                eval_every) -> None:
    if not isinstance(frames, Tensor) or frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise UsageError("frames must be a uint8 tensor (N, H, W, 3)")
    n, h, w, _ = frames.shape
    if (n, h, w) != (config.num_frames, config.height, config.width):
        raise UsageError(f"frames {n}x{h}x{w} do not match the config "
                         f"({config.num_frames} frames of {config.height}x{config.width})")
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise UsageError("epochs must be a positive integer")
    if time_budget is not None and not time_budget > 0:
        raise UsageError("time_budget must be positive")
    if psnr_target is not None and not psnr_target > 0:
        raise UsageError("psnr_target must be positive")
    if loss not in LOSSES:
        raise UsageError(f"loss must be one of {', '.join(LOSSES)}")
    if not lr > 0 or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError("lr and batch_size must be positive")
    if eval_every is not None and (not isinstance(eval_every, int) or eval_every < 1):
        raise UsageError("eval_every must be a positive integer")


def _save_checkpoint(path: str, state: dict[str, Any]) -> None:
    d = os.path.dirname(os.path.abspath(path))
    buf = io.BytesIO()
    torch.save(state, buf)
    tmp = f"{path}.tmp{os.getpid()}"
    with no_space_as_error(path):
        os.makedirs(d, exist_ok=True)
        try:
            with open(tmp, "wb") as fh:
                fh.write(buf.getbuffer())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


def _load_checkpoint(path: str) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is a usage problem
        raise UsageError(f"cannot read checkpoint {path}: {e}") from None
    if not isinstance(state, dict) or state.get("format") != CKPT_FORMAT:
        raise UsageError(f"{path} is not an nvcodec fit checkpoint")
    return state


def _valid_order(order: Any, n: int) -> Tensor | None:
    """A checkpoint's epoch order: n frame indices in 0..n-1 (int64), else None."""
    if not isinstance(order, Tensor) or order.dtype != torch.long or order.shape != (n,):
        return None
    return order if bool(((order >= 0) & (order < n)).all()) else None


def fit(frames: Tensor, config: INRConfig, *, epochs: int | None = None, time_budget: float | None = None,
        psnr_target: float | None = 33.0, loss: str = "l2", lr: float | None = None,
        batch_size: int = DEFAULT_BATCH, seed: int = 0, device: str | torch.device = "cpu",
        amp: bool | None = None, weight_bits: int = 8, embed_bits: int = 6, eval_every: int | None = 10,
        checkpoint_path: str | None = None, resume: bool = False, qat: float = DEFAULT_QAT, prune: float = 0.0,
        bit_alloc: bool = False, progress: ProgressCallback | None = None,
        coded_bytes: Callable[[QuantizedINR], int] | None = None, max_bytes: int | None = None,
        sampling: str = "uniform") -> FitResult:
    """Fit `config`'s INR to uint8 frames (N, H, W, 3); see the module docstring for the schedule and stops.

    `qat`: the final fraction of training run quantization-aware (`qat.WeightSTE`, 0 = post-training
    quantization only); `prune`: fraction of each conv weight pruned when QAT starts (needs qat > 0);
    `bit_alloc`: per-tensor bits around `weight_bits` (`qat.allocate_bits`) when QAT starts.
    `coded_bytes` and `max_bytes`: rate control; when the final quantized model codes to more than
    `max_bytes`, its quantization step is widened until it fits (`quant.widen_to_fit`), and the quality
    reported is that of the widened model (`FitResult.widen`).
    `sampling`: which frames each epoch trains on (`sampling.SAMPLINGS`; while frames are drawn by their
    latest loss, the epoch's reported loss is the mean of every frame's latest loss).
    `lr=None` takes the kind's default (`default_lr`). `amp=None` picks bf16 autocast where it helps
    (`auto_amp`). `eval_every`: epochs between dequantized-PSNR checks (None: only at the end). Progress
    events: stage "fit", one per epoch, info psnr (last dequantized check or None), loss (epoch mean),
    eta (seconds or None), lr.
    """
    lr = default_lr(config.kind, config.num_blocks) if lr is None else lr
    _check_args(frames, config, epochs, time_budget, psnr_target, loss, lr, batch_size, eval_every)
    dev = torch.device(device)
    use_amp = auto_amp(dev) if amp is None else bool(amp)
    n = frames.shape[0]
    total_epochs = epochs if epochs is not None else (None if time_budget is not None else DEFAULT_EPOCHS)
    source_std = channel_std(frames)
    learned_grid = config.kind == "hinerv"
    embedded = config.embedding_shape() is not None and not learned_grid
    if embedded and config.embedding_shape()[0] != n:
        raise UsageError("the fitter learns one embedding per frame: the config's embeddings must have one per frame")
    if not 0.0 <= qat <= 1.0 or not 0.0 <= prune < 1.0 or (prune > 0.0 and qat == 0.0):
        raise UsageError("qat must be in [0, 1] and prune in [0, 1) (pruning needs qat > 0)")
    if sampling not in SAMPLINGS:
        raise UsageError(f"sampling must be one of {', '.join(SAMPLINGS)}")
    sampler = FrameSampler(n, sampling, dev)

    clip_mean = mean_rgb(frames)
    constant_mse = float((source_std.double() ** 2).mean())
    lr_scale, restarts, restart_at = 1.0, 0, 0.0
    decoder, encoder, grid, opt, peak_lrs = _init_models(config, clip_mean, seed, dev, embedded, learned_grid, lr)

    epoch, step, elapsed_before = 0, 0, 0.0
    resumed_order: Tensor | None = None
    perm = torch.zeros(0, dtype=torch.long)
    history: list[dict[str, Any]] = []
    loss_sum, loss_count = 0.0, 0
    last_psnr: float | None = None
    if resume and checkpoint_path is not None and os.path.exists(checkpoint_path):
        state = _load_checkpoint(checkpoint_path)
        if state.get("config") != config.to_dict():
            raise UsageError(f"checkpoint {checkpoint_path} was made for a different model config")
        if list(state.get("frames_shape", [])) != [n, config.height, config.width]:
            raise UsageError(f"checkpoint {checkpoint_path} was made for different frames")
        try:
            decoder.load_state_dict(state["decoder"])
            if encoder is not None:
                encoder.load_state_dict(state["encoder"])
            if grid is not None:
                grid.data.copy_(state["grid"].to(grid))
            restarts, restart_at = int(state.get("restarts", 0)), float(state.get("restart_at", 0.0))
            if restarts:
                lr_scale = COLLAPSE_LR_SCALE ** restarts
                peak_lrs = [p * lr_scale for p in peak_lrs]
            opt.load_state_dict(state["optimizer"])
            epoch, step = int(state["epoch"]), int(state["step"])
            elapsed_before = float(state["elapsed"])
            history = list(state["history"])
            loss_sum, loss_count = float(state["loss_sum"]), int(state["loss_count"])
            last_psnr = state.get("last_psnr")
            sampler_state = state.get("sampler")
            if isinstance(sampler_state, dict):
                sampler.load_state_dict(sampler_state)
                resumed_order = _valid_order(sampler_state.get("epoch_order"), n)
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise UsageError(f"checkpoint {checkpoint_path} does not fit this model: {e}") from None

    eval_decoder = copy.deepcopy(decoder)
    loss_acc = torch.zeros((), device=dev)
    steps_per_epoch = -(-n // batch_size)
    budget = Budget(time_budget, n, batch_size, elapsed_before)
    elapsed = budget.elapsed
    last_save = time.monotonic()
    stop_level = None if psnr_target is None else max(psnr_target, usable_psnr(source_std))
    steps_run = steps_since_restart = 0

    def out_of_time() -> bool:
        if not budget.out_of_time():
            return False
        if budget.hopeless():
            raise BudgetTooSmallError(
                f"a time budget of {time_budget:.3g} s cannot train {n} frames of {config.width}x{config.height} "
                f"on this machine now (after {budget.elapsed():.3g} s)", budget.suggest_budget(),
                budget.describe_speed())
        return True

    def progress_frac() -> float:
        if total_epochs is not None:
            return (epoch + step / steps_per_epoch) / total_epochs
        return (elapsed() - restart_at) / max(budget.train_seconds() - restart_at, 1e-9)

    def make_state() -> dict[str, Any]:
        return {"format": CKPT_FORMAT, "version": 1, "config": config.to_dict(),
                "frames_shape": [n, config.height, config.width], "seed": seed, "epoch": epoch, "step": step,
                "elapsed": elapsed(), "decoder": decoder.state_dict(),
                "encoder": encoder.state_dict() if encoder is not None else {},
                "grid": grid.detach().cpu() if grid is not None else None,
                "optimizer": opt.state_dict(), "history": history, "loss_sum": loss_sum + float(loss_acc),
                "loss_count": loss_count, "last_psnr": last_psnr, "restarts": restarts, "restart_at": restart_at,
                "sampler": {**sampler.state_dict(), "epoch_order": perm}}

    def inputs_for(dec: INRDecoder, emb: Tensor | None):
        return lambda idx: dec.input_for(idx.to(dev), emb)

    qat_state: dict[str, Any] = {"plan": None, "ste": None}
    # Training PSNR (the epoch's mean loss) minus the last check's dequantized PSNR; 0 before the first
    # check, after a restart and when QAT starts (training then sees the stored values).
    check_gap = 0.0
    rate_state = {"widen": 1.0}

    def start_qat() -> None:
        bits = allocate_bits(decoder, opt, weight_bits) if bit_alloc else None
        plan = make_plan(decoder, weight_bits, embed_bits, bits=bits, prune=prune)
        qat_state["plan"], qat_state["ste"] = plan, WeightSTE(decoder, plan)

    def quantize_now(final: bool = False) -> tuple[QuantizedINR, Tensor | None, Tensor | None]:
        emb = _embed_all(encoder, frames, config, dev, max(batch_size, 4), use_amp) if encoder is not None else None
        if grid is not None:
            emb = grid.detach().clone()

        def quantized(widen: float) -> QuantizedINR:
            return quantize_inr(decoder, emb, weight_bits=weight_bits, embed_bits=embed_bits,
                                plan=qat_state["plan"], widen=widen)

        if final and coded_bytes is not None and max_bytes is not None:
            q, rate_state["widen"] = widen_to_fit(quantized, coded_bytes, max_bytes)
        else:
            q = quantized(1.0)
        emb_deq = dequantize_into(eval_decoder, q)
        return q, emb, emb_deq

    stopped_by = "epochs"
    decoder.train()
    try:
        while True:
            if total_epochs is not None and epoch >= total_epochs:
                stopped_by = "epochs"
                break
            if out_of_time():
                stopped_by = "time"
                break
            perm = sampler.epoch_order(seed, epoch)
            if resumed_order is not None:
                if step > 0:
                    perm = resumed_order
                resumed_order = None
            while step < steps_per_epoch:
                if out_of_time():
                    break
                t_step = _budget.now()
                frac = progress_frac()
                for g, peak in zip(opt.param_groups, peak_lrs):
                    g["lr"] = peak * lr_factor(frac)
                if qat > 0.0 and qat_state["ste"] is None and frac >= 1.0 - qat:
                    start_qat()
                ste = qat_state["ste"]
                idx = perm[step * batch_size:(step + 1) * batch_size]
                target = _batch(frames, idx, dev)
                if ste is not None:
                    ste.quantize()
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                    if encoder is not None:
                        x = encoder(pad_frames(target, config.pad_width, config.pad_height))
                        if ste is not None:
                            x = fake_quant_ste(x, embed_bits, 1)
                        x = decoder.with_time(x, idx.to(dev))
                    elif grid is not None:
                        x = decoder.input_for(idx.to(dev), grid if ste is None else fake_quant_ste(grid, embed_bits, 1))
                    else:
                        x = decoder.input_for(idx.to(dev), None)
                    out = decoder(x)
                out = crop(out.float(), config.width, config.height)
                value = _loss(out, target, loss)
                if sampler.tracks_loss:
                    with torch.no_grad():
                        sampler.record(idx, _frame_losses(out, target, loss))
                opt.zero_grad(set_to_none=True)
                value.backward()
                if ste is not None:
                    ste.restore()
                opt.step()
                loss_acc += value.detach()
                loss_count += 1
                step += 1
                if time_budget is not None:
                    float(loss_acc)  # wait for the device, so that the step is timed
                steps_run += 1
                steps_since_restart += 1
                _budget.on_step(steps_run)
                budget.record_step(_budget.now() - t_step)
                if checkpoint_path is not None and time.monotonic() - last_save >= CHECKPOINT_SECONDS:
                    _save_checkpoint(checkpoint_path, make_state())
                    last_save = time.monotonic()
            if step < steps_per_epoch:
                stopped_by = "time"
                break
            epoch, step = epoch + 1, 0
            sampled_loss = (loss_sum + float(loss_acc)) / max(loss_count, 1)
            frames_loss = sampler.mean_loss() if sampler.draws_by_loss else None
            entry: dict[str, Any] = {"epoch": epoch, "loss": sampled_loss if frames_loss is None else frames_loss,
                                     "lr": float(opt.param_groups[0]["lr"]), "seconds": elapsed()}
            loss_sum, loss_count = 0.0, 0
            loss_acc.zero_()
            if (loss == "l2" and restarts < MAX_RESTARTS and steps_since_restart >= COLLAPSE_MIN_STEPS
                    and progress_frac() >= WARMUP and qat_state["ste"] is None
                    and entry["loss"] >= COLLAPSE_RATIO * constant_mse):
                restarts += 1
                lr_scale *= COLLAPSE_LR_SCALE
                decoder, encoder, grid, opt, peak_lrs = _init_models(config, clip_mean, seed + restarts, dev,
                                                                      embedded, learned_grid, lr * lr_scale)
                decoder.train()
                eval_decoder = copy.deepcopy(decoder)
                sampler = FrameSampler(n, sampling, dev)
                restart_at, steps_since_restart = elapsed(), 0
                check_gap = 0.0
                history.append({**entry, "restart": restarts, "lr_peak": lr * lr_scale})
                emit(progress, "fit", 0, total_epochs, psnr=None, eta=None, loss=entry["loss"], lr=lr * lr_scale,
                     restart=restarts)
                epoch, last_psnr = 0, None
                continue
            last_epoch = total_epochs is not None and epoch >= total_epochs
            train_psnr = _loss_psnr(entry["loss"]) if loss == "l2" else None
            if stop_level is not None and train_psnr is not None:
                entry["train_psnr"] = train_psnr
                if qat > 0.0 and qat_state["ste"] is None and train_psnr >= stop_level - QAT_LEAD_DB:
                    start_qat()
                    entry["qat_start"] = True
                    check_gap = 0.0
            due = eval_every is not None and epoch % eval_every == 0
            early = (not due and stop_level is not None and train_psnr is not None
                     and train_psnr - check_gap >= stop_level)
            if (due or early) and not last_epoch and budget.check_fits():
                t_eval = _budget.now()
                _, _, emb_deq = quantize_now()
                ev = evaluate(eval_decoder, inputs_for(eval_decoder, emb_deq), frames, dev, max(batch_size, 4))
                budget.record_eval(_budget.now() - t_eval)
                last_psnr = quality_from_mse(ev.mse)["psnr"]
                entry["psnr"] = last_psnr
                if train_psnr is not None and not entry.get("qat_start"):
                    check_gap = train_psnr - last_psnr
            history.append(entry)
            eta = _eta(epoch, total_epochs, elapsed(), time_budget)
            emit(progress, "fit", epoch, total_epochs, psnr=last_psnr, eta=eta, loss=entry["loss"], lr=entry["lr"])
            if stop_level is not None and "psnr" in entry and last_psnr >= stop_level:
                stopped_by = "psnr"
                break
        if checkpoint_path is not None:
            _save_checkpoint(checkpoint_path, make_state())
        decoder.eval()
        q, emb, emb_deq = quantize_now(final=True)
        ev = evaluate(eval_decoder, inputs_for(eval_decoder, emb_deq), frames, dev, max(batch_size, 4),
                      with_ssim=True)
        ev_float = None if budget.lean else evaluate(decoder, inputs_for(decoder, emb), frames, dev,
                                                     max(batch_size, 4))
    except KeyboardInterrupt:
        if checkpoint_path is not None:
            _save_checkpoint(checkpoint_path, make_state())
        raise Interrupted("fitting interrupted" + (f"; checkpoint saved to {checkpoint_path}"
                                                  if checkpoint_path is not None else "")) from None
    quality = quality_from_mse(ev.mse)
    done_epochs = epoch + (1 if step > 0 else 0)
    problem = degenerate_problem(quality["psnr"], ev.output_std, source_std)
    if problem is not None:
        _raise_degenerate(problem, budget, stopped_by, done_epochs, epoch * steps_per_epoch + step, epochs)
    if history:
        history[-1]["psnr"] = quality["psnr"]
    assert ev.ssim is not None
    return FitResult(decoder=decoder, encoder=encoder, embeddings=None if emb is None else emb.cpu(),
                     quantized=q, psnr=quality["psnr"], psnr_min=quality["psnr_min"], ssim=float(ev.ssim.mean()),
                     epochs=done_epochs, seconds=elapsed(), history=history, device=str(dev),
                     dtype="bf16" if use_amp else "fp32", params=config.num_params(), stopped_by=stopped_by,
                     psnr_float=float("nan") if ev_float is None else quality_from_mse(ev_float.mse)["psnr"],
                     psnr_frame_mean=quality["psnr_frame_mean"],
                     mse=quality["mse"], output_std=[float(v) for v in ev.output_std],
                     source_std=[float(v) for v in source_std],
                     psnr_constant=constant_psnr(source_std), widen=rate_state["widen"])


def _loss_psnr(mse: float) -> float | None:
    """The training PSNR of an epoch's mean l2 loss (`metrics.mse_to_psnr`, capped at PSNR_CAP); None
    for a NaN, infinite or negative loss."""
    if not math.isfinite(mse) or mse < 0:
        return None
    return min(mse_to_psnr(mse), PSNR_CAP)


def _eta(epoch: int, total: int | None, now: float, budget: float | None) -> float | None:
    eta = None
    if total is not None and epoch > 0:
        eta = now / epoch * (total - epoch)
    if budget is not None:
        eta = max(budget - now, 0.0) if eta is None else min(eta, max(budget - now, 0.0))
    return eta
