"""`tune()`: joint optimization of the INR and one task's adapter (the paper's optional mode).

For every segment, the dequantized INR (decoder weights and, for HNeRV, the frame embeddings)
and the task's attached adapter are fine-tuned together on

    recon_weight x MSE(decoded frames, reference frames)
  + task_weight x distillation loss (adapter path output vs the teacher's)
  + feature_weight x composite feature loss (adapter output vs the teacher's activation)

with Adam (INR lr 1e-5, adapter lr 1e-4 by default) and a cosine schedule over `epochs`. The
reference frames, and the teacher (the full backbone on them), are the original video's when
`source` is given, else the INR's own frames before tuning (then PSNR is measured against those).
The tuned INR is quantized with the file's own per-tensor bits and layout (`stored_plan`), and
trained quantization-aware (and kept pruned) when the file was, so the rate stays about the same; this task's
adapter is then refined on the dequantized INR, and the adapters of the other attached tasks are
re-fitted on it (same pair and kind). Everything is appended as one new generation: the previous
INR stays in the file, unreferenced, until `nvcodec compact`.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from typing import Any

import torch
import torch.nn.functional as F

from ..codec.meta import read_provenance, read_routing
from ..codec.serialize import inr_sections, load_decoder, stored_plan
from ..codec.video import NvpVideo, open as open_nvp, resolve_device
from ..container import NvpReader, Section, SectionKind, append_nvp, pack_msgpack
from ..errors import NotAttachedError, UsageError
from ..inr.metrics import frame_mse, pool_quality, quality_from_mse
from ..inr.model import crop
from ..inr.qat import WeightSTE, fake_quant_ste
from ..inr.quant import dequantize_into, quantize_inr
from ..progress import ProgressCallback, emit
from ..route.adapter import ADAPTER_BITS, CompositeLoss, MicroAdapter, TaskDistill, fit_adapter
from ..models.registry import TaskSpec, resolve_task
from ..route.source import source_frames
from .attach import Candidate, _prepare, _take, _teacher, _train, stored_as
from .holdout import split as _split
from ..route.runtime import TaskRuntime, adapter_section_name, build_runtime, inr_to_geometry, load_adapters

DEFAULT_EPOCHS = 10
REFINE_EPOCHS = 10


def _frames_float(frames: torch.Tensor, device: torch.device) -> torch.Tensor:
    return frames.to(device).permute(0, 3, 1, 2).float().div_(255.0)


def _settings(reader: NvpReader) -> tuple[int, int, bool, bool]:
    """(weight bits, embedding bits, trained quantization-aware, pruned) from the file's encode settings."""
    settings = read_provenance(reader).get("settings") or {}
    qat, prune = settings.get("qat") or 0, settings.get("prune") or 0
    return (settings.get("weight_bits") or 8, settings.get("embed_bits") or 6,
            isinstance(qat, (int, float)) and qat > 0, isinstance(prune, (int, float)) and prune > 0)


@torch.no_grad()
def _decode(dec: torch.nn.Module, inputs_for: Any, n: int, width: int, height: int, device: torch.device) -> torch.Tensor:
    out = []
    for s in range(0, n, 4):
        idx = torch.arange(s, min(s + 4, n), device=device)
        out.append(crop(dec(inputs_for(idx)).float(), width, height).clamp(0, 1))
    return torch.cat(out)


def _quality(decoded: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    q = (decoded * 255.0).round() / 255.0
    return quality_from_mse(frame_mse(q, reference))


def _adapter_path(rt: TaskRuntime, adapter: MicroAdapter, feat: torch.Tensor, point: str, video: NvpVideo,
                  pad: tuple[int, int], **ctx: Any) -> tuple[torch.Tensor, Any]:
    m = video.metadata
    act = adapter(inr_to_geometry(feat.float(), rt.geometry, m.width, m.height, pad[0], pad[1]))
    return act, rt.model.forward_from(act, point, **ctx)


def tune(path: str, task: str | TaskSpec, *, source: str | None = None, source_stream: int | None = None,
         epochs: int = DEFAULT_EPOCHS, inr_lr: float = 1e-5, adapter_lr: float = 1e-4, recon_weight: float = 1.0,
         task_weight: float = 0.5, feature_weight: float = 0.2, batch_size: int = 2, time_budget: float | None = None,
         weights: str | None = None, device: str = "auto", seed: int = 0,
         progress: ProgressCallback | None = None) -> dict:
    """Fine-tune the INR of `path` together with `task`'s adapter (a name, looked up here once, or its
    `TaskSpec`); see the module docstring. The other attached tasks are looked up once each, here too."""
    t0 = time.monotonic()
    for name, v in (("--epochs", epochs), ("--batch-size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UsageError(f"{name} must be a positive integer")
    for name, v in (("--inr-lr", inr_lr), ("--adapter-lr", adapter_lr)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise UsageError(f"{name} must be a learning rate >= 0")
    if min(recon_weight, task_weight, feature_weight) < 0:
        raise UsageError("loss weights must be >= 0")
    if time_budget is not None and not time_budget > 0:
        raise UsageError("--time-budget must be positive")
    dev = resolve_device(device)
    torch.manual_seed(seed)
    with open_nvp(path) as video:
        routing = read_routing(video.reader)
        spec = task if isinstance(task, TaskSpec) else None
        task = spec.name if spec is not None else task
        entry = routing["tasks"].get(task)
        if not isinstance(entry, dict):
            raise NotAttachedError(f"{path} has no routing for task {task!r}: run `nvcodec attach {path} --task {task}` first")
        spec = resolve_task(spec or task)
        if spec.clip is not None:
            raise UsageError(f"tune does not support clip tasks ({task}) yet")
        m = video.metadata
        w = weights or (entry.get("weights") if entry.get("weights") in ("random", "random-tiny") else None)
        calib = video.frames((entry.get("sample_frames") or [0])[:64], device=dev) \
            if entry.get("weights_random") or w in ("random", "random-tiny") else None
        rt = build_runtime(spec, w, dev, m.width, m.height, calibration_frames=calib)
        k, point = entry["inr_layer"], entry["injection_point"]
        bits = ADAPTER_BITS if entry.get("adapter_bits") == ADAPTER_BITS else None
        adapters = load_adapters(video, entry, rt, dev)
        weight_bits, embed_bits, qat, pruned = _settings(video.reader)
        total_steps = sum(math.ceil((s.stop - s.start) / batch_size) for s in video.segments) * epochs
        done = 0
        sections: list[Section] = []
        segments: list[dict[str, Any]] = []
        qualities: list[tuple[dict, dict]] = []
        feature_loss = CompositeLoss()
        for seg in video.segments:
            n = seg.stop - seg.start
            idx = list(range(seg.start, seg.stop))
            cfg = video.config(seg.index)
            dec, emb = load_decoder(video.reader, seg.prefix, device=dev)
            pixels = source_frames(video, source, idx, source_stream) if source else video.frames(idx)
            reference = _frames_float(pixels, dev)
            acts, teacher = _teacher(rt, pixels.to(dev), (point,))
            target = acts[point]
            emb_param = torch.nn.Parameter(emb.clone()) if emb is not None else None
            plan = stored_plan(video.reader, dec, seg.prefix, keep_zeros=pruned)
            ste = WeightSTE(dec, plan) if qat else None

            def inputs_for(local: torch.Tensor) -> torch.Tensor:
                if ste is not None and emb_param is not None and emb_param.requires_grad:
                    return dec.input_for(local, fake_quant_ste(emb_param, plan.embed_bits, plan.embed_axis))
                return dec.input_for(local, emb_param)

            adapter = adapters[seg.index]
            pad = (cfg.pad_width, cfg.pad_height)
            with torch.no_grad():
                before_rgb = _decode(dec, inputs_for, n, m.width, m.height, dev)
                feat = torch.cat([dec.features(inputs_for(torch.arange(s, min(s + 4, n), device=dev)), k)
                                  for s in range(0, n, 4)])
                raw_before = rt.model.forward_from(adapter(inr_to_geometry(feat, rt.geometry, m.width, m.height, *pad)), point)
            fid_before = float(rt.spec.fidelity(raw_before, teacher))
            q_before = _quality(before_rgb, reference)

            dec.train()
            dec.requires_grad_(True)
            adapter.train()
            inr_params = list(dec.parameters()) + ([emb_param] if emb_param is not None else [])
            opt = torch.optim.Adam([{"params": inr_params, "lr": inr_lr, "base": inr_lr},
                                    {"params": list(adapter.parameters()), "lr": adapter_lr, "base": adapter_lr}])
            gen = torch.Generator().manual_seed(seed)
            stopped_by = "epochs"
            epochs_run = 0
            for _epoch in range(epochs):
                order = torch.randperm(n, generator=gen).tolist()
                for s in range(0, n, batch_size):
                    if time_budget is not None and time.monotonic() - t0 >= time_budget:
                        stopped_by = "time"
                        break
                    b = order[s:s + batch_size]
                    for g in opt.param_groups:
                        g["lr"] = g["base"] * 0.5 * (1 + math.cos(math.pi * done / max(1, total_steps)))
                    local = torch.tensor(b, device=dev)
                    if ste is not None:
                        ste.quantize()
                    feat = dec.continue_features(inputs_for(local), -1, k)
                    rgb = dec.head_forward(dec.continue_features(feat, k, dec.num_blocks - 1))
                    loss = recon_weight * F.mse_loss(crop(rgb.float(), m.width, m.height), reference[b])
                    teacher_b = _take(teacher, b)
                    ctx = rt.spec.distill_context(teacher_b) if rt.spec.distill_context else {}
                    act, raw = _adapter_path(rt, adapter, feat, point, video, pad, **ctx)
                    loss = loss + task_weight * rt.spec.distill_loss(raw, teacher_b)
                    loss = loss + feature_weight * feature_loss(act, target[b])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if ste is not None:
                        ste.restore()
                    opt.step()
                    done += 1
                    emit(progress, "tune", done, total_steps, loss=float(loss.detach()))
                if stopped_by == "time":
                    break
                epochs_run += 1
            dec.eval()
            dec.requires_grad_(False)
            if emb_param is not None:
                emb_param.requires_grad_(False)
            q = quantize_inr(dec, emb_param.detach() if emb_param is not None else None, weight_bits, embed_bits,
                             plan=plan)
            emb_deq = dequantize_into(dec, q)
            sections += inr_sections(cfg, q, seg.prefix)

            def deq_inputs(local: torch.Tensor) -> torch.Tensor:
                return dec.input_for(local, emb_deq)

            with torch.no_grad():
                after_rgb = _decode(dec, deq_inputs, n, m.width, m.height, dev)
                feat = torch.cat([inr_to_geometry(dec.features(deq_inputs(torch.arange(s, min(s + 4, n), device=dev)), k),
                                                  rt.geometry, m.width, m.height, *pad) for s in range(0, n, 4)])
            adapter.eval()
            train, val = _split(n)
            distill = TaskDistill(tail=lambda a, **ctx: rt.model.forward_from(a, point, **ctx), teacher=teacher,
                                  loss=rt.spec.distill_loss, weight=1.0, score=rt.spec.fidelity,
                                  context=rt.spec.distill_context)
            refined = fit_adapter(feat, target, init=adapter, train_indices=train, val_indices=val,
                                  epochs=REFINE_EPOCHS, lr=adapter_lr, task=distill, seed=seed, device=dev).adapter
            with torch.no_grad():
                raw_after = rt.model.forward_from(refined.stored(bits)(feat), point)
            adapters[seg.index] = refined
            q_after = _quality(after_rgb, reference)
            qualities.append((q_before, q_after))
            segments.append({"segment": seg.index, "frames": n, "psnr_before": q_before["psnr"],
                             "psnr_after": q_after["psnr"], "fidelity_before": fid_before,
                             "fidelity_after": float(rt.spec.fidelity(raw_after, teacher)),
                             "epochs": epochs_run, "stopped_by": stopped_by})
        names = entry["adapter_sections"]
        size = list(rt.point_size(point))
        for seg_index, ad in adapters.items():
            meta = {"task": task, "inr_layer": k, "injection_point": point, "out_size": size, "segment": seg_index,
                    "kind": ad.kind}
            sections.append(Section(names[seg_index], SectionKind.ADAPTER, ad.pack(meta, bits)))
        others = {t: resolve_task(t) for t, e in routing["tasks"].items()
                  if t != task and isinstance(e, dict) and isinstance(e.get("inr_layer"), int)}

    refits = _refit_others(path, sections, others, routing, dev, seed) if others else {}
    sections += refits.pop("_sections", [])
    frames_total = sum(s["frames"] for s in segments)

    def mean(key: str) -> float:
        return sum(s[key] * s["frames"] for s in segments) / frames_total

    record = {"task": task, "reference": "source" if source else "inr",
              "psnr_before": pool_quality([q[0] for q in qualities])["psnr"],
              "psnr_after": pool_quality([q[1] for q in qualities])["psnr"], "fidelity_before": mean("fidelity_before"),
              "fidelity_after": mean("fidelity_after"), "epochs": epochs, "inr_lr": inr_lr, "adapter_lr": adapter_lr,
              "loss_weights": [recon_weight, task_weight, feature_weight],
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    def merged(latest: NvpReader) -> list[Section]:
        r = read_routing(latest)
        if isinstance(r["tasks"].get(task), dict):
            r["tasks"][task]["fidelity_tuned"] = record["fidelity_after"]
            r["tasks"][task]["tuned"] = record
        for name, fid in refits.items():
            if isinstance(r["tasks"].get(name), dict):
                r["tasks"][name]["refit_after_tune"] = fid
        prov = read_provenance(latest)
        prov["tune"] = [*(prov.get("tune") if isinstance(prov.get("tune"), list) else [])][-15:] + [record]
        return [Section("routing", SectionKind.ROUTING, pack_msgpack(r)),
                Section("provenance", SectionKind.PROVENANCE, pack_msgpack(prov))]

    append_nvp(path, sections, update=merged)
    return {"file": str(path), **record, "segments": segments, "refitted_tasks": refits,
            "seconds": time.monotonic() - t0, "weights": rt.weights_label, "weights_random": rt.random}


def _refit_others(path: str, sections: list[Section], others: dict[str, TaskSpec], routing: dict, dev: torch.device,
                  seed: int) -> dict[str, Any]:
    """Adapters of the other attached tasks, re-fitted (same pair and kind) on the tuned INR.

    The tuned INR is appended to a private copy of the file, so the original only ever gains one
    generation holding everything.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".tune")
    os.close(fd)
    out: dict[str, Any] = {"_sections": []}
    try:
        shutil.copyfile(path, tmp)
        append_nvp(tmp, [s for s in sections if s.kind != SectionKind.ADAPTER])
        with open_nvp(tmp) as video:
            for name, other in others.items():
                e = routing["tasks"][name]
                w = e.get("weights") if e.get("weights") in ("random", "random-tiny") else None
                fids = []
                clip = other.clip is not None
                sample = len((e.get("clip") or {}).get("windows") or []) if clip else len(e.get("sample_frames") or [])
                for seg in video.segments:
                    data = _prepare(video, other, w, sample or None, dev, None, None, segment=seg.index)
                    cand = Candidate(e["inr_layer"], e["injection_point"], float(e.get("cka") or 0.0), 0.0)
                    r = _train(data, cand, str(e.get("adapter_kind") or "linear"), seed=seed)
                    bits = ADAPTER_BITS if not clip and e.get("adapter_bits") == ADAPTER_BITS else None
                    if not clip:
                        r = stored_as(data, cand, r, bits)
                    target = data.targets[cand.injection_point]
                    meta = {"task": name, "inr_layer": cand.inr_layer, "injection_point": cand.injection_point,
                            "out_size": list((target[0] if clip else target).shape[-2:]), "segment": seg.index,
                            "kind": r["adapter"].kind}
                    if clip:
                        meta["pathways"] = e.get("pathways")
                    section = adapter_section_name(name, seg.index, len(video.segments))
                    out["_sections"].append(Section(section, SectionKind.ADAPTER, r["adapter"].pack(meta, bits)))
                    fids.append(r["fidelity"])
                out[name] = sum(fids) / len(fids)
    finally:
        os.unlink(tmp)
    return out
