r"""Sequence to sequence: an encoder reads the source, a decoder writes the target one token at a time.

The lecture's Example III in its three versions. Versions 1 and 2 pass the
source to the decoder only through the encoder's final state ("h_n is the only
link"); version 3 lets every decoder step look back at every encoder state
(attention). Teacher forcing trains it: the decoder reads the true previous
token ("feed back the true output at each stage").

Encoder (L layers, D = 2 directions if bidirectional, else 1):

.. math::
    m_1 \dots m_S,\ \mathrm{final} = \mathrm{Recurrent}_{enc}(F[x_1] \dots F[x_S])
        &&m_j\ (D{\cdot}H),\ \text{each sequence over its own length}

Bridge, the decoder's initial state, layer by layer (l):

.. math::
    s^l_0 &= h^{enc,l}_n  &&D = 1\ \text{(the final state itself)}\\
    s^l_0 &= \tanh(W_b [\overrightarrow{h}^{l}_n; \overleftarrow{h}^{l}_1] + b_b)  &&D = 2\
        \text{(an LSTM's cell: the same with its own } W, b \text{ and no tanh)}

Decoder step t = 1, 2, ... with :math:`y_0` = ``<s>``:

.. math::
    u_t &= [E[y_{t-1}];\ \tilde h_{t-1}]  &&\text{input feeding (Luong et al. 2015), } \tilde h_0 = 0;
        \text{ else } u_t = E[y_{t-1}]\\
    o_t, s_t &= \mathrm{cells}(u_t, s_{t-1})  &&(H)\text{, L stacked cells, dropout between}\\
    c_t, a_t &= \mathrm{Attention}(o_t;\ m_1 \dots m_S)  &&a_t\ (S)\text{, 0 on padding; } c_t\ (D{\cdot}H)\\
    \tilde h_t &= \tanh(W_c [c_t; o_t])  &&(H)\text{; } \tilde h_t = o_t \text{ without attention}\\
    p(y_t \mid y_{<t}, x) &= \mathrm{softmax}(W_o\, \mathrm{dropout}(\tilde h_t) + b_o)
        &&(V_t)\text{, } W_o = E \text{ when tied}

The loss is the mean over the real target tokens (``</s>`` included) of the
cross-entropy, label-smoothed with :math:`\varepsilon` as in Szegedy et al.
2016 (the target distribution puts :math:`1 - \varepsilon` on the true token
and spreads :math:`\varepsilon` evenly over all :math:`V_t`).

Scheduled sampling (Bengio et al. 2015): while training, each input token
:math:`y_{t-1}` (t > 1) is replaced, with probability
:math:`p_k = p \cdot \min(1, k / K)` after k updates (a linear ramp over K =
`sampling_ramp` updates), by a token drawn from the model's own prediction
:math:`p(\cdot \mid y_{<t-1}, x)` at the step before (no gradient through the draw).

Without input feeding and scheduled sampling the decoder's recurrence does not
depend on the attention, so teacher forcing runs it over all T steps in one
call of the fused kernel and attends for all steps at once; otherwise it steps.
Both compute the same function (tested).

Shapes: B batch, S source length, T target length, E embedding, H hidden
units, V_s / V_t vocabularies; N decoding hypotheses. Token ids use
`PAD_ID` 0 and `UNK_ID` 1 on both sides, `BOS_ID` 2 (``<s>``) and `EOS_ID` 3
(``</s>``) on the target side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.attention import KINDS, Attention
from unrolled.cells import CELLS, State
from unrolled.data.vocab import PAD_ID
from unrolled.decoding import index_state, shared_rows
from unrolled.models.pooling import sequence_mask, token_embedding
from unrolled.recurrent import LayerState, Recurrent, at_least_float32, cell_state, map_state

KIND = "seq2seq"
BOS_ID = 2
EOS_ID = 3
ATTENTIONS = ("none", *KINDS)


@dataclass
class Seq2SeqConfig:
    """The encoder-decoder's shape; `layers` and `cell` are the encoder's and the decoder's alike."""

    source_vocab: int
    target_vocab: int
    embedding: int = 256
    hidden: int = 256
    layers: int = 1
    cell: str = "lstm"
    bidirectional: bool = True
    attention: str = "general"
    input_feed: bool = True
    dropout: float = 0.2
    tie_embeddings: bool = False
    label_smoothing: float = 0.0
    scheduled_sampling: float = 0.0
    sampling_ramp: int = 10_000

    def __post_init__(self) -> None:
        if self.source_vocab < 2:
            raise ValueError(f"source_vocab must count at least the padding and unknown ids (2), got "
                             f"{self.source_vocab}")
        if self.target_vocab < 5:
            raise ValueError(f"target_vocab must count <pad>, <unk>, <s>, </s> and a token (5), got "
                             f"{self.target_vocab}")
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {self.attention!r}; choose one of {', '.join(ATTENTIONS)}")
        for name in ("embedding", "hidden", "layers", "sampling_ramp"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("dropout", "label_smoothing"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.scheduled_sampling <= 1.0:
            raise ValueError(f"scheduled_sampling must be in [0, 1], got {self.scheduled_sampling}")
        if self.tie_embeddings and self.embedding != self.hidden:
            raise ValueError(f"tied embeddings need embedding = hidden, got {self.embedding} and {self.hidden}")
        if self.attention in ("dot", "scaled") and self.bidirectional:
            raise ValueError(f"{self.attention} attention compares the decoder state (hidden) with the encoder's "
                             f"(2 x hidden when bidirectional); use general or additive attention, or a "
                             "unidirectional encoder")

    @property
    def memory_size(self) -> int:
        """D*H, the size of an encoder state."""
        return self.hidden * (2 if self.bidirectional else 1)


class DecoderState(NamedTuple):
    """What the decoder carries from step to step, hypotheses along dim 0 of every tensor.

    rnn: one cell state per layer, h (N, H) or the LSTM's (h, c).
    feed: the last attentional state h~ (N, H) with input feeding, else None.
    memory, mask: the encoder states (n, S, D*H) and their real positions (n, S); None without attention.
    attention: the weights of the last step (N, S), or None (no attention, or no step yet).
    keys: what the attention precomputes of the memory (additive: (n, S, A)), or None.

    The memory is shared by the hypotheses of one input: the N = n K hypotheses
    are n blocks of K consecutive rows, block b reading memory row b (K = 1:
    a memory row per hypothesis). `Seq2Seq.reorder` keeps this layout, so a
    beam search copies the memory only when inputs leave the search.
    """

    rnn: tuple[State, ...]
    feed: Tensor | None
    memory: Tensor | None
    mask: Tensor | None
    attention: Tensor | None
    keys: Tensor | None = None


class Seq2Seq(nn.Module):
    """Encoder, bridge, decoder with optional attention; see the module docstring for the equations.

    Trainer: `loss(batch)` with a `unrolled.data.pairs.PairBatch`. Decoding
    (`unrolled.decoding`): `prime(source, lengths)`, `step(tokens, state)`,
    `reorder(state, index)`; the attention weights of a step are `state.attention`.
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = c = config
        directions = 2 if c.bidirectional else 1
        self.source_embedding = token_embedding(c.source_vocab, c.embedding)
        self.target_embedding = token_embedding(c.target_vocab, c.embedding)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = Recurrent(c.cell, c.embedding, c.hidden, c.layers, batch_first=True, dropout=c.dropout,
                                 bidirectional=c.bidirectional)
        self.bridge_h = nn.Linear(directions * c.hidden, c.hidden) if c.bidirectional else None
        self.bridge_c = (nn.Linear(directions * c.hidden, c.hidden)
                         if c.bidirectional and c.cell == "lstm" else None)
        feed = c.hidden if c.input_feed else 0
        self.decoder = Recurrent(c.cell, c.embedding + feed, c.hidden, c.layers, batch_first=True,
                                 dropout=c.dropout)
        self.attention = Attention(c.hidden, c.memory_size, c.attention) if c.attention != "none" else None
        self.combine = nn.Linear(c.memory_size + c.hidden, c.hidden, bias=False) if self.attention else None
        self.generator = nn.Linear(c.hidden, c.target_vocab)
        if c.tie_embeddings:
            self.generator.weight = self.target_embedding.weight
        self.updates: Tensor
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))  # for the scheduled-sampling ramp
        self.never_generated = torch.tensor([PAD_ID, BOS_ID])  # decoding gives them probability 0

    # ------------------------------------------------------------------ encoder and bridge

    def encode(self, source: Tensor, lengths: Tensor) -> DecoderState:
        """Read source (B, S) of true lengths (B,): the decoder's state before its first step."""
        lengths = lengths.to(source.device)
        mask = sequence_mask(lengths, source.shape[1])  # (B, S)
        memory, final = self.encoder(self.drop(self.source_embedding(source)), lengths=lengths)  # (B, S, D*H)
        start = self.bridge(final)
        rnn = tuple(cell_state(start, layer) for layer in range(self.config.layers))
        feed = memory.new_zeros(source.shape[0], self.config.hidden) if self.config.input_feed else None
        if self.attention is None:
            return DecoderState(rnn, feed, None, None, None)
        return DecoderState(rnn, feed, memory, mask, None, self.attention.keys(memory))

    def bridge(self, final: LayerState) -> LayerState:
        """s_0: the encoder's final state (L*D, B, H) -> the decoder's (L, B, H)."""
        if self.bridge_h is None:
            return final
        layers, hidden = self.config.layers, self.config.hidden

        def join(part: Tensor) -> Tensor:  # (L*2, B, H) -> (L, B, 2H): [forward; backward] per layer
            return part.view(layers, 2, -1, hidden).permute(0, 2, 1, 3).reshape(layers, -1, 2 * hidden)

        if isinstance(final, tuple):
            assert self.bridge_c is not None
            return torch.tanh(self.bridge_h(join(final[0]))), self.bridge_c(join(final[1]))
        return torch.tanh(self.bridge_h(join(final)))

    # ------------------------------------------------------------------ the decoder

    def attend(self, o: Tensor, state: DecoderState) -> tuple[Tensor, Tensor | None]:
        """h~ and the attention weights, for decoder outputs o (N, H) or (B, T, H)."""
        if self.attention is None:
            return o, None
        assert self.combine is not None and state.memory is not None
        inputs = state.memory.shape[0]
        if o.dim() == 2 and o.shape[0] != inputs:  # K hypotheses per memory row: (n, K, H) queries
            context, weights = self.attention(o.view(inputs, -1, o.shape[-1]), state.memory, state.mask, state.keys)
            context, weights = context.flatten(0, 1), weights.flatten(0, 1)  # (N, D*H), (N, S)
        else:
            context, weights = self.attention(o, state.memory, state.mask, state.keys)  # (.., D*H), (.., S)
        return torch.tanh(self.combine(torch.cat([context, o], dim=-1))), weights

    def decode_step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """One decoder step for N hypotheses: tokens (N,) -> logits (N, V_t) and the next state."""
        x = self.drop(self.target_embedding(tokens))  # (N, E)
        if state.feed is not None:
            x = torch.cat([x, state.feed.to(x.dtype)], dim=-1)  # (N, E+H)
        cells: list[State] = []
        for layer, before in enumerate(state.rnn):
            if layer > 0:
                x = self.drop(x) if self.config.dropout else x
            x, after = self.decoder.cell(layer)(x, before)  # (N, H)
            cells.append(map_state(after, at_least_float32))  # bf16 training: the carried state stays float32
        h_tilde, weights = self.attend(x, state)  # (N, H), (N, S)
        logits = self.generator(self.drop(h_tilde))  # (N, V_t)
        feed = at_least_float32(h_tilde) if state.feed is not None else None
        return logits, DecoderState(tuple(cells), feed, state.memory, state.mask, weights, state.keys)

    def forward(self, source: Tensor, source_lengths: Tensor, target_in: Tensor) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: logits (B, T, V_t) for target inputs (B, T) (``<s>`` y_1 ... y_{T-1}), and the
        attention weights (B, T, S) (None without attention)."""
        state = self.encode(source, source_lengths)
        if self.config.input_feed or self.sampling_probability() > 0:
            return self.stepwise(target_in, state)
        x = self.drop(self.target_embedding(target_in))  # (B, T, E)
        o, _ = self.decoder(x, layer_state(state.rnn))  # (B, T, H)
        h_tilde, weights = self.attend(o, state)  # (B, T, H), (B, T, S)
        return self.generator(self.drop(h_tilde)), weights

    def stepwise(self, target_in: Tensor, state: DecoderState) -> tuple[Tensor, Tensor | None]:
        """The decoder one step at a time (input feeding, scheduled sampling): logits (B, T, V_t), weights."""
        rate = self.sampling_probability() if self.training else 0.0
        logits, weights = [], []
        previous: Tensor | None = None
        for t in range(target_in.shape[1]):
            tokens = target_in[:, t]  # (B,)
            if rate > 0 and previous is not None:
                with torch.no_grad():
                    drawn = torch.multinomial(previous.float().softmax(-1), 1).squeeze(1)  # (B,)
                    use = torch.rand(tokens.shape, device=tokens.device) < rate
                tokens = torch.where(use, drawn, tokens)
            previous, state = self.decode_step(tokens, state)
            logits.append(previous)
            if state.attention is not None:
                weights.append(state.attention)
        return torch.stack(logits, dim=1), torch.stack(weights, dim=1) if weights else None

    def sampling_probability(self) -> float:
        """p_k = p * min(1, k / K) after k updates; 0 without scheduled sampling."""
        c = self.config
        if c.scheduled_sampling == 0:
            return 0.0
        return c.scheduled_sampling * min(1.0, int(self.updates) / c.sampling_ramp)

    def after_update(self) -> None:
        """Called by the trainer after each optimiser step: counts updates for the sampling ramp."""
        self.updates.add_(1)

    # ------------------------------------------------------------------ training

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """Mean (label-smoothed) cross-entropy per real target token; metrics: tokens, accuracy, nll.

        batch: a `PairBatch`, target (B, T+1) = ``<s>`` y_1 ... y_n ``</s>`` padded with `PAD_ID`.
        """
        target = batch.target
        logits, _ = self(batch.source, batch.source_lengths, target[:, :-1])  # (B, T, V_t)
        gold = target[:, 1:]  # (B, T)
        wide = at_least_float32(logits).flatten(0, 1)  # bf16 training: the loss in float32
        real = gold.flatten() != PAD_ID
        count = real.sum().clamp(min=1)
        smoothed = F.cross_entropy(wide, gold.flatten(), ignore_index=PAD_ID, reduction="sum",
                                   label_smoothing=self.config.label_smoothing)
        with torch.no_grad():
            nll = (F.cross_entropy(wide, gold.flatten(), ignore_index=PAD_ID, reduction="sum")
                   if self.config.label_smoothing else smoothed) / count  # unsmoothed: computed once when it is
            correct = ((wide.argmax(-1) == gold.flatten()) & real).sum()
        return smoothed / count, {"tokens": float(count), "accuracy": float(correct) / float(count),
                                  "nll": float(nll)}

    # ------------------------------------------------------------------ decoding

    def prime(self, source: Tensor, lengths: Tensor) -> tuple[Tensor, DecoderState]:
        """Encode and take the first decoder step from ``<s>``: log-probs of y_1 (B, V_t) and the state."""
        state = self.encode(source, lengths)
        return self.step(torch.full((source.shape[0],), BOS_ID, dtype=torch.long, device=source.device), state)

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """`unrolled.decoding`'s step: tokens (N,) -> log-probabilities (N, V_t) of the next token, new state."""
        logits, state = self.decode_step(tokens, state)
        logits = at_least_float32(logits).index_fill(1, self.never_generated.to(logits.device), -math.inf)
        return F.log_softmax(logits, dim=-1), state

    def reorder(self, state: DecoderState, index: Tensor) -> DecoderState:
        """The state of hypotheses `index` (M,), every tensor along dim 0; the memory stays shared.

        Hypothesis r of the N reads memory row g_r = r // K (K = N / n). The new
        rows read g_index. When they form blocks of equal size, one input after
        another (a beam search's reorder always does), the memory keeps one row
        per block, untouched when no input left; otherwise it gets one row per
        new hypothesis.
        """
        rows = state.rnn[0][0] if isinstance(state.rnn[0], tuple) else state.rnn[0]
        per_row = index_state(state._replace(memory=None, mask=None, keys=None), index, 0)
        if state.memory is None:
            return per_row
        kept = shared_rows(index, hypotheses=rows.shape[0], inputs=state.memory.shape[0])
        if kept is None:
            return per_row._replace(memory=state.memory, mask=state.mask, keys=state.keys)
        shared = index_state((state.memory, state.mask, state.keys), kept, 0)
        return per_row._replace(memory=shared[0], mask=shared[1], keys=shared[2])


def layer_state(rnn: tuple[State, ...]) -> LayerState:
    """Per-layer cell states -> torch's layer state (L, N, H) (or (h, c))."""
    pairs = [s for s in rnn if isinstance(s, tuple)]
    if pairs:
        return torch.stack([h for h, _ in pairs]), torch.stack([c for _, c in pairs])
    return torch.stack([s for s in rnn if isinstance(s, Tensor)])


