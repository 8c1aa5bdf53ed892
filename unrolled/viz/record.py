"""Record a char-LM run's states over a text: `Recurrent`'s trace, kept as float16 memory maps in the run folder.

A recording is a folder ``RUN/viz/states-<first 12 hex of the text's sha256>/``::

    index.json        what is inside (below); written last, so a folder without it is unfinished
    text.txt          the text, UTF-8
    l0.h.f16, ...     one file per layer and quantity: float16, cell-major (H, N), so that a cell's
                      whole track is contiguous (match queries) and a window is H short runs (views)

The quantities are the cells' trace names (`unrolled.cells`): for the LSTM
h, c and the gates i, f, o (and the candidate g when asked); for the GRU h and
the gates z, r (and n); for the RNN h.

The transparent path steps through every character in Python, which is slow
for one stream of a million characters; the text is therefore read as S
parallel streams of consecutive segments (S = 1 for texts under
`MIN_SEGMENT` characters). Stream 0 starts at the text's start from the zero
state, exactly as one stream would; every other stream starts `warmup`
characters before its segment, from the zero state, so its state is warmed
on the text that precedes the segment (the states there are not recorded). A
recording with S > 1 therefore approximates the one-stream states at the
first few steps of each segment; `index.json` says S and the warm-up.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unrolled.atomic import staged_folder
from unrolled.checkpoint import load_checkpoint, resolve_checkpoint

VIZ_DIR = "viz"
INDEX_FILE, TEXT_FILE = "index.json", "text.txt"
FORMAT = 1
STATE_DTYPE = np.float16
FLOAT16_MAX = float(np.finfo(np.float16).max)
CANDIDATES = ("g", "n")  # the LSTM's and GRU's candidate values: traced, but not recorded unless asked for
CHUNK_STEPS = 128  # time steps per forward pass; the state is carried from one to the next
MIN_SEGMENT = 16_384  # characters per stream at least (a shorter text is one stream)
MAX_STREAMS = 64
WARMUP = 512  # characters each stream but the first reads before its segment
LM_KIND = "char-lm"
COMMAND = "unrolled lm train"


@dataclass
class Index:
    """The contents of a recording's index.json."""

    format: int
    run: str
    checkpoint: str
    characters: int
    layers: int
    hidden: int
    cell: str
    quantities: list[str]
    ranges: dict[str, list[float]]  # "l0.h" -> [min, max] over the text
    streams: int
    warmup: int
    sha256: str
    step: int | None = None  # the checkpoint's training step


class Recording:
    """A recording folder opened for reading: its index, its text, and memory maps of its states."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        path = self.folder / INDEX_FILE
        try:
            self.index = Index(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as error:
            raise ValueError(f"{path}: not a readable recording ({error}); record it again") from None
        self.text = (self.folder / TEXT_FILE).read_text(encoding="utf-8")
        self._maps: dict[str, np.memmap] = {}

    @property
    def length(self) -> int:
        return self.index.characters

    def states(self, layer: int, quantity: str) -> np.ndarray:
        """The (H, N) float16 memory map of `quantity` in `layer`; ValueError naming what exists otherwise."""
        if not 0 <= layer < self.index.layers:
            raise ValueError(f"layer {layer} does not exist; the model has layers 0..{self.index.layers - 1}")
        if quantity not in self.index.quantities:
            raise ValueError(f"quantity {quantity!r} was not recorded; choose one of "
                             f"{', '.join(self.index.quantities)}")
        key = f"l{layer}.{quantity}"
        if key not in self._maps:
            shape = (self.index.hidden, self.index.characters)
            self._maps[key] = np.memmap(self.folder / f"{key}.f16", dtype=STATE_DTYPE, mode="r", shape=shape)
        return self._maps[key]


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_kind(run: str | os.PathLike[str]) -> tuple[Path, str, int | None]:
    """The checkpoint folder of a run, its model kind and step; one-line ValueErrors for a missing or broken run."""
    folder = resolve_checkpoint(run, command="unrolled ... train")
    config = load_checkpoint(folder).config
    return folder, str(config.get("kind")), config.get("step")


def recording_folder(run: str | os.PathLike[str], text: str) -> Path:
    """Where the recording of `text` lives: RUN/viz/states-<hash>; a checkpoint folder's run is its parent."""
    base = Path(run)
    if (base / "config.json").is_file():
        base = base.parent
    return base / VIZ_DIR / f"states-{text_digest(text)[:12]}"


def record_states(
    run: str | os.PathLike[str], text: str, *, quantities: list[str] | None = None, streams: int | None = None,
    warmup: int = WARMUP, chunk: int = CHUNK_STEPS, on_progress: Callable[[int, int], None] | None = None,
    force: bool = False, device: str = "auto",
) -> Recording:
    """Record the states of char-LM run `run` over `text` (or reuse a finished recording of the same text).

    quantities: trace names to keep (default: every one but the candidate g / n).
    streams: parallel streams (default: one per `MIN_SEGMENT` characters, at most
    `MAX_STREAMS`). on_progress(done, total) is called after each chunk of steps.
    device: where the model runs ("auto": CUDA when present); the states come back to the CPU's memory maps.
    """
    from unrolled.apps.lm import LanguageModel

    checkpoint, kind, step = run_kind(run)
    if kind != LM_KIND:
        raise ValueError(f"{run} holds a {kind!r} model; `unrolled viz` records the recurrent states of "
                         f"{LM_KIND!r} runs (from `{COMMAND}`) and the attention of seq2seq runs")
    trained = LanguageModel.load(run, device=device)
    model, vocabulary = trained.model, trained.vocabulary
    if not text:
        raise ValueError("the text is empty; give a text to read")
    unseen = vocabulary.unknown_characters(text)
    if unseen:
        shown = ", ".join(repr(c) for c in sorted(unseen)[:10])
        raise ValueError(f"the text has {len(unseen)} character(s) the model never saw in training: {shown}; "
                         f"remove or replace them")
    names = model.rnn.cell(0).trace_names
    chosen = quantities or [q for q in names if q not in CANDIDATES]
    wrong = [q for q in chosen if q not in names]
    if wrong:
        raise ValueError(f"a {model.config.cell} cell has no {', '.join(wrong)}; choose from {', '.join(names)}")
    folder = recording_folder(run, text)
    if not force and (folder / INDEX_FILE).is_file():
        existing = Recording(folder)
        same = (existing.index.checkpoint, existing.index.step) == (str(checkpoint), step)
        if same and set(chosen) <= set(existing.index.quantities):
            return existing
        if same:  # recorded again with what it had as well, so that no quantity is lost
            chosen = [q for q in names if q in chosen or q in existing.index.quantities]
    count = streams or max(1, min(MAX_STREAMS, len(text) // MIN_SEGMENT))
    index = Index(FORMAT, str(run), str(checkpoint), len(text), model.config.layers, model.config.hidden,
                  model.config.cell, list(chosen), {}, count, warmup if count > 1 else 0, text_digest(text), step)
    with staged_folder(folder) as temp:  # a recording appears whole, or the old one stays
        (temp / TEXT_FILE).write_text(text, encoding="utf-8")
        write_states(model, vocabulary.encode(text).numpy(), temp, index, chunk=chunk, on_progress=on_progress)
        (temp / INDEX_FILE).write_text(json.dumps(asdict(index), indent=1), encoding="utf-8")
    return Recording(folder)


@dataclass
class Streams:
    """The text as S streams: stream s reads positions begin[s] .. begin[s] + P - 1 and records from offset[s]."""

    ids: np.ndarray  # (S, P) int64, padded with 0 past the text's end
    begin: np.ndarray  # (S,) the text position of each stream's first step
    offset: np.ndarray  # (S,) steps of warm-up before the segment
    end: np.ndarray  # (S,) one past the segment's last text position


def make_streams(ids: np.ndarray, count: int, warmup: int) -> Streams:
    """Cut ids (N,) into `count` consecutive segments, each read after up to `warmup` characters before it."""
    n = len(ids)
    segment = math.ceil(n / count)
    starts = np.arange(count) * segment
    ends = np.minimum(starts + segment, n)
    begin = np.maximum(starts - warmup, 0)
    steps = int((ends - begin).max())
    padded = np.zeros((count, steps), dtype=np.int64)
    for s in range(count):
        padded[s, : ends[s] - begin[s]] = ids[begin[s] : ends[s]]
    return Streams(padded, begin, starts - begin, ends)


@torch.inference_mode()
def write_states(model: Any, ids: np.ndarray, folder: Path, index: Index, *, chunk: int,
                 on_progress: Callable[[int, int], None] | None) -> None:
    """Run the model's `Recurrent` with trace=True over the streams, chunk by chunk, into (H, N) memory maps."""
    streams = make_streams(ids, index.streams, index.warmup)
    shape = (index.hidden, index.characters)
    maps = {f"l{layer}.{q}": np.memmap(folder / f"l{layer}.{q}.f16", dtype=STATE_DTYPE, mode="w+", shape=shape)
            for layer in range(index.layers) for q in index.quantities}
    lows = dict.fromkeys(maps, math.inf)
    highs = dict.fromkeys(maps, -math.inf)
    inputs = torch.from_numpy(streams.ids).to(next(model.parameters()).device)  # (S, P)
    total, state = inputs.shape[1], None
    for j0 in range(0, total, chunk):
        j1 = min(j0 + chunk, total)
        _, state, trace = model.rnn(model.embed(inputs[:, j0:j1]), state, trace=True)  # trace: (S, Tc, H) each
        spans = [(s, max(j0, int(streams.offset[s])), min(j1, int(streams.end[s] - streams.begin[s])))
                 for s in range(index.streams)]
        spans = [(s, lo, hi) for s, lo, hi in spans if lo < hi]  # each stream's recorded steps in this chunk
        whole = len(spans) == index.streams and all((lo, hi) == (j0, j1) for _, lo, hi in spans)
        for key, target in maps.items():
            layer, quantity = key.split(".")
            traced = trace[layer][quantity].clamp_(-FLOAT16_MAX, FLOAT16_MAX)  # (S, Tc, H)
            # to float16 first, then (S, H, Tc): each stream's block is rows of the cell-major map
            values = traced.to(torch.float16).transpose(1, 2).contiguous().cpu().numpy()
            for s, lo, hi in spans:
                target[:, streams.begin[s] + lo : streams.begin[s] + hi] = values[s, :, lo - j0 : hi - j0]
            parts = [traced] if whole else [traced[s, lo - j0 : hi - j0] for s, lo, hi in spans]
            for part in parts:
                low, high = torch.aminmax(part)
                lows[key], highs[key] = min(lows[key], float(low)), max(highs[key], float(high))
        if on_progress is not None:
            on_progress(j1, total)
    for key, target in maps.items():
        target.flush()
        index.ranges[key] = [lows[key], highs[key]]
