"""INR configuration and planning: stride plan, padding, channel widths, model size.

A plan is an `INRConfig`. The decoder upsamples a small grid (`embed_height` x `embed_width`)
by `strides[0]`, then `strides[1]`, ... (coarse to fine) to the padded frame size
`pad_height` x `pad_width`. Padded sizes are the original sizes rounded up to a multiple of
the total stride; the decoder output is cropped back top-left aligned (see `model.crop`).

Stride plan search (`plan_strides`): every non-increasing sequence of strides from {5, 4, 3, 2}
with a block count suited to the frame size (3 blocks below 48 px on the short side, up to
5..6 for 360p and larger) is scored by

    padded_area / area - 1   +   CELL_COST * grid_cells   +   short-side grid penalty

and the lowest score wins. This keeps the padding small (a few percent) while keeping the per-frame
embedding grid small (HNeRV-like, 2x4 .. 4x8 for 720p-ish frames).

Size (`plan_config`): the first block width `channels[0]` is searched so that the total
parameter count (decoder weights + biases + stored embeddings) is closest to `params`; a `bpp`
target is converted with 8 bits per decoder parameter and 6 bits per embedding value (before
entropy coding). With neither, the default is the bpp target of `default_bpp`: 0.1 bpp for clips
of SHORT_CLIP_FRAMES (128) frames or more, sqrt(128 / frames) times that for shorter ones (a
decoder is shared by fewer frames), at most MAX_DEFAULT_BPP, and never above the source's own bpp
when it is known; the result is at least min(DEFAULT_MIN_PARAMS, raw RGB values) and at most
DEFAULT_MAX_PARAMS parameters.

HiNeRV plans differ in three ways, measured at 0.05-0.2 bpp (README, "`hinerv`'s plan shape"): kernels
1, 3, 3, ... (HNeRV's 1, 3, 5, 5, ... spend a narrow decoder's weights on kernel area rather than
width); the base grid's channels follow the width (`grid_channels`: EMBED_RATIO x channels[0])
rather than a fixed share of the bits, since each grid channel also costs block 0 a slice of weights;
and a narrow plan's size steps add one channel to one block, not to all (`_build_units`). With `fine_grid`
(the encoder asks for it where `temporal.wants_fine_grid` finds the clip's coarse content changing between
base-grid frames) a HiNeRV plan adds a fine base-grid level: FINE_GRID_CHANNELS channels, one grid frame
per FINE_GRID_STEP frames, at the embedding grid's size, held by block 0; and, with two blocks or more, a
mid grid: MID_GRID_CHANNELS channels, one grid frame per MID_GRID_STEP frames, at block 1's input size
(strides[0] times finer), held by block 1 (README, "Codec results").
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from itertools import combinations_with_replacement
from typing import Any

from ..errors import FormatError, UsageError

KINDS = ("hnerv", "nerv", "hinerv")
ACTIVATIONS = ("gelu", "relu", "silu")
OUT_ACTIVATIONS = ("sigmoid", "clamp")

MAX_SIZE = 16384
MAX_BLOCKS = 8
MAX_CHANNELS = 4096
MAX_FRAMES = 10_000_000
MAX_PARAMS = 1_000_000_000
MAX_EMBED_VALUES = 4_000_000_000

WEIGHT_BITS_PLAN = 8.0
EMBED_BITS_PLAN = 6.0
DEFAULT_BPP = 0.1
SHORT_CLIP_FRAMES = 128
MAX_DEFAULT_BPP = 0.4
DEFAULT_MIN_PARAMS = 10_000
DEFAULT_MAX_PARAMS = 3_000_000

REDUCE = 1.2
MIN_CHANNELS = 12
CELL_COST = 0.003
STRIDE_CHOICES = (5, 4, 3, 2)
GRID_FRAME_STEP = 8
BASE_GRID_STEP = 24
FINE_GRID_STEP = 2
FINE_GRID_CHANNELS = 4
MID_GRID_STEP = 4
MID_GRID_CHANNELS = 2
EMBED_RATIO = 1.5
MIN_EMBED_CHANNELS = 4
MAX_GRID_CHANNELS = 32


@dataclass
class INRConfig:
    """Everything needed to rebuild an INR decoder (stored in the `MODEL` section).

    Lists are coarse to fine: `strides[k]`, `channels[k]` (output channels) and
    `kernel_sizes[k]` describe decoder block k. NeRV fields (`pe_levels`, `pe_base`, `fc_dims`)
    describe the positional encoding and the MLP stem of block 0; for HNeRV they are unused.
    For NeRV, `embed_channels` x `embed_height` x `embed_width` is the shape the MLP stem reshapes to.
    HiNeRV fields: `grid_frames` (T0) is the temporal size of the learned base grid (stored as the
    embeddings, (T0, embed_channels, embed_height, embed_width)); `block_grid_frames[k]` (T_k, 0 = none)
    the temporal size of block k's local grid (T_k, channels[k], strides[k], strides[k]);
    `fine_grid_frames` / `fine_grid_channels` (0 = none) the fine base-grid level that block 0 holds
    (T_f, C_f, embed_height, embed_width) and reads beside the base grid; `mid_grid_frames` /
    `mid_grid_channels` (0 = none) the mid grid that block 1 holds (T_m, C_m, embed_height * strides[0],
    embed_width * strides[0]) and reads beside block 0's output.
    """

    kind: str
    width: int
    height: int
    pad_width: int
    pad_height: int
    num_frames: int
    strides: list[int]
    channels: list[int]
    kernel_sizes: list[int]
    embed_channels: int
    embed_height: int
    embed_width: int
    head_kernel: int = 3
    activation: str = "gelu"
    out_activation: str = "sigmoid"
    pe_levels: int = 0
    pe_base: float = 1.25
    fc_dims: list[int] = field(default_factory=list)
    grid_frames: int = 0
    block_grid_frames: list[int] = field(default_factory=list)
    fine_grid_frames: int = 0
    fine_grid_channels: int = 0
    mid_grid_frames: int = 0
    mid_grid_channels: int = 0

    @property
    def num_blocks(self) -> int:
        """Number of decoder blocks."""
        return len(self.strides)

    @property
    def total_stride(self) -> int:
        """Product of the strides: padded size / embedding grid size."""
        return math.prod(self.strides)

    def block_in_channels(self, k: int) -> int:
        """Input channels of the conv of block k (HiNeRV block 0: the base grid's and the fine grid's;
        block 1: block 0's and the mid grid's)."""
        if k == 0:
            return self.embed_channels + self.fine_grid_channels
        return self.channels[k - 1] + (self.mid_grid_channels if k == 1 else 0)

    def fine_grid_shape(self) -> tuple[int, int, int, int] | None:
        """HiNeRV's fine base-grid level (fine_grid_frames, fine_grid_channels, eh, ew) held by block 0; None
        when the plan has none."""
        if self.kind != "hinerv" or self.fine_grid_frames == 0:
            return None
        return (self.fine_grid_frames, self.fine_grid_channels, self.embed_height, self.embed_width)

    def mid_grid_shape(self) -> tuple[int, int, int, int] | None:
        """HiNeRV's mid grid (mid_grid_frames, mid_grid_channels, eh * s0, ew * s0) held by block 1; None when
        the plan has none."""
        if self.kind != "hinerv" or self.mid_grid_frames == 0:
            return None
        s0 = self.strides[0]
        return (self.mid_grid_frames, self.mid_grid_channels, self.embed_height * s0, self.embed_width * s0)

    def block_out_channels(self, k: int) -> int:
        """Channels of block k's output feature map (HiNeRV adds one frame-time channel)."""
        return self.channels[k] + (1 if self.kind == "hinerv" else 0)

    def block_grid(self, k: int) -> int:
        """Temporal size of block k's local grid (HiNeRV; 0 = none)."""
        if self.kind != "hinerv" or k >= len(self.block_grid_frames):
            return 0
        return self.block_grid_frames[k]

    def block_params(self, k: int) -> int:
        """Parameters of decoder block k (NeRV block 0 includes the MLP stem)."""
        s, c_out, ks = self.strides[k], self.channels[k], self.kernel_sizes[k]
        c_in = self.block_in_channels(k)
        n = c_in * c_out * s * s * ks * ks + c_out * s * s
        if self.kind == "hinerv":
            n += c_in * c_out + c_out + self.block_grid(k) * c_out * s * s
            level = self.fine_grid_shape() if k == 0 else self.mid_grid_shape() if k == 1 else None
            if level is not None:
                n += math.prod(level)
        if k == 0 and self.kind == "nerv":
            dims = [2 * self.pe_levels, *self.fc_dims, self.embed_channels * self.embed_height * self.embed_width]
            n += sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))
        return n

    def head_params(self) -> int:
        """Parameters of the RGB head."""
        return self.channels[-1] * 3 * self.head_kernel ** 2 + 3

    def decoder_params(self) -> int:
        """Decoder parameters (blocks + head), without embeddings."""
        return sum(self.block_params(k) for k in range(self.num_blocks)) + self.head_params()

    def embedding_shape(self) -> tuple[int, int, int, int] | None:
        """Shape of the stored embeddings: HNeRV (frames, C, eh, ew), HiNeRV's base grid (grid_frames, C, eh,
        ew); None for NeRV."""
        if self.kind == "hnerv":
            return (self.num_frames, self.embed_channels, self.embed_height, self.embed_width)
        if self.kind == "hinerv":
            return (self.grid_frames, self.embed_channels, self.embed_height, self.embed_width)
        return None

    def embedding_values(self, frames: int | None = None) -> int:
        """Stored embedding values (HNeRV: per frame; HiNeRV: the base grid; 0 for NeRV)."""
        if self.kind == "hinerv":
            return self.grid_frames * self.embed_channels * self.embed_height * self.embed_width
        if self.kind != "hnerv":
            return 0
        n = self.num_frames if frames is None else frames
        return n * self.embed_channels * self.embed_height * self.embed_width

    def num_params(self, frames: int | None = None) -> int:
        """Total stored parameters: decoder + embeddings for `frames` (default `num_frames`)."""
        return self.decoder_params() + self.embedding_values(frames)

    def to_dict(self) -> dict[str, Any]:
        """Plain msgpack-friendly dict (str, int, float, lists)."""
        d = asdict(self)
        for key in ("strides", "channels", "kernel_sizes", "fc_dims", "block_grid_frames"):
            d[key] = [int(v) for v in d[key]]
        d["pe_base"] = float(d["pe_base"])
        if self.kind != "hinerv":
            del d["grid_frames"], d["block_grid_frames"]
        if not self.fine_grid_frames:
            del d["fine_grid_frames"], d["fine_grid_channels"]
        if not self.mid_grid_frames:
            del d["mid_grid_frames"], d["mid_grid_channels"]
        return d

    @classmethod
    def from_dict(cls, d: Any) -> INRConfig:
        """Build and validate a config read from a file; FormatError on any bad value.

        Unknown keys are ignored (forward compatibility); missing required keys are errors.
        """
        if not isinstance(d, dict):
            raise FormatError("INR config is not a map")
        defaults = {"head_kernel": 3, "activation": "gelu", "out_activation": "sigmoid",
                    "pe_levels": 0, "pe_base": 1.25, "fc_dims": [], "grid_frames": 0, "block_grid_frames": [],
                    "fine_grid_frames": 0, "fine_grid_channels": 0, "mid_grid_frames": 0, "mid_grid_channels": 0}
        kw: dict[str, Any] = {}
        for name in ("kind", "width", "height", "pad_width", "pad_height", "num_frames", "strides", "channels",
                     "kernel_sizes", "embed_channels", "embed_height", "embed_width", *defaults):
            if name in d:
                kw[name] = d[name]
            elif name in defaults:
                kw[name] = defaults[name]
            else:
                raise FormatError(f"INR config lacks {name!r}")
        for name in ("kind", "activation", "out_activation"):
            if not isinstance(kw[name], str):
                raise FormatError(f"INR config {name!r} must be a string")
        for name in ("width", "height", "pad_width", "pad_height", "num_frames", "embed_channels",
                     "embed_height", "embed_width", "head_kernel", "pe_levels", "grid_frames", "fine_grid_frames",
                     "fine_grid_channels", "mid_grid_frames", "mid_grid_channels"):
            _check_int(kw[name], name)
        for name in ("strides", "channels", "kernel_sizes", "fc_dims", "block_grid_frames"):
            v = kw[name]
            if not isinstance(v, (list, tuple)) or len(v) > MAX_BLOCKS:
                raise FormatError(f"INR config {name!r} must be a list of at most {MAX_BLOCKS} integers")
            for x in v:
                _check_int(x, name)
            kw[name] = [int(x) for x in v]
        if (isinstance(kw["pe_base"], bool) or not isinstance(kw["pe_base"], (int, float))
                or not math.isfinite(kw["pe_base"])):
            raise FormatError("INR config 'pe_base' must be a finite number")
        kw["pe_base"] = float(kw["pe_base"])
        cfg = cls(**kw)
        try:
            cfg.validate()
        except UsageError as e:
            raise FormatError(f"bad INR config: {e}") from None
        return cfg

    def validate(self) -> None:
        """Check ranges and consistency; raises UsageError."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise UsageError(msg)

        need(self.kind in KINDS, f"kind must be one of {KINDS}")
        need(self.activation in ACTIVATIONS, f"activation must be one of {ACTIVATIONS}")
        need(self.out_activation in OUT_ACTIVATIONS, f"out_activation must be one of {OUT_ACTIVATIONS}")
        for name in ("width", "height"):
            need(1 <= getattr(self, name) <= MAX_SIZE, f"{name} must be in 1..{MAX_SIZE}")
        for name in ("pad_width", "pad_height"):
            need(1 <= getattr(self, name) <= 2 * MAX_SIZE, f"{name} must be in 1..{2 * MAX_SIZE}")
        need(1 <= self.num_frames <= MAX_FRAMES, f"num_frames must be in 1..{MAX_FRAMES}")
        n = len(self.strides)
        need(1 <= n <= MAX_BLOCKS, f"need 1..{MAX_BLOCKS} blocks")
        need(len(self.channels) == n and len(self.kernel_sizes) == n,
             "strides, channels and kernel_sizes must have the same length")
        need(all(1 <= s <= 8 for s in self.strides), "strides must be in 1..8")
        need(all(1 <= c <= MAX_CHANNELS for c in self.channels), f"channels must be in 1..{MAX_CHANNELS}")
        need(all(1 <= k <= 9 and k % 2 == 1 for k in self.kernel_sizes), "kernel sizes must be odd, 1..9")
        need(1 <= self.head_kernel <= 9 and self.head_kernel % 2 == 1, "head_kernel must be odd, 1..9")
        need(1 <= self.embed_channels <= MAX_CHANNELS, f"embed_channels must be in 1..{MAX_CHANNELS}")
        need(1 <= self.embed_height <= MAX_SIZE and 1 <= self.embed_width <= MAX_SIZE, "bad embedding grid")
        s = self.total_stride
        need(self.pad_height == self.embed_height * s and self.pad_width == self.embed_width * s,
             "padded size must be the embedding grid times the total stride")
        need(self.pad_height >= self.height and self.pad_width >= self.width, "padded size below the frame size")
        if self.kind == "nerv":
            need(1 <= self.pe_levels <= 128, "pe_levels must be in 1..128 for NeRV")
            need(1.0 < self.pe_base <= 4.0, "pe_base must be in (1, 4]")
            need(len(self.fc_dims) <= 4 and all(1 <= c <= 8192 for c in self.fc_dims), "bad fc_dims")
        if self.kind == "hinerv":
            need(1 <= self.grid_frames <= self.num_frames, "grid_frames must be in 1..num_frames for HiNeRV")
            need(len(self.block_grid_frames) == n, "block_grid_frames needs one entry per block")
            need(all(0 <= t <= self.num_frames for t in self.block_grid_frames),
                 "block_grid_frames entries must be in 0..num_frames")
            need(0 <= self.fine_grid_frames <= self.num_frames, "fine_grid_frames must be in 0..num_frames")
            need(0 <= self.fine_grid_channels <= MAX_GRID_CHANNELS,
                 f"fine_grid_channels must be in 0..{MAX_GRID_CHANNELS}")
            need((self.fine_grid_frames == 0) == (self.fine_grid_channels == 0),
                 "fine_grid_frames and fine_grid_channels are both 0 (no fine grid) or both positive")
            need(0 <= self.mid_grid_frames <= self.num_frames, "mid_grid_frames must be in 0..num_frames")
            need(0 <= self.mid_grid_channels <= MAX_GRID_CHANNELS,
                 f"mid_grid_channels must be in 0..{MAX_GRID_CHANNELS}")
            need((self.mid_grid_frames == 0) == (self.mid_grid_channels == 0),
                 "mid_grid_frames and mid_grid_channels are both 0 (no mid grid) or both positive")
            need(self.mid_grid_frames == 0 or n >= 2, "a mid grid needs two blocks or more")
        else:
            need(self.grid_frames == 0 and not self.block_grid_frames and not self.fine_grid_frames
                 and not self.fine_grid_channels and not self.mid_grid_frames and not self.mid_grid_channels,
                 "grid fields are for HiNeRV only")
        need(self.decoder_params() <= MAX_PARAMS, f"decoder larger than {MAX_PARAMS} parameters")
        need(self.embedding_values() <= MAX_EMBED_VALUES, "embeddings too large")


def _check_int(v: Any, name: str) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise FormatError(f"INR config {name!r} must be an integer")
    if not 0 <= v <= MAX_FRAMES:
        raise FormatError(f"INR config {name!r} out of range: {v}")


def _block_range(short_side: int) -> tuple[int, int]:
    """Allowed number of decoder blocks for a frame whose short side is `short_side` px."""
    if short_side < 48:
        return 3, 3
    if short_side < 120:
        return 3, 4
    if short_side < 240:
        return 4, 5
    return 5, 6


def plan_strides(width: int, height: int) -> list[int]:
    """Stride plan (coarse to fine) for a frame size; see the module docstring for the score."""
    short = min(width, height)
    lo, hi = _block_range(short)
    best: tuple[float, list[int]] | None = None
    for n in range(lo, hi + 1):
        for combo in combinations_with_replacement(STRIDE_CHOICES, n):
            strides = sorted(combo, reverse=True)
            s = math.prod(strides)
            eh, ew = -(-height // s), -(-width // s)
            waste = (eh * ew * s * s) / (width * height) - 1.0
            score = waste + CELL_COST * eh * ew
            if min(eh, ew) < 2 and short >= 48:
                score += 0.5
            score += 0.01 * (n - lo) + 0.001 * sum(strides)
            if best is None or score < best[0] - 1e-12:
                best = (score, strides)
    assert best is not None
    return best[1]


def _kernel_sizes(n: int, kind: str) -> list[int]:
    if n < 3:
        return [3] * n
    return [1] + [3] * (n - 1) if kind == "hinerv" else [min(1 + 2 * k, 5) for k in range(n)]


def grid_channels(c1: float) -> int:
    """HiNeRV's base-grid channels for a first-block width `c1`: EMBED_RATIO x c1, in
    MIN_EMBED_CHANNELS..MAX_GRID_CHANNELS (every grid channel also costs block 0 c1 x s0^2 weights)."""
    return int(min(MAX_GRID_CHANNELS, max(MIN_EMBED_CHANNELS, round(EMBED_RATIO * c1))))


def _channels(c1: int, n: int, extra: int = 0) -> list[int]:
    out, c = [], float(c1)
    floor = min(c1, MIN_CHANNELS)
    for k in range(n):
        out.append(max(int(round(c)), floor) + (1 if k < extra else 0))
        c /= REDUCE
    return out


def _build_units(kind: str, width: int, height: int, frames: int, strides: list[int], units: int,
                 embed_c: int = 16, fine: bool = False) -> INRConfig:
    """The plan of size step `units`: the first-block width for hnerv and nerv; for hinerv, whose narrow
    plans are flat (every block c wide), c = units // n and the first units % n blocks one channel wider
    while c < MIN_CHANNELS (steps of one channel in one block, not in all n), then c1 = units // n."""
    if kind != "hinerv":
        return _build(kind, width, height, frames, strides, units, embed_c)
    n = len(strides)
    c1, extra = divmod(units, n)
    return _build(kind, width, height, frames, strides, c1, embed_c, extra if c1 < MIN_CHANNELS else 0, fine)


def _build(kind: str, width: int, height: int, frames: int, strides: list[int], c1: int,
           embed_c: int = 16, extra: int = 0, fine: bool = False) -> INRConfig:
    s = math.prod(strides)
    eh, ew = -(-height // s), -(-width // s)
    n = len(strides)
    ks = _kernel_sizes(n, kind)
    if kind == "nerv":
        ks[0] = 3
        embed_c = max(8, min(64, c1 // 2))
        pe_levels = 32 if frames > 1 else 1
        fc = [max(32, min(512, 2 * c1))]
    else:
        pe_levels, fc = 0, []
    grid, block_grids, fine_t, fine_c, mid_t = 0, [], 0, 0, 0
    if kind == "hinerv":
        embed_c = grid_channels(c1 + extra / n)
        grid = base_grid_frames(frames)
        block_grids = [grid_frames_for(frames)] * n
        fine_t = fine_grid_frames(frames) if fine else 0
        fine_c = FINE_GRID_CHANNELS if fine_t else 0
        mid_t = mid_grid_frames(frames) if fine and n >= 2 else 0
    return INRConfig(kind=kind, width=width, height=height, pad_width=ew * s, pad_height=eh * s,
                     num_frames=frames, strides=list(strides), channels=_channels(c1, n, extra), kernel_sizes=ks,
                     embed_channels=embed_c, embed_height=eh, embed_width=ew, pe_levels=pe_levels, fc_dims=fc,
                     grid_frames=grid, block_grid_frames=block_grids, fine_grid_frames=fine_t,
                     fine_grid_channels=fine_c, mid_grid_frames=mid_t,
                     mid_grid_channels=MID_GRID_CHANNELS if mid_t else 0)


def base_grid_frames(frames: int) -> int:
    """HiNeRV's base grid size T0 for a clip: one grid frame per BASE_GRID_STEP frames (at least 2 for a
    clip of 2 frames or more); frames in between take the linear interpolation of their neighbours."""
    return min(frames, max(2, -(-frames // BASE_GRID_STEP)))


def fine_grid_frames(frames: int) -> int:
    """HiNeRV's fine base-grid level for a clip: one grid frame per FINE_GRID_STEP frames; 0 (no fine level)
    when that is no finer than the base grid."""
    t = min(frames, max(2, -(-frames // FINE_GRID_STEP)))
    return t if t > base_grid_frames(frames) else 0


def mid_grid_frames(frames: int) -> int:
    """HiNeRV's mid grid for a clip: one grid frame per MID_GRID_STEP frames; 0 (none) when that is no finer
    than the base grid."""
    t = min(frames, max(2, -(-frames // MID_GRID_STEP)))
    return t if t > base_grid_frames(frames) else 0


def grid_frames_for(frames: int) -> int:
    """HiNeRV's local temporal grid size for a clip: one grid point per GRID_FRAME_STEP frames (at least 2
    for a clip of 2 frames or more)."""
    return min(frames, max(2, -(-frames // GRID_FRAME_STEP)))


def default_bpp(frames: int, source_bpp: float | None = None) -> float:
    """The default bpp target for a clip of `frames` frames (see the module docstring)."""
    bpp = min(DEFAULT_BPP * max(1.0, math.sqrt(SHORT_CLIP_FRAMES / frames)), MAX_DEFAULT_BPP)
    if source_bpp is not None and math.isfinite(source_bpp) and source_bpp > 0:
        bpp = min(bpp, source_bpp)
    return bpp


def default_bits(width: int, height: int, frames: int, source_bpp: float | None = None) -> float:
    """The default model's planned size in bits: `default_bpp` of the clip, clamped to
    min(DEFAULT_MIN_PARAMS, raw RGB values) .. DEFAULT_MAX_PARAMS parameters at 8 bits each."""
    floor = min(DEFAULT_MIN_PARAMS, width * height * frames * 3) * WEIGHT_BITS_PLAN
    bits = default_bpp(frames, source_bpp) * width * height * frames
    return float(min(max(bits, floor), DEFAULT_MAX_PARAMS * WEIGHT_BITS_PLAN))


def plan_config(width: int, height: int, frames: int, *, kind: str = "hnerv",
                params: float | None = None, bpp: float | None = None,
                source_bpp: float | None = None, weight_bits: float = WEIGHT_BITS_PLAN,
                embed_bits: float = EMBED_BITS_PLAN, fine_grid: bool = False) -> INRConfig:
    """Plan strides, padding, embedding grid and widths for a clip.

    `params`: target total parameter count (decoder + stored embeddings). `bpp`: target bits per
    (original) pixel, converted with `weight_bits` per weight and `embed_bits` per embedding value (the
    stored bit depths; 8 and 6 by default). At most one of the two; neither gives `default_bits`
    (which `source_bpp`, the source's own rate, caps). The closest achievable size is chosen (the
    smallest plan when the target is below it). `fine_grid` gives a `hinerv` plan its fine base-grid level
    and its mid grid where the clip is long enough for them (`fine_grid_frames`, `mid_grid_frames`;
    `temporal.wants_fine_grid` decides from the frames).
    """
    if kind not in KINDS:
        raise UsageError(f"kind must be one of {', '.join(KINDS)}")
    for name, v, top in (("width", width, MAX_SIZE), ("height", height, MAX_SIZE), ("frames", frames, MAX_FRAMES)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 1 <= v <= top:
            raise UsageError(f"{name} must be an integer in 1..{top}")
    width, height, frames = int(width), int(height), int(frames)
    if params is not None and bpp is not None:
        raise UsageError("give params or bpp, not both")
    if params is not None and not (math.isfinite(params) and params > 0):
        raise UsageError("params must be positive")
    if bpp is not None and not (math.isfinite(bpp) and bpp > 0):
        raise UsageError("bpp must be positive")
    strides = plan_strides(width, height)
    if params is None:
        target = (bpp * width * height * frames if bpp is not None
                  else default_bits(width, height, frames, source_bpp))

        def cost(c: INRConfig) -> float:
            return c.decoder_params() * weight_bits + c.embedding_values() * embed_bits
    else:
        target = float(params)

        def cost(c: INRConfig) -> float:
            return float(c.num_params())
    embed_c = 16
    per = len(strides) if kind == "hinerv" else 1  # size steps per channel of width (`_build_units`)
    lo, hi = 4 * per, MAX_CHANNELS * per
    while lo < hi:
        mid = (lo + hi) // 2
        if cost(_build_units(kind, width, height, frames, strides, mid, embed_c, fine_grid)) < target:
            lo = mid + 1
        else:
            hi = mid
    cands = [_build_units(kind, width, height, frames, strides, u, embed_c, fine_grid)
             for u in {max(4 * per, lo - 1), lo}]
    best = min(cands, key=lambda c: abs(cost(c) - target))
    if best.decoder_params() > MAX_PARAMS:
        raise UsageError("requested model size is too large")
    best.validate()
    return best
