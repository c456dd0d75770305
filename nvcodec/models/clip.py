"""OpenAI CLIP RN50 (ModifiedResNet-50 image tower + text transformer) for zero-shot classification.

`ClipRN50()`'s ``state_dict`` keys and shapes equal those of OpenAI's ``RN50`` model
(``visual.conv1`` ... ``visual.attnpool.c_proj``, ``transformer.resblocks.N``, ``token_embedding``,
``positional_embedding``, ``ln_final``, ``text_projection``, ``logit_scale``), which is also the
layout of open_clip's ``RN50/openai`` checkpoint (``timm/resnet50_clip.openai``).

The image tower is CLIP's ModifiedResNet: a 3-conv stem with an average pool, bottlenecks that
downsample with an average pool before the last 1x1 conv (and on the shortcut), and an attention
pool instead of global average pooling. Injection points: ``stem`` (after the stem's pool),
``layer1``, ``layer2``, ``layer3``; the tail is ``layer4``, the attention pool and the zero-shot
head: ``logit_scale.exp()`` x cosine similarity with the text embeddings of the label prompts.
Those are computed once per text tower and label set (`ClipRN50.set_labels`) and kept in memory only.

OpenAI's ``RN50.pt`` is a TorchScript archive; it is not loaded (``torch.jit.load`` runs the
archive's code, and ``torch.load(weights_only=True)`` refuses it): use open_clip's
``open_clip_model.safetensors`` / ``open_clip_pytorch_model.bin`` or a state dict saved from it.
"""

from __future__ import annotations

import zipfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvcodec.errors import UsageError, WeightsError
from nvcodec.progress import ProgressCallback
from nvcodec.models.base import InjectableBackbone
from nvcodec.models.bpe import VOCAB_FILE, ClipTokenizer, base_tokenizer, load_tokenizer
from nvcodec.models.weights import (
    Search,
    WeightsLookup,
    WeightsSource,
    _hf_roots,
    hf_cached_snapshot,
    load_checked_state_dict,
    package_file,
    read_source_state_dict,
    strip_prefixes,
)
from nvcodec.models.geometry import imagenet_geometry
from nvcodec.models.heads import CLASSIFICATION
from nvcodec.models.labels import imagenet_classes
from nvcodec.models.registry import declare

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
PROMPT = "a photo of a {}."
RN50 = {"layers": (3, 4, 6, 3), "width": 64, "embed_dim": 1024, "resolution": 224, "context": 77,
        "vocab": 49408, "text_width": 512, "text_layers": 12, "text_heads": 8}
"""The published RN50 configuration (vision heads = width * 32 // 64 = 32)."""
OPENAI_FILE = "RN50.pt"
OPENAI_CACHE = Path("~/.cache/clip")
"""Where OpenAI's ``clip.load`` (and older open_clip) keep ``RN50.pt`` and the BPE vocab."""
OPEN_CLIP_REPO = "timm/resnet50_clip.openai"
OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
VOCAB_PACKAGES = ("open_clip", "clip")
"""Installed packages that ship ``bpe_simple_vocab_16e6.txt.gz`` (found without importing them)."""
EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
"""Scalars in OpenAI's state dict that are configuration, not weights (OpenAI's loader drops them too)."""
TEXT_BATCH = 256
LABEL_CACHE = 4
TORCHSCRIPT_ADVICE = (
    "it is a TorchScript archive, which nvcodec does not load (torch.jit.load would run its code); use "
    f"open_clip's {OPEN_CLIP_FILES[0]} ({OPEN_CLIP_REPO}) or a state dict saved from the model"
)


class Bottleneck(nn.Module):
    """CLIP's bottleneck: stride by a 2x2 average pool before conv3, and an avg-pool + 1x1 shortcut."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride > 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, bias=False)),
                ("1", nn.BatchNorm2d(planes * self.expansion)),
            ]))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu(out + identity)


class AttentionPool2d(nn.Module):
    """Multi-head attention of the mean token over the (mean + spatial) tokens, with position embeddings."""

    def __init__(self, spatial: int, embed_dim: int, heads: int, output_dim: int) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spatial * spatial + 1, embed_dim) / embed_dim ** 0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.heads = heads
        self.spatial = spatial

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (self.spatial, self.spatial):
            raise UsageError(f"attention pool expects a {self.spatial}x{self.spatial} grid, got {tuple(x.shape[-2:])}")
        x = x.flatten(start_dim=2).permute(2, 0, 1)
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
        x = x + self.positional_embedding[:, None, :].to(x.dtype)
        out, _ = F.multi_head_attention_forward(
            query=x[:1], key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=self.heads,
            q_proj_weight=self.q_proj.weight, k_proj_weight=self.k_proj.weight, v_proj_weight=self.v_proj.weight,
            in_proj_weight=None, in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
            out_proj_weight=self.c_proj.weight, out_proj_bias=self.c_proj.bias,
            use_separate_proj_weight=True, training=False, need_weights=False,
        )
        return out.squeeze(0)


class ModifiedResNet(nn.Module):
    """CLIP's image tower: `layers` bottlenecks per stage, base `width`, attention pool to `output_dim`."""

    def __init__(self, layers: Sequence[int], output_dim: int, heads: int, resolution: int, width: int) -> None:
        super().__init__()
        half = width // 2
        self.conv1 = nn.Conv2d(3, half, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, half, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(half, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self.relu = nn.ReLU(inplace=True)
        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.attnpool = AttentionPool2d(resolution // 32, width * 32, heads, output_dim)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def stem(self, x: Tensor) -> Tensor:
        """The 3-conv stem and its average pool (stride 4)."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.relu(self.bn3(self.conv3(x)))
        return self.avgpool(x)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x), the activation OpenAI's CLIP was trained with."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block: causal self-attention, then a 4x MLP with QuickGELU."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, width * 4)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(width * 4, width)),
        ]))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of `ResidualAttentionBlock` (sequence-first, as OpenAI's)."""

    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


class ClipRN50(InjectableBackbone):
    """CLIP with a ModifiedResNet image tower; the defaults give OpenAI's RN50.

    ``forward_from`` returns zero-shot logits (N, labels) against the label set of `set_labels`.
    """

    injection_points = ["stem", "layer1", "layer2", "layer3"]

    def __init__(self, layers: Sequence[int] = RN50["layers"], width: int = RN50["width"],
                 embed_dim: int = RN50["embed_dim"], resolution: int = RN50["resolution"],
                 context: int = RN50["context"], vocab: int = RN50["vocab"], text_width: int = RN50["text_width"],
                 text_layers: int = RN50["text_layers"], text_heads: int = RN50["text_heads"]) -> None:
        super().__init__()
        if len(layers) != 4 or min(layers) < 1 or width < 2 or resolution % 32 or resolution < 32:
            raise UsageError(f"bad CLIP ResNet config: layers={tuple(layers)}, width={width}, resolution={resolution}")
        self.visual = ModifiedResNet(layers, embed_dim, width * 32 // 64 or 1, resolution, width)
        self.transformer = Transformer(text_width, text_layers, text_heads)
        self.token_embedding = nn.Embedding(vocab, text_width)
        self.positional_embedding = nn.Parameter(torch.empty(context, text_width))
        self.ln_final = nn.LayerNorm(text_width)
        self.text_projection = nn.Parameter(torch.empty(text_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * torch.log(torch.tensor(1 / 0.07)))
        self.register_buffer("label_features", torch.zeros(0, embed_dim), persistent=False)
        self.context_length, self.vocab_size, self.resolution = context, vocab, resolution
        self.tokenizer: ClipTokenizer | None = None
        self.tokenizer_origin = ""
        self.labels: tuple[str, ...] = ()
        self._init_weights(text_width, text_layers)
        e = Bottleneck.expansion
        self._point_channels = {"stem": width, "layer1": width * e, "layer2": width * 2 * e, "layer3": width * 4 * e}
        self._segment_ops = {"stem": [(3, 2, 1), (2, 2, 0)], "layer1": [], "layer2": [(2, 2, 0)], "layer3": [(2, 2, 0)]}

    def _init_weights(self, width: int, layers: int) -> None:
        """OpenAI's initialization (except bn3 gammas, left at 1 so random towers are not identity maps)."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        pool = self.visual.attnpool
        for lin in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
            nn.init.normal_(lin.weight, std=pool.c_proj.in_features ** -0.5)
        proj_std, attn_std, fc_std = width ** -0.5 * (2 * layers) ** -0.5, width ** -0.5, (2 * width) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width ** -0.5)

    def _segment(self, point: str, x: Tensor) -> Tensor:
        if point == "stem":
            return self.visual.stem(x)
        return getattr(self.visual, point)(x)

    def _tail(self, act: Tensor, **ctx: Any) -> Tensor:
        return self.zero_shot_logits(self.visual.attnpool(self.visual.layer4(act)))

    def zero_shot_logits(self, image_features: Tensor) -> Tensor:
        """logit_scale.exp() x cosine similarity of image embeddings (N, D) with each label's text embedding."""
        if self.label_features.shape[0] == 0:
            raise UsageError("CLIP has no label set: call set_labels first")
        image = F.normalize(image_features, dim=-1)
        return self.logit_scale.exp() * image @ self.label_features.t()

    def encode_text(self, tokens: Tensor) -> Tensor:
        """Text embeddings (N, D) of token ids (N, <= context) holding one end token each.

        The causal mask makes the end token's output independent of what follows it, so the
        sequence is cut after the last end token of the batch (same result, fewer FLOPs).
        """
        if tokens.dim() != 2 or tokens.shape[1] > self.context_length:
            raise UsageError(f"tokens must be (N, <= {self.context_length}), got {tuple(tokens.shape)}")
        if self.tokenizer is None:
            raise UsageError("CLIP has no tokenizer")
        eot = (tokens == self.tokenizer.eot_id).int().argmax(dim=-1)
        length = int(eot.max()) + 1
        tokens = tokens[:, :length]
        x = self.token_embedding(tokens) + self.positional_embedding[:length]
        mask = torch.full((length, length), float("-inf"), device=x.device, dtype=x.dtype).triu(1)
        x = self.transformer(x.permute(1, 0, 2), mask).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection

    def text_fingerprint(self) -> tuple:
        """Identifies the text tower's weights and tokenizer (per-tensor sums and shapes), for the label cache."""
        params = [self.token_embedding.weight, self.positional_embedding, self.text_projection,
                  *self.transformer.parameters(), *self.ln_final.parameters()]
        sums = torch.stack([p.detach().double().sum() for p in params]).cpu().tolist()
        tok = self.tokenizer
        return (tuple(sums), tuple(tuple(p.shape) for p in params), tok.vocab_size if tok else 0,
                len(tok.bpe_ranks) if tok else 0, self.tokenizer_origin)

    def set_labels(self, labels: Sequence[str]) -> None:
        """Embed the prompts "a photo of a {label}." of `labels`.

        The embeddings are kept in memory, per text tower and label set (`LABEL_CACHE` sets), so a
        label set is embedded once per process however many times the task is built.
        """
        key = tuple(labels)
        if not key:
            raise UsageError("the label set is empty")
        if self.tokenizer is None:
            raise UsageError("CLIP has no tokenizer")
        cache_key = (self.text_fingerprint(), key)
        feats = _LABEL_FEATURES.get(cache_key)
        if feats is None:
            prompts = [PROMPT.format(label) for label in key]
            tokens = self.tokenizer.tokenize(prompts, self.context_length)
            order = (tokens != 0).sum(-1).argsort()
            out = torch.empty(len(key), self.label_features.shape[1], device=self.device)
            with torch.no_grad():
                for s in range(0, len(key), TEXT_BATCH):
                    idx = order[s : s + TEXT_BATCH]
                    out[idx.to(out.device)] = self.encode_text(tokens[idx].to(self.device)).float()
            feats = F.normalize(out, dim=-1).cpu()
            _LABEL_FEATURES[cache_key] = feats
            while len(_LABEL_FEATURES) > LABEL_CACHE:
                _LABEL_FEATURES.popitem(last=False)
        _LABEL_FEATURES.move_to_end(cache_key)
        self.label_features = feats.to(self.device)
        self.labels = key


_LABEL_FEATURES: OrderedDict[tuple, Tensor] = OrderedDict()
"""Normalized text embeddings (CPU) by (text tower fingerprint, label set), most recently used last."""


def tiny_clip() -> ClipRN50:
    """A tiny random CLIP of the same structure for tests: 1 block per stage, width 8 (224x224 input,
    as the task's geometry), a 2-block text transformer over the 514 byte-symbol tokens."""
    return ClipRN50((1, 1, 1, 1), 8, 32, RN50["resolution"], 77, base_tokenizer().vocab_size, 32, 2, 2)


def is_torchscript(path: Path) -> bool:
    """Whether `path` is a TorchScript archive (a zip with a ``constants.pkl`` or ``code/`` entry)."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def clip_state_dict(sd: Mapping[str, Tensor], model_keys: set[str]) -> dict[str, Tensor]:
    """OpenAI / open_clip RN50 state dict -> ours: wrapper prefixes stripped, config scalars dropped."""
    out = strip_prefixes(sd, model_keys, ("module.", "model."))
    return {k: v for k, v in out.items() if k not in EXTRA_KEYS}


def vocab_places(source: WeightsSource) -> list[Path]:
    """Vocab file paths tried first: beside the weights, then OpenAI's cache (`find_vocab` adds the packages)."""
    places: list[Path] = []
    if source.path is not None:
        places.append((source.path if source.kind == "dir" else source.path.parent) / VOCAB_FILE)
    places.append(OPENAI_CACHE.expanduser() / VOCAB_FILE)
    return places


def find_vocab(source: WeightsSource) -> tuple[Path | None, list[str]]:
    """The first BPE vocab file found, and every place looked."""
    looked = []
    for path in vocab_places(source):
        if path.is_file():
            return path, looked
        looked.append(str(path))
    for package in VOCAB_PACKAGES:
        path = package_file(package, VOCAB_FILE)
        if path is not None:
            return path, looked
        looked.append(f"installed package {package} ({VOCAB_FILE})")
    return None, looked


def _tokenizer_for(model: ClipRN50, source: WeightsSource, tiny: bool) -> tuple[ClipTokenizer, str]:
    if tiny:
        return base_tokenizer(), "byte symbols only (tiny test model)"
    path, looked = find_vocab(source)
    if path is None:
        if source.random:
            return base_tokenizer(), "byte symbols only (no BPE vocab found; random weights)"
        raise WeightsError(f"no CLIP BPE vocab ({VOCAB_FILE}) for {source.describe()}. Looked in:\n"
                           + "\n".join(f"  - {p}" for p in looked)
                           + f"\nPut {VOCAB_FILE} (OpenAI's CLIP repository) beside the weights file.")
    tok = load_tokenizer(path)
    if tok.vocab_size != model.vocab_size:
        raise WeightsError(f"{path}: BPE vocab gives {tok.vocab_size} tokens, the model has {model.vocab_size}")
    return tok, str(path)


def build_clip(source: WeightsSource, device: torch.device | str = "cpu", tiny: bool = False) -> ClipRN50:
    """CLIP RN50 (or, with `tiny`, `tiny_clip`) loaded from `source`, with its tokenizer, frozen, eval mode.

    Random sources keep the random initialization (BN statistics are left for the caller to calibrate).
    The label set is set afterwards (`set_labels`; the task does it with its labels).
    """
    model = tiny_clip() if tiny else ClipRN50()
    if not source.random:
        if source.path is not None and source.path.is_file() and is_torchscript(source.path):
            raise WeightsError(f"{source.path}: {TORCHSCRIPT_ADVICE}")
        keys = set(model.state_dict())
        load_checked_state_dict(model, clip_state_dict(read_source_state_dict(source), keys), what=source.describe())
    model.tokenizer, model.tokenizer_origin = _tokenizer_for(model, source, tiny)
    model.requires_grad_(False)
    return model.to(device).eval()


def locate_clip_rn50(search: Search, cache_dirs: Sequence[Path] | None, offline: str | None,
                     progress: ProgressCallback | None) -> WeightsSource | None:
    """OpenAI's cache (``~/.cache/clip/RN50.pt``, refused when it is TorchScript, as published), then the
    Hugging Face cache of open_clip's ``timm/resnet50_clip.openai`` (``open_clip_model.safetensors``,
    ``open_clip_pytorch_model.bin``; its timm-layout ``model.safetensors`` is not this model).
    Nothing is downloaded (OpenAI's own download is the TorchScript file)."""
    for d in [OPENAI_CACHE.expanduser()] if cache_dirs is None else list(cache_dirs):
        path = d / OPENAI_FILE
        if not path.is_file():
            search.note(str(path))
        elif is_torchscript(path):
            search.note(str(path), f"found, but {TORCHSCRIPT_ADVICE}")
        else:
            return WeightsSource("clip_rn50", "file", path, "OpenAI CLIP cache")
    for root in _hf_roots(cache_dirs):
        snap = hf_cached_snapshot(root, OPEN_CLIP_REPO, None)
        for name in OPEN_CLIP_FILES:
            if snap is not None and (snap / name).is_file():
                return WeightsSource("clip_rn50", "file", snap / name, f"Hugging Face cache, {OPEN_CLIP_REPO}")
        repo_dir = root / ("models--" + OPEN_CLIP_REPO.replace("/", "--"))
        search.note(f"Hugging Face cache {repo_dir} ({' or '.join(OPEN_CLIP_FILES)})")
    return None


CLIP_RN50_WEIGHTS = WeightsLookup(locate_clip_rn50)


def relabel(model: ClipRN50, labels: Sequence[str]) -> None:
    """The task's label hook: zero-shot over `labels`."""
    model.set_labels(labels)


declare(
    "clip_rn50", head=CLASSIFICATION, builder=build_clip, rank=3, relabel=relabel,
    description="Zero-shot classification with OpenAI CLIP RN50 over the prompts 'a photo of a {label}.' "
                "(ImageNet-1k classes, or --labels FILE); top-5 per frame",
    backbone="clip-rn50", injection_points=tuple(ClipRN50.injection_points), mean=MEAN, std=STD,
    labels=imagenet_classes(),
    output_schema={
        "per_frame": "list of the top-k labels, best first (k = top_k, default 5)",
        "fields": {
            "label": "str: label (ImageNet-1k class name unless --labels)",
            "index": "int: line of the label in the label set, from 0",
            "score": "float: softmax of logit_scale * cosine similarity over the label set",
        },
    },
    geometry=lambda hw: imagenet_geometry(hw, 224, 224), weights=CLIP_RN50_WEIGHTS,
    docs=('zero-shot top-5 over "a photo of a {label}." (ImageNet-1k classes, or `infer --labels FILE`)',
          "plain-PyTorch OpenAI CLIP RN50 (ModifiedResNet-50 image tower + text transformer), `state_dict` keys "
          "of OpenAI's `RN50`", "stem (4), layer1 (4), layer2 (8), layer3 (16)"),
)
