"""Attack harness: hostile `.nvp` files run through `nvcodec info/verify/view/infer`, resources recorded.

    python benchmarks/attack.py                 # writes results/attack.json and results/ATTACK.md
    python benchmarks/attack.py --only bomb     # cases whose name contains "bomb"

Builds one small good file (a synthetic 12-frame 24x40 clip, encoded with `hinerv`'s fine base grid,
with resnet50 attached on a tiny random backbone), then hostile variants of it, each under 1 MB: zstd
bombs in every kind of section (beyond and within the 1024x expansion limit), msgpack with many
values, deep nesting, huge segment tables and indexes, a bundle with thousands of tensors, hostile
model, routing and adapter metadata, NaN quality figures, truncations. Every command runs in its own process
(OMP_NUM_THREADS=1); per run: exit code, whether stderr is one line without a traceback, peak RSS
(the child's own VmHWM, written at exit) and CPU seconds (user + system, from `wait4`).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zstandard

from nvcodec.container import Codec, NvpReader, SectionKind, pack_msgpack, pack_tensors
from nvcodec.container.compression import dictionary_bytes
from nvcodec.container.index import encode_index, encode_trailer
from nvcodec.container.layout import (
    DICT_FEATURE, FINE_GRID_FEATURE, MAGIC, MAJOR_VERSION, MID_GRID_FEATURE, MINOR_VERSION, PREAMBLE, RANS_FEATURE,
    TENSOR_ALIGNMENT, TENSOR_PREFIX, SectionInfo, align_up,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
GiB = 1 << 30
MiB = 1 << 20
RSS_TARGET_MIB = 256
CPU_TARGET_S = 1.0
TIMEOUT_S = 120


# ---------------------------------------------------------------- crafting files

@dataclass
class Stored:
    """A section as written: stored bytes, codec and the raw length the index declares."""

    name: str
    kind: int
    codec: int
    data: bytes
    raw_length: int


def raw(name: str, kind: int, payload: bytes) -> Stored:
    """A RAW section."""
    return Stored(name, int(kind), Codec.RAW, payload, len(payload))


def zstd(name: str, kind: int, payload: bytes, codec: int = Codec.ZSTD) -> Stored:
    """A ZSTD (or ZSTD_DICT: with the built-in dictionary) section, whatever its expansion (the writer
    would store it RAW beyond 1024x)."""
    zdict = None
    if codec == Codec.ZSTD_DICT:
        zdict = zstandard.ZstdCompressionDict(dictionary_bytes(), dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    frame = zstandard.ZstdCompressor(level=19, write_content_size=True, write_checksum=False, write_dict_id=False,
                                     dict_data=zdict).compress(payload)
    return Stored(name, int(kind), int(codec), frame, len(payload))


_FRAMES: dict[tuple[int, int], bytes] = {}


def zstd_zeros(name: str, kind: int, size: int, random_prefix: int = 0) -> Stored:
    """A ZSTD section decoding to `random_prefix` random bytes then zeros, `size` bytes in all.

    Without a prefix a 4 GiB frame is 131 KB; the random prefix keeps the stored size up, so that
    the frame stays within the 1024x expansion limit while still decoding to `size` bytes.
    """
    key = (size, random_prefix)
    if key not in _FRAMES:
        out = io.BytesIO()
        with zstandard.ZstdCompressor(level=1, write_content_size=True, write_checksum=False).stream_writer(
                out, size=size, closefd=False) as w:
            w.write(np.random.default_rng(0).integers(0, 256, random_prefix, dtype=np.uint8).tobytes())
            left, zeros = size - random_prefix, bytes(16 * MiB)
            while left:
                n = min(left, len(zeros))
                w.write(zeros[:n])
                left -= n
        _FRAMES[key] = out.getvalue()
    return Stored(name, int(kind), Codec.ZSTD, _FRAMES[key], size)


GOOD_FEATURES = (RANS_FEATURE, DICT_FEATURE, FINE_GRID_FEATURE, MID_GRID_FEATURE)
"""The required features the good file's sections need: coded bundles, the dictionary, the fine base grid,
the mid grid."""


def _without(feature: str) -> tuple[str, ...]:
    return tuple(f for f in GOOD_FEATURES if f != feature)


def craft(path: Path, sections: list[Stored], features: tuple[str, ...] = GOOD_FEATURES) -> Path:
    """Write `sections` as a generation-1 `.nvp` with correct CRCs (nothing else is checked).

    The index lists `features` (by default GOOD_FEATURES, what the good file's sections need)."""
    buf = bytearray(PREAMBLE.pack(MAGIC, MAJOR_VERSION, MINOR_VERSION, 0))
    infos = []
    for s in sections:
        buf += bytes(align_up(len(buf)) - len(buf))
        infos.append(SectionInfo(s.name, s.kind, s.codec, len(buf), len(s.data), s.raw_length, zlib.crc32(s.data)))
        buf += s.data
    buf += bytes(align_up(len(buf)) - len(buf))
    index = encode_index(1, 0, zlib.crc32(buf), infos, list(features))
    path.write_bytes(bytes(buf) + index + encode_trailer(len(buf), index, 1))
    return path


def sections_of(path: Path) -> list[Stored]:
    """The live sections of a file, as stored."""
    with NvpReader(path) as r:
        return [Stored(s.name, s.kind, s.codec, r.read_stored(s.name), s.raw_length) for s in r.sections]


def msgpack_of(path: Path, name: str) -> Any:
    with NvpReader(path) as r:
        return msgpack.unpackb(r.read(name), raw=False)


def replaced(good: list[Stored], *new: Stored, drop: tuple[str, ...] = ()) -> list[Stored]:
    """`good` with sections of the same names replaced by `new` (others appended), `drop` removed."""
    names = {s.name for s in new}
    out = [next(n for n in new if n.name == s.name) if s.name in names else s for s in good if s.name not in drop]
    return out + [n for n in new if n.name not in {s.name for s in good}]


# ---------------------------------------------------------------- the good file

@dataclass
class Good:
    plain: Path
    attached: Path
    sections: list[Stored] = field(default_factory=list)

    def meta(self, name: str) -> Any:
        return msgpack_of(self.attached, name)


def build_good(work: Path, task: str = "resnet50") -> Good:
    """Encode a 12-frame 24x40 synthetic clip with `hinerv`'s fine base grid (enough epochs to clear the
    degenerate-fit margin) and attach `task` (tiny random backbone)."""
    from nvcodec.codec.encode import EncodeOptions, encode
    from nvcodec.adapt.attach import attach
    from nvcodec.video import write_y4m

    yy, xx = np.mgrid[0:24, 0:40]
    frames = [np.stack([(xx * 6 + t * 9) % 256, (yy * 10) % 256, np.full_like(xx, 40 * t)], -1).astype(np.uint8)
              for t in range(12)]
    clip = work / "clip.y4m"
    write_y4m(clip, frames, 25)
    plain = work / "good.nvp"
    encode(str(clip), str(plain), EncodeOptions(psnr=None, epochs=80, params=6000, device="cpu", seed=0,
                                                fine_grid="on"))
    attached = work / "good_attached.nvp"
    shutil.copy(plain, attached)
    attach(str(attached), task, weights="random-tiny", top_k=0.2, epochs=1, device="cpu")
    return Good(plain, attached, sections_of(attached))


# ---------------------------------------------------------------- cases

@dataclass
class Case:
    name: str
    group: str
    what: str
    build: Callable[[Good, Path], Path]
    commands: tuple[str, ...] = ("info", "verify")
    expect: tuple[int, ...] = (3,)
    expect_by: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def allowed(self, command: str) -> tuple[int, ...]:
        """Exit codes that pass for `command`."""
        return self.expect_by.get(command, self.expect)


def _model_with(good: Good, **changes: Any) -> Stored:
    return zstd("model", SectionKind.MODEL, pack_msgpack({**good.meta("model"), **changes}))


def _doubled_model(good: Good) -> Stored:
    m = good.meta("model")
    keys = ("width", "height", "pad_width", "pad_height", "embed_width", "embed_height")
    return _model_with(good, **{k: 2 * m[k] for k in keys})


def _routing_with(good: Good, **changes: Any) -> Stored:
    routing = good.meta("routing")
    routing["tasks"]["resnet50"].update(changes)
    return zstd("routing", SectionKind.ROUTING, pack_msgpack(routing))


def _list_of_empty_lists(n: int) -> bytes:
    return b"\xdd" + struct.pack(">I", n) + b"\x90" * n


def _truncated(keep: Callable[[int], int]) -> Callable[[Good, Path], Path]:
    def build(good: Good, path: Path) -> Path:
        data = good.attached.read_bytes()
        path.write_bytes(data[:keep(len(data))])
        return path
    return build


def _many_sections(good: Good, path: Path) -> Path:
    return craft(path, good.sections + [raw(f"x/{i}", 4242, b"") for i in range(20000)])


def _huge_bundle(good: Good, path: Path) -> Path:
    tensors = {f"t{i}": np.zeros(1, np.uint8) for i in range(12000)}
    return craft(path, replaced(good.sections, zstd("block/0", SectionKind.INR_BLOCK, pack_tensors(tensors))))


def _segments_same_prefix(good: Good, path: Path) -> Path:
    n = 65536
    video = {**good.meta("video"), "frames": n, "source_frames": [0, n]}
    table = {"segments": [{"start": i, "stop": i + 1, "prefix": ""} for i in range(n)]}
    return craft(path, replaced(good.sections, zstd("video", SectionKind.VIDEO, pack_msgpack(video)),
                                zstd("segments", SectionKind.SEGMENTS, msgpack.packb(table))))


def _segments_without_models(good: Good, path: Path) -> Path:
    table = {"segments": [{"start": i, "stop": i + 1, "prefix": f"s{i}/"} for i in range(6)]}
    return craft(path, replaced(good.sections, zstd("segments", SectionKind.SEGMENTS, msgpack.packb(table))))


def _msgpack_many_sections(good: Good, path: Path) -> Path:
    extra = [raw(f"meta/{i}", SectionKind.PROVENANCE, _list_of_empty_lists(90_000)) for i in range(10)]
    return craft(path, good.sections + extra)


def _nan_provenance(good: Good, path: Path) -> Path:
    prov = {**good.meta("provenance"), "psnr": math.nan, "ssim": math.inf}
    routing = good.meta("routing")
    routing["tasks"]["resnet50"]["cka"] = math.nan
    return craft(path, replaced(good.sections, zstd("provenance", SectionKind.PROVENANCE, msgpack.packb(prov)),
                                zstd("routing", SectionKind.ROUTING, msgpack.packb(routing))))


def coded_section(good: Good) -> tuple[str, int, bytes]:
    """(name, kind, payload) of the good file's first section holding an entropy-coded tensor, or, where
    the writer kept every section raw (zstd won), its embeddings re-packed rANS-coded (same values)."""
    from nvcodec.container import unpack_tensors

    with NvpReader(good.plain) as r:
        for s in r.sections:
            if s.kind in (SectionKind.INR_BLOCK, SectionKind.INR_HEAD, SectionKind.EMBEDDINGS):
                payload = r.read(s.name)
                if any("coding" in e for e in split_bundle(payload)[0]["tensors"]):
                    return s.name, s.kind, payload
        bundle = unpack_tensors(r.read("embeddings"))
    payload = pack_tensors(bundle.tensors, bundle.quant, bundle.meta, entropy="rans")
    if not any("coding" in e for e in split_bundle(payload)[0]["tensors"]):
        raise RuntimeError("the good file's embeddings do not entropy-code")
    return "embeddings", SectionKind.EMBEDDINGS, payload


def split_bundle(payload: bytes) -> tuple[dict, bytes]:
    """(msgpack header, data region) of a tensor bundle."""
    _, n = TENSOR_PREFIX.unpack_from(payload, 0)
    header = msgpack.unpackb(payload[8:8 + n], raw=False)
    return header, payload[align_up(8 + n, TENSOR_ALIGNMENT):]


def join_bundle(header: dict, data: bytes) -> bytes:
    """A tensor bundle from a (possibly hostile) header and data region, as-is."""
    raw_header = msgpack.packb(header, use_bin_type=True)
    head = TENSOR_PREFIX.pack(b"NVPT", len(raw_header)) + raw_header
    return head + bytes(align_up(len(head), TENSOR_ALIGNMENT) - len(head)) + data


def _coded_case(change: Callable[[dict, bytes], tuple[dict, bytes]],
                features: tuple[str, ...] = GOOD_FEATURES) -> Callable[[Good, Path], Path]:
    """The good file with its first coded tensor section's header and data changed by `change`."""
    def build(good: Good, path: Path) -> Path:
        name, kind, payload = coded_section(good)
        header, data = change(*split_bundle(payload))
        return craft(path, replaced(good.sections, zstd(name, kind, join_bundle(header, data))), features)
    return build


def _first_coded(header: dict) -> dict:
    return next(e for e in header["tensors"] if "coding" in e)


def _huge_coded_shape(header: dict, data: bytes) -> tuple[dict, bytes]:
    _first_coded(header)["shape"] = [1 << 16, 1 << 15]
    return header, data


def _garbled_words(header: dict, data: bytes) -> tuple[dict, bytes]:
    e = _first_coded(header)
    start, end = e["offset"], e["offset"] + e["length"]
    rng = np.random.default_rng(1)
    return header, data[:start] + rng.integers(1, 256, end - start, dtype=np.uint8).tobytes() + data[end:]


def _huge_tables(header: dict, data: bytes) -> tuple[dict, bytes]:
    e = _first_coded(header)
    n = 1 << 16
    e["dtype"], e["shape"] = "u8", [n]
    e["quant"] = {"bits": 8, "axis": None, "scale": np.ones(1, "<f4").tobytes(), "zero_point": np.zeros(1, "<f4").tobytes()}
    e["coding"] = {"model": 1, "axis": 0, "loc": np.zeros(n, "<f4").tobytes(), "scale": np.ones(n, "<f4").tobytes()}
    return header, data


def _sections_case(*new: Callable[[Good], Stored]) -> Callable[[Good, Path], Path]:
    def build(good: Good, path: Path) -> Path:
        return craft(path, replaced(good.sections, *(make(good) for make in new)))
    return build


ALL = ("info", "verify", "view", "infer")
CASES = [
    # zstd bombs
    Case("bomb_unknown_4g", "zstd bomb", "unknown-kind section: 4 GiB of zeros in 131 KB",
         _sections_case(lambda g: zstd_zeros("x/bomb", 4242, 4 * GiB)), ("info", "verify"), (0, 3)),
    Case("bomb_video_4g", "zstd bomb", "video section: 4 GiB zstd bomb",
         _sections_case(lambda g: zstd_zeros("video", SectionKind.VIDEO, 4 * GiB)), ("info", "verify", "view")),
    Case("bomb_video_in_ratio", "zstd bomb", "video section: 64 MiB within the 1024x limit",
         _sections_case(lambda g: zstd_zeros("video", SectionKind.VIDEO, 64 * MiB, 64 * 1024)),
         ("info", "verify", "view")),
    Case("bomb_model_in_ratio", "zstd bomb", "model section: 32 MiB within the 1024x limit",
         _sections_case(lambda g: zstd_zeros("model", SectionKind.MODEL, 32 * MiB, 32 * 1024)), ("info", "view")),
    Case("bomb_routing_4g", "zstd bomb", "routing section: 4 GiB zstd bomb",
         _sections_case(lambda g: zstd_zeros("routing", SectionKind.ROUTING, 4 * GiB)), ("info", "infer")),
    Case("bomb_provenance_in_ratio", "zstd bomb", "provenance: 60 MiB within the 1024x limit",
         _sections_case(lambda g: zstd_zeros("provenance", SectionKind.PROVENANCE, 60 * MiB, 60 * 1024)),
         ("info", "verify")),
    Case("bomb_block_4g", "zstd bomb", "block/0: 4 GiB zstd bomb",
         _sections_case(lambda g: zstd_zeros("block/0", SectionKind.INR_BLOCK, 4 * GiB)), ALL,
         expect_by={"info": (0,)}),
    Case("bomb_block_in_ratio", "zstd bomb", "block/0: 512 MiB within the 1024x limit",
         _sections_case(lambda g: zstd_zeros("block/0", SectionKind.INR_BLOCK, 512 * MiB, 512 * 1024)),
         ("verify", "view")),
    Case("bomb_embeddings_in_ratio", "zstd bomb", "embeddings: 256 MiB within the 1024x limit",
         _sections_case(lambda g: zstd_zeros("embeddings", SectionKind.EMBEDDINGS, 256 * MiB, 256 * 1024)),
         ("verify", "view")),
    Case("bomb_adapter_in_ratio", "zstd bomb", "adapter: 512 MiB within the 1024x limit",
         _sections_case(lambda g: zstd_zeros("adapter/resnet50", SectionKind.ADAPTER, 512 * MiB, 512 * 1024)),
         ("verify", "infer")),
    Case("bomb_unknown_in_ratio_x7", "zstd bomb", "7 unknown-kind sections of 100 MiB, each within 1024x",
         lambda g, p: craft(p, g.sections + [zstd_zeros(f"x/{i}", 4242, 100 * MiB, 100 * 1024) for i in range(7)]),
         ("info", "verify"), (0,)),
    # msgpack amplification
    Case("msgpack_values_provenance", "msgpack", "provenance: 200,000 empty arrays (RAW)",
         _sections_case(lambda g: raw("provenance", SectionKind.PROVENANCE, _list_of_empty_lists(200_000))),
         ("info", "verify"), expect_by={"verify": (0,)}),
    Case("msgpack_values_10_sections", "msgpack", "10 provenance-kind sections of 90,000 empty arrays",
         _msgpack_many_sections, ("info", "verify"), (0, 3)),
    Case("msgpack_values_video", "msgpack", "video: 900,000 empty arrays (RAW)",
         _sections_case(lambda g: raw("video", SectionKind.VIDEO, _list_of_empty_lists(900_000))),
         ("info", "verify", "view")),
    Case("msgpack_depth_65", "msgpack", "video: arrays nested 65 deep",
         _sections_case(lambda g: raw("video", SectionKind.VIDEO, b"\x91" * 64 + b"\x90")), ("info", "verify")),
    Case("msgpack_depth_100000", "msgpack", "video: arrays nested 100,000 deep",
         _sections_case(lambda g: zstd("video", SectionKind.VIDEO, b"\x91" * 100_000 + b"\xc0")),
         ("info", "verify")),
    Case("msgpack_long_array_header", "msgpack", "routing: array header claiming 2^32-1 elements",
         _sections_case(lambda g: raw("routing", SectionKind.ROUTING, b"\xdd\xff\xff\xff\xff")), ("info", "infer")),
    Case("tensor_bundle_12000_tensors", "msgpack", "block/0: a valid bundle of 12,000 one-byte tensors",
         _huge_bundle, ("verify", "view"), (0, 3)),
    # tables and indexes
    Case("segments_65536_one_prefix", "tables", "65,536 one-frame segments sharing one prefix",
         _segments_same_prefix, ("info", "view")),
    Case("segments_without_models", "tables", "6 segments whose prefixes have no model sections",
         _segments_without_models, ("info", "view")),
    Case("index_20000_sections", "tables", "index of 20,000 empty unknown-kind sections",
         _many_sections, ("info", "verify"), (0,)),
    # hostile model / routing / adapter metadata
    Case("model_huge_channels", "metadata", "model: 4096 channels per block for a 24x40 video",
         _sections_case(lambda g: _model_with(g, channels=[4096] * len(g.meta("model")["channels"]))),
         ("info", "view")),
    Case("model_size_mismatch", "metadata", "a valid model for 80x48 frames, the video section says 40x24",
         _sections_case(_doubled_model), ("info", "view")),
    Case("model_frames_mismatch", "metadata", "model says 600 frames, the video 12",
         _sections_case(lambda g: _model_with(g, num_frames=600)), ("info", "view")),
    Case("model_fine_grid_huge", "metadata", "model: a fine base grid of 10^7 frames x 32 channels",
         _sections_case(lambda g: _model_with(g, fine_grid_frames=10**7, fine_grid_channels=32)),
         ("info", "view")),
    Case("model_fine_grid_without_feature", "metadata", "a fine base grid in a file not listing hinerv-fine-grid",
         lambda g, path: craft(path, g.sections, _without(FINE_GRID_FEATURE)), ("info", "view")),
    Case("model_mid_grid_huge", "metadata", "model: a mid grid of 10^7 frames x 32 channels",
         _sections_case(lambda g: _model_with(g, mid_grid_frames=10**7, mid_grid_channels=32)),
         ("info", "view")),
    Case("model_mid_grid_without_feature", "metadata", "a mid grid in a file not listing hinerv-mid-grid",
         lambda g, path: craft(path, g.sections, _without(MID_GRID_FEATURE)), ("info", "view")),
    Case("routing_inr_layer_true", "metadata", "routing: inr_layer true",
         _sections_case(lambda g: _routing_with(g, inr_layer=True)), ("info", "infer")),
    Case("routing_inr_layer_99", "metadata", "routing: inr_layer 99",
         _sections_case(lambda g: _routing_with(g, inr_layer=99)), ("infer",)),
    Case("routing_sample_frames", "metadata", "routing: sample_frames [10^9] with random weights",
         _sections_case(lambda g: _routing_with(g, sample_frames=[10**9])), ("info", "infer")),
    Case("routing_adapter_is_video", "metadata", "routing: adapter_sections names the video section",
         _sections_case(lambda g: _routing_with(g, adapter_sections=["video"])), ("infer",)),
    Case("adapter_out_size_huge", "metadata", "adapter meta out_size [100000, 100000]",
         _sections_case(lambda g: zstd("adapter/resnet50", SectionKind.ADAPTER, _adapter_with_out_size(g))),
         ("infer",)),
    Case("provenance_nan", "metadata", "provenance psnr NaN, ssim inf, routing cka NaN: info --json stays JSON",
         _nan_provenance, ("info",), (0,)),
    # entropy-coded tensors
    Case("coded_huge_shape", "entropy", "a coded tensor declaring 2^31 values in a few words",
         _coded_case(_huge_coded_shape), ("verify", "view"), expect_by={"verify": (0, 3)}),
    Case("coded_garbled_words", "entropy", "a coded tensor's words replaced by random bytes",
         _coded_case(_garbled_words), ("verify", "view"), expect_by={"verify": (0,)}),
    Case("coded_huge_tables", "entropy", "a coded tensor with 65,536 per-channel 8-bit models (2^24 table entries)",
         _coded_case(_huge_tables), ("verify", "view")),
    Case("coded_without_feature", "entropy", "coded tensors in a file that does not declare tensor-rans",
         _coded_case(lambda h, d: (h, d), features=_without(RANS_FEATURE)), ("verify", "view")),
    # truncations
    Case("truncated_half", "truncation", "attached file cut at 50%", _truncated(lambda n: n // 2), ALL, (0, 3)),
    Case("truncated_last_byte", "truncation", "attached file minus its last byte (the attach is lost)",
         _truncated(lambda n: n - 1), ALL, (0, 3), expect_by={"infer": (6,)}),
    Case("truncated_100_bytes", "truncation", "first 100 bytes only", _truncated(lambda n: 100), ("info", "verify")),
]


def _adapter_with_out_size(good: Good) -> bytes:
    from nvcodec.container import unpack_tensors

    with NvpReader(good.attached) as r:
        bundle = unpack_tensors(r.read("adapter/resnet50"))
    return pack_tensors(bundle.tensors, bundle.quant, {**bundle.meta, "out_size": [100000, 100000]})


# ---------------------------------------------------------------- running

def command_line(command: str, path: Path, out_dir: Path) -> list[str]:
    """The nvcodec arguments for one command on `path`."""
    if command == "info":
        return ["info", str(path), "--json"]
    if command == "verify":
        return ["verify", str(path)]
    if command == "view":
        return ["view", str(path), "--frames", "0:1", "--sheet", str(out_dir / f"{path.stem}.png"), "--device", "cpu",
                "--force"]
    if command == "infer":
        return ["infer", str(path), "--task", "resnet50", "--weights", "random-tiny", "--frames", "0:1",
                "--device", "cpu"]
    raise ValueError(command)


# Runs the CLI and, at exit, writes the process's own peak RSS (VmHWM, which starts afresh at exec;
# wait4's ru_maxrss would include the RSS this harness had when it forked).
_WRAPPER = """
import atexit, os, sys
def _hwm():
    with open("/proc/self/status") as f:
        kib = next(line.split()[1] for line in f if line.startswith("VmHWM"))
    with open(os.environ["NVCODEC_ATTACK_HWM"], "w") as f:
        f.write(kib)
atexit.register(_hwm)
from nvcodec_cli.main import main
main(sys.argv[1:])
"""


def run_one(args: list[str], timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """Run `nvcodec ARGS` in a child process; exit code, stderr shape, peak RSS and CPU of that child."""
    hwm = tempfile.NamedTemporaryFile(delete=False)
    hwm.close()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NVCODEC_DEBUG": "", "HF_HUB_OFFLINE": "1",
           "NVCODEC_ATTACK_HWM": hwm.name}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-c", _WRAPPER, *args], stdout=out, stderr=err, env=env)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t0 > timeout:
                proc.kill()
                timed_out = True
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")
    lines = [line for line in stderr.splitlines() if line.strip()]
    try:
        peak_kib = int(Path(hwm.name).read_text())
    except ValueError:  # killed before exiting: the fork-inclusive figure is all there is
        peak_kib = usage.ru_maxrss
    os.unlink(hwm.name)
    row = {
        "args": args[:1], "rc": proc.returncode, "timed_out": timed_out,
        "stderr_lines": len(lines), "stderr": lines[-1][:240] if lines else "",
        "traceback": "Traceback" in stderr,
        "peak_rss_mib": round(peak_kib / 1024, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "wall_s": round(wall, 3),
    }
    if args[0] == "info" and "--json" in args and proc.returncode == 0:
        row["strict_json"] = _strict_json(stdout)
    return row


def _strict_json(text: str) -> bool:
    def refuse(constant: str) -> None:
        raise ValueError(constant)
    try:
        json.loads(text, parse_constant=refuse)
    except ValueError:
        return False
    return True


def judge(row: dict[str, Any], expect: tuple[int, ...]) -> bool:
    """A run passes when its exit code is expected and errors are one line without a traceback."""
    clean = not row["traceback"] and not row["timed_out"] and (row["rc"] == 0 or row["stderr_lines"] == 1)
    return row["rc"] in expect and clean and row.get("strict_json", True)


def run_cases(cases: list[Case], work: Path, good: Good) -> dict[str, Any]:
    out_dir = work / "out"
    out_dir.mkdir(exist_ok=True)
    results: dict[str, Any] = {"baseline": {}, "cases": []}
    for command in ALL:
        target = good.attached
        results["baseline"][command] = run_one(command_line(command, target, out_dir))
        print(f"baseline {command:7s} {_fmt(results['baseline'][command])}", flush=True)
    for case in cases:
        path = case.build(good, work / f"{case.name}.nvp")
        entry = {"name": case.name, "group": case.group, "what": case.what, "file_bytes": path.stat().st_size,
                 "expect": {cmd: list(case.allowed(cmd)) for cmd in case.commands}, "runs": {}}
        for command in case.commands:
            row = run_one(command_line(command, path, out_dir))
            row["stderr"] = row["stderr"].replace(str(work), "<tmp>")
            row["pass"] = judge(row, case.allowed(command))
            entry["runs"][command] = row
            print(f"{case.name:28s} {command:7s} {_fmt(row)}", flush=True)
        path.unlink()
        results["cases"].append(entry)
    return results


def _fmt(row: dict[str, Any]) -> str:
    flag = "" if row.get("pass", True) else "  FAIL"
    return (f"rc={row['rc']:<3} rss={row['peak_rss_mib']:7.1f} MiB cpu={row['cpu_s']:6.2f} s  "
            f"{row['stderr'][:90]}{flag}")


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Per command: baseline, worst hostile RSS and CPU, and how many runs passed."""
    summary = {}
    for command in ALL:
        runs = [(c["name"], c["runs"][command]) for c in results["cases"] if command in c["runs"]]
        if not runs:
            continue
        base = results["baseline"][command]
        rss_case, rss = max(runs, key=lambda r: r[1]["peak_rss_mib"])
        cpu_case, cpu = max(runs, key=lambda r: r[1]["cpu_s"])
        summary[command] = {
            "runs": len(runs), "passed": sum(r["pass"] for _, r in runs),
            "baseline_rss_mib": base["peak_rss_mib"], "baseline_cpu_s": base["cpu_s"],
            "max_rss_mib": rss["peak_rss_mib"], "max_rss_case": rss_case,
            "max_cpu_s": cpu["cpu_s"], "max_cpu_case": cpu_case,
            "max_rss_over_baseline_mib": round(rss["peak_rss_mib"] - base["peak_rss_mib"], 1),
            "max_cpu_over_baseline_s": round(cpu["cpu_s"] - base["cpu_s"], 3),
        }
    return summary


def render_markdown(report: dict[str, Any]) -> str:
    lines = ["# Attack harness", "",
             f"`python benchmarks/attack.py` on {report['machine']}, OMP_NUM_THREADS=1, "
             f"{report['seconds']:.0f} s in all. Each command runs in its own process; RSS is the child's peak "
             "(VmHWM at exit), CPU its user + system time (`wait4`). Targets: "
             f"{RSS_TARGET_MIB} MiB and {CPU_TARGET_S:g} CPU-s on files under 1 MB. `view` and `infer` import "
             "torch and build the task backbone, which alone takes more than both on this machine (see the "
             "good file's row): for them the measure is that no hostile file costs more than the good one. "
             "The machine was shared with a long benchmark, so CPU times are inflated.", "",
             "| command | runs | passed | good file RSS / CPU | worst hostile RSS (case) | worst hostile CPU (case) |",
             "|---|---:|---:|---|---|---|"]
    for command, s in report["summary"].items():
        lines.append(f"| {command} | {s['runs']} | {s['passed']} | {s['baseline_rss_mib']:.0f} MiB / "
                     f"{s['baseline_cpu_s']:.2f} s | {s['max_rss_mib']:.0f} MiB ({s['max_rss_case']}) | "
                     f"{s['max_cpu_s']:.2f} s ({s['max_cpu_case']}) |")
    lines += ["", "| case | bytes | what | " + " | ".join(ALL) + " |", "|---|---:|---|" + "---|" * len(ALL)]
    for c in report["results"]["cases"]:
        cells = []
        for command in ALL:
            r = c["runs"].get(command)
            cells.append("" if r is None else
                         f"{'' if r['pass'] else '**FAIL** '}{r['rc']}, {r['peak_rss_mib']:.0f} MiB, {r['cpu_s']:.2f} s")
        lines.append(f"| {c['name']} | {c['file_bytes']:,} | {c['what']} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: exit code, peak RSS, CPU seconds. A run passes when the exit code is one the case allows "
              "(3 for a damaged or refused file, 0 where the file is valid), stderr is one line without a "
              "traceback, and `info --json` output is standard JSON.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--only", default="", help="run only cases whose name contains this")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    cases = [c for c in CASES if args.only in c.name]
    with tempfile.TemporaryDirectory(prefix="nvcodec-attack-") as tmp:
        work = Path(tmp)
        good = build_good(work)
        results = run_cases(cases, work, good)
    report = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}",
              "seconds": time.monotonic() - t0, "rss_target_mib": RSS_TARGET_MIB, "cpu_target_s": CPU_TARGET_S,
              "summary": summarize(results), "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = f"_{args.only}" if args.only else ""
    (args.out / f"attack{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"ATTACK{suffix}.md").write_text(render_markdown(report))
    failed = [(c["name"], cmd) for c in results["cases"] for cmd, r in c["runs"].items() if not r["pass"]]
    print(f"{len(failed)} failed runs: {failed}" if failed else "all runs passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
