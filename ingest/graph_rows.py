"""Moved to :mod:`neurflow.ingest.graph.rows`; this alias lives only while importers switch over."""

import sys

from .graph import rows as _new

sys.modules[__name__] = _new
