r"""Video frame labelling (the lecture's many-to-many "video classification"): a label for every frame.

A clip is T grey frames :math:`I_1 \dots I_T` (H, W), of true length n. Every
frame is read alone by the same CNN into a feature vector:

.. math::
    g_t &= \mathrm{CNN}(I_t)  &&(2c, H/4, W/4)\\
    f_t &= \mathrm{ReLU}(W_f\, \mathrm{vec}(g_t) + b_f)  &&(N)

with CNN = conv 3x3 (1 -> c), ReLU, conv 3x3 stride 2 (c -> 2c), ReLU, conv
3x3 stride 2 (2c -> 2c), ReLU. The grid is flattened rather than pooled, so
:math:`f_t` can say where things are in the frame, which a motion needs. Then
one of two heads:

**recurrent** (``model="recurrent"``): the tagger's bidirectional recurrent
layer (`unrolled.models.tagger.Tagger` with float inputs) labels every frame
from the whole clip,

.. math::
    h_t &= [\overrightarrow{h}_t;\ \overleftarrow{h}_t] = \mathrm{Recurrent}(\mathrm{dropout}(f_1), \dots,
        \mathrm{dropout}(f_n))_t  &&(D{\cdot}H)\\
    p(y_t \mid I_1 \dots I_n) &= \mathrm{softmax}(W\, \mathrm{dropout}(h_t) + b)  &&(C)

so frame t's label can depend on what changed since frame t - 1.

**per-frame CNN** (``model="cnn"``), the baseline without recurrence: frame t alone,

.. math::
    p(y_t \mid I_t) = \mathrm{softmax}(W_c\, \mathrm{dropout}(f_t) + b_c)  &&(C)

It cannot see a motion: where no single frame tells the label (the built-in
``moving-digits``), it can do no better than what a frame's content
happens to give away.

The loss of both is the mean cross-entropy over the labelled real frames,
:math:`\mathcal{L} = -\frac{1}{M}\sum_{b,\ t \le n_b,\ y_{b,t} \ne -} \log p(y_{b,t} \mid \cdot)`,
M of them (frames labelled `IGNORE_LABEL` skipped).

==========  =======================  ===========================================
tensor      shape                    meaning
==========  =======================  ===========================================
frames      (B, T, H, W) float       pixels in [0, 1], anything past each length
lengths     (B,) int64               true lengths n_b in 1..T
f           (B, T, N)                frame features
logits      (B, T, C)                a score per label and frame, 0 past each length
labels      (B, T) int64             label ids, `IGNORE_LABEL` where none
==========  =======================  ===========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.cells import CELLS
from unrolled.data.labelled import IGNORE_LABEL
from unrolled.models.pooling import sequence_mask
from unrolled.models.tagger import Tagger, TaggerConfig, step_loss

KIND = "video"
MODELS = ("recurrent", "cnn")
DOWNSAMPLE = 4  # the CNN's two stride-2 convolutions: the grid is (ceil(H/4), ceil(W/4))


@dataclass
class VideoConfig:
    """The frame labeller's shape; saved in every checkpoint.

    height, width  H, W of every frame
    labels         C, the number of label names
    model          "recurrent" (CNN then bidirectional `Recurrent`) or "cnn" (CNN then linear, per frame)
    channels       c, the first convolution's channels (the others have 2c)
    features       N, the size of a frame's feature vector
    cell, hidden, layers   the recurrent layer (recurrent model only): cell type, H per direction, stacking
    dropout        on the features and (recurrent) between and after the recurrent layers
    """

    height: int
    width: int
    labels: int
    model: str = "recurrent"
    channels: int = 16
    features: int = 128
    cell: str = "lstm"
    hidden: int = 128
    layers: int = 1
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}: choose one of {', '.join(MODELS)}")
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        if self.labels < 2:
            raise ValueError(f"a frame labeller needs at least 2 labels, got {self.labels}")
        for name in ("height", "width", "channels", "features", "hidden", "layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class FrameEncoder(nn.Module):
    """frames (B, T, H, W) in [0, 1] -> features f (B, T, N), each frame read alone (see the module docstring)."""

    def __init__(self, config: VideoConfig) -> None:
        super().__init__()
        c = config.channels
        self.convolutions = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1), nn.ReLU(),
        )
        grid = -(-config.height // DOWNSAMPLE) * -(-config.width // DOWNSAMPLE)
        self.project = nn.Linear(2 * c * grid, config.features)  # W_f

    def forward(self, frames: Tensor) -> Tensor:
        b, t, height, width = frames.shape
        g = self.convolutions(frames.reshape(b * t, 1, height, width) - 0.5)  # (B*T, 2c, H/4, W/4)
        f = F.relu(self.project(g.flatten(1)))  # (B*T, N)
        return f.reshape(b, t, -1)  # (B, T, N)


class FrameLabeller(nn.Module):
    """The CNN per frame, then the tagger's bidirectional recurrent layer ("recurrent") or a linear layer ("cnn").

    Trainer: `loss(batch)` with ``batch.frames`` (B, T, H, W), ``batch.lengths``
    (B,), ``batch.labels`` (B, T). Users: `predict(frames, lengths)` -> label
    ids (B, T), `IGNORE_LABEL` past each length.
    """

    def __init__(self, config: VideoConfig) -> None:
        super().__init__()
        self.config = c = config
        self.encoder = FrameEncoder(c)
        self.tagger: Tagger | None = None
        self.classify: nn.Linear | None = None
        self.drop = nn.Dropout(c.dropout)  # the per-frame head's; the tagger has its own
        if c.model == "recurrent":
            self.tagger = Tagger(TaggerConfig(vocab_size=0, tags=c.labels, input_features=c.features, cell=c.cell,
                                              hidden=c.hidden, layers=c.layers, dropout=c.dropout,
                                              embedding_dropout=c.dropout))
        else:
            self.classify = nn.Linear(c.features, c.labels)  # W_c

    def forward(self, frames: Tensor, lengths: Tensor) -> Tensor:
        """Logits (B, T, C) for frames (B, T, H, W) of true lengths (B,); 0 past each length."""
        if frames.dim() != 4 or tuple(frames.shape[2:]) != (self.config.height, self.config.width):
            raise ValueError(f"this labeller reads frames (B, T, {self.config.height}, {self.config.width}), got "
                             f"{tuple(frames.shape)}")
        lengths = lengths.to(frames.device)
        f = self.encoder(frames)  # (B, T, N)
        if self.tagger is not None:
            return self.tagger(f, lengths)  # (B, T, C): dropout, Recurrent, dropout, linear; 0 past the lengths
        assert self.classify is not None
        mask = sequence_mask(lengths, frames.shape[1])  # (B, T)
        return self.classify(self.drop(f)) * mask.unsqueeze(-1)  # (B, T, C)

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """Mean cross-entropy over the labelled real frames; metrics: frames (their number), accuracy."""
        logits = self(batch.frames, batch.lengths)  # (B, T, C)
        loss, frames, accuracy = step_loss(logits, batch.labels, batch.lengths, who="a frame labeller", step="frame")
        return loss, {"frames": frames, "accuracy": accuracy}

    def predict(self, frames: Tensor, lengths: Tensor) -> Tensor:
        """Label ids (B, T), `IGNORE_LABEL` past each length; eval mode (no dropout), no gradients."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                logits = self(frames, lengths)  # (B, T, C)
        finally:
            self.train(was_training)
        mask = sequence_mask(lengths.to(logits.device), logits.shape[1])  # (B, T)
        return logits.argmax(-1).masked_fill(~mask, IGNORE_LABEL)  # (B, T)
