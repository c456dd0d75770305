"""`hinerv`'s fine base-grid level and mid grid: plan, config rules, blocks 0 and 1's inputs, the file features
that mark them."""

from pathlib import Path

import pytest
import torch

from nvcodec.codec.meta import decode_values, model_config
from nvcodec.codec.serialize import inr_sections, load_decoder
from nvcodec.container import NvpReader, Section, write_nvp
from nvcodec.container.layout import DICT_FEATURE, FINE_GRID_FEATURE, MID_GRID_FEATURE, RANS_FEATURE
from nvcodec.errors import FormatError, UsageError
from nvcodec.inr import INRConfig, INRDecoder, plan_config
from nvcodec.inr.model import sample_grid
from nvcodec.inr.plan import (FINE_GRID_CHANNELS, FINE_GRID_STEP, MID_GRID_CHANNELS, MID_GRID_STEP,
                               fine_grid_frames, mid_grid_frames)
from nvcodec.inr.quant import quantize_inr
from nvcodec.inr.temporal import FINE_GRID_PSNR, cell_means, coarse_interpolation_psnr, wants_fine_grid


def test_plan_adds_a_fine_level_only_where_it_is_finer_than_the_base_grid() -> None:
    assert plan_config(160, 90, 96, kind="hinerv", bpp=0.05).fine_grid_shape() is None
    c = plan_config(160, 90, 96, kind="hinerv", bpp=0.05, weight_bits=6, embed_bits=5, fine_grid=True)
    assert c.grid_frames == 4 and c.fine_grid_frames == 96 // FINE_GRID_STEP
    assert c.fine_grid_channels == FINE_GRID_CHANNELS
    assert c.fine_grid_shape() == (c.fine_grid_frames, FINE_GRID_CHANNELS, c.embed_height, c.embed_width)
    assert c.block_in_channels(0) == c.embed_channels + FINE_GRID_CHANNELS
    assert sum(p.numel() for p in INRDecoder(c).parameters()) == c.decoder_params()
    assert INRConfig.from_dict(c.to_dict()) == c
    short = plan_config(48, 32, 4, kind="hinerv", params=5e3, fine_grid=True)
    assert fine_grid_frames(4) == 0 and short.fine_grid_shape() is None
    assert "fine_grid_frames" not in short.to_dict()
    assert plan_config(48, 32, 96, kind="hnerv", params=5e3, fine_grid=True).fine_grid_shape() is None


def test_config_without_fine_keys_reads_as_before() -> None:
    """A `hinerv` model written before the fine level (no keys) reads with none."""
    d = plan_config(160, 90, 96, kind="hinerv", bpp=0.05, fine_grid=True).to_dict()
    del d["fine_grid_frames"], d["fine_grid_channels"]
    c = INRConfig.from_dict(d)
    assert c.fine_grid_shape() is None and c.block_in_channels(0) == c.embed_channels


@pytest.mark.parametrize("level", ["fine", "mid"])
@pytest.mark.parametrize("frames,channels", [(97, 4), (48, 33), (0, 4), (48, 0), (-1, 4), (True, 4)])
def test_config_rejects_bad_fine_and_mid_grids(level, frames, channels) -> None:
    d = plan_config(160, 90, 96, kind="hinerv", bpp=0.05, fine_grid=True).to_dict()
    d[f"{level}_grid_frames"], d[f"{level}_grid_channels"] = frames, channels
    with pytest.raises(FormatError):
        INRConfig.from_dict(d)


def test_other_kinds_refuse_a_fine_grid() -> None:
    d = plan_config(160, 90, 96, kind="hnerv", bpp=0.05).to_dict()
    d["fine_grid_frames"], d["fine_grid_channels"] = 48, 4
    with pytest.raises(FormatError, match="HiNeRV only"):
        INRConfig.from_dict(d)


def _block_by_hand(block, feat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A HiNeRV block with a fine grid written out from spec section 9: the grid's sample at t appended to the
    input features, conv + PixelShuffle plus the bilinearly upsampled projection plus the tiled local grid."""
    feat = torch.cat([feat, sample_grid(block.fine_grid, t)], dim=1)
    s = block.stride
    y = block.shuffle(block.conv(feat)) + torch.nn.functional.interpolate(block.proj(feat), scale_factor=s,
                                                                           mode="bilinear", align_corners=False)
    y = y + sample_grid(block.grid, t).repeat(1, 1, y.shape[-2] // s, y.shape[-1] // s)
    return block.act(y)


def test_block_0_reads_the_fine_grid_sampled_at_the_frame_time() -> None:
    """Block 0's features are the base grid's sample followed by the fine grid's (spec section 9)."""
    torch.manual_seed(0)
    c = plan_config(64, 40, 20, kind="hinerv", params=2e4, fine_grid=True)
    assert c.fine_grid_frames == fine_grid_frames(20) > c.grid_frames
    dec = INRDecoder(c).eval()
    with torch.no_grad():
        dec.blocks[0].fine_grid.normal_()
    emb = torch.randn(*c.embedding_shape())
    idx = torch.tensor([0, 3, 19])
    x = dec.input_for(idx, emb)
    t = x[:, -1, 0, 0]
    with torch.no_grad():
        assert torch.allclose(dec.features(x, 0)[:, :-1], _block_by_hand(dec.blocks[0], x[:, :-1], t), atol=1e-6)
        dec.train()
        assert torch.allclose(dec(x), dec.eval()(x), atol=1e-6)
    assert decode_values(c) >= c.block_in_channels(0) * c.embed_height * c.embed_width


def _model(tmp_path: Path) -> tuple[INRConfig, list[Section]]:
    torch.manual_seed(1)
    c = plan_config(64, 48, 16, kind="hinerv", params=4000, fine_grid=True)
    assert c.fine_grid_shape() is not None
    dec = INRDecoder(c)
    with torch.no_grad():
        dec.blocks[0].fine_grid.normal_()
        if c.mid_grid_shape() is not None:
            dec.blocks[1].fine_grid.normal_()
    q = quantize_inr(dec, torch.randn(*c.embedding_shape()), weight_bits=6, embed_bits=5)
    return c, inr_sections(c, q)


def test_file_lists_the_feature_and_decodes_the_fine_grid(tmp_path: Path) -> None:
    c, sections = _model(tmp_path)
    path = tmp_path / "m.nvp"
    write_nvp(path, sections)
    with NvpReader(path) as r:
        assert FINE_GRID_FEATURE in r.required_features
        dec, _ = load_decoder(r)
        assert tuple(dec.blocks[0].fine_grid.shape) == c.fine_grid_shape()
        assert dec.blocks[0].fine_grid.abs().sum() > 0
        part, _ = load_decoder(r, upto_block=0)
        assert torch.equal(part.blocks[0].fine_grid, dec.blocks[0].fine_grid)


def test_a_fine_grid_without_the_feature_is_refused_naming_the_model(tmp_path: Path) -> None:
    _, sections = _model(tmp_path)
    bare = [Section(s.name, s.kind, s.payload, s.codec) for s in sections]
    path = tmp_path / "bare.nvp"
    write_nvp(path, bare, required_features=[RANS_FEATURE, DICT_FEATURE])
    with NvpReader(path) as r:
        assert FINE_GRID_FEATURE not in r.required_features
        with pytest.raises(FormatError, match=FINE_GRID_FEATURE) as e:
            model_config(r)
        assert e.value.section == "model"


def _crossing(n: int, h: int = 48, w: int = 64) -> torch.Tensor:
    """A static textured scene that a bright block enters at frame n // 3 and crosses by the end."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    scene = ((xx * 3 + yy * 5) % 64 + 60).to(torch.uint8)
    frames = scene[None, :, :, None].expand(n, h, w, 3).clone()
    for i in range(n // 3, n):
        x0 = (i - n // 3) * (w - 12) // max(n - n // 3 - 1, 1)
        frames[i, 16:32, x0:x0 + 12] = 250
    return frames


def test_cell_means_average_the_pixels_of_each_cell_inside_the_frame() -> None:
    f = torch.zeros(1, 3, 5, 3, dtype=torch.uint8)
    f[0, 2, :] = 255
    f[0, 0, 0] = 255
    m = cell_means(f, 2)
    assert m.shape == (1, 3, 2, 3)
    assert torch.allclose(m[0, 0], torch.tensor([[0.25, 0.0, 0.0], [1.0, 1.0, 1.0]]))
    with pytest.raises(UsageError):
        cell_means(f.float(), 2)


def test_coarse_interpolation_sees_an_object_crossing_a_static_scene() -> None:
    static = _crossing(48)[:1].expand(48, -1, -1, -1).contiguous()
    assert coarse_interpolation_psnr(static, 16, 2) == 100.0
    ramp = (torch.arange(48, dtype=torch.float32)[:, None, None, None] * 4 + 20).expand(48, 48, 64, 3)
    assert coarse_interpolation_psnr(ramp.to(torch.uint8).contiguous(), 16, 2) > 60
    crossing = _crossing(48)
    assert coarse_interpolation_psnr(crossing, 16, 2) < FINE_GRID_PSNR
    assert coarse_interpolation_psnr(crossing, 16, 48) == 100.0
    assert wants_fine_grid(crossing) and not wants_fine_grid(static)
    assert fine_grid_frames(4) == 0 and not wants_fine_grid(crossing[:4])


def test_encode_plans_the_fine_grid_by_the_clip_and_by_the_option(tmp_path: Path) -> None:
    import json

    from conftest import write_clip
    from test_cli import assert_clean_error, nv

    clip = write_clip(str(tmp_path / "x.mp4"), _crossing(12, 32, 48).numpy())
    grids = {}
    for mode in ("auto", "off", "on"):
        out = str(tmp_path / f"{mode}.nvp")
        rc, _, se = nv("encode", clip, out, "--params", "6k", "--epochs", "2", "--psnr", "99", "--fine-grid", mode,
                       "--device", "cpu", "--json")
        assert rc == 0, se
        rc, so, se = nv("info", out, "--json")
        assert rc == 0, se
        info = json.loads(so)
        grids[mode] = info["model"].get("fine_grid")
        with NvpReader(out) as r:
            assert (FINE_GRID_FEATURE in r.required_features) == (grids[mode] is not None)
    fine = [fine_grid_frames(12), FINE_GRID_CHANNELS]
    assert grids == {"auto": fine, "off": None, "on": fine}
    rc, _, se = nv("encode", clip, str(tmp_path / "bad.nvp"), "--fine-grid", "maybe")
    assert_clean_error(rc, se, 2)


def test_plan_adds_a_mid_grid_at_block_1s_input_size() -> None:
    c = plan_config(160, 90, 96, kind="hinerv", bpp=0.05, weight_bits=6, embed_bits=5, fine_grid=True)
    assert c.mid_grid_frames == 96 // MID_GRID_STEP == mid_grid_frames(96) and c.mid_grid_channels == MID_GRID_CHANNELS
    s0 = c.strides[0]
    assert c.mid_grid_shape() == (c.mid_grid_frames, MID_GRID_CHANNELS, c.embed_height * s0, c.embed_width * s0)
    assert c.block_in_channels(1) == c.channels[0] + MID_GRID_CHANNELS and c.block_in_channels(2) == c.channels[1]
    dec = INRDecoder(c)
    assert sum(p.numel() for p in dec.parameters()) == c.decoder_params()
    assert tuple(dec.blocks[1].fine_grid.shape) == c.mid_grid_shape()
    assert INRConfig.from_dict(c.to_dict()) == c
    plain = plan_config(160, 90, 96, kind="hinerv", bpp=0.05)
    assert plain.mid_grid_shape() is None and "mid_grid_frames" not in plain.to_dict()
    assert mid_grid_frames(4) == 0 and mid_grid_frames(8) == 0  # no finer than the base grid
    d = c.to_dict()
    del d["mid_grid_frames"], d["mid_grid_channels"]
    old = INRConfig.from_dict(d)  # a file written with the fine level only
    assert old.mid_grid_shape() is None and old.block_in_channels(1) == old.channels[0]


def test_a_mid_grid_needs_hinerv_and_two_blocks() -> None:
    d = plan_config(160, 90, 96, kind="hnerv", bpp=0.05).to_dict()
    d["mid_grid_frames"], d["mid_grid_channels"] = 24, 2
    with pytest.raises(FormatError, match="HiNeRV only"):
        INRConfig.from_dict(d)
    one = INRConfig(kind="hinerv", width=8, height=8, pad_width=8, pad_height=8, num_frames=8, strides=[2],
                    channels=[4], kernel_sizes=[1], embed_channels=4, embed_height=4, embed_width=4, grid_frames=2,
                    block_grid_frames=[2], mid_grid_frames=4, mid_grid_channels=2)
    with pytest.raises(UsageError, match="two blocks"):
        one.validate()


def test_block_1_reads_the_mid_grid_sampled_at_the_frame_time() -> None:
    """Block 1's features are block 0's output followed by the mid grid's sample (spec section 9)."""
    torch.manual_seed(0)
    c = plan_config(64, 40, 20, kind="hinerv", params=2e4, fine_grid=True)
    assert c.mid_grid_frames == mid_grid_frames(20) > c.grid_frames
    dec = INRDecoder(c).eval()
    with torch.no_grad():
        for block in dec.blocks[:2]:
            block.fine_grid.normal_()
    x = dec.input_for(torch.tensor([0, 7, 19]), torch.randn(*c.embedding_shape()))
    t = x[:, -1, 0, 0]
    with torch.no_grad():
        by_hand = _block_by_hand(dec.blocks[1], dec.features(x, 0)[:, :-1], t)
        assert torch.allclose(dec.features(x, 1)[:, :-1], by_hand, atol=1e-6)
        dec.train()
        assert torch.allclose(dec(x), dec.eval()(x), atol=1e-6)
    h1, w1 = c.mid_grid_shape()[2:]
    assert decode_values(c) >= c.block_in_channels(1) * h1 * w1


def test_file_lists_the_mid_grid_feature_and_refuses_it_without(tmp_path: Path) -> None:
    c, sections = _model(tmp_path)
    assert c.mid_grid_shape() is not None
    path = tmp_path / "m.nvp"
    write_nvp(path, sections)
    with NvpReader(path) as r:
        assert MID_GRID_FEATURE in r.required_features
        dec, _ = load_decoder(r)
        assert tuple(dec.blocks[1].fine_grid.shape) == c.mid_grid_shape()
        part, _ = load_decoder(r, upto_block=1)
        assert torch.equal(part.blocks[1].fine_grid, dec.blocks[1].fine_grid)
    bare = [Section(s.name, s.kind, s.payload, s.codec) for s in sections]
    path = tmp_path / "bare.nvp"
    write_nvp(path, bare, required_features=[RANS_FEATURE, DICT_FEATURE, FINE_GRID_FEATURE])
    with NvpReader(path) as r:
        with pytest.raises(FormatError, match=MID_GRID_FEATURE) as e:
            model_config(r)
        assert e.value.section == "model"
