"""Shared fixtures of the core tests: tiny float64 networks on the CPU, seeded."""

from __future__ import annotations

import pytest
import torch

from .nets import build_tiny


@pytest.fixture(scope="package", autouse=True)
def _one_intra_op_thread():
    """Run the core tests on one intra-op thread, restoring the setting afterwards.

    The tensors here are tiny, so threads buy nothing, and on a busy 2-core machine two
    OpenMP threads stall badly (test_segments.py took ~24 s with 2 threads under
    load and ~4 s with 1). Results compared in these tests are always computed in the same
    process and setting.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="package")
def tiny_circuit():
    """One build shared by the build, clustering and artifact tests (do not mutate)."""
    return build_tiny()

