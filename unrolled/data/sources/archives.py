"""Reading tar archives from registries safely: the one check every member passes before anything is read.

An archive (an sdist, an npm tarball, a Debian package's data.tar) is
refused whole, with a one-line DataError, if any member

* has an absolute path or a ``..`` component,
* is a symbolic or hard link whose target is absolute or lies outside the
  archive's root once resolved from the link's folder, or
* is a device or a FIFO.

Members are read by name into memory (`read_texts`, `read_member`,
`read_prefixed`) or extracted under one folder (`extract_all`); either way
`checked_members` has vetted the whole archive first. Leading ``./`` (as in
Debian packages) is dropped from member paths.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path, PurePosixPath

from unrolled.data.errors import DataError

SAFE_MODE = 0o755  # extracted files lose setuid, setgid, sticky and group/other write bits


def escapes(path: PurePosixPath) -> bool:
    """Whether a relative path climbs above its root once its ``..`` are resolved."""
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return True
    return False


def check_member(member: tarfile.TarInfo, archive: str) -> PurePosixPath:
    """The member's path (without a leading ./), or a DataError if it is unsafe (see the module docstring)."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise DataError(f"{archive}: refusing unsafe member path {member.name!r}")
    if member.issym() or member.islnk():
        target = PurePosixPath(member.linkname)
        base = path.parent if member.issym() else PurePosixPath()  # a hard link names a member from the root
        if target.is_absolute() or escapes(base / target):
            raise DataError(f"{archive}: refusing link {member.name!r} -> {member.linkname!r}, which leads out of "
                            "the archive")
    if member.isdev():
        raise DataError(f"{archive}: refusing device or FIFO member {member.name!r}")
    return path


def checked_members(tar: tarfile.TarFile, archive: str) -> list[tuple[PurePosixPath, tarfile.TarInfo]]:
    """Every member with its path, once all have passed `check_member`."""
    return [(check_member(member, archive), member) for member in tar.getmembers()]


def read_regular(tar: tarfile.TarFile, member: tarfile.TarInfo, archive: str) -> bytes:
    """A regular file member's bytes; a DataError for anything else."""
    handle = tar.extractfile(member) if member.isfile() else None
    if handle is None:
        raise DataError(f"{archive}: member {member.name!r} is not a regular file")
    with handle:
        return handle.read()


def open_tar(archive: Path | bytes, name: str) -> tarfile.TarFile:
    """A tar archive (any compression) from a file or from bytes; a DataError naming ``name`` if it is none."""
    try:
        if isinstance(archive, bytes):
            return tarfile.open(fileobj=io.BytesIO(archive), mode="r:*")
        return tarfile.open(archive, mode="r:*")
    except tarfile.TarError as error:
        raise DataError(f"{name}: not a readable tar archive ({error})") from None


def read_texts(archive: Path, *, folder: tuple[str, ...], suffix: str) -> dict[str, str]:
    """The UTF-8 text files ``<top>/<folder...>/*<suffix>`` of an archive (an sdist, an npm tarball), by file name."""
    texts: dict[str, str] = {}
    with open_tar(archive, str(archive)) as tar:
        for path, member in checked_members(tar, str(archive)):
            if path.parts[1:-1] == folder and path.name.endswith(suffix):
                texts[path.name] = read_regular(tar, member, str(archive)).decode("utf-8")
    return texts


def read_member(archive: Path | str, data: bytes, parts: tuple[str, ...]) -> bytes:
    """The bytes of the member at path ``parts`` of the tar archive ``data`` (called ``archive`` in errors)."""
    name = str(archive)
    with open_tar(data, name) as tar:
        found = [member for path, member in checked_members(tar, name) if path.parts == parts]
        if not found or not found[0].isfile():
            raise DataError(f"{name}: no regular file {'/'.join(parts)}")
        return read_regular(tar, found[0], name)


def read_prefixed(data: bytes, prefix: str, name: str) -> dict[str, bytes]:
    """The regular files of the tar archive ``data`` whose paths start with ``prefix``, by the rest of the path."""
    files = {}
    with open_tar(data, name) as tar:
        for path, member in checked_members(tar, name):
            if member.isfile() and str(path).startswith(prefix):
                files[str(path)[len(prefix) :]] = read_regular(tar, member, name)
    return files


def _safe(member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo:
    """tarfile's extraction filter: members already checked (`checked_members`); modes made harmless."""
    return member if member.issym() or member.islnk() else member.replace(mode=member.mode & SAFE_MODE, deep=False)


def extract_all(data: bytes, root: Path, name: str) -> None:
    """Extract the whole tar archive ``data`` under ``root``, once every member has passed `check_member`."""
    with open_tar(data, name) as tar:
        checked_members(tar, name)
        tar.extractall(root, filter=_safe)
