"""Dark-footage fit benchmark: the shared clips and their 10%-brightness versions, before and after the fix.

For every clip of /work/shared/clips: frames 0..15, area-resized to a short side of SHORT px (the
2-core machine cannot fit full-size frames in a benchmark's time), as they are ("normal") and
scaled to 10% brightness ("dark": round(0.1 x value)). Each is fitted with the same explicit
model size and a fixed epoch plan (no PSNR stop, no time budget) twice:

* `after`: the encoder as shipped (head bias at the clip's mean colour, surrogate gradient);
* `before`: the same code with both switched off (`model.OUT_LEAK = 0`, no `init_output`), which is
  the training of nvcodec 0.1.0.

Reported per fit (one PSNR definition, `nvcodec.inr.metrics`): the pooled PSNR of the dequantized
model, the per-frame mean beside it, the output's and the source's per-channel std, whether
`check_not_degenerate` fires, and three baselines on the same frames: all-black, constant frame
(the clip's mean colour) and mean frame (the temporal mean image).

    python benchmarks/dark_fit.py [--epochs 30] [--params 60000] [--out benchmarks/results/dark_fit.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

import nvcodec.inr.model as model_mod
from nvcodec.bench.machine import describe_machine
from nvcodec.errors import DegenerateFitError
from nvcodec.inr.metrics import frame_mse, quality_from_mse
from nvcodec.inr.plan import plan_config
from nvcodec.video import read_frames

fit_mod = importlib.import_module("nvcodec.inr.fit")  # the module (`nvcodec.inr.fit` is the function)
CLIPS = "/work/shared/clips"
SHORT = 144
FRAMES = 16
DARK = 0.1


def load(path: str) -> torch.Tensor:
    """Frames 0..FRAMES-1 as uint8 (N, H, W, 3), area-resized to a short side of SHORT (even sizes)."""
    f, _ = read_frames(path, frames=(0, FRAMES))
    x = torch.from_numpy(f).permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    s = SHORT / min(h, w)
    size = (2 * round(h * s / 2), 2 * round(w * s / 2))
    return F.interpolate(x, size=size, mode="area").round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def baselines(frames: torch.Tensor) -> dict:
    """PSNR (pooled) of all-black, constant mean colour and temporal mean frame predictions."""
    t = frames.float() / 255.0
    black = torch.zeros_like(t)
    const = t.mean((0, 1, 2), keepdim=True).expand_as(t)
    mean_frame = t.mean(0, keepdim=True).expand_as(t)
    return {name: round(quality_from_mse(frame_mse(p, t))["psnr"], 3)
            for name, p in (("black", black), ("constant", const), ("mean_frame", mean_frame))}


def run_fit(frames: torch.Tensor, variant: str, epochs: int, params: float) -> dict:
    n, h, w, _ = frames.shape
    cfg = plan_config(w, h, n, params=params)
    saved = (model_mod.OUT_LEAK, model_mod.INRDecoder.init_output, fit_mod.check_not_degenerate)
    verdict: dict = {}

    def record(psnr, output_std, source_std) -> None:
        try:
            saved[2](psnr, output_std, source_std)
            verdict["degenerate"] = None
        except DegenerateFitError as e:
            verdict["degenerate"] = str(e)

    if variant == "before":
        model_mod.OUT_LEAK = 0.0
        model_mod.INRDecoder.init_output = lambda self, m: None
    fit_mod.check_not_degenerate = record
    try:
        t0 = time.perf_counter()
        r = fit_mod.fit(frames, cfg, epochs=epochs, psnr_target=None, eval_every=None, seed=0, device="cpu")
        seconds = time.perf_counter() - t0
    finally:
        model_mod.OUT_LEAK, model_mod.INRDecoder.init_output, fit_mod.check_not_degenerate = saved
    return {"psnr": round(r.psnr, 3), "psnr_frame_mean": round(r.psnr_frame_mean, 3), "psnr_min": round(r.psnr_min, 3),
            "ssim": round(r.ssim, 4), "output_std_255": [round(v * 255, 3) for v in r.output_std],
            "degenerate": verdict["degenerate"], "epochs": r.epochs, "params": r.params, "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--params", type=float, default=60000)
    ap.add_argument("--clips", default=CLIPS)
    ap.add_argument("--out", default="benchmarks/results/dark_fit.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    rows = []
    for name in sorted(os.listdir(a.clips)):
        if not name.lower().endswith((".mp4", ".mkv")):
            continue
        src = load(os.path.join(a.clips, name))
        for bright in ("normal", "dark"):
            frames = src if bright == "normal" else (src.float() * DARK).round().to(torch.uint8)
            row = {"clip": name, "brightness": bright, "size": [frames.shape[2], frames.shape[1]],
                   "frames": frames.shape[0], "source_std_255": [round(float(v) * 255, 3) for v in fit_mod.channel_std(frames)],
                   "baselines": baselines(frames)}
            for variant in ("before", "after"):
                row[variant] = run_fit(frames, variant, a.epochs, a.params)
                print(name, bright, variant, row[variant]["psnr"], row["baselines"], flush=True, file=sys.stderr)
            rows.append(row)
    report = {"benchmark": "dark_fit", "conditions": {
        "frames": f"0:{FRAMES}, area-resized to a short side of {SHORT} px", "dark": f"round({DARK} x value)",
        "epochs": a.epochs, "params": a.params, "psnr_stop": None, "time_budget": None, "seed": 0, "device": "cpu",
        "psnr": "pooled MSE over all frames, pixels and channels (nvcodec.inr.metrics), dequantized model, 8-bit output",
        "machine_shared": "yes: 2 cores shared with ~6 other sessions; seconds are not speed figures"},
        "machine": describe_machine("cpu"), "rows": rows}
    with open(a.out, "w") as fh:
        json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
