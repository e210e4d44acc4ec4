"""Moved to :mod:`neurflow.ingest.graph.atlas`; this alias lives only while importers switch over."""

import sys

from .graph import atlas as _new

sys.modules[__name__] = _new
