"""The fitting-speed changes compute what they replaced: HiNeRV's block path without the time
channel, the fused Adam step, and frames per step through `encode`."""

import pytest
import torch

from conftest import synthetic_frames, write_clip
from nvcodec.container import NvpReader
from nvcodec.codec.encode import KIND_FRAMES_PER_STEP, MAX_FRAMES_PER_STEP, EncodeOptions, encode
from nvcodec.errors import UsageError
from nvcodec.inr import INRDecoder, plan_config
from nvcodec.inr.fit import fit, make_optimizer
from test_cli import assert_clean_error, nv


def _hinerv(mf: torch.memory_format = torch.contiguous_format) -> tuple[INRDecoder, torch.Tensor]:
    torch.manual_seed(0)
    c = plan_config(64, 40, 6, kind="hinerv", params=2e4)
    dec = INRDecoder(c).to(memory_format=mf)
    with torch.no_grad():
        for b in dec.blocks:
            b.grid.normal_(std=0.2)
    return dec, torch.randn(*c.embedding_shape())


@pytest.mark.parametrize("mf", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("training", [False, True])
def test_hinerv_forward_equals_features_then_head(mf, training: bool) -> None:
    dec, emb = _hinerv(mf)
    dec.train(training)
    x = dec.input_for(torch.tensor([0, 3, 5]), emb)
    with torch.no_grad():
        by_blocks = dec.head_forward(dec.features(x, dec.num_blocks - 1))
        assert torch.equal(dec(x), by_blocks)
    if training:
        out = dec(x)
        out.square().sum().backward()
        grads = [p.grad.clone() for p in dec.parameters()]
        dec.zero_grad(set_to_none=True)
        dec.head_forward(dec.features(x, dec.num_blocks - 1)).square().sum().backward()
        for g, p in zip(grads, dec.parameters()):
            assert torch.allclose(g, p.grad, rtol=1e-4, atol=1e-5)


def test_hinerv_forward_still_needs_the_head() -> None:
    dec, emb = _hinerv()
    dec.has_head = False
    with pytest.raises(UsageError, match="head"):
        dec(dec.input_for(torch.tensor([0]), emb))


def test_fused_adam_steps_like_plain_adam() -> None:
    torch.manual_seed(0)
    a = [torch.randn(5, 3, requires_grad=True), torch.randn(7, requires_grad=True)]
    b = [p.detach().clone().requires_grad_() for p in a]
    opt_a = make_optimizer(a, 1e-2)
    opt_b = torch.optim.Adam(b, lr=1e-2, betas=(0.9, 0.999))
    for i in range(5):
        for ps, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            sum((p * (i + 1)).sin().sum() for p in ps).backward()
            opt.step()
    for p, q in zip(a, b):
        assert torch.allclose(p, q, atol=1e-6)
    assert opt_a.defaults.get("fused") is True  # torch >= 2.4 fuses Adam on the CPU


def test_fit_with_several_frames_per_step_trains_every_frame() -> None:
    torch.manual_seed(0)
    frames = torch.from_numpy(synthetic_frames(8, 32, 48))
    c = plan_config(48, 32, 8, kind="hinerv", params=2e4)
    r = fit(frames, c, epochs=3, batch_size=4, psnr_target=None, eval_every=None)
    assert r.epochs == 3 and len(r.history) == 3
    assert r.history[-1]["loss"] < r.history[0]["loss"]


def test_frames_per_step_option_is_validated_and_recorded(tmp_path, monkeypatch) -> None:
    assert EncodeOptions().resolved().frames_per_step == KIND_FRAMES_PER_STEP["hnerv"]
    for bad in (0, MAX_FRAMES_PER_STEP + 1):
        with pytest.raises(UsageError, match="frames-per-step"):
            EncodeOptions(frames_per_step=bad).validate()
    seen = {}
    import nvcodec.codec.encode as enc

    real_fit = enc.fit

    def spy(frames, config, **kw):
        seen["batch_size"] = kw["batch_size"]
        return real_fit(frames, config, **kw)

    monkeypatch.setattr(enc, "fit", spy)
    monkeypatch.setenv("NVCODEC_MIN_FIT_GAIN_DB", "0")
    clip = write_clip(tmp_path / "c.mp4", synthetic_frames(6, 32, 48))
    out = tmp_path / "c.nvp"
    encode(str(clip), str(out), EncodeOptions(params=2e4, epochs=2, psnr=None, frames_per_step=3))
    assert seen["batch_size"] == 3
    with NvpReader(str(out)) as r:
        assert r.read_msgpack("provenance")["settings"]["frames_per_step"] == 3


def test_cli_rejects_a_bad_frames_per_step(tmp_path) -> None:
    clip = write_clip(tmp_path / "c.mp4", synthetic_frames(4, 32, 48))
    rc, _, err = nv("encode", str(clip), str(tmp_path / "o.nvp"), "--frames-per-step", "0", "--epochs", "1")
    assert_clean_error(rc, err, 2)
    assert "frames-per-step" in err
    assert not (tmp_path / "o.nvp").exists()


def test_rd_points_say_which_code_encoded_them() -> None:
    import importlib.util
    import os

    from conftest import ROOT
    from nvcodec.bench.rdreport import _code, _points_table

    spec = importlib.util.spec_from_file_location("rd_code", os.path.join(ROOT, "benchmarks", "rd.py"))
    rd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rd)
    assert rd.code_version()
    assert _code({}) == "not recorded"
    assert _code({"code": "abc123", "omp_wait_policy": "PASSIVE"}) == "abc123, OMP passive"
    point = {"kind": "hinerv", "mode": "epochs=2", "target_bpp": 0.1, "bpp": 0.1, "psnr": 30.0, "ms_ssim": 0.9,
             "epochs": 2, "code": "abc123", "omp_wait_policy": "default"}
    header, rule, row = _points_table({"nvcodec": {"k": point}}, {})
    assert header.count("|") == rule.count("|") == row.count("|")
    assert row.rstrip().endswith("| abc123 |")
