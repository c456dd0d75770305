"""Hostile-metadata fuzzing: hypothesis-generated metadata in otherwise valid `.nvp` files.

Every metadata section kind (`video`, `model`, `segments`, `routing` and its task entries,
adapter bundles' meta and tensor shapes, `provenance`, and the entries, model parameters and words
of an entropy-coded tensor) is replaced by a generated hostile value
(wrong types, negative and huge numbers, huge lists and strings, bytes, NaN, unknown keys), stored with
plain zstd or with the built-in dictionary (codec ZSTD_DICT, drawn per case), the
checksums recomputed (`attack.craft`), and the file run in-process through `info --json`, `info`,
`verify`, `view -o out.y4m`, `infer` and (every ATTACH_EVERY-th case) `attach`. A case fails when
a command raises anything but nvcodec's own errors or click's usage errors, or when `info --json`
prints something that is not JSON.

Allocations are checked per case: before each case the process's peak-RSS mark is reset
(`/proc/self/clear_refs`), after it the rise of the peak above the RSS before the case is that
case's allocation. The good file itself, run through the same commands, sets the reference; a case
whose rise exceeds ALLOC_CAP_FACTOR times it plus ALLOC_SLACK_MIB counts as a failure ("allocation
over the cap"), and so does a MemoryError under the address-space limit (`--memory-mib`).

    python benchmarks/fuzz.py --cases 100000 --workers 2   # the long run; results/fuzz.json
    pytest tests/test_fuzz.py                               # a short run (seconds)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
import attack  # noqa: E402

from nvcodec.container import Codec, NvpReader, SectionKind, pack_tensors  # noqa: E402
from nvcodec.errors import NvcodecError  # noqa: E402

TASK = "resnet50"
"""The default task attached to the good file; `--task slowfast_r50` or `i3d_r50` fuzzes clip tasks' routing
fields (pathways, windows) and per-pathway adapter bundles."""
TARGETS = ("video", "model", "segments", "routing", "routing_entry", "adapter_meta", "adapter_tensors", "provenance",
           "coded_tensors")
ATTACH_EVERY = 25
ALLOC_CAP_FACTOR = 4
ALLOC_SLACK_MIB = 64
WORKER_SEED_STRIDE = 1_000_000
EDGE_INTS = (0, -1, 1, 2, 3, 7, 255, 256, 16384, 16385, 65536, 2**31, 2**32, 2**62, 2**63 - 1, -2**63, 2**64 - 1, 10**9)

scalars = st.one_of(
    st.none(), st.booleans(), st.sampled_from(EDGE_INTS), st.integers(-2**63, 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.binary(max_size=16),
    st.sampled_from(["x" * 300, "y" * 5000, "\x00", "../../etc/passwd", "linear", "bottleneck", "layer2", "stem"]),
)
big_lists = st.builds(lambda n, v: [v] * n, st.sampled_from([0, 1, 2, 3, 100, 5000, 70000]),
                      st.one_of(st.sampled_from(EDGE_INTS), st.text(max_size=3), st.none()))
values = st.one_of(big_lists, st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)),
    max_leaves=16))


MAX_PACKED_VALUES = 1 << 20
"""Generated payloads of more values are skipped: the reader refuses sections far smaller, and packing
hundreds of millions of repeated values only spends the fuzzer's time and memory."""


def _weight(obj: Any, memo: dict[int, int]) -> int:
    """Values in `obj`, counting repeats of one object each time (memoised by identity)."""
    if isinstance(obj, (list, dict)):
        known = memo.get(id(obj))
        if known is None:
            items = obj.values() if isinstance(obj, dict) else obj
            known = memo[id(obj)] = 1 + len(obj) + sum(_weight(v, memo) for v in items
                                                         if isinstance(v, (list, dict)))
        return known
    return 1


def _pack(obj: Any) -> bytes | None:
    if _weight(obj, {}) > MAX_PACKED_VALUES:
        return None
    try:
        return msgpack.packb(obj, use_bin_type=True)
    except (OverflowError, TypeError, ValueError):
        return None


class Campaign:
    """The good file, a work folder, and the running tally of cases and failures."""

    def __init__(self, work: Path, good: attack.Good, task: str = TASK) -> None:
        self.work = work
        self.good = good
        self.task = task
        self.meta = {n: good.meta(n) for n in ("video", "model", "routing", "provenance")}
        self.meta["segments"] = {"segments": [{"start": 0, "stop": self.meta["video"]["frames"], "prefix": ""}]}
        with NvpReader(good.attached) as r:
            bundle = r.read_tensors(f"adapter/{self.task}")
        self.adapter = (bundle.tensors, bundle.meta)
        self.coded = attack.coded_section(good)
        self.cases = 0
        self.runs: Counter[str] = Counter()
        self.exits: Counter[str] = Counter()
        self.failures: dict[str, dict] = {}
        self.failure_count = 0
        self.by_target: Counter[str] = Counter()
        self.reference_mib: dict[bool, float] = {}
        self.max_rise: dict[str, Any] = {"mib": 0.0, "target": None, "attach": False}
        self.over_cap = 0

    # ------------------------------------------------------------ generating
    def _mutated(self, base: Any, data: st.DataObject, keys: list[str]) -> Any:
        if not isinstance(base, dict) or data.draw(st.integers(0, 9)) == 0:
            return data.draw(values)
        out = dict(base)
        for key in data.draw(st.lists(st.sampled_from(keys), max_size=3)):
            out.pop(key, None)
        for key, value in data.draw(st.lists(st.tuples(st.one_of(st.sampled_from(keys), st.text(max_size=8)), values),
                                             min_size=1, max_size=4)):
            out[key] = value
        return out

    @staticmethod
    def _codec(data: st.DataObject) -> int:
        """How a hostile section is stored: plain zstd or zstd with the built-in dictionary."""
        return data.draw(st.sampled_from([Codec.ZSTD, Codec.ZSTD_DICT]))

    def coded_sections(self, data: st.DataObject) -> list[attack.Stored] | None:
        """The good file with one entropy-coded tensor's header fields, model parameters or words made hostile."""
        name, kind, payload = self.coded
        header, region = attack.split_bundle(payload)
        entry = data.draw(st.sampled_from([e for e in header["tensors"] if "coding" in e]))
        how = data.draw(st.sampled_from(["coding", "params", "entry", "words"]))
        if how == "coding":
            entry["coding"] = self._mutated(entry["coding"], data, ["model", "axis", "loc", "scale"])
        elif how == "params":
            key = data.draw(st.sampled_from(["loc", "scale"]))
            count = len(entry["coding"][key]) // 4 + data.draw(st.sampled_from([0, 0, 0, -1, 1, 1000]))
            fill = data.draw(st.sampled_from([0.0, 0.125, 1.0, 63.0, 255.0, 65535.0, 1e-30, 1e30, -1.0,
                                              float("nan"), float("inf")]))
            entry["coding"][key] = np.full(max(count, 0), fill, "<f4").tobytes()
            entry["coding"]["model"] = data.draw(st.sampled_from([entry["coding"]["model"], 1, 2, 0, 3]))
        elif how == "entry":
            changed = self._mutated({k: entry[k] for k in ("shape", "length", "offset", "dtype")}, data,
                                    ["shape", "length", "offset", "dtype"])
            if isinstance(changed, dict):
                entry.update(changed)
            else:
                entry["shape"] = changed
            if isinstance(entry.get("quant"), dict) and data.draw(st.booleans()):
                entry["quant"]["bits"] = data.draw(st.sampled_from(EDGE_INTS))
        else:
            start, end = entry["offset"], entry["offset"] + entry["length"]
            words = bytearray(region[start:end])
            for i in data.draw(st.lists(st.integers(0, max(len(words) - 1, 0)), max_size=6)):
                if i < len(words):
                    words[i] ^= data.draw(st.integers(1, 255))
            cut = data.draw(st.sampled_from([0, 0, 4, 8, len(words)]))
            words = words[:len(words) - cut] + bytes(cut) if data.draw(st.booleans()) else words
            region = region[:start] + bytes(words) + region[end:]
        raw = _pack(header)
        if raw is None:
            return None
        return attack.replaced(self.good.sections, attack.zstd(name, kind, attack.join_bundle(header, region),
                                                               self._codec(data)))

    def sections(self, target: str, data: st.DataObject) -> list[attack.Stored] | None:
        """The good file's sections with `target` replaced by a hostile payload (None: unpackable)."""
        if target == "coded_tensors":
            return self.coded_sections(data)
        if target in ("video", "model", "segments", "provenance"):
            base = self.meta[target]
            keys = list(base) + ["width", "frames", "strides", "segments", "settings", "source_frames"]
            if target == "segments" and data.draw(st.booleans()):
                item = self._mutated(base["segments"][0], data, ["start", "stop", "prefix"])
                payload = {"segments": data.draw(st.sampled_from([[item], [item, item], [item] * 3000]))}
            else:
                payload = self._mutated(base, data, keys)
            kind = {"video": SectionKind.VIDEO, "model": SectionKind.MODEL, "segments": SectionKind.SEGMENTS,
                    "provenance": SectionKind.PROVENANCE}[target]
            raw = _pack(payload)
            return None if raw is None else attack.replaced(self.good.sections,
                                                            attack.zstd(target, kind, raw, self._codec(data)))
        routing = json.loads(json.dumps(self.meta["routing"]))
        entry = routing["tasks"][self.task]
        if target == "routing":
            routing = self._mutated(routing, data, ["version", "tasks"])
        elif target == "routing_entry":
            routing["tasks"][self.task] = self._mutated(entry, data, list(entry))
        new = []
        if target in ("adapter_meta", "adapter_tensors"):
            tensors, meta = self.adapter
            if target == "adapter_meta":
                meta = self._mutated(meta, data, list(meta) + ["kind"])
                if _pack(meta) is None:
                    return None
            else:
                tensors = dict(tensors)
                name = data.draw(st.sampled_from(sorted(tensors) + ["fc1.weight", "extra"]))
                shape = data.draw(st.lists(st.sampled_from([0, 1, 2, 3, 8, 64, 1000]), min_size=0, max_size=5))
                if math.prod(shape) > 1 << 20:
                    shape = shape[:2]
                tensors[name] = np.zeros(shape, dtype=data.draw(st.sampled_from([np.float16, np.float32, np.uint8])))
                for key, value in data.draw(st.lists(st.tuples(st.sampled_from(
                        ["in_channels", "out_channels", "hidden", "adapter_kind", "out_size"]), values), max_size=2)):
                    entry[key] = value
            try:
                bundle = pack_tensors(tensors, meta=meta if isinstance(meta, dict) else {"bad": 1})
            except NvcodecError:
                return None
            new.append(attack.zstd(f"adapter/{self.task}", SectionKind.ADAPTER, bundle))
        raw = _pack(routing)
        if raw is None:
            return None
        new.append(attack.zstd("routing", SectionKind.ROUTING, raw))
        return attack.replaced(self.good.sections, *new)

    # ------------------------------------------------------------ running
    def _run(self, argv: list[str], target: str) -> None:
        from nvcodec_cli.main import app
        import click

        command = argv[0] + (" --json" if "--json" in argv else "")
        self.runs[command] += 1
        out = io.StringIO()
        code, problem = 0, None
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
                app.main(args=argv, prog_name="nvcodec", standalone_mode=False)
            if command == "info --json":
                json.loads(out.getvalue())
        except NvcodecError as exc:
            code = exc.exit_code
        except click.ClickException as exc:
            code = exc.exit_code
        except Exception as exc:  # the finding: anything else
            problem = f"{type(exc).__name__}: {exc}"
        self.exits[f"{command}: {code if problem is None else 'failure'}"] += 1
        if problem is not None:
            self.failure_count += 1
            key = f"{command} [{target}] " + re.sub(r"\d+", "N", problem)[:160]
            if key not in self.failures:
                self.failures[key] = {"command": command, "target": target, "error": problem[:300], "count": 0}
            self.failures[key]["count"] += 1

    def _commands(self, path: str, case: Path, target: str, attach: bool) -> None:
        self._run(["info", "--json", path], target)
        self._run(["info", path], target)
        self._run(["verify", path], target)
        self._run(["view", path, "-o", str(case / "out.y4m"), "--frames", "0:2", "--device", "cpu"], target)
        self._run(["infer", path, "--task", self.task, "--weights", "random-tiny", "--frames", "0:1", "--device", "cpu",
                   "--json"], target)
        if attach:
            self._run(["attach", path, "--task", self.task, "--weights", "random-tiny", "--top-k", "1", "--epochs", "1",
                       "--kinds", "linear", "--frames", "2", "--device", "cpu", "--json"], target)

    def calibrate(self, repeats: int = 3) -> None:
        """The good file's own allocation through the same commands (with and without attach): the reference.
        Every command must pass on it (exit 0), or the cases would test a file refused before their change."""
        case = self.work / "good"
        for attach_too in (False, True):
            rises = []
            for i in range(repeats + 1):  # the first run warms up (imports, allocator pools): not counted
                shutil.rmtree(case, ignore_errors=True)
                case.mkdir()
                path = str(attack.craft(case / "h.nvp", self.good.sections))
                base = _peak_reset()
                self._commands(path, case, "good", attach_too)
                if i:
                    rises.append(_peak_mib() - base)
            self.reference_mib[attach_too] = max(rises)
        refused = sorted(k for k in self.exits if not k.endswith(": 0"))
        if refused or self.failures:
            raise RuntimeError(f"the good file, crafted as the cases are, does not pass every command: {refused}; "
                               f"{list(self.failures)}")
        self.runs.clear()
        self.exits.clear()

    def cap_mib(self, attach_too: bool) -> float:
        """The most one case may raise the peak RSS."""
        return ALLOC_CAP_FACTOR * self.reference_mib.get(attach_too, 0.0) + ALLOC_SLACK_MIB

    def run_case(self, target: str, data: st.DataObject) -> None:
        """Build one hostile file, run every command on it and check its allocation against the cap."""
        sections = self.sections(target, data)
        if sections is None:
            return
        self.cases += 1
        self.by_target[target] += 1
        case = self.work / "case"
        shutil.rmtree(case, ignore_errors=True)
        case.mkdir()
        path = str(attack.craft(case / "h.nvp", sections))
        attach_too = self.cases % ATTACH_EVERY == 0
        base = _peak_reset()
        self._commands(path, case, target, attach_too)
        rise = _peak_mib() - base
        if rise > self.max_rise["mib"]:
            self.max_rise = {"mib": round(rise, 1), "target": target, "attach": attach_too}
        if rise > self.cap_mib(attach_too):
            self.over_cap += 1
            self.failure_count += 1
            key = f"allocation over the cap [{target}]"
            self.failures.setdefault(key, {"command": "all", "target": target, "error": key, "count": 0})
            self.failures[key]["count"] += 1
            self.failures[key]["error"] = f"{key}: peak RSS rose {rise:.0f} MiB (cap {self.cap_mib(attach_too):.0f})"

    def run(self, seconds: float, chunk: int = 25, first_seed: int = 0, max_cases: int | None = None) -> None:
        """Hypothesis chunks of `chunk` examples (seeds first_seed, +1, ...; the targets in turn) until time
        or cases run out.

        Time and count are checked between chunks (hypothesis needs each chunk's generation to be
        independent of outside state).
        """
        end = time.monotonic() + seconds

        s = first_seed
        while time.monotonic() < end and (max_cases is None or self.cases < max_cases):
            n = chunk if max_cases is None else max(1, min(chunk, max_cases - self.cases))
            target = TARGETS[s % len(TARGETS)]

            def one(data: st.DataObject) -> None:
                self.run_case(target, data)

            test = settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate],
                            suppress_health_check=list(HealthCheck))(given(data=st.data())(one))
            seed(s)(test)()
            s += 1

    def report(self, seconds: float) -> dict[str, Any]:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {
            "cases": self.cases, "cases_by_target": dict(self.by_target), "command_runs": dict(self.runs),
            "exit_codes": dict(sorted(self.exits.items())), "failures": self.failure_count,
            "distinct_failures": len(self.failures), "failure_kinds": list(self.failures.values()),
            "seconds": round(seconds, 1), "cases_per_second": round(self.cases / seconds, 3) if seconds else None,
            "max_rss_mib": round(peak_kib / 1024, 1),
            "allocation": {
                "good_file_rise_mib": {"without attach": round(self.reference_mib.get(False, 0.0), 1),
                                       "with attach": round(self.reference_mib.get(True, 0.0), 1)},
                "cap_mib": {"without attach": round(self.cap_mib(False), 1), "with attach": round(self.cap_mib(True), 1)},
                "max_case_rise": self.max_rise,
                "cases_over_cap": self.over_cap,
            },
        }


def _status_kib(field: str) -> int:
    m = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(m.group(1)) if m else 0


def _peak_reset() -> float:
    """Reset this process's peak-RSS mark to its current RSS; that RSS in MiB."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS") / 1024


def _peak_mib() -> float:
    """Peak RSS since the last `_peak_reset`, in MiB."""
    return _status_kib("VmHWM") / 1024


def _limit_memory(mib: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (mib << 20, mib << 20))


def _commit() -> str:
    """The checked-out commit (and whether the tree differs from it)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=attack.ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=attack.ROOT,
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"commit {head}" + (" with uncommitted changes" if dirty else "")


def _one_worker(args: argparse.Namespace, seed_: int, cases: int | None, out: str) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="nvcodec-fuzz-"))
    try:
        good = attack.build_good(work, args.task)
        _limit_memory(args.memory_mib)
        campaign = Campaign(work, good, args.task)
        campaign.calibrate()
        t0 = time.monotonic()
        campaign.run(args.seconds, first_seed=seed_, max_cases=cases)
        report = campaign.report(time.monotonic() - t0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["seeds"] = [seed_, seed_ + WORKER_SEED_STRIDE - 1]
    Path(out).write_text(json.dumps(report, indent=2) + "\n")
    return report


def merge(reports: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """One report from the workers' (counts summed, failures joined, peaks the largest)."""
    def total(key: str) -> dict:
        out: Counter = Counter()
        for r in reports:
            out.update(r[key])
        return dict(sorted(out.items()))

    kinds: dict[str, dict] = {}
    for r in reports:
        for f in r["failure_kinds"]:
            k = f"{f['command']} {f['target']} {f['error'][:120]}"
            kinds.setdefault(k, {**f, "count": 0})["count"] += f["count"]
    cases = sum(r["cases"] for r in reports)
    allocs = [r["allocation"] for r in reports]
    worst = max(allocs, key=lambda a: a["max_case_rise"]["mib"])
    return {
        "cases": cases, "cases_by_target": total("cases_by_target"), "command_runs": total("command_runs"),
        "exit_codes": total("exit_codes"), "failures": sum(r["failures"] for r in reports),
        "distinct_failures": len(kinds), "failure_kinds": list(kinds.values()), "seconds": round(seconds, 1),
        "cases_per_second": round(cases / seconds, 3) if seconds else None,
        "max_rss_mib": max(r["max_rss_mib"] for r in reports),
        "allocation": {
            "good_file_rise_mib": {k: max(a["good_file_rise_mib"][k] for a in allocs) for k in allocs[0]["good_file_rise_mib"]},
            "cap_mib": {k: min(a["cap_mib"][k] for a in allocs) for k in allocs[0]["cap_mib"]},
            "max_case_rise": worst["max_case_rise"],
            "cases_over_cap": sum(a["cases_over_cap"] for a in allocs),
        },
        "workers": [{k: r[k] for k in ("seeds", "cases", "failures", "seconds", "cases_per_second")} for r in reports],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=900, help="Stop after this long (per worker).")
    ap.add_argument("--cases", type=int, help="Stop after this many cases (all workers together).")
    ap.add_argument("--seed", type=int, default=0, help="First hypothesis seed (worker i starts at seed + i x %d)."
                    % WORKER_SEED_STRIDE)
    ap.add_argument("--workers", type=int, default=1, help="Fuzzing processes, one core each.")
    ap.add_argument("--task", default=TASK, help="Task attached to the good file (default %(default)s).")
    ap.add_argument("--memory-mib", type=int, default=6144, help="Address-space limit of each fuzzing process.")
    ap.add_argument("--out", default=str(attack.RESULTS / "fuzz.json"))
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"
    n = max(1, args.workers)
    share = None if args.cases is None else -(-args.cases // n)
    if args.worker is not None:
        _one_worker(args, args.seed + args.worker * WORKER_SEED_STRIDE, share, args.out)
        return 0
    from nvcodec.bench.machine import cpu_model  # imports torch: after OMP_NUM_THREADS is set

    load_before = os.getloadavg()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nvcodec-fuzz-out-") as tmp:
        outs = [str(Path(tmp) / f"worker{i}.json") for i in range(n)]
        base = [sys.executable, str(Path(__file__).resolve()), "--seconds", str(args.seconds), "--seed",
                str(args.seed), "--workers", str(n), "--memory-mib", str(args.memory_mib), "--task", args.task]
        if args.cases is not None:
            base += ["--cases", str(args.cases)]
        procs = [subprocess.Popen(base + ["--worker", str(i), "--out", outs[i]]) for i in range(n)]
        codes = [p.wait() for p in procs]
        if any(codes):
            print(f"fuzz: a worker exited with {codes}", file=sys.stderr)
            return 2
        reports = [json.loads(Path(o).read_text()) for o in outs]
    seconds = time.monotonic() - t0
    report = {
        "what": "hostile metadata of every section kind in checksum-valid files, run in-process through "
                "info --json, info, verify, view, infer and (every %dth case) attach; per-case peak-RSS rise "
                "checked against %dx the good file's + %d MiB" % (ATTACH_EVERY, ALLOC_CAP_FACTOR, ALLOC_SLACK_MIB),
        "good_file": "12 frames 40x24 hinerv (the default kind, 6k params, its fine base grid and mid grid) "
                     f"with {args.task} "
                     "attached (random-tiny backbone)",
        "machine": f"{platform.machine()} {cpu_model() or ''}, {os.cpu_count()} CPUs, {n} fuzzing process(es) of "
                   f"OMP_NUM_THREADS=1, address space limited to {args.memory_mib} MiB each; load average "
                   f"{load_before[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end",
        "command": "python benchmarks/fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "code": _commit(),
        **merge(reports, seconds),
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("cases", "failures", "distinct_failures", "cases_per_second",
                                             "max_rss_mib")} | {"allocation": report["allocation"]}))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
