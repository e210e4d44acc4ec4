"""Progress (neurflow.ingest.progress): off when quiet, bars on a terminal, rate-limited log lines otherwise."""

from __future__ import annotations

import io
import sys

from neurflow.ingest.progress import bar_factory


def test_quiet_gives_no_factory():
    assert bar_factory(True) is None


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_bars_on_a_terminal_and_plain_lines_in_a_log(monkeypatch):
    for tty in (True, False):
        stream = _Stream(tty)
        monkeypatch.setattr(sys, "stderr", stream)
        bar = bar_factory(False)("loading bee", 3)
        bar.update(3)
        bar.close()
        out = stream.getvalue()
        assert "loading bee" in out
        if tty:
            assert "\r" in out  # a bar redraws in place
        else:
            assert out.splitlines() == ["[loading bee] 3/3 (100%), elapsed 0:00:00, ETA 0:00:00 done"]


def test_log_lines_come_at_a_bounded_rate_with_an_eta():
    from neurflow.ingest.progress import LogProgress

    now = [0.0]
    stream = io.StringIO()
    p = LogProgress("integrated gradients block4 -> block3: 64 targets, 812 patches", 100, stream, interval=30.0, clock=lambda: now[0])
    for _ in range(100):  # one unit per second
        now[0] += 1.0
        p.update(1)
    p.close()
    p.close()  # closing twice prints once
    lines = stream.getvalue().splitlines()
    assert len(lines) == 100 // 30 + 1
    assert lines[0] == "[integrated gradients block4 -> block3: 64 targets, 812 patches] 30/100 (30%), elapsed 0:00:30, ETA 0:01:10"
    assert lines[-1].endswith("100/100 (100%), elapsed 0:01:40, ETA 0:00:00 done")
