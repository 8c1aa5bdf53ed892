"""Unrolling a cell over time, and the `Recurrent` layer: stacked, bidirectional, variable lengths.

`unroll` is the one loop: it takes any cell from `unrolled.cells` and runs it
over a (time-major) sequence,

    xw = W_ih x + b_ih                        for every step at once   (T, B, G*H)
    h_t, state_t = cell.step(xw_t, state_{t-1})    t = 1 .. T

with padded steps masked so they change nothing: where step t lies past a
sequence's length, state_t = state_{t-1} and the output is 0. The final state
is therefore each sequence's state at its true end, as torch's packed
sequences give it.

`Recurrent` stacks layers of cells ("go deep by stacking RNNs"): layer k reads
layer k-1's outputs (dropout between layers while training); a bidirectional
layer runs a second cell over each sequence reversed within its own length and
concatenates both outputs, (T, B, 2H). Its parameters carry torch's names
(`weight_ih_l0`, `bias_hh_l1_reverse`, ...), so state dicts move between
`Recurrent` and `torch.nn.RNN` / `LSTM` / `GRU` both ways.

Two paths compute the same function:

* fused: when every cell is one torch's kernel computes (tanh/relu RNN, plain
  LSTM, cuDNN-form GRU) and no trace is asked for, torch's fused kernel runs
  on the layer's own parameters (packed sequences for variable lengths);
* transparent: otherwise, `unroll` steps through the cells in Python, and can
  return every gate of every step. `Recurrent.unroller` is the function that
  runs it, `unroll` unless a caller sets another of the same signature
  (`unrolled.native.native_unroll` runs the LSTM family and Cho's GRU in
  C++ with a hand-written backward; `unrolled.chunked.unroll_in_chunks`
  compiles `unroll` in chunks of steps).

Dimensions: T time, B batch, I input features, H hidden units, L layers,
D directions (1 or 2).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import _VF, Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from unrolled.cells import Cell, Gates, State, linear, make_cell
from unrolled.dropout import check_rate, drop_connect, locked_dropout
from unrolled.products import DeferredProducts

Trace = dict[str, dict[str, Tensor]]
"""Gate activations of a whole run: "l0", "l0_reverse", "l1", ... -> gate name -> (B, T, H) or (T, B, H)."""

LayerState = Tensor | tuple[Tensor, Tensor]
"""A layer's state as torch gives it: h (L*D, B, H), or (h, c) for the LSTM."""

FUSED_KERNELS: dict[str, Callable[..., Any]] = {
    "LSTM": _VF.lstm, "GRU": _VF.gru, "RNN_TANH": _VF.rnn_tanh, "RNN_RELU": _VF.rnn_relu
}
"""torch's fused kernels (what nn.LSTM / GRU / RNN call), by the cells' `fused_mode`."""
DEFER_MIN_MACS = 5_000_000
"""Smallest per-step product (multiply-adds, B x H x G*H) for which `unroll` defers the weight gradient.

Measured on 2 cores (training step, one layer, T=64): deferring was 0.67-0.96x as
fast below 2.1M, 0.92-1.04x at 3-4M, 1.13-1.22x from 6M, 1.56x at 67M (B=64, H=512 LSTM)."""
TORCH_NAME = re.compile(r"(?P<param>\w+?)_l(?P<layer>\d+)(?P<reverse>_reverse)?$")
Unroller = Callable[..., tuple[Tensor, State, Gates | None]]
"""`unroll`'s signature: (cell, x, state, *, mask=None, trace=False) -> (out, state, trace or None)."""


def unroll(
    cell: Cell, x: Tensor, state: State, *, mask: Tensor | None = None, trace: bool = False
) -> tuple[Tensor, State, Gates | None]:
    """Run `cell` over the time-major sequence x (T, B, I) from `state`.

    mask (T, B) is True on real steps and False on padding (padding comes after
    each sequence's end). Returns the outputs (T, B, H) (0 on padded steps), the
    final state, and, with trace=True, every gate stacked over time (T, B, H).
    """
    xw = cell.project(x)  # (T, B, G*H): the input half of every gate, one product
    keep = None if mask is None else mask.unsqueeze(-1).unbind(0)  # T x (B, 1)
    products = DeferredProducts(x.shape[0]) if defer_products(cell, x) else linear
    outputs: list[Tensor] = []
    steps: list[Gates] = []
    for t, xw_t in enumerate(xw.unbind(0)):  # unbind, not xw[t]: indexing makes backward far slower
        if isinstance(products, DeferredProducts):
            products.step = t
        h, new_state, gates = cell.step(xw_t, state, trace, products)
        if keep is not None:
            h, new_state, gates = masked(keep[t], h, new_state, state, gates)
        outputs.append(h)
        if gates is not None:
            steps.append(gates)
        state = new_state
    stacked = {name: torch.stack([g[name] for g in steps]) for name in steps[0]} if trace else None
    return torch.stack(outputs), state, stacked


def defer_products(cell: Cell, x: Tensor) -> bool:
    """Whether the recurrent weight's gradient should wait for one product over all steps.

    It pays when each step's product is large (it replaces T thin products and
    T additions); for small ones the per-step bookkeeping costs more than it saves.
    Never under torch.compile, which cannot trace the bookkeeping (`unrolled.chunked`).
    """
    if torch.compiler.is_compiling():
        return False
    step_macs = x.shape[1] * cell.hidden_size * cell.weight_hh.shape[0]  # B x H x G*H
    return step_macs >= DEFER_MIN_MACS


def masked(
    keep: Tensor, h: Tensor, new: State, old: State, gates: Gates | None
) -> tuple[Tensor, State, Gates | None]:
    """Where keep (B, 1) is False: the old state stays, the output and gates are 0."""
    if isinstance(new, tuple):
        assert isinstance(old, tuple)
        state: State = (torch.where(keep, new[0], old[0]), torch.where(keep, new[1], old[1]))
    else:
        assert isinstance(old, Tensor)
        state = torch.where(keep, new, old)
    h = h * keep
    if gates is not None:
        gates = {name: value * keep for name, value in gates.items()}
    return h, state, gates


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of x (T, B, ...) within its own length; padding stays where it is.

    Step t of sequence b goes to lengths[b] - 1 - t. Applying it twice gives x back.
    """
    if lengths is None:
        return x.flip(0)
    steps = torch.arange(x.shape[0], device=x.device).unsqueeze(1)  # (T, 1)
    ends = lengths.to(x.device).unsqueeze(0)  # (1, B)
    index = torch.where(steps < ends, ends - 1 - steps, steps)  # (T, B)
    index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(0, index)


class Recurrent(nn.Module):
    """A stack of recurrent layers over any cell: torch's `nn.RNN`/`LSTM`/`GRU`, made transparent.

    Args:
        mode: "rnn", "lstm" or "gru".
        input_size: I, features of each input step.
        hidden_size: H, units per cell.
        num_layers: L, stacked layers; layer k > 0 reads layer k-1's outputs.
        bias: whether cells have b_ih and b_hh.
        batch_first: inputs and outputs are (B, T, ...) instead of (T, B, ...).
        dropout: dropout on the outputs of every layer but the last, while training.
        variational: that dropout's mask is the same at every step (locked dropout, `unrolled.dropout`).
        weight_drop: DropConnect on every cell's W_hh while training, one mask per forward pass
            (Merity et al. 2018; `unrolled.dropout`); needs the fused path (torch's LSTM, GRU, RNN).
        bidirectional: a second cell per layer reads each sequence backwards.
        fused: allow torch's fused kernel where it computes the same function.
        **cell_options: passed to every cell, e.g. ``nonlinearity="relu"`` (rnn),
            ``variant="cho"`` (gru), ``peepholes=True`` or ``forget_bias=0.0`` (lstm).

    Call ``layer(x, state=None, *, lengths=None, trace=False)``:

    ==========  ===========================  ==========================================
    argument    shape                        meaning
    ==========  ===========================  ==========================================
    x           (T, B, I) or (B, T, I)       input (batch_first decides); (T, I) unbatched
    state       (L*D, B, H), LSTM (h, c)     initial state, zeros if None
    lengths     (B,) integers in 1..T        true lengths; steps past them are padding
    ==========  ===========================  ==========================================

    Returns ``(out, state)``, or ``(out, state, trace)`` with trace=True: out is
    (T, B, D*H) (or (B, T, D*H)), 0 on padded steps; state is the final state
    in torch's layout (L*D, B, H), taken at each sequence's true end; trace maps
    "l0", "l0_reverse", ... to each gate's activations over time, laid out as out.
    """

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        fused: bool = True,
        variational: bool = False,
        weight_drop: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        check_rate("dropout", dropout)
        check_rate("weight_drop", weight_drop)
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = dropout
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.fused = fused
        self.variational = variational
        self.weight_drop = weight_drop
        self.cell_options = dict(cell_options)
        self.unroller: Unroller = unroll
        self.cells = nn.ModuleList(
            make_cell(
                mode,
                input_size if layer == 0 else hidden_size * self.num_directions,
                hidden_size,
                bias,
                device=device,
                dtype=dtype,
                **cell_options,
            )
            for layer in range(num_layers)
            for _ in range(self.num_directions)
        )
        self.register_state_dict_post_hook(_to_torch_names)
        self.register_load_state_dict_pre_hook(_from_torch_names)

    # -- names ------------------------------------------------------------------------------

    def suffix(self, index: int) -> str:
        """torch's name suffix of cell `index`: "_l0", "_l0_reverse", "_l1", ..."""
        layer, direction = divmod(index, self.num_directions)
        return f"_l{layer}" + ("_reverse" if direction else "")

    def cell(self, index: int) -> Cell:
        """Cell `index` in torch's order: layer 0 forward, layer 0 reverse, layer 1 forward, ..."""
        return cast(Cell, self.cells[index])

    def cell_index(self, layer: int, reverse: bool) -> int:
        return layer * self.num_directions + int(reverse)

    def __getattr__(self, name: str) -> Any:
        match = TORCH_NAME.match(name)
        if match and "cells" in self._modules:
            layer, reverse = int(match["layer"]), bool(match["reverse"])
            if layer < self.num_layers and (self.bidirectional or not reverse):
                return getattr(self.cells[self.cell_index(layer, reverse)], match["param"])
        return super().__getattr__(name)

    def extra_repr(self) -> str:
        options = "".join(f", {key}={value!r}" for key, value in self.cell_options.items())
        return (
            f"{self.mode!r}, {self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"batch_first={self.batch_first}, dropout={self.dropout}, "
            f"bidirectional={self.bidirectional}{self.regularisers()}{options}"
        )

    def regularisers(self) -> str:
        """The recurrent regularisers that are on, as `extra_repr` shows them."""
        shown = ", variational=True" if self.variational else ""
        return shown + (f", weight_drop={self.weight_drop}" if self.weight_drop else "")

    # -- the call ---------------------------------------------------------------------------

    @property
    def fused_mode(self) -> str | None:
        """The fused kernel's name when it computes this layer's function, else None."""
        modes = {self.cell(index).fused_mode for index in range(len(self.cells))}
        mode = modes.pop() if len(modes) == 1 else None
        return mode if self.fused else None

    def forward(
        self, x: Tensor, state: LayerState | None = None, *, lengths: Tensor | list[int] | None = None,
        trace: bool = False,
    ) -> Any:
        unbatched = x.dim() == 2
        batch_dim = 0 if self.batch_first else 1
        x, lengths = self.check_input(x.unsqueeze(batch_dim) if unbatched else x, lengths)
        if self.batch_first:
            x = x.transpose(0, 1)  # (T, B, I)
        if state is not None and unbatched:
            state = map_state(state, lambda part: part.unsqueeze(1))
        state = self.check_state(state, x)
        if lengths is not None and bool((lengths == x.shape[0]).all()):
            lengths = None  # nothing is padded
        if self.weight_drop and self.training and (self.fused_mode is None or trace):
            why = "a trace was asked for" if trace else f"{self.mode} cells with {self.cell_options}"
            raise ValueError(f"weight drop runs on torch's fused kernels, which this layer cannot use ({why}): "
                             "turn weight_drop off, or use plain lstm, gru or rnn cells without a trace")
        if self.fused_mode is not None and not trace:
            out, state = self.run_fused(x, state, lengths)
            gates: Trace = {}
        else:
            out, state, gates = self.run_transparent(x, state, lengths, trace)
        if self.batch_first:
            out = out.transpose(0, 1)
            gates = {key: {n: v.transpose(0, 1) for n, v in g.items()} for key, g in gates.items()}
        if unbatched:
            out = out.squeeze(batch_dim)
            state = map_state(state, lambda part: part.squeeze(1))
            gates = {key: {n: v.squeeze(batch_dim) for n, v in g.items()} for key, g in gates.items()}
        return (out, state, gates) if trace else (out, state)

    def run_transparent(
        self, x: Tensor, state: LayerState, lengths: Tensor | None, trace: bool
    ) -> tuple[Tensor, LayerState, Trace]:
        """The Python loop over `self.unroller` (`unroll`), layer by layer, direction by direction."""
        mask = None
        if lengths is not None:
            mask = torch.arange(x.shape[0], device=x.device).unsqueeze(1) < lengths.to(x.device)  # (T, B)
        finals: list[State] = []
        gates: Trace = {}
        for layer in range(self.num_layers):
            outputs = []
            for reverse in range(self.num_directions):
                index = self.cell_index(layer, bool(reverse))
                cell = self.cell(index)
                seq = reverse_padded(x, lengths) if reverse else x
                out, final, traced = self.unroller(cell, seq, cell_state(state, index), mask=mask, trace=trace)
                if reverse:
                    out = reverse_padded(out, lengths)
                    traced = traced and {n: reverse_padded(v, lengths) for n, v in traced.items()}
                outputs.append(out)
                finals.append(final)
                if traced:
                    gates[self.suffix(index)[1:]] = traced
            x = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)  # (T, B, D*H)
            if layer < self.num_layers - 1 and self.dropout > 0:
                x = self.between_layers(x)
        if isinstance(finals[0], tuple):
            h_n = torch.stack([s[0] for s in finals])
            c_n = torch.stack([s[1] for s in finals])
            return x, (h_n, c_n), gates
        return x, torch.stack(finals), gates  # type: ignore[arg-type]

    def between_layers(self, x: Tensor) -> Tensor:
        """Dropout on a layer's outputs x (T, B, D*H) before the next layer: locked over time if variational."""
        if self.variational:
            return locked_dropout(x, self.dropout, self.training, time_dim=0)
        return F.dropout(x, self.dropout, self.training)

    def fused_weights(self) -> list[Tensor]:
        """Every cell's parameters in torch's order; W_hh through DropConnect while training (weight_drop)."""
        return [drop_connect(w, self.weight_drop, self.training) if name == "weight_hh" else w
                for cell in self.cells for name, w in cell.named_parameters(recurse=False)]

    def run_fused(self, x: Tensor, state: LayerState, lengths: Tensor | None) -> tuple[Tensor, LayerState]:
        """torch's fused kernel on this layer's own parameters (packed sequences for lengths).

        With locked dropout between layers (variational, while training), the kernel runs one layer at a
        time and the mask is applied between them; otherwise one call runs the whole stack.
        """
        weights = self.fused_weights()
        hx = list(state) if isinstance(state, tuple) else [state]
        if not (self.variational and self.training and self.dropout > 0 and self.num_layers > 1):
            out, finals = self.fused_call(x, hx, weights, self.num_layers, lengths)
        else:
            per_layer, d = len(weights) // self.num_layers, self.num_directions
            parts: list[tuple[Tensor, ...]] = []
            out = x
            for layer in range(self.num_layers):
                if layer:
                    out = self.between_layers(out)
                out, part = self.fused_call(out, [h[layer * d : (layer + 1) * d] for h in hx],
                                            weights[layer * per_layer : (layer + 1) * per_layer], 1, lengths)
                parts.append(part)
            finals = tuple(torch.cat([part[i] for part in parts]) for i in range(len(hx)))
        return out, (finals[0], finals[1]) if len(finals) == 2 else finals[0]

    def fused_call(self, x: Tensor, hx: list[Tensor], weights: list[Tensor], layers: int,
                   lengths: Tensor | None) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One call of torch's kernel over `layers` layers: the outputs (T, B, D*H) and the final states."""
        mode = self.fused_mode
        assert mode is not None
        kernel = FUSED_KERNELS[mode]
        dropout = self.dropout if layers > 1 else 0.0
        common = (weights, self.bias, layers, dropout, self.training, self.bidirectional)
        if lengths is None:
            result = kernel(x, tuple(hx) if mode == "LSTM" else hx[0], *common, False)
            return result[0], tuple(result[1:])
        packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
        order, unorder = packed.sorted_indices, packed.unsorted_indices
        assert order is not None and unorder is not None
        hx = [h.index_select(1, order) for h in hx]
        result = kernel(packed.data, packed.batch_sizes, tuple(hx) if mode == "LSTM" else hx[0], *common)
        packed_out = PackedSequence(result[0], packed.batch_sizes, order, unorder)
        out, _ = pad_packed_sequence(packed_out, total_length=x.shape[0])
        return out, tuple(h.index_select(1, unorder) for h in result[1:])

    # -- checks -----------------------------------------------------------------------------

    def check_input(self, x: Tensor, lengths: Tensor | list[int] | None) -> tuple[Tensor, Tensor | None]:
        """x must be 3-D with I features and the layer's dtype; lengths (B,) integers in 1..T."""
        layout = "(B, T, I)" if self.batch_first else "(T, B, I)"
        expected = layout.replace("I", str(self.input_size))
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"Recurrent expects input {expected} or unbatched, got {tuple(x.shape)}")
        weight = self.cell(0).weight_ih
        if x.dtype != weight.dtype:
            raise ValueError(
                f"Recurrent's parameters are {weight.dtype} but the input is {x.dtype}: "
                f"convert one of them (x.to({weight.dtype}) or layer.to({x.dtype}))"
            )
        if lengths is None:
            return x, None
        batch, steps = (x.shape[0], x.shape[1]) if self.batch_first else (x.shape[1], x.shape[0])
        lengths = torch.as_tensor(lengths)
        if lengths.dim() != 1 or lengths.shape[0] != batch or lengths.is_floating_point():
            raise ValueError(f"lengths must be integers of shape ({batch},), got {tuple(lengths.shape)}")
        if bool(((lengths < 1) | (lengths > steps)).any()):
            raise ValueError(f"lengths must lie in 1..{steps}, got {lengths.tolist()}")
        return x, lengths.to(torch.int64)

    def check_state(self, state: LayerState | None, x: Tensor) -> LayerState:
        """A given state must have shape (L*D, B, H) (both parts for the LSTM); None gives zeros."""
        expected = (self.num_layers * self.num_directions, x.shape[1], self.hidden_size)
        is_lstm = self.cell(0).has_cell_state
        if state is None:
            zeros = x.new_zeros(expected)
            return (zeros, zeros.clone()) if is_lstm else zeros
        parts = state if isinstance(state, tuple) else (state,)
        if len(parts) != (2 if is_lstm else 1) or any(tuple(p.shape) != expected for p in parts):
            kind = "(h, c), each of shape" if is_lstm else "a tensor of shape"
            got = [tuple(p.shape) for p in parts]
            raise ValueError(f"Recurrent expects state as {kind} {expected}, got {got}")
        return state


def map_state(state: LayerState, fn: Callable[[Tensor], Tensor]) -> LayerState:
    """Apply fn to h, or to both h and c, keeping the state's structure."""
    return (fn(state[0]), fn(state[1])) if isinstance(state, tuple) else fn(state)


def at_least_float32(tensor: Tensor) -> Tensor:
    """`tensor` in float32 if it is in a narrower float (bfloat16 or half from mixed precision), else as it is.

    Losses and carried states of bf16 training are kept in float32 with it; float64 stays float64.
    """
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def cell_state(state: LayerState, index: int) -> State:
    """Cell `index`'s share of a layer state: h[index], or (h[index], c[index])."""
    return map_state(state, lambda part: part[index])


def _to_torch_names(module: nn.Module, state_dict: dict[str, Any], prefix: str, _meta: Any) -> None:
    """State-dict hook: "cells.1.weight_ih" -> "weight_ih_l0_reverse" (torch's names)."""
    assert isinstance(module, Recurrent)
    start = prefix + "cells."
    for key in [k for k in state_dict if k.startswith(start)]:
        index, param = key[len(start) :].split(".", 1)
        state_dict[prefix + param + module.suffix(int(index))] = state_dict.pop(key)


def _from_torch_names(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """Load pre-hook: "weight_ih_l0_reverse" -> "cells.1.weight_ih"."""
    assert isinstance(module, Recurrent)
    for key in [k for k in state_dict if k.startswith(prefix)]:
        match = TORCH_NAME.match(key[len(prefix) :])
        if match and "." not in key[len(prefix) :]:
            layer, reverse = int(match["layer"]), bool(match["reverse"])
            if layer >= module.num_layers or (reverse and not module.bidirectional):
                continue  # left as it is: load_state_dict reports it as unexpected
            index = module.cell_index(layer, reverse)
            state_dict[f"{prefix}cells.{index}.{match['param']}"] = state_dict.pop(key)
