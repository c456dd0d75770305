import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from nvcodec.errors import NvcodecError, UsageError
from nvcodec.tasks.cka import (
    GramAccumulator,
    PairScore,
    activations_to_samples,
    cka_from_grams,
    gram_from_batches,
    linear_cka,
    rank_pairs,
    select_top,
)


def cka_reference(X: np.ndarray, Y: np.ndarray) -> float:
    """Textbook linear CKA with an explicit centering matrix, numpy float64."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    n = X.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = X @ X.T, Y @ Y.T

    def hsic(A, B):
        return np.trace(A @ H @ B @ H) / (n - 1) ** 2

    return hsic(K, L) / math.sqrt(hsic(K, K) * hsic(L, L))


def rand(n, p, seed):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, p)))


def random_orthogonal(p, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((p, p)))
    return torch.from_numpy(q * np.sign(np.diag(r)))


def test_hand_computed_small_example():
    X = np.array([[1.0, 2.0], [3.0, 1.0], [0.0, -1.0], [2.0, 2.0]])
    Y = np.array([[1.0], [4.0], [-2.0], [0.5]])
    ref = cka_reference(X, Y)
    assert 0.0 < ref < 1.0
    assert linear_cka(torch.tensor(X), torch.tensor(Y)) == pytest.approx(ref, rel=1e-12)
    assert linear_cka(torch.tensor(X, dtype=torch.float32), torch.tensor(Y, dtype=torch.float32)) == pytest.approx(
        ref, rel=1e-6
    )


def test_known_exact_values():
    X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    assert linear_cka(X, X) == pytest.approx(1.0, abs=1e-12)
    # Features orthogonal (after centering) across samples: the two Gram matrices do not align.
    a = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]])
    b = torch.tensor([[1.0], [1.0], [-1.0], [-1.0]])
    assert linear_cka(a, b) == pytest.approx(0.0, abs=1e-12)
    # Hand value: x = (1, 2, 3), y = (1, 3, 2): centered x = (-1, 0, 1), y = (-1, 1, 0);
    # linear CKA of 1-D features is the squared Pearson correlation = (1/2)^2.
    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[1.0], [3.0], [2.0]])
    assert linear_cka(x, y) == pytest.approx(0.25, abs=1e-12)


@pytest.mark.parametrize("n,p,q", [(10, 3, 4), (6, 50, 40), (30, 2, 100), (40, 7, 7)])
def test_matches_reference_both_forms(n, p, q):
    X, Y = rand(n, p, 1), rand(n, q, 2) + 0.3 * rand(n, q, 3)
    Y[:, :2] += X[:, :1]
    ref = cka_reference(X.numpy(), Y.numpy())
    assert linear_cka(X, Y) == pytest.approx(ref, rel=1e-10)
    assert cka_from_grams(X @ X.T, Y @ Y.T) == pytest.approx(ref, rel=1e-10)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale_x=st.floats(1e-3, 1e3), scale_y=st.floats(1e-3, 1e3))
def test_invariant_to_orthogonal_and_isotropic_scaling(seed, scale_x, scale_y):
    X, Y = rand(12, 5, seed), rand(12, 6, seed + 1)
    Y[:, :3] += X[:, :3]
    base = linear_cka(X, Y)
    Xt = scale_x * X @ random_orthogonal(5, seed + 2)
    Yt = scale_y * Y @ random_orthogonal(6, seed + 3)
    assert linear_cka(Xt, Yt) == pytest.approx(base, rel=1e-9, abs=1e-12)


def test_invariant_to_mean_shift_per_feature():
    X, Y = rand(9, 4, 5), rand(9, 3, 6)
    assert linear_cka(X + torch.tensor([5.0, -3.0, 100.0, 0.1], dtype=X.dtype), Y) == pytest.approx(
        linear_cka(X, Y), rel=1e-9
    )


def test_not_invariant_to_general_invertible_linear_maps():
    X, Y = rand(20, 4, 7), rand(20, 4, 8)
    Y += X
    A = torch.tensor([[10.0, 0, 0, 0], [0, 0.1, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1]], dtype=X.dtype)
    assert torch.linalg.det(A).abs() > 0.1
    assert abs(linear_cka(X @ A, Y) - linear_cka(X, Y)) > 1e-2


def test_degenerate_and_bad_inputs():
    X = rand(5, 3, 0)
    assert linear_cka(torch.ones(5, 3), X) == 0.0
    with pytest.raises(UsageError):
        linear_cka(X, rand(4, 3, 1))
    with pytest.raises(UsageError):
        linear_cka(X[:1], X[:1])
    with pytest.raises(UsageError):
        linear_cka(X[:, 0], X)
    bad = X.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(NvcodecError):
        linear_cka(bad, X)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_gram_accumulator_feature_chunks_equal_one_shot(chunk):
    X = torch.randn(11, 200, generator=torch.Generator().manual_seed(0))
    acc = GramAccumulator(11)
    for s in range(0, 200, chunk):
        acc.add_features(X[:, s : s + chunk])
    K = acc.gram
    assert K.dtype == torch.float64 and K.shape == (11, 11)
    torch.testing.assert_close(K, X.double() @ X.double().T, rtol=1e-12, atol=1e-9)


def test_gram_accumulator_channel_groups_of_activations():
    act = torch.randn(6, 8, 5, 4)
    acc = GramAccumulator(6)
    for c in range(0, 8, 3):
        acc.add_features(act[:, c : c + 3])
    flat = act.reshape(6, -1).double()
    torch.testing.assert_close(acc.gram, flat @ flat.T)


def test_gram_from_frame_batches_equals_one_shot():
    frames = torch.randn(13, 3, 4, 5)
    calls = []

    def fetch(a, b):
        calls.append((a, b))
        return frames[a:b]

    K = gram_from_batches(fetch, 13, 4)
    flat = frames.reshape(13, -1).double()
    torch.testing.assert_close(K, flat @ flat.T)
    assert len(calls) == 4 + 3 + 2 + 1


def test_gram_accumulator_block_coverage_and_mixing_checked():
    X = torch.randn(6, 4)
    acc = GramAccumulator(6)
    acc.add_block(X[:3], 0)
    with pytest.raises(UsageError):
        acc.gram
    with pytest.raises(UsageError):
        acc.add_features(X)
    with pytest.raises(UsageError):
        acc.add_block(X[:3], 0, X[2:5], 2)
    acc.add_block(X[3:], 3)
    acc.add_block(X[:3], 0, X[3:], 3)
    torch.testing.assert_close(acc.gram, X.double() @ X.double().T)
    with pytest.raises(UsageError):
        GramAccumulator(0)
    with pytest.raises(UsageError):
        GramAccumulator(3).gram


def test_activations_to_samples_resize_and_flatten():
    act = torch.randn(3, 2, 4, 6)
    s = activations_to_samples(act, None)
    assert s.shape == (3, 48)
    torch.testing.assert_close(s[1], act[1].reshape(-1))
    assert torch.equal(activations_to_samples(act, (4, 6)), s)
    r = activations_to_samples(act, (8, 12))
    want = F.interpolate(act, size=(8, 12), mode="bilinear", align_corners=False).reshape(3, -1)
    torch.testing.assert_close(r, want)
    with pytest.raises(UsageError):
        activations_to_samples(act[0], None)
    with pytest.raises(UsageError):
        activations_to_samples(act, (0, 3))


def test_rank_pairs_orders_by_cka():
    g = torch.Generator().manual_seed(3)
    n = 16
    base = torch.randn(n, 4, 4, 4, generator=g)
    inr = {
        0: torch.randn(n, 3, 4, 4, generator=g),  # unrelated
        1: base.clone(),  # identical to backbone "b" up to a 2x upsampling
        2: base + 0.5 * torch.randn(n, 4, 4, 4, generator=g),  # noisy copy
    }
    bb = {
        "a": torch.randn(n, 5, 8, 8, generator=g),
        "b": F.interpolate(base, size=(8, 8), mode="bilinear", align_corners=False),
    }
    ranked = rank_pairs(inr, bb, {"a": (8, 8), "b": (8, 8)})
    assert len(ranked) == 6
    assert all(isinstance(p, PairScore) for p in ranked)
    assert [p.cka for p in ranked] == sorted((p.cka for p in ranked), reverse=True)
    assert (ranked[0].inr_layer, ranked[0].injection_point) == (1, "b")
    assert ranked[0].cka == pytest.approx(1.0, abs=1e-9)
    assert (ranked[1].inr_layer, ranked[1].injection_point) == (2, "b")
    for p in ranked:
        x = activations_to_samples(inr[p.inr_layer], (8, 8))
        y = bb[p.injection_point].reshape(n, -1)
        assert p.cka == pytest.approx(cka_reference(x.numpy(), y.numpy()), rel=1e-8)
    # sizes default to the backbone features' own grid
    assert rank_pairs(inr, bb) == ranked


def test_rank_pairs_rejects_mismatched_frames():
    with pytest.raises(UsageError):
        rank_pairs({0: torch.randn(4, 2, 3, 3)}, {"x": torch.randn(5, 2, 3, 3)}, {})
    with pytest.raises(UsageError):
        rank_pairs({}, {"x": torch.randn(5, 2, 3, 3)}, {})


def _pairs(k):
    return [PairScore(i, f"p{i}", 1.0 - i / k) for i in range(k)]


@pytest.mark.parametrize(
    "count,top_k,expected",
    [
        (12, 0.10, 2),
        (30, 0.10, 3),
        (10, 0.10, 1),
        (5, 0.10, 1),
        (20, 0.25, 5),
        (7, 1.0, 7),
        (7, 3, 3),
        (2, 5, 2),
        (1, 0.01, 1),
    ],
)
def test_select_top(count, top_k, expected):
    pairs = _pairs(count)
    top = select_top(list(reversed(pairs)), top_k)
    assert top == pairs[:expected]


@pytest.mark.parametrize("bad", [0, -1, 0.0, 1.5, -0.1, True, "10%"])
def test_select_top_rejects_bad_k(bad):
    with pytest.raises(UsageError):
        select_top(_pairs(4), bad)


def test_select_top_empty():
    with pytest.raises(UsageError):
        select_top([], 0.1)


def test_debiased_cka_removes_few_sample_bias():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(16, 400, generator=g, dtype=torch.float64)
    Y = torch.randn(16, 300, generator=g, dtype=torch.float64)
    K, L = X @ X.T, Y @ Y.T
    assert cka_from_grams(K, L) > 0.5
    assert abs(cka_from_grams(K, L, debiased=True)) < 0.15
    assert cka_from_grams(K, K, debiased=True) == pytest.approx(1.0, abs=1e-12)
    Z = X[:, :50] @ random_orthogonal(50, 1) * 3.0
    Yd = torch.cat([X[:, :50] + 0.2 * torch.randn(16, 50, generator=g, dtype=torch.float64), Y[:, :10]], 1)
    biased = cka_from_grams(K, Yd @ Yd.T)
    assert cka_from_grams(Z @ Z.T, Yd @ Yd.T, debiased=True) > cka_from_grams(K, Yd @ Yd.T, debiased=True)
    assert 0.0 <= biased <= 1.0
    with pytest.raises(UsageError):
        cka_from_grams(K[:3, :3], L[:3, :3], debiased=True)


def test_rank_pairs_debiased_option():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(12, 4, 4, 4, generator=g)
    inr = {0: base, 1: torch.randn(12, 4, 4, 4, generator=g)}
    ranked = rank_pairs(inr, {"p": base * 2.0}, debiased=True)
    assert ranked[0].inr_layer == 0 and ranked[0].cka == pytest.approx(1.0, abs=1e-9)
    assert abs(ranked[1].cka) < 0.3


def test_rank_pairs_channel_group_streaming_matches(monkeypatch):
    import nvcodec.tasks.cka as cka_mod

    g = torch.Generator().manual_seed(5)
    inr = {0: torch.randn(6, 7, 3, 3, generator=g), 3: torch.randn(6, 2, 5, 4, generator=g)}
    bb = {"p": torch.randn(6, 5, 6, 6, generator=g)}
    full = rank_pairs(inr, bb)
    monkeypatch.setattr(cka_mod, "_CHUNK_ELEMENTS", 6 * 36 * 2)  # two channels per group
    streamed = rank_pairs(inr, bb)
    assert [(p.inr_layer, p.injection_point) for p in streamed] == [(p.inr_layer, p.injection_point) for p in full]
    for a, b in zip(full, streamed):
        assert a.cka == pytest.approx(b.cka, rel=1e-12)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cka_on_cuda():
    X, Y = rand(10, 6, 0), rand(10, 4, 1)
    assert linear_cka(X.cuda(), Y.cuda()) == pytest.approx(linear_cka(X, Y), rel=1e-10)
    inr = {0: torch.randn(5, 3, 4, 4, device="cuda")}
    bb = {"p": torch.randn(5, 2, 8, 8)}
    cuda_rank = rank_pairs(inr, bb)
    cpu_rank = rank_pairs({0: inr[0].cpu()}, bb)
    assert cuda_rank[0].cka == pytest.approx(cpu_rank[0].cka, rel=1e-6)


@pytest.mark.parametrize("debiased", [False, True])
def test_rank_pairs_near_constant_features_keep_their_alignment(debiased):
    """A large common offset with little variation (a nearly constant INR block) must not score 0."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(12, 8, 4, 4, generator=g, dtype=torch.float64)
    target = torch.nn.functional.conv2d(base, torch.randn(6, 8, 1, 1, generator=g, dtype=torch.float64))
    plain = rank_pairs({0: base}, {"p": target}, debiased=debiased)[0].cka
    shifted = rank_pairs({0: 1e-3 * base + 100.0}, {"p": target}, debiased=debiased)[0].cka
    assert plain > 0.2 and shifted == pytest.approx(plain, abs=1e-6)
