"""One caption per frame with transformers' `BlipForConditionalGeneration` (BLIP base, 384 px).

The vision encoder is split like ViT (`nvcodec.models.tokens`): ``embed`` is the patch
projection, ``block3``/``block6``/``block9`` follow ``vision_model.encoder.layers``. The tail runs
the remaining layers and ``post_layernorm`` (the image embeddings the text decoder attends to),
then the text decoder: greedy or beam-search generation from the ``[DEC]`` token, stopping at
``[SEP]``, exactly as ``BlipForConditionalGeneration.generate``; then one teacher-forced
decoder pass over the caption for its logits.

Raw output: ``{"tokens": (N, L), "logits": (N, L, vocab)}``: caption token ids after ``[DEC]``
(the closing ``[SEP]`` included when generated), padded with -1 to L = `max_tokens`; logits at
position t are the decoder's scores for token t. Given ``tokens=`` (teacher forcing, used by
distillation), the tail scores those tokens instead of generating, and its ``tokens`` are the
decoder's argmax predictions at each of their positions.

Input: the whole frame resized to 384x384, normalized with the OpenAI CLIP mean/std (BLIP's
image processor). Weights and tokenizer: ``Salesforce/blip-image-captioning-base`` in the Hugging
Face cache, then a download. Random backbones use a synthetic WordPiece vocabulary of the
config's size (``w123`` ...), since their captions carry no meaning anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from nvcodec.errors import UsageError, WeightsError
from nvcodec.progress import ProgressCallback
from nvcodec.models.hf import load_config_dir, load_pretrained_dir, quiet
from nvcodec.models.tokens import TokenBackbone
from nvcodec.models.weights import (
    Search, WeightsLookup, WeightsSource, load_checked_state_dict, read_source_state_dict, search_hf, strip_prefixes,
)
from nvcodec.models import caption
from nvcodec.models.geometry import whole_frame_geometry
from nvcodec.models.registry import declare
from nvcodec.models.tokens import TOKEN_POINTS

if TYPE_CHECKING:
    from transformers import BlipConfig, BlipForConditionalGeneration, PreTrainedTokenizerBase

BLIP_REPO = "Salesforce/blip-image-captioning-base"
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_SIZE = 384
MAX_TOKENS = 20
TINY_MAX_TOKENS = 6
MAX_BEAMS = 16
TOKENIZER_FILES = ("tokenizer_config.json", "vocab.txt")
NO_TOKEN = -1
"""Padding of caption token ids in raw outputs."""


def blip_base_config() -> BlipConfig:
    """Config of ``Salesforce/blip-image-captioning-base``: ViT-B/16 at 384 px, BERT-base text decoder (vocab 30524)."""
    from transformers import BlipConfig

    return BlipConfig(text_config={"num_attention_heads": 12}, vision_config={"image_size": IMAGE_SIZE})


def tiny_blip_config() -> BlipConfig:
    """Tiny random test config: 12 vision layers of width 16, patch 32 on 384 px (a 12x12 grid; the real input
    size, as the runtime gives tiny models the task's geometry), 2 text layers, vocab 64.

    The text initializer range is 0.2 (not 0.02) so that random captions depend on the image.
    """
    from transformers import BlipConfig

    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 12, "num_attention_heads": 2,
              "image_size": IMAGE_SIZE, "patch_size": 32, "initializer_range": 0.02}
    text = {"vocab_size": 64, "hidden_size": 16, "encoder_hidden_size": 16, "intermediate_size": 32,
            "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 32,
            "bos_token_id": 60, "sep_token_id": 3, "pad_token_id": 0, "eos_token_id": 2,
            "initializer_range": 0.2}
    return BlipConfig(text_config=text, vision_config=vision, initializer_range=0.2)


def synthetic_tokenizer(config: BlipConfig) -> PreTrainedTokenizerBase:
    """A WordPiece tokenizer of the text config's vocabulary size with made-up pieces (random backbones)."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    tc = config.text_config
    specials = {tc.pad_token_id: "[PAD]", tc.sep_token_id: "[SEP]", tc.bos_token_id: "[DEC]"}
    unk = next(i for i in range(tc.vocab_size) if i not in specials)
    specials[unk] = "[UNK]"
    vocab = {specials.get(i, f"w{i}"): i for i in range(tc.vocab_size)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", sep_token="[SEP]",
                                   bos_token="[DEC]")


def load_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved beside BLIP's weights in `directory`; WeightsError when there is none."""
    from transformers import AutoTokenizer

    if not all((directory / f).is_file() for f in TOKENIZER_FILES):
        raise WeightsError(f"{directory}: no BLIP tokenizer ({', '.join(TOKENIZER_FILES)}) beside the weights")
    try:
        with quiet():
            return AutoTokenizer.from_pretrained(str(directory))
    except Exception as exc:  # unreadable tokenizer files surface as various exceptions
        raise WeightsError(f"{directory}: cannot load the BLIP tokenizer ({type(exc).__name__}: {exc})") from None


class BlipCaptioner(TokenBackbone):
    """`BlipForConditionalGeneration` split at the vision encoder's token points (see the module docstring)."""

    def __init__(self, blip: BlipForConditionalGeneration, tokenizer: PreTrainedTokenizerBase,
                 max_tokens: int = MAX_TOKENS) -> None:
        super().__init__()
        self.blip = blip
        self.tokenizer = tokenizer
        self.max_tokens = int(max_tokens)
        self.num_beams = 1
        self._init_tokens()

    @property
    def patch_conv(self) -> nn.Conv2d:
        return self.blip.vision_model.embeddings.patch_embedding

    @property
    def cls_token(self) -> Tensor:
        return self.blip.vision_model.embeddings.class_embedding

    @property
    def pos_embed(self) -> Tensor:
        return self.blip.vision_model.embeddings.position_embedding

    @property
    def layers(self) -> nn.ModuleList:
        return self.blip.vision_model.encoder.layers

    def set_decoding(self, beams: int = 1) -> None:
        """Greedy decoding (1) or beam search with `beams` beams."""
        if isinstance(beams, bool) or not isinstance(beams, int) or not 1 <= beams <= MAX_BEAMS:
            raise UsageError(f"--beams must be an integer in 1..{MAX_BEAMS}, got {beams!r}")
        self.num_beams = beams

    def image_embeds(self, act: Tensor) -> Tensor:
        """Image embeddings (N, 1 + gh*gw, C) that the text decoder attends to, from the ``block9`` map."""
        return self.blip.vision_model.post_layernorm(self.encode_rest(act))

    def generate(self, embeds: Tensor) -> Tensor:
        """Caption token ids (N, max_tokens) from image embeddings, -1 after the end (see the module docstring)."""
        tc = self.blip.config.text_config
        n = embeds.shape[0]
        start = torch.full((n, 1), tc.bos_token_id, dtype=torch.long, device=embeds.device)
        mask = torch.ones(embeds.shape[:-1], dtype=torch.long, device=embeds.device)
        with quiet():
            out = self.blip.text_decoder.generate(
                input_ids=start, eos_token_id=tc.sep_token_id, pad_token_id=tc.pad_token_id,
                encoder_hidden_states=embeds, encoder_attention_mask=mask, num_beams=self.num_beams,
                max_new_tokens=self.max_tokens, do_sample=False,
            )
        return clean_generated(out[:, 1:], tc.sep_token_id, self.max_tokens)

    def score(self, embeds: Tensor, tokens: Tensor) -> Tensor:
        """Teacher-forced decoder logits (N, L, vocab): position t scores token t of `tokens` (N, L)."""
        tc = self.blip.config.text_config
        ids = tokens.long()
        prev = ids[:, :-1]
        start = torch.full_like(ids[:, :1], tc.bos_token_id)
        inputs = torch.cat([start, prev.clamp(min=0)], dim=1)
        mask = torch.cat([torch.ones_like(start), (prev >= 0).long()], dim=1)
        enc_mask = torch.ones(embeds.shape[:-1], dtype=torch.long, device=embeds.device)
        return self.blip.text_decoder(input_ids=inputs, attention_mask=mask, encoder_hidden_states=embeds,
                                      encoder_attention_mask=enc_mask, use_cache=False).logits

    def _tail(self, act: Tensor, tokens: Tensor | None = None, **ctx: Any) -> dict[str, Tensor]:
        embeds = self.image_embeds(act)
        if tokens is None:
            ids = self.generate(embeds)
            return {"tokens": ids, "logits": self.score(embeds, ids)}
        ids = tokens.long()
        logits = self.score(embeds, ids)
        return {"tokens": logits.argmax(-1).masked_fill(ids < 0, NO_TOKEN), "logits": logits}

    def decode(self, ids: Sequence[int]) -> str:
        """Caption text of token ids (special tokens and -1 padding dropped)."""
        return self.tokenizer.decode([int(i) for i in ids if int(i) >= 0], skip_special_tokens=True).strip()


def clean_generated(seq: Tensor, sep: int, length: int) -> Tensor:
    """Generated ids after the start token -> (N, length), the first `sep` kept and everything after it -1."""
    is_sep = seq == sep
    after = (is_sep.long().cumsum(1) - is_sep.long()) > 0
    seq = seq.masked_fill(after, NO_TOKEN)[:, :length]
    pad = seq.new_full((seq.shape[0], length - seq.shape[1]), NO_TOKEN)
    return torch.cat([seq, pad], dim=1)


def build_blip(source: WeightsSource, device: torch.device | str = "cpu", tiny: bool = False) -> BlipCaptioner:
    """BLIP base captioning (or with `tiny`, `tiny_blip_config`) and its tokenizer from `source`, eval, frozen.

    ``dir`` sources are Hugging Face model directories (weights, config and tokenizer); ``file``
    sources are state dicts of `BlipForConditionalGeneration` with the tokenizer files beside them.
    """
    from transformers import BlipConfig, BlipForConditionalGeneration

    if source.kind == "dir" and source.path is not None:
        config = load_config_dir(BlipConfig, source.path, "BLIP")
        blip = load_pretrained_dir(BlipForConditionalGeneration, source.path, config, "BLIP")
        tokenizer = load_tokenizer(source.path)
    else:
        config = tiny_blip_config() if tiny else blip_base_config()
        blip = BlipForConditionalGeneration(config)
        if source.random:
            tokenizer = synthetic_tokenizer(config)
        else:
            assert source.path is not None
            keys = set(blip.state_dict())
            sd = strip_prefixes(read_source_state_dict(source), keys, ("module.",))
            load_checked_state_dict(blip, sd, what=source.describe())
            tokenizer = load_tokenizer(source.path.parent)
    backbone = BlipCaptioner(blip, tokenizer, TINY_MAX_TOKENS if tiny else MAX_TOKENS)
    backbone.requires_grad_(False)
    return backbone.to(device).eval()


def locate_blip(search: Search, cache_dirs: Sequence[Path] | None, offline: str | None,
                progress: ProgressCallback | None) -> WeightsSource | None:
    """The Hugging Face cache for ``Salesforce/blip-image-captioning-base`` (tokenizer included), then a download."""
    return search_hf("blip_caption", BLIP_REPO, None, search, cache_dirs, offline, True, try_download=True,
                     extra_files=TOKENIZER_FILES)


BLIP_WEIGHTS = WeightsLookup(locate_blip, need_config=True)


declare(
    "blip_caption", head=caption.HEAD, builder=build_blip, rank=5,
    description="One caption per frame with BLIP (Salesforce/blip-image-captioning-base); greedy or beam search",
    backbone="blip-image-captioning-base", injection_points=TOKEN_POINTS, mean=MEAN, std=STD,
    output_schema=caption.SCHEMA, geometry=lambda hw: whole_frame_geometry(hw, IMAGE_SIZE), weights=BLIP_WEIGHTS,
    docs=("one caption per frame", "transformers `BlipForConditionalGeneration` "
          "(`Salesforce/blip-image-captioning-base` layout), whole frame at 384x384; greedy or `infer --beams N`",
          "embed (16), block3, block6, block9"),
)
