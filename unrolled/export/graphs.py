"""Recurrent layers as ONNX graphs: ONNX's own RNN/GRU/LSTM operators where they compute the cell, else a `Scan`.

torch's tracer unrolls a Python loop for the length it saw, so a recurrent layer
traced as it runs would only accept that length. Here the loop is kept a loop:

1. While the model is traced (`torch.onnx.export`, the TorchScript-based
   exporter, ``dynamo=False``), every `Recurrent` runs its transparent path with
   `scan_unroller` as its unroller. It projects the inputs as `unroll` does,
   xw = W_ih x + b_ih (T, B, G*H), and hands the loop to `_ScanCell`, which
   computes it eagerly (so tracing goes on with the right values) and records
   one placeholder node ``unrolled::ScanCell(xw, keep, h, c, x) -> (out, h, c)``.
2. `replace_placeholders` swaps each placeholder for
   * ONNX's ``RNN``, ``GRU`` or ``LSTM`` operator where one computes the cell's
     function (`native_op`: tanh/relu RNN, both GRU forms, the LSTM with or
     without peepholes, CIFG), on x with the cell's weights reordered to ONNX's
     gate order and the lengths (the mask summed over time) as its
     sequence_lens; ONNX Runtime runs these as one kernel each;
   * else ``Scan(h, c, xw, keep)`` over the cell's own step, exported alone (one
     step: nothing to unroll) from `Cell.step` with padding masked as `unroll` masks it:

         h_t, c_t, out_t = step(h_{t-1}, c_{t-1}, xw_t, keep_t)
         (keep_t false: h_t = h_{t-1}, c_t = c_{t-1}, out_t = 0)

   Either way length and batch stay dynamic and the function is `unroll`'s.

A GRU or RNN has no cell state c: it is carried through unchanged (zeros). The
fused path (torch's kernels) and any other unroller (the C++ one of
`unrolled.native`, the compiled chunks of `unrolled.chunked`) compute `unroll`'s
function, so a model is exported with ``fused=False`` and this unroller.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from unrolled.cells import Cell, State
from unrolled.features import FrontEnd, dft_power_spectrum
from unrolled.recurrent import Recurrent, masked

OPSET = 17  # a graph that needs a later operator asks for it (`Graph.opset`)
DOMAIN = "unrolled"
PLACEHOLDER = "ScanCell"

_CELLS: list[Cell] = []
"""The cells seen by `scan_unroller` during one export, by the index their placeholder records."""


EXAMPLE_LENGTHS = (5, 2, 4)
"""The lengths of the example batch traced: padded, so the traced graph keeps the masking."""


@dataclass
class Graph:
    """One graph to export: a module, example inputs, names, and which axes are dynamic."""

    name: str
    module: nn.Module
    args: tuple[Tensor, ...]
    inputs: list[str]
    outputs: list[str]
    dynamic: dict[str, dict[int, str]]
    opset: int = OPSET


class ExportError(ValueError):
    """A model or construct that cannot be exported; the message names it and says what to do."""


class _ScanCell(torch.autograd.Function):
    """The loop over time: eager values for the tracer, one placeholder node for the graph."""

    @staticmethod
    def forward(ctx: Any, xw: Tensor, keep: Tensor, h: Tensor, c: Tensor, x: Tensor, index: int) -> Any:
        cell = _CELLS[index]
        tracing = torch._C._get_tracing_state()  # the loop reads the cell's weights: untraced, the node stands for it
        set_tracing = torch._C._set_tracing_state  # type: ignore[attr-defined]
        set_tracing(None)
        try:
            state: State = (h, c) if cell.has_cell_state else h
            outputs = []
            for xw_t, keep_t in zip(xw.unbind(0), keep.unbind(0), strict=True):
                out, new, _ = cell.step(xw_t, state)
                out, state, _ = masked(keep_t, out, new, state, None)
                outputs.append(out)
            h_n, c_n = state if isinstance(state, tuple) else (state, c)
            return torch.stack(outputs), h_n, c_n.clone()
        finally:
            set_tracing(tracing)

    @staticmethod
    def symbolic(g: Any, xw: Any, keep: Any, h: Any, c: Any, x: Any, index: int) -> Any:
        out, h_n, c_n = g.op(f"{DOMAIN}::{PLACEHOLDER}", xw, keep, h, c, x, index_i=index, outputs=3)
        for value, like in ((out, h), (h_n, h), (c_n, c)):
            value.setType(like.type().with_sizes([None] * (3 if value is out else 2)))
        return out, h_n, c_n


def scan_unroller(cell: Cell, x: Tensor, state: State, *, mask: Tensor | None = None,
                  trace: bool = False) -> tuple[Tensor, State, None]:
    """`unroll`'s signature and function for export: the loop becomes one `_ScanCell` (see the module docstring)."""
    if trace:
        raise ExportError("a traced run (trace=True) cannot be exported; export the model without trace")
    index = len(_CELLS)
    _CELLS.append(cell)
    xw = cell.project(x)  # (T, B, G*H)
    keep = torch.ones_like(xw[..., :1], dtype=torch.bool) if mask is None else mask.unsqueeze(-1)  # (T, B, 1)
    h, c = state if isinstance(state, tuple) else (state, torch.zeros_like(state))
    out, h_n, c_n = _ScanCell.apply(xw, keep, h, c, x, index)
    return out, ((h_n, c_n) if cell.has_cell_state else h_n), None


class CellStep(nn.Module):
    """One masked step of a cell, the Scan body: (h, c, xw_t, keep_t) -> (h_t, c_t, out_t)."""

    def __init__(self, cell: Cell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, h: Tensor, c: Tensor, xw: Tensor, keep: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        state: State = (h, c) if self.cell.has_cell_state else h
        out, new, _ = self.cell.step(xw, state)
        out, new, _ = masked(keep, out, new, state, None)
        if isinstance(new, tuple):
            return new[0], new[1], out
        return new, c + 0, out


def exportable(model: nn.Module) -> nn.Module:
    """A copy of `model` to trace: eval mode, no gradients, every `Recurrent` on `scan_unroller`, every speech
    front end on the STFT as a DFT product (`unrolled.features.dft_power_spectrum`: ONNX has no complex tensors).

    A layer running another unroller (the C++ one of `unrolled.native`, the compiled
    chunks of `unrolled.chunked`) computes `unroll`'s function, so its copy runs this one.
    """
    model = copy.deepcopy(model).eval().requires_grad_(False)
    for module in model.modules():
        if isinstance(module, Recurrent):
            module.fused = False
            module.unroller = scan_unroller
        if isinstance(module, FrontEnd):
            module.spectrum = dft_power_spectrum
    return model


@contextmanager
def quiet() -> Iterator[None]:
    """Tracing warns of every Python value it fixes (shape checks, the model's own assertions): hush them.

    What the warnings guard against, a graph that only fits the traced shapes, the parity
    tests check by running the graph at other batch sizes and lengths.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def to_onnx(module: nn.Module, args: tuple[Tensor, ...], inputs: list[str], outputs: list[str],
            dynamic: dict[str, dict[int, str]], opset: int = OPSET) -> Any:
    """The ONNX model (an `onnx.ModelProto`) of `module` traced on `args` at `opset`, loops made Scans."""
    import onnx

    _CELLS.clear()
    with quiet(), torch.no_grad(), tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "graph.onnx"
        torch.onnx.export(module, args, path, dynamo=False, opset_version=opset, input_names=inputs,
                          output_names=outputs, dynamic_axes=dynamic,
                          do_constant_folding=True)
        model = onnx.load(str(path))
    cells, _CELLS[:] = list(_CELLS), []
    return replace_placeholders(model, cells)


def step_graph(cell: Cell) -> Any:
    """The ONNX graph of `CellStep(cell)`, batch dynamic."""
    import onnx

    batch, size = 2, cell.hidden_size
    args = (torch.zeros(batch, size), torch.zeros(batch, size), torch.zeros(batch, cell.weight_ih.shape[0]),
            torch.ones(batch, 1, dtype=torch.bool))
    names = ["h", "c", "xw", "keep"]
    with quiet(), torch.no_grad(), tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "step.onnx"
        torch.onnx.export(CellStep(cell), args, path, dynamo=False, opset_version=OPSET, input_names=names,
                          output_names=["h_next", "c_next", "out"],
                          dynamic_axes={name: {0: "batch"} for name in [*names, "h_next", "c_next", "out"]})
        return onnx.load(str(path)).graph


def replace_placeholders(model: Any, cells: list[Cell]) -> Any:
    """`model` with each ``unrolled::ScanCell`` node replaced by ONNX's own RNN, GRU or LSTM operator where it
    computes the cell's function (`native_nodes`), else by a Scan over the cell's step graph."""
    from onnx import helper

    graph = model.graph
    nodes = list(graph.node)
    del graph.node[:]
    for node in nodes:
        if node.domain != DOMAIN:
            graph.node.append(node)
            continue
        index = next(attribute.i for attribute in node.attribute if attribute.name == "index")
        native = native_nodes(cells[index], node, f"cell{index}", graph)
        if native:
            graph.node.extend(native)
            continue
        xw, keep, h, c, _ = node.input
        out, h_n, c_n = node.output
        body = _prefixed(step_graph(cells[index]), f"cell{index}/")
        graph.node.append(helper.make_node("Scan", [h, c, xw, keep], [h_n, c_n, out], name=f"scan{index}",
                                           body=body, num_scan_inputs=2))
    kept = [entry for entry in model.opset_import if entry.domain != DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    _drop_unused(graph)
    return model


ONNX_GATES = {"LSTM": "iofg", "GRU": "zrn", "RNN": "h"}
"""ONNX's order of the gate blocks (its LSTM's c is our g)."""
TORCH_GATES = {"LSTM": "ifgo", "GRU": "rzn", "RNN": "h"}


def native_op(cell: Cell) -> tuple[str, dict[str, Any]] | None:
    """(ONNX operator, its attributes) computing `cell`'s function, or None.

    RNN: tanh or relu. GRU: linear_before_reset=1 is the cuDNN form, 0 Cho's.
    LSTM with all four gates and both activations, peepholes (ONNX's P: i and f see
    C_{t-1}, o sees C_t, as here) or not; CIFG is ONNX's input_forget. The ablations
    without a gate or an activation have no operator: they run as a Scan.
    """
    from unrolled.cells import GRUCell, LSTMCell, RNNCell

    if isinstance(cell, RNNCell):
        return "RNN", {"activations": ["Tanh" if cell.nonlinearity == "tanh" else "Relu"]}
    if isinstance(cell, GRUCell):
        return "GRU", {"linear_before_reset": int(cell.variant == "cudnn")}
    if isinstance(cell, LSTMCell) and cell.input_gate and cell.output_gate and cell.input_activation \
            and cell.output_activation and (cell.forget_gate or cell.coupled):
        return "LSTM", {"input_forget": int(cell.coupled)}
    return None


def _onnx_blocks(cell: Cell, tensor: Tensor | None, op: str) -> Any:
    """A stacked weight or bias (G*H, ...) in ONNX's gate order, with a leading direction axis (zeros for None).

    CIFG keeps no forget rows; ONNX's input_forget ignores them, so they are zeros.
    """
    import numpy as np

    if tensor is None:
        return np.zeros((1, len(ONNX_GATES[op]) * cell.hidden_size), dtype=np.float32)
    gates = "".join(cell.gates) if op == "LSTM" else TORCH_GATES[op]
    blocks = dict(zip(gates, tensor.detach().float().chunk(len(gates)), strict=True))
    zero = torch.zeros_like(blocks[gates[0]])
    return torch.cat([blocks.get(gate, zero) for gate in ONNX_GATES[op]]).unsqueeze(0).numpy()


def native_nodes(cell: Cell, node: Any, name: str, graph: Any) -> list[Any]:
    """The nodes computing placeholder `node` with ONNX's own operator (`native_op`), or [] when there is none.

    The operator reads the raw inputs x (T, B, I) and the lengths (the sum of the
    mask over time), and gives outputs 0 past each length and the state at each
    length, as `unroll` does; its weights are the cell's, reordered.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    found = native_op(cell)
    if found is None:
        return []
    op, attributes = found
    _, keep, h, c, x = node.input
    out, h_n, c_n = node.output
    weights = {"W": _onnx_blocks(cell, cell.weight_ih, op), "R": _onnx_blocks(cell, cell.weight_hh, op),
               "B": np.concatenate([_onnx_blocks(cell, cell.bias_ih, op), _onnx_blocks(cell, cell.bias_hh, op)], 1)}
    weights["W"] = weights["W"].reshape(1, -1, cell.input_size)
    weights["R"] = weights["R"].reshape(1, -1, cell.hidden_size)
    if op == "LSTM":
        peepholes = [getattr(cell, f"weight_c{gate}") for gate in "iof"]
        if all(p is not None for p in peepholes):
            weights["P"] = torch.cat([p.detach().float() for p in peepholes]).unsqueeze(0).numpy()
    for key, value in weights.items():
        graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), f"{name}/{key}"))
    axes = f"{name}/axes"
    graph.initializer.append(numpy_helper.from_array(np.array([0, 2], dtype=np.int64), axes))
    zero = f"{name}/zero"
    graph.initializer.append(numpy_helper.from_array(np.array([0], dtype=np.int64), zero))
    nodes = [
        helper.make_node("Cast", [keep], [f"{name}/keep32"], to=6),  # int32
        helper.make_node("ReduceSum", [f"{name}/keep32", axes], [f"{name}/lengths"], keepdims=0),
        helper.make_node("Unsqueeze", [h, zero], [f"{name}/h0"]),
    ]
    inputs = [x, f"{name}/W", f"{name}/R", f"{name}/B", f"{name}/lengths", f"{name}/h0"]
    outputs = [f"{name}/y", f"{name}/h_n"]
    if op == "LSTM":
        nodes.append(helper.make_node("Unsqueeze", [c, zero], [f"{name}/c0"]))
        inputs += [f"{name}/c0"] + ([f"{name}/P"] if "P" in weights else [])
        outputs.append(f"{name}/c_n")
    nodes.append(helper.make_node(op, inputs, outputs, name=name, hidden_size=cell.hidden_size, **attributes))
    one = f"{name}/one"
    graph.initializer.append(numpy_helper.from_array(np.array([1], dtype=np.int64), one))
    nodes += [helper.make_node("Squeeze", [f"{name}/y", one], [out]),  # (T, 1, B, H) -> (T, B, H)
              helper.make_node("Squeeze", [f"{name}/h_n", zero], [h_n])]
    if op == "LSTM":
        nodes.append(helper.make_node("Squeeze", [f"{name}/c_n", zero], [c_n]))
    else:
        nodes.append(helper.make_node("Identity", [c], [c_n]))
    return nodes


def _drop_unused(graph: Any) -> None:
    """Remove the nodes whose outputs nothing reads (the projections a native operator made unneeded)."""
    while True:
        wanted = {output.name for output in graph.output}
        for node in graph.node:
            wanted.update(node.input)
            for attribute in node.attribute:
                if attribute.type == attribute.GRAPH:
                    wanted.update(name for inner in attribute.g.node for name in inner.input)
        kept = [node for node in graph.node if any(output in wanted for output in node.output)]
        if len(kept) == len(graph.node):
            used = [tensor for tensor in graph.initializer if tensor.name in wanted]
            del graph.initializer[:]
            graph.initializer.extend(used)
            return
        del graph.node[:]
        graph.node.extend(kept)


def _prefixed(graph: Any, prefix: str) -> Any:
    """A copy of `graph` with every value, initializer and node name prefixed (names must not meet the outer ones)."""
    graph = copy.deepcopy(graph)

    def rename(name: str) -> str:
        return prefix + name if name else name

    for value in [*graph.input, *graph.output, *graph.value_info]:
        value.name = rename(value.name)
    for tensor in graph.initializer:
        tensor.name = rename(tensor.name)
    for node in graph.node:
        node.name = rename(node.name)
        node.input[:] = [rename(name) for name in node.input]
        node.output[:] = [rename(name) for name in node.output]
        for attribute in node.attribute:
            if attribute.type == attribute.GRAPH:  # constant folding leaves no subgraphs in a step, but be whole
                attribute.g.CopyFrom(_prefixed(attribute.g, prefix))
    graph.name = prefix.rstrip("/")
    return graph
