"""A one-line progress bar on stderr (redrawn in place on a terminal, a line per 10 % otherwise)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, label: str, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self.first = 0
        self._last_tenth = -1

    def start(self, done: int) -> None:
        self.first = done
        self.started = time.monotonic()
        self.update(done)

    def rate(self, done: int) -> float:
        elapsed = time.monotonic() - self.started
        return (done - self.first) / elapsed if elapsed > 0 else 0.0

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        rate = self.rate(done)
        eta = (self.total - done) / rate if rate > 0 else 0.0
        width = 30
        filled = int(width * done / self.total) if self.total else width
        line = (
            f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
            f"{rate:,.0f} images/s, {eta:,.0f} s left"
        )
        if self.tty:
            self.stream.write("\r" + line)
            self.stream.flush()
            return
        tenth = 10 * done // max(1, self.total)
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
