"""Output heads shared by tasks: post-processing, fidelity and distillation per output type.

A `Head` bundles what the adapter machinery needs from a task's output type. `CLASSIFICATION`
(top-k over the task's labels) and `DETECTION` (DETR-style set prediction: class logits with a
final no-object column, normalized cxcywh boxes) are here; captions are in `caption`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from nvcodec.errors import UsageError
from nvcodec.models.geometry import Geometry, boxes_to_frame, cxcywh_to_xyxy
from nvcodec.models.labels import label_name

DEFAULT_TOP_K = 5
DEFAULT_DETECTION_THRESHOLD = 0.7
BOX_L1_SCALE = 10.0
"""Detection fidelity box term: exp(-BOX_L1_SCALE * weighted mean L1 of normalized cxcywh boxes)."""


@dataclass(frozen=True)
class Head:
    """One output type: how raw outputs become JSON rows, how two raw outputs compare, how to distill.

    `postprocess(spec, raw, geometry, frame_hw, **options)`; `fidelity(raw_adapter, raw_pixel)` in [0, 1];
    `distill(raw_student, raw_teacher)` a differentiable loss; `distill_context(raw_teacher)` extra tail
    arguments during distillation (or None); `options`: default post-processing options.
    """

    output_type: str
    postprocess: Callable[..., list[list[dict[str, Any]]]]
    fidelity: Callable[[Any, Any], float]
    distill: Callable[[Any, Any], Tensor]
    options: dict[str, Any] = field(default_factory=dict)
    distill_context: Callable[[Any], dict[str, Any]] | None = None

    @property
    def fidelity_doc(self) -> str:
        """The fidelity function's docstring (shown by `nvcodec tasks`)."""
        return self.fidelity.__doc__ or ""


def _classification_postprocess(
    spec: Any,
    raw: Tensor,
    geometry: Geometry,
    frame_hw: Sequence[int] | None,
    top_k: int | None = DEFAULT_TOP_K,
    **_: Any,
) -> list[list[dict[str, Any]]]:
    if top_k is None:
        top_k = DEFAULT_TOP_K
    if not isinstance(raw, Tensor) or raw.dim() != 2:
        raise UsageError("classification output must be logits (N, classes)")
    probs = torch.softmax(raw.detach().float(), dim=-1).cpu()
    k = max(1, min(int(top_k), probs.shape[-1]))
    scores, indices = probs.topk(k, dim=-1)
    return [
        [{"label": label_name(spec.labels, int(i)), "index": int(i), "score": float(s)} for s, i in zip(srow, irow)]
        for srow, irow in zip(scores.tolist(), indices.tolist())
    ]


def _detection_postprocess(
    spec: Any,
    raw: dict[str, Tensor],
    geometry: Geometry,
    frame_hw: Sequence[int] | None,
    threshold: float | None = DEFAULT_DETECTION_THRESHOLD,
    max_detections: int | None = None,
    clip: bool = True,
    **_: Any,
) -> list[list[dict[str, Any]]]:
    if threshold is None:
        threshold = DEFAULT_DETECTION_THRESHOLD
    if not isinstance(raw, dict) or "logits" not in raw or "pred_boxes" not in raw:
        raise UsageError("detection output must be a dict with 'logits' and 'pred_boxes'")
    probs = torch.softmax(raw["logits"].detach().float(), dim=-1)[..., :-1].cpu()
    scores, labels = probs.max(dim=-1)
    boxes = boxes_to_frame(cxcywh_to_xyxy(raw["pred_boxes"].detach().float().cpu()), geometry, frame_hw, clip=clip)
    out: list[list[dict[str, Any]]] = []
    for s_row, l_row, b_row in zip(scores, labels, boxes):
        keep = (s_row > threshold).nonzero().flatten()
        keep = keep[s_row[keep].argsort(descending=True)]
        if max_detections is not None:
            keep = keep[: int(max_detections)]
        out.append(
            [
                {
                    "label": label_name(spec.labels, int(l_row[q])),
                    "index": int(l_row[q]),
                    "score": float(s_row[q]),
                    "box": [float(v) for v in b_row[q].tolist()],
                }
                for q in keep.tolist()
            ]
        )
    return out


def classification_fidelity(raw_adapter: Tensor, raw_pixel: Tensor) -> float:
    """0.5 * top-1 agreement + 0.5 * mean exp(-KL(p_pixel || p_adapter)); 1 when identical."""
    a = raw_adapter.detach().float()
    p = raw_pixel.detach().float().to(a.device)
    if a.shape != p.shape or a.dim() != 2 or a.shape[0] == 0:
        raise UsageError(f"cannot compare classification outputs of shapes {tuple(a.shape)} and {tuple(p.shape)}")
    agree = (a.argmax(-1) == p.argmax(-1)).float().mean().item()
    logp, logq = torch.log_softmax(p, -1), torch.log_softmax(a, -1)
    kl = (logp.exp() * (logp - logq)).sum(-1).clamp(min=0)
    return 0.5 * agree + 0.5 * torch.exp(-kl).mean().item()


def classification_distill(raw_student: Tensor, raw_teacher: Tensor) -> Tensor:
    """KL(p_teacher || p_student) of the softmax distributions, mean over frames (differentiable)."""
    logq = torch.log_softmax(raw_student.float(), -1)
    logp = torch.log_softmax(raw_teacher.float().to(logq.device), -1)
    return (logp.exp() * (logp - logq)).sum(-1).mean()


def detection_distill(raw_student: dict[str, Tensor], raw_teacher: dict[str, Tensor]) -> Tensor:
    """Per query slot, weighted by the teacher's objectness (as `detection_fidelity`): KL of the class
    distributions + BOX_L1_SCALE / 2 x L1 of normalized cxcywh boxes; mean over frames (differentiable)."""
    logq = torch.log_softmax(raw_student["logits"].float(), -1)
    logp = torch.log_softmax(raw_teacher["logits"].float().to(logq.device), -1)
    weight = (1.0 - logp.exp()[..., -1]) + 1e-3
    kl = (logp.exp() * (logp - logq)).sum(-1)
    l1 = (raw_student["pred_boxes"].float() - raw_teacher["pred_boxes"].float().to(logq.device)).abs().mean(-1)
    per_frame = ((kl + 0.5 * BOX_L1_SCALE * l1) * weight).sum(-1) / weight.sum(-1)
    return per_frame.mean()


def detection_fidelity(raw_adapter: dict[str, Tensor], raw_pixel: dict[str, Tensor]) -> float:
    """0.5 * class agreement + 0.5 * box agreement, per query slot, weighted by pixel-path objectness.

    Class agreement: cosine similarity of the class probability vectors (softmax of the
    logits, no-object included; probabilities rather than raw logits so that a constant
    logit shift does not count). Box agreement: exp(-10 * mean L1 of normalized cxcywh
    boxes). Query weights: 1 - p_pixel(no object) + 1e-3, so confident objects dominate.
    """
    la, lp = raw_adapter["logits"].detach().float(), raw_pixel["logits"].detach().float()
    ba, bp = raw_adapter["pred_boxes"].detach().float(), raw_pixel["pred_boxes"].detach().float()
    lp, bp = lp.to(la.device), bp.to(la.device)
    if la.shape != lp.shape or ba.shape != bp.shape or la.numel() == 0:
        raise UsageError(f"cannot compare detection outputs of shapes {tuple(la.shape)} and {tuple(lp.shape)}")
    pa, pp = torch.softmax(la, -1), torch.softmax(lp, -1)
    weight = (1.0 - pp[..., -1]) + 1e-3
    cos = torch.nn.functional.cosine_similarity(pa, pp, dim=-1)
    l1 = (ba - bp).abs().mean(-1)
    cls_term = ((cos * weight).sum() / weight.sum()).item()
    box_term = math.exp(-BOX_L1_SCALE * ((l1 * weight).sum() / weight.sum()).item())
    return 0.5 * cls_term + 0.5 * box_term


CLASSIFICATION = Head("classification", _classification_postprocess, classification_fidelity, classification_distill,
                      {"top_k": DEFAULT_TOP_K})
DETECTION = Head("detection", _detection_postprocess, detection_fidelity, detection_distill,
                 {"threshold": DEFAULT_DETECTION_THRESHOLD})

IMAGENET_SCHEMA = {
    "per_frame": "list of the top-k classes, best first (k = top_k, default 5)",
    "fields": {
        "label": "str: ImageNet-1k class name",
        "index": "int: class index 0..999",
        "score": "float: softmax probability",
    },
}
"""Output schema of ImageNet-1k classifiers."""
