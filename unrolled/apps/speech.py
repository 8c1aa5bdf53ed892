r"""Speech recognition end to end: a manifest in, a trained `Recogniser` run folder out, transcripts back.

    manifest (unrolled.data.speech) --split (the data's own, else seeded by speaker)--> train / validation / test
    --waveforms, perturbed (speed, volume, noise) while training--> Recogniser (CTC, attention or joint) --> text

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
import itertools
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from unrolled import decoding
from unrolled.apps.split import PARTS, SplitRecord, new_record, split_parts
from unrolled.checkpoint import CheckpointError, load_checkpoint, load_model_state, resolve_checkpoint, saved_run_config
from unrolled.data.audio import PerturbConfig, perturb, read_audio
from unrolled.data.labelled import LabelledData
from unrolled.data.speech import SpeechBatch, Utterance
from unrolled.decoding.ctc import BLANK, greedy_decode, joint_scores, prefix_beam_search
from unrolled.decoding.ngram import CharNgram, Fusion, LanguageModelFusion, read_texts
from unrolled.features import SAMPLE_RATE
from unrolled.metrics import error_rates
from unrolled.models.speech import Alphabet, Recogniser, SpeechConfig, needed_steps

KIND = "speech"
COMMAND = "unrolled speech train"
VALIDATION_DECODES = 300  # utterances transcribed greedily at each evaluation for the CER
VALIDATION_LOSS = 500  # utterances scored at each evaluation for the loss (the first, in manifest order)
DECODE_BATCH = 16
LM_ORDER = 6  # characters of a character language model's context, and one predicted
TRANSCRIPTS = "transcripts.txt"  # a run's training transcripts, one per line: text for a language model
CHUNK_SECONDS = 20.0  # transcription cuts longer audio into pieces of at most this length
CHARS_PER_SECOND = 40  # the attention decoder stops after this many characters per second of audio (and 10 more)
WARP_GRID = (1 / 1.2, 1 / 1.1, 1.0, 1.1, 1.2)  # A of the warp search: formants up to 20% lower or higher
LENGTH_PENALTY = 1.0  # GNMT's alpha for the attention beam: with 0 the beam prefers transcripts cut short (measured:
# beam 8 on 150 spoken-digits test clips, CER 28.4% with alpha 0 and 5.4% with 1, against 5.5% greedy)


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


def character_limit(samples: int) -> int:
    """The most characters (and the end) the attention decoder writes for a clip of `samples` samples."""
    return math.ceil(samples / SAMPLE_RATE * CHARS_PER_SECOND) + 10


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


@dataclass
class Transcript:
    """One transcript: its text, its log-probability (beam search; None for greedy), the decoder used and the mel
    warp it was decoded at (the warp search's choice; of the longest piece for audio transcribed in pieces)."""

    text: str
    score: float | None
    decoder: str
    warp: float = 1.0


class Transcriber:
    """A trained recogniser with its alphabet: waveforms in, `Transcript` lists out."""

    def __init__(self, model: Recogniser, alphabet: Alphabet, split: dict[str, Any] | None,
                 max_seconds: float) -> None:
        self.model, self.alphabet, self.split, self.max_seconds = model.eval(), alphabet, split, max_seconds

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Transcriber:
        """From a run folder (best checkpoint, else last) or a checkpoint folder."""
        checkpoint = load_checkpoint(resolve_checkpoint(path, command=COMMAND), kind=KIND)
        saved = checkpoint.config
        try:
            model = Recogniser(SpeechConfig(**saved["model"]))
            alphabet = Alphabet(saved["alphabet"])
            max_seconds = float(saved["max_seconds"])
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{path}: config.json lacks what a recogniser needs ({error})") from None
        load_model_state(model, checkpoint.model_state, path)
        return cls(model, alphabet, saved.get("split"), max_seconds)

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
                   groups: Sequence[object] | None = None) -> list[Transcript]:
        """The transcript of each 16 kHz waveform; beam 1 is greedy. Waveforms longer than ``chunk_seconds`` are
        transcribed in pieces (module docstring). ``length_penalty``: GNMT's alpha for the attention beam (the
        CTC prefix beam needs none: every prefix has read the whole clip). ``fusion``: a character language model
        added to the beam search (`unrolled.decoding.ngram`); beam 1 stays greedy, without it. ``decoder="joint"``
        (joint runs): the attention beam's hypotheses rescored with CTC (`unrolled.decoding.ctc.joint_scores`),
        lambda = ``ctc_weight`` (default: the run's training weight); at beam 1 the speller's greedy transcript.
        ``warps``: the factors of the warp search (module docstring); one factor decodes every waveform at it, and
        the default (1.0,) leaves the features as they are. ``groups``: one label per waveform; waveforms with the
        same label share the factor their pooled confidence prefers (default: each waveform its own, its pieces
        each their own)."""
        if beam < 1 or batch_size < 1:
            raise ValueError(f"the beam and the batch size must be at least 1, got {beam} and {batch_size}")
        grid = check_warps(warps)
        if groups is not None and len(groups) != len(waves):
            raise ValueError(f"the warp search got {len(groups)} group labels for {len(waves)} waveforms")
        head = self.check_decoder(decoder)
        if ctc_weight is not None and not 0.0 <= ctc_weight <= 1.0:
            raise ValueError(f"the CTC weight of joint decoding must lie in [0, 1], got {ctc_weight:g}")
        weight = self.model.config.ctc_weight if ctc_weight is None else ctc_weight
        pieces: list[NDArray[np.float32]] = []
        owned: list[list[int]] = []  # the pieces of each waveform, in order
        for n, wave in enumerate(waves):
            wave = np.asarray(wave, dtype=np.float32)
            if len(wave) == 0:
                raise ValueError(f"waveform {n} holds no samples")
            bounds = [0, *cut_points(wave, chunk_seconds), len(wave)]
            owned.append(list(range(len(pieces), len(pieces) + len(bounds) - 1)))
            pieces.extend(wave[start:end] for start, end in itertools.pairwise(bounds))
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
            results = self._decode(batch, head, beam, length_penalty, fusion, weight, warp)
            for i, result in zip(rows, results, strict=True):
                found[i] = result
        transcripts: list[Transcript] = []
        for mine in owned:
            parts = [found[i] for i in mine]
            text = " ".join(t for t, _ in parts if t)
            scores = [s for _, s in parts]
            total = None if any(s is None for s in scores) else float(sum(s for s in scores if s is not None))
            longest = max(mine, key=lambda i: len(pieces[i]))
            transcripts.append(Transcript(" ".join(text.split()), total, head, chosen[longest]))
        return transcripts

    @torch.inference_mode()
    def confidence(self, batch: SpeechBatch, warp: Tensor) -> tuple[Tensor, Tensor]:
        """c_b(alpha_b) (B,) of the warp search and the steps n_b (B,) it is a mean over (module docstring): the CTC
        head's best path per encoder step where the run has one, else the speller's greedy steps, each clip's up to
        its </s> or its character limit."""
        model = self.model
        device = next(model.parameters()).device
        waves, samples = batch.waves.to(device), batch.samples.to(device)
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
                warp: Tensor | None = None) -> list[tuple[str, float | None]]:
        model = self.model
        device = next(model.parameters()).device
        waves, samples = batch.waves.to(device), batch.samples.to(device)
        if head == "ctc":
            log_probs, steps = model(waves, samples, warp=warp)
            if beam == 1:
                return [(self.alphabet.decode(ids), None) for ids in greedy_decode(log_probs, steps)]
            lm, weight, bonus = (None, 0.0, 0.0) if fusion is None else (fusion.lm, fusion.weight, fusion.bonus)
            return [(self.alphabet.decode(best[0][0]), best[0][1]) for best in (
                prefix_beam_search(log_probs[b, : int(steps[b])], beam, lm=lm, weight=weight, bonus=bonus)
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

    def evaluate(self, utterances: Sequence[Utterance], *, beams: tuple[int, ...] = (1, 8),
                 decoder: str | None = None, batch_size: int = DECODE_BATCH,
                 waves: Sequence[NDArray[np.floating]] | None = None,
                 length_penalty: float = LENGTH_PENALTY, fusion: Fusion | None = None,
                 by: str | None = None, ctc_weight: float | None = None,
                 warps: Sequence[float] = (1.0,), warp_by: str | None = None) -> dict[str, Any]:
        """CER, WER and string accuracy of each beam size on `utterances` (module docstring), and real-time factor:
        seconds of audio transcribed per second of compute. With `by`, a manifest key (``voice``, ``speaker``),
        each beam's scores also hold ``"by"``: the same error rates over each value's utterances alone (those
        without the key under ``"-"``). ``warps``: the warp search's factors (`transcribe`); with more than one,
        each beam's scores also hold ``"warps"``, how many utterances were decoded at each factor. ``warp_by``, a
        manifest key (``speaker``): the utterances of each of its values share one factor (`transcribe`'s
        ``groups``; an utterance without the key is a group alone)."""
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
                                      warps=grid, groups=speakers)
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


def fit(utterances: list[Utterance], out: str | os.PathLike[str], *, model_options: dict[str, Any] | None = None,
        train: Any = None, validation: float = 0.05, test: float = 0.05, split_seed: int = 0, batch_size: int = 32,
        perturbation: PerturbConfig | None = None, max_seconds: float = 30.0, eval_every: int | None = None,
        resume: bool = False, waves: list[NDArray[np.int16]] | None = None) -> Any:
    """Train a `Recogniser` on `utterances` into the run folder `out` (or resume it); returns the `TrainResult`.

    `model_options` are `SpeechConfig` fields other than the vocabulary. The
    manifest's own split is used when every line has one, else a seeded split
    by speaker (`validation`, `test` fractions of the speakers). `waves` are the
    utterances' waveforms if already read (`read_waves`). `eval_every` None
    evaluates once per epoch.
    """
    from unrolled.training import TrainConfig, Trainer

    if not utterances:
        raise ValueError("no utterances to train on")
    train_config = train if train is not None else TrainConfig(max_epochs=10)
    saved = saved_run_config(out, kind=KIND) if resume else None
    if saved:
        record = None if saved["split"] is None else SplitRecord(**saved["split"])
    elif all(u.split is not None for u in utterances):
        record = None
    else:
        record = new_record(utterances, utterance_key, seed=split_seed, validation=validation, test=test,
                            grouped=True)
    index = {utterance_key(u): n for n, u in enumerate(utterances)}
    parts = split_utterances(utterances, record)
    if not parts["train"]:
        raise ValueError("no training utterances are left after the split; give more data or smaller fractions")
    if saved:
        alphabet = Alphabet(saved["alphabet"])
        config = SpeechConfig(**saved["model"])
    else:
        alphabet = Alphabet.build(u.text for u in parts["train"])
        config = SpeechConfig(vocabulary=len(alphabet), **(model_options or {}))
    unknown = sorted({ch for part in ("validation", "test") for u in parts[part] for ch in u.text} - set(
        alphabet.characters))
    if unknown:
        warnings.warn(f"validation or test transcripts hold characters no training transcript has "
                      f"({', '.join(map(repr, unknown))}); they can never be transcribed", stacklevel=2)
    train_rows = [index[utterance_key(u)] for u in parts["train"]]
    train_waves = [waves[n] for n in train_rows] if waves is not None else read_waves(parts["train"])
    fastest = max((*perturbation.speeds, 1.0)) if perturbation is not None else 1.0
    kept, targets = encode_utterances(parts["train"], alphabet, config, fastest=fastest)
    if len(kept) < len(parts["train"]):
        warnings.warn(f"{len(parts['train']) - len(kept)} training utterance(s) are spoken too fast for the CTC "
                      "encoder's step rate and were left out (lower --stride or --levels to keep them)", stacklevel=2)
    if not kept:
        raise ValueError("every training utterance is too short for its transcript at this encoder's step rate; "
                         "lower --stride or --levels")
    torch.manual_seed(train_config.seed)
    network = Recogniser(config)
    batches = SpeechData([train_waves[n] for n in kept], targets, batch_size=batch_size, seed=train_config.seed,
                         perturbation=perturbation)
    if eval_every is None:
        train_config = dataclasses.replace(train_config, eval_every=len(batches))
    valid = parts["validation"]
    valid_waves = ([waves[index[utterance_key(u)]] for u in valid] if waves is not None
                   else read_waves(valid)) if valid else []
    extra = {"kind": KIND, "model": config.to_json(), "alphabet": alphabet.characters, "max_seconds": max_seconds,
             "split": None if record is None else asdict(record),
             "batching": {"batch_size": batch_size,
                          "perturbation": None if perturbation is None else asdict(perturbation)}}
    write_transcripts(Path(out) / TRANSCRIPTS, [u.text for u in parts["train"]])
    trainer = Trainer(network, batches, train_config, out,
                      evaluate=_evaluator(valid, valid_waves, alphabet, config, max_seconds), checkpoint_config=extra)
    return trainer.fit(resume=resume)


def write_transcripts(path: Path, texts: Sequence[str]) -> None:
    """The texts, one per line, written atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temp.write_text("".join(f"{' '.join(text.split())}\n" for text in texts), encoding="utf-8")
    os.replace(temp, path)


def _evaluator(utterances: list[Utterance], waves: list[NDArray[np.int16]], alphabet: Alphabet,
               config: SpeechConfig, max_seconds: float) -> Any:
    """Validation: the loss per character over the first `VALIDATION_LOSS` utterances whose characters are known
    (and, with CTC, that are long enough), and the greedy CER and WER of the first `VALIDATION_DECODES`."""
    known = [n for n, u in enumerate(utterances[:VALIDATION_LOSS]) if set(u.text) <= set(alphabet.characters)]
    kept, targets = encode_utterances([utterances[n] for n in known], alphabet, config)
    rows = [known[k] for k in kept]
    if not rows:
        return None
    decodes = list(range(min(VALIDATION_DECODES, len(utterances))))
    from unrolled.training import to_device

    def evaluate(module: nn.Module) -> dict[str, float]:
        model = module.module if hasattr(module, "module") else module
        assert isinstance(model, Recogniser)
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        total, characters = 0.0, 0
        try:
            with torch.no_grad():
                order = sorted(range(len(rows)), key=lambda k: len(waves[rows[k]]))
                for start in range(0, len(order), DECODE_BATCH):
                    chunk = order[start : start + DECODE_BATCH]
                    batch = SpeechBatch.make([as_float(waves[rows[k]]) for k in chunk], [targets[k] for k in chunk])
                    loss, metrics = model.loss(to_device(batch, device))
                    total += float(loss) * metrics["characters"]
                    characters += int(metrics["characters"])
            transcriber = Transcriber(model, alphabet, None, max_seconds)
            outputs = transcriber.transcribe([as_float(waves[n]) for n in decodes])
        finally:
            model.train(was_training)
        scores = error_rates([o.text for o in outputs], [utterances[n].text for n in decodes])
        return {"loss": total / max(characters, 1), "cer": scores["cer"], "wer": scores["wer"],
                "string_accuracy": scores["string_accuracy"]}

    return evaluate
