"""Hostile-metadata fuzzing: hypothesis-generated metadata in otherwise valid `.nvp` files.

Every metadata section kind (`video`, `model`, `segments`, `routing` and its task entries,
adapter bundles' meta and tensor shapes, `provenance`) is replaced by a generated hostile value
(wrong types, negative and huge numbers, huge lists and strings, bytes, NaN, unknown keys), the
checksums recomputed (`attack.craft`), and the file run in-process through `info --json`, `info`,
`verify`, `view -o out.y4m`, `infer` and (every ATTACH_EVERY-th case) `attach`. A case fails when
a command raises anything but nvcodec's own errors or click's usage errors, or when `info --json`
prints something that is not JSON. The process runs under an address-space limit
(`--memory-mib`), so an allocation beyond it shows up as a failure (MemoryError) too.

    python benchmarks/fuzz.py --seconds 900            # the long run; results/fuzz.json
    pytest tests/test_fuzz.py                           # a short run (seconds)
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

from nvcodec.container import NvpReader, SectionKind, pack_tensors  # noqa: E402
from nvcodec.errors import NvcodecError  # noqa: E402

TASK = "resnet50"
TARGETS = ("video", "model", "segments", "routing", "routing_entry", "adapter_meta", "adapter_tensors", "provenance")
ATTACH_EVERY = 25
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


def _pack(obj: Any) -> bytes | None:
    try:
        return msgpack.packb(obj, use_bin_type=True)
    except (OverflowError, TypeError, ValueError):
        return None


class Campaign:
    """The good file, a work folder, and the running tally of cases and failures."""

    def __init__(self, work: Path, good: attack.Good) -> None:
        self.work = work
        self.good = good
        self.meta = {n: good.meta(n) for n in ("video", "model", "routing", "provenance")}
        self.meta["segments"] = {"segments": [{"start": 0, "stop": self.meta["video"]["frames"], "prefix": ""}]}
        with NvpReader(good.attached) as r:
            bundle = r.read_tensors(f"adapter/{TASK}")
        self.adapter = (bundle.tensors, bundle.meta)
        self.cases = 0
        self.runs: Counter[str] = Counter()
        self.exits: Counter[str] = Counter()
        self.failures: dict[str, dict] = {}
        self.failure_count = 0
        self.by_target: Counter[str] = Counter()

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

    def sections(self, target: str, data: st.DataObject) -> list[attack.Stored] | None:
        """The good file's sections with `target` replaced by a hostile payload (None: unpackable)."""
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
            return None if raw is None else attack.replaced(self.good.sections, attack.zstd(target, kind, raw))
        routing = json.loads(json.dumps(self.meta["routing"]))
        entry = routing["tasks"][TASK]
        if target == "routing":
            routing = self._mutated(routing, data, ["version", "tasks"])
        elif target == "routing_entry":
            routing["tasks"][TASK] = self._mutated(entry, data, list(entry))
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
            new.append(attack.zstd(f"adapter/{TASK}", SectionKind.ADAPTER, bundle))
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

    def run_case(self, target: str, data: st.DataObject) -> None:
        """Build one hostile file and run every command on it."""
        sections = self.sections(target, data)
        if sections is None:
            return
        self.cases += 1
        self.by_target[target] += 1
        case = self.work / "case"
        shutil.rmtree(case, ignore_errors=True)
        case.mkdir()
        path = str(attack.craft(case / "h.nvp", sections))
        self._run(["info", "--json", path], target)
        self._run(["info", path], target)
        self._run(["verify", path], target)
        self._run(["view", path, "-o", str(case / "out.y4m"), "--frames", "0:2", "--device", "cpu"], target)
        self._run(["infer", path, "--task", TASK, "--weights", "random-tiny", "--frames", "0:1", "--device", "cpu",
                   "--json"], target)
        if self.cases % ATTACH_EVERY == 0:
            self._run(["attach", path, "--task", TASK, "--weights", "random-tiny", "--top-k", "1", "--epochs", "1",
                       "--kinds", "linear", "--frames", "2", "--device", "cpu", "--json"], target)

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
        }


def _limit_memory(mib: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (mib << 20, mib << 20))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=900)
    ap.add_argument("--cases", type=int, help="Stop after this many cases.")
    ap.add_argument("--seed", type=int, default=0, help="First hypothesis seed.")
    ap.add_argument("--memory-mib", type=int, default=6144, help="Address-space limit of the fuzzing process.")
    ap.add_argument("--out", default=str(attack.RESULTS / "fuzz.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="nvcodec-fuzz-"))
    try:
        good = attack.build_good(work)
        _limit_memory(args.memory_mib)
        campaign = Campaign(work, good)
        t0 = time.monotonic()
        campaign.run(args.seconds, first_seed=args.seed, max_cases=args.cases)
        report = {
            "what": "hostile metadata of every section kind in checksum-valid files, run in-process through "
                    "info --json, info, verify, view, infer and (every %dth case) attach" % ATTACH_EVERY,
            "good_file": "6 frames 40x24 HNeRV (6k params) with resnet50 attached (random-tiny backbone)",
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs shared with other users' jobs, one fuzzing "
                       f"process, OMP_NUM_THREADS=1, address space limited to {args.memory_mib} MiB",
            "command": "python benchmarks/fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            **campaign.report(time.monotonic() - t0),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("cases", "failures", "distinct_failures", "cases_per_second",
                                             "max_rss_mib")}))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
