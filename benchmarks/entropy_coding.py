"""Entropy coding of quantized INR sections: raw vs zstd vs rANS (constriction) vs canonical Huffman.

Fits a small HNeRV (default plan, time budget) on the first frames of a clip at 640x360, and a 100k
parameter one at 160x90 (trained for more epochs in less time, so its weights are closer to converged),
quantizes them (8-bit weights, 6-bit embeddings) and compares, per section and in total:

- raw: the tensor-bundle payload as stored with the RAW codec; packed: values bit-packed at `bits`;
- zstd level 3 and 19 of the bundle payload;
- rANS: per tensor, a static categorical model over 0..max(q) from the exact symbol counts
  (constriction AnsCoder), plus the frequency table (Elias-gamma coded counts + 32 bits) and the
  bundle header (names, shapes, quantization parameters) stored raw; `rans_or_raw` falls back to
  bit-packed values when that is smaller (tiny bias tensors);
- huffman: canonical Huffman code lengths (data bits) + 5 bits per alphabet symbol for the table;
- entropy: the order-0 Shannon bound (no table), for reference.

It also measures the quantization choices documented in `nvcodec/inr/quant.py` (affine vs symmetric,
per-tensor vs per-channel, biases quantized vs float16) as decoded PSNR of the dequantized model.

Run: `nice python benchmarks/entropy_coding.py [--seconds 75 --small-seconds 50]`;
writes benchmarks/results/entropy_coding.json.

`--study rans` measures the file's own rANS coding (`nvcodec/container/entropy.py`, spec 11.1): one
HNeRV fit for a fixed number of epochs, then post-training quantization of that same fit at several
bit depths (weights/embeddings); for each, every section's bytes as raw tensor bundles, raw + zstd
(what format 1.0 files store), rANS-coded bundles, and rANS + zstd (what `--entropy rans` files store),
the written files' sizes and bpp, and the PSNR decoded from the rANS file (checked equal to the raw
file's output). Writes benchmarks/results/entropy_rans.json and .md.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import platform
import time

import av
import numpy as np
import torch
import zstandard

from nvcodec.codec.serialize import inr_sections, load_decoder
from nvcodec.container import NvpReader, SectionKind, pack_tensors, unpack_tensors, write_nvp
from nvcodec.container.compression import ZSTD_LEVEL
from nvcodec.inr import INRDecoder, crop, fit, plan_config, psnr
from nvcodec.inr.quant import QuantizedINR, dequantize_into, quantize_auto, quantize_inr, quantize_tensor

CLIP = "/work/shared/clips/torchcodec_dog_eating_854132.mp4"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "entropy_coding.json")


def load_frames(path: str, n: int, width: int, height: int) -> torch.Tensor:
    """First `n` frames as uint8 (n, height, width, 3), resized with PyAV if needed."""
    frames = []
    with av.open(path) as container:
        for frame in container.decode(video=0):
            if (frame.width, frame.height) != (width, height):
                frame = frame.reformat(width=width, height=height)
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) >= n:
                break
    return torch.from_numpy(np.stack(frames))


def machine() -> dict:
    """CPU model, core count, library versions, torch threads."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from importlib.metadata import version
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "numpy": np.__version__, "zstandard": zstandard.__version__,
            "constriction": version("constriction"), "python": platform.python_version()}


def elias_gamma_bits(v: int) -> int:
    """Length of the Elias-gamma code of v >= 1."""
    return 2 * int(math.floor(math.log2(v))) + 1


def rans_bytes(q: np.ndarray) -> tuple[int, int]:
    """(compressed data bytes, table bytes) for a static categorical rANS model; verifies decoding."""
    import constriction
    sym = q.reshape(-1).astype(np.int32)
    counts = np.bincount(sym)
    model = constriction.stream.model.Categorical(counts.astype(np.float64) / counts.sum(), perfect=False)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(sym, model)
    words = coder.get_compressed()
    dec = constriction.stream.stack.AnsCoder(words)
    assert np.array_equal(dec.decode(model, sym.size), sym)
    table_bits = 32 + sum(elias_gamma_bits(int(c) + 1) for c in counts)
    return int(words.size * 4), int(math.ceil(table_bits / 8))


def huffman_bits(q: np.ndarray) -> tuple[int, int]:
    """(data bits, table bits) of a Huffman code for the symbol counts of q."""
    counts = np.bincount(q.reshape(-1).astype(np.int64))
    present = [(int(c), i) for i, c in enumerate(counts) if c > 0]
    if len(present) == 1:
        return int(counts.sum()), 5 * len(counts)
    heap = [(c, i, [s]) for i, (c, s) in enumerate(present)]
    heapq.heapify(heap)
    length = {s: 0 for _, s in present}
    tie = len(heap)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            length[s] += 1
        heapq.heappush(heap, (c1 + c2, tie, s1 + s2))
        tie += 1
    return sum(int(counts[s]) * n for s, n in length.items()), 5 * len(counts)


def entropy_bits(q: np.ndarray) -> float:
    """Order-0 Shannon information of q in bits."""
    counts = np.bincount(q.reshape(-1).astype(np.int64)).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(counts[counts > 0] * np.log2(p)).sum())


def section_sizes(payload: bytes) -> dict:
    """Every coder's size in bytes for one tensor-bundle payload."""
    bundle = unpack_tensors(payload)
    data_bytes = sum(a.nbytes for a in bundle.tensors.values())
    header = len(payload) - data_bytes
    out = {"raw": len(payload),
           "zstd3": len(zstandard.ZstdCompressor(level=3).compress(payload)),
           "zstd19": len(zstandard.ZstdCompressor(level=19).compress(payload))}
    packed = rans = rans_or_raw = huff = ent = 0.0
    for name, arr in bundle.tensors.items():
        bits = bundle.quant[name].bits if name in bundle.quant else arr.dtype.itemsize * 8
        p = math.ceil(arr.size * bits / 8)
        packed += p
        if name not in bundle.quant:
            rans += arr.nbytes
            rans_or_raw += arr.nbytes
            huff += arr.nbytes
            ent += arr.nbytes
            continue
        data, table = rans_bytes(arr)
        rans += data + table
        rans_or_raw += min(data + table, p)
        hd, ht = huffman_bits(arr)
        huff += math.ceil((hd + ht) / 8)
        ent += entropy_bits(arr) / 8
    out.update({"packed": int(header + packed), "rans": int(header + rans), "rans_or_raw": int(header + rans_or_raw),
                "huffman": int(header + huff), "entropy_bound": int(header + ent), "header": int(header)})
    return out


@torch.no_grad()
def decoded_psnr(decoder: INRDecoder, qinr: QuantizedINR, frames: torch.Tensor) -> float:
    """Mean PSNR of the dequantized model over the frames (fp32, outputs rounded to 8 bits)."""
    c = decoder.config
    emb = dequantize_into(decoder, qinr)
    decoder.eval()
    vals = []
    for i in range(0, frames.shape[0], 4):
        idx = torch.arange(i, min(i + 4, frames.shape[0]))
        out = crop(decoder(decoder.input_for(idx, emb)), c.width, c.height)
        out = (out.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
        vals.append(psnr(out, frames[idx], per_frame=True))
    return float(torch.cat(vals).mean())


def variant(decoder: INRDecoder, emb: torch.Tensor | None, mode: str, granularity: str, bias: str) -> QuantizedINR:
    """Quantized model with one fixed choice (for the quantization study)."""
    def q(t: torch.Tensor, bits: int, axis: int | None):
        if granularity == "auto":
            return quantize_auto(t, bits, axis) if mode == "affine" else quantize_tensor(t, bits, axis, mode)
        return quantize_tensor(t, bits, axis if granularity == "channel" else None, mode)

    def state(sd: dict) -> tuple[dict, dict]:
        qd, fl = {}, {}
        for name, t in sd.items():
            if t.ndim == 1 and bias == "fp16":
                fl[name] = t.detach().cpu().numpy().astype(np.float16)
            else:
                qd[name] = q(t, 8, 0 if t.ndim >= 2 else None)
        return qd, fl

    blocks, floats = zip(*(state(decoder.block_state_dict(k)) for k in range(decoder.num_blocks)))
    head, head_floats = state(decoder.head_state_dict())
    e = None if emb is None else q(emb, 6, 1)
    return QuantizedINR(blocks=list(blocks), head=head, embeddings=e, block_floats=list(floats),
                        head_floats=head_floats)


def weight_rel_mse(decoder: INRDecoder, qinr: QuantizedINR) -> float:
    """Squared weight error over all decoder parameters, relative to their squared norm."""
    err = norm = 0.0
    pairs = [(decoder.block_state_dict(k), qinr.block_tensors(k)) for k in range(decoder.num_blocks)]
    pairs.append((decoder.head_state_dict(), qinr.head_tensors()))
    for sd, deq in pairs:
        for name, t in sd.items():
            x = t.detach().float().cpu()
            err += float((x - deq[name]).pow(2).sum())
            norm += float(x.pow(2).sum())
    return float(f"{err / norm:.4g}")


def run_case(frames: torch.Tensor, params: float | None, seconds: float) -> dict:
    """Fit, then measure every coder on the sections and the quantization variants."""
    n, height, width = int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2])
    config = plan_config(width, height, n, params=params)
    t0 = time.time()
    result = fit(frames, config, time_budget=seconds, psnr_target=None, eval_every=None)
    fit_info = {"seconds": round(time.time() - t0, 1), "epochs": result.epochs, "psnr": round(result.psnr, 2),
                "psnr_float": round(result.psnr_float, 2), "ssim": round(result.ssim, 4), "dtype": result.dtype,
                "params": config.num_params(), "strides": config.strides, "channels": config.channels,
                "padded": [config.pad_width, config.pad_height],
                "embedding": [config.embed_channels, config.embed_height, config.embed_width]}
    print(f"fit {width}x{height}:", fit_info, flush=True)

    per_section, totals = {}, {}
    for s in inr_sections(config, result.quantized):
        if s.kind == SectionKind.MODEL:
            continue
        sizes = section_sizes(s.payload)
        per_section[s.name] = sizes
        for k, v in sizes.items():
            totals[k] = totals.get(k, 0) + v
    print(f"{'section':<12}" + "".join(f"{k:>14}" for k in totals))
    for name, sizes in [*per_section.items(), ("TOTAL", totals)]:
        print(f"{name:<12}" + "".join(f"{sizes[k]:>14}" for k in totals))

    decoder = INRDecoder(config)
    quant_study = {}
    for mode, gran, bias in [("affine", "auto", "quant8"), ("affine", "auto", "fp16"), ("affine", "tensor", "quant8"),
                             ("symmetric", "channel", "quant8")]:
        qinr = variant(result.decoder, result.embeddings, mode, gran, bias)
        sizes = [section_sizes(s.payload) for s in inr_sections(config, qinr) if s.kind != SectionKind.MODEL]
        key = f"{mode}/{gran}/bias-{bias}"
        quant_study[key] = {"psnr": round(decoded_psnr(decoder, qinr, frames), 3),
                            "weight_rel_mse": weight_rel_mse(result.decoder, qinr),
                            "zstd19_bytes": sum(z["zstd19"] for z in sizes),
                            "rans_bytes": sum(z["rans_or_raw"] for z in sizes)}
        print(key, quant_study[key], flush=True)
    return {"frames": n, "resolution": [width, height], "fit": fit_info, "sections": per_section, "totals": totals,
            "bpp": {k: round(v * 8 / (width * height * n), 4) for k, v in totals.items()},
            "quantization": quant_study}


@torch.no_grad()
def file_output(path: str, frames: int) -> tuple[torch.Tensor, INRDecoder]:
    """All frames decoded from a written file (fp32, before rounding) and its decoder."""
    with NvpReader(path) as reader:
        decoder, emb = load_decoder(reader)
    return decoder(decoder.input_for(torch.arange(frames), emb)), decoder


def rans_case(frames: torch.Tensor, params: float, epochs: int, depths: list[tuple[int, int]], work: str) -> dict:
    """One fit, then each (weight_bits, embed_bits): bytes per section and file, bpp and PSNR."""
    n, height, width = int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2])
    config = plan_config(width, height, n, params=params)
    t0 = time.time()
    result = fit(frames, config, epochs=epochs, psnr_target=None, eval_every=None, seed=0)
    fit_info = {"seconds": round(time.time() - t0, 1), "epochs": result.epochs, "psnr_float": round(result.psnr_float, 2),
                "params": config.num_params(), "strides": config.strides, "channels": config.channels,
                "embedding": [config.embed_channels, config.embed_height, config.embed_width]}
    print(f"fit {width}x{height}x{n}:", fit_info, flush=True)
    pixels = width * height * n
    zc = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    rows = []
    for wbits, ebits in depths:
        qinr = quantize_inr(result.decoder, result.embeddings, weight_bits=wbits, embed_bits=ebits)
        raw = {s.name: s.payload for s in inr_sections(config, qinr, entropy="none") if s.kind != SectionKind.MODEL}
        coded = {s.name: s for s in inr_sections(config, qinr, entropy="rans") if s.kind != SectionKind.MODEL}
        sections = {}
        for name, payload in raw.items():
            c = coded[name].payload
            b = unpack_tensors(payload)
            every = pack_tensors(b.tensors, b.quant, b.meta, entropy="rans")
            sections[name] = {"raw": len(payload), "zstd": min(len(payload), len(zc.compress(payload))),
                              "rans_all": len(every), "rans_all_zstd": min(len(every), len(zc.compress(every))),
                              "rans": len(c), "rans_zstd": min(len(c), len(zc.compress(c))),
                              "coded_tensors": sorted(unpack_tensors(c).coding)}
        totals = {k: sum(v[k] for v in sections.values())
                  for k in ("raw", "zstd", "rans_all", "rans_all_zstd", "rans", "rans_zstd")}
        files, outs = {}, {}
        for entropy in ("none", "rans"):
            path = os.path.join(work, f"{wbits}-{ebits}-{entropy}.nvp")
            write_nvp(path, inr_sections(config, qinr, entropy=entropy))
            files[entropy] = os.path.getsize(path)
            outs[entropy], decoder = file_output(path, n)
        assert torch.equal(outs["none"], outs["rans"]), "rANS file decodes differently from the raw file"
        quality = decoded_psnr(decoder, qinr, frames)
        row = {"weight_bits": wbits, "embed_bits": ebits, "psnr": round(quality, 3), "sections": sections,
               "totals": totals, "bpp": {k: round(v * 8 / pixels, 4) for k, v in totals.items()},
               "file_bytes": files, "file_bpp": {k: round(v * 8 / pixels, 4) for k, v in files.items()},
               "rans_zstd_vs_zstd": round(totals["rans_zstd"] / totals["zstd"], 4)}
        print(f"w{wbits}/e{ebits}: psnr {row['psnr']} dB", totals, "files", files, flush=True)
        rows.append(row)
    return {"frames": n, "resolution": [width, height], "fit": fit_info, "depths": rows}


def render_rans(report: dict) -> str:
    """Markdown summary of a `--study rans` report."""
    m = report["machine"]
    lines = ["# rANS entropy coding of quantized INR sections", "",
             f"Command: `{report['command']}`. Clip `{report['clip']}`. Machine: {m['cpu']}, {m['cores']} cores "
             f"(load average {report['load_average']} at start, shared), torch {m['torch']}, constriction "
             f"{m['constriction']}. Post-training quantization of one fit at each bit depth; bytes exclude the "
             "`model` section; bpp = bytes x 8 / (width x height x frames). `raw`: tensor bundles as stored "
             f"uncompressed; `zstd`: raw bundles + zstd (level {ZSTD_LEVEL}, what `--entropy none` and format 1.0 "
             "files store); `rANS all`: every quantized tensor rANS-coded where that beats its raw bytes "
             "(`pack_tensors(entropy=\"rans\")`), then + zstd; `rANS+zstd`: what `--entropy rans` files store "
             "(a section stays raw where zstd of the raw bundle is smaller). PSNR is decoded from the "
             "`--entropy rans` file and checked equal to the `none` file's output.", ""]
    for key, case in report["cases"].items():
        f = case["fit"]
        lines += [f"## {key}, {case['frames']} frames: {f['params']} parameters, {f['epochs']} epochs "
                  f"({f['seconds']} s), float PSNR {f['psnr_float']} dB", "",
                  "| weight/embed bits | PSNR dB | raw B | zstd B | rANS all B | rANS all+zstd B | rANS+zstd B | "
                  "rANS+zstd / zstd | file bpp (none -> rans) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in case["depths"]:
            t = r["totals"]
            lines.append(f"| {r['weight_bits']}/{r['embed_bits']} | {r['psnr']} | {t['raw']} | {t['zstd']} | "
                         f"{t['rans_all']} | {t['rans_all_zstd']} | {t['rans_zstd']} | {r['rans_zstd_vs_zstd']:.3f} | "
                         f"{r['file_bpp']['none']} -> {r['file_bpp']['rans']} |")
        last = case["depths"][-1]
        lines += ["", f"Per section at {last['weight_bits']}/{last['embed_bits']} bits (bytes):", "",
                  "| section | raw | zstd | rANS all | rANS all+zstd | rANS+zstd | coded tensors |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for name, sec in last["sections"].items():
            lines.append(f"| {name} | {sec['raw']} | {sec['zstd']} | {sec['rans_all']} | {sec['rans_all_zstd']} | "
                         f"{sec['rans_zstd']} | {', '.join(sec['coded_tensors']) or '-'} |")
        lines.append("")
    return "\n".join(lines)


def rans_main(args: argparse.Namespace) -> None:
    import sys
    import tempfile

    load = os.getloadavg()[0]
    frames = load_frames(args.clip, args.frames, args.width, args.height)
    depths = [(8, 6), (8, 8), (6, 6), (5, 5)]
    with tempfile.TemporaryDirectory() as work:
        case = rans_case(frames, args.params, args.epochs, depths, work)
    report = {"machine": machine(), "load_average": round(load, 2), "clip": os.path.basename(args.clip),
              "command": "python benchmarks/entropy_coding.py " + " ".join(sys.argv[1:]),
              "cases": {f"{args.width}x{args.height}": case}}
    out = args.out if args.out != OUT else os.path.join(os.path.dirname(OUT), "entropy_rans.json")
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    with open(out[:-5] + ".md", "w") as f:
        f.write(render_rans(report))
    print("wrote", out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", choices=["quant", "rans"], default="quant")
    ap.add_argument("--clip", default=CLIP)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=75.0, help="fit time for the 640x360 model")
    ap.add_argument("--small-seconds", type=float, default=50.0, help="fit time for the 160x90 model (0: skip)")
    ap.add_argument("--width", type=int, default=320, help="--study rans: frame width")
    ap.add_argument("--height", type=int, default=180, help="--study rans: frame height")
    ap.add_argument("--params", type=float, default=1e5, help="--study rans: model size")
    ap.add_argument("--epochs", type=int, default=100, help="--study rans: fixed epoch count")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    if args.study == "rans":
        rans_main(args)
        return

    cases = {"640x360": run_case(load_frames(args.clip, args.frames, 640, 360), None, args.seconds)}
    if args.small_seconds > 0:
        cases["160x90"] = run_case(load_frames(args.clip, args.frames, 160, 90), 1e5, args.small_seconds)
    report = {"machine": machine(), "clip": os.path.basename(args.clip), "cases": cases}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
