r"""Speech recognition (the lecture's Example IV): a pyramidal BiLSTM encoder, then CTC, attention, or both.

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
infinite loss. Decoding, greedy or by prefix beam search, is `unrolled.decoding.ctc`'s.

The attention decoder (LAS; Chan et al. 2016) spells the transcript one
character at a time, id 0 standing for both ``<s>`` (its first input) and
``</s>`` (the output that ends it). Step t = 1 .. U + 1 with :math:`y_0` =
``<s>``, :math:`c_0 = 0`, :math:`\alpha_0 = 0`:

.. math::
    s_t &= \mathrm{LSTM}([E\,y_{t-1};\ c_{t-1}],\ s_{t-1})  &&(D)\\
    e_{t,j} &= w^\top \tanh(W_q s_t + W_k h_j + W_f f_{t,j} + b),
        \quad f_t = F * \alpha_{t-1}  &&\text{location-aware (Chorowski et al. 2015); content: no } W_f f\\
    \alpha_t &= \mathrm{softmax}_{j \le S_b}(e_t), \quad c_t = \textstyle\sum_j \alpha_{t,j} h_j  &&(S), (2H)\\
    p(y_t \mid y_{<t}, x) &= \mathrm{softmax}(W_o\, \mathrm{dropout}(\tanh(W_c [s_t; c_t] + b_c)) + b_o)  &&(V)

trained by teacher forcing on the label-smoothed cross-entropy of
:math:`y_1 .. y_U` and ``</s>``, per character, and decoded by
`unrolled.decoding`'s greedy or beam search. F holds K filters of r steps
that see where the last step looked, so the next step can move on from
there. Joint training (Kim et al. 2017) shares the encoder between both
heads: :math:`\mathcal{L} = \lambda \mathcal{L}_{CTC} + (1 - \lambda)
\mathcal{L}_{att}`, both per character (the CTC loss above is divided by the
batch's characters instead of its utterances). A joint run decodes with
either head, or with both (`unrolled.decoding.ctc.joint_scores`).

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

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.data.speech import SpeechBatch
from unrolled.decoding import index_state
from unrolled.decoding.ctc import BLANK, greedy_decode
from unrolled.features import FeatureConfig, FrontEnd, SpecAugmentConfig
from unrolled.recurrent import Recurrent, at_least_float32


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


DECODERS = ("ctc", "attention", "joint")
ATTENTIONS = ("content", "location")


@dataclass
class SpeechConfig:
    """The recogniser's shape; saved in every checkpoint.

    vocabulary       V, the blank (the attention decoder's end symbol) and the characters
    features         the front end's settings (`FeatureConfig`)
    hidden           H, units per direction of every encoder level
    layers           stacked BiLSTM layers at level 0 (full frame rate)
    levels           P, the levels above, each halving the time resolution (the defaults suit CTC: 33 steps a
                     second; LAS reads fewer, e.g. layers 1 and levels 2)
    dropout          between levels and layers, and before the output layers
    spec_augment     SpecAugment's masks (and the band warp, 0.15 by default) while training, None for none
    decoder          "ctc", "attention" or "joint" (both heads, trained together)
    attention        "content" (additive) or "location" (location-aware, Chorowski et al. 2015)
    decoder_hidden   D, the attention decoder's LSTM units; embedding E, its character embedding size
    filters, width   the location features: K convolution filters of r (odd) steps over the last weights
    ctc_weight       lambda, CTC's share of the joint loss
    label_smoothing  epsilon of the attention decoder's cross-entropy
    """

    vocabulary: int
    features: FeatureConfig = field(default_factory=lambda: FeatureConfig(stack=3, stride=3))
    hidden: int = 192
    layers: int = 2
    levels: int = 0
    dropout: float = 0.1
    spec_augment: SpecAugmentConfig | None = field(default_factory=lambda: SpecAugmentConfig(band_warp=0.15))
    decoder: str = "ctc"
    attention: str = "location"
    decoder_hidden: int = 256
    embedding: int = 64
    filters: int = 10
    width: int = 15
    ctc_weight: float = 0.3
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.features, dict):
            self.features = FeatureConfig(**self.features)
        if isinstance(self.spec_augment, dict):
            self.spec_augment = SpecAugmentConfig(**self.spec_augment)
        if self.vocabulary < 2:
            raise ValueError(f"the vocabulary needs the blank and at least one character, got {self.vocabulary}")
        if self.hidden < 1 or self.layers < 1 or self.levels < 0:
            raise ValueError(f"hidden and layers must be at least 1 and levels at least 0, got {self.hidden}, "
                             f"{self.layers}, {self.levels}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.decoder not in DECODERS:
            raise ValueError(f"unknown decoder {self.decoder!r}: choose one of {', '.join(DECODERS)}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {self.attention!r}: choose one of {', '.join(ATTENTIONS)}")
        if self.decoder_hidden < 1 or self.embedding < 1 or self.filters < 1 or self.width < 1 or self.width % 2 == 0:
            raise ValueError("decoder_hidden, embedding and filters must be at least 1 and width odd")
        if not 0.0 < self.ctc_weight < 1.0 or not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"ctc_weight must be in (0, 1) and label_smoothing in [0, 1), got {self.ctc_weight}, "
                             f"{self.label_smoothing}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def uses_ctc(self) -> bool:
        return self.decoder in ("ctc", "joint")

    @property
    def uses_attention(self) -> bool:
        return self.decoder in ("attention", "joint")

    def encoder_steps(self, samples: Tensor) -> Tensor:
        """S_b (int64, any shape): the encoder steps of utterances of ``samples`` samples."""
        frames = self.features.frames(samples)
        steps = torch.div(frames - 1, self.features.stride, rounding_mode="floor") + 1  # stack_frames' count
        for _ in range(self.levels):
            steps = torch.div(steps + 1, 2, rounding_mode="floor")
        return steps


def pair_steps(h: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """[h_{2i}; h_{2i+1}] (B, ceil(T / 2), 2D) and lengths ceil(n / 2); an odd last step is paired with zeros."""
    batch, steps, width = h.shape
    h = F.pad(h, (0, 0, 0, 1))[:, : 2 * ((steps + 1) // 2)]  # (B, 2 ceil(T / 2), D): no branch, so it exports
    return h.reshape(batch, -1, 2 * width), torch.div(lengths + 1, 2, rounding_mode="floor")


class PyramidEncoder(nn.Module):
    """x (B, T, I) with lengths (B,) -> h (B, S, 2H) with lengths (B,), S = ceil(T / 2^P); see the module docstring.

    Level 0 is ``layers`` stacked BiLSTM layers; each of the P levels above is one BiLSTM over paired steps.
    """

    def __init__(self, input_size: int, hidden: int, levels: int, dropout: float, layers: int = 1) -> None:
        super().__init__()
        bottom = Recurrent("lstm", input_size, hidden, layers, batch_first=True, bidirectional=True, dropout=dropout)
        self.levels = nn.ModuleList([bottom, *(
            Recurrent("lstm", 4 * hidden, hidden, batch_first=True, bidirectional=True) for _ in range(levels))])
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        h, _ = self.levels[0](at_least_float32(x), lengths=lengths)  # (B, T, 2H); bf16 training: float32 in
        for level in self.levels[1:]:
            paired, lengths = pair_steps(self.drop(h), lengths)  # (B, T / 2, 4H)
            h, _ = level(at_least_float32(paired), lengths=lengths)  # (B, T / 2, 2H)
        return h, lengths


class LocationAttention(nn.Module):
    r"""Additive attention over the encoder states, with location features when ``location`` (module docstring).

    e_{t,j} = w^T tanh(W_q s_t + W_k h_j + W_f f_{t,j} + b),  f_t = F * alpha_{t-1}  (K filters of width r)
    alpha_t = softmax over the real positions j <= S_b of e_t;  c_t = sum_j alpha_{t,j} h_j
    """

    def __init__(self, query_size: int, memory_size: int, units: int, *, location: bool, filters: int,
                 width: int) -> None:
        super().__init__()
        self.query_layer = nn.Linear(query_size, units, bias=False)  # W_q
        self.memory_layer = nn.Linear(memory_size, units)  # W_k, b
        self.v = nn.Linear(units, 1, bias=False)  # w
        self.conv = nn.Conv1d(1, filters, width, padding=width // 2, bias=False) if location else None  # F
        self.location_layer = nn.Linear(filters, units, bias=False) if location else None  # W_f

    def keys(self, memory: Tensor) -> Tensor:
        """W_k h_j + b (N, S, A), computed once per utterance."""
        return self.memory_layer(memory)

    def forward(self, query: Tensor, memory: Tensor, keys: Tensor, mask: Tensor,
                previous: Tensor) -> tuple[Tensor, Tensor]:
        """query s_t (N, D), memory h (N, S, 2H), keys (N, S, A), mask (N, S), alpha_{t-1} (N, S) -> c_t, alpha_t."""
        energy = keys + self.query_layer(query).unsqueeze(1)  # (N, S, A)
        if self.conv is not None and self.location_layer is not None:
            f = self.conv(previous.unsqueeze(1).to(query.dtype)).transpose(1, 2)  # (N, S, K)
            energy = energy + self.location_layer(f)
        scores = self.v(torch.tanh(energy)).squeeze(-1).masked_fill(~mask, float("-inf"))  # (N, S)
        weights = torch.softmax(at_least_float32(scores), dim=-1)  # (N, S)
        context = (weights.to(memory.dtype).unsqueeze(1) @ memory).squeeze(1)  # (N, 2H)
        return context, weights


class SpeechState(NamedTuple):
    """The attention decoder's state between steps, hypotheses along dim 0 of every tensor.

    rnn: the decoder LSTM's (h, c), each (N, D). context: c_{t-1} (N, 2H). weights: alpha_{t-1} (N, S).
    memory, keys, mask: the encoder states (N, S, 2H), their keys (N, S, A) and real positions (N, S).
    """

    rnn: tuple[Tensor, Tensor]
    context: Tensor
    weights: Tensor
    memory: Tensor
    keys: Tensor
    mask: Tensor


class Recogniser(nn.Module):
    """Front end, pyramidal BiLSTM, then a CTC output layer, an attention decoder, or both (module docstring).

    Trainer: `loss(batch)` with a `SpeechBatch`. CTC: `ctc_log_probs(waves,
    samples)`, `greedy(waves, samples)`. Attention (`unrolled.decoding`):
    `prime(waves, samples)`, `step(tokens, state)`, `reorder(state, index)`;
    a step's attention weights are ``state.weights``.
    """

    def __init__(self, config: SpeechConfig) -> None:
        super().__init__()
        self.config = c = config
        self.front = FrontEnd(c.features)
        self.encoder = PyramidEncoder(c.features.size, c.hidden, c.levels, c.dropout, c.layers)
        self.drop = nn.Dropout(c.dropout)
        memory = 2 * c.hidden
        self.output = nn.Linear(memory, c.vocabulary) if c.uses_ctc else None  # W, b of CTC
        if c.uses_attention:
            self.embedding = nn.Embedding(c.vocabulary, c.embedding)  # E; id 0 is <s> as input
            self.decoder = Recurrent("lstm", c.embedding + memory, c.decoder_hidden, batch_first=True)
            self.attention = LocationAttention(c.decoder_hidden, memory, c.decoder_hidden,
                                               location=c.attention == "location", filters=c.filters,
                                               width=c.width)
            self.combine = nn.Linear(c.decoder_hidden + memory, c.decoder_hidden)  # W_c
            self.generator = nn.Linear(c.decoder_hidden, c.vocabulary)  # W_o; id 0 is </s> as output

    # ------------------------------------------------------------------ encoder and CTC

    def encode(self, waves: Tensor, samples: Tensor, *, generator: torch.Generator | None = None,
               warp: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """h (B, S, 2H) and S_b (B,); SpecAugment while training if configured. ``warp`` (B,): each utterance's
        mel bands read at alpha_b m first (`unrolled.features.FrontEnd`)."""
        augment = self.config.spec_augment if self.training else None
        x, frames = self.front(waves, samples, augment=augment, generator=generator, warp=warp)  # (B, T, kM), (B,)
        return self.encoder(x, frames.to(x.device))

    def ctc_head(self, h: Tensor) -> Tensor:
        """log p_s (B, S, V) of the CTC output layer."""
        if self.output is None:
            raise ValueError("this recogniser has no CTC output layer (decoder 'attention'); decode with attention")
        return F.log_softmax(at_least_float32(self.output(self.drop(h))), dim=-1)

    def forward(self, waves: Tensor, samples: Tensor, *, generator: torch.Generator | None = None,
                warp: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """CTC's log p (B, S, V) and the encoder lengths S_b (B,)."""
        h, steps = self.encode(waves, samples, generator=generator, warp=warp)
        return self.ctc_head(h), steps

    def greedy(self, waves: Tensor, samples: Tensor) -> list[list[int]]:
        """CTC's best path of each utterance with repeats merged and blanks removed; eval mode, no gradients."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                log_probs, steps = self(waves, samples)
        finally:
            self.train(was_training)
        return greedy_decode(log_probs, steps)

    # ------------------------------------------------------------------ the attention decoder

    def start(self, h: Tensor, steps: Tensor) -> SpeechState:
        """The decoder's state before its first step: zeros, alpha_0 = 0, and the memory with its keys and mask."""
        batch, length, _ = h.shape
        zeros = h.new_zeros(batch, self.config.decoder_hidden, dtype=torch.float32)
        mask = torch.arange(length, device=h.device) < steps.to(h.device).unsqueeze(1)  # (B, S)
        return SpeechState((zeros, zeros.clone()), h.new_zeros(batch, h.shape[-1]),
                           h.new_zeros(batch, length, dtype=torch.float32), h, self.attention.keys(h), mask)

    def decode_step(self, tokens: Tensor, state: SpeechState) -> tuple[Tensor, SpeechState]:
        """One step for N hypotheses: y_{t-1} (N,) -> logits (N, V) and the next state (module docstring)."""
        x = torch.cat([self.drop(self.embedding(tokens)), state.context], dim=-1)  # (N, E + 2H)
        lstm = self.decoder.cell(0)  # a plain LSTM: torch's one-step kernel computes its function (tested), faster
        s, c = torch.lstm_cell(at_least_float32(x), state.rnn, lstm.weight_ih, lstm.weight_hh, lstm.bias_ih,
                               lstm.bias_hh)  # (N, D)
        context, weights = self.attention(s, state.memory, state.keys, state.mask, state.weights)  # (N, 2H), (N, S)
        o = torch.tanh(self.combine(torch.cat([s, context.to(s.dtype)], dim=-1)))  # (N, D)
        logits = self.generator(self.drop(o))  # (N, V)
        rnn = (at_least_float32(s), at_least_float32(c))
        return logits, SpeechState(rnn, at_least_float32(context), weights, state.memory, state.keys, state.mask)

    def teacher_forced(self, h: Tensor, steps: Tensor, targets: Tensor, target_lengths: Tensor) -> Tensor:
        """Logits (B, U + 1, V) for the inputs <s> y_1 .. y_U (the true previous character at every step)."""
        inputs = F.pad(targets, (1, 0), value=BLANK)  # (B, U + 1): <s> = id 0, then y; padding past U_b is 0 too
        state = self.start(h, steps)
        logits = []
        for t in range(inputs.shape[1]):
            step_logits, state = self.decode_step(inputs[:, t], state)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)

    def attention_loss(self, h: Tensor, steps: Tensor, targets: Tensor, target_lengths: Tensor) -> tuple[Tensor, int]:
        """The label-smoothed cross-entropy per output character (y_1 .. y_U and </s>), and how many there were."""
        logits = self.teacher_forced(h, steps, targets, target_lengths)  # (B, U + 1, V)
        gold = F.pad(targets, (0, 1), value=BLANK)  # (B, U + 1): y then </s> = id 0
        real = torch.arange(gold.shape[1], device=gold.device) <= target_lengths.to(gold.device).unsqueeze(1)
        gold = gold.masked_fill(~real, -100)
        count = int(real.sum())
        loss = F.cross_entropy(at_least_float32(logits).flatten(0, 1), gold.flatten(), ignore_index=-100,
                               reduction="sum", label_smoothing=self.config.label_smoothing)
        return loss / max(count, 1), count

    def prime(self, waves: Tensor, samples: Tensor, *, warp: Tensor | None = None) -> tuple[Tensor, SpeechState]:
        """Encode and take the first decoder step from <s>: log p(y_1) (B, V) and the state."""
        h, steps = self.encode(waves, samples, warp=warp)
        state = self.start(h, steps)
        return self.step(torch.full((h.shape[0],), BLANK, dtype=torch.long, device=h.device), state)

    def step(self, tokens: Tensor, state: SpeechState) -> tuple[Tensor, SpeechState]:
        """`unrolled.decoding`'s step: tokens (N,) -> log p (N, V) of the next character (id 0: </s>), new state."""
        logits, state = self.decode_step(tokens, state)
        return F.log_softmax(at_least_float32(logits), dim=-1), state

    def reorder(self, state: SpeechState, index: Tensor) -> SpeechState:
        """The state of hypotheses `index` (M,): every tensor along dim 0 (the memory is copied per hypothesis)."""
        return index_state(state, index, 0)

    # ------------------------------------------------------------------ training

    def loss(self, batch: SpeechBatch) -> tuple[Tensor, dict[str, float]]:
        """CTC's negative log-likelihood, the attention decoder's cross-entropy, or lambda CTC + (1 - lambda)
        attention (joint), each per transcript character; metrics: characters and each head's loss."""
        h, steps = self.encode(batch.waves, batch.samples)  # (B, S, 2H), (B,)
        characters = int(batch.target_lengths.sum())
        metrics: dict[str, float] = {"characters": characters}
        total = h.new_zeros((), dtype=torch.float32)
        if self.config.uses_ctc:
            ctc = ctc_loss(self.ctc_head(h), steps, batch.targets, batch.target_lengths) * len(steps) / max(
                characters, 1)  # per character, as the attention decoder's
            metrics["ctc_per_char"] = float(ctc.detach())
            total = total + (self.config.ctc_weight if self.config.uses_attention else 1.0) * ctc
        if self.config.uses_attention:
            attention, _ = self.attention_loss(h, steps, batch.targets, batch.target_lengths)
            metrics["attention_per_char"] = float(attention.detach())
            total = total + ((1 - self.config.ctc_weight) if self.config.uses_ctc else 1.0) * attention
        metrics["loss_per_char"] = float(total.detach())  # the loss trained: joint runs log the mix, not CTC's share
        return total, metrics


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
