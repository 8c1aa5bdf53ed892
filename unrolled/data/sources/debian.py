"""Debian: pinned packages downloaded with ``apt-get download`` (no root, nothing installed) and read safely.

A ``.deb`` is an ``ar`` archive: ``debian-binary``, ``control.tar.*`` and
``data.tar.*``, the files it would install. `deb_data` finds the data
archive; `deb_files` reads files of it into memory and `unpack` extracts it
under a folder, both after `unrolled.data.sources.archives` has checked every
member.

``apt-get download NAME=VERSION`` fetches the pinned version only. When the
archive has moved on (apt offers another version), the error says which
version apt has and that the pin needs updating. Without apt-get (another
distribution), or where apt knows no version of the package at all (it lies
in a component, contrib or non-free, that this machine's apt sources leave
out), the pinned file is fetched from a Debian mirror
(``$UNROLLED_DEBIAN_MIRROR``, else http://deb.debian.org/debian) by its pool
path, which the pin records; either way it is used only once its sha256 matches.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from unrolled.data.errors import DataError
from unrolled.data.sources.archives import extract_all, read_prefixed
from unrolled.data.sources.pins import PINS_FILE, Pin, fetch, pin, verify

MIRROR = "http://deb.debian.org/debian"

AR_MAGIC = b"!<arch>\n"
AR_HEADER = 60  # name 16, dates and ids 32, size 10, magic 2
CANDIDATE = re.compile(r"^\s*Candidate:\s*(\S+)", re.M)


def download(name: str, dest: Path) -> Path:
    """Download the pinned version of Debian package ``name`` into ``dest``; the ``.deb``, once its sha256 matches.

    Without apt-get, the pinned file comes from a Debian mirror by its pool
    path. A one-line DataError if apt offers another version than the pinned
    one, or if the download fails.
    """
    pinned = pin("debian", name)
    if shutil.which("apt-get") is None:
        if not pinned.path:
            raise DataError(f"{name} comes from the Debian archive, this machine has no apt-get, and its pin in "
                            f"{PINS_FILE} records no pool path to fetch it from; add one")
        return _from_mirror(pinned, dest)
    result = subprocess.run(["apt-get", "download", pinned.spec], cwd=dest, capture_output=True, text=True,
                            check=False)
    debs = sorted(dest.glob(f"{name}_*.deb"))
    if result.returncode == 0 and len(debs) == 1:
        return verify(debs[0], pinned)
    offered = candidate(name)
    if offered is None and pinned.path and shutil.which("apt-cache") is not None:
        return _from_mirror(pinned, dest)  # apt knows no version: a component its sources leave out
    if offered is not None and offered != pinned.version:
        raise DataError(f"apt offers {name} {offered}, not the pinned {pinned.version}: the Debian archive has "
                        f"moved on; check the new package and update its pin (version and sha256) in {PINS_FILE}, "
                        "or obtain the dataset where the pinned version is available and copy its cache folder here")
    last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
    raise DataError(f"could not download {pinned.spec} with apt-get ({last_line}); this machine must reach the "
                    "Debian archive (try apt-get update) to obtain the dataset")


def _from_mirror(pinned: Pin, dest: Path) -> Path:
    """The pinned file from the Debian mirror by its pool path, once its sha256 matches."""
    mirror = (os.environ.get("UNROLLED_DEBIAN_MIRROR") or MIRROR).rstrip("/")
    return fetch(f"{mirror}/{pinned.path}", dest, pinned)


def candidate(name: str) -> str | None:
    """The version of ``name`` that apt would fetch now (``apt-cache policy``), None if unknown."""
    if shutil.which("apt-cache") is None:
        return None
    result = subprocess.run(["apt-cache", "policy", name], capture_output=True, text=True, check=False)
    found = CANDIDATE.search(result.stdout)
    return found[1] if result.returncode == 0 and found and found[1] != "(none)" else None


def deb_data(deb: Path) -> bytes:
    """The compressed tar archive ``data.tar.*`` of a Debian package (an ``ar`` archive), as bytes."""
    raw = deb.read_bytes()
    if not raw.startswith(AR_MAGIC):
        raise DataError(f"{deb}: not a Debian package (no ar header)")
    position = len(AR_MAGIC)
    while position + AR_HEADER <= len(raw):
        header = raw[position : position + AR_HEADER]
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        body = raw[position + AR_HEADER : position + AR_HEADER + size]
        position += AR_HEADER + size + (size % 2)
        if name.startswith("data.tar"):
            return body
    raise DataError(f"{deb}: no data.tar member")


def deb_files(deb: Path, prefix: str) -> dict[str, bytes]:
    """The files of a Debian package's data archive whose paths start with ``prefix`` (no leading ./), by the
    rest of their path."""
    return read_prefixed(deb_data(deb), prefix, f"{deb.name} data.tar")


def unpack(debs: Iterable[Path], root: Path) -> None:
    """Extract the data archives of Debian packages into ``root`` (nothing outside it: see `extract_all`)."""
    for deb in debs:
        extract_all(deb_data(deb), root, f"{deb.name} data.tar")
