"""`unrolled speech train | transcribe | eval`: log-mel frames, a pyramidal BiLSTM, CTC and attention decoders."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unrolled.cli.common import (
    add_train_options,
    data_file,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    report_training,
    train_config,
)

if TYPE_CHECKING:
    from unrolled.data.audio import PerturbConfig

# The recipe bench/speech.py measured for a 30-minute budget on one thread: lr 1e-3 with 200 warm-up steps, batches
# of 32 and 50 vectors a second were still at 97% validation CER (CTC) after 13 minutes; this reached 3.2% in 30.
SPEECH_TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam", "lr": 2e-3, "weight_decay": 0.0, "schedule": "cosine", "warmup": 50, "clip": 5.0,
    "max_epochs": 20, "eval_every": None, "early_stop": None,
}
DATASETS = "spoken-digits, spoken-sentences"
# Encoder shape per decoder, where --layers / --levels are not given: CTC needs a step for every character
# (speech reaches 30 characters a second here), so it keeps the 33 vectors a second; attention reads 8.3.
ENCODER_DEFAULTS = {"ctc": (2, 0), "attention": (1, 2), "joint": (2, 0)}
# Shallow fusion's lambda per decoder and CTC's beta: what bench/speech.py chose on spoken-digits validation clips
# (the attention speller already models the text, so it takes less of the LM)
LM_WEIGHT = {"ctc": 1.0, "attention": 0.25, "joint": 0.25}
LM_BONUS = 2.0


def add_speech_commands(commands: Any) -> None:
    speech = commands.add_parser(
        "speech", help="speech recognition (log-mel, pyramidal BiLSTM, CTC / attention): train, transcribe, eval",
        description="Audio in, characters out: log-mel frames, a pyramidal bidirectional LSTM (Listen, Attend and "
                    "Spell), then CTC, an attention decoder, or both trained jointly.")
    actions = speech.add_subparsers(dest="action", required=True, metavar="ACTION")

    train = actions.add_parser(
        "train", help="train on a JSON-lines manifest or a named dataset",
        description="Train a recogniser. MANIFEST has one JSON object a line, {\"audio\": path, \"text\": "
                    "transcript}, paths relative to the manifest; any rate and channel count (mixed down, resampled "
                    "to 16 kHz). When every line has \"split\" (train, validation, test) that split is used, else a "
                    "seeded split by speaker (the \"speaker\" or \"voice\" key, else by line). Checkpoints go to "
                    "OUT/best and OUT/last.")
    train.add_argument("data", nargs="?", metavar="MANIFEST", help="JSON-lines manifest")
    train.add_argument("--dataset", help=f"a named dataset instead of a manifest (known: {DATASETS})")
    train.add_argument("--out", required=True, metavar="RUN", help="run folder for checkpoints and metrics")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    data = train.add_argument_group("data")
    data.add_argument("--validation", type=fraction, default=0.05,
                      help="fraction of the speakers for validation, without a split in the data (default: 0.05)")
    data.add_argument("--test", type=fraction, default=0.05,
                      help="fraction of the speakers for testing, without a split in the data (default: 0.05)")
    data.add_argument("--split-seed", type=int, default=0, help="seed of the split (default: 0)")
    data.add_argument("--max-seconds", type=positive_float, default=30.0,
                      help="clips longer than this are refused when the manifest is read (default: 30)")
    data.add_argument("--batch", type=positive_int, default=16, help="utterances per batch (default: 16)")
    data.add_argument("--no-perturb", action="store_true",
                      help="train on the waveforms as they are (default: speed 0.9/1.0/1.1, volume, noise)")
    data.add_argument("--speeds", type=positive_float, nargs="+", metavar="F",
                      help="speed perturbation: each utterance is played F times faster (and higher), F drawn "
                           "from these factors, each in [0.5, 2] (default: 0.9 1.0 1.1)")
    model = train.add_argument_group("model")
    model.add_argument("--decoder", choices=("ctc", "attention", "joint"), default="ctc",
                       help="ctc: a character (or blank) per encoder step; attention: LAS's speller; joint: both "
                            "heads trained together, decoded with attention (default: ctc)")
    model.add_argument("--attention", choices=("location", "content"), default="location",
                       help="the attention's score: location-aware (Chorowski et al. 2015) or content only "
                            "(default: location)")
    model.add_argument("--hidden", type=positive_int, default=192, help="encoder units per direction (default: 192)")
    model.add_argument("--layers", type=positive_int,
                       help="BiLSTM layers at full frame rate (default: 2 for ctc and joint, 1 for attention)")
    model.add_argument("--levels", type=non_negative_int,
                       help="pyramid levels above them, each halving the steps (default: 0 for ctc and joint, 2 "
                            "for attention)")
    model.add_argument("--stack", type=positive_int, default=3, help="log-mel frames stacked per vector (default: 3)")
    model.add_argument("--stride", type=positive_int, default=3,
                       help="keep every n-th stacked vector: 100 / n vectors a second (default: 3)")
    model.add_argument("--decoder-hidden", type=positive_int, default=256, help="speller LSTM units (default: 256)")
    model.add_argument("--ctc-weight", type=fraction, default=0.3,
                       help="CTC's share of the joint loss (default: 0.3)")
    model.add_argument("--dropout", type=fraction, default=0.1, help="dropout between layers (default: 0.1)")
    model.add_argument("--no-spec-augment", action="store_true",
                       help="no SpecAugment masks (default: 2 frequency and 2 time masks per utterance)")
    model.add_argument("--band-warp", type=fraction, default=0.15, metavar="W",
                       help="warp each utterance's mel axis by a factor in [1 - W, 1 + W], a stand-in for vocal "
                            "tract length perturbation; 0 for none (default: 0.15; with SpecAugment only)")
    model.add_argument("--pitch-shift", type=non_negative_float, default=0.0, metavar="S",
                       help="shift each utterance's pitch by up to S semitones up or down while training, its "
                            "spectral envelope kept; 0 for none (default: 0; with SpecAugment only)")
    add_train_options(train, **SPEECH_TRAIN_DEFAULTS)
    train.set_defaults(handler=speech_train)

    transcribe = actions.add_parser(
        "transcribe", help="transcribe audio files, one line per file",
        description="Transcribe each audio file (any format soundfile reads, any rate and channel count); prints "
                    "'file TAB transcript'. Audio longer than --chunk seconds is transcribed in pieces cut at "
                    "pauses.")
    transcribe.add_argument("run", metavar="RUN", help="run folder or checkpoint folder")
    transcribe.add_argument("audio", nargs="+", metavar="AUDIO", help="audio files")
    add_decoding_options(transcribe)
    transcribe.add_argument("--chunk", type=positive_float, default=20.0, metavar="SECONDS",
                            help="longest piece transcribed at once (default: 20)")
    transcribe.add_argument("--one-voice", action="store_true",
                            help="with --warp-search or --warps: the files are one speaker's, so they share the warp "
                                 "their pooled confidence prefers")
    transcribe.add_argument("--json", action="store_true", help="JSON lines {audio, text, score, decoder, warp}")
    transcribe.set_defaults(handler=speech_transcribe)

    evaluate = actions.add_parser(
        "eval", help="CER, WER and string accuracy, greedy and beam side by side",
        description="Score a trained recogniser on a manifest: character and word error rates (jiwer) and the "
                    "share of utterances transcribed exactly, for greedy decoding and for --beam.")
    evaluate.add_argument("run", metavar="RUN", help="run folder or checkpoint folder")
    evaluate.add_argument("data", nargs="?", metavar="MANIFEST", help="JSON-lines manifest")
    evaluate.add_argument("--dataset", help=f"a named dataset instead of a manifest (known: {DATASETS})")
    evaluate.add_argument("--split", choices=("all", "train", "validation", "test"), default="test",
                          help="evaluate on this part of the run's split (default: test)")
    evaluate.add_argument("--limit", type=positive_int, help="score only the first N utterances of the part")
    add_decoding_options(evaluate)
    evaluate.add_argument("--by", metavar="KEY", help="also score the utterances of each value of this manifest "
                          "key apart (e.g. voice or speaker); lines without it are grouped as '-'")
    evaluate.add_argument("--warp-by", metavar="KEY",
                          help="with --warp-search or --warps: the clips of each value of this manifest key (e.g. "
                               "speaker) share the warp their pooled confidence prefers")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(handler=speech_eval)


def add_decoding_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--beam", type=positive_int, default=8, help="beam size; 1 is greedy (default: 8)")
    parser.add_argument("--decoder", choices=("ctc", "attention", "joint"),
                        help="how a joint run decodes: attention (the default), ctc, or joint: the attention "
                             "beam's hypotheses rescored with CTC; other runs have one head")
    parser.add_argument("--ctc-weight", type=float, metavar="LAMBDA",
                        help="--decoder joint: CTC's share of the score, in [0, 1] (default: the run's training "
                             "--ctc-weight)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="clips decoded at once (default: 16)")
    parser.add_argument("--length-penalty", type=float, default=1.0, metavar="ALPHA",
                        help="GNMT length penalty of the attention beam; 0 ranks by total log-probability, which "
                             "favours transcripts cut short (default: 1)")
    parser.add_argument("--lm", metavar="TEXT", help="a character n-gram language model counted from this text "
                        "file, one transcript per line, joins the beam search (shallow fusion); a training run "
                        "writes its own transcripts to RUN/transcripts.txt")
    parser.add_argument("--lm-weight", type=float, metavar="LAMBDA",
                        help=f"weight of the language model's log-probability (default: {LM_WEIGHT['ctc']} for "
                             f"CTC, {LM_WEIGHT['attention']} for attention)")
    parser.add_argument("--lm-bonus", type=float, default=LM_BONUS, metavar="BETA",
                        help=f"CTC: score added per character with --lm, against its pull to short text; attention "
                             f"uses --length-penalty instead (default: {LM_BONUS})")
    parser.add_argument("--lm-order", type=positive_int, default=6, metavar="N",
                        help="characters per n-gram of the language model (default: 6)")
    warp = parser.add_mutually_exclusive_group()
    warp.add_argument("--warp-search", action="store_true",
                      help="decode each clip with its mel bands warped by whichever of 0.83, 0.91, 1, 1.1 and 1.2 "
                           "the model is most confident at (test-time vocal tract length normalisation for "
                           "voices unlike the training ones; the encoder reads the five warped copies in one batch)")
    warp.add_argument("--warps", type=positive_float, nargs="+", metavar="F",
                      help="the warp search over these factors instead, each in [0.5, 2]; one factor warps every "
                           "clip by it (above 1 moves formants down)")


def warps_of(args: argparse.Namespace) -> tuple[float, ...]:
    """The warp search's factors: --warps, the benchmark grid for --warp-search, else none (1)."""
    from unrolled.apps.speech import WARP_GRID

    return tuple(args.warps) if args.warps else WARP_GRID if args.warp_search else (1.0,)


def check_ctc_weight(args: argparse.Namespace, transcriber: Any) -> None:
    """--ctc-weight only beside --decoder joint (its range `Transcriber.transcribe` checks)."""
    if args.ctc_weight is not None and transcriber.check_decoder(args.decoder) != "joint":
        raise ValueError("--ctc-weight weighs CTC in joint decoding; give --decoder joint with it (a joint run)")


def fusion_of(args: argparse.Namespace, transcriber: Any) -> Any:
    """The `Fusion` that --lm, --lm-weight, --lm-bonus and --lm-order ask for; None without --lm."""
    from unrolled.apps.speech import read_language_model
    from unrolled.decoding.ngram import Fusion

    if args.lm is None:
        return None
    if args.beam == 1:
        raise ValueError("--lm joins the beam search; give --beam 2 or more")
    if args.lm_weight is not None and args.lm_weight < 0:
        raise ValueError(f"--lm-weight must be at least 0, got {args.lm_weight}")
    lm = read_language_model(args.lm, transcriber.alphabet, order=args.lm_order)
    head = transcriber.check_decoder(args.decoder)
    return Fusion(lm, LM_WEIGHT[head] if args.lm_weight is None else args.lm_weight, args.lm_bonus)


def perturbation_config(args: argparse.Namespace) -> PerturbConfig | None:
    """The training perturbations: none with --no-perturb, else the defaults with --speeds' factors."""
    from unrolled.data.audio import PerturbConfig

    if args.no_perturb:
        if args.speeds:
            raise ValueError("--speeds sets the speed perturbation, which --no-perturb turns off; give one of them")
        return None
    wrong = [f"{factor:g}" for factor in args.speeds or () if not 0.5 <= factor <= 2.0]
    if wrong:
        raise ValueError(f"a speed factor must lie in [0.5, 2], got {', '.join(wrong)}")
    return PerturbConfig(speeds=tuple(args.speeds)) if args.speeds else PerturbConfig()


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """`unrolled.models.speech.SpeechConfig`'s fields from ``speech train``'s options (the vocabulary aside)."""
    from unrolled.features import FeatureConfig, SpecAugmentConfig

    layers, levels = ENCODER_DEFAULTS[args.decoder]
    augment = None if args.no_spec_augment else SpecAugmentConfig(band_warp=args.band_warp,
                                                                  pitch_shift=args.pitch_shift)
    return {"features": FeatureConfig(stack=args.stack, stride=args.stride), "hidden": args.hidden,
            "layers": args.layers or layers, "levels": levels if args.levels is None else args.levels,
            "dropout": args.dropout, "decoder": args.decoder, "attention": args.attention,
            "decoder_hidden": args.decoder_hidden, "ctc_weight": args.ctc_weight, "spec_augment": augment}


def speech_train(args: argparse.Namespace) -> int:
    from unrolled.apps import speech
    from unrolled.data.speech import read_manifest

    manifest = data_file(args, what="a JSON-lines manifest", dataset="spoken-digits")
    utterances = read_manifest(manifest, max_seconds=args.max_seconds)
    result = speech.fit(utterances, args.out, model_options=model_options(args), train=train_config(args),
                        validation=args.validation, test=args.test, split_seed=args.split_seed, batch_size=args.batch,
                        perturbation=perturbation_config(args), max_seconds=args.max_seconds,
                        eval_every=args.eval_every, resume=args.resume)
    return report_training(result, args.out, " nats/char")


def speech_transcribe(args: argparse.Namespace) -> int:
    from unrolled.apps.speech import Transcriber
    from unrolled.data.audio import AudioError, is_silent, read_audio
    from unrolled.data.speech import MIN_SECONDS
    from unrolled.features import SAMPLE_RATE

    transcriber = Transcriber.load(args.run)
    waves = []
    for name in args.audio:
        try:
            wave = read_audio(Path(name))
        except AudioError as error:
            raise ValueError(str(error)) from None
        if len(wave) < MIN_SECONDS * SAMPLE_RATE:
            raise ValueError(f"{name} lasts {len(wave) / SAMPLE_RATE:.3f} s, shorter than the {MIN_SECONDS:g} s a "
                             "word needs")
        if is_silent(wave):
            raise ValueError(f"{name} is silent (no sample above -60 dB of full scale): nothing to transcribe")
        waves.append(wave)
    check_ctc_weight(args, transcriber)
    if args.one_voice and len(warps_of(args)) == 1:
        raise ValueError("--one-voice shares the warp search's choice; give --warp-search or --warps with two "
                         "factors or more")
    outputs = transcriber.transcribe(waves, beam=args.beam, decoder=args.decoder, batch_size=args.batch_size,
                                     chunk_seconds=args.chunk, length_penalty=args.length_penalty,
                                     fusion=fusion_of(args, transcriber), ctc_weight=args.ctc_weight,
                                     warps=warps_of(args), groups=[0] * len(waves) if args.one_voice else None)
    for name, output in zip(args.audio, outputs, strict=True):
        if args.json:
            print(json.dumps({"audio": name, "text": output.text, "score": output.score, "decoder": output.decoder,
                              "warp": output.warp}, ensure_ascii=False))
        else:
            print(f"{name}\t{output.text}")
    return 0


def speech_eval(args: argparse.Namespace) -> int:
    from unrolled.apps.speech import SplitRecord, Transcriber, split_utterances
    from unrolled.data.speech import read_manifest

    transcriber = Transcriber.load(args.run)
    manifest = data_file(args, what="a JSON-lines manifest", dataset="spoken-digits")
    utterances = read_manifest(manifest, max_seconds=transcriber.max_seconds)
    if args.split != "all":
        record = None if transcriber.split is None else SplitRecord(**transcriber.split)
        if record is None and any(u.split is None for u in utterances):
            raise ValueError(f"{args.run} was trained on a manifest's own split, but this manifest has lines "
                             "without one; evaluate with --split all")
        utterances = split_utterances(utterances, record)[args.split]
        if not utterances:
            raise ValueError(f"the run's {args.split} part is empty")
    utterances = utterances[: args.limit] if args.limit else utterances
    beams = (1,) if args.beam == 1 else (1, args.beam)
    check_ctc_weight(args, transcriber)
    report = transcriber.evaluate(utterances, beams=beams, decoder=args.decoder, batch_size=args.batch_size,
                                  length_penalty=args.length_penalty, fusion=fusion_of(args, transcriber),
                                  by=args.by, ctc_weight=args.ctc_weight, warps=warps_of(args), warp_by=args.warp_by)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['utterances']} utterances ({report['seconds']:.0f} s of audio), {args.split}, "
          f"{report['decoder']} decoder")
    print(f"{'decoding':<10} {'CER %':>7} {'WER %':>7} {'exact %':>8} {'x real time':>12}")
    for beam in beams:
        s = report[f"beam{beam}"]
        name = "greedy" if beam == 1 else f"beam {beam}"
        print(f"{name:<10} {100 * s['cer']:7.2f} {100 * s['wer']:7.2f} {100 * s['string_accuracy']:8.2f} "
              f"{s['real_time']:12.1f}")
    if "warps" in report[f"beam{beams[-1]}"]:
        print("clips decoded at each warp: " + ", ".join(
            f"{alpha} {count}" for alpha, count in report[f"beam{beams[-1]}"]["warps"].items()))
    if args.by:
        print(f"\nby {args.by}: {'utterances':>10} " + " ".join(
            f"{'greedy' if beam == 1 else f'beam {beam}'} CER % / WER %".rjust(22) for beam in beams))
        for value in report[f"beam{beams[0]}"]["by"]:
            cells = [report[f"beam{beam}"]["by"][value] for beam in beams]
            print(f"{value:<{len(args.by) + 4}} {cells[0]['utterances']:>10} " + " ".join(
                f"{100 * c['cer']:.2f} / {100 * c['wer']:.2f}".rjust(22) for c in cells))
    return 0
