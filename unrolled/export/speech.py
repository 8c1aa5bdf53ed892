"""What a speech run exports: the recogniser's encoder with its front end, and the attention decoder's step.

==========  =========================================================================================
graph       inputs -> outputs (B clips, N samples, S encoder steps, K hypotheses: all dynamic)
==========  =========================================================================================
encoder     waves (B, N) float32, samples (B,), warp (B,) float64
            -> [log_probs (B, S, V) of the CTC head,] steps (B,)[, memory (B, S, 2H), keys (B, S, A),
            mask (B, S) of the speller]
step        tokens (K,), h, c (K, D), context (K, 2H), weights (K, S), memory, keys, mask
            -> log_probs (K, V), h_next, c_next, context_next, weights_next  (the speller only)
==========  =========================================================================================

The encoder is `Recogniser.encode` with the front end inside the graph: the
log-mel features (`unrolled.features.FrontEnd`) are computed with the STFT
written as frames times a DFT basis (`unrolled.features.dft_power_spectrum`,
which `unrolled.export.graphs.exportable` swaps in: ONNX has no complex
tensors), the rest as it runs. ``warp`` is the band warp
of the warp search (1: the features as they are, exactly). The step is
`Recogniser.step` over a flat state; every part of it is per hypothesis, as
`Recogniser.reorder` keeps it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from unrolled.export.graphs import Graph

STEP_STATE = ["h", "c", "context", "weights"]
"""The speller's state per hypothesis, as the step graph names it; the memory, keys and mask come from the encoder."""
MEMORY = ["memory", "keys", "mask"]


class SpeechEncoder(nn.Module):
    """(waves, samples, warp) -> the CTC head's log-probabilities and/or the speller's memory (module docstring)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, waves: Tensor, samples: Tensor, warp: Tensor) -> tuple[Tensor, ...]:
        h, steps = self.model.encode(waves, samples, warp=warp)  # (B, S, 2H), (B,)
        outputs = [self.model.ctc_head(h)] if self.model.output is not None else []
        outputs.append(steps)
        if self.model.config.uses_attention:
            start = self.model.start(h, steps)
            outputs += [start.memory, start.keys, start.mask]
        return tuple(outputs)


class SpeechStep(nn.Module):
    """`Recogniser.step` over a flat state: (tokens, h, c, context, weights, memory, keys, mask) -> log_probs and
    the next h, c, context, weights."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, h: Tensor, c: Tensor, context: Tensor, weights: Tensor, memory: Tensor,
                keys: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
        from unrolled.models.speech import SpeechState

        log_probs, new = self.model.step(tokens, SpeechState((h, c), context, weights, memory, keys, mask))
        return log_probs, new.rnn[0], new.rnn[1], new.context, new.weights


def example_waves(rate: int) -> tuple[Tensor, Tensor]:
    """Three clips of noise, 0.30, 0.12 and 0.21 s long, padded with zeros: (3, N) and their samples."""
    samples = torch.tensor([3 * rate // 10, 12 * rate // 100, 21 * rate // 100])
    waves = 0.1 * torch.randn(len(samples), int(samples.max()), generator=torch.Generator().manual_seed(0))
    return waves.masked_fill(torch.arange(waves.shape[1]) >= samples.unsqueeze(1), 0.0), samples


def speech_graphs(predictor: Any) -> tuple[list[Graph], dict[str, Any]]:
    model = predictor.model
    config = model.config
    waves, samples = example_waves(config.features.rate)
    warp = torch.ones(len(samples), dtype=torch.float64)
    outputs = (["log_probs"] if config.uses_ctc else []) + ["steps"] + (MEMORY if config.uses_attention else [])
    axes = {"log_probs": {0: "B", 1: "S"}, "steps": {0: "B"}, "memory": {0: "B", 1: "S"}, "keys": {0: "B", 1: "S"},
            "mask": {0: "B", 1: "S"}}
    encoder = SpeechEncoder(model)
    graphs = [Graph("encoder", encoder, (waves, samples, warp), ["waves", "samples", "warp"], outputs,
                    {"waves": {0: "B", 1: "N"}, "samples": {0: "B"}, "warp": {0: "B"},
                     **{name: axes[name] for name in outputs}})]
    if config.uses_attention:
        with torch.no_grad():
            encoded = dict(zip(outputs, encoder(waves, samples, warp), strict=True))
        start = model.start(encoded["memory"], encoded["steps"])
        state = (start.rnn[0], start.rnn[1], start.context, start.weights, start.memory, start.keys, start.mask)
        inputs = ["tokens", *STEP_STATE, *MEMORY]
        nexts = [f"{name}_next" for name in STEP_STATE]
        dynamic = {"tokens": {0: "K"}, "log_probs": {0: "K"}, **{name: {0: "K"} for name in STEP_STATE[:3]},
                   **{name: {0: "K"} for name in nexts[:3]}, "weights": {0: "K", 1: "S"},
                   "weights_next": {0: "K", 1: "S"}, **{name: {0: "K", 1: "S"} for name in MEMORY}}
        graphs.append(Graph("step", SpeechStep(model), (torch.tensor([0, 3, 5]), *state), inputs,
                            ["log_probs", *nexts], dynamic))
    settings = {"alphabet": predictor.alphabet.characters, "decoder": config.decoder,
                "decoder_hidden": config.decoder_hidden}
    return graphs, settings
