"""Quantization-aware training: the fake quantizer matches the stored one, the STE swap, the plan."""

import numpy as np
import pytest
import torch

from conftest import synthetic_frames
from nvcodec.errors import UsageError
from nvcodec.inr import INRDecoder, plan_config
from nvcodec.inr.fit import fit
from nvcodec.inr.qat import WeightSTE, fake_quant, fake_quant_ste, make_plan, named_tensors
from nvcodec.inr.quant import dequantize_tensor, quantize_inr, quantize_tensor


@pytest.mark.parametrize("bits,axis", [(8, None), (6, 0), (5, 1), (3, 0)])
def test_fake_quant_matches_the_stored_quantizer(bits: int, axis: int | None) -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 5, 3, 3) * torch.linspace(0.1, 2.0, 6).reshape(6, 1, 1, 1)
    stored = dequantize_tensor(*quantize_tensor(x, bits, axis))
    np.testing.assert_allclose(fake_quant(x, bits, axis).numpy(), stored, rtol=0, atol=1e-5)
    levels = {int(v) for v in np.unique(quantize_tensor(x, bits, axis)[0])}
    assert max(levels) <= 2 ** bits - 1


def test_fake_quant_ste_passes_the_gradient_straight_through() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    y = fake_quant_ste(x, 4, None)
    assert torch.allclose(y, fake_quant(x.detach(), 4, None))
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_weight_ste_swaps_in_quantized_values_and_restores_floats() -> None:
    torch.manual_seed(0)
    c = plan_config(48, 32, 4, kind="hnerv", params=2e4)
    dec = INRDecoder(c)
    plan = make_plan(dec, 5, 6)
    ste = WeightSTE(dec, plan)
    floats = {k: p.detach().clone() for k, p in named_tensors(dec).items()}
    ste.quantize()
    for key, p in named_tensors(dec).items():
        assert torch.allclose(p, fake_quant(floats[key], 5, plan.axes[key]), atol=1e-6)
        assert len(torch.unique(p)) <= 2 ** 5 * (p.shape[0] if plan.axes[key] == 0 else 1)
    ste.restore()
    for key, p in named_tensors(dec).items():
        assert torch.equal(p, floats[key])


def test_plan_quantization_stores_what_training_saw() -> None:
    torch.manual_seed(0)
    c = plan_config(48, 32, 4, kind="hnerv", params=2e4)
    dec = INRDecoder(c).eval()
    emb = torch.randn(*c.embedding_shape())
    plan = make_plan(dec, 6, 5, embeddings=emb, prune=0.25)
    assert plan.masks and all(0.6 < float(m.float().mean()) < 0.85 for m in plan.masks.values())
    q = quantize_inr(dec, emb, 6, 5, plan=plan)
    ste = WeightSTE(dec, plan)
    ste.quantize()
    seen = {k: p.detach().clone() for k, p in named_tensors(dec).items()}
    ste.restore()
    for k in range(dec.num_blocks):
        stored = q.block_tensors(k)
        for name, value in stored.items():
            assert torch.allclose(value, seen[("block", k, name)], atol=1e-5)
            assert q.blocks[k][name][1].bits == 6
    assert q.embeddings[1].bits == 5


def test_qat_fit_keeps_quality_at_fewer_bits() -> None:
    frames = torch.from_numpy(synthetic_frames(4, 32, 48))
    c = plan_config(48, 32, 4, kind="hnerv", params=2e4)
    base = fit(frames, c, epochs=60, psnr_target=None, lr=1e-2, eval_every=None, weight_bits=5, embed_bits=5)
    qat = fit(frames, c, epochs=60, psnr_target=None, lr=1e-2, eval_every=None, weight_bits=5, embed_bits=5,
              qat=0.3)
    assert qat.psnr > base.psnr
    assert all(p.bits == 5 for b in qat.quantized.blocks for _, p in b.values())


def test_fit_rejects_bad_qat_arguments() -> None:
    frames = torch.from_numpy(synthetic_frames(4, 32, 48))
    c = plan_config(48, 32, 4, kind="hnerv", params=2e4)
    for kw in ({"qat": 1.5}, {"qat": -0.1}, {"prune": 0.3}, {"qat": 0.2, "prune": 1.0}):
        with pytest.raises(UsageError):
            fit(frames, c, epochs=1, **kw)


def test_bit_allocation_keeps_the_mean_and_favours_sensitive_tensors() -> None:
    from nvcodec.inr.qat import allocate_bits

    torch.manual_seed(0)
    c = plan_config(48, 32, 4, kind="hnerv", params=2e4)
    dec = INRDecoder(c)
    params = list(dec.parameters())
    opt = torch.optim.Adam(params)
    tensors = named_tensors(dec)
    sensitive = max(tensors, key=lambda k: tensors[k].numel())
    for p in params:
        p.grad = torch.full_like(p, 1e-3)
    tensors[sensitive].grad = torch.full_like(tensors[sensitive], 10.0)
    opt.step()
    bits = allocate_bits(dec, opt, 6)
    sizes = {k: p.numel() for k, p in tensors.items()}
    assert sum(bits[k] * sizes[k] for k in tensors) <= 6 * sum(sizes.values())
    assert bits[sensitive] == max(bits.values()) and bits[sensitive] > 6
    assert all(4 <= b <= 10 for b in bits.values())


def test_fit_with_bit_allocation_and_pruning_stores_the_plan() -> None:
    frames = torch.from_numpy(synthetic_frames(4, 32, 48))
    c = plan_config(48, 32, 4, kind="hinerv", params=2e4)
    r = fit(frames, c, epochs=20, psnr_target=None, eval_every=None, weight_bits=6, embed_bits=5,
            qat=0.5, prune=0.2, bit_alloc=True)
    bits = [p.bits for b in r.quantized.blocks for _, p in b.values()]
    assert len(set(bits)) > 1 and r.psnr > 20
    q, p = r.quantized.blocks[-1]["conv.weight"]
    deq = dequantize_tensor(q, p)
    near_zero = np.abs(deq) <= np.asarray(p.scale).reshape(-1, 1, 1, 1) / 2 + 1e-7
    assert near_zero.mean() >= 0.2


def test_tune_keeps_the_files_per_tensor_bits_layout_and_sparsity(tmp_path) -> None:
    from conftest import write_clip
    from nvcodec.adapt.attach import attach
    from nvcodec.adapt.tune import tune
    from nvcodec.codec.encode import EncodeOptions, encode
    from nvcodec.codec.serialize import load_decoder, stored_plan
    from nvcodec.container import NvpReader

    clip = write_clip(str(tmp_path / "c.mp4"), synthetic_frames(6, 32, 48))
    nvp = str(tmp_path / "c.nvp")
    encode(clip, nvp, EncodeOptions(psnr=None, epochs=12, params=20000, kind="hinerv", device="cpu", seed=0,
                                    qat=0.5, prune=0.2, bit_alloc=True))

    def layout() -> tuple[dict, dict, float]:
        with NvpReader(nvp) as rd:
            dec, _ = load_decoder(rd)
            plan = stored_plan(rd, dec, keep_zeros=True)
        pruned = [m for m in plan.masks.values() if m.numel() >= 64]  # make_plan prunes tensors of 64+ values
        zeros = sum(float((~m).sum()) for m in pruned) / max(sum(m.numel() for m in pruned), 1)
        return plan.bits, plan.axes, zeros

    bits0, axes0, zeros0 = layout()
    assert len(set(bits0.values())) > 1 and zeros0 >= 0.19
    attach(nvp, "resnet50", weights="random-tiny", top_k=1, epochs=1)
    tune(nvp, "resnet50", epochs=2, inr_lr=1e-3)
    bits1, axes1, zeros1 = layout()
    assert bits1 == bits0 and axes1 == axes0
    assert zeros1 >= zeros0 - 1e-6


def test_bit_allocation_is_hinervs_preset_only_where_qat_runs() -> None:
    from nvcodec.codec.encode import EncodeOptions
    from nvcodec.errors import UsageError

    assert EncodeOptions(kind="hinerv").resolved().bit_alloc is True
    assert EncodeOptions(kind="hinerv", qat=0.0).resolved().bit_alloc is False  # no QAT: nothing to allocate
    assert EncodeOptions(kind="hinerv", bit_alloc=False).resolved().bit_alloc is False
    assert EncodeOptions(kind="hnerv").resolved().bit_alloc is False
    assert EncodeOptions(kind="hnerv", qat=0.3, bit_alloc=True).resolved().bit_alloc is True
    with pytest.raises(UsageError, match="--bit-alloc needs --qat"):
        EncodeOptions(kind="hinerv", qat=0.0, bit_alloc=True).validate()
