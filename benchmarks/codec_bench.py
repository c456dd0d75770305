"""Codec benchmark: PSNR / MS-SSIM and bpp against encode time, full and per-block partial decode frames/s,
and libx264 / libx265 at the same bpp, all in one run per clip -> RESULTS/codec_<clip>.json.

    python benchmarks/codec_bench.py /work/shared/clips/mdn_flower.mp4 --frames 0:24 --bpps 0.05,0.1 --time-budget 60
    python benchmarks/codec_bench.py --from-bench benchmarks/results/bench_mdn_flower.json   # same numbers, no re-run

With --from-bench the codec view is taken from a `nvcodec bench --json` report of the same clip
(which measured all of it in the same process); the output says so in its "source" field.
"""

from __future__ import annotations

import argparse
import os
import sys

from nvcodec.bench.rate import parse_bpps, parse_codecs
from nvcodec.bench.run import BenchOptions
from nvcodec.bench.summary import codec_view, write_views
from nvcodec.codec.frames import parse_range


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="*", help="video files")
    ap.add_argument("--from-bench", nargs="*", default=[], metavar="JSON", help="bench reports to take the codec view from")
    ap.add_argument("--frames", default="0:24")
    ap.add_argument("--bpps", default="0.05,0.1")
    ap.add_argument("--time-budget", type=float, default=60.0)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--codecs", default="x264,x265")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    a = ap.parse_args(argv)
    return write_views(
        "codec_bench", codec_view, "codec", a.from_bench, a.clips,
        lambda: BenchOptions(tasks=[], frames=parse_range(a.frames), codecs=parse_codecs(a.codecs),
                             bpps=parse_bpps(a.bpps), epochs=a.epochs, time_budget=a.time_budget,
                             device=a.device, threads=a.threads, repeat=a.repeat, decode_speed_all=True),
        a.out)


if __name__ == "__main__":
    sys.exit(main())
