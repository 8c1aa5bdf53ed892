r"""Auto-reply suggestions: k short replies, no two of them near-duplicates, from a scored n-best list.

The rule (greedy, best first). Each candidate's words are its lower-cased runs of
letters and digits, W(r). Two replies r and s are near-duplicates when

.. math::
    W(r) = W(s) \quad\text{or}\quad J(r, s) = \frac{|W(r) \cap W(s)|}{|W(r) \cup W(s)|} \ge \tau
    \quad\text{or}\quad W(r) \subseteq W(s) \text{ or } W(s) \subseteq W(r) \ (\text{both non-empty})

with :math:`\tau` = 0.5 by default: "I am fine." and "i am fine" (same words),
"I am fine thanks" and "I am fine" (one inside the other), "what is your
name" and "what is his name" (J = 3/5) are near-duplicates; "yes" and "no"
are not. Walking the candidates from the highest score down, a candidate is
kept when it has at least one word and at most `max_words` words (short) and
is no near-duplicate of any reply kept before it; the walk stops at k. So the
first suggestion is always the best-scoring short candidate, and each later
one the best that says something else. Candidates come from a beam several
times wider than k (the service asks for n-best = beam = 4k, at most
``--max-beam``), so there is usually enough to choose from; fewer than k
are returned when there is not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import combinations

NEAR_DUPLICATE = 0.5  # tau: the word-set Jaccard similarity from which two replies count as the same reply
MAX_WORDS = 12  # a suggestion is short: at most this many words
WORD = re.compile(r"[^\W_]+")


def words(text: str) -> frozenset[str]:
    """The set of lower-cased runs of letters and digits in `text`."""
    return frozenset(WORD.findall(text.lower()))


def near_duplicates(a: str, b: str, *, threshold: float = NEAR_DUPLICATE) -> bool:
    """Whether two replies are near-duplicates: same words, one's words inside the other's, or Jaccard >= tau."""
    first, second = words(a), words(b)
    if first == second:
        return True
    if not first or not second:
        return False
    if first <= second or second <= first:
        return True
    return len(first & second) / len(first | second) >= threshold


def diverse(candidates: Sequence[tuple[str, float]], k: int, *, threshold: float = NEAR_DUPLICATE,
            max_words: int = MAX_WORDS) -> list[tuple[str, float]]:
    """Up to `k` of the (text, score) candidates: short, pairwise not near-duplicates, best score first (the
    rule of the module docstring). Equal scores keep the candidates' order."""
    if k < 1:
        raise ValueError(f"k must be a positive number of replies, got {k}")
    kept: list[tuple[str, float]] = []
    for text, score in sorted(candidates, key=lambda candidate: -candidate[1]):
        if not 1 <= len(WORD.findall(text.lower())) <= max_words:
            continue
        if any(near_duplicates(text, other, threshold=threshold) for other, _ in kept):
            continue
        kept.append((text, score))
        if len(kept) == k:
            break
    return kept


def has_near_duplicates(replies: Sequence[str], *, threshold: float = NEAR_DUPLICATE) -> bool:
    """Whether any two of `replies` are near-duplicates (what the benchmark counts)."""
    return any(near_duplicates(a, b, threshold=threshold) for a, b in combinations(replies, 2))
