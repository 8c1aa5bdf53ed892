"""Recurrent layers as ONNX graphs: every cell's step traced once, the loop over time an ONNX `Scan`.

torch's tracer unrolls a Python loop for the length it saw, so a recurrent layer
traced as it runs would only accept that length. Here the loop is kept a loop:

1. While the model is traced (`torch.onnx.export`, the TorchScript-based
   exporter, ``dynamo=False``), every `Recurrent` runs its transparent path with
   `scan_unroller` as its unroller. It projects the inputs as `unroll` does,
   xw = W_ih x + b_ih (T, B, G*H), and hands the loop to `_ScanCell`, which
   computes it eagerly (so tracing goes on with the right values) and records
   one placeholder node ``unrolled::ScanCell(xw, keep, h, c) -> (out, h, c)``.
2. Each cell's step, with padding masked as `unroll` masks it,

       h_t, c_t, out_t = step(h_{t-1}, c_{t-1}, xw_t, keep_t)
       (keep_t false: h_t = h_{t-1}, c_t = c_{t-1}, out_t = 0)

   is exported on its own (one step: nothing to unroll), from `Cell.step` itself.
3. `replace_placeholders` swaps each placeholder for ``Scan(h, c, xw, keep)``
   whose body is that step graph, scanning axis 0 (time): dynamic length and
   batch, the same function as `unroll`.

A GRU or RNN has no cell state c: it is carried through unchanged (zeros).
The fused path (torch's kernels) exports through this path too: it computes the
same function (`unrolled.recurrent`), so a model is exported with ``fused=False``.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from unrolled.cells import Cell, State
from unrolled.recurrent import Recurrent, masked

OPSET = 17
DOMAIN = "unrolled"
PLACEHOLDER = "ScanCell"

_CELLS: list[Cell] = []
"""The cells seen by `scan_unroller` during one export, by the index their placeholder records."""


class ExportError(ValueError):
    """A model or construct that cannot be exported; the message names it and says what to do."""


class _ScanCell(torch.autograd.Function):
    """The loop over time: eager values for the tracer, one placeholder node for the graph."""

    @staticmethod
    def forward(ctx: Any, xw: Tensor, keep: Tensor, h: Tensor, c: Tensor, index: int) -> Any:
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
    def symbolic(g: Any, xw: Any, keep: Any, h: Any, c: Any, index: int) -> Any:
        out, h_n, c_n = g.op(f"{DOMAIN}::{PLACEHOLDER}", xw, keep, h, c, index_i=index, outputs=3)
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
    out, h_n, c_n = _ScanCell.apply(xw, keep, h, c, index)
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
    """A copy of `model` to trace: eval mode, no gradients, every `Recurrent` on `scan_unroller`.

    A layer running another unroller (the C++ one of `unrolled.native`, the compiled
    chunks of `unrolled.chunked`) computes `unroll`'s function, so its copy runs this one.
    """
    model = copy.deepcopy(model).eval().requires_grad_(False)
    for module in model.modules():
        if isinstance(module, Recurrent):
            module.fused = False
            module.unroller = scan_unroller
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
            dynamic: dict[str, dict[int, str]]) -> Any:
    """The ONNX model (an `onnx.ModelProto`) of `module` traced on `args`, loops made Scans."""
    import onnx

    _CELLS.clear()
    with quiet(), torch.no_grad(), tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "graph.onnx"
        torch.onnx.export(module, args, path, dynamo=False, opset_version=OPSET, input_names=inputs,
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
    """`model` with each ``unrolled::ScanCell`` node replaced by a Scan over its cell's step graph."""
    from onnx import helper

    graph = model.graph
    nodes = list(graph.node)
    del graph.node[:]
    for node in nodes:
        if node.domain != DOMAIN:
            graph.node.append(node)
            continue
        index = next(attribute.i for attribute in node.attribute if attribute.name == "index")
        body = _prefixed(step_graph(cells[index]), f"cell{index}/")
        xw, keep, h, c = node.input
        out, h_n, c_n = node.output
        graph.node.append(helper.make_node("Scan", [h, c, xw, keep], [h_n, c_n, out], name=f"scan{index}",
                                           body=body, num_scan_inputs=2))
    kept = [entry for entry in model.opset_import if entry.domain != DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return model


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
