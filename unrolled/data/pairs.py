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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from unrolled.data.labelled import LabelledData
from unrolled.data.text import read_text
from unrolled.data.vocab import PAD_ID

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


# --- batches ---------------------------------------------------------------------------------------------------------


@dataclass
class PairBatch:
    """B source-target pairs of token ids, each side padded with `PAD_ID` to its longest.

    ===============  ==============  ==========================================================
    field            shape           meaning
    ===============  ==============  ==========================================================
    source           (B, S) int64    source ids
    source_lengths   (B,) int64      true source lengths, each >= 1
    target           (B, T+1) int64  ``<s>`` y_1 ... y_n ``</s>``: the decoder reads [:, :-1]
                                     and predicts [:, 1:]
    ===============  ==============  ==========================================================
    """

    source: Tensor
    source_lengths: Tensor
    target: Tensor


def pad_ids(sequences: Sequence[Sequence[int]]) -> Tensor:
    """(B, longest) int64: the id sequences one per row, padded with `PAD_ID`."""
    lengths = [len(sequence) for sequence in sequences]
    table = np.full((len(sequences), max(lengths)), PAD_ID, dtype=np.int64)
    for b, sequence in enumerate(sequences):
        table[b, : lengths[b]] = sequence
    return torch.from_numpy(table)


def make_pair_batch(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> PairBatch:
    """A `PairBatch`; every source needs a token, every target its ``<s>`` and ``</s>`` already in place."""
    if not sources or len(sources) != len(targets):
        raise ValueError(f"a batch needs as many targets as sources (at least one), got {len(sources)} and "
                         f"{len(targets)}")
    empty = next((b for b, source in enumerate(sources) if not source), None)
    if empty is not None:
        raise ValueError(f"source {empty} of the batch is empty; every source needs at least one token")
    short = next((b for b, target in enumerate(targets) if len(target) < 2), None)
    if short is not None:
        raise ValueError(f"target {short} of the batch lacks <s> and </s>")
    lengths = torch.tensor([len(source) for source in sources], dtype=torch.long)
    return PairBatch(pad_ids(sources), lengths, pad_ids(targets))


class PairData(LabelledData):
    """Shuffled training batches of pairs, for the trainer (its `TrainData`).

    The order of `LabelledData` (a function of seed, epoch and index, buckets of
    similar source length with ``bucket`` > 1), each batch made into a `PairBatch`.
    """

    def __init__(self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], *, batch_size: int,
                 seed: int = 0, shuffle: bool = True, bucket: int = 0) -> None:
        super().__init__(sources, [0] * len(targets), batch_size=batch_size, seed=seed, shuffle=shuffle,
                         bucket=bucket)
        if len(targets) != len(sources):
            raise ValueError(f"{len(sources)} sources but {len(targets)} targets")
        self.targets = targets

    def batches(self, epoch: int, start: int) -> Iterator[PairBatch]:  # type: ignore[override]
        """The batches of ``epoch`` from index ``start`` on (this process's rows of each)."""
        for rows in self.batch_rows(epoch, start):
            yield make_pair_batch([self.sequences[i] for i in rows], [self.targets[i] for i in rows])

    def shard(self, rank: int, world: int) -> PairData:
        """Process ``rank``'s share of every batch: B / world rows of it."""
        rows = super().shard(rank, world).rows
        part = PairData(self.sequences, self.targets, batch_size=self.batch_size, seed=self.seed,
                        shuffle=self.shuffle, bucket=self.bucket)
        part.rows = rows
        return part


def iterate_pair_batches(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], *,
                         batch_size: int) -> Iterator[PairBatch]:
    """Batches of ``batch_size`` consecutive pairs in order, each once, the last one smaller (evaluation)."""
    if batch_size < 1:
        raise ValueError(f"the batch size must be positive, got {batch_size}")
    for start in range(0, len(sources), batch_size):
        yield make_pair_batch(sources[start : start + batch_size], targets[start : start + batch_size])
