"""INR math: planning, HNeRV/NeRV models, fitting, quantization and quality metrics."""

from __future__ import annotations

from .fit import FitResult, fit
from .metrics import ms_ssim, psnr, ssim
from .model import HNeRVEncoder, INRDecoder, crop
from .plan import INRConfig, plan_config
from .quant import QuantizedINR, dequantize_into, quantize_inr

__all__ = [
    "INRConfig", "plan_config", "INRDecoder", "HNeRVEncoder", "crop", "fit", "FitResult",
    "QuantizedINR", "quantize_inr", "dequantize_into", "psnr", "ssim", "ms_ssim",
]
