"""``python -m neurflow.ingest.cli``: the same as the ``neurflow`` command."""

import sys

from . import main

sys.exit(main())
