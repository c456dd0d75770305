"""Property tests (hypothesis) and seeded hostile-input fuzzing of the `.nvp` container."""

from __future__ import annotations

import copy
import dataclasses
import random
import tempfile
import time
import zlib
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nvcodec.container import (
    Codec, NvpReader, QuantParams, Section, SectionInfo, SectionKind, append_nvp, unpack_msgpack, unpack_tensors,
    verify_nvp, write_nvp,
)
from nvcodec.container.index import encode_index, encode_trailer
from nvcodec.container.layout import MSGPACK_KINDS, TENSOR_KINDS, TENSOR_PREFIX, TRAILER
from nvcodec.container.tensors import DTYPES, INT_DTYPES, pack_tensors
from nvcodec.errors import FormatError
from test_golden import build_golden

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=40)
names = names.filter(lambda n: len(n.encode()) <= 255)
kinds = st.one_of(st.sampled_from([int(k) for k in SectionKind]), st.integers(10, 65535))
sections = st.builds(Section, names, kinds, st.binary(max_size=1500), st.sampled_from([Codec.RAW, Codec.ZSTD]))
section_lists = st.lists(sections, max_size=6, unique_by=lambda s: s.name)


def _content(path: Path) -> dict[str, tuple[int, int, bytes]]:
    with NvpReader(path) as r:
        return {s.name: (s.kind, s.codec, r.read(s.name)) for s in r.sections}


def _verifiable(content: dict[str, tuple[int, int, bytes]]) -> bool:
    return all(kind not in MSGPACK_KINDS and kind not in TENSOR_KINDS for kind, _, _ in content.values())


@SETTINGS
@given(section_lists)
def test_sections_round_trip(secs: list[Section]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.nvp"
        write_nvp(path, secs)
        with NvpReader(path) as r:
            assert [s.name for s in r.sections] == [s.name for s in secs]
            for s, info in zip(secs, r.sections):
                assert (info.kind, info.codec, info.raw_length) == (s.kind, s.codec, len(s.payload))
                assert info.offset % 64 == 0
                assert r.read(s.name) == s.payload
        expected = {s.name: (s.kind, s.codec, s.payload) for s in secs}
        if _verifiable(expected):
            verify_nvp(path)


@SETTINGS
@given(section_lists, st.lists(st.tuples(section_lists, st.lists(st.integers(0, 10), max_size=3)), min_size=1,
                               max_size=4))
def test_appends_never_touch_earlier_bytes(initial: list[Section], steps: list) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.nvp"
        write_nvp(path, initial)
        model = {s.name: (s.kind, s.codec, s.payload) for s in initial}
        for step, (new, remove_picks) in enumerate(steps, start=2):
            before = path.read_bytes()
            with NvpReader(path) as r:
                stored_before = {s.name: (s, r.read_stored(s.name)) for s in r.sections}
            existing = sorted(model)
            remove = {existing[i % len(existing)] for i in remove_picks} if existing else set()
            append_nvp(path, new, remove=remove)
            after = path.read_bytes()
            assert after[:len(before)] == before
            for name in remove:
                model.pop(name, None)
            model.update({s.name: (s.kind, s.codec, s.payload) for s in new})
            assert _content(path) == model
            new_names = {s.name for s in new}
            with NvpReader(path) as r:
                assert r.generation == step and r.tail_bytes == 0
                for name, (info, stored) in stored_before.items():
                    if name in model and name not in new_names:
                        assert r.info(name) == info
                        assert r.read_stored(name) == stored
        if _verifiable(model):
            assert verify_nvp(path)["generations_checked"] == 1 + len(steps)


@st.composite
def tensor_entries(draw):
    code = draw(st.sampled_from(sorted(DTYPES)))
    dtype = np.dtype("<u2") if code == "bf16" else DTYPES[code]
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
    arr = draw(hnp.arrays(dtype, shape))
    quant = None
    if code in INT_DTYPES and draw(st.booleans()):
        bits = draw(st.integers(1, min(32, dtype.itemsize * 8)))
        axis = draw(st.none() | st.integers(0, len(shape) - 1)) if shape else None
        n = 1 if axis is None else shape[axis]
        floats = st.floats(-1e6, 1e6, width=32)
        quant = QuantParams(bits, axis, np.array(draw(st.lists(floats, min_size=n, max_size=n)), np.float32),
                            np.array(draw(st.lists(floats, min_size=n, max_size=n)), np.float32))
    return code, arr, quant


meta_values = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.text(max_size=10)
                           | st.binary(max_size=10) | st.floats(allow_nan=False),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                      max_size=3), max_leaves=10)


@SETTINGS
@given(st.dictionaries(names, tensor_entries(), max_size=5), st.dictionaries(st.text(max_size=8), meta_values,
                                                                               max_size=4))
def test_tensor_bundles_round_trip(entries: dict, meta: dict) -> None:
    tensors = {n: arr for n, (_, arr, _) in entries.items()}
    quant = {n: q for n, (_, _, q) in entries.items() if q is not None}
    bf16 = [n for n, (code, _, _) in entries.items() if code == "bf16"]
    bundle = unpack_tensors(pack_tensors(tensors, quant, meta, bf16=bf16))
    assert list(bundle.tensors) == list(tensors) and bundle.meta == meta
    for name, (code, arr, q) in entries.items():
        got = bundle.tensors[name]
        assert bundle.dtypes[name] == code and got.shape == arr.shape and got.dtype == arr.dtype
        assert got.tobytes() == arr.tobytes()
        deq = bundle.dequantized(name)
        assert deq.dtype == np.float32 and deq.shape == arr.shape
        if q is not None:
            gq = bundle.quant[name]
            assert (gq.bits, gq.axis) == (q.bits, q.axis)
            assert gq.scale.tobytes() == q.scale.tobytes() and gq.zero_point.tobytes() == q.zero_point.tobytes()
        else:
            assert name not in bundle.quant


# ---------------------------------------------------------------- seeded hostile fuzzing


@pytest.fixture(scope="module")
def good_file(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "good.nvp"
    build_golden(path)
    return path.read_bytes()


def _exercise(path: Path) -> None:
    """Open, read and decode everything; only FormatError may escape."""
    try:
        with NvpReader(path) as r:
            for info in r.sections:
                try:
                    r.read(info.name)
                    if info.kind in MSGPACK_KINDS:
                        r.read_msgpack(info.name)
                    elif info.kind in TENSOR_KINDS:
                        bundle = r.read_tensors(info.name)
                        for name in bundle.tensors:
                            bundle.dequantized(name)
                except FormatError:
                    pass
    except FormatError:
        pass
    try:
        verify_nvp(path)
    except FormatError:
        pass


def _mutate_bytes(rng: random.Random, data: bytes, lo: int = 0, hi: int | None = None) -> bytes:
    hi = len(data) if hi is None else hi
    out = bytearray(data)
    op = rng.randrange(6)
    pos = rng.randrange(lo, max(lo + 1, hi))
    if op == 0:
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(lo, hi)] ^= rng.randint(1, 255)
    elif op == 1:
        del out[pos:]
    elif op == 2:
        out[pos:pos] = rng.randbytes(rng.randint(1, 64))
    elif op == 3:
        del out[pos:pos + rng.randint(1, 64)]
    elif op == 4:
        value = rng.choice([b"\xff" * 8, bytes(8), (2**63).to_bytes(8, "little"), (2**32 - 1).to_bytes(4, "little"),
                            (2**32).to_bytes(8, "little"), b"\x80\x00\x00\x00"])
        out[pos:pos + len(value)] = value
    else:
        out[pos:pos] = b"\x89NVPEND\n"
    return bytes(out)


def _split(data: bytes) -> tuple[int, int, int]:
    index_offset, index_length, _, generation, _ = TRAILER.unpack(data[-32:])
    return index_offset, index_length, generation


def _with_index(data: bytes, index: bytes) -> bytes:
    index_offset, _, generation = _split(data)
    return data[:index_offset] + index + encode_trailer(index_offset, index, generation)


def _field_mutation(rng: random.Random, info: SectionInfo) -> SectionInfo:
    field = rng.choice(["kind", "codec", "offset", "stored_length", "raw_length", "crc32"])
    limits = {"kind": 0xFFFF, "codec": 0xFF, "crc32": 0xFFFFFFFF}
    big = limits.get(field, 2**64 - 1)
    value = rng.choice([0, 1, 63, 64, big, rng.randrange(big + 1), getattr(info, field) + rng.randint(-70, 70)])
    return dataclasses.replace(info, **{field: min(max(value, 0), big)})


def _mutate_file(rng: random.Random, good: bytes, infos: list[SectionInfo], state) -> bytes:
    index_offset, index_length, _ = _split(good)
    kind = rng.randrange(4)
    if kind == 0:
        return _mutate_bytes(rng, good)
    if kind == 1:
        index = good[index_offset:index_offset + index_length]
        return _with_index(good, _mutate_bytes(rng, index))
    if kind == 2:
        mutated = list(infos)
        i = rng.randrange(len(mutated))
        mutated[i] = _field_mutation(rng, mutated[i])
        if rng.random() < 0.3:
            mutated.append(dataclasses.replace(mutated[rng.randrange(len(mutated))], name="extra"))
        index = encode_index(state.generation, state.prev_trailer_offset, state.prefix_crc32, mutated, [])
        return _with_index(good, index)
    info = rng.choice(infos)
    stored = good[info.offset:info.offset + info.stored_length]
    new = _mutate_bytes(rng, stored, 0, max(1, len(stored)))
    new = new[:info.stored_length] + bytes(max(0, info.stored_length - len(new)))
    data = good[:info.offset] + new + good[info.offset + info.stored_length:]
    mutated = [dataclasses.replace(s, crc32=zlib.crc32(new)) if s.name == info.name else s for s in infos]
    index = encode_index(state.generation, state.prev_trailer_offset, state.prefix_crc32, mutated, [])
    return _with_index(data, index)


def test_hostile_files_raise_only_format_error(good_file: bytes, tmp_path: Path) -> None:
    rng = random.Random(0x5EED_0001)
    path = tmp_path / "fuzz.nvp"
    path.write_bytes(good_file)
    with NvpReader(path) as r:
        infos, state = list(r.sections), r.index_state
    worst = 0.0
    cases = 1500
    for _ in range(cases):
        path.write_bytes(_mutate_file(rng, good_file, infos, state))
        t0 = time.perf_counter()
        _exercise(path)
        worst = max(worst, time.perf_counter() - t0)
    assert worst < 2.0


HOSTILE_VALUES = [-1, 0, 1, 3, 64, 2**31, 2**32, 2**63, 2**64 - 1, -2**63, 1.5, float("nan"), "", "x", "f32", "bf16",
                  "i64", "u8", b"", b"\x00\x00\x80\x7f", None, True, [], {}, [2**40] * 8, [1] * 9, [0, 2**62],
                  {"bits": 8, "axis": 0, "scale": b"", "zero_point": b""}]


def _nodes(obj: object, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _nodes(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _nodes(v, path + (i,))
    return out


def _mutate_tree(rng: random.Random, obj: object) -> object:
    obj = copy.deepcopy(obj)
    path = rng.choice(_nodes(obj)[1:] or [()])
    if not path:
        return rng.choice(HOSTILE_VALUES)
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    action = rng.randrange(4)
    if action == 0 and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == 1 and isinstance(parent, dict):
        parent[rng.choice(["extra", "quant", "shape", "meta"])] = copy.deepcopy(rng.choice(HOSTILE_VALUES))
    elif action == 2 and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[path[-1]]))
    else:
        parent[path[-1]] = copy.deepcopy(rng.choice(HOSTILE_VALUES))
    return obj


def _mutate_payload(rng: random.Random, kind: int, payload: bytes) -> bytes:
    if rng.random() < 0.5:
        return _mutate_bytes(rng, payload, 0, min(len(payload), rng.choice([16, 64, 400, len(payload)])))
    if kind not in TENSOR_KINDS:
        return msgpack.packb(_mutate_tree(rng, msgpack.unpackb(payload)), use_bin_type=True)
    _, header_len = TENSOR_PREFIX.unpack_from(payload)
    start = -(-(8 + header_len) // 64) * 64
    header = msgpack.packb(_mutate_tree(rng, msgpack.unpackb(payload[8:8 + header_len])), use_bin_type=True)
    prefix = TENSOR_PREFIX.pack(b"NVPT", len(header)) + header
    return prefix + bytes(-len(prefix) % 64) + payload[start:]


def test_hostile_payloads_raise_only_format_error(good_file: bytes, tmp_path: Path) -> None:
    rng = random.Random(0x5EED_0003)
    path = tmp_path / "g.nvp"
    path.write_bytes(good_file)
    with NvpReader(path) as r:
        payloads = [(s.kind, r.read(s.name)) for s in r.sections if s.kind in MSGPACK_KINDS | TENSOR_KINDS]
    accepted = 0
    for _ in range(4000):
        kind, payload = rng.choice(payloads)
        mutated = _mutate_payload(rng, kind, payload)
        try:
            if kind in TENSOR_KINDS:
                bundle = unpack_tensors(mutated)
                for name in bundle.tensors:
                    bundle.dequantized(name)
            else:
                unpack_msgpack(mutated)
            accepted += 1
        except FormatError:
            pass
    assert 0 < accepted < 4000
