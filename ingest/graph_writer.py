"""Moved to :mod:`neurflow.ingest.graph.writer`; this alias lives only while importers switch over."""

import sys

from .graph import writer as _new

sys.modules[__name__] = _new
