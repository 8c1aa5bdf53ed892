r"""LSTM and GRU cells unrolled in C++ with a hand-written backward (`native.cpp`), for the CPU.

`unroll` runs any cell in Python, and autograd records about a dozen small
operations per step; at the sizes of the variants benchmark (H = 64, B = 32)
that bookkeeping, not arithmetic, decides the speed. `native_unroll` computes
the same function for the LSTM family (every option of `LSTMCell`: the Greff
et al. ablations, peepholes, CIFG, which torch has no kernel for) and both
GRU forms (Cho's, which torch lacks, and the cuDNN form, whose fused CPU
kernel trains at about 0.4x of torch's LSTM here) as one C++ loop per
sequence, compiled on first use with torch's extension builder (cached on
disk), whose backward is written out below and in `native.cpp`. Per step:
one product on the BLAS that torch carries (two for Cho's GRU), ATen's
vectorised sigmoid on all gates at once, and loops the compiler vectorises.

Measured (`bench/variants_speed.py`, one thread, H = 64, B = 32, a training
step of the benchmark's model over the fused LSTM's): 0.84x to 1.07x at
T = 20, 50 and 100, against 0.23x to 0.55x for `unroll` in Python.

LSTM family, per step (a removed gate is the constant 1, `LSTMCell`):

.. math::
    a_t &= xw_t + h_{t-1} W_{hh}^T \qquad xw_t = W_{ih} x_t + b_{ih} + b_{hh}  &&(B, G H)\\
    i_t &= \sigma(a_i + p_i \odot C_{t-1}), \quad f_t = \sigma(a_f + p_f \odot C_{t-1})
        \text{ or } 1 - i_t \text{ (CIFG)}, \quad \tilde C_t = \phi_{in}(a_g)\\
    C_t &= f_t \odot C_{t-1} + i_t \odot \tilde C_t, \quad
        o_t = \sigma(a_o + p_o \odot C_t), \quad s_t = \phi_{out}(C_t), \quad h_t = o_t \odot s_t

with :math:`\phi` tanh, or the identity for NIAF / NOAF. Backward, from
:math:`\bar h_t = \partial L/\partial h_t` (the output's and the next step's)
and :math:`\bar C_t` (the next step's):

.. math::
    \bar a_o &= \bar h_t s_t\, o_t (1 - o_t), \qquad
    \bar C &= \bar C_t + \bar h_t o_t \phi_{out}'(C_t) + \bar a_o p_o\\
    \bar a_g &= \bar C\, i_t\, \phi_{in}'(a_g), \quad
    \bar a_i = (\bar C \tilde C_t - [\text{CIFG}]\, \bar C C_{t-1})\, i_t (1 - i_t), \quad
    \bar a_f = \bar C C_{t-1} f_t (1 - f_t)\\
    \bar C_{t-1} &= \bar C f_t + \bar a_i p_i + \bar a_f p_f, \qquad
    \bar h_{t-1} = \bar a_t W_{hh}

(:math:`s_t = \phi_{out}(C_t)` is kept by the forward, so the backward needs no
transcendental function), and over all steps at once: :math:`\partial L/\partial xw = \bar a`,
:math:`\partial L/\partial W_{hh} = \bar A^T H_{prev}` (one product, T B rows),
:math:`\partial L/\partial p_i = \sum_{t,b} \bar a_i \odot C_{t-1}`, likewise
:math:`p_f`, and :math:`p_o` with :math:`C_t`.

Cho's GRU (`GRUCell(variant="cho")`), with :math:`xrz_t` the r and z blocks of
:math:`W_{ih} x_t + b_{ih} + b_{hh}` and :math:`xn_t` the n block of :math:`W_{ih} x_t + b_{ih} + b_{hn}`:

.. math::
    [r_t, z_t] &= \sigma(xrz_t + h_{t-1} W_{rz}^T), \quad
    n_t = \tanh(xn_t + (r_t \odot h_{t-1}) W_n^T), \quad h_t = n_t + z_t \odot (h_{t-1} - n_t)\\
    \bar a_n &= \bar h_t (1 - z_t)(1 - n_t^2), \quad \bar a_z = \bar h_t (h_{t-1} - n_t) z_t (1 - z_t), \quad
    \overline{rh} = \bar a_n W_n\\
    \bar a_r &= \overline{rh}\, h_{t-1} r_t (1 - r_t), \quad
    \bar h_{t-1} = \bar h_t z_t + \overline{rh}\, r_t + [\bar a_r, \bar a_z] W_{rz}

with :math:`\partial L/\partial W_{rz} = [\bar A_r, \bar A_z]^T H_{prev}` and
:math:`\partial L/\partial W_n = \bar A_n^T (R \odot H_{prev})`.

The cuDNN form (`GRUCell()`, torch's `nn.GRU`), with :math:`xw_t = W_{ih} x_t + b_{ih}`
and :math:`[h_r, h_z, h_n] = h_{t-1} W_{hh}^T + b_{hh}`:

.. math::
    r_t &= \sigma(x_r + h_r), \quad z_t = \sigma(x_z + h_z), \quad n_t = \tanh(x_n + r_t \odot h_n), \quad
    h_t = n_t + z_t \odot (h_{t-1} - n_t)\\
    \bar a_n &= \bar h_t (1 - z_t)(1 - n_t^2), \quad \bar a_r = \bar a_n h_n\, r_t (1 - r_t), \quad
    \bar a_z = \bar h_t (h_{t-1} - n_t) z_t (1 - z_t)\\
    \partial L/\partial xw_t &= [\bar a_r, \bar a_z, \bar a_n], \quad
    \partial L/\partial [h_r, h_z, h_n] = [\bar a_r, \bar a_z, \bar a_n \odot r_t] =: \bar u_t, \quad
    \bar h_{t-1} = \bar h_t z_t + \bar u_t W_{hh}

with :math:`\partial L/\partial W_{hh} = \bar U^T H_{prev}` and :math:`\partial L/\partial b_{hh} = \sum \bar u`.

Padding (mask False) keeps the state and outputs 0, as `unroll` does; the
gradient then passes the step unchanged. Traces, other cells, other devices
and dtypes, and a machine where the extension cannot be built run `unroll`.

Dimensions: T time, B batch, I input features, H hidden units, G gate blocks.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from unrolled.cells import Cell, Gates, GRUCell, LSTMCell, State
from unrolled.products import project
from unrolled.recurrent import unroll

SOURCE = Path(__file__).with_name("native.cpp")
LSTM_FLAGS = {"input_gate": 1, "forget_gate": 2, "output_gate": 4, "input_activation": 8,
              "output_activation": 16, "peepholes": 32, "coupled": 64}
"""`LSTMCell` option -> its bit in the kernels' `flags` (native.cpp)."""
DTYPES = (torch.float32, torch.float64)

_build_error: list[str] = []


@cache
def library() -> Any:
    """torch.ops.unrolled_native, built from `native.cpp` on first use (cached by torch), or None if it cannot be.

    The reason of a failure is kept for `unavailable()`.
    """
    from torch.utils import cpp_extension

    bin_dir = str(Path(sys.executable).parent)  # ninja comes with the environment's packages
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    try:
        cpp_extension.load(name="unrolled_native", sources=[str(SOURCE)], extra_cflags=["-O3", "-march=native"],
                           is_python_module=False, verbose=False)
    except Exception as error:  # no compiler, no ninja, a failed build: the caller runs `unroll`
        lines = str(error).strip().splitlines() or [""]
        reason = next((line for line in lines if "error:" in line), lines[-1])  # the compiler's, if it said one
        _build_error.append(f"{type(error).__name__}: {reason.strip()}")
        return None
    return torch.ops.unrolled_native


def unavailable() -> str | None:
    """Why the native kernels cannot run here (after trying to build them), or None when they can."""
    return None if library() is not None else (_build_error[-1] if _build_error else "not built")


def supports(cell: Cell, x: Tensor) -> bool:
    """Whether `native_unroll` computes this cell on this input itself (else it calls `unroll`)."""
    kind = isinstance(cell, LSTMCell | GRUCell)
    return kind and x.device.type == "cpu" and x.dtype in DTYPES and cell.weight_hh.dtype == x.dtype


def native_unroll(
    cell: Cell, x: Tensor, state: State, *, mask: Tensor | None = None, trace: bool = False
) -> tuple[Tensor, State, Gates | None]:
    """`unroll(cell, x, state, mask=mask, trace=trace)`: the same outputs, state and gradients, computed in C++.

    x (T, B, I) time-major, mask (T, B) True on real steps. Traces, and cells or inputs `supports` refuses, run
    `unroll`; so does everything when the extension cannot be built.
    """
    if trace or x.shape[0] == 0 or not supports(cell, x) or library() is None:
        return unroll(cell, x, state, mask=mask, trace=trace)
    if x.shape[-1] != cell.input_size:  # `Cell.project`'s check: the projection below folds b_hh into its bias
        raise ValueError(f"{type(cell).__name__} expects input (..., {cell.input_size}), got {tuple(x.shape)}")
    keep = x.new_ones(x.shape[:2]) if mask is None else mask.to(x.dtype)  # (T, B)
    if isinstance(cell, GRUCell) and cell.variant == "cudnn":  # b_hn sits inside r * (W_hn h + b_hn)
        assert isinstance(state, Tensor)
        return gru_cudnn(cell, project(x, cell.weight_ih, cell.bias_ih), state, keep)
    bias = None if cell.bias_ih is None or cell.bias_hh is None else cell.bias_ih + cell.bias_hh  # (G*H,)
    xw = project(x, cell.weight_ih, bias)  # (T, B, G*H) = W_ih x + b_ih + b_hh, one product, autograd's
    if isinstance(cell, LSTMCell):
        assert isinstance(state, tuple)
        return lstm(cell, xw, state, keep)
    assert isinstance(cell, GRUCell) and isinstance(state, Tensor)
    return gru_cho(cell, xw, state, keep)


def lstm(cell: LSTMCell, xw: Tensor, state: tuple[Tensor, Tensor], keep: Tensor) -> tuple[Tensor, State, None]:
    flags = sum(bit for name, bit in LSTM_FLAGS.items() if getattr(cell, name))
    if cell.peepholes:
        zeros = xw.new_zeros(cell.hidden_size)
        peep = torch.stack([zeros if p is None else p for p in (cell.weight_ci, cell.weight_cf, cell.weight_co)])
    else:
        peep = xw.new_zeros(3, cell.hidden_size)  # (3, H): p_i, p_f, p_o
    h0, c0 = state
    out, h, c = LSTMScan.apply(xw.contiguous(), h0, c0, cell.weight_hh, peep, keep, flags)
    return out, (h, c), None


def gru_cho(cell: GRUCell, xw: Tensor, h0: Tensor, keep: Tensor) -> tuple[Tensor, State, None]:
    size = cell.hidden_size
    w_rz, w_n = cell.weight_hh[: 2 * size], cell.weight_hh[2 * size :]  # (2H, H), (H, H)
    xrz, xn = xw[..., : 2 * size], xw[..., 2 * size :]  # (T, B, 2H), (T, B, H)
    out, h = GRUChoScan.apply(xrz.contiguous(), xn.contiguous(), h0, w_rz, w_n, keep)
    return out, h, None


def gru_cudnn(cell: GRUCell, xw: Tensor, h0: Tensor, keep: Tensor) -> tuple[Tensor, State, None]:
    b_hh = xw.new_zeros(3 * cell.hidden_size) if cell.bias_hh is None else cell.bias_hh
    out, h = GRUCudnnScan.apply(xw.contiguous(), h0, cell.weight_hh, b_hh, keep)
    return out, h, None


class LSTMScan(torch.autograd.Function):
    """(xw, h0, c0, W_hh, peep, keep, flags) -> (out (T, B, H), h_T, C_T); see the module's equations."""

    @staticmethod
    def forward(ctx: FunctionCtx, xw: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, peep: Tensor, keep: Tensor,
                flags: int) -> tuple[Tensor, Tensor, Tensor]:
        hs, cs, acts, squashed, out = library().lstm_forward(xw, h0.contiguous(), c0.contiguous(),
                                                              w_hh.contiguous(), peep, keep, flags)
        ctx.save_for_backward(hs, cs, acts, squashed, w_hh, peep, keep)
        ctx.flags = flags  # type: ignore[attr-defined]
        return out, hs[-1].clone(), cs[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_out: Tensor | None, grad_h: Tensor | None,
                 grad_c: Tensor | None) -> tuple[Tensor | None, ...]:
        hs, cs, acts, squashed, w_hh, peep, keep = ctx.saved_tensors  # type: ignore[attr-defined]
        flags: int = ctx.flags  # type: ignore[attr-defined]
        grad_out = torch.zeros_like(hs[1:]) if grad_out is None else grad_out
        grad_h = torch.zeros_like(hs[0]) if grad_h is None else grad_h
        grad_c = torch.zeros_like(cs[0]) if grad_c is None else grad_c
        grad_a, grad_h0, grad_c0, grad_peep = library().lstm_backward(
            grad_out, grad_h, grad_c, hs, cs, acts, squashed, w_hh.contiguous(), peep, keep, flags)
        steps, batch, rows = grad_a.shape
        size = hs.shape[-1]
        flat = grad_a.view(steps * batch, rows)  # (T*B, G*H)
        grad_w = flat.t() @ hs[:-1].reshape(steps * batch, size)  # (G*H, H): one product over all steps
        return grad_a, grad_h0, grad_c0, grad_w, grad_peep, None, None


class GRUChoScan(torch.autograd.Function):
    """(xrz, xn, h0, W_rz, W_n, keep) -> (out (T, B, H), h_T); see the module's equations (xn includes b_hn)."""

    @staticmethod
    def forward(ctx: FunctionCtx, xrz: Tensor, xn: Tensor, h0: Tensor, w_rz: Tensor, w_n: Tensor,
                keep: Tensor) -> tuple[Tensor, Tensor]:
        w_rz, w_n = w_rz.contiguous(), w_n.contiguous()
        hs, rz, n, rh, out = library().gru_cho_forward(xrz, xn, h0.contiguous(), w_rz, w_n, keep)
        ctx.save_for_backward(hs, rz, n, rh, w_rz, w_n, keep)
        return out, hs[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_out: Tensor | None, grad_h: Tensor | None) -> tuple[Tensor | None, ...]:
        hs, rz, n, rh, w_rz, w_n, keep = ctx.saved_tensors  # type: ignore[attr-defined]
        grad_out = torch.zeros_like(hs[1:]) if grad_out is None else grad_out
        grad_h = torch.zeros_like(hs[0]) if grad_h is None else grad_h
        grad_rz, grad_n, grad_h0 = library().gru_cho_backward(grad_out, grad_h, hs, rz, n, w_rz, w_n, keep)
        steps, batch, size = n.shape
        grad_w_rz = grad_rz.view(steps * batch, 2 * size).t() @ hs[:-1].reshape(steps * batch, size)  # (2H, H)
        grad_w_n = grad_n.view(steps * batch, size).t() @ rh.view(steps * batch, size)  # (H, H)
        return grad_rz, grad_n, grad_h0, grad_w_rz, grad_w_n, None


class GRUCudnnScan(torch.autograd.Function):
    """(xw, h0, W_hh, b_hh, keep) -> (out (T, B, H), h_T) for the cuDNN-form GRU; xw = W_ih x + b_ih."""

    @staticmethod
    def forward(ctx: FunctionCtx, xw: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor,
                keep: Tensor) -> tuple[Tensor, Tensor]:
        w_hh = w_hh.contiguous()
        hs, gates, h_n, out = library().gru_cudnn_forward(xw, h0.contiguous(), w_hh, b_hh, keep)
        ctx.save_for_backward(hs, gates, h_n, w_hh, keep)
        return out, hs[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_out: Tensor | None, grad_h: Tensor | None) -> tuple[Tensor | None, ...]:
        hs, gates, h_n, w_hh, keep = ctx.saved_tensors  # type: ignore[attr-defined]
        grad_out = torch.zeros_like(hs[1:]) if grad_out is None else grad_out
        grad_h = torch.zeros_like(hs[0]) if grad_h is None else grad_h
        grad_x, grad_hh, grad_h0 = library().gru_cudnn_backward(grad_out, grad_h, hs, gates, h_n, w_hh, keep)
        steps, batch, rows = grad_hh.shape
        flat = grad_hh.view(steps * batch, rows)  # (T*B, 3H)
        grad_w = flat.t() @ hs[:-1].reshape(steps * batch, -1)  # (3H, H)
        return grad_x, grad_h0, grad_w, flat.sum(0), None
