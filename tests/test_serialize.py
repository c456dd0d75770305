"""INR model <-> .nvp sections: round trip, partial loading, validation."""

from __future__ import annotations

import pytest
import torch

from nvcodec.codec.serialize import inr_sections, load_decoder
from nvcodec.container import Codec, NvpReader, Section, SectionKind, pack_msgpack, write_nvp
from nvcodec.errors import FormatError, UsageError
from nvcodec.inr import INRDecoder, dequantize_into, plan_config, quantize_inr



class RecordingReader:
    """Wraps an NvpReader and records the names of sections read."""

    def __init__(self, reader: NvpReader) -> None:
        self.reader = reader
        self.read_names: list[str] = []

    def __contains__(self, name: str) -> bool:
        return name in self.reader

    def __getattr__(self, attr: str):
        fn = getattr(self.reader, attr)
        if attr in ("read", "read_msgpack", "read_tensors", "read_stored"):
            def wrapped(name: str, *a, **kw):
                self.read_names.append(name)
                return fn(name, *a, **kw)
            return wrapped
        return fn


def _model(kind: str, n: int = 4):
    torch.manual_seed(1)
    c = plan_config(45, 27, n, kind=kind, params=2e4)
    dec = INRDecoder(c).eval()
    shape = c.embedding_shape()
    emb = torch.randn(*shape) if shape is not None else None
    return c, dec, emb, quantize_inr(dec, emb)


@pytest.mark.parametrize("kind,prefix", [("hnerv", ""), ("nerv", ""), ("hnerv", "seg1/"), ("hinerv", "")])
def test_roundtrip_identical_outputs(tmp_path, kind: str, prefix: str) -> None:
    c, _, _, qinr = _model(kind)
    sections = inr_sections(c, qinr, prefix)
    kinds = {s.name: s.kind for s in sections}
    expected = {f"{prefix}model": SectionKind.MODEL, f"{prefix}head": SectionKind.INR_HEAD}
    expected.update({f"{prefix}block/{k}": SectionKind.INR_BLOCK for k in range(c.num_blocks)})
    if kind != "nerv":
        expected[f"{prefix}embeddings"] = SectionKind.EMBEDDINGS
    assert kinds == expected
    path = tmp_path / "m.nvp"
    write_nvp(path, sections)
    ref = INRDecoder(c).eval()
    ref_emb = dequantize_into(ref, qinr)
    with NvpReader(path) as reader:
        assert all(reader.info(s.name).codec in (Codec.ZSTD, Codec.ZSTD_DICT) for s in sections)
        assert reader.info(f"{prefix}model").codec == Codec.ZSTD_DICT
        dec, emb = load_decoder(reader, prefix)
    assert dec.config == c and not dec.training
    idx = torch.arange(c.num_frames)
    if kind != "nerv":
        assert torch.equal(emb, ref_emb)
    else:
        assert emb is None
    with torch.no_grad():
        assert torch.equal(dec(dec.input_for(idx, emb)), ref(ref.input_for(idx, ref_emb)))


@pytest.mark.parametrize("upto", [0, 1])
def test_partial_load_reads_only_needed_sections(tmp_path, upto: int) -> None:
    c, _, _, qinr = _model("hnerv")
    path = tmp_path / "m.nvp"
    write_nvp(path, inr_sections(c, qinr))
    ref = INRDecoder(c).eval()
    ref_emb = dequantize_into(ref, qinr)
    with NvpReader(path) as raw:
        reader = RecordingReader(raw)
        dec, emb = load_decoder(reader, upto_block=upto)
    reads = {n for n in reader.read_names if n != "model"}
    assert reads == {"embeddings"} | {f"block/{k}" for k in range(upto + 1)}
    x = dec.input_for(torch.arange(2), emb)
    with torch.no_grad():
        assert torch.equal(dec.features(x, upto), ref.features(ref.input_for(torch.arange(2), ref_emb), upto))
        with pytest.raises(UsageError):
            dec(x)
        with pytest.raises(UsageError):
            dec.features(x, upto + 1)
    with NvpReader(path) as raw, pytest.raises(UsageError):
        load_decoder(raw, upto_block=c.num_blocks)


def test_shape_mismatch_names_section(tmp_path) -> None:
    c, _, _, qinr = _model("hnerv")
    other = plan_config(45, 27, 4, params=3e4)
    sections = [s for s in inr_sections(c, qinr) if s.name != "model"]
    sections.append(Section("model", SectionKind.MODEL, pack_msgpack(other.to_dict())))
    path = tmp_path / "bad.nvp"
    write_nvp(path, sections)
    with NvpReader(path) as reader, pytest.raises(FormatError) as info:
        load_decoder(reader)
    assert info.value.section == "block/0"


def test_embedding_count_mismatch_and_bad_config(tmp_path) -> None:
    c, _, _, qinr = _model("hnerv", n=4)
    wrong = plan_config(45, 27, 5, params=2e4)
    assert wrong.channels == c.channels
    sections = [s for s in inr_sections(c, qinr) if s.name != "model"]
    path = tmp_path / "emb.nvp"
    write_nvp(path, sections + [Section("model", SectionKind.MODEL, pack_msgpack(wrong.to_dict()))])
    with NvpReader(path) as reader, pytest.raises(FormatError) as info:
        load_decoder(reader)
    assert info.value.section == "embeddings"
    bad = c.to_dict()
    bad["strides"] = [0, 2]
    path2 = tmp_path / "cfg.nvp"
    write_nvp(path2, sections + [Section("model", SectionKind.MODEL, pack_msgpack(bad))])
    with NvpReader(path2) as reader, pytest.raises(FormatError) as info:
        load_decoder(reader)
    assert info.value.section == "model"


def test_sections_reject_mismatched_quantized_model() -> None:
    c, _, _, qinr = _model("hnerv")
    nerv = plan_config(45, 27, 4, kind="nerv", params=2e4)
    with pytest.raises(UsageError):
        inr_sections(nerv, qinr)


def test_entropy_coded_and_raw_files_decode_identically(tmp_path) -> None:
    """rANS coding is lossless: a coded file and a raw (format 1.0) file load the same decoder."""
    from nvcodec.container.layout import DICT_FEATURE, RANS_FEATURE

    c, dec, emb, qinr = _model("hnerv")
    with torch.no_grad():
        for p in dec.parameters():  # peaked weights, as after training: most values near zero
            p.mul_(torch.rand_like(p) ** 4)
    qinr = quantize_inr(dec, emb, weight_bits=6, embed_bits=5)
    outs, sizes = {}, {}
    for entropy in ("rans", "none"):
        path = tmp_path / f"{entropy}.nvp"
        sections = inr_sections(c, qinr, entropy=entropy)
        write_nvp(path, sections)
        sizes[entropy] = sum(len(s.payload) for s in sections)
        with NvpReader(path) as reader:
            assert reader.required_features == ([RANS_FEATURE, DICT_FEATURE] if entropy == "rans" else [])
            d, e = load_decoder(reader)
        with torch.no_grad():
            outs[entropy] = d(d.input_for(torch.arange(c.num_frames), e))
    assert torch.equal(outs["rans"], outs["none"])
    assert sizes["rans"] < 0.9 * sizes["none"]
    with pytest.raises(UsageError, match="entropy"):
        inr_sections(c, qinr, entropy="zstd")
