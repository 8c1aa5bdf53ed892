"""The `unrolled` command. Bad input ends in one line on stderr and exit status 2, never a traceback.

Each application adds its commands from its own module (`lm`, `classify`,
`tag`, `seq2seq`, `caption`, `glimpse`, `video`, `speech`, `viz`, `serve`), and the
benchmarks theirs from `bench`; every action sets ``handler(args) -> exit status``.
Warnings are printed as one line each, ``unrolled <command>: warning: ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from unrolled import __version__
from unrolled.apps.registry import APPLICATIONS
from unrolled.cells import CELLS
from unrolled.cli.apps import add_application
from unrolled.cli.bench import add_bench_commands
from unrolled.cli.common import positive_int
from unrolled.cli.data import add_data_commands
from unrolled.cli.export import add_export_commands
from unrolled.cli.serve import add_serve_command
from unrolled.cli.viz import add_viz_commands, with_default_action
from unrolled.extras import MissingExtra

__all__ = ["build_parser", "main"]


class Parser(argparse.ArgumentParser):
    """argparse, with usage mistakes reported in one line (and where to look) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="unrolled", description="Recurrent neural networks made real.")
    parser.add_argument("--version", action="version", version=f"unrolled {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    hello = commands.add_parser(
        "hello",
        help="the lecture's toy: learn 'hello' character by character, then generate",
        description="Train a tiny recurrent network on the lecture's h,e,l,l,o example and generate from 'h'.",
    )
    hello.add_argument("--cell", choices=tuple(CELLS), default="rnn", help="cell type (default: rnn)")
    hello.add_argument("--hidden", "--hidden-size", dest="hidden", type=positive_int, default=8,
                       help="units in the cell (default: 8)")
    hello.add_argument("--steps", type=positive_int, default=300, help="Adam steps (default: 300)")
    hello.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    hello.set_defaults(handler=run_hello)
    demo = commands.add_parser(
        "demo", help="the main job: a character LM on Shakespeare for 5 minutes, then samples",
        description="Obtain Shakespeare's works, train a character-level LSTM language model for --max-time "
                    "(sized for this machine), sample from it, and say what it reached and what to run next.")
    demo.add_argument("--out", default="runs/demo", metavar="RUN", help="run folder (default: runs/demo)")
    demo.add_argument("--max-time", default="5m", metavar="DURATION",
                      help="training time in all, resumes included, e.g. 90s, 5m (default: 5m)")
    demo.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                      help="training arithmetic; auto: bf16 where the CPU computes it natively (default: auto)")
    demo.add_argument("--batch", type=positive_int, metavar="B",
                      help="parallel streams (default: the largest of 64, 32, 16 that leaves 1,500 updates at the "
                           "speed measured at the start)")
    demo.add_argument("--resume", action="store_true", help="continue the run in --out up to --max-time in all")
    demo.add_argument("--seed", type=int, default=0, help="random seed of training and samples (default: 0)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.set_defaults(handler=run_demo)
    for app in APPLICATIONS.values():
        add_application(commands, app)
    add_viz_commands(commands)
    add_data_commands(commands)
    add_serve_command(commands)
    add_bench_commands(commands)
    add_export_commands(commands)
    return parser


def run_hello(args: argparse.Namespace) -> int:
    from unrolled.hello import HelloConfig, run

    print(run(HelloConfig(mode=args.cell, hidden_size=args.hidden, steps=args.steps, seed=args.seed)))
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from unrolled import demo
    from unrolled.training import parse_duration

    max_time = parse_duration(args.max_time)
    report = demo.run_demo(args.out, max_time=max_time, precision=args.precision, resume=args.resume,
                           seed=args.seed, progress=not args.no_progress, batch=args.batch)
    print(demo.describe(report, prog=_prog(), max_time=max_time))
    return 130 if report.result.stopped_because == "interrupted" else 0


def _prog() -> str:
    """How the user called this command, for the commands it suggests (e.g. `.venv/bin/unrolled`)."""
    called = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if called is None or called.name != "unrolled":
        return "unrolled"
    try:
        return str(called.resolve().relative_to(Path.cwd().resolve()).as_posix()) if called.is_absolute() \
            else called.as_posix()
    except ValueError:
        return "unrolled"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(with_default_action(list(sys.argv[1:] if argv is None else argv)))
    name = " ".join(part for part in (args.command, getattr(args, "action", None)) if part)

    def one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                         file: TextIO | None = None, line: str | None = None) -> None:
        print(f"unrolled {name}: warning: {one_line(Exception(str(message)))}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line_warning
            warnings.simplefilter("always", UserWarning)  # the user sees each of ours, as one line
            return int(args.handler(args))
    except BrokenPipeError:  # e.g. `unrolled lm sample RUN | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0
    except (ValueError, OSError, MissingExtra) as error:
        print(f"unrolled {name}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unrolled {name}: interrupted", file=sys.stderr)
        return 130


def one_line(error: BaseException) -> str:
    """The error's message on one line (OSError: "file: reason")."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return " ".join(str(error).split())


