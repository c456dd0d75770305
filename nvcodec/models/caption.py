"""The ``caption`` output type: post-processing, fidelity and distillation of generated captions.

Raw outputs are ``{"tokens": (N, L), "logits": (N, L, vocab)}`` as the BLIP tail returns them
(`nvcodec.models.blip`): caption token ids padded with -1, and the decoder's scores of each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from nvcodec.errors import UsageError
from nvcodec.models.agreement import caption_ids, corpus_bleu, token_agreement
from nvcodec.models.geometry import Geometry
from nvcodec.models.heads import Head

SCHEMA = {
    "per_frame": "a list holding one caption",
    "fields": {
        "caption": "str: the generated caption (special tokens dropped)",
        "tokens": "list of int: its token ids, the end token included when generated",
    },
}


def _check(raw: Any) -> None:
    if not isinstance(raw, dict) or "tokens" not in raw or "logits" not in raw:
        raise UsageError("caption output must be a dict with 'tokens' and 'logits'")


def postprocess(spec: Any, raw: dict[str, Tensor], geometry: Geometry, frame_hw: Sequence[int] | None,
                model: Any = None, **_: Any) -> list[list[dict[str, Any]]]:
    """One ``{"caption", "tokens"}`` per frame; `model` (the captioner) decodes the text."""
    _check(raw)
    if model is None or not hasattr(model, "decode"):
        raise UsageError("caption post-processing needs the captioning model (its tokenizer)")
    return [[{"caption": model.decode(ids), "tokens": ids}] for ids in caption_ids(raw["tokens"])]


def fidelity(raw_adapter: dict[str, Tensor], raw_pixel: dict[str, Tensor]) -> float:
    """0.5 * token agreement + 0.5 * corpus BLEU-4 of the captions' token ids, the pixel path's as
    references (`nvcodec.models.agreement`); 1 when every caption is identical."""
    _check(raw_adapter)
    _check(raw_pixel)
    a, p = caption_ids(raw_adapter["tokens"]), caption_ids(raw_pixel["tokens"])
    if len(a) != len(p) or not a:
        raise UsageError(f"cannot compare {len(a)} captions with {len(p)}")
    return 0.5 * token_agreement(a, p) + 0.5 * corpus_bleu(a, p)


def distill(raw_student: dict[str, Tensor], raw_teacher: dict[str, Tensor]) -> Tensor:
    """KL(teacher || student) of the decoder's next-token distributions at the teacher caption's
    positions, the student teacher-forced on those tokens (see `distill_context`); mean over tokens."""
    logq = torch.log_softmax(raw_student["logits"].float(), -1)
    logp = torch.log_softmax(raw_teacher["logits"].float().to(logq.device), -1)
    mask = (raw_teacher["tokens"].to(logq.device) >= 0).float()
    kl = (logp.exp() * (logp - logq)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1.0)


def distill_context(raw_teacher: dict[str, Tensor]) -> dict[str, Tensor]:
    """Tail arguments for distillation: teacher-force the teacher's caption tokens."""
    return {"tokens": raw_teacher["tokens"].long()}



HEAD = Head("caption", postprocess, fidelity, distill, {}, distill_context)
"""The caption output type, for task declarations."""
