"""`unrolled lm train | sample | eval`: the character-level language model."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from unrolled.cells import CELLS
from unrolled.cli.common import (
    add_train_options,
    fraction,
    non_negative_int,
    positive_float,
    positive_int,
    report_training,
    train_config,
)


def add_lm_commands(commands: Any) -> None:
    """`unrolled lm train | sample | eval`: the character-level language model."""
    lm = commands.add_parser("lm", help="character-level language model: train, sample, evaluate",
                             description="A character-level language model (embedding -> recurrent -> softmax).")
    actions = lm.add_subparsers(dest="action", required=True, metavar="ACTION")

    train = actions.add_parser(
        "train", help="train on text files or a named dataset",
        description="Train a character-level language model. Checkpoints go to OUT/last and OUT/best, "
                    "metrics to OUT/metrics.jsonl, the learning curve to OUT/curve.png. Ctrl-C saves OUT/last; "
                    "--resume continues exactly where it stopped.")
    train.add_argument("files", nargs="*", metavar="FILE", help="UTF-8 text files (default: --dataset shakespeare)")
    train.add_argument("--dataset", help="a named dataset instead of files (known: shakespeare)")
    train.add_argument("--out", required=True, metavar="RUN", help="run folder for checkpoints and metrics")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    shape = train.add_argument_group("model")
    shape.add_argument("--cell", choices=tuple(CELLS), default="lstm", help="cell type (default: lstm)")
    shape.add_argument("--layers", type=positive_int, default=2, help="stacked layers (default: 2)")
    shape.add_argument("--hidden", type=positive_int, default=512, help="units per layer (default: 512)")
    shape.add_argument("--embedding", type=non_negative_int, default=64,
                       help="embedding size; 0 feeds one-hot vectors as in the lecture (default: 64)")
    shape.add_argument("--dropout", type=fraction, default=0.3,
                       help="dropout between layers and before the output layer (default: 0.3)")
    shape.add_argument("--tie-weights", action="store_true", help="share embedding and output weights")
    data = train.add_argument_group("data")
    data.add_argument("--seq-len", type=positive_int, default=128,
                      help="characters per window; gradients flow back this far (default: 128)")
    data.add_argument("--batch", type=positive_int, default=64, help="parallel streams (default: 64)")
    data.add_argument("--validation", type=fraction, default=0.05,
                      help="fraction of the text held out for validation, taken after the training part "
                           "(default: 0.05)")
    data.add_argument("--test", type=fraction, default=0.05, help="fraction held out for testing, at the end "
                                                                  "(default: 0.05)")
    data.add_argument("--eval-streams", type=positive_int, default=16,
                      help="validation text read as this many stateful streams (default: 16)")
    add_train_options(train)
    train.set_defaults(handler=lm_train)

    sample = actions.add_parser("sample", help="generate text from a trained model",
                                description="Generate text from a run's best checkpoint (else its last), "
                                            "streaming to stdout.")
    sample.add_argument("run", metavar="RUN", help="run folder or checkpoint folder")
    sample.add_argument("--prime", default="", help="text to start from (default: the start of a line)")
    sample.add_argument("--length", type=positive_int, default=500, help="characters to generate (default: 500)")
    sample.add_argument("--temperature", type=positive_float, default=1.0,
                        help="below 1 is more conservative, above 1 more surprising (default: 1.0)")
    sample.add_argument("--top-k", type=positive_int, help="draw only from the K most likely characters")
    sample.add_argument("--top-p", type=positive_float, help="draw only from the most likely characters "
                                                             "whose probabilities sum to P (0 < P <= 1)")
    sample.add_argument("--greedy", action="store_true", help="always take the most likely character")
    sample.add_argument("--seed", type=int, help="random seed, for reproducible samples")
    sample.add_argument("--num-samples", type=positive_int, default=1, help="independent samples (default: 1)")
    sample.set_defaults(handler=lm_sample)

    evaluate = actions.add_parser("eval", help="loss, bits per character and perplexity on text files",
                                  description="Evaluate a trained model on UTF-8 text files read as one stream.")
    evaluate.add_argument("run", metavar="RUN", help="run folder or checkpoint folder")
    evaluate.add_argument("files", nargs="+", metavar="FILE", help="UTF-8 text files")
    evaluate.add_argument("--windows", type=positive_int, metavar="N",
                          help="instead, average over N random 256-character windows, each from a zero state "
                               "(as nanoGPT estimates its loss)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(handler=lm_eval)


def lm_train(args: argparse.Namespace) -> int:
    from unrolled.data import obtain, read_text
    from unrolled.models import charlm

    if args.files and args.dataset:
        raise ValueError("give text files or --dataset, not both")
    paths = [Path(f) for f in args.files] or [obtain(args.dataset or "shakespeare")]
    text = read_text(paths)
    shape = {"cell": args.cell, "layers": args.layers, "hidden": args.hidden, "embedding": args.embedding,
             "dropout": args.dropout, "tie_weights": args.tie_weights}
    result = charlm.fit(text, args.out, model=shape, train=train_config(args), batch_size=args.batch,
                        seq_len=args.seq_len, validation=args.validation, test=args.test,
                        eval_streams=args.eval_streams, source=[str(p) for p in paths], resume=args.resume)
    return report_training(result, args.out, ' nats/char')


def lm_sample(args: argparse.Namespace) -> int:
    from unrolled.models import CharLM

    model = CharLM.load(args.run)
    surprise = model.prime_surprise(args.prime) if args.prime else None
    if surprise is not None:
        warnings.warn(surprise, stacklevel=1)
    options = {"length": args.length, "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
               "greedy": args.greedy, "seed": args.seed}
    if args.num_samples == 1:
        def stream(pieces: list[str]) -> None:
            sys.stdout.write(pieces[0])
            sys.stdout.flush()

        if args.prime:
            sys.stdout.write(args.prime)
        model.sample(args.prime, on_text=stream, **options)
        sys.stdout.write("\n")
    else:
        for i, text in enumerate(model.sample(args.prime, num_samples=args.num_samples, **options)):
            print(f"--- sample {i + 1} ---")
            print(text)
    return 0


def lm_eval(args: argparse.Namespace) -> int:
    from unrolled.data import read_text
    from unrolled.models import CharLM

    model = CharLM.load(args.run)
    text = read_text([Path(f) for f in args.files])
    windows = args.windows is not None
    result = model.evaluate_windows(text, count=args.windows) if windows else model.evaluate(text)
    if args.json:
        print(json.dumps(result))
    else:
        unknown = f" ({int(result['unknown'])} unseen in training)" if result["unknown"] else ""
        print(f"loss {result['loss']:.4f} nats/char, {result['bpc']:.4f} bits/char, "
              f"perplexity {result['perplexity']:.3f}, over {int(result['characters'])} characters{unknown}")
    return 0
