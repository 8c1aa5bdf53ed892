"""The NB-weighted n-gram branch: keys, lookup, log-count ratios by hand, and a classifier that trains with it."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from unrolled.apps.classify import ClassifyModel
from unrolled.models.classifier import CNNClassifier, CNNClassifierConfig, RNNClassifier, RNNClassifierConfig
from unrolled.models.nbwide import NBWide, count_ngrams, feature_index, log_count_ratio, ngram_keys


def test_log_count_ratio_by_hand() -> None:
    # n-gram 0 is in 2 sentences of class 0 and none of class 1; n-gram 1 in 1 sentence of class 1. alpha = 1:
    # class 1: p = (1, 2), |p| = 3; q = (3, 1), |q| = 4; r = log((1/3)/(3/4)), log((2/3)/(1/4)).
    counts = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    r = log_count_ratio(counts, alpha=1.0)
    expected = torch.tensor([math.log(4 / 9), math.log(8 / 3)])
    assert torch.allclose(r[:, 1], expected)
    assert torch.allclose(r[:, 0], -expected)  # two classes: one ratio and its negative


def test_keys_by_hand() -> None:
    # V = 4, base 5: unigram a -> a + 1, bigram (a, b) -> (a + 1) * 5 + (b + 1); windows past the length -> -1.
    ids = torch.tensor([[2, 3, 2, 0]])
    keys = ngram_keys(ids, torch.tensor([3]), order=2, vocab_size=4)
    assert keys.tolist() == [[3, 4, 3, -1, 19, 23, -1, -1]]


def test_lookup_counts_each_known_ngram_once() -> None:
    table = torch.tensor([3, 4, 19])  # G = 3; key 23 is unknown
    index = feature_index(torch.tensor([[3, 4, 3, -1, 19, 23, -1, -1]]), table)
    assert sorted(i for i in index[0].tolist() if i < 3) == [0, 1, 2]  # 3 counted once, 23 and -1 dropped


def naive_ratios(sequences: list[list[int]], labels: list[int], order: int) -> dict[tuple[int, ...], float]:
    """r of class 1 for every n-gram, from Python sets: an independent reading of Wang and Manning's formula."""
    grams = [{tuple(s[i : i + k]) for k in range(1, order + 1) for i in range(len(s) - k + 1)} for s in sequences]
    vocabulary = sorted(set().union(*grams))
    p = {g: 1.0 + sum(g in found for found, y in zip(grams, labels, strict=True) if y == 1) for g in vocabulary}
    q = {g: 1.0 + sum(g in found for found, y in zip(grams, labels, strict=True) if y == 0) for g in vocabulary}
    p_total, q_total = sum(p.values()), sum(q.values())
    return {g: math.log((p[g] / p_total) / (q[g] / q_total)) for g in vocabulary}


def test_fitted_ratios_match_a_direct_count() -> None:
    sequences = [[2, 3, 4], [2, 3], [5, 2, 3, 3], [4, 4, 5, 6, 2]]
    labels = [1, 1, 0, 0]
    expected = naive_ratios(sequences, labels, order=2)
    branch = NBWide(vocab_size=7, classes=2, order=2, features=count_ngrams(sequences, 2, 7), beta=0.25)
    branch.fit_ratios(sequences, labels)
    assert branch.keys.numel() == len(expected)
    for gram, value in expected.items():
        key = 0
        for token in gram:
            key = key * 8 + token + 1
        position = int(torch.searchsorted(branch.keys, torch.tensor(key)))
        assert branch.keys[position] == key
        assert branch.ratio[position, 1].item() == pytest.approx(value, abs=1e-6)
    # untrained, the branch scores beta * the sum of each distinct n-gram's ratio
    scores = branch(torch.tensor([[2, 3, 2]]), torch.tensor([3]))
    grams = {(2,), (3,), (2, 3), (3, 2)}
    assert scores[0, 1].item() == pytest.approx(0.25 * sum(expected.get(g, 0.0) for g in grams), abs=1e-5)


@pytest.mark.parametrize("kind", ["rnn", "cnn"])
def test_padding_changes_nothing(kind: str) -> None:
    torch.manual_seed(0)
    sequences, labels = [[2, 3, 4], [5, 6, 2, 3, 3], [4, 4]], [1, 0, 1]
    options: dict[str, Any] = {"vocab_size": 7, "classes": 2, "embedding": 8, "wide_order": 2,
               "wide_features": count_ngrams(sequences, 2, 7)}
    model = (RNNClassifier(RNNClassifierConfig(hidden=5, **options)) if kind == "rnn"
             else CNNClassifier(CNNClassifierConfig(feature_maps=4, widths=[1, 2], **options))).eval()
    assert model.wide is not None
    model.wide.fit_ratios(sequences, labels)
    batch = torch.tensor([[2, 3, 4, 0, 0], [5, 6, 2, 3, 3], [4, 4, 0, 0, 0]])
    together = model(batch, torch.tensor([3, 5, 2]))
    alone = torch.cat([model(torch.tensor([s]), torch.tensor([len(s)])) for s in sequences])
    assert torch.allclose(together, alone, atol=1e-5)


def test_bad_options_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="--wide must be 0"):
        ClassifyModel(wide=-1)
    with pytest.raises(ValueError, match="do not fit 64-bit keys"):
        RNNClassifierConfig(vocab_size=100_000, classes=2, wide_order=4, wide_features=1)
