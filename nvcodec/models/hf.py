"""Loading transformers models from Hugging Face model directories, quietly and checked."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nvcodec.errors import WeightsError


def _describe_mismatch(item: Any) -> str:
    if isinstance(item, (tuple, list)) and len(item) == 3:
        key, ckpt, model = item
        return f"{key} {tuple(ckpt)} vs {tuple(model)}"
    return str(item)


@contextmanager
def quiet() -> Iterator[None]:
    """transformers' logging at error level and its progress bars off, restored afterwards."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_pretrained_dir(model_cls: Any, path: Path, config: Any, what: str) -> Any:
    """``model_cls.from_pretrained(path, config=config)`` without logs or progress bars.

    Raises WeightsError naming missing and shape-mismatched keys (transformers' own key
    conversions for older checkpoints apply), or the reason the files could not be read.
    """
    try:
        with quiet():
            model, info = model_cls.from_pretrained(
                str(path), config=config, output_loading_info=True, ignore_mismatched_sizes=True
            )
    except Exception as exc:  # unreadable or unconvertible files surface as various exceptions
        raise WeightsError(f"{path}: cannot load {what} weights ({type(exc).__name__}: {exc})") from None
    missing = sorted(k for k in info.get("missing_keys", []) if not k.endswith("num_batches_tracked"))
    mismatched = sorted(_describe_mismatch(k) for k in info.get("mismatched_keys", []))
    if missing or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys: {len(missing)} ({', '.join(missing[:5])})")
        if mismatched:
            parts.append(f"shape mismatches: {len(mismatched)} ({', '.join(mismatched[:3])})")
        raise WeightsError(f"{path}: {what} weights do not fit the model: " + "; ".join(parts))
    return model


def load_config_dir(config_cls: Any, path: Path, what: str) -> Any:
    """``config_cls.from_pretrained(path)``; WeightsError when the directory holds no such model."""
    try:
        return config_cls.from_pretrained(str(path))
    except Exception as exc:  # any config parse error means the directory is not this model
        raise WeightsError(f"{path}: not a {what} model directory ({type(exc).__name__}: {exc})") from None
