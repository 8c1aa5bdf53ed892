r"""The character-level language model: the lecture's "h,e,l,l,o", made large.

Characters are ids :math:`x_1 \dots x_T` of a vocabulary of V symbols (id 0 is
the unknown character). The model reads them one at a time and at every step
predicts the next:

.. math::
    e_t &= E[x_t]                                  &&\text{an embedding row (E), or one-hot (V) as in the lecture}\\
    h^{(1)}_t, \dots, h^{(L)}_t &= \mathrm{Recurrent}(e_t, \text{state}_{t-1})
                                                   &&\text{L stacked cells (LSTM, GRU or RNN), dropout between layers}\\
    p(x_{t+1} \mid x_{\le t}) &= \mathrm{softmax}(W_{hy}\, \mathrm{dropout}(h^{(L)}_t) + b_y)
                                                   &&\text{(V), } W_{hy} = E \text{ when the weights are tied}

and is trained on the cross-entropy of every prediction,
:math:`\mathcal{L} = -\frac{1}{BT} \sum_{b,t} \log p(x_{b,t+1} \mid x_{b,\le t})`,
in nats per character; bits per character are :math:`\mathcal{L} / \ln 2` and the
perplexity :math:`e^{\mathcal{L}}`.

Regularisers (all off by default; Merity et al. 2018's AWD-LSTM recipe, see
`unrolled.dropout`): ``input_dropout`` on the embeddings :math:`e_t`;
``variational`` makes that, the dropout between layers and the one before the
output locked over time (one mask per stream and window); ``weight_drop`` drops
entries of every :math:`W_{hh}` (one mask per window); and the loss gains the
activation and temporal activation penalties of the last layer's outputs,

.. math::
    \mathcal{L}' = \mathcal{L} + \alpha\, \overline{\mathrm{dropout}(h^{(L)}_t)^2}
                 + \beta\, \overline{(h^{(L)}_t - h^{(L)}_{t-1})^2}

(means over batch, steps and units; ``activation_reg`` = :math:`\alpha`,
``temporal_reg`` = :math:`\beta`). The trainer logs :math:`\mathcal{L}` beside
:math:`\mathcal{L}'` as ``nats``.

Training reads the text as B parallel streams in consecutive windows of T
characters (`unrolled.data.text.TextStreams`, `StreamWindow`); the state
left by one window starts the next and is detached, so gradients flow back at
most T steps (truncated backpropagation through time, as char-rnn). Generation
goes through `unrolled.decoding` with `step(tokens, state) -> (log_probs,
state)`: one step of every cell for N streams at once. The application around
the model (data, training, sampling, evaluation, loading runs) is
`unrolled.apps.lm`.

Shapes: inputs and targets (B, T) int64; logits (B, T, V); the layer state is
torch's, h (L, B, H) or (h, c); the decoding state is a tuple of L cell states
(h (N, H), or (h, c)).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.cells import CELLS, State
from unrolled.checkpoint import CheckpointError
from unrolled.data.text import StreamWindow
from unrolled.dropout import check_rate, locked_dropout
from unrolled.products import affine, onednn_for
from unrolled.recurrent import LayerState, Recurrent, at_least_float32, cell_state, map_state

DecodeState = tuple[State, ...]  # one cell state per layer


@dataclass
class CharLMConfig:
    """The model's shape. `embedding=0` feeds one-hot vectors (the lecture's form) instead of an embedding."""

    vocab_size: int
    cell: str = "lstm"
    layers: int = 2
    hidden: int = 512
    embedding: int = 64
    dropout: float = 0.3
    tie_weights: bool = False
    cell_options: dict[str, Any] = field(default_factory=dict)
    input_dropout: float = 0.0
    variational: bool = False
    weight_drop: float = 0.0
    activation_reg: float = 0.0
    temporal_reg: float = 0.0

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        for name in ("vocab_size", "layers", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.embedding < 0:
            raise ValueError(f"embedding must be 0 (one-hot input) or a positive size, got {self.embedding}")
        for name in ("dropout", "input_dropout", "weight_drop"):
            check_rate(name, getattr(self, name))
        for name in ("activation_reg", "temporal_reg"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (off) or positive, got {getattr(self, name)}")
        if self.tie_weights and self.embedding != self.hidden:
            raise ValueError(f"tied weights need the embedding size to equal the hidden size, "
                             f"got embedding {self.embedding} and hidden {self.hidden}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CharLMConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CheckpointError(f"the model config has unknown keys {unknown}; was it written by a newer unrolled?")
        return cls(**values)


class CharLM(nn.Module):
    """Embedding (or one-hot) -> `Recurrent` -> linear, predicting the next character.

    Trainer: `loss(batch)`. Decoding: `step`, `reorder`, `prime`. A trained
    run, with its vocabulary, sampling and evaluation: `unrolled.apps.lm.LanguageModel.load(run)`.
    """

    def __init__(self, config: CharLMConfig) -> None:
        super().__init__()
        self.config = config
        width = config.embedding or config.vocab_size
        self.embedding = nn.Embedding(config.vocab_size, config.embedding) if config.embedding else None
        self.rnn = Recurrent(config.cell, width, config.hidden, config.layers, dropout=config.dropout,
                             batch_first=True, variational=config.variational, weight_drop=config.weight_drop,
                             **config.cell_options)
        self.head = nn.Linear(config.hidden, config.vocab_size)
        if config.tie_weights:
            assert self.embedding is not None
            self.head.weight = self.embedding.weight

    # ------------------------------------------------------------------ the function

    def embed(self, tokens: Tensor) -> Tensor:
        """e = E[x] (..., E), or the one-hot vector (..., V)."""
        if self.embedding is None:
            return F.one_hot(tokens, self.config.vocab_size).to(self.head.weight.dtype)
        return self.embedding(tokens)

    def forward(self, inputs: Tensor, state: LayerState | None = None) -> tuple[Tensor, LayerState]:
        """Logits (B, T, V) for inputs (B, T), and the state after the last character."""
        logits, state, _, _ = self.run(inputs, state)
        return logits, state

    def run(self, inputs: Tensor, state: LayerState | None) -> tuple[Tensor, LayerState, Tensor, Tensor]:
        """The logits, the state, and the last layer's outputs h (B, T, H) before and after dropout."""
        c = self.config
        e = self.dropped(self.embed(inputs), c.input_dropout)  # (B, T, E)
        out, state = self.rnn(e, state)  # (B, T, H)
        dropped = self.dropped(out, c.dropout)
        return self.head(dropped), state, out, dropped

    def dropped(self, x: Tensor, p: float) -> Tensor:
        """Dropout on x (B, T, F): one mask per stream and feature for all T steps if variational."""
        if self.config.variational:
            return locked_dropout(x, p, self.training, time_dim=1)
        return F.dropout(x, p, self.training)

    def loss(self, batch: StreamWindow | tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Mean cross-entropy in nats per character over the batch; a `StreamWindow` carries its state on."""
        if isinstance(batch, StreamWindow):
            inputs, targets, carry = batch.inputs, batch.targets, batch.carry
        else:
            (inputs, targets), carry = batch, None
        logits, state, out, dropped = self.run(inputs, carry.state if carry is not None else None)
        if carry is not None:
            carry.state = map_state(state, _detached_float)
        wide = at_least_float32(logits)  # bf16 training: the loss in float32
        loss = F.cross_entropy(wide.reshape(-1, wide.shape[-1]), targets.reshape(-1))
        metrics = {"tokens": float(targets.numel())}
        alpha, beta = self.config.activation_reg, self.config.temporal_reg
        if self.training and (alpha or beta):
            metrics["nats"] = loss.item()
            if alpha:
                loss = loss + alpha * at_least_float32(dropped).pow(2).mean()
            if beta:
                loss = loss + beta * at_least_float32(out[:, 1:] - out[:, :-1]).pow(2).mean()
        return loss, metrics

    # ------------------------------------------------------------------ decoding interface

    def prime(self, tokens: Tensor) -> tuple[Tensor, DecodeState]:
        """Read prime tokens (N, P), P >= 1, in one pass: log-probs of the next token (N, V) and the state."""
        logits, state = self(tokens)
        cells = tuple(cell_state(state, i) for i in range(len(self.rnn.cells)))
        return F.log_softmax(logits[:, -1].float(), dim=-1), cells

    def step(self, tokens: Tensor, state: DecodeState) -> tuple[Tensor, DecodeState]:
        """One character for N streams: tokens (N,) -> log-probs (N, V), stepping each cell once."""
        x = self.embed(tokens)  # (N, E)
        fast = onednn_for(x) is not None and not torch.is_grad_enabled()
        new: list[State] = []
        for index, before in enumerate(state):
            cell = self.rnn.cell(index)
            xw = cell.project(x)  # (N, G*H)
            x, after, _ = cell.step(xw, before, product=_fast_product) if fast else cell.step(xw, before)
            new.append(after)
        return F.log_softmax(self.head(x).float(), dim=-1), tuple(new)

    def reorder(self, state: DecodeState, index: Tensor) -> DecodeState:
        """The states of streams `index` (M,)."""
        return tuple(map_state(s, lambda part: part.index_select(0, index)) for s in state)


def _detached_float(tensor: Tensor) -> Tensor:
    """A carried state tensor cut from the graph and kept in float32 (bf16 training returns bf16 states)."""
    return at_least_float32(tensor.detach())


def _fast_product(name: str, h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """h W^T + b through oneDNN (what `Recurrent` uses for these shapes), outside autograd."""
    return affine(h, weight, bias)
