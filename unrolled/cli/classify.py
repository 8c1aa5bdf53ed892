"""`unrolled classify train | predict | eval`: sentence classification with an RNN or a CNN."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from unrolled.cells import CELLS
from unrolled.cli.common import add_train_options, data_file, fraction, positive_int, report_training, train_config

CLASSIFY_TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "schedule": "constant", "warmup": 0, "clip": 5.0,
    "max_epochs": 10, "eval_every": None, "early_stop": 3,
}
"""Adam at 1e-3 for up to 10 epochs, evaluated each epoch, stopping after 3 without a better validation loss."""


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """How labelled files are read: columns and format."""
    group = parser.add_argument_group("data format")
    group.add_argument("--text-column", default="text", metavar="NAME", help="column of the texts (default: text)")
    group.add_argument("--label-column", default="label", metavar="NAME",
                       help="column of the labels (default: label)")
    group.add_argument("--format", choices=("csv", "tsv", "jsonl"),
                       help="file format (default: from the suffix: .csv, .tsv/.tab/.txt, .jsonl/.json)")


def add_classify_commands(commands: Any) -> None:
    classify = commands.add_parser("classify", help="sentence classification (RNN or CNN): train, predict, evaluate",
                                   description="Classify sentences with a recurrent or a convolutional network.")
    actions = classify.add_subparsers(dest="action", required=True, metavar="ACTION")

    train = actions.add_parser(
        "train", help="train on a labelled CSV, TSV or JSON-lines file, or a named dataset",
        description="Train a sentence classifier. The data is split once (recorded in the checkpoint) into "
                    "train, validation and test parts; checkpoints go to OUT/best and OUT/last, metrics to "
                    "OUT/metrics.jsonl, the learning curve to OUT/curve.png.")
    train.add_argument("data", nargs="?", metavar="DATA", help="labelled file (CSV, TSV or JSON lines)")
    train.add_argument("--dataset", help="a named dataset instead of a file (known: mr)")
    train.add_argument("--out", required=True, metavar="RUN", help="run folder for checkpoints and metrics")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    add_data_options(train)
    split = train.add_argument_group("split and tokens")
    split.add_argument("--validation-data", metavar="FILE", help="a separate validation file (then DATA is not split)")
    split.add_argument("--validation", type=fraction, default=0.1,
                       help="fraction held out for validation (default: 0.1)")
    split.add_argument("--test", type=fraction, default=0.1, help="fraction held out for testing (default: 0.1)")
    split.add_argument("--folds", type=positive_int, metavar="K",
                       help="cross-validation: hold out fold --fold of K as the test part")
    split.add_argument("--fold", type=int, default=0, metavar="k", help="which fold to hold out, 0..K-1 (default: 0)")
    split.add_argument("--split-seed", type=int, default=0, help="seed of the shuffled split (default: 0)")
    split.add_argument("--tokens", choices=("word", "char"), default="word", help="token kind (default: word)")
    split.add_argument("--min-freq", type=positive_int, default=1,
                       help="tokens seen fewer times in training become <unk> (default: 1)")
    split.add_argument("--max-len", type=positive_int, default=400,
                       help="tokens kept per text; longer texts are cut with a warning (default: 400)")
    split.add_argument("--vectors", metavar="FILE", help="pretrained word vectors, word2vec/GloVe text format")
    split.add_argument("--freeze-vectors", action="store_true", help="keep the pretrained vectors fixed")
    split.add_argument("--batch", type=positive_int, default=50, help="sentences per batch (default: 50)")
    model = train.add_argument_group("model")
    model.add_argument("--model", choices=("rnn", "cnn"), default="rnn", help="network (default: rnn)")
    model.add_argument("--embedding", type=positive_int, default=300, help="embedding size (default: 300)")
    model.add_argument("--dropout", type=fraction, default=0.5, help="dropout before the output (default: 0.5)")
    model.add_argument("--cell", choices=tuple(CELLS), default="lstm", help="rnn: cell type (default: lstm)")
    model.add_argument("--hidden", type=positive_int, default=150, help="rnn: units per direction (default: 150)")
    model.add_argument("--layers", type=positive_int, default=1, help="rnn: stacked layers (default: 1)")
    model.add_argument("--unidirectional", action="store_true", help="rnn: read left to right only")
    model.add_argument("--pooling", choices=("last", "mean", "max", "attention"), default="max",
                       help="rnn: how the states become one vector (default: max)")
    model.add_argument("--widths", type=widths, default=(3, 4, 5), metavar="W,W,...",
                       help="cnn: filter widths (default: 3,4,5)")
    model.add_argument("--maps", type=positive_int, default=100, help="cnn: feature maps per width (default: 100)")
    add_train_options(train, **CLASSIFY_TRAIN_DEFAULTS)
    train.set_defaults(handler=classify_train)

    predict = actions.add_parser(
        "predict", help="label texts: one per line of FILE or stdin",
        description="Print the most probable label of each input text and its probability (tab-separated), "
                    "or JSON lines with --json. Input: plain lines, or a CSV/TSV/JSON-lines file's text column.")
    predict.add_argument("run", metavar="RUN", help="run folder or checkpoint folder")
    predict.add_argument("file", nargs="?", default="-", metavar="FILE", help="input file, - for stdin (default)")
    predict.add_argument("--text-column", default="text", metavar="NAME",
                         help="column of the texts in a CSV/TSV/JSON-lines input (default: text)")
    predict.add_argument("--json", action="store_true", help="JSON lines with every class's probability")
    predict.add_argument("--batch", type=positive_int, default=256, help="texts per batch (default: 256)")
    predict.set_defaults(handler=classify_predict)

    evaluate = actions.add_parser(
        "eval", help="accuracy, macro-F1, per-class scores and a confusion matrix on labelled data",
        description="Evaluate a trained classifier on labelled data; writes the confusion matrix as a PNG.")
    evaluate.add_argument("run", metavar="RUN", help="run folder or checkpoint folder")
    evaluate.add_argument("data", nargs="?", metavar="DATA", help="labelled file (default: the run's --dataset)")
    evaluate.add_argument("--dataset", help="a named dataset instead of a file (known: mr)")
    evaluate.add_argument("--split", choices=("all", "train", "validation", "test"), default="all",
                          help="evaluate on this part of the run's split (the data must be the training data) "
                               "(default: all of DATA)")
    add_data_options(evaluate)
    evaluate.add_argument("--confusion", metavar="PNG", help="where to write the confusion matrix "
                                                              "(default: RUN/confusion-<split>.png)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(handler=classify_eval)


def widths(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 3,4,5, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"widths must be positive integers, got {text!r}")
    return values


def data_path(args: argparse.Namespace) -> Path:
    """The labelled file: DATA, or the named dataset obtained into the cache."""
    return data_file(args, what="a labelled file (CSV, TSV or JSON lines)", dataset="mr")


def read(args: argparse.Namespace, path: Path) -> list[Any]:
    from unrolled.data.labelled import read_labelled

    return read_labelled(path, text_column=args.text_column, label_column=args.label_column, format=args.format)


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.model == "cnn":
        return {"embedding": args.embedding, "widths": list(args.widths), "feature_maps": args.maps,
                "dropout": args.dropout}
    return {"embedding": args.embedding, "cell": args.cell, "hidden": args.hidden, "layers": args.layers,
            "bidirectional": not args.unidirectional, "pooling": args.pooling, "dropout": args.dropout}


def classify_train(args: argparse.Namespace) -> int:
    from unrolled.apps import classify

    if args.folds is not None and not 0 <= args.fold < args.folds:
        raise ValueError(f"--fold must lie in 0..{args.folds - 1} for --folds {args.folds}, got {args.fold}")
    examples = read(args, data_path(args))
    validation = read(args, Path(args.validation_data)) if args.validation_data else None
    result = classify.fit(
        examples, args.out, model=args.model, model_options=model_options(args), train=train_config(args),
        tokens=args.tokens, min_freq=args.min_freq, max_len=args.max_len, vectors=args.vectors,
        freeze_vectors=args.freeze_vectors, validation_examples=validation, validation=args.validation,
        test=args.test, folds=args.folds, fold=args.fold if args.folds else None, split_seed=args.split_seed,
        batch_size=args.batch, resume=args.resume, eval_every=args.eval_every)
    return report_training(result, args.out)


def input_texts(path: str, text_column: str) -> list[str]:
    """Texts to label: the lines of a plain file or stdin, or the text column of a CSV/TSV/JSON-lines file."""
    from unrolled.data.labelled import read_labelled
    from unrolled.data.text import read_text

    if path != "-" and Path(path).suffix.lower() in (".csv", ".tsv", ".tab", ".jsonl", ".json"):
        return [example.text for example in read_labelled(Path(path), text_column=text_column, label_column=None)]
    raw = sys.stdin.read() if path == "-" else read_text([Path(path)])
    return [line for line in raw.splitlines() if line.strip()]


def classify_predict(args: argparse.Namespace) -> int:
    from unrolled.apps.classify import TextClassifier

    classifier = TextClassifier.load(args.run)
    texts = input_texts(args.file, args.text_column)
    probabilities = classifier.probabilities(texts, batch_size=args.batch)
    names = classifier.labels.names
    for text, row in zip(texts, probabilities.tolist(), strict=True):
        best = max(range(len(row)), key=row.__getitem__)
        if args.json:
            print(json.dumps({"text": text, "label": names[best], "probability": row[best],
                              "probabilities": dict(zip(names, row, strict=True))}))
        else:
            print(f"{names[best]}\t{row[best]:.4f}")
    return 0


def classify_eval(args: argparse.Namespace) -> int:
    from unrolled.apps.classify import SplitRecord, TextClassifier, split_examples
    from unrolled.metrics import format_report, plot_confusion

    classifier = TextClassifier.load(args.run)
    examples = read(args, data_path(args))
    if args.split != "all":
        if classifier.split is None:
            raise ValueError(f"{args.run} records no split; evaluate with --split all")
        examples = split_examples(examples, SplitRecord(**classifier.split))[args.split]
        if not examples:
            raise ValueError(f"the run's {args.split} part is empty (it was trained with no {args.split} fraction)")
    report = classifier.evaluate(examples)
    run = Path(args.run)
    folder = run.parent if (run / "config.json").is_file() else run  # a checkpoint folder's run, or the run
    confusion = Path(args.confusion) if args.confusion else folder / f"confusion-{args.split}.png"
    plot_confusion(report["confusion"], classifier.labels.names, confusion,
                   title=f"{classifier.model_type} classifier, {args.split} ({len(examples)} examples)")
    report["confusion_png"] = str(confusion)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
        print(f"loss {report['loss']:.4f}; confusion matrix: {confusion}")
    return 0
