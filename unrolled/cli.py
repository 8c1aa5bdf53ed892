"""The `unrolled` command. Bad input ends in one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from unrolled import __version__
from unrolled.cells import CELLS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unrolled", description="Recurrent neural networks made real.")
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
    return parser


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "hello":
            from unrolled.hello import HelloConfig, run

            config = HelloConfig(mode=args.cell, hidden_size=args.hidden_size, steps=args.steps, seed=args.seed)
            print(run(config))
    except (ValueError, OSError) as error:
        print(f"unrolled {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unrolled {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
