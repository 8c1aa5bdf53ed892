r"""Dropout that suits recurrent networks: masks fixed over time, and dropped recurrent weights.

Plain dropout draws a new mask for every element of every step. Between the
layers of a stack that is what Zaremba et al. (2014) used; on the connections
that carry a state across time the fresh noise of every step wipes the memory
out. Two forms regularise without that cost:

* **locked ("variational") dropout** (Gal and Ghahramani 2016): one mask per
  sequence and feature, the same at every step t,

  .. math::
      m \sim \mathrm{Bernoulli}(1 - p)^{B \times F}, \qquad
      y_{b,t,f} = x_{b,t,f}\, m_{b,f} / (1 - p);

* **weight drop** (DropConnect on the hidden-to-hidden matrix, Merity et al.
  2018): one mask over :math:`W_{hh}` for a whole forward pass, shared by every
  step and sequence,

  .. math::
      M \sim \mathrm{Bernoulli}(1 - p)^{GH \times H}, \qquad
      \tilde W_{hh} = W_{hh} \odot M / (1 - p),

  so a fused kernel still runs: only the weights it is given differ.

Both scale by 1/(1-p), so their expectation is the input (E[m / (1-p)] = 1), and
both are the identity when not training or when p = 0. `unrolled.recurrent.Recurrent`
uses them (``variational=True``, ``weight_drop=p``); `unrolled.models.charlm`
applies locked dropout to the embeddings and the outputs as well.
"""

from __future__ import annotations

from torch import Tensor


def check_rate(name: str, p: float) -> None:
    """A one-line ValueError unless 0 <= p < 1."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {p}")


def locked_dropout(x: Tensor, p: float, training: bool, *, time_dim: int) -> Tensor:
    """x (..., T, ..., F) with one Bernoulli(1-p) mask per sequence and feature, scaled by 1/(1-p), shared by
    every step along `time_dim`; x itself when not training or p = 0."""
    if not training or p == 0.0:
        return x
    shape = list(x.shape)
    shape[time_dim] = 1
    mask = x.new_empty(shape).bernoulli_(1.0 - p).div_(1.0 - p)
    return x * mask


def drop_connect(weight: Tensor, p: float, training: bool) -> Tensor:
    """weight with each entry zeroed with probability p and the rest scaled by 1/(1-p) (one mask per call);
    weight itself when not training or p = 0. Gradients reach the kept entries, scaled alike."""
    if not training or p == 0.0:
        return weight
    mask = weight.detach().new_empty(weight.shape).bernoulli_(1.0 - p).div_(1.0 - p)
    return weight * mask
