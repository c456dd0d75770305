"""`attach()`: rank (INR block, injection point) pairs by CKA, train micro adapters, append the best."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import torch

from ..codec.meta import read_routing
from ..codec.video import NvpVideo, open as open_nvp, resolve_device
from ..container import Section, SectionKind, append_nvp, pack_msgpack, pack_tensors
from ..errors import UsageError
from ..progress import ProgressCallback, emit
from .adapter import fit_adapter
from .cka import rank_pairs, select_top
from .flops import count_flops
from .registry import get_task
from .runtime import TaskRuntime, adapter_section_name, build_runtime, inr_to_geometry, sample_indices

DEFAULT_SAMPLE = {"classification": 32, "detection": 12}
TIE = 0.01
HOLDOUT_FRACTION = 0.25


def _prepared_features(video: NvpVideo, rt: TaskRuntime, layers: range, idx: list[int], seg: int,
                       device: torch.device) -> dict[int, torch.Tensor]:
    """Block activations for every layer, decoded once (each deeper block continues the last)."""
    cfg = video.config(seg)
    m = video.metadata
    out: dict[int, torch.Tensor] = {}
    for k in layers:
        feat = video.features(k, idx, device=device)
        out[k] = inr_to_geometry(feat.float(), rt.geometry, m.width, m.height, cfg.pad_width, cfg.pad_height)
    return out


def _segment_frames(video: NvpVideo, seg: int, count: int) -> list[int]:
    s = video.segments[seg]
    return [s.start + i for i in sample_indices(s.stop - s.start, count)]


def _split(n: int) -> tuple[list[int], list[int]]:
    hold = max(1, round(n * HOLDOUT_FRACTION)) if n > 2 else 0
    if hold == 0:
        return list(range(n)), list(range(n))
    step = n / hold
    val = sorted({min(n - 1, int(i * step + step / 2)) for i in range(hold)})
    return [i for i in range(n) if i not in val], val


@torch.inference_mode()
def _cost_gflops(video: NvpVideo, rt: TaskRuntime, layer: int, point: str, adapter: torch.nn.Module,
                 inr_feat: torch.Tensor, device: torch.device) -> float:
    """FLOPs per frame of partial decode to `layer` + adapter + backbone tail from `point`."""
    dec, _ = video.decoder(video.segments[0], layer, device)
    x_in = video.inputs(video.segments[0], [0], device, layer)
    _, f_dec = count_flops(dec.features, x_in, layer)
    act, f_ad = count_flops(adapter, inr_feat[:1])
    _, f_tail = count_flops(rt.model.forward_from, act, point)
    return (f_dec + f_ad + f_tail) / 1e9


def attach(path: str, task: str, *, weights: str | None = None, top_k: float = 0.10, epochs: int = 30,
           sample_frames: int | None = None, device: str = "auto", seed: int = 0,
           progress: ProgressCallback | None = None) -> dict:
    """Attach `task` to the `.nvp` at `path` (appends routing + adapter; INR sections stay byte-identical)."""
    t0 = time.monotonic()
    if top_k <= 0:
        raise UsageError("--top-k must be positive (a fraction < 1, or a count >= 1)")
    if epochs < 1:
        raise UsageError("--epochs must be at least 1")
    dev = resolve_device(device)
    with open_nvp(path) as video:
        m = video.metadata
        n_seg = len(video.segments)
        spec = get_task(task)
        count = sample_frames or DEFAULT_SAMPLE.get(spec.output_type, 16)
        idx0 = _segment_frames(video, 0, count)
        pixels0 = video.frames(idx0, device=dev)
        rt = build_runtime(task, weights, dev, m.width, m.height, calibration_frames=pixels0)
        emit(progress, "attach", 0, None, stage_name="targets")

        # Targets: the backbone's activations on the video's own INR-decoded frames.
        with torch.inference_mode():
            x0 = rt.pixel_input(pixels0)
            targets = {p: rt.model.forward_to(x0, p).float() for p in spec.injection_points}
        sizes = {p: tuple(t.shape[-2:]) for p, t in targets.items()}
        layers = range(video.num_layers)
        inr0 = _prepared_features(video, rt, layers, idx0, 0, dev)

        # Debiased HSIC needs n >= 4 frames; plain linear CKA below that.
        ranked = rank_pairs(inr0, targets, sizes, debiased=len(idx0) >= 4)
        top = select_top(ranked, top_k)
        train_i, val_i = _split(len(idx0))
        emit(progress, "attach", 0, len(top), stage_name="adapters")

        trained: dict[tuple[int, str], dict[str, Any]] = {}
        for j, pair in enumerate(top):
            k, p = pair.inr_layer, pair.injection_point
            fit = fit_adapter(inr0[k][train_i], targets[p][train_i], out_size=sizes[p], epochs=epochs,
                              seed=seed, device=str(dev))
            adapter = fit.adapter.to(dev).eval()
            with torch.inference_mode():
                out_adapter = rt.model.forward_from(adapter(inr0[k][val_i]), p)
                out_pixel = rt.model.forward_from(targets[p][val_i], p)
                fidelity = float(spec.fidelity(out_adapter, out_pixel))
            cost = _cost_gflops(video, rt, k, p, adapter, inr0[k], dev)
            trained[(k, p)] = {"adapter": adapter, "fidelity": fidelity, "gflops": cost, "fit": fit}
            emit(progress, "attach", j + 1, len(top), val_loss=fit.val_loss[-1] if fit.val_loss else None)

        best_fid = max(t["fidelity"] for t in trained.values())
        near = [key for key, t in trained.items() if t["fidelity"] >= best_fid - TIE]
        chosen = min(near, key=lambda key: (trained[key]["gflops"], -trained[key]["fidelity"]))
        k, p = chosen
        best = trained[chosen]
        chosen_cka = next(x.cka for x in ranked if (x.inr_layer, x.injection_point) == chosen)

        adapters = {0: best["adapter"]}
        for seg in range(1, n_seg):
            idx = _segment_frames(video, seg, count)
            feats = _prepared_features(video, rt, range(k, k + 1), idx, seg, dev)
            with torch.inference_mode():
                tgt = rt.model.forward_to(rt.pixel_input(video.frames(idx, device=dev)), p).float()
            x_seg = feats[k]
            if x_seg.shape[0] == 1:
                # A one-frame segment: the adapter is fitted and validated on that frame.
                x_seg, tgt = x_seg.repeat(2, 1, 1, 1), tgt.repeat(2, 1, 1, 1)
            adapters[seg] = fit_adapter(x_seg, tgt, out_size=sizes[p], epochs=epochs, seed=seed,
                                        device=str(dev)).adapter

        backbone_params = int(rt.model.num_parameters())
        adapter_params = int(best["adapter"].num_parameters())
        candidates = []
        for x in ranked:
            t = trained.get((x.inr_layer, x.injection_point))
            candidates.append({"inr_layer": x.inr_layer, "injection_point": x.injection_point, "cka": float(x.cka),
                               "trained": t is not None, "fidelity": t["fidelity"] if t else None,
                               "gflops": t["gflops"] if t else None})
        routing = read_routing(video.reader)
        in_ch = int(inr0[k].shape[1])
        out_ch = int(targets[p].shape[1])

    entry = {
        "inr_layer": k, "injection_point": p, "cka": float(chosen_cka), "fidelity": best["fidelity"],
        "gflops": best["gflops"], "out_size": list(sizes[p]), "in_channels": in_ch, "out_channels": out_ch,
        "adapter_params": adapter_params, "backbone_params": backbone_params,
        "adapter_params_pct": 100.0 * adapter_params / backbone_params,
        "adapter_sections": [adapter_section_name(task, s, n_seg) for s in range(n_seg)],
        "weights": rt.weights_label, "weights_random": rt.random, "sample_frames": idx0,
        "top_k": top_k, "epochs": epochs, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    routing["tasks"][task] = entry
    sections = [Section("routing", SectionKind.ROUTING, pack_msgpack(routing))]
    for seg, ad in adapters.items():
        meta = {"task": task, "inr_layer": k, "injection_point": p, "out_size": list(sizes[p]), "segment": seg}
        sections.append(Section(adapter_section_name(task, seg, n_seg), SectionKind.ADAPTER,
                                pack_tensors(ad.to_arrays(), meta=meta)))
    append_nvp(path, sections)
    fit = best["fit"]
    return {
        "task": task, "file": str(path), "candidates": candidates,
        "chosen": {"inr_layer": k, "injection_point": p, "cka": float(chosen_cka)},
        "fidelity": best["fidelity"], "adapter_params": adapter_params, "adapter_params_pct": entry["adapter_params_pct"],
        "backbone_params": backbone_params, "gflops": best["gflops"], "trained_pairs": len(trained),
        "total_pairs": len(ranked), "adapter_epochs": fit.epochs_run, "adapter_val": fit.val_metrics,
        "sample_frames": len(idx0), "segments": n_seg, "weights": rt.weights_label, "weights_random": rt.random,
        "seconds": time.monotonic() - t0,
    }
