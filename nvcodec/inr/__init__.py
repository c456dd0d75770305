"""INR math: planning, HNeRV/NeRV models, fitting, quantization and quality metrics.

Names load lazily, so that `nvcodec.inr.plan` (pure Python) is importable without torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_WHERE = {
    "INRConfig": "plan", "plan_config": "plan",
    "INRDecoder": "model", "HNeRVEncoder": "model", "crop": "model",
    "fit": "fit", "FitResult": "fit",
    "QuantizedINR": "quant", "quantize_inr": "quant", "dequantize_into": "quant",
    "psnr": "metrics", "ssim": "metrics", "ms_ssim": "metrics",
}

__all__ = [
    "INRConfig", "plan_config", "INRDecoder", "HNeRVEncoder", "crop", "fit", "FitResult",
    "QuantizedINR", "quantize_inr", "dequantize_into", "psnr", "ssim", "ms_ssim",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """Keeps `nvcodec.inr.fit` the function, as an eager `from .fit import fit` did, once the
    submodule of the same name is imported."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "fit" and isinstance(value, types.ModuleType):
            value = value.fit
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
