"""The encode options shared by `nvcodec encode` and `nvcodec batch`, and the EncodeOptions they build."""

from __future__ import annotations

from typing import Any, Callable

import click

_OPTIONS = [
    click.option("--kind", type=click.Choice(["hnerv", "nerv", "hinerv"]), default="hinerv", show_default=True,
                 help="INR family."),
    click.option("--params", "params_", metavar="N", help="Model size incl. embeddings, e.g. 1.5M or 300k (default: a bpp target for the clip length, "
                      "capped at the source's bpp)."),
    click.option("--bpp", type=float, help="Bits per pixel of the whole file (a cap: the model is planned so the file lands at or just below it) "
                 "instead of --params."),
    click.option("--psnr", type=float, default=33.0, show_default=True,
                 help="Stop when the dequantized model reaches this PSNR (dB)."),
    click.option("--epochs", type=int, help="Stop after this many epochs."),
    click.option("--time-budget", type=float, metavar="SECONDS",
                 help="Stop so that the whole encode takes at most this long (a safety cap beside --epochs)."),
    click.option("--loss", type=click.Choice(["l2", "l1+ssim"]), default="l2", show_default=True),
    click.option("--lr", type=float, help="Peak learning rate of the decoder (default per kind: hinerv 0.01 at 4 blocks, "
                                          "0.02 at 3 (small frames), halved per block beyond 4 (640x360 and "
                                          "larger), its base grid twice that; hnerv/nerv 0.003)."),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N]."),
    click.option("--stream", type=int, help="Video stream number (default: the first video stream)."),
    click.option("--frames", metavar="A:B", help="Encode frames A..B-1 only (half-open)."),
    click.option("--segment-frames", type=int, metavar="N", help="Split long videos into INRs of N frames each."),
    click.option("--weight-bits", type=int, help="Bits per stored weight (default: 8 for hnerv/nerv, 6 for hinerv)."),
    click.option("--embed-bits", type=int, help="Bits per stored embedding value (default: 6 for hnerv/nerv, 5 for hinerv)."),
    click.option("--qat", type=float, metavar="FRACTION",
                 help="Final fraction of training run quantization-aware (0: quantize after training; "
                      "default: 0 for hnerv/nerv, 0.3 for hinerv); with --psnr, QAT also starts once "
                      "training comes within 1 dB of the target."),
    click.option("--prune", type=float, default=0.0, show_default=True, metavar="FRACTION",
                 help="Prune this fraction of each conv weight when QAT starts (needs --qat)."),
    click.option("--bit-alloc/--no-bit-alloc", default=None,
                 help="Per-tensor bit depths around --weight-bits, by sensitivity, when QAT starts "
                      "(default: on for hinerv, off for hnerv/nerv)."),
    click.option("--frames-per-step", type=int, metavar="N",
                 help="Frames per optimisation step while fitting (default: 1 for every kind; see the README's "
                      "fitting speed)."),
    click.option("--threads", type=int, metavar="N",
                 help="CPU threads for fitting (default: the CPUs this process may use: affinity and cgroup quota)."),
    click.option("--entropy", type=click.Choice(["rans", "none"]), default="rans", show_default=True,
                 help="How quantized tensors and sections are stored: rANS-coded tensors, sections zstd-compressed "
                      "with the built-in dictionary (needs a reader with the tensor-rans and zstd-dict-1 features), "
                      "or raw tensors and plain zstd (any 1.0 reader)."),
    click.option("--fine-grid", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
                 help="hinerv: a fine base-grid level (one grid frame per 2 frames, 4 channels) and a mid grid (one "
                      "per 4 frames, 2 channels, at block 1's input size) for clips whose coarse content changes "
                      "between base-grid frames; auto measures the clip (needs a reader with the hinerv-fine-grid "
                      "and hinerv-mid-grid features when used)."),
    click.option("--sampling", type=click.Choice(["auto", "loss", "uniform"]), default=None,
                 help="Which frames each training epoch visits: uniform visits every frame once, loss draws frames "
                      "by their latest training loss, auto switches to loss draws after 3 epochs where the "
                      "frames' losses vary widely (default: auto for hinerv, uniform for hnerv/nerv)."),
]
_NAMES = ("kind", "params_", "bpp", "psnr", "epochs", "time_budget", "loss", "lr", "seed", "device", "stream", "frames",
          "segment_frames", "weight_bits", "embed_bits", "qat", "prune", "bit_alloc", "frames_per_step", "threads", "entropy",
          "fine_grid", "sampling")


def encode_options(fn: Callable) -> Callable:
    """Add the encode options to a click command (in `--help` order)."""
    for option in reversed(_OPTIONS):
        fn = option(fn)
    return fn


def build_options(kwargs: dict[str, Any], **extra: Any) -> Any:
    """Pop the encode options out of a command's `kwargs` and return the EncodeOptions they give."""
    from nvcodec.codec.encode import EncodeOptions, parse_size
    from nvcodec.codec.frames import parse_range

    v = {name: kwargs.pop(name) for name in _NAMES}
    return EncodeOptions(kind=v["kind"], params=parse_size(v["params_"]) if v["params_"] else None, bpp=v["bpp"],
                         psnr=v["psnr"], epochs=v["epochs"], time_budget=v["time_budget"], loss=v["loss"], lr=v["lr"],
                         seed=v["seed"], device=v["device"], stream=v["stream"], frames=parse_range(v["frames"]),
                         segment_frames=v["segment_frames"], weight_bits=v["weight_bits"], embed_bits=v["embed_bits"],
                         prune=v["prune"], bit_alloc=v["bit_alloc"], frames_per_step=v["frames_per_step"], **({"qat": v["qat"]} if v["qat"] is not None else {}), threads=v["threads"],
                         entropy=v["entropy"], fine_grid=v["fine_grid"],
                         sampling=v["sampling"], **extra)
