"""What the predictors of the applications return: plain dataclasses, without torch.

The applications (`unrolled.apps.lm`, `classify`, `tag`, `seq2seq`, `speech`, ...) and the
runtime that runs their exported models without torch (`unrolled.runtime`)
return the same classes, so a program reads either's results the same way;
`unrolled.apps.base.to_json` writes them as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Caption", "CaptionedImage", "FrameLabels", "Label", "Reading", "Sample", "Tagged", "Transcript",
           "Translation", "Translations"]

@dataclass
class Sample:
    """A generated text: its prime, the prime and continuation together, and which sample of the prime it is."""

    prime: str
    text: str
    number: int


@dataclass
class Label:
    """A predicted label, its probability, and every label's."""

    text: str
    label: str
    probability: float
    probabilities: dict[str, float]


@dataclass
class Tagged:
    """A sentence's tokens and the tag of each."""

    tokens: list[str]
    tags: list[str]


@dataclass
class Translation:
    """One output for one source: its text and tokens, its scores, and optionally its attention.

    score: the sum of the token log-probabilities (``</s>`` included); normalised:
    score / lp (the length penalty); both NaN for a drawn output (`Translator.sample`);
    finished: it ended with ``</s>``; attention: (target tokens + finished, source
    tokens) weights on the CPU, when asked and the model attends.
    """

    text: str
    tokens: list[str]
    score: float
    normalised: float
    finished: bool
    source_tokens: list[str]
    attention: Any = field(default=None, repr=False)


@dataclass
class Translations:
    """The outputs for one source text, best first (one drawn output with --sample)."""

    source: str
    outputs: list[Translation]


@dataclass
class Transcript:
    """One transcript: the audio file it is of (None for a waveform given as such), its text, its log-probability
    (beam search; None for greedy), the decoder used and the mel warp it was decoded at (the warp search's choice;
    of the longest piece for audio transcribed in pieces)."""

    audio: str | None
    text: str
    score: float | None
    decoder: str
    warp: float = 1.0


@dataclass
class Caption:
    """One caption of one image: its text, tokens and scores, and optionally its attention.

    attention: (tokens + finished, h', w') weights over the encoder's grid, when asked and the model attends.
    """

    text: str
    tokens: list[str]
    score: float
    normalised: float
    finished: bool
    attention: Any = field(default=None, repr=False)


@dataclass
class CaptionedImage:
    """The captions of one image file, best first."""

    image: str
    captions: list[Caption]


@dataclass
class Reading:
    """The digits read from one image file ("3 1 4"), and DRAM's glimpse centres as (y, x) in [-1, 1]."""

    image: str
    digits: str
    glimpses: list[list[float]] | None


@dataclass
class FrameLabels:
    """A clip's name and the label of each of its frames (`UNLABELLED` for a first frame training never labelled)."""

    clip: str
    labels: list[str]
