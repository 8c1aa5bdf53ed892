"""Tokens, their vocabulary, the label set, and pretrained word vectors.

From a text to ids::

    tokens = tokenize("It isn't bad!", "word")         # ["it", "is", "n't", "bad", "!"]
    vocab = TokenVocabulary.build(train_token_lists, min_freq=1)
    ids = vocab.encode(tokens)                          # unseen tokens -> UNK_ID
    labels = LabelSet.build(train_labels)               # sorted names <-> 0 .. C-1
    table, found = load_vectors("glove.txt", vocab)     # (V, E) float32 rows for an nn.Embedding

Ids are the same for every vocabulary: 0 is padding (`PAD_ID`, "<pad>"), 1 the
unknown token (`UNK_ID`, "<unk>"); the known tokens follow. A vocabulary and a
label set save as plain JSON lists, small enough for a checkpoint's config.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor

from unrolled.tokens import (
    APOSTROPHES,
    PAD_ID,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    TOKENIZERS,
    UNK_ID,
    UNK_TOKEN,
    WORD_TOKEN,
    tokenize,
)

# The tokenisers and special ids live in `unrolled.tokens` (no torch, for the runtime too); offered here as well.
__all__ = ["APOSTROPHES", "PAD_ID", "PAD_TOKEN", "SPECIAL_TOKENS", "TOKENIZERS", "UNK_ID", "UNK_TOKEN",
           "WORD_TOKEN", "LabelSet", "TokenVocabulary", "char_ids", "load_vectors", "tokenize"]

PathLike = str | os.PathLike[str]

# --- tokenisers ------------------------------------------------------------------------------------------------------

# --- token vocabulary ------------------------------------------------------------------------------------------------


class TokenVocabulary:
    """Tokens <-> ids: 0 "<pad>", 1 "<unk>", then the known tokens in the order given.

    ``build`` orders them by descending frequency, ties alphabetically, so the
    same training data always gives the same ids. ``encode`` maps tokens it
    does not know to `UNK_ID`. ``to_json`` is the plain list of known tokens
    (ids 2, 3, ...). The strings "<pad>" and "<unk>" are never known tokens:
    in a text they encode to `UNK_ID`.
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        for token in tokens:
            if not isinstance(token, str) or not token:
                raise ValueError(f"a vocabulary holds non-empty strings, not {token!r}")
            if token in SPECIAL_TOKENS:
                raise ValueError(f"{token!r} is reserved for id {SPECIAL_TOKENS.index(token)}; leave it out of the "
                                 "known tokens")
        if len(set(tokens)) != len(tokens):
            raise ValueError("a vocabulary's tokens must be distinct")
        self.tokens = tokens
        self._ids = {token: i for i, token in enumerate(tokens, start=len(SPECIAL_TOKENS))}
        self._names = [*SPECIAL_TOKENS, *tokens]

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], *, min_freq: int = 1,
              max_size: int | None = None) -> TokenVocabulary:
        """The tokens seen at least ``min_freq`` times, most frequent first, ties alphabetical.

        ``max_size`` keeps only that many known tokens (V <= max_size + 2).
        """
        if min_freq < 1:
            raise ValueError(f"min_freq must be at least 1, got {min_freq}")
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size must be 0 or more, got {max_size}")
        counts = Counter(token for tokens in token_lists for token in tokens)
        ranked = sorted((token for token, count in counts.items() if count >= min_freq and token not in SPECIAL_TOKENS),
                        key=lambda token: (-counts[token], token))
        return cls(ranked if max_size is None else ranked[:max_size])

    @classmethod
    def from_json(cls, tokens: list[str]) -> TokenVocabulary:
        """The vocabulary saved by ``to_json``."""
        if not isinstance(tokens, list):
            raise ValueError(f"a saved vocabulary is a list of tokens, not {type(tokens).__name__}")
        return cls(tokens)

    def to_json(self) -> list[str]:
        """The known tokens in id order (ids 2, 3, ...); "<pad>" and "<unk>" are implied."""
        return list(self.tokens)

    def __len__(self) -> int:
        """V: the known tokens plus "<pad>" and "<unk>"."""
        return len(self._names)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenVocabulary) and self.tokens == other.tokens

    def __repr__(self) -> str:
        shown = ", ".join(repr(token) for token in self.tokens[:10])
        return f"TokenVocabulary({len(self)} ids: {shown}{', ...' if len(self.tokens) > 10 else ''})"

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """The id of each token; tokens not in the vocabulary give `UNK_ID`."""
        return [self._ids.get(token, UNK_ID) for token in tokens]

    def decode(self, ids: Sequence[int]) -> list[str]:
        """The token of each id: `PAD_ID` is "<pad>", `UNK_ID` "<unk>"."""
        bad = [i for i in ids if not isinstance(i, int) or not 0 <= i < len(self._names)]
        if bad:
            raise ValueError(f"token ids must be integers in [0, {len(self._names)}), got {bad[0]!r}")
        return [self._names[i] for i in ids]


def char_ids(tokens: Sequence[str], vocabulary: TokenVocabulary) -> list[list[int]]:
    """The ids of each token's characters in a character vocabulary, for `make_batch`'s ``chars``.

    Build the character vocabulary from the training tokens' characters:
    ``TokenVocabulary.build(list(token) for tokens in sentences for token in tokens)``.
    """
    return [vocabulary.encode(list(token)) for token in tokens]


# --- labels ----------------------------------------------------------------------------------------------------------


class LabelSet:
    """Label names <-> ids 0 .. C-1. ``build`` sorts the distinct training labels, so ids are reproducible."""

    def __init__(self, names: Sequence[str]) -> None:
        names = list(names)
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"labels are non-empty strings, not {name!r}")
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a label set needs distinct labels, got {names}")
        self.names = names
        self._ids = {name: i for i, name in enumerate(names)}

    @classmethod
    def build(cls, labels: Iterable[str]) -> LabelSet:
        """The sorted distinct ``labels`` of the training data; a ValueError if there are fewer than two."""
        names = sorted(set(labels))
        if len(names) < 2:
            found = f"only one label, {names[0]!r}" if names else "no labels"
            raise ValueError(f"the training data has {found}; a classifier needs examples of at least two "
                             "different labels")
        return cls(names)

    @classmethod
    def from_json(cls, names: list[str]) -> LabelSet:
        """The label set saved by ``to_json``."""
        if not isinstance(names, list):
            raise ValueError(f"a saved label set is a list of names, not {type(names).__name__}")
        return cls(names)

    def to_json(self) -> list[str]:
        """The names in id order."""
        return list(self.names)

    def __len__(self) -> int:
        """C, the number of labels."""
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelSet) and self.names == other.names

    def __repr__(self) -> str:
        return f"LabelSet({self.names})"

    def encode(self, name: str) -> int:
        """The id of label ``name``; a ValueError names it and the known labels if training never saw it."""
        if name not in self._ids:
            raise ValueError(f"label {name!r} does not occur in the training data; the model knows only "
                             f"{', '.join(repr(known) for known in self.names)}")
        return self._ids[name]

    def decode(self, index: int) -> str:
        """The name of label id ``index``."""
        if not isinstance(index, int) or not 0 <= index < len(self.names):
            raise ValueError(f"label ids are integers in [0, {len(self.names)}), got {index!r}")
        return self.names[index]


# --- pretrained vectors ----------------------------------------------------------------------------------------------

UNKNOWN_VECTOR_RANGE = 0.25
"""Rows without a pretrained vector are drawn from U(-0.25, 0.25), as in Kim (2014) (about word2vec's variance)."""


def load_vectors(path: PathLike, vocabulary: TokenVocabulary, dim: int | None = None, *,
                 generator: torch.Generator | None = None) -> tuple[Tensor, int]:
    """An embedding table for ``vocabulary`` from a word2vec or GloVe text file, and how many tokens it covered.

    The file is UTF-8 text, one ``word v1 v2 ... vE`` a line (single spaces),
    optionally after a word2vec header line ``count E``; blank lines are
    skipped. Each known token takes the vector of the same word, else of the
    first word that lower-cases to it. The table is (V, E) float32: rows with
    no vector, "<unk>" included, are drawn from U(-0.25, 0.25) with
    ``generator``; the "<pad>" row is zeros. Returns ``(table, found)``, found
    the number of known tokens that got a vector. A one-line ValueError names
    the line of a vector with another count of numbers than the first (or
    the header, or ``dim``), and of a bad number in a vector that is used;
    the binary word2vec format is rejected.
    """
    table: Tensor | None = None
    found: set[int] = set()
    exact: set[int] = set()  # tokens that got the vector of their own spelling, not of a capitalised one
    for number, word, values in _vector_lines(Path(path), dim):
        if table is None:
            table = _random_table(len(vocabulary), len(values), generator)  # (V, E)
        index = vocabulary.encode([word])[0]
        if index != UNK_ID:  # the token's own spelling: the first such line wins
            if index in exact:
                continue
            exact.add(index)
        else:
            index = vocabulary.encode([word.lower()])[0]
            if index == UNK_ID or index in found:
                continue
        table[index] = torch.tensor(_parse_numbers(values, path, number))
        found.add(index)
    assert table is not None  # _vector_lines raises for a file without vectors
    return table, len(found)


def _random_table(rows: int, width: int, generator: torch.Generator | None) -> Tensor:
    """(rows, width) float32 from U(-0.25, 0.25), with the `PAD_ID` row zero."""
    table = torch.empty(rows, width).uniform_(-UNKNOWN_VECTOR_RANGE, UNKNOWN_VECTOR_RANGE, generator=generator)
    table[PAD_ID] = 0.0
    return table


def _parse_numbers(fields: list[str], path: PathLike, number: int) -> list[float]:
    values = []
    for field in fields:
        try:
            values.append(float(field))
        except ValueError:
            raise ValueError(f"{path}: line {number}: {field!r} is not a number") from None
    if not all(math.isfinite(value) for value in values):
        raise ValueError(f"{path}: line {number}: the vector holds an infinite or NaN value")
    return values


def _vector_lines(path: Path, dim: int | None) -> Iterator[tuple[int, str, list[str]]]:
    """(line number, word, its E value fields) of each vector line, every line's E checked against the first's."""
    if path.is_dir() or not path.is_file():
        raise ValueError(f"{path}: {'is a directory, not a vector file' if path.is_dir() else 'no such file'}")
    expected, source, announced, seen = dim, f"the embedding size is {dim}", None, 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            fields = _decode_line(raw, path, number).rstrip("\r\n ").split(" ")
            if fields == [""]:
                continue
            if number == 1 and len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
                announced = int(fields[0])
                if expected is not None and int(fields[1]) != expected:
                    raise ValueError(f"{path}: the header says {fields[1]} dimensions, but {source}")
                expected, source = int(fields[1]), f"the header says {fields[1]}"
                continue
            if len(fields) < 2:
                raise ValueError(f"{path}: line {number} has a word but no numbers; each line is 'word v1 ... vE'")
            if expected is None:
                expected, source = len(fields) - 1, f"line {number} has {len(fields) - 1}"
            if len(fields) - 1 != expected:
                raise ValueError(f"{path}: line {number} has {len(fields) - 1} numbers after the word, expected "
                                 f"{expected} ({source})")
            seen += 1
            yield number, fields[0], fields[1:]
    if seen == 0:
        raise ValueError(f"{path}: no vectors in the file")
    if announced is not None and announced != seen:
        raise ValueError(f"{path}: the header announces {announced} vectors but the file holds {seen}; "
                         "is it cut short?")


def _decode_line(raw: bytes, path: Path, number: int) -> str:
    if b"\x00" in raw:
        raise ValueError(f"{path}: line {number} holds binary data; only the text format of word2vec and GloVe "
                         "is read (save it with binary=False)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: line {number} is not valid UTF-8 ({error.reason}); binary word2vec files are "
                         "not read, only the text format") from None
