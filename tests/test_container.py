"""`.nvp` container: reader/writer behaviour, crafted hostile headers, crash safety, locking, verify."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import struct
import threading
import time
import zlib
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zstandard

from nvcodec import __version__
from nvcodec.container import (
    Codec, NvpReader, QuantParams, Section, SectionInfo, SectionKind, append_nvp, bf16_bits_to_float32,
    float32_to_bf16_bits, pack_msgpack, pack_tensors, unpack_msgpack, unpack_tensors, verify_nvp, write_nvp,
)
from nvcodec.container import writer as writer_module
from nvcodec.container.index import encode_index, encode_trailer
from nvcodec.container.layout import (
    INDEX_ENTRY, INDEX_HEADER, INDEX_MAGIC, MAGIC, MAX_INDEX_LENGTH, MAX_RAW_LENGTH, MAX_SECTIONS, PREAMBLE,
    TENSOR_MAGIC, TENSOR_PREFIX, TRAILER, TRAILER_MAGIC,
)
from nvcodec.errors import FormatError


def _sections() -> list[Section]:
    return [
        Section("video", SectionKind.VIDEO, pack_msgpack({"width": 8, "height": 4, "frames": 2})),
        Section("model", SectionKind.MODEL, pack_msgpack({"kind": "hnerv", "strides": [2, 2]}), Codec.RAW),
        Section("block/0", SectionKind.INR_BLOCK,
                pack_tensors({"w": np.arange(24, dtype=np.uint8).reshape(2, 3, 4), "b": np.ones(2, np.float32)},
                             {"w": QuantParams(8, 0, [0.5, 0.25], [3, 4])}, {"block": 0})),
        Section("empty", 4000, b"", Codec.RAW),
        Section("empty-z", 4001, b""),
    ]


def _contents(path: Path) -> dict[str, tuple[int, int, bytes]]:
    with NvpReader(path) as r:
        return {s.name: (s.kind, s.codec, r.read(s.name)) for s in r.sections}


def _expected(sections: list[Section]) -> dict[str, tuple[int, int, bytes]]:
    return {s.name: (int(s.kind), int(s.codec), bytes(s.payload)) for s in sections}


# ---------------------------------------------------------------- basics


def test_round_trip_and_reader_api(tmp_path: Path) -> None:
    path = tmp_path / "a.nvp"
    sections = _sections()
    write_nvp(path, sections)
    with NvpReader(path) as r:
        assert r.version == (1, 0) and r.generation == 1 and r.tail_bytes == 0
        assert r.file_size == path.stat().st_size and r.required_features == []
        assert [s.name for s in r.sections] == [s.name for s in sections]
        assert "video" in r and "nope" not in r and 3 not in r and ["video"] not in r
        info = r.info("block/0")
        assert isinstance(info, SectionInfo) and info.offset % 64 == 0 and info.codec == Codec.ZSTD
        assert r.read_msgpack("video") == {"width": 8, "height": 4, "frames": 2}
        assert r.read_tensors("block/0").meta == {"block": 0}
        assert r.read("empty") == b"" and r.read("empty-z") == b""
        with pytest.raises(FormatError) as exc:
            r.info("nope")
        assert exc.value.section == "nope"
        with pytest.raises(FormatError):
            r.read("nope")
    with pytest.raises(FormatError, match="closed"):
        r.read("video")
    assert _contents(path) == _expected(sections)


def test_empty_file_and_section_placement(tmp_path: Path) -> None:
    path = tmp_path / "e.nvp"
    write_nvp(path, [])
    data = path.read_bytes()
    assert data[:16] == MAGIC + struct.pack("<HHI", 1, 0, 0)
    assert data[16:64] == bytes(48)
    assert len(data) == 64 + INDEX_HEADER.size + TRAILER.size
    with NvpReader(path) as r:
        assert r.sections == [] and r.generation == 1
    write_nvp(path, [Section("x", 1, b"abc", Codec.RAW), Section("y", 1, b"de", Codec.RAW)])
    data = path.read_bytes()
    assert data[64:67] == b"abc" and data[67:128] == bytes(61) and data[128:130] == b"de"


def test_unknown_kinds_are_kept_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "k.nvp"
    write_nvp(path, [Section("future/thing", 65535, b"\x00\x01", Codec.RAW)])
    append_nvp(path, [Section("video", SectionKind.VIDEO, pack_msgpack({"width": 1}))])
    with NvpReader(path) as r:
        assert r.info("future/thing").kind == 65535 and r.read("future/thing") == b"\x00\x01"
    verify_nvp(path)


@pytest.mark.parametrize("bad", [
    Section("", 1, b""), Section("a\x00b", 1, b""), Section("x" * 256, 1, b""), Section("\udc80", 1, b""),
    Section("k", 0, b""), Section("k", 65536, b""), Section("k", True, b""), Section("k", 1, b"", 3),
    Section("k", 1, "text"),
])
def test_writer_rejects_bad_sections(tmp_path: Path, bad: Section) -> None:
    path = tmp_path / "bad.nvp"
    with pytest.raises(FormatError):
        write_nvp(path, [bad])
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_writer_rejects_duplicates_and_bad_features(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="twice"):
        write_nvp(tmp_path / "d.nvp", [Section("a", 1, b""), Section("a", 2, b"")])
    with pytest.raises(FormatError):
        write_nvp(tmp_path / "d.nvp", [], required_features=["bad\x00"])
    assert list(tmp_path.iterdir()) == []


def test_name_limits_round_trip(tmp_path: Path) -> None:
    names = ["x" * 255, "é" * 127, "seg12/block/3", "adapter/détection", "日本"]
    write_nvp(tmp_path / "n.nvp", [Section(n, 3, n.encode(), Codec.RAW) for n in names])
    assert {k: v[2] for k, v in _contents(tmp_path / "n.nvp").items()} == {n: n.encode() for n in names}


def test_write_is_atomic_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.nvp"
    write_nvp(path, _sections())
    before = path.read_bytes()
    calls = []
    real = writer_module.encode_payload

    def failing(payload: bytes, codec: int) -> bytes:
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(payload, codec)

    monkeypatch.setattr(writer_module, "encode_payload", failing)
    with pytest.raises(OSError):
        write_nvp(path, _sections())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nvp"]
    calls.clear()
    with pytest.raises(OSError):
        write_nvp(tmp_path / "new.nvp", _sections())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nvp"]


def test_write_replaces_and_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "a.nvp"
    write_nvp(path, _sections())
    os.chmod(path, 0o640)
    write_nvp(path, [Section("only", 1, b"1")])
    assert (path.stat().st_mode & 0o777) == 0o640
    assert list(_contents(path)) == ["only"]


# ---------------------------------------------------------------- append


def test_append_supersede_remove_and_prefix_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "a.nvp"
    sections = _sections()
    write_nvp(path, sections)
    before = path.read_bytes()
    new_video = Section("video", SectionKind.VIDEO, pack_msgpack({"width": 9}))
    routing = Section("routing", SectionKind.ROUTING, pack_msgpack({"version": 1, "tasks": {}}))
    append_nvp(path, [new_video, routing], remove=["model", "not-there"])
    after = path.read_bytes()
    assert after[:len(before)] == before
    expected = {k: v for k, v in _expected(sections).items() if k not in ("model", "video")}
    expected.update(_expected([new_video, routing]))
    assert _contents(path) == expected
    with NvpReader(path) as r:
        assert r.generation == 2 and r.tail_bytes == 0
        assert r.info("video").offset >= len(before)
        assert r.info("block/0").offset < len(before)
    append_nvp(path, [], remove=["routing"])
    with NvpReader(path) as r:
        assert r.generation == 3 and "routing" not in r
    assert verify_nvp(path)["generations_checked"] == 3


def test_append_adds_required_features_and_old_reader_refuses(tmp_path: Path) -> None:
    path = tmp_path / "f.nvp"
    write_nvp(path, _sections())
    append_nvp(path, [Section("x", 1, b"")], required_features=["sparse-tensors"])
    with pytest.raises(FormatError) as exc:
        NvpReader(path)
    assert str(exc.value) == (f"file requires features ['sparse-tensors'] that this reader (nvcodec {__version__}) "
                              "does not support")
    with pytest.raises(FormatError, match="requires features"):
        append_nvp(path, [Section("y", 1, b"")])
    with pytest.raises(FormatError, match="requires features"):
        verify_nvp(path)
    write_nvp(path, [], required_features=["a", "b"])
    with pytest.raises(FormatError, match=r"\['a', 'b'\]"):
        NvpReader(path)


def test_failed_append_leaves_file_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.nvp"
    write_nvp(path, _sections())
    before = path.read_bytes()
    real = writer_module.encode_payload
    calls = []

    def failing(payload: bytes, codec: int) -> bytes:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(payload, codec)

    monkeypatch.setattr(writer_module, "encode_payload", failing)
    with pytest.raises(OSError):
        append_nvp(path, [Section("a", 1, b"x" * 1000), Section("b", 1, b"y")])
    assert path.read_bytes() == before


def test_append_rejects_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "a.nvp"
    with pytest.raises(FormatError, match="cannot open"):
        append_nvp(path, [Section("a", 1, b"")])
    path.write_bytes(b"not an nvp file" * 20)
    with pytest.raises(FormatError, match="magic"):
        append_nvp(path, [Section("a", 1, b"")])
    assert path.read_bytes() == b"not an nvp file" * 20


# ---------------------------------------------------------------- crash safety


def test_every_truncation_of_an_append_shows_previous_content(tmp_path: Path) -> None:
    path = tmp_path / "a.nvp"
    write_nvp(path, _sections())
    append_nvp(path, [Section("routing", SectionKind.ROUTING, pack_msgpack({"tasks": {}}))])
    old = path.read_bytes()
    old_content = _contents(path)
    appended = [Section("video", SectionKind.VIDEO, pack_msgpack({"width": 99})),
                Section("adapter/x", SectionKind.ADAPTER, pack_tensors({"w": np.ones((4, 4), np.float32)})),
                Section("raw", 77, bytes(range(256)) + TRAILER_MAGIC * 3, Codec.RAW)]
    append_nvp(path, appended)
    new = path.read_bytes()
    assert new[:len(old)] == old
    cut = tmp_path / "cut.nvp"
    for length in range(len(old), len(new)):
        cut.write_bytes(new[:length])
        with NvpReader(cut) as r:
            assert r.generation == 2, length
            assert r.tail_bytes == length - len(old)
            assert {s.name: (s.kind, s.codec, r.read(s.name)) for s in r.sections} == old_content
    cut.write_bytes(new)
    with NvpReader(cut) as r:
        assert r.generation == 3 and r.tail_bytes == 0


def test_append_after_interrupted_append(tmp_path: Path) -> None:
    path = tmp_path / "a.nvp"
    write_nvp(path, _sections())
    old = path.read_bytes()
    append_nvp(path, [Section("big", 1, os.urandom(3000), Codec.RAW)])
    torn = path.read_bytes()
    extra = Section("after", SectionKind.ROUTING, pack_msgpack({"ok": True}))
    for length in [len(old) + 1, len(old) + 64, len(old) + 2000, len(torn) - 33, len(torn) - 1]:
        path.write_bytes(torn[:length])
        with pytest.raises(FormatError, match="interrupted append"):
            verify_nvp(path)
        append_nvp(path, [extra])
        data = path.read_bytes()
        assert data[:len(old)] == old
        assert _contents(path) == {**_expected(_sections()), **_expected([extra])}
        report = verify_nvp(path)
        assert report["generation"] == 2 and report["generations_checked"] == 2


def test_junk_tail_with_fake_trailers(tmp_path: Path) -> None:
    path = tmp_path / "a.nvp"
    write_nvp(path, _sections())
    good = path.read_bytes()
    fake = TRAILER.pack(64, 40, 0, 2, TRAILER_MAGIC)
    path.write_bytes(good + (fake + TRAILER_MAGIC) * 5000)
    t0 = time.monotonic()
    with NvpReader(path) as r:
        assert r.generation == 1 and r.tail_bytes == 5000 * 40
    assert time.monotonic() - t0 < 5
    path.write_bytes(good + TRAILER_MAGIC * 70000)
    with pytest.raises(FormatError, match="candidates"):
        NvpReader(path)


def test_valid_checksum_but_invalid_index_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    path = tmp_path / "a.nvp"
    write_nvp(path, _sections())
    with NvpReader(path) as r:
        prev = r.index_state.trailer_offset
    data = path.read_bytes()
    index_offset = -(-len(data) // 64) * 64
    data += bytes(index_offset - len(data))
    index = INDEX_HEADER.pack(INDEX_MAGIC, 2, 0, 0, prev, zlib.crc32(data), 7)
    path.write_bytes(data + index + encode_trailer(index_offset, index, 2))
    with pytest.raises(FormatError, match="reserved") as exc:
        NvpReader(path)
    assert exc.value.offset == index_offset + 28


# ---------------------------------------------------------------- concurrency


def _append_worker(path: str, worker: int, count: int, barrier) -> None:
    barrier.wait()
    for i in range(count):
        payload = f"{worker}:{i}".encode() * (i + 1)
        append_nvp(path, [Section(f"w{worker}/{i}", 1000 + worker, payload, Codec.RAW if i % 2 else Codec.ZSTD)])


def test_concurrent_appends_are_serialized(tmp_path: Path) -> None:
    path = tmp_path / "c.nvp"
    write_nvp(path, _sections())
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    count = 25
    procs = [ctx.Process(target=_append_worker, args=(str(path), w, count, barrier)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with NvpReader(path) as r:
        assert r.generation == 1 + 2 * count and r.tail_bytes == 0
        for w in range(2):
            for i in range(count):
                assert r.read(f"w{w}/{i}") == f"{w}:{i}".encode() * (i + 1)
    report = verify_nvp(path)
    assert report["generations_checked"] == 1 + 2 * count
    assert report["sections"] == len(_sections()) + 2 * count


def test_append_waits_for_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "l.nvp"
    write_nvp(path, [])
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (append_nvp(path, [Section("a", 1, b"")]), done.set()))
    thread.start()
    try:
        assert not done.wait(0.5)
        with NvpReader(path) as r:
            assert r.generation == 1
    finally:
        os.close(fd)
    thread.join(10)
    assert done.is_set()
    with NvpReader(path) as r:
        assert r.generation == 2


# ---------------------------------------------------------------- crafted hostile files


def _entry(name: bytes, offset: int, stored: int, raw: int, crc: int = 0, kind: int = 1, codec: int = 0,
           nlen: int | None = None) -> bytes:
    return INDEX_ENTRY.pack(offset, stored, raw, crc, kind, codec, len(name) if nlen is None else nlen) + name


def _craft(entries: list[bytes], *, blobs: tuple[tuple[int, bytes], ...] = (), count: int | None = None,
           features: bytes = b"", nfeat: int = 0, generation: int = 1, prev: int = 0, reserved: int = 0,
           trailer_generation: int | None = None, preamble: bytes | None = None) -> bytes:
    body = bytearray(preamble or PREAMBLE.pack(MAGIC, 1, 0, 0))
    for offset, blob in blobs:
        body += bytes(offset - len(body))
        body += blob
    body += bytes(-len(body) % 64)
    body += bytes(64) if len(body) < 64 else b""
    index = INDEX_HEADER.pack(INDEX_MAGIC, generation, len(entries) if count is None else count, nfeat, prev,
                              zlib.crc32(body), reserved) + b"".join(entries) + features
    trailer = TRAILER.pack(len(body), len(index), zlib.crc32(index),
                           generation if trailer_generation is None else trailer_generation, TRAILER_MAGIC)
    return bytes(body) + index + trailer


def test_craft_helper_builds_valid_files(tmp_path: Path) -> None:
    path = tmp_path / "ok.nvp"
    path.write_bytes(_craft([_entry(b"a", 64, 3, 3, zlib.crc32(b"abc"), kind=500)], blobs=((64, b"abc"),)))
    with NvpReader(path) as r:
        assert r.read("a") == b"abc"
    verify_nvp(path)


ABC = ((64, b"abc"),)
HOSTILE_INDEXES = {
    "section count limit": ([], dict(count=MAX_SECTIONS + 1), "section count"),
    "huge section count": ([], dict(count=2**32 - 1), "section count"),
    "count larger than index": ([], dict(count=1000), "cannot hold"),
    "entry past index": ([_entry(b"a" * 40, 64, 3, 3), _entry(b"b", 128, 0, 0)[:-10]], dict(blobs=ABC),
                         "entry runs past end"),
    "offset past index": ([_entry(b"a", 64, 10**6, 10**6)], dict(blobs=ABC), "extends past"),
    "huge offset": ([_entry(b"a", 2**64 - 64, 3, 3)], dict(blobs=ABC), "extends past"),
    "huge stored length": ([_entry(b"a", 64, 2**64 - 1, 2**64 - 1)], dict(blobs=ABC), "extends past"),
    "unaligned offset": ([_entry(b"a", 65, 2, 2)], dict(blobs=ABC), "multiple of 64"),
    "offset in preamble": ([_entry(b"a", 0, 3, 3)], dict(blobs=ABC), "multiple of 64"),
    "raw length limit": ([_entry(b"a", 64, 3, MAX_RAW_LENGTH + 1, codec=1)], dict(blobs=ABC), "raw length"),
    "raw length mismatch": ([_entry(b"a", 64, 3, 4)], dict(blobs=ABC), "stored length"),
    "kind zero": ([_entry(b"a", 64, 3, 3, kind=0)], dict(blobs=ABC), "kind 0"),
    "unknown codec": ([_entry(b"a", 64, 3, 3, codec=9)], dict(blobs=ABC), "codec"),
    "dictionary codec without its feature": ([_entry(b"a", 64, 3, 3, codec=2)], dict(blobs=ABC), "zstd-dict-1"),
    "overlap": ([_entry(b"a", 64, 3, 3), _entry(b"b", 64, 2, 2)], dict(blobs=ABC), "overlaps"),
    "bad utf-8 name": ([_entry(b"\xff\xfe", 64, 3, 3)], dict(blobs=ABC), "UTF-8"),
    "empty name": ([_entry(b"", 64, 3, 3)], dict(blobs=ABC), "1..255"),
    "NUL in name": ([_entry(b"a\x00", 64, 3, 3)], dict(blobs=ABC), "NUL"),
    "duplicate names": ([_entry(b"a", 64, 3, 3), _entry(b"a", 128, 0, 0)], dict(blobs=ABC), "duplicate"),
    "name past index": ([_entry(b"a", 64, 3, 3, nlen=200)], dict(blobs=ABC), "past end"),
    "trailing index bytes": ([_entry(b"a", 64, 3, 3) + b"\x00"], dict(blobs=ABC), "unexpected bytes"),
    "reserved field": ([], dict(reserved=1), "reserved"),
    "generation mismatch": ([], dict(trailer_generation=5), "generation"),
    "gen 1 with prev": ([], dict(prev=64), "prev_trailer_offset"),
    "gen 2 bad prev": ([], dict(generation=2, prev=10), "previous trailer"),
    "too many features": ([], dict(nfeat=1000), "feature count"),
    "feature past end": ([], dict(nfeat=1, features=b"\x09ab"), "past end"),
    "bad feature name": ([], dict(nfeat=1, features=b"\x02\xff\xff"), "UTF-8"),
    "duplicate features": ([], dict(nfeat=2, features=b"\x01a\x01a"), "duplicate"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_INDEXES))
def test_hostile_index(tmp_path: Path, case: str) -> None:
    entries, kwargs, message = HOSTILE_INDEXES[case]
    path = tmp_path / "h.nvp"
    path.write_bytes(_craft(entries, **kwargs))
    with pytest.raises(FormatError, match=message) as exc:
        NvpReader(path)
    assert exc.value.offset is not None


@pytest.mark.parametrize("preamble, message", [
    (PREAMBLE.pack(b"\x89PNG\r\n\x1a\n", 1, 0, 0), "magic"),
    (PREAMBLE.pack(MAGIC, 2, 0, 0), "major version 2.0"),
    (PREAMBLE.pack(MAGIC, 0, 9, 0), "major version 0.9"),
    (PREAMBLE.pack(MAGIC, 1, 0, 1), "flags"),
])
def test_hostile_preamble(tmp_path: Path, preamble: bytes, message: str) -> None:
    path = tmp_path / "p.nvp"
    path.write_bytes(_craft([], preamble=preamble))
    with pytest.raises(FormatError, match=message):
        NvpReader(path)


def test_newer_minor_version_is_read(tmp_path: Path) -> None:
    path = tmp_path / "m.nvp"
    path.write_bytes(_craft([_entry(b"a", 64, 3, 3, zlib.crc32(b"abc"))], blobs=ABC,
                            preamble=PREAMBLE.pack(MAGIC, 1, 7, 0)))
    with NvpReader(path) as r:
        assert r.version == (1, 7) and r.read("a") == b"abc"


@pytest.mark.parametrize("data", [b"", b"\x89NVP", MAGIC + bytes(8), b"x" * 10000])
def test_not_nvp_files(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "x.nvp"
    path.write_bytes(data)
    with pytest.raises(FormatError):
        NvpReader(path)
    with pytest.raises(FormatError):
        verify_nvp(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="cannot open"):
        NvpReader(tmp_path / "missing.nvp")
    with pytest.raises(FormatError):
        NvpReader(tmp_path)


def test_trailer_with_huge_index_length_is_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "t.nvp"
    good = _craft([])
    path.write_bytes(good[:-32] + TRAILER.pack(64, 2**63, 0, 1, TRAILER_MAGIC))
    with pytest.raises(FormatError, match="no complete trailer"):
        NvpReader(path)
    path.write_bytes(good[:-32] + TRAILER.pack(64, MAX_INDEX_LENGTH + 1, 0, 1, TRAILER_MAGIC))
    with pytest.raises(FormatError, match="no complete trailer"):
        NvpReader(path)


# ---------------------------------------------------------------- zstd framing


def _zstd_file(tmp_path: Path, stored: bytes, raw_length: int) -> Path:
    path = tmp_path / "z.nvp"
    path.write_bytes(_craft([_entry(b"z", 64, len(stored), raw_length, zlib.crc32(stored), codec=1)],
                            blobs=((64, stored),)))
    return path


def _frame(data: bytes, **kwargs) -> bytes:
    return zstandard.ZstdCompressor(**kwargs).compress(data)


@pytest.mark.parametrize("stored, raw_length, message", [
    (_frame(b"a" * 100) + _frame(b""), 100, "zstd frame is"),
    (_frame(b"a" * 100) + b"\x00", 100, "zstd frame is"),
    (_frame(b"a" * 100)[:-1], 100, "truncated|zstd"),
    (_frame(b"a" * 100, write_content_size=False), 100, "content size"),
    (_frame(b"a" * 100), 99, "content size"),
    (b"\x50\x2a\x4d\x18\x04\x00\x00\x00abcd" + _frame(b"a"), 1, "not a zstd frame"),
    (b"abc", 3, "not a zstd frame"),
    (b"\x28\xb5\x2f\xfd", 0, "zstd"),
])
def test_bad_zstd_sections(tmp_path: Path, stored: bytes, raw_length: int, message: str) -> None:
    path = _zstd_file(tmp_path, stored, raw_length)
    with NvpReader(path) as r:
        with pytest.raises(FormatError, match=message) as exc:
            r.read("z")
        assert exc.value.section == "z"


def test_zstd_frame_lying_about_its_content_size(tmp_path: Path) -> None:
    frame = bytearray(_frame(bytes(range(256)) * 40, write_checksum=True))
    header = frame[4]
    assert header >> 6 == 1  # 2-byte content size field
    size_at = 5 if header & 0x20 else 6
    struct.pack_into("<H", frame, size_at, 300 - 256)
    path = _zstd_file(tmp_path, bytes(frame), 300)
    with NvpReader(path) as r, pytest.raises(FormatError):
        r.read("z")


def test_zstd_frame_with_checksum_is_accepted(tmp_path: Path) -> None:
    payload = b"hello world " * 50
    path = _zstd_file(tmp_path, _frame(payload, write_checksum=True), len(payload))
    with NvpReader(path) as r:
        assert r.read("z") == payload


def test_corrupt_section_checksum(tmp_path: Path) -> None:
    path = tmp_path / "c.nvp"
    path.write_bytes(_craft([_entry(b"a", 64, 3, 3, zlib.crc32(b"abd"))], blobs=ABC))
    with NvpReader(path) as r:
        with pytest.raises(FormatError, match="checksum") as exc:
            r.read("a")
        assert (exc.value.section, exc.value.offset) == ("a", 64)


# ---------------------------------------------------------------- msgpack


@pytest.mark.parametrize("payload, message", [
    (msgpack.packb(msgpack.ExtType(5, b"x")), "ext"),
    (msgpack.packb(msgpack.Timestamp(1, 0)), "ext"),
    (msgpack.packb({1: 2}), "map key"),
    (msgpack.packb({"a": 1}) + b"\xc0", "after"),
    (b"\xdd\xff\xff\xff\xff", "max_array_len"),
    (b"\xdf\xff\xff\xff\xff", "max_map_len"),
    (b"\xdb\xff\xff\xff\xff", "msgpack"),
    (b"\xc6\x7f\xff\xff\xff", "msgpack"),
    (b"\x91" * 100 + b"\xc0", "nesting"),
    (b"\x91" * 100000 + b"\xc0", "msgpack"),
    (b"\xa2\xff\xfe", "UnicodeDecodeError"),
    (b"\xc1", "msgpack"),
    (b"", "msgpack"),
    (b"\x9f" * 4, "msgpack"),
])
def test_hostile_msgpack(tmp_path: Path, payload: bytes, message: str) -> None:
    path = tmp_path / "m.nvp"
    write_nvp(path, [Section("video", SectionKind.VIDEO, payload, Codec.RAW)])
    with NvpReader(path) as r, pytest.raises(FormatError, match=message) as exc:
        r.read_msgpack("video")
    assert exc.value.section == "video"
    with pytest.raises(FormatError):
        verify_nvp(path)


def test_msgpack_value_budget() -> None:
    too_long = b"\xdd" + struct.pack(">I", 1_100_000) + b"\x90" * 1_100_000
    with pytest.raises(FormatError, match="max_array_len"):
        unpack_msgpack(too_long)
    many = b"\xdd" + struct.pack(">I", 400_000) + b"\x91\x90" * 400_000
    with pytest.raises(FormatError, match="maps and arrays"):
        unpack_msgpack(many)
    scalars = b"\xdd" + struct.pack(">I", 1_000_000) + b"\xcd\x01\x2c" * 1_000_000
    assert len(unpack_msgpack(scalars)) == 1_000_000
    scalars = b"\xdd" + struct.pack(">I", 1_048_576) + b"\x00" * 1_048_576
    with pytest.raises(FormatError, match="maps and arrays"):
        unpack_msgpack(scalars)


def test_msgpack_budget_spans_a_reader(tmp_path: Path) -> None:
    part = b"\xdd" + struct.pack(">I", 150_000) + b"\x00" * 150_000
    path = tmp_path / "b.nvp"
    write_nvp(path, [Section(f"m{i}", SectionKind.PROVENANCE, part) for i in range(8)])
    with NvpReader(path) as r:
        fit = (r.value_budget.total - 1) // 150_001
        assert 1 <= fit < 8
        for i in range(fit):
            assert len(r.read_msgpack(f"m{i}")) == 150_000
            assert r.read_msgpack(f"m{i}") is r.read_msgpack(f"m{i}")
        with pytest.raises(FormatError, match="maps and arrays"):
            r.read_msgpack(f"m{fit}")
    with pytest.raises(FormatError, match="maps and arrays"):
        verify_nvp(path)


def test_pack_msgpack() -> None:
    assert unpack_msgpack(pack_msgpack({"a": np.int64(3), "b": np.float32(0.5), "t": (1, 2)})) == {
        "a": 3, "b": 0.5, "t": [1, 2]}
    for bad in [{1: 2}, {"a": object()}, {"a": {1, 2}}]:
        with pytest.raises(FormatError):
            pack_msgpack(bad)


# ---------------------------------------------------------------- tensor bundles


def test_tensor_round_trip_all_dtypes() -> None:
    tensors = {
        "f32": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
        "f16": np.array([[0.5, -2.0]], dtype=np.float16),
        "u8": np.arange(6, dtype=np.uint8).reshape(1, 2, 3),
        "i8": np.array([-128, 127], dtype=np.int8),
        "u16": np.array(65535, dtype=np.uint16),
        "i16": np.zeros((0, 3), dtype=np.int16),
        "i32": np.array([[-(2**31)]], dtype=np.int32),
        "i64": np.array([2**62, -1], dtype=">i8"),
        "t": np.arange(12, dtype=np.float32).reshape(3, 4).T,
    }
    bundle = unpack_tensors(pack_tensors(tensors, meta={"x": [1, "y"]}))
    assert bundle.meta == {"x": [1, "y"]} and bundle.quant == {}
    for name, arr in tensors.items():
        got = bundle.tensors[name]
        assert got.shape == arr.shape and got.dtype == arr.dtype.newbyteorder("=")
        assert got.flags.writeable and got.flags.c_contiguous
        np.testing.assert_array_equal(got, arr)
    assert bundle.dtypes == {"f32": "f32", "f16": "f16", "u8": "u8", "i8": "i8", "u16": "u16", "i16": "i16",
                             "i32": "i32", "i64": "i64", "t": "f32"}
    assert bundle.dequantized("f16").dtype == np.float32


def test_tensor_layout_is_aligned_and_little_endian() -> None:
    payload = pack_tensors({"a": np.array([1], dtype=np.uint8), "b": np.array([0x01020304], dtype=np.int32)})
    magic, header_len = TENSOR_PREFIX.unpack_from(payload)
    assert magic == TENSOR_MAGIC
    header = msgpack.unpackb(payload[8:8 + header_len])
    start = -(-(8 + header_len) // 64) * 64
    assert [(t["offset"], t["length"]) for t in header["tensors"]] == [(0, 1), (64, 4)]
    assert payload[start + 64:start + 68] == b"\x04\x03\x02\x01"
    assert len(payload) == start + 68


def test_quantized_dequantization() -> None:
    q = np.array([[0, 1, 2], [3, 4, 5]], dtype=np.uint8)
    per_channel = QuantParams(bits=4, axis=1, scale=[1.0, 0.5, 2.0], zero_point=[1, 2, 3])
    per_tensor = QuantParams(bits=8, axis=None, scale=[0.25], zero_point=[2])
    signed = QuantParams(bits=8, axis=0, scale=[1.0, 2.0], zero_point=[0, 0])
    bundle = unpack_tensors(pack_tensors({"a": q, "b": q, "c": q.astype(np.int8) - 3},
                                         {"a": per_channel, "b": per_tensor, "c": signed}))
    np.testing.assert_array_equal(bundle.dequantized("a"), [[-1, -0.5, -2], [2, 1, 4]])
    np.testing.assert_array_equal(bundle.dequantized("b"), [[-0.5, -0.25, 0], [0.25, 0.5, 0.75]])
    np.testing.assert_array_equal(bundle.dequantized("c"), [[-3, -2, -1], [0, 2, 4]])
    assert bundle.dequantized("a").dtype == np.float32
    assert (bundle.quant["a"].bits, bundle.quant["a"].axis, bundle.quant["b"].axis) == (4, 1, None)
    with pytest.raises(FormatError, match="no tensor"):
        bundle.dequantized("zzz")


def test_bf16() -> None:
    x = np.array([1.0, -2.5, 3.14159, 1e-40, np.inf, np.nan, 65504.0], dtype=np.float32)
    bits = float32_to_bf16_bits(x)
    assert bits.dtype == np.uint16
    back = bf16_bits_to_float32(bits)
    assert back[0] == 1.0 and back[1] == -2.5 and abs(back[2] - 3.14159) < 0.02 and np.isinf(back[4])
    assert np.isnan(back[5])
    assert float32_to_bf16_bits(np.array([1.00390625], np.float32))[0] == 0x3F80  # ties to even
    bundle = unpack_tensors(pack_tensors({"w": bits}, bf16=["w"]))
    assert bundle.dtypes["w"] == "bf16"
    np.testing.assert_array_equal(bundle.tensors["w"], bits)
    np.testing.assert_array_equal(bundle.dequantized("w")[:5], back[:5])


@pytest.mark.parametrize("tensors, quant, kwargs, message", [
    ({"a": np.zeros(2, np.float64)}, None, {}, "unsupported dtype"),
    ({"a": np.zeros(2, bool)}, None, {}, "unsupported dtype"),
    ({"a": np.zeros(2, np.uint32)}, None, {}, "unsupported dtype"),
    ({"a": np.zeros(2, np.float32)}, {"a": QuantParams(8, None, [1], [0])}, {}, "integer dtype"),
    ({"a": np.zeros(2, np.uint8)}, {"a": QuantParams(9, None, [1], [0])}, {}, "bits"),
    ({"a": np.zeros(2, np.uint8)}, {"a": QuantParams(0, None, [1], [0])}, {}, "bits"),
    ({"a": np.zeros(2, np.uint8)}, {"a": QuantParams(8, 1, [1, 1], [0, 0])}, {}, "axis"),
    ({"a": np.zeros(2, np.uint8)}, {"a": QuantParams(8, 0, [1], [0])}, {}, "need 2 values"),
    ({"a": np.zeros(2, np.uint8)}, {"a": QuantParams(8, None, [np.nan], [0])}, {}, "finite"),
    ({"a": np.zeros(2, np.uint8)}, {"b": QuantParams(8, None, [1], [0])}, {}, "unknown tensors"),
    ({"a": np.zeros((1,) * 9, np.uint8)}, None, {}, "dims"),
    ({"": np.zeros(1, np.uint8)}, None, {}, "1..255"),
    ({"a": np.zeros(1, np.float32)}, None, {"bf16": ["a"]}, "uint16"),
    ({"a": np.zeros(1, np.float32)}, None, {"meta": {"t": object()}}, "metadata"),
])
def test_pack_tensors_rejects(tensors: dict, quant: dict | None, kwargs: dict, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        pack_tensors(tensors, quant, **kwargs)


def _bundle_bytes(entries: list[dict], data: bytes = b"", meta: object = None, *, header: object = None,
                  header_len: int | None = None, magic: bytes = TENSOR_MAGIC) -> bytes:
    obj = header if header is not None else {"tensors": entries, "meta": {} if meta is None else meta}
    raw = msgpack.packb(obj, use_bin_type=True)
    prefix = TENSOR_PREFIX.pack(magic, len(raw) if header_len is None else header_len) + raw
    return prefix + bytes(-len(prefix) % 64) + data


def _t(name: object = "a", dtype: object = "u8", shape: object = (4,), offset: object = 0, length: object = 4,
       **extra: object) -> dict:
    return {"name": name, "dtype": dtype, "shape": list(shape) if isinstance(shape, tuple) else shape,
            "offset": offset, "length": length, **extra}


def _q(bits: object = 8, axis: object = None, scale: object = b"\x00\x00\x80?", zero: object = b"\x00" * 4) -> dict:
    return {"bits": bits, "axis": axis, "scale": scale, "zero_point": zero}


HOSTILE_BUNDLES = {
    "bad magic": (_bundle_bytes([_t()], b"abcd", magic=b"NVPX"), "magic"),
    "short": (b"NVP", "shorter"),
    "header length too big": (_bundle_bytes([_t()], b"abcd", header_len=2**32 - 1), "header length"),
    "header not a map": (_bundle_bytes([], header=[1, 2]), "map with keys"),
    "extra header key": (_bundle_bytes([], header={"tensors": [], "meta": {}, "x": 1}), "map with keys"),
    "tensors not a list": (_bundle_bytes([], header={"tensors": {}, "meta": {}}), "array"),
    "meta not a map": (_bundle_bytes([], meta=[1]), "array"),
    "entry not a map": (_bundle_bytes([5]), "must be a map"),
    "unknown entry key": (_bundle_bytes([_t(layout="T")], b"abcd"), "unknown keys"),
    "missing entry key": (_bundle_bytes([{"name": "a", "dtype": "u8", "shape": [4], "offset": 0}], b"abcd"),
                          "lacks"),
    "name not str": (_bundle_bytes([_t(name=b"a")], b"abcd"), "name must be a string"),
    "name empty": (_bundle_bytes([_t(name="")], b"abcd"), "1..255"),
    "name with NUL": (_bundle_bytes([_t(name="a\x00")], b"abcd"), "NUL"),
    "unknown dtype": (_bundle_bytes([_t(dtype="f64")], b"abcd"), "unknown dtype"),
    "shape not list": (_bundle_bytes([_t(shape=4)], b"abcd"), "shape"),
    "too many dims": (_bundle_bytes([_t(shape=(1,) * 9)], b"abcd"), "shape"),
    "negative dim": (_bundle_bytes([_t(shape=(-4,))], b"abcd"), "bad dimension"),
    "bool dim": (_bundle_bytes([_t(shape=[True])], b"abcd"), "bad dimension"),
    "float dim": (_bundle_bytes([_t(shape=[4.0])], b"abcd"), "bad dimension"),
    "absurd shape": (_bundle_bytes([_t(shape=(2**62, 2**62, 4))], b"abcd"), "elements"),
    "absurd shape with zero": (_bundle_bytes([_t(shape=(0, 2**40, 2**40), length=0)], b""), "elements"),
    "shape/length mismatch": (_bundle_bytes([_t(shape=(3,))], b"abcd"), "length"),
    "length past data": (_bundle_bytes([_t(shape=(8,), length=8)], b"abcd"), "outside"),
    "huge length": (_bundle_bytes([_t(shape=(2**32,), length=2**32)], b"abcd"), "outside"),
    "negative offset": (_bundle_bytes([_t(offset=-64)], b"abcd"), "non-negative"),
    "unaligned offset": (_bundle_bytes([_t(offset=1, shape=(3,), length=3)], b"abcd"), "unaligned"),
    "offset past data": (_bundle_bytes([_t(offset=128)], b"abcd"), "outside"),
    "overlap": (_bundle_bytes([_t(), _t(name="b", shape=(2,), length=2)], b"abcd"), "overlap"),
    "duplicate name": (_bundle_bytes([_t(), _t(offset=64)], b"abcd" + bytes(64)), "duplicate"),
    "trailing data": (_bundle_bytes([_t()], b"abcdef"), "data ends"),
    "data before header end": (_bundle_bytes([], header={"tensors": [], "meta": {}})[:20], "header length"),
    "quant on float": (_bundle_bytes([_t(dtype="f32", shape=(1,), quant=_q())], b"abcd"), "integer dtype"),
    "quant bits": (_bundle_bytes([_t(quant=_q(bits=9))], b"abcd"), "bits"),
    "quant bits type": (_bundle_bytes([_t(quant=_q(bits=8.0))], b"abcd"), "bits"),
    "quant axis": (_bundle_bytes([_t(quant=_q(axis=1))], b"abcd"), "axis"),
    "quant axis type": (_bundle_bytes([_t(quant=_q(axis="0"))], b"abcd"), "axis"),
    "quant scale length": (_bundle_bytes([_t(quant=_q(axis=0))], b"abcd"), "need 4 values"),
    "quant scale odd bytes": (_bundle_bytes([_t(quant=_q(scale=b"\x00" * 3))], b"abcd"), "float32"),
    "quant scale not bin": (_bundle_bytes([_t(quant=_q(scale=[1.0]))], b"abcd"), "float32"),
    "quant scale nan": (_bundle_bytes([_t(quant=_q(scale=b"\x00\x00\xc0\x7f"))], b"abcd"), "finite"),
    "quant keys": (_bundle_bytes([_t(quant={"bits": 8})], b"abcd"), "quant must be a map"),
    "msgpack bomb": (TENSOR_PREFIX.pack(TENSOR_MAGIC, 5) + b"\xdd\xff\xff\xff\xff", "msgpack"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_BUNDLES))
def test_hostile_tensor_bundles(case: str) -> None:
    payload, message = HOSTILE_BUNDLES[case]
    with pytest.raises(FormatError, match=message):
        unpack_tensors(payload)


def test_hostile_bundle_helpers_make_valid_bundles() -> None:
    bundle = unpack_tensors(_bundle_bytes([_t(quant=_q())], b"abcd"))
    assert bundle.tensors["a"].tolist() == list(b"abcd") and bundle.quant["a"].scale.tolist() == [1.0]


def test_read_tensors_names_the_section(tmp_path: Path) -> None:
    path = tmp_path / "t.nvp"
    write_nvp(path, [Section("block/0", SectionKind.INR_BLOCK, HOSTILE_BUNDLES["overlap"][0])])
    with NvpReader(path) as r, pytest.raises(FormatError) as exc:
        r.read_tensors("block/0")
    assert exc.value.section == "block/0"
    with pytest.raises(FormatError, match="overlap"):
        verify_nvp(path)


# ---------------------------------------------------------------- verify


def _small_two_generation_file(path: Path) -> None:
    write_nvp(path, [
        Section("video", SectionKind.VIDEO, pack_msgpack({"width": 4, "height": 2})),
        Section("block/0", SectionKind.INR_BLOCK,
                pack_tensors({"w": np.arange(6, dtype=np.uint8)}, {"w": QuantParams(8, None, [0.5], [1])})),
        Section("raw", 500, b"raw bytes here", Codec.RAW),
    ])
    append_nvp(path, [Section("routing", SectionKind.ROUTING, pack_msgpack({"tasks": {}}), Codec.RAW)])


def test_verify_report(tmp_path: Path) -> None:
    path = tmp_path / "v.nvp"
    _small_two_generation_file(path)
    report = verify_nvp(path)
    assert report["generation"] == 2 and report["generations_checked"] == 2 and report["sections"] == 4
    assert report["bytes"] == path.stat().st_size and report["version"] == "1.0" and report["ok"]


def test_verify_detects_every_single_byte_flip(tmp_path: Path) -> None:
    path = tmp_path / "v.nvp"
    _small_two_generation_file(path)
    good = path.read_bytes()
    bad = tmp_path / "bad.nvp"
    undetected = []
    for pos in range(len(good)):
        mutated = bytearray(good)
        mutated[pos] ^= 1 << (pos % 8)
        bad.write_bytes(mutated)
        try:
            verify_nvp(bad)
        except FormatError:
            continue
        undetected.append(pos)
    assert undetected == []


def _append_raw_generation(path: Path, sections: list[SectionInfo], *, prev: int | None = None,
                           prefix_crc: int | None = None) -> None:
    with NvpReader(path) as r:
        state = r.index_state
    data = path.read_bytes()
    data += bytes(-len(data) % 64)
    index = encode_index(state.generation + 1, state.trailer_offset if prev is None else prev,
                         zlib.crc32(data) if prefix_crc is None else prefix_crc, sections, [])
    path.write_bytes(data + index + encode_trailer(len(data), index, state.generation + 1))


def test_verify_detects_section_inside_an_old_index(tmp_path: Path) -> None:
    path = tmp_path / "v.nvp"
    write_nvp(path, [Section("a", 1, b"abc", Codec.RAW)])
    with NvpReader(path) as r:
        st = r.index_state
    old_index = path.read_bytes()[st.index_offset:st.end]
    _append_raw_generation(path, [SectionInfo("ghost", 500, 0, st.index_offset, len(old_index), len(old_index),
                                              zlib.crc32(old_index))])
    with NvpReader(path) as r:
        assert r.read("ghost") == old_index
    with pytest.raises(FormatError, match="overlaps an index") as exc:
        verify_nvp(path)
    assert exc.value.section == "ghost"


def test_verify_detects_broken_chain_and_prefix_checksum(tmp_path: Path) -> None:
    path = tmp_path / "v.nvp"
    write_nvp(path, [Section("a", 1, b"abc", Codec.RAW)])
    original = path.read_bytes()
    _append_raw_generation(path, [], prev=64)
    with pytest.raises(FormatError, match="invalid previous trailer"):
        verify_nvp(path)
    path.write_bytes(original)
    _append_raw_generation(path, [], prefix_crc=12345)
    NvpReader(path).close()
    with pytest.raises(FormatError, match="file checksum"):
        verify_nvp(path)


def test_compact_keeps_live_sections_drops_old_generations(tmp_path):
    from nvcodec.container import compact_nvp

    path = tmp_path / "c.nvp"
    write_nvp(path, _sections())
    append_nvp(path, [Section("empty-z", 4001, b"x" * 5000)])
    append_nvp(path, [Section("extra", 4002, b"y" * 100)], remove=["empty"])
    live = _contents(path)
    size = path.stat().st_size
    r = compact_nvp(path)
    assert r == {"bytes_before": size, "bytes_after": path.stat().st_size} and r["bytes_after"] < size
    assert _contents(path) == live
    with NvpReader(path) as rd:
        assert rd.generation == 1
    assert verify_nvp(path)["ok"]
    append_nvp(path, [Section("after", 4003, b"z")])
    assert "after" in _contents(path)


def test_compact_failure_leaves_the_file_untouched(tmp_path, monkeypatch):
    from nvcodec.container import compact_nvp

    path = tmp_path / "c.nvp"
    write_nvp(path, _sections())
    append_nvp(path, [Section("empty-z", 4001, b"x" * 5000)])
    before = path.read_bytes()

    def boom(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer_module.os, "replace", boom)
    with pytest.raises(OSError):
        compact_nvp(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.nvp"]


def test_check_nvp_names_every_damaged_section(tmp_path: Path) -> None:
    from nvcodec.container import check_nvp

    path = tmp_path / "v.nvp"
    _small_two_generation_file(path)
    with NvpReader(path) as r:
        block, raw = r.info("block/0"), r.info("raw")
    data = bytearray(path.read_bytes())
    data[block.offset + 2] ^= 0x10
    data[raw.offset] ^= 0x01
    path.write_bytes(bytes(data))
    report = check_nvp(path)
    assert not report["ok"] and report["problem_count"] == 2
    assert [(p["section"], p["start"], p["end"]) for p in report["problems"]] == [
        ("block/0", block.offset, block.offset + block.stored_length),
        ("raw", raw.offset, raw.offset + raw.stored_length)]
    with pytest.raises(FormatError, match=r"section 'block/0' \(inr_block\) at bytes .*1 more") as exc:
        verify_nvp(path)
    assert exc.value.section == "block/0" and exc.value.offset == block.offset


def test_check_nvp_names_a_damaged_superseded_section(tmp_path: Path) -> None:
    from nvcodec.container import check_nvp

    path = tmp_path / "v.nvp"
    write_nvp(path, [Section("routing", SectionKind.ROUTING, pack_msgpack({"tasks": {}}), Codec.RAW)])
    with NvpReader(path) as r:
        old = r.info("routing")
    append_nvp(path, [Section("routing", SectionKind.ROUTING, pack_msgpack({"tasks": {"a": 1}}), Codec.RAW)])
    data = bytearray(path.read_bytes())
    data[old.offset] ^= 0x01
    path.write_bytes(bytes(data))
    (p,) = check_nvp(path)["problems"]
    assert (p["section"], p["superseded"], p["generation"], p["start"]) == ("routing", True, 1, old.offset)


def test_check_nvp_damage_outside_sections_is_padding(tmp_path: Path) -> None:
    from nvcodec.container import check_nvp

    path = tmp_path / "v.nvp"
    write_nvp(path, [Section("a", 500, b"abc", Codec.RAW)])
    with NvpReader(path) as r:
        a = r.info("a")
    data = bytearray(path.read_bytes())
    data[a.offset + a.stored_length] ^= 0x01
    path.write_bytes(bytes(data))
    (p,) = check_nvp(path)["problems"]
    assert p["region"] == "padding or an older index" and "every section inside is intact" in p["message"]
