"""The `.nvp` container format (see `spec/nvp-format.md`): sections, tensor bundles, reader, writer, verify.

Tensor bundles and verify load lazily, so that reading the index and metadata (`info`) needs no numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

from nvcodec.container.layout import (
    MAJOR_VERSION, MINOR_VERSION, SUPPORTED_FEATURES, Codec, SectionInfo, SectionKind,
)
from nvcodec.container.msgpack_io import pack_msgpack, unpack_msgpack
from nvcodec.container.reader import NvpReader
from nvcodec.container.writer import Section, append_nvp, compact_nvp, write_nvp

__all__ = [
    "MAJOR_VERSION", "MINOR_VERSION", "SUPPORTED_FEATURES",
    "Codec", "SectionInfo", "SectionKind", "Section",
    "NvpReader", "write_nvp", "append_nvp",
    "check_nvp", "compact_nvp", "describe_problem", "verify_nvp",
    "pack_msgpack", "unpack_msgpack",
    "QuantParams", "TensorBundle", "pack_tensors", "unpack_tensors", "float32_to_bf16_bits", "bf16_bits_to_float32",
]

_LAZY = {name: "tensors" for name in ("QuantParams", "TensorBundle", "bf16_bits_to_float32", "float32_to_bf16_bits",
                                      "pack_tensors", "unpack_tensors")} | {name: "verify" for name in ("check_nvp", "describe_problem", "verify_nvp")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"nvcodec.container.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'nvcodec.container' has no attribute {name!r}")
