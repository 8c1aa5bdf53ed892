"""Speech recognition end to end: a manifest in, a trained `Recogniser` run folder out, transcripts back.

    manifest (unrolled.data.speech) --split (the data's own, else seeded by speaker)--> train / validation / test
    --waveforms, perturbed (speed, volume, noise) while training--> Recogniser (CTC, attention or joint) --> text

The configuration (`SpeechAppConfig`: sections data, model, train) is saved
whole in every checkpoint, beside the recogniser's own config (`SpeechConfig`),
the alphabet and the split (None when the manifest brought its own). The data
pipeline is `unrolled.apps.speech_data`'s; the trained run, its decoding
(greedy, beam, language model fusion, joint rescoring, the warp search) and
its scores are `unrolled.apps.transcriber.Transcriber`'s.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from unrolled.apps.base import Application, RunConfig
from unrolled.apps.common import evaluating
from unrolled.apps.results import Transcript
from unrolled.apps.speech_data import (
    Clip,
    SpeechData,
    as_float,
    encode_utterances,
    read_clips,
    read_waves,
    split_utterances,
    utterance_key,
    write_transcripts,
)
from unrolled.apps.split import SplitRecord, as_record, new_record
from unrolled.apps.transcriber import DATASETS, KIND, SpeechEvalOptions, SpeechPredictOptions, Transcriber
from unrolled.checkpoint import saved_run_config
from unrolled.data.audio import PerturbConfig
from unrolled.data.speech import MAX_SECONDS, SpeechBatch, Utterance
from unrolled.features import FeatureConfig, SpecAugmentConfig
from unrolled.metrics import error_rates
from unrolled.models.speech import ATTENTIONS, DECODERS, Alphabet, Recogniser, SpeechConfig
from unrolled.options import option, require_fractions, require_positive
from unrolled.sound import DECODE_BATCH
from unrolled.training import TrainConfig, TrainResult, to_device

VALIDATION_DECODES = 300  # utterances transcribed greedily at each evaluation for the CER
VALIDATION_LOSS = 500  # utterances scored at each evaluation for the loss (the first, in manifest order)
TRANSCRIPTS = "transcripts.txt"  # a run's training transcripts, one per line: text for a language model


def _recogniser_default(name: str) -> Any:
    """`SpeechConfig`'s default of field `name`: the one place the recogniser's defaults are written."""
    item = next(item for item in dataclasses.fields(SpeechConfig) if item.name == name)
    if item.default is not dataclasses.MISSING:
        return item.default
    assert item.default_factory is not dataclasses.MISSING
    return item.default_factory()


FEATURES: FeatureConfig = _recogniser_default("features")
AUGMENT: SpecAugmentConfig = _recogniser_default("spec_augment")
# Encoder shape per decoder, where --layers / --levels are not given: CTC needs a step for every character
# (speech reaches 30 characters a second here), so it keeps the 33 vectors a second; attention reads 8.3.
ENCODER_DEFAULTS = {"ctc": (SpeechConfig.layers, SpeechConfig.levels), "attention": (1, 2),
                    "joint": (SpeechConfig.layers, SpeechConfig.levels)}


# ---------------------------------------------------------------------- configuration


@dataclass
class SpeechDataConfig:
    """Which manifest, how it is split, and how the training batches are made."""

    manifest: str | None = field(default=None, metadata=option(
        "JSON-lines manifest, one {\"audio\": path, \"text\": transcript} a line, paths relative to it; any rate "
        "and channel count (or --dataset)", positional="?", metavar="MANIFEST"))
    dataset: str | None = field(default=None, metadata=option(
        f"a named dataset instead of a manifest (known: {DATASETS})"))
    validation: float = field(default=0.05, metadata=option(
        "fraction of the speakers for validation, without a split in the data"))
    test: float = field(default=0.05, metadata=option("fraction of the speakers for testing, without a split in the "
                                                      "data"))
    split_seed: int = field(default=0, metadata=option("seed of the split"))
    max_seconds: float = field(default=MAX_SECONDS, metadata=option(
        "clips longer than this are refused when the manifest is read"))
    batch_size: int = field(default=16, metadata=option("utterances per batch", aliases=("--batch",)))
    perturb: bool = field(default=True, metadata=option(
        "perturb the training waveforms: speed, volume, noise"))
    speeds: tuple[float, ...] | None = field(default=None, metadata=option(
        "speed perturbation: each utterance is played F times faster (and higher), F drawn from these factors, "
        f"each in [0.5, 2]; none: {' '.join(map(str, PerturbConfig.speeds))}", metavar="F", nargs="+"))
    reverb: float = field(default=0.0, metadata=option(
        "share of the training utterances played in a simulated room (reverberation time 0.2 to 0.8 s)",
        metavar="P"))
    microphone: float = field(default=0.0, metadata=option(
        "share of the training utterances heard through a drawn microphone (high-pass, low-pass, two peaks)",
        metavar="P"))
    telephone: float = field(default=0.0, metadata=option(
        "share of the training utterances sent down a telephone line: 8 kHz, mu-law, A-law or linear", metavar="P"))

    def __post_init__(self) -> None:
        require_fractions(self, "validation", "test")
        for name in ("reverb", "microphone", "telephone"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"--{name} is a share of the utterances, in [0, 1]; got {getattr(self, name)}")
        if not self.max_seconds > 0:
            raise ValueError(f"--max-seconds must be a positive number, got {self.max_seconds}")
        require_positive(self, "batch_size")
        self.perturbation()

    def perturbation(self) -> PerturbConfig | None:
        """The training perturbations: none with --no-perturb, else the defaults with --speeds' factors."""
        if not self.perturb:
            if self.speeds is not None:
                raise ValueError("--speeds sets the speed perturbation, which --no-perturb turns off; give one of them")
            given = [f"--{name}" for name in ("reverb", "microphone", "telephone") if getattr(self, name) > 0]
            if given:
                raise ValueError(f"{' and '.join(given)} {'perturbs' if len(given) == 1 else 'perturb'} the training "
                                 "audio, which --no-perturb turns off; give one or the other")
            return None
        wrong = [f"{factor:g}" for factor in self.speeds or () if not 0.5 <= factor <= 2.0]
        if wrong:
            raise ValueError(f"a speed factor must lie in [0.5, 2], got {', '.join(wrong)}")
        return PerturbConfig(speeds=tuple(self.speeds) if self.speeds else PerturbConfig.speeds,
                             reverb=self.reverb, microphone=self.microphone, telephone=self.telephone)


@dataclass
class SpeechModelConfig:
    """The recogniser (`SpeechConfig`): front end, pyramidal BiLSTM encoder, CTC and / or attention decoder."""

    decoder: str = field(default=SpeechConfig.decoder, metadata=option(
        "ctc: a character (or blank) per encoder step; attention: LAS's speller; joint: both heads trained together, "
        "decoded with attention", choices=DECODERS))
    attention: str = field(default=SpeechConfig.attention, metadata=option(
        "the attention's score: location-aware (Chorowski et al. 2015) or content only", choices=ATTENTIONS))
    hidden: int = field(default=SpeechConfig.hidden, metadata=option("encoder units per direction"))
    layers: int | None = field(default=None, metadata=option(
        "BiLSTM layers at full frame rate; none: 2 for ctc and joint, 1 for attention"))
    levels: int | None = field(default=None, metadata=option(
        "pyramid levels above them, each halving the steps; none: 0 for ctc and joint, 2 for attention"))
    stack: int = field(default=FEATURES.stack, metadata=option("log-mel frames stacked per vector"))
    stride: int = field(default=FEATURES.stride, metadata=option(
        "keep every n-th stacked vector: 100 / n vectors a second"))
    fmax: float | None = field(default=FEATURES.fmax, metadata=option(
        "the mel bands' top in Hz; 4000 keeps to the band a telephone carries; none: half the rate (8000)",
        metavar="HZ"))
    decoder_hidden: int = field(default=SpeechConfig.decoder_hidden, metadata=option("speller LSTM units"))
    ctc_weight: float = field(default=SpeechConfig.ctc_weight, metadata=option("CTC's share of the joint loss"))
    dropout: float = field(default=SpeechConfig.dropout, metadata=option("dropout between layers"))
    spec_augment: bool = field(default=True, metadata=option(
        "SpecAugment's masks while training: 2 frequency and 2 time masks per utterance"))
    band_warp: float = field(default=AUGMENT.band_warp, metadata=option(
        "warp each utterance's mel axis by a factor in [1 - W, 1 + W], a stand-in for vocal tract length "
        "perturbation; 0 for none (with SpecAugment only)", metavar="W"))
    pitch_shift: float = field(default=AUGMENT.pitch_shift, metadata=option(
        "shift each utterance's pitch by up to S semitones up or down while training, its spectral envelope kept; "
        "0 for none (with SpecAugment only)", metavar="S"))

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"unknown decoder {self.decoder!r}: choose one of {', '.join(DECODERS)}")
        if self.band_warp < 0 or self.pitch_shift < 0:
            raise ValueError(f"--band-warp and --pitch-shift must be at least 0, got {self.band_warp}, "
                             f"{self.pitch_shift}")
        self.recogniser(vocabulary=2)  # the recogniser's own checks

    def recogniser(self, vocabulary: int) -> SpeechConfig:
        """The recogniser's config for an alphabet of `vocabulary` symbols (the blank included)."""
        layers, levels = ENCODER_DEFAULTS[self.decoder]
        augment = SpecAugmentConfig(band_warp=self.band_warp, pitch_shift=self.pitch_shift) if self.spec_augment \
            else None
        return SpeechConfig(vocabulary=vocabulary, features=FeatureConfig(stack=self.stack, stride=self.stride,
                                                                               fmax=self.fmax),
                            hidden=self.hidden, layers=layers if self.layers is None else self.layers,
                            levels=levels if self.levels is None else self.levels, dropout=self.dropout,
                            decoder=self.decoder, attention=self.attention, decoder_hidden=self.decoder_hidden,
                            ctc_weight=self.ctc_weight, spec_augment=augment)


def _train_defaults() -> TrainConfig:
    """Adam at 2e-3, cosine after 50 warm-up steps, clipped at 5, up to 20 epochs, evaluated each epoch; bf16 where
    the device computes it natively (as ``speech train`` always did).

    The recipe bench/speech.py measured for a 30-minute budget on one thread: lr 1e-3 with 200 warm-up steps,
    batches of 32 and 50 vectors a second were still at 97% validation CER (CTC) after 13 minutes; this reached 3.2%
    in 30."""
    return TrainConfig(optimizer="adam", lr=2e-3, weight_decay=0.0, schedule="cosine", warmup_steps=50,
                       clip_norm=5.0, max_epochs=20, eval_every=None, early_stop=None, precision="auto")


class SpeechAppConfig(RunConfig):
    """Everything a speech run is made from; saved whole in its checkpoints."""

    data: SpeechDataConfig = field(default_factory=SpeechDataConfig)
    model: SpeechModelConfig = field(default_factory=SpeechModelConfig)
    train: TrainConfig = field(default_factory=_train_defaults)


# ---------------------------------------------------------------------- training


def read_utterances(data: SpeechDataConfig) -> list[Utterance]:
    """The utterances of the configured manifest or named dataset (not both, not none), each checked."""
    from unrolled.data import obtain
    from unrolled.data.speech import read_manifest

    if data.manifest and data.dataset:
        raise ValueError("give a manifest or --dataset, not both")
    if not data.manifest and not data.dataset:
        raise ValueError("no data: give a JSON-lines manifest or --dataset spoken-digits")
    path = Path(data.manifest) if data.manifest else obtain(str(data.dataset))
    return read_manifest(path, max_seconds=data.max_seconds)


def fit(config: SpeechAppConfig, out: str | os.PathLike[str], *, resume: bool = False,
        utterances: list[Utterance] | None = None, waves: list[NDArray[np.int16]] | None = None) -> TrainResult:
    """Train a `Recogniser` as `config` says into the run folder `out` (or resume it).

    The utterances are read from ``config.data`` unless given (`waves`: their
    waveforms, if already read with `read_waves`). The manifest's own split is
    used when every line has one, else a seeded split by speaker (the
    validation and test fractions of the speakers). On resume, the model,
    alphabet and split come from the run's last checkpoint.
    """
    from unrolled.training import Trainer

    data, train_config = config.data, config.train
    if utterances is None:
        utterances = read_utterances(data)
    if not utterances:
        raise ValueError("no utterances to train on")
    perturbation = data.perturbation()
    saved = saved_run_config(out, kind=KIND) if resume else None
    if saved:
        record = None if saved["split"] is None else SplitRecord(**saved["split"])
    elif all(u.split is not None for u in utterances):
        record = None
    else:
        record = new_record(utterances, utterance_key, seed=data.split_seed, validation=data.validation,
                            test=data.test, grouped=True)
    index = {utterance_key(u): n for n, u in enumerate(utterances)}
    parts = split_utterances(utterances, record)
    if not parts["train"]:
        raise ValueError("no training utterances are left after the split; give more data or smaller fractions")
    if saved:
        alphabet = Alphabet(saved["alphabet"])
        recogniser = SpeechConfig(**saved["model"])
    else:
        alphabet = Alphabet.build(u.text for u in parts["train"])
        recogniser = config.model.recogniser(len(alphabet))
    unknown = sorted({ch for part in ("validation", "test") for u in parts[part] for ch in u.text} - set(
        alphabet.characters))
    if unknown:
        warnings.warn(f"validation or test transcripts hold characters no training transcript has "
                      f"({', '.join(map(repr, unknown))}); they can never be transcribed", stacklevel=2)
    train_rows = [index[utterance_key(u)] for u in parts["train"]]
    train_waves = [waves[n] for n in train_rows] if waves is not None else read_waves(parts["train"])
    fastest = max((*perturbation.speeds, 1.0)) if perturbation is not None else 1.0
    kept, targets = encode_utterances(parts["train"], alphabet, recogniser, fastest=fastest)
    if len(kept) < len(parts["train"]):
        warnings.warn(f"{len(parts['train']) - len(kept)} training utterance(s) are spoken too fast for the CTC "
                      "encoder's step rate and were left out (lower --stride or --levels to keep them)", stacklevel=2)
    if not kept:
        raise ValueError("every training utterance is too short for its transcript at this encoder's step rate; "
                         "lower --stride or --levels")
    torch.manual_seed(train_config.seed)
    network = Recogniser(recogniser)
    batches = SpeechData([train_waves[n] for n in kept], targets, batch_size=data.batch_size, seed=train_config.seed,
                         perturbation=perturbation)
    valid = parts["validation"]
    valid_waves = ([waves[index[utterance_key(u)]] for u in valid] if waves is not None
                   else read_waves(valid)) if valid else []
    extra = {"kind": KIND, "model": recogniser.to_json(), "alphabet": alphabet.characters,
             "max_seconds": data.max_seconds, "split": None if record is None else asdict(record),
             "batching": {"batch_size": data.batch_size,
                          "perturbation": None if perturbation is None else asdict(perturbation)}}
    extra.update(config.checkpoint_entry(saved))
    write_transcripts(Path(out) / TRANSCRIPTS, [u.text for u in parts["train"]])
    trainer = Trainer(network, batches, train_config, out, checkpoint_config=extra,
                      evaluate=_evaluator(valid, valid_waves, alphabet, recogniser, data.max_seconds))
    return trainer.fit(resume=resume)


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

    def evaluate(module: nn.Module) -> dict[str, float]:
        model = module.module if hasattr(module, "module") else module
        assert isinstance(model, Recogniser)
        total, characters = 0.0, 0
        with evaluating(model) as device:  # before the Transcriber, which puts the model in eval mode
            transcriber = Transcriber(model, alphabet, None, max_seconds)
            order = sorted(range(len(rows)), key=lambda k: len(waves[rows[k]]))
            for start in range(0, len(order), DECODE_BATCH):
                chunk = order[start : start + DECODE_BATCH]
                batch = SpeechBatch.make([as_float(waves[rows[k]]) for k in chunk], [targets[k] for k in chunk])
                loss, metrics = model.loss(to_device(batch, device))
                total += float(loss) * metrics["characters"]
                characters += int(metrics["characters"])
            outputs = transcriber.transcribe([as_float(waves[n]) for n in decodes])
        scores = error_rates([o.text for o in outputs], [utterances[n].text for n in decodes])
        return {"loss": total / max(characters, 1), "cer": scores["cer"], "wer": scores["wer"],
                "string_accuracy": scores["string_accuracy"]}

    return evaluate


# ---------------------------------------------------------------------- the command line


def read_inputs(paths: list[str], options: SpeechPredictOptions) -> list[Clip]:
    return read_clips(paths)


def show(result: Transcript) -> str:
    return f"{result.audio}\t{result.text}"


def read_eval(transcriber: Transcriber, path: str | None, options: SpeechEvalOptions) -> list[Utterance]:
    """The utterances of MANIFEST (or --dataset), the run's recorded part of them (--split), the first --limit."""
    utterances = read_utterances(SpeechDataConfig(manifest=path, dataset=options.dataset,
                                                  max_seconds=transcriber.max_seconds))
    if options.split != "all":
        record = as_record(transcriber.split)
        if record is None and any(u.split is None for u in utterances):
            raise ValueError("the run was trained on a manifest's own split, but this manifest has lines without one; "
                             "evaluate with --split all")
        utterances = split_utterances(utterances, record)[options.split]
        if not utterances:
            raise ValueError(f"the run's {options.split} part is empty")
    return utterances[: options.limit] if options.limit else utterances


def report(metrics: dict[str, Any], transcriber: Transcriber, options: SpeechEvalOptions, run: Path) -> str:
    """A table of the error rates and speed, greedy and beam side by side (and by --by's values)."""
    beams = [int(key[len("beam"):]) for key in metrics if key.startswith("beam")]
    lines = [f"{metrics['utterances']} utterances ({metrics['seconds']:.0f} s of audio), {options.split}, "
             f"{metrics['decoder']} decoder",
             f"{'decoding':<10} {'CER %':>7} {'WER %':>7} {'exact %':>8} {'x real time':>12}"]
    for beam in beams:
        s = metrics[f"beam{beam}"]
        name = "greedy" if beam == 1 else f"beam {beam}"
        lines.append(f"{name:<10} {100 * s['cer']:7.2f} {100 * s['wer']:7.2f} {100 * s['string_accuracy']:8.2f} "
                     f"{s['real_time']:12.1f}")
    if "warps" in metrics[f"beam{beams[-1]}"]:
        lines.append("clips decoded at each warp: " + ", ".join(
            f"{alpha} {count}" for alpha, count in metrics[f"beam{beams[-1]}"]["warps"].items()))
    if options.by:
        lines.append(f"\nby {options.by}: {'utterances':>10} " + " ".join(
            f"{'greedy' if beam == 1 else f'beam {beam}'} CER % / WER %".rjust(22) for beam in beams))
        for value in metrics[f"beam{beams[0]}"]["by"]:
            cells = [metrics[f"beam{beam}"]["by"][value] for beam in beams]
            lines.append(f"{value:<{len(options.by) + 4}} {cells[0]['utterances']:>10} " + " ".join(
                f"{100 * c['cer']:.2f} / {100 * c['wer']:.2f}".rjust(22) for c in cells))
    return "\n".join(lines)


APP = Application(
    name="speech",
    summary="speech recognition (log-mel, pyramidal BiLSTM, CTC / attention)",
    config=SpeechAppConfig, fit=fit, predictor=Transcriber, predict_options=SpeechPredictOptions,
    eval_options=SpeechEvalOptions, read_inputs=read_inputs, show=show, read_eval=read_eval, report=report,
    aliases={"predict": ("transcribe",)}, loss_unit=" nats/char",
    input_help="audio files (any format soundfile reads, any rate and channel count); printed as 'file TAB "
               "transcript'; audio longer than --chunk seconds is transcribed in pieces cut at pauses",
    data_help="JSON-lines manifest (default: --dataset)")
