"""Terminal progress bars for library progress events; silent when stderr is not a TTY."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from nvcodec.progress import ProgressEvent


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "--:--"
    m, s = divmod(int(seconds + 0.5), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressBar:
    """Renders `ProgressEvent`s as a one-line bar on a terminal; does nothing otherwise."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None, width: int = 28) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.width = width
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._shown = False

    def __call__(self, event: ProgressEvent) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        final = event.total is not None and event.step >= event.total
        if not final and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        self._draw(event, now)

    def _draw(self, event: ProgressEvent, now: float) -> None:
        info = event.info
        label = event.stage
        if "segments" in info and info["segments"] > 1:
            label += f" seg {info.get('segment', 0) + 1}/{info['segments']}"
        if event.total:
            frac = min(1.0, event.step / event.total)
            filled = int(frac * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            count = f"{event.step}/{event.total}"
        else:
            bar, count = "", f"{event.step}"
        parts = [f"{label:<12}", f"[{bar}]" if bar else "", count]
        for key, fmt in (("psnr", "{:.2f} dB"), ("loss", "loss {:.4g}"), ("val_loss", "val {:.4g}"), ("done", "done {}"),
                         ("failed", "failed {}"), ("running", "running {}")):
            if info.get(key) is not None:
                parts.append(fmt.format(info[key]))
        eta = info.get("eta")
        parts.append(f"elapsed {_fmt_eta(now - self._start)}")
        if eta is not None:
            parts.append(f"eta {_fmt_eta(eta)}")
        line = " ".join(p for p in parts if p)
        self.stream.write("\r\x1b[2K" + line[:160])
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        """End the bar's line so later output starts clean."""
        if self.enabled and self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
