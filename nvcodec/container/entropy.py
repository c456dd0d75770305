"""rANS entropy coding of quantized tensors under parametric models (spec section 11.1).

A coded tensor's `q` values (integers in [0, 2^bits - 1]) are coded with constriction's
`AnsCoder` (32-bit words, 24-bit probabilities) under a quantized Laplace or Gaussian model,
one (loc, scale) pair per tensor or per channel. The model's integer frequency table is computed
from the float32 parameters with IEEE-754 binary64 additions, multiplications and divisions only
(no library `exp`), so that every machine derives the same table; constriction is handed that
table exactly (integer weights summing to 2^24 - n, which its `perfect=False` categorical model
turns into frequencies weight + 1). constriction is imported only when a tensor is coded or decoded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nvcodec.errors import FormatError

FAMILIES = {1: "laplace", 2: "gaussian"}
LAPLACE, GAUSSIAN = 1, 2
PRECISION = 24
MAX_CODED_BITS = 16
MIN_SCALE = 0.125
MAX_T = 64.0
TABLE_FLOOR = 1 << 22
_V_ONE = float(1 << 30)
_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453
_TERMS = 12
_REFINE = (0.6, 0.8, 1.0, 1.25, 1.6)
_ROWS = 1 << 20


@dataclass(eq=False)
class Coding:
    """Model of an entropy-coded tensor: family id, channel axis (None: one model) and float32 parameters."""

    family: int
    axis: int | None
    loc: np.ndarray
    scale: np.ndarray

    def __post_init__(self) -> None:
        self.loc = np.asarray(self.loc, dtype=np.float32).reshape(-1)
        self.scale = np.asarray(self.scale, dtype=np.float32).reshape(-1)


def table_cost(bits: int, channels: int) -> int:
    """Frequency-table entries a model needs (counted against the bundle's table budget)."""
    return channels << bits


def table_budget(symbols: int) -> int:
    """Most table entries a bundle coding `symbols` values in all may declare."""
    return TABLE_FLOOR + symbols


def _exp_neg(t: np.ndarray) -> np.ndarray:
    """exp(-t) for 0 <= t <= MAX_T from binary64 +, -, *, / only (bit-identical on every IEEE machine)."""
    y = t * _LOG2E
    k = np.floor(y)
    x = (y - k) * _LN2
    r = np.ones_like(x)
    for i in range(_TERMS, 0, -1):
        r = 1.0 - (x * r) / float(i)
    return np.ldexp(r, -k.astype(np.int64))


def weights(family: int, bits: int, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Integer weights (channels, 2^bits), each row summing to 2^24 - 2^bits; frequency = weight + 1."""
    n = 1 << bits
    loc64 = np.asarray(loc, dtype=np.float32).astype(np.float64).reshape(-1, 1)
    scale64 = np.asarray(scale, dtype=np.float32).astype(np.float64).reshape(-1, 1)
    d = np.arange(n, dtype=np.float64)[None, :] - loc64
    if family == LAPLACE:
        t = np.abs(d) / scale64
    elif family == GAUSSIAN:
        z = d / scale64
        t = (z * z) * 0.5
    else:
        raise FormatError(f"unknown entropy model family {family!r}")
    v = np.floor(_exp_neg(np.minimum(t, MAX_T)) * _V_ONE).astype(np.int64)
    total = v.sum(axis=1)
    if (total <= 0).any():
        raise FormatError("entropy model assigns no weight to any symbol")
    free = (1 << PRECISION) - n
    w = (v * free) // total[:, None]
    rows = np.arange(v.shape[0])
    w[rows, np.argmax(v, axis=1)] += free - w.sum(axis=1)
    return w


def check_coding(c: Coding, bits: int, shape: tuple[int, ...], name: str) -> None:
    """Header-level rules for the model of tensor `name` (FormatError on any violation)."""
    if c.family not in FAMILIES:
        raise FormatError(f"tensor {name!r}: unknown entropy model family {c.family!r}")
    if not 1 <= bits <= MAX_CODED_BITS:
        raise FormatError(f"tensor {name!r}: entropy coding needs 1..{MAX_CODED_BITS} bits, not {bits}")
    if c.axis is None:
        channels = 1
    elif isinstance(c.axis, bool) or not isinstance(c.axis, int) or not 0 <= c.axis < len(shape):
        raise FormatError(f"tensor {name!r}: coding axis {c.axis!r} out of range for {len(shape)} dims")
    else:
        channels = shape[c.axis]
    if c.loc.size != channels or c.scale.size != channels:
        raise FormatError(f"tensor {name!r}: coding loc/scale need {channels} values, got "
                          f"{c.loc.size}/{c.scale.size}")
    if math.prod(shape) == 0:
        raise FormatError(f"tensor {name!r}: an empty tensor cannot be entropy-coded")
    hi = float((1 << bits) - 1)
    with np.errstate(invalid="ignore"):
        loc_ok = bool(np.all((c.loc >= 0) & (c.loc <= hi)))
        scale_ok = bool(np.all((c.scale >= MIN_SCALE) & (c.scale <= float(1 << bits))))
    if not loc_ok or not scale_ok:
        raise FormatError(f"tensor {name!r}: coding loc must lie in [0, {hi:g}] and scale in "
                          f"[{MIN_SCALE}, {1 << bits}]")


def _channels(q: np.ndarray, axis: int | None) -> np.ndarray:
    """Symbols as (channels, per-channel count) int32, channel-major along `axis`."""
    if axis is None:
        return q.reshape(1, -1).astype(np.int32)
    return np.moveaxis(q, axis, 0).reshape(q.shape[axis], -1).astype(np.int32)


def _tables(family: int, bits: int, loc: np.ndarray, scale: np.ndarray) -> list[np.ndarray]:
    """Weights per channel, computed in chunks of at most _ROWS entries."""
    step = max(1, _ROWS >> bits)
    out: list[np.ndarray] = []
    for i in range(0, loc.size, step):
        out.extend(weights(family, bits, loc[i:i + step], scale[i:i + step]))
    return out


def _model(w: np.ndarray):
    import constriction

    return constriction.stream.model.Categorical(w.astype(np.float64), perfect=False)


def _cross_bits(hist: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Ideal code length (bits) per channel of the histograms under weights w."""
    return -(hist * (np.log2(w + 1.0) - PRECISION)).sum(axis=1)


def _fit(family: int, bits: int, hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """loc/scale per channel: loc the mean, median or mode of its values, scale their spread (mean
    absolute deviation or standard deviation about loc) times _REFINE, whichever pair gives the
    shortest ideal code length."""
    n = 1 << bits
    k = np.arange(n, dtype=np.float64)
    count = np.maximum(hist.sum(axis=1), 1.0)
    mean = (hist * k).sum(axis=1) / count
    median = np.argmax(np.cumsum(hist, axis=1) >= count[:, None] / 2, axis=1).astype(np.float64)
    mode = np.argmax(hist, axis=1).astype(np.float64)
    best_loc = np.zeros(hist.shape[0], dtype=np.float32)
    best_scale = np.zeros(hist.shape[0], dtype=np.float32)
    best_bits = np.full(hist.shape[0], np.inf)
    for center in (mean, median, mode):
        loc = np.clip(center, 0.0, n - 1.0).astype(np.float32)
        d = k[None, :] - loc.astype(np.float64)[:, None]
        if family == LAPLACE:
            spread = (hist * np.abs(d)).sum(axis=1) / count
        else:
            spread = np.sqrt((hist * d * d).sum(axis=1) / count)
        for f in _REFINE:
            scale = np.clip(spread * f, MIN_SCALE, float(n)).astype(np.float32)
            cost = _cross_bits(hist, np.stack(_tables(family, bits, loc, scale)))
            better = cost < best_bits
            best_loc[better], best_scale[better], best_bits[better] = loc[better], scale[better], cost[better]
    return best_loc, best_scale


def _encode(sym: np.ndarray, tables: list[np.ndarray]) -> np.ndarray:
    import constriction

    coder = constriction.stream.stack.AnsCoder()
    for c in range(sym.shape[0] - 1, -1, -1):
        coder.encode_reverse(sym[c], _model(tables[c]))
    return np.asarray(coder.get_compressed(), dtype=np.uint32)


def encode_tensor(q: np.ndarray, bits: int, axes: list[int | None], table_room: int,
                  beat: int | None = None) -> tuple[Coding, bytes] | None:
    """Smallest rANS coding of `q` over the candidate model axes (None: one model), or None when
    no candidate codes (words + 8 bytes of parameters per model) smaller than `beat` bytes (default:
    the raw values). `table_room` bounds the tables used; per-channel models are tried only when
    their tables are no larger than the tensor."""
    if not 1 <= bits <= MAX_CODED_BITS or q.size == 0 or q.dtype not in (np.uint8, np.uint16):
        return None
    n = 1 << bits
    if int(q.max()) >= n:
        raise FormatError(f"tensor values exceed {bits} bits")
    best: tuple[int, Coding, bytes] | None = None
    raw = q.nbytes if beat is None else min(beat, q.nbytes)
    for axis in axes:
        sym = _channels(q, axis)
        channels = sym.shape[0]
        cost = table_cost(bits, channels)
        if cost > table_room or (channels > 1 and cost > q.size):
            continue
        offsets = (np.arange(channels, dtype=np.int64) * n)[:, None]
        hist = np.bincount((sym + offsets).reshape(-1), minlength=channels * n).reshape(channels, n).astype(np.float64)
        for family in FAMILIES:
            loc, scale = _fit(family, bits, hist)
            words = _encode(sym, _tables(family, bits, loc, scale))
            size = words.nbytes + 8 * channels
            if size < raw and (best is None or size < best[0]):
                best = (size, Coding(family, axis, loc, scale), words.astype("<u4").tobytes())
    return None if best is None else (best[1], best[2])


def decode_tensor(data: bytes, shape: tuple[int, ...], bits: int, dtype: np.dtype, c: Coding) -> np.ndarray:
    """Decode a coded tensor; FormatError if the words are damaged (never more than prod(shape) values)."""
    import constriction

    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    count = math.prod(shape)
    channels = 1 if c.axis is None else shape[c.axis]
    per = count // channels
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        rows = []
        for k in range(channels):  # one table at a time: memory stays O(2^bits)
            table = weights(c.family, bits, c.loc[k:k + 1], c.scale[k:k + 1])[0]
            rows.append(np.asarray(coder.decode(_model(table), per)))
        ended = coder.is_empty()
    except (ValueError, RuntimeError, OverflowError) as exc:
        raise FormatError(f"entropy-coded data is damaged ({exc})") from None
    if not ended:
        raise FormatError("entropy-coded data does not end where its symbols do")
    sym = np.stack(rows) if rows else np.zeros((channels, per), dtype=np.int32)
    if sym.size and (int(sym.min()) < 0 or int(sym.max()) >= 1 << bits):
        raise FormatError(f"entropy-coded symbol out of range for {bits} bits")
    out = sym.astype(dtype)
    if c.axis is None:
        return out.reshape(shape)
    moved = (shape[c.axis],) + tuple(d for i, d in enumerate(shape) if i != c.axis)
    return np.ascontiguousarray(np.moveaxis(out.reshape(moved), 0, c.axis))
