"""A NumPy (float64) oracle for the cells, written from the lecture's equations and not from `unrolled`.

The lecture writes every layer with one matrix over the concatenation [h_{t-1}, x_t]:

    RNN   h_t = tanh(W [h_{t-1}, x_t] + b)
    LSTM  f_t = σ(W_f [h_{t-1}, x_t] + b_f)          i_t = σ(W_i [h_{t-1}, x_t] + b_i)
          C~_t = tanh(W_C [h_{t-1}, x_t] + b_C)      C_t = f_t * C_{t-1} + i_t * C~_t
          o_t = σ(W_o [h_{t-1}, x_t] + b_o)          h_t = o_t * tanh(C_t)
    GRU   z_t = σ(W_z [h_{t-1}, x_t] + b_z)          r_t = σ(W_r [h_{t-1}, x_t] + b_r)
          h~_t = tanh(W [r_t * h_{t-1}, x_t] + b)    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

Each step here works on one example (vectors); the classes loop over the rows of a batch.
The LSTM takes the options of Gers et al. and Greff et al. (peepholes, CIFG, the ablations),
and `GRUcuDNN` is the form torch's documentation gives (reset gate applied after the product,
z weighing the old state).

The `*_from_cell` helpers read a torch-layout cell (weight_ih (G*H, I), weight_hh (G*H, H),
bias_ih, bias_hh, gate blocks stacked in the order `cell.gates` lists) and return the
lecture's parameters: W = [W_hh | W_ih] and b = b_ih + b_hh per gate. torch's GRU z weighs
the old state while the lecture's weighs the candidate, so the lecture's W_z, b_z are the
negated torch ones (σ(-a) = 1 - σ(a)).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

Array = np.ndarray
Trace = dict[str, Array]


def sigmoid(a: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-a))


def as_float64(value: Any) -> Array:
    return np.array(value, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# One example, one step.
# ---------------------------------------------------------------------------------------------


def rnn_step(W: Array, bias: Array, h: Array, x_t: Array, nonlinearity: str = "tanh") -> Array:
    """The lecture's `RNN.step` on one example."""
    activation = W @ np.hstack((h, x_t)) + bias
    if nonlinearity == "tanh":
        return np.tanh(activation)
    if nonlinearity == "relu":
        return np.maximum(activation, 0.0)
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}")


def lstm_step(params: Mapping[str, Array], h: Array, C: Array, x_t: Array, options: Mapping[str, bool]) -> Trace:
    """One LSTM step on one example; returns every gate: i, f, g (= C~), o, c (= C_t), h.

    A removed gate is the constant 1 (returned as a vector of ones); with `coupled`, f = 1 - i.
    """
    hx = np.hstack((h, x_t))  # [h_{t-1}, x_t]
    ones = np.ones_like(C)
    peep = options["peepholes"]

    def gate(name: str, cell_state: Array) -> Array:
        pre = params[f"W_{name}"] @ hx + params[f"b_{name}"]
        if peep:
            pre = pre + params[f"p_{name}"] * cell_state
        return sigmoid(pre)

    i_t = gate("i", C) if options["input_gate"] else ones
    if options["coupled"]:
        f_t = 1.0 - i_t
    elif options["forget_gate"]:
        f_t = gate("f", C)
    else:
        f_t = ones
    candidate = params["W_C"] @ hx + params["b_C"]
    C_tilde = np.tanh(candidate) if options["input_activation"] else candidate
    C_t = f_t * C + i_t * C_tilde
    o_t = gate("o", C_t) if options["output_gate"] else ones
    h_t = o_t * (np.tanh(C_t) if options["output_activation"] else C_t)
    return {"i": i_t, "f": f_t, "g": C_tilde, "o": o_t, "c": C_t, "h": h_t}


def gru_step(params: Mapping[str, Array], h: Array, x_t: Array) -> Trace:
    """The lecture's GRU (Cho's form, z weighing the candidate) on one example: z, r, h~ (as n), h."""
    hx = np.hstack((h, x_t))
    z_t = sigmoid(params["W_z"] @ hx + params["b_z"])
    r_t = sigmoid(params["W_r"] @ hx + params["b_r"])
    h_tilde = np.tanh(params["W"] @ np.hstack((r_t * h, x_t)) + params["b"])
    h_t = (1.0 - z_t) * h + z_t * h_tilde
    return {"r": r_t, "z": z_t, "n": h_tilde, "h": h_t}


def gru_cudnn_step(params: Mapping[str, Array], h: Array, x_t: Array) -> Trace:
    """torch's documented GRUCell on one example (reset after the product, z weighing the old state)."""
    p = params
    r_t = sigmoid(p["W_ir"] @ x_t + p["b_ir"] + p["W_hr"] @ h + p["b_hr"])
    z_t = sigmoid(p["W_iz"] @ x_t + p["b_iz"] + p["W_hz"] @ h + p["b_hz"])
    n_t = np.tanh(p["W_in"] @ x_t + p["b_in"] + r_t * (p["W_hn"] @ h + p["b_hn"]))
    h_t = (1.0 - z_t) * n_t + z_t * h
    return {"r": r_t, "z": z_t, "n": n_t, "h": h_t}


# ---------------------------------------------------------------------------------------------
# Stateful layers, as the lecture's `class RNN`: `step(x_t)` updates and returns the state.
# x_t is one example (I,) or a batch (B, I); a batch is done one row at a time.
# ---------------------------------------------------------------------------------------------


def _stack(rows: list[Trace]) -> Trace:
    return {name: np.stack([row[name] for row in rows]) for name in rows[0]}


class RNN:
    """The lecture's vanilla RNN: h_t = tanh(W [h_{t-1}, x_t] + bias) (or relu)."""

    def __init__(self, W: Array, bias: Array, nonlinearity: str = "tanh", h: Array | None = None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}")
        self.W = as_float64(W)
        self.bias = as_float64(bias)
        self.nonlinearity = nonlinearity
        self.h = np.zeros(self.W.shape[0]) if h is None else as_float64(h)

    def step(self, x_t: Array) -> Array:
        x_t = as_float64(x_t)
        if x_t.ndim == 1:
            self.h = rnn_step(self.W, self.bias, self.h, x_t, self.nonlinearity)
        else:
            self.h = np.stack(
                [rnn_step(self.W, self.bias, h, x, self.nonlinearity) for h, x in zip(self.h, x_t, strict=True)]
            )
        return self.h


LSTM_OPTIONS = {
    "peepholes": False,
    "coupled": False,
    "input_gate": True,
    "forget_gate": True,
    "output_gate": True,
    "input_activation": True,
    "output_activation": True,
}


class LSTM:
    """The lecture's LSTM with optional peepholes, coupling and the ablations of Greff et al.

    `params` holds W_g (H, H+I) and b_g (H,) for each kept gate g among i, f, C, o, and
    p_i, p_f, p_o (H,) for the kept gates when `peepholes`. `step` returns all gates.
    """

    def __init__(
        self,
        params: Mapping[str, Array],
        h: Array | None = None,
        C: Array | None = None,
        **options: bool,
    ) -> None:
        unknown = set(options) - set(LSTM_OPTIONS)
        if unknown:
            raise ValueError(f"unknown LSTM options {sorted(unknown)}")
        self.options = {**LSTM_OPTIONS, **options}
        if self.options["coupled"] and not (self.options["input_gate"] and self.options["forget_gate"]):
            raise ValueError("a coupled LSTM needs both its input and its forget gate")
        self.params = {name: as_float64(value) for name, value in params.items()}
        needed = {"W_C", "b_C"}
        for gate, flag in (("i", "input_gate"), ("f", "forget_gate"), ("o", "output_gate")):
            if self.options[flag] and not (gate == "f" and self.options["coupled"]):
                needed |= {f"W_{gate}", f"b_{gate}"}
                if self.options["peepholes"]:
                    needed.add(f"p_{gate}")
        if set(self.params) != needed:
            raise ValueError(f"LSTM parameters should be {sorted(needed)}, got {sorted(self.params)}")
        size = self.params["W_C"].shape[0]
        self.h = np.zeros(size) if h is None else as_float64(h)
        self.C = np.zeros(size) if C is None else as_float64(C)

    def step(self, x_t: Array) -> Trace:
        x_t = as_float64(x_t)
        if x_t.ndim == 1:
            gates = lstm_step(self.params, self.h, self.C, x_t, self.options)
        else:
            gates = _stack(
                [lstm_step(self.params, h, C, x, self.options) for h, C, x in zip(self.h, self.C, x_t, strict=True)]
            )
        self.h, self.C = gates["h"], gates["c"]
        return gates


class GRU:
    """The lecture's GRU: reset before the product, h_t = (1 - z_t) h_{t-1} + z_t h~_t."""

    def __init__(self, params: Mapping[str, Array], h: Array | None = None) -> None:
        self.params = {name: as_float64(value) for name, value in params.items()}
        self.h = np.zeros(self.params["W"].shape[0]) if h is None else as_float64(h)

    def _one(self, h: Array, x: Array) -> Trace:
        return gru_step(self.params, h, x)

    def step(self, x_t: Array) -> Trace:
        x_t = as_float64(x_t)
        if x_t.ndim == 1:
            gates = self._one(self.h, x_t)
        else:
            gates = _stack([self._one(h, x) for h, x in zip(self.h, x_t, strict=True)])
        self.h = gates["h"]
        return gates


class GRUcuDNN(GRU):
    """torch's / cuDNN's GRU: n_t = tanh(W_in x + b_in + r_t (W_hn h + b_hn)), h_t = (1 - z) n + z h."""

    def __init__(self, params: Mapping[str, Array], h: Array | None = None) -> None:
        self.params = {name: as_float64(value) for name, value in params.items()}
        self.h = np.zeros(self.params["W_hn"].shape[0]) if h is None else as_float64(h)

    def _one(self, h: Array, x: Array) -> Trace:
        return gru_cudnn_step(self.params, h, x)


# ---------------------------------------------------------------------------------------------
# From a torch-layout cell to the lecture's parameters.
# ---------------------------------------------------------------------------------------------


def to_numpy(tensor: Any) -> Array | None:
    """A torch tensor (or None) as a float64 NumPy array."""
    if tensor is None:
        return None
    return tensor.detach().cpu().numpy().astype(np.float64)


def torch_blocks(cell: Any) -> dict[str, dict[str, Array]]:
    """Per gate name in `cell.gates`: its rows of weight_ih, weight_hh, bias_ih and bias_hh.

    A cell without bias gets zero biases.
    """
    size = cell.hidden_size
    gates = tuple(cell.gates)
    w_ih, w_hh = to_numpy(cell.weight_ih), to_numpy(cell.weight_hh)
    assert w_ih is not None and w_hh is not None
    rows = len(gates) * size
    if w_ih.shape != (rows, cell.input_size) or w_hh.shape != (rows, size):
        raise ValueError(f"weights {w_ih.shape}, {w_hh.shape} do not hold {len(gates)} blocks of {size}")
    b_ih = to_numpy(getattr(cell, "bias_ih", None))
    b_hh = to_numpy(getattr(cell, "bias_hh", None))
    if b_ih is None:
        b_ih = np.zeros(rows)
    if b_hh is None:
        b_hh = np.zeros(rows)
    blocks = {}
    for k, name in enumerate(gates):
        part = slice(k * size, (k + 1) * size)
        blocks[name] = {"w_ih": w_ih[part], "w_hh": w_hh[part], "b_ih": b_ih[part], "b_hh": b_hh[part]}
    return blocks


def concatenated(block: Mapping[str, Array]) -> tuple[Array, Array]:
    """The lecture's W = [W_hh | W_ih] (weighing [h_{t-1}, x_t]) and b = b_ih + b_hh of one block."""
    return np.hstack((block["w_hh"], block["w_ih"])), block["b_ih"] + block["b_hh"]


def rnn_from_cell(cell: Any, nonlinearity: str = "tanh", h: Array | None = None) -> RNN:
    W, b = concatenated(torch_blocks(cell)["h"])
    return RNN(W, b, nonlinearity, h)


# torch's gate names -> the lecture's (g is the candidate C~).
LSTM_GATE_NAMES = {"i": "i", "f": "f", "g": "C", "o": "o"}


def lstm_params(cell: Any) -> dict[str, Array]:
    """W_g, b_g for each of the cell's gate blocks, and p_g for each peephole vector it has."""
    params: dict[str, Array] = {}
    for name, block in torch_blocks(cell).items():
        lecture = LSTM_GATE_NAMES[name]
        params[f"W_{lecture}"], params[f"b_{lecture}"] = concatenated(block)
    for gate, attribute in (("i", "weight_ci"), ("f", "weight_cf"), ("o", "weight_co")):
        vector = to_numpy(getattr(cell, attribute, None))
        if vector is not None:
            params[f"p_{gate}"] = vector
    return params


def lstm_from_cell(cell: Any, h: Array | None = None, C: Array | None = None, **options: bool) -> LSTM:
    """The oracle LSTM with the cell's parameters and the given options (the same ones the cell got)."""
    return LSTM(lstm_params(cell), h, C, **options)


def gru_params(cell: Any) -> dict[str, Array]:
    """The lecture's W_z, b_z (negated: the lecture's z is 1 - torch's), W_r, b_r and W, b."""
    blocks = torch_blocks(cell)
    W_z, b_z = concatenated(blocks["z"])
    W_r, b_r = concatenated(blocks["r"])
    W, b = concatenated(blocks["n"])
    return {"W_z": -W_z, "b_z": -b_z, "W_r": W_r, "b_r": b_r, "W": W, "b": b}


def gru_from_cell(cell: Any, h: Array | None = None) -> GRU:
    return GRU(gru_params(cell), h)


def gru_cudnn_params(cell: Any) -> dict[str, Array]:
    """torch's W_i*, W_h*, b_i*, b_h* for * in r, z, n, kept apart."""
    params = {}
    for name, block in torch_blocks(cell).items():
        params[f"W_i{name}"], params[f"W_h{name}"] = block["w_ih"], block["w_hh"]
        params[f"b_i{name}"], params[f"b_h{name}"] = block["b_ih"], block["b_hh"]
    return params


def gru_cudnn_from_cell(cell: Any, h: Array | None = None) -> GRUcuDNN:
    return GRUcuDNN(gru_cudnn_params(cell), h)
