r"""Attention over a memory: score every memory state against a query, softmax, take the weighted sum.

The lecture's version 3 of the encoder-decoder: "take inner products with
previous states" (the scores), then a layer turns context and state into the
prediction (the decoder's business, not this module's). For a query
:math:`q` (the decoder state, size :math:`D_q`) and memory states
:math:`k_1 \dots k_S` (the encoder outputs, size :math:`D_k`):

.. math::
    s_j &= \mathrm{score}(q, k_j) \\
    a_j &= \frac{\exp s_j}{\sum_{j' \le n} \exp s_{j'}} \quad (j \le n,\ a_j = 0 \text{ past the length } n) \\
    c &= \sum_j a_j k_j

with the score functions

==========  =====================================  ===========================================
kind        score(q, k)                             paper
==========  =====================================  ===========================================
dot         :math:`q^\top k`                        Luong et al. 2015 (needs D_q = D_k)
general     :math:`q^\top W_a k`                    Luong et al. 2015
scaled      :math:`q^\top k / \sqrt{D_k}`           Vaswani et al. 2017 (needs D_q = D_k)
additive    :math:`v_a^\top \tanh(W_q q + W_k k)`   Bahdanau et al. 2015 (``hidden`` units)
==========  =====================================  ===========================================

Shapes: B batch, T queries (target steps), S memory length (source steps).
A call takes queries (B, T, D_q), or one step (B, D_q), and memory (B, S, D_k);
it returns the context (B, T, D_k) and the weights (B, T, S), or (B, D_k) and
(B, S) for one step. `mask` (B, S), True at real memory positions, keeps padding
out: its weight is exactly 0.

A decoder attends over the same memory at every step, so what depends on the
memory alone is computed once: `keys(memory)` gives the general score's
:math:`W_a k_j` (B, S, D_q) or the additive score's :math:`W_k k_j` (B, S, A),
to pass to every call; a step then costs :math:`S D_q` per query for the
general score instead of :math:`S D_q D_k`. Without keys, the general score
multiplies on the query's side, :math:`(q^\top W_a) k_j`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

KINDS = ("dot", "general", "scaled", "additive")


class Attention(nn.Module):
    """Attention of queries over a memory with one of `KINDS` of score; see the module docstring.

    Parameters: general ``W_a`` (D_q, D_k) as ``linear_in`` (no bias); additive
    ``W_q`` (A, D_q) as ``query_layer`` (no bias), ``W_k`` (A, D_k) with bias as
    ``memory_layer`` and ``v_a`` (A,) as ``v``, A = `hidden` (default D_q).
    dot and scaled have none.
    """

    def __init__(self, query_size: int, memory_size: int, kind: str = "general", *, hidden: int | None = None) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown attention {kind!r}: choose one of {', '.join(KINDS)}")
        if kind in ("dot", "scaled") and query_size != memory_size:
            raise ValueError(f"{kind} attention needs queries and memory of one size, got {query_size} and "
                             f"{memory_size}; use general or additive attention")
        self.kind, self.query_size, self.memory_size = kind, query_size, memory_size
        if kind == "general":
            self.linear_in = nn.Linear(memory_size, query_size, bias=False)  # k -> W_a k
        if kind == "additive":
            units = hidden or query_size
            self.query_layer = nn.Linear(query_size, units, bias=False)
            self.memory_layer = nn.Linear(memory_size, units)
            self.v = nn.Parameter(torch.empty(units).uniform_(-1 / math.sqrt(units), 1 / math.sqrt(units)))

    def keys(self, memory: Tensor) -> Tensor | None:
        """What the score needs of the memory (B, S, D_k) alone: W_a k (B, S, D_q) for general, W_k k (B, S, A)
        for additive; None for dot and scaled."""
        if self.kind == "general":
            return self.linear_in(memory)
        return self.memory_layer(memory) if self.kind == "additive" else None

    def score(self, queries: Tensor, memory: Tensor, keys: Tensor | None = None) -> Tensor:
        """s (B, T, S) for queries (B, T, D_q) and memory (B, S, D_k); `keys` = `keys(memory)` if precomputed."""
        if self.kind == "dot":
            return queries @ memory.transpose(1, 2)  # (B, T, S)
        if self.kind == "scaled":
            return queries @ memory.transpose(1, 2) / math.sqrt(self.memory_size)
        if self.kind == "general":
            if keys is not None:
                return queries @ keys.transpose(1, 2)  # q^T (W_a k)
            return (queries @ self.linear_in.weight) @ memory.transpose(1, 2)  # (q^T W_a) k
        wq = self.query_layer(queries).unsqueeze(2)  # (B, T, 1, A)
        wk = (self.memory_layer(memory) if keys is None else keys).unsqueeze(1)  # (B, 1, S, A)
        return torch.tanh(wq + wk) @ self.v  # (B, T, S)

    def forward(self, queries: Tensor, memory: Tensor, mask: Tensor | None = None,
                keys: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The context and the weights; see the module docstring for the shapes."""
        one_step = queries.dim() == 2
        if one_step:
            queries = queries.unsqueeze(1)  # (B, 1, D_q)
        self._check(queries, memory, mask)
        scores = self.score(queries, memory, keys)  # (B, T, S)
        if mask is not None:
            scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, T, S); exp(-inf) = 0 exactly
        context = weights @ memory  # (B, T, D_k)
        return (context.squeeze(1), weights.squeeze(1)) if one_step else (context, weights)

    def _check(self, queries: Tensor, memory: Tensor, mask: Tensor | None) -> None:
        if queries.dim() != 3 or queries.shape[-1] != self.query_size:
            raise ValueError(f"queries must be (B, T, {self.query_size}) or (B, {self.query_size}), "
                             f"got {tuple(queries.shape)}")
        if memory.dim() != 3 or memory.shape[-1] != self.memory_size or memory.shape[0] != queries.shape[0]:
            raise ValueError(f"memory must be (B={queries.shape[0]}, S, {self.memory_size}), got {tuple(memory.shape)}")
        if mask is not None:
            if mask.dtype != torch.bool or mask.shape != memory.shape[:2]:
                raise ValueError(f"mask must be a bool tensor (B, S) = {tuple(memory.shape[:2])}, got "
                                 f"{mask.dtype} {tuple(mask.shape)}")
            if not bool(mask.any(dim=1).all()):
                raise ValueError("every memory needs at least one unmasked position (lengths >= 1)")

    def extra_repr(self) -> str:
        return f"{self.kind}, query_size={self.query_size}, memory_size={self.memory_size}"


def length_mask(lengths: Tensor, size: int) -> Tensor:
    """(B, S) bool: True at positions j < lengths[b]."""
    return torch.arange(size, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)
