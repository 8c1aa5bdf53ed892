"""The image applications over an exported folder, with ONNX Runtime and NumPy only.

`Captioner` is `unrolled.apps.caption.ImageCaptioner`: image files read and
resized by `unrolled.imagefiles` (Pillow, bilinear, as the predictor reads
them), the encoder graph (pixels to [0, 1] inside it), then the step graph
under `unrolled.runtime.decode.beam_search` (beam 1: greedy), the features
of an image shared by its hypotheses. Attention maps are not drawn here.

`Reader` is `unrolled.apps.glimpse.Reader`: one graph reads every image (the
glimpse locations are the policy's means, so the path is the predictor's);
the digits are the argmax symbols up to the first <end>.

`VideoLabeller` is `unrolled.apps.video.VideoLabeller`: clips (frames given,
or read in grey by `unrolled.imagefiles.read_clip`) batched by length, a label
per frame (the argmax), the first frame unlabelled where training labelled none.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unrolled.apps.results import Caption, CaptionedImage, FrameLabels, Reading
from unrolled.imagefiles import clip_batches, read_clip, read_images
from unrolled.runtime import decode
from unrolled.runtime.bundle import Bundle
from unrolled.runtime.graph import Graph, option
from unrolled.runtime.text import BOS_ID, EOS_ID, Side

CAPTION_BATCH = 64
READ_BATCH = 64
LABEL_BATCH = 64
UNLABELLED = "-"  # as `unrolled.apps.video.UNLABELLED`


class Captioner:
    """Images in, captions out, best first (`unrolled.apps.caption.ImageCaptioner.predict`)."""

    def __init__(self, bundle: Bundle, threads: int | None = None) -> None:
        settings = bundle.settings
        self.side = Side(settings["captions"])
        self.size = (int(settings["size"][0]), int(settings["size"][1]))
        self.shared: list[str] = settings["shared"]
        self.encoder, self.decoder = Graph(bundle, "encoder", threads), Graph(bundle, "step", threads)

    def step(self, tokens: np.ndarray, state: decode.State) -> tuple[np.ndarray, decode.State]:
        out = self.decoder(tokens=tokens.astype(np.int64), **state)
        return out["log_probs"], {"h": out["h_next"], "c": out["c_next"], **{k: state[k] for k in self.shared}}

    def reorder(self, state: decode.State, index: np.ndarray) -> decode.State:
        """The state of hypotheses `index` (`decode.beam_search`'s blocks per image): the features stay shared."""
        return {name: value if name in self.shared else value[index] for name, value in state.items()}

    def caption(self, images: np.ndarray, *, beam: int = 5, n_best: int = 1, length_penalty: float = 0.0,
                max_length: int | None = None, batch_size: int = CAPTION_BATCH) -> list[list[Caption]]:
        """The n_best captions of each image (uint8 (N, H, W, 3) at the run's size), best first; beam 1 is greedy."""
        if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8 or \
                tuple(images.shape[1:3]) != self.size:
            raise ValueError(f"images must be uint8 (N, {self.size[0]}, {self.size[1]}, 3) (the run's image size), "
                             f"got {images.dtype} {images.shape}")
        if batch_size < 1:
            raise ValueError(f"the batch size must be at least 1, got {batch_size}")
        limit = max_length if max_length is not None else self.side.max_len + 1
        results: list[list[Caption]] = []
        for start in range(0, len(images), batch_size):
            state = self.encoder(images=images[start : start + batch_size])
            log_probs, state = self.step(np.full(len(state["h"]), BOS_ID, dtype=np.int64), state)
            found = decode.beam_search(self.step, log_probs, state, beam_size=beam, max_length=limit,
                                       end_token=EOS_ID, length_penalty=length_penalty, n_best=n_best,
                                       reorder=self.reorder)
            for hypotheses in found:
                results.append([])
                for h in hypotheses:
                    tokens = self.side.decode(h.tokens)
                    results[-1].append(Caption(self.side.text(tokens), tokens, h.score, h.normalised, h.finished))
        return results

    def predict(self, inputs: Sequence[str], options: Any = None) -> list[CaptionedImage]:
        """The captions of each image file (any size or format Pillow reads; resized to the run's size)."""
        if option(options, "attention_map", None):
            raise ValueError("--attention-map is not in the runtime; draw it with the run (unrolled caption predict)")
        images = read_images([Path(name) for name in inputs], size=self.size)
        found = self.caption(images, beam=option(options, "beam", 5), n_best=option(options, "n_best", 1),
                             length_penalty=option(options, "length_penalty", 0.0),
                             max_length=option(options, "max_len", None),
                             batch_size=option(options, "batch_size", CAPTION_BATCH))
        return [CaptionedImage(str(name), captions) for name, captions in zip(inputs, found, strict=True)]


class Reader:
    """Images of digit strings in, `Reading` out (`unrolled.apps.glimpse.Reader.predict`)."""

    def __init__(self, bundle: Bundle, threads: int | None = None) -> None:
        self.size = (int(bundle.settings["size"][0]), int(bundle.settings["size"][1]))
        self.end = int(bundle.settings["end"])
        self.graph = Graph(bundle, "model", threads)

    def read(self, images: np.ndarray, *, batch_size: int = READ_BATCH) -> tuple[list[list[int]], np.ndarray | None]:
        """The digits of each image (uint8 (N, H, W, 3) at the run's size) and DRAM's glimpse centres (N, n, 2)."""
        if images.ndim != 4 or images.shape[3] != 3 or tuple(images.shape[1:3]) != self.size:
            raise ValueError(f"images must be uint8 (N, {self.size[0]}, {self.size[1]}, 3), got {images.shape}")
        strings: list[list[int]] = []
        centres = []
        for start in range(0, len(images), batch_size):
            out = self.graph(images=np.ascontiguousarray(images[start : start + batch_size], dtype=np.uint8))
            for row in out["logits"].argmax(-1).tolist():
                strings.append(row[: row.index(self.end)] if self.end in row else row)
            if "locations" in out:
                centres.append(out["locations"])
        return strings, np.concatenate(centres) if centres else None

    def predict(self, inputs: Sequence[str], options: Any = None) -> list[Reading]:
        """The digits of each image file (resized to the run's image size), and DRAM's glimpses."""
        if option(options, "path", None):
            raise ValueError("--path is not in the runtime; draw the glimpses with the run (unrolled glimpse predict)")
        strings, centres = self.read(read_images([Path(name) for name in inputs], size=self.size),
                                     batch_size=option(options, "batch_size", READ_BATCH))
        return [Reading(str(name), " ".join(map(str, digits)), None if centres is None else centres[k].tolist())
                for k, (name, digits) in enumerate(zip(inputs, strings, strict=True))]


class VideoLabeller:
    """Clips in, a label per frame out (`unrolled.apps.video.VideoLabeller.predict`)."""

    def __init__(self, bundle: Bundle, threads: int | None = None) -> None:
        settings = bundle.settings
        self.size = (int(settings["size"][0]), int(settings["size"][1]))
        self.names: list[str] = [str(name) for name in settings["names"]]
        self.first_labelled = bool(settings["first_labelled"])
        self.graph = Graph(bundle, "model", threads)

    def label_ids(self, clips: list[np.ndarray], *, batch_size: int = LABEL_BATCH) -> list[list[int]]:
        """Label ids of every frame of each clip (uint8 (T, H, W), any T), in batches of clips of equal length."""
        found: list[list[int]] = [[] for _ in clips]
        for rows in clip_batches(clips, self.size, batch_size):  # clips of one length each
            frames = np.stack([clips[k] for k in rows])  # (B, T, H, W)
            logits = self.graph(frames=frames, lengths=np.full(len(rows), frames.shape[1], dtype=np.int64))["logits"]
            for k, row in zip(rows, logits.argmax(-1).tolist(), strict=True):
                found[k] = row
        return found

    def label(self, clips: list[np.ndarray], *, batch_size: int = LABEL_BATCH) -> list[list[str]]:
        """The label name of every frame of each clip; `UNLABELLED` for a first frame when training labelled none."""
        named = [[self.names[i] for i in row] for row in self.label_ids(clips, batch_size=batch_size)]
        if not self.first_labelled:
            for row in named:
                row[0] = UNLABELLED
        return named

    def predict(self, inputs: Sequence[Any], options: Any = None) -> list[FrameLabels]:
        """The label of every frame of each clip: a name (a folder of frames or a multi-frame image) or a clip with
        its ``name`` and uint8 ``frames`` (T, H, W) (`unrolled.apps.video.Clip`)."""
        names = [item if isinstance(item, str) else str(item.name) for item in inputs]
        given = [None if isinstance(item, str) else item.frames for item in inputs]
        frames = [read_clip(Path(name), self.size) if clip is None else clip for name, clip in zip(names, given,
                                                                                                   strict=True)]
        labels = self.label(frames, batch_size=option(options, "batch_size", LABEL_BATCH))
        return [FrameLabels(name, row) for name, row in zip(names, labels, strict=True)]
