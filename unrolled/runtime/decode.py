"""NumPy twins of `unrolled.decoding.search`: filtering, sampling and beam search over an exported step.

The decoding logic is the decoding module's, restated on arrays so that the
runtime needs no torch; see `unrolled.decoding.search` for the definitions:

* `filter_logits`: p_i ∝ exp(l_i / τ), then the top k, then the nucleus
  (the smallest set of most likely tokens of mass >= p; the top token stays);
  log-softmax over what remains.
* `sample`: `length` tokens per row, drawn from the filtered distribution (or
  the argmax with greedy); the step runs length - 1 times; with `end_token` a
  finished row repeats it and generation stops when every row has finished.
* `beam_search`: K live hypotheses per input; of each step's candidates ranked
  by summed log-probability, those among the best K that end are finished and
  ranked by s / lp(L), lp = ((5 + L) / 6) ** alpha (GNMT); the best K that do
  not end go on. An input stops when it has n_best finished hypotheses and no
  live one can beat the n_best-th (scores only fall). `block_repeats` gives a
  token that would repeat an n-gram of the hypothesis probability 0.

A state is a dict of arrays with hypotheses along axis 0; `reorder` is indexing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

State = dict[str, np.ndarray]
Step = Callable[[np.ndarray, State], tuple[np.ndarray, State]]


def check_filter(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise a one-line ValueError naming the first filter option out of range (as the decoding module)."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be positive and finite, got {temperature:g}; "
                         "use greedy decoding for the most likely token")
    if top_k is not None and (isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p:g}")


def log_softmax(scores: np.ndarray) -> np.ndarray:
    top = scores.max(axis=-1, keepdims=True)
    shifted = scores - top
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def filter_logits(log_probs: np.ndarray, *, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> np.ndarray:
    """The distribution to sample from, (N, V) log-probabilities; -inf where a token is cut."""
    check_filter(temperature, top_k, top_p)
    scores = log_probs / temperature if temperature != 1.0 else log_probs.copy()
    vocabulary = scores.shape[-1]
    if top_k is not None and top_k < vocabulary:
        kept = np.argpartition(-scores, top_k - 1, axis=-1)[:, :top_k]
        cut = np.full_like(scores, -np.inf)
        np.put_along_axis(cut, kept, np.take_along_axis(scores, kept, axis=-1), axis=-1)
        scores = cut
    if top_p is not None and top_p < 1:
        order = np.argsort(-scores, axis=-1, kind="stable")
        ranked = np.take_along_axis(scores, order, axis=-1)
        probs = np.exp(log_softmax(ranked))
        before = np.concatenate([np.zeros_like(probs[:, :1]), np.cumsum(probs, axis=-1)[:, :-1]], axis=-1)
        ranked = np.where(before >= top_p, -np.inf, ranked)
        np.put_along_axis(scores, order, ranked, axis=-1)
    return log_softmax(scores)


def sample(step: Step, log_probs: np.ndarray, state: State, *, length: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
           rng: np.random.Generator | None = None, end_token: int | None = None) -> np.ndarray:
    """Tokens (N, T), T <= length, drawn one step at a time (see the module docstring)."""
    if length < 1:
        raise ValueError(f"length must be at least 1, got {length}")
    check_filter(temperature, top_k, top_p)
    rng = rng or np.random.default_rng()
    drawn: list[np.ndarray] = []
    finished = np.zeros(log_probs.shape[0], dtype=bool)
    for t in range(length):
        if greedy:
            tokens = log_probs.argmax(axis=-1)
        else:
            probs = np.exp(filter_logits(log_probs, temperature=temperature, top_k=top_k, top_p=top_p))
            cumulative = np.cumsum(probs, axis=-1)
            draws = rng.random(probs.shape[0]) * cumulative[:, -1]
            tokens = np.minimum((cumulative <= draws[:, None]).sum(axis=-1), probs.shape[1] - 1)
        tokens = tokens.astype(np.int64)
        if end_token is not None:
            tokens = np.where(finished, end_token, tokens)
            finished |= tokens == end_token
        drawn.append(tokens)
        if t + 1 == length or (end_token is not None and finished.all()):
            break
        log_probs, state = step(tokens, state)
    return np.stack(drawn, axis=1)


@dataclass(frozen=True)
class Hypothesis:
    """One result of `beam_search`: tokens (end token left out), summed log-probability, score / lp, finished."""

    tokens: list[int]
    score: float
    normalised: float
    finished: bool = True


def gnmt_penalty(length: int, alpha: float) -> float:
    """lp = ((5 + length) / 6) ** alpha (Wu et al. 2016)."""
    return ((5 + length) / 6) ** alpha


def reorder(state: State, index: np.ndarray) -> State:
    """The state of hypotheses `index` (M,)."""
    return {name: value[index] for name, value in state.items()}


def block_repeats(log_probs: np.ndarray, history: np.ndarray, n: int) -> np.ndarray:
    """log_probs (R, V) with -inf for each token that would complete an n-gram already in its row of history (R, t).

    The last n - 1 tokens of a row are its prefix; wherever they occur earlier in
    the row, the token that followed them there is blocked (n = 1: every token seen).
    """
    steps = history.shape[1]
    if steps < max(n - 1, 1):
        return log_probs
    blocked = log_probs.copy()
    for r, row in enumerate(history.tolist()):
        prefix = row[steps - n + 1 :] if n > 1 else []
        for start in range(steps - n + 1):
            if row[start : start + n - 1] == prefix:
                blocked[r, row[start + n - 1]] = -np.inf
    return blocked


def beam_search(step: Step, log_probs: np.ndarray, state: State, *, beam_size: int, max_length: int,
                end_token: int, length_penalty: float = 0.0, n_best: int = 1, min_length: int = 0,
                no_repeat_ngram: int = 0,
                reorder: Callable[[State, np.ndarray], State] = reorder) -> list[list[Hypothesis]]:
    """The n_best best hypotheses of each of the N inputs primed in (log_probs (N, V), state), best first.

    The hypotheses of input b are rows b K .. b K + K - 1 throughout (a reorder keeps
    every row in its block), so a state part shared by an input's hypotheses (an
    encoder's memory) can stay one row per input: `reorder` leaves it as it is.
    """
    if beam_size < 1 or not 1 <= n_best <= beam_size:
        raise ValueError(f"the beam size must be at least 1 and n_best in 1..beam, got {beam_size} and {n_best}")
    if max_length < 1 or not 0 <= min_length < max_length:
        raise ValueError(f"max_length must be at least 1 and min_length in 0..max_length-1, got {max_length} "
                         f"and {min_length}")
    alpha, size = length_penalty, beam_size
    inputs, vocabulary = log_probs.shape
    rows = np.repeat(np.arange(inputs), size)
    log_probs, state = log_probs[rows], reorder(state, rows)  # the K rows of an input: copies, the first live
    scores = np.full((inputs, size), -np.inf, dtype=log_probs.dtype)
    scores[:, 0] = 0
    history = np.zeros((inputs * size, 0), dtype=np.int64)
    pools: list[list[Hypothesis]] = [[] for _ in range(inputs)]
    threshold = np.full(inputs, -np.inf)
    done = np.zeros(inputs, dtype=bool)
    candidates = min(2 * size, size * vocabulary)
    for t in range(max_length):
        if t < min_length:
            log_probs = log_probs.copy()
            log_probs[:, end_token] = -np.inf
        if no_repeat_ngram and t >= no_repeat_ngram - 1:
            log_probs = block_repeats(log_probs, history, no_repeat_ngram)
        total = (scores[:, :, None] + log_probs.reshape(inputs, size, vocabulary)).reshape(inputs, -1)
        flat = np.argsort(-total, axis=1, kind="stable")[:, :candidates]  # (n, C), best first
        top = np.take_along_axis(total, flat, axis=1)
        beam, token = flat // vocabulary, flat % vocabulary
        ends = token == end_token
        final = ends & np.isfinite(top)
        final[:, size:] = False  # an end only counts among the best K
        normaliser = gnmt_penalty(t + 1, alpha)
        for i, rank in zip(*final.nonzero(), strict=True):
            if done[i]:
                continue
            score = float(top[i, rank])
            pools[i].append(Hypothesis(history[i * size + beam[i, rank]].tolist(), score, score / normaliser))
            pools[i] = sorted(pools[i], key=lambda h: -h.normalised)[:n_best]
            if len(pools[i]) == n_best:
                threshold[i] = pools[i][-1].normalised
        going = np.where(ends, -np.inf, top)
        pick = np.argsort(-going, axis=1, kind="stable")[:, :size]  # the best K that go on
        scores = np.take_along_axis(going, pick, axis=1)
        parent = (np.arange(inputs)[:, None] * size + np.take_along_axis(beam, pick, axis=1)).reshape(-1)
        tokens = np.take_along_axis(token, pick, axis=1).reshape(-1)
        history = np.concatenate([history[parent], tokens[:, None]], axis=1)
        if t + 1 == max_length:
            break
        shortest, longest = gnmt_penalty(t + 2, alpha), gnmt_penalty(max_length, alpha)
        reach = np.maximum(scores / shortest, scores / longest).max(axis=1)
        done |= threshold >= reach
        if done.all():
            break
        log_probs, state = step(tokens, reorder(state, parent))
    results = [sorted(pool, key=lambda h: -h.normalised) for pool in pools]
    normaliser = gnmt_penalty(max_length, alpha)
    for i, found in enumerate(results):
        if len(found) < n_best:  # the search reached max_length: the best unfinished fill up
            unfinished = [Hypothesis(history[i * size + k].tolist(), float(scores[i, k]),
                                     float(scores[i, k]) / normaliser, finished=False)
                          for k in range(size) if math.isfinite(scores[i, k])]
            found += sorted(unfinished, key=lambda h: -h.normalised)[: n_best - len(found)]
    return results
