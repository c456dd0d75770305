"""Tensor bundles: named little-endian arrays with optional quantization parameters and metadata."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nvcodec.container.entropy import Coding, check_coding, decode_tensor, encode_tensor, table_budget, table_cost
from nvcodec.container.layout import (
    MAX_MSGPACK_BYTES, MAX_NDIM, MAX_RAW_LENGTH, MAX_TENSOR_HEADER, MAX_TENSORS, TENSOR_ALIGNMENT, TENSOR_MAGIC,
    TENSOR_PREFIX, align_up,
)
from nvcodec.container.msgpack_io import ValueBudget, pack_msgpack, unpack_msgpack
from nvcodec.container.names import decode_name, encode_name
from nvcodec.errors import FormatError

DTYPES: dict[str, np.dtype] = {
    "f32": np.dtype("<f4"), "f16": np.dtype("<f2"), "bf16": np.dtype("<u2"),
    "u8": np.dtype("u1"), "i8": np.dtype("i1"), "u16": np.dtype("<u2"), "i16": np.dtype("<i2"),
    "i32": np.dtype("<i4"), "i64": np.dtype("<i8"),
}
INT_DTYPES = frozenset({"u8", "i8", "u16", "i16", "i32", "i64"})
FLOAT_DTYPES = frozenset({"f32", "f16", "bf16"})
MAX_QUANT_BITS = 32
MAX_ELEMENTS = MAX_RAW_LENGTH
_ENTRY_KEYS = frozenset({"name", "dtype", "shape", "offset", "length", "quant", "coding"})
_OPTIONAL_KEYS = frozenset({"quant", "coding"})
_QUANT_KEYS = frozenset({"bits", "axis", "scale", "zero_point"})
_CODING_KEYS = frozenset({"model", "axis", "loc", "scale"})
ENTROPY_MODES = ("rans", "none")
# Decoded bytes `unpack_tensors` allows when the caller gives no bound: max(floor, ratio x payload).
DECODED_FLOOR = 16 * 1024 * 1024
DECODED_RATIO = 16


@dataclass(eq=False)
class QuantParams:
    """Affine quantization: value = (q - zero_point) * scale, per tensor or per channel along `axis`."""

    bits: int
    axis: int | None
    scale: np.ndarray
    zero_point: np.ndarray

    def __post_init__(self) -> None:
        self.scale = np.asarray(self.scale, dtype=np.float32).reshape(-1)
        self.zero_point = np.asarray(self.zero_point, dtype=np.float32).reshape(-1)


@dataclass(eq=False)
class TensorBundle:
    """Decoded tensor bundle. bf16 tensors are held as uint16 bit patterns (`dtypes[name] == "bf16"`)."""

    tensors: dict[str, np.ndarray]
    quant: dict[str, QuantParams] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)
    coding: dict[str, Coding] = field(default_factory=dict)

    def dequantized(self, name: str) -> np.ndarray:
        """Return tensor `name` as float32, applying its quantization parameters if any."""
        if name not in self.tensors:
            raise FormatError(f"tensor bundle has no tensor {name!r}")
        arr = self.tensors[name]
        if self.dtypes.get(name) == "bf16":
            return bf16_bits_to_float32(arr)
        q = self.quant.get(name)
        if q is None:
            return arr.astype(np.float32)
        shape = [1] * arr.ndim
        if q.axis is not None:
            shape[q.axis] = -1
        scale = q.scale.reshape(shape) if q.axis is not None else q.scale[0]
        zero = q.zero_point.reshape(shape) if q.axis is not None else q.zero_point[0]
        with np.errstate(over="ignore", invalid="ignore"):
            return ((arr.astype(np.float32) - zero) * scale).astype(np.float32)


def float32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 (nearest even) and return the bit patterns as uint16."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    nan = np.isnan(x)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(nan, np.uint16(0x7FC0), rounded).astype(np.uint16)


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """Widen bfloat16 bit patterns (uint16) to float32."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _dtype_code(name: str, arr: np.ndarray, bf16: set[str]) -> str:
    if arr.dtype.name == "bfloat16" and arr.dtype.itemsize == 2:
        return "bf16"
    if name in bf16:
        if arr.dtype != np.uint16:
            raise FormatError(f"tensor {name!r} is named as bf16 but is {arr.dtype}, expected uint16 bit patterns")
        return "bf16"
    for code, dt in DTYPES.items():
        if code != "bf16" and arr.dtype.kind == dt.kind and arr.dtype.itemsize == dt.itemsize:
            return code
    raise FormatError(f"tensor {name!r} has unsupported dtype {arr.dtype}")


def _check_quant(name: str, code: str, shape: tuple[int, ...], q: QuantParams, *, offset: int | None = None) -> None:
    if code not in INT_DTYPES:
        raise FormatError(f"quantized tensor {name!r} must have an integer dtype, not {code}", offset=offset)
    if isinstance(q.bits, bool) or not isinstance(q.bits, int) or not 1 <= q.bits <= min(
            MAX_QUANT_BITS, DTYPES[code].itemsize * 8):
        raise FormatError(f"tensor {name!r}: {q.bits!r} bits do not fit dtype {code}", offset=offset)
    if q.axis is None:
        expected = 1
    elif isinstance(q.axis, bool) or not isinstance(q.axis, int) or not 0 <= q.axis < len(shape):
        raise FormatError(f"tensor {name!r}: quant axis {q.axis!r} out of range for {len(shape)} dims",
                          offset=offset)
    else:
        expected = shape[q.axis]
    if q.scale.size != expected or q.zero_point.size != expected:
        raise FormatError(f"tensor {name!r}: scale/zero_point need {expected} values, got "
                          f"{q.scale.size}/{q.zero_point.size}", offset=offset)
    if not (np.isfinite(q.scale).all() and np.isfinite(q.zero_point).all()):
        raise FormatError(f"tensor {name!r}: scale/zero_point must be finite", offset=offset)


def pack_tensors(tensors: dict[str, np.ndarray], quant: dict[str, QuantParams] | None = None,
                 meta: dict | None = None, *, bf16: Iterable[str] = (), entropy: str = "none") -> bytes:
    """Serialize a tensor bundle. `bf16` names uint16 tensors that hold bfloat16 bit patterns.

    entropy="rans" stores each quantized u8/u16 tensor rANS-coded (section 11.1 of the spec) under the
    model that codes it smallest, or raw when no model beats the raw values.
    """
    if entropy not in ENTROPY_MODES:
        raise FormatError(f"entropy must be one of {', '.join(ENTROPY_MODES)}, got {entropy!r}")
    quant = dict(quant or {})
    bf16_names = set(bf16)
    unknown = (set(quant) | bf16_names) - set(tensors)
    if unknown:
        raise FormatError(f"quant/bf16 given for unknown tensors {sorted(unknown)}")
    if len(tensors) > MAX_TENSORS:
        raise FormatError(f"too many tensors: {len(tensors)} > {MAX_TENSORS}")
    if meta is not None and not isinstance(meta, dict):
        raise FormatError(f"tensor bundle meta must be a dict, got {type(meta).__name__}")
    entries: list[dict[str, Any]] = []
    blobs: list[tuple[int, np.ndarray]] = []
    pos = 0
    symbols = tables = 0
    for name, value in tensors.items():
        encode_name(name, "tensor name")
        arr = np.asarray(value)
        code = _dtype_code(name, arr, bf16_names)
        if arr.ndim > MAX_NDIM:
            raise FormatError(f"tensor {name!r} has {arr.ndim} dims > {MAX_NDIM}")
        if math.prod(max(d, 1) for d in arr.shape) > MAX_ELEMENTS:
            raise FormatError(f"tensor {name!r}: shape {arr.shape} has more than {MAX_ELEMENTS} elements")
        if arr.dtype.name == "bfloat16":
            arr = np.ascontiguousarray(arr).view(np.uint16)
        data = np.ascontiguousarray(arr, dtype=DTYPES[code]).reshape(-1)
        pos = align_up(pos, TENSOR_ALIGNMENT)
        entry: dict[str, Any] = {"name": name, "dtype": code, "shape": [int(d) for d in arr.shape],
                                 "offset": pos, "length": data.nbytes}
        if name in quant:
            q = quant[name]
            if not isinstance(q, QuantParams):
                raise FormatError(f"quant for tensor {name!r} must be QuantParams, got {type(q).__name__}")
            _check_quant(name, code, arr.shape, q)
            entry["quant"] = {"bits": q.bits, "axis": q.axis, "scale": q.scale.astype("<f4").tobytes(),
                              "zero_point": q.zero_point.astype("<f4").tobytes()}
            if entropy == "rans" and code in ("u8", "u16"):
                axes = [None] if q.axis is None or arr.ndim < 2 else [None, q.axis]
                room = table_budget(symbols + data.size) - tables
                coded = encode_tensor(data.reshape(arr.shape), q.bits, axes, room)
                if coded is not None:
                    coding, words = coded
                    symbols += data.size
                    tables += table_cost(q.bits, coding.loc.size)
                    entry["coding"] = {"model": coding.family, "axis": coding.axis,
                                       "loc": coding.loc.astype("<f4").tobytes(),
                                       "scale": coding.scale.astype("<f4").tobytes()}
                    entry["length"] = len(words)
                    data = np.frombuffer(words, dtype=np.uint8)
        entries.append(entry)
        blobs.append((pos, data))
        pos += data.nbytes
    header = pack_msgpack({"tensors": entries, "meta": meta if meta is not None else {}})
    if len(header) > MAX_TENSOR_HEADER:
        raise FormatError(f"tensor bundle header too large: {len(header)} > {MAX_TENSOR_HEADER}")
    data_start = align_up(TENSOR_PREFIX.size + len(header), TENSOR_ALIGNMENT)
    out = bytearray(data_start + pos)
    out[:TENSOR_PREFIX.size] = TENSOR_PREFIX.pack(TENSOR_MAGIC, len(header))
    out[TENSOR_PREFIX.size:TENSOR_PREFIX.size + len(header)] = header
    for off, data in blobs:
        out[data_start + off:data_start + off + data.nbytes] = memoryview(data).cast("B")
    return bytes(out)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _int(entry: dict, key: str, name: str) -> int:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FormatError(f"tensor {name!r}: {key} must be a non-negative integer, got {_short(value)}")
    return value


def _f32_array(value: Any, name: str, key: str) -> np.ndarray:
    if not isinstance(value, bytes) or len(value) % 4:
        raise FormatError(f"tensor {name!r}: {key} must be bin of little-endian float32")
    return np.frombuffer(value, dtype="<f4").astype(np.float32)


def _parse_quant(raw: Any, name: str, code: str, shape: tuple[int, ...]) -> QuantParams:
    if not isinstance(raw, dict) or set(raw) != _QUANT_KEYS:
        raise FormatError(f"tensor {name!r}: quant must be a map with keys {sorted(_QUANT_KEYS)}")
    bits, axis = raw["bits"], raw["axis"]
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise FormatError(f"tensor {name!r}: quant bits must be an integer")
    if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)):
        raise FormatError(f"tensor {name!r}: quant axis must be an integer or nil")
    q = QuantParams(bits, axis, _f32_array(raw["scale"], name, "quant scale"),
                    _f32_array(raw["zero_point"], name, "quant zero_point"))
    _check_quant(name, code, shape, q)
    return q


def unpack_tensors(payload: bytes, *, section: str | None = None, budget: ValueBudget | None = None,
                   max_decoded: int | None = None, allow_coded: bool = True) -> TensorBundle:
    """Decode and strictly validate a tensor bundle; returned arrays are writable copies.

    The decoded arrays together may hold at most `max_decoded` bytes (default max(16 MiB, 16 x payload)),
    checked before anything is decoded. `allow_coded=False` refuses entropy-coded tensors (for files
    that do not declare the `tensor-rans` feature).
    """
    limit = max(DECODED_FLOOR, DECODED_RATIO * len(payload)) if max_decoded is None else max_decoded
    try:
        return _unpack(payload, budget, limit, allow_coded)
    except FormatError as exc:
        if section is None or exc.section is not None:
            raise
        raise FormatError(str(exc), section=section, offset=exc.offset) from None


def check_tensors(head: bytes, total_length: int, *, section: str | None = None,
                  budget: ValueBudget | None = None, allow_coded: bool = True) -> int:
    """Validate a bundle of `total_length` bytes from its first bytes alone (prefix and header).

    `head` must hold at least `tensor_head_length(head, total_length)` bytes. Returns the number of tensors.
    """
    try:
        return len(_parse(head, total_length, budget, allow_coded=allow_coded)[1])
    except FormatError as exc:
        if section is None or exc.section is not None:
            raise
        raise FormatError(str(exc), section=section, offset=exc.offset) from None


def tensor_head_length(first: bytes, total_length: int) -> int:
    """How many leading bytes of a bundle `check_tensors` needs, given at least its first 8 bytes."""
    if len(first) < TENSOR_PREFIX.size:
        return min(TENSOR_PREFIX.size, total_length)
    _, header_len = TENSOR_PREFIX.unpack_from(first, 0)
    return min(total_length, TENSOR_PREFIX.size + min(header_len, MAX_TENSOR_HEADER))


_Entry = tuple[str, str, tuple[int, ...], int, int]


def coded_tensor_names(payload: bytes) -> list[str]:
    """Names of the entropy-coded tensors of a bundle (header only)."""
    return sorted(_parse(payload, len(payload), None)[3])


def _parse(payload: bytes, total: int, budget: ValueBudget | None, max_decoded: int | None = None,
           allow_coded: bool = True) -> tuple[int, list[_Entry], dict, dict[str, Coding], dict]:
    """Prefix and header checks for a bundle of `total` bytes: (data_start, entries, quant, coding, meta)."""
    if total < TENSOR_PREFIX.size:
        raise FormatError("tensor bundle shorter than its prefix", offset=0)
    magic, header_len = TENSOR_PREFIX.unpack_from(payload, 0)
    if magic != TENSOR_MAGIC:
        raise FormatError("bad tensor bundle magic", offset=0)
    if header_len > min(MAX_TENSOR_HEADER, MAX_MSGPACK_BYTES, total - TENSOR_PREFIX.size):
        raise FormatError(f"tensor header length {header_len} out of range", offset=4)
    header = unpack_msgpack(bytes(payload[TENSOR_PREFIX.size:TENSOR_PREFIX.size + header_len]),
                            offset=TENSOR_PREFIX.size, budget=budget)
    if not isinstance(header, dict) or set(header) != {"tensors", "meta"}:
        raise FormatError("tensor header must be a map with keys 'tensors' and 'meta'", offset=TENSOR_PREFIX.size)
    entries, meta = header["tensors"], header["meta"]
    if not isinstance(entries, list) or not isinstance(meta, dict):
        raise FormatError("tensor header: 'tensors' must be an array and 'meta' a map", offset=TENSOR_PREFIX.size)
    if len(entries) > MAX_TENSORS:
        raise FormatError(f"too many tensors: {len(entries)} > {MAX_TENSORS}")
    data_start = align_up(TENSOR_PREFIX.size + header_len, TENSOR_ALIGNMENT)
    if data_start > total:
        raise FormatError("tensor bundle truncated before its data", offset=total)
    data_len = total - data_start
    parsed: list[_Entry] = []
    quant: dict[str, QuantParams] = {}
    coding: dict[str, Coding] = {}
    names: set[str] = set()
    decoded = symbols = tables = 0
    for entry in entries:
        name, code, shape, off, length = _parse_entry(entry, data_len)
        if name in names:
            raise FormatError(f"duplicate tensor name {name!r}")
        names.add(name)
        if "quant" in entry:
            quant[name] = _parse_quant(entry["quant"], name, code, shape)
        count = math.prod(shape)
        decoded += count * DTYPES[code].itemsize
        if "coding" in entry:
            if not allow_coded:
                raise FormatError(f"tensor {name!r} is entropy-coded but the file does not declare the "
                                  "'tensor-rans' feature")
            coding[name] = _parse_coding(entry["coding"], name, code, shape, quant.get(name))
            symbols += count
            tables += table_cost(quant[name].bits, coding[name].loc.size)
            if tables > table_budget(symbols):
                raise FormatError(f"tensor {name!r}: entropy models need {tables} table entries, more than "
                                  f"{table_budget(symbols)} for {symbols} coded values")
        if max_decoded is not None and decoded > max_decoded:
            raise FormatError(f"tensors decode to more than the {max_decoded} bytes allowed for this bundle")
        parsed.append((name, code, shape, off, length))
    spans = sorted((off, length, name) for name, _, _, off, length in parsed)
    for (a_off, a_len, a_name), (b_off, _, b_name) in zip(spans, spans[1:]):
        if a_off + a_len > b_off:
            raise FormatError(f"tensors {a_name!r} and {b_name!r} overlap", offset=data_start + b_off)
    end = max((off + length for off, length, _ in spans), default=0)
    if end != data_len:
        raise FormatError(f"tensor data ends at {end} but the bundle holds {data_len} data bytes",
                          offset=data_start + end)
    return data_start, parsed, quant, coding, meta


def _unpack(payload: bytes, budget: ValueBudget | None, max_decoded: int, allow_coded: bool) -> TensorBundle:
    data_start, entries, quant, coding, meta = _parse(payload, len(payload), budget, max_decoded, allow_coded)
    bundle = TensorBundle({}, quant, meta, {}, coding)
    for name, code, shape, off, length in entries:
        dt = DTYPES[code]
        if name in coding:
            data = bytes(payload[data_start + off:data_start + off + length])
            try:
                arr = decode_tensor(data, shape, quant[name].bits, dt.newbyteorder("="), coding[name])
            except FormatError as exc:
                raise FormatError(f"tensor {name!r}: {exc}", offset=data_start + off) from None
            bundle.tensors[name] = arr
        else:
            arr = np.frombuffer(payload, dtype=dt, count=length // dt.itemsize, offset=data_start + off)
            bundle.tensors[name] = arr.reshape(shape).astype(dt.newbyteorder("="), copy=True)
        bundle.dtypes[name] = code
    return bundle


def _parse_coding(raw: Any, name: str, code: str, shape: tuple[int, ...], q: QuantParams | None) -> Coding:
    if not isinstance(raw, dict) or set(raw) != _CODING_KEYS:
        raise FormatError(f"tensor {name!r}: coding must be a map with keys {sorted(_CODING_KEYS)}")
    if q is None or code not in ("u8", "u16"):
        raise FormatError(f"tensor {name!r}: only quantized u8/u16 tensors may be entropy-coded")
    family, axis = raw["model"], raw["axis"]
    if isinstance(family, bool) or not isinstance(family, int):
        raise FormatError(f"tensor {name!r}: coding model must be an integer")
    if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)):
        raise FormatError(f"tensor {name!r}: coding axis must be an integer or nil")
    c = Coding(family, axis, _f32_array(raw["loc"], name, "coding loc"),
               _f32_array(raw["scale"], name, "coding scale"))
    check_coding(c, q.bits, shape, name)
    return c


def _parse_entry(entry: Any, data_len: int) -> tuple[str, str, tuple[int, ...], int, int]:
    if not isinstance(entry, dict):
        raise FormatError("tensor entry must be a map")
    extra = set(entry) - _ENTRY_KEYS
    missing = _ENTRY_KEYS - _OPTIONAL_KEYS - set(entry)
    if extra or missing:
        raise FormatError(f"tensor entry has unknown keys {sorted(extra)} / lacks {sorted(missing)}")
    name = entry["name"]
    if not isinstance(name, str):
        raise FormatError("tensor name must be a string")
    try:
        raw_name = name.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError("tensor name is not valid UTF-8") from None
    name = decode_name(raw_name, "tensor name")
    code = entry["dtype"]
    if not isinstance(code, str) or code not in DTYPES:
        raise FormatError(f"tensor {name!r}: unknown dtype {_short(code)}")
    shape = entry["shape"]
    if not isinstance(shape, list) or len(shape) > MAX_NDIM:
        raise FormatError(f"tensor {name!r}: shape must be an array of at most {MAX_NDIM} dims")
    count = nonzero = 1
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int) or d < 0:
            raise FormatError(f"tensor {name!r}: bad dimension {_short(d)}")
        count *= d
        nonzero *= max(d, 1)
        if nonzero > MAX_ELEMENTS:
            raise FormatError(f"tensor {name!r}: shape {shape} has more than {MAX_ELEMENTS} elements")
    off = _int(entry, "offset", name)
    length = _int(entry, "length", name)
    if "coding" in entry:
        if length % 4:
            raise FormatError(f"tensor {name!r}: entropy-coded length {length} is not a whole number of 32-bit words")
    elif count * DTYPES[code].itemsize != length:
        raise FormatError(f"tensor {name!r}: shape {shape} x {DTYPES[code].itemsize} bytes != length {length}")
    if off % TENSOR_ALIGNMENT or off > data_len or length > data_len - off:
        raise FormatError(f"tensor {name!r}: [{off}, {off + length}) outside data of {data_len} bytes or unaligned")
    return name, code, tuple(shape), off, length
