"""Human-readable renderings of the library's report dicts."""

from __future__ import annotations

from typing import Any

import click

from nvcodec.errors import EXIT_CODES
from nvcodec.jsonout import dumps

EPILOG = "\b\nExit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())
RANDOM_NOTE = "NOTE: random weights (pipeline check only): predictions are meaningless"


def print_json(obj: Any) -> None:
    """Write `obj` as indented standard JSON on stdout (numpy/torch values converted, NaN/inf as null)."""
    click.echo(dumps(obj, indent=2))


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join("  " + line.rstrip() for line in lines)


def _num(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"


def render_info(r: dict) -> str:
    f = r["format"]
    out = [f"{r['file']}: nvp {f['version']}, {f['file_bytes']:,} bytes, generation {f['generation']}"
           + (f", {f['tail_bytes']} bytes of an interrupted append ignored" if f.get("tail_bytes") else "")]
    v = r.get("video")
    if v:
        out.append(f"  video:    {v['width']}x{v['height']}, {v['frames']} frames @ {v['fps']:.3f} fps ({v['duration_s']:.2f} s), "
                   f"source {v.get('source_codec') or '?'} {v.get('pix_fmt') or ''}".rstrip())
        src = (f" (source: {v['source_bpp']:.4f} bpp, {v['source_kbps']:.1f} kbit/s)"
               if v.get("source_kbps") is not None and v.get("source_bpp") is not None else "")
        out.append(f"  rate:     {v['bpp']:.4f} bpp, {v['kbps']:.1f} kbit/s{src}")
    m = r.get("model")
    if m:
        emb = f", embeddings {'x'.join(map(str, m['embedding']))}" if m.get("embedding") else ""
        out.append(f"  model:    {m['kind']}, {m['blocks']} blocks, strides {','.join(map(str, m['strides']))}, "
                   f"channels {','.join(map(str, m['channels']))}, {m['params'] / 1e6:.3f}M params{emb}, "
                   f"{len(m['segments'])} segment(s)")
    q = r.get("quality") or {}
    if q.get("psnr") is not None:
        out.append(f"  quality:  PSNR {_num(q['psnr'], '.2f')} dB pooled, per-frame mean "
                   f"{_num(q.get('psnr_frame_mean'), '.2f')} dB (min {_num(q.get('psnr_min'), '.2f')}), "
                   f"SSIM {_num(q.get('ssim'), '.4f')}")
    e = r.get("encode") or {}
    if e.get("tool_version"):
        out.append(f"  encoded:  nvcodec {e['tool_version']} on {e.get('device')} ({e.get('dtype')}), "
                   f"{_num(e.get('encode_seconds'), '.1f')} s, {e.get('created')}")
    if r.get("tasks"):
        for t in r["tasks"]:
            rnd = " [random weights]" if t.get("weights_random") else ""
            out.append(f"  task:     {t['task']}: INR block {t['inr_layer']} -> {t['injection_point']}, "
                       f"{t.get('adapter_kind') or 'linear'} adapter {t.get('adapter_params')} params "
                       f"(fidelity {_num(t.get('fidelity'), '.3f')}, CKA {_num(t.get('cka'), '.3f')}){rnd}")
    else:
        out.append("  tasks:    none attached")
    rows = [[s["name"], s["kind"], s["codec"], str(s["offset"]), f"{s['bytes']:,}", f"{s['raw_bytes']:,}"] for s in r["sections"]]
    out.append("  sections:")
    out.append(_table(rows, ["name", "kind", "codec", "offset", "bytes", "raw bytes"]))
    return "\n".join(out)


def render_tasks(rows: list[dict]) -> str:
    table = [[t["name"], t["output_type"], t["backbone"], ",".join(t["injection_points"]),
              ", ".join(f"{k} {v}" for k, v in (t.get("options") or {}).items()) or "-", t["description"]] for t in rows]
    return _table(table, ["task", "output", "backbone", "injection points", "defaults", "description"])


def _gflops_cell(c: dict) -> str:
    """Measured GFLOPs of the trained adapters, else the estimate with the least-squares 1x1 adapter (~)."""
    if c.get("gflops") is not None:
        return f"{c['gflops']:.3f}"
    return f"~{c['gflops_estimate']:.3f}" if c.get("gflops_estimate") is not None else ""


def _vs_pixel(r: dict) -> str:
    pixel = r.get("pixel_path_gflops")
    if not pixel:
        return ""
    cap = ""
    if r.get("max_cost"):
        cap = (f", pairs above {r['max_cost']:g}x skipped" if r.get("pairs_within_cost")
               else f", no pair within {r['max_cost']:g}x: cap not applied")
    return f" ({r['gflops'] / pixel:.2f}x the pixel path's {pixel:.2f}{cap})"


def render_attach(r: dict, table: bool = False) -> str:
    out = []
    if r.get("weights_random"):
        out.append(RANDOM_NOTE)
    if table and r.get("candidates"):
        rows = [[str(i + 1), str(c["inr_layer"]), c["injection_point"], f"{c['cka']:.4f}",
                 f"{c['lstsq_fidelity']:.4f}" if c.get("lstsq_fidelity") is not None else "",
                 ",".join(c.get("kinds") or {}),
                 f"{c['fidelity']:.4f}" if c.get("fidelity") is not None else "",
                 _gflops_cell(c)]
                for i, c in enumerate(r["candidates"])]
        out.append(f"pairs (INR block x injection point), ranked by {r.get('search', 'lstsq')}:")
        out.append(_table(rows, ["rank", "inr block", "injection point", "cka", "lstsq fidelity", "trained kinds",
                                 "fidelity", "GFLOPs/frame"]))
    ch = r["chosen"]
    out.append(f"attached {r['task']}: INR block {ch['inr_layer']} -> {ch['injection_point']}, "
               f"{ch.get('adapter_kind', 'linear')} adapter (CKA {ch['cka']:.3f}, held-out fidelity {r['fidelity']:.4f}), "
               f"{r['adapter_params']:,} params = {r['adapter_params_pct']:.3f}% of the backbone, "
               f"{r['gflops']:.3f} GFLOPs/frame{_vs_pixel(r)}, teacher {r.get('teacher', 'inr')}, "
               f"+{r.get('appended_bytes', 0):,} bytes ({r.get('appended_pct', 0.0):.1f}% of the file), {r['seconds']:.1f} s")
    return "\n".join(out)


def _fmt_pred(task: dict, pred: Any) -> str:
    if task["output_type"] == "classification":
        return ", ".join(f"{p['label']} {p['score']:.3f}" for p in pred)
    if task["output_type"] == "caption":
        return " / ".join(repr(p["caption"]) for p in pred)
    if not pred:
        return "(no detections above threshold)"
    return "; ".join(f"{p['label']} {p['score']:.2f} [{', '.join(f'{x:.0f}' for x in p['box'])}]" for p in pred)


def render_infer(r: dict) -> str:
    out = []
    for name, t in r["tasks"].items():
        if t.get("weights_random"):
            out.append(f"{name}: {RANDOM_NOTE}")
        out.append(f"{name}: INR block {t['inr_layer']} -> {t['injection_point']} ({t['output_type']})")
        for fr in t.get("frames", []):
            out.append(f"  frame {fr['frame']}: {_fmt_pred(t, fr['predictions'])}")
        for w in t.get("windows", []):
            out.append(f"  frames {w['window'][0]}-{w['window'][1] - 1}: {_fmt_pred(t, w['predictions'])}")
        unit = t.get("unit", "frame")
        tm = t["timing_ms"]
        out.append(f"  timing ms/{unit}: " + ", ".join(f"{k} {v:.2f}" for k, v in tm.items()))
        g = t["gflops"]
        out.append(f"  GFLOPs/{unit}: " + ", ".join(f"{k} {v:.3f}" for k, v in g.items()))
        if t.get("pixel_timing_ms"):
            out.append(f"  pixel path ms/{unit}: " + ", ".join(f"{k} {v:.2f}" for k, v in t["pixel_timing_ms"].items()))
        for key, what in (("agreement", "vs pixel path"), ("agreement_source", "vs original frames"),
                          ("pixel_agreement_source", "pixel path vs original frames")):
            if t.get(key):
                out.append(f"  {what}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                     for k, v in t[key].items()))
    sh = r.get("sharing")
    if sh:
        out.append(f"shared INR prefix: {sh['shared_decode_ms']:.2f} ms vs {sh['separate_decode_ms']:.2f} ms separately "
                   f"({sh['shared_gflops']:.3f} vs {sh['separate_gflops']:.3f} GFLOPs/frame)")
    return "\n".join(out)
