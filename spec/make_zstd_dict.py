"""Build a raw-content zstd dictionary from the metadata of .nvp files (how `zstd_dict_1.bin` was made).

    python spec/make_zstd_dict.py OUT.bin FILE.nvp [FILE.nvp ...]

The dictionary is the concatenation, file by file in the order given and section by section in index
order, of every msgpack section's payload and every tensor bundle's prefix and header (never tensor
data), identical pieces kept once, cut to its last MAX_BYTES bytes (zstd references recent content most
cheaply, so put the most typical file last). Dictionary 1 is frozen: its bytes and SHA-256 are part of
the format (spec/nvp-format.md, section 4.1); a new dictionary would be a new codec and feature.
"""

from __future__ import annotations

import hashlib
import sys

from nvcodec.container import NvpReader
from nvcodec.container.layout import MSGPACK_KINDS, TENSOR_KINDS, TENSOR_PREFIX

MAX_BYTES = 12 * 1024


def pieces(path: str) -> list[bytes]:
    """Metadata pieces of one file: msgpack payloads, tensor bundle prefixes + headers."""
    out = []
    with NvpReader(path) as r:
        for s in r.sections:
            raw = r.read(s.name)
            if s.kind in MSGPACK_KINDS:
                out.append(raw)
            elif s.kind in TENSOR_KINDS:
                _, head = TENSOR_PREFIX.unpack_from(raw, 0)
                out.append(raw[:TENSOR_PREFIX.size + head])
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    seen, parts = set(), []
    for path in argv[1:]:
        for p in pieces(path):
            if p not in seen:
                seen.add(p)
                parts.append(p)
    data = b"".join(parts)[-MAX_BYTES:]
    with open(argv[0], "wb") as f:
        f.write(data)
    print(f"{argv[0]}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
