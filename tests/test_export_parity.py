"""Exported graphs against eager torch: every cell and path, every attention kind, at batch 1 and 8, three lengths,
with and without padding, within 1e-5 (float32)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from unrolled.recurrent import Recurrent

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[export]')")

from unrolled.export.apps import EXPORTERS  # noqa: E402
from unrolled.export.graphs import exportable, native_op, to_onnx  # noqa: E402

TOLERANCE = 1e-5
BATCHES = (1, 8)
LENGTHS = (1, 4, 11)

CELLS: list[tuple[str, dict[str, Any]]] = [
    ("rnn", {}),
    ("rnn", {"nonlinearity": "relu"}),
    ("lstm", {}),
    ("lstm", {"peepholes": True}),
    ("lstm", {"coupled": True}),
    ("lstm", {"input_gate": False}),
    ("lstm", {"forget_gate": False}),
    ("lstm", {"output_gate": False}),
    ("lstm", {"input_activation": False}),
    ("lstm", {"output_activation": False}),
    ("lstm", {"forget_bias": None, "bias": False}),
    ("gru", {}),
    ("gru", {"variant": "cho"}),
]


class Layer(nn.Module):
    """A `Recurrent` with its final state flat: (x (B, T, I), lengths (B,)) -> (out, h[, c])."""

    def __init__(self, layer: Recurrent) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, ...]:
        out, state = self.layer(x, lengths=lengths)
        return (out, *state) if isinstance(state, tuple) else (out, state)


def batches(features: int, seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    """Inputs at batch 1 and 8 and three lengths, each unpadded (every length T) and padded (random lengths)."""
    generator = torch.Generator().manual_seed(seed)
    found = []
    for batch in BATCHES:
        for steps in LENGTHS:
            x = torch.randn(batch, steps, features, generator=generator)
            full = torch.full((batch,), steps)
            some = torch.randint(1, steps + 1, (batch,), generator=generator)
            some[0] = steps
            found += [(x, full), (x, some)]
    return found


def some_lengths(generator: torch.Generator) -> list[tuple[int, int, Tensor]]:
    """(batch, T, lengths (B,)) at batch 1 and 8 and three lengths T, each unpadded (all T) and padded (random
    lengths, the first T)."""
    found = []
    for batch in BATCHES:
        for steps in LENGTHS:
            for padded in (False, True):
                lengths = torch.randint(1, steps + 1, (batch,), generator=generator) if padded else \
                    torch.full((batch,), steps)
                lengths[0] = steps
                found.append((batch, steps, lengths))
    return found


def largest_difference(session: Any, module: nn.Module, feeds: dict[str, Tensor]) -> float:
    with torch.no_grad():
        expected = module(*feeds.values())
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = session.run(None, {name: value.numpy() for name, value in feeds.items()})
    assert len(got) == len(expected)
    differences = []
    for e, g in zip(expected, got, strict=True):
        e = e.float().numpy()
        same = (e == g) | (np.isnan(e) & np.isnan(g))  # -inf where both rule a token out; otherwise the gap
        with np.errstate(invalid="ignore"):
            gap = np.abs(e - g)
        gap[same] = 0.0
        differences.append(float(gap.max()))
    return max(differences)


@pytest.mark.parametrize(("mode", "options"), CELLS, ids=[f"{m}-{'-'.join(map(str, o.items())) or 'plain'}"
                                                          for m, o in CELLS])
def test_every_cell_exports_stacked_bidirectional_with_padding(mode: str, options: dict[str, Any]) -> None:
    torch.manual_seed(0)
    bias = options.pop("bias", True)
    layer = Layer(Recurrent(mode, 5, 6, 2, batch_first=True, bidirectional=True, bias=bias, **options).eval())
    x, lengths = torch.randn(3, 5, 5), torch.tensor([5, 2, 4])
    names = ["out", "h", "c"] if mode == "lstm" else ["out", "h"]
    dynamic = {"x": {0: "B", 1: "T"}, "lengths": {0: "B"}, "out": {0: "B", 1: "T"}, "h": {1: "B"}, "c": {1: "B"}}
    proto = to_onnx(exportable(layer), (x, lengths), ["x", "lengths"], names, dynamic)
    found = native_op(layer.layer.cell(0))
    kind = "Scan" if found is None else found[0]  # ONNX's own layer where it has one; else the loop kept a loop
    assert [node.op_type for node in proto.graph.node].count(kind) == 4  # 2 layers x 2 directions
    session = ort.InferenceSession(proto.SerializeToString())
    for x, lengths in batches(5):
        assert largest_difference(session, layer, {"x": x, "lengths": lengths}) < TOLERANCE


def test_a_single_unidirectional_fused_layer_and_the_cpp_unroller_export() -> None:
    from unrolled.native import native_unroll

    torch.manual_seed(1)
    layer = Layer(Recurrent("lstm", 4, 7, batch_first=True).eval())
    assert layer.layer.fused_mode == "LSTM"  # eager runs torch's fused kernel; the export the same function
    other = Layer(Recurrent("lstm", 4, 7, batch_first=True, peepholes=True).eval())
    other.layer.unroller = native_unroll  # the C++ loop cannot be traced: export runs `unroll`'s function
    for module in (layer, other):
        proto = to_onnx(exportable(module), (torch.randn(3, 5, 4), torch.tensor([5, 2, 4])), ["x", "lengths"],
                        ["out", "h", "c"], {"x": {0: "B", 1: "T"}, "lengths": {0: "B"}, "out": {0: "B", 1: "T"},
                                            "h": {1: "B"}, "c": {1: "B"}})
        session = ort.InferenceSession(proto.SerializeToString())
        for x, lengths in batches(4, seed=1):
            assert largest_difference(session, module, {"x": x, "lengths": lengths}) < TOLERANCE


def graph_sessions(predictor: Any) -> dict[str, tuple[Any, Any]]:
    """Each declared graph of an application's predictor: (its ONNX Runtime session, its eager module)."""
    name = {"LanguageModel": "lm", "TextClassifier": "classify", "SequenceTagger": "tag",
            "Translator": "seq2seq", "Transcriber": "speech"}[type(predictor).__name__]
    graphs, _ = EXPORTERS[name](predictor)
    found = {}
    for graph in graphs:
        proto = to_onnx(exportable(graph.module), graph.args, graph.inputs, graph.outputs, graph.dynamic)
        found[graph.name] = (ort.InferenceSession(proto.SerializeToString()), graph.module.eval())
    return found


ATTENTIONS = [("none", True, "lstm"), ("dot", False, "lstm"), ("general", True, "lstm"),
              ("scaled", False, "gru"), ("additive", True, "gru"), ("general", False, "rnn")]


@pytest.mark.parametrize(("attention", "bidirectional", "cell"), ATTENTIONS,
                         ids=[f"{a}-{'bi' if b else 'uni'}-{c}" for a, b, c in ATTENTIONS])
def test_seq2seq_encoder_and_step_for_every_attention_kind(tmp_path: Path, attention: str, bidirectional: bool,
                                                           cell: str) -> None:
    from tests.export_runs import seq2seq_run
    from unrolled.apps.seq2seq import Translator

    run = seq2seq_run(tmp_path, attention=attention, bidirectional=bidirectional, cell=cell, layers=2,
                      input_feed=attention != "none")
    sessions = graph_sessions(Translator.load(run, device="cpu"))
    encoder_session, encoder = sessions["encoder"]
    step_session, step = sessions["step"]
    generator = torch.Generator().manual_seed(2)
    for batch, steps, lengths in some_lengths(generator):
        source = torch.randint(2, 28, (batch, steps), generator=generator)
        source = source.masked_fill(torch.arange(steps) >= lengths.unsqueeze(1), 0)
        assert largest_difference(encoder_session, encoder, {"source": source, "lengths": lengths}) \
            < TOLERANCE
        with torch.no_grad():
            state = encoder(source, lengths)
        tokens = torch.randint(2, 19, (batch,), generator=generator)
        feeds = dict(zip([i.name for i in step_session.get_inputs()], (tokens, *state), strict=True))
        assert largest_difference(step_session, step, feeds) < TOLERANCE


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_lm_step_for_every_cell(tmp_path: Path, cell: str) -> None:
    from tests.export_runs import lm_run
    from unrolled.apps.lm import LanguageModel

    options = {"cell_options": {"peepholes": True}} if cell == "lstm" else {}
    predictor = LanguageModel.load(lm_run(tmp_path, cell=cell, **options), device="cpu")
    session, step = graph_sessions(predictor)["step"]
    names = [i.name for i in session.get_inputs()]
    generator = torch.Generator().manual_seed(3)
    for batch in BATCHES:
        tokens = torch.randint(0, len(predictor.vocabulary), (batch,), generator=generator)
        states = [torch.randn(batch, 24, generator=generator) for _ in names[1:]]
        assert largest_difference(session, step, dict(zip(names, (tokens, *states), strict=True))) < TOLERANCE


@pytest.mark.parametrize(("model_type", "options"), [("rnn", {"pooling": "attention", "cell": "gru"}),
                                                     ("rnn", {"pooling": "last", "layers": 2}),
                                                     ("rnn", {"pooling": "mean", "cell_options": {"coupled": True}}),
                                                     ("cnn", {})])
def test_classifier_and_tagger_graphs(tmp_path: Path, model_type: str, options: dict[str, Any]) -> None:
    from tests.export_runs import classify_run, tag_run
    from unrolled.apps.classify import TextClassifier
    from unrolled.apps.tag import SequenceTagger

    predictors = [TextClassifier.load(classify_run(tmp_path / "c", model_type=model_type, **options), device="cpu")]
    if model_type == "rnn":
        tag_options = {k: v for k, v in options.items() if k != "pooling"}
        predictors.append(SequenceTagger.load(tag_run(tmp_path / "t", **tag_options), device="cpu"))
    generator = torch.Generator().manual_seed(4)
    for predictor in predictors:
        session, module = graph_sessions(predictor)["model"]
        for batch in BATCHES:
            for steps in (6, 9, 13) if model_type == "cnn" else LENGTHS:
                lengths = torch.randint(1, steps + 1, (batch,), generator=generator)
                lengths[0] = steps
                ids = torch.randint(2, 15, (batch, steps), generator=generator)
                ids = ids.masked_fill(torch.arange(steps) >= lengths.unsqueeze(1), 0)
                assert largest_difference(session, module, {"ids": ids, "lengths": lengths}) < TOLERANCE
