"""`unrolled APP train | predict | eval`, the same three commands for every application, made from its `Application`.

    unrolled APP train [DATA ...] --out RUN [--resume] [--config FILE] [every field of the configuration]
    unrolled APP predict RUN [INPUT ...] [--device D] [--batch-size N] [--json] [the application's options]
    unrolled APP eval RUN [DATA] [--split PART] [--device D] [--batch-size N] [--json] [its options]

Flags come from the configuration dataclasses (`unrolled.options`), so a flag,
its ``--config`` key and its saved value share one name. ``train --resume``
starts from the run's saved configuration, so ``--out RUN --resume --max-time
1h`` continues a run without repeating its options. The familiar verbs
(``lm sample``, ``seq2seq translate``, ``speech transcribe``, ...) are aliases.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from unrolled.apps.base import Application, to_json
from unrolled.options import add_flags, apply_flags, apply_values, read_config

TITLES = {"data": "data", "model": "model", "train": "training"}


def add_application(commands: Any, app: Application) -> None:
    """The application's command and its three actions (with their aliases)."""
    verbs = ", ".join(f"{verb} ({', '.join(app.aliases[verb])})" if app.aliases.get(verb) else verb
                      for verb in ("train", "predict", "eval"))
    parser = commands.add_parser(app.name, help=f"{app.summary}: {verbs}", description=f"{app.summary}: {verbs}")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=type(parser))
    defaults = app.config()

    train = actions.add_parser(
        "train", aliases=list(app.aliases.get("train", ())), help="train a model into a run folder",
        description=f"Train a model: {app.summary}. Checkpoints go to RUN/best and RUN/last, metrics to "
                    "RUN/metrics.jsonl, the learning curve to RUN/curve.png; RUN/last/config.json holds the complete "
                    "configuration, which --config reads back. Ctrl-C saves RUN/last; --resume continues it.")
    train.add_argument("--out", required=True, metavar="RUN", help="run folder for checkpoints and metrics")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last checkpoint, with its saved configuration "
                            "(flags given here change it: e.g. a longer --max-time)")
    train.add_argument("--config", metavar="FILE",
                       help="a YAML or JSON file of option values (a run's config.json repeats that run); "
                            "flags override it")
    add_flags(train, defaults, titles=TITLES)
    train.set_defaults(handler=lambda args: run_train(app, args))

    uses = (("predict", "run a trained model on new inputs",
             "on inputs; one line per result, or JSON lines with --json",
             ("inputs", "*", "INPUT", app.input_help), app.predict_options(), run_predict),
            ("eval", "score a trained model on data", "on data; a report, or one JSON object with --json",
             ("data", "?", "DATA", app.data_help), app.eval_options(), run_eval))
    for verb, summary, what, (name, nargs, metavar, help_text), options, handler in uses:
        parser = actions.add_parser(verb, aliases=list(app.aliases.get(verb, ())), help=summary,
                                    description=f"{summary.capitalize()} ({app.name}: {app.summary}) {what}.")
        parser.add_argument("run", metavar="RUN", help="run folder or checkpoint folder")
        parser.add_argument(name, nargs=nargs, metavar=metavar, help=help_text)
        add_flags(parser, options)
        parser.set_defaults(handler=lambda args, run=handler: run(app, args))


def train_configuration(app: Application, args: argparse.Namespace) -> Any:
    """The configuration a train command asks for: defaults < the resumed run's < --config < flags."""
    config = app.config()
    if args.resume:
        saved = Path(args.out) / "last" / "config.json"
        if saved.is_file():
            values = json.loads(saved.read_text(encoding="utf-8"))
            if "config" in values:
                config = apply_values(config, values, source=str(saved))
    if args.config:
        config = apply_values(config, read_config(args.config), source=f"--config {args.config}")
    return apply_flags(config, args)


def run_train(app: Application, args: argparse.Namespace) -> int:
    from unrolled.cli.common import report_training
    from unrolled.devices import resolve_device

    config = train_configuration(app, args)
    resolve_device(config.train.device)  # a device that is not here fails before any data is read
    result = app.fit(config, args.out, resume=args.resume)
    return report_training(result, args.out, app.loss_unit)


def run_predict(app: Application, args: argparse.Namespace) -> int:
    options = apply_flags(app.predict_options(), args)
    predictor = app.predictor.load(args.run, device=options.device)
    inputs = app.read_inputs(list(args.inputs), options)
    if app.stream is not None and not options.json:
        app.stream(predictor, inputs, options, sys.stdout)
        return 0
    results = predictor.predict(inputs, options)
    for result in results:
        print(json.dumps(to_json(result)) if options.json else app.show(result))
        sys.stdout.flush()
    note = app.finish(predictor, inputs, results, options) if app.finish is not None else ""
    if note:
        print(note, file=sys.stderr)
    return 0


def run_eval(app: Application, args: argparse.Namespace) -> int:
    options = apply_flags(app.eval_options(), args)
    predictor = app.predictor.load(args.run, device=options.device)
    data = app.read_eval(predictor, args.data, options)
    metrics = predictor.evaluate(data, options)
    text = app.report(metrics, predictor, options, Path(args.run))  # may write files and name them in `metrics`
    print(json.dumps(to_json(metrics)) if options.json else text)
    return 0
