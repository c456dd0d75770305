"""INR model <-> `.nvp` sections.

Sections (zstd; with entropy="rans" zstd with the built-in dictionary where that is smaller, see
`section_codec`): `{prefix}model` (MODEL, msgpack of `INRConfig.to_dict()`), `{prefix}embeddings`
(EMBEDDINGS, HNeRV only; tensor "embeddings" (N, C, eh, ew)), `{prefix}block/{k}` (INR_BLOCK, the
parameters of decoder block k, names as in `INRDecoder.block_state_dict(k)`) and `{prefix}head`
(INR_HEAD). Quantized tensors are stored as uint8/uint16 with their `QuantParams`, rANS-coded by
default (entropy="rans": each tensor under its smallest parametric model, raw when coding does not
pay; a section keeps its raw bundle when that compresses smaller with zstd, as for repetitive
values an order-0 model cannot see; sections that use coding require the `tensor-rans` feature);
unquantized ones as float16.
Bundle meta: {"block": k} / {"head": True} / {"embeddings": True}.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..container import NvpReader, QuantParams, Section, SectionKind, TensorBundle, pack_msgpack, pack_tensors
from ..container.compression import zstd_size
from ..container.layout import FINE_GRID_FEATURE, MID_GRID_FEATURE, RANS_FEATURE, Codec
from ..container.tensors import ENTROPY_MODES, coded_tensor_names
from ..errors import FormatError, UsageError
from ..inr.model import INRDecoder
from ..inr.plan import INRConfig
from ..inr.qat import QuantPlan
from ..inr.quant import QTensor, QuantizedINR, dequantize_tensor
from .meta import model_config

EMBEDDINGS_TENSOR = "embeddings"
# Bundle size bounds from the shapes a model needs: each value takes 1..8 bytes, each tensor at
# most TENSOR_OVERHEAD bytes of header and padding plus 8 bytes per channel of quantization.
TENSOR_OVERHEAD = 1024
BUNDLE_OVERHEAD = 64 * 1024


def section_codec(entropy: str) -> Codec:
    """The codec of an encode's sections: ZSTD_DICT (zstd with the built-in dictionary where that is
    smaller; needs a reader with `zstd-dict-1`) with entropy="rans", plain ZSTD (format 1.0) with "none"."""
    return Codec.ZSTD_DICT if entropy == "rans" else Codec.ZSTD


def _bundle(name: str, kind: SectionKind, qd: dict[str, QTensor], floats: dict[str, np.ndarray], meta: dict,
            entropy: str) -> Section:
    tensors: dict[str, np.ndarray] = {}
    quant: dict[str, QuantParams] = {}
    for tname, (q, p) in qd.items():
        tensors[tname] = np.ascontiguousarray(q)
        quant[tname] = p
    for tname, a in floats.items():
        tensors[tname] = np.ascontiguousarray(a, dtype=np.float16)
    raw = pack_tensors(tensors, quant, meta)
    codec = section_codec(entropy)
    if entropy == "rans":
        coded = pack_tensors(tensors, quant, meta, entropy="rans")
        if coded_tensor_names(coded) and zstd_size(coded, codec) < zstd_size(raw, codec):
            return Section(name, kind, coded, codec, features=(RANS_FEATURE,))
    return Section(name, kind, raw, codec)


def inr_sections(config: INRConfig, qinr: QuantizedINR, prefix: str = "", entropy: str = "rans") -> list[Section]:
    """Sections for one INR: model, embeddings (HNeRV), blocks 0..n-1, head.

    entropy="rans" (default) rANS-codes the quantized tensors and compresses with the built-in dictionary;
    "none" stores them raw with plain zstd (format 1.0 readers).
    """
    if entropy not in ENTROPY_MODES:
        raise UsageError(f"entropy must be one of {', '.join(ENTROPY_MODES)}, got {entropy!r}")
    if len(qinr.blocks) != config.num_blocks:
        raise UsageError(f"quantized model has {len(qinr.blocks)} blocks, config {config.num_blocks}")
    if (config.embedding_shape() is not None) != (qinr.embeddings is not None):
        raise UsageError("HNeRV / HiNeRV models need embeddings, NeRV models have none")
    model_features = ((FINE_GRID_FEATURE,) if config.fine_grid_shape() is not None else ()) + \
        ((MID_GRID_FEATURE,) if config.mid_grid_shape() is not None else ())
    sections = [Section(f"{prefix}model", SectionKind.MODEL, pack_msgpack(config.to_dict()), section_codec(entropy),
                        features=model_features)]
    if qinr.embeddings is not None:
        sections.append(_bundle(f"{prefix}embeddings", SectionKind.EMBEDDINGS, {EMBEDDINGS_TENSOR: qinr.embeddings},
                                {}, {"embeddings": True}, entropy))
    for k, qd in enumerate(qinr.blocks):
        floats = qinr.block_floats[k] if k < len(qinr.block_floats) else {}
        sections.append(_bundle(f"{prefix}block/{k}", SectionKind.INR_BLOCK, qd, floats, {"block": k}, entropy))
    sections.append(_bundle(f"{prefix}head", SectionKind.INR_HEAD, qinr.head, qinr.head_floats, {"head": True},
                            entropy))
    return sections


def _values(bundle: TensorBundle, expected: dict[str, tuple[int, ...]], section: str) -> dict[str, Tensor]:
    """Float32 tensors of a bundle, checked against the expected names and shapes."""
    if set(bundle.tensors) != set(expected):
        raise FormatError(f"tensors {sorted(bundle.tensors)} do not match the model ({sorted(expected)})",
                          section=section)
    out: dict[str, Tensor] = {}
    for name, shape in expected.items():
        arr = bundle.tensors[name]
        if tuple(arr.shape) != tuple(shape):
            raise FormatError(f"tensor {name!r} has shape {list(arr.shape)}, the model needs {list(shape)}",
                              section=section)
        if name in bundle.quant:
            values = dequantize_tensor(arr, bundle.quant[name])
        elif bundle.dtypes.get(name) in ("f16", "f32", "bf16"):
            values = bundle.dequantized(name)
        else:
            raise FormatError(f"tensor {name!r} is an integer tensor without quantization parameters",
                              section=section)
        if not np.all(np.isfinite(values)):
            raise FormatError(f"tensor {name!r} holds NaN or infinite values", section=section)
        out[name] = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    return out


def _shapes(sd: dict[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in sd.items()}


def bundle_size_range(shapes: dict[str, tuple[int, ...]], coded: bool = False) -> tuple[int, int]:
    """(fewest, most) payload bytes a tensor bundle holding tensors of these shapes can take.

    With `coded` (the file declares `tensor-rans`) rANS-coded tensors may take almost no bytes, so
    the fewest is only the bundle prefix; the most still holds (writers never code a tensor larger
    than its raw values).
    """
    values = [int(np.prod(shape, dtype=np.int64)) for shape in shapes.values()]
    widest = [max(shape, default=1) for shape in shapes.values()]
    least = 8 if coded else sum(values)
    return least, BUNDLE_OVERHEAD + sum(8 * v + 8 * w + TENSOR_OVERHEAD for v, w in zip(values, widest))


def _check_model_sections(reader: NvpReader, needed: list[tuple[str, dict[str, tuple[int, ...]]]]) -> None:
    """Before anything is allocated: every section a decoder needs exists, has a raw length that fits
    the shapes it must hold, and together they stay within what the reader decodes at once."""
    total = 0
    coded = RANS_FEATURE in reader.required_features
    for name, shapes in needed:
        least, most = bundle_size_range(shapes, coded)
        info = reader.check_size(name, most)
        if info.raw_length < least:
            raise FormatError(f"section holds {info.raw_length} bytes, too few for the model's {least} values",
                              section=name, offset=info.offset)
        total += info.raw_length
    if total > reader.max_read_bytes:
        raise FormatError(f"model sections hold {total} bytes, more than the {reader.max_read_bytes} this reader "
                          "decodes for one model", section=needed[0][0])


@torch.no_grad()
def load_decoder(reader: NvpReader, prefix: str = "", upto_block: int | None = None,
                 device: str | torch.device = "cpu") -> tuple[INRDecoder, Tensor | None]:
    """Decoder with dequantized weights (eval mode) and dequantized embeddings (HNeRV) on `device`.

    Reads only `{prefix}model`, `{prefix}embeddings`, blocks 0..upto_block and (when upto_block is
    None) the head. Blocks after `upto_block` stay uninitialized and refuse to run (UsageError).
    """
    config = model_config(reader, prefix)
    n = config.num_blocks
    if upto_block is not None and (isinstance(upto_block, bool) or not isinstance(upto_block, int)
                                   or not 0 <= upto_block < n):
        raise UsageError(f"upto_block must be in 0..{n - 1}, got {upto_block!r}")
    last = n - 1 if upto_block is None else upto_block
    dev = torch.device(device)
    with torch.device("meta"):
        decoder = INRDecoder(config)
    needed = [(f"{prefix}block/{k}", _shapes(decoder.block_state_dict(k))) for k in range(last + 1)]
    if upto_block is None:
        needed.append((f"{prefix}head", _shapes(decoder.head_state_dict())))
    shape = config.embedding_shape()
    if shape is not None:
        needed.append((f"{prefix}embeddings", {EMBEDDINGS_TENSOR: shape}))
    _check_model_sections(reader, needed)
    limits = {name: bundle_size_range(shapes)[1] for name, shapes in needed}
    decoder = decoder.to_empty(device=dev)
    for k in range(last + 1):
        name = f"{prefix}block/{k}"
        values = _values(reader.read_tensors(name, limits[name]), _shapes(decoder.block_state_dict(k)), name)
        decoder.load_block_state_dict(k, values)
    decoder.loaded_blocks = last + 1
    decoder.has_head = upto_block is None
    if upto_block is None:
        name = f"{prefix}head"
        decoder.load_head_state_dict(_values(reader.read_tensors(name, limits[name]), _shapes(decoder.head_state_dict()),
                                             name))
    embeddings = None
    if shape is not None:
        name = f"{prefix}embeddings"
        embeddings = _values(reader.read_tensors(name, limits[name]), {EMBEDDINGS_TENSOR: shape}, name)[EMBEDDINGS_TENSOR].to(dev)
    decoder.eval()
    return decoder, embeddings


def stored_plan(reader: NvpReader, decoder: INRDecoder, prefix: str = "", keep_zeros: bool = False) -> QuantPlan:
    """The `QuantPlan` the file's INR was stored with: each tensor's bits and per-tensor / per-channel
    axis as its section holds them, and the embeddings' (so re-quantizing keeps the file's layout and
    rate). With `keep_zeros` (a pruned file), every value stored at the level nearest 0 gets a mask
    that keeps it at zero, which holds the file's sparsity."""
    plan = QuantPlan()
    parts = [(("block", k), f"{prefix}block/{k}", decoder.block_state_dict(k)) for k in range(decoder.num_blocks)]
    parts.append((("head", 0), f"{prefix}head", decoder.head_state_dict()))
    for part, name, sd in parts:
        _check_model_sections(reader, [(name, _shapes(sd))])
        bundle = reader.read_tensors(name, bundle_size_range(_shapes(sd))[1])
        for tname, t in sd.items():
            key = (*part, tname)
            q = bundle.quant.get(tname)
            if q is None or tname not in bundle.tensors or tuple(bundle.tensors[tname].shape) != tuple(t.shape):
                raise FormatError(f"tensor {tname!r} is not stored quantized with the model's shape", section=name)
            plan.bits[key], plan.axes[key] = int(q.bits), q.axis
            if keep_zeros and t.ndim == 4:
                zero = np.rint(np.asarray(q.zero_point, dtype=np.float64)).reshape(
                    [-1 if d == q.axis else 1 for d in range(t.ndim)] if q.axis is not None else [1] * t.ndim)
                mask = bundle.tensors[tname].astype(np.float64) != zero
                if not mask.all():
                    plan.masks[key] = torch.from_numpy(mask).to(t.device)
    shape = decoder.config.embedding_shape()
    if shape is not None:
        name = f"{prefix}embeddings"
        bundle = reader.read_tensors(name, bundle_size_range({EMBEDDINGS_TENSOR: shape})[1])
        q = bundle.quant.get(EMBEDDINGS_TENSOR)
        if q is None:
            raise FormatError("the embeddings are not stored quantized", section=name)
        plan.embed_bits, plan.embed_axis = int(q.bits), q.axis
    return plan
