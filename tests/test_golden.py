"""Golden fixture: `fixtures/golden-v1.nvp` must stay readable with exactly this content.

Regenerate with `pytest tests/test_golden.py --regen-golden` (only when the format changes on purpose).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from nvcodec.container import (
    Codec, NvpReader, QuantParams, Section, SectionKind, append_nvp, float32_to_bf16_bits, pack_msgpack,
    pack_tensors, verify_nvp, write_nvp,
)

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "golden-v1.nvp"

VIDEO = {"width": 64, "height": 36, "frames": 4, "fps": 25.0, "fps_num": 25, "fps_den": 1, "source_codec": "h264",
         "pix_fmt": "yuv420p", "color_space": "bt709", "color_range": "tv", "color_primaries": "bt709",
         "color_trc": "bt709", "source_name": "clip.mp4", "source_frames": [0, 4]}
MODEL = {"kind": "hnerv", "width": 64, "height": 36, "pad_width": 64, "pad_height": 40, "num_frames": 4,
         "strides": [4, 2], "channels": [8, 4], "kernel_sizes": [3, 3], "embed_channels": 4, "embed_height": 5,
         "embed_width": 8, "head_kernel": 1, "activation": "gelu", "out_activation": "sigmoid", "pe_levels": 0,
         "pe_base": 1.25, "fc_dims": []}
PROVENANCE_1 = {"tool": "nvcodec", "tool_version": "0.1.0", "torch_version": "2.13.0",
                "created": "2025-01-01T00:00:00+00:00", "host": "golden", "device": "cpu", "dtype": "float32",
                "settings": {"kind": "hnerv", "epochs": 300, "seed": 0, "weight_bits": 8, "embed_bits": 8},
                "psnr": 31.25, "psnr_min": 30.5, "ssim": 0.875, "params": 996, "encode_seconds": 12.5,
                "segments": [{"index": 0, "start": 0, "stop": 4, "frames": 4, "prefix": "", "psnr": 31.25}]}
ROUTING = {"version": 1, "tasks": {"classification": {
    "inr_layer": 1, "injection_point": "layer2", "cka": 0.8125, "fidelity": 0.9375, "gflops": 0.5,
    "out_size": [28, 28], "in_channels": 4, "out_channels": 8, "adapter_params": 40, "backbone_params": 25557032,
    "adapter_params_pct": 0.00015625, "adapter_sections": ["adapter/classification"], "weights": "random",
    "weights_random": True, "sample_frames": [0, 2], "top_k": 3, "epochs": 40,
    "created": "2025-01-02T00:00:00+00:00"}}}
PROVENANCE_2 = {**PROVENANCE_1, "attached": [{"task": "classification", "tool_version": "0.1.0"}]}
ADAPTER_META = {"task": "classification", "inr_layer": 1, "injection_point": "layer2", "out_size": [28, 28],
                "segment": 0}


def _ramp(shape: tuple[int, ...], mul: int, add: int, mod: int) -> np.ndarray:
    n = int(np.prod(shape))
    return ((np.arange(n, dtype=np.int64) * mul + add) % mod).reshape(shape)


def _channel_quant(channels: int, base: float) -> QuantParams:
    scale = np.array([base * (i + 1) for i in range(channels)], dtype=np.float32)
    zero = np.array([128.0 - i for i in range(channels)], dtype=np.float32)
    return QuantParams(bits=8, axis=0, scale=scale, zero_point=zero)


def golden_tensors() -> dict[str, tuple[dict[str, np.ndarray], dict[str, QuantParams], dict, list[str]]]:
    """Tensors, quant params, meta and bf16 names of each tensor section (shapes are illustrative)."""
    return {
        "block/0": ({"conv.weight": _ramp((8, 4, 3, 3), 37, 11, 256).astype(np.uint8),
                     "conv.bias": (_ramp((8,), 3, 1, 17).astype(np.float32) - 8.0) / 16.0},
                    {"conv.weight": _channel_quant(8, 0.0078125)}, {"block": 0}, []),
        "block/1": ({"conv.weight": _ramp((4, 8, 3, 3), 53, 7, 256).astype(np.uint8),
                     "conv.bias": (_ramp((4,), 5, 2, 13).astype(np.float32) - 6.0) / 8.0},
                    {"conv.weight": _channel_quant(4, 0.00390625)}, {"block": 1}, []),
        "head": ({"conv.weight": ((_ramp((3, 4, 1, 1), 7, 3, 11) - 5) / 4).astype(np.float16),
                  "conv.bias": np.array([0.5, -0.25, 0.125], dtype=np.float32)}, {}, {"head": True}, []),
        "embeddings": ({"embeddings": (_ramp((4, 4, 5, 8), 29, 5, 256) - 128).astype(np.int8)},
                       {"embeddings": QuantParams(8, None, np.array([0.015625], np.float32),
                                                  np.array([-2.0], np.float32))},
                       {"embeddings": True}, []),
        "adapter/classification": (
            {"proj.weight": float32_to_bf16_bits((_ramp((8, 4, 1, 1), 11, 3, 16).astype(np.float32) - 8) / 32),
             "proj.bias": np.zeros(8, dtype=np.float32)},
            {}, ADAPTER_META, ["proj.weight"]),
    }


def _tensor_section(name: str, kind: SectionKind, codec: Codec = Codec.ZSTD) -> Section:
    tensors, quant, meta, bf16 = golden_tensors()[name]
    return Section(name, kind, pack_tensors(tensors, quant, meta, bf16=bf16), codec)


def build_golden(path: str | os.PathLike[str]) -> None:
    """Write the golden file: one encode generation, then one `attach` append generation."""
    write_nvp(path, [
        Section("video", SectionKind.VIDEO, pack_msgpack(VIDEO)),
        Section("model", SectionKind.MODEL, pack_msgpack(MODEL)),
        _tensor_section("block/0", SectionKind.INR_BLOCK),
        _tensor_section("block/1", SectionKind.INR_BLOCK),
        _tensor_section("head", SectionKind.INR_HEAD, Codec.RAW),
        _tensor_section("embeddings", SectionKind.EMBEDDINGS),
        Section("provenance", SectionKind.PROVENANCE, pack_msgpack(PROVENANCE_1), Codec.RAW),
    ])
    append_nvp(path, [
        Section("routing", SectionKind.ROUTING, pack_msgpack(ROUTING)),
        _tensor_section("adapter/classification", SectionKind.ADAPTER),
        Section("provenance", SectionKind.PROVENANCE, pack_msgpack(PROVENANCE_2), Codec.RAW),
    ])


# (name, kind, codec, raw_length, sha256 of the decoded payload), in index order
EXPECTED_SECTIONS = [
    ("video", 1, 1, 198, "94ee2f98a247b23fceefcc92e889a31aaf24c0b8516f93f38cd1294bf35ea978"),
    ("model", 2, 1, 235, "8ae708a6c5a1053c03b912a4e7b2c971a8cdce98882a56f6e260a6599a32d9bb"),
    ("block/0", 3, 1, 608, "e5137feca52a3fdc2af7d4955978174552eccc55cad2845503c5be6680d0cc2c"),
    ("block/1", 3, 1, 592, "309f6bbcdc9a677d84c00c26283789dff1bcdd0895bf843a44833d9002953791"),
    ("head", 9, 0, 268, "e6d70c3634d8022a9278577cb608b223c645a06b696de754e3b3b0b67a11cc8d"),
    ("embeddings", 4, 1, 832, "8f961abb553cc55a6d3cb47a53ef7271c6ca95d6323feda13e991dd4ff328cbf"),
    ("routing", 6, 1, 358, "1935a40bbcb459eed0fb87ed1c9c0499b4c2c99ccafc74247d48b6e035ca0402"),
    ("adapter/classification", 7, 1, 352, "86ba4cfe74629258079739a454fa9be32cf8b4c58483347406f42638a3fbd65b"),
    ("provenance", 8, 0, 378, "c5b950fca71933aad974f3f7fa7eabefce341995f32737d449a283008bff8988"),
]
EXPECTED_GEN1_NAMES = ["video", "model", "block/0", "block/1", "head", "embeddings", "provenance"]


@pytest.fixture(scope="module")
def golden(request) -> Path:
    if request.config.getoption("--regen-golden"):
        GOLDEN.parent.mkdir(exist_ok=True)
        build_golden(GOLDEN)
    assert GOLDEN.exists(), "fixtures/golden-v1.nvp missing: run pytest --regen-golden"
    return GOLDEN


def _section_table(reader: NvpReader) -> list[tuple[str, int, int, int, str]]:
    return [(s.name, s.kind, s.codec, s.raw_length, hashlib.sha256(reader.read(s.name)).hexdigest())
            for s in reader.sections]


def test_golden_header_and_sections(golden: Path) -> None:
    data = golden.read_bytes()
    assert data[:16] == bytes.fromhex("894e56500d0a1a0a0100000000000000")
    assert data[-8:] == b"\x89NVPEND\n"
    with NvpReader(golden) as r:
        assert (r.version, r.generation, r.tail_bytes, r.required_features) == ((1, 0), 2, 0, [])
        assert r.file_size == len(data)
        assert _section_table(r) == EXPECTED_SECTIONS
        assert all(s.offset % 64 == 0 for s in r.sections)


def test_golden_metadata(golden: Path) -> None:
    with NvpReader(golden) as r:
        assert r.read_msgpack("video") == VIDEO
        assert r.read_msgpack("model") == MODEL
        assert r.read_msgpack("routing") == ROUTING
        assert r.read_msgpack("provenance") == PROVENANCE_2


def test_golden_tensors(golden: Path) -> None:
    with NvpReader(golden) as r:
        for name, (tensors, quant, meta, bf16) in golden_tensors().items():
            bundle = r.read_tensors(name)
            assert list(bundle.tensors) == list(tensors)
            assert bundle.meta == meta
            for tname, expected in tensors.items():
                got = bundle.tensors[tname]
                assert got.dtype == expected.dtype and got.shape == expected.shape
                np.testing.assert_array_equal(got, expected)
                if tname in bf16:
                    assert bundle.dtypes[tname] == "bf16"
            assert set(bundle.quant) == set(quant)
            for tname, q in quant.items():
                got_q = bundle.quant[tname]
                assert (got_q.bits, got_q.axis) == (q.bits, q.axis)
                np.testing.assert_array_equal(got_q.scale, q.scale)
                np.testing.assert_array_equal(got_q.zero_point, q.zero_point)
        block0 = r.read_tensors("block/0")
        assert block0.dtypes == {"conv.weight": "u8", "conv.bias": "f32"}
        w = block0.dequantized("conv.weight")
        assert w.dtype == np.float32
        assert w[0, 0, 0, 0] == (11 - 128) * 0.0078125
        assert w[7, 3, 2, 2] == (134 - 121) * 0.0078125 * 8
        emb = r.read_tensors("embeddings")
        assert emb.dtypes == {"embeddings": "i8"}
        assert emb.dequantized("embeddings")[0, 0, 0, 0] == (5 - 128 + 2.0) * 0.015625
        adapter = r.read_tensors("adapter/classification")
        assert adapter.dtypes == {"proj.weight": "bf16", "proj.bias": "f32"}
        np.testing.assert_array_equal(adapter.dequantized("proj.weight").ravel()[:4],
                                      np.array([-5, 6, 1, -4], dtype=np.float32) / 32)
        head = r.read_tensors("head")
        assert head.dtypes["conv.weight"] == "f16"
        assert head.dequantized("conv.weight").dtype == np.float32


def test_golden_previous_generation(golden: Path, tmp_path: Path) -> None:
    with NvpReader(golden) as r:
        prev_end = r.index_state.prev_trailer_offset + 32
    old = tmp_path / "gen1.nvp"
    old.write_bytes(golden.read_bytes()[:prev_end])
    with NvpReader(old) as r:
        assert r.generation == 1 and r.tail_bytes == 0
        assert [s.name for s in r.sections] == EXPECTED_GEN1_NAMES
        assert r.read_msgpack("provenance") == PROVENANCE_1
    assert verify_nvp(old)["generation"] == 1


def test_golden_verifies(golden: Path) -> None:
    report = verify_nvp(golden)
    assert (report["generation"], report["generations_checked"], report["sections"]) == (2, 2, 9)
    assert report["bytes"] == golden.stat().st_size


def test_golden_build_is_deterministic(tmp_path: Path) -> None:
    build_golden(tmp_path / "a.nvp")
    build_golden(tmp_path / "b.nvp")
    assert (tmp_path / "a.nvp").read_bytes() == (tmp_path / "b.nvp").read_bytes()


def test_golden_matches_current_writer(golden: Path, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.nvp"
    build_golden(fresh)
    if fresh.read_bytes() == golden.read_bytes():
        return
    with NvpReader(fresh) as a, NvpReader(golden) as b:
        assert _section_table(a) == _section_table(b), "writer output no longer matches the golden content"
        zstd_differs = any(a.read_stored(s.name) != b.read_stored(s.name)
                           for s in a.sections if s.codec == Codec.ZSTD)
        raw_differs = any(a.read_stored(s.name) != b.read_stored(s.name)
                          for s in a.sections if s.codec == Codec.RAW)
    assert not raw_differs, "RAW sections differ from the golden file"
    if zstd_differs:
        pytest.skip("this zstd library compresses differently from the one that wrote the fixture")
    pytest.fail("file layout differs from the golden file although every section's bytes match")
