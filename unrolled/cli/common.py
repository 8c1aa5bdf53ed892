"""What the commands beside the applications share: the end of a training run, and number checks for options.

The applications' options are derived from their configurations (`unrolled.options`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


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


def _number(text: str, kind: Callable[[str], Any]) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
