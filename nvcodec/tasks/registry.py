"""Task registry: each task bundles a backbone, its injection points, input geometry,
normalization, post-processing, output schema and a fidelity score for adapters.

Tasks: ``efficientnet_lite0``, ``resnet50`` and ``vit_b16`` (ImageNet-1k classification), ``detr``
(COCO detection), ``blip_caption`` (one caption per frame), ``clip_rn50`` (zero-shot classification,
ImageNet prompts or any label set), ``slowfast_r50`` and ``i3d_r50`` (Kinetics-400 action
classification per clip window). Each entry also says where its weights are found (`WeightsLookup`).
``build(..., tiny=True)`` and ``geometry(..., tiny=True)`` give tiny random-sized test
versions; they never stand in for the real models.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nvcodec.errors import UsageError
from nvcodec.tasks.backbone import InjectableBackbone
from nvcodec.tasks.geometry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Geometry,
    boxes_to_frame,
    cxcywh_to_xyxy,
    detr_geometry,
    imagenet_geometry,
    preprocess,
    whole_frame_geometry,
)
from nvcodec.tasks.labels import coco_labels, imagenet_classes, kinetics400_classes, label_name
from nvcodec.tasks import blip as blip_task, caption, clip, efficientnet, video_resnet, vit as vit_task
from nvcodec.tasks.clips import ClipSampling
from nvcodec.tasks.tokens import TOKEN_POINTS
from nvcodec.tasks.detr import DETR_WEIGHTS
from nvcodec.tasks.resnet import RESNET50_WEIGHTS, calibrate_bn
from nvcodec.tasks.weights import WeightsLookup, WeightsSource, resolve_weights

DEFAULT_TOP_K = 5
DEFAULT_DETECTION_THRESHOLD = 0.7
BOX_L1_SCALE = 10.0
"""Detection fidelity box term: exp(-BOX_L1_SCALE * weighted mean L1 of normalized cxcywh boxes)."""

Builder = Callable[[WeightsSource, "torch.device | str", bool], InjectableBackbone]


@dataclass(frozen=True)
class TaskSpec:
    """Everything needed to run one task from pixels or from injected activations.

    `postprocess` returns one list per frame (per window for clip tasks, `clip` set): classification -> top-k
    ``{"label", "index", "score"}``; detection -> ``{"label", "index", "score", "box"}``
    with ``box = [x0, y0, x1, y1]`` in original-frame pixels; caption -> one ``{"caption", "tokens"}``.
    """

    name: str
    description: str
    output_type: str
    backbone: str
    injection_points: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    labels: tuple[str, ...]
    output_schema: dict[str, Any]
    fidelity_doc: str
    _geometry: Callable[[Sequence[int]], Geometry]
    _tiny_geometry: Callable[[Sequence[int]], Geometry]
    _builder: Builder
    _postprocess: Callable[..., list[list[dict[str, Any]]]]
    _fidelity: Callable[[Any, Any], float]
    _distill: Callable[[Any, Any], Tensor]
    weights: WeightsLookup
    default_options: dict[str, Any] = field(default_factory=dict)
    distill_context: Callable[[Any], dict[str, Any]] | None = None
    """Extra tail arguments during distillation, from the teacher's raw outputs (captions: teacher forcing)."""
    _relabel: Callable[[Any, tuple[str, ...]], None] | None = None
    """Zero-shot tasks: points the built model at `labels` (see `with_labels`); None for a fixed label set."""

    @property
    def zero_shot(self) -> bool:
        """True when the label set can be chosen (``--labels FILE``)."""
        return self._relabel is not None

    def with_labels(self, labels: Sequence[str]) -> TaskSpec:
        """This zero-shot task over another label set; UsageError for tasks with a fixed one."""
        if self._relabel is None:
            raise UsageError(f"task {self.name!r} has a fixed label set; --labels applies to zero-shot tasks")
        if not labels:
            raise UsageError("the label set is empty")
        return replace(self, labels=tuple(labels))
    clip: ClipSampling | None = None
    """Set for tasks whose unit is a window of frames (see `nvcodec.tasks.clips`); None: one frame."""

    def geometry(self, *frame_hw: int | Sequence[int], tiny: bool = False) -> Geometry:
        """Input geometry for frames of size H x W: ``geometry((H, W))`` or ``geometry(H, W)``.

        `tiny` gives the small geometry used with tiny test models.
        """
        hw = frame_hw[0] if len(frame_hw) == 1 else frame_hw
        if not isinstance(hw, Sequence) or len(hw) != 2:
            raise UsageError(f"frame size must be (H, W), got {frame_hw!r}")
        return (self._tiny_geometry if tiny else self._geometry)(hw)  # type: ignore[arg-type]

    def resolve_weights(self, weights: str | None, **kwargs: Any) -> WeightsSource:
        """`nvcodec.tasks.weights.resolve_weights` for this task."""
        return resolve_weights(self.name, weights, **kwargs)

    def build(
        self, weights_source: WeightsSource, device: torch.device | str = "cpu", tiny: bool = False
    ) -> InjectableBackbone:
        """Backbone with head, loaded from `weights_source`, in eval mode with frozen parameters.

        `tiny` builds the small random-architecture test model instead of the real one.
        A random ResNet source leaves BN statistics for the caller to calibrate.
        """
        if weights_source.task != self.name:
            raise UsageError(f"weights resolved for task {weights_source.task!r} cannot build task {self.name!r}")
        model = self._builder(weights_source, device, tiny)
        if self._relabel is not None:
            self._relabel(model, self.labels)
        return model

    def preprocess(
        self, frames: Tensor | np.ndarray, geometry: Geometry, device: torch.device | str | None = None
    ) -> Tensor:
        """Frames -> normalized backbone input with this task's mean/std."""
        return preprocess(frames, geometry, self.mean, self.std, device=device)

    def postprocess(
        self, raw: Any, geometry: Geometry, frame_hw: Sequence[int] | None = None, **opts: Any
    ) -> list[list[dict[str, Any]]]:
        """Raw backbone output -> per-frame JSON-ready results (see the class docstring).

        Pass ``model=`` (the built backbone) for heads that need it: captions are decoded by its tokenizer.
        """
        merged = {**self.default_options, **opts}
        return self._postprocess(self, raw, geometry, frame_hw, **merged)

    def calibrate(self, model: InjectableBackbone, batches: Iterable[Tensor]) -> int:
        """Re-estimate BN statistics of a randomly initialized backbone from preprocessed batches."""
        return calibrate_bn(model, batches)

    def fidelity(self, raw_adapter: Any, raw_pixel: Any) -> float:
        """How well adapter-path outputs match the pixel path (1 = identical); see `fidelity_doc`."""
        return float(self._fidelity(raw_adapter, raw_pixel))

    def distill_loss(self, raw_student: Any, raw_teacher: Any) -> Tensor:
        """Differentiable distillation loss of student outputs toward teacher outputs (0 when equal)."""
        return self._distill(raw_student, raw_teacher)

    def concat_raw(self, raws: Sequence[Any]) -> Any:
        """Concatenate raw outputs of several batches along the frame axis."""
        if not raws:
            raise UsageError("nothing to concatenate")
        if isinstance(raws[0], dict):
            return {k: torch.cat([r[k] for r in raws]) for k in raws[0]}
        return torch.cat(list(raws))

    def describe(self) -> dict[str, Any]:
        """Description for `nvcodec tasks` listings (same as `to_dict`)."""
        return self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        """Description for `nvcodec tasks` style listings."""
        return {
            "name": self.name,
            "description": self.description,
            "output_type": self.output_type,
            "backbone": self.backbone,
            "injection_points": list(self.injection_points),
            "mean": list(self.mean),
            "std": list(self.std),
            "output_schema": self.output_schema,
            "fidelity": self.fidelity_doc,
            **({"clip": self.clip.to_dict()} if self.clip is not None else {}),
        }


def _classification_postprocess(
    spec: TaskSpec,
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
    spec: TaskSpec,
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


def _build_efficientnet_lite0(source: WeightsSource, device: torch.device | str, tiny: bool) -> InjectableBackbone:
    return efficientnet.build_efficientnet(source, device, tiny)


def _build_resnet50(source: WeightsSource, device: torch.device | str, tiny: bool) -> InjectableBackbone:
    from nvcodec.tasks.resnet import build_resnet

    return build_resnet(source, device, tiny)


def _build_clip_rn50(source: WeightsSource, device: torch.device | str, tiny: bool) -> InjectableBackbone:
    return clip.build_clip(source, device, tiny)


def _build_detr(source: WeightsSource, device: torch.device | str, tiny: bool) -> InjectableBackbone:
    from nvcodec.tasks.detr import build_detr

    return build_detr(source, device, tiny)


_POINTS = ("stem", "layer1", "layer2", "layer3")
_IMAGENET_SCHEMA = {
    "per_frame": "list of the top-k classes, best first (k = top_k, default 5)",
    "fields": {
        "label": "str: ImageNet-1k class name",
        "index": "int: class index 0..999",
        "score": "float: softmax probability",
    },
}

_TASKS: dict[str, TaskSpec] = {
    "efficientnet_lite0": TaskSpec(
        name="efficientnet_lite0",
        description="ImageNet-1k classification with EfficientNet-Lite0 (weights installed with nvcodec); top-5 per frame",
        output_type="classification",
        backbone="efficientnet-lite0",
        injection_points=tuple(efficientnet.POINT_STAGES),
        mean=efficientnet.MEAN,
        std=efficientnet.STD,
        labels=imagenet_classes(),
        output_schema=_IMAGENET_SCHEMA,
        fidelity_doc=classification_fidelity.__doc__ or "",
        _geometry=lambda hw: whole_frame_geometry(hw, 224),
        _tiny_geometry=lambda hw: whole_frame_geometry(hw, 64),
        _builder=_build_efficientnet_lite0,
        _postprocess=_classification_postprocess,
        _fidelity=classification_fidelity,
        _distill=classification_distill,
        weights=efficientnet.EFFICIENTNET_LITE0_WEIGHTS,
        default_options={"top_k": DEFAULT_TOP_K},
    ),
    "resnet50": TaskSpec(
        name="resnet50",
        description="ImageNet-1k classification with ResNet-50 (torchvision weights); top-5 classes per frame",
        output_type="classification",
        backbone="resnet50",
        injection_points=_POINTS,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        labels=imagenet_classes(),
        output_schema=_IMAGENET_SCHEMA,
        fidelity_doc=classification_fidelity.__doc__ or "",
        _geometry=imagenet_geometry,
        _tiny_geometry=lambda hw: imagenet_geometry(hw, 72, 64),
        _builder=_build_resnet50,
        _postprocess=_classification_postprocess,
        _fidelity=classification_fidelity,
        _distill=classification_distill,
        weights=RESNET50_WEIGHTS,
        default_options={"top_k": DEFAULT_TOP_K},
    ),
    "detr": TaskSpec(
        name="detr",
        description="COCO object detection with DETR-ResNet-50 (facebook/detr-resnet-50, revision no_timm)",
        output_type="detection",
        backbone="detr-resnet-50",
        injection_points=_POINTS,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        labels=coco_labels(),
        output_schema={
            "per_frame": "list of detections with score > threshold (default 0.7), best first",
            "fields": {
                "label": "str: COCO label (DETR id2label)",
                "index": "int: COCO category id 1..90",
                "score": "float: softmax probability over 91 ids + no-object",
                "box": "[x0, y0, x1, y1]: float pixel coordinates in the original frame, clipped to it",
            },
        },
        fidelity_doc=detection_fidelity.__doc__ or "",
        _geometry=detr_geometry,
        _tiny_geometry=lambda hw: detr_geometry(hw, 96, 160),
        _builder=_build_detr,
        _postprocess=_detection_postprocess,
        _fidelity=detection_fidelity,
        _distill=detection_distill,
        weights=DETR_WEIGHTS,
        default_options={"threshold": DEFAULT_DETECTION_THRESHOLD},
    ),
    "clip_rn50": TaskSpec(
        name="clip_rn50",
        description="Zero-shot classification with OpenAI CLIP RN50 over the prompts 'a photo of a {label}.' "
                    "(ImageNet-1k classes, or --labels FILE); top-5 per frame",
        output_type="classification",
        backbone="clip-rn50",
        injection_points=tuple(clip.ClipRN50.injection_points),
        mean=clip.MEAN,
        std=clip.STD,
        labels=imagenet_classes(),
        output_schema={
            "per_frame": "list of the top-k labels, best first (k = top_k, default 5)",
            "fields": {
                "label": "str: label (ImageNet-1k class name unless --labels)",
                "index": "int: line of the label in the label set, from 0",
                "score": "float: softmax of logit_scale * cosine similarity over the label set",
            },
        },
        fidelity_doc=classification_fidelity.__doc__ or "",
        _geometry=lambda hw: imagenet_geometry(hw, 224, 224),
        _tiny_geometry=lambda hw: imagenet_geometry(hw, 224, 224),
        _builder=_build_clip_rn50,
        _postprocess=_classification_postprocess,
        _fidelity=classification_fidelity,
        _distill=classification_distill,
        weights=clip.CLIP_RN50_WEIGHTS,
        default_options={"top_k": DEFAULT_TOP_K},
        _relabel=clip.relabel,
    ),
}

_TASKS["vit_b16"] = TaskSpec(
    name="vit_b16",
    description="ImageNet-1k classification with ViT-B/16 (google/vit-base-patch16-224); top-5 classes per frame",
    output_type="classification",
    backbone="vit-base-patch16-224",
    injection_points=TOKEN_POINTS,
    mean=vit_task.MEAN,
    std=vit_task.STD,
    labels=imagenet_classes(),
    output_schema=_IMAGENET_SCHEMA,
    fidelity_doc=classification_fidelity.__doc__ or "",
    _geometry=lambda hw: whole_frame_geometry(hw, vit_task.IMAGE_SIZE),
    _tiny_geometry=lambda hw: whole_frame_geometry(hw, vit_task.IMAGE_SIZE),
    _builder=lambda source, device, tiny: vit_task.build_vit(source, device, tiny),
    _postprocess=_classification_postprocess,
    _fidelity=classification_fidelity,
    _distill=classification_distill,
    weights=vit_task.VIT_B16_WEIGHTS,
    default_options={"top_k": DEFAULT_TOP_K},
)
_TASKS["blip_caption"] = TaskSpec(
    name="blip_caption",
    description="One caption per frame with BLIP (Salesforce/blip-image-captioning-base); greedy or beam search",
    output_type="caption",
    backbone="blip-image-captioning-base",
    injection_points=TOKEN_POINTS,
    mean=blip_task.MEAN,
    std=blip_task.STD,
    labels=(),
    output_schema=caption.SCHEMA,
    fidelity_doc=caption.fidelity.__doc__ or "",
    _geometry=lambda hw: whole_frame_geometry(hw, blip_task.IMAGE_SIZE),
    _tiny_geometry=lambda hw: whole_frame_geometry(hw, blip_task.IMAGE_SIZE),
    _builder=lambda source, device, tiny: blip_task.build_blip(source, device, tiny),
    _postprocess=caption.postprocess,
    _fidelity=caption.fidelity,
    _distill=caption.distill,
    weights=blip_task.BLIP_WEIGHTS,
    distill_context=caption.distill_context,
)


_KINETICS_SCHEMA = {
    "per_window": "list of the top-k actions, best first (k = top_k, default 5), for each clip window",
    "fields": {
        "label": "str: Kinetics-400 action name",
        "index": "int: class index 0..399",
        "score": "float: softmax probability",
    },
}


def _clip_task(name: str, description: str, backbone: str, builder: Builder, weights: WeightsLookup,
               sampling: ClipSampling) -> TaskSpec:
    return TaskSpec(
        name=name, description=description, output_type="classification", backbone=backbone,
        injection_points=video_resnet.POINTS, mean=video_resnet.KINETICS_MEAN, std=video_resnet.KINETICS_STD,
        labels=kinetics400_classes(), output_schema=_KINETICS_SCHEMA,
        fidelity_doc=classification_fidelity.__doc__ or "",
        _geometry=lambda hw: imagenet_geometry(hw, 256, 256),
        _tiny_geometry=lambda hw: imagenet_geometry(hw, 72, 64),
        _builder=builder, _postprocess=_classification_postprocess, _fidelity=classification_fidelity,
        _distill=classification_distill, weights=weights, default_options={"top_k": DEFAULT_TOP_K}, clip=sampling,
    )


_TASKS["slowfast_r50"] = _clip_task(
    "slowfast_r50", "Kinetics-400 action recognition with SlowFast R50 8x8 (pytorchvideo weights); "
    "top-5 per clip window of 32 frames at stride 2 (slow pathway: every 4th)", "slowfast-r50-8x8",
    video_resnet.build_slowfast, video_resnet.SLOWFAST_WEIGHTS, ClipSampling(32, 2, tiny_frames=8, tiny_rate=1))
_TASKS["i3d_r50"] = _clip_task(
    "i3d_r50", "Kinetics-400 action recognition with I3D R50 8x8 (pytorchvideo weights); "
    "top-5 per clip window of 8 frames at stride 8", "i3d-r50-8x8",
    video_resnet.build_i3d, video_resnet.I3D_WEIGHTS, ClipSampling(8, 8, tiny_frames=4, tiny_rate=2))


def list_tasks() -> list[TaskSpec]:
    """All registered tasks, in registration order."""
    return list(_TASKS.values())


def task_names() -> list[str]:
    """Names of all registered tasks."""
    return list(_TASKS)


def get_task(name: str) -> TaskSpec:
    """The task called `name`; UsageError listing the known tasks otherwise."""
    try:
        return _TASKS[name]
    except (KeyError, TypeError):
        raise UsageError(f"unknown task {name!r}; known tasks: {', '.join(_TASKS)}") from None
