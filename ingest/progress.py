"""Progress bars for long steps (tqdm), silenced by ``--quiet`` and when stderr is not a
terminal (a log file or CI would otherwise collect every redraw)."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

__all__ = ["bar_factory"]


def bar_factory(quiet: bool):
    """A ``progress(stage, total)`` factory for the pipeline and the core, or None when quiet."""
    if quiet:
        return None

    def make(stage: str, total: int) -> tqdm:
        # disable=None: tqdm turns itself off when the stream is not a TTY
        return tqdm(total=total, desc=stage, unit="", leave=False, file=sys.stderr, dynamic_ncols=True, disable=None)

    return make
