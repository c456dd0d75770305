"""rANS-coded tensors (spec section 11.1): exact round trips, the spec's model and decoder, hostile input."""

from __future__ import annotations

import hashlib
import math

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nvcodec.container import NvpReader, QuantParams, Section, SectionKind, unpack_tensors, verify_nvp, write_nvp
from nvcodec.container.entropy import GAUSSIAN, LAPLACE, PRECISION, Coding, decode_tensor, encode_tensor, weights
from nvcodec.container.layout import RANS_FEATURE, TENSOR_ALIGNMENT, TENSOR_PREFIX, align_up
from nvcodec.container.tensors import coded_tensor_names, pack_tensors
from nvcodec.errors import FormatError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _peaked(rng: np.random.Generator, shape: tuple[int, ...], bits: int, spread: float) -> np.ndarray:
    n = 1 << bits
    q = np.clip(np.rint(rng.laplace(n / 2, spread, size=shape)), 0, n - 1)
    return q.astype(np.uint8 if bits <= 8 else np.uint16)


def _quant(bits: int, shape: tuple[int, ...], axis: int | None = None) -> QuantParams:
    c = 1 if axis is None else shape[axis]
    return QuantParams(bits, axis, np.full(c, 0.01), np.full(c, (1 << bits) / 2))


def _split(payload: bytes) -> tuple[dict, bytes]:
    _, n = TENSOR_PREFIX.unpack_from(payload, 0)
    return msgpack.unpackb(payload[8:8 + n], raw=False), payload[align_up(8 + n, TENSOR_ALIGNMENT):]


def _join(header: dict, data: bytes) -> bytes:
    raw = msgpack.packb(header, use_bin_type=True)
    head = TENSOR_PREFIX.pack(b"NVPT", len(raw)) + raw
    return head + bytes(align_up(len(head), TENSOR_ALIGNMENT) - len(head)) + data


def reference_decode(words: np.ndarray, freqs: list[np.ndarray], per: int) -> list[int]:
    """The decoder of spec section 11.1, written from the text (pure Python)."""
    stack = [int(w) for w in words]
    state = stack.pop() if stack else 0
    if stack:
        state = (state << 32) | stack.pop()
    out = []
    for f in freqs:
        cdf = np.concatenate([[0], np.cumsum(f)])
        assert cdf[-1] == 1 << PRECISION and (f >= 1).all()
        for _ in range(per):
            q = state & ((1 << PRECISION) - 1)
            k = int(np.searchsorted(cdf, q, side="right") - 1)
            state = (state >> PRECISION) * int(f[k]) + q - int(cdf[k])
            if state < (1 << 32) and stack:
                state = (state << 32) | stack.pop()
            out.append(k)
    assert state == 0 and not stack
    return out


@pytest.mark.parametrize("family", [LAPLACE, GAUSSIAN])
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_constriction_follows_the_spec(family, axis):
    rng = np.random.default_rng(3)
    q = _peaked(rng, (6, 40, 30), 5, 2.0)
    coded = encode_tensor(q, 5, [axis], 1 << 22)
    assert coded is not None
    coding, raw = coded
    coding = Coding(family, axis, coding.loc, coding.scale)  # whichever family won, code with this one
    from nvcodec.container.entropy import _channels, _encode, _tables

    sym = _channels(q, axis)
    tables = _tables(family, 5, coding.loc, coding.scale)
    words = _encode(sym, tables)
    assert reference_decode(words, [t + 1 for t in tables], sym.shape[1]) == sym.reshape(-1).tolist()
    assert np.array_equal(decode_tensor(words.tobytes(), q.shape, 5, np.dtype(np.uint8), coding), q)


def test_model_tables_are_pinned():
    """The integer tables depend only on binary64 +, -, *, / (spec 11.1): pinned bit for bit."""
    lap = weights(LAPLACE, 8, np.array([100.3, 0.0, 255.0], np.float32), np.array([3.7, 0.125, 256.0], np.float32))
    gau = weights(GAUSSIAN, 6, np.array([31.5, 7.25], np.float32), np.array([0.125, 9.0], np.float32))
    for w, n in ((lap, 256), (gau, 64)):
        assert w.dtype == np.int64 and (w >= 0).all()
        assert (w.sum(axis=1) == (1 << 24) - n).all()
    digest = hashlib.sha256(lap.astype("<i8").tobytes() + gau.astype("<i8").tobytes()).hexdigest()
    assert digest == PINNED_DIGEST


PINNED_DIGEST = "acad5271ae366f8105a68c5f35a4bb7cc32377d119bc3af8b00a112961299c28"


def spec_weights(family: int, bits: int, mu: float, s: float) -> list[int]:
    """Section 11.1's table, written from the text with Python floats and integers (scalar code)."""
    n = 1 << bits
    v = []
    for k in range(n):
        d = k - mu
        if family == LAPLACE:
            t = abs(d) / s
        else:
            z = d / s
            t = (z * z) * 0.5
        t = min(t, 64.0)
        y = t * 1.4426950408889634
        j = math.floor(y)
        x = (y - j) * 0.6931471805599453
        r = 1.0
        for i in range(12, 0, -1):
            r = 1.0 - (x * r) / i
        v.append(math.floor(math.ldexp(r, -j) * 2.0 ** 30))
    total, free = sum(v), (1 << 24) - n
    u = [vk * free // total for vk in v]
    u[v.index(max(v))] += free - sum(u)
    return u


@pytest.mark.parametrize("family", [LAPLACE, GAUSSIAN])
@pytest.mark.parametrize("bits,mu,s", [(8, 100.3, 3.7), (4, 0.0, 0.125), (6, 63.0, 64.0), (10, 511.49, 0.73)])
def test_tables_match_the_spec_text(family, bits, mu, s):
    mu32, s32 = float(np.float32(mu)), float(np.float32(s))
    assert weights(family, bits, np.float32([mu]), np.float32([s]))[0].tolist() == spec_weights(family, bits, mu32, s32)


def test_peaked_data_codes_smaller_than_raw_and_uniform_falls_back():
    rng = np.random.default_rng(0)
    peaked = _peaked(rng, (32, 16, 3, 3), 6, 1.5)
    uniform = rng.integers(0, 256, size=(32, 16, 3, 3)).astype(np.uint8)
    payload = pack_tensors({"p": peaked, "u": uniform}, {"p": _quant(6, peaked.shape, 0), "u": _quant(8, uniform.shape)},
                           entropy="rans")
    assert coded_tensor_names(payload) == ["p"]
    header, _ = _split(payload)
    p = next(e for e in header["tensors"] if e["name"] == "p")
    assert p["length"] < peaked.size * 0.6
    bundle = unpack_tensors(payload)
    assert np.array_equal(bundle.tensors["p"], peaked) and np.array_equal(bundle.tensors["u"], uniform)
    assert set(bundle.coding) == {"p"}


@SETTINGS
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), bits=st.integers(2, 16), peaked=st.booleans(),
       spread=st.floats(0.05, 50), axis=st.integers(-1, 3), seed=st.integers(0, 2**31))
def test_round_trip_is_exact(shape, bits, peaked, spread, axis, seed):
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    n = 1 << bits
    if peaked:
        q = _peaked(rng, shape, bits, spread)
    else:
        q = rng.integers(0, n, size=shape).astype(np.uint8 if bits <= 8 else np.uint16)
    qaxis = axis if 0 <= axis < len(shape) else None
    payload = pack_tensors({"t": q, "f": np.ones(3, np.float16)}, {"t": _quant(bits, shape, qaxis)}, entropy="rans")
    bundle = unpack_tensors(payload)
    assert bundle.tensors["t"].dtype == q.dtype
    assert np.array_equal(bundle.tensors["t"], q)
    assert np.array_equal(bundle.tensors["f"], np.ones(3, np.float16))
    raw = pack_tensors({"t": q, "f": np.ones(3, np.float16)}, {"t": _quant(bits, shape, qaxis)})
    assert len(payload) <= len(raw) + 8 * max(shape) + 128


def _coded_payload() -> bytes:
    rng = np.random.default_rng(7)
    q = _peaked(rng, (8, 4, 3, 3), 6, 2.0)
    e = _peaked(rng, (2, 4, 3, 5), 6, 4.0)
    payload = pack_tensors({"w": q, "e": e}, {"w": _quant(6, q.shape, 0), "e": _quant(6, e.shape, 1)}, entropy="rans")
    assert coded_tensor_names(payload) == ["e", "w"]
    return payload


def _first(header: dict) -> dict:
    return next(e for e in header["tensors"] if "coding" in e)


HOSTILE_HEADERS = {
    "unknown family": lambda e: e["coding"].update(model=3),
    "family bool": lambda e: e["coding"].update(model=True),
    "axis out of range": lambda e: e["coding"].update(axis=9),
    "loc count": lambda e: e["coding"].update(loc=b"\0\0\0\0" * 3),
    "loc not float32": lambda e: e["coding"].update(loc=b"\0\0\0"),
    "loc NaN": lambda e: e["coding"].update(loc=np.full(len(e["coding"]["loc"]) // 4, np.nan, "<f4").tobytes()),
    "loc beyond the alphabet": lambda e: e["coding"].update(
        loc=np.full(len(e["coding"]["loc"]) // 4, 1e9, "<f4").tobytes()),
    "scale tiny": lambda e: e["coding"].update(scale=np.full(len(e["coding"]["scale"]) // 4, 1e-30, "<f4").tobytes()),
    "scale inf": lambda e: e["coding"].update(scale=np.full(len(e["coding"]["scale"]) // 4, np.inf, "<f4").tobytes()),
    "extra key": lambda e: e["coding"].update(extra=1),
    "missing key": lambda e: e["coding"].pop("scale"),
    "not a map": lambda e: e.update(coding=[1, 2]),
    "no quant": lambda e: e.pop("quant"),
    "float dtype": lambda e: e.update(dtype="f16"),
    "17 bits": lambda e: e.update(dtype="i32") or e["quant"].update(bits=17),
    "length not words": lambda e: e.update(length=e["length"] - 1),
    "empty shape": lambda e: e.update(shape=[0, 4]),
    "huge shape": lambda e: e.update(shape=[1 << 16, 1 << 16]),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_HEADERS))
def test_hostile_coding_headers_are_format_errors(case):
    header, data = _split(_coded_payload())
    HOSTILE_HEADERS[case](_first(header))
    with pytest.raises(FormatError):
        unpack_tensors(_join(header, data), max_decoded=1 << 20)


def test_decoded_size_is_bounded_before_decoding():
    payload = _coded_payload()
    size = sum(a.nbytes for a in unpack_tensors(payload).tensors.values())
    assert unpack_tensors(payload, max_decoded=size).tensors
    with pytest.raises(FormatError, match="decode to more than"):
        unpack_tensors(payload, max_decoded=size - 1)
    header, data = _split(payload)
    _first(header)["shape"] = [1 << 15, 1 << 15]
    _first(header)["quant"]["axis"] = None
    _first(header)["quant"]["scale"] = _first(header)["quant"]["zero_point"] = b"\0\0\x80\x3f"
    _first(header)["coding"]["axis"] = None
    _first(header)["coding"]["loc"] = _first(header)["coding"]["scale"] = b"\0\0\x80\x3f"
    with pytest.raises(FormatError, match="decode to more than"):
        unpack_tensors(_join(header, data))


def test_table_work_is_bounded():
    header, data = _split(_coded_payload())
    e = _first(header)
    n = 1 << 16
    e.update(dtype="u8", shape=[n])
    e["quant"] = {"bits": 8, "axis": None, "scale": b"\0\0\x80\x3f", "zero_point": b"\0\0\0\0"}
    e["coding"] = {"model": 1, "axis": 0, "loc": np.zeros(n, "<f4").tobytes(), "scale": np.ones(n, "<f4").tobytes()}
    with pytest.raises(FormatError, match="table entries"):
        unpack_tensors(_join(header, data), max_decoded=1 << 30)


@SETTINGS
@given(data=st.data())
def test_garbled_and_truncated_words_never_crash(data):
    header, region = _split(_coded_payload())
    e = data.draw(st.sampled_from([t for t in header["tensors"] if "coding" in t]))
    start, end = e["offset"], e["offset"] + e["length"]
    words = bytearray(region[start:end])
    how = data.draw(st.sampled_from(["flip", "truncate", "zero"]))
    if how == "flip":
        for i in data.draw(st.lists(st.integers(0, len(words) - 1), min_size=1, max_size=8)):
            words[i] ^= data.draw(st.integers(1, 255))
    elif how == "truncate":
        words = words[:4 * data.draw(st.integers(0, len(words) // 4 - 1))]
    else:
        words = bytearray(len(words))
    e["length"] = len(words)
    region = region[:start] + bytes(words) + bytes(end - start - len(words)) + region[end:]
    region = region[:max(t["offset"] + t["length"] for t in header["tensors"])]
    try:
        bundle = unpack_tensors(_join(header, region), max_decoded=1 << 20)
    except FormatError:
        return
    assert bundle.tensors[e["name"]].shape == tuple(e["shape"])


def test_reader_requires_the_feature(tmp_path):
    payload = _coded_payload()
    good, bad = tmp_path / "good.nvp", tmp_path / "bad.nvp"
    write_nvp(good, [Section("b", SectionKind.INR_BLOCK, payload, features=(RANS_FEATURE,))])
    write_nvp(bad, [Section("b", SectionKind.INR_BLOCK, payload)])
    with NvpReader(good) as r:
        assert r.required_features == [RANS_FEATURE]
        assert set(r.read_tensors("b").coding) == {"e", "w"}
    verify_nvp(good)
    with NvpReader(bad) as r, pytest.raises(FormatError, match="tensor-rans") as exc:
        r.read_tensors("b")
    assert exc.value.section == "b"
    with pytest.raises(FormatError, match="tensor-rans"):
        verify_nvp(bad)


def test_damaged_words_name_the_section(tmp_path):
    """Words left over after the last symbol are damage (rANS cannot detect every damage: the section's
    CRC does; what decodes is always in range and of the declared shape)."""
    header, data = _split(_coded_payload())
    e = max(header["tensors"], key=lambda t: t["offset"])
    assert "coding" in e and e["offset"] + e["length"] == len(data)
    e["length"] += 8
    data += bytes([0x5A] * 8)
    path = tmp_path / "d.nvp"
    write_nvp(path, [Section("block/0", SectionKind.INR_BLOCK, _join(header, data), features=(RANS_FEATURE,))])
    with NvpReader(path) as r, pytest.raises(FormatError) as exc:
        r.read_tensors("block/0")
    assert exc.value.section == "block/0" and exc.value.exit_code == 3


def test_pack_refuses_unknown_modes_and_values_beyond_bits():
    q = np.array([0, 1, 9], np.uint8)
    with pytest.raises(FormatError):
        pack_tensors({"q": q}, {"q": _quant(8, q.shape)}, entropy="zstd")
    with pytest.raises(FormatError):
        pack_tensors({"q": np.full(100, 9, np.uint8)}, {"q": _quant(3, (100,))}, entropy="rans")


def test_table_sizes_follow_the_budget():
    """Per-channel models at 16 bits would exceed the table budget: the writer picks per tensor."""
    rng = np.random.default_rng(1)
    q = _peaked(rng, (300, 40), 16, 30.0)
    payload = pack_tensors({"q": q}, {"q": _quant(16, q.shape, 0)}, entropy="rans")
    bundle = unpack_tensors(payload)
    assert bundle.coding["q"].axis is None and np.array_equal(bundle.tensors["q"], q)
    assert len(payload) < q.nbytes
