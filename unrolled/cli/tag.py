"""`unrolled tag train | predict | eval`: a tag for every token (a bidirectional recurrent tagger)."""

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

TAG_TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "schedule": "constant", "warmup": 0, "clip": 5.0,
    "max_epochs": 10, "eval_every": None, "early_stop": 3,
}


def add_tag_commands(commands: Any) -> None:
    tag = commands.add_parser("tag", help="sequence tagging (a label per token): train, predict, evaluate",
                              description="Tag every token with a bidirectional recurrent network.")
    actions = tag.add_subparsers(dest="action", required=True, metavar="ACTION")

    train = actions.add_parser(
        "train", help="train on a CoNLL-style file or a named dataset",
        description="Train a tagger on a CoNLL-style file (token and tag per line, blank line between sentences). "
                    "The data is split once (recorded in the checkpoint); checkpoints go to OUT/best and OUT/last.")
    train.add_argument("data", nargs="?", metavar="DATA", help="CoNLL-style file")
    train.add_argument("--dataset", help="a named dataset instead of a file (known: restore)")
    train.add_argument("--out", required=True, metavar="RUN", help="run folder for checkpoints and metrics")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    data = train.add_argument_group("data")
    data.add_argument("--token-column", type=int, default=0, help="column of the tokens (default: 0)")
    data.add_argument("--tag-column", type=int, default=-1, help="column of the tags (default: -1, the last)")
    data.add_argument("--validation-data", metavar="FILE", help="a separate validation file (then DATA is not split)")
    data.add_argument("--validation", type=fraction, default=0.1, help="fraction for validation (default: 0.1)")
    data.add_argument("--test", type=fraction, default=0.1, help="fraction for testing (default: 0.1)")
    data.add_argument("--split-seed", type=int, default=0, help="seed of the shuffled split (default: 0)")
    data.add_argument("--limit", type=positive_int, metavar="N", help="use only the first N sentences")
    data.add_argument("--lowercase", action="store_true", help="lower-case tokens before looking them up")
    data.add_argument("--min-freq", type=positive_int, default=1,
                      help="words seen fewer times in training become <unk> (default: 1)")
    data.add_argument("--max-len", type=positive_int, default=200,
                      help="tokens per training sentence; longer ones are cut (default: 200)")
    data.add_argument("--batch", type=positive_int, default=32, help="sentences per batch (default: 32)")
    model = train.add_argument_group("model")
    model.add_argument("--embedding", type=positive_int, default=100, help="word embedding size (default: 100)")
    model.add_argument("--chars", type=non_negative_int, default=0,
                       help="character features per word (a char-BiLSTM of this size); 0: none (default: 0)")
    model.add_argument("--cell", choices=tuple(CELLS), default="lstm", help="cell type (default: lstm)")
    model.add_argument("--hidden", type=positive_int, default=100, help="units per direction (default: 100)")
    model.add_argument("--layers", type=positive_int, default=1, help="stacked layers (default: 1)")
    model.add_argument("--dropout", type=fraction, default=0.5, help="dropout (default: 0.5)")
    add_train_options(train, **TAG_TRAIN_DEFAULTS)
    train.set_defaults(handler=tag_train)

    predict = actions.add_parser(
        "predict", help="tag sentences: one per line of FILE or stdin, tokens separated by spaces",
        description="Print each input sentence in CoNLL form (token TAB tag, blank line after each sentence), "
                    "or JSON lines with --json. A tagger trained on the restore task prints the restored text "
                    "of each line instead (any text: its words are lower-cased and its punctuation dropped).")
    predict.add_argument("run", metavar="RUN", help="run folder or checkpoint folder")
    predict.add_argument("file", nargs="?", default="-", metavar="FILE", help="input file, - for stdin (default)")
    predict.add_argument("--json", action="store_true", help="JSON lines {tokens, tags}")
    predict.set_defaults(handler=tag_predict)

    evaluate = actions.add_parser("eval", help="token accuracy, macro-F1 and per-tag scores on a CoNLL-style file",
                                  description="Evaluate a trained tagger; writes the confusion matrix as a PNG.")
    evaluate.add_argument("run", metavar="RUN", help="run folder or checkpoint folder")
    evaluate.add_argument("data", nargs="?", metavar="DATA", help="CoNLL-style file")
    evaluate.add_argument("--dataset", help="a named dataset instead of a file (known: restore)")
    evaluate.add_argument("--split", choices=("all", "train", "validation", "test"), default="all",
                          help="evaluate on this part of the run's split (default: all of DATA)")
    evaluate.add_argument("--token-column", type=int, default=0, help="column of the tokens (default: 0)")
    evaluate.add_argument("--tag-column", type=int, default=-1, help="column of the tags (default: -1)")
    evaluate.add_argument("--limit", type=positive_int, metavar="N", help="the run's --limit, if it had one")
    evaluate.add_argument("--confusion", metavar="PNG", help="where to write the confusion matrix "
                                                              "(default: RUN/confusion-<split>.png)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(handler=tag_eval)


def read_sentences(args: argparse.Namespace) -> list[Any]:
    from unrolled.data.conll import read_conll

    path = data_file(args, what="a CoNLL-style file", dataset="restore")
    sentences = read_conll(path, token_column=args.token_column, tag_column=args.tag_column)
    return sentences[: args.limit] if args.limit else sentences


def tag_train(args: argparse.Namespace) -> int:
    from unrolled.apps import tag
    from unrolled.data.conll import read_conll

    sentences = read_sentences(args)
    validation = (read_conll(Path(args.validation_data), token_column=args.token_column, tag_column=args.tag_column)
                  if args.validation_data else None)
    options = {"embedding": args.embedding, "cell": args.cell, "hidden": args.hidden, "layers": args.layers,
               "dropout": args.dropout}
    if args.chars:
        options["chars"] = args.chars
    result = tag.fit(sentences, args.out, model_options=options, train=train_config(args),
                     lowercase=args.lowercase, chars=args.chars > 0, min_freq=args.min_freq, max_len=args.max_len,
                     task="restore" if args.dataset == "restore" else "plain", validation_sentences=validation,
                     validation=args.validation, test=args.test, split_seed=args.split_seed, batch_size=args.batch,
                     eval_every=args.eval_every, resume=args.resume)
    return report_training(result, args.out)


def tag_predict(args: argparse.Namespace) -> int:
    from unrolled.apps.tag import SequenceTagger, restoration_input
    from unrolled.data.text import read_text

    tagger = SequenceTagger.load(args.run)
    raw = sys.stdin.read() if args.file == "-" else read_text([Path(args.file)])
    lines = [line for line in raw.splitlines() if line.strip()]
    if tagger.task == "restore" and not args.json:
        for text in tagger.restore(lines):
            print(text)
        return 0
    token_lists = [restoration_input(line) if tagger.task == "restore" else line.split() for line in lines]
    for tokens, tags in zip(token_lists, tagger.tag(token_lists), strict=True):
        if args.json:
            print(json.dumps({"tokens": tokens, "tags": tags}))
        else:
            print("".join(f"{token}\t{t}\n" for token, t in zip(tokens, tags, strict=True)))
    return 0


def tag_eval(args: argparse.Namespace) -> int:
    from unrolled.apps.tag import SequenceTagger, SplitRecord, split_sentences
    from unrolled.metrics import format_report, plot_confusion

    tagger = SequenceTagger.load(args.run)
    sentences = read_sentences(args)
    sentences = run_part(sentences, tagger.split, args.split, args.run, split_sentences, SplitRecord)
    report = tagger.evaluate(sentences)
    run = Path(args.run)
    folder = run.parent if (run / "config.json").is_file() else run
    confusion = Path(args.confusion) if args.confusion else folder / f"confusion-{args.split}.png"
    plot_confusion(report["confusion"], tagger.tags.names, confusion,
                   title=f"tagger, {args.split} ({report['examples']} tokens)")
    report["confusion_png"] = str(confusion)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report).replace("examples)", "tokens)", 1))
        print(f"sentence accuracy {report['sentence_accuracy']:.4f} ({report['sentences']} sentences); "
              f"confusion matrix: {confusion}")
    return 0
