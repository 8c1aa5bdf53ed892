"""Speech manifests: JSON lines ``{"audio": path, "text": transcript}``, checked whole before any training.

A manifest is a UTF-8 file of one JSON object a line::

    {"audio": "clips/0001.wav", "text": "three one four"}
    {"audio": "/data/other.flac", "text": "in the beginning", "split": "test"}

``audio`` is a path, relative to the manifest's folder unless absolute, to a
file soundfile reads (WAV, FLAC, ...; any rate and channel count, see
`unrolled.data.audio`); ``text`` is the transcript. NeMo's manifests name the
path ``audio_filepath`` (and add ``duration``): they read as they are. Other
keys are kept in `Utterance.extra` (the built-in datasets add ``split``,
``voice`` and ``engine``). Blank lines are skipped.

`read_manifest` checks every line and stops at the first bad one with a
one-line `ManifestError` that names the manifest and the line: not JSON, not
an object, a missing key, a transcript that is empty, an audio file that is
missing or not audio, a clip shorter than `MIN_SECONDS` or longer than the
configured limit (`MAX_SECONDS` by default), and a clip with no sample above
-60 dB of full scale (silence).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from unrolled.data.audio import AudioError, audio_info, is_silent, read_audio
from unrolled.data.errors import DataError
from unrolled.sound import MIN_SECONDS

MAX_SECONDS = 30.0  # the default limit; longer clips are refused, not cut, when a manifest is read
REQUIRED_KEYS = ("audio", "text")
NEMO_AUDIO = "audio_filepath"  # NeMo's name for the audio path


class ManifestError(DataError):
    """A bad manifest line; the message is one line naming the manifest and the line number."""


@dataclass(frozen=True)
class Utterance:
    """One line of a manifest: the audio file (resolved), its transcript, its length, the line number, other keys."""

    audio: Path
    text: str
    seconds: float
    line: int
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def split(self) -> str | None:
        value = self.extra.get("split")
        return value if isinstance(value, str) else None


def read_manifest(path: Path | str, *, max_seconds: float = MAX_SECONDS, min_seconds: float = MIN_SECONDS,
                  split: str | None = None, check_silence: bool = True) -> list[Utterance]:
    """Every utterance of the manifest, in file order, each checked (module docstring).

    ``split`` keeps the lines whose ``"split"`` is that name (the others are
    not checked). ``check_silence`` decodes every clip to find silent ones;
    without it only the headers are read.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ManifestError(f"manifest {path} not found") from None
    except UnicodeDecodeError:
        raise ManifestError(f"manifest {path} is not UTF-8 text") from None
    utterances = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        record = _record(line, where)
        if split is not None and record.get("split") != split:
            continue
        utterances.append(_utterance(record, path.parent, where, number, min_seconds=min_seconds,
                                     max_seconds=max_seconds, check_silence=check_silence))
    if not utterances:
        raise ManifestError(f"manifest {path} holds no utterances" + (f" of split {split!r}" if split else ""))
    return utterances


def _record(line: str, where: str) -> dict[str, Any]:
    """The line's JSON object with string ``audio`` and non-empty ``text``."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ManifestError(f"{where} is not JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise ManifestError(f"{where} is not a JSON object with keys {', '.join(REQUIRED_KEYS)}")
    if "audio" not in record and NEMO_AUDIO in record:  # a NeMo manifest's line
        record = {"audio": record.pop(NEMO_AUDIO), **record}
    for key in REQUIRED_KEYS:
        if key not in record:
            raise ManifestError(f"{where}: missing key {key!r}")
        if not isinstance(record[key], str):
            raise ManifestError(f"{where}: {key!r} must be a string, not {type(record[key]).__name__}")
    if not record["text"].strip():
        raise ManifestError(f"{where}: empty transcript")
    if not record["audio"].strip():
        raise ManifestError(f"{where}: empty audio path")
    return record


def _utterance(record: dict[str, Any], folder: Path, where: str, number: int, *, min_seconds: float,
               max_seconds: float, check_silence: bool) -> Utterance:
    """The checked `Utterance` of a record whose audio path is relative to ``folder``."""
    audio = folder / record["audio"]  # an absolute path stays itself
    try:
        info = audio_info(audio)
        if info.samples == 0:
            raise AudioError(f"{audio} holds no samples")
        if info.seconds < min_seconds:
            raise AudioError(f"{audio} lasts {info.seconds:.3f} s, shorter than the {min_seconds:g} s minimum")
        if info.seconds > max_seconds:
            raise AudioError(f"{audio} lasts {info.seconds:.1f} s, longer than the {max_seconds:g} s limit; cut it "
                             "into shorter clips or raise the limit")
        if check_silence and is_silent(read_audio(audio, rate=info.rate)):
            raise AudioError(f"{audio} is silent (no sample above -60 dB of full scale)")
    except AudioError as error:
        raise ManifestError(f"{where}: {error}") from None
    extra = {key: value for key, value in record.items() if key not in REQUIRED_KEYS}
    return Utterance(audio=audio, text=record["text"].strip(), seconds=info.seconds, line=number, extra=extra)


@dataclass
class SpeechBatch:
    """Waveforms and transcripts padded into tensors, what a recogniser's ``loss`` reads.

    waves (B, N) float32, 0 past each length; samples (B,) the real lengths;
    targets (B, U) int64 character ids, 0 past each length; target_lengths (B,).
    """

    waves: torch.Tensor
    samples: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor

    @classmethod
    def make(cls, waves: Sequence[NDArray[np.float32]], targets: Sequence[Sequence[int]]) -> SpeechBatch:
        """Pad the waveforms and the id sequences of one batch (both in the same order)."""
        if len(waves) != len(targets) or not waves:
            raise ValueError(f"a batch needs as many transcripts as waveforms, at least one: {len(waves)}, "
                             f"{len(targets)}")
        samples = torch.tensor([len(wave) for wave in waves])
        padded = torch.zeros(len(waves), int(samples.max()))
        for b, wave in enumerate(waves):
            padded[b, : len(wave)] = torch.from_numpy(np.asarray(wave, dtype=np.float32))
        lengths = torch.tensor([len(ids) for ids in targets])
        ids = torch.zeros(len(targets), max(int(lengths.max()), 1), dtype=torch.int64)
        for b, row in enumerate(targets):
            ids[b, : len(row)] = torch.tensor(row, dtype=torch.int64)
        return cls(padded, samples, ids, lengths)


def write_manifest(path: Path, records: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``records`` (each with ``audio``, relative to ``path``'s folder, and ``text``) as JSON lines."""
    lines = [json.dumps(dict(record), ensure_ascii=False) + "\n" for record in records]
    path.write_text("".join(lines), encoding="utf-8", newline="\n")
    return path
