r"""The "wide" part of a classifier: NB-weighted bag of n-grams (Wang and Manning 2012), trained with the network.

A sentence :math:`x_1 \dots x_n` (token ids) is read as the *set* of its
n-grams of orders 1..N, the binarised features :math:`\hat f \in \{0,1\}^G` of
NBSVM. From the training sentences, with labels :math:`y \in 1..C`, each
class c gets the naive-Bayes log-count ratio of every n-gram g (one class
against the rest, smoothed by :math:`\alpha`):

.. math::
    p_c &= \alpha + \textstyle\sum_{i:\,y_i = c} \hat f_i, \qquad
    q_c = \alpha + \textstyle\sum_{i:\,y_i \ne c} \hat f_i                     &&(G)\\
    r_{g,c} &= \log \frac{p_{g,c} / \lVert p_c \rVert_1}{q_{g,c} / \lVert q_c \rVert_1}  &&(G, C)

(for two classes :math:`r_{\cdot,1} = -r_{\cdot,2}`, Wang and Manning's r).
The branch scores a sentence with the ratios, each scaled by a trained gain
that starts at :math:`\beta` (weight decay pulls it back there):

.. math::
    s_c = \textstyle\sum_g \hat f_g\, r_{g,c}\, (\beta + w_{g,c}), \qquad w = 0 \text{ at the start}  &&(C)

so an untrained branch is :math:`\beta` times the multinomial naive-Bayes
log-odds, and training moves each n-gram's weight as NBSVM's SVM does on the
r-scaled features. A classifier adds s to its network's logits (a wide and
deep model, trained jointly).

An n-gram (ids :math:`a_1 \dots a_k`, each in 0..V-1) is known by one integer,
its ids as digits in base V+1 shifted by one,
:math:`\mathrm{key} = \sum_{j=1}^{k} (a_j + 1)(V+1)^{k-j}`: distinct for
distinct n-grams of any order. The G keys seen in training are a sorted
buffer; a sentence's n-grams are looked up in it, so the branch reads the same
(B, T) ids as the network and needs nothing but its weights to load. Unseen
n-grams, padding and repeats within a sentence count 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from unrolled.data.vocab import PAD_ID

NB_ALPHA = 1.0
"""Wang and Manning's smoothing alpha of the counts."""
MAX_KEY = 2**63 - 1


def check_order(order: int, vocab_size: int) -> None:
    """An n-gram order of 1 or more whose keys fit an int64 for a vocabulary of `vocab_size`."""
    if order < 1:
        raise ValueError(f"the n-gram order must be 1 or more, got {order}")
    if order * math.log2(vocab_size + 1) >= 63:
        raise ValueError(f"{order}-grams over {vocab_size} tokens do not fit 64-bit keys: use a lower order")


def ngram_keys(ids: Tensor, lengths: Tensor, order: int, vocab_size: int) -> Tensor:
    """The key of every n-gram of orders 1..`order` in each sequence, (B, F) int64, -1 where none.

    F counts the windows, T per order; a window that runs past a sequence's
    length, or holds padding, gets -1.
    """
    T = ids.shape[1]
    base = vocab_size + 1
    real = torch.arange(T, device=ids.device) < lengths.to(ids.device).unsqueeze(1)  # (B, T)
    real = real & (ids != PAD_ID)
    digits = torch.where(real, ids + 1, torch.zeros_like(ids))  # (B, T), 0 on padding
    keys, key, whole = [], torch.zeros_like(ids), torch.ones_like(real)
    for k in range(order):  # key of the k+1-gram starting at t: the k-gram's key, shifted, plus the next digit
        shifted = torch.zeros_like(digits)
        shifted[:, : T - k] = digits[:, k:]
        key = key * base + shifted  # (B, T)
        whole = whole & (shifted > 0)
        keys.append(torch.where(whole, key, torch.full_like(key, -1)))
    return torch.cat(keys, dim=1)  # (B, order*T)


def feature_index(keys: Tensor, table: Tensor) -> Tensor:
    """Each key's position in the sorted `table` (G,), G for keys not in it or -1, with repeats in a row set to G.

    keys (B, F) -> (B, F) indices in 0..G, G the "no feature" index.
    """
    G = table.numel()
    if G == 0:
        return torch.zeros_like(keys)
    position = torch.searchsorted(table, keys).clamp_max(G - 1)  # (B, F)
    found = (table[position] == keys) & (keys >= 0)
    index = torch.where(found, position, torch.full_like(position, G))
    index, _ = index.sort(dim=1)
    repeat = torch.zeros_like(found)
    repeat[:, 1:] = index[:, 1:] == index[:, :-1]  # binarised: a feature counts once per sequence
    return torch.where(repeat, torch.full_like(index, G), index)  # (B, F)


def log_count_ratio(counts: Tensor, alpha: float = NB_ALPHA) -> Tensor:
    """r (G, C) of the module docstring from counts (G, C): how many training sentences of class c hold n-gram g."""
    p = alpha + counts  # (G, C)
    q = alpha + counts.sum(1, keepdim=True) - counts  # (G, C): the sentences of the other classes
    return torch.log(p / p.sum(0)) - torch.log(q / q.sum(0))  # (G, C)


class NBWide(nn.Module):
    """The wide branch: n-gram keys (G,) and ratios r (G, C) as buffers, trained gains w (G, C); see the module doc."""

    keys: Tensor
    ratio: Tensor

    def __init__(self, *, vocab_size: int, classes: int, order: int, features: int, beta: float) -> None:
        super().__init__()
        check_order(order, vocab_size)
        self.vocab_size, self.order, self.beta = vocab_size, order, beta
        self.register_buffer("keys", torch.zeros(features, dtype=torch.long))  # (G,) sorted
        self.register_buffer("ratio", torch.zeros(features, classes))  # (G, C)
        self.gain = nn.Parameter(torch.zeros(features, classes))  # (G, C): w

    def index(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """Each sequence's distinct known n-grams, (B, F) in 0..G (G: none)."""
        return feature_index(ngram_keys(ids, lengths, self.order, self.vocab_size), self.keys)

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """s (B, C) for ids (B, T) of true lengths (B,)."""
        weight = self.ratio * (self.beta + self.gain)  # (G, C)
        weight = torch.cat([weight, weight.new_zeros(1, weight.shape[1])])  # (G+1, C): row G is "none"
        return nn.functional.embedding(self.index(ids, lengths), weight).sum(1)  # (B, C)

    @torch.no_grad()
    def fit_ratios(self, sequences: list[list[int]], labels: list[int], alpha: float = NB_ALPHA) -> None:
        """Set the keys and r from training sequences (ids) and their labels; the keys must number G."""
        padded = nn.utils.rnn.pad_sequence([torch.tensor(s, dtype=torch.long) for s in sequences],
                                           batch_first=True, padding_value=PAD_ID)  # (N, T)
        lengths = torch.tensor([len(s) for s in sequences])
        keys = ngram_keys(padded, lengths, self.order, self.vocab_size)  # (N, F)
        table = torch.unique(keys[keys >= 0])  # sorted
        if table.numel() != self.keys.numel():
            raise ValueError(f"the training data holds {table.numel()} n-grams, the branch was built for "
                             f"{self.keys.numel()}: build it with count_ngrams()")
        self.keys.copy_(table)
        index = feature_index(keys, table)  # (N, F), each n-gram once per sequence
        classes = torch.tensor(labels).unsqueeze(1).expand_as(index)  # (N, F)
        counts = torch.zeros(table.numel() + 1, self.ratio.shape[1])  # (G+1, C), row G: "none"
        counts.index_put_((index.flatten(), classes.flatten()), torch.ones(index.numel()), accumulate=True)
        self.ratio.copy_(log_count_ratio(counts[:-1], alpha))


def count_ngrams(sequences: list[list[int]], order: int, vocab_size: int) -> int:
    """G: how many distinct n-grams of orders 1..`order` the sequences hold."""
    check_order(order, vocab_size)
    padded = nn.utils.rnn.pad_sequence([torch.tensor(s, dtype=torch.long) for s in sequences],
                                       batch_first=True, padding_value=PAD_ID)
    keys = ngram_keys(padded, torch.tensor([len(s) for s in sequences]), order, vocab_size)
    return int(torch.unique(keys[keys >= 0]).numel())
