"""Hostile metadata inside well-formed containers: only nvcodec's own errors, never a crash."""

import os

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nvcodec
from nvcodec.codec.encode import EncodeOptions, encode
from nvcodec.codec.info import describe
from nvcodec.container import NvpReader, Section, pack_msgpack, write_nvp
from nvcodec.errors import NvcodecError
from nvcodec.tasks.infer import infer

from conftest import synthetic_frames, write_clip

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=True),
                    st.text(max_size=8), st.binary(max_size=8))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                      max_leaves=12)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    clip = write_clip(str(d / "c.mp4"), synthetic_frames(3, 16, 24))
    out = str(d / "good.nvp")
    encode(clip, out, EncodeOptions(psnr=None, epochs=2, params=3000, device="cpu"))
    with NvpReader(out) as r:
        sections = {s.name: (s.kind, r.read(s.name)) for s in r.sections}
        decoded = {n: r.read_msgpack(n) for n in ("video", "model", "provenance")}
    return d, sections, decoded


def _mutate(obj, key_values):
    out = dict(obj)
    for k, v in key_values:
        out[k] = v
    return out


def _exercise(path, with_infer=False):
    try:
        describe(path)
        with nvcodec.open(path) as v:
            v.frames([0])
            v.features(0, [len(v) - 1])
    except NvcodecError:
        pass
    if with_infer:
        try:
            infer(path, ["resnet50"], weights="random-tiny")
        except NvcodecError:
            pass


@pytest.mark.parametrize("target", ["video", "model", "provenance", "segments", "routing"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_metadata_raises_only_nvcodec_errors(good, target, data):
    d, sections, decoded = good
    base = decoded.get(target, {})
    keys = list(base) + ["segments", "tasks", "start", "stop", "prefix", "width", "frames", "strides"]
    if target == "routing" and data.draw(st.booleans()):
        entry = {"inr_layer": 0, "injection_point": "stem", "adapter_sections": ["adapter/resnet50"]}
        entry = _mutate(entry, data.draw(st.lists(st.tuples(st.sampled_from(
            ["inr_layer", "injection_point", "adapter_sections", "weights", "sample_frames", "weights_random"]), values),
            max_size=3)))
        base = {"version": 1, "tasks": {"resnet50": entry}}
    if data.draw(st.booleans()):
        payload = _mutate(base, data.draw(st.lists(st.tuples(st.sampled_from(keys), values), min_size=1, max_size=4)))
    else:
        payload = data.draw(values)
    out = []
    for name, (kind, raw) in sections.items():
        out.append(Section(name, kind, pack_msgpack(payload) if name == target else raw))
    if target not in sections:
        from nvcodec.container import SectionKind
        out.append(Section(target, SectionKind.SEGMENTS if target == "segments" else SectionKind.ROUTING,
                           msgpack.packb(payload, use_bin_type=True)))
    path = str(d / f"hostile_{target}.nvp")
    try:
        write_nvp(path, out)
    except NvcodecError:
        return
    _exercise(path, with_infer=target == "routing")
    os.unlink(path)
