"""The speech recogniser over an exported folder: audio in, `Transcript` out, with ONNX Runtime and NumPy only.

As `unrolled.apps.transcriber.Transcriber`: audio files are read and resampled
to 16 kHz mono by `unrolled.sound` (soundfile, soxr), long ones cut into
pieces (`unrolled.sound.split_pieces`); the encoder graph computes the log-mel
features and the encoder; then

* CTC: the best path collapsed (`unrolled.ctc_search.collapse`), or the
  prefix beam search (`unrolled.ctc_search.prefix_beam`), the same code the
  training side runs;
* attention: the speller's step graph under `unrolled.runtime.decode`'s
  greedy sampling or beam search (NumPy twins of `unrolled.decoding`), at most
  `unrolled.sound.character_limit` characters.

Not here (each a one-line error that says so): joint rescoring with CTC, a
character language model (``--lm``), a restricted ``--vocabulary`` and the warp search; use the run itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from unrolled.apps.results import Transcript
from unrolled.ctc_search import BLANK, collapse, prefix_beam
from unrolled.runtime import decode
from unrolled.runtime.bundle import Bundle
from unrolled.runtime.graph import Graph, option
from unrolled.sound import (
    CHUNK_SECONDS,
    DECODE_BATCH,
    LENGTH_PENALTY,
    character_limit,
    join_pieces,
    read_clips,
    split_pieces,
)

HEADS = {"ctc": ("ctc",), "attention": ("attention",), "joint": ("attention", "ctc")}
"""The heads the runtime decodes with, by the run's decoder, the preferred first (joint rescoring is not here)."""


class Transcriber:
    """Audio in, transcripts out (`unrolled.apps.transcriber.Transcriber.predict`); see the module docstring."""

    def __init__(self, bundle: Bundle, threads: int | None = None) -> None:
        settings = bundle.settings
        self.characters: list[str] = list(settings["alphabet"])
        self.trained = str(settings["decoder"])
        self.hidden = int(settings["decoder_hidden"])
        self.encoder = Graph(bundle, "encoder", threads)
        self.speller = Graph(bundle, "step", threads) if self.trained != "ctc" else None

    def text(self, ids: Sequence[int]) -> str:
        return "".join(self.characters[i - 1] for i in ids if i != BLANK)

    def check_decoder(self, decoder: str | None) -> str:
        heads = HEADS[self.trained]
        if decoder is None:
            return heads[0]
        if decoder == "joint" and self.trained == "joint":
            raise ValueError("the runtime decodes a joint run with attention or ctc; joint rescoring needs the run "
                             "itself (unrolled speech predict RUN --decoder joint)")
        if decoder not in heads:
            raise ValueError(f"this export has no {decoder} decoder (it was trained with --decoder {self.trained}); "
                             f"use {' or '.join(heads)}")
        return decoder

    def encode(self, pieces: list[NDArray[np.float32]]) -> dict[str, np.ndarray]:
        """The encoder graph's outputs for waveforms (zero-padded into one batch), features unwarped."""
        samples = np.array([len(wave) for wave in pieces], dtype=np.int64)
        waves = np.zeros((len(pieces), int(samples.max())), dtype=np.float32)
        for b, wave in enumerate(pieces):
            waves[b, : len(wave)] = wave
        return self.encoder(waves=waves, samples=samples, warp=np.ones(len(pieces), dtype=np.float64))

    def step(self, tokens: np.ndarray, state: decode.State) -> tuple[np.ndarray, decode.State]:
        assert self.speller is not None
        out = self.speller(tokens=tokens.astype(np.int64), **state)
        new = {name: out[f"{name}_next"] for name in ("h", "c", "context", "weights")}
        return out["log_probs"], {**state, **new}

    def spell(self, encoded: dict[str, np.ndarray], *, beam: int, limit: int,
              length_penalty: float) -> list[tuple[str, float | None]]:
        """The speller's transcripts from <s> (id 0): greedy at beam 1, else beam search, the end being id 0."""
        memory = encoded["memory"]
        batch, hidden = memory.shape[0], self.hidden
        zeros = np.zeros((batch, hidden), dtype=np.float32)
        state = {"h": zeros, "c": zeros.copy(), "context": np.zeros_like(memory[:, 0]),
                 "weights": np.zeros(memory.shape[:2], dtype=np.float32), "memory": memory, "keys": encoded["keys"],
                 "mask": encoded["mask"]}
        log_probs, state = self.step(np.full(batch, BLANK), state)
        if beam == 1:
            rows = decode.sample(self.step, log_probs, state, length=limit, greedy=True, end_token=BLANK).tolist()
            return [(self.text(row[: row.index(BLANK)] if BLANK in row else row), None) for row in rows]
        found = decode.beam_search(self.step, log_probs, state, beam_size=beam, max_length=limit, end_token=BLANK,
                                   length_penalty=length_penalty)
        return [(self.text(best[0].tokens), best[0].score) for best in found]

    def decode(self, pieces: list[NDArray[np.float32]], head: str, beam: int,
               length_penalty: float) -> list[tuple[str, float | None]]:
        encoded = self.encode(pieces)
        if head != "ctc":
            limit = character_limit(max(len(wave) for wave in pieces))
            return self.spell(encoded, beam=beam, limit=limit, length_penalty=length_penalty)
        log_probs, steps = encoded["log_probs"], encoded["steps"].tolist()
        if beam == 1:
            return [(self.text(collapse(row[:length].tolist())), None)
                    for row, length in zip(log_probs.argmax(-1), steps, strict=True)]
        found = [prefix_beam(log_probs[b, :length].astype(np.float64).tolist(), beam)[0]
                 for b, length in enumerate(steps)]
        return [(self.text(ids), score) for ids, score in found]

    def transcribe(self, waves: Sequence[NDArray[np.floating]], *, beam: int = 1, decoder: str | None = None,
                   batch_size: int = DECODE_BATCH, chunk_seconds: float = CHUNK_SECONDS,
                   length_penalty: float = LENGTH_PENALTY) -> list[Transcript]:
        """The transcript of each 16 kHz waveform, as `Transcriber.transcribe` of the run (beam 1: greedy)."""
        if beam < 1 or batch_size < 1:
            raise ValueError(f"the beam and the batch size must be at least 1, got {beam} and {batch_size}")
        head = self.check_decoder(decoder)
        pieces, owned = split_pieces(waves, chunk_seconds)
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))  # similar lengths batch together
        found: list[tuple[str, float | None]] = [("", None)] * len(pieces)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            for i, result in zip(rows, self.decode([pieces[i] for i in rows], head, beam, length_penalty),
                                 strict=True):
                found[i] = result
        return [Transcript(None, *join_pieces([found[i] for i in mine]), head) for mine in owned]

    def predict(self, inputs: Sequence[Any], options: Any = None) -> list[Transcript]:
        """The transcript of each clip (`unrolled.sound.Clip`) or audio file path, named by it."""
        unsupported = [flag for flag, name in (("--lm", "lm"), ("--warp-search", "warp_search"), ("--warps", "warps"),
                                               ("--ctc-weight", "ctc_weight"), ("--vocabulary", "vocabulary"))
                       if option(options, name, None)]
        if unsupported:
            raise ValueError(f"{unsupported[0]} is not in the runtime; use the run itself (unrolled speech predict)")
        clips = [item for item in inputs if not isinstance(item, str)]
        if len(clips) < len(inputs):
            paths = iter(read_clips([item for item in inputs if isinstance(item, str)]))
            clips = [item if not isinstance(item, str) else next(paths) for item in inputs]
        outputs = self.transcribe([clip.wave for clip in clips], beam=option(options, "beam", 8),
                                  decoder=option(options, "decoder", None),
                                  batch_size=option(options, "batch_size", DECODE_BATCH),
                                  chunk_seconds=option(options, "chunk", CHUNK_SECONDS),
                                  length_penalty=option(options, "length_penalty", LENGTH_PENALTY))
        for output, clip in zip(outputs, clips, strict=True):
            output.audio = clip.name
        return outputs
