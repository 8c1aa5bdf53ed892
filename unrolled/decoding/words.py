r"""A vocabulary for CTC's prefix beam: transcripts made only of allowed words, as a card-number or PIN reader knows.

The allowed transcripts are the language :math:`W (\,\sqcup\, W)^*`: words of
a list W joined by single spaces :math:`\sqcup` (and the empty transcript).
Over characters it is a trie of W with a loop: a prefix :math:`\ell` splits
at its last space into whole words and a partial word :math:`u` (what
follows the last space, or all of :math:`\ell` if it has none); the
characters allowed next are

.. math::
    A(\ell) = \{c : u c \text{ is a prefix of a word of } W\} \cup
              \{\sqcup : u \in W\}

and every whole word is in W by induction (a space is allowed only after
one). `unrolled.decoding.ctc.prefix_beam_search` grows a prefix by c only
where :math:`c \in A(\ell)` (a repeat that merges leaves the prefix as it is
and is always allowed), so every prefix in the beam is allowed, and at the
end it ranks first the finished ones, those whose partial word is itself
in W: a word-level grammar applied to the characters, exactly, inside the
search.

`DIGITS` is the vocabulary of `--vocabulary digits`: the ten digit words and
"oh", which people say for zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

DIGITS = ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class WordConstraint:
    """The allowed characters after any prefix of id sequences, for the words ``words`` (each a sequence of ids)
    separated by ``space``'s id (module docstring)."""

    def __init__(self, words: Iterable[Sequence[int]], space: int) -> None:
        self.words = frozenset(tuple(word) for word in words)
        if not self.words or () in self.words or any(space in word for word in self.words):
            raise ValueError("a vocabulary needs at least one word, and no empty word or word with a space")
        self.space = space
        self._prefixes: dict[tuple[int, ...], set[int]] = {}  # a word's prefix u -> the characters c with u c a prefix
        for word in self.words:
            for k in range(len(word)):
                self._prefixes.setdefault(word[:k], set()).add(word[k])
        self._allowed: dict[tuple[int, ...], frozenset[int]] = {}  # A(l) by partial word, as they are asked

    def partial(self, prefix: Sequence[int]) -> tuple[int, ...]:
        """u: what follows the prefix's last space."""
        cut = len(prefix) - 1 - list(reversed(prefix)).index(self.space) if self.space in prefix else -1
        return tuple(prefix[cut + 1 :])

    def next(self, prefix: Sequence[int]) -> frozenset[int]:
        """A(prefix): the ids that may follow it."""
        partial = self.partial(prefix)
        if partial not in self._allowed:
            after = set(self._prefixes.get(partial, ()))
            if partial in self.words:
                after.add(self.space)
            self._allowed[partial] = frozenset(after)
        return self._allowed[partial]

    def finished(self, prefix: Sequence[int]) -> bool:
        """True for the empty transcript and for one whose last word is whole (in W)."""
        return not prefix or self.partial(prefix) in self.words


def vocabulary_words(spec: str) -> list[str]:
    """The words of ``--vocabulary``: ``digits`` (`DIGITS`), else a text file's whitespace-separated words."""
    from pathlib import Path

    if spec == "digits":
        return list(DIGITS)
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"--vocabulary takes 'digits' or a text file of words; {spec!r} is neither")
    text = path.read_bytes().decode("utf-8", errors="replace")
    if "\ufffd" in text:
        raise ValueError(f"the vocabulary file {spec!r} is not UTF-8 text")
    words = text.split()
    if not words:
        raise ValueError(f"the vocabulary file {spec!r} holds no words; give one word or more, separated by spaces or "
                         "lines")
    return sorted(set(words))
