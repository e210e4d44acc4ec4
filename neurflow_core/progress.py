"""Progress reporting without a dependency: the caller passes a bar factory (tqdm fits)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol

__all__ = ["Bar", "ProgressFactory", "stage"]


class Bar(Protocol):
    def update(self, n: int = 1) -> object: ...

    def close(self) -> object: ...


ProgressFactory = Callable[[str, int], Bar]
"""``progress(stage, total)`` returns a bar with ``update(n)`` and ``close()``."""


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


@contextlib.contextmanager
def stage(progress: ProgressFactory | None, name: str, total: int) -> Iterator[Bar]:
    """A bar for one stage (a silent one when ``progress`` is None), closed on exit."""
    bar = progress(name, total) if progress is not None else _NoBar()
    try:
        yield bar
    finally:
        bar.close()
