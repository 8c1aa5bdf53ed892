"""Labelled token sequences: what the classifiers and the tagger train on.

Ids: 0 is padding (`PAD_ID`), 1 the unknown token (`UNK_ID`); known tokens
follow. A batch pads its sequences to the longest one; padded positions of
per-step labels hold `IGNORE_LABEL`, which the loss skips.

From a labelled file to training batches::

    examples = read_labelled("reviews.csv")                 # [Example(text, label, line)], clear errors
    parts = split_indices(len(examples), validation=0.1, test=0.1, seed=0)   # or kfold_indices
    train = [examples[i] for i in parts["train"]]
    tokens = [truncate(tokenize(e.text, "word"), 400)[0] for e in train]     # [["it", "is", "n't", ...], ...]
    vocab, labels = TokenVocabulary.build(tokens), LabelSet.build(e.label for e in train)
    sequences = [vocab.encode(t) for t in tokens]           # ids; unseen tokens -> UNK_ID
    targets = [labels.encode(e.label) for e in train]       # 0 .. C-1
    data = LabelledData(sequences, targets, batch_size=50, seed=0)   # the trainer's TrainData of TokenBatch
    for batch in iterate_batches(sequences, targets, batch_size=256): ...   # evaluation: in order, each once

Tokenisers, the vocabulary, the label set and pretrained vectors live in
`unrolled.data.vocab` and are re-exported here; CoNLL files for the tagger in
`unrolled.data.conll`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from unrolled.data.text import read_text
from unrolled.data.vocab import PAD_ID

__all__ = [
    "FORMATS",
    "IGNORE_LABEL",
    "Example",
    "LabelledData",
    "TokenBatch",
    "iterate_batches",
    "kfold_indices",
    "make_batch",
    "read_labelled",
    "split_groups",
    "split_indices",
    "truncate",
]

IGNORE_LABEL = -100
"""Label of a padded step in a tagging batch (``F.cross_entropy``'s default ``ignore_index``)."""


@dataclass
class TokenBatch:
    """B token sequences padded to the longest, T, with their labels.

    ==========  ============  =====================================================
    field       shape         meaning
    ==========  ============  =====================================================
    ids         (B, T) int64  token ids, `PAD_ID` past each sequence's length
    lengths     (B,) int64    true lengths, each >= 1
    labels      (B,) int64    a class per sequence (classification), or
                (B, T) int64  a tag per step, `IGNORE_LABEL` past the length (tagging);
                              None when predicting
    chars       (B, T, W)     optional character ids of every token (`PAD_ID` padded),
                int64         W the longest token, for character features
    ==========  ============  =====================================================
    """

    ids: Tensor
    lengths: Tensor
    labels: Tensor | None = None
    chars: Tensor | None = None


# --- reading labelled files ------------------------------------------------------------------------------------------

FORMATS = ("csv", "tsv", "jsonl")
SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
COLUMN_OPTIONS = {"text": "--text-column", "label": "--label-column"}
DELIMITERS = {"csv": ",", "tsv": "\t"}

PathLike = str | os.PathLike[str]
Item = TypeVar("Item")


@dataclass
class Example:
    """A text, its label ("" when read unlabelled) and the line of the file it starts on (1 = the first line)."""

    text: str
    label: str
    line: int


def read_labelled(path: PathLike, *, text_column: str = "text", label_column: str | None = "label",
                  format: str | None = None) -> list[Example]:
    """The examples of a CSV, TSV or JSON-lines file, in file order.

    The format comes from the suffix (.csv; .tsv, .tab, .txt; .jsonl, .json)
    unless ``format`` ("csv", "tsv" or "jsonl") is given. CSV and TSV files
    start with a header row naming the columns; fields follow the usual CSV
    quoting (a field in double quotes may hold the delimiter, newlines and
    doubled quotes ""), in TSV too. JSON lines hold one object a line. Blank
    lines are skipped; texts and labels lose surrounding whitespace; a JSON
    label may be a number. ``label_column=None`` reads unlabelled texts (label
    "") for prediction. A one-line ValueError names the file, and the line
    where there is one, for a missing, empty, binary or non-UTF-8 file, a
    missing column (and the option that names it), a row that is not valid
    CSV or JSON or has a wrong number of fields, and an empty text or label.
    """
    path = Path(path)
    kind = _format_of(path, format)
    text = read_text(path)
    if kind == "jsonl":
        return _json_examples(text, path, text_column, label_column)
    return _table_examples(text, path, DELIMITERS[kind], text_column, label_column)


def _format_of(path: Path, format: str | None) -> str:
    if format is not None:
        if format not in FORMATS:
            raise ValueError(f"unknown format {format!r}: choose one of {', '.join(FORMATS)}")
        return format
    if path.suffix.lower() not in SUFFIX_FORMATS:
        raise ValueError(f"{path}: cannot tell the format from the suffix {path.suffix!r}; name the file .csv, .tsv "
                         "or .jsonl, or give the format (csv, tsv or jsonl)")
    return SUFFIX_FORMATS[path.suffix.lower()]


def _table_examples(text: str, path: Path, delimiter: str, text_column: str,
                    label_column: str | None) -> list[Example]:
    rows = _table_rows(text, path, delimiter)
    _, header = next(rows, (0, []))
    header = [name.strip() for name in header]
    if not header:
        raise ValueError(f"{path}: no header row; the first line names the columns, e.g. text,label")
    text_index = _column(header, text_column, "text", path)
    label_index = None if label_column is None else _column(header, label_column, "label", path)
    examples = []
    for line, fields in rows:
        if len(fields) != len(header):
            raise ValueError(f"{path}: line {line} has {len(fields)} fields but the header names {len(header)} "
                             "columns; quote a field that holds the delimiter")
        label = None if label_index is None else fields[label_index]
        examples.append(_example(fields[text_index], label, line, path))
    if not examples:
        raise ValueError(f"{path}: no rows after the header")
    return examples


def _table_rows(text: str, path: Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of each record that is not blank; a csv error names the record's first line."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, strict=True)
    start = 1
    try:
        for fields in reader:
            if "".join(fields).strip():
                yield start, fields
            start = reader.line_num + 1
    except csv.Error as error:
        name = "CSV" if delimiter == "," else "TSV"
        raise ValueError(f"{path}: line {start} is not valid {name} ({error}); a field in double quotes must end "
                         'with a quote, and quotes inside it are doubled ("")') from None


def _column(header: list[str], name: str, role: str, path: Path) -> int:
    if name not in header:
        raise ValueError(f"{path}: no column {name!r}; the columns are {', '.join(repr(n) for n in header)} "
                         f"(choose the {role} column with {COLUMN_OPTIONS[role]})")
    return header.index(name)


def _json_examples(text: str, path: Path, text_column: str, label_column: str | None) -> list[Example]:
    if text.lstrip().startswith("["):
        raise ValueError(f"{path}: holds a JSON array; write one JSON object per line (JSON lines) instead")
    examples = []
    for line, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: line {line} is not valid JSON ({error.msg} at column {error.colno}); each "
                             "line holds one whole JSON object") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}: line {line} holds a JSON {type(record).__name__}, not an object")
        label = None if label_column is None else _json_field(record, label_column, "label", path, line)
        examples.append(_example(_json_field(record, text_column, "text", path, line), label, line, path))
    if not examples:
        raise ValueError(f"{path}: no rows, only blank lines")
    return examples


def _json_field(record: dict[str, Any], name: str, role: str, path: Path, line: int) -> str:
    if name not in record:
        fields = ", ".join(repr(key) for key in record) or "none"
        raise ValueError(f"{path}: line {line} has no field {name!r}; its fields are {fields} "
                         f"(choose the {role} field with {COLUMN_OPTIONS[role]})")
    value = record[name]
    if isinstance(value, str):
        return value
    if role == "label" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{path}: line {line}: the {role} field {name!r} holds {json.dumps(value)[:40]}, not a string")


def _example(text: str, label: str | None, line: int, path: Path) -> Example:
    if not text.strip():
        raise ValueError(f"{path}: line {line} has an empty text")
    if label is not None and not label.strip():
        raise ValueError(f"{path}: line {line} has an empty label")
    return Example(text.strip(), "" if label is None else label.strip(), line)


# --- splits ----------------------------------------------------------------------------------------------------------


def split_indices(n: int, *, validation: float, test: float, seed: int) -> dict[str, list[int]]:
    """A shuffled split of examples 0 .. n-1: ``{"train": [...], "validation": [...], "test": [...]}``.

    The order is ``numpy.random.default_rng(seed).permutation(n)``: the test
    part is its first round(n * test) indices, validation the next
    round(n * validation), train the rest; each part is returned sorted (file
    order). So the same (n, fractions, seed) always give the same split, and
    changing the validation fraction leaves the test part as it is. Every part
    asked for (fraction above 0) must get at least one example.
    """
    for name, fraction in (("validation", validation), ("test", test)):
        if not (math.isfinite(fraction) and 0.0 <= fraction < 1.0):
            raise ValueError(f"the {name} fraction must be in [0, 1), got {fraction}")
    if validation + test >= 1.0:
        raise ValueError(f"the validation and test fractions must leave examples to train on, got {validation} + "
                         f"{test}")
    n_test, n_validation = _round(n * test), _round(n * validation)
    for name, fraction, size in (("test", test, n_test), ("validation", validation, n_validation),
                                 ("train", 1.0, n - n_test - n_validation)):
        if fraction > 0 and size < 1:
            raise ValueError(f"{n} examples are too few for a {name} part (validation {validation}, test {test})")
    order = np.random.default_rng(seed).permutation(n)
    parts = {"train": order[n_test + n_validation :], "validation": order[n_test : n_test + n_validation],
             "test": order[:n_test]}
    return {name: sorted(part.tolist()) for name, part in parts.items()}


def kfold_indices(n: int, *, folds: int, fold: int, seed: int) -> tuple[list[int], list[int]]:
    """``(train, test)`` for fold ``fold`` (0 .. folds-1) of a shuffled ``folds``-fold cross-validation.

    ``numpy.random.default_rng(seed).permutation(n)`` is cut into ``folds``
    parts of sizes differing by at most one (``numpy.array_split``); part
    ``fold`` is the test set, the others the training set, both sorted. Over
    the folds every example is tested exactly once.
    """
    if folds < 2 or folds > n:
        raise ValueError(f"cross-validation needs 2 <= folds <= the number of examples ({n}), got {folds} folds")
    if not 0 <= fold < folds:
        raise ValueError(f"the fold must be in 0 .. {folds - 1} for {folds} folds, got {fold}")
    parts = np.array_split(np.random.default_rng(seed).permutation(n), folds)
    train = np.concatenate([part for k, part in enumerate(parts) if k != fold])
    return sorted(train.tolist()), sorted(parts[fold].tolist())


def split_groups(groups: Sequence[str], *, validation: float, test: float, seed: int) -> dict[str, list[int]]:
    """`split_indices` over distinct groups: every example of a group lands in the same part.

    For held-out evaluation where near-duplicates must not leak, e.g. every
    pronunciation of a word (the group is the word). The distinct groups, in
    order of first appearance, are split by ``split_indices(G, ...)``; each
    part is then the example indices of its groups, sorted. The fractions count
    groups, not examples.
    """
    first: dict[str, int] = {}
    for group in groups:
        first.setdefault(group, len(first))
    parts = split_indices(len(first), validation=validation, test=test, seed=seed)
    side = {g: name for name, members in parts.items() for g in members}
    result: dict[str, list[int]] = {name: [] for name in parts}
    for index, group in enumerate(groups):
        result[side[first[group]]].append(index)
    return result


def _round(value: float) -> int:
    """Round half up (Python's round() rounds half to even)."""
    return math.floor(value + 0.5)


def truncate(tokens: Sequence[Item], max_len: int | None) -> tuple[list[Item], bool]:
    """The first ``max_len`` tokens (all of them for None), and whether any were cut off."""
    if max_len is None:
        return list(tokens), False
    if max_len < 1:
        raise ValueError(f"the longest sequence kept must be at least 1 token, got {max_len}")
    return list(tokens[:max_len]), len(tokens) > max_len


# --- batches ---------------------------------------------------------------------------------------------------------

Labels = Sequence[int] | Sequence[Sequence[int]]
Chars = Sequence[Sequence[Sequence[int]]]


def make_batch(sequences: Sequence[Sequence[int]], labels: Labels | None = None, *,
               chars: Chars | None = None) -> TokenBatch:
    """A `TokenBatch` of B sequences of token ids, padded to the longest, T.

    ``labels``: one id per sequence (classification, labels (B,)), one id per
    token (tagging, labels (B, T) with `IGNORE_LABEL` past each length), or
    None. ``chars``: for every token of every sequence the ids of its
    characters (`char_ids`), padded with `PAD_ID` to (B, T, W). Every sequence
    needs at least one token.
    """
    if not sequences:
        raise ValueError("a batch needs at least one sequence")
    lengths = [len(sequence) for sequence in sequences]
    if min(lengths) < 1:
        raise ValueError(f"sequence {lengths.index(0)} of the batch is empty; every sequence needs at least one token")
    ids = np.full((len(sequences), max(lengths)), PAD_ID, dtype=np.int64)  # (B, T)
    for b, sequence in enumerate(sequences):
        ids[b, : lengths[b]] = sequence
    return TokenBatch(ids=torch.from_numpy(ids), lengths=torch.tensor(lengths, dtype=torch.long),
                      labels=None if labels is None else _batch_labels(labels, lengths),
                      chars=None if chars is None else _batch_chars(chars, lengths))


def _batch_labels(labels: Labels, lengths: list[int]) -> Tensor:
    if len(labels) != len(lengths):
        raise ValueError(f"{len(labels)} labels for a batch of {len(lengths)} sequences")
    if all(isinstance(label, int | np.integer) for label in labels):
        return torch.tensor([int(label) for label in labels], dtype=torch.long)  # type: ignore[arg-type]  # (B,)
    tags = np.full((len(lengths), max(lengths)), IGNORE_LABEL, dtype=np.int64)  # (B, T)
    rows: Sequence[Any] = labels
    for b, row in enumerate(rows):
        if isinstance(row, int | np.integer) or len(row) != lengths[b]:
            count = "one label" if isinstance(row, int | np.integer) else f"{len(row)} tags"
            raise ValueError(f"sequence {b} of the batch has {lengths[b]} tokens but {count}; give one label per "
                             "sequence, or one tag per token for every sequence")
        tags[b, : lengths[b]] = row
    return torch.from_numpy(tags)


def _batch_chars(chars: Chars, lengths: list[int]) -> Tensor:
    if len(chars) != len(lengths):
        raise ValueError(f"character ids for {len(chars)} sequences in a batch of {len(lengths)}")
    width = max((len(word) for words in chars for word in words), default=1) or 1  # W
    table = np.full((len(lengths), max(lengths), width), PAD_ID, dtype=np.int64)  # (B, T, W)
    for b, words in enumerate(chars):
        if len(words) != lengths[b]:
            raise ValueError(f"sequence {b} of the batch has {lengths[b]} tokens but character ids for {len(words)}")
        for t, word in enumerate(words):
            table[b, t, : len(word)] = word
    return torch.from_numpy(table)


def iterate_batches(sequences: Sequence[Sequence[int]], labels: Labels | None = None, *, batch_size: int,
                    chars: Chars | None = None) -> Iterator[TokenBatch]:
    """Batches of ``batch_size`` consecutive sequences in order, each once, the last one smaller (evaluation)."""
    if batch_size < 1:
        raise ValueError(f"the batch size must be positive, got {batch_size}")
    for start in range(0, len(sequences), batch_size):
        part = slice(start, start + batch_size)
        yield make_batch(sequences[part], None if labels is None else labels[part],
                         chars=None if chars is None else chars[part])


class LabelledData:
    """Shuffled training batches of labelled sequences, for the trainer (its `TrainData`).

    An epoch is ceil(N / B) full batches of B examples: the examples in the
    order of ``numpy.random.default_rng([seed, epoch]).permutation(N)``
    (file order with ``shuffle=False``), and the last batch filled up with the
    first examples of that order again (as Kim's 2014 code does), so every batch has
    B rows. With ``bucket`` k > 1 the order is cut into runs of k batches, each
    run sorted by length (less padding), and the batches are then shuffled. So
    ``batches(epoch, start)`` is a function of (seed, epoch, start): resuming
    at ``start`` gives the tail of the epoch. ``shard(rank, world)`` gives a
    process rows rank*B/world .. (rank+1)*B/world - 1 of every batch.
    """

    def __init__(self, sequences: Sequence[Sequence[int]], labels: Labels, *, batch_size: int, seed: int = 0,
                 shuffle: bool = True, chars: Chars | None = None, bucket: int = 0) -> None:
        if not sequences:
            raise ValueError("no training examples")
        if len(labels) != len(sequences) or (chars is not None and len(chars) != len(sequences)):
            raise ValueError(f"{len(sequences)} sequences but {len(labels)} labels"
                             + ("" if chars is None else f" and character ids for {len(chars)}"))
        empty = next((i for i, sequence in enumerate(sequences) if not sequence), None)
        if empty is not None:
            raise ValueError(f"training example {empty} has no tokens; every sequence needs at least one")
        if batch_size < 1 or seed < 0 or bucket < 0:
            raise ValueError(f"batch size must be positive and seed and bucket 0 or more, got {batch_size}, {seed} "
                             f"and {bucket}")
        self.sequences, self.labels, self.chars = sequences, labels, chars
        self.batch_size, self.seed, self.shuffle, self.bucket = batch_size, seed, shuffle, bucket
        self.rows = slice(0, batch_size)

    def __len__(self) -> int:
        """Batches per epoch: ceil(N / B)."""
        return -(-len(self.sequences) // self.batch_size)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The example indices of every batch of ``epoch``, (batches, B)."""
        if epoch < 0:
            raise ValueError(f"the epoch must be 0 or more, got {epoch}")
        generator = np.random.default_rng([self.seed, epoch])
        n = len(self.sequences)
        order = generator.permutation(n) if self.shuffle else np.arange(n)
        order = np.resize(order, len(self) * self.batch_size)  # repeats the start to fill the last batch
        if self.bucket > 1:
            lengths = np.array([len(sequence) for sequence in self.sequences])
            run = self.bucket * self.batch_size
            for start in range(0, len(order), run):
                chunk = order[start : start + run]
                order[start : start + run] = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches = order.reshape(len(self), self.batch_size)
        return batches[generator.permutation(len(self))] if self.shuffle and self.bucket > 1 else batches

    def batch_rows(self, epoch: int, start: int) -> Iterator[list[int]]:
        """The example indices of each batch of ``epoch`` from index ``start`` on (this process's rows of each);
        subclasses make their batches of them."""
        if not 0 <= start <= len(self):
            raise ValueError(f"the start batch must be in [0, {len(self)}], got {start}")
        order = self.epoch_order(epoch)
        for k in range(start, len(self)):
            yield order[k, self.rows].tolist()

    def batches(self, epoch: int, start: int) -> Iterator[TokenBatch]:
        """The batches of ``epoch`` from index ``start`` on (this process's rows of each)."""
        for rows in self.batch_rows(epoch, start):
            labels: Any = [self.labels[i] for i in rows]  # ints, or per-token lists for a tagger
            yield make_batch([self.sequences[i] for i in rows], labels,
                             chars=None if self.chars is None else [self.chars[i] for i in rows])

    def shard(self, rank: int, world: int) -> LabelledData:
        """Process ``rank``'s share of every batch: B / world rows of it."""
        if self.batch_size % world:
            raise ValueError(f"a batch of {self.batch_size} examples cannot be split evenly over {world} processes; "
                             f"choose a batch size that is a multiple of {world}")
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, {world}), got {rank}")
        share = self.batch_size // world
        part = LabelledData(self.sequences, self.labels, batch_size=self.batch_size, seed=self.seed,
                            shuffle=self.shuffle, chars=self.chars, bucket=self.bucket)
        part.rows = slice(rank * share, (rank + 1) * share)
        return part

    def state_dict(self) -> dict[str, Any]:
        """Nothing: the batches are a function of (seed, epoch, index)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Accepts only the empty state that ``state_dict`` saves."""
        if state:
            raise ValueError(f"labelled data keeps no state, but the checkpoint holds {', '.join(sorted(state))}; "
                             "was it saved by another kind of run?")
