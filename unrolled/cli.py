"""The `unrolled` command. Bad input ends in one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from unrolled import __version__
from unrolled.cells import CELLS


class Parser(argparse.ArgumentParser):
    """argparse, with usage mistakes reported in one line (and where to look) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="unrolled", description="Recurrent neural networks made real.")
    parser.add_argument("--version", action="version", version=f"unrolled {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    hello = commands.add_parser(
        "hello",
        help="the lecture's toy: learn 'hello' character by character, then generate",
        description="Train a tiny recurrent network on the lecture's h,e,l,l,o example and generate from 'h'.",
    )
    hello.add_argument("--cell", choices=tuple(CELLS), default="rnn", help="cell type (default: rnn)")
    hello.add_argument("--hidden-size", type=positive_int, default=8, help="units in the cell (default: 8)")
    hello.add_argument("--steps", type=positive_int, default=300, help="Adam steps (default: 300)")
    hello.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_lm_commands(commands)
    return parser


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

    evaluate = actions.add_parser("eval", help="loss, bits per character and perplexity on text files",
                                  description="Evaluate a trained model on UTF-8 text files read as one stream.")
    evaluate.add_argument("run", metavar="RUN", help="run folder or checkpoint folder")
    evaluate.add_argument("files", nargs="+", metavar="FILE", help="UTF-8 text files")
    evaluate.add_argument("--windows", type=positive_int, metavar="N",
                          help="instead, average over N random 256-character windows, each from a zero state "
                               "(as nanoGPT estimates its loss)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """The trainer's options, shared by every model's train command."""
    group = parser.add_argument_group("training")
    group.add_argument("--optimizer", choices=("adam", "adamw", "rmsprop", "sgd"), default="adamw",
                       help="(default: adamw)")
    group.add_argument("--lr", type=positive_float, default=2e-3, help="peak learning rate (default: 2e-3)")
    group.add_argument("--weight-decay", type=non_negative_float, default=0.1,
                       help="decoupled weight decay (AdamW) or L2 penalty (others) (default: 0.1)")
    group.add_argument("--schedule", choices=("constant", "cosine", "step", "plateau"), default="cosine",
                       help="learning-rate schedule after warm-up (default: cosine, to the end of the budget)")
    group.add_argument("--warmup", type=non_negative_int, default=100, metavar="STEPS",
                       help="linear warm-up steps (default: 100)")
    group.add_argument("--decay-steps", type=positive_int, metavar="STEPS",
                       help="length of the cosine decay (default: the step or epoch budget, or the steps that fit "
                            "in --max-time, measured once at the start)")
    group.add_argument("--clip", type=non_negative_float, default=1.0,
                       help="clip the gradient's global norm to this; 0 turns it off (default: 1.0)")
    group.add_argument("--max-steps", type=positive_int, help="stop after this many steps")
    group.add_argument("--max-epochs", type=positive_int, help="stop after this many passes over the text")
    group.add_argument("--max-time", metavar="DURATION",
                       help="stop after this much training time, e.g. 90s, 10m, 1.5h")
    group.add_argument("--eval-every", type=positive_int, default=500, metavar="STEPS",
                       help="evaluate on the validation text every this many steps (default: 500)")
    group.add_argument("--log-every", type=positive_int, default=10, metavar="STEPS",
                       help="a line of training metrics every this many steps (default: 10)")
    group.add_argument("--early-stop", type=positive_int, metavar="N",
                       help="stop after N evaluations without a better validation loss")
    group.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    group.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default: cpu)")
    group.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                       help="training arithmetic: bf16 runs the forward in bfloat16 (weights and evaluation stay "
                            "float32); auto picks bf16 where the device computes it natively (default: auto)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def train_config(args: argparse.Namespace) -> Any:
    from unrolled.training import TrainConfig, parse_duration

    max_time = parse_duration(args.max_time) if args.max_time is not None else None
    unbounded = args.max_steps is None and args.max_epochs is None and max_time is None
    max_epochs = 1 if unbounded else args.max_epochs  # a budget is needed; one pass over the text by default
    return TrainConfig(optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay, schedule=args.schedule,
                       warmup_steps=args.warmup, decay_steps=args.decay_steps, clip_norm=args.clip or None,
                       max_steps=args.max_steps, max_epochs=max_epochs, max_time=max_time, eval_every=args.eval_every,
                       early_stop=args.early_stop, log_every=args.log_every, seed=args.seed, device=args.device,
                       precision=args.precision,
                       progress=not args.no_progress)


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
    best = f", best validation loss {result.best_loss:.4f} nats/char" if result.best_loss is not None else ""
    print(f"stopped after {result.steps} steps ({result.stopped_because}){best}; "
          f"checkpoints in {args.out}/best and {args.out}/last, learning curve {args.out}/curve.png")
    return 130 if result.stopped_because == "interrupted" else 0


def lm_sample(args: argparse.Namespace) -> int:
    from unrolled.models import CharLM

    model = CharLM.load(args.run)
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


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be 0 or a positive number, got {text}")
    return value


def fraction(text: str) -> float:
    value = _number(text, float)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), got {text}")
    return value


def _number(text: str, kind: Callable[[str], Any]) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "hello":
            from unrolled.hello import HelloConfig, run

            config = HelloConfig(mode=args.cell, hidden_size=args.hidden_size, steps=args.steps, seed=args.seed)
            print(run(config))
        elif args.command == "lm":
            return {"train": lm_train, "sample": lm_sample, "eval": lm_eval}[args.action](args)
    except BrokenPipeError:  # e.g. `unrolled lm sample RUN | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0
    except (ValueError, OSError) as error:
        name = f"{args.command} {args.action}" if args.command == "lm" else args.command
        print(f"unrolled {name}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unrolled {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


def one_line(error: BaseException) -> str:
    """The error's message on one line (OSError: "file: reason")."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return " ".join(str(error).split())


if __name__ == "__main__":
    sys.exit(main())
