r"""Audio files in, 16 kHz mono waveforms out, without torch: what training, transcription and the runtime share.

Reading (soundfile, so WAV, FLAC, OGG and the other formats of libsndfile):
a file of :math:`C` channels at rate :math:`r_0` becomes one channel, the
mean of the channels, resampled to :math:`r` = 16 kHz with soxr (the SoX
resampler, "high quality": a linear-phase low-pass that keeps the band below
the lower Nyquist frequency and removes what would alias). Samples are
float32 in [-1, 1]. Errors are one line and name the file: `AudioError`.

Long audio (`cut_points`, `split_pieces`) is cut into pieces of at most a
chunk's length, each ending at the quietest 10 ms of its last quarter; the
pieces' transcripts are joined with a space (`join_pieces`). A speller writes
at most `character_limit` characters for a clip.

This module imports numpy (and soundfile, soxr when used), never torch, so
`unrolled.runtime` reads audio as the training side does; `unrolled.data.audio`
adds the perturbations of training.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from unrolled.extras import lazy

SAMPLE_RATE = 16_000  # Hz: every waveform reaches the front end at this rate (`unrolled.features`)
MIN_SECONDS = 0.1  # 10 frames of the front end; a shorter clip holds no word
CHUNK_SECONDS = 20.0  # transcription cuts longer audio into pieces of at most this length
DECODE_BATCH = 16  # clips transcribed at once
LENGTH_PENALTY = 1.0  # GNMT's alpha for the attention beam: with 0 the beam prefers transcripts cut short (measured:
# beam 8 on 150 spoken-digits test clips, CER 28.4% with alpha 0 and 5.4% with 1, against 5.5% greedy)
CHARS_PER_SECOND = 40  # the attention decoder stops after this many characters per second of audio (and 10 more)

if TYPE_CHECKING:
    import soundfile
    import soxr
else:
    soundfile = lazy("soundfile", "reading audio")
    soxr = lazy("soxr", "resampling audio")


Wave = NDArray[np.float32]
SILENCE_PEAK = 10 ** (-60 / 20)  # a clip whose loudest sample is below -60 dB of full scale is silent


class AudioError(ValueError):
    """A file that is missing, is not audio, or is not usable as speech; the message is one line."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says: its rate, channels and length in samples per channel."""

    rate: int
    channels: int
    samples: int

    @property
    def seconds(self) -> float:
        return self.samples / self.rate


def audio_info(path: Path | str) -> AudioInfo:
    """The header of an audio file (nothing decoded); an `AudioError` if it is missing or not audio."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file {path} not found")
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError) as error:
        raise AudioError(f"{path} is not audio that soundfile can read ({_first_line(error)})") from None
    return AudioInfo(rate=int(info.samplerate), channels=int(info.channels), samples=int(info.frames))


def read_audio(path: Path | str, *, rate: int = SAMPLE_RATE) -> Wave:
    """float32 (N,): the file mixed down to mono and resampled to ``rate``; an `AudioError` if unreadable or empty."""
    path = Path(path)
    audio_info(path)  # missing file, not audio: one line each
    try:
        samples, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (N, C)
    except (soundfile.LibsndfileError, RuntimeError) as error:
        raise AudioError(f"{path} could not be decoded ({_first_line(error)})") from None
    if samples.shape[0] == 0:
        raise AudioError(f"{path} holds no samples")
    return resample(samples.mean(axis=1), file_rate, rate)


def resample(wave: NDArray[np.floating], from_rate: float, to_rate: float) -> Wave:
    """float32: ``wave`` (N,) at ``from_rate`` resampled to ``to_rate`` with soxr (high quality)."""
    if from_rate == to_rate:
        return np.ascontiguousarray(wave, dtype=np.float32)
    return np.asarray(soxr.resample(np.asarray(wave, dtype=np.float32), from_rate, to_rate, quality="HQ"),
                      dtype=np.float32)


def is_silent(wave: NDArray[np.floating]) -> bool:
    """True when no sample reaches `SILENCE_PEAK` (-60 dB of full scale)."""
    return wave.size == 0 or float(np.max(np.abs(wave))) < SILENCE_PEAK


def trim_silence(wave: Wave, *, margin: int, threshold: float = SILENCE_PEAK) -> Wave:
    """``wave`` without what lies more than ``margin`` samples before its first or after its last sample at or
    above ``threshold`` (-60 dB of full scale); a silent wave is returned whole."""
    loud = np.flatnonzero(np.abs(wave) >= threshold)
    if loud.size == 0:
        return wave
    return wave[max(int(loud[0]) - margin, 0) : int(loud[-1]) + 1 + margin]


def write_wav(path: Path | str, wave: NDArray[np.floating], rate: int = SAMPLE_RATE) -> Path:
    """Write ``wave`` (N,) as 16-bit PCM WAV, samples clipped to [-1, 1]; returns the path."""
    soundfile.write(str(path), np.clip(wave, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
    return Path(path)


def _first_line(error: BaseException) -> str:
    """The reason in soundfile's message, without its "Error opening '<path>': " prefix."""
    line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return line.rsplit("': ", 1)[-1]


def cut_points(wave: NDArray[np.floating], chunk_seconds: float, rate: int = SAMPLE_RATE) -> list[int]:
    """Where to cut a long waveform: pieces of at most ``chunk_seconds``, each ending at the quietest 10 ms (lowest
    mean square) of its last quarter; [] when it is not longer than one chunk."""
    longest = int(chunk_seconds * rate)
    if longest < rate // 10:
        raise ValueError(f"chunks must last at least 0.1 s, got {chunk_seconds} s")
    frame = rate // 100
    cuts, start = [], 0
    while len(wave) - start > longest:
        low = start + longest - longest // 4
        window = np.asarray(wave[low : start + longest], dtype=np.float64)
        usable = len(window) // frame * frame
        energy = (window[:usable].reshape(-1, frame) ** 2).mean(axis=1)
        cut = low + int(np.argmin(energy)) * frame + frame // 2
        cuts.append(cut)
        start = cut
    return cuts


def split_pieces(waves: Sequence[NDArray[np.floating]], chunk_seconds: float) -> tuple[list[Wave], list[list[int]]]:
    """(the pieces of every waveform, cut at `cut_points`, float32; the indices of each waveform's pieces, in order).

    A ValueError names a waveform with no samples."""
    pieces: list[Wave] = []
    owned: list[list[int]] = []
    for n, wave in enumerate(waves):
        wave = np.asarray(wave, dtype=np.float32)
        if len(wave) == 0:
            raise ValueError(f"waveform {n} holds no samples")
        bounds = [0, *cut_points(wave, chunk_seconds), len(wave)]
        owned.append(list(range(len(pieces), len(pieces) + len(bounds) - 1)))
        pieces.extend(wave[start:end] for start, end in itertools.pairwise(bounds))
    return pieces, owned


def join_pieces(parts: Sequence[tuple[str, float | None]]) -> tuple[str, float | None]:
    """One waveform's (transcript, score) from its pieces': the texts joined by single spaces; the scores summed,
    None if any is None (greedy decoding)."""
    text = " ".join(" ".join(t for t, _ in parts if t).split())
    scores = [score for _, score in parts]
    return text, None if any(score is None for score in scores) else float(sum(s for s in scores if s is not None))


def character_limit(samples: int) -> int:
    """The most characters (and the end) the attention decoder writes for a clip of `samples` samples."""
    return math.ceil(samples / SAMPLE_RATE * CHARS_PER_SECOND) + 10


@dataclass
class Clip:
    """An audio file to transcribe: its name as given, and its 16 kHz mono waveform."""

    name: str
    wave: NDArray[np.float32]


def read_clips(paths: Sequence[str]) -> list[Clip]:
    """The waveforms of audio files (any format soundfile reads, any rate and channel count), each long enough for a
    word and not silent; one-line errors otherwise."""
    if not paths:
        raise ValueError("no audio: give the audio files to transcribe")
    clips = []
    for name in paths:
        try:
            wave = read_audio(Path(name))
        except AudioError as error:
            raise ValueError(str(error)) from None
        if len(wave) < MIN_SECONDS * SAMPLE_RATE:
            raise ValueError(f"{name} lasts {len(wave) / SAMPLE_RATE:.3f} s, shorter than the {MIN_SECONDS:g} s a "
                             "word needs")
        if is_silent(wave):
            raise ValueError(f"{name} is silent (no sample above -60 dB of full scale): nothing to transcribe")
        clips.append(Clip(name, wave))
    return clips
