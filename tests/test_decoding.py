"""Decoding against known answers: filters by hand, greedy and sampling on Markov chains, beam search by brute force."""

from __future__ import annotations

import math
from collections import OrderedDict, namedtuple
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from unrolled.decoding import (
    Hypothesis,
    beam_search,
    filter_logits,
    gnmt_penalty,
    greedy,
    greedy_misses,
    index_state,
    repeat_hypotheses,
    sample,
    shared_rows,
)

END = 0  # the end token of every test vocabulary

# A 4-token chain without ties; its argmax path is 0 -> 1 -> 2 -> 0 -> 1 ..., and 3 -> 3.
CHAIN = torch.tensor(
    [
        [0.12, 0.60, 0.20, 0.08],
        [0.22, 0.10, 0.50, 0.18],
        [0.65, 0.15, 0.12, 0.08],
        [0.30, 0.20, 0.10, 0.40],
    ],
    dtype=torch.float64,
)

CHI2_999 = dict(enumerate([10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88, 29.59, 31.26, 32.91], 1))
"""The chi-square distribution's 0.999 quantile by degrees of freedom: a fit fails by chance once in 1000."""


class Chain:
    """A Markov chain as a decoder: the state is the last token, the next token's log-probs a row of the table."""

    def __init__(self, table: Tensor) -> None:
        self.log_table = table.log()
        self.calls = 0
        self.reorders = 0

    def start(self, tokens: list[int]) -> tuple[Tensor, Tensor]:
        """log-probs (N, V) and state after priming row i with tokens[i]."""
        state = torch.tensor(tokens)
        return self.log_table[state], state

    def step(self, tokens: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        assert tokens.shape == state.shape and tokens.dim() == 1 and tokens.dtype == torch.int64
        self.calls += 1
        return self.log_table[tokens], tokens

    def reorder(self, state: Tensor, index: Tensor) -> Tensor:
        self.reorders += 1
        return index_state(state, index)


def sharpen(recurrent: nn.Module, out: nn.Linear) -> None:
    """Scale the recurrent weights by 3 and the read-out by 4: states that remember, peaked predictions."""
    for parameter in recurrent.parameters():
        parameter.mul_(3.0)
    out.weight.mul_(4.0)


class GRUDecoder(nn.Module):
    """A tiny character model: embedding, GRU cell, linear read-out; state h (N, H)."""

    def __init__(self, vocabulary: int = 6, hidden: int = 8, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # seeded weights, the global generator left as it was
            torch.manual_seed(seed)
            self.embed = nn.Embedding(vocabulary, hidden)
            self.cell = nn.GRUCell(hidden, hidden)
            self.out = nn.Linear(hidden, vocabulary)
        with torch.no_grad():  # livelier than torch's initialisation, so that the inputs' searches differ
            sharpen(self.cell, self.out)
        self.rows: list[int] = []  # hypotheses per step

    def prime(self, prefixes: Tensor) -> tuple[Tensor, Tensor]:
        """Run prefixes (N, P) through the model: log-probs (N, V) of the next token and the state."""
        state = torch.zeros(prefixes.shape[0], self.cell.hidden_size)
        log_probs = torch.empty(0)
        for column in prefixes.unbind(1):
            log_probs, state = self.step(column, state)
        return log_probs, state

    def step(self, tokens: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        self.rows.append(tokens.shape[0])
        h = self.cell(self.embed(tokens), state)
        return self.out(h).log_softmax(dim=-1), h

    def reorder(self, state: Tensor, index: Tensor) -> Tensor:
        return index_state(state, index)


class LSTMDecoder(nn.Module):
    """A tiny stacked LSTM in torch's layout: state (h, c), each (L, N, H), hypotheses along dim 1."""

    def __init__(self, vocabulary: int = 5, hidden: int = 8, seed: int = 1) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.embed = nn.Embedding(vocabulary, hidden)
            self.lstm = nn.LSTM(hidden, hidden, num_layers=2)
            self.out = nn.Linear(hidden, vocabulary)
        with torch.no_grad():
            sharpen(self.lstm, self.out)
        self.rows: list[int] = []

    def prime(self, prefixes: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        output, state = self.lstm(self.embed(prefixes.T))  # (P, N, H)
        return self.out(output[-1]).log_softmax(dim=-1), state

    def step(self, tokens: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        self.rows.append(tokens.shape[0])
        output, state = self.lstm(self.embed(tokens).unsqueeze(0), state)
        return self.out(output[0]).log_softmax(dim=-1), state

    def reorder(self, state: tuple[Tensor, Tensor], index: Tensor) -> tuple[Tensor, Tensor]:
        return index_state(state, index, dim=1)


def random_table(vocabulary: int, seed: int, end_weight: float = 1.0) -> Tensor:
    """A random transition table (V, V) without ties; end_weight scales the end token's column (0: never ends)."""
    generator = torch.Generator().manual_seed(seed)
    table = (1.5 * torch.randn(vocabulary, vocabulary, generator=generator, dtype=torch.float64)).softmax(dim=1)
    table[:, END] *= end_weight
    return table / table.sum(dim=1, keepdim=True)


def chi_square(observed: Tensor, expected: Tensor) -> tuple[float, int]:
    """Pearson's statistic over the cells expected to be hit, and its degrees of freedom (one row sums fixed)."""
    hit = expected > 0
    assert observed[~hit].sum() == 0, "a token of probability 0 was drawn"
    statistic = ((observed[hit] - expected[hit]) ** 2 / expected[hit]).sum().item()
    return statistic, int(hit.sum().item()) - int((expected.sum(dim=1) > 0).sum().item())


def bigrams(starts: Tensor, tokens: Tensor, vocabulary: int) -> Tensor:
    """Counts (V, V) of every transition in the rows: start -> first token -> second ..."""
    path = torch.cat([starts.unsqueeze(1), tokens], dim=1)
    pairs = path[:, :-1] * vocabulary + path[:, 1:]
    return torch.bincount(pairs.reshape(-1), minlength=vocabulary * vocabulary).view(vocabulary, vocabulary).double()


# filter_logits


def probs_of(log_probs: Tensor, **options: Any) -> Tensor:
    return filter_logits(log_probs.log(), **options).exp()


def test_temperature_scales_the_log_probabilities() -> None:
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    for tau in (0.5, 1.0, 2.0, 10.0):
        expected = p ** (1 / tau) / (p ** (1 / tau)).sum()
        torch.testing.assert_close(probs_of(p, temperature=tau), expected)
    sharp = torch.tensor([0.25 / 0.38, 0.09 / 0.38, 0.04 / 0.38], dtype=torch.float64)  # tau = 1/2: p^2 renormalised
    torch.testing.assert_close(probs_of(p, temperature=0.5), sharp)


def test_filter_accepts_unnormalised_logits() -> None:
    logits = torch.tensor([[3.0, -1.0, 0.5, 7.0], [0.0, 0.0, 1.0, 2.0]])
    torch.testing.assert_close(filter_logits(logits), logits.log_softmax(dim=-1))
    torch.testing.assert_close(filter_logits(logits, temperature=2.0), (logits / 2).log_softmax(dim=-1))


def test_top_k_keeps_exactly_k() -> None:
    p = torch.tensor([0.1, 0.4, 0.2, 0.3], dtype=torch.float64)
    torch.testing.assert_close(probs_of(p, top_k=2), torch.tensor([0, 4 / 7, 0, 3 / 7], dtype=torch.float64))
    torch.testing.assert_close(probs_of(p, top_k=1), torch.tensor([0.0, 1, 0, 0], dtype=torch.float64))
    torch.testing.assert_close(probs_of(p, top_k=4), p)
    torch.testing.assert_close(probs_of(p, top_k=100), p)
    tied = torch.full((4,), 0.25, dtype=torch.float64)
    kept = probs_of(tied, top_k=2)
    assert (kept > 0).sum() == 2
    torch.testing.assert_close(kept[kept > 0], torch.tensor([0.5, 0.5], dtype=torch.float64))


@pytest.mark.parametrize(
    ("top_p", "expected"),
    [
        (0.3, [0, 1, 0, 0]),  # the top token alone (0.4) exceeds p: it stays, alone
        (0.4 - 1e-9, [0, 1, 0, 0]),
        (0.6, [0, 4 / 7, 0, 3 / 7]),  # 0.4 < 0.6 <= 0.4 + 0.3
        (0.75, [0, 4 / 9, 2 / 9, 3 / 9]),  # 0.7 < 0.75 <= 0.9
        (0.95, [0.1, 0.4, 0.2, 0.3]),  # 0.9 < 0.95: all four
        (1.0, [0.1, 0.4, 0.2, 0.3]),
    ],
)
def test_top_p_keeps_the_smallest_nucleus(top_p: float, expected: list[float]) -> None:
    p = torch.tensor([0.1, 0.4, 0.2, 0.3], dtype=torch.float64)  # unsorted: the nucleus is scattered back
    torch.testing.assert_close(probs_of(p, top_p=top_p), torch.tensor(expected, dtype=torch.float64))


def test_top_p_stops_as_soon_as_the_sum_reaches_p() -> None:
    uniform = torch.zeros(2, 8)  # probabilities exactly 1/8: the cumulative sums are exact
    for top_p, count in ((0.5, 4), (0.5 + 1e-6, 5), (0.125, 1), (1 / 8 + 1e-6, 2)):
        kept = filter_logits(uniform, top_p=top_p) > -math.inf
        assert (kept.sum(dim=1) == count).all(), (top_p, kept)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_a_top_p_too_small_for_the_dtype_still_keeps_the_top_token(dtype: torch.dtype) -> None:
    """A p that rounds to 0 in the tensor's dtype (found by the service's fuzz: 8.6e-126) is a p near 0."""
    p = torch.tensor([[0.1, 0.4, 0.2, 0.3]], dtype=dtype)
    for top_p in (8.6e-126, 1e-300, 5e-324):
        filtered = filter_logits(p.log(), top_p=top_p)
        assert torch.equal(filtered.exp(), torch.tensor([[0, 1, 0, 0]], dtype=dtype)), (top_p, filtered)


def test_filters_apply_in_order_temperature_top_k_top_p() -> None:
    p = torch.tensor([0.1, 0.4, 0.2, 0.3], dtype=torch.float64)
    # top_k=3 leaves 0.4, 0.3, 0.2 over 0.9: 0.444 < 0.75 <= 0.778, so the nucleus has two; without top_k it has three
    two, three = torch.tensor([0, 4 / 7, 0, 3 / 7]).double(), torch.tensor([0, 4 / 9, 2 / 9, 3 / 9]).double()
    torch.testing.assert_close(probs_of(p, top_k=3, top_p=0.75), two)
    torch.testing.assert_close(probs_of(p, top_p=0.75), three)
    # tau = 1/2 makes it 0.01, 0.16, 0.04, 0.09 over 0.30: 0.533 < 0.6 <= 0.833
    torch.testing.assert_close(
        probs_of(p, temperature=0.5, top_p=0.6), torch.tensor([0, 16 / 25, 0, 9 / 25], dtype=torch.float64)
    )


def test_filter_rows_are_independent_and_renormalised() -> None:
    generator = torch.Generator().manual_seed(0)
    log_probs = torch.randn(64, 50, generator=generator).log_softmax(dim=-1)
    combined = {"temperature": 1.3, "top_k": 20, "top_p": 0.9}
    for options in ({}, {"temperature": 0.7}, {"top_k": 5}, {"top_p": 0.5}, combined):
        filtered = filter_logits(log_probs, **options)
        torch.testing.assert_close(filtered.logsumexp(dim=-1), torch.zeros(64))
        for row in (0, 17, 63):
            torch.testing.assert_close(filtered[row], filter_logits(log_probs[row], **options))
    assert ((filter_logits(log_probs, top_k=5) > -math.inf).sum(dim=-1) == 5).all()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"temperature": 0.0}, "temperature must be positive and finite, got 0; use greedy"),
        ({"temperature": -1.0}, "temperature must be positive and finite, got -1"),
        ({"temperature": math.inf}, "temperature must be positive and finite, got inf"),
        ({"temperature": math.nan}, "temperature must be positive and finite, got nan"),
        ({"top_k": 0}, "top_k must be at least 1, got 0"),
        ({"top_k": -3}, "top_k must be at least 1, got -3"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\], got 0"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\], got 1.5"),
        ({"top_p": math.nan}, r"top_p must be in \(0, 1\], got nan"),
    ],
)
def test_filter_rejects_bad_options(options: dict[str, Any], message: str) -> None:
    log_probs = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=message) as error:
        filter_logits(log_probs, **options)
    assert "\n" not in str(error.value)
    chain = Chain(CHAIN)
    with pytest.raises(ValueError, match=message):
        sample(chain, *chain.start([0]), length=3, **options)


# greedy and sampling on a Markov chain


def test_greedy_follows_the_argmax_path() -> None:
    chain = Chain(CHAIN)
    tokens = greedy(chain, *chain.start([0, 3, 2]), length=7)
    assert tokens.tolist() == [[1, 2, 0, 1, 2, 0, 1], [3, 3, 3, 3, 3, 3, 3], [0, 1, 2, 0, 1, 2, 0]]
    assert chain.calls == 6
    assert torch.equal(tokens, sample(Chain(CHAIN), *chain.start([0, 3, 2]), length=7, greedy=True))


def test_greedy_misses_counts_outputs_that_match_no_reference() -> None:
    chain = Chain(CHAIN)  # greedy from 0: 1 2 <end>; from 3: 3 3 3 ... never ending; from 2: <end> at once
    references = [[[9, 1, 2, END]], [[9, 3, 3, END]], [[9, 7, END], [9, END]]]
    assert greedy_misses(chain, *chain.start([0, 3, 2]), references, end_token=END) == 1
    assert greedy_misses(chain, *chain.start([0, 3, 2]), [[[9, 1, END]], [[9, END]], [[9, 4, END]]],
                         end_token=END) == 3


@pytest.mark.parametrize("length", [1, 2, 5])
def test_step_runs_length_minus_one_times_and_on_step_length_times(length: int) -> None:
    chain = Chain(CHAIN)
    seen: list[Tensor] = []
    generator = torch.Generator().manual_seed(0)
    tokens = sample(chain, *chain.start([0, 1, 2]), length=length, generator=generator, on_step=seen.append)
    assert tokens.shape == (3, length) and tokens.dtype == torch.int64
    assert chain.calls == length - 1
    assert len(seen) == length and all(step.shape == (3,) for step in seen)
    assert torch.equal(torch.stack(seen, dim=1), tokens)


def test_length_and_shapes_are_checked() -> None:
    chain = Chain(CHAIN)
    with pytest.raises(ValueError, match="length must be at least 1, got 0"):
        sample(chain, *chain.start([0]), length=0)
    with pytest.raises(ValueError, match=r"log_probs must be \(N, V\), got shape \(4,\)"):
        sample(chain, chain.log_table[0], torch.tensor(0), length=2)
    with pytest.raises(ValueError, match=r"end_token must be a token in 0..3, got 4"):
        sample(chain, *chain.start([0]), length=2, end_token=4)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"temperature": 0.5},
        {"temperature": 2.0},
        {"top_k": 2},
        {"top_p": 0.75},
        {"temperature": 0.8, "top_k": 3, "top_p": 0.9},
    ],
)
def test_sampled_transitions_match_the_chain(options: dict[str, Any]) -> None:
    """N = 4000 rows drawn in one batch: every row's transitions are draws from the (filtered) table."""
    chain = Chain(CHAIN)
    starts = torch.arange(4000) % 4
    generator = torch.Generator().manual_seed(1234)
    tokens = sample(chain, chain.log_table[starts], starts, length=6, generator=generator, **options)
    counts = bigrams(starts, tokens, 4)
    table = filter_logits(chain.log_table, **options).exp()
    statistic, dof = chi_square(counts, counts.sum(dim=1, keepdim=True) * table)
    assert statistic < CHI2_999[dof], (statistic, dof)
    first = torch.bincount(tokens[starts == 0, 0], minlength=4).double().unsqueeze(0)  # the first draw alone
    statistic, dof = chi_square(first, first.sum() * table[:1])
    assert statistic < CHI2_999[dof], (statistic, dof)


def test_sampling_is_reproducible_and_rows_differ() -> None:
    chain = Chain(CHAIN)
    start = chain.start([0] * 50)
    first = sample(chain, *start, length=20, generator=torch.Generator().manual_seed(7))
    again = sample(chain, *start, length=20, generator=torch.Generator().manual_seed(7))
    other = sample(chain, *start, length=20, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert len({tuple(row) for row in first.tolist()}) > 40  # 50 rows from one prime, not one row copied


def test_cold_or_cut_sampling_is_greedy() -> None:
    chain = Chain(CHAIN)
    start = chain.start([0, 1, 2, 3] * 5)
    expected = greedy(chain, *start, length=12)
    for options in ({"top_k": 1}, {"temperature": 1e-3}, {"top_p": 1e-6}, {"temperature": 0.01, "top_p": 0.5}):
        generator = torch.Generator().manual_seed(3)
        assert torch.equal(sample(chain, *start, length=12, generator=generator, **options), expected), options


def test_greedy_stops_when_every_row_has_ended() -> None:
    chain = Chain(CHAIN)
    seen: list[Tensor] = []
    tokens = greedy(chain, *chain.start([0, 1]), length=10, end_token=END, on_step=seen.append)
    assert tokens.tolist() == [[1, 2, 0], [2, 0, 0]]  # row 1 ended first and repeats the end token
    assert chain.calls == 2 and len(seen) == 3
    never = greedy(chain, *chain.start([0, 3]), length=10, end_token=END)  # 3 -> 3 -> ... never ends
    assert never.tolist() == [[1, 2, 0, 0, 0, 0, 0, 0, 0, 0], [3] * 10]


def test_sampled_rows_keep_the_end_token() -> None:
    chain = Chain(CHAIN)
    generator = torch.Generator().manual_seed(5)
    tokens = sample(chain, *chain.start([1, 2, 3] * 100), length=40, generator=generator, end_token=END)
    width = tokens.shape[1]
    assert chain.calls == width - 1
    is_end = tokens == END
    assert is_end.any(dim=1).all(), "every row ended (the chain ends with probability near 1 in 40 steps)"
    first_end = is_end.int().argmax(dim=1)
    after = torch.arange(width).unsqueeze(0) >= first_end.unsqueeze(1)
    assert torch.equal(is_end, after), "after its first end token a row emits only end tokens"
    assert width == first_end.max().item() + 1 < 40, "trimmed to the longest row"
    assert (tokens[~is_end] != END).all()


# models with tensor states


def test_index_state_reaches_every_tensor() -> None:
    Pair = namedtuple("Pair", ["h", "c"])
    h, c = torch.arange(12.0).view(3, 4), torch.arange(24.0).view(2, 3, 4)
    index = torch.tensor([2, 2, 0])
    state: OrderedDict[str, Any] = OrderedDict(rnn=Pair(h, [h, None]), layer=(2 * h,), steps=7)
    selected = index_state(state, index)
    assert type(selected) is OrderedDict and list(selected) == ["rnn", "layer", "steps"]
    assert isinstance(selected["rnn"], Pair) and isinstance(selected["rnn"].c, list)
    assert torch.equal(selected["rnn"].h, h[index]) and torch.equal(selected["rnn"].c[0], h[index])
    assert selected["rnn"].c[1] is None and selected["steps"] == 7
    assert torch.equal(selected["layer"][0], 2 * h[index])
    along = index_state((c, c), torch.tensor([1, 0]), dim=1)
    assert torch.equal(along[0], c[:, [1, 0]]) and isinstance(along, tuple)


def test_repeat_hypotheses_expands_a_prime_into_samples() -> None:
    model = GRUDecoder()
    log_probs, state = model.prime(torch.tensor([[1, 2, 3], [4, 5, 1]]))
    many, states = repeat_hypotheses(model, log_probs, state, 3)
    assert many.shape == (6, 6) and states.shape == (6, 8)
    assert torch.equal(many, log_probs[[0, 0, 0, 1, 1, 1]]) and torch.equal(states, state[[0, 0, 0, 1, 1, 1]])
    tokens = greedy(model, many, states, length=8)
    assert torch.equal(tokens[:3], tokens[:1].expand(3, -1)) and torch.equal(tokens[3:], tokens[3:4].expand(3, -1))
    drawn = sample(model, many, states, length=8, generator=torch.Generator().manual_seed(0))
    assert len({tuple(row) for row in drawn.tolist()}) > 2
    with pytest.raises(ValueError, match="copies must be at least 1, got 0"):
        repeat_hypotheses(model, log_probs, state, 0)


@pytest.mark.parametrize("model_type", [GRUDecoder, LSTMDecoder])
def test_batched_greedy_equals_one_row_at_a_time(model_type: type[nn.Module]) -> None:
    model: Any = model_type()
    prefixes = torch.tensor([[1, 2, 3], [4, 1, 1], [2, 2, 4]])
    tokens = greedy(model, *model.prime(prefixes), length=10)
    for row in range(3):
        assert torch.equal(tokens[row : row + 1], greedy(model, *model.prime(prefixes[row : row + 1]), length=10))
    assert not tokens.requires_grad


def test_decoding_runs_inside_inference_mode() -> None:
    model = GRUDecoder()
    with torch.inference_mode():
        log_probs, state = model.prime(torch.tensor([[1, 2], [3, 4]]))
        tokens = sample(model, log_probs, state, length=5, generator=torch.Generator().manual_seed(0))
        found = beam_search(model, log_probs, state, beam_size=3, max_length=5, end_token=END)
    assert tokens.shape == (2, 5) and len(found) == 2


# beam search against brute force


def exhaustive(
    log_table: Tensor, start: int, *, max_length: int, alpha: float = 0.0, min_length: int = 0
) -> tuple[list[Hypothesis], list[Hypothesis]]:
    """Every hypothesis of the chain from `start`: (finished, unfinished), each best first by normalised score."""
    finished: list[Hypothesis] = []
    unfinished: list[Hypothesis] = []
    vocabulary = log_table.shape[0]

    def extend(prefix: list[int], last: int, score: float) -> None:
        if score == -math.inf:  # impossible: neither beam search nor the tests want it
            return
        if len(prefix) == max_length:
            unfinished.append(Hypothesis(prefix, score, score / ((5 + max_length) / 6) ** alpha, False))
            return
        if len(prefix) >= min_length:
            ended = score + log_table[last, END].item()
            if ended > -math.inf:
                finished.append(Hypothesis(prefix, ended, ended / ((5 + len(prefix) + 1) / 6) ** alpha))
        for token in range(vocabulary):
            if token != END:
                extend([*prefix, token], token, score + log_table[last, token].item())

    extend([], start, 0.0)
    return sorted(finished, key=lambda h: -h.normalised), sorted(unfinished, key=lambda h: -h.normalised)


def assert_same(found: list[Hypothesis], expected: list[Hypothesis], everything: list[Hypothesis]) -> None:
    """found has expected's scores, best first, and each of its hypotheses is real.

    Markov chains tie: two sequences with the same transitions in another order score the same, and
    either may come first, so the tokens are checked against all hypotheses rather than position by position.
    """
    assert [h.normalised for h in found] == pytest.approx([h.normalised for h in expected], rel=1e-9, abs=1e-9)
    assert [h.finished for h in found] == [h.finished for h in expected]
    assert len({tuple(h.tokens) for h in found}) == len(found), "distinct hypotheses"
    real = {tuple(h.tokens): h for h in everything}
    for h in found:
        assert h.score == pytest.approx(real[tuple(h.tokens)].score, rel=1e-9, abs=1e-9)
        assert h.finished == real[tuple(h.tokens)].finished


def test_gnmt_penalty() -> None:
    assert gnmt_penalty(1, 0.0) == 1.0
    assert gnmt_penalty(1, 1.0) == 1.0
    assert gnmt_penalty(7, 0.5) == pytest.approx(math.sqrt(2))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("alpha", "min_length"), [(0.0, 0), (0.7, 0), (2.0, 0), (-0.5, 0), (0.0, 2), (1.0, 3)])
def test_wide_beam_search_is_exhaustive(seed: int, alpha: float, min_length: int) -> None:
    """With K at least every candidate of a step, beam search finds the n_best best of all hypotheses."""
    vocabulary, max_length = 4, 5
    chain = Chain(random_table(vocabulary, seed, end_weight=0.5))
    starts = list(range(vocabulary))  # N = 4 inputs searched together
    found = beam_search(
        chain,
        *chain.start(starts),
        beam_size=400,
        max_length=max_length,
        end_token=END,
        length_penalty=alpha,
        n_best=5,
        min_length=min_length,
    )
    assert len(found) == vocabulary
    for start, hypotheses in zip(starts, found, strict=True):
        finished, _ = exhaustive(chain.log_table, start, max_length=max_length, alpha=alpha, min_length=min_length)
        assert_same(hypotheses, finished[:5], finished)
        assert all(len(h.tokens) >= min_length and END not in h.tokens for h in hypotheses)
        assert len({tuple(h.tokens) for h in hypotheses}) == 5
        assert [h.normalised for h in hypotheses] == sorted((h.normalised for h in hypotheses), reverse=True)
    assert chain.reorders == chain.calls <= max_length - 1  # one reorder and one step per step


@pytest.mark.parametrize("seed", range(6))
def test_narrow_beam_finds_what_it_can(seed: int) -> None:
    """A narrow beam may miss the best, but what it returns is real: correct scores, sorted, distinct."""
    chain = Chain(random_table(5, seed, end_weight=0.3))
    found = beam_search(
        chain, *chain.start([1, 2, 3]), beam_size=3, max_length=6, end_token=END, n_best=3, length_penalty=0.6
    )
    for start, hypotheses in zip([1, 2, 3], found, strict=True):
        finished, unfinished = exhaustive(chain.log_table, start, max_length=6, alpha=0.6)
        real = {tuple(h.tokens): h for h in finished + unfinished}
        assert len(hypotheses) == 3 and len({tuple(h.tokens) for h in hypotheses}) == 3
        for h in hypotheses:
            assert h.score == pytest.approx(real[tuple(h.tokens)].score, rel=1e-12)
            assert h.finished == real[tuple(h.tokens)].finished
        flags = [h.finished for h in hypotheses]
        assert flags == sorted(flags, reverse=True), "finished first"
        for group in (True, False):
            scores = [h.normalised for h in hypotheses if h.finished == group]
            assert scores == sorted(scores, reverse=True)
        if hypotheses[0].finished:
            assert hypotheses[0].normalised <= finished[0].normalised + 1e-12


@pytest.mark.parametrize("seed", range(8))
def test_beam_of_one_is_greedy_until_the_end(seed: int) -> None:
    chain = Chain(random_table(5, seed, end_weight=0.4))
    starts = [0, 1, 2, 3, 4]
    path = greedy(chain, *chain.start(starts), length=7, end_token=END)
    found = beam_search(chain, *chain.start(starts), beam_size=1, max_length=7, end_token=END)
    for row, (hypothesis,) in zip(path.tolist(), found, strict=True):
        ended = END in row
        assert hypothesis.finished == ended
        assert hypothesis.tokens == (row[: row.index(END)] if ended else row)


@pytest.mark.parametrize("max_length", [1, 3])
def test_unfinished_hypotheses_fill_in_when_nothing_ends(max_length: int) -> None:
    chain = Chain(random_table(4, 0, end_weight=0.0))  # the end token has probability 0
    found = beam_search(
        chain, *chain.start([1, 2]), beam_size=9, max_length=max_length, end_token=END, n_best=3, length_penalty=1.0
    )
    for start, hypotheses in zip([1, 2], found, strict=True):
        _, unfinished = exhaustive(chain.log_table, start, max_length=max_length, alpha=1.0)
        assert_same(hypotheses, unfinished[:3], unfinished)
        assert all(not h.finished and len(h.tokens) == max_length for h in hypotheses)


def test_finished_come_first_then_unfinished_fill() -> None:
    chain = Chain(random_table(4, 2, end_weight=0.5))
    chain.log_table[[0, 2, 3], END] = -math.inf  # only token 1 may be followed by the end token
    (hypotheses,) = beam_search(chain, *chain.start([1]), beam_size=16, max_length=2, end_token=END, n_best=4)
    finished, unfinished = exhaustive(chain.log_table, 1, max_length=2)
    assert sorted(h.tokens for h in finished) == [[], [1]]
    assert_same(hypotheses, [*finished, *unfinished[:2]], finished + unfinished)


def test_search_stops_once_nothing_can_beat_the_finished() -> None:
    table = CHAIN.clone()
    table[:, END] = 0.9
    table[:, 1:] = 0.1 / 3
    chain = Chain(table)
    (best,) = beam_search(chain, *chain.start([2]), beam_size=4, max_length=50, end_token=END)
    assert best[0].tokens == [] and best[0].score == pytest.approx(math.log(0.9))
    assert chain.calls == 0  # every live hypothesis is below log 0.9 already after the first token
    chain.calls = 0
    (best,) = beam_search(chain, *chain.start([2]), beam_size=4, max_length=50, end_token=END, n_best=4)
    assert chain.calls <= 3 and len(best) == 4


@pytest.mark.parametrize(("alpha", "tokens"), [(0.0, []), (1.0, []), (3.0, [1] * 19)])
def test_length_penalty_keeps_searching_for_a_long_winner(alpha: float, tokens: list[int]) -> None:
    """After one step the empty hypothesis (log 0.6) leads; a long one can overtake it only with a strong penalty.

    2 -> end 0.6 or -> 1 0.4; 1 -> 1 0.99 or -> end 0.01. The search must not stop on what a live hypothesis
    scores at its next length: its best comes at max_length.
    """
    table = torch.tensor([[1.0, 0.0, 0.0], [0.01, 0.99, 0.0], [0.6, 0.4, 0.0]], dtype=torch.float64)
    chain = Chain(table)
    (found,) = beam_search(chain, *chain.start([2]), beam_size=2, max_length=20, end_token=END, length_penalty=alpha)
    finished, _ = exhaustive(chain.log_table, 2, max_length=20, alpha=alpha)
    assert finished[0].tokens == tokens
    assert_same(found, finished[:1], finished)


@pytest.mark.parametrize("model_type", [GRUDecoder, LSTMDecoder])
@pytest.mark.parametrize("alpha", [0.0, 1.5])
def test_batched_beam_search_equals_one_input_at_a_time(model_type: type[nn.Module], alpha: float) -> None:
    """Inputs that finish at different steps leave the batch; the others must not notice."""
    model: Any = model_type()
    prefixes = torch.tensor([[1, 2, 3], [4, 1, 1], [2, 2, 4], [3, 1, 2]])
    options: dict[str, Any] = {"beam_size": 4, "max_length": 9, "end_token": END, "n_best": 3, "length_penalty": alpha}
    log_probs, state = model.prime(prefixes)
    model.rows.clear()
    together = beam_search(model, log_probs, state, **options)
    if alpha == 0:
        assert min(model.rows) < max(model.rows) == 16, "some inputs finished early and left the batch"
    for row, hypotheses in enumerate(together):
        (alone,) = beam_search(model, *model.prime(prefixes[row : row + 1]), **options)
        assert [h.tokens for h in hypotheses] == [h.tokens for h in alone]
        assert [h.score for h in hypotheses] == pytest.approx([h.score for h in alone], abs=1e-5)


@pytest.mark.parametrize("model_type", [GRUDecoder, LSTMDecoder])
def test_beam_scores_are_the_models_log_probabilities(model_type: type[nn.Module]) -> None:
    """Rescoring each hypothesis by teacher forcing gives its score: the states were reordered right."""
    model: Any = model_type()
    prefixes = torch.tensor([[1, 2, 3], [4, 1, 1], [2, 2, 4]])
    found = beam_search(
        model,
        *model.prime(prefixes),
        beam_size=5,
        max_length=8,
        end_token=END,
        n_best=5,
        length_penalty=1.0,
        min_length=2,
    )
    with torch.no_grad():
        for row, hypotheses in enumerate(found):
            assert len(hypotheses) == 5
            for h in hypotheses:
                assert len(h.tokens) >= 2
                log_probs, state = model.prime(prefixes[row : row + 1])
                score = 0.0
                for token in [*h.tokens, END] if h.finished else h.tokens:
                    score += log_probs[0, token].item()
                    log_probs, state = model.step(torch.tensor([token]), state)
                assert h.score == pytest.approx(score, abs=1e-4)
                length = len(h.tokens) + h.finished
                assert h.normalised == pytest.approx(score / gnmt_penalty(length, 1.0), abs=1e-4)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"beam_size": 0}, "beam_size must be at least 1, got 0"),
        ({"n_best": 4}, r"n_best must be in 1..beam_size=3, got 4"),
        ({"n_best": 0}, r"n_best must be in 1..beam_size=3, got 0"),
        ({"max_length": 0}, "max_length must be at least 1, got 0"),
        ({"min_length": 5}, r"min_length must be in 0..max_length-1=4, got 5"),
        ({"end_token": 9}, r"end_token must be a token in 0..3, got 9"),
        ({"length_penalty": math.nan}, "length_penalty must be finite, got nan"),
    ],
)
def test_beam_search_rejects_bad_options(options: dict[str, Any], message: str) -> None:
    chain = Chain(CHAIN)
    arguments: dict[str, Any] = {"beam_size": 3, "max_length": 5, "end_token": END, **options}
    with pytest.raises(ValueError, match=message):
        beam_search(chain, *chain.start([0]), **arguments)


def repeats_an_ngram(tokens: list[int], n: int) -> bool:
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_ngram_blocking_equals_brute_force_without_repeats(seed: int, n: int) -> None:
    """A wide beam with no_repeat_ngram=n finds the best hypotheses among those with no n-gram twice."""
    vocabulary, max_length = 4, 6
    chain = Chain(random_table(vocabulary, seed, end_weight=0.3))
    starts = [1, 2, 3]
    found = beam_search(chain, *chain.start(starts), beam_size=500, max_length=max_length, end_token=END,
                        n_best=4, no_repeat_ngram=n)
    for start, hypotheses in zip(starts, found, strict=True):
        finished, _ = exhaustive(chain.log_table, start, max_length=max_length)
        allowed = [h for h in finished if not repeats_an_ngram([*h.tokens, END], n)]
        assert_same(hypotheses, allowed[:4], allowed)
        assert not any(repeats_an_ngram(h.tokens, n) for h in hypotheses)


def test_ngram_blocking_changes_a_repeating_greedy_path() -> None:
    """From 3 the chain's argmax path repeats 3 3 3 ...; with bigrams blocked, the third 3 would repeat (3, 3),
    so the next best, the end token (0.30), comes instead."""
    chain = Chain(CHAIN)
    (plain,), = beam_search(chain, *chain.start([3]), beam_size=1, max_length=5, end_token=END)
    assert plain.tokens == [3, 3, 3, 3, 3] and not plain.finished
    (blocked,), = beam_search(chain, *chain.start([3]), beam_size=1, max_length=5, end_token=END, no_repeat_ngram=2)
    assert blocked.tokens == [3, 3] and blocked.finished


@pytest.mark.parametrize("beam", [1, 3])
def test_weights_follow_each_hypothesis(beam: int) -> None:
    """With weights(state) = one-hot of the chain's last token, row k of a hypothesis's weights is the token
    before its k-th token (the start for k = 0), whatever reordering the beam did."""
    chain = Chain(random_table(5, 3, end_weight=0.4))
    starts = [0, 1, 2, 4]
    found = beam_search(chain, *chain.start(starts), beam_size=beam, max_length=6, end_token=END, n_best=beam,
                        weights=lambda state: torch.nn.functional.one_hot(state, 5).double())
    for start, hypotheses in zip(starts, found, strict=True):
        for h in hypotheses:
            assert h.weights is not None
            before = [start, *h.tokens][: len(h.tokens) + h.finished]
            assert h.weights.shape == (len(before), 5)
            assert h.weights.argmax(1).tolist() == before
    plain = beam_search(chain, *chain.start(starts), beam_size=beam, max_length=6, end_token=END, n_best=beam)
    assert plain == found and all(h.weights is None for hs in plain for h in hs)


def test_no_repeat_ngram_must_not_be_negative() -> None:
    chain = Chain(CHAIN)
    with pytest.raises(ValueError, match="no_repeat_ngram"):
        beam_search(chain, *chain.start([1]), beam_size=2, max_length=3, end_token=END, no_repeat_ngram=-1)


@pytest.mark.parametrize("seed", range(20))
def test_shared_rows_give_each_new_hypothesis_its_input_row(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    inputs, per = 1 + seed % 4, 1 + seed % 3
    rows = torch.arange(inputs)  # the shared tensor: row b is input b
    if seed % 2:  # a beam search's reorder: blocks of one input each, some inputs gone
        kept = torch.randperm(inputs, generator=generator)[: 1 + seed % inputs].sort().values
        new_per = 1 + seed % 5
        index = (kept.repeat_interleave(new_per) * per
                 + torch.randint(0, per, (kept.numel() * new_per,), generator=generator))
    else:  # any index at all
        index = torch.randint(0, inputs * per, (1 + seed % 7,), generator=generator)
    chosen = shared_rows(index, hypotheses=inputs * per, inputs=inputs)
    shared = rows if chosen is None else rows[chosen]
    new_per = index.numel() // shared.numel()
    assert index.numel() == shared.numel() * new_per
    assert [int(shared[r // new_per]) for r in range(index.numel())] == (index // per).tolist()
