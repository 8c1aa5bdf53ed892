r"""From a padded batch of sequences to one vector per sequence: masks, embeddings, pooling over time.

A batch holds B sequences padded to the longest, T; sequence b is real on steps
:math:`t < n_b` (its length) and padding after. Every function here reads the
real steps only, so padding never changes a result:

.. math::
    \text{last:}\quad  z &= [\overrightarrow{h}_{n};\ \overleftarrow{h}_{1}]
        &&\text{each direction's final state (forward at the true end, backward at step 1)}\\
    \text{mean:}\quad  z &= \tfrac{1}{n} \textstyle\sum_{t \le n} h_t\\
    \text{max:}\quad   z_j &= \max_{t \le n} h_{t,j}
        &&\text{padded steps count as } -\infty\\
    \text{attention:}\quad a_t &= \mathrm{softmax}_{t \le n}\big(v^\top \tanh(W h_t + b)\big),
        \quad z = \textstyle\sum_{t \le n} a_t h_t
        &&\text{(Yang et al. 2016)}\\
    \text{convolution:}\quad c^{(k)}_i &= \mathrm{relu}(K_k \cdot x_{i:i+k-1} + b_k),
        \quad z^{(k)} = \max_{i \le \max(n-k,0)} c^{(k)}_i
        &&\text{(Kim 2014), one } z^{(k)} \text{ per width } k

Dimensions: B batch, T time, E embedding, H features per step (D*H for a
bidirectional layer), A attention size, M feature maps per filter width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.data.vocab import PAD_ID
from unrolled.recurrent import LayerState

EMBEDDING_INIT = 0.25
"""Random embedding rows ~ U(-0.25, 0.25), Kim's (2014) choice: about the variance of pretrained word2vec rows."""


# ---------------------------------------------------------------------- masks and embeddings


def sequence_mask(lengths: Tensor, steps: int) -> Tensor:
    """(B, T) True on the real steps t < lengths[b]; lengths must be integers in 1..T."""
    if lengths.dim() != 1 or lengths.is_floating_point():
        raise ValueError(f"lengths must be a (B,) integer tensor, got {lengths.dtype} of shape {tuple(lengths.shape)}")
    if bool(((lengths < 1) | (lengths > steps)).any()):
        raise ValueError(f"lengths must lie in 1..{steps}, got {lengths.tolist()}")
    return torch.arange(steps, device=lengths.device) < lengths.unsqueeze(1)  # (B, T)


def token_embedding(vocab_size: int, size: int) -> nn.Embedding:
    """An embedding (V, E) with rows ~ U(-0.25, 0.25); the `PAD_ID` row starts at 0 and gets no gradient."""
    embedding = nn.Embedding(vocab_size, size, padding_idx=PAD_ID)
    nn.init.uniform_(embedding.weight, -EMBEDDING_INIT, EMBEDDING_INIT)
    with torch.no_grad():
        embedding.weight[PAD_ID].zero_()
    return embedding


def copy_vectors(embedding: nn.Embedding, vectors: Tensor, *, freeze: bool) -> None:
    """Copy pretrained rows (V, E) into `embedding`, every row as given; `freeze` stops their training."""
    expected = tuple(embedding.weight.shape)
    if tuple(vectors.shape) != expected:
        raise ValueError(f"the vectors must have the embedding's shape (V, E) = {expected}, got {tuple(vectors.shape)}")
    with torch.no_grad():
        embedding.weight.copy_(vectors)
    embedding.weight.requires_grad_(not freeze)


# ---------------------------------------------------------------------- pooling over time


def last_pool(state: LayerState, directions: int) -> Tensor:
    """z (B, D*H): the top layer's final state of each direction, forward then backward.

    `Recurrent` takes the forward state at each sequence's true end, and the
    backward one after it has read back to step 1, which is what this wants.
    """
    h_n = state[0] if isinstance(state, tuple) else state  # (L*D, B, H); an LSTM's h, not c
    top = h_n[-directions:]  # (D, B, H)
    return top.transpose(0, 1).reshape(top.shape[1], -1)  # (B, D*H)


def mean_pool(h: Tensor, mask: Tensor) -> Tensor:
    """z (B, H) = the mean of h (B, T, H) over the real steps of mask (B, T)."""
    total = (h * mask.unsqueeze(-1)).sum(1)  # (B, H)
    return total / mask.sum(1, keepdim=True).to(h.dtype)  # (B, H)


def max_pool(h: Tensor, mask: Tensor) -> Tensor:
    """z (B, H) = the largest value of each feature of h (B, T, H) over the real steps of mask (B, T)."""
    return h.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)  # (B, H)


class AttentionPool(nn.Module):
    r"""Additive attention pooling (Yang et al. 2016): a learned query v scores every step.

    .. math::
        u_t = \tanh(W h_t + b) \quad (A), \qquad s_t = v^\top u_t, \qquad
        a_t = \frac{\exp s_t}{\sum_{\tau \le n} \exp s_\tau}, \qquad z = \sum_{t \le n} a_t h_t

    `score` gives s (B, T); `forward(h, mask)` gives z (B, H) and a (B, T), 0 on padding.
    """

    def __init__(self, width: int, size: int) -> None:
        super().__init__()
        self.project = nn.Linear(width, size)  # W (A, H), b (A,)
        self.query = nn.Linear(size, 1, bias=False)  # v (1, A)

    def score(self, h: Tensor) -> Tensor:
        """s_t = v^T tanh(W h_t + b) for h (B, T, H): (B, T)."""
        u = torch.tanh(self.project(h))  # (B, T, A)
        return self.query(u).squeeze(-1)  # (B, T)

    def forward(self, h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        s = self.score(h).masked_fill(~mask, float("-inf"))  # (B, T): padding gets no weight
        a = torch.softmax(s, dim=1)  # (B, T)
        z = torch.bmm(a.unsqueeze(1), h).squeeze(1)  # (B, H)
        return z, a


class ConvMaxPool(nn.Module):
    r"""Kim's (2014) features: for each filter width k, M convolutions over time, ReLU, max over time.

    .. math::
        c^{(k)}_i = \mathrm{relu}(K_k \cdot x_{i:i+k-1} + b_k) \quad (M), \qquad
        z^{(k)} = \max_{0 \le i \le \max(n-k,\,0)} c^{(k)}_i, \qquad z = [z^{(k_1)}; z^{(k_2)}; \dots]

    Windows are the paper's narrow ones, i = 0 .. n-k, all inside the sequence. A
    sequence shorter than k (n < k) is padded with zero vectors to k inside the
    model, giving it the single window i = 0; every step past n reads a zero
    vector, whatever the batch holds there, so padding never changes z.

    `forward(x, lengths)`: x (B, T, E), lengths (B,) -> z (B, len(widths)*M).
    """

    def __init__(self, input_size: int, widths: list[int], maps: int) -> None:
        super().__init__()
        self.widths = list(widths)
        self.convs = nn.ModuleList(nn.Conv1d(input_size, maps, width) for width in self.widths)  # K_k (M, E, k)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        lengths = lengths.to(x.device)
        mask = sequence_mask(lengths, x.shape[1])  # (B, T)
        x = x * mask.unsqueeze(-1)  # (B, T, E): zero vectors past each length
        widest = max(self.widths)
        if x.shape[1] < widest:
            x = F.pad(x, (0, 0, 0, widest - x.shape[1]))  # (B, max(T, k_max), E)
        x = x.transpose(1, 2)  # (B, E, T)
        features = []
        for width, conv in zip(self.widths, self.convs, strict=True):
            c = torch.relu(conv(x))  # (B, M, T-k+1)
            starts = torch.arange(c.shape[-1], device=x.device)  # (T-k+1,)
            last = (lengths - width).clamp(min=0)  # (B,): the last window inside each sequence
            valid = starts <= last.unsqueeze(1)  # (B, T-k+1)
            features.append(c.masked_fill(~valid.unsqueeze(1), float("-inf")).amax(-1))  # (B, M)
        return torch.cat(features, dim=-1)  # (B, len(widths)*M)
