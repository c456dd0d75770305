"""Post-training quantization: error bounds, per-channel choice, decoder round trip."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nvcodec.errors import UsageError
from nvcodec.inr import INRDecoder, dequantize_into, plan_config, quantize_inr
from nvcodec.inr.qat import fake_quant
from nvcodec.inr.quant import dequantize_tensor, quantize_auto, quantize_tensor



def _bound_ok(x: np.ndarray, q: np.ndarray, p) -> bool:
    deq = dequantize_tensor(q, p)
    scale = np.asarray(p.scale, dtype=np.float64)
    if p.axis is not None:
        shape = [1] * x.ndim
        shape[p.axis] = -1
        scale = scale.reshape(shape)
    err = np.abs(x.astype(np.float64) - deq)
    tol = scale / 2 * (1 + 1e-4) + 1e-6 * (np.abs(x).max() + 1e-30)
    return bool(np.all(err <= tol))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 9)),
              elements=st.floats(-50, 50, width=32)),
       st.integers(2, 16), st.sampled_from([None, 0, 1]), st.sampled_from(["affine", "symmetric"]))
def test_error_within_half_step(x: np.ndarray, bits: int, axis, mode: str) -> None:
    q, p = quantize_tensor(x, bits, axis, mode)
    assert q.dtype == (np.uint8 if bits <= 8 else np.uint16)
    assert q.shape == x.shape and int(q.max()) <= 2 ** bits - 1
    assert p.bits == bits and p.axis == axis
    assert p.scale.dtype == np.float32 and p.zero_point.dtype == np.float32
    assert _bound_ok(x, q, p)


@pytest.mark.parametrize("mode", ["affine", "symmetric"])
def test_a_range_too_small_for_a_float32_step_quantizes_without_dividing_by_zero(mode: str) -> None:
    x = np.array([[1e-44, -3e-45, 0.0], [1.0, 2.0, -1.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for axis in (None, 0, 1):
            q, p = quantize_tensor(x, 8, axis, mode)
            assert np.all(np.isfinite(p.scale)) and np.all(p.scale > 0) and np.all(np.isfinite(p.zero_point))
            assert _bound_ok(x, q, p)
        q, p = quantize_tensor(x[0], 8, None, mode)
        assert np.abs(dequantize_tensor(q, p) - x[0]).max() <= 1.5e-44  # within the range (1.3e-44)


def test_a_range_too_large_for_a_float32_step_is_refused() -> None:
    with pytest.raises(UsageError, match="too large"):
        quantize_tensor(np.array([-3e38, 3e38], dtype=np.float32), 2, widen=4.0)


def test_fake_quant_of_a_range_that_underflows_float32_stays_finite() -> None:
    x = torch.tensor([[1e-44, -3e-45], [1.0, 2.0]])
    for axis in (None, 0):
        out = fake_quant(x, 6, axis)
        assert torch.isfinite(out).all()
    assert torch.allclose(fake_quant(x, 6, 0)[1], x[1], atol=1 / 63)


def test_affine_hits_min_and_max_and_constant_is_exact() -> None:
    x = np.linspace(-0.3, 0.7, 101, dtype=np.float32)
    q, p = quantize_tensor(x, 8)
    assert q.min() == 0 and q.max() == 255
    assert np.allclose(dequantize_tensor(q, p)[[0, -1]], [-0.3, 0.7], atol=1e-6)
    c = np.full((3, 4), 0.25, dtype=np.float32)
    for axis in (None, 0):
        qc, pc = quantize_tensor(c, 6, axis)
        assert np.allclose(dequantize_tensor(qc, pc), c, atol=1e-7)


def test_per_channel_chosen_when_ranges_differ() -> None:
    rng = np.random.default_rng(0)
    ranges = np.logspace(-3, 0, 16, dtype=np.float32)[:, None, None, None]
    w = rng.normal(size=(16, 8, 3, 3)).astype(np.float32) * ranges
    q, p = quantize_auto(w, 8, 0)
    assert p.axis == 0 and p.scale.shape == (16,)
    same = rng.uniform(-1, 1, size=(4, 3)).astype(np.float32)
    same[:, 0], same[:, 1] = -1.0, 1.0
    assert quantize_auto(same, 8, 0)[1].axis is None
    mse_auto = np.mean((dequantize_tensor(q, p) - w) ** 2)
    qt, pt = quantize_tensor(w, 8, None)
    assert mse_auto < np.mean((dequantize_tensor(qt, pt) - w) ** 2) / 10


def test_bad_bits_and_values() -> None:
    for bits in (1, 17, True, 8.0):
        with pytest.raises(UsageError):
            quantize_tensor(np.zeros(3, np.float32), bits)
    with pytest.raises(UsageError):
        quantize_tensor(np.array([1.0, np.nan], np.float32), 8)
    with pytest.raises(UsageError):
        quantize_tensor(np.zeros(3, np.float32), 8, mode="log")


@pytest.mark.parametrize("kind", ["hnerv", "nerv", "hinerv"])
def test_quantize_inr_roundtrip(kind: str) -> None:
    torch.manual_seed(0)
    c = plan_config(48, 32, 5, kind=kind, params=2e4)
    dec = INRDecoder(c).eval()
    shape = c.embedding_shape()
    emb = torch.randn(*shape) * 3 if shape is not None else None
    qinr = quantize_inr(dec, emb, weight_bits=8, embed_bits=6)
    assert len(qinr.blocks) == dec.num_blocks
    for k, qd in enumerate(qinr.blocks):
        sd = dec.block_state_dict(k)
        assert set(qd) == set(sd)
        for name, (q, p) in qd.items():
            assert q.dtype == np.uint8 and p.bits == 8
            assert _bound_ok(sd[name].numpy(), q, p)
    other = INRDecoder(c).eval()
    emb_deq = dequantize_into(other, qinr)
    for k in range(dec.num_blocks):
        for name, t in other.block_state_dict(k).items():
            assert torch.equal(t, qinr.block_tensors(k)[name])
    if emb is not None:
        q, p = qinr.embeddings
        assert p.bits == 6 and int(q.max()) < 64 and p.axis in (None, 1)
        assert emb_deq.shape == emb.shape and _bound_ok(emb.numpy(), q, p)
    else:
        assert emb_deq is None and qinr.embeddings is None
    x = other.input_for(torch.arange(5), emb_deq)
    with torch.no_grad():
        ref = dec(dec.input_for(torch.arange(5), emb))
        assert (other(x) - ref).abs().max() < 0.05
    q16 = quantize_inr(dec, emb, weight_bits=10, embed_bits=12)
    assert q16.blocks[0]["conv.weight"][0].dtype == np.uint16
    assert q16.payload_bits() > qinr.payload_bits()


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 9)), elements=st.floats(-50, 50, width=32)),
       st.integers(3, 10), st.floats(1.0, 4.0), st.sampled_from([None, 0]), st.sampled_from(["affine", "symmetric"]))
def test_a_widened_step_keeps_the_error_bound_and_uses_fewer_levels(x: np.ndarray, bits: int, widen: float, axis,
                                                                   mode: str) -> None:
    q, p = quantize_tensor(x, bits, axis, mode=mode, widen=widen)
    assert _bound_ok(x, q, p)
    assert int(q.max()) - int(q.min()) <= (2 ** bits - 1) / widen + 1


def test_widen_below_one_or_not_finite_is_refused() -> None:
    for w in (0.5, float("nan"), float("inf")):
        with pytest.raises(UsageError, match="widen"):
            quantize_tensor(np.ones((2, 2), np.float32), 6, widen=w)
