"""Parallel pairs for sequence to sequence: a source text and its target (translation, reply, pronunciation).

Two formats, told apart by the suffix (or `format`):

* TSV (``.tsv``, ``.tab``, ``.txt``): one pair a line, ``source TAB target``, no
  header; blank lines are skipped; a line must hold exactly one TAB.
* JSON lines (``.jsonl``, ``.json``): one object a line with a source and a
  target field (``"source"`` and ``"target"`` unless named otherwise).

Every error is one line naming the file and, where it applies, the line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unrolled.data.text import read_text

PathLike = str | os.PathLike[str]
PAIR_FORMATS = ("tsv", "jsonl")
SUFFIXES = {".tsv": "tsv", ".tab": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}


@dataclass
class Pair:
    """A source text, its target, and the line of the file it came from (1-based)."""

    source: str
    target: str
    line: int


def read_pairs(path: PathLike, *, format: str | None = None, source_field: str = "source",
               target_field: str = "target") -> list[Pair]:
    """The pairs of a TSV or JSON-lines file, in file order; a one-line ValueError for anything malformed."""
    path = Path(path)
    kind = format or SUFFIXES.get(path.suffix.lower())
    if kind not in PAIR_FORMATS:
        raise ValueError(f"{path}: cannot tell the format from the suffix {path.suffix!r}; name the file .tsv or "
                         f".jsonl, or pass the format (tsv or jsonl)")
    text = read_text(path)
    pairs = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        source, target = (_tsv_pair(line, path, number) if kind == "tsv"
                          else _json_pair(line, path, number, source_field, target_field))
        if not source.strip() or not target.strip():
            side = "source" if not source.strip() else "target"
            raise ValueError(f"{path}: line {number} has an empty {side}")
        pairs.append(Pair(source, target, number))
    if not pairs:
        raise ValueError(f"{path}: no pairs (only blank lines)")
    return pairs


def _tsv_pair(line: str, path: Path, number: int) -> tuple[str, str]:
    fields = line.split("\t")
    if len(fields) != 2:
        raise ValueError(f"{path}: line {number} has {len(fields) - 1} tabs; a pair is 'source TAB target'")
    return fields[0], fields[1]


def _json_pair(line: str, path: Path, number: int, source_field: str, target_field: str) -> tuple[str, str]:
    try:
        record: Any = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: line {number} is not valid JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: line {number} is not a JSON object")
    values = []
    for name in (source_field, target_field):
        if name not in record:
            raise ValueError(f"{path}: line {number} has no {name!r} field (fields: {', '.join(map(str, record))})")
        if not isinstance(record[name], str):
            raise ValueError(f"{path}: line {number}: {name!r} is not a string")
        values.append(record[name])
    return values[0], values[1]
