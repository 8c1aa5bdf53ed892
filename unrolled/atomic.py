"""Folders that appear whole or not at all: staged beside their place, fsynced, then renamed into it.

Every folder the package writes as a unit (a dataset in the cache, a
synthesiser unpacked into the cache's tools, a checkpoint) goes through this
module, so they share one guarantee:

* the content is written into a temporary sibling ``.NAME.tmp-<hex>`` (same
  file system, so the final rename is atomic);
* before the rename every file and folder inside it is fsynced, and the parent
  folder is fsynced after each rename, so after a power cut the folder under
  NAME is the old one or the new one, whole;
* an existing NAME is first renamed aside (``.NAME.old-<hex>``), the new one
  renamed into place, and the old one deleted; if the second rename fails the
  old one is put back. A kill between the two renames leaves the old folder
  whole under its aside name (`unrolled.checkpoint` loads it from there);
* on an error or a KeyboardInterrupt while staging, the temporary folder is
  removed and NAME is left as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_TAG = "tmp"  # a folder being staged: .NAME.tmp-<hex>
ASIDE_TAG = "old"  # the folder being replaced, during the swap: .NAME.old-<hex>
FOLDER_MODE = 0o755  # mkdtemp makes a private folder; what is staged here is not secret


def sibling(target: Path, tag: str) -> Path:
    """A fresh name beside ``target``: ``.NAME.<tag>-<12 hex digits>``."""
    return target.parent / f".{target.name}.{tag}-{uuid.uuid4().hex[:12]}"


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's (its entries') data to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_tree(root: Path) -> None:
    """fsync every regular file and folder under ``root``, ``root`` last (links are not followed)."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                fsync_path(path)
        fsync_path(Path(folder))


def replace_folder(staged: Path, target: Path) -> None:
    """Rename the folder ``staged`` to ``target``, replacing an existing ``target`` folder atomically.

    The old ``target`` is renamed aside first and deleted once the new one is
    in place; should the second rename fail, the old one is put back. The
    parent folder is fsynced after each rename. ``staged`` must be a sibling
    of ``target`` (one file system).
    """
    if not target.exists():
        os.replace(staged, target)
        fsync_path(target.parent)
        return
    aside = sibling(target, ASIDE_TAG)
    os.replace(target, aside)
    try:
        fsync_path(target.parent)
        os.replace(staged, target)
        fsync_path(target.parent)
    except BaseException:
        if not target.exists():
            os.replace(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def staged_folder(final: Path, *, keep: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final``; on success it becomes ``final`` atomically.

    When the block ends without an error the folder is made world-readable,
    fsynced (`fsync_tree`) and renamed into place with `replace_folder`. When
    it raises (KeyboardInterrupt included) the temporary folder is removed and
    ``final`` is untouched. ``keep``, if given, is asked about an existing
    ``final`` at that moment: where it says True (another process made a
    whole copy meanwhile) that copy stays and the staged one is dropped.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.{TEMP_TAG}-", dir=final.parent))
    try:
        yield staging
        if keep is not None and final.exists() and keep(final):
            return
        staging.chmod(FOLDER_MODE)
        fsync_tree(staging)
        replace_folder(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
