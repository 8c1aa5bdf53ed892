r"""The trained speech recogniser as a `Predictor`: waveforms in, transcripts out; manifests scored.

A run folder's ``config.json`` holds the model config (`SpeechConfig`), the
alphabet and the split (None when the manifest brought its own). `Transcriber`
loads a run and transcribes waveforms (greedy or beam search, with whichever
head the run has) or scores a manifest: character and word error rates
(`unrolled.metrics.error_rates`, jiwer) and string accuracy, for greedy decoding and the beam side by side.

Error rates, with the Levenshtein distance d between hypothesis and reference
over characters (CER) or words (WER), summed over the utterances:

.. math::
    \mathrm{CER} = \frac{\sum_n d_{char}(\hat y_n, y_n)}{\sum_n |y_n|_{char}}, \qquad
    \mathrm{WER} = \frac{\sum_n d_{word}(\hat y_n, y_n)}{\sum_n |y_n|_{word}}

Long audio: a waveform longer than ``chunk_seconds`` is cut into pieces of at
most that length, each ending at the quietest 10 ms of its last quarter (a
pause, where there is one), and the pieces' transcripts are joined with a
space; memory then stays bounded by the chunk, whatever the file's length.

Warp search (``warps``, test-time vocal tract length normalisation, after
Lee and Rose 1996, who pick each speaker's frequency warp by the model's
likelihood): every utterance is encoded with its mel bands warped by each
factor :math:`\alpha` of a grid A (`unrolled.features.FrontEnd`, the band
warp of training with a chosen factor), scored by the model's confidence,
and decoded at the best one. With a CTC head the confidence is its best
path's log-probability per encoder step,

.. math::
    c_b(\alpha) = \frac{1}{n_b} \sum_{s<S_b} \max_k \log p_s(k \mid x_b, \alpha), \quad n_b = S_b, \qquad
    \alpha^*_b = \arg\max_{\alpha \in A} c_b(\alpha)

and a run with a speller alone sums instead over its :math:`n_b` greedy
steps, :math:`\max_k \log p(y_u = k \mid \hat y_{<u}, x_b, \alpha)`, up to
and with its end token. Ties go to the factor nearest 1. With ``groups``
(one speaker's clips, say) every clip of a group G takes the group's factor,
:math:`\arg\max_\alpha \sum_{b \in G} n_b(\alpha) c_b(\alpha) / \sum_{b \in G} n_b(\alpha)`
(the confidence per step over all of G's steps; a speller's :math:`n_b`
depends on the factor, CTC's does not). A clip's A warped copies share
one batch, so the search costs A times the encoder's work (and, for a
speller alone, a greedy decode) in one call. `WARP_GRID` is the grid the
benchmarks use: up to 20% either way.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from unrolled import decoding
from unrolled.apps.base import SPLITS, EvalOptions, PredictOptions, Predictor
from unrolled.apps.results import Transcript
from unrolled.apps.speech_data import Clip, as_float
from unrolled.data.audio import read_audio
from unrolled.data.speech import SpeechBatch, Utterance
from unrolled.decoding.ctc import BLANK, greedy_decode, joint_scores, prefix_beam_search
from unrolled.decoding.ngram import CharNgram, Fusion, LanguageModelFusion, read_texts
from unrolled.decoding.words import WordConstraint, vocabulary_words
from unrolled.features import SAMPLE_RATE
from unrolled.metrics import error_rates
from unrolled.models.speech import DECODERS, Alphabet, Recogniser, SpeechConfig
from unrolled.options import option, require_positive
from unrolled.sound import CHUNK_SECONDS, DECODE_BATCH, LENGTH_PENALTY, character_limit, join_pieces, split_pieces
from unrolled.training import to_device

KIND = "speech"
COMMAND = "unrolled speech train"
DATASETS = "spoken-digits, spoken-sentences"
LM_ORDER = 6  # characters of a character language model's context, and one predicted
WARP_GRID = (1 / 1.2, 1 / 1.1, 1.0, 1.1, 1.2)  # A of the warp search: formants up to 20% lower or higher


def check_warps(warps: Sequence[float]) -> tuple[float, ...]:
    """The warp search's factors as a tuple, each checked: at least one, every one in [0.5, 2]."""
    grid = tuple(float(a) for a in warps)
    if not grid:
        raise ValueError("the warp search needs at least one factor, e.g. --warps 0.83 0.91 1 1.1 1.2")
    wrong = [a for a in grid if not 0.5 <= a <= 2.0]
    if wrong:
        raise ValueError(f"a mel warp factor must lie in [0.5, 2] (1 leaves the voice as it is), got {wrong[0]:g}")
    return grid


def pick_warps(scores: Tensor, weights: Tensor, warps: Sequence[float], groups: Sequence[object]) -> list[float]:
    """alpha* of each row: the factor whose confidence, pooled over the row's group, is highest (module docstring).

    ``scores`` (N, A) holds c_b(alpha) for the factors ``warps``; ``weights`` the steps n_b, (N,) or, where they
    depend on the factor (a speller's greedy steps), (N, A); ``groups`` one hashable label per row. Ties go to the
    factor nearest 1 (then the first given)."""
    if scores.shape != (len(groups), len(warps)):
        raise ValueError(f"the warp search's scores are {tuple(scores.shape)}, not {len(groups)} x {len(warps)}")
    steps = (weights if weights.dim() == 2 else weights[:, None]).expand_as(scores).to(torch.float64)
    sums: dict[object, tuple[Tensor, Tensor]] = {}
    for row, label in enumerate(groups):
        total, count = sums.get(label, (torch.zeros(len(warps), dtype=torch.float64),) * 2)
        sums[label] = (total + steps[row] * scores[row].to(torch.float64), count + steps[row])
    rank = sorted(range(len(warps)), key=lambda a: abs(math.log(warps[a])))  # nearest 1 first
    best = {}
    for label, (total, count) in sums.items():
        pooled = total / count.clamp(min=1e-12)  # the confidence per step over all the group's steps
        best[label] = max(rank, key=lambda a: (float(pooled[a]), -rank.index(a)))
    return [float(warps[best[label]]) for label in groups]


# Shallow fusion's lambda per decoder and CTC's beta: what bench/speech.py chose on spoken-digits validation clips
# (the attention speller already models the text, so it takes less of the LM)
LM_WEIGHT = {"ctc": 1.0, "attention": 0.25, "joint": 0.25}
LM_BONUS = 2.0
Opts = TypeVar("Opts")


@dataclass
class DecodingOptions:
    """How transcripts are searched for, what predict and eval share (`Transcriber.transcribe`'s arguments)."""

    beam: int = field(default=8, metadata=option("beam size; 1 is greedy"))
    decoder: str | None = field(default=None, metadata=option(
        "how a joint run decodes: attention (the default), ctc, or joint: the attention beam's hypotheses rescored "
        "with CTC; other runs have one head", choices=DECODERS))
    ctc_weight: float | None = field(default=None, metadata=option(
        "--decoder joint: CTC's share of the score, in [0, 1]; none: the run's training --ctc-weight",
        metavar="LAMBDA"))
    batch_size: int = field(default=DECODE_BATCH, metadata=option("clips decoded at once", aliases=("--batch",)))
    length_penalty: float = field(default=LENGTH_PENALTY, metadata=option(
        "GNMT length penalty of the attention beam; 0 ranks by total log-probability, which favours transcripts cut "
        "short", metavar="ALPHA"))
    lm: str | None = field(default=None, metadata=option(
        "a character n-gram language model counted from this text file, one transcript per line, joins the beam "
        "search (shallow fusion); a training run writes its own transcripts to RUN/transcripts.txt", metavar="TEXT"))
    lm_weight: float | None = field(default=None, metadata=option(
        f"weight of the language model's log-probability; none: {LM_WEIGHT['ctc']} for CTC, "
        f"{LM_WEIGHT['attention']} for attention", metavar="LAMBDA"))
    lm_bonus: float = field(default=LM_BONUS, metadata=option(
        "CTC: score added per character with --lm, against its pull to short text; attention uses "
        "--length-penalty instead", metavar="BETA"))
    lm_order: int = field(default=LM_ORDER, metadata=option("characters per n-gram of the language model",
                                                            metavar="N"))
    warp_search: bool = field(default=False, metadata=option(
        "decode each clip with its mel bands warped by whichever of 0.83, 0.91, 1, 1.1 and 1.2 the model is most "
        "confident at (test-time vocal tract length normalisation for voices unlike the training ones; the encoder "
        "reads the five warped copies in one batch)"))
    warps: tuple[float, ...] | None = field(default=None, metadata=option(
        "the warp search over these factors instead, each in [0.5, 2]; one factor warps every clip by it (above 1 "
        "moves formants down)", metavar="F", nargs="+"))
    vocabulary: str | None = field(default=None, metadata=option(
        "CTC's beam writes only these words, separated by spaces: 'digits' (zero to nine, and oh) or a text file "
        "of words", metavar="WORDS"))

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:  # the checks of PredictOptions or EvalOptions, beside which this is mixed in
            parent()
        require_positive(self, "beam", "lm_order")
        if self.warp_search and self.warps is not None:
            raise ValueError("--warp-search and --warps each ask for the warp search: give one of them")
        check_warps(self.warp_grid)
        if self.lm is not None and self.beam == 1:
            raise ValueError("--lm joins the beam search; give --beam 2 or more")
        if self.vocabulary is not None and self.beam == 1:
            raise ValueError("--vocabulary restricts the beam search; give --beam 2 or more")
        if self.lm_weight is not None and self.lm_weight < 0:
            raise ValueError(f"--lm-weight must be at least 0, got {self.lm_weight:g}")

    @property
    def warp_grid(self) -> tuple[float, ...]:
        """The warp search's factors: --warps, the benchmarks' grid for --warp-search, else none (1)."""
        return tuple(self.warps) if self.warps is not None else WARP_GRID if self.warp_search else (1.0,)


@dataclass
class SpeechPredictOptions(DecodingOptions, PredictOptions):
    chunk: float = field(default=CHUNK_SECONDS, metadata=option("longest piece transcribed at once",
                                                                metavar="SECONDS"))
    one_voice: bool = field(default=False, metadata=option(
        "with --warp-search or --warps: the files are one speaker's, so they share the warp their pooled "
        "confidence prefers"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.one_voice and len(self.warp_grid) == 1:
            raise ValueError("--one-voice shares the warp search's choice; give --warp-search or --warps with two "
                             "factors or more")


@dataclass
class SpeechEvalOptions(DecodingOptions, EvalOptions):
    split: str = field(default="test", metadata=option(
        "evaluate on this part of the run's split; all: the whole manifest", choices=SPLITS))
    dataset: str | None = field(default=None, metadata=option(
        f"a named dataset instead of a manifest (known: {DATASETS})"))
    limit: int | None = field(default=None, metadata=option("score only the first N utterances of the part",
                                                            metavar="N"))
    by: str | None = field(default=None, metadata=option(
        "also score the utterances of each value of this manifest key apart (e.g. voice or speaker); lines "
        "without it are grouped as '-'", metavar="KEY"))
    warp_by: str | None = field(default=None, metadata=option(
        "with --warp-search or --warps: the clips of each value of this manifest key (e.g. speaker) share the warp "
        "their pooled confidence prefers", metavar="KEY"))

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, "limit")


def as_options(kind: type[Opts], options: Any) -> Opts:
    """`options` as `kind`: itself, the defaults for None, or the common options' values carried over."""
    if isinstance(options, kind):
        return options
    return kind(**({} if options is None else dataclasses.asdict(options)))


class Transcriber(Predictor[Clip, Transcript]):
    """A trained recogniser with its alphabet: waveforms in, `Transcript` lists out (`transcribe`, `predict`);
    utterances in, error rates out (`score`, `evaluate`)."""

    kind = KIND
    command = COMMAND
    what = "a recogniser"
    model: Recogniser

    def __init__(self, model: Recogniser, alphabet: Alphabet, split: dict[str, Any] | None,
                 max_seconds: float) -> None:
        self.model, self.alphabet, self.split, self.max_seconds = model.eval(), alphabet, split, max_seconds

    @classmethod
    def from_config(cls, saved: dict[str, Any]) -> Transcriber:
        return cls(Recogniser(SpeechConfig(**saved["model"])), Alphabet(saved["alphabet"]), saved.get("split"),
                   float(saved["max_seconds"]))

    @property
    def decoders(self) -> tuple[str, ...]:
        """The heads this run can decode with, its preferred one first (attention where it has both)."""
        return {"ctc": ("ctc",), "attention": ("attention",),
                "joint": ("attention", "ctc", "joint")}[self.model.config.decoder]

    def check_decoder(self, decoder: str | None) -> str:
        if decoder is None:
            return self.decoders[0]
        if decoder not in self.decoders:
            raise ValueError(f"this run has no {decoder} decoder (it was trained with --decoder "
                             f"{self.model.config.decoder}); use {' or '.join(self.decoders)}")
        return decoder

    @torch.inference_mode()
    def transcribe(self, waves: Sequence[NDArray[np.floating]], *, beam: int = 1, decoder: str | None = None,
                   batch_size: int = DECODE_BATCH, chunk_seconds: float = CHUNK_SECONDS,
                   length_penalty: float = LENGTH_PENALTY, fusion: Fusion | None = None,
                   ctc_weight: float | None = None, warps: Sequence[float] = (1.0,),
                   groups: Sequence[object] | None = None,
                   vocabulary: WordConstraint | None = None) -> list[Transcript]:
        """The transcript of each 16 kHz waveform; beam 1 is greedy. Waveforms longer than ``chunk_seconds`` are
        transcribed in pieces (module docstring). ``length_penalty``: GNMT's alpha for the attention beam (the
        CTC prefix beam needs none: every prefix has read the whole clip). ``fusion``: a character language model
        added to the beam search (`unrolled.decoding.ngram`); beam 1 stays greedy, without it. ``decoder="joint"``
        (joint runs): the attention beam's hypotheses rescored with CTC (`unrolled.decoding.ctc.joint_scores`),
        lambda = ``ctc_weight`` (default: the run's training weight); at beam 1 the speller's greedy transcript.
        ``warps``: the factors of the warp search (module docstring); one factor decodes every waveform at it, and
        the default (1.0,) leaves the features as they are. ``groups``: one label per waveform; waveforms with the
        same label share the factor their pooled confidence prefers (default: each waveform its own, its pieces
        each their own). ``vocabulary``: CTC's beam writes only its words (`unrolled.decoding.words`)."""
        if beam < 1 or batch_size < 1:
            raise ValueError(f"the beam and the batch size must be at least 1, got {beam} and {batch_size}")
        grid = check_warps(warps)
        if groups is not None and len(groups) != len(waves):
            raise ValueError(f"the warp search got {len(groups)} group labels for {len(waves)} waveforms")
        head = self.check_decoder(decoder)
        if ctc_weight is not None and not 0.0 <= ctc_weight <= 1.0:
            raise ValueError(f"the CTC weight of joint decoding must lie in [0, 1], got {ctc_weight:g}")
        weight = self.model.config.ctc_weight if ctc_weight is None else ctc_weight
        pieces, owned = split_pieces(waves, chunk_seconds)  # owned: the pieces of each waveform, in order
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))  # similar lengths batch together
        found: list[tuple[str, float | None]] = [("", None)] * len(pieces)
        chosen = [grid[0]] * len(pieces)  # alpha* of each piece: one factor needs no search
        if len(grid) > 1:
            confident, steps = self.confidences(pieces, grid, order=order, batch_size=batch_size)
            labels: list[object] = list(range(len(pieces)))  # each piece its own group, unless groups says
            if groups is not None:
                labels = [("group", groups[n]) for n, mine in enumerate(owned) for _ in mine]
            chosen = pick_warps(confident, steps, grid, labels)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = SpeechBatch.make([pieces[i] for i in rows], [[] for _ in rows])
            warp = None if grid == (1.0,) else torch.tensor([chosen[i] for i in rows], dtype=torch.float64)
            results = self._decode(batch, head, beam, length_penalty, fusion, weight, warp, vocabulary)
            for i, result in zip(rows, results, strict=True):
                found[i] = result
        transcripts: list[Transcript] = []
        for mine in owned:
            text, total = join_pieces([found[i] for i in mine])
            longest = max(mine, key=lambda i: len(pieces[i]))
            transcripts.append(Transcript(None, text, total, head, chosen[longest]))
        return transcripts

    @torch.inference_mode()
    def confidence(self, batch: SpeechBatch, warp: Tensor) -> tuple[Tensor, Tensor]:
        """c_b(alpha_b) (B,) of the warp search and the steps n_b (B,) it is a mean over (module docstring): the CTC
        head's best path per encoder step where the run has one, else the speller's greedy steps, each clip's up to
        its </s> or its character limit."""
        model = self.model
        batch = to_device(batch, self.device)
        waves, samples = batch.waves, batch.samples
        if model.output is not None:
            log_probs, steps = model(waves, samples, warp=warp)  # (B, S, V), (B,)
            best = log_probs.max(dim=-1).values  # (B, S)
            steps = steps.to(best.device).clamp(min=1)
            real = torch.arange(best.shape[1], device=best.device) < steps.unsqueeze(1)
            return (best * real).sum(dim=1) / steps, steps.to(best.dtype)
        log_probs, state = model.prime(waves, samples, warp=warp)  # log p(y_1) (B, V)
        limits = torch.tensor([character_limit(int(n)) for n in samples], device=log_probs.device)
        total = log_probs.new_zeros(log_probs.shape[0])
        count = torch.zeros_like(total)
        writing = torch.ones_like(total, dtype=torch.bool)  # still writing: no </s> yet, under its own limit
        for t in range(int(limits.max())):
            best, token = log_probs.max(dim=-1)  # the greedy step
            total, count = total + best * writing, count + writing
            writing = writing & (token != BLANK) & (t + 1 < limits)
            if not writing.any():
                break
            log_probs, state = model.step(token, state)
        return total / count, count

    def confidences(self, waves: Sequence[NDArray[np.floating]], warps: Sequence[float], *,
                    order: Sequence[int] | None = None, batch_size: int = DECODE_BATCH) -> tuple[Tensor, Tensor]:
        """c_b(alpha) for every waveform and factor (N, A), float64, and the steps n_b(alpha) (N, A) (`confidence`).

        The waveforms are taken in ``order`` (default: as given), each with its A warps in the same batch (one
        encoder call reads them all, the cheap way at batch 1); a call holds at most max(``batch_size``, A) rows.
        """
        scores = torch.zeros(len(waves), len(warps), dtype=torch.float64)
        weights = torch.zeros(len(waves), len(warps), dtype=torch.float64)
        order = list(range(len(waves))) if order is None else list(order)
        clips = max(1, batch_size // len(warps))
        for start in range(0, len(order), clips):
            rows = order[start : start + clips]
            batch = SpeechBatch.make([waves[i] for _ in warps for i in rows], [[] for _ in warps for _ in rows])
            factors = torch.tensor([float(alpha) for alpha in warps for _ in rows], dtype=torch.float64)
            score, steps = self.confidence(batch, factors)  # (A * B,): warp-major
            scores[rows] = score.double().cpu().view(len(warps), len(rows)).T
            weights[rows] = steps.double().cpu().view(len(warps), len(rows)).T
        return scores, weights

    def _decode(self, batch: SpeechBatch, head: str, beam: int, length_penalty: float = LENGTH_PENALTY,
                fusion: Fusion | None = None, ctc_weight: float = 0.0,
                warp: Tensor | None = None, vocabulary: WordConstraint | None = None) -> list[tuple[str, float | None]]:
        model = self.model
        batch = to_device(batch, self.device)
        waves, samples = batch.waves, batch.samples
        if head == "ctc":
            log_probs, steps = model(waves, samples, warp=warp)
            if beam == 1:
                return [(self.alphabet.decode(ids), None) for ids in greedy_decode(log_probs, steps)]
            lm, weight, bonus = (None, 0.0, 0.0) if fusion is None else (fusion.lm, fusion.weight, fusion.bonus)
            return [(self.alphabet.decode(best[0][0]), best[0][1]) for best in (
                prefix_beam_search(log_probs[b, : int(steps[b])], beam, lm=lm, weight=weight, bonus=bonus,
                                   vocabulary=vocabulary)
                for b in range(len(steps)))]
        limit = character_limit(int(samples.max()))
        log_probs, state = model.prime(waves, samples, warp=warp)
        if beam == 1:  # "joint" too: one hypothesis, nothing for CTC to choose between
            tokens = decoding.greedy(model, log_probs, state, length=limit, end_token=BLANK).tolist()
            return [(self.alphabet.decode(row[: row.index(BLANK)] if BLANK in row else row), None) for row in tokens]
        speller: decoding.Decoder = model
        ctc = model.ctc_head(state.memory) if head == "joint" else None  # (B, S, V)
        steps = state.mask.sum(dim=1).tolist() if ctc is not None else []  # S_b, read before fusion wraps the state
        if fusion is not None:
            speller = LanguageModelFusion(model, fusion.lm, fusion.weight)
            log_probs, state = speller.prime(log_probs, state)
        hypotheses = decoding.beam_search(speller, log_probs, state, beam_size=beam, max_length=limit,
                                          end_token=BLANK, length_penalty=length_penalty,
                                          n_best=1 if ctc is None else beam)
        if ctc is None:
            return [(self.alphabet.decode(best[0].tokens), best[0].score) for best in hypotheses]
        chosen: list[tuple[str, float | None]] = []
        for b, found in enumerate(hypotheses):  # the attention beam's hypotheses, rescored with CTC
            joint = joint_scores(ctc[b], int(steps[b]), [h.tokens for h in found], [h.score for h in found],
                                 ctc_weight)
            k = max(range(len(found)), key=lambda n: (joint[n], -n))  # ties: the beam's order
            chosen.append((self.alphabet.decode(found[k].tokens), joint[k]))
        return chosen

    def decoding(self, options: DecodingOptions) -> dict[str, Any]:
        """`transcribe`'s and `score`'s keyword arguments from predict's or eval's options, checked against this run
        (--ctc-weight needs the joint decoder) and with --lm's language model read."""
        head = self.check_decoder(options.decoder)
        if options.ctc_weight is not None and head != "joint":
            raise ValueError("--ctc-weight weighs CTC in joint decoding; give --decoder joint with it (a joint run)")
        fusion = None
        if options.lm is not None:
            lm = read_language_model(options.lm, self.alphabet, order=options.lm_order)
            fusion = Fusion(lm, LM_WEIGHT[head] if options.lm_weight is None else options.lm_weight, options.lm_bonus)
        vocabulary = None if options.vocabulary is None else self.word_constraint(
            vocabulary_words(options.vocabulary), head)
        return {"decoder": head, "batch_size": options.batch_size, "length_penalty": options.length_penalty,
                "fusion": fusion, "ctc_weight": options.ctc_weight, "warps": options.warp_grid,
                "vocabulary": vocabulary}

    def word_constraint(self, words: Sequence[str], head: str) -> WordConstraint:
        """The vocabulary of `words` over this run's alphabet, for CTC's beam; one-line errors where it cannot be."""
        if head != "ctc":
            raise ValueError("--vocabulary restricts CTC's beam; this run decodes with its attention speller (give "
                             "--decoder ctc where the run is joint)")
        known = set(self.alphabet.characters)
        if " " not in known:
            raise ValueError("this run's alphabet has no space, so it cannot separate the vocabulary's words")
        unknown = [word for word in words if not set(word) <= known]
        if unknown:
            raise ValueError(f"the vocabulary's word {unknown[0]!r} has characters this run's alphabet lacks; keep to "
                             f"{''.join(sorted(known)).strip()!r}")
        return WordConstraint([self.alphabet.encode(word) for word in words], self.alphabet.encode(" ")[0])

    def predict(self, inputs: Sequence[Clip], options: PredictOptions | None = None) -> list[Transcript]:
        """The transcript of each clip, named by it: `transcribe` with predict's options."""
        chosen = as_options(SpeechPredictOptions, options)
        clips = list(inputs)
        outputs = self.transcribe([clip.wave for clip in clips], beam=chosen.beam, chunk_seconds=chosen.chunk,
                                  groups=[0] * len(clips) if chosen.one_voice else None, **self.decoding(chosen))
        return [dataclasses.replace(output, audio=clip.name) for output, clip in zip(outputs, clips, strict=True)]

    def evaluate(self, data: Sequence[Utterance], options: EvalOptions | None = None) -> dict[str, Any]:
        """`score` with eval's options: greedy decoding, and the beam of --beam beside it."""
        chosen = as_options(SpeechEvalOptions, options)
        beams = (1,) if chosen.beam == 1 else (1, chosen.beam)
        return self.score(data, beams=beams, by=chosen.by, warp_by=chosen.warp_by, **self.decoding(chosen))

    def score(self, utterances: Sequence[Utterance], *, beams: tuple[int, ...] = (1, 8),
                 decoder: str | None = None, batch_size: int = DECODE_BATCH,
                 waves: Sequence[NDArray[np.floating]] | None = None,
                 length_penalty: float = LENGTH_PENALTY, fusion: Fusion | None = None,
                 by: str | None = None, ctc_weight: float | None = None,
                 warps: Sequence[float] = (1.0,), warp_by: str | None = None,
                 vocabulary: WordConstraint | None = None) -> dict[str, Any]:
        """CER, WER and string accuracy of each beam size on `utterances` (module docstring), and real-time factor:
        seconds of audio transcribed per second of compute. With `by`, a manifest key (``voice``, ``speaker``),
        each beam's scores also hold ``"by"``: the same error rates over each value's utterances alone (those
        without the key under ``"-"``). ``warps``: the warp search's factors (`transcribe`); with more than one,
        each beam's scores also hold ``"warps"``, how many utterances were decoded at each factor. ``warp_by``, a
        manifest key (``speaker``): the utterances of each of its values share one factor (`transcribe`'s
        ``groups``; an utterance without the key is a group alone). ``vocabulary``: `transcribe`'s."""
        if not utterances:
            raise ValueError("no utterances to evaluate")
        grid = check_warps(warps)
        if warp_by is not None and len(grid) == 1:
            raise ValueError(f"a warp shared by each {warp_by} needs a warp search of two factors or more")
        speakers: list[object] | None = None if warp_by is None else [
            (u.extra[warp_by],) if warp_by in u.extra else n for n, u in enumerate(utterances)]
        head = self.check_decoder(decoder)
        audio = [as_float(w) if w.dtype == np.int16 else w for w in waves] if waves is not None else [
            read_audio(u.audio) for u in utterances]
        references = [u.text for u in utterances]
        seconds = sum(len(w) for w in audio) / SAMPLE_RATE
        report: dict[str, Any] = {"utterances": len(utterances), "seconds": seconds, "decoder": head}
        for beam in beams:
            started = time.perf_counter()
            outputs = self.transcribe(audio, beam=beam, decoder=head, batch_size=batch_size,
                                      length_penalty=length_penalty, fusion=fusion, ctc_weight=ctc_weight,
                                      warps=grid, groups=speakers, vocabulary=vocabulary if beam > 1 else None)
            spent = time.perf_counter() - started
            hypotheses = [o.text for o in outputs]
            scores: dict[str, Any] = dict(error_rates(hypotheses, references))
            scores["real_time"] = seconds / spent if spent > 0 else math.inf
            if len(grid) > 1:
                scores["warps"] = {f"{a:.3g}": sum(o.warp == a for o in outputs) for a in grid}
            if by is not None:
                groups: dict[str, list[int]] = {}
                for n, utterance in enumerate(utterances):
                    groups.setdefault(str(utterance.extra.get(by, "-")), []).append(n)
                scores["by"] = {value: {"utterances": len(rows), **error_rates(
                    [hypotheses[n] for n in rows], [references[n] for n in rows])} for value, rows in sorted(
                    groups.items())}
            report[f"beam{beam}"] = scores
        return report


def read_language_model(path: str | os.PathLike[str], alphabet: Alphabet, *, order: int = LM_ORDER) -> CharNgram:
    """A character `CharNgram` of the given order counted from a text file, one transcript per line (a training
    run writes its own to ``RUN/transcripts.txt``). Lines with characters the alphabet lacks are left out."""
    try:
        texts, skipped = read_texts(path, alphabet.encode)
    except OSError as error:
        raise ValueError(f"cannot read the language model's text {os.fspath(path)!r}: "
                         f"{error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ValueError(f"the language model's text {os.fspath(path)!r} is not UTF-8 text") from None
    if not texts:
        raise ValueError(f"{os.fspath(path)!r} has no line the recogniser can spell"
                         f"{f' ({skipped} hold characters it does not know)' if skipped else ''}; "
                         "give a text file of transcripts, one per line")
    if skipped:
        warnings.warn(f"{skipped} line(s) of {os.fspath(path)!r} hold characters the recogniser does not know and "
                      "were left out of the language model", stacklevel=2)
    return CharNgram.fit(texts, vocabulary=len(alphabet), order=order)
