"""Linear CKA for choosing where INR features are injected into a task backbone.

Linear centered kernel alignment (Kornblith et al., 2019, "Similarity of Neural Network
Representations Revisited") compares two representations of the same n samples,
X (n, p) and Y (n, q):

    K = X X^T,  L = Y Y^T                      (n x n linear-kernel Gram matrices)
    H = I_n - (1/n) 1 1^T                      (centering matrix)
    HSIC(K, L) = tr(K H L H) / (n - 1)^2
    CKA(X, Y)  = HSIC(K, L) / sqrt(HSIC(K, K) * HSIC(L, L))

The (n - 1)^2 factors cancel, and with Kc = H K H, Lc = H L H (both symmetric, H idempotent)
tr(K H L H) = tr(Kc Lc) = sum(Kc * Lc). Equivalently, with column-centered Xc = H X and
Yc = H Y, CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), which is cheaper when the
feature dimensions are small. CKA lies in [0, 1], is invariant to orthogonal transforms and
isotropic scaling of either representation, and is not invariant to general invertible
linear maps. Everything here is computed in float64.

Samples for ranking INR-layer / injection-point pairs are frames: see
`activations_to_samples`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from ..errors import UsageError

__all__ = [
    "linear_cka",
    "GramAccumulator",
    "gram_from_batches",
    "center_gram",
    "cka_from_grams",
    "activations_to_samples",
    "PairScore",
    "rank_pairs",
    "select_top",
    "top_count",
]

# Elements (n * chunk width) converted to float64 at a time when building a Gram matrix.
_CHUNK_ELEMENTS = 1 << 22


def _check_2d(name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor) or t.dim() != 2:
        raise UsageError(f"{name} must be a 2-D tensor (samples, features), got {_shape(t)}")
    if t.is_complex() or t.dtype == torch.bool:
        raise UsageError(f"{name} must be a real-valued tensor, got dtype {t.dtype}")


def _shape(t: object) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def _safe_ratio(num: float, den: float) -> float:
    # A representation with no variance across samples has HSIC(K, K) = 0; CKA is then
    # undefined and reported as 0 (nothing to align with) rather than NaN.
    if not math.isfinite(num) or not math.isfinite(den) or den <= 0.0:
        return 0.0
    return float(min(max(num / den, 0.0), 1.0))


def linear_cka(X: torch.Tensor, Y: torch.Tensor) -> float:
    """Linear CKA between X (n, p) and Y (n, q), rows being the same n samples (float64 math).

    CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with K = X X^T, L = Y Y^T centered by
    H = I - 11^T/n. Uses the n x n Gram form or the equivalent feature-space form, whichever
    is cheaper. Returns 0.0 when either side has no variance across samples.
    """
    _check_2d("X", X)
    _check_2d("Y", Y)
    n = X.shape[0]
    if Y.shape[0] != n:
        raise UsageError(f"X and Y must have the same number of samples, got {X.shape[0]} and {Y.shape[0]}")
    if n < 2:
        raise UsageError(f"linear CKA needs at least 2 samples, got {n}")
    Y = Y.to(X.device)
    Xc = X.to(torch.float64)
    Yc = Y.to(torch.float64)
    if not (torch.isfinite(Xc).all() and torch.isfinite(Yc).all()):
        raise UsageError("linear CKA inputs contain NaN or infinite values")
    Xc = Xc - Xc.mean(dim=0, keepdim=True)
    Yc = Yc - Yc.mean(dim=0, keepdim=True)
    p, q = Xc.shape[1], Yc.shape[1]
    if p * q + p * p + q * q <= n * (p + q):
        cross = torch.linalg.matrix_norm(Yc.T @ Xc) ** 2
        den = torch.linalg.matrix_norm(Xc.T @ Xc) * torch.linalg.matrix_norm(Yc.T @ Yc)
    else:
        Kc = Xc @ Xc.T
        Lc = Yc @ Yc.T
        cross = (Kc * Lc).sum()
        den = torch.sqrt((Kc * Kc).sum() * (Lc * Lc).sum())
    return _safe_ratio(float(cross), float(den))


def center_gram(K: torch.Tensor) -> torch.Tensor:
    """H K H for a square Gram matrix K, in float64 (H = I - 11^T/n)."""
    if not isinstance(K, torch.Tensor) or K.dim() != 2 or K.shape[0] != K.shape[1]:
        raise UsageError(f"a Gram matrix must be square 2-D, got {_shape(K)}")
    K = K.to(torch.float64)
    return K - K.mean(dim=0, keepdim=True) - K.mean(dim=1, keepdim=True) + K.mean()


def _hsic_unbiased(K: torch.Tensor, L: torch.Tensor) -> float:
    # Song et al. (2012) unbiased HSIC estimator on diagonal-free Gram matrices (n >= 4).
    n = K.shape[0]
    Kt = K - torch.diag(torch.diagonal(K))
    Lt = L - torch.diag(torch.diagonal(L))
    ones_k = Kt.sum(dim=1)
    ones_l = Lt.sum(dim=1)
    term = (Kt * Lt).sum() + ones_k.sum() * ones_l.sum() / ((n - 1) * (n - 2)) - 2.0 * (ones_k @ ones_l) / (n - 2)
    return float(term) / (n * (n - 3))


def cka_from_grams(K: torch.Tensor, L: torch.Tensor, *, debiased: bool = False) -> float:
    """Linear CKA from two uncentered n x n Gram matrices K = X X^T and L = Y Y^T.

    With `debiased=True` the HSIC terms use the unbiased estimator (Song et al., 2012), which
    removes plain CKA's upward bias when features far outnumber samples (few frames, large
    maps: unrelated representations then score well above 0). Needs n >= 4; the result may be
    slightly negative and is not clipped.
    """
    if not isinstance(K, torch.Tensor) or not isinstance(L, torch.Tensor):
        raise UsageError(f"Gram matrices must be tensors, got {_shape(K)} and {_shape(L)}")
    if debiased:
        K64 = K.to(torch.float64)
        L64 = L.to(device=K64.device, dtype=torch.float64)
        if K64.dim() != 2 or K64.shape != L64.shape or K64.shape[0] != K64.shape[1]:
            raise UsageError(f"Gram matrices must be square and equal in shape, got {_shape(K)} and {_shape(L)}")
        if K64.shape[0] < 4:
            raise UsageError("debiased CKA needs at least 4 samples")
        if not (torch.isfinite(K64).all() and torch.isfinite(L64).all()):
            raise UsageError("Gram matrices contain NaN or infinite values")
        kl, kk, ll = _hsic_unbiased(K64, L64), _hsic_unbiased(K64, K64), _hsic_unbiased(L64, L64)
        if not (kk > 0 and ll > 0 and math.isfinite(kl)):
            return 0.0
        return kl / math.sqrt(kk * ll)
    Kc = center_gram(K)
    Lc = center_gram(L).to(Kc.device)
    if Kc.shape != Lc.shape:
        raise UsageError(f"Gram matrices must have the same shape, got {tuple(K.shape)} and {tuple(L.shape)}")
    if Kc.shape[0] < 2:
        raise UsageError("linear CKA needs at least 2 samples")
    if not (torch.isfinite(Kc).all() and torch.isfinite(Lc).all()):
        raise UsageError("Gram matrices contain NaN or infinite values")
    cross = float((Kc * Lc).sum())
    den = math.sqrt(max(float((Kc * Kc).sum()), 0.0) * max(float((Lc * Lc).sum()), 0.0))
    return _safe_ratio(cross, den)


class GramAccumulator:
    """Streams an n x n float64 Gram matrix K = X X^T without holding X (memory O(n^2)).

    Two ways to feed it (one per accumulator):

    * `add_features(chunk)`: chunk (n, d) holds some feature dimensions (e.g. a channel group)
      for all n samples; K += chunk chunk^T. Feeding every dimension once gives K exactly.
    * `add_block(rows_a, start_a, rows_b, start_b)`: per-frame flattened vectors arriving in
      batches of frames; adds the cross block K[a, b] (and its transpose). A single pass over
      frame batches cannot give K in O(n^2) memory (later frames need inner products with
      every earlier one), so the caller revisits batches; `gram_from_batches` does that.
    """

    def __init__(self, n: int, device: torch.device | str | None = None) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise UsageError(f"GramAccumulator needs a positive sample count, got {n!r}")
        self.n = n
        self.device = torch.device(device) if device is not None else None
        self._K: torch.Tensor | None = None
        self._block_count: torch.Tensor | None = None

    def _buffer(self, like: torch.Tensor) -> torch.Tensor:
        if self._K is None:
            dev = self.device if self.device is not None else like.device
            self._K = torch.zeros(self.n, self.n, dtype=torch.float64, device=dev)
        return self._K

    def add_features(self, chunk: torch.Tensor) -> None:
        """Add a group of feature dimensions (n, d) for all n samples."""
        if not isinstance(chunk, torch.Tensor) or chunk.dim() < 2 or chunk.shape[0] != self.n:
            raise UsageError(f"feature chunk must have {self.n} rows, got {_shape(chunk)}")
        if self._block_count is not None:
            raise UsageError("this GramAccumulator is fed frame blocks; use add_block only")
        K = self._buffer(chunk)
        flat = chunk.reshape(self.n, -1)
        step = max(1, _CHUNK_ELEMENTS // self.n)
        for s in range(0, flat.shape[1], step):
            part = flat[:, s : s + step].to(device=K.device, dtype=torch.float64)
            K.addmm_(part, part.T)

    def add_block(
        self,
        rows_a: torch.Tensor,
        start_a: int,
        rows_b: torch.Tensor | None = None,
        start_b: int | None = None,
    ) -> None:
        """Add K[a, b] (and K[b, a]) for frame batches a = start_a.. and b = start_b...

        With `rows_b` omitted the diagonal block K[a, a] is added.
        """
        if rows_b is None:
            rows_b, start_b = rows_a, start_a
        if start_b is None:
            raise UsageError("start_b is required with rows_b")
        a = rows_a.reshape(rows_a.shape[0], -1) if isinstance(rows_a, torch.Tensor) and rows_a.dim() >= 1 else None
        b = rows_b.reshape(rows_b.shape[0], -1) if isinstance(rows_b, torch.Tensor) and rows_b.dim() >= 1 else None
        if a is None or b is None or a.shape[1] != b.shape[1]:
            raise UsageError(
                f"frame batches must be tensors with equal feature size, got {_shape(rows_a)} and {_shape(rows_b)}"
            )
        for start, rows in ((start_a, a), (start_b, b)):
            if not isinstance(start, int) or start < 0 or start + rows.shape[0] > self.n:
                raise UsageError(f"frame batch at {start!r} of {rows.shape[0]} frames does not fit in {self.n} samples")
        ia = slice(start_a, start_a + a.shape[0])
        ib = slice(start_b, start_b + b.shape[0])
        if ia != ib and max(ia.start, ib.start) < min(ia.stop, ib.stop):
            raise UsageError("overlapping frame batches must be added as one diagonal block")
        if self._K is not None and self._block_count is None:
            raise UsageError("this GramAccumulator is fed feature chunks; use add_features only")
        K = self._buffer(a)
        if self._block_count is None:
            self._block_count = torch.zeros(self.n, self.n, dtype=torch.int32, device=K.device)
        blk = torch.zeros(a.shape[0], b.shape[0], dtype=torch.float64, device=K.device)
        step = max(1, _CHUNK_ELEMENTS // max(a.shape[0], b.shape[0]))
        for s in range(0, a.shape[1], step):
            pa = a[:, s : s + step].to(device=K.device, dtype=torch.float64)
            pb = b[:, s : s + step].to(device=K.device, dtype=torch.float64)
            blk.addmm_(pa, pb.T)
        K[ia, ib] += blk
        self._block_count[ia, ib] += 1
        if ia != ib:
            K[ib, ia] += blk.T
            self._block_count[ib, ia] += 1

    @property
    def gram(self) -> torch.Tensor:
        """The accumulated n x n float64 Gram matrix (checks block coverage when blocks were used)."""
        if self._K is None:
            raise UsageError("GramAccumulator received no features")
        if self._block_count is not None:
            lo, hi = int(self._block_count.min()), int(self._block_count.max())
            if lo < 1 or lo != hi:
                raise UsageError("frame blocks do not cover every pair of samples exactly the same number of times")
        return self._K


def gram_from_batches(
    fetch: Callable[[int, int], torch.Tensor],
    n: int,
    batch_size: int,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Exact Gram matrix of n per-frame vectors produced by `fetch(start, stop) -> (stop-start, ...)`.

    Memory is O(n^2 + 2 * batch_size * feature_size); `fetch` is called about
    (n / batch_size)^2 / 2 times, so it should be cheap to recompute (e.g. an INR decode).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}")
    acc = GramAccumulator(n, device)
    starts = list(range(0, n, batch_size))
    for i, sa in enumerate(starts):
        a = fetch(sa, min(sa + batch_size, n))
        acc.add_block(a, sa)
        for sb in starts[i + 1 :]:
            acc.add_block(a, sa, fetch(sb, min(sb + batch_size, n)), sb)
    return acc.gram


def activations_to_samples(act: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Flatten activations (N, C, h, w) to ranking samples (N, C*H*W): one sample per frame.

    With `size` = (H, W) the activations are first resized bilinearly (align_corners=False) to
    the injection point's grid, exactly as the micro adapter does. The adapter's 1x1 conv
    relates features position by position, so resizing both sides onto the same grid makes
    dimension (c, y, x) of the INR sample sit at the same image location as the backbone's
    (c', y, x); linear CKA over frames then measures how well the frame-to-frame similarity
    structure of the INR layer matches the backbone's at that location-aligned level.
    Alternative (not used): treat every spatial position as a sample, X (N*H*W, C); this
    matches a 1x1 conv's per-position map more literally but ignores spatial layout and makes
    n huge (CKA then needs the feature-space form, which `linear_cka` picks automatically).
    """
    if not isinstance(act, torch.Tensor) or act.dim() != 4:
        raise UsageError(f"activations must be (N, C, h, w), got {_shape(act)}")
    if size is not None:
        size = _check_size(size)
        if tuple(act.shape[-2:]) != size:
            x = act if act.dtype.is_floating_point else act.float()
            act = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return act.reshape(act.shape[0], -1)


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise UsageError(f"size must be (H, W), got {size!r}") from None
    if h < 1 or w < 1:
        raise UsageError(f"size must be positive, got {size!r}")
    return h, w


@dataclass(frozen=True)
class PairScore:
    """Linear CKA between INR decoder block `inr_layer` and backbone `injection_point`."""

    inr_layer: int
    injection_point: str
    cka: float


def _gram_of_activations(act: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Gram matrix of the column-centered activations_to_samples(act, size), one channel group at a time.

    Centering every feature over the samples (in float64) first leaves both HSIC estimators
    unchanged (linear-kernel HSIC depends on the data only through its covariance) but avoids
    their cancellation: features with a large common offset and little variation, as a nearly
    constant INR block gives, otherwise score exactly 0 against everything.
    """
    n, c = act.shape[:2]
    acc = GramAccumulator(n, act.device)
    group = max(1, _CHUNK_ELEMENTS // max(1, n * size[0] * size[1]))
    for s in range(0, c, group):
        samples = activations_to_samples(act[:, s : s + group], size).to(torch.float64)
        acc.add_features(samples - samples.mean(dim=0, keepdim=True))
    return acc.gram


def rank_pairs(
    inr_feats: dict[int, torch.Tensor],
    backbone_feats: dict[str, torch.Tensor],
    sizes: dict[str, tuple[int, int]] | None = None,
    *,
    debiased: bool = False,
) -> list[PairScore]:
    """Score every (INR layer, injection point) pair by linear CKA over frames, best first.

    `inr_feats[i]` is (N, C_i, h_i, w_i), `backbone_feats[j]` is (N, C_j, H_j, W_j) for the same
    N frames. INR features are resized to `sizes[j]` (default: backbone_feats[j]'s spatial size)
    before flattening, see `activations_to_samples`. Ties are broken by (inr_layer, point).
    `debiased=True` uses the unbiased HSIC estimator (see `cka_from_grams`).
    """
    if not inr_feats or not backbone_feats:
        raise UsageError("rank_pairs needs at least one INR layer and one injection point")
    sizes = dict(sizes or {})
    n = None
    for name, t in list(inr_feats.items()) + list(backbone_feats.items()):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            raise UsageError(f"features for {name!r} must be (N, C, h, w), got {_shape(t)}")
        if n is None:
            n = t.shape[0]
        elif t.shape[0] != n:
            raise UsageError(f"all features must cover the same frames: {name!r} has {t.shape[0]}, expected {n}")
    if n is None or n < 2:
        raise UsageError("rank_pairs needs features for at least 2 frames")
    inr_grams: dict[tuple[int, tuple[int, int]], torch.Tensor] = {}
    scores: list[PairScore] = []
    for point, bfeat in backbone_feats.items():
        size = _check_size(sizes.get(point, tuple(bfeat.shape[-2:])))
        L = _gram_of_activations(bfeat, tuple(bfeat.shape[-2:]))
        for layer, ifeat in inr_feats.items():
            key = (layer, size)
            if key not in inr_grams:
                inr_grams[key] = _gram_of_activations(ifeat, size)
            cka = cka_from_grams(inr_grams[key], L, debiased=debiased)
            scores.append(PairScore(int(layer), str(point), cka))
    scores.sort(key=lambda s: (-s.cka, s.inr_layer, s.injection_point))
    return scores


def top_count(n: int, top_k: float | int = 0.10) -> int:
    """How many of `n` ranked pairs `top_k` keeps: a float in (0, 1] is a fraction (rounded up),
    an int a count; at least 1, at most n."""
    if isinstance(top_k, bool):
        raise UsageError(f"top_k must be a fraction in (0, 1] or a positive count, got {top_k!r}")
    if isinstance(top_k, int):
        if top_k < 1:
            raise UsageError(f"top_k count must be at least 1, got {top_k}")
        k = top_k
    elif isinstance(top_k, float):
        if not (0.0 < top_k <= 1.0):
            raise UsageError(f"top_k fraction must be in (0, 1], got {top_k}")
        k = math.ceil(round(top_k * n, 9))
    else:
        raise UsageError(f"top_k must be a fraction in (0, 1] or a positive count, got {top_k!r}")
    return max(1, min(k, n))


def select_top(pairs: Iterable[PairScore], top_k: float | int = 0.10) -> list[PairScore]:
    """The best pairs by CKA, `top_count` of them.

    `select_top(pairs, 0.10)` keeps the top 10% (e.g. 2 of 12), `select_top(pairs, 3)` the top 3.
    """
    ranked = sorted(pairs, key=lambda s: (-s.cka, s.inr_layer, s.injection_point))
    if not ranked:
        raise UsageError("select_top needs at least one scored pair")
    return ranked[: top_count(len(ranked), top_k)]
