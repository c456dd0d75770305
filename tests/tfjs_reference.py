"""Test-only reference: executes a tfjs graph model's node list op by op in numpy.

Independent of `nvcodec.models.nanodet` and `nvcodec.models.centernet` (it shares only the
weights reader): every op follows TensorFlow's definition (NHWC convolutions with explicit
``Pad`` nodes or ``SAME`` padding, grappler's fused conv + bias + activation ops, depthwise
convolutions, TF's bilinear resize with and without half-pixel centres, ``TopKV2`` with ties in
index order, ...). Slow (seconds per frame) and meant for checking our PyTorch modules against
the graph the weights came with.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from nvcodec.models.tfjs import TfjsModel


def _attr(node: dict[str, Any], key: str, default: Any = None) -> Any:
    a = node.get("attr", {}).get(key)
    if a is None:
        return default
    if "list" in a:
        lst = a["list"]
        if "i" in lst:
            return [int(v) for v in lst["i"]]
        if "f" in lst:
            return [float(v) for v in lst["f"]]
        if "s" in lst:
            return [base64.b64decode(v).decode() for v in lst["s"]]
        return []
    if "s" in a:
        return base64.b64decode(a["s"]).decode()
    if "i" in a:
        return int(a["i"])
    if "f" in a:
        return float(a["f"])
    if "b" in a:
        return bool(a["b"])
    return next(iter(a.values()))


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's ``SAME`` padding (before, after) along one axis: output ceil(size / stride)."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: np.ndarray, kh: int, kw: int, strides: list[int], padding: str, value: float = 0.0) -> np.ndarray:
    if padding == "VALID":
        return x
    if padding != "SAME":
        raise NotImplementedError(f"padding={padding}")
    pads = [(0, 0), _same_pads(x.shape[1], kh, strides[1]), _same_pads(x.shape[2], kw, strides[2]), (0, 0)]
    return np.pad(x, pads, constant_values=value)


def _conv2d_nhwc(x: np.ndarray, w: np.ndarray, strides: list[int], padding: str, dilations: list[int]) -> np.ndarray:
    if any(d != 1 for d in dilations):
        raise NotImplementedError(f"Conv2D dilations={dilations}")
    kh, kw, cin, cout = w.shape
    x = _pad_same(x, kh, kw, strides, padding)
    sh, sw = strides[1], strides[2]
    win = sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]  # N,Ho,Wo,C,kh,kw
    return np.einsum("nhwcij,ijco->nhwo", win, w, optimize=True).astype(np.float32)


def _depthwise_nhwc(x: np.ndarray, w: np.ndarray, strides: list[int], padding: str, dilations: list[int]) -> np.ndarray:
    """``DepthwiseConv2dNative``: kernel (kh, kw, C, multiplier) -> C * multiplier channels (c-major)."""
    if any(d != 1 for d in dilations):
        raise NotImplementedError(f"DepthwiseConv2dNative dilations={dilations}")
    kh, kw, cin, mult = w.shape
    x = _pad_same(x, kh, kw, strides, padding)
    sh, sw = strides[1], strides[2]
    ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    out = np.zeros((x.shape[0], ho, wo, cin, mult), np.float32)
    for i in range(kh):
        for j in range(kw):
            tap = x[:, i : i + (ho - 1) * sh + 1 : sh, j : j + (wo - 1) * sw + 1 : sw]
            out += tap[..., None] * w[i, j]
    return out.reshape(x.shape[0], ho, wo, cin * mult)


def _maxpool_nhwc(x: np.ndarray, ksize: list[int], strides: list[int], padding: str) -> np.ndarray:
    x = _pad_same(x, ksize[1], ksize[2], strides, padding, value=-np.inf)
    win = sliding_window_view(x, (ksize[1], ksize[2]), axis=(1, 2))[:, :: strides[1], :: strides[2]]
    return win.max(axis=(-2, -1))


def _fused(y: np.ndarray, ops: list[str], args: list[np.ndarray], alpha: float) -> np.ndarray:
    """Grappler's fused ops after a convolution: ``BiasAdd`` then an optional activation."""
    for op in ops:
        if op == "BiasAdd":
            y = y + args[0]
        elif op == "Relu":
            y = np.maximum(y, 0)
        elif op == "Relu6":
            y = np.clip(y, 0, 6)
        elif op == "LeakyRelu":
            y = np.where(y >= 0, y, y * np.float32(alpha))
        else:
            raise NotImplementedError(f"fused op {op}")
    return y.astype(np.float32)


def _topk(x: np.ndarray, k: int) -> list[np.ndarray]:
    """``TopKV2`` (sorted) over the last axis: equal values in index order."""
    order = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    return [np.take_along_axis(x, order, -1), order.astype(np.int32)]


def _strided_slice(node: dict[str, Any], x: np.ndarray, begin: np.ndarray, end: np.ndarray,
                   strides: np.ndarray) -> np.ndarray:
    if _attr(node, "ellipsis_mask", 0) or _attr(node, "new_axis_mask", 0):
        raise NotImplementedError("StridedSlice ellipsis/new axis masks")
    bm, em, sm = _attr(node, "begin_mask", 0), _attr(node, "end_mask", 0), _attr(node, "shrink_axis_mask", 0)
    index: list[Any] = []
    for d, (b, e, s) in enumerate(zip(begin.tolist(), end.tolist(), strides.tolist())):
        if sm >> d & 1:
            index.append(int(b))
        else:
            index.append(slice(None if bm >> d & 1 else int(b), None if em >> d & 1 else int(e), int(s)))
    return x[tuple(index)]


_CAST = {"DT_FLOAT": np.float32, "DT_INT32": np.int32, "DT_BOOL": np.bool_, "DT_INT64": np.int64}


def _resize_bilinear_nhwc(x: np.ndarray, size: np.ndarray, half_pixel: bool, align: bool) -> np.ndarray:
    """TensorFlow's ResizeBilinear (compute_interpolation_weights in resize_bilinear_op.cc)."""
    if align:
        raise NotImplementedError("ResizeBilinear align_corners")
    out_h, out_w = int(size[0]), int(size[1])

    def weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scale = in_size / out_size
        i = np.arange(out_size, dtype=np.float64)
        src = (i + 0.5) * scale - 0.5 if half_pixel else i * scale
        low = np.floor(src)
        lerp = (src - low).astype(np.float32)
        lo = np.maximum(low, 0).astype(np.int64)
        hi = np.minimum(np.ceil(src), in_size - 1).astype(np.int64)
        return lo, hi, lerp

    y0, y1, ly = weights(x.shape[1], out_h)
    x0, x1, lx = weights(x.shape[2], out_w)
    top = x[:, y0][:, :, x0] + (x[:, y0][:, :, x1] - x[:, y0][:, :, x0]) * lx[None, None, :, None]
    bot = x[:, y1][:, :, x0] + (x[:, y1][:, :, x1] - x[:, y1][:, :, x0]) * lx[None, None, :, None]
    return (top + (bot - top) * ly[None, :, None, None]).astype(np.float32)


def _sparse_to_dense(idx: np.ndarray, shape: np.ndarray, values: np.ndarray, default: np.ndarray) -> np.ndarray:
    out = np.full(tuple(int(s) for s in shape), default, dtype=np.asarray(default).dtype)
    idx = idx.reshape(-1, len(shape)) if idx.size else idx.reshape(0, len(shape))
    vals = np.broadcast_to(values, (idx.shape[0],))
    for row, v in zip(idx, vals):
        out[tuple(row)] = v
    return out


def _reshape(x: np.ndarray, shape: np.ndarray) -> np.ndarray:
    return x.reshape(tuple(int(s) for s in shape))


class GraphExecutor:
    """Evaluates tensors of a `TfjsModel` by name (``node`` or ``node:k``), memoizing every node."""

    def __init__(self, model: TfjsModel, feeds: dict[str, np.ndarray]) -> None:
        self.nodes = {n["name"]: n for n in model.nodes}
        self.weights = model.weights
        self.values: dict[str, list[np.ndarray]] = {k: [np.asarray(v)] for k, v in feeds.items()}

    def tensor(self, ref: str) -> np.ndarray:
        name, _, index = ref.lstrip("^").partition(":")
        if name not in self.values:
            self._run(name)
        return self.values[name][int(index or 0)]

    def _run(self, name: str) -> None:
        stack = [name]
        while stack:
            top = stack[-1]
            node = self.nodes[top]
            pending = [i.partition(":")[0] for i in node.get("input", []) if not i.startswith("^")]
            pending = [p for p in pending if p not in self.values]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            if top not in self.values:
                self.values[top] = self._eval(node)

    def _eval(self, node: dict[str, Any]) -> list[np.ndarray]:
        op = node["op"]
        ins = [self.tensor(i) for i in node.get("input", []) if not i.startswith("^")]
        if op == "Const":
            return [self.weights[node["name"]]]
        if op == "Placeholder":
            raise KeyError(f"no value fed for placeholder {node['name']!r}")
        if op == "Identity":
            return [ins[0]]
        if op in ("Add", "AddV2"):
            return [np.add(ins[0], ins[1])]
        if op == "Mul":
            return [np.multiply(ins[0], ins[1])]
        if op == "Sub":
            return [np.subtract(ins[0], ins[1])]
        if op == "Pad":
            return [np.pad(ins[0], ins[1].astype(np.int64))]
        if op == "PadV2":
            return [np.pad(ins[0], ins[1].astype(np.int64), constant_values=ins[2].item())]
        if op == "Transpose":
            return [np.ascontiguousarray(np.transpose(ins[0], ins[1].astype(np.int64)))]
        if op == "Conv2D":
            if _attr(node, "data_format", "NHWC") != "NHWC":
                raise NotImplementedError("Conv2D data_format")
            return [_conv2d_nhwc(ins[0], ins[1], _attr(node, "strides"), _attr(node, "padding"),
                                 _attr(node, "dilations", [1, 1, 1, 1]))]
        if op in ("_FusedConv2D", "FusedDepthwiseConv2dNative", "DepthwiseConv2dNative"):
            if _attr(node, "data_format", "NHWC") != "NHWC":
                raise NotImplementedError(f"{op} data_format")
            conv = _conv2d_nhwc if op == "_FusedConv2D" else _depthwise_nhwc
            y = conv(ins[0], ins[1], _attr(node, "strides"), _attr(node, "padding"),
                     _attr(node, "dilations", [1, 1, 1, 1]))
            return [_fused(y, _attr(node, "fused_ops", []), ins[2:], _attr(node, "leakyrelu_alpha", 0.2))]
        if op == "MaxPool":
            return [_maxpool_nhwc(ins[0], _attr(node, "ksize"), _attr(node, "strides"), _attr(node, "padding"))]
        if op == "LeakyRelu":
            alpha = _attr(node, "alpha", 0.2)
            return [np.where(ins[0] >= 0, ins[0], ins[0] * np.float32(alpha)).astype(np.float32)]
        if op == "Relu":
            return [np.maximum(ins[0], 0)]
        if op == "Relu6":
            return [np.clip(ins[0], 0, 6)]
        if op == "Mean":
            axes = tuple(int(a) for a in np.atleast_1d(ins[1]))
            return [np.mean(ins[0], axis=axes, keepdims=bool(_attr(node, "keep_dims", False))).astype(ins[0].dtype)]
        if op == "Equal":
            return [np.equal(ins[0], ins[1])]
        if op == "Cast":
            return [ins[0].astype(_CAST[_attr(node, "DstT")])]
        if op == "TopKV2":
            return _topk(ins[0], int(ins[1]))
        if op == "FloorDiv":
            return [np.floor_divide(ins[0], ins[1])]
        if op == "FloorMod":
            return [np.mod(ins[0], ins[1])]
        if op == "ExpandDims":
            return [np.expand_dims(ins[0], int(ins[1]))]
        if op == "GatherV2":
            if _attr(node, "batch_dims", 0):
                raise NotImplementedError("GatherV2 batch_dims")
            return [np.take(ins[0], ins[1].astype(np.int64), axis=int(ins[2]))]
        if op == "StridedSlice":
            return [_strided_slice(node, *ins)]
        if op == "Sigmoid":
            return [(1.0 / (1.0 + np.exp(-ins[0].astype(np.float64)))).astype(np.float32)]
        if op == "ConcatV2":
            return [np.concatenate(ins[:-1], axis=int(ins[-1]))]
        if op == "SplitV":
            sizes, axis = ins[1].astype(np.int64), int(ins[2])
            return list(np.split(ins[0], np.cumsum(sizes)[:-1], axis=axis))
        if op == "ResizeBilinear":
            return [_resize_bilinear_nhwc(ins[0], ins[1], bool(_attr(node, "half_pixel_centers", False)),
                                          bool(_attr(node, "align_corners", False)))]
        if op == "SparseToDense":
            return [_sparse_to_dense(*ins)]
        if op == "Reshape":
            return [_reshape(ins[0], ins[1])]
        raise NotImplementedError(f"op {op} ({node['name']})")


def run_graph(model: TfjsModel, feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    """Values of the `outputs` tensors for the given placeholder `feeds`."""
    ex = GraphExecutor(model, feeds)
    return {name: ex.tensor(name) for name in outputs}
