"""The character n-gram model against a plain-Python Witten-Bell, and shallow fusion in both beam searches."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from unrolled.decoding import beam_search
from unrolled.decoding.ctc import BLANK, prefix_beam_search
from unrolled.decoding.ngram import END, START, CharNgram, LanguageModelFusion, read_texts

TEXTS = [[1, 2, 3], [1, 2], [3, 3, 1, 2], [2], [1, 2, 3, 3]]


def witten_bell(texts: list[list[int]], order: int, vocabulary: int, history: tuple[int, ...], w: int) -> float:
    """p(w | history) straight from the texts: counts found by scanning every padded text for the history."""
    padded = [[START] * (order - 1) + t + [END] for t in texts]
    after = [seq[i + len(history)] for seq in padded for i in range(order - 1 - len(history), len(seq) - len(history))
             if tuple(seq[i : i + len(history)]) == history]
    lower = 1.0 / vocabulary if not history else witten_bell(texts, order, vocabulary, history[1:], w)
    if not after:
        return lower
    kinds = len(set(after))
    return (after.count(w) + kinds * lower) / (len(after) + kinds)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_probabilities_are_witten_bell_and_sum_to_one(order: int) -> None:
    lm = CharNgram.fit(TEXTS, vocabulary=4, order=order)
    histories = [h for n in range(order) for h in itertools.product([START, 1, 2, 3], repeat=n)]
    for history in histories:
        probs = lm.probs(history)
        assert probs.sum() == pytest.approx(1.0, abs=1e-12) and (probs > 0).all()
        for w in range(4):
            assert probs[w] == pytest.approx(witten_bell(TEXTS, order, 4, history, w), rel=1e-12), (history, w)


def test_texts_are_a_distribution_and_the_training_texts_are_likely() -> None:
    lm = CharNgram.fit(TEXTS, vocabulary=4, order=3)
    total = sum(math.exp(lm.score(list(text))) for n in range(12) for text in itertools.product([1, 2, 3], repeat=n))
    assert 0.99 < total <= 1.0  # what is left lies on texts longer than 11
    assert lm.score([1, 2]) > lm.score([2, 1]) and lm.score([1, 2, 3]) > lm.score([3, 2, 1])
    assert CharNgram.from_json(lm.to_json()).score([3, 3, 1]) == lm.score([3, 3, 1])


def test_fitting_refuses_ids_outside_the_vocabulary_and_no_texts() -> None:
    with pytest.raises(ValueError, match=r"ids must lie in 1 \.\. 3"):
        CharNgram.fit([[1, 4]], vocabulary=4)
    with pytest.raises(ValueError, match="ids must lie"):
        CharNgram.fit([[0, 1]], vocabulary=4)
    with pytest.raises(ValueError, match="no texts"):
        CharNgram.fit([], vocabulary=4)


def test_read_texts_encodes_lines_and_counts_the_ones_refused(tmp_path: Path) -> None:
    path = tmp_path / "lm.txt"
    path.write_text("ab  ba\n\n  cab \nabz\n", encoding="utf-8")
    ids = {"a": 1, "b": 2, " ": 3, "c": 4}

    def encode(text: str) -> list[int]:
        if set(text) - set(ids):
            raise ValueError("unknown")
        return [ids[ch] for ch in text]

    assert read_texts(path, encode) == ([[1, 2, 3, 2, 1], [4, 1, 2]], 1)


def collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    merged = [s for t, s in enumerate(path) if t == 0 or s != path[t - 1]]
    return tuple(s for s in merged if s != BLANK)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_wide_fused_prefix_beam_ranks_by_ctc_plus_weighted_lm_plus_bonus(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    log_probs = torch.log_softmax(torch.randn(5, 4, generator=generator, dtype=torch.float64), dim=-1)
    lm = CharNgram.fit(TEXTS, vocabulary=4, order=2)
    weight, bonus = 0.7, 0.3
    sums: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(4), repeat=5):  # log p(y | x) of every transcript, every path summed
        score = sum(float(log_probs[t, s]) for t, s in enumerate(path))
        sums[collapse(path)] = float(np.logaddexp(sums.get(collapse(path), -np.inf), score))
    fused = {y: s + weight * lm.score(list(y)) + bonus * len(y) for y, s in sums.items()}
    best = sorted(fused.items(), key=lambda item: -item[1])[:5]
    found = prefix_beam_search(log_probs, beam=10_000, lm=lm, weight=weight, bonus=bonus)[:5]
    assert [tuple(ids) for ids, _ in found] == [y for y, _ in best]
    for (_, ours), (_, theirs) in zip(found, best, strict=True):
        assert ours == pytest.approx(theirs, rel=1e-9)
    plain = prefix_beam_search(log_probs, beam=10_000)
    assert prefix_beam_search(log_probs, beam=10_000, lm=lm, weight=0.0) == plain


def test_the_language_model_settles_what_the_acoustics_leave_open() -> None:
    # Two steps, each "1 or 3" at even odds; the texts say 1 is followed by 2 far more often than 3 is by 2.
    even = torch.log(torch.tensor([[0.02, 0.48, 0.02, 0.48], [0.02, 0.02, 0.94, 0.02]], dtype=torch.float64))
    lm = CharNgram.fit([[1, 2]] * 9 + [[3, 2]], vocabulary=4, order=2)
    plain = prefix_beam_search(even, beam=8)
    assert plain[0][1] == pytest.approx(plain[1][1]) and {tuple(plain[0][0]), tuple(plain[1][0])} == {(1, 2), (3, 2)}
    assert prefix_beam_search(even, beam=8, lm=lm, weight=1.0)[0][0] == [1, 2]


class TableDecoder:
    """A decoder whose next-token log-probabilities depend only on the step: rows of a fixed table."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table

    def step(self, tokens: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        step = state + 1
        return self.table[step.clamp(max=len(self.table) - 1)], step

    def reorder(self, state: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return state[index]


def test_fusion_adds_the_weighted_lm_to_every_step_of_beam_search() -> None:
    lm = CharNgram.fit(TEXTS, vocabulary=4, order=3)
    table = torch.log_softmax(torch.randn(6, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64), -1)
    weight = 0.8
    fused = LanguageModelFusion(TableDecoder(table), lm, weight)
    log_probs, state = fused.prime(table[0][None], torch.zeros(1, dtype=torch.long))
    hypotheses = beam_search(fused, log_probs, state, beam_size=64, max_length=4, end_token=END)[0]

    def score(tokens: list[int]) -> float:  # the decoder's and the LM's terms, summed by hand
        ids = [*tokens, END]
        return sum(float(table[t, w]) + weight * float(lm.log_probs(lm.history(ids[:t]))[w])
                   for t, w in enumerate(ids))

    ended = [h for h in hypotheses if len(h.tokens) < 4]
    assert ended, "some hypotheses end before the length limit"
    for h in ended:
        assert h.score == pytest.approx(score(h.tokens), rel=1e-9)
    exhaustive = max((list(y) for n in range(4) for y in itertools.product([1, 2, 3], repeat=n)), key=score)
    assert hypotheses[0].tokens == exhaustive
