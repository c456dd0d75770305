"""The metadata schema: every field of every msgpack section, and of adapter bundles' meta, declared once.

`check(value, schema, section)` validates a decoded map against a declaration (types, ranges,
lengths, enums) and returns a copy holding only plain, checked values; `meta.py` applies it when a
section is read and adds the cross-field rules (segments tile the video, layer index below the
block count, adapter sections exist, channels match the model). Code below that layer only sees
validated values.

Known fields must have their declared type; a field declared optional may be absent or nil.
Unknown keys are kept (forward compatibility) but bounded: at most EXTRA_MAX_VALUES values and
EXTRA_MAX_BYTES of strings and bytes each. Routing entries are `ROUTING_ENTRY` plus the fields of
their task (`TASK_FIELDS`) and of their adapter kind (`ADAPTER_KIND_FIELDS`): a new task or adapter
kind that stores more in its routing entry declares those fields there, nowhere else.
`MODEL` declares the `model` section's fields; `INRConfig.from_dict` (nvcodec.inr.plan) then adds the
decoder's own consistency rules (lists of one length per block, padded size = grid x total stride).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import FormatError
from ..inr.plan import (ACTIVATIONS, KINDS, MAX_BLOCKS, MAX_CHANNELS, MAX_FRAMES, MAX_GRID_CHANNELS, OUT_ACTIVATIONS,
                        MAX_SIZE as MAX_DIM)

MAX_SEGMENTS = 65536
MAX_TASKS = 256
MAX_SAMPLE_FRAMES = 65536
MAX_ADAPTER_CHANNELS = 8192
MAX_COUNT = 1 << 62
MAX_STR = 256
MAX_LONG_STR = 4096
EXTRA_MAX_VALUES = 4096
EXTRA_MAX_BYTES = 64 * 1024
ADAPTER_KINDS = ("linear", "conv3x3", "dw3x3", "bottleneck", "patch")
"""Adapter kinds a file may name (built by `nvcodec.route.adapter.MicroAdapter`)."""

Schema = Mapping[str, "Field"]


@dataclass(frozen=True)
class Field:
    """One declared field: `type` is int, number (int or float), str, bool, list, map or any.

    `lo`/`hi` bound numbers; `max_len` bounds strings (characters) and lists/maps (items),
    `length` fixes a list's length; `choices` is an enum; `item` declares list elements (and map
    values when `keys` is given), `fields` a nested map; `finite` refuses NaN and infinities.
    """

    type: str
    required: bool = False
    lo: float | None = None
    hi: float | None = None
    max_len: int | None = None
    length: int | None = None
    choices: tuple | None = None
    item: "Field | None" = None
    fields: Schema | None = None
    keys: "Field | None" = None
    finite: bool = True


def Int(lo: int = 0, hi: int = MAX_COUNT, **kw: Any) -> Field:
    """An integer in [lo, hi] (bools are not integers)."""
    return Field("int", lo=lo, hi=hi, **kw)


def Num(lo: float | None = None, hi: float | None = None, **kw: Any) -> Field:
    """An int or float in [lo, hi]; `finite=False` also accepts NaN and infinities (report figures)."""
    return Field("number", lo=lo, hi=hi, **kw)


def Str(max_len: int = MAX_STR, **kw: Any) -> Field:
    """A string of at most `max_len` characters."""
    return Field("str", max_len=max_len, **kw)


def Bool(**kw: Any) -> Field:
    """True or False."""
    return Field("bool", **kw)


def List(item: Field, max_len: int, **kw: Any) -> Field:
    """An array of at most `max_len` items, each matching `item`."""
    return Field("list", item=item, max_len=max_len, **kw)


def Map(fields: Schema, **kw: Any) -> Field:
    """A nested map declared by `fields` (unknown keys bounded like a section's)."""
    return Field("map", fields=fields, **kw)


def Dict(keys: Field, values: Field, max_len: int, **kw: Any) -> Field:
    """A map with free keys (matching `keys`) and values matching `values`."""
    return Field("map", keys=keys, item=values, max_len=max_len, **kw)


ANY = Field("any")
SCORE = Num(finite=False)

VIDEO: Schema = {
    "width": Int(1, MAX_DIM, required=True),
    "height": Int(1, MAX_DIM, required=True),
    "frames": Int(1, MAX_FRAMES, required=True),
    "fps": Num(0, 1_000_000, finite=False),
    "fps_num": Int(1, 1_000_000, required=True),
    "fps_den": Int(1, 1_000_000, required=True),
    **{k: Str() for k in ("source_codec", "pix_fmt", "color_space", "color_range", "color_primaries",
                          "color_trc", "source_name")},
    "source_frames": List(Int(0, MAX_COUNT), max_len=2, length=2),
    "source_bit_rate": Int(1, 1 << 40),
}

MODEL: Schema = {
    "kind": Str(16, choices=KINDS, required=True),
    "width": Int(1, MAX_DIM, required=True),
    "height": Int(1, MAX_DIM, required=True),
    "pad_width": Int(1, 2 * MAX_DIM, required=True),
    "pad_height": Int(1, 2 * MAX_DIM, required=True),
    "num_frames": Int(1, MAX_FRAMES, required=True),
    "strides": List(Int(1, 8), max_len=MAX_BLOCKS, required=True),
    "channels": List(Int(1, MAX_CHANNELS), max_len=MAX_BLOCKS, required=True),
    "kernel_sizes": List(Int(1, 9), max_len=MAX_BLOCKS, required=True),
    "embed_channels": Int(1, MAX_CHANNELS, required=True),
    "embed_height": Int(1, MAX_DIM, required=True),
    "embed_width": Int(1, MAX_DIM, required=True),
    "head_kernel": Int(1, 9),
    "activation": Str(16, choices=ACTIVATIONS),
    "out_activation": Str(16, choices=OUT_ACTIVATIONS),
    "pe_levels": Int(0, 128),
    "pe_base": Num(0, 1e6),
    "fc_dims": List(Int(1, 8192), max_len=4),
    "grid_frames": Int(0, MAX_FRAMES),
    "block_grid_frames": List(Int(0, MAX_FRAMES), max_len=MAX_BLOCKS),
    "fine_grid_frames": Int(0, MAX_FRAMES),
    "fine_grid_channels": Int(0, MAX_GRID_CHANNELS),
    "mid_grid_frames": Int(0, MAX_FRAMES),
    "mid_grid_channels": Int(0, MAX_GRID_CHANNELS),
}
"""The `model` section (`INRConfig.to_dict`); absent optional fields take `INRConfig.from_dict`'s defaults."""

SEGMENT: Schema = {
    "start": Int(0, MAX_FRAMES, required=True),
    "stop": Int(1, MAX_FRAMES, required=True),
    "prefix": Str(200, required=True),
}
SEGMENTS: Schema = {"segments": List(Map(SEGMENT), max_len=MAX_SEGMENTS, required=True)}

SETTINGS: Schema = {
    "kind": Str(16), "params": Num(0, 1e12), "bpp": Num(0, 1e6), "psnr": Num(0, 1000), "epochs": Int(0, 1 << 31),
    "time_budget": Num(0, 1e12), "loss": Str(16), "lr": Num(0, 1e6), "seed": Int(-(1 << 63), 1 << 64),
    "device": Str(64), "amp": Bool(), "stream": Int(0, 65535), "segment_frames": Int(1, MAX_FRAMES),
    "weight_bits": Int(2, 16), "embed_bits": Int(2, 16), "qat": Num(0, 1), "prune": Num(0, 1), "bit_alloc": Bool(),
    "entropy": Str(16), "frames_per_step": Int(1, 4096), "fine_grid": Str(16), "sampling": Str(16),
}
PROVENANCE: Schema = {
    **{k: Str() for k in ("tool", "tool_version", "torch_version", "created", "host", "device", "dtype")},
    "settings": Map(SETTINGS),
    **{k: SCORE for k in ("psnr", "psnr_frame_mean", "psnr_min", "ssim", "encode_seconds")},
    "params": Int(0, MAX_COUNT),
    "segments": List(ANY, max_len=MAX_SEGMENTS),
    "tune": List(ANY, max_len=64),
    "attached": List(ANY, max_len=1024),
}

ROUTING_ENTRY: Schema = {
    "inr_layer": Int(0, MAX_BLOCKS - 1, required=True),
    "injection_point": Str(64, required=True),
    "adapter_sections": List(Str(255), max_len=MAX_SEGMENTS, required=True),
    "adapter_kind": Str(16, choices=ADAPTER_KINDS),
    "adapter_bits": Int(8, 16),
    "hidden": Int(0, MAX_ADAPTER_CHANNELS),
    "in_channels": Int(1, MAX_ADAPTER_CHANNELS),
    "out_channels": Int(1, MAX_ADAPTER_CHANNELS),
    "out_size": List(Int(1, MAX_DIM), max_len=2, length=2),
    "sample_frames": List(Int(0, MAX_FRAMES - 1), max_len=MAX_SAMPLE_FRAMES),
    "weights": Str(MAX_LONG_STR),
    "weights_random": Bool(),
    "teacher": Str(16, choices=("inr", "source")),
    "search": Str(32),
    "created": Str(64),
    "adapter_params": Int(0, MAX_COUNT),
    "backbone_params": Int(0, MAX_COUNT),
    "epochs": Int(0, 1 << 31),
    "top_k": Num(0, 1 << 31),
    "distill": Num(0, 1e6),
    "max_cost": Num(0, 1e6),
    **{k: SCORE for k in ("cka", "lstsq_fidelity", "fidelity", "gflops", "pixel_path_gflops", "adapter_params_pct",
                          "fidelity_tuned", "refit_after_tune")},
    "tuned": Dict(Str(64), ANY, max_len=64),
}
PATHWAY: Schema = {
    "name": Str(32, required=True),
    "out_channels": Int(1, MAX_ADAPTER_CHANNELS),
    "out_size": List(Int(1, MAX_DIM), max_len=2, length=2),
    "positions": List(Int(0, MAX_FRAMES - 1), max_len=1024),
}
CLIP_FIELDS: Schema = {
    "pathways": List(Map(PATHWAY), max_len=8),
    "clip": Map({"frames": Int(1, 1024), "windows": List(List(Int(0, MAX_FRAMES), max_len=2, length=2),
                                                          max_len=MAX_SAMPLE_FRAMES)}),
}
"""Routing fields of clip tasks (`nvcodec.route.clips`): the backbone's pathways and the attach sample's windows."""
TASK_FIELDS: dict[str, Schema] = {"slowfast_r50": CLIP_FIELDS, "i3d_r50": CLIP_FIELDS}
"""Routing fields one task adds to its entries (by task name), beside `ROUTING_ENTRY`."""
ADAPTER_KIND_FIELDS: dict[str, Schema] = {
    "bottleneck": {"hidden": Int(1, MAX_ADAPTER_CHANNELS)},
}
"""Routing fields one adapter kind adds (or narrows), beside `ROUTING_ENTRY`."""
ROUTING: Schema = {
    "version": Int(1, 1000),
    "tasks": Dict(Str(64), Field("map"), max_len=MAX_TASKS),
}

ADAPTER_META: Schema = {
    "task": Str(64),
    "inr_layer": Int(0, MAX_BLOCKS - 1),
    "injection_point": Str(64),
    "out_size": List(Int(1, MAX_DIM), max_len=2, length=2, required=True),
    "segment": Int(0, MAX_SEGMENTS - 1),
    "kind": Str(16, choices=ADAPTER_KINDS),
    "bits": Int(8, 16),
    "pathways": List(Map(PATHWAY), max_len=8),
}


def entry_schema(task: str, kind: str | None) -> Schema:
    """The declared fields of a routing entry of `task` holding an adapter of `kind`."""
    return {**ROUTING_ENTRY, **TASK_FIELDS.get(task, {}), **ADAPTER_KIND_FIELDS.get(kind or "linear", {})}


def fail(section: str, where: str, problem: str) -> FormatError:
    """The FormatError naming section and field."""
    return FormatError(f"field {where!r} {problem}"[:300], section=section)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number_ok(value: Any, f: Field) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return not f.finite
    return (f.lo is None or value >= f.lo) and (f.hi is None or value <= f.hi)


def _value(value: Any, f: Field, section: str, where: str) -> Any:
    t = f.type
    if t == "any":
        return _bounded(value, section, where)
    if t in ("int", "number"):
        types = (int,) if t == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, types):
            raise fail(section, where, f"must be {'an integer' if t == 'int' else 'a number'}, not {_short(value)}")
        if not _number_ok(value, f):
            raise fail(section, where, f"is out of range: {_short(value)} (allowed {f.lo}..{f.hi})")
        return value
    if t == "str":
        if not isinstance(value, str):
            raise fail(section, where, f"must be a string, not {_short(value)}")
        if f.max_len is not None and len(value) > f.max_len:
            raise fail(section, where, f"is longer than {f.max_len} characters")
    elif t == "bool":
        if not isinstance(value, bool):
            raise fail(section, where, f"must be true or false, not {_short(value)}")
    elif t == "list":
        if not isinstance(value, list):
            raise fail(section, where, f"must be an array, not {_short(value)}")
        if f.max_len is not None and len(value) > f.max_len:
            raise fail(section, where, f"holds {len(value)} items, more than {f.max_len}")
        if f.length is not None and len(value) != f.length:
            raise fail(section, where, f"must hold {f.length} items, not {len(value)}")
        item = f.item or ANY
        return [_value(v, item, section, f"{where}[{i}]") for i, v in enumerate(value)]
    elif t == "map":
        if not isinstance(value, dict):
            raise fail(section, where, f"must be a map, not {_short(value)}")
        if f.fields is not None:
            return check(value, f.fields, section, where)
        if f.max_len is not None and len(value) > f.max_len:
            raise fail(section, where, f"holds {len(value)} entries, more than {f.max_len}")
        if f.keys is None:
            return dict(value)
        for k in value:
            _value(k, f.keys, section, f"{where}.{k}"[:120])
        return {k: _value(v, f.item or ANY, section, f"{where}.{k}") for k, v in value.items()}
    if f.choices is not None and value not in f.choices:
        raise fail(section, where, f"must be one of {', '.join(map(str, f.choices))}, not {_short(value)}")
    return value


def _bounded(value: Any, section: str, where: str) -> Any:
    """An unknown value, kept as is when it holds at most EXTRA_MAX_VALUES values and EXTRA_MAX_BYTES."""
    count = size = 0
    stack = [value]
    while stack:
        v = stack.pop()
        count += 1
        if isinstance(v, (str, bytes)):
            size += len(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
            size += sum(len(k) for k in v)
        elif isinstance(v, list):
            stack.extend(v)
        if count > EXTRA_MAX_VALUES or size > EXTRA_MAX_BYTES:
            raise fail(section, where, f"holds more than {EXTRA_MAX_VALUES} values or {EXTRA_MAX_BYTES} bytes")
    return value


def check(value: Any, schema: Schema, section: str, where: str = "") -> dict:
    """A checked copy of the map `value` against `schema`; FormatError naming section and field."""
    if not isinstance(value, dict):
        raise FormatError(f"{where or section} must be a map, not {_short(value)}", section=section)
    out: dict = {}
    for key, v in value.items():
        path = f"{where}.{key}" if where else key
        f = schema.get(key)
        if f is None:
            out[key] = _bounded(v, section, path[:120])
        elif v is None:
            if f.required:
                raise fail(section, path, "is missing")
            out[key] = None
        else:
            out[key] = _value(v, f, section, path)
    for key, f in schema.items():
        if f.required and value.get(key) is None:
            raise fail(section, f"{where}.{key}" if where else key, "is missing")
    return out
