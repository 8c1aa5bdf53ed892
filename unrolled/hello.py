"""The lecture's toy language model: learn "hello" one character at a time.

Vocabulary {h, e, l, o}, each character a one-hot vector of 4; the training
sequence "hello" gives four examples, P(e|h), P(l|he), P(l|hel), P(o|hell),
and the loss is the cross-entropy on every output at once. The first "l" must
be followed by "l" and the second by "o", so only a network with state can fit
it. After training, the network generates from "h".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.recurrent import Recurrent

WORD = "hello"
VOCAB = "helo"


@dataclass
class HelloConfig:
    """What the toy trains: a cell type, its width, and the optimiser's budget."""

    mode: str = "rnn"
    hidden_size: int = 8
    steps: int = 300
    lr: float = 0.05
    seed: int = 0


class HelloModel(nn.Module):
    """One-hot characters -> a recurrent layer -> a score per character of the vocabulary."""

    def __init__(self, config: HelloConfig) -> None:
        super().__init__()
        self.rnn = Recurrent(config.mode, len(VOCAB), config.hidden_size, batch_first=True)
        self.head = nn.Linear(config.hidden_size, len(VOCAB))

    def forward(self, ids: Tensor, state: object = None) -> tuple[Tensor, object]:
        x = F.one_hot(ids, len(VOCAB)).to(self.head.weight.dtype)  # (B, T, V)
        out, state = self.rnn(x, state)  # (B, T, H)
        return self.head(out), state  # (B, T, V)


def encode(text: str) -> Tensor:
    return torch.tensor([[VOCAB.index(ch) for ch in text]])  # (1, T)


def train(config: HelloConfig) -> tuple[HelloModel, list[float]]:
    """Fit "hell" -> "ello" with Adam; returns the model and the loss at every step."""
    torch.manual_seed(config.seed)
    model = HelloModel(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    inputs, targets = encode(WORD[:-1]), encode(WORD[1:])  # (1, 4) each
    losses = []
    for _ in range(config.steps):
        logits, _ = model(inputs)
        loss = F.cross_entropy(logits.view(-1, len(VOCAB)), targets.view(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model, losses


@torch.no_grad()
def next_char_table(model: HelloModel) -> list[tuple[str, str, float]]:
    """For each prefix of "hell": (prefix, true next char, its probability)."""
    logits, _ = model(encode(WORD[:-1]))
    probs = logits.softmax(-1)[0]  # (T, V)
    return [(WORD[: t + 1], WORD[t + 1], probs[t, VOCAB.index(WORD[t + 1])].item()) for t in range(len(WORD) - 1)]


@torch.no_grad()
def generate(model: HelloModel, first: str = "h", length: int = len(WORD)) -> str:
    """Greedy generation, one step at a time, carrying the state."""
    text, state = first, None
    ids = encode(first)
    for _ in range(length - 1):
        logits, state = model(ids, state)
        ids = logits[:, -1:].argmax(-1)  # (1, 1)
        text += VOCAB[int(ids)]
    return text


def run(config: HelloConfig) -> str:
    """Train, then describe what was learnt (the text the `unrolled hello` command prints)."""
    model, losses = train(config)
    lines = [f"{config.mode} with {config.hidden_size} units, {config.steps} Adam steps on {WORD!r}",
             f"cross-entropy per character: {losses[0]:.3f} at the start, {losses[-1]:.4f} at the end"]
    lines += [f"  P({nxt} | {prefix}) = {p:.3f}" for prefix, nxt, p in next_char_table(model)]
    lines.append(f"generated from 'h': {generate(model)!r}")
    return "\n".join(lines)
