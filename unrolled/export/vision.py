"""What the image and video applications export: the captioner's encoder and step, ...

==========  =========================================================================================
app         graphs (inputs -> outputs; B images, K hypotheses: dynamic)
==========  =========================================================================================
caption     encoder: images (B, H, W, 3) uint8 -> h, c (B, H_d)[, features (B, L, D), keys (B, L, A)];
            step: tokens (K,), h, c (K, H_d)[, features, keys (n, L, .)] -> log_probs (K, V), h_next, c_next
glimpse     model: images (B, H, W, 3) uint8 -> logits (B, S, 11)[, locations (B, N, 2) of DRAM]
video       model: frames (B, T, H, W) uint8, lengths (B,) -> logits (B, T, C)
==========  =========================================================================================

Every graph is the application's own model traced: `Captioner.encode` (after
the predictor's conversion of pixels to [0, 1], inside the graph) and
`Captioner.step`, whose K = n k hypotheses read the features of their image
as `Captioner.reorder` keeps them (one row per image, traced with k = 2).
The glimpse reader is its whole forward pass (`Glimpses`: the N glimpses are a
fixed loop, each location the policy's mean, as when reading; or the CNN),
after the predictor's grey conversion, inside the graph; DRAM's sensor samples
with ONNX's AffineGrid and GridSample, so that graph is opset 20. The video
labeller is `FrameLabeller.forward` (pixels to [0, 1] inside), its recurrent
layer exported as every `Recurrent` is (`unrolled.export.graphs`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from unrolled.export.graphs import EXAMPLE_LENGTHS, OPSET, Graph

PIXEL_SCALE = 255.0


class CaptionEncoder(nn.Module):
    """uint8 images (B, H, W, 3) -> the captioner's first state, flat: h, c[, features, keys]."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        state = self.model.encode(images.permute(0, 3, 1, 2).float() / PIXEL_SCALE)  # as `image_tensor`
        return (state.h, state.c) if state.features is None else (state.h, state.c, state.features, state.keys)


class CaptionStep(nn.Module):
    """`Captioner.step` over a flat state: (tokens, h, c[, features, keys]) -> (log_probs, h_next, c_next)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, h: Tensor, c: Tensor, *memory: Tensor) -> tuple[Tensor, ...]:
        from unrolled.models.captioner import CaptionState

        features, keys = memory if memory else (None, None)
        log_probs, state = self.model.step(tokens, CaptionState(h, c, features, keys, None))
        return log_probs, state.h, state.c


def caption_graphs(predictor: Any) -> tuple[list[Graph], dict[str, Any]]:
    model = predictor.model
    soft = model.config.attention == "soft"
    height, width = predictor.size
    images = torch.randint(0, 256, (3, height, width, 3), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    encoder = CaptionEncoder(model)
    shared = ["features", "keys"] if soft else []
    with torch.no_grad():
        state = encoder(images)
    per_image = {"h": {0: "B"}, "c": {0: "B"}, "features": {0: "B"}, "keys": {0: "B"}}
    graphs = [Graph("encoder", encoder, (images,), ["images"], ["h", "c", *shared],
                    {"images": {0: "B"}, **{name: per_image[name] for name in ["h", "c", *shared]}})]
    hypotheses = tuple(value.repeat_interleave(2, dim=0) for value in state[:2])  # k = 2 per image
    step_dynamic = {"tokens": {0: "K"}, "log_probs": {0: "K"}, "h": {0: "K"}, "c": {0: "K"}, "h_next": {0: "K"},
                    "c_next": {0: "K"}, **{name: {0: "n"} for name in shared}}
    graphs.append(Graph("step", CaptionStep(model), (torch.tensor([4, 5, 6, 7, 8, 9]), *hypotheses, *state[2:]),
                        ["tokens", "h", "c", *shared], ["log_probs", "h_next", "c_next"], step_dynamic))
    settings = {"captions": predictor.side.to_json(), "size": list(predictor.size), "shared": shared}
    return graphs, settings


GRID_OPSET = 20  # ONNX's AffineGrid (torch's affine_grid) arrived in opset 20


class ReaderGraph(nn.Module):
    """uint8 images (B, H, W, 3) -> the reader's logits (B, S, 11)[, DRAM's glimpse centres (B, N, 2)]."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        from unrolled.models.glimpse import Glimpses

        grey = images.float().mean(dim=3).round().unsqueeze(1) / PIXEL_SCALE  # as `grey`, then `as_float`
        if isinstance(self.model, Glimpses):
            logits, locations, _, _ = self.model(grey)
            return logits, locations
        return (self.model(grey),)


def glimpse_graphs(predictor: Any) -> tuple[list[Graph], dict[str, Any]]:
    from unrolled.models.glimpse import END, Glimpses

    height, width = predictor.size
    images = torch.randint(0, 256, (3, height, width, 3), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    dram = isinstance(predictor.model, Glimpses)
    outputs = ["logits", "locations"] if dram else ["logits"]
    graph = Graph("model", ReaderGraph(predictor.model), (images,), ["images"], outputs,
                  {name: {0: "B"} for name in ["images", *outputs]}, GRID_OPSET if dram else OPSET)
    return [graph], {"size": list(predictor.size), "end": END}


class FrameLogits(nn.Module):
    """uint8 frames (B, T, H, W) and lengths (B,) -> the labeller's logits (B, T, C)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: Tensor, lengths: Tensor) -> Tensor:
        return self.model(frames.float() / PIXEL_SCALE, lengths)  # as `unrolled.apps.video.as_float`


def video_graphs(predictor: Any) -> tuple[list[Graph], dict[str, Any]]:
    height, width = predictor.size
    lengths = torch.tensor(EXAMPLE_LENGTHS)
    frames = torch.randint(0, 256, (len(EXAMPLE_LENGTHS), max(EXAMPLE_LENGTHS), height, width), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    graph = Graph("model", FrameLogits(predictor.model), (frames, lengths), ["frames", "lengths"], ["logits"],
                  {"frames": {0: "B", 1: "T"}, "lengths": {0: "B"}, "logits": {0: "B", 1: "T"}})
    settings = {"size": list(predictor.size), "names": predictor.names, "first_labelled": predictor.first_labelled}
    return [graph], settings
