r"""CTC decoding: greedy, prefix beam search (with shallow fusion), and CTC's rescoring of a speller's hypotheses.

A CTC head (`unrolled.models.speech.Recogniser`) gives, at each of S encoder
steps, log p_s over the blank (id `BLANK`, 0) and the characters. A path
:math:`\pi` spells :math:`y = \mathcal{B}(\pi)`: repeats merged, then blanks
removed. Greedy decoding takes the best symbol at each step and
applies :math:`\mathcal{B}`. Prefix beam search (`prefix_beam_search`)
keeps the K most probable transcripts so far instead of paths: for each
prefix :math:`\ell` after step s, :math:`p_b(\ell)` sums the paths that
spell :math:`\ell` and end in a blank, :math:`p_n(\ell)` those that end in
its last character; at step s + 1, with :math:`p = p_{s+1}`,

.. math::
    p_b'(\ell) &\mathrel{+}= (p_b(\ell) + p_n(\ell))\, p(\text{blank}) \\
    p_n'(\ell) &\mathrel{+}= p_n(\ell)\, p(c) \quad (c = \text{the last character of } \ell:
        \text{a repeat merges}) \\
    p_n'(\ell c) &\mathrel{+}= p_b(\ell)\, p(c) \quad (c = \text{last: only a blank parts a repeat}) \\
    p_n'(\ell c) &\mathrel{+}= (p_b(\ell) + p_n(\ell))\, p(c) \quad (c \ne \text{last})

then keeps the K prefixes of largest :math:`p_b + p_n`. With K at least the
number of prefixes it is exact: it finds the most probable transcript, not
the transcript of the most probable path. The searches themselves are
`unrolled.ctc_search`'s (no torch: the runtime runs them too).

With a language model (shallow fusion, `unrolled.decoding.ngram`) each
character a prefix gains adds ``weight`` log p_LM(c | prefix) + ``bonus``.

A joint run (both heads) decodes with either head, or with both
(`joint_scores`; Watanabe et al. 2017 score prefixes the same way during the
search, here the attention beam's finished hypotheses are rescored): the transcript of the K attention hypotheses that
maximises

.. math::
    (1 - \lambda) \log p_{att}(y \mid x) + \lambda \log p_{CTC}(y \mid x)

:math:`\log p_{att}` being the sum of the speller's log-probabilities, ``</s>``
included (and shallow fusion's LM terms where it is on), :math:`\log p_{CTC}`
the forward algorithm's sum over the paths that spell y. CTC gives almost no
probability to a transcript that drops or repeats a word the clip holds, the
speller's typical error.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from unrolled.ctc_search import BLANK, collapse, prefix_beam
from unrolled.decoding.ngram import END, CharNgram
from unrolled.decoding.words import WordConstraint


def joint_scores(log_probs: Tensor, steps: int, hypotheses: Sequence[Sequence[int]], attention: Sequence[float],
                 weight: float) -> list[float]:
    """(1 - lambda) log p_att(y | x) + lambda log p_CTC(y | x) of each hypothesis y of one utterance (module
    docstring): `log_probs` (S, V) its CTC log-probabilities, `steps` its real steps S_b, `attention` each
    hypothesis' log p_att, `weight` lambda. A transcript CTC cannot spell in S_b steps scores -inf."""
    if not hypotheses:
        return []
    count = len(hypotheses)
    lengths = torch.tensor([len(y) for y in hypotheses], dtype=torch.long)
    targets = torch.zeros(count, max(1, int(lengths.max())), dtype=torch.long)
    for n, y in enumerate(hypotheses):
        targets[n, : len(y)] = torch.tensor(list(y), dtype=torch.long)
    rows = log_probs[:steps].to(torch.float64).cpu().unsqueeze(1).expand(-1, count, -1)  # (S_b, K, V)
    nll = F.ctc_loss(rows, targets, torch.full((count,), steps, dtype=torch.long), lengths, blank=BLANK,
                     reduction="none")  # (K,), inf where no path spells y
    return [(1 - weight) * a - weight * float(n) for a, n in zip(attention, nll.tolist(), strict=True)]


def prefix_beam_search(log_probs: Tensor, beam: int, *, lm: CharNgram | None = None, weight: float = 0.0,
                       bonus: float = 0.0, vocabulary: WordConstraint | None = None) -> list[tuple[list[int], float]]:
    """The ``beam`` most probable transcripts of one utterance's log p (S, V), best first, with their log p(y | x).

    As in the module docstring, in log space; ties broken by the prefix, so
    the result does not depend on dictionary order. With a language model
    (shallow fusion, `unrolled.decoding.ngram`): a prefix grown by c gains
    weight log p_LM(c | prefix) + bonus (a repeat that merges gains nothing),
    and the final ranking adds weight log p_LM(end | transcript); the scores
    returned are these fused sums. With a ``vocabulary`` (`unrolled.decoding.words`) a prefix grows only by the
    characters it allows, and the finished transcripts (last word whole) rank before the others.
    """
    table = log_probs.detach().to(torch.float64).cpu().tolist()  # (S, V)
    fused = lm is not None and (weight != 0.0 or bonus != 0.0)

    def gain(prefix: tuple[int, ...]) -> list[float]:
        assert lm is not None
        return (weight * lm.log_probs(lm.history(prefix)) + bonus).tolist()

    found = prefix_beam(table, beam, gain if fused else None,
                        vocabulary.next if vocabulary is not None else None)
    if fused and lm is not None:
        found = [(ids, score + weight * float(lm.log_probs(lm.history(ids))[END])) for ids, score in found]
        found.sort(key=lambda item: (-item[1], item[0]))
    if vocabulary is not None:  # a stable sort: the finished first, each part in its order
        found.sort(key=lambda item: not vocabulary.finished(item[0]))
    return found


def greedy_decode(log_probs: Tensor, steps: Tensor) -> list[list[int]]:
    """B(argmax path) of each utterance: repeats merged, then blanks removed."""
    best = log_probs.argmax(dim=-1).cpu()  # (B, S)
    return [collapse(best[b, :length].tolist()) for b, length in enumerate(steps.tolist())]
