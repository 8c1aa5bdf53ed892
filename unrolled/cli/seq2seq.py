"""`unrolled seq2seq train | translate | eval`: an encoder-decoder with attention and beam search."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from unrolled.cells import CELLS
from unrolled.cli.common import (
    add_train_options,
    data_file,
    fraction,
    non_negative_int,
    positive_int,
    report_training,
    run_part,
    train_config,
)

SEQ2SEQ_TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "schedule": "constant", "warmup": 0, "clip": 5.0,
    "max_epochs": 10, "eval_every": None, "early_stop": None,
}
ATTENTION_CHOICES = ("none", "dot", "general", "scaled", "additive")
DATASETS = "cmudict, cmudict-nostress, chatterbot, bible-en-es"
CHARACTER_SOURCES = ("cmudict", "cmudict-nostress")  # datasets whose sources are spelled words


def add_seq2seq_commands(commands: Any) -> None:
    seq2seq = commands.add_parser(
        "seq2seq", help="sequence to sequence (translation, auto-reply, pronunciation): train, translate, evaluate",
        description="An encoder-decoder over source-target pairs, with attention and beam search.")
    actions = seq2seq.add_subparsers(dest="action", required=True, metavar="ACTION")

    train = actions.add_parser(
        "train", help="train on pairs (TSV 'source TAB target', or JSON lines) or a named dataset",
        description="Train an encoder-decoder on source-target pairs. The pairs are split once by source (every "
                    "target of a source on one side; recorded in the checkpoint); checkpoints go to OUT/best and "
                    "OUT/last.")
    train.add_argument("data", nargs="?", metavar="DATA", help="pairs: .tsv (source TAB target) or .jsonl")
    train.add_argument("--dataset", help=f"a named dataset instead of a file (known: {DATASETS})")
    train.add_argument("--out", required=True, metavar="RUN", help="run folder for checkpoints and metrics")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    data = train.add_argument_group("data")
    add_pair_format_options(data)
    data.add_argument("--validation-data", metavar="FILE", help="a separate validation file (then DATA is not split)")
    data.add_argument("--validation", type=fraction, default=0.05,
                      help="fraction of the distinct sources for validation (default: 0.05)")
    data.add_argument("--test", type=fraction, default=0.05,
                      help="fraction of the distinct sources for testing (default: 0.05)")
    data.add_argument("--split-seed", type=int, default=0, help="seed of the shuffled split (default: 0)")
    data.add_argument("--limit", type=positive_int, metavar="N", help="use only the first N pairs")
    data.add_argument("--source-tokens", choices=("char", "word", "subword"), default=None,
                      help="how sources are cut into tokens: characters, whitespace-separated words, or "
                           "sentencepiece subwords (default: word; char for the cmudict datasets)")
    data.add_argument("--target-tokens", choices=("char", "word", "subword"), default="word",
                      help="how targets are cut into tokens (default: word)")
    data.add_argument("--subword-vocab", type=positive_int, default=8000,
                      help="sentencepiece pieces per side, learnt from the training side (default: 8000)")
    data.add_argument("--min-freq", type=positive_int, default=1,
                      help="tokens seen fewer times in training become <unk> (default: 1)")
    data.add_argument("--max-len", type=positive_int, default=100,
                      help="tokens per side: longer sources are cut, pairs with longer targets left out "
                           "(default: 100)")
    data.add_argument("--batch", type=positive_int, default=64, help="pairs per batch (default: 64)")
    model = train.add_argument_group("model")
    model.add_argument("--embedding", type=positive_int, default=256, help="token embedding size (default: 256)")
    model.add_argument("--cell", choices=tuple(CELLS), default="lstm", help="cell type (default: lstm)")
    model.add_argument("--hidden", type=positive_int, default=256,
                       help="units per cell (per direction in the encoder) (default: 256)")
    model.add_argument("--layers", type=positive_int, default=1,
                       help="stacked layers, encoder and decoder (default: 1)")
    model.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=True,
                       help="a bidirectional encoder (default: yes)")
    model.add_argument("--attention", choices=ATTENTION_CHOICES, default="general",
                       help="none: the encoder's final state is the only link (the lecture's versions 1 and 2); "
                            "dot, general, scaled (Luong), additive (Bahdanau) (default: general)")
    model.add_argument("--input-feed", action=argparse.BooleanOptionalAction, default=True,
                       help="feed the last attentional state to the next step (Luong 2015) (default: yes)")
    model.add_argument("--dropout", type=fraction, default=0.2, help="dropout (default: 0.2)")
    model.add_argument("--tie-embeddings", action="store_true",
                       help="the output layer shares the target embedding (needs --embedding = --hidden)")
    model.add_argument("--label-smoothing", type=fraction, default=0.0, help="label smoothing (default: 0)")
    model.add_argument("--scheduled-sampling", type=fraction, default=0.0, metavar="P",
                       help="feed the model's own prediction instead of the true token with probability up to P "
                            "(Bengio et al. 2015) (default: 0)")
    model.add_argument("--sampling-ramp", type=positive_int, default=10_000, metavar="STEPS",
                       help="updates over which that probability rises linearly from 0 to P (default: 10000)")
    add_train_options(train, **SEQ2SEQ_TRAIN_DEFAULTS)
    train.set_defaults(handler=seq2seq_train)

    translate = actions.add_parser(
        "translate", help="translate lines of FILE or stdin, one output line per input line",
        description="Decode each input line by beam search (--beam 1 is greedy) and print its best output; "
                    "--n-best K prints K outputs per line as 'rank TAB score TAB text', with a blank line after "
                    "each input's list; --json prints one JSON object per input.")
    translate.add_argument("run", metavar="RUN", help="run folder or checkpoint folder")
    translate.add_argument("file", nargs="?", default="-", metavar="FILE", help="input file, - for stdin (default)")
    add_decoding_options(translate)
    translate.add_argument("--n-best", type=positive_int, default=1, help="outputs per input (default: 1)")
    translate.add_argument("--max-len", type=positive_int, metavar="N",
                           help="most tokens generated (default: the run's --max-len, and </s>)")
    translate.add_argument("--min-len", type=non_negative_int, default=0,
                           help="fewest tokens before </s> may come (default: 0)")
    translate.add_argument("--no-repeat-ngram", type=non_negative_int, default=0, metavar="N",
                           help="never repeat an n-gram of this size in an output; 0: off (default: 0)")
    translate.add_argument("--sample", action="store_true",
                           help="draw each output from the model's distribution instead of searching for the most "
                                "likely (varied replies); takes --temperature, --top-k, --top-p, --seed")
    translate.add_argument("--temperature", type=float, default=1.0, help="--sample: temperature (default: 1)")
    translate.add_argument("--top-k", type=positive_int, help="--sample: keep only the k most likely tokens")
    translate.add_argument("--top-p", type=float, help="--sample: keep the smallest set of tokens of mass p")
    translate.add_argument("--seed", type=int, help="--sample: random seed, for reproducible draws")
    translate.add_argument("--json", action="store_true",
                           help="JSON lines {source, outputs: [{text, score, normalised, finished}]}")
    translate.add_argument("--attention-map", metavar="PNG",
                           help="draw the attention of the first input's best output (source tokens by target "
                                "tokens) into this PNG")
    translate.set_defaults(handler=seq2seq_translate)

    evaluate = actions.add_parser(
        "eval", help="word/sequence error, token error, BLEU and chrF, greedy and beam side by side",
        description="Evaluate a trained model on pairs grouped by source (all targets of a source are its "
                    "references): sequence error (G2P's word error rate), token error (G2P's phoneme error rate), "
                    "BLEU and chrF (sacrebleu), for greedy decoding and for --beam.")
    evaluate.add_argument("run", metavar="RUN", help="run folder or checkpoint folder")
    evaluate.add_argument("data", nargs="?", metavar="DATA", help="pairs: .tsv or .jsonl")
    evaluate.add_argument("--dataset", help=f"a named dataset instead of a file (known: {DATASETS})")
    evaluate.add_argument("--split", choices=("all", "train", "validation", "test"), default="all",
                          help="evaluate on this part of the run's split (default: all of DATA)")
    add_pair_format_options(evaluate)
    evaluate.add_argument("--limit", type=positive_int, metavar="N", help="the run's --limit, if it had one")
    add_decoding_options(evaluate)
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(handler=seq2seq_eval)


def add_pair_format_options(group: Any) -> None:
    group.add_argument("--format", choices=("tsv", "jsonl"), help="the file's format (default: from its suffix)")
    group.add_argument("--source-field", default="source", help="JSON lines: the source field (default: source)")
    group.add_argument("--target-field", default="target", help="JSON lines: the target field (default: target)")


def add_decoding_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--beam", type=positive_int, default=5, help="beam size; 1 is greedy (default: 5)")
    parser.add_argument("--length-penalty", type=float, default=0.0, metavar="ALPHA",
                        help="GNMT length penalty alpha; 0 ranks by total log-probability (default: 0)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="inputs decoded at once (default: 64)")


def read_pairs_of(args: argparse.Namespace) -> list[Any]:
    from unrolled.data.pairs import read_pairs

    path = data_file(args, what="a pairs file (.tsv or .jsonl)", dataset="cmudict")
    pairs = read_pairs(path, format=args.format, source_field=args.source_field, target_field=args.target_field)
    return pairs[: args.limit] if args.limit else pairs


def seq2seq_train(args: argparse.Namespace) -> int:
    from unrolled.apps import seq2seq
    from unrolled.data.pairs import read_pairs

    pairs = read_pairs_of(args)
    validation = (read_pairs(Path(args.validation_data), format=args.format, source_field=args.source_field,
                             target_field=args.target_field) if args.validation_data else None)
    source_tokens = args.source_tokens or ("char" if args.dataset in CHARACTER_SOURCES else "word")
    options = {"embedding": args.embedding, "cell": args.cell, "hidden": args.hidden, "layers": args.layers,
               "bidirectional": args.bidirectional, "attention": args.attention, "input_feed": args.input_feed,
               "dropout": args.dropout, "tie_embeddings": args.tie_embeddings,
               "label_smoothing": args.label_smoothing, "scheduled_sampling": args.scheduled_sampling,
               "sampling_ramp": args.sampling_ramp}
    result = seq2seq.fit(pairs, args.out, model_options=options, train=train_config(args),
                         source_tokens=source_tokens, target_tokens=args.target_tokens, min_freq=args.min_freq,
                         max_len=args.max_len, subword_vocab=args.subword_vocab, validation_pairs=validation,
                         validation=args.validation, test=args.test, split_seed=args.split_seed,
                         batch_size=args.batch, eval_every=args.eval_every, resume=args.resume)
    return report_training(result, args.out, " nats/token")


def read_input_lines(file: str) -> list[str]:
    """The non-blank lines of FILE, or of stdin for "-"; a one-line error for text that is not UTF-8."""
    from unrolled.data.text import read_text

    if file != "-":
        return [line for line in read_text(Path(file)).split("\n") if line.strip()]
    data = sys.stdin.buffer.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"stdin is not valid UTF-8 at byte offset {error.start} ({error.reason}); convert it, "
                         "e.g. with iconv -t UTF-8") from None
    return [line for line in text.splitlines() if line.strip()]


def seq2seq_translate(args: argparse.Namespace) -> int:
    from unrolled.apps.seq2seq import Translator

    translator = Translator.load(args.run)
    lines = read_input_lines(args.file)
    if args.sample:
        if args.n_best > 1 or args.attention_map or args.json:
            raise ValueError("--sample draws one output per line: it takes no --n-best, --json or --attention-map")
        for text in translator.sample(lines, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                      seed=args.seed, max_length=args.max_len, batch_size=args.batch_size):
            print(text)
        return 0
    if args.n_best > args.beam:
        raise ValueError(f"--n-best {args.n_best} needs a beam at least as wide (--beam {args.beam})")
    results = translator.translate(lines, beam=args.beam, n_best=args.n_best, length_penalty=args.length_penalty,
                                   max_length=args.max_len, min_length=args.min_len,
                                   no_repeat_ngram=args.no_repeat_ngram, batch_size=args.batch_size,
                                   attention=args.attention_map is not None)
    for line, outputs in zip(lines, results, strict=True):
        if args.json:
            print(json.dumps({"source": line, "outputs": [
                {"text": o.text, "score": o.score, "normalised": o.normalised, "finished": o.finished}
                for o in outputs]}, ensure_ascii=False))
        elif args.n_best > 1:
            print("".join(f"{rank}\t{o.normalised:.4f}\t{o.text}\n" for rank, o in enumerate(outputs, start=1)))
        else:
            print(outputs[0].text)
    if args.attention_map and results:
        from unrolled.apps.seq2seq import plot_attention

        best = results[0][0]
        if best.attention is None:
            raise ValueError(f"{args.run} was trained without attention (--attention none): there is no map to draw")
        plot_attention(best, args.attention_map)
        print(f"attention map of input 1: {args.attention_map}", file=sys.stderr)
    return 0


def seq2seq_eval(args: argparse.Namespace) -> int:
    from unrolled.apps.seq2seq import SplitRecord, Translator, split_pairs

    translator = Translator.load(args.run)
    pairs = read_pairs_of(args)
    pairs = run_part(pairs, translator.split, args.split, args.run, split_pairs, SplitRecord)
    beams = (1,) if args.beam == 1 else (1, args.beam)
    report = translator.evaluate(pairs, beams=beams, length_penalty=args.length_penalty, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['sources']} sources ({report['pairs']} pairs), {args.split}")
    print(f"{'decoding':<10} {'seq err %':>9} {'tok err %':>9} {'BLEU':>6} {'chrF':>6} {'inputs/s':>9}")
    for beam in beams:
        s = report[f"beam{beam}"]
        name = "greedy" if beam == 1 else f"beam {beam}"
        print(f"{name:<10} {100 * s['sequence_error']:9.2f} {100 * s['token_error']:9.2f} {s['bleu']:6.2f} "
              f"{s['chrf']:6.2f} {s['per_second']:9.1f}")
    return 0
