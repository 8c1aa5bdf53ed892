"""Export a trained run: its graphs (ONNX or TorchScript), its settings and a manifest, in one folder.

``export_run(run, out, graphs="onnx", quantize=None)`` loads the run's predictor,
traces the graphs its application declares (`unrolled.export.apps`), and writes
into `out`, atomically (`unrolled.atomic.staged_folder`: the folder appears whole
or not at all)::

    out/step.onnx | model.onnx | encoder.onnx   the graphs (.pt for TorchScript)
    out/settings.json                           vocabularies, tokenisers, labels: what predict needs besides
    out/manifest.json                           application, formats, and the SHA-256 of every file

`unrolled.runtime.load(out)` runs an ONNX export with ONNX Runtime, without torch.

* ONNX: the TorchScript-based exporter (``torch.onnx.export(dynamo=False)``; the
  dynamo exporter traces a Python loop for one length too), each recurrent layer
  ONNX's own LSTM/GRU/RNN operator or a Scan over the cell's step
  (`unrolled.export.graphs`), so batch and lengths are dynamic. ``quantize="int8"``:
  ONNX Runtime's dynamic quantisation of the weights to int8 (MatMul, Gemm made
  MatMul, LSTM, and inside the Scans).
* TorchScript: ``torch.jit.trace`` of the same modules. Tracing fixes a Python
  loop to the length traced, so an encoder over a sequence is traced on torch's
  fused kernels (one op per layer, any length); a model whose cells have no
  fused kernel is refused in one line (its step graphs, with no loop, trace as they are).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from unrolled.export.apps import EXPORTERS
from unrolled.export.graphs import ExportError, Graph, exportable, quiet, to_onnx
from unrolled.extras import need
from unrolled.runtime.bundle import GRAPH_FORMATS, SETTINGS, SUFFIXES, write_manifest

QUANTIZATIONS = ("int8",)

__all__ = ["GRAPH_FORMATS", "QUANTIZATIONS", "ExportError", "export_run", "load_predictor"]


def load_predictor(run: str | os.PathLike[str]) -> tuple[str, Any]:
    """(application name, its predictor on the CPU) of a run or checkpoint folder; ValueError in one line."""
    from unrolled.apps.registry import APPLICATIONS
    from unrolled.checkpoint import load_checkpoint, resolve_checkpoint

    kind = load_checkpoint(resolve_checkpoint(run, command="unrolled APP train")).config.get("kind")
    names = [name for name, app in APPLICATIONS.items() if app.predictor.kind == kind]
    if not names:
        raise ExportError(f"{run}: a checkpoint of unknown kind {kind!r}; give a run of an application")
    name = names[0]
    if name not in EXPORTERS:
        raise ExportError(f"{run}: a {name} run; export covers {', '.join(EXPORTERS)}")
    return name, APPLICATIONS[name].predictor.load(run, device="cpu")


def export_run(run: str | os.PathLike[str], out: str | os.PathLike[str], *, graphs: str = "onnx",
               quantize: str | None = None) -> Path:
    """Export run `run` into folder `out` (replaced atomically if it exists); returns `out`."""
    from unrolled.atomic import staged_folder

    if graphs not in GRAPH_FORMATS:
        raise ExportError(f"unknown format {graphs!r}: choose one of {', '.join(GRAPH_FORMATS)}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ExportError(f"unknown quantisation {quantize!r}: choose one of {', '.join(QUANTIZATIONS)}")
    if quantize is not None and graphs != "onnx":
        raise ExportError("--quantize int8 quantises ONNX graphs (ONNX Runtime's dynamic quantisation); "
                          "use --format onnx")
    if graphs == "onnx":
        need("onnx", "exporting to ONNX")
        if quantize is not None:
            need("onnxruntime", "int8 quantisation")
    name, predictor = load_predictor(run)
    declared, settings = EXPORTERS[name](predictor)
    target = Path(out)
    with staged_folder(target) as folder:
        for graph in declared:
            path = folder / f"{graph.name}{SUFFIXES[graphs]}"
            if graphs == "onnx":
                write_onnx(graph, path, quantize)
            else:
                write_torchscript(graph, path)
        (folder / SETTINGS).write_text(json.dumps(settings) + "\n", encoding="utf-8")
        write_manifest(folder, name, graphs, quantize)
    return target


def write_onnx(graph: Graph, path: Path, quantize: str | None) -> None:
    """Graph `graph` as ONNX at `path`, quantised to int8 weights when asked."""
    import onnx

    model = to_onnx(exportable(graph.module), graph.args, graph.inputs, graph.outputs, graph.dynamic, graph.opset)
    if quantize is None:
        onnx.save(model, str(path))
        return
    from onnxruntime.quantization import QuantType, quantize_dynamic

    plain = path.with_suffix(".fp32.onnx")
    onnx.save(gemm_to_matmul(model), str(plain))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it advises pre-processing on the root logger, for image models
    try:
        with quiet():
            quantize_dynamic(str(plain), str(path), weight_type=QuantType.QInt8,
                             extra_options={"EnableSubgraph": True})
    finally:
        root.setLevel(level)
    plain.unlink()


def gemm_to_matmul(model: Any) -> Any:
    """`model` with every Gemm of a constant weight, y = x W^T + b, made MatMul(x, W^T) (+ Add b), subgraphs too.

    ONNX Runtime's dynamic quantisation turns MatMul into MatMulInteger but leaves
    Gemm (which torch exports for a linear layer of a 2-D input) in float.
    """
    from onnx import helper, numpy_helper

    def rewrite(graph: Any) -> None:
        weights = {tensor.name: tensor for tensor in graph.initializer}
        nodes = list(graph.node)
        del graph.node[:]
        for node in nodes:
            for attribute in node.attribute:
                if attribute.type == attribute.GRAPH:
                    rewrite(attribute.g)
            options = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            plain = options.get("alpha", 1.0) == 1.0 and options.get("beta", 1.0) == 1.0 and not options.get("transA")
            if node.op_type != "Gemm" or not plain or node.input[1] not in weights:
                graph.node.append(node)
                continue
            weight = numpy_helper.to_array(weights[node.input[1]])
            name = f"{node.input[1]}/matmul"
            graph.initializer.append(numpy_helper.from_array(weight.T.copy() if options.get("transB") else weight,
                                                             name))
            product = node.output[0] if len(node.input) < 3 or not node.input[2] else f"{node.output[0]}/product"
            graph.node.append(helper.make_node("MatMul", [node.input[0], name], [product], name=f"{node.name}/mm"))
            if product != node.output[0]:
                graph.node.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]],
                                                   name=f"{node.name}/add"))
        used = {name for node in graph.node for name in node.input}
        kept = [tensor for tensor in graph.initializer if tensor.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept)

    rewrite(model.graph)
    return model


def write_torchscript(graph: Graph, path: Path) -> None:
    """Graph `graph` traced to TorchScript at `path` (fused kernels for loops over time; see the module docstring)."""
    from unrolled.recurrent import Recurrent

    module = copy.deepcopy(graph.module).eval().requires_grad_(False)
    looping = graph.name in ("model", "encoder")
    for layer in module.modules():
        if looping and isinstance(layer, Recurrent) and layer.fused_mode is None:
            cells = ", ".join(sorted({type(layer.cell(0)).__name__ + f"({layer.cell(0).extra_repr()})"}))
            raise ExportError(f"TorchScript would fix the loop over time of {cells} to one length (it has no fused "
                              "kernel); use --format onnx")
    with quiet(), torch.no_grad():
        traced = torch.jit.trace(module, graph.args, check_trace=False)
    traced.save(str(path))
