"""What each application exports: its graphs (the way the model runs) and the settings its runtime needs.

==========  =========================================================================================
app         graphs (inputs -> outputs; B batch, T and S lengths, N hypotheses, all dynamic)
==========  =========================================================================================
lm          step: tokens (N,), h0 [c0] h1 [c1] ... (N, H) -> log_probs (N, V), the next states
classify    model: ids (B, T), lengths (B,) -> probabilities (B, C)
tag         model: ids (B, T), lengths (B,)[, chars (B, T, W)] -> logits (B, T, C)
seq2seq     encoder: source (B, S), lengths (B,) -> the decoder's state (`seq2seq_state_names`);
            step: tokens (N,), that state -> log_probs (N, V_t), the next per-hypothesis state
==========  =========================================================================================

Every graph is the application's own model traced: `CharLM.step`, the classifier's and
tagger's ``forward``, `Seq2Seq.encode` and `Seq2Seq.step`. The settings (``settings.json``)
are the checkpoint's own pieces: vocabularies, tokenisers, labels, lengths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from unrolled.export.graphs import EXAMPLE_LENGTHS, ExportError, Graph
from unrolled.export.speech import speech_graphs
from unrolled.export.vision import caption_graphs, glimpse_graphs, video_graphs


def _example_ids(vocabulary: int) -> tuple[Tensor, Tensor]:
    """A padded batch of ids (3, 5) from 2..V-1 and its lengths, padding 0."""
    lengths = torch.tensor(EXAMPLE_LENGTHS)
    ids = torch.randint(2, max(vocabulary, 3), (len(EXAMPLE_LENGTHS), max(EXAMPLE_LENGTHS)),
                        generator=torch.Generator().manual_seed(0))
    ids = ids.masked_fill(torch.arange(ids.shape[1]) >= lengths.unsqueeze(1), 0)
    return ids, lengths


def _rnn_names(layers: int, lstm: bool) -> list[str]:
    return [name for layer in range(layers) for name in ((f"h{layer}", f"c{layer}") if lstm else (f"h{layer}",))]


# ---------------------------------------------------------------------- lm


class LMStep(nn.Module):
    """`CharLM.step` over flat states: (tokens, h0, [c0,] ...) -> (log_probs, h0, [c0,] ...)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.lstm = model.rnn.cell(0).has_cell_state

    def forward(self, tokens: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        state = tuple(zip(states[::2], states[1::2], strict=True)) if self.lstm else states
        log_probs, new = self.model.step(tokens, state)
        flat = [part for cell in new for part in (cell if isinstance(cell, tuple) else (cell,))]
        return (log_probs, *flat)


def lm_graphs(predictor: Any) -> tuple[list[Graph], dict[str, Any]]:
    model = predictor.model
    config = model.config
    lstm = model.rnn.cell(0).has_cell_state
    names = _rnn_names(config.layers, lstm)
    batch = 3
    args = (torch.tensor([1, 2, 0]), *(torch.zeros(batch, config.hidden) for _ in names))
    dynamic = {name: {0: "N"} for name in ["tokens", "log_probs", *names, *(f"{n}_next" for n in names)]}
    graph = Graph("step", LMStep(model), args, ["tokens", *names], ["log_probs", *(f"{n}_next" for n in names)],
                  dynamic)
    settings = {"vocabulary": predictor.vocabulary.to_json(), "states": names, "hidden": config.hidden,
                "validation_loss": predictor.validation_loss}
    return [graph], settings


# ---------------------------------------------------------------------- classify


class Probabilities(nn.Module):
    """p(label | text) (B, C): the softmax of the classifier's logits, as `SequenceClassifier.predict`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        return torch.softmax(self.model(ids, lengths).float(), dim=-1)


def classify_graphs(predictor: Any) -> tuple[list[Graph], dict[str, Any]]:
    if getattr(predictor.model, "wide", None) is not None:
        raise ExportError("the NB n-gram branch (--wide) does not export (its n-gram lookup is not an ONNX "
                          "operator); serve the run instead, or export one trained without --wide")
    ids, lengths = _example_ids(predictor.model.config.vocab_size)
    graph = Graph("model", Probabilities(predictor.model), (ids, lengths), ["ids", "lengths"], ["probabilities"],
                  {"ids": {0: "B", 1: "T"}, "lengths": {0: "B"}, "probabilities": {0: "B"}})
    settings = {"encoding": predictor.encoding.to_json(), "labels": predictor.labels.to_json(), "min_steps": 1}
    if predictor.model_type == "cnn":
        # The CNN pads a batch shorter than its widest filter (a Python branch, fixed when traced): traced on a
        # batch that needs none, the runtime pads the ids (PAD_ID, past every length, so masked) as far.
        widest = max(predictor.model.config.widths)
        graph.args = (torch.nn.functional.pad(ids, (0, widest)), lengths)
        settings["min_steps"] = widest
    return [graph], settings


# ---------------------------------------------------------------------- tag


class TagLogits(nn.Module):
    """The tagger's logits (B, T, C) from word ids, lengths and, when it reads them, character ids (B, T, W)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: Tensor, lengths: Tensor, *chars: Tensor) -> Tensor:
        return self.model(ids, lengths, chars[0] if chars else None)


def tag_graphs(predictor: Any) -> tuple[list[Graph], dict[str, Any]]:
    config = predictor.model.config
    if config.input_features:
        raise ExportError("this tagger reads float input features, which export does not cover; export a word tagger")
    if predictor.task != "plain":
        raise ExportError(f"the {predictor.task} task's text handling is not in the runtime; export a plain tagger")
    ids, lengths = _example_ids(config.vocab_size)
    args: tuple[Tensor, ...] = (ids, lengths)
    names, dynamic = ["ids", "lengths"], {"ids": {0: "B", 1: "T"}, "lengths": {0: "B"}, "logits": {0: "B", 1: "T"}}
    settings = {"encoding": predictor.encoding.to_json(), "tags": predictor.tags.to_json(), "task": predictor.task,
                 "min_char_steps": 1}
    if config.chars:
        width = 4
        if config.char_encoder == "cnn":  # as the CNN classifier: traced wide enough, the runtime pads as far
            width = max(width, config.char_width + 1)
            settings["min_char_steps"] = config.char_width
        chars = torch.randint(2, max(config.char_vocab_size, 3), (*ids.shape, width),
                              generator=torch.Generator().manual_seed(1))
        chars[..., 3] = 0  # words of several lengths
        chars[0, 0, 1:] = 0
        args, names = (*args, chars.masked_fill((ids == 0).unsqueeze(-1), 0)), [*names, "chars"]
        dynamic["chars"] = {0: "B", 1: "T", 2: "W"}
    graph = Graph("model", TagLogits(predictor.model), args, names, ["logits"], dynamic)
    return [graph], settings


# ---------------------------------------------------------------------- seq2seq


def seq2seq_state_names(config: Any) -> tuple[list[str], list[str]]:
    """(the per-hypothesis state, the per-input memory) names of an exported seq2seq decoder state."""
    per_hypothesis = _rnn_names(config.layers, config.cell == "lstm") + (["feed"] if config.input_feed else [])
    shared = []
    if config.attention != "none":
        shared = ["memory", "mask"] + (["keys"] if config.attention in ("general", "additive") else [])
    return per_hypothesis, shared


def _flat_state(state: Any, names: tuple[list[str], list[str]]) -> tuple[Tensor, ...]:
    rnn = [part for cell in state.rnn for part in (cell if isinstance(cell, tuple) else (cell,))]
    values = rnn + ([state.feed] if "feed" in names[0] else [])
    values += [getattr(state, name) for name in names[1]]
    return tuple(values)


class Seq2SeqEncoder(nn.Module):
    """`Seq2Seq.encode` with its state flat: (source, lengths) -> the state named by `seq2seq_state_names`."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.names = seq2seq_state_names(model.config)

    def forward(self, source: Tensor, lengths: Tensor) -> tuple[Tensor, ...]:
        return _flat_state(self.model.encode(source, lengths), self.names)


class Seq2SeqStep(nn.Module):
    """`Seq2Seq.step` with its state flat, the memory shared as `Seq2Seq.reorder` keeps it.

    The N = n K hypotheses are n blocks of K consecutive rows, block b attending to
    memory row b (K = N / n, 1 included): traced with K = 2, so the graph reads
    queries as (n, K, H) against the n memories and never copies them per hypothesis.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.names = seq2seq_state_names(model.config)

    def forward(self, tokens: Tensor, *flat: Tensor) -> tuple[Tensor, ...]:
        from unrolled.models.seq2seq import DecoderState

        values = dict(zip([*self.names[0], *self.names[1]], flat, strict=True))
        layers = self.model.config.layers
        if self.model.config.cell == "lstm":
            rnn: tuple[Any, ...] = tuple((values[f"h{k}"], values[f"c{k}"]) for k in range(layers))
        else:
            rnn = tuple(values[f"h{k}"] for k in range(layers))
        state = DecoderState(rnn, values.get("feed"), values.get("memory"), values.get("mask"), None,
                             values.get("keys"))
        log_probs, new = self.model.step(tokens, state)
        return (log_probs, *_flat_state(new, (self.names[0], []))[: len(self.names[0])])


def seq2seq_graphs(predictor: Any) -> tuple[list[Graph], dict[str, Any]]:
    model, config = predictor.model, predictor.model.config
    source, lengths = _example_ids(config.source_vocab)
    per_hypothesis, shared = seq2seq_state_names(config)
    encoder = Seq2SeqEncoder(model)
    with torch.no_grad():
        state = encoder(source, lengths)
    axes = {"memory": {0: "B", 1: "S"}, "mask": {0: "B", 1: "S"}, "keys": {0: "B", 1: "S"}}
    encode_dynamic = {"source": {0: "B", 1: "S"}, "lengths": {0: "B"},
                      **{name: {0: "B"} for name in per_hypothesis}, **{name: axes[name] for name in shared}}
    step_axes = {"memory": {0: "n", 1: "S"}, "mask": {0: "n", 1: "S"}, "keys": {0: "n", 1: "S"}}
    nexts = [f"{name}_next" for name in per_hypothesis]
    step_dynamic = {"tokens": {0: "N"}, "log_probs": {0: "N"}, **{name: {0: "N"} for name in per_hypothesis + nexts},
                    **{name: step_axes[name] for name in shared}}
    tokens = torch.tensor([4, 5, 6, 7, 8, 9])
    rows = len(per_hypothesis)
    hypotheses = tuple(value.repeat_interleave(2, dim=0) for value in state[:rows]) + tuple(state[rows:])
    graphs = [
        Graph("encoder", encoder, (source, lengths), ["source", "lengths"], per_hypothesis + shared, encode_dynamic),
        Graph("step", Seq2SeqStep(model), (tokens, *hypotheses), ["tokens", *per_hypothesis, *shared],
              ["log_probs", *nexts], step_dynamic),
    ]
    settings = {"source": predictor.source.to_json(), "target": predictor.target.to_json(),
                "per_hypothesis": per_hypothesis, "shared": shared}
    return graphs, settings


EXPORTERS: dict[str, Callable[[Any], tuple[list[Graph], dict[str, Any]]]] = {
    "lm": lm_graphs, "classify": classify_graphs, "tag": tag_graphs, "seq2seq": seq2seq_graphs,
    "speech": speech_graphs, "caption": caption_graphs, "glimpse": glimpse_graphs,
    "video": video_graphs,
}
"""The applications that export, by name."""
