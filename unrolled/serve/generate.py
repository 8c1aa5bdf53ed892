"""Character LM samples for many requests in one batched pass, each as if it had been drawn alone.

`LanguageModel.sample` draws the N samples of one prime with one generator. Here
M requests (each its prime, length, filter, seed and N_m samples) share one pass:

    for each request m: start_m (the prime, or its stand-in) --CharLM.prime--> (log p_1, state), N_m copies
    rows = the requests' rows side by side (sum N_m), states concatenated on the batch dimension
    each step: log p (rows, V) --filter_logits per request's options--> torch.multinomial(request m's rows,
               generator_m) --> tokens; CharLM.step on the rows of the requests still drawing

Request m consumes its own generator exactly as `LanguageModel.sample` would (the
stand-in for an empty prime, then one multinomial call over its N_m rows per
step), and every operation on a row is row-wise, so its samples do not depend
on what else was in the batch: with the same seed they are `LanguageModel.predict`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import torch
from torch import Tensor

from unrolled.apps.lm import LanguageModel
from unrolled.decoding import filter_logits
from unrolled.training import to_device

OnText = Callable[[list[str]], None]


@dataclass(frozen=True)
class Draw:
    """One request: `num_samples` continuations of `prime`, `length` characters, drawn with `seed`.

    `on_text` receives each step's new characters (one per sample), for streaming.
    """

    prime: str
    length: int
    seed: int
    num_samples: int = 1
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool = False
    on_text: OnText | None = None

    def filter(self) -> tuple[float, int | None, float | None, bool]:
        return self.temperature, self.top_k, self.top_p, self.greedy


def start_of(lm: LanguageModel, prime: str, generator: torch.Generator) -> tuple[str, str]:
    """(the prime as shown, the text read first): `LanguageModel.sample`'s rule for an empty prime (after a line
    break when the vocabulary has one, else a character drawn uniformly with `generator`)."""
    if prime:
        return prime, prime
    if "\n" in lm.vocabulary.to_json():
        return "", "\n"
    pick = int(torch.randint(1, len(lm.vocabulary), (1,), generator=generator))
    shown = lm.vocabulary.decode([pick])
    return shown, shown


def concat_states(states: list[Any]) -> Any:
    """States of the same structure (tensors, tuples and lists of them) joined on their batch dimension."""
    first = states[0]
    if isinstance(first, Tensor):
        return torch.cat(states, dim=0)
    if isinstance(first, (tuple, list)):
        return type(first)(concat_states([state[i] for state in states]) for i in range(len(first)))
    if first is None:
        return None
    raise TypeError(f"cannot join decoder states of type {type(first).__name__}")


@torch.inference_mode()
def generate(lm: LanguageModel, draws: list[Draw]) -> list[list[str]]:
    """The samples of each draw (prime included), as `LanguageModel.sample` with its seed would give them."""
    model, vocabulary, device = lm.model, lm.vocabulary, lm.device
    generators = [torch.Generator().manual_seed(draw.seed) for draw in draws]
    shown, log_probs, states = [], [], []
    for draw, generator in zip(draws, generators, strict=True):
        prefix, start = start_of(lm, draw.prime, generator)
        shown.append(prefix)
        first, state = model.prime(to_device(vocabulary.encode(start), device)[None])  # (1, V)
        copies = torch.zeros(draw.num_samples, dtype=torch.long, device=device)
        log_probs.append(first.index_select(0, copies))
        states.append(model.reorder(state, copies))
    counts = [draw.num_samples for draw in draws]
    current, state = torch.cat(log_probs), concat_states(states)  # (R, V), R = sum of N_m
    drawn: list[list[Tensor]] = [[] for _ in draws]
    active = list(range(len(draws)))  # requests still drawing; `current` holds their rows, in this order
    for t in range(max(draw.length for draw in draws)):
        tokens = draw_step(current, [draws[m] for m in active], [generators[m] for m in active],
                           [counts[m] for m in active])  # (rows of the active requests,)
        starts = list(accumulate([counts[m] for m in active], initial=0))
        for i, m in enumerate(active):
            new = tokens[starts[i] : starts[i + 1]]
            drawn[m].append(new)
            on_text = draws[m].on_text
            if on_text is not None:
                on_text([vocabulary.decode([int(token)]) for token in new.tolist()])
        keep = [i for i, m in enumerate(active) if draws[m].length > t + 1]
        if not keep:
            break
        if len(keep) < len(active):
            index = torch.cat([torch.arange(starts[i], starts[i + 1]) for i in keep]).to(device)
            tokens, state = tokens.index_select(0, index), model.reorder(state, index)
        current, state = model.step(tokens, state)
        active = [active[i] for i in keep]
    return [[shown[m] + vocabulary.decode(row) for row in torch.stack(drawn[m], dim=1).cpu().tolist()]
            for m in range(len(draws))]


def draw_step(log_probs: Tensor, draws: list[Draw], generators: list[torch.Generator],
              counts: list[int]) -> Tensor:
    """The next token of every row (R,): each request's rows drawn from its filtered distribution with its
    generator, or their argmax when greedy. Requests with the same filter are filtered in one call (row-wise)."""
    starts = list(accumulate(counts, initial=0))
    tokens: list[Tensor] = [log_probs.new_empty(0, dtype=torch.long)] * len(draws)
    groups: dict[tuple[float, int | None, float | None, bool], list[int]] = {}
    for m, draw in enumerate(draws):
        if draw.greedy:
            tokens[m] = log_probs[starts[m] : starts[m + 1]].argmax(dim=-1)
        else:
            groups.setdefault(draw.filter(), []).append(m)
    for members in groups.values():
        first = draws[members[0]]
        probs = filter_logits(torch.cat([log_probs[starts[m] : starts[m + 1]] for m in members]),
                              temperature=first.temperature, top_k=first.top_k, top_p=first.top_p).exp()
        place = 0
        for m in members:
            tokens[m] = torch.multinomial(probs[place : place + counts[m]], 1, generator=generators[m]).squeeze(1)
            place += counts[m]
    return torch.cat(tokens)
