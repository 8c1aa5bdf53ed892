"""Tagged sentences for the tagger: CoNLL files, and the restoration task (casing and punctuation).

A CoNLL file holds one token a line with its columns, a blank line between
sentences::

    romeo   U.
    is      C
    the     l
    ...
    young   l?
                        <- blank line: the next sentence starts
    -DOCSTART- -X- O    <- document markers (CoNLL-2003) are skipped

The restoration task turns any text into tagging data: each word, lower-cased
and stripped of punctuation, is tagged with its casing and the mark after it,
so that a tagger learns to restore both::

    restoration_tags("ROMEO. Is the day so young?")
    -> (["romeo", "is", "the", "day", "so", "young"], ["U.", "C", "l", "l", "l", "l?"])
    restore_text(tokens, tags) -> "ROMEO. Is the day so young?"
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from unrolled.data.text import read_text

DOCSTART = "-DOCSTART-"
PathLike = str | os.PathLike[str]


@dataclass
class TaggedSentence:
    """A sentence's tokens, their tags (None when untagged), and the line its first token is on (1-based)."""

    tokens: list[str]
    tags: list[str] | None
    line: int


# --- CoNLL files -----------------------------------------------------------------------------------------------------


def read_conll(path: PathLike, *, token_column: int = 0, tag_column: int | None = -1) -> list[TaggedSentence]:
    """The sentences of a CoNLL-style file, in file order.

    One token a line; a line with a TAB is split at TABs (tokens may then hold
    spaces), any other at runs of whitespace. ``token_column`` and
    ``tag_column`` index the columns (negative from the end, so -1 is the
    last); ``tag_column=None`` reads untagged tokens (tags None). Blank lines
    end a sentence; lines starting with "-DOCSTART-" are skipped. A one-line
    ValueError names the file for a missing, empty or non-UTF-8 file and for a
    file without sentences, and the line of a token without its tag column.
    """
    path = Path(path)
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    first = 0
    for number, line in enumerate([*read_text(path).split("\n"), ""], start=1):
        if not line.strip() or line.startswith(DOCSTART):
            if tokens:
                sentences.append(TaggedSentence(tokens, None if tag_column is None else tags, first))
            tokens, tags = [], []
            continue
        fields = [field.strip() for field in (line.split("\t") if "\t" in line else line.split())]
        token, tag = _columns(fields, token_column, tag_column, path, number)
        first = first if tokens else number
        tokens.append(token)
        if tag is not None:
            tags.append(tag)
    if not sentences:
        raise ValueError(f"{path}: no sentences (one token a line, a blank line between sentences)")
    return sentences


def _columns(fields: list[str], token_column: int, tag_column: int | None, path: Path,
             number: int) -> tuple[str, str | None]:
    """The token and the tag of one line's fields."""
    wanted = [token_column] if tag_column is None else [token_column, tag_column]
    resolved = [column + len(fields) if column < 0 else column for column in wanted]
    if any(not 0 <= column < len(fields) for column in resolved) or len(set(resolved)) < len(resolved):
        columns = "column" if tag_column is None else "columns"
        raise ValueError(f"{path}: line {number} has {len(fields)} column{'s' if len(fields) != 1 else ''}, too few "
                         f"for the token and tag {columns} {', '.join(map(str, wanted))}; each line is 'token TAB tag'")
    values = [fields[column] for column in resolved]
    if not all(values):
        raise ValueError(f"{path}: line {number} has an empty {'token' if not values[0] else 'tag'}")
    return values[0], values[1] if tag_column is not None else None


def write_conll(path: PathLike, sentences: Sequence[TaggedSentence]) -> None:
    """Write ``sentences`` as ``token TAB tag`` lines (``token`` alone when untagged), a blank line after each.

    `read_conll` reads the file back to the same tokens and tags; tokens and
    tags must be non-empty, without TABs, line breaks or surrounding spaces.
    """
    lines = []
    for sentence in sentences:
        if not sentence.tokens:
            raise ValueError(f"the sentence of line {sentence.line} has no tokens")
        if sentence.tags is not None and len(sentence.tags) != len(sentence.tokens):
            raise ValueError(f"the sentence of line {sentence.line} has {len(sentence.tokens)} tokens but "
                             f"{len(sentence.tags)} tags")
        for i, token in enumerate(sentence.tokens):
            fields = [token] if sentence.tags is None else [token, sentence.tags[i]]
            for field in fields:
                if not field or field != field.strip() or any(ch in field for ch in "\t\n\r"):
                    raise ValueError(f"cannot write {field!r} (sentence of line {sentence.line}) to a CoNLL file: "
                                     "fields must be non-empty, without TABs, line breaks or surrounding spaces")
            lines.append("\t".join(fields))
        lines.append("")
    Path(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="\n")


# --- the restoration task --------------------------------------------------------------------------------------------

CASES = {"l": "lower case", "C": "capitalised", "U": "all capitals (two letters or more)", "M": "mixed or other"}
MARKS = ".,;:?!"
WORD = re.compile(r"'*[^\W_](?:[^\W_]|')*")  # letters, digits and apostrophes, with at least one letter or digit
MIN_WORDS = 3


def restoration_tags(line: str) -> tuple[list[str], list[str]]:
    """The lower-cased words of ``line`` and the tag of each: its casing, then the mark that follows it.

    A word is a run of letters, digits and apostrophes holding a letter or a
    digit. Its casing: "l" (no capitals), "C" (capitalised: the first letter a
    capital, no other), "U" (all capitals, at least two letters), "M" (any
    other). The mark is the first of . , ; : ? ! between the word and the
    next word (or the end of the line), if any: "l", "C,", "U." ...
    """
    matches = list(WORD.finditer(line))
    tokens, tags = [], []
    for i, match in enumerate(matches):
        word = match.group()
        gap = line[match.end() : matches[i + 1].start() if i + 1 < len(matches) else len(line)]
        mark = next((ch for ch in gap if ch in MARKS), "")
        tokens.append(word.lower())
        tags.append(_case(word) + mark)
    return tokens, tags


def _case(word: str) -> str:
    lower = word.lower()
    if word == lower:
        return "l"
    if word == lower.upper() and sum(ch.isalpha() for ch in word) >= 2:
        return "U"
    if word == _capitalise(lower):
        return "C"
    return "M"


def _capitalise(word: str) -> str:
    """``word`` with its first letter a capital ("'tis" -> "'Tis"; str.capitalize would give "'tis")."""
    first = next((i for i, ch in enumerate(word) if ch.isalpha()), None)
    return word if first is None else word[:first] + word[first].upper() + word[first + 1 :]


def restore_text(tokens: Sequence[str], tags: Sequence[str]) -> str:
    """The text that ``tokens`` and their restoration ``tags`` describe, words joined by single spaces.

    "l" keeps a token, "C" capitalises it, "U" puts it in capitals, "M" keeps
    it (the mixed casing is not recorded); the mark follows the word.
    ``restoration_tags(restore_text(tokens, tags)) == (tokens, tags)`` for
    lower-case words and tags other than "M".
    """
    if len(tokens) != len(tags):
        raise ValueError(f"{len(tokens)} tokens but {len(tags)} tags")
    words = []
    for token, tag in zip(tokens, tags, strict=True):
        if not tag or tag[0] not in CASES or len(tag) > 2 or (len(tag) == 2 and tag[1] not in MARKS):
            raise ValueError(f"{tag!r} is not a restoration tag: a case ({', '.join(CASES)}), then optionally one "
                             f"of {' '.join(MARKS)}")
        word = token.upper() if tag[0] == "U" else _capitalise(token) if tag[0] == "C" else token
        words.append(word + tag[1:])
    return " ".join(words)


def restoration_sentences(text: str, *, min_words: int = MIN_WORDS) -> Iterator[TaggedSentence]:
    """A tagged sentence for every line of ``text`` with at least ``min_words`` words (see `restoration_tags`)."""
    for number, line in enumerate(text.split("\n"), start=1):
        tokens, tags = restoration_tags(line)
        if len(tokens) >= min_words:
            yield TaggedSentence(tokens, tags, number)
