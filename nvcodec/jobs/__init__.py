"""Many videos as jobs: `batch()` encodes a folder or list (on Ray when installed), `batch_infer()` queries the results.

Public as `nvcodec.batch(...)` and `nvcodec.batch_infer(...)`.
"""

from .encode_all import batch
from .infer_all import batch_infer

__all__ = ["batch", "batch_infer"]
