"""glibc allocator tuning (neurflow.allocator), applied by the CLI before model work."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_tuning_applies_once_and_keeps_big_buffers_in_the_heap():
    code = """
import ctypes, resource, torch
from neurflow.allocator import tune_cpu_allocator
def faults():
    for _ in range(10):
        x = torch.empty(64 * 2**20, dtype=torch.uint8); x.fill_(1); del x  # 64 MiB: above glibc's largest dynamic mmap threshold (32 MiB)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.empty(1)
a0 = faults(); a1 = faults()
print(tune_cpu_allocator(), tune_cpu_allocator())
faults(); b0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt; b1 = faults()
print(a1 - a0, b1 - b0)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout.split("\n")
    assert out[0] == "True True"
    before, after = (int(v) for v in out[1].split())
    print(f"minor page faults for 10 x 64 MiB buffers: {before} before tuning, {after} after")
    assert before > 10 * 10000  # every buffer mmapped and faulted in afresh (16384 pages each)
    assert after < before / 10  # reused from the heap


def test_off_glibc_nothing_happens(monkeypatch):
    import neurflow.allocator as allocator

    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.tune_cpu_allocator() is False


def test_cli_tunes_only_model_commands():
    from neurflow.ingest.cli import _COMMANDS, MODEL_COMMANDS

    assert MODEL_COMMANDS <= set(_COMMANDS)
    assert {"query", "load", "db", "link"}.isdisjoint(MODEL_COMMANDS)
