"""Speech data for training and transcription: waveforms, the split by speaker, perturbed batches, long audio cut.

    manifest (unrolled.data.speech) --split (the data's own, else seeded by speaker)--> train / validation / test
    --waveforms (16-bit in memory), perturbed (speed, volume, noise) while training--> `SpeechBatch`es

`SpeechData` is the trainer's view of the training part; `encode_utterances`
leaves out what a CTC head cannot spell in its steps; `cut_points` is where
transcription cuts audio longer than a chunk (at pauses); `read_clips` reads
and checks the audio files given to transcribe.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from unrolled.apps.split import PARTS, SplitRecord, split_parts
from unrolled.data.audio import PerturbConfig, perturb
from unrolled.data.labelled import LabelledData
from unrolled.data.speech import SpeechBatch, Utterance
from unrolled.features import SAMPLE_RATE
from unrolled.models.speech import Alphabet, SpeechConfig, needed_steps
from unrolled.sound import Clip, cut_points, read_audio, read_clips  # noqa: F401 (torch-free, shared with the runtime)


def read_waves(utterances: Sequence[Utterance]) -> list[NDArray[np.int16]]:
    """Every utterance's 16 kHz mono waveform, held as 16-bit integers (half the memory of float32)."""
    return [np.round(np.clip(read_audio(u.audio), -1.0, 1.0) * 32767).astype(np.int16) for u in utterances]


def as_float(wave: NDArray[Any]) -> NDArray[np.float32]:
    """16-bit samples -> float32 in [-1, 1]."""
    return (wave.astype(np.float32) / np.float32(32767)).astype(np.float32)


def utterance_key(u: Utterance) -> str:
    """What identifies an utterance for a recorded split: its line, audio path and transcript."""
    return f"{u.line}\t{u.audio}\t{u.text}"


def speaker_of(u: Utterance) -> str:
    """The speaker an utterance's ``speaker`` or ``voice`` key names, else the utterance itself (its line)."""
    for key in ("speaker", "voice"):
        if isinstance(u.extra.get(key), str):
            return f"{key}:{u.extra[key]}"
    return f"line:{u.line}"


def split_utterances(utterances: list[Utterance], record: SplitRecord | None) -> dict[str, list[Utterance]]:
    """The manifest's own split (record None: every line names train, validation or test), or the seeded split
    `record` describes, by speaker: no speaker is on two sides (`speaker_of`)."""
    if record is None:
        unknown = sorted({u.split or "(none)" for u in utterances} - set(PARTS))
        if unknown:
            raise ValueError(f"split name(s) {', '.join(map(repr, unknown))} in the manifest: use train, validation, "
                             "test on every line, or none at all for a seeded split")
        return {part: [u for u in utterances if u.split == part] for part in PARTS}
    return split_parts(utterances, record, key=utterance_key, group=speaker_of)


class SpeechData(LabelledData):
    """Shuffled training batches of utterances, each run of 50 batches sorted by duration (less padding).

    The order is `LabelledData`'s, so resuming at any batch gives the same
    batches; with ``perturbation`` each utterance of each epoch draws its own
    speed, volume and noise from ``default_rng([seed, epoch, index])``.
    """

    def __init__(self, waves: list[NDArray[np.int16]], targets: list[list[int]], *, batch_size: int, seed: int = 0,
                 perturbation: PerturbConfig | None = None, bucket: int = 50) -> None:
        super().__init__([range(len(w)) for w in waves], list(range(len(waves))), batch_size=batch_size, seed=seed,
                         bucket=bucket)  # a range per wave: its length is what the buckets sort by
        self.waves, self.targets, self.perturbation = waves, targets, perturbation

    def batches(self, epoch: int, start: int) -> Any:
        for rows in self.batch_rows(epoch, start):
            waves = [as_float(self.waves[i]) for i in rows]
            if self.perturbation is not None:
                waves = [perturb(w, self.perturbation, np.random.default_rng([self.seed, epoch, i]))
                         for w, i in zip(waves, rows, strict=True)]
            yield SpeechBatch.make(waves, [self.targets[i] for i in rows])

    def shard(self, rank: int, world: int) -> SpeechData:
        rows = super().shard(rank, world).rows
        part = SpeechData(self.waves, self.targets, batch_size=self.batch_size, seed=self.seed,
                          perturbation=self.perturbation, bucket=self.bucket)
        part.rows = rows
        return part


def encode_utterances(utterances: Sequence[Utterance], alphabet: Alphabet, config: SpeechConfig, *,
                      fastest: float = 1.0) -> tuple[list[int], list[list[int]]]:
    """(the utterances kept, their character ids): a CTC head needs enough encoder steps for its transcript, so an
    utterance spoken faster than the encoder's step rate allows is left out (counted by the caller). ``fastest``
    is the largest speed-up the perturbation may apply: the clip must still fit at that speed, with a step to
    spare for the resampler's rounding."""
    kept, targets = [], []
    for n, u in enumerate(utterances):
        ids = alphabet.encode(u.text)
        if config.uses_ctc:
            steps = config.encoder_steps(torch.tensor(math.floor(u.seconds * SAMPLE_RATE / fastest)))
            need = needed_steps(torch.tensor([ids]), torch.tensor([len(ids)]))
            if int(need) + (fastest > 1.0) > int(steps):
                continue
        kept.append(n)
        targets.append(ids)
    return kept, targets


def write_transcripts(path: Path, texts: Sequence[str]) -> None:
    """The texts, one per line, written atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temp.write_text("".join(f"{' '.join(text.split())}\n" for text in texts), encoding="utf-8")
    os.replace(temp, path)
