r"""Speech recognition (the lecture's Example IV), first part: a pyramidal BiLSTM encoder and a CTC decoder.

"Step 1: get some fixed length vectors" is `unrolled.features.FrontEnd`: a
waveform of :math:`N_b` samples becomes vectors :math:`x_1 \dots x_{T_b}`
(stacked log-mel frames). "Step 2: pass through an encoder": a pyramidal
bidirectional LSTM (Listen, Attend and Spell; Chan et al. 2016). Level 0 reads
the vectors; each level above reads pairs of its predecessor's outputs, so it
runs at half the time resolution:

.. math::
    h^0_t &= \mathrm{BiLSTM}^0(x_1 \dots x_{T})_t  &&(2H)\\
    h^j_i &= \mathrm{BiLSTM}^j\bigl([h^{j-1}_{2i};\ h^{j-1}_{2i+1}]\bigr)_i, \quad j = 1 \dots P  &&(2H)

with :math:`n_j = \lceil n_{j-1} / 2 \rceil` real steps at level j (an odd last
step is paired with zeros). "Step 3: decode", here with connectionist temporal
classification (CTC; Graves et al. 2006): at each of the :math:`S = n_P`
encoder steps a distribution over the characters and a blank (id 0),

.. math::
    p_s = \mathrm{softmax}(W\, \mathrm{dropout}(h^P_s) + b)  &&(V)

A path :math:`\pi \in \{0 .. V-1\}^S` spells the transcript
:math:`y = \mathcal{B}(\pi)` that remains after merging repeated symbols and
then removing blanks (``aa_ab_`` -> ``aab``). The loss is the negative log
probability of all paths that spell the transcript,

.. math::
    \mathcal{L} = -\frac{1}{B}\sum_b \log \sum_{\pi:\ \mathcal{B}(\pi) = y_b} \prod_{s=1}^{S_b} p_{b,s}(\pi_s)

summed by the forward algorithm (``torch.nn.functional.ctc_loss``). A
transcript of U characters needs :math:`S_b \ge U` plus one step between
repeated characters; a clip too short for its transcript is an error, not an
infinite loss. Greedy decoding takes the best symbol at each step and
applies :math:`\mathcal{B}`. Prefix beam search (`prefix_beam_search`)
keeps the K most probable transcripts so far instead of paths: for each
prefix :math:`\ell` after step s, :math:`p_b(\ell)` sums the paths that
spell :math:`\ell` and end in a blank, :math:`p_n(\ell)` those that end in
its last character; at step s + 1, with :math:`p = p_{s+1}`,

.. math::
    p_b'(\ell) &\mathrel{+}= (p_b(\ell) + p_n(\ell))\, p(\text{blank}) \\
    p_n'(\ell) &\mathrel{+}= p_n(\ell)\, p(c) \quad (c = \text{the last character of } \ell:
        \text{a repeat merges}) \\
    p_n'(\ell c) &\mathrel{+}= p_b(\ell)\, p(c) \quad (c = \text{last: only a blank parts a repeat}) \\
    p_n'(\ell c) &\mathrel{+}= (p_b(\ell) + p_n(\ell))\, p(c) \quad (c \ne \text{last})

then keeps the K prefixes of largest :math:`p_b + p_n`. With K at least the
number of prefixes it is exact: it finds the most probable transcript, not
the transcript of the most probable path.

==========  ======================  ==============================================
tensor      shape                   meaning
==========  ======================  ==============================================
waves       (B, N) float            16 kHz samples, 0 past each length
samples     (B,) int64              N_b, real samples
x           (B, T, kM)              stacked normalised log-mel frames
h           (B, S, 2H)              the top level's outputs, 0 past each length
log_probs   (B, S, V)               log p_s over blank (id 0) and the characters
targets     (B, U) int64            character ids (1..V-1), 0 past each length
==========  ======================  ==============================================
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.data.speech import SpeechBatch
from unrolled.features import FeatureConfig, FrontEnd, SpecAugmentConfig
from unrolled.recurrent import Recurrent

BLANK = 0  # CTC's blank symbol, id 0 of every `Alphabet`


class Alphabet:
    """Characters <-> ids: 0 is CTC's blank, then the characters in the order given (1, 2, ...)."""

    def __init__(self, characters: Sequence[str]) -> None:
        if any(len(ch) != 1 for ch in characters) or len(set(characters)) != len(characters):
            raise ValueError("an alphabet holds distinct single characters")
        self.characters = list(characters)
        self._ids = {ch: i for i, ch in enumerate(self.characters, start=1)}

    @classmethod
    def build(cls, texts: Iterable[str]) -> Alphabet:
        """Every character of the texts, sorted (the same texts always give the same ids)."""
        return cls(sorted({ch for text in texts for ch in text}))

    def __len__(self) -> int:
        """V: the characters and the blank."""
        return len(self.characters) + 1

    def encode(self, text: str) -> list[int]:
        """The id of each character; a ValueError names a character the alphabet lacks."""
        missing = sorted({ch for ch in text if ch not in self._ids})
        if missing:
            raise ValueError(f"the alphabet has no {', '.join(repr(ch) for ch in missing)} (text {text!r})")
        return [self._ids[ch] for ch in text]

    def decode(self, ids: Iterable[int]) -> str:
        """The characters of the ids, blanks left out."""
        return "".join(self.characters[i - 1] for i in ids if i != BLANK)


@dataclass
class SpeechConfig:
    """The recogniser's shape; saved in every checkpoint.

    vocabulary     V, the blank and the characters
    features       the front end's settings (`FeatureConfig`)
    hidden         H, units per direction of every level
    levels         P, the levels above the first, each halving the time resolution
    dropout        between levels and before the output layer
    spec_augment   SpecAugment's masks while training, None for none
    """

    vocabulary: int
    features: FeatureConfig = field(default_factory=lambda: FeatureConfig(stack=3, stride=3))
    hidden: int = 256
    levels: int = 2
    dropout: float = 0.1
    spec_augment: SpecAugmentConfig | None = field(default_factory=SpecAugmentConfig)

    def __post_init__(self) -> None:
        if isinstance(self.features, dict):
            self.features = FeatureConfig(**self.features)
        if isinstance(self.spec_augment, dict):
            self.spec_augment = SpecAugmentConfig(**self.spec_augment)
        if self.vocabulary < 2:
            raise ValueError(f"the vocabulary needs the blank and at least one character, got {self.vocabulary}")
        if self.hidden < 1 or self.levels < 0:
            raise ValueError(f"hidden must be at least 1 and levels at least 0, got {self.hidden}, {self.levels}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def pair_steps(h: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """[h_{2i}; h_{2i+1}] (B, ceil(T / 2), 2D) and lengths ceil(n / 2); an odd last step is paired with zeros."""
    batch, steps, width = h.shape
    if steps % 2:
        h = F.pad(h, (0, 0, 0, 1))  # (B, T + 1, D)
    return h.reshape(batch, -1, 2 * width), torch.div(lengths + 1, 2, rounding_mode="floor")


class PyramidEncoder(nn.Module):
    """x (B, T, I) with lengths (B,) -> h (B, S, 2H) with lengths (B,), S = ceil(T / 2^P); see the module docstring."""

    def __init__(self, input_size: int, hidden: int, levels: int, dropout: float) -> None:
        super().__init__()
        self.levels = nn.ModuleList(
            Recurrent("lstm", input_size if j == 0 else 4 * hidden, hidden, batch_first=True, bidirectional=True)
            for j in range(levels + 1))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        h, _ = self.levels[0](x, lengths=lengths)  # (B, T, 2H)
        for level in self.levels[1:]:
            paired, lengths = pair_steps(self.drop(h), lengths)  # (B, T / 2, 4H)
            h, _ = level(paired, lengths=lengths)  # (B, T / 2, 2H)
        return h, lengths


class CTCRecogniser(nn.Module):
    """Front end, pyramidal BiLSTM, CTC output layer.

    Trainer: `loss(batch)` with ``batch.waves`` (B, N), ``batch.samples`` (B,),
    ``batch.targets`` (B, U) and ``batch.target_lengths`` (B,). Users:
    `greedy(waves, samples)` -> the best path's ids per utterance.
    """

    def __init__(self, config: SpeechConfig) -> None:
        super().__init__()
        self.config = config
        self.front = FrontEnd(config.features)
        self.encoder = PyramidEncoder(config.features.size, config.hidden, config.levels, config.dropout)
        self.drop = nn.Dropout(config.dropout)
        self.output = nn.Linear(2 * config.hidden, config.vocabulary)  # W, b

    def forward(self, waves: Tensor, samples: Tensor, *,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """log p (B, S, V) and the encoder lengths S_b (B,); SpecAugment while training if configured."""
        augment = self.config.spec_augment if self.training else None
        x, frames = self.front(waves, samples, augment=augment, generator=generator)  # (B, T, kM), (B,)
        h, steps = self.encoder(x, frames)  # (B, S, 2H), (B,)
        return F.log_softmax(self.output(self.drop(h)), dim=-1), steps  # (B, S, V)

    def loss(self, batch: SpeechBatch) -> tuple[Tensor, dict[str, float]]:
        """CTC's negative log-likelihood averaged over utterances; metrics: per character, and the characters."""
        log_probs, steps = self(batch.waves, batch.samples)  # (B, S, V), (B,)
        loss = ctc_loss(log_probs, steps, batch.targets, batch.target_lengths)
        characters = int(batch.target_lengths.sum())
        return loss, {"characters": characters, "loss_per_char": float(loss.detach()) * len(steps) / max(characters, 1)}

    def greedy(self, waves: Tensor, samples: Tensor) -> list[list[int]]:
        """The best path of each utterance with repeats merged and blanks removed; eval mode, no gradients."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                log_probs, steps = self(waves, samples)
        finally:
            self.train(was_training)
        return greedy_decode(log_probs, steps)


def needed_steps(targets: Tensor, target_lengths: Tensor) -> Tensor:
    """(B,): the fewest steps CTC needs for each transcript: U plus one blank between equal neighbours."""
    same = (targets[:, 1:] == targets[:, :-1]) & (torch.arange(1, targets.shape[1]) < target_lengths[:, None])
    return target_lengths + same.sum(dim=1)


def ctc_loss(log_probs: Tensor, steps: Tensor, targets: Tensor, target_lengths: Tensor) -> Tensor:
    """The mean over utterances of -log p(y | x), as in the module docstring; a ValueError if a clip is too short."""
    short = needed_steps(targets.cpu(), target_lengths.cpu()) > steps.cpu()
    if bool(short.any()):
        b = int(short.nonzero()[0])
        raise ValueError(f"utterance {b} of the batch has {int(steps[b])} encoder steps, too few for its "
                         f"{int(target_lengths[b])} characters; use less subsampling (stride, levels) or drop it")
    per_utterance = F.ctc_loss(log_probs.transpose(0, 1), targets, steps, target_lengths, blank=BLANK,
                               reduction="none")  # (B,)
    return per_utterance.mean()


def prefix_beam_search(log_probs: Tensor, beam: int) -> list[tuple[list[int], float]]:
    """The ``beam`` most probable transcripts of one utterance's log p (S, V), best first, with their log p(y | x).

    As in the module docstring, in log space; ties broken by the prefix, so
    the result does not depend on dictionary order.
    """
    table = log_probs.detach().to(torch.float64).cpu().tolist()  # (S, V)
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}  # prefix -> (log p_b, log p_n)
    for row in table:
        grown: dict[tuple[int, ...], list[float]] = {}
        for prefix, (blank, last) in beams.items():
            _extend(grown, prefix, blank=_logsum(blank, last) + row[BLANK])
            for symbol in range(1, len(row)):
                if prefix and symbol == prefix[-1]:
                    _extend(grown, prefix, last=last + row[symbol])  # the repeat merges into the prefix
                    _extend(grown, (*prefix, symbol), last=blank + row[symbol])  # a blank parted them
                else:
                    _extend(grown, (*prefix, symbol), last=_logsum(blank, last) + row[symbol])
        ranked = sorted(grown.items(), key=lambda item: (-_logsum(*item[1]), item[0]))[:beam]
        beams = {prefix: (scores[0], scores[1]) for prefix, scores in ranked}
    return [(list(prefix), _logsum(*scores)) for prefix, scores in beams.items()]


def _extend(grown: dict[tuple[int, ...], list[float]], prefix: tuple[int, ...], *, blank: float = -math.inf,
            last: float = -math.inf) -> None:
    """Add probability (log) to a prefix's blank-ending and character-ending sums."""
    scores = grown.setdefault(prefix, [-math.inf, -math.inf])
    scores[0], scores[1] = _logsum(scores[0], blank), _logsum(scores[1], last)


def _logsum(a: float, b: float) -> float:
    """log(e^a + e^b), exact at -inf."""
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    top = max(a, b)
    return top + math.log1p(math.exp(-abs(a - b)))


def greedy_decode(log_probs: Tensor, steps: Tensor) -> list[list[int]]:
    """B(argmax path) of each utterance: repeats merged, then blanks removed."""
    best = log_probs.argmax(dim=-1).cpu()  # (B, S)
    decoded = []
    for b, length in enumerate(steps.tolist()):
        path = best[b, :length].tolist()
        decoded.append([s for t, s in enumerate(path) if s != BLANK and (t == 0 or s != path[t - 1])])
    return decoded
