"""One step of a recurrent network: the vanilla RNN, the LSTM and its variants, the GRU.

A cell computes one time step and nothing else; `unrolled.recurrent.unroll`
runs any cell over a sequence. Every cell splits its step in two, so the loop
can do the input half for all steps in one matrix product:

    xw_t = W_ih x_t + b_ih                       project(x)      (B, G*H)
    h_t, state_t = recurrence(xw_t, state_{t-1})   step(xw, state)

and `cell(x_t, state)` does both for a single step.

Parameters are laid out as in `torch.nn.RNNCell` / `LSTMCell` / `GRUCell`:
`weight_ih` (G*H, I), `weight_hh` (G*H, H), `bias_ih` (G*H,), `bias_hh` (G*H,),
the G gate blocks stacked along the first axis. The lecture writes the same
product with one matrix over the concatenation,
W [h_{t-1}, x_t] + b  =  W_hh h_{t-1} + W_ih x_t + (b_hh + b_ih),
i.e. W = [W_hh | W_ih] and b = b_ih + b_hh.

Dimensions: B batch, I input features, H hidden units, G gate blocks.

The recurrent products (W_hh h_{t-1} + b_hh and, for Cho's GRU, W_hn (r * h))
go through a `product(name, h, weight, bias)` function, `F.linear` unless the
caller passes another: `unroll` passes one that computes the same values but
defers the weight gradient to one matrix product over all steps
(`unrolled.products`).

Every step can return a trace: a dict of the step's gate activations and new
state, each (B, H), for inspection (LSTMVis-style views) and tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.products import project

State = Tensor | tuple[Tensor, Tensor]
"""A cell's state: h (B, H) for RNN and GRU, (h, c) for the LSTM."""

Gates = dict[str, Tensor]
"""One step's trace: gate name -> activation (B, H)."""

Product = Callable[[str, Tensor, Tensor, "Tensor | None"], Tensor]
"""product(name, h, weight, bias) = h weight^T + bias; `name` tells one product of a step from another."""


def linear(name: str, h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """The plain product h W^T + b (the default `Product`)."""
    return F.linear(h, weight, bias)

NONLINEARITIES = ("tanh", "relu")
GRU_VARIANTS = ("cudnn", "cho")
DEFAULT_FORGET_BIAS = 1.0


class Cell(nn.Module):
    """What every cell shares: torch's parameter layout, initialisation and checks.

    Subclasses set `gates` (names of the G stacked blocks, in order), `trace_names`
    and `fused_mode` (the name torch's fused kernel knows the cell by, or None
    when the kernel cannot compute the cell's function), and define `step`.
    """

    gates: tuple[str, ...]
    trace_names: ClassVar[tuple[str, ...]]
    has_cell_state: ClassVar[bool] = False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(
                f"input_size and hidden_size must be positive, got {input_size} and {hidden_size}"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        rows = len(self.gates) * hidden_size
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size, **factory))  # (G*H, I)
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size, **factory))  # (G*H, H)
        if bias:
            self.bias_ih: Tensor | None = nn.Parameter(torch.empty(rows, **factory))  # (G*H,)
            self.bias_hh: Tensor | None = nn.Parameter(torch.empty(rows, **factory))  # (G*H,)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)

    @property
    def fused_mode(self) -> str | None:
        """torch's name for this cell's function ("LSTM", "GRU", "RNN_TANH", "RNN_RELU"), or None."""
        return None

    def reset_parameters(self) -> None:
        """Every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H)), as torch initialises its RNNs."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"

    def block(self, tensor: Tensor | None, name: str) -> Tensor | None:
        """The rows of a stacked weight or bias that belong to gate `name`."""
        if tensor is None:
            return None
        k, size = self.gates.index(name), self.hidden_size
        return tensor[k * size : (k + 1) * size]

    def project(self, x: Tensor) -> Tensor:
        """The input half of every gate: W_ih x + b_ih, for x (..., I) -> (..., G*H)."""
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__} expects input (..., {self.input_size}), got {tuple(x.shape)}"
            )
        return project(x, self.weight_ih, self.bias_ih)

    def initial_state(self, batch: int, *, like: Tensor) -> State:
        """The zero state for a batch, on the device and dtype of `like`."""
        h = like.new_zeros(batch, self.hidden_size)
        return (h, h.clone()) if self.has_cell_state else h

    def step(
        self, xw: Tensor, state: State, trace: bool = False, product: Product = linear
    ) -> tuple[Tensor, State, Gates | None]:
        """One step from the projected input xw (B, G*H): returns (h_t, state_t, trace or None)."""
        raise NotImplementedError

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One step from the raw input x (B, I): returns (h_t, state_t)."""
        state = self.check_step(x, state)
        h, state, _ = self.step(self.project(x), state)
        return h, state

    def trace(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State, Gates]:
        """One step that also returns its gates: (h_t, state_t, {name: (B, H)})."""
        state = self.check_step(x, state)
        h, state, gates = self.step(self.project(x), state, trace=True)
        assert gates is not None
        return h, state, gates

    def check_step(self, x: Tensor, state: State | None) -> State:
        """Raise ValueError unless x is (B, I) and state fits it; returns the state (zeros if None)."""
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"{type(self).__name__} expects input (B, {self.input_size}), got {tuple(x.shape)}")
        if state is None:
            return self.initial_state(x.shape[0], like=x)
        self.check_state(state, x.shape[0])
        return state

    def check_state(self, state: State, batch: int) -> None:
        """Raise ValueError unless `state` has this cell's structure and shape (B, H)."""
        expected = (batch, self.hidden_size)
        parts = state if isinstance(state, tuple) else (state,)
        if len(parts) != (2 if self.has_cell_state else 1):
            kind = "(h, c), each" if self.has_cell_state else "h"
            raise ValueError(f"{type(self).__name__} expects state {kind} of shape {expected}")
        for part in parts:
            if tuple(part.shape) != expected:
                raise ValueError(
                    f"{type(self).__name__} expects state of shape {expected}, got {tuple(part.shape)}"
                )


class RNNCell(Cell):
    r"""The vanilla RNN of the lecture: one layer and a nonlinearity.

    .. math::
        h_t = \phi(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}) = \phi(W [h_{t-1}, x_t] + b)

    with :math:`\phi` = tanh (the lecture's, and the default) or relu.

    =========  ============  ===========
    tensor     shape         meaning
    =========  ============  ===========
    x_t        (B, I)        input
    h_t        (B, H)        state and output
    weight_ih  (H, I)        W_ih
    weight_hh  (H, H)        W_hh
    =========  ============  ===========

    Trace: ``h``. Same parameters and function as ``torch.nn.RNNCell``.
    """

    gates = ("h",)
    trace_names = ("h",)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        nonlinearity: str = "tanh",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity
        self.reset_parameters()

    @property
    def fused_mode(self) -> str | None:
        return "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, nonlinearity={self.nonlinearity!r}"

    def step(
        self, xw: Tensor, state: State, trace: bool = False, product: Product = linear
    ) -> tuple[Tensor, State, Gates | None]:
        assert isinstance(state, Tensor)
        a = xw + product("hh", state, self.weight_hh, self.bias_hh)  # (B, H)
        h = torch.tanh(a) if self.nonlinearity == "tanh" else torch.relu(a)  # (B, H)
        return h, h, ({"h": h} if trace else None)


class LSTMCell(Cell):
    r"""The LSTM of the lecture (Hochreiter and Schmidhuber 1997, with the forget gate of Gers et al. 2000).

    .. math::
        i_t &= \sigma(W_i [h_{t-1}, x_t] + b_i + p_i \odot C_{t-1})   &&\text{input gate}\\
        f_t &= \sigma(W_f [h_{t-1}, x_t] + b_f + p_f \odot C_{t-1})   &&\text{forget gate}\\
        \tilde C_t &= \tanh(W_C [h_{t-1}, x_t] + b_C)               &&\text{candidate (torch: g)}\\
        C_t &= f_t \odot C_{t-1} + i_t \odot \tilde C_t             &&\text{cell state}\\
        o_t &= \sigma(W_o [h_{t-1}, x_t] + b_o + p_o \odot C_t)       &&\text{output gate}\\
        h_t &= o_t \odot \tanh(C_t)

    The peephole terms :math:`p \odot C` are present only with ``peepholes=True``.
    Blocks are stacked in torch's order i, f, g, o (g is :math:`\tilde C`); a
    variant that removes a gate has no rows for it, so its ``weight_ih`` is
    (G*H, I) with G the number of gates it keeps (``cell.gates`` lists them).

    =========================  =================  ========================================
    tensor                     shape              meaning
    =========================  =================  ========================================
    x_t                        (B, I)             input
    h_t, C_t                   (B, H)             output and cell state; state = (h, C)
    weight_ih / weight_hh      (G*H, I) (G*H, H)  W_i, W_f, W_C, W_o stacked (input / hidden half)
    bias_ih / bias_hh          (G*H,)             b = b_ih + b_hh
    weight_ci, weight_cf, co   (H,)               peepholes p_i, p_f, p_o (diagonal)
    =========================  =================  ========================================

    Options, each from its paper:

    * ``forget_bias`` (default 1.0): the forget block of ``bias_ih`` starts at this
      value and that of ``bias_hh`` at 0, so the total forget bias is exactly it
      (Gers et al. 2000; Jozefowicz et al. 2015 found 1.0 closes most of the gap
      to the GRU). ``None`` keeps torch's uniform initialisation.
    * ``peepholes``: gates also see the cell state (Gers and Schmidhuber 2000):
      i and f see C_{t-1}, o sees C_t.
    * ``coupled`` (CIFG): one gate decides both, f_t = 1 - i_t (Greff et al. 2015).
    * The ablations of Greff et al. 2015, "LSTM: A Search Space Odyssey":
      ``input_gate=False`` (NIG: i_t = 1), ``forget_gate=False`` (NFG: f_t = 1),
      ``output_gate=False`` (NOG: o_t = 1), ``input_activation=False``
      (NIAF: C~_t without tanh), ``output_activation=False`` (NOAF: h_t = o_t C_t).

    Trace: ``i, f, g, o, c, h`` (a removed gate is traced as its constant).
    With no option set this is ``torch.nn.LSTMCell`` (and the fused kernel's) function.
    """

    trace_names = ("i", "f", "g", "o", "c", "h")
    has_cell_state = True
    weight_ci: Tensor | None
    weight_cf: Tensor | None
    weight_co: Tensor | None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        forget_bias: float | None = DEFAULT_FORGET_BIAS,
        peepholes: bool = False,
        coupled: bool = False,
        input_gate: bool = True,
        forget_gate: bool = True,
        output_gate: bool = True,
        input_activation: bool = True,
        output_activation: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if coupled and not (input_gate and forget_gate):
            raise ValueError("coupled=True ties the forget gate to the input gate: keep both gates on")
        self.forget_bias = forget_bias
        self.peepholes = peepholes
        self.coupled = coupled
        self.input_gate = input_gate
        self.forget_gate = forget_gate and not coupled
        self.output_gate = output_gate
        self.input_activation = input_activation
        self.output_activation = output_activation
        self.gates = tuple(
            name
            for name, kept in (("i", input_gate), ("f", self.forget_gate), ("g", True), ("o", output_gate))
            if kept
        )
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        for name, gate in (("weight_ci", "i"), ("weight_cf", "f"), ("weight_co", "o")):
            if peepholes and gate in self.gates:
                self.register_parameter(name, nn.Parameter(torch.empty(hidden_size, **factory)))
            else:
                self.register_parameter(name, None)
        self.reset_parameters()

    @property
    def is_plain(self) -> bool:
        """True when no option changes the function from torch's LSTM."""
        return self.gates == ("i", "f", "g", "o") and not self.peepholes and (
            self.input_activation and self.output_activation
        )

    @property
    def fused_mode(self) -> str | None:
        return "LSTM" if self.is_plain else None

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.forget_bias is not None and self.forget_gate and self.bias:
            with torch.no_grad():
                forget_ih, forget_hh = self.block(self.bias_ih, "f"), self.block(self.bias_hh, "f")
                assert forget_ih is not None and forget_hh is not None
                forget_ih.fill_(self.forget_bias)
                forget_hh.zero_()

    def extra_repr(self) -> str:
        options = [f"gates={''.join(self.gates)}"]
        for name in ("peepholes", "coupled"):
            if getattr(self, name):
                options.append(f"{name}=True")
        for name in ("input_activation", "output_activation"):
            if not getattr(self, name):
                options.append(f"{name}=False")
        return f"{super().extra_repr()}, {', '.join(options)}"

    def step(
        self, xw: Tensor, state: State, trace: bool = False, product: Product = linear
    ) -> tuple[Tensor, State, Gates | None]:
        assert isinstance(state, tuple)
        h_prev, c_prev = state  # (B, H), (B, H)
        a = xw + product("hh", h_prev, self.weight_hh, self.bias_hh)  # (B, G*H)
        blocks = dict(zip(self.gates, a.chunk(len(self.gates), dim=1), strict=True))  # each (B, H)
        i = self.gate(blocks, "i", self.weight_ci, c_prev)  # (B, H) or None meaning 1
        if self.coupled:
            assert i is not None
            f: Tensor | None = 1.0 - i
        else:
            f = self.gate(blocks, "f", self.weight_cf, c_prev)
        g = torch.tanh(blocks["g"]) if self.input_activation else blocks["g"]  # C~_t (B, H)
        c = (c_prev if f is None else f * c_prev) + (g if i is None else i * g)  # C_t (B, H)
        o = self.gate(blocks, "o", self.weight_co, c)
        squashed = torch.tanh(c) if self.output_activation else c
        h = squashed if o is None else o * squashed  # (B, H)
        gates = None
        if trace:
            one = torch.ones_like(c)
            gates = {"i": one if i is None else i, "f": one if f is None else f, "g": g,
                     "o": one if o is None else o, "c": c, "h": h}
        return h, (h, c), gates

    def gate(self, blocks: dict[str, Tensor], name: str, peephole: Tensor | None, c: Tensor) -> Tensor | None:
        """sigma(block + p * C) for a kept gate; None for a removed one (it is the constant 1)."""
        if name not in blocks:
            return None
        pre = blocks[name] if peephole is None else blocks[name] + peephole * c
        return torch.sigmoid(pre)


class GRUCell(Cell):
    r"""The gated recurrent unit (Cho et al. 2014), in the form torch and cuDNN compute or in Cho's.

    ``variant="cudnn"`` (default; ``torch.nn.GRU``'s function, so the fused kernel can serve):

    .. math::
        r_t &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr})          &&\text{reset gate}\\
        z_t &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz})          &&\text{update gate}\\
        n_t &= \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) &&\text{candidate}\\
        h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}

    ``variant="cho"`` (Cho et al. 2014 and the lecture) applies the reset gate to the
    state *before* the product:

    .. math::
        n_t = \tanh(W_{in} x_t + b_{in} + W_{hn} (r_t \odot h_{t-1}) + b_{hn})

    The two forms are different functions of the same parameters (they agree when
    r_t = 1); the cuDNN form lets one product W_hh h_{t-1} serve all three gates.
    On z: here, as in torch and in Cho et al.'s paper, z_t weighs the *old* state.
    The lecture (after colah's blog) writes h_t = (1 - z_t) h_{t-1} + z_t h~_t, the
    same family with z -> 1 - z (negate W_z and b_z).

    ======================  =================  ===============================
    tensor                  shape              meaning
    ======================  =================  ===============================
    x_t                     (B, I)             input
    h_t                     (B, H)             state and output
    weight_ih / weight_hh   (3H, I) (3H, H)    W_r, W_z, W_n stacked (torch order)
    bias_ih / bias_hh       (3H,)              b_r, b_z, b_n (input / hidden half)
    ======================  =================  ===============================

    Trace: ``r, z, n, h``.
    """

    gates = ("r", "z", "n")
    trace_names = ("r", "z", "n", "h")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        variant: str = "cudnn",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if variant not in GRU_VARIANTS:
            raise ValueError(f"GRU variant must be one of {GRU_VARIANTS}, got {variant!r}")
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)
        self.variant = variant
        self.reset_parameters()

    @property
    def fused_mode(self) -> str | None:
        return "GRU" if self.variant == "cudnn" else None

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, variant={self.variant!r}"

    def step(
        self, xw: Tensor, state: State, trace: bool = False, product: Product = linear
    ) -> tuple[Tensor, State, Gates | None]:
        assert isinstance(state, Tensor)
        h_prev = state  # (B, H)
        x_r, x_z, x_n = xw.chunk(3, dim=1)  # each (B, H)
        if self.variant == "cudnn":
            h_r, h_z, h_n = product("hh", h_prev, self.weight_hh, self.bias_hh).chunk(3, dim=1)  # each (B, H)
            r = torch.sigmoid(x_r + h_r)
            z = torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + r * h_n)
        else:
            size = self.hidden_size
            w_rz, w_n = self.weight_hh[: 2 * size], self.weight_hh[2 * size :]  # (2H, H), (H, H)
            b_rz = None if self.bias_hh is None else self.bias_hh[: 2 * size]
            b_n = None if self.bias_hh is None else self.bias_hh[2 * size :]
            h_r, h_z = product("hh_rz", h_prev, w_rz, b_rz).chunk(2, dim=1)  # each (B, H)
            r = torch.sigmoid(x_r + h_r)
            z = torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + product("hh_n", r * h_prev, w_n, b_n))
        h = n + z * (h_prev - n)  # = (1 - z) n + z h_{t-1}   (B, H)
        return h, h, ({"r": r, "z": z, "n": n, "h": h} if trace else None)


CELLS: dict[str, type[Cell]] = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
"""Cell classes by the mode names `Recurrent` accepts."""


def make_cell(mode: str, input_size: int, hidden_size: int, bias: bool = True, **options: object) -> Cell:
    """Build the cell for `mode` ("rnn", "lstm" or "gru") with its keyword options."""
    if mode not in CELLS:
        raise ValueError(f"mode must be one of {tuple(CELLS)}, got {mode!r}")
    try:
        return CELLS[mode](input_size, hidden_size, bias, **options)  # type: ignore[arg-type]
    except TypeError as error:
        raise ValueError(f"bad option for a {mode} cell: {error}") from None
