"""Generating sequences from any model that predicts the next token: greedy, sampling, beam search.

Every generating model (a character language model, a seq2seq decoder, a
captioner, a speech recogniser) offers the same two methods, the `Decoder`
protocol:

    log_p, state = decoder.step(tokens, state)     tokens (N,) -> log-probabilities (N, V) of the next token
    state = decoder.reorder(state, index)          hypotheses index (M,) of N -> a state for M hypotheses

and everything here is written against them. The state is opaque: a tensor, a
tuple of tensors, a dict...; only the model knows which dimension holds the
hypotheses, so the model reorders it (`index_state` does it for the usual
nested containers of tensors).

Generation starts after the prime: the caller runs the model over its prime
(the prompt, the source sentence, the image) and passes the log-probabilities
of the first token to generate, (N, V), and the state that goes with them.
Every step then costs one batched `decoder.step` over all N hypotheses; no
function loops over hypotheses in Python to call the model, and none calls the
model for a step whose output is never used (length tokens take length - 1 steps).

* `filter_logits`: temperature, top-k and nucleus (top-p) filtering of a distribution.
* `sample` (and `greedy`): one token per hypothesis and step, drawn from the
  filtered distribution or the most likely.
* `beam_search`: the beam_size best hypotheses of each of N inputs, scored by
  their summed log-probabilities, optionally normalised by the GNMT length penalty.

Everything runs under `torch.inference_mode()` (and may be called inside it):
the tensors returned are inference tensors, to be cloned before autograd sees them.

Dimensions: N hypotheses (or inputs), V vocabulary, K beam size, T generated tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor

S = TypeVar("S")

OnStep = Callable[[Tensor], object]
"""Called with each step's tokens (N,), e.g. to stream characters to stdout as they are drawn."""

__all__ = [
    "Decoder", "Hypothesis", "beam_search", "block_repeats", "check_beam", "check_filter", "check_tokens",
    "filter_logits", "gnmt_penalty", "greedy", "greedy_misses", "index_state", "repeat_hypotheses", "sample",
    "shared_rows",
]



class Decoder(Protocol):
    """What decoding needs of a model: one step over N hypotheses, and a way to reorder their state."""

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Feed the last token of each hypothesis, tokens (N,) int64: returns (log-probabilities (N, V), new state)."""
        ...

    def reorder(self, state: Any, index: Tensor) -> Any:
        """The state of hypotheses `index` (M,), in that order (repeats allowed): a state for M hypotheses."""
        ...


def index_state(state: S, index: Tensor, dim: int = 0) -> S:
    """Select hypotheses `index` (M,) along `dim` of every tensor in a nested tuple / list / dict.

    A helper for `Decoder.reorder`: a GRU's h (N, H) is reordered along dim 0, a
    stacked layer's (L, N, H), or an LSTM's (h, c) each (L, N, H), along dim 1.
    Containers keep their type (named tuples included); anything that is not a
    tensor or container (None, numbers, strings) is returned as it is.
    """
    if isinstance(state, Tensor):
        return state.index_select(dim, index.to(state.device))  # type: ignore[return-value]
    if isinstance(state, dict):
        selected = state.copy()  # the same kind of dict (OrderedDict, defaultdict...)
        for key, value in state.items():
            selected[key] = index_state(value, index, dim)
        return cast(S, selected)
    if isinstance(state, tuple):
        items = [index_state(item, index, dim) for item in state]
        return type(state)(*items) if hasattr(state, "_fields") else type(state)(items)
    if isinstance(state, list):
        return type(state)(index_state(item, index, dim) for item in state)
    return state


def shared_rows(index: Tensor, *, hypotheses: int, inputs: int) -> Tensor | None:
    """The rows of a per-input tensor (n, ...) that hypotheses `index` (M,) read after a reorder; None: all, as is.

    A model whose N = n K hypotheses are n blocks of K consecutive rows, block b
    reading row b of what is shared by an input's hypotheses (an encoder's
    memory), reorders the per-hypothesis state by `index` and the shared rows
    by this: hypothesis r reads row g_r = r // K, so the new rows read
    g_index. When those form blocks of equal size, one input after another (a
    beam search's reorder always does), the result keeps one row per block,
    and is None when that is every row in order (nothing to copy); otherwise it
    is g_index itself, one row per new hypothesis (K = 1).
    """
    group = index // (hypotheses // inputs)  # (M,)
    kept = torch.unique_consecutive(group)
    blocks = index.shape[0] % kept.shape[0] == 0 and bool((group.view(kept.shape[0], -1) == kept.unsqueeze(1)).all())
    if not blocks:
        return group
    if kept.shape[0] == inputs and bool((kept == torch.arange(inputs, device=kept.device)).all()):
        return None
    return kept


def repeat_hypotheses(decoder: Decoder, log_probs: Tensor, state: Any, copies: int) -> tuple[Tensor, Any]:
    """Repeat each of N hypotheses `copies` times: row i becomes rows i*copies .. (i+1)*copies - 1.

    Turns one primed hypothesis into `copies` independent samples: log_probs (N, V)
    -> (N*copies, V), and the state through `decoder.reorder`.
    """
    if copies < 1:
        raise ValueError(f"copies must be at least 1, got {copies}")
    with torch.inference_mode():
        index = torch.arange(log_probs.shape[0], device=log_probs.device).repeat_interleave(copies)
        return log_probs.index_select(0, index), decoder.reorder(state, index)


def check_filter(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise a one-line ValueError naming the first option of `filter_logits` that is out of range."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(
            f"temperature must be positive and finite, got {temperature:g}; "
            "use greedy decoding for the most likely token"
        )
    if top_k is not None and (isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:  # also rejects NaN
        raise ValueError(f"top_p must be in (0, 1], got {top_p:g}")


def filter_logits(
    log_probs: Tensor, *, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> Tensor:
    r"""The distribution to sample from: tempered, cut to the top k, cut to the nucleus; renormalised log-probs.

    log_probs (..., V) are log-probabilities or any unnormalised logits. In order:

    1. temperature: :math:`p_i \propto \exp(\ell_i / \tau)`; :math:`\tau < 1` sharpens, :math:`\tau > 1` flattens.
    2. top_k: only the k most likely tokens keep their probability (exactly k,
       ties broken by `torch.topk`); k >= V keeps all.
    3. top_p (nucleus, Holtzman et al. 2020), on the distribution after 1 and 2:
       the smallest set of most likely tokens whose probability sums to at least
       p; the most likely token always stays, even when it alone exceeds p.

    Removed tokens get -inf; the result is log-softmax over what remains, so
    logsumexp over V is 0. Raises ValueError unless temperature > 0 (finite),
    top_k >= 1 and 0 < top_p <= 1.
    """
    check_filter(temperature, top_k, top_p)
    scores = log_probs / temperature if temperature != 1.0 else log_probs
    vocabulary = scores.shape[-1]
    if top_k is not None and top_k < vocabulary:
        kept = scores.topk(top_k, dim=-1).indices
        scores = torch.full_like(scores, -math.inf).scatter(-1, kept, scores.gather(-1, kept))
    if top_p is not None and top_p < 1:
        ranked, order = scores.sort(dim=-1, descending=True)
        probs = ranked.softmax(dim=-1)
        before = F.pad(probs.cumsum(dim=-1)[..., :-1], (1, 0))  # mass of the tokens more likely than each
        cut = before >= top_p
        cut[..., 0] = False  # the top token stays, even for a p so small that it rounds to 0 in the tensor's dtype
        ranked = ranked.masked_fill(cut, -math.inf)
        scores = scores.scatter(-1, order, ranked)
    return scores.log_softmax(dim=-1)


def check_tokens(log_probs: Tensor, end_token: int | None) -> None:
    """Raise ValueError unless log_probs is (N, V) and end_token (if any) is one of its V tokens."""
    if log_probs.dim() != 2:
        raise ValueError(f"log_probs must be (N, V), got shape {tuple(log_probs.shape)}")
    vocabulary = log_probs.shape[1]
    if end_token is not None and not 0 <= end_token < vocabulary:
        raise ValueError(f"end_token must be a token in 0..{vocabulary - 1}, got {end_token}")


def sample(
    decoder: Decoder,
    log_probs: Tensor,
    state: Any,
    *,
    length: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    generator: torch.Generator | None = None,
    on_step: OnStep | None = None,
    end_token: int | None = None,
) -> Tensor:
    """Generate `length` tokens for each of N hypotheses: returns tokens (N, T), T <= length.

    Starts from the log-probabilities (N, V) of the first token and the state
    after the prime. At each step all N next tokens are drawn in one call:
    ``torch.multinomial`` over `filter_logits(log_probs, temperature, top_k, top_p)`
    with `generator`, or the argmax of log_probs with greedy=True (which ignores
    the filter's options but still checks them). `on_step(tokens (N,))` is called
    after each draw; the tokens are then fed to `decoder.step`, except the last.
    So `decoder.step` runs at most length - 1 times.

    With `end_token`, a row that has drawn it is finished and emits end_token at
    every later step; when every row has finished, generation stops and the
    result is as wide as the longest row, end token included (T < length).
    Without it, T = length.
    """
    if length < 1:
        raise ValueError(f"length must be at least 1, got {length}")
    check_filter(temperature, top_k, top_p)
    check_tokens(log_probs, end_token)
    with torch.inference_mode():

        def draw(log_probs: Tensor) -> Tensor:
            if greedy:
                return log_probs.argmax(dim=-1)
            probs = filter_logits(log_probs, temperature=temperature, top_k=top_k, top_p=top_p).exp()
            return torch.multinomial(probs, 1, generator=generator).squeeze(1)

        drawn: list[Tensor] = []
        finished = torch.zeros(log_probs.shape[0], dtype=torch.bool, device=log_probs.device)
        for t in range(length):
            tokens = draw(log_probs)  # (N,)
            if end_token is not None:
                tokens = tokens.masked_fill(finished, end_token)
                finished = finished | (tokens == end_token)
            drawn.append(tokens)
            if on_step is not None:
                on_step(tokens)
            if t + 1 == length or (end_token is not None and bool(finished.all())):
                break
            log_probs, state = decoder.step(tokens, state)
        return torch.stack(drawn, dim=1)


def greedy(
    decoder: Decoder,
    log_probs: Tensor,
    state: Any,
    *,
    length: int,
    on_step: OnStep | None = None,
    end_token: int | None = None,
) -> Tensor:
    """The most likely token at every step: `sample` with greedy=True; tokens (N, T), T <= length."""
    return sample(decoder, log_probs, state, length=length, greedy=True, on_step=on_step, end_token=end_token)


def greedy_misses(decoder: Decoder, log_probs: Tensor, state: Any, references: list[list[list[int]]], *,
                  end_token: int, extra: int = 0) -> int:
    """How many of N primed inputs decode greedily to none of their references.

    references[n]: input n's token lists, each framed by a start and an end
    token (compared without them); the search runs up to the longest reference's
    length + `extra` steps, and an output ends before its first `end_token`.
    """
    longest = max(len(reference) for options in references for reference in options)
    found = greedy(decoder, log_probs, state, length=longest + extra, end_token=end_token)
    misses = 0
    for row, options in zip(found.tolist(), references, strict=True):
        output = row[: row.index(end_token)] if end_token in row else row
        misses += output not in [reference[1:-1] for reference in options]
    return misses


@dataclass(frozen=True)
class Hypothesis:
    """One result of `beam_search`.

    tokens: the generated tokens, the end token left out.
    score: the sum of their log-probabilities, the end token's included.
    normalised: score / lp(length), lp the GNMT length penalty (`gnmt_penalty`).
    finished: whether it ended with the end token (False: it reached max_length first).
    weights: with `beam_search(weights=...)`, what each scored token was predicted with, one row per token
        (the end token's included): (len(tokens) + finished, S), e.g. a seq2seq model's attention over
        its S source positions; else None.
    """

    tokens: list[int]
    score: float
    normalised: float
    finished: bool = True
    weights: Tensor | None = field(default=None, compare=False, repr=False)


def gnmt_penalty(length: int, alpha: float) -> float:
    """The GNMT length penalty (Wu et al. 2016): lp = ((5 + length) / 6) ** alpha; 1 for alpha = 0.

    `length` counts the scored tokens: a finished hypothesis's tokens plus its end token.
    """
    return ((5 + length) / 6) ** alpha


def check_beam(beam_size: int, n_best: int, batch_size: int = 1) -> None:
    """One-line errors for what no search can run with: a beam under 1, an n_best outside 1..beam_size, a batch
    under 1 (what the predictors that search in batches take besides)."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}")
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be in 1..beam_size={beam_size}, got {n_best}")
    if batch_size < 1:
        raise ValueError(f"the batch size must be positive, got {batch_size}")


def beam_search(
    decoder: Decoder,
    log_probs: Tensor,
    state: Any,
    *,
    beam_size: int,
    max_length: int,
    end_token: int,
    length_penalty: float = 0.0,
    n_best: int = 1,
    min_length: int = 0,
    no_repeat_ngram: int = 0,
    weights: Callable[[Any], Tensor] | None = None,
) -> list[list[Hypothesis]]:
    """The n_best best hypotheses of each of N inputs, by beam search: a list of N lists, best first.

    log_probs (N, V) and state are the model's after priming each input; they
    must be log-probabilities (<= 0), as the stopping rule relies on scores
    never growing. Each input keeps K = beam_size live hypotheses; a step
    extends all N*K of them by one token in one `decoder.step`, after one
    `decoder.reorder` that gives each new hypothesis its parent's state.
    (At the first step the K rows of an input are copies of its one row, so
    only the first is live and the others score -inf.)

    At each step, of the candidates (hypothesis + token) of an input ranked by
    score, those among the best K that end with `end_token` are finished; the
    best K that do not end stay live. A hypothesis of L tokens, end token
    included, scores s = sum of its log-probabilities and is ranked among the
    finished by s / lp(L), lp = ((5 + L) / 6) ** length_penalty (GNMT's alpha;
    0 ranks by s alone, alpha > 0 favours longer ones). An input stops once it
    has n_best finished hypotheses and no live one can still beat the n_best-th,
    whatever its continuation (scores only fall; lp is bounded by max_length),
    so the result is that of searching on to max_length.

    max_length bounds the tokens generated per hypothesis, end token included
    (at most max_length - 1 steps); min_length is the fewest tokens, end token
    excluded, before the end token may come. If an input has fewer than n_best
    finished hypotheses at max_length, its best unfinished ones (max_length
    tokens, finished=False) fill the list after the finished ones.

    no_repeat_ngram n > 0 blocks repeated n-grams: a token that would complete
    an n-gram the hypothesis already holds gets probability 0 (the end token
    too). weights(state) -> (rows, S), when given, is read from the state that
    comes with each step's log-probabilities (the primed state first) and
    follows every hypothesis as its tokens do (`Hypothesis.weights`).
    """
    check_beam(beam_size, n_best)
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    if not 0 <= min_length < max_length:
        raise ValueError(f"min_length must be in 0..max_length-1={max_length - 1}, got {min_length}")
    if not math.isfinite(length_penalty):
        raise ValueError(f"length_penalty must be finite, got {length_penalty}")
    if no_repeat_ngram < 0:
        raise ValueError(f"no_repeat_ngram must be 0 (off) or a positive n-gram size, got {no_repeat_ngram}")
    check_tokens(log_probs, end_token)
    alpha, size = length_penalty, beam_size
    with torch.inference_mode():
        inputs, vocabulary = log_probs.shape
        device = log_probs.device
        active = torch.arange(inputs, device=device)  # the inputs still searched, (n,)
        # t = 0: the K rows of an input are copies of its row, only the first live
        log_probs = log_probs.repeat_interleave(size, dim=0)  # (n*K, V)
        scores = torch.full((inputs, size), -math.inf, dtype=log_probs.dtype, device=device)
        scores[:, 0] = 0
        history = torch.empty(inputs * size, 0, dtype=torch.long, device=device)  # tokens so far, (n*K, t)
        pools: list[list[Hypothesis]] = [[] for _ in range(inputs)]  # the n_best best finished, best first
        threshold = torch.full((inputs,), -math.inf, device=device, dtype=torch.float64)  # n_best-th normalised
        candidates = min(2 * size, size * vocabulary)  # enough that K of them do not end
        trail: Tensor | None = None  # the weights of every hypothesis's tokens so far, (n*K, t, S)
        for t in range(max_length):
            n = active.shape[0]
            if t < min_length:
                log_probs = log_probs.index_fill(1, torch.tensor([end_token], device=device), -math.inf)
            if no_repeat_ngram and t >= no_repeat_ngram - 1:
                log_probs = block_repeats(log_probs, history, no_repeat_ngram)
            current = None if weights is None else weights(state)  # (n*K, S), or (n, S) at t = 0
            total = (scores.unsqueeze(2) + log_probs.view(n, size, vocabulary)).view(n, size * vocabulary)
            top, flat = total.topk(candidates, dim=1)  # (n, C), best first
            beam, token = flat // vocabulary, flat % vocabulary
            ends = token == end_token
            final = ends & torch.isfinite(top)
            final[:, size:] = False  # an end only counts among the best K
            if bool(final.any()):
                position, rank = final.nonzero(as_tuple=True)
                rows = position * size + beam[position, rank]
                normaliser = gnmt_penalty(t + 1, alpha)
                ended = _trail(trail, current, rows, rows if t > 0 else rows // size)  # (M, t+1, S) or None
                touched: set[int] = set()
                for m, (i, tokens, score) in enumerate(zip(
                    active[position].tolist(), history[rows].tolist(), top[position, rank].tolist(), strict=True
                )):
                    pools[i].append(Hypothesis(tokens, score, score / normaliser,
                                               weights=None if ended is None else ended[m]))
                    touched.add(i)
                full: list[tuple[int, float]] = []
                for i in touched:
                    pools[i] = sorted(pools[i], key=lambda h: -h.normalised)[:n_best]
                    if len(pools[i]) == n_best:
                        full.append((i, pools[i][-1].normalised))
                if full:
                    index, values = zip(*full, strict=True)
                    threshold[list(index)] = torch.tensor(values, dtype=threshold.dtype, device=device)
            scores, pick = top.masked_fill(ends, -math.inf).topk(size, dim=1)  # the best K that go on, (n, K)
            parent = torch.arange(n, device=device).unsqueeze(1) * size + beam.gather(1, pick)  # rows, (n, K)
            token = token.gather(1, pick)
            history = torch.cat([history[parent.view(-1)], token.view(-1, 1)], dim=1)
            trail = _trail(trail, current, parent.view(-1), parent.view(-1) if t > 0 else parent.view(-1) // size)
            if t + 1 == max_length:
                break
            # the best normalised score a live hypothesis could reach, at length t + 2 .. max_length
            shortest, longest = gnmt_penalty(t + 2, alpha), gnmt_penalty(max_length, alpha)
            reach = torch.maximum(scores / shortest, scores / longest).amax(dim=1)
            done = threshold[active] >= reach.double()
            if bool(done.any()):
                keep = (~done).nonzero().squeeze(1)
                if keep.numel() == 0:
                    active = keep
                    break
                active, scores, parent, token = active[keep], scores[keep], parent[keep], token[keep]
                history = history.view(n, size, t + 1)[keep].view(-1, t + 1)
                if trail is not None:
                    trail = trail.view(n, size, t + 1, -1)[keep].flatten(0, 1)
            source = parent if t > 0 else parent // size  # at t = 0 the state still has one row per input
            state = decoder.reorder(state, source.reshape(-1))
            log_probs, state = decoder.step(token.reshape(-1), state)
        results = [sorted(pool, key=lambda h: -h.normalised) for pool in pools]
        lacking = [position for position, i in enumerate(active.tolist()) if len(results[i]) < n_best]
        if lacking:  # the search reached max_length: fill up with the best unfinished
            normaliser = gnmt_penalty(max_length, alpha)
            histories = history.view(active.shape[0], size, -1)[lacking].tolist()
            trails = None if trail is None else trail.view(active.shape[0], size, *trail.shape[1:])[lacking]
            for m, (i, tokens_k, scores_k) in enumerate(zip(
                active[lacking].tolist(), histories, scores[lacking].tolist(), strict=True
            )):
                unfinished = [
                    Hypothesis(tokens, score, score / normaliser, finished=False,
                               weights=None if trails is None else trails[m, k])
                    for k, (tokens, score) in enumerate(zip(tokens_k, scores_k, strict=True))
                    if math.isfinite(score)
                ]
                results[i] += sorted(unfinished, key=lambda h: -h.normalised)[: n_best - len(results[i])]
        return results


def _trail(trail: Tensor | None, current: Tensor | None, parents: Tensor, sources: Tensor) -> Tensor | None:
    """The weights trail of hypotheses `parents` extended by the current step's rows `sources`: (M, t+1, S)."""
    if current is None:
        return None
    step = current.index_select(0, sources).unsqueeze(1)  # (M, 1, S)
    return step if trail is None else torch.cat([trail.index_select(0, parents), step], dim=1)


def block_repeats(log_probs: Tensor, history: Tensor, n: int) -> Tensor:
    """log_probs (R, V) with -inf for every token that would complete an n-gram already in its row of history (R, t).

    The last n - 1 tokens of a row are its prefix; wherever the same n - 1 tokens
    occur earlier in the row, the token that followed them there is blocked.
    For n = 1, every token already in the row is blocked.
    """
    steps = history.shape[1]
    if steps < max(n - 1, 1) or steps == 0:
        return log_probs
    windows = history.unfold(1, n, 1) if steps >= n else history.new_empty(history.shape[0], 0, n)  # (R, W, n)
    prefix = history[:, steps - n + 1 :] if n > 1 else history[:, :0]  # (R, n-1)
    match = (windows[:, :, : n - 1] == prefix.unsqueeze(1)).all(-1)  # (R, W)
    blocked = torch.zeros_like(log_probs).scatter_add(
        1, windows[:, :, n - 1], torch.where(match, -math.inf, 0.0).to(log_probs.dtype)
    )
    return log_probs + blocked
