"""CTC decoding (`unrolled.decoding.ctc`): greedy, the prefix beam against every path summed, joint rescoring."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from tests.test_speech_model import brute_force_nll, collapse, random_log_probs
from unrolled.decoding.ctc import greedy_decode, joint_scores, prefix_beam_search


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
