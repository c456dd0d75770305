"""HNeRV and NeRV decoders (conv + PixelShuffle blocks, coarse to fine) and the HNeRV encoder.

Decoder block k: conv k x k (C_in -> C_out * s^2) -> PixelShuffle(s) -> activation. For HNeRV the
input of block 0 is the per-frame embedding (embed_channels, embed_height, embed_width); for NeRV,
block 0 also holds the MLP stem that maps the positional encoding of the frame index to a
(embed_channels, embed_height, embed_width) grid. The head is a conv to RGB followed by a sigmoid
(or a clamp), giving frames of the padded size; `crop` takes the top-left (width, height) region.

Training keeps the gradient alive where the output activation saturates: in training mode the
head returns act(y) + OUT_LEAK * (y - y.detach()), the same values with d out / d y = act'(y) +
OUT_LEAK. Without it a fit to dark (or bright) content overshoots into sigmoid saturation (y of
-30 and below, act' ~ e^y) where no gradient reaches the network again, and the clip decodes to
a constant. Decoding (eval mode) is unchanged, so files are unaffected.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UsageError
from .plan import INRConfig

_ACTS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}
OUT_LEAK = 0.01


def crop(x: Tensor, width: int, height: int) -> Tensor:
    """Undo the decoder padding: keep the top-left `height` x `width` region of (..., H, W)."""
    return x[..., :height, :width]


def pad_frames(x: Tensor, pad_width: int, pad_height: int) -> Tensor:
    """Pad (N, C, H, W) frames at the right and bottom to the padded size (edge replication)."""
    dh, dw = pad_height - x.shape[-2], pad_width - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    return F.pad(x, (0, dw, 0, dh), mode="replicate")


def positional_encoding(frame_indices: Tensor, num_frames: int, levels: int, base: float) -> Tensor:
    """NeRV encoding of normalized frame indices t in [0, 1]: [sin(base^l pi t), cos(base^l pi t)], l < levels."""
    t = frame_indices.to(torch.float32) / max(num_frames - 1, 1)
    freqs = (base ** torch.arange(levels, dtype=torch.float32, device=t.device)) * math.pi
    ang = t[:, None] * freqs[None, :]
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)


class _Stem(nn.Module):
    """NeRV MLP stem: positional encoding -> hidden layers -> (C0, h0, w0) grid."""

    def __init__(self, config: INRConfig, act: type[nn.Module]) -> None:
        super().__init__()
        dims = [2 * config.pe_levels, *config.fc_dims,
                config.embed_channels * config.embed_height * config.embed_width]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), act()]
        self.mlp = nn.Sequential(*layers)
        self.shape = (config.embed_channels, config.embed_height, config.embed_width)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x).reshape(x.shape[0], *self.shape)


class DecoderBlock(nn.Module):
    """Optional NeRV stem, then conv -> PixelShuffle -> activation."""

    def __init__(self, c_in: int, c_out: int, stride: int, kernel: int, act: type[nn.Module],
                 stem: nn.Module | None = None) -> None:
        super().__init__()
        self.stem = stem
        self.conv = nn.Conv2d(c_in, c_out * stride * stride, kernel, padding=kernel // 2)
        self.shuffle = nn.PixelShuffle(stride)
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        if self.stem is not None:
            x = self.stem(x)
        return self.act(self.shuffle(self.conv(x)))


def frame_time(frame_indices: Tensor, num_frames: int) -> Tensor:
    """Normalized frame time t = index / (num_frames - 1) in [0, 1] (0 for a single frame), float32."""
    return frame_indices.to(torch.float32) / max(num_frames - 1, 1)


def sample_grid(grid: Tensor, t: Tensor) -> Tensor:
    """Linear interpolation along dim 0 of a temporal grid (T, ...) at times t (N,) in [0, 1] -> (N, ...)."""
    size = grid.shape[0]
    if size == 1:
        return grid.expand(t.shape[0], *grid.shape[1:])
    pos = t.to(torch.float32).clamp(0.0, 1.0) * (size - 1)
    i0 = pos.floor().long().clamp(max=size - 2)
    w = (pos - i0.to(pos.dtype)).to(grid.dtype).reshape(-1, *([1] * (grid.ndim - 1)))
    return grid[i0] * (1 - w) + grid[i0 + 1] * w


def append_time(x: Tensor, t: Tensor) -> Tensor:
    """(N, C, H, W) features and frame times t (N,) -> (N, C + 1, H, W) float32, the last channel t."""
    t_map = t.to(torch.float32).reshape(-1, 1, 1, 1).expand(x.shape[0], 1, x.shape[-2], x.shape[-1])
    return torch.cat([x.float(), t_map], dim=1)


class HiNeRVBlock(nn.Module):
    """HiNeRV-style block on (features, frame-time channel) maps.

    y = act(PixelShuffle(conv(x)) + bilinear_up(proj(x)) + tile(sample_grid(grid, t))): the conv +
    PixelShuffle branch as in HNeRV, an interpolation-based upsampling of a 1x1 projection beside it,
    and a local temporal grid (T_k, C_out, s, s) sampled at the frame time and tiled over the map
    (one value per position inside each s x s upsampling cell). The last input channel carries the
    frame time t; it is passed through (upsampled) as the last output channel. Block 0 may hold the
    model's fine base-grid level and block 1 its mid grid, as `fine_grid` (T, C, H, W) at the block's input
    size: its sample at t is appended to the input features before `conv` and `proj` (spec section 9).
    """

    def __init__(self, c_in: int, c_out: int, stride: int, kernel: int, grid_frames: int,
                 act: type[nn.Module], fine_grid: tuple[int, int, int, int] | None = None) -> None:
        super().__init__()
        self.stride = stride
        self.fine_grid = nn.Parameter(torch.zeros(fine_grid)) if fine_grid is not None else None
        self.conv = nn.Conv2d(c_in, c_out * stride * stride, kernel, padding=kernel // 2)
        self.shuffle = nn.PixelShuffle(stride)
        self.proj = nn.Conv2d(c_in, c_out, 1)
        self.grid = nn.Parameter(torch.zeros(grid_frames, c_out, stride, stride)) if grid_frames > 0 else None
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        t_frame = x[:, -1, 0, 0].float()
        return append_time(self.forward_features(x[:, :-1], t_frame), t_frame)

    def forward_features(self, feat: Tensor, t_frame: Tensor) -> Tensor:
        """The block on features without the time channel and frame times (N,): the output features
        (N, C_out, H * s, W * s), without the time channel (`forward` appends it)."""
        s = self.stride
        if self.fine_grid is not None:
            feat = torch.cat([feat, sample_grid(self.fine_grid, t_frame).to(feat.dtype)], dim=1)
        y = self.shuffle(self.conv(feat))
        y = y + F.interpolate(self.proj(feat), scale_factor=s, mode="bilinear", align_corners=False)
        if self.grid is not None:
            g = sample_grid(self.grid, t_frame).to(y.dtype)
            y = y + g.repeat(1, 1, y.shape[-2] // s, y.shape[-1] // s)
        return self.act(y)


class INRDecoder(nn.Module):
    """HNeRV / NeRV decoder built from an `INRConfig` (see the module docstring).

    `loaded_blocks` / `has_head` tell which parts hold real weights (a decoder from
    `serialize.load_decoder(upto_block=k)` has only blocks 0..k); running a missing part raises UsageError.
    """

    def __init__(self, config: INRConfig) -> None:
        super().__init__()
        self.config = config
        self.num_blocks = config.num_blocks
        act = _ACTS[config.activation]
        blocks = []
        for k in range(self.num_blocks):
            if config.kind == "hinerv":
                blocks.append(HiNeRVBlock(config.block_in_channels(k), config.channels[k], config.strides[k],
                                          config.kernel_sizes[k], config.block_grid(k), act,
                                          config.fine_grid_shape() if k == 0 else
                                          config.mid_grid_shape() if k == 1 else None))
                continue
            stem = _Stem(config, act) if (k == 0 and config.kind == "nerv") else None
            blocks.append(DecoderBlock(config.block_in_channels(k), config.channels[k], config.strides[k],
                                       config.kernel_sizes[k], act, stem))
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(config.channels[-1], 3, config.head_kernel, padding=config.head_kernel // 2)
        self.loaded_blocks = self.num_blocks
        self.has_head = True

    def _check(self, layer: int) -> None:
        if not 0 <= layer < self.num_blocks:
            raise UsageError(f"layer must be in 0..{self.num_blocks - 1}, got {layer}")
        if layer >= self.loaded_blocks:
            raise UsageError(f"block {layer} was not loaded (decoder holds blocks 0..{self.loaded_blocks - 1})")

    def forward(self, x: Tensor) -> Tensor:
        """Decoder input (see `input_for`) -> RGB (N, 3, pad_height, pad_width) in [0, 1].

        In training mode HiNeRV runs its blocks on (features, frame times) and never materialises the
        time channel between blocks (the same values as `features` + `head_forward`, without a
        concatenation and a strided channel slice per block); evaluation keeps the block calls, so
        forward hooks on blocks see every block's output."""
        if self.config.kind == "hinerv" and self.training:
            self._check(self.num_blocks - 1)
            t_frame = x[:, -1, 0, 0].float()
            feat = x[:, :-1]
            for block in self.blocks:
                feat = block.forward_features(feat, t_frame)
            return self._head(feat)
        return self.head_forward(self.features(x, self.num_blocks - 1))

    def features(self, x: Tensor, layer: int) -> Tensor:
        """Output of block `layer` (0-based); runs blocks 0..layer only."""
        self._check(layer)
        for k in range(layer + 1):
            x = self.blocks[k](x)
        return x

    def continue_features(self, feat: Tensor, from_layer: int, to_layer: int) -> Tensor:
        """Run blocks from_layer+1..to_layer on the output of block `from_layer` (-1: on the decoder input)."""
        if not -1 <= from_layer <= to_layer:
            raise UsageError(f"need -1 <= from_layer <= to_layer, got {from_layer}, {to_layer}")
        self._check(to_layer)
        for k in range(from_layer + 1, to_layer + 1):
            feat = self.blocks[k](feat)
        return feat

    def head_forward(self, feat_last: Tensor) -> Tensor:
        """Last block output -> RGB in [0, 1]."""
        if self.config.kind == "hinerv":
            feat_last = feat_last[:, :-1]
        return self._head(feat_last)

    def _head(self, feat_last: Tensor) -> Tensor:
        if not self.has_head:
            raise UsageError("the head was not loaded (decoder loaded with upto_block)")
        y = self.head(feat_last)
        out = torch.sigmoid(y) if self.config.out_activation == "sigmoid" else y.clamp(0.0, 1.0)
        if self.training and y.requires_grad:
            out = out + OUT_LEAK * (y - y.detach())
        return out

    @torch.no_grad()
    def init_output(self, mean_rgb: Tensor) -> None:
        """Set the head bias so that a zero feature map decodes to `mean_rgb` (3 values in [0, 1])."""
        m = mean_rgb.to(torch.float32).clamp(0.5 / 255.0, 254.5 / 255.0)
        bias = torch.logit(m) if self.config.out_activation == "sigmoid" else m
        self.head.bias.copy_(bias.to(self.head.bias))

    def input_for(self, frame_indices: Tensor, embeddings: Tensor | None) -> Tensor:
        """Decoder input for frames: HNeRV `embeddings[frame_indices]`; NeRV positional encodings."""
        p = next(self.parameters())
        if self.config.kind == "hnerv":
            if embeddings is None:
                raise UsageError("HNeRV decoding needs embeddings")
            return embeddings[frame_indices.to(embeddings.device)].to(device=p.device, dtype=p.dtype)
        if self.config.kind == "hinerv":
            if embeddings is None:
                raise UsageError("HiNeRV decoding needs its base grid (the embeddings)")
            idx = frame_indices.to(embeddings.device)
            if embeddings.shape[0] == self.config.num_frames:
                base = embeddings[idx]
            else:
                base = sample_grid(embeddings, frame_time(idx, self.config.num_frames))
            return self.with_time(base.to(device=p.device, dtype=p.dtype), frame_indices)

        return self.embedding_input(frame_indices).to(device=p.device, dtype=p.dtype)

    def with_time(self, embedded: Tensor, frame_indices: Tensor) -> Tensor:
        """HiNeRV: append the frame-time channel to embeddings (N, C, eh, ew) of frames; others: unchanged."""
        if self.config.kind != "hinerv":
            return embedded
        return append_time(embedded, frame_time(frame_indices.to(embedded.device), self.config.num_frames))

    def embedding_input(self, frame_indices: Tensor) -> Tensor:
        """NeRV positional encoding (N, 2 * pe_levels) of frame indices in 0..num_frames-1."""
        c = self.config
        if c.kind != "nerv":
            raise UsageError("embedding_input is for NeRV; HNeRV uses stored embeddings")
        return positional_encoding(frame_indices, c.num_frames, c.pe_levels, c.pe_base)

    def block_state_dict(self, k: int) -> dict[str, Tensor]:
        """Parameters of block k (names relative to the block)."""
        return dict(self.blocks[k].state_dict())

    def head_state_dict(self) -> dict[str, Tensor]:
        """Parameters of the RGB head."""
        return dict(self.head.state_dict())

    def load_block_state_dict(self, k: int, sd: dict) -> None:
        """Load block k parameters (strict names and shapes)."""
        self.blocks[k].load_state_dict(sd, strict=True)

    def load_head_state_dict(self, sd: dict) -> None:
        """Load the head parameters (strict)."""
        self.head.load_state_dict(sd, strict=True)

    def block_channels(self, k: int) -> int:
        """Channels of the output of block k (HiNeRV: the last one is the frame time)."""
        return self.config.block_out_channels(k)

    def block_stride(self, k: int) -> int:
        """Downsampling of block k's output relative to the padded frame."""
        return math.prod(self.config.strides[k + 1:])

    def block_size(self, k: int) -> tuple[int, int]:
        """(height, width) of block k's output."""
        s = self.block_stride(k)
        return self.config.pad_height // s, self.config.pad_width // s


class _LayerNorm2d(nn.LayerNorm):
    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class HNeRVEncoder(nn.Module):
    """Small ConvNeXt-like encoder: padded frames (N, 3, pad_h, pad_w) in [0, 1] -> embeddings.

    One stage per decoder stride (patchify conv with kernel = stride = s, channel LayerNorm, one
    ConvNeXt block), then a 1x1 conv to `embed_channels`. Output (N, embed_channels, eh, ew).
    Used only while fitting; the file stores its outputs (the embeddings), not the encoder.
    """

    def __init__(self, config: INRConfig, max_dim: int = 64) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        c_prev = 3
        for i, s in enumerate(config.strides):
            d = min(max_dim, 16 * 2 ** i)
            layers += [nn.Conv2d(c_prev, d, s, stride=s), _LayerNorm2d(d), _ConvNeXtBlock(d)]
            c_prev = d
        layers.append(nn.Conv2d(c_prev, config.embed_channels, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, frames: Tensor) -> Tensor:
        return self.net(frames)
