r"""A character n-gram language model (interpolated Witten-Bell), and shallow fusion of it into beam search.

A recogniser hears; a language model knows what text looks like. Decoding
with both (shallow fusion; Hannun et al. 2014, Gulcehre et al. 2015) ranks a
transcript y of the clip x by

.. math::
    \log p(y \mid x) + \lambda \log p_{LM}(y) + \beta\,|y|

where the bonus :math:`\beta` per character offsets the LM's pull towards
short transcripts. `prefix_beam_search` (CTC) adds the LM's term and the
bonus as each prefix grows; `LanguageModelFusion` adds the LM's term to an
attention decoder's steps (its beam counters short transcripts with the GNMT
length penalty instead of a bonus).

The model sees texts as ids: the recogniser's characters 1 .. V-1, and 0 for
the end of the text (the blank of CTC, ``</s>`` of attention). Each text is
read after n - 1 start marks (id -1), and predicts its characters and its
end. With :math:`c(h\,w)` the count of w after the history h (the n - 1 ids
before it; shorter histories drop the oldest id),
:math:`c(h) = \sum_w c(h\,w)`, and :math:`r(h)` the number of distinct ids
seen after h, interpolated Witten-Bell smoothing (Witten and Bell 1991;
Chen and Goodman 1998, section 2.5) is

.. math::
    p(w \mid h) = \frac{c(h\,w) + r(h)\; p(w \mid h')}{c(h) + r(h)}, \qquad
    p(w \mid \varepsilon) = \frac{c(w) + r(\varepsilon) / V}{c(\varepsilon) + r(\varepsilon)}

where h' is h without its oldest id and a history never seen
(:math:`c(h) = 0`) falls back to :math:`p(w \mid h')`. Every distribution sums
to one and gives every id some probability.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

START = -1  # the mark before a text's first id
END = 0  # the id that ends a text
CACHE_LIMIT = 1_000_000  # distributions kept per cache (a 6-gram of a large text has more histories than that)


class CharNgram:
    """Counts of ids after each history of up to ``order - 1`` ids; `log_probs` gives log p(. | history)."""

    def __init__(self, counts: dict[tuple[int, ...], dict[int, int]], vocabulary: int, order: int) -> None:
        if order < 1 or vocabulary < 2:
            raise ValueError(f"an n-gram model needs order >= 1 and at least 2 ids, got {order} and {vocabulary}")
        self.counts, self.vocabulary, self.order = counts, vocabulary, order
        self._cache: dict[tuple[int, ...], NDArray[np.float64]] = {}
        self._log_cache: dict[tuple[int, ...], NDArray[np.float64]] = {}  # the beams ask once per prefix and step

    @classmethod
    def fit(cls, texts: Iterable[Sequence[int]], *, vocabulary: int, order: int = 6) -> CharNgram:
        """Count every n-gram (and every shorter one) of the texts, each read after start marks and ended by END."""
        if order < 1:
            raise ValueError(f"an n-gram model needs order >= 1, got {order}")
        counts: dict[tuple[int, ...], dict[int, int]] = defaultdict(lambda: defaultdict(int))
        seen = 0
        for text in texts:
            ids = [*([START] * (order - 1)), *text, END]
            if any(not 0 < i < vocabulary for i in text):
                raise ValueError(f"ids must lie in 1 .. {vocabulary - 1}, got {list(text)}")
            seen += 1
            for t in range(order - 1, len(ids)):
                for length in range(order):  # the histories of 0 .. order - 1 ids before position t
                    counts[tuple(ids[t - length : t])][ids[t]] += 1
        if not seen:
            raise ValueError("no texts to count")
        return cls({h: dict(c) for h, c in counts.items()}, vocabulary, order)

    def history(self, ids: Sequence[int]) -> tuple[int, ...]:
        """The history that predicts the id after ``ids`` (a text's first ids): its last order - 1, start-padded."""
        keep = self.order - 1
        if keep == 0:
            return ()
        tail = tuple(ids[-keep:])
        return (START,) * (keep - len(tail)) + tail

    def probs(self, history: tuple[int, ...]) -> NDArray[np.float64]:
        """p(. | history), (V,), by the module docstring's recursion; cached per history."""
        found = self._cache.get(history)
        if found is not None:
            return found
        lower = self.probs(history[1:]) if history else np.full(self.vocabulary, 1.0 / self.vocabulary)
        after = self.counts.get(history)
        if not after:
            result = lower
        else:
            counts = np.zeros(self.vocabulary)
            for w, c in after.items():
                counts[w] = c
            total, kinds = counts.sum(), len(after)
            result = (counts + kinds * lower) / (total + kinds)
        if len(self._cache) < CACHE_LIMIT:
            self._cache[history] = result
        return result

    def log_probs(self, history: tuple[int, ...]) -> NDArray[np.float64]:
        """log p(. | history), (V,); cached per history (do not write to it)."""
        found = self._log_cache.get(history)
        if found is None:
            found = np.log(self.probs(history))
            if len(self._log_cache) < CACHE_LIMIT:
                self._log_cache[history] = found
        return found

    def score(self, text: Sequence[int]) -> float:
        """log p(text, then END): the sum of each id's log-probability after its history."""
        ids = list(text)
        return float(sum(math.log(self.probs(self.history(ids[:t]))[w]) for t, w in enumerate([*ids, END])))

    def to_json(self) -> dict[str, Any]:
        return {"vocabulary": self.vocabulary, "order": self.order,
                "counts": [[list(h), sorted(c.items())] for h, c in self.counts.items()]}

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> CharNgram:
        counts = {tuple(h): {int(w): int(c) for w, c in after} for h, after in saved["counts"]}
        return cls(counts, int(saved["vocabulary"]), int(saved["order"]))


class LanguageModelFusion:
    r"""A `unrolled.decoding.Decoder` whose step adds :math:`\lambda \log p_{LM}(w \mid y_{<t})` to the decoder's
    log p(w | ...) for every id w, the end's included.

    The state is (the decoder's state, each hypothesis' ids so far). `prime` turns the decoder's first
    log-probabilities and state into fused ones; `unrolled.decoding.beam_search` then sees a decoder like any
    other, so the hypotheses' scores are the fused sums of the module docstring. There is no bonus here: beam
    search needs scores that never grow, and the GNMT length penalty already counters short transcripts.
    """

    def __init__(self, decoder: Any, lm: CharNgram, weight: float) -> None:
        if weight < 0:
            raise ValueError(f"the language model's weight must be >= 0, got {weight}")
        self.decoder, self.lm, self.weight = decoder, lm, weight

    def _terms(self, histories: list[tuple[int, ...]], like: Tensor) -> Tensor:
        rows = np.stack([self.lm.log_probs(self.lm.history(ids)) for ids in histories])  # (N, V)
        return torch.as_tensor(self.weight * rows, dtype=like.dtype, device=like.device)

    def prime(self, log_probs: Tensor, state: Any) -> tuple[Tensor, Any]:
        histories: list[tuple[int, ...]] = [() for _ in range(log_probs.shape[0])]
        return log_probs + self._terms(histories, log_probs), (state, histories)

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        inner, histories = state
        histories = [(*ids, int(t)) for ids, t in zip(histories, tokens.tolist(), strict=True)]
        log_probs, inner = self.decoder.step(tokens, inner)
        return log_probs + self._terms(histories, log_probs), (inner, histories)

    def reorder(self, state: Any, index: Tensor) -> Any:
        inner, histories = state
        return self.decoder.reorder(inner, index), [histories[i] for i in index.tolist()]


@dataclass(frozen=True)
class Fusion:
    """A language model and its weight lambda and bonus beta for shallow fusion (module docstring; the bonus is
    CTC's alone: attention beams use the length penalty)."""

    lm: CharNgram
    weight: float = 1.0
    bonus: float = 0.0


def read_texts(path: str | os.PathLike[str], encode: Callable[[str], list[int]]) -> tuple[list[list[int]], int]:
    """The ids of each non-empty line of a UTF-8 text file (whitespace runs made one space), and the number of lines
    left out because `encode` refused them (a character the recogniser does not know)."""
    texts, skipped = [], 0
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            text = " ".join(line.split())
            if not text:
                continue
            try:
                texts.append(encode(text))
            except ValueError:
                skipped += 1
    return texts, skipped
