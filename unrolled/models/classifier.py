r"""Many-to-one: a class for each token sequence, read by a recurrent network or by Kim's CNN.

A sequence :math:`x_1 \dots x_n` of token ids (padded to the batch's T with
`PAD_ID`) gets one class of C. Both networks embed the tokens, turn the
sequence into one vector z, and classify it:

.. math::
    e_t &= \mathrm{dropout}(E[x_t])                       &&(E)\\
    z &= \mathrm{pool}\big(\mathrm{Recurrent}(e_1, \dots, e_n)\big)
        \ \text{or}\ \mathrm{ConvMax}(e_1, \dots, e_n)  &&(D{\cdot}H \text{ or } F)\\
    p(y \mid x) &= \mathrm{softmax}(W\, \mathrm{dropout}(z) + b)  &&(C)

`RNNClassifier` runs a `Recurrent` layer (LSTM, GRU or RNN; bidirectional by
default) over the real steps only and pools its outputs with one of
`unrolled.models.pooling`'s functions: "last" (each direction's final state),
"mean", "max" or "attention". `CNNClassifier` is Kim (2014): convolutions of
widths 3, 4, 5 with 100 feature maps each, ReLU, max over time. Both train on
the mean cross-entropy :math:`\mathcal{L} = -\frac{1}{B}\sum_b \log p(y_b \mid x_b)`.

With ``wide_order`` N > 0 a classifier also has the NB-weighted bag of
1..N-grams of `unrolled.models.nbwide` (NBSVM's features, Wang and Manning
2012), whose scores s (C) join the logits: :math:`p(y \mid x) =
\mathrm{softmax}(W\,\mathrm{dropout}(z) + b + s)`. Each part is trained as a
classifier of its own, :math:`\mathcal{L} = \mathrm{CE}(W z + b) +
\mathrm{CE}(s)`, and the prediction is their product of experts: trained on
the loss of the sum instead, the network only fits what the n-grams leave and
overfits (on MR's validation part, CNN: 79.7% against 81.0%).

==========  ============  ==============================================
tensor      shape         meaning
==========  ============  ==============================================
ids         (B, T) int64  token ids, `PAD_ID` past each length
lengths     (B,) int64    true lengths n_b in 1..T
e           (B, T, E)     embedded tokens
h           (B, T, D*H)   the top recurrent layer's outputs, D directions
z           (B, D*H)      the pooled sequence (RNN); (B, F) for the CNN, F = M x widths
logits      (B, C)        one score per class
==========  ============  ==============================================

Padding never changes a prediction: a sequence gets the same logits alone and
in a batch next to longer ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.cells import CELLS
from unrolled.data.labelled import TokenBatch
from unrolled.models.nbwide import NBWide, check_order
from unrolled.models.pooling import (
    AttentionPool,
    ConvMaxPool,
    copy_vectors,
    last_pool,
    max_pool,
    mean_pool,
    sequence_mask,
    token_embedding,
)
from unrolled.recurrent import Recurrent, at_least_float32

POOLINGS = ("last", "mean", "max", "attention")
KIM_WIDTHS = (3, 4, 5)
KIM_FEATURE_MAPS = 100
WIDE_BETA = 0.25
"""The NB branch's starting gain beta (`unrolled.models.nbwide`): Wang and Manning's interpolation weight."""
KIM_MAX_NORM = 3.0
"""Kim's l2 constraint s: each class's output weight row is rescaled to norm s when a step takes it past s."""


def _check_common(config: Any) -> None:
    """The checks both classifier configs share: sizes, dropouts."""
    if config.vocab_size < 2:
        raise ValueError(f"vocab_size must count at least the padding and unknown ids (2), got {config.vocab_size}")
    if config.classes < 2:
        raise ValueError(f"classes must be at least 2, got {config.classes}")
    if config.embedding < 1:
        raise ValueError(f"embedding must be a positive size, got {config.embedding}")
    for name in ("dropout", "embedding_dropout"):
        if not 0.0 <= getattr(config, name) < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {getattr(config, name)}")
    if config.wide_order < 0 or config.wide_features < 0:
        raise ValueError(f"wide_order and wide_features must be 0 (no wide branch) or more, got "
                         f"{config.wide_order} and {config.wide_features}")
    if config.wide_order:
        check_order(config.wide_order, config.vocab_size)


@dataclass
class RNNClassifierConfig:
    """The recurrent classifier's shape.

    `pooling` defaults to "max": over a BiLSTM it beat last, mean and attention
    pooling in Conneau et al. (2017). `attention_size` (A) is used by attention
    pooling only. `dropout` acts between stacked layers and on z; `embedding_dropout` on e.
    """

    vocab_size: int
    classes: int
    embedding: int = 300
    cell: str = "lstm"
    hidden: int = 256
    layers: int = 1
    bidirectional: bool = True
    pooling: str = "max"
    attention_size: int = 100
    dropout: float = 0.5
    embedding_dropout: float = 0.0
    freeze_embedding: bool = False
    cell_options: dict[str, Any] = field(default_factory=dict)
    wide_order: int = 0
    wide_features: int = 0
    wide_beta: float = WIDE_BETA

    def __post_init__(self) -> None:
        _check_common(self)
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose one of {', '.join(POOLINGS)}")
        for name in ("hidden", "layers", "attention_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")


@dataclass
class CNNClassifierConfig:
    """Kim's (2014) CNN: `feature_maps` (M) filters of each width; `max_norm` is the s of `apply_max_norm` (0: off)."""

    vocab_size: int
    classes: int
    embedding: int = 300
    widths: list[int] = field(default_factory=lambda: list(KIM_WIDTHS))
    feature_maps: int = KIM_FEATURE_MAPS
    dropout: float = 0.5
    embedding_dropout: float = 0.0
    max_norm: float = KIM_MAX_NORM
    freeze_embedding: bool = False
    wide_order: int = 0
    wide_features: int = 0
    wide_beta: float = WIDE_BETA

    def __post_init__(self) -> None:
        _check_common(self)
        self.widths = [int(width) for width in self.widths]  # a tuple or a JSON list alike
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be one or more positive filter widths, got {self.widths}")
        if self.feature_maps < 1:
            raise ValueError(f"feature_maps must be a positive integer, got {self.feature_maps}")
        if self.max_norm < 0:
            raise ValueError(f"max_norm must be 0 (no constraint) or positive, got {self.max_norm}")


class SequenceClassifier(nn.Module):
    """What both classifiers share: the embedding, the output layer, the loss and prediction.

    A subclass sets `embedding`, `drop`, `head` and defines `features(ids, lengths) -> z (B, F)`.
    """

    config: RNNClassifierConfig | CNNClassifierConfig
    embedding: nn.Embedding
    embedding_drop: nn.Dropout
    drop: nn.Dropout
    head: nn.Linear

    def features(self, ids: Tensor, lengths: Tensor) -> Tensor:
        raise NotImplementedError

    wide: NBWide | None

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """Logits (B, C) for ids (B, T) of true lengths (B,): the network's, plus the NB branch's where there is one."""
        deep, wide = self.branches(ids, lengths)
        return deep if wide is None else deep + wide  # (B, C)

    def branches(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor | None]:
        """The network's logits (B, C) and the NB branch's scores (B, C) (None without one)."""
        z = self.features(ids, lengths)  # (B, F)
        deep = self.head(self.drop(z))  # (B, C)
        return deep, None if self.wide is None else self.wide(ids, lengths)

    def build_wide(self) -> None:
        """The NB branch the config asks for (`wide_order` > 0), or none."""
        config = self.config
        self.wide = None if not config.wide_order else NBWide(
            vocab_size=config.vocab_size, classes=config.classes, order=config.wide_order,
            features=config.wide_features, beta=config.wide_beta)

    def embed(self, ids: Tensor) -> Tensor:
        """e = dropout(E[x]) (B, T, E)."""
        return self.embedding_drop(self.embedding(ids))  # (B, T, E)

    def loss(self, batch: TokenBatch) -> tuple[Tensor, dict[str, float]]:
        """Mean cross-entropy over the B sequences; metrics: tokens (B, the predictions made), accuracy."""
        labels = batch.labels
        if labels is None or labels.shape != batch.lengths.shape:
            shape = None if labels is None else tuple(labels.shape)
            raise ValueError(f"a classifier needs one label per sequence, labels (B,); got {shape}")
        deep, wide = self.branches(batch.ids, batch.lengths)  # (B, C) each
        loss = F.cross_entropy(at_least_float32(deep), labels)  # bf16 training: the loss in float32
        logits = deep
        if wide is not None:  # each branch learns to classify alone; the prediction is their product
            loss = loss + F.cross_entropy(at_least_float32(wide), labels)
            logits = deep + wide
        accuracy = (logits.argmax(-1) == labels).float().mean()
        return loss, {"tokens": float(labels.shape[0]), "accuracy": float(accuracy)}

    def predict(self, batch: TokenBatch) -> Tensor:
        """Class probabilities (B, C), computed in eval mode (no dropout) without gradients."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                logits = self(batch.ids, batch.lengths)  # (B, C)
                return torch.softmax(at_least_float32(logits), dim=-1)
        finally:
            self.train(was_training)

    def load_embeddings(self, vectors: Tensor, freeze: bool | None = None) -> None:
        """Copy pretrained vectors (V, E) into the embedding; freeze (default: the config's) stops their training.

        Every row is copied as given, the `PAD_ID` row included (padded steps are
        masked, so its value never matters). The choice is written into the
        config's `freeze_embedding`, so a checkpoint rebuilds the model frozen.
        """
        if freeze is not None:
            self.config.freeze_embedding = freeze
        copy_vectors(self.embedding, vectors, freeze=self.config.freeze_embedding)


class RNNClassifier(SequenceClassifier):
    """Embedding -> `Recurrent` over the real steps -> pooling -> dropout -> linear to C logits.

    `features(ids, lengths)` gives z (B, D*H); `attend(ids, lengths)` gives z and,
    with attention pooling, the weights a (B, T) (None otherwise).
    """

    config: RNNClassifierConfig

    def __init__(self, config: RNNClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.directions = 2 if config.bidirectional else 1
        width = self.directions * config.hidden  # D*H
        self.embedding = token_embedding(config.vocab_size, config.embedding)
        self.embedding.weight.requires_grad_(not config.freeze_embedding)
        self.embedding_drop = nn.Dropout(config.embedding_dropout)
        self.rnn = Recurrent(config.cell, config.embedding, config.hidden, config.layers, batch_first=True,
                             dropout=config.dropout, bidirectional=config.bidirectional, **config.cell_options)
        self.attention = AttentionPool(width, config.attention_size) if config.pooling == "attention" else None
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(width, config.classes)
        self.build_wide()

    def attend(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor | None]:
        """z (B, D*H), and the attention weights a (B, T) (0 on padding) when the pooling is attention."""
        lengths = lengths.to(ids.device)
        mask = sequence_mask(lengths, ids.shape[1])  # (B, T)
        e = self.embed(ids)  # (B, T, E)
        h, state = self.rnn(e, lengths=lengths)  # (B, T, D*H), 0 past each length; state (L*D, B, H)
        pooling = self.config.pooling
        if pooling == "last":
            return last_pool(state, self.directions), None  # (B, D*H)
        if pooling == "mean":
            return mean_pool(h, mask), None
        if pooling == "max":
            return max_pool(h, mask), None
        assert self.attention is not None
        return self.attention(h, mask)  # (B, D*H), (B, T)

    def features(self, ids: Tensor, lengths: Tensor) -> Tensor:
        return self.attend(ids, lengths)[0]  # (B, D*H)


class CNNClassifier(SequenceClassifier):
    """Kim (2014): embedding -> convolutions of each width, ReLU, max over the real steps -> dropout -> linear.

    This is the paper's CNN-rand / CNN-non-static (CNN-static with a frozen
    embedding); the two-channel CNN-multichannel is left out. Kim's l2 constraint
    is `apply_max_norm()`, for the training loop to call after each optimiser step.
    """

    config: CNNClassifierConfig

    def __init__(self, config: CNNClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = token_embedding(config.vocab_size, config.embedding)
        self.embedding.weight.requires_grad_(not config.freeze_embedding)
        self.embedding_drop = nn.Dropout(config.embedding_dropout)
        self.convolution = ConvMaxPool(config.embedding, config.widths, config.feature_maps)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(len(config.widths) * config.feature_maps, config.classes)
        self.build_wide()

    def features(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """z (B, F): each width's M features, max over each sequence's windows."""
        return self.convolution(self.embed(ids), lengths)  # (B, F)

    def after_update(self) -> None:
        """The trainer's hook after each optimizer step: `apply_max_norm`."""
        self.apply_max_norm()

    def apply_max_norm(self) -> None:
        """Rescale each class's output weight row w (F,) to ||w||_2 = s where it exceeds s (`config.max_norm`)."""
        if self.config.max_norm > 0:
            with torch.no_grad():
                self.head.weight.renorm_(2, 0, self.config.max_norm)  # (C, F): row by row
