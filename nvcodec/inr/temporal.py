"""How much of a clip's coarse change a `hinerv` base grid's temporal sampling misses.

The base grid holds one grid frame per BASE_GRID_STEP frames at the embedding grid's size (one cell per
total stride of the decoder) and is sampled linearly in time. `coarse_interpolation_psnr` measures, in the
pixels themselves, how well that can follow the clip: each frame's cell means (cell x cell area averages)
are predicted by linear interpolation between the frames nearest the grid frames' times, and the PSNR of
that prediction is returned. A clip whose coarse content changes between grid frames (an object entering
and crossing a static scene) scores low; camera pans, slow motion and fine texture score high, because
cell means change smoothly. `wants_fine_grid` turns the score into the plan's choice of a fine base-grid
level and a mid grid (FINE_GRID_PSNR; README, "Codec results").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UsageError
from .metrics import PSNR_CAP, mse_to_psnr
from .model import frame_time, sample_grid
from .plan import base_grid_frames, fine_grid_frames, plan_strides

FINE_GRID_PSNR = 35.0
CHUNK_FRAMES = 16


def cell_means(frames: Tensor, cell: int) -> Tensor:
    """uint8 frames (N, H, W, 3) -> float32 (N, 3, ceil(H / cell), ceil(W / cell)): the mean of each cell x cell
    area in [0, 1] (of its pixels inside the frame, at the right and bottom edges), CHUNK_FRAMES frames at a
    time."""
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise UsageError("frames must be a uint8 tensor (N, H, W, 3)")
    if cell < 1:
        raise UsageError("cell must be at least 1")
    h, w = frames.shape[1:3]
    gh, gw = -(-h // cell), -(-w // cell)
    rows, cols = torch.full((gh,), float(cell)), torch.full((gw,), float(cell))
    rows[-1], cols[-1] = h - (gh - 1) * cell, w - (gw - 1) * cell  # the edge cells' pixels inside the frame
    count = (rows[:, None] * cols[None, :])[None, :, :, None] * 255.0
    out = []
    for s in range(0, frames.shape[0], CHUNK_FRAMES):
        x = F.pad(frames[s:s + CHUNK_FRAMES].to(torch.float32), (0, 0, 0, gw * cell - w, 0, gh * cell - h))
        out.append(x.reshape(x.shape[0], gh, cell, gw, cell, 3).sum(dim=(2, 4)) / count)
    return torch.cat(out).permute(0, 3, 1, 2).contiguous()


def coarse_interpolation_psnr(frames: Tensor, cell: int, grid_frames: int) -> float:
    """PSNR (dB, capped at 100) of predicting every frame's cell means by linear interpolation in time between
    the `grid_frames` frames nearest the grid frames' times (t_j = j / (grid_frames - 1))."""
    means = cell_means(frames, cell)
    n = means.shape[0]
    if grid_frames < 1:
        raise UsageError("grid_frames must be at least 1")
    if n == 1 or grid_frames >= n:
        return PSNR_CAP
    nodes = means[[round(j * (n - 1) / max(grid_frames - 1, 1)) for j in range(grid_frames)]]
    pred = sample_grid(nodes, frame_time(torch.arange(n), n))
    return min(PSNR_CAP, mse_to_psnr(float(torch.mean((means - pred) ** 2))))


def wants_fine_grid(frames: Tensor) -> bool:
    """Whether a `hinerv` plan for these frames should hold a fine base-grid level: the plan has one to give
    (`fine_grid_frames`) and the base grid alone follows the clip's cell means at less than FINE_GRID_PSNR."""
    n, h, w = frames.shape[:3]
    if not fine_grid_frames(n):
        return False
    cell = math.prod(plan_strides(w, h))
    return coarse_interpolation_psnr(frames, cell, base_grid_frames(n)) < FINE_GRID_PSNR
