r"""Image captioning: a CNN reads the image into a grid of feature vectors, an LSTM writes the caption.

The lecture's Example II ("use CNNs and RNNs together to go from one data type
to another"), in two forms.

Encoder, a small residual network (He et al. 2016) on the image I (3, H, W):

.. math::
    a_1 \dots a_L = \mathrm{CNN}(I)  &&a_i\ (D)\text{, one per cell of the } H/2^s \times W/2^s
        \text{ grid, } L \text{ cells}

a stem (3x3 convolution, batch norm, ReLU) and s stages, each a residual block
that halves the resolution (3x3 stride 2, 1x1 stride 2 on the shortcut) and
one that keeps it.

**Soft attention** (Show, Attend and Tell, Xu et al. 2015), ``attention="soft"``.
Initial state from the mean feature :math:`\bar a = \frac1L \sum_i a_i`; step
t = 1, 2, ... with :math:`y_0` = ``<s>``:

.. math::
    h_0 &= \tanh(W_{h0} \bar a + b_{h0}),\quad c_0 = \tanh(W_{c0} \bar a + b_{c0})\\
    e_{ti} &= v^\top \tanh(W_q h_{t-1} + W_k a_i + b_k)  &&\text{additive attention on } h_{t-1}\\
    \alpha_t &= \mathrm{softmax}(e_t)  &&(L)\\
    \beta_t &= \sigma(w_\beta^\top h_{t-1} + b_\beta)  &&\text{the gating scalar}\\
    z_t &= \beta_t \sum_i \alpha_{ti} a_i  &&(D)\\
    h_t, c_t &= \mathrm{LSTM}([E[y_{t-1}];\ z_t],\ (h_{t-1}, c_{t-1}))  &&(H)\\
    p(y_t \mid y_{<t}, I) &= \mathrm{softmax}(L_o\, \mathrm{dropout}(E[y_{t-1}] + L_h h_t + L_z z_t))
        &&\text{the deep output, } L_o\ (V \times E)

and the loss adds the doubly stochastic regularisation, with :math:`T_b` the
real steps of caption b:

.. math::
    \mathcal L = \mathrm{CE} + \lambda \frac1B \sum_b \frac1L \sum_i \Bigl(1 - \sum_{t \le T_b} \alpha_{bti}\Bigr)^2

Xu et al. sum over the L cells; the mean used here (as common PyTorch
reimplementations do) makes lambda mean the same for every grid size. With
fewer words than cells the term cannot reach 0; its least is at attention
spread evenly over the caption, so it pushes the model to look everywhere once.

**Plain** (Vinyals et al. 2015, the lecture's picture), ``attention="none"``:
the image is the decoder's first input and the only link,

.. math::
    h_0, c_0 &= \mathrm{LSTM}(W_v \bar a,\ 0)  &&\text{the step that reads the image}\\
    h_t, c_t &= \mathrm{LSTM}(E[y_{t-1}],\ (h_{t-1}, c_{t-1})),\quad
        p(y_t \mid y_{<t}, I) = \mathrm{softmax}(W_o\, \mathrm{dropout}(h_t) + b_o)

CE is the mean cross-entropy over the real caption tokens (``</s>``
included). Decoding goes through `unrolled.decoding` (`prime`, `step`,
`reorder`); the attention weights of a step are `CaptionState.attention`, one
per grid cell, for the attention strips.

Shapes: B batch, T caption steps, L grid cells, D feature size, E embedding,
H hidden units, V vocabulary; N decoding hypotheses. Token ids: `PAD_ID` 0,
`UNK_ID` 1, `BOS_ID` 2 (``<s>``), `EOS_ID` 3 (``</s>``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.attention import Attention
from unrolled.cells import LSTMCell
from unrolled.data.vocab import PAD_ID
from unrolled.decoding import index_state, shared_rows
from unrolled.models.pooling import token_embedding
from unrolled.recurrent import at_least_float32

BOS_ID, EOS_ID = 2, 3
KIND = "captioner"
ATTENTIONS = ("soft", "none")


@dataclass
class CaptionerConfig:
    """The captioner's shape; saved in every checkpoint.

    vocab         V, caption tokens including the four specials
    channels      the stem's channels; each stage doubles them (D = channels * 2**(stages-1))
    stages        resolution halvings of the encoder (grid = image / 2**stages)
    embedding     E;  hidden: H
    attention     "soft" (Xu et al. 2015) or "none" (the image as the first input)
    attention_units  A of the additive attention (default H)
    dropout       before the output layer
    doubly_stochastic  lambda of the attention regulariser (soft attention only)
    freeze_encoder     no gradient into the CNN (a pretrained encoder kept as it is)
    """

    vocab: int
    channels: int = 32
    stages: int = 3
    embedding: int = 64
    hidden: int = 256
    attention: str = "soft"
    attention_units: int | None = None
    dropout: float = 0.3
    doubly_stochastic: float = 1.0
    freeze_encoder: bool = False

    def __post_init__(self) -> None:
        if self.vocab < 5:
            raise ValueError(f"vocab must hold the 4 special tokens and at least one word, got {self.vocab}")
        for name in ("channels", "stages", "embedding", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {self.attention!r}: choose one of {', '.join(ATTENTIONS)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.doubly_stochastic < 0:
            raise ValueError(f"doubly_stochastic must be >= 0, got {self.doubly_stochastic}")

    @property
    def features(self) -> int:
        """D, the size of each grid cell's feature vector."""
        return self.channels * 2 ** (self.stages - 1)


class Residual(nn.Module):
    """x -> relu(BN(conv(relu(BN(conv_s(x))))) + shortcut(x)); stride s, a 1x1 projection when the shape changes."""

    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(outputs)
        self.shortcut = (nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(outputs))
                         if stride != 1 or inputs != outputs else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(y)) + self.shortcut(x))


class ConvEncoder(nn.Module):
    """images (B, 3, H, W) in [0, 1] -> features (B, L, D), L = ceil(H / 2^s) * ceil(W / 2^s), row by row."""

    def __init__(self, channels: int, stages: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU())
        blocks: list[nn.Module] = []
        width = channels
        for stage in range(stages):
            out = channels * 2 ** stage
            blocks += [Residual(width, out, stride=2), Residual(out, out, stride=1)]
            width = out
        self.blocks = nn.Sequential(*blocks)

    def forward(self, images: Tensor) -> Tensor:
        grid = self.blocks(self.stem(images - 0.5))  # (B, D, H', W')
        return grid.flatten(2).transpose(1, 2)  # (B, L, D)


class CaptionState(NamedTuple):
    """The decoder's state: hypotheses along dim 0, the features shared by an input's hypotheses.

    h, c (N, H); features (n, L, D) and keys (n, L, A) (soft attention; None
    for the plain model); attention the weights of the last step (N, L) or
    None. The N = n K hypotheses are n blocks of K rows (see `shared_rows`).
    """

    h: Tensor
    c: Tensor
    features: Tensor | None
    keys: Tensor | None
    attention: Tensor | None


class Captioner(nn.Module):
    """The CNN encoder and the LSTM decoder; see the module docstring for the equations.

    Trainer: `loss(batch)` with ``batch.images`` (B, 3, H, W) and
    ``batch.target`` (B, T+1) = ``<s>`` y_1 ... y_n ``</s>`` padded with 0.
    Decoding: `prime(images)`, `step(tokens, state)`, `reorder(state, index)`.
    """

    def __init__(self, config: CaptionerConfig) -> None:
        super().__init__()
        self.config = c = config
        d = c.features
        self.encoder = ConvEncoder(c.channels, c.stages)
        self.embedding = token_embedding(c.vocab, c.embedding)
        self.drop = nn.Dropout(c.dropout)
        soft = c.attention == "soft"
        self.cell = LSTMCell(c.embedding + (d if soft else 0), c.hidden)
        if soft:
            self.init_h, self.init_c = nn.Linear(d, c.hidden), nn.Linear(d, c.hidden)
            self.attend = Attention(c.hidden, d, "additive", hidden=c.attention_units or c.hidden)
            self.gate = nn.Linear(c.hidden, 1)  # beta_t
            self.out_h = nn.Linear(c.hidden, c.embedding)  # L_h
            self.out_z = nn.Linear(d, c.embedding, bias=False)  # L_z
            self.output = nn.Linear(c.embedding, c.vocab)  # L_o
        else:
            self.image_input = nn.Linear(d, c.embedding)  # W_v
            self.output = nn.Linear(c.hidden, c.vocab)  # W_o
        self.never_generated = torch.tensor([PAD_ID, BOS_ID])  # decoding gives them probability 0

    # ------------------------------------------------------------------ encoder and first state

    def encode(self, images: Tensor) -> CaptionState:
        """images (B, 3, H, W) in [0, 1] -> the state before the first word."""
        if self.config.freeze_encoder:
            self.encoder.eval()  # batch-norm statistics stay those of the pretrained encoder
            with torch.no_grad():
                features = self.encoder(images)  # (B, L, D)
        else:
            features = self.encoder(images)
        mean = features.mean(dim=1)  # (B, D)
        if self.config.attention == "none":
            zero = mean.new_zeros(mean.shape[0], self.config.hidden)
            h, (_, c) = self.cell(self.image_input(mean), (zero, zero))  # the step that reads the image
            return CaptionState(h, c, None, None, None)
        h, c = torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))  # (B, H)
        return CaptionState(h, c, features, self.attend.keys(features), None)

    # ------------------------------------------------------------------ one step

    def decode_step(self, tokens: Tensor, state: CaptionState) -> tuple[Tensor, CaptionState]:
        """tokens (N,) -> logits (N, V) and the next state (the module docstring's step t)."""
        e = self.embedding(tokens)  # (N, E)
        if state.features is None:
            h, (_, c) = self.cell(e, (state.h, state.c))
            return self.output(self.drop(h)), CaptionState(h, c, None, None, None)
        inputs = state.features.shape[0]
        query = state.h.view(inputs, -1, state.h.shape[-1])  # (n, K, H): the K hypotheses of each image
        context, alpha = self.attend(query, state.features, None, state.keys)  # (n, K, D), (n, K, L)
        context, alpha = context.flatten(0, 1), alpha.flatten(0, 1)  # (N, D), (N, L)
        z = torch.sigmoid(self.gate(state.h)) * context  # beta_t * sum_i alpha_ti a_i, (N, D)
        h, (_, c) = self.cell(torch.cat([e, z], dim=-1), (state.h, state.c))  # (N, H)
        logits = self.output(self.drop(e + self.out_h(h) + self.out_z(z)))  # (N, V)
        return logits, CaptionState(h, c, state.features, state.keys, alpha)

    # ------------------------------------------------------------------ training

    def forward(self, images: Tensor, target_in: Tensor) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: logits (B, T, V) for inputs (B, T) (``<s>`` y_1 ... y_{T-1}), weights (B, T, L)."""
        state = self.encode(images)
        logits, weights = [], []
        for t in range(target_in.shape[1]):
            step_logits, state = self.decode_step(target_in[:, t], state)
            logits.append(step_logits)
            if state.attention is not None:
                weights.append(state.attention)
        return torch.stack(logits, dim=1), torch.stack(weights, dim=1) if weights else None

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """Mean cross-entropy per real caption token plus lambda times the attention regulariser.

        Metrics: tokens, accuracy, nll (the cross-entropy alone) and, with
        attention, coverage (the regulariser's mean over images).
        """
        target = batch.target
        logits, weights = self(batch.images, target[:, :-1])  # (B, T, V), (B, T, L)
        gold = target[:, 1:]  # (B, T)
        real = gold != PAD_ID
        count = real.sum().clamp(min=1)
        wide = at_least_float32(logits).flatten(0, 1)
        nll = F.cross_entropy(wide, gold.flatten(), ignore_index=PAD_ID, reduction="sum") / count
        with torch.no_grad():
            correct = ((wide.argmax(-1) == gold.flatten()) & real.flatten()).sum()
        metrics = {"tokens": float(count), "accuracy": float(correct) / float(count), "nll": float(nll.detach())}
        if weights is None or self.config.doubly_stochastic == 0:
            return nll, metrics
        attended = (weights * real.unsqueeze(-1).to(weights.dtype)).sum(dim=1)  # sum over real t, (B, L)
        coverage = ((1.0 - attended) ** 2).mean()  # over cells and images
        metrics["coverage"] = float(coverage.detach())
        return nll + self.config.doubly_stochastic * coverage, metrics

    # ------------------------------------------------------------------ decoding interface

    def prime(self, images: Tensor) -> tuple[Tensor, CaptionState]:
        """Encode and take the first step from ``<s>``: log-probs of y_1 (B, V) and the state."""
        state = self.encode(images)
        return self.step(torch.full((images.shape[0],), BOS_ID, dtype=torch.long, device=images.device), state)

    def step(self, tokens: Tensor, state: CaptionState) -> tuple[Tensor, CaptionState]:
        """`unrolled.decoding`'s step: tokens (N,) -> log-probabilities (N, V) of the next token, new state."""
        logits, state = self.decode_step(tokens, state)
        logits = at_least_float32(logits).index_fill(1, self.never_generated.to(logits.device), -math.inf)
        return F.log_softmax(logits, dim=-1), state

    def reorder(self, state: CaptionState, index: Tensor) -> CaptionState:
        """The state of hypotheses `index` (M,); the image features stay shared (`shared_rows`)."""
        h, c, attention = index_state((state.h, state.c, state.attention), index, 0)
        if state.features is None:
            return CaptionState(h, c, None, None, attention)
        kept = shared_rows(index, hypotheses=state.h.shape[0], inputs=state.features.shape[0])
        features, keys = (state.features, state.keys) if kept is None else index_state(
            (state.features, state.keys), kept, 0)
        return CaptionState(h, c, features, keys, attention)
