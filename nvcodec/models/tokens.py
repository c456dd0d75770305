"""Token backbones (ViT-style encoders) seen through 2-D maps, so adapters stay conv maps.

A ViT encoder's hidden state is a sequence ``[class token, patch tokens (row-major grid)]``.
At an injection point the backbone exposes it as a map (N, C, gh, gw) on the patch grid:

* ``embed`` (after the patch embedding, before the class token and position embeddings are
  added): the patch conv output itself, C = hidden width.
* after a transformer block: C = 2 x hidden. Channels ``[0, hidden)`` hold the patch tokens
  minus their position embeddings; channels ``[hidden, 2 hidden)`` hold the class token,
  broadcast over the grid.

Entering the next segment the sequence is rebuilt: position embeddings are added back to the
patch tokens and the class token is the grid mean of the second half. On the pixel path that
gives back the same tokens (up to float rounding); on an adapter's map the class token is a
learned, globally pooled estimate, and the position embeddings are the model's own, so an
adapter only has to supply content. At ``embed`` the class token and position embeddings are
added exactly as the model's embedding layer does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nvcodec.errors import UsageError, WeightsError
from nvcodec.models.base import InjectableBackbone


def embed_tokens(patch_map: Tensor, cls_token: Tensor, pos: Tensor) -> Tensor:
    """``embed`` map -> input sequence: ``cat(class token, patches) + position embeddings``."""
    n = patch_map.shape[0]
    patches = patch_map.flatten(2).transpose(1, 2)
    tokens = torch.cat([cls_token.expand(n, -1, -1).to(patches.dtype), patches], dim=1)
    _check_len(tokens, pos)
    return tokens + pos.to(tokens.dtype)


def tokens_to_map(hidden: Tensor, pos: Tensor, grid: tuple[int, int]) -> Tensor:
    """Sequence (N, 1 + gh*gw, C) after a block -> map (N, 2C, gh, gw) (see the module docstring)."""
    _check_len(hidden, pos)
    n, _, c = hidden.shape
    gh, gw = grid
    patches = (hidden[:, 1:] - pos[:, 1:].to(hidden.dtype)).transpose(1, 2).reshape(n, c, gh, gw)
    cls = hidden[:, 0, :, None, None].expand(n, c, gh, gw)
    return torch.cat([patches, cls], dim=1)


def map_to_tokens(block_map: Tensor, pos: Tensor) -> Tensor:
    """Map (N, 2C, gh, gw) -> sequence (N, 1 + gh*gw, C): patches + position embeddings, pooled class token."""
    n, c2, gh, gw = block_map.shape
    if c2 % 2:
        raise UsageError(f"a block map has 2 x hidden channels, got {c2}")
    c = c2 // 2
    patches = block_map[:, :c].flatten(2).transpose(1, 2)
    cls = block_map[:, c:].mean(dim=(2, 3))[:, None, :]
    tokens = torch.cat([cls, patches], dim=1)
    _check_len(tokens, pos)
    return tokens + torch.cat([torch.zeros_like(pos[:, :1]), pos[:, 1:]], dim=1).to(tokens.dtype)


def _check_len(tokens: Tensor, pos: Tensor) -> None:
    if tokens.shape[1] != pos.shape[1]:
        raise UsageError(f"{tokens.shape[1] - 1} patch tokens do not fit {pos.shape[1] - 1} position embeddings")


TOKEN_POINTS = ("embed", "block3", "block6", "block9")
"""Injection points of token backbones: after the patch embedding and after blocks 3, 6 and 9."""
_BLOCKS = {"block3": 3, "block6": 6, "block9": 9}


class TokenBackbone(InjectableBackbone):
    """A ViT-style encoder split at `TOKEN_POINTS`, with maps as in the module docstring.

    Subclasses implement the properties `patch_conv`, `cls_token` (1, 1, C), `pos_embed`
    (1, 1 + gh*gw, C) and `layers`, call `_init_tokens` once those work, and implement `_tail`,
    which starts with `encode_rest` (the blocks after ``block9``, before the final norm).
    """

    injection_points = list(TOKEN_POINTS)

    @property
    def patch_conv(self) -> nn.Conv2d:
        raise NotImplementedError

    @property
    def cls_token(self) -> Tensor:
        raise NotImplementedError

    @property
    def pos_embed(self) -> Tensor:
        raise NotImplementedError

    @property
    def layers(self) -> nn.ModuleList:
        raise NotImplementedError

    def _init_tokens(self) -> None:
        if len(self.layers) <= max(_BLOCKS.values()):
            raise WeightsError(f"a token backbone needs more than {max(_BLOCKS.values())} transformer blocks, "
                               f"this one has {len(self.layers)}")
        conv = self.patch_conv
        hidden, k, s = conv.out_channels, conv.kernel_size[0], conv.stride[0]
        self._point_channels = {p: hidden if p == "embed" else 2 * hidden for p in TOKEN_POINTS}
        self._segment_ops = {p: [(k, s, 0)] if p == "embed" else [] for p in TOKEN_POINTS}

    def _blocks(self, x: Tensor, start: int, stop: int, first: bool) -> Tensor:
        h = embed_tokens(x, self.cls_token, self.pos_embed) if first else map_to_tokens(x, self.pos_embed)
        for layer in self.layers[start:stop]:
            h = layer(h)
        return h

    def _segment(self, point: str, x: Tensor) -> Tensor:
        if point == "embed":
            return self.patch_conv(x.to(self.patch_conv.weight.dtype))
        prev = self.injection_points[self.injection_points.index(point) - 1]
        h = self._blocks(x, _BLOCKS.get(prev, 0), _BLOCKS[point], prev == "embed")
        return tokens_to_map(h, self.pos_embed, (int(x.shape[-2]), int(x.shape[-1])))

    def encode_rest(self, act: Tensor) -> Tensor:
        """Token sequence after the last block, from the ``block9`` map (before the final norm)."""
        return self._blocks(act, _BLOCKS["block9"], len(self.layers), False)
