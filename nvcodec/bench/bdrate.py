"""Bjontegaard delta rate and quality (VCEG-M33 / JCTVC-style piecewise-cubic), and other curve helpers.

BD-rate: the average rate difference, in percent, between a test curve and an anchor curve at equal
quality, over the quality range both curves cover. Each curve is log(rate) as a function of quality,
interpolated by a piecewise-cubic Hermite interpolant with Fritsch-Carlson monotone slopes (PCHIP,
the interpolation of JCTVC-L0242 / the common "bjontegaard" reference code, in place of
VCEG-M33's single cubic fit); the integral of each curve over the overlap is taken exactly, and
BD-rate = exp((I_test - I_anchor) / (hi - lo)) - 1. Negative means the test needs less rate.
BD-quality swaps the roles (quality over log-rate). Curves that do not overlap give None with a
reason instead of an extrapolated number.

Each curve is first reduced to its operating points that no other point beats (`rd_front`: a point
is dropped when another has at most its rate and more quality): a dominated point is one an encoder
would never choose, and left in, it bends the interpolant (e.g. two model sizes that land at the
same rate, or a larger model that got too few epochs in a time budget). The outputs count what was
dropped (`dominated`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

MIN_POINTS = 2


def msssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, -10 log10(1 - MS-SSIM) (capped at 100 dB for MS-SSIM = 1)."""
    return 100.0 if value >= 1.0 else -10.0 * math.log10(1.0 - value)


def _pchip_slopes(x: list[float], y: list[float]) -> list[float]:
    n = len(x)
    h = [x[i + 1] - x[i] for i in range(n - 1)]
    d = [(y[i + 1] - y[i]) / h[i] for i in range(n - 1)]
    if n == 2:
        return [d[0], d[0]]
    m = [0.0] * n
    for i in range(1, n - 1):
        if d[i - 1] * d[i] <= 0:
            m[i] = 0.0
        else:
            w1, w2 = 2 * h[i] + h[i - 1], h[i] + 2 * h[i - 1]
            m[i] = (w1 + w2) / (w1 / d[i - 1] + w2 / d[i])
    m[0] = _end_slope(h[0], h[1], d[0], d[1])
    m[-1] = _end_slope(h[-1], h[-2], d[-1], d[-2])
    return m


def _end_slope(h0: float, h1: float, d0: float, d1: float) -> float:
    s = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
    if s * d0 <= 0:
        return 0.0
    if d0 * d1 <= 0 and abs(s) > abs(3 * d0):
        return 3 * d0
    return s


def _segment_integral(x0: float, x1: float, y0: float, y1: float, m0: float, m1: float, a: float, b: float) -> float:
    """Integral over [a, b] (inside [x0, x1]) of the cubic Hermite segment through (x0, y0, m0), (x1, y1, m1)."""
    h = x1 - x0

    def antideriv(t: float) -> float:  # t in [0, 1]; basis functions integrated
        t2, t3, t4 = t * t, t ** 3, t ** 4
        h00 = t4 / 2 - t3 + t
        h10 = t4 / 4 - 2 * t3 / 3 + t2 / 2
        h01 = -t4 / 2 + t3
        h11 = t4 / 4 - t3 / 3
        return h * (h00 * y0 + h10 * h * m0 + h01 * y1 + h11 * h * m1)

    return antideriv((b - x0) / h) - antideriv((a - x0) / h)


def pchip_integral(x: Sequence[float], y: Sequence[float], lo: float, hi: float) -> float:
    """Exact integral over [lo, hi] of the PCHIP interpolant of (x, y); x strictly increasing, lo/hi inside."""
    xs, ys = list(map(float, x)), list(map(float, y))
    m = _pchip_slopes(xs, ys)
    total = 0.0
    for i in range(len(xs) - 1):
        a, b = max(lo, xs[i]), min(hi, xs[i + 1])
        if b > a:
            total += _segment_integral(xs[i], xs[i + 1], ys[i], ys[i + 1], m[i], m[i + 1], a, b)
    return total


def pchip_eval(x: Sequence[float], y: Sequence[float], at: float) -> float:
    """The PCHIP interpolant of (x, y) at `at` (inside [x[0], x[-1]])."""
    xs, ys = list(map(float, x)), list(map(float, y))
    m = _pchip_slopes(xs, ys)
    i = max(0, min(len(xs) - 2, next((k for k in range(len(xs) - 1) if at <= xs[k + 1]), len(xs) - 2)))
    h = xs[i + 1] - xs[i]
    t = (at - xs[i]) / h
    return ((2 * t ** 3 - 3 * t ** 2 + 1) * ys[i] + (t ** 3 - 2 * t ** 2 + t) * h * m[i]
            + (-2 * t ** 3 + 3 * t ** 2) * ys[i + 1] + (t ** 3 - t ** 2) * h * m[i + 1])


def _valid(rates: Sequence[float], qualities: Sequence[float]) -> list[tuple[float, float]]:
    return [(float(r), float(q)) for r, q in zip(rates, qualities)
            if r is not None and q is not None and float(r) > 0 and math.isfinite(float(q))
            and math.isfinite(float(r))]


def rd_front(rates: Sequence[float], qualities: Sequence[float]) -> list[tuple[float, float]]:
    """The (rate, quality) points that no other point dominates (at most the rate and more quality, or
    less rate and the same quality), sorted by rate: quality rises strictly with rate along them."""
    best: list[tuple[float, float]] = []
    for r, q in sorted(_valid(rates, qualities), key=lambda p: (p[0], -p[1])):
        if best and q <= best[-1][1]:
            continue
        if best and r == best[-1][0]:
            continue
        best.append((r, q))
    return best


def _curve(rates: Sequence[float], qualities: Sequence[float]) -> tuple[list[float], list[float], bool, int]:
    """(quality, log-rate) of the RD front sorted by quality; whether the input was monotone (more
    rate, more quality) and how many points the front dropped."""
    pts = _valid(rates, qualities)
    by_rate = sorted(pts)
    monotone = all(b[1] > a[1] for a, b in zip(by_rate, by_rate[1:]))
    front = rd_front(rates, qualities)
    return [q for _, q in front], [math.log(r) for r, _ in front], monotone, len(pts) - len(front)


def bd_rate(anchor_rates: Sequence[float], anchor_quality: Sequence[float],
            test_rates: Sequence[float], test_quality: Sequence[float]) -> dict[str, Any]:
    """BD-rate of the test curve against the anchor, in percent (negative: the test saves rate).

    Returns {"bd_rate_pct", "reason", "overlap": [lo, hi] quality, "anchor_points", "test_points",
    "monotone": both curves rise with rate, "dominated": points dropped from each curve's front};
    "bd_rate_pct" is None (with "reason") when a curve has
    fewer than 2 distinct points or the quality ranges do not overlap.
    """
    qa, la, mono_a, drop_a = _curve(anchor_rates, anchor_quality)
    qt, lt, mono_t, drop_t = _curve(test_rates, test_quality)
    out: dict[str, Any] = {"bd_rate_pct": None, "reason": None, "overlap": None,
                           "anchor_points": len(qa), "test_points": len(qt), "monotone": mono_a and mono_t,
                           "dominated": {"anchor": drop_a, "test": drop_t}}
    if len(qa) < MIN_POINTS or len(qt) < MIN_POINTS:
        out["reason"] = f"needs at least {MIN_POINTS} points of distinct quality per curve (anchor {len(qa)}, test {len(qt)})"
        return out
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if hi <= lo:
        out["reason"] = (f"quality ranges do not overlap (anchor {qa[0]:.2f}..{qa[-1]:.2f}, "
                         f"test {qt[0]:.2f}..{qt[-1]:.2f})")
        return out
    out["overlap"] = [lo, hi]
    avg = (pchip_integral(qt, lt, lo, hi) - pchip_integral(qa, la, lo, hi)) / (hi - lo)
    out["bd_rate_pct"] = 100.0 * (math.exp(avg) - 1.0)
    return out


def bd_quality(anchor_rates: Sequence[float], anchor_quality: Sequence[float],
               test_rates: Sequence[float], test_quality: Sequence[float]) -> dict[str, Any]:
    """BD-PSNR (or BD of any quality): mean quality difference test - anchor over the common log-rate range."""
    out: dict[str, Any] = {"bd_quality": None, "reason": None, "overlap_bpp": None}
    curves = []
    for rates, quals in ((anchor_rates, anchor_quality), (test_rates, test_quality)):
        front = rd_front(rates, quals)
        curves.append(([math.log(r) for r, _ in front], [q for _, q in front]))
    (ra, qa), (rt, qt) = curves
    if len(ra) < MIN_POINTS or len(rt) < MIN_POINTS:
        out["reason"] = f"needs at least {MIN_POINTS} points of distinct rate per curve"
        return out
    lo, hi = max(ra[0], rt[0]), min(ra[-1], rt[-1])
    if hi <= lo:
        out["reason"] = "rate ranges do not overlap"
        return out
    out["overlap_bpp"] = [math.exp(lo), math.exp(hi)]
    out["bd_quality"] = (pchip_integral(rt, qt, lo, hi) - pchip_integral(ra, qa, lo, hi)) / (hi - lo)
    return out


def quality_at_rate(rates: Sequence[float], qualities: Sequence[float], rate: float) -> float | None:
    """Quality at `rate`, interpolated (PCHIP over log-rate) between the points of the RD front (`rd_front`);
    None outside their range."""
    pts = [(math.log(r), q) for r, q in rd_front(rates, qualities)]
    if not pts or rate <= 0:
        return None
    x = math.log(rate)
    if len(pts) == 1:
        return pts[0][1] if abs(pts[0][0] - x) < 1e-12 else None
    if not pts[0][0] - 1e-12 <= x <= pts[-1][0] + 1e-12:
        return None
    return pchip_eval([p[0] for p in pts], [p[1] for p in pts], min(max(x, pts[0][0]), pts[-1][0]))


def seconds_to_reach(trace: Sequence[dict[str, Any]], target: float) -> float | None:
    """The first `seconds` in a fit trace [{"seconds", "psnr"}] whose PSNR is >= target; None if never."""
    for entry in trace:
        if entry.get("psnr") is not None and float(entry["psnr"]) >= target:
            return float(entry["seconds"])
    return None
