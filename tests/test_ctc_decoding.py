"""CTC decoding (`unrolled.decoding.ctc`): greedy, the prefix beam against every path summed, joint rescoring."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_speech_model import brute_force_nll, collapse, random_log_probs
from unrolled.decoding.ctc import greedy_decode, joint_scores, prefix_beam_search
from unrolled.decoding.words import WordConstraint, vocabulary_words


def test_greedy_decoding_merges_repeats_then_drops_blanks() -> None:
    paths = [[1, 1, 0, 1, 2, 2, 0, 0], [0, 3, 0, 3, 3, 9, 9, 9]]  # the second is 5 steps long: the 9s are padding
    log_probs = torch.full((2, 8, 10), -10.0)
    for b, path in enumerate(paths):
        log_probs[b, torch.arange(8), torch.tensor(path)] = 0.0
    assert greedy_decode(log_probs, torch.tensor([8, 5])) == [[1, 1, 2], [3, 3]]


def labelling_log_probs(log_probs: np.ndarray) -> dict[tuple[int, ...], float]:
    """log p(y | x) of every transcript y, by summing every path (enumerated)."""
    sums: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(log_probs.shape[1]), repeat=len(log_probs)):
        key = tuple(collapse(path))
        sums[key] = np.logaddexp(sums.get(key, -np.inf), sum(log_probs[t, s] for t, s in enumerate(path)))
    return sums


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_wide_enough_prefix_beam_is_exact(seed: int) -> None:
    log_probs = random_log_probs(1, 5, 3, seed=seed)[0]
    exact = labelling_log_probs(log_probs.numpy())
    best = sorted(exact.items(), key=lambda item: -item[1])[:4]
    found = prefix_beam_search(log_probs, beam=1000)[:4]
    assert [tuple(ids) for ids, _ in found] == [ids for ids, _ in best]
    for (_, ours), (_, theirs) in zip(found, best, strict=True):
        assert ours == pytest.approx(theirs, rel=1e-9)


def test_the_beam_finds_the_likeliest_transcript_where_the_best_path_misleads() -> None:
    # Each step: blank 0.4, "a" 0.35, "b" 0.25. The best path is all blanks (the empty transcript, 0.064),
    # but "a" collects more probability over its many paths.
    log_probs = torch.log(torch.tensor([[0.4, 0.35, 0.25]] * 3, dtype=torch.float64))
    assert greedy_decode(log_probs[None], torch.tensor([3])) == [[]]
    found = prefix_beam_search(log_probs, beam=4)
    exact = labelling_log_probs(log_probs.numpy())
    assert found[0][0] == [1] and found[0][1] == pytest.approx(exact[(1,)], rel=1e-9)
    assert exact[(1,)] > exact[()]
    assert len(prefix_beam_search(log_probs, beam=2)) == 2


def test_joint_scores_mix_the_attention_score_with_the_ctc_path_sum() -> None:
    log_probs = random_log_probs(1, 4, 3, seed=5)[0]  # (S, V)
    hypotheses = [[1], [1, 2], [2, 2], [], [1, 1, 1]]  # the last needs 5 steps: CTC cannot spell it in 4
    attention = [-1.0, -2.5, -0.5, -3.0, -0.1]
    mixed = joint_scores(log_probs, 4, hypotheses, attention, 0.3)
    for y, a, got in zip(hypotheses[:4], attention, mixed, strict=False):
        assert got == pytest.approx(0.7 * a - 0.3 * brute_force_nll(log_probs.numpy(), y), rel=1e-9)
    assert mixed[4] == -np.inf
    assert joint_scores(log_probs, 2, [[1]], [-1.0], 0.5)[0] == pytest.approx(
        -0.5 - 0.5 * brute_force_nll(log_probs[:2].numpy(), [1]), rel=1e-9)  # only the real steps count


def allowed_transcript(ids: tuple[int, ...], words: set[tuple[int, ...]], space: int) -> bool:
    """Words of the list joined by single spaces (or nothing): the language, checked by splitting."""
    if not ids:
        return True
    parts, word = [], []
    for symbol in ids:
        if symbol == space:
            parts.append(tuple(word))
            word = []
        else:
            word.append(symbol)
    parts.append(tuple(word))
    return all(part in words for part in parts)


@pytest.mark.parametrize("seed", [0, 3, 7])
def test_a_wide_beam_with_a_vocabulary_finds_the_likeliest_allowed_transcript(seed: int) -> None:
    space, words = 3, {(1, 2), (2,)}  # "ab" and "b", 3 is the space
    log_probs = random_log_probs(1, 6, 4, seed=seed)[0]
    exact = labelling_log_probs(log_probs.numpy())
    allowed = sorted(((ids, p) for ids, p in exact.items() if allowed_transcript(ids, words, space)),
                     key=lambda item: -item[1])
    found = prefix_beam_search(log_probs, beam=10_000, vocabulary=WordConstraint(words, space))
    assert tuple(found[0][0]) == allowed[0][0] and found[0][1] == pytest.approx(allowed[0][1], rel=1e-9)


def test_the_vocabulary_allows_what_its_words_spell() -> None:
    vocabulary = WordConstraint([(1, 2), (2,), (1, 2, 1)], space=3)
    assert vocabulary.next(()) == {1, 2}
    assert vocabulary.next((1, 2)) == {1, 3}  # "ab" is whole, and "aba" goes on
    assert vocabulary.next((1, 2, 3, 2)) == {3}
    assert vocabulary.next((2, 2)) == frozenset()
    assert vocabulary.finished((1, 2, 3, 2)) and not vocabulary.finished((1,)) and vocabulary.finished(())
    with pytest.raises(ValueError, match="no empty word"):
        WordConstraint([(1,), ()], space=3)


def test_vocabulary_words_are_digits_or_a_files_words(tmp_path: Path) -> None:
    assert "oh" in vocabulary_words("digits") and "zero" in vocabulary_words("digits")
    (tmp_path / "words.txt").write_text("yes no\nyes\n")
    assert vocabulary_words(str(tmp_path / "words.txt")) == ["no", "yes"]
    with pytest.raises(ValueError,
                       match=r"--vocabulary takes 'digits' or a text file of words; '\S+missing\.txt' is neither"):
        vocabulary_words(str(tmp_path / "missing.txt"))
