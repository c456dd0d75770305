"""PNG charts of a `run_bench` report: rate-distortion, rate-accuracy, latency breakdown (matplotlib, optional)."""

from __future__ import annotations

import os
from typing import Any

from ..errors import UsageError

STAGES = ("decode", "preprocess", "adapter", "backbone", "head")
STAGE_COLORS = {"decode": "#4c72b0", "preprocess": "#dd8452", "adapter": "#55a868", "backbone": "#c44e52",
                "head": "#8172b3"}
PATH_TITLES = {"codec": "H.264 + backbone", "inr_pixels": "INR pixels + backbone", "nvcodec": "nvcodec"}


def require_matplotlib() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'nvcodec[plot]' (or pip install matplotlib)") from None
    return plt


def _subtitle(r: dict) -> str:
    c = r["conditions"]
    w = "random weights" if c["weights_random"] else "pretrained weights"
    return (f"{r['clip']} frames {c['frames'][0]}:{c['frames'][1]} ({c['width']}x{c['height']}), {c['device']}, "
            f"{c['threads']} threads, {w}")


def _rd(plt: Any, r: dict, path: str) -> None:
    pts = sorted(r["rate_points"], key=lambda p: p["nvcodec"]["bpp"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ms_ssim", "MS-SSIM")):
        ax.plot([p["nvcodec"]["bpp"] for p in pts], [p["nvcodec"][key] for p in pts], "o-", label="nvcodec")
        for short in pts[0]["codecs"]:
            got = [p["codecs"][short] for p in pts if p["codecs"][short].get("available")]
            if got:
                ax.plot([c["bpp"] for c in got], [c[key] for c in got], "s--", label=got[0]["label"])
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Rate-distortion\n" + _subtitle(r), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


SECOND_METRIC = {"classification": ("mean_kl", "mean KL(original || path), lower is closer"),
                 "detection": ("map50", "mAP@0.5 against the original-pixel detections")}


def _metric(a: dict | None, key: str | None = None) -> float | None:
    if not a:
        return None
    if key is not None:
        return a.get(key)
    return a.get("top1_agreement", a.get("fidelity"))


def _ra(plt: Any, r: dict, path: str) -> None:
    tasks = list(r["tasks"])
    pts = sorted(r["rate_points"], key=lambda p: p["nvcodec"]["bpp"])
    fig, axes = plt.subplots(2, len(tasks), figsize=(max(7, 5 * len(tasks)), 7), squeeze=False)
    for col, task in enumerate(tasks):
        kind = r["tasks"][task]["output_type"]
        second, second_label = SECOND_METRIC.get(kind, ("fidelity", "fidelity"))
        first_label = "top-1 agreement with original pixels" if kind == "classification" else "fidelity vs original pixels"
        for row, (key, ylabel) in enumerate(((None, first_label), (second, second_label))):
            ax = axes[row][col]
            plotted = False
            for name, style, label, bpp_of in (("nvcodec", "o-", "nvcodec path", "nvcodec"),
                                               ("inr_pixels", "^:", "INR pixels + backbone", "nvcodec"),
                                               ("x264", "s--", "x264 pixels + backbone", "x264")):
                xs, ys = [], []
                for p in pts:
                    v = _metric(p.get("rate_accuracy", {}).get(task, {}).get(name), key)
                    bpp = p["nvcodec"]["bpp"] if bpp_of == "nvcodec" else p["codecs"].get("x264", {}).get("bpp")
                    if v is not None and bpp is not None:
                        xs.append(bpp)
                        ys.append(v)
                if xs:
                    ax.plot(xs, ys, style, label=label)
                    plotted = True
            ax.set_xlabel("bits per pixel")
            ax.set_ylabel(ylabel, fontsize=8)
            ax.set_title(task)
            ax.grid(alpha=0.3)
            if plotted:
                ax.legend(fontsize=8)
            else:
                ax.text(0.5, 0.5, "null: nothing to score\n(e.g. no reference detection above the threshold)",
                        ha="center", va="center", transform=ax.transAxes, fontsize=8)
    fig.suptitle("Rate-accuracy\n" + _subtitle(r), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _latency(plt: Any, r: dict, path: str) -> None:
    labels, bars = [], []
    for task, t in r["tasks"].items():
        for key in ("codec", "inr_pixels", "nvcodec"):
            p = t["paths"][key]
            g = p["gflops"]["total"]
            labels.append(f"{task}: {PATH_TITLES[key]}\n{p['latency_ms']['total_ms']:.1f} ms, {g:.2f} GFLOPs")
            bars.append(p["latency_ms"]["stages_ms"])
    fig, ax = plt.subplots(figsize=(9, 0.7 * len(labels) + 1.5))
    ys = list(range(len(labels)))[::-1]
    for stage in STAGES:
        left = [sum(b.get(s, 0.0) for s in STAGES[:STAGES.index(stage)]) for b in bars]
        widths = [b.get(stage, 0.0) for b in bars]
        if any(widths):
            ax.barh(ys, widths, left=left, color=STAGE_COLORS[stage], label=stage)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("ms per frame (median; stage medians stacked)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Latency breakdown\n" + _subtitle(r), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(report: dict, directory: str, prefix: str | None = None) -> list[str]:
    """Write rate-distortion (and, with tasks, rate-accuracy and latency) PNGs into `directory`; returns their paths."""
    plt = require_matplotlib()
    os.makedirs(directory, exist_ok=True)
    stem = prefix if prefix is not None else os.path.splitext(report["clip"])[0] + "_"
    out = []
    charts = [("rate_distortion", _rd)]
    if report.get("tasks"):
        charts += [("rate_accuracy", _ra), ("latency", _latency)]
    for name, fn in charts:
        path = os.path.join(directory, f"{stem}{name}.png")
        fn(plt, report, path)
        out.append(path)
    return out
