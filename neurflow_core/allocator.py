"""Allocator tuning for CPU runs (glibc on Linux).

glibc serves every allocation above its mmap threshold (dynamic, at most 32 MiB) with a
fresh ``mmap`` and gives it back with ``munmap`` when freed, so each batch of a CNN
forward pass on the CPU page-faults its activation buffers in again (millions of minor
faults and a large share of the CPU time in the kernel; figures in the README). Raising the
mmap and trim thresholds keeps those buffers in the heap.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["tune_cpu_allocator"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_applied = False


def tune_cpu_allocator(threshold_bytes: int = 1 << 30) -> bool:
    """Keep large tensor buffers in the glibc heap instead of mmap/munmap per allocation.

    Process-wide and irreversible; memory freed by the process is kept for reuse (the
    resident set stays near its peak, and the peak can grow by fragmentation). Call once,
    early, from an entry point (the CLI), not from library code.

    Returns:
        Whether the setting was applied (False off glibc/Linux).
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl or no libc.so.6
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    value = min(int(threshold_bytes), 2**31 - 1)
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, value)) and bool(mallopt(_M_TRIM_THRESHOLD, value))
    return _applied
