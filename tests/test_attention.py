"""Attention: every score function against a plain loop over (query, memory position), masking, one step."""

from __future__ import annotations

import math

import pytest
import torch

from unrolled.attention import KINDS, Attention, length_mask

B, T, S, DQ, DK = 3, 4, 6, 5, 7


def make(kind: str, seed: int = 0) -> Attention:
    torch.manual_seed(seed)
    same = kind in ("dot", "scaled")
    return Attention(DQ, DQ if same else DK, kind, hidden=8 if kind == "additive" else None).double()


def inputs(attention: Attention, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    queries = torch.randn(B, T, attention.query_size, generator=generator, dtype=torch.float64)
    memory = torch.randn(B, S, attention.memory_size, generator=generator, dtype=torch.float64)
    return queries, memory


def loop_score(attention: Attention, q: torch.Tensor, k: torch.Tensor) -> float:
    """One score from the formula, vectors only."""
    if attention.kind == "dot":
        return float(sum(a * b for a, b in zip(q.tolist(), k.tolist(), strict=True)))
    if attention.kind == "scaled":
        return float(q.dot(k)) / math.sqrt(len(k))
    if attention.kind == "general":
        w = attention.linear_in.weight  # (D_q, D_k)
        return float(sum(q[i] * w[i, j] * k[j] for i in range(len(q)) for j in range(len(k))))
    hidden = attention.query_layer.weight @ q + attention.memory_layer.weight @ k + attention.memory_layer.bias
    return float(attention.v.dot(torch.tanh(hidden)))


def loop_attention(attention: Attention, queries: torch.Tensor, memory: torch.Tensor,
                   lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    context = torch.zeros(B, T, attention.memory_size, dtype=torch.float64)
    weights = torch.zeros(B, T, S, dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            scores = [loop_score(attention, queries[b, t], memory[b, j]) for j in range(lengths[b])]
            top = max(scores)
            exps = [math.exp(s - top) for s in scores]
            for j, e in enumerate(exps):
                weights[b, t, j] = e / sum(exps)
                context[b, t] += weights[b, t, j] * memory[b, j]
    return context, weights


@pytest.mark.parametrize("kind", KINDS)
def test_matches_the_formula_with_padding_masked(kind: str) -> None:
    attention = make(kind)
    queries, memory = inputs(attention)
    lengths = [6, 3, 1]
    with torch.no_grad():
        context, weights = attention(queries, memory, length_mask(torch.tensor(lengths), S))
        expected_context, expected_weights = loop_attention(attention, queries, memory, lengths)
    assert torch.allclose(weights, expected_weights, atol=1e-12)
    assert torch.allclose(context, expected_context, atol=1e-12)
    assert bool((weights[1, :, 3:] == 0).all()) and bool((weights[2, :, 1:] == 0).all())
    assert torch.allclose(weights.sum(-1), torch.ones(B, T, dtype=torch.float64))


@pytest.mark.parametrize("kind", KINDS)
def test_padding_content_never_matters(kind: str) -> None:
    attention = make(kind)
    queries, memory = inputs(attention)
    mask = length_mask(torch.tensor([2, 5, 6]), S)
    noisy = memory.clone()
    noisy[~mask] = 1e3
    first = attention(queries, memory, mask)
    second = attention(queries, noisy, mask)
    assert torch.allclose(first[0], second[0]) and torch.allclose(first[1], second[1])


@pytest.mark.parametrize("kind", KINDS)
def test_one_step_equals_a_step_of_the_sequence(kind: str) -> None:
    attention = make(kind)
    queries, memory = inputs(attention)
    mask = length_mask(torch.tensor([4, 6, 2]), S)
    context, weights = attention(queries, memory, mask)
    step_context, step_weights = attention(queries[:, 2], memory, mask)
    assert step_context.shape == (B, attention.memory_size) and step_weights.shape == (B, S)
    assert torch.allclose(step_context, context[:, 2]) and torch.allclose(step_weights, weights[:, 2])


@pytest.mark.parametrize("kind", ["general", "additive"])
def test_gradients_check(kind: str) -> None:
    attention = make(kind)
    queries, memory = inputs(attention)
    queries.requires_grad_(True)
    memory.requires_grad_(True)
    mask = length_mask(torch.tensor([3, 6, 1]), S)
    assert torch.autograd.gradcheck(lambda q, m: attention(q, m, mask), (queries, memory))


def test_without_a_mask_every_position_counts() -> None:
    attention = make("dot")
    queries, memory = inputs(attention)
    expected = loop_attention(attention, queries, memory, [S] * B)
    got = attention(queries, memory)
    assert torch.allclose(got[0], expected[0]) and torch.allclose(got[1], expected[1])


def test_bad_input_says_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="one of dot, general, scaled, additive"):
        Attention(4, 4, "cosine")
    with pytest.raises(ValueError, match="one size"):
        Attention(4, 6, "dot")
    attention = make("general")
    queries, memory = inputs(attention)
    with pytest.raises(ValueError, match="memory must be"):
        attention(queries, memory[..., :3])
    with pytest.raises(ValueError, match="at least one unmasked"):
        attention(queries, memory, length_mask(torch.tensor([3, 0, 2]), S))
    with pytest.raises(ValueError, match="bool"):
        attention(queries, memory, torch.ones(B, S))


@pytest.mark.parametrize("kind", KINDS)
def test_precomputed_keys_give_the_same_result(kind: str) -> None:
    attention = make(kind)
    queries, memory = inputs(attention)
    mask = length_mask(torch.tensor([6, 2, 1]), S)
    keys = attention.keys(memory)
    assert (keys is None) == (kind in ("dot", "scaled"))
    plain = attention(queries, memory, mask)
    cached = attention(queries, memory, mask, keys)
    for a, b in zip(plain, cached, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
