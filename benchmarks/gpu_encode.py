"""`nvcodec.encode` with the PSNR stop off, for benchmarks/gpu.sh: prints the encode summary as JSON.

    python benchmarks/gpu_encode.py SRC OUT.nvp --params 1.5M --epochs 300 --device cuda [--frames 0:4] [--kind K]
"""

from __future__ import annotations

import argparse
import json
import sys

from nvcodec import EncodeOptions, encode
from nvcodec.codec.encode import parse_size
from nvcodec.codec.frames import parse_range
from nvcodec.errors import NvcodecError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--params", required=True)
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--frames")
    ap.add_argument("--kind", help="INR kind (default: EncodeOptions' default)")
    a = ap.parse_args(argv)
    try:
        opts = EncodeOptions(params=parse_size(a.params), epochs=a.epochs, psnr=None, device=a.device,
                             frames=parse_range(a.frames))
        if a.kind:
            opts.kind = a.kind
        summary = encode(a.src, a.out, opts, overwrite=True)
    except NvcodecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
