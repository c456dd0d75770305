"""ImageNet-1k classification with transformers' `ViTForImageClassification` (ViT-B/16).

The split follows ``ViTModel.forward`` (transformers 5.x): ``embed`` is the patch projection
(``vit.embeddings.patch_embeddings.projection``); ``block3``/``block6``/``block9`` follow
``vit.layers[0..2]``, ``[3..5]``, ``[6..8]``; the tail runs the remaining layers, ``vit.layernorm``
and ``classifier`` on the class token. Activations are maps on the patch grid (`nvcodec.models.tokens`).
Input: the whole frame resized to 224x224, normalized with mean = std = 0.5 (the model's image
processor). Weights: ``google/vit-base-patch16-224`` in the Hugging Face cache, then a download.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from nvcodec.progress import ProgressCallback
from nvcodec.models.hf import load_config_dir, load_pretrained_dir
from nvcodec.models.labels import imagenet_classes
from nvcodec.models.tokens import TokenBackbone
from nvcodec.models.weights import (
    Search, WeightsLookup, WeightsSource, load_checked_state_dict, read_source_state_dict, rename_keys, search_hf,
    strip_prefixes,
)
from nvcodec.models.geometry import whole_frame_geometry
from nvcodec.models.heads import CLASSIFICATION, IMAGENET_SCHEMA
from nvcodec.models.registry import declare
from nvcodec.models.tokens import TOKEN_POINTS

if TYPE_CHECKING:
    from transformers import ViTConfig, ViTForImageClassification

VIT_REPO = "google/vit-base-patch16-224"
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
IMAGE_SIZE = 224

_LEGACY_RENAMES = (
    ("vit.encoder.layer.", "vit.layers."),
    (".attention.attention.query.", ".attention.q_proj."),
    (".attention.attention.key.", ".attention.k_proj."),
    (".attention.attention.value.", ".attention.v_proj."),
    (".attention.output.dense.", ".attention.o_proj."),
    (".intermediate.dense.", ".mlp.fc1."),
    (".output.dense.", ".mlp.fc2."),
)
"""Key renames from the published (pre-5.x transformers) ViT checkpoint layout to the current one."""


def vit_b16_config() -> ViTConfig:
    """Config of ``google/vit-base-patch16-224``: 12 layers, width 768, patch 16, 224 px, 1000 ImageNet classes."""
    from transformers import ViTConfig

    names = imagenet_classes()
    return ViTConfig(image_size=IMAGE_SIZE, patch_size=16, num_labels=len(names),
                     id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})


def tiny_vit_config() -> ViTConfig:
    """Tiny random test config: 12 layers of width 16 (2 heads), patch 32 on 224 px (a 7x7 grid), 1000 classes.

    It takes the real model's input size, as the runtime gives tiny models the task's geometry.
    """
    from transformers import ViTConfig

    return ViTConfig(image_size=IMAGE_SIZE, patch_size=32, hidden_size=16, num_hidden_layers=12,
                     num_attention_heads=2, intermediate_size=32, num_labels=1000)


class VitBackbone(TokenBackbone):
    """`ViTForImageClassification` split at the token points; the tail returns logits (N, classes)."""

    def __init__(self, vit: ViTForImageClassification) -> None:
        super().__init__()
        self.vit = vit
        self._init_tokens()

    @property
    def patch_conv(self) -> nn.Conv2d:
        return self.vit.vit.embeddings.patch_embeddings.projection

    @property
    def cls_token(self) -> Tensor:
        return self.vit.vit.embeddings.cls_token

    @property
    def pos_embed(self) -> Tensor:
        return self.vit.vit.embeddings.position_embeddings

    @property
    def layers(self) -> nn.ModuleList:
        return self.vit.vit.layers

    def _tail(self, act: Tensor, **ctx: Any) -> Tensor:
        hidden = self.vit.vit.layernorm(self.encode_rest(act))
        return self.vit.classifier(hidden[:, 0])


def build_vit(source: WeightsSource, device: torch.device | str = "cpu", tiny: bool = False) -> VitBackbone:
    """ViT-B/16 (or with `tiny`, `tiny_vit_config`) loaded from `source`, eval mode, frozen.

    ``file`` sources are state dicts of `ViTForImageClassification` (current or published key
    layout, optionally prefixed by ``module.``); ``dir`` sources are Hugging Face model directories.
    """
    from transformers import ViTConfig, ViTForImageClassification

    if source.kind == "dir" and source.path is not None:
        config = load_config_dir(ViTConfig, source.path, "ViT")
        vit = load_pretrained_dir(ViTForImageClassification, source.path, config, "ViT")
    else:
        vit = ViTForImageClassification(tiny_vit_config() if tiny else vit_b16_config())
        if not source.random:
            keys = set(vit.state_dict())
            sd = rename_keys(strip_prefixes(read_source_state_dict(source), keys, ("module.",)), keys, _LEGACY_RENAMES)
            load_checked_state_dict(vit, sd, what=source.describe())
    backbone = VitBackbone(vit)
    backbone.requires_grad_(False)
    return backbone.to(device).eval()


def locate_vit(search: Search, cache_dirs: Sequence[Path] | None, offline: str | None,
               progress: ProgressCallback | None) -> WeightsSource | None:
    """The Hugging Face cache for ``google/vit-base-patch16-224``, then a download of it."""
    return search_hf("vit_b16", VIT_REPO, None, search, cache_dirs, offline, True, try_download=True)


VIT_B16_WEIGHTS = WeightsLookup(locate_vit, need_config=True)


declare(
    "vit_b16", head=CLASSIFICATION, builder=build_vit, rank=4,
    description="ImageNet-1k classification with ViT-B/16 (google/vit-base-patch16-224); top-5 classes per frame",
    backbone="vit-base-patch16-224", injection_points=TOKEN_POINTS, mean=MEAN, std=STD,
    labels=imagenet_classes(), output_schema=IMAGENET_SCHEMA,
    geometry=lambda hw: whole_frame_geometry(hw, IMAGE_SIZE), weights=VIT_B16_WEIGHTS,
    docs=("ImageNet-1k top-5", "transformers `ViTForImageClassification` (`google/vit-base-patch16-224` layout), "
          "whole frame at 224x224", "embed (16), block3, block6, block9"),
)
