"""Plain-PyTorch ResNet (bottleneck) with torchvision-compatible state_dict keys.

`ResNet()` is ResNet-50: its ``state_dict`` keys and shapes equal torchvision's
``resnet50`` (``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``layer1.0.downsample.0/1``,
``fc``), so torchvision and timm checkpoints load unchanged. Injection points:
``stem`` (after the max pool), ``layer1``, ``layer2``, ``layer3``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nvcodec.errors import UsageError, WeightsError
from nvcodec.models.base import InjectableBackbone, calibrate_bn
from nvcodec.progress import ProgressCallback
from nvcodec.models.weights import (
    Search,
    WeightsLookup,
    WeightsSource,
    download_url,
    host_unreachable,
    load_checked_state_dict,
    read_source_state_dict,
    search_hf,
    torch_checkpoint_dirs,
    torch_hub_file,
)
from nvcodec.models.geometry import IMAGENET_MEAN, IMAGENET_STD, imagenet_geometry
from nvcodec.models.heads import CLASSIFICATION, IMAGENET_SCHEMA
from nvcodec.models.labels import imagenet_classes
from nvcodec.models.registry import declare

RESNET50_LAYERS = (3, 4, 6, 3)
TORCHVISION_RESNET50_URLS: dict[str, str] = {
    "resnet50-11ad3fa6.pth": "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
    "resnet50-0676ba61.pth": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
}
"""torchvision ResNet-50 checkpoints (IMAGENET1K_V2, IMAGENET1K_V1); the name holds a sha256 prefix."""
RESNET50_DOWNLOAD = "resnet50-11ad3fa6.pth"
TIMM_RESNET50_REPO = "timm/resnet50.a1_in1k"


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (v1.5: the stride sits on the 3x3 convolution)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out = out + identity
        return self.relu(out)


class ResNet(InjectableBackbone):
    """Bottleneck ResNet classifier; defaults give ResNet-50 for ImageNet-1k.

    `layers`: blocks per stage; `width`: base channels (64 for ResNet-50);
    `num_classes`: size of the final linear layer. ``forward_from`` returns logits (N, num_classes).
    """

    injection_points = ["stem", "layer1", "layer2", "layer3"]

    def __init__(self, layers: Sequence[int] = RESNET50_LAYERS, width: int = 64, num_classes: int = 1000) -> None:
        super().__init__()
        if len(layers) != 4 or any(n < 1 for n in layers) or width < 1 or num_classes < 1:
            raise UsageError(f"bad ResNet config: layers={tuple(layers)}, width={width}, num_classes={num_classes}")
        self.layers_cfg = tuple(int(n) for n in layers)
        self.width = int(width)
        self.num_classes = int(num_classes)
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * Bottleneck.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        e = Bottleneck.expansion
        self._point_channels = {"stem": width, "layer1": width * e, "layer2": width * 2 * e, "layer3": width * 4 * e}
        self._segment_ops = {"stem": [(7, 2, 3), (3, 2, 1)], "layer1": [], "layer2": [(3, 2, 1)], "layer3": [(3, 2, 1)]}

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers.extend(Bottleneck(self.inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*layers)

    def _segment(self, point: str, x: Tensor) -> Tensor:
        if point == "stem":
            return self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return getattr(self, point)(x)

    def _tail(self, act: Tensor, **ctx: Any) -> Tensor:
        x = self.layer4(act)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50 with torchvision's layout (random initialization)."""
    return ResNet(RESNET50_LAYERS, 64, num_classes)


_HF_STEM = re.compile(r"^(?:resnet\.)?embedder\.embedder\.(convolution|normalization)\.(.+)$")
_HF_BLOCK = re.compile(
    r"^(?:resnet\.)?encoder\.stages\.(\d+)\.layers\.(\d+)\."
    r"(?:layer\.(\d+)|shortcut)\.(convolution|normalization)\.(.+)$"
)


def torchvision_state_dict(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Bring a ResNet state dict to torchvision key names.

    Strips ``module.``/``model.`` wrappers and converts Hugging Face ``ResNetForImageClassification``
    names (``resnet.encoder.stages.0.layers.0.layer.0.convolution.weight`` ...) to torchvision's.
    torchvision and timm keys pass through unchanged.
    """
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        for prefix in ("module.", "model."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        m = _HF_STEM.match(key)
        if m:
            key = f"{'conv1' if m.group(1) == 'convolution' else 'bn1'}.{m.group(2)}"
        else:
            m = _HF_BLOCK.match(key)
            if m:
                stage, block, idx, kind, rest = m.groups()
                base = f"layer{int(stage) + 1}.{block}"
                if idx is None:
                    key = f"{base}.downsample.{0 if kind == 'convolution' else 1}.{rest}"
                else:
                    key = f"{base}.{'conv' if kind == 'convolution' else 'bn'}{int(idx) + 1}.{rest}"
            elif key.startswith("classifier.1."):
                key = "fc." + key[len("classifier.1.") :]
        out[key] = value
    return out


def build_resnet(
    source: WeightsSource, device: torch.device | str = "cpu", tiny: bool = False
) -> ResNet:
    """ResNet-50 (or, with `tiny`, a 1-block-per-stage width-8 10-class test model) loaded from `source`.

    Random sources keep the random initialization; BN statistics are then left for the caller
    to calibrate (`calibrate_bn`). The model is returned in eval mode with frozen parameters.
    """
    model = ResNet((1, 1, 1, 1), 8, 10) if tiny else resnet50()
    if not source.random:
        sd = torchvision_state_dict(read_source_state_dict(source))
        load_checked_state_dict(model, sd, what=source.describe())
    model.requires_grad_(False)
    return model.to(device).eval()


def locate_resnet50(search: Search, cache_dirs: Sequence[Path] | None, offline: str | None,
                    progress: ProgressCallback | None) -> WeightsSource | None:
    """torch hub cache ``resnet50-*.pth`` (torchvision files), the Hugging Face cache for
    ``timm/resnet50.a1_in1k`` (same key names), then a download of ``resnet50-11ad3fa6.pth``."""
    found = torch_hub_file("resnet50", list(TORCHVISION_RESNET50_URLS), "resnet50-*.pth", search, cache_dirs)
    if found is None:
        found = search_hf("resnet50", TIMM_RESNET50_REPO, None, search, cache_dirs, offline, False, try_download=False)
    if found is not None:
        return found
    url = TORCHVISION_RESNET50_URLS[RESNET50_DOWNLOAD]
    place = f"download {url}"
    reason = offline or host_unreachable(url)
    if reason:
        search.note(place, f"skipped: {reason}")
        return None
    dirs = torch_checkpoint_dirs(cache_dirs)
    dest = dirs[-1] if cache_dirs is None else Path(cache_dirs[0]) / "hub" / "checkpoints"
    try:
        path = download_url(url, dest / RESNET50_DOWNLOAD, sha256_prefix=RESNET50_DOWNLOAD[9:17], progress=progress)
    except (OSError, WeightsError) as exc:
        search.note(place, f"failed: {exc}")
        return None
    return WeightsSource("resnet50", "file", path, "downloaded from download.pytorch.org")


RESNET50_WEIGHTS = WeightsLookup(locate_resnet50)


POINTS = ("stem", "layer1", "layer2", "layer3")
"""Injection points of the ResNet-50 family (DETR's backbone shares them)."""

declare(
    "resnet50", head=CLASSIFICATION, builder=build_resnet, rank=1,
    description="ImageNet-1k classification with ResNet-50 (torchvision weights); top-5 classes per frame",
    backbone="resnet50", injection_points=POINTS, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    labels=imagenet_classes(), output_schema=IMAGENET_SCHEMA,
    geometry=imagenet_geometry, tiny_geometry=lambda hw: imagenet_geometry(hw, 72, 64), weights=RESNET50_WEIGHTS,
    docs=("ImageNet-1k top-5", "plain-PyTorch ResNet-50 with torchvision `state_dict` keys",
          "stem, layer1, layer2, layer3"),
)
