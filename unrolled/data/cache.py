"""The cache folder that datasets (and the synthesisers they need) are obtained into once."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_VARIABLE = "UNROLLED_DATA"
DEFAULT_CACHE = Path("~/.cache/unrolled")
TOOLS = "tools"  # <cache>/tools/<engine>/: speech synthesisers unpacked from Debian packages


def cache_dir() -> Path:
    """The cache folder: ``$UNROLLED_DATA`` if set, else ``~/.cache/unrolled``."""
    configured = os.environ.get(CACHE_VARIABLE)
    return Path(configured).expanduser() if configured else DEFAULT_CACHE.expanduser()
