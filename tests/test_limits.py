"""Issue 13: resource limits enforced before work is done, ENOSPC, and smaller robustness items.

Hostile files are built with the crafting helpers of `benchmarks/attack.py` (which runs the same
classes of files through the CLI and records RSS and CPU).
"""

from __future__ import annotations

import builtins
import errno
import importlib
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zstandard

import nvcodec
from nvcodec.codec import export
from nvcodec.codec.encode import EncodeOptions, encode
from nvcodec.codec.info import describe
from nvcodec.codec.meta import read_routing
from nvcodec.container import (
    Codec, NvpReader, Section, SectionKind, append_nvp, pack_msgpack, pack_tensors, verify_nvp, write_nvp,
)
from nvcodec.container import reader as reader_module
from nvcodec.container.layout import DICT_FEATURE
from nvcodec.errors import EXIT_CODES, FormatError, InputError, NoSpaceError, UsageError
from nvcodec.tasks.attach import attach
from nvcodec.tasks.infer import infer
from nvcodec.video import probe_video, read_frames, write_y4m
from nvcodec.video import writer as video_writer
from nvcodec.video import png as png_module

from conftest import ROOT, synthetic_frames, write_clip

_spec = importlib.util.spec_from_file_location("attack", os.path.join(ROOT, "benchmarks", "attack.py"))
attack = importlib.util.module_from_spec(_spec)
sys.modules["attack"] = attack
_spec.loader.exec_module(attack)

GiB, MiB = 1 << 30, 1 << 20
TINY = "random-tiny"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    d = tmp_path_factory.mktemp("limits")
    clip = write_clip(str(d / "c.mp4"), synthetic_frames(3, 16, 24))
    plain = d / "good.nvp"
    encode(clip, str(plain), EncodeOptions(psnr=None, epochs=2, params=3000, device="cpu"))
    attached = d / "attached.nvp"
    shutil.copy(plain, attached)
    attach(str(attached), "resnet50", weights=TINY, top_k=0.2, epochs=1, device="cpu")
    return attack.Good(plain, attached, attack.sections_of(attached))


def _craft(good, tmp_path, *new, drop=()):
    return attack.craft(tmp_path / "h.nvp", attack.replaced(good.sections, *new, drop=drop))


@pytest.fixture
def no_decompression(monkeypatch):
    """Fail the test if anything decompresses more than 1 MiB (small metadata sections may be read)."""
    real = zstandard.ZstdDecompressor

    class Guard:
        def __init__(self, *args, **kwargs):
            self.inner = real(*args, **kwargs)

        def decompress(self, data, max_output_size=0):
            assert 0 < max_output_size <= MiB, f"decompressing up to {max_output_size} bytes"
            return self.inner.decompress(data, max_output_size=max_output_size)

        def stream_reader(self, data, **kwargs):
            assert zstandard.frame_content_size(data) <= MiB, "streaming a large frame"
            return self.inner.stream_reader(data, **kwargs)

    monkeypatch.setattr(zstandard, "ZstdDecompressor", Guard)


# ---------------------------------------------------------------- zstd bombs

def test_bomb_beyond_the_expansion_limit_is_refused_before_decoding(good, tmp_path, no_decompression):
    path = _craft(good, tmp_path, attack.zstd_zeros("x/bomb", 4242, GiB))
    describe(path)  # info never reads unknown sections
    with NvpReader(path) as r:
        with pytest.raises(FormatError, match="1024x") as exc:
            list(r.iter_read("x/bomb"))
        assert exc.value.section == "x/bomb"
        with pytest.raises(FormatError, match="accepts"):
            r.read("x/bomb")
    with pytest.raises(FormatError, match="1024x"):
        verify_nvp(path)


@pytest.mark.parametrize("name, kind", [("video", SectionKind.VIDEO), ("model", SectionKind.MODEL),
                                        ("provenance", SectionKind.PROVENANCE), ("routing", SectionKind.ROUTING)])
def test_metadata_bombs_are_refused_by_their_declared_size(good, tmp_path, no_decompression, name, kind):
    path = _craft(good, tmp_path, attack.zstd_zeros(name, kind, 4 * MiB, 4096))
    with pytest.raises(FormatError, match="this reader accepts") as exc:
        describe(path)
    assert exc.value.section == name


def test_tensor_bomb_is_refused_by_the_model_shapes(good, tmp_path, no_decompression):
    path = _craft(good, tmp_path, attack.zstd_zeros("block/0", SectionKind.INR_BLOCK, 64 * MiB, 64 * 1024))
    with nvcodec.open(path) as v, pytest.raises(FormatError, match="this reader accepts") as exc:
        v.frames([0])
    assert exc.value.section == "block/0"


def test_adapter_bomb_is_refused_by_the_read_cap(good, tmp_path):
    path = _craft(good, tmp_path, attack.zstd_zeros("adapter/resnet50", SectionKind.ADAPTER, 64 * MiB, 64 * 1024))
    with pytest.raises(FormatError, match="this reader accepts") as exc:
        infer(str(path), ["resnet50"], weights=TINY, frames=(0, 1), device="cpu")
    assert exc.value.section == "adapter/resnet50"


def test_reader_cap_scales_with_the_file(good, tmp_path):
    path = _craft(good, tmp_path, attack.zstd_zeros("x/big", 4242, 32 * MiB, 32 * 1024))
    with NvpReader(path) as r:
        assert r.max_read_bytes == reader_module.READ_FLOOR
        with pytest.raises(FormatError, match="this reader accepts"):
            r.read("x/big")
        assert sum(len(piece) for piece in r.iter_read("x/big")) == 32 * MiB


def test_verify_streams_sections_in_bounded_memory(good, tmp_path):
    data = np.zeros(48 * MiB, np.uint8)
    data[:48 * 1024] = np.random.default_rng(0).integers(0, 256, 48 * 1024)
    bundle = pack_tensors({"w": data}, meta={"kind": "future"})
    sections = good.sections + [attack.zstd("x/tensors", SectionKind.ADAPTER, bundle),
                                attack.zstd_zeros("x/unknown", 4242, 48 * MiB, 48 * 1024)]
    del data, bundle
    path = attack.craft(tmp_path / "big.nvp", sections)
    assert path.stat().st_size < 1_000_000
    tracemalloc.start()
    try:
        report = verify_nvp(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report["ok"] and report["raw_bytes"] > 96 * MiB
    assert peak < 12 * MiB


def test_verify_still_checks_streamed_tensor_bundles(good, tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8)
    payload = bytearray(pack_tensors({"w": data}))
    payload[:4] = b"XXXX"
    path = attack.craft(tmp_path / "t.nvp", good.sections + [attack.zstd("x/t", SectionKind.ADAPTER, bytes(payload))])
    with pytest.raises(FormatError, match="magic"):
        verify_nvp(path)
    cut = pack_tensors({"w": data})[:-1]
    path = attack.craft(tmp_path / "t.nvp", good.sections + [attack.zstd("x/t", SectionKind.ADAPTER, cut)])
    with pytest.raises(FormatError, match="data"):
        verify_nvp(path)


def test_writer_stores_too_compressible_payloads_raw(tmp_path):
    path = tmp_path / "z.nvp"
    write_nvp(path, [Section("zeros", 4242, bytes(8 * MiB)), Section("text", 4242, b"abc" * 1000)])
    with NvpReader(path) as r:
        assert r.info("zeros").codec == Codec.RAW and r.info("text").codec == Codec.ZSTD
        assert r.read("zeros") == bytes(8 * MiB)
    verify_nvp(path)


# ---------------------------------------------------------------- msgpack amplification

def test_each_msgpack_section_is_parsed_once(good, monkeypatch):
    calls = []
    real = reader_module.unpack_msgpack
    monkeypatch.setattr(reader_module, "unpack_msgpack", lambda *a, **k: calls.append(1) or real(*a, **k))
    describe(good.attached)
    with nvcodec.open(good.attached) as v:
        v.frames([0])
    assert len(calls) <= 2 * 5  # video, model, routing, provenance: once per open file


def test_many_msgpack_sections_share_one_budget(good, tmp_path):
    extra = [attack.raw(f"meta/{i}", SectionKind.PROVENANCE, attack._list_of_empty_lists(90_000)) for i in range(10)]
    path = attack.craft(tmp_path / "m.nvp", good.sections + extra)
    with pytest.raises(FormatError, match="maps and arrays"):
        verify_nvp(path)


def test_deep_nesting(good, tmp_path):
    path = _craft(good, tmp_path, attack.raw("video", SectionKind.VIDEO, b"\x91" * 64 + b"\x90"))
    with pytest.raises(FormatError, match="nesting"):
        describe(path)
    path = _craft(good, tmp_path, attack.raw("video", SectionKind.VIDEO, b"\x91" * 63 + b"\x90"))
    with pytest.raises(FormatError, match="must be a map"):
        describe(path)


def test_huge_segment_table_fails_fast(good, tmp_path):
    n = 65536
    video = {**good.meta("video"), "frames": n, "source_frames": [0, n]}
    table = {"segments": [{"start": i, "stop": i + 1, "prefix": ""} for i in range(n)]}
    path = _craft(good, tmp_path, attack.zstd("video", SectionKind.VIDEO, pack_msgpack(video)),
                  attack.zstd("segments", SectionKind.SEGMENTS, msgpack.packb(table)))
    with pytest.raises(FormatError, match="accepts") as exc:
        describe(path)
    assert exc.value.section == "segments"


@pytest.mark.parametrize("segments, message", [
    ([{"start": 0, "stop": 1, "prefix": ""}, {"start": 1, "stop": 3, "prefix": ""}], "out of range"),
    ([{"start": 0, "stop": 3, "prefix": "s/"}], "no model section"),
])
def test_segment_tables_must_name_distinct_models(good, tmp_path, segments, message):
    path = _craft(good, tmp_path, attack.zstd("segments", SectionKind.SEGMENTS, msgpack.packb({"segments": segments})))
    with pytest.raises(FormatError, match=message):
        describe(path)


# ---------------------------------------------------------------- model vs video

def _model(good, **changes):
    return attack.zstd("model", SectionKind.MODEL, pack_msgpack({**good.meta("model"), **changes}))


def test_model_must_decode_the_video_size(good, tmp_path):
    m = good.meta("model")
    doubled = {k: 2 * m[k] for k in ("width", "height", "pad_width", "pad_height", "embed_width", "embed_height")}
    path = _craft(good, tmp_path, _model(good, **doubled))
    for open_it in (describe, nvcodec.open):
        with pytest.raises(FormatError, match="the video section says") as exc:
            open_it(path)
        assert exc.value.section == "model"


def test_model_must_hold_its_segment_frames(good, tmp_path):
    path = _craft(good, tmp_path, _model(good, num_frames=300))
    with pytest.raises(FormatError, match="its segment 3"):
        nvcodec.open(path)


def test_model_larger_than_the_video_needs(good, tmp_path):
    channels = [2048] * len(good.meta("model")["channels"])
    path = _craft(good, tmp_path, _model(good, channels=channels))
    with pytest.raises(FormatError, match="needs|parameters"):
        describe(path)


def test_encode_refuses_a_model_readers_would_refuse(tmp_path):
    clip = write_clip(str(tmp_path / "c.mp4"), synthetic_frames(2, 16, 16))
    with pytest.raises(UsageError, match="larger than the video needs"):
        encode(clip, str(tmp_path / "o.nvp"), EncodeOptions(psnr=None, epochs=1, params=5e8, device="cpu"))
    assert sorted(os.listdir(tmp_path)) == ["c.mp4"]


def test_block_section_too_small_for_the_model(good, tmp_path):
    """Without `tensor-rans` every value takes at least a byte (with it, coded tensors may take almost none)."""
    tiny = pack_tensors({"w": np.zeros(1, np.float16)}, meta={"block": 0})
    sections = attack.replaced(good.sections, attack.zstd("block/0", SectionKind.INR_BLOCK, tiny))
    path = attack.craft(tmp_path / "h.nvp", sections, features=(DICT_FEATURE,))
    with nvcodec.open(path) as v, pytest.raises(FormatError, match="too few") as exc:
        v.frames([0])
    assert exc.value.section == "block/0"


@pytest.mark.parametrize("name", ["coded_huge_shape", "coded_garbled_words", "coded_huge_tables",
                                  "coded_without_feature"])
def test_hostile_coded_sections(good, tmp_path, name):
    """attack.py's entropy-coded cases: decoding is refused with exit 3 naming the section, verify as listed."""
    case = next(c for c in attack.CASES if c.name == name)
    path = case.build(good, tmp_path / "h.nvp")
    coded_name = attack.coded_section(good)[0]
    try:
        verify_nvp(path)
        verify_code = 0
    except FormatError:
        verify_code = 3
    assert verify_code in case.allowed("verify")
    with nvcodec.open(path) as v, pytest.raises(FormatError) as exc:
        v.frames([0])
    assert exc.value.exit_code == 3
    if name == "coded_without_feature":  # every coded section lacks the feature: the first one decoding reads
        assert "tensor-rans" in str(exc.value) and exc.value.section in {s.name for s in good.sections if s.name.startswith(
            ("block/", "head", "embeddings"))}
    else:
        assert exc.value.section == coded_name


def test_good_file_with_a_coded_section_decodes_as_before(good, tmp_path):
    name, kind, payload = attack.coded_section(good)
    path = attack.craft(tmp_path / "c.nvp", attack.replaced(good.sections, attack.zstd(name, kind, payload)))
    verify_nvp(path)
    with nvcodec.open(path) as v, nvcodec.open(good.plain) as ref:
        assert np.array_equal(v.frames([0, 1]), ref.frames([0, 1]))


# ---------------------------------------------------------------- routing

def _routing(good, **changes):
    routing = good.meta("routing")
    routing["tasks"]["resnet50"].update(changes)
    return attack.zstd("routing", SectionKind.ROUTING, pack_msgpack(routing))


@pytest.mark.parametrize("changes, message", [
    ({"inr_layer": True}, "inr_layer"),
    ({"inr_layer": -1}, "inr_layer"),
    ({"inr_layer": 1.0}, "inr_layer"),
    ({"injection_point": 3}, "injection_point"),
    ({"sample_frames": [10**9]}, "sample_frames"),
    ({"sample_frames": [0, True]}, "sample_frames"),
])
def test_hostile_routing_is_a_format_error(good, tmp_path, changes, message):
    path = _craft(good, tmp_path, _routing(good, **changes))
    with pytest.raises(FormatError, match=message):
        describe(path)
    with pytest.raises(FormatError, match=message):
        infer(str(path), ["resnet50"], weights=TINY, frames=(0, 1), device="cpu")


def test_read_routing_returns_a_copy(good):
    with NvpReader(good.attached) as r:
        first = read_routing(r)
        first["tasks"]["resnet50"]["inr_layer"] = 99
        first["tasks"]["other"] = {}
        assert read_routing(r)["tasks"].keys() == {"resnet50"}
        assert read_routing(r)["tasks"]["resnet50"]["inr_layer"] != 99


def test_info_json_has_no_bare_nan(good, tmp_path):
    prov = {**good.meta("provenance"), "psnr": math.nan, "ssim": math.inf, "psnr_min": -math.inf,
            "psnr_frame_mean": math.nan}
    routing = good.meta("routing")
    routing["tasks"]["resnet50"]["cka"] = math.nan
    path = _craft(good, tmp_path, attack.zstd("provenance", SectionKind.PROVENANCE, msgpack.packb(prov)),
                  attack.zstd("routing", SectionKind.ROUTING, msgpack.packb(routing)))
    r = describe(path)
    assert r["quality"] == {"psnr": None, "psnr_frame_mean": None, "psnr_min": None, "ssim": None}
    assert r["tasks"][0]["cka"] is None
    rc, out, err = _cli("info", str(path), "--json")
    assert rc == 0, err

    def refuse(constant):
        raise AssertionError(f"bare {constant} in JSON")
    json.loads(out, parse_constant=refuse)


def test_print_json_replaces_non_finite_numbers(capsys):
    from nvcodec_cli.render import print_json

    print_json({"a": math.nan, "b": [math.inf, 1.5], "c": np.float32("nan")})
    assert json.loads(capsys.readouterr().out) == {"a": None, "b": [None, 1.5], "c": None}


# ---------------------------------------------------------------- disk full

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_no_space_error_is_documented():
    err = NoSpaceError("/x/out.nvp")
    assert err.exit_code == 1 and str(err) == "no space left on device: /x/out.nvp"
    assert "no space left on device" in EXIT_CODES[1]
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert "no space left on device" in readme


def test_write_nvp_disk_full_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "a.nvp"
    write_nvp(path, [Section("x", 4242, b"old")])
    before = path.read_bytes()
    monkeypatch.setattr(os, "pwrite", _enospc)
    for target in (path, tmp_path / "new.nvp"):
        with pytest.raises(NoSpaceError, match=f"no space left on device: {target}"):
            write_nvp(target, [Section("x", 4242, b"new" * 1000)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nvp"] and path.read_bytes() == before


def test_append_disk_full_leaves_the_file_unchanged(tmp_path, monkeypatch):
    path = tmp_path / "a.nvp"
    write_nvp(path, [Section("x", 4242, b"old")])
    before = path.read_bytes()
    real = os.pwrite
    calls = []

    def fail_late(fd, data, offset):
        calls.append(1)
        if len(calls) > 2:
            _enospc()
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", fail_late)
    with pytest.raises(NoSpaceError):
        append_nvp(path, [Section("y", 4242, os.urandom(5000)), Section("z", 4242, b"z")])
    assert path.read_bytes() == before
    verify_nvp(path)


def test_attach_disk_full(good, tmp_path, monkeypatch):
    path = tmp_path / "p.nvp"
    shutil.copy(good.plain, path)
    before = path.read_bytes()
    monkeypatch.setattr(os, "pwrite", _enospc)
    with pytest.raises(NoSpaceError, match=str(path)):
        attach(str(path), "resnet50", weights=TINY, top_k=0.2, epochs=1, device="cpu")
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["p.nvp"]


def _failing_open(real_open):
    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            _enospc()

        def __getattr__(self, name):
            return getattr(self.fh, name)

    def fake(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        return Full(fh) if "w" in mode else fh
    return fake


def test_view_disk_full_leaves_no_output(good, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(video_writer, "open", _failing_open(builtins.open), raising=False)
    monkeypatch.setattr(png_module, "open", _failing_open(builtins.open), raising=False)
    with nvcodec.open(good.plain) as v:
        with pytest.raises(NoSpaceError, match="frames"):
            export.export_frames(v, str(out / "frames") + "/", device="cpu")
        with pytest.raises(NoSpaceError, match="sheet.png"):
            export.frame_sheet(v, str(out / "sheet.png"), device="cpu")
        real = video_writer._open_output
        monkeypatch.setattr(video_writer, "_open_output", lambda tmp, fmt, target, opts: real(
            Path("/dev/full"), fmt, target, opts))
        for name in ("v.mp4", "v.y4m"):
            with pytest.raises(NoSpaceError, match=name):
                export.export_frames(v, str(out / name), device="cpu")
    assert os.listdir(out) == []


def test_fit_checkpoint_disk_full_removes_its_temp(tmp_path, monkeypatch):
    fit_module = importlib.import_module("nvcodec.inr.fit")
    monkeypatch.setattr(fit_module, "open", _failing_open(builtins.open), raising=False)
    with pytest.raises(NoSpaceError, match="seg0.pt"):
        fit_module._save_checkpoint(str(tmp_path / "seg0.pt"), {"format": "x"})
    assert os.listdir(tmp_path) == []


def _cli(*args, cwd=None):
    env = {**os.environ, "NVCODEC_DEBUG": ""}
    p = subprocess.run([sys.executable, "-m", "nvcodec_cli.main", *args], capture_output=True, text=True, env=env,
                       cwd=cwd, timeout=300)
    return p.returncode, p.stdout, p.stderr


def _tmpfs_available() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k none /tmp && echo ok"],
                           capture_output=True, text=True)
    return probe.stdout.strip() == "ok"


def _page_aligned(src: Path, dst: Path, page: int = 4096) -> Path:
    """`src` plus an unknown-kind RAW padding section, sized so the file ends on a page boundary.

    tmpfs allocates whole pages: without this, a small append fits in the slack of the file's
    last page and never meets the full disk.
    """
    sections = attack.sections_of(src)
    for extra in range(256):
        name = "x/pad" + "p" * extra
        for pad in (0, None):
            if pad is None:
                pad = -dst.stat().st_size % page
            attack.craft(dst, sections + [attack.raw(name, 4242, bytes(pad))])
            if not dst.stat().st_size % page:
                return dst
    raise AssertionError("could not page-align the test file")


@pytest.mark.skipif(not _tmpfs_available(), reason="needs unshare -rm and tmpfs mounts in a user namespace")
def test_cli_on_a_full_tmpfs(good, tmp_path):
    """Real ENOSPC: each command writes into a full 64 KiB tmpfs mounted in a private namespace."""
    clip = write_clip(str(tmp_path / "c.mp4"), synthetic_frames(3, 16, 24))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    aligned = _page_aligned(good.plain, tmp_path / "aligned.nvp")
    verify_nvp(aligned)
    py = f"{sys.executable} -m nvcodec_cli.main"
    commands = {
        "encode": f"{py} encode {clip} {mnt}/o.nvp --params 3k --epochs 2 --psnr 99 --device cpu",
        "view_mp4": f"{py} view {good.plain} -o {mnt}/v.mp4 --device cpu",
        "view_y4m": f"{py} view {good.plain} -o {mnt}/v.y4m --device cpu",
        "view_frames": f"{py} view {good.plain} -o {mnt}/frames/ --device cpu",
        "sheet": f"{py} view {good.plain} --sheet {mnt}/s.png --device cpu",
        "attach": f"{py} attach {mnt}/a.nvp --task resnet50 --weights random-tiny --top-k 0.2 --epochs 1 --device cpu",
    }
    for name, command in commands.items():
        script = (f"mount -t tmpfs -o size=64k none {mnt} || exit 99; cp {aligned} {mnt}/a.nvp; "
                  f"sha1sum {mnt}/a.nvp > {tmp_path}/sum; head -c 65536 /dev/zero > {mnt}/fill 2>/dev/null; "
                  f"{command}; rc=$?; rm -f {mnt}/fill; sha1sum -c --quiet {tmp_path}/sum >&2 && rm {mnt}/a.nvp; "
                  f"echo rc=$rc >&2; ls -A {mnt} >&2")
        p = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "NVCODEC_DEBUG": ""})
        lines = [line for line in p.stderr.splitlines() if line.strip()]
        assert lines and lines[-1] == "rc=1", (name, p.stderr)
        assert lines[:-1] and all(line.startswith("nvcodec: error: no space left on device: ") for line in lines[:-1]), \
            (name, p.stderr)


# ---------------------------------------------------------------- y4m input

def test_y4m_with_a_last_frame_cut_short(tmp_path):
    path = tmp_path / "c.y4m"
    write_y4m(path, list(synthetic_frames(3, 8, 12)), 25, bit_depth=8)
    full = path.read_bytes()
    assert probe_video(path).frames == 3
    path.write_bytes(full[:-5])
    with pytest.raises(InputError, match="frame 2 is cut short"):
        read_frames(path)
    path.write_bytes(full + b"FRA")
    with pytest.raises(InputError, match="frame 3 has no FRAME header"):
        probe_video(path)


@pytest.mark.parametrize("header, message", [
    (b"YUV4MPEG2 W100000 H100000 F25:1 C420jpeg\nFRAME\n", "exceeds the supported maximum"),
    (b"YUV4MPEG2 H16 F25:1\nFRAME\n", "W or H"),
    (b"YUV4MPEG2 W16 H16 " + b"X" * 5000, "not terminated"),
])
def test_y4m_headers_checked_before_ffmpeg(tmp_path, header, message):
    path = tmp_path / "h.y4m"
    path.write_bytes(header)
    with pytest.raises(InputError, match=message):
        probe_video(path)
    rc, _, err = _cli("encode", str(path), str(tmp_path / "o.nvp"), "--epochs", "1")
    assert rc == 4 and message.split()[0] in err and "Traceback" not in err
