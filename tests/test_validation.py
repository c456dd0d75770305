"""The metadata validation layer (nvcodec.codec.schema + meta): fields named, extras bounded, cross-field
rules, bounded allocations, decode shape checks, and an `info` that needs neither torch nor the sections."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import nvcodec
from nvcodec.codec import schema
from nvcodec.codec import video as video_module
from nvcodec.codec.info import describe
from nvcodec.container import NvpReader, SectionKind, pack_msgpack, pack_tensors
from nvcodec.container import reader as reader_module
from nvcodec.container.index import encode_index, encode_trailer
from nvcodec.container.layout import MAGIC, MAJOR_VERSION, MINOR_VERSION, PREAMBLE, SectionInfo, align_up
from nvcodec.errors import FormatError
from nvcodec.tasks.infer import infer

from conftest import ROOT
from test_limits import TINY, _craft, _routing, attack, good  # noqa: F401  (the shared fixture)

GOLDEN = Path(ROOT) / "fixtures" / "golden-v1.nvp"


def _section(good, name, kind, changes):
    return attack.zstd(name, kind, pack_msgpack({**good.meta(name), **changes}))


@pytest.mark.parametrize("name, kind, changes, field", [
    ("video", SectionKind.VIDEO, {"width": "wide"}, "'width' must be an integer"),
    ("video", SectionKind.VIDEO, {"fps_den": 0}, "'fps_den' is out of range"),
    ("video", SectionKind.VIDEO, {"pix_fmt": b"yuv"}, "'pix_fmt' must be a string"),
    ("video", SectionKind.VIDEO, {"source_frames": [0, 99]}, "'source_frames'"),
    ("model", SectionKind.MODEL, {"strides": [2, "2"]}, "'strides\\[1\\]' must be an integer"),
    ("model", SectionKind.MODEL, {"kind": "siren"}, "'kind' must be one of hnerv, nerv"),
    ("model", SectionKind.MODEL, {"channels": [8] * 9}, "'channels' holds 9 items"),
    ("model", SectionKind.MODEL, {"embed_channels": None}, "'embed_channels' is missing"),
    ("model", SectionKind.MODEL, {"pe_base": float("nan")}, "'pe_base' is out of range"),
    ("model", SectionKind.MODEL, {"strides": [2]}, "same length"),
    ("provenance", SectionKind.PROVENANCE, {"settings": {"stream": "1"}}, "'settings.stream' must be an integer"),
    ("provenance", SectionKind.PROVENANCE, {"psnr": "high"}, "'psnr' must be a number"),
    ("provenance", SectionKind.PROVENANCE, {"segments": [0] * 70000}, "'segments' holds 70000 items"),
])
def test_hostile_fields_name_section_and_field(good, tmp_path, name, kind, changes, field):
    path = _craft(good, tmp_path, _section(good, name, kind, changes))
    with pytest.raises(FormatError, match=field) as exc:
        describe(path)
    assert exc.value.section == name


@pytest.mark.parametrize("changes, field", [
    ({"adapter_sections": "adapter/resnet50"}, "'tasks.resnet50.adapter_sections' must be an array"),
    ({"adapter_sections": ["video"]}, "not an adapter section"),
    ({"adapter_sections": ["adapter/resnet50", "adapter/resnet50"]}, "adapter_sections"),
    ({"sample_frames": {"0": 1}}, "'tasks.resnet50.sample_frames' must be an array"),
    ({"sample_frames": [0] * 70000}, "sample_frames"),
    ({"inr_layer": 7}, "names INR block 7"),
    ({"adapter_kind": "mlp"}, "'tasks.resnet50.adapter_kind' must be one of"),
    ({"in_channels": 4095}, "'tasks.resnet50.in_channels' is 4095"),
    ({"weights_random": "yes"}, "weights_random"),
    ({"injection_point": None}, "'tasks.resnet50.injection_point' is missing"),
])
def test_hostile_routing_entries(good, tmp_path, changes, field):
    path = _craft(good, tmp_path, _routing(good, **changes))
    with pytest.raises(FormatError, match=field):
        describe(path)
    with pytest.raises(FormatError, match=field):
        infer(str(path), ["resnet50"], weights=TINY, frames=(0, 1), device="cpu")


def test_unknown_keys_are_kept_but_bounded(good, tmp_path):
    path = _craft(good, tmp_path, _routing(good, future_field={"a": [1, 2, 3]}, raw=b"\x00\x01"))
    assert {t["task"] for t in describe(path)["tasks"]} == {"resnet50"}
    with NvpReader(path) as r:
        from nvcodec.codec.meta import read_routing

        assert read_routing(r)["tasks"]["resnet50"]["future_field"] == {"a": [1, 2, 3]}
    path = _craft(good, tmp_path, _routing(good, future_field=list(range(schema.EXTRA_MAX_VALUES + 1))))
    with pytest.raises(FormatError, match="'tasks.resnet50.future_field' holds more than"):
        describe(path)


def test_tasks_declare_their_routing_fields_in_one_place(good, tmp_path, monkeypatch):
    monkeypatch.setitem(schema.TASK_FIELDS, "resnet50", {"crop": schema.Str(8, choices=("center", "full"))})
    describe(_craft(good, tmp_path, _routing(good, crop="full")))
    with pytest.raises(FormatError, match="'tasks.resnet50.crop' must be one of center, full"):
        describe(_craft(good, tmp_path, _routing(good, crop="corner")))
    with pytest.raises(FormatError, match="'tasks.resnet50.hidden'"):
        describe(_craft(good, tmp_path, _routing(good, adapter_kind="bottleneck", hidden=0)))


def _adapter(good, meta_changes=None, extra=None):
    with NvpReader(good.attached) as r:
        bundle = r.read_tensors("adapter/resnet50")
    tensors = {**bundle.tensors, **(extra or {})}
    return attack.zstd("adapter/resnet50", SectionKind.ADAPTER,
                       pack_tensors(tensors, meta={**bundle.meta, **(meta_changes or {})}))


@pytest.mark.parametrize("changes, field", [
    ({"out_size": [10**6, 2]}, "'meta.out_size\\[0\\]' is out of range"),
    ({"out_size": [3, 3]}, "'meta.out_size' is \\[3, 3\\]"),
    ({"kind": "conv3x3"}, "'meta.kind' is 'conv3x3'"),
    ({"segment": 4}, "'meta.segment' is 4"),
    ({"inr_layer": "0"}, "'meta.inr_layer' must be an integer"),
])
def test_adapter_meta_is_validated_against_its_routing(good, tmp_path, changes, field):
    path = _craft(good, tmp_path, _adapter(good, changes))
    with pytest.raises(FormatError, match=field) as exc:
        infer(str(path), ["resnet50"], weights=TINY, frames=(0, 1), device="cpu")
    assert exc.value.section == "adapter/resnet50"


def test_adapter_section_is_bounded_by_its_shapes_before_decoding(good, tmp_path, monkeypatch):
    path = _craft(good, tmp_path, _adapter(good, extra={"junk": np.zeros(1 << 20, np.float32)}))
    decoded = []
    real = reader_module.decode_payload
    monkeypatch.setattr(reader_module, "decode_payload", lambda *a: decoded.append(a[3]) or real(*a))
    with pytest.raises(FormatError, match="more than the .* this reader accepts") as exc:
        infer(str(path), ["resnet50"], weights=TINY, frames=(0, 1), device="cpu")
    assert exc.value.section == "adapter/resnet50"
    assert "adapter/resnet50" not in decoded and "video" in decoded


def test_decode_work_per_frame_is_capped(good, tmp_path):
    size = {"width": 640, "height": 384}
    base = {k: v for k, v in good.meta("model").items() if k not in ("grid_frames", "block_grid_frames")}
    wide = {**base, "kind": "hnerv", **size, "pad_width": 640, "pad_height": 384, "embed_width": 80, "embed_height": 48,
            "embed_channels": 1, "strides": [4, 2], "channels": [1, 4096], "kernel_sizes": [1, 1], "head_kernel": 1}
    path = _craft(good, tmp_path, attack.zstd("model", SectionKind.MODEL, pack_msgpack(wide)),
                  _section(good, "video", SectionKind.VIDEO, size))
    with pytest.raises(FormatError, match="activations of 1006632960 values per frame, more than the 62914560") as exc:
        describe(path)
    assert exc.value.section == "model"


def test_decoded_frames_of_the_wrong_shape_are_a_format_error(good, monkeypatch):
    real = video_module.crop
    monkeypatch.setattr(video_module, "crop", lambda x, w, h: real(x, w - 1, h))
    with nvcodec.open(good.plain) as v:
        with pytest.raises(FormatError, match="shape .* declares"):
            v[0]


def _fresh_python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          check=True, timeout=120).stdout


def test_info_verify_and_help_import_neither_torch_nor_numpy_for_info():
    out = _fresh_python(f"""
import sys
from nvcodec.codec.info import describe
describe({str(GOLDEN)!r})
print('info', 'torch' in sys.modules, 'numpy' in sys.modules)
from nvcodec_cli.main import main
for argv in (['info', '--json', {str(GOLDEN)!r}], ['verify', {str(GOLDEN)!r}], ['--help']):
    try:
        main(argv)
    except SystemExit as e:
        assert e.code == 0, e.code
print('cli', 'torch' in sys.modules, 'constriction' in sys.modules)
""")
    assert "info False False" in out and "cli False False" in out


def _sparse_nvp(path: Path, hole: int) -> Path:
    """The golden file's sections after one RAW section of `hole` zero bytes (sparse on disk), CRCs right."""
    sections = attack.sections_of(GOLDEN)
    head = bytearray(PREAMBLE.pack(MAGIC, MAJOR_VERSION, MINOR_VERSION, 0))
    head += bytes(align_up(len(head)) - len(head))
    zero = bytes(1 << 20)
    crc_blob = 0
    for _ in range(hole // len(zero)):
        crc_blob = zlib.crc32(zero, crc_blob)
    infos = [SectionInfo("blob", 100, 0, len(head), hole, hole, crc_blob)]
    pos = len(head) + hole
    tail = bytearray()
    for s in sections:
        pad = align_up(pos) - pos
        tail += bytes(pad)
        pos += pad
        infos.append(SectionInfo(s.name, s.kind, s.codec, pos, len(s.data), s.raw_length, zlib.crc32(s.data)))
        tail += s.data
        pos += len(s.data)
    pad = align_up(pos) - pos
    tail += bytes(pad)
    pos += pad
    prefix_crc = zlib.crc32(bytes(head))
    for _ in range(hole // len(zero)):
        prefix_crc = zlib.crc32(zero, prefix_crc)
    prefix_crc = zlib.crc32(bytes(tail), prefix_crc)
    index = encode_index(1, 0, prefix_crc, infos, [])
    with open(path, "wb") as f:
        f.write(head)
        f.seek(len(head) + hole)
        f.write(bytes(tail) + index + encode_trailer(pos, index, 1))
    return path


def test_info_on_a_1_gib_file_reads_only_trailer_index_and_metadata(tmp_path, monkeypatch):
    path = _sparse_nvp(tmp_path / "big.nvp", 1 << 30)
    assert os.path.getsize(path) > 1 << 30
    read = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: read.append(n) or real(fd, n, off))
    report = describe(path)
    assert report["video"]["frames"] == 4 and report["sections"][0]["bytes"] == 1 << 30
    assert sum(read) < 16 * 1024, read
