"""CLIP's byte-level BPE tokenizer, read from OpenAI's ``bpe_simple_vocab_16e6.txt.gz``.

The vocabulary is built the way OpenAI's ``SimpleTokenizer`` builds it: the 256 byte symbols,
the same with an end-of-word mark ``</w>``, one token per merge rule (in file order), then
``<|startoftext|>`` and ``<|endoftext|>``. The real file gives 48,894 merges and 49,408 tokens.
A merge list may be empty (`base_tokenizer`): every word is then spelled out in byte symbols.

Text is cleaned as OpenAI does (HTML entities unescaped, whitespace collapsed, lower-cased);
``ftfy`` mojibake repair is not applied.
"""

from __future__ import annotations

import gzip
import html
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import regex
import torch
from torch import Tensor

from nvcodec.errors import UsageError, WeightsError

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
MAX_MERGES = 49152 - 256 - 2
"""OpenAI's tokenizer reads at most this many merge rules (the lines after the version header)."""
MAX_VOCAB_BYTES = 8 << 20
"""Largest decompressed vocab file read (the real one is about 1.4 MB)."""
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def clean_text(text: str) -> str:
    """OpenAI's basic and whitespace cleaning (without ftfy), lower-cased."""
    text = html.unescape(html.unescape(text)).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


class ClipTokenizer:
    """Byte-level BPE with CLIP's vocabulary layout; `merges` are (left, right) symbol pairs."""

    def __init__(self, merges: Sequence[tuple[str, str]]) -> None:
        if len(merges) > MAX_MERGES:
            raise WeightsError(f"BPE vocab holds {len(merges)} merges, at most {MAX_MERGES} are read")
        self.byte_encoder = bytes_to_unicode()
        base = list(self.byte_encoder.values())
        vocab = base + [b + "</w>" for b in base] + ["".join(m) for m in merges] + [SOT, EOT]
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        if len(self.encoder) != len(vocab):
            raise WeightsError("BPE vocab makes a token twice (a merge rule repeats, or yields a byte symbol)")
        self.bpe_ranks = {tuple(m): i for i, m in enumerate(merges)}
        self.sot_id, self.eot_id = self.encoder[SOT], self.encoder[EOT]
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        """Number of token ids (49,408 for OpenAI's vocab)."""
        return len(self.encoder)

    def _bpe(self, token: str) -> list[str]:
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if best not in self.bpe_ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no start/end tokens)."""
        ids: list[int] = []
        for piece in _PATTERN.findall(clean_text(text)):
            if piece in (SOT, EOT):
                ids.append(self.encoder[piece])
                continue
            cached = self._cache.get(piece)
            if cached is None:
                symbols = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
                cached = [self.encoder[s] for s in self._bpe(symbols)]
                self._cache[piece] = cached
            ids.extend(cached)
        return ids

    def tokenize(self, texts: Sequence[str], context_length: int = 77) -> Tensor:
        """(N, context_length) int64 ids: start token, text, end token, zero padding.

        Texts longer than the context are cut, keeping the end token last (OpenAI's ``truncate=True``).
        """
        if context_length < 2:
            raise UsageError(f"context length must be at least 2, got {context_length}")
        out = torch.zeros(len(texts), context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot_id] + self.encode(text)[: context_length - 2] + [self.eot_id]
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out


def read_merges(path: Path) -> list[tuple[str, str]]:
    """Merge rules of a ``bpe_simple_vocab_16e6.txt.gz``-style file (gzip, or plain text)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            stream = gzip.GzipFile(fileobj=f) if head == b"\x1f\x8b" else f
            data = stream.read(MAX_VOCAB_BYTES + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise WeightsError(f"{path}: cannot read BPE vocab ({type(exc).__name__}: {exc})") from None
    if len(data) > MAX_VOCAB_BYTES:
        raise WeightsError(f"{path}: BPE vocab is larger than {MAX_VOCAB_BYTES >> 20} MiB")
    try:
        lines = data.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise WeightsError(f"{path}: BPE vocab is not UTF-8 text") from None
    merges: list[tuple[str, str]] = []
    for n, line in enumerate(lines[1 : MAX_MERGES + 1], start=2):
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise WeightsError(f"{path}: line {n} is not a merge rule of two symbols: {line[:60]!r}")
        merges.append((parts[0], parts[1]))
    return merges


def load_tokenizer(path: Path) -> ClipTokenizer:
    """Tokenizer from a vocab file (see `read_merges`)."""
    return ClipTokenizer(read_merges(path))


def base_tokenizer() -> ClipTokenizer:
    """The tokenizer with no merges: 256 byte symbols, 256 end-of-word symbols, start and end (514 ids)."""
    return ClipTokenizer([])
