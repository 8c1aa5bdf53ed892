r"""Recurrent products whose weight gradient is one matrix product over all steps.

Every step of an unrolled cell multiplies the previous state by the same weight,

.. math::
    a_t = h_{t-1} W^T + b \qquad (B, G*H) = (B, H) (H, G*H)

and backpropagation through time needs, per step, the gradient for the state,
:math:`\partial L/\partial h_{t-1} \mathrel{+}= (\partial L/\partial a_t) W`, and
for the weight the sum over all steps,

.. math::
    \frac{\partial L}{\partial W} = \sum_t \Big(\frac{\partial L}{\partial a_t}\Big)^T h_{t-1}
        = A^T H_{prev}, \qquad A = [\partial L/\partial a_1; \dots], \;
        H_{prev} = [h_0; \dots; h_{T-1}] \quad (T*B \text{ rows}).

Plain autograd computes that sum as T thin products (inner dimension B) and T
additions; here each step's backward only records :math:`\partial L/\partial a_t`
and the weight's gradient is the single product :math:`A^T H_{prev}`, taken once
every step's backward has run. The values computed are those of `F.linear`.

On the CPU in float32 the products run through oneDNN's matmul (what
`torch.nn.LSTM` uses on the CPU) where this torch has it: for the thin
per-step shapes it was 2.2x faster than `torch.mm` here (0.31 ms against 0.70
for (64, 512) x (512, 2048) on 2 cores). `dense` falls back to `F.linear`
wherever it is not available or disagrees with it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

ONEDNN_CHECK_TOLERANCE = 1e-5


@cache
def onednn_linear() -> Any:
    """oneDNN's dense fp32 linear op if this torch has it and it agrees with F.linear, else None."""
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return None
    try:
        generator = torch.Generator().manual_seed(0)
        x, w = torch.randn(3, 5, generator=generator), torch.randn(4, 5, generator=generator)
        agrees = torch.allclose(op(x, w, None, "none", [], ""), F.linear(x, w), atol=ONEDNN_CHECK_TOLERANCE)
    except (RuntimeError, TypeError):
        return None
    return op if agrees else None


def onednn_for(x: Tensor) -> Any:
    """oneDNN's linear op when it serves x (CPU, float32, available, not inside torch.compile), else None.

    torch.compile cannot trace the oneDNN op; under it the products are F.linear, which it fuses itself.
    Nor can export (`torch.jit.trace`, `torch.onnx.export`): while tracing they are F.linear too.
    """
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return None
    return onednn_linear() if x.dtype == torch.float32 and x.device.type == "cpu" else None


def dense(x: Tensor, weight: Tensor) -> Tensor:
    """x W^T for x (N, K) and W (M, K), outside autograd: oneDNN on CPU float32 when it can, else F.linear."""
    op = onednn_for(x)
    if op is None or not (x.is_contiguous() and weight.is_contiguous()):
        return F.linear(x, weight)
    return op(x, weight, None, "none", [], "")


def affine(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x W^T + b for x (..., I) through oneDNN, outside autograd (the caller checked `onednn_for(x)`)."""
    flat = x.reshape(-1, x.shape[-1]).contiguous()  # (N, I)
    out = onednn_linear()(flat, weight.contiguous(), bias, "none", [], "")  # (N, G*H)
    return out.view(*x.shape[:-1], -1)


class DeferredProducts:
    """A `unrolled.cells.Product` for one unroll of T steps: h W^T + b, W's gradient deferred to one GEMM.

    The caller sets `step` before each step. Each named product ("hh", or "hh_rz"
    and "hh_n" for Cho's GRU) must use the same weight at every step: the weight
    seen at the first step is the one used throughout.

    For the weight gradient it keeps, per name, H_prev^T (H, T*B) filled by the
    forward steps and A^T (G*H, T*B) filled by the backward steps, so that
    dL/dW = A^T (H_prev^T)^T is one product of two contiguous matrices.
    """

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.step = 0
        self.weights: dict[str, Tensor] = {}
        self.inputs_t: dict[str, Tensor] = {}  # name -> H_prev^T (H, T, B)
        self.grads_t: dict[str, Tensor] = {}  # name -> A^T (G*H, T, B), while a backward runs
        self.weights_t: dict[str, Tensor] = {}  # name -> W^T (H, G*H), for dL/dh = A W
        self.filled: dict[str, set[int]] = {}  # name -> steps whose dL/da_t is in grads_t

    def __call__(self, name: str, h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if not torch.is_grad_enabled():
            out = dense(h, weight)
            return out if bias is None else out + bias
        if not weight.requires_grad:
            return F.linear(h, weight, bias)
        if name not in self.weights:
            self.weights[name] = SharedWeight.apply(weight, self, name)
            self.inputs_t[name] = h.new_empty(h.shape[1], self.steps, h.shape[0])  # (H, T, B)
        out = StepProduct.apply(h, self.weights[name], self, name, self.step)  # (B, G*H)
        return out if bias is None else out + bias

    def record_input(self, name: str, step: int, h: Tensor) -> None:
        """Keep h_{t-1} (B, H) as column block `step` of H_prev^T (a recomputed forward overwrites it)."""
        self.inputs_t[name][:, step].copy_(h.t())

    def record_grad(self, name: str, step: int, grad: Tensor, weight: Tensor) -> Tensor:
        """Keep dL/da_t (B, G*H) as column block `step` of A^T; return W^T for dL/dh_{t-1} = dL/da_t W."""
        if name not in self.grads_t:  # the first step of a backward
            self.grads_t[name] = grad.new_empty(grad.shape[1], self.steps, grad.shape[0])  # (G*H, T, B)
            self.weights_t[name] = weight.t().contiguous()
            self.filled[name] = set()
        self.grads_t[name][:, step].copy_(grad.t())
        self.filled[name].add(step)
        return self.weights_t[name]

    def weight_gradient(self, name: str, like: Tensor) -> Tensor:
        """dL/dW = A^T H_prev (G*H, H); forgets A so that a second backward records afresh."""
        grads_t = self.grads_t.pop(name, None)
        self.weights_t.pop(name, None)
        if grads_t is None:
            return torch.zeros_like(like)
        for step in set(range(self.steps)) - self.filled.pop(name):  # steps whose backward never ran
            grads_t[:, step].zero_()
        inputs_t = self.inputs_t[name]
        return dense(grads_t.flatten(1), inputs_t.flatten(1))  # (G*H, T*B) x (T*B, H)


class SharedWeight(torch.autograd.Function):
    """Identity on the weight; its backward, run after every step's, returns A^T H_prev."""

    @staticmethod
    def forward(ctx: FunctionCtx, weight: Tensor, products: DeferredProducts, name: str) -> Tensor:
        ctx.products, ctx.name = products, name  # type: ignore[attr-defined]
        return weight.view_as(weight)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, unused: Tensor) -> tuple[Tensor, None, None]:
        return ctx.products.weight_gradient(ctx.name, unused), None, None


class StepProduct(torch.autograd.Function):
    """h W^T for one step; backward gives h its gradient and records dL/da_t for the weight's."""

    @staticmethod
    def forward(
        ctx: FunctionCtx, h: Tensor, weight: Tensor, products: DeferredProducts, name: str, step: int
    ) -> Tensor:
        products.record_input(name, step, h)
        ctx.save_for_backward(weight)
        ctx.products, ctx.name, ctx.step = products, name, step  # type: ignore[attr-defined]
        return dense(h.contiguous(), weight)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        (weight,) = ctx.saved_tensors
        weight_t = ctx.products.record_grad(ctx.name, ctx.step, grad, weight)
        grad_h = dense(grad.contiguous(), weight_t) if ctx.needs_input_grad[0] else None  # (B, H)
        return grad_h, None, None, None, None


def project(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x W^T + b for x (..., I), W (G*H, I): every step's input half in one product, forward and backward.

    The same as `F.linear`, with oneDNN doing the forward product and dL/dx on CPU
    float32 (dL/dW stays with torch.mm, which needs no transposed copy of G);
    elsewhere it is `F.linear`.
    """
    if onednn_for(x) is None:
        return F.linear(x, weight, bias)
    if not torch.is_grad_enabled():
        return affine(x, weight, bias)
    return Projection.apply(x, weight, bias)


class Projection(torch.autograd.Function):
    """x W^T + b with hand-written backward: dL/dx = G W, dL/dW = G^T x, dL/db = sum of G's rows."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        flat = x.reshape(-1, x.shape[-1]).contiguous()  # (N, I): copied once, if at all
        ctx.save_for_backward(flat, weight)
        ctx.shape, ctx.has_bias = x.shape, bias is not None  # type: ignore[attr-defined]
        return affine(flat, weight, bias).view(*x.shape[:-1], -1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        flat, weight = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1]).contiguous()  # (N, G*H)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = dense(g, weight.t().contiguous()).view(ctx.shape)  # (N, I)
        if ctx.needs_input_grad[1]:
            grad_w = g.t() @ flat  # (G*H, I): torch.mm reads G transposed in place, no copy
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(0)
        return grad_x, grad_w, grad_b
