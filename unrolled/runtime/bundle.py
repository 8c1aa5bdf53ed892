"""An exported folder: its graphs, ``settings.json`` and ``manifest.json``, checked before anything is run.

The manifest (JSON)::

    {"format": "unrolled-export", "version": 1, "application": "lm",
     "graphs": "onnx" | "torchscript", "quantized": null | "int8",
     "files": {"step.onnx": "<sha256 hex>", "settings.json": "<sha256 hex>", ...}}

Every file the folder needs is listed with the SHA-256 of its bytes; `read_bundle`
refuses a folder where one is missing or its digest differs (one line naming the file).
This module needs the standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = "unrolled-export"
VERSION = 1
MANIFEST = "manifest.json"
SETTINGS = "settings.json"
GRAPH_FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}


class BundleError(ValueError):
    """An exported folder that cannot be used; the message is one line naming the folder or file."""


def sha256_file(path: Path) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, application: str, graphs: str, quantized: str | None) -> dict[str, Any]:
    """Write ``manifest.json`` listing every other file of `folder` with its SHA-256; returns it."""
    files = {path.name: sha256_file(path) for path in sorted(folder.iterdir()) if path.name != MANIFEST}
    manifest = {"format": FORMAT, "version": VERSION, "application": application, "graphs": graphs,
                "quantized": quantized, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


@dataclass
class Bundle:
    """A checked exported folder: where it is, its manifest and its settings."""

    folder: Path
    application: str
    graphs: str
    quantized: str | None
    settings: dict[str, Any]

    def graph(self, name: str) -> Path:
        """The path of graph `name` ("step", "model", "encoder")."""
        return self.folder / f"{name}{SUFFIXES[self.graphs]}"


def read_bundle(folder: str | os.PathLike[str]) -> Bundle:
    """The exported folder at `folder`, every file checked against the manifest; BundleError otherwise."""
    root = Path(folder)
    if not root.is_dir():
        raise BundleError(f"{root}: no such folder; give a folder written by `unrolled export`")
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(f"{root}: not an exported model (no {MANIFEST}); make one with `unrolled export RUN`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"{path}: not valid JSON ({error}); export the run again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: not an unrolled export manifest; export the run again")
    if manifest.get("version") != VERSION:
        raise BundleError(f"{path}: manifest version {manifest.get('version')!r}, this runtime reads {VERSION}; "
                          "export the run again with this version")
    files = manifest.get("files")
    if not isinstance(files, dict) or SETTINGS not in files:
        raise BundleError(f"{path}: lists no files; export the run again")
    for name, expected in files.items():
        file = root / name
        if Path(name).name != name:
            raise BundleError(f"{path}: lists {name!r}, which is not a file of the folder; export the run again")
        if not file.is_file():
            raise BundleError(f"{file}: missing (the manifest lists it); export the run again")
        if sha256_file(file) != expected:
            raise BundleError(f"{file}: altered (its SHA-256 differs from the manifest's); export the run again")
    settings = json.loads((root / SETTINGS).read_text(encoding="utf-8"))
    graphs = manifest.get("graphs")
    if graphs not in GRAPH_FORMATS:
        raise BundleError(f"{path}: unknown graph format {graphs!r}; export the run again")
    return Bundle(root, str(manifest.get("application")), graphs, manifest.get("quantized"), settings)
