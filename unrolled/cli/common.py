"""What every command shares: number checks for options, and the trainer's options."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adamw", "lr": 2e-3, "weight_decay": 0.1, "schedule": "cosine", "warmup": 100, "clip": 1.0,
    "max_epochs": None, "eval_every": 500, "early_stop": None
}
"""The char LM's recipe; other commands pass their own to `add_train_options`."""


def add_train_options(parser: argparse.ArgumentParser, **defaults: Any) -> None:
    """The trainer's options, shared by every model's train command; `defaults` overrides `TRAIN_DEFAULTS`.

    ``eval_every=None`` means once per epoch (the command computes it).
    """
    d = {**TRAIN_DEFAULTS, **defaults}
    group = parser.add_argument_group("training")
    group.add_argument("--optimizer", choices=("adam", "adamw", "rmsprop", "sgd"), default=d["optimizer"],
                       help="(default: %(default)s)")
    group.add_argument("--lr", type=positive_float, default=d["lr"], help="peak learning rate (default: %(default)g)")
    group.add_argument("--weight-decay", type=non_negative_float, default=d["weight_decay"],
                       help="decoupled weight decay (AdamW) or L2 penalty (others) (default: %(default)g)")
    group.add_argument("--schedule", choices=("constant", "cosine", "step", "plateau"), default=d["schedule"],
                       help="learning-rate schedule after warm-up; cosine decays to the end of the budget "
                            "(default: %(default)s)")
    group.add_argument("--warmup", type=non_negative_int, default=d["warmup"], metavar="STEPS",
                       help="linear warm-up steps (default: %(default)s)")
    group.add_argument("--decay-steps", type=positive_int, metavar="STEPS",
                       help="length of the cosine decay in steps (default: the step or epoch budget; with "
                            "--max-time the decay also follows the time spent and ends with it)")
    group.add_argument("--clip", type=non_negative_float, default=d["clip"],
                       help="clip the gradient's global norm to this; 0 turns it off (default: %(default)g)")
    group.add_argument("--max-steps", type=positive_int, help="stop after this many steps")
    group.add_argument("--max-epochs", type=positive_int, default=d["max_epochs"],
                       help="stop after this many passes over the training data"
                            + (" (default: %(default)s)" if d["max_epochs"] else ""))
    group.add_argument("--max-time", metavar="DURATION",
                       help="stop after this much training time, e.g. 90s, 10m, 1.5h")
    every = "(default: %(default)s)" if d["eval_every"] else "(default: once per epoch)"
    group.add_argument("--eval-every", type=positive_int, default=d["eval_every"], metavar="STEPS",
                       help=f"evaluate on the validation data every this many steps {every}")
    group.add_argument("--log-every", type=positive_int, default=10, metavar="STEPS",
                       help="a line of training metrics every this many steps (default: 10)")
    group.add_argument("--early-stop", type=positive_int, metavar="N", default=d["early_stop"],
                       help="stop after N evaluations without a better validation loss"
                            + (" (default: %(default)s)" if d["early_stop"] else ""))
    group.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    group.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default: cpu)")
    group.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                       help="training arithmetic: bf16 runs the forward in bfloat16 (weights and evaluation stay "
                            "float32); auto picks bf16 where the device computes it natively (default: auto)")
    group.add_argument("--threads", type=positive_int, metavar="N",
                       help="CPU threads for training (default: torch's count, lowered to the cores other programs "
                            "leave free while a --max-time run goes on)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def train_config(args: argparse.Namespace, *, eval_every: int | None = None) -> Any:
    """The `TrainConfig` of the parsed options; `eval_every` stands in where the option is unset (once per epoch)."""
    from unrolled.training import TrainConfig, parse_duration

    max_time = parse_duration(args.max_time) if args.max_time is not None else None
    unbounded = args.max_steps is None and args.max_epochs is None and max_time is None
    max_epochs = 1 if unbounded else args.max_epochs  # a budget is needed; one pass over the data by default
    every = args.eval_every if args.eval_every is not None else eval_every
    return TrainConfig(optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay, schedule=args.schedule,
                       warmup_steps=args.warmup, decay_steps=args.decay_steps, clip_norm=args.clip or None,
                       max_steps=args.max_steps, max_epochs=max_epochs, max_time=max_time,
                       eval_every=every if every is not None else 500, early_stop=args.early_stop,
                       log_every=args.log_every, seed=args.seed, device=args.device, precision=args.precision,
                       threads=args.threads, progress=not args.no_progress)


def data_file(args: argparse.Namespace, *, what: str, dataset: str) -> Path:
    """The file of ``args.data``, or the named dataset ``args.dataset`` obtained into the cache; not both, not none.

    `what` and `dataset` name a kind of file and a dataset for the error message.
    """
    from unrolled.apps.base import data_path

    return data_path(args.data, args.dataset, what=what, known=dataset)


def run_part(items: list[Any], split: dict[str, Any] | None, part: str, run: str,
             split_items: Callable[[list[Any], Any], dict[str, list[Any]]], record: Callable[..., Any]) -> list[Any]:
    """`items` itself for part "all", else the run's recorded `part` of them; one-line errors otherwise."""
    from unrolled.apps.split import recorded_part

    return recorded_part(items, None if split is None else record(**split), part, split_items, run)


def report_training(result: Any, out: str, unit: str = "") -> int:
    """Print how a training run ended and where its files are; the exit status (130 when interrupted)."""
    best = f", best validation loss {result.best_loss:.4f}{unit}" if result.best_loss is not None else ""
    print(f"stopped after {result.steps} steps ({result.stopped_because}){best}; checkpoints in {out}/best and "
          f"{out}/last, learning curve {out}/curve.png")
    return 130 if result.stopped_because == "interrupted" else 0


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
