"""COCO detection with transformers' `DetrForObjectDetection` on its own (non-timm) ResNet-50.

The split follows ``DetrModel.forward`` (transformers 5.x) step by step:

* ``forward_to``: the HF ResNet backbone's ``embedder`` (conv 7x7/2 + max pool) is the
  ``stem`` point; ``encoder.stages[0..2]`` are ``layer1``..``layer3``.
* ``forward_from``: the remaining stages (stage 4 at least), then what ``DetrModel`` does
  with the last feature map: pixel mask downsampled with nearest interpolation (all ones
  when no ``pixel_mask`` is given, exactly what DETR computes from its default mask),
  sine position embeddings from the model's own ``position_embedding`` module, the 1x1
  ``input_projection``, the transformer ``encoder`` and ``decoder`` (zero queries plus the
  learned query position embeddings), then ``class_labels_classifier`` and
  ``bbox_predictor`` (sigmoid). Output: ``{"logits": (N,Q,C+1), "pred_boxes": (N,Q,4)}``
  with boxes as normalized (cx, cy, w, h) relative to the network input.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from nvcodec.errors import NvcodecError, WeightsError
from nvcodec.models.base import InjectableBackbone
from nvcodec.models.hf import load_config_dir, load_pretrained_dir
from nvcodec.models.labels import COCO_ID2LABEL
from nvcodec.progress import ProgressCallback
from nvcodec.models.weights import (
    Search,
    WeightsLookup,
    WeightsSource,
    search_hf,
    load_checked_state_dict,
    read_source_state_dict,
    rename_keys,
    strip_prefixes,
)
from nvcodec.models.geometry import IMAGENET_MEAN, IMAGENET_STD, detr_geometry
from nvcodec.models.heads import DETECTION
from nvcodec.models.labels import coco_labels
from nvcodec.models.registry import declare

if TYPE_CHECKING:
    from transformers import DetrConfig, DetrForObjectDetection

DETR_REPO = "facebook/detr-resnet-50"
DETR_REVISION = "no_timm"

_LEGACY_RENAMES = (
    ("backbone.conv_encoder.", "backbone."),
    (".out_proj.", ".o_proj."),
    (".fc1.", ".mlp.fc1."),
    (".fc2.", ".mlp.fc2."),
)
"""Key renames from older transformers checkpoints (as in transformers' DetrModel conversion mapping)."""


def _check_transformers() -> None:
    from transformers.models.detr import modeling_detr as md

    enc = inspect.signature(md.DetrEncoder.forward).parameters
    dec = inspect.signature(md.DetrDecoder.forward).parameters
    if "spatial_position_embeddings" not in enc or "object_queries_position_embeddings" not in dec:
        import transformers

        raise NvcodecError(
            f"the detr task needs transformers>=5 (DETR module layout); installed: {transformers.__version__}"
        )


def detr_resnet50_config() -> DetrConfig:
    """Config of ``facebook/detr-resnet-50`` (revision ``no_timm``): HF ResNet-50 backbone, 91 COCO ids."""
    from transformers import DetrConfig, ResNetConfig

    backbone = ResNetConfig(out_features=["stage1", "stage2", "stage3", "stage4"])
    return DetrConfig(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone_config=backbone,
        id2label=dict(COCO_ID2LABEL),
    )


def tiny_detr_config() -> DetrConfig:
    """Tiny random test config: ResNet depths [1,1,1,1], widths [8,16,32,64], d_model 32, 10 queries, 8 labels."""
    from transformers import DetrConfig, ResNetConfig

    backbone = ResNetConfig(
        embedding_size=4,
        hidden_sizes=[8, 16, 32, 64],
        depths=[1, 1, 1, 1],
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    return DetrConfig(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone_config=backbone,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_queries=10,
        num_labels=8,
    )


class DetrBackbone(InjectableBackbone):
    """`DetrForObjectDetection` split at its ResNet stages (see the module docstring).

    ``forward_from(act, point, pixel_mask=None)``: `pixel_mask` (N,H,W) at the network input
    resolution marks real pixels (1) vs padding (0); None means no padding.
    """

    injection_points = ["stem", "layer1", "layer2", "layer3"]

    def __init__(self, detr: DetrForObjectDetection) -> None:
        super().__init__()
        _check_transformers()
        self.detr = detr
        resnet = detr.model.backbone.model
        cfg = detr.config.backbone_config
        if getattr(cfg, "model_type", None) != "resnet" or not hasattr(resnet, "embedder"):
            raise WeightsError(
                "this DETR uses a timm backbone; use a checkpoint with transformers' own ResNet "
                "(facebook/detr-resnet-50 at revision no_timm)"
            )
        if len(cfg.depths) != 4:
            raise WeightsError(f"DETR backbone must have 4 ResNet stages, got {len(cfg.depths)}")
        down = (1, 2, 0) if getattr(cfg, "downsample_in_bottleneck", False) else (3, 2, 1)
        self._point_channels = {
            "stem": cfg.embedding_size,
            "layer1": cfg.hidden_sizes[0],
            "layer2": cfg.hidden_sizes[1],
            "layer3": cfg.hidden_sizes[2],
        }
        self._segment_ops = {
            "stem": [(7, 2, 3), (3, 2, 1)],
            "layer1": [down] if cfg.downsample_in_first_stage else [],
            "layer2": [down],
            "layer3": [down],
        }

    @property
    def num_labels(self) -> int:
        """Number of object classes (the logits have one more: "no object")."""
        return int(self.detr.config.num_labels)

    def _segment(self, point: str, x: Tensor) -> Tensor:
        resnet = self.detr.model.backbone.model
        if point == "stem":
            return resnet.embedder(x)
        return resnet.encoder.stages[int(point[-1]) - 1](x)

    def _tail(self, act: Tensor, pixel_mask: Tensor | None = None, **ctx: Any) -> dict[str, Tensor]:
        model = self.detr.model
        for stage in model.backbone.model.encoder.stages[3:]:
            act = stage(act)
        feature_map = act
        batch = feature_map.shape[0]
        if pixel_mask is None:
            mask = torch.ones((batch, *feature_map.shape[-2:]), dtype=torch.bool, device=feature_map.device)
        else:
            mask = F.interpolate(pixel_mask[None].float(), size=feature_map.shape[-2:]).to(torch.bool)[0]
        projected = model.input_projection(feature_map)
        flattened = projected.flatten(2).transpose(1, 2)
        pos = model.position_embedding(
            shape=feature_map.shape, device=feature_map.device, dtype=model.input_projection.weight.dtype, mask=mask
        )
        spatial_pos = pos.flatten(2).transpose(1, 2)
        flat_mask = mask.flatten(1)
        encoded = model.encoder(
            inputs_embeds=flattened, attention_mask=flat_mask, spatial_position_embeddings=spatial_pos
        )
        query_pos = model.query_position_embeddings.weight.unsqueeze(0).repeat(batch, 1, 1)
        decoded = model.decoder(
            inputs_embeds=torch.zeros_like(query_pos),
            attention_mask=None,
            spatial_position_embeddings=spatial_pos,
            object_queries_position_embeddings=query_pos,
            encoder_hidden_states=encoded.last_hidden_state,
            encoder_attention_mask=flat_mask,
        )
        hidden = decoded.last_hidden_state
        return {
            "logits": self.detr.class_labels_classifier(hidden),
            "pred_boxes": self.detr.bbox_predictor(hidden).sigmoid(),
        }


def _from_pretrained_dir(path: Path) -> DetrForObjectDetection:
    from transformers import DetrConfig, DetrForObjectDetection

    config = load_config_dir(DetrConfig, path, "DETR")
    if getattr(config.backbone_config, "model_type", None) != "resnet":
        raise WeightsError(
            f"{path}: this DETR checkpoint uses a timm backbone; use facebook/detr-resnet-50 at revision no_timm"
        )
    return load_pretrained_dir(DetrForObjectDetection, path, config, "DETR")


def build_detr(source: WeightsSource, device: torch.device | str = "cpu", tiny: bool = False) -> DetrBackbone:
    """DETR-ResNet-50 (or with `tiny`, `tiny_detr_config`) loaded from `source`, eval mode, frozen.

    ``file`` sources are state dicts (keys of `DetrForObjectDetection`, optionally prefixed by
    ``detr.``/``module.``, older transformers names accepted); ``dir`` sources are Hugging Face
    model directories (their own config decides the architecture).
    """
    _check_transformers()
    from transformers import DetrForObjectDetection

    if source.kind == "dir" and source.path is not None:
        detr = _from_pretrained_dir(source.path)
    else:
        detr = DetrForObjectDetection(tiny_detr_config() if tiny else detr_resnet50_config())
        if not source.random:
            model_keys = set(detr.state_dict())
            sd = strip_prefixes(read_source_state_dict(source), model_keys, ("module.", "detr."))
            sd = rename_keys(sd, model_keys, _LEGACY_RENAMES)
            load_checked_state_dict(detr, sd, what=source.describe())
    backbone = DetrBackbone(detr)
    backbone.requires_grad_(False)
    return backbone.to(device).eval()


def locate_detr(search: Search, cache_dirs: Sequence[Path] | None, offline: str | None,
                progress: ProgressCallback | None) -> WeightsSource | None:
    """The Hugging Face cache for ``facebook/detr-resnet-50`` at revision ``no_timm``, then a download of it."""
    return search_hf("detr", DETR_REPO, DETR_REVISION, search, cache_dirs, offline, True, try_download=True)


DETR_WEIGHTS = WeightsLookup(locate_detr, need_config=True, default_revisions={DETR_REPO: DETR_REVISION})


declare(
    "detr", head=DETECTION, builder=build_detr, rank=2,
    description="COCO object detection with DETR-ResNet-50 (facebook/detr-resnet-50, revision no_timm)",
    backbone="detr-resnet-50", injection_points=("stem", "layer1", "layer2", "layer3"),
    mean=IMAGENET_MEAN, std=IMAGENET_STD, labels=coco_labels(),
    output_schema={
        "per_frame": "list of detections with score > threshold (default 0.7), best first",
        "fields": {
            "label": "str: COCO label (DETR id2label)",
            "index": "int: COCO category id 1..90",
            "score": "float: softmax probability over 91 ids + no-object",
            "box": "[x0, y0, x1, y1]: float pixel coordinates in the original frame, clipped to it",
        },
    },
    geometry=detr_geometry, tiny_geometry=lambda hw: detr_geometry(hw, 96, 160), weights=DETR_WEIGHTS,
    docs=("COCO boxes in frame pixels", "transformers `DetrForObjectDetection`, its own ResNet-50 (no timm)",
          "stem, layer1, layer2, layer3"),
)
