"""Moved to :mod:`neurflow.ingest.graph.path_figures`; this alias lives only while importers switch over."""

import sys

from .graph import path_figures as _new

sys.modules[__name__] = _new
