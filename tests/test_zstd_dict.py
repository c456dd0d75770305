"""Codec ZSTD_DICT: zstd with the built-in dictionary 1 (spec section 4.1, feature `zstd-dict-1`)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import msgpack
import pytest

from nvcodec.container import Codec, NvpReader, Section, SectionKind, append_nvp, compact_nvp, write_nvp
from nvcodec.container.compression import decode_payload, dictionary_bytes, encode_payload
from nvcodec.container.layout import DICT_FEATURE, DICT_SHA256, RANS_FEATURE
from nvcodec.container.verify import verify_nvp
from nvcodec.errors import FormatError

ROOT = Path(__file__).resolve().parents[1]
PROVENANCE = {"tool": "nvcodec", "tool_version": "0.1.0", "torch_version": "2.13.0+cpu",
              "settings": {"kind": "hinerv", "weight_bits": 6, "embed_bits": 5, "qat": 0.3, "entropy": "rans"},
              "psnr": 31.5, "params": 12345}


def _meta() -> bytes:
    return msgpack.packb(PROVENANCE)


def test_dictionary_matches_the_spec() -> None:
    data = dictionary_bytes()
    spec = (ROOT / "spec" / "nvp-format.md").read_text()
    assert hashlib.sha256(data).hexdigest() == DICT_SHA256
    assert f"`{DICT_SHA256}`" in spec
    assert f"{len(data):,} bytes, SHA-256" in spec


def test_metadata_compresses_smaller_and_round_trips(tmp_path: Path) -> None:
    payload = _meta()
    assert len(encode_payload(payload, Codec.ZSTD_DICT)) < len(encode_payload(payload, Codec.ZSTD))
    plain, dicted = tmp_path / "plain.nvp", tmp_path / "dict.nvp"
    write_nvp(plain, [Section("provenance", SectionKind.PROVENANCE, payload, Codec.ZSTD)])
    write_nvp(dicted, [Section("provenance", SectionKind.PROVENANCE, payload, Codec.ZSTD_DICT)])
    assert os.path.getsize(dicted) < os.path.getsize(plain)
    with NvpReader(dicted) as r:
        assert r.info("provenance").codec == Codec.ZSTD_DICT
        assert r.required_features == [DICT_FEATURE]
        assert r.read("provenance") == payload
        assert b"".join(r.iter_read("provenance", chunk=7)) == payload
    with NvpReader(plain) as r:
        assert r.required_features == []
    verify_nvp(dicted)


def test_dictionary_used_only_where_smaller(tmp_path: Path) -> None:
    noise = os.urandom(3000)
    path = tmp_path / "n.nvp"
    write_nvp(path, [Section("noise", 900, noise, Codec.ZSTD_DICT)])
    with NvpReader(path) as r:
        assert r.info("noise").codec in (Codec.ZSTD, Codec.RAW)
        assert DICT_FEATURE not in r.required_features
        assert r.read("noise") == noise


def test_append_and_compact_keep_the_feature(tmp_path: Path) -> None:
    path = tmp_path / "a.nvp"
    write_nvp(path, [Section("raw", 900, b"abc", Codec.RAW)])
    append_nvp(path, [Section("provenance", SectionKind.PROVENANCE, _meta(), Codec.ZSTD_DICT)])
    with NvpReader(path) as r:
        assert r.generation == 2 and r.required_features == [DICT_FEATURE]
        assert r.read("provenance") == _meta()
    compact_nvp(path)
    with NvpReader(path) as r:
        assert r.generation == 1 and r.required_features == [DICT_FEATURE]
        assert r.info("provenance").codec == Codec.ZSTD_DICT and r.read("provenance") == _meta()
    verify_nvp(path)


def test_frame_without_the_dictionary_is_a_format_error() -> None:
    stored = encode_payload(_meta(), Codec.ZSTD_DICT)
    with pytest.raises(FormatError) as exc:
        decode_payload(stored, Codec.ZSTD, len(_meta()), "provenance", 64)
    assert exc.value.section == "provenance"
    assert decode_payload(stored, Codec.ZSTD_DICT, len(_meta()), "provenance", 64) == _meta()


def test_damaged_dictionary_section_names_it(tmp_path: Path) -> None:
    path = tmp_path / "d.nvp"
    write_nvp(path, [Section("provenance", SectionKind.PROVENANCE, _meta(), Codec.ZSTD_DICT)])
    with NvpReader(path) as r:
        info = r.info("provenance")
    data = bytearray(path.read_bytes())
    data[info.offset + info.stored_length // 2] ^= 0x5A
    path.write_bytes(bytes(data))
    with NvpReader(path) as r, pytest.raises(FormatError) as exc:
        r.read("provenance")
    assert exc.value.section == "provenance"


def test_bomb_bound_applies_to_dictionary_frames() -> None:
    stored = encode_payload(bytes(200_000), Codec.ZSTD_DICT)
    with pytest.raises(FormatError, match="decompression bomb"):
        decode_payload(stored, Codec.ZSTD_DICT, 1024 * len(stored) + 4097, "x", 64)


def test_encoded_model_uses_the_dictionary(tmp_path: Path) -> None:
    """`inr_sections` with entropy "rans" stores its sections with the dictionary where that is smaller;
    with "none" it stays a format 1.0 file (no features, plain zstd); both decode to the same model."""
    import torch

    from nvcodec.codec.serialize import inr_sections, load_decoder
    from nvcodec.inr.model import INRDecoder
    from nvcodec.inr.plan import plan_config
    from nvcodec.inr.quant import quantize_inr

    torch.manual_seed(0)
    config = plan_config(64, 48, 8, params=3000, kind="hinerv")
    q = quantize_inr(INRDecoder(config), torch.randn(*config.embedding_shape()), weight_bits=6, embed_bits=5)
    sizes, decoded = {}, {}
    for entropy in ("rans", "none"):
        path = tmp_path / f"{entropy}.nvp"
        write_nvp(path, inr_sections(config, q, entropy=entropy))
        sizes[entropy] = os.path.getsize(path)
        with NvpReader(path) as r:
            codecs = {s.name: s.codec for s in r.sections}
            if entropy == "rans":
                assert codecs["model"] == Codec.ZSTD_DICT
                assert set(r.required_features) == {DICT_FEATURE, RANS_FEATURE}
            else:
                assert set(codecs.values()) <= {Codec.ZSTD, Codec.RAW} and r.required_features == []
            dec, emb = load_decoder(r)
            decoded[entropy] = [*dec.state_dict().values(), emb]
    assert sizes["rans"] < sizes["none"]
    assert all(torch.equal(a, b) for a, b in zip(decoded["rans"], decoded["none"]))
