"""`NvpVideo`: the reading side of an `.nvp` file (pixels and block activations)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from ..container import NvpReader, SectionKind
from ..errors import FormatError, UsageError
from ..inr.model import INRDecoder, crop
from ..inr.plan import INRConfig
from .frames import FrameSelection, resolve_indices
from .meta import read_model, read_segments, read_video
from .serialize import load_decoder


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Map `auto`/None to CUDA when available, else CPU; check that CUDA exists when asked for."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {device!r}: use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but this torch build or machine has no CUDA device")
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"unsupported device {device!r}: use auto, cpu or cuda[:N]")
    return dev


def _check_shape(x: torch.Tensor, expected: tuple[int, ...], seg: "Segment") -> None:
    """FormatError when a decoder gave a tensor of another shape than the file declares."""
    if tuple(x.shape) != expected:
        raise FormatError(f"decoding gave a tensor of shape {list(x.shape)}, the file declares {list(expected)}",
                          section=f"{seg.prefix}model")


@dataclass(frozen=True)
class Segment:
    """One INR covering frames [start, stop) of the video; its sections share `prefix`."""

    index: int
    start: int
    stop: int
    prefix: str


class NvpVideo:
    """An opened `.nvp` file. Index it like a sequence of frames: `v[i]` is uint8 (H, W, 3)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._reader = NvpReader(self.path)
        try:
            self.metadata = read_video(self._reader)
            self.segments = [Segment(i, a, b, p) for i, (a, b, p) in enumerate(read_segments(self._reader, self.metadata.frames))]
            self._configs: dict[str, INRConfig] = {
                seg.prefix: read_model(self._reader, seg.prefix, self.metadata, seg.stop - seg.start)
                for seg in self.segments}
        except BaseException:
            self._reader.close()
            raise
        self._decoders: dict[tuple[int, int | None, str], tuple[INRDecoder, torch.Tensor | None]] = {}

    # --- context management -------------------------------------------------
    def close(self) -> None:
        """Release the file and cached decoders."""
        self._decoders.clear()
        self._reader.close()

    def __enter__(self) -> "NvpVideo":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def reader(self) -> NvpReader:
        """The underlying container reader."""
        return self._reader

    # --- model structure ----------------------------------------------------
    def config(self, segment: int = 0) -> INRConfig:
        """The INR architecture of one segment (checked against the video when the file was opened)."""
        return self._configs[self.segments[segment].prefix]

    @property
    def num_layers(self) -> int:
        """Number of decoder blocks; `features(layer=k)` accepts 0 <= k < num_layers."""
        return len(self.config(0).strides)

    def __len__(self) -> int:
        return self.metadata.frames

    def __getitem__(self, index: int) -> torch.Tensor:
        if not isinstance(index, int):
            raise TypeError("index with an int; use frames() for slices and lists")
        return self.frames([index])[0]

    def __iter__(self) -> Iterator[torch.Tensor]:
        for batch in self.iter_frames():
            yield from batch

    # --- decoding -----------------------------------------------------------
    def _segment_of(self, frame: int) -> Segment:
        for seg in self.segments:
            if seg.start <= frame < seg.stop:
                return seg
        raise UsageError(f"frame {frame} is out of range: the video has {self.metadata.frames} frames")

    def decoder(self, seg: Segment, upto: int | None, device: torch.device) -> tuple[INRDecoder, torch.Tensor | None]:
        """Decoder of one segment holding blocks 0..upto (all when None), and its embeddings; cached."""
        # A full decoder also serves any partial request.
        for key in ((seg.index, None, str(device)), (seg.index, upto, str(device))):
            if key in self._decoders:
                return self._decoders[key]
        dec, emb = load_decoder(self._reader, seg.prefix, upto_block=upto, device=device)
        dec.eval()
        if device.type == "cpu":
            dec = dec.to(memory_format=torch.channels_last)
        self._decoders[(seg.index, upto, str(device))] = (dec, emb)
        return dec, emb

    def batches(self, indices: list[int], batch_size: int) -> Iterator[tuple[Segment, list[int]]]:
        """Split indices into runs that fall in one segment, at most batch_size long."""
        run: list[int] = []
        run_seg: Segment | None = None
        for i in indices:
            seg = self._segment_of(i)
            if run and (seg is not run_seg or len(run) >= batch_size):
                yield run_seg, run  # type: ignore[misc]
                run = []
            run_seg = seg
            run.append(i)
        if run:
            yield run_seg, run  # type: ignore[misc]

    def inputs(self, seg: Segment, indices: list[int], device: torch.device, upto: int | None) -> torch.Tensor:
        """Decoder input (embeddings or positional encodings) for frames of one segment."""
        dec, emb = self.decoder(seg, upto, device)
        local = torch.tensor([i - seg.start for i in indices], dtype=torch.long, device=device)
        return dec.input_for(local, emb)

    @torch.inference_mode()
    def iter_frames(self, frames: FrameSelection = None, *, device: str | torch.device = "cpu", batch_size: int = 8) -> Iterator[torch.Tensor]:
        """Decode frames in batches; yields uint8 tensors (n, H, W, 3) at the original resolution."""
        dev = resolve_device(device)
        indices = resolve_indices(frames, self.metadata.frames)
        for seg, run in self.batches(indices, max(1, batch_size)):
            dec, _ = self.decoder(seg, None, dev)
            x = self.inputs(seg, run, dev, None)
            # On the CPU one frame per forward: oneDNN picks its convolution kernels by batch size, and their
            # different summation orders moved a rare pixel by one level, so v[i] could differ from frames()[i].
            # Per frame, a frame decodes to the same pixels in any batch, and no slower here (README).
            rgb = torch.cat([dec(x[i:i + 1]) for i in range(x.shape[0])]) if dev.type == "cpu" else dec(x)
            rgb = crop(rgb, self.metadata.width, self.metadata.height)
            _check_shape(rgb, (len(run), 3, self.metadata.height, self.metadata.width), seg)
            yield (rgb.float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()

    def frames(self, frames: FrameSelection = None, *, device: str | torch.device = "cpu", batch_size: int = 8) -> torch.Tensor:
        """Decode the selected frames (int, slice, range or list): uint8 (N, H, W, 3) on `device`."""
        out = list(self.iter_frames(frames, device=device, batch_size=batch_size))
        if not out:
            return torch.empty((0, self.metadata.height, self.metadata.width, 3), dtype=torch.uint8)
        return torch.cat(out)

    get_frames_at = frames

    @torch.inference_mode()
    def iter_features(self, layer: int, frames: FrameSelection = None, *, device: str | torch.device = "cpu", batch_size: int = 8) -> Iterator[torch.Tensor]:
        """Block-`layer` activations in batches, reading only the sections for blocks 0..layer."""
        self._check_layer(layer)
        dev = resolve_device(device)
        indices = resolve_indices(frames, self.metadata.frames)
        for seg, run in self.batches(indices, max(1, batch_size)):
            dec, _ = self.decoder(seg, layer, dev)
            feat = dec.features(self.inputs(seg, run, dev, layer), layer)
            cfg = self.config(seg.index)
            grid = math.prod(cfg.strides[:layer + 1])
            _check_shape(feat, (len(run), cfg.block_out_channels(layer), cfg.embed_height * grid, cfg.embed_width * grid), seg)
            yield feat

    def features(self, layer: int, frames: FrameSelection = None, *, device: str | torch.device = "cpu", batch_size: int = 8) -> torch.Tensor:
        """Activations of decoder block `layer` (0-based) for the selected frames: float (N, C, h, w).

        The grid covers the padded frame (see `config().pad_width/pad_height`); padding is at the
        bottom/right, so the frame occupies the top-left `width/stride x height/stride` cells.
        """
        return torch.cat(list(self.iter_features(layer, frames, device=device, batch_size=batch_size)))

    def _check_layer(self, layer: int) -> None:
        if not isinstance(layer, int) or not 0 <= layer < self.num_layers:
            raise UsageError(f"layer {layer!r} is out of range: this model has blocks 0..{self.num_layers - 1}")

    def _reopen(self) -> None:
        self._reader.close()
        self._reader = NvpReader(self.path)
        self._decoders.clear()

    def has_section(self, name: str) -> bool:
        """Whether the current index lists a section called `name`."""
        return name in self._reader

    def sections_of_kind(self, kind: SectionKind) -> list[str]:
        """Names of live sections of one kind."""
        return [s.name for s in self._reader.sections if s.kind == int(kind)]


def open(path: str | os.PathLike, *, cls: type[NvpVideo] = NvpVideo) -> NvpVideo:  # noqa: A001 - mirrors builtins.open
    """Open an `.nvp` file for decoding: `v = open("clip.nvp"); v[0]; v.features(layer=2)`.

    `cls`: a subclass to return (`nvcodec.api.NvpVideo` adds the task methods).
    """
    if not os.path.exists(path):
        raise UsageError(f"{os.fspath(path)}: no such file")
    if os.path.isdir(path):
        raise UsageError(f"{os.fspath(path)}: is a directory, not an .nvp file")
    try:
        return cls(path)
    except PermissionError:
        raise UsageError(f"{os.fspath(path)}: permission denied") from None
