"""Progress for long steps: tqdm bars on a terminal, plain log lines elsewhere.

On a terminal a bar redraws in place. When stderr is not a terminal (``neurflow ingest ... >
log 2>&1``, CI, a cluster job) every redraw would end up in the log, so a stage prints one
plain line at most every ``interval`` seconds and one when it closes: stage, done/total,
percent, elapsed and ETA. ``--quiet`` silences both.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from tqdm.auto import tqdm

__all__ = ["bar_factory", "LogProgress"]

#: Seconds between two log lines of one stage when stderr is not a terminal.
LOG_INTERVAL = 30.0


class LogProgress:
    """A ``update(n)`` / ``close()`` progress that writes plain lines at a bounded rate.

    Args:
        stage: what is running (e.g. "integrated gradients block4 -> block3: 64 targets, 812 patches").
        total: units of work.
        stream: where lines go (stderr by default).
        interval: the fewest seconds between two lines (the closing line always prints).
        clock: monotonic seconds (tests pass a fake).
    """

    def __init__(self, stage: str, total: int, stream: TextIO | None = None, interval: float = LOG_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stage, self.total, self.done = stage, max(int(total), 0), 0
        self.stream = stream if stream is not None else sys.stderr
        self.interval, self.clock = interval, clock
        self.start = self.last = clock()
        self.closed = False

    def _line(self, now: float) -> str:
        elapsed = now - self.start
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = elapsed * (self.total - self.done) / self.done if 0 < self.done < self.total else 0.0
        return f"[{self.stage}] {self.done}/{self.total} ({pct:.0f}%), elapsed {_hms(elapsed)}, ETA {_hms(eta)}"

    def update(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            print(self._line(now), file=self.stream, flush=True)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            print(self._line(self.clock()) + " done", file=self.stream, flush=True)


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def bar_factory(quiet: bool, interval: float = LOG_INTERVAL):
    """A ``progress(stage, total)`` factory for the pipeline and the core, or None when quiet:
    tqdm bars on a terminal, :class:`LogProgress` lines otherwise."""
    if quiet:
        return None

    def make(stage: str, total: int):
        if sys.stderr.isatty():
            return tqdm(total=total, desc=stage, unit="", leave=False, file=sys.stderr, dynamic_ncols=True)
        return LogProgress(stage, total, sys.stderr, interval)

    return make
