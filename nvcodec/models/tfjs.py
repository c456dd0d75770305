"""Reader for TensorFlow.js graph models (``model.json`` + binary weight shards), offline.

A tfjs graph model is a JSON file holding ``modelTopology`` (a GraphDef: a list of nodes
with ``name``, ``op``, ``input`` and ``attr``) and ``weightsManifest`` (groups of shard
files, each listing the tensors stored back to back in its shards: ``name``, ``shape``,
``dtype`` and an optional ``quantization``). `read_tfjs_model` checks every size before
using it and returns the nodes plus every weight as a numpy array; quantized weights come
back dequantized (float16 -> float32, uint8/uint16 affine -> float32).

Every failure is a `WeightsError` (exit 5: weights that cannot be used) naming the file.
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nvcodec.errors import WeightsError

MAX_JSON_BYTES = 64 << 20
MAX_SHARD_BYTES = 512 << 20
MAX_TOTAL_BYTES = 1 << 30
MAX_TENSOR_ELEMENTS = 1 << 28
MAX_RANK = 8
MAX_NODES = 200_000
MAX_WEIGHTS = 100_000
MAX_SHARDS = 1_000

_DTYPES: dict[str, np.dtype[Any]] = {
    "float32": np.dtype("<f4"),
    "int32": np.dtype("<i4"),
    "bool": np.dtype("u1"),
}
_QUANT_DTYPES: dict[str, np.dtype[Any]] = {
    "float16": np.dtype("<f2"),
    "uint8": np.dtype("u1"),
    "uint16": np.dtype("<u2"),
}


@dataclass
class TfjsModel:
    """A parsed tfjs graph model: its nodes, weights (name -> array) and signature."""

    path: Path
    nodes: list[dict[str, Any]]
    weights: dict[str, np.ndarray]
    signature: dict[str, Any] = field(default_factory=dict)

    def node(self, name: str) -> dict[str, Any]:
        """The node called `name`; WeightsError when the graph has none."""
        for n in self.nodes:
            if n.get("name") == name:
                return n
        raise WeightsError(f"{self.path}: the graph has no node {name!r}")


def _fail(path: Path, message: str) -> WeightsError:
    return WeightsError(f"{path}: not a usable tfjs graph model: {message}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise WeightsError(f"{path}: tfjs model.json not found") from None
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if size > MAX_JSON_BYTES:
        raise _fail(path, f"model.json is {size} bytes, more than the {MAX_JSON_BYTES} allowed")
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(MAX_JSON_BYTES + 1).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(path, f"model.json is not JSON ({exc})") from None
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise _fail(path, "model.json does not hold an object")
    return data


def _shape(path: Path, entry: dict[str, Any]) -> tuple[int, ...]:
    shape = entry.get("shape")
    if not isinstance(shape, list) or len(shape) > MAX_RANK:
        raise _fail(path, f"weight {entry.get('name')!r}: shape must be a list of at most {MAX_RANK} sizes")
    if not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_TENSOR_ELEMENTS for d in shape):
        raise _fail(path, f"weight {entry.get('name')!r}: bad shape {shape!r}")
    if math.prod(shape) > MAX_TENSOR_ELEMENTS:
        raise _fail(path, f"weight {entry.get('name')!r}: shape {shape} has more than {MAX_TENSOR_ELEMENTS} elements")
    return tuple(shape)


@dataclass(frozen=True)
class _Entry:
    name: str
    shape: tuple[int, ...]
    stored: np.dtype[Any]
    dtype: str
    quant: dict[str, Any] | None

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.stored.itemsize


def _entry(path: Path, raw: Any) -> _Entry:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise _fail(path, "a weights manifest entry has no name")
    name = raw["name"]
    shape = _shape(path, raw)
    dtype = raw.get("dtype")
    if dtype not in _DTYPES:
        raise _fail(path, f"weight {name!r}: unsupported dtype {dtype!r} (expected one of {', '.join(_DTYPES)})")
    quant = raw.get("quantization")
    if quant is None:
        return _Entry(name, shape, _DTYPES[dtype], dtype, None)
    if not isinstance(quant, dict) or quant.get("dtype") not in _QUANT_DTYPES:
        raise _fail(path, f"weight {name!r}: unsupported quantization {quant!r}")
    if dtype != "float32" and quant["dtype"] == "float16":
        raise _fail(path, f"weight {name!r}: float16 quantization of a {dtype} tensor")
    if quant["dtype"] != "float16":
        for key in ("scale", "min"):
            if not isinstance(quant.get(key), (int, float)) or not math.isfinite(quant[key]):
                raise _fail(path, f"weight {name!r}: quantization needs a finite {key!r}")
    return _Entry(name, shape, _QUANT_DTYPES[quant["dtype"]], dtype, quant)


def _shard_path(path: Path, name: Any) -> Path:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
        raise _fail(path, f"shard path {name!r} must be a plain file name next to model.json")
    return path.parent / name


def _decode(entry: _Entry, buf: bytes) -> np.ndarray:
    arr = np.frombuffer(buf, dtype=entry.stored).reshape(entry.shape)
    if entry.quant is None:
        return arr.astype(entry.stored.newbyteorder("="), copy=True)
    if entry.quant["dtype"] == "float16":
        return arr.astype(np.float32)
    values = arr.astype(np.float32) * np.float32(entry.quant["scale"]) + np.float32(entry.quant["min"])
    return values.astype(np.int32) if entry.dtype == "int32" else values


def _read_group(path: Path, group: Any, total: list[int]) -> dict[str, np.ndarray]:
    if not isinstance(group, dict) or not isinstance(group.get("paths"), list) or not isinstance(
        group.get("weights"), list
    ):
        raise _fail(path, "a weights manifest group needs 'paths' and 'weights' lists")
    if len(group["paths"]) > MAX_SHARDS or len(group["weights"]) > MAX_WEIGHTS:
        raise _fail(path, "too many shards or weights in a manifest group")
    entries = [_entry(path, w) for w in group["weights"]]
    expected = sum(e.nbytes for e in entries)
    shards = [_shard_path(path, p) for p in group["paths"]]
    sizes = []
    for shard in shards:
        try:
            info = shard.stat()
        except OSError:
            raise WeightsError(f"{path}: weight shard {shard} not found") from None
        if not stat.S_ISREG(info.st_mode):
            raise _fail(path, f"shard {shard.name} is not a regular file")
        size = info.st_size
        if size > MAX_SHARD_BYTES:
            raise _fail(path, f"shard {shard.name} is {size} bytes, more than the {MAX_SHARD_BYTES} allowed")
        sizes.append(size)
    if sum(sizes) != expected:
        raise _fail(path, f"shards {', '.join(s.name for s in shards)} hold {sum(sizes)} bytes "
                          f"but the manifest describes {expected}")
    total[0] += expected
    if total[0] > MAX_TOTAL_BYTES:
        raise _fail(path, f"the weights add up to more than {MAX_TOTAL_BYTES} bytes")
    data = bytearray()
    for shard, size in zip(shards, sizes):
        with open(shard, "rb") as f:
            chunk = f.read(size + 1)
        if len(chunk) != size:
            raise _fail(path, f"shard {shard.name} changed size while being read")
        data += chunk
    out: dict[str, np.ndarray] = {}
    offset = 0
    view = bytes(data)
    for e in entries:
        if e.name in out:
            raise _fail(path, f"weight {e.name!r} is listed twice")
        out[e.name] = _decode(e, view[offset : offset + e.nbytes])
        offset += e.nbytes
    return out


def read_tfjs_model(path: str | os.PathLike[str]) -> TfjsModel:
    """Parse a tfjs graph model: `path` is its ``model.json`` (shards are read from the same folder)."""
    path = Path(path)
    data = _read_json(path)
    topology = data.get("modelTopology")
    manifest = data.get("weightsManifest")
    if not isinstance(topology, dict) or not isinstance(topology.get("node"), list):
        raise _fail(path, "no modelTopology.node list (is this a tfjs graph model?)")
    if not isinstance(manifest, list) or len(manifest) > MAX_SHARDS:
        raise _fail(path, "no weightsManifest list")
    nodes = topology["node"]
    if len(nodes) > MAX_NODES:
        raise _fail(path, f"the graph has {len(nodes)} nodes, more than the {MAX_NODES} allowed")
    for n in nodes:
        if not isinstance(n, dict) or not isinstance(n.get("name"), str) or not isinstance(n.get("op"), str):
            raise _fail(path, "a graph node has no name or op")
        if not isinstance(n.get("input", []), list) or not isinstance(n.get("attr", {}), dict):
            raise _fail(path, f"node {n['name']!r}: malformed input or attr")
    weights: dict[str, np.ndarray] = {}
    total = [0]
    for group in manifest:
        for name, arr in _read_group(path, group, total).items():
            if name in weights:
                raise _fail(path, f"weight {name!r} is listed twice")
            weights[name] = arr
    signature = data.get("signature") if isinstance(data.get("signature"), dict) else {}
    return TfjsModel(path, nodes, weights, signature)
