"""Progress lines for a task log at a readable pace: how far, how fast, how long to go.

A long task says where it is without flooding its log: at most one line every
``MOESIF_SEGMENT_PROGRESS_SECONDS`` (5 by default), plus the last one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class Progress:
    """Counts ``done`` units of ``total`` (when known) and logs a line when one is due."""

    def __init__(self, log: logging.Logger, what: str, unit: str, *, every: float,
                 total: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._log, self._what, self._unit, self._every = log, what, unit, every
        self.total = total
        self._clock = clock
        self._started = clock()
        self._last_line = self._started
        self.done = 0

    def advance(self, by: int, detail: str = "") -> None:
        """Count ``by`` more units; log a line if the last was at least ``every`` ago."""
        self.done += by
        now = self._clock()
        if now - self._last_line >= self._every:
            self._last_line = now
            self._log.info("%s", self.line(now, detail))

    def finish(self, detail: str = "") -> None:
        """The last line: what was done, in how long, at what rate."""
        self._log.info("%s", self.line(self._clock(), detail, final=True))

    def line(self, now: float, detail: str = "", *, final: bool = False) -> str:
        elapsed = max(now - self._started, 1e-9)
        rate = self.done / elapsed
        of = f" of {self.total:,}" if self.total is not None else ""
        text = f"{self._what}: {self.done:,}{of} {self._unit}"
        if detail:
            text += f", {detail}"
        text += f", {rate:,.0f} {self._unit}/s"
        if final:
            return f"{text}, done in {elapsed:,.1f} s"
        if self.total and rate > 0 and self.done < self.total:
            text += f", about {(self.total - self.done) / rate:,.0f} s to go"
        return text
