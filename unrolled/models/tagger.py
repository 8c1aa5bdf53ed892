r"""Many-to-many: a tag for every step of a sequence (part of speech, named entities, frame labels).

Each step t of a sequence of length n gets one tag of C. The input of a step
is a word embedding, optionally with features of the word's characters (Lample
et al. 2016's character BiLSTM, or Ma & Hovy 2016's character CNN), or a float
feature vector when the sequence is not made of tokens (video frames):

.. math::
    x_t &= \mathrm{dropout}\big([E[w_t];\ \mathrm{chars}(c_{t,1} \dots c_{t,m_t})]\big)
        &&(E + F), \text{ or } \mathrm{dropout}(f_t)\ (N) \text{ for float features}\\
    h_t &= [\overrightarrow{h}_t;\ \overleftarrow{h}_t] = \mathrm{Recurrent}(x_1, \dots, x_n)_t
        &&(D{\cdot}H), \text{ L stacked layers, dropout between them}\\
    p(y_t \mid x) &= \mathrm{softmax}(W\, \mathrm{dropout}(h_t) + b)  &&(C)

The character features of word t, spelled :math:`c_{t,1} \dots c_{t,m_t}`, are
the final states of a BiLSTM over its character embeddings,
:math:`[\overrightarrow{g}_{m_t}; \overleftarrow{g}_1]` (F = 2 x `chars`), or
Kim's convolution with max over the word (`ConvMaxPool`, one width, F = `chars`
filters). The loss is the mean cross-entropy over the real steps,
:math:`\mathcal{L} = -\frac{1}{N}\sum_{b, t \le n_b} \log p(y_{b,t} \mid x_b)`, N of them
(steps labelled `IGNORE_LABEL` skipped).

==========  ====================  ================================================
tensor      shape                 meaning
==========  ====================  ================================================
ids         (B, T) int64          word ids, `PAD_ID` past each length; or
            (B, T, N) float       feature vectors when `input_features` = N > 0
lengths     (B,) int64            true lengths n_b in 1..T
chars       (B, T, W) int64       character ids of each word, `PAD_ID` padded
x           (B, T, E+F) or N      the recurrent layer's input
h           (B, T, D*H)           its outputs, 0 past each length
logits      (B, T, C)             a score per tag and step
==========  ====================  ================================================

Padding never changes a prediction: a sequence gets the same logits alone and
in a batch next to longer ones, whatever the batch holds past its length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.cells import CELLS
from unrolled.data.labelled import IGNORE_LABEL, TokenBatch
from unrolled.data.vocab import PAD_ID
from unrolled.models.pooling import ConvMaxPool, copy_vectors, last_pool, sequence_mask, token_embedding
from unrolled.recurrent import Recurrent, at_least_float32

CHAR_ENCODERS = ("lstm", "cnn")


@dataclass
class TaggerConfig:
    """The tagger's shape.

    Input: token ids (`vocab_size` >= 2, `embedding` E), or float feature vectors
    (`input_features` N > 0 with `vocab_size` 0: no embedding, no characters).
    Characters: `chars` > 0 turns them on and is the character encoder's size
    (BiLSTM hidden units per direction, or CNN filters); it needs `char_vocab_size`.
    """

    vocab_size: int
    tags: int
    embedding: int = 100
    input_features: int = 0
    chars: int = 0
    char_vocab_size: int = 0
    char_embedding: int = 25
    char_encoder: str = "lstm"
    char_width: int = 3
    cell: str = "lstm"
    hidden: int = 100
    layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.5
    embedding_dropout: float = 0.5
    freeze_embedding: bool = False
    cell_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.check_input()
        if self.tags < 2:
            raise ValueError(f"tags must be at least 2, got {self.tags}")
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        for name in ("hidden", "layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("dropout", "embedding_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    def check_input(self) -> None:
        """Token ids xor float features; characters only with token ids, and with their vocabulary."""
        if self.input_features < 0:
            raise ValueError(f"input_features must be 0 (token ids) or a positive size, got {self.input_features}")
        if self.input_features:
            if self.vocab_size or self.chars:
                raise ValueError("float feature inputs (input_features > 0) take vocab_size=0 and chars=0")
            return
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must count at least the padding and unknown ids (2), got {self.vocab_size}")
        if self.embedding < 1:
            raise ValueError(f"embedding must be a positive size, got {self.embedding}")
        if self.chars < 0:
            raise ValueError(f"chars must be 0 (no character features) or a positive size, got {self.chars}")
        if not self.chars:
            return
        if self.char_vocab_size < 2:
            raise ValueError(f"character features (chars > 0) need char_vocab_size >= 2, got {self.char_vocab_size}")
        if self.char_encoder not in CHAR_ENCODERS:
            raise ValueError(f"unknown char_encoder {self.char_encoder!r}; choose one of {', '.join(CHAR_ENCODERS)}")
        if self.char_embedding < 1 or self.char_width < 1:
            raise ValueError(f"char_embedding and char_width must be positive, got {self.char_embedding} "
                             f"and {self.char_width}")

    @property
    def char_features(self) -> int:
        """F, the size of a word's character features (0 without them)."""
        return 2 * self.chars if self.char_encoder == "lstm" else self.chars


def step_loss(logits: Tensor, labels: Tensor | None, lengths: Tensor, *, who: str,
              step: str) -> tuple[Tensor, float, float]:
    """The mean cross-entropy over the labelled real steps, their number, and the accuracy there.

    logits (B, T, C); labels (B, T), `IGNORE_LABEL` where a step has none
    (steps past a length are skipped whatever they hold); lengths (B,). Labels
    of another shape: a ValueError saying that `who` needs a label per `step`.
    """
    if labels is None or labels.shape != logits.shape[:2]:
        shape = None if labels is None else tuple(labels.shape)
        raise ValueError(f"{who} needs a label per {step}, labels (B, T) = {tuple(logits.shape[:2])}; got {shape}")
    mask = sequence_mask(lengths.to(labels.device), labels.shape[1])  # (B, T)
    labels = labels.masked_fill(~mask, IGNORE_LABEL)  # (B, T): whatever the batch put past the lengths
    counted = labels != IGNORE_LABEL  # (B, T)
    steps = counted.sum()
    wide = at_least_float32(logits)  # bf16 training: the loss in float32
    total = F.cross_entropy(wide.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_LABEL, reduction="sum")
    correct = ((logits.argmax(-1) == labels) & counted).sum()
    return total / steps.clamp(min=1), float(steps), float(correct) / max(float(steps), 1.0)


class CharFeatures(nn.Module):
    """A word's spelling as a vector: a BiLSTM's final states, or a convolution's max, over its characters.

    `forward(chars, mask)`: chars (B, T, W), mask (B, T) -> (B, T, F), 0 on padded
    steps. Only the words at real steps are read, each over its own length
    m (its non-`PAD_ID` characters, at least 1).
    """

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        self.embedding = token_embedding(config.char_vocab_size, config.char_embedding)
        self.size = config.char_features
        self.rnn: Recurrent | None = None
        self.convolution: ConvMaxPool | None = None
        if config.char_encoder == "lstm":
            self.rnn = Recurrent("lstm", config.char_embedding, config.chars, batch_first=True, bidirectional=True)
        else:
            self.convolution = ConvMaxPool(config.char_embedding, [config.char_width], config.chars)

    def forward(self, chars: Tensor, mask: Tensor) -> Tensor:
        words = chars[mask]  # (N, W): the N words at real steps
        lengths = (words != PAD_ID).sum(-1).clamp(min=1)  # (N,)
        g = self.embedding(words)  # (N, W, E_c)
        if self.rnn is not None:
            _, state = self.rnn(g, lengths=lengths)  # (2, N, chars)
            features = last_pool(state, directions=2)  # (N, F)
        else:
            assert self.convolution is not None
            features = self.convolution(g, lengths)  # (N, F)
        out = features.new_zeros(*mask.shape, self.size)  # (B, T, F)
        out[mask] = features
        return out


class Tagger(nn.Module):
    """Word embedding (+ character features) or float features -> `Recurrent` -> dropout -> linear per step.

    Trainer: `loss(batch)`. Users: `predict(batch)` -> tag ids (B, T), `IGNORE_LABEL`
    past each length; `load_embeddings(vectors)` for pretrained word vectors.
    """

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding: nn.Embedding | None = None
        self.chars: CharFeatures | None = None
        if config.input_features:
            width = config.input_features  # N
        else:
            self.embedding = token_embedding(config.vocab_size, config.embedding)
            self.embedding.weight.requires_grad_(not config.freeze_embedding)
            self.chars = CharFeatures(config) if config.chars else None
            width = config.embedding + config.char_features  # E + F
        self.input_drop = nn.Dropout(config.embedding_dropout)
        self.rnn = Recurrent(config.cell, width, config.hidden, config.layers, batch_first=True,
                             dropout=config.dropout, bidirectional=config.bidirectional, **config.cell_options)
        self.drop = nn.Dropout(config.dropout)
        directions = 2 if config.bidirectional else 1
        self.head = nn.Linear(directions * config.hidden, config.tags)

    def inputs(self, ids: Tensor, mask: Tensor, chars: Tensor | None) -> Tensor:
        """x (B, T, E+F): the word embedding and character features; or the float features (B, T, N)."""
        if self.embedding is None:
            if ids.dim() != 3 or ids.shape[-1] != self.config.input_features:
                raise ValueError(f"this tagger reads float features (B, T, {self.config.input_features}) in "
                                 f"batch.ids, got {tuple(ids.shape)}")
            return ids.to(self.head.weight.dtype)  # (B, T, N)
        e = self.embedding(ids)  # (B, T, E)
        if self.chars is None:
            return e
        if chars is None or chars.dim() != 3 or chars.shape[:2] != ids.shape:
            shape = None if chars is None else tuple(chars.shape)
            raise ValueError(f"this tagger reads characters: batch.chars must be (B, T, W) = "
                             f"({ids.shape[0]}, {ids.shape[1]}, W), got {shape}")
        return torch.cat([e, self.chars(chars, mask)], dim=-1)  # (B, T, E+F)

    def forward(self, ids: Tensor, lengths: Tensor, chars: Tensor | None = None) -> Tensor:
        """Logits (B, T, C) for ids (B, T) (or features (B, T, N)) of true lengths (B,); 0 past each length."""
        lengths = lengths.to(ids.device)
        mask = sequence_mask(lengths, ids.shape[1])  # (B, T)
        x = self.input_drop(self.inputs(ids, mask, chars))  # (B, T, E+F)
        h, _ = self.rnn(x, lengths=lengths)  # (B, T, D*H), 0 past each length
        logits = self.head(self.drop(h))  # (B, T, C)
        return logits * mask.unsqueeze(-1)  # (B, T, C): the bias alone would show past the lengths

    def loss(self, batch: TokenBatch) -> tuple[Tensor, dict[str, float]]:
        """Mean cross-entropy over the labelled real steps; metrics: tokens (their number), accuracy."""
        logits = self(batch.ids, batch.lengths, batch.chars)  # (B, T, C)
        loss, steps, accuracy = step_loss(logits, batch.labels, batch.lengths, who="a tagger", step="step")
        return loss, {"tokens": steps, "accuracy": accuracy}

    def predict(self, batch: TokenBatch) -> Tensor:
        """Tag ids (B, T), `IGNORE_LABEL` past each length; eval mode (no dropout), no gradients."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                logits = self(batch.ids, batch.lengths, batch.chars)  # (B, T, C)
        finally:
            self.train(was_training)
        mask = sequence_mask(batch.lengths.to(logits.device), logits.shape[1])  # (B, T)
        return logits.argmax(-1).masked_fill(~mask, IGNORE_LABEL)  # (B, T)

    def load_embeddings(self, vectors: Tensor, freeze: bool | None = None) -> None:
        """Copy pretrained word vectors (V, E), every row as given; freeze (default: the config's) stops their training.

        The choice is written into the config's `freeze_embedding`, so a checkpoint rebuilds the model frozen.
        """
        if self.embedding is None:
            raise ValueError("this tagger reads float features (input_features > 0); it has no word embedding")
        if freeze is not None:
            self.config.freeze_embedding = freeze
        copy_vectors(self.embedding, vectors, freeze=self.config.freeze_embedding)
