r"""CTC's searches over a plain table of log-probabilities, without torch: the training side and the runtime share them.

A table holds, at each of S steps, log p_s over the blank (id `BLANK`, 0)
and the characters. `collapse` is :math:`\mathcal{B}`: repeats merged, then
blanks removed. `prefix_beam` keeps the K most probable transcripts, with
:math:`p_b(\ell)` and :math:`p_n(\ell)` the paths that spell prefix
:math:`\ell` and end in a blank or in its last character; at step s + 1,
with :math:`p = p_{s+1}`,

.. math::
    p_b'(\ell) &\mathrel{+}= (p_b(\ell) + p_n(\ell))\, p(\text{blank}) \\
    p_n'(\ell) &\mathrel{+}= p_n(\ell)\, p(c) \quad (c = \text{the last character of } \ell) \\
    p_n'(\ell c) &\mathrel{+}= p_b(\ell)\, p(c) \quad (c = \text{last: only a blank parts a repeat}) \\
    p_n'(\ell c) &\mathrel{+}= (p_b(\ell) + p_n(\ell))\, p(c) \quad (c \ne \text{last})

then keeps the K prefixes of largest :math:`p_b + p_n` (ties: the smaller
prefix). ``gain(prefix)``, where given, adds a score per character to each
symbol a prefix gains (shallow fusion's weighted LM log-probability and
bonus, `unrolled.decoding.ctc`); ``allowed(prefix)``, where given, is the set
of symbols the prefix may grow by (a vocabulary, `unrolled.decoding.words`: a
repeat that merges leaves the prefix as it is and is always allowed). See
`unrolled.decoding.ctc` for the theory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence, Set

BLANK = 0  # CTC's blank symbol, id 0 of every speech alphabet

Gain = Callable[[tuple[int, ...]], Sequence[float]]
Allowed = Callable[[tuple[int, ...]], Set[int]]


def collapse(path: Sequence[int]) -> list[int]:
    """B(path): repeated symbols merged, then blanks removed (``aa_ab_`` -> ``aab``)."""
    return [s for t, s in enumerate(path) if s != BLANK and (t == 0 or s != path[t - 1])]


def prefix_beam(table: Sequence[Sequence[float]], beam: int, gain: Gain | None = None,
                allowed: Allowed | None = None) -> list[tuple[list[int], float]]:
    """The ``beam`` most probable prefixes after the last step of ``table`` (S, V), best first, with log p (module
    docstring; plus the gains where ``gain`` is given, and grown only as ``allowed`` allows where it is given)."""
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}  # prefix -> (log p_b, log p_n)
    for row in table:
        grown: dict[tuple[int, ...], list[float]] = {}
        for prefix, (blank, last) in beams.items():
            _extend(grown, prefix, blank=logsum(blank, last) + row[BLANK])
            extra = gain(prefix) if gain is not None else None
            permitted = allowed(prefix) if allowed is not None else None
            for symbol in range(1, len(row)):
                bonus = extra[symbol] if extra is not None else 0.0
                grows = permitted is None or symbol in permitted
                if prefix and symbol == prefix[-1]:
                    _extend(grown, prefix, last=last + row[symbol])  # the repeat merges into the prefix
                    if grows:
                        _extend(grown, (*prefix, symbol), last=blank + row[symbol] + bonus)  # a blank parted them
                elif grows:
                    _extend(grown, (*prefix, symbol), last=logsum(blank, last) + row[symbol] + bonus)
        ranked = sorted(grown.items(), key=lambda item: (-logsum(*item[1]), item[0]))[:beam]
        beams = {prefix: (scores[0], scores[1]) for prefix, scores in ranked}
    return [(list(prefix), logsum(*scores)) for prefix, scores in beams.items()]


def _extend(grown: dict[tuple[int, ...], list[float]], prefix: tuple[int, ...], *, blank: float = -math.inf,
            last: float = -math.inf) -> None:
    """Add probability (log) to a prefix's blank-ending and character-ending sums."""
    scores = grown.setdefault(prefix, [-math.inf, -math.inf])
    scores[0], scores[1] = logsum(scores[0], blank), logsum(scores[1], last)


def logsum(a: float, b: float) -> float:
    """log(e^a + e^b), exact at -inf."""
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    top = max(a, b)
    return top + math.log1p(math.exp(-abs(a - b)))
