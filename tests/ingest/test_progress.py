"""Progress bars (neurflow.ingest.progress): off when quiet and when stderr is not a terminal."""

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


def test_bars_draw_on_a_terminal_and_stay_silent_in_a_log(monkeypatch):
    for tty, expect_output in ((True, True), (False, False)):
        stream = _Stream(tty)
        monkeypatch.setattr(sys, "stderr", stream)
        bar = bar_factory(False)("loading bee", 3)
        bar.update(3)
        bar.close()
        assert ("loading bee" in stream.getvalue()) is expect_output, (tty, stream.getvalue())
