"""`unrolled bench variants`: which variation is best, RNN / LSTM / GRU variants on long-range tasks."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from unrolled.cli.common import positive_int

DEFAULT_TASKS = ("adding", "copy", "order")
DEFAULT_LENGTHS = (10, 50, 100)
DEFAULT_BUDGET = "60m"
QUICK = {"lengths": (10, 40), "seeds": 1, "budget": "210s"}
"""--quick: every variant on the three synthetic tasks at two lengths, one seed, within 5 minutes here."""
COMPILE_CHOICES = ("off", "on", "chunks", "native")
"""`unrolled.variants.train.COMPILE_CHOICES`, named here so that --help need not import torch."""


def names(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.replace(",", " ").split() if part)


def lengths(text: str) -> tuple[int, ...]:
    return tuple(positive_int(part) for part in names(text))


def add_bench_commands(commands: Any) -> None:
    bench = commands.add_parser("bench", help="benchmarks that reproduce the lecture's comparisons",
                                description="Benchmarks that reproduce the lecture's comparisons.")
    actions = bench.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=type(bench))
    variants = actions.add_parser(
        "variants", help="RNN, LSTM and GRU variants on long-range tasks (Greff et al. 2015; Jozefowicz et al. 2015)",
        description="Train every (task, variant, length, seed) within a shared time budget; write results.csv, "
                    "results.md (mean ± sd over seeds, and the papers' findings beside ours) and one plot per task.")
    variants.add_argument("--tasks", type=names, help=f"comma-separated: adding, copy, order, charlm "
                          f"(default: {','.join(DEFAULT_TASKS)})")
    variants.add_argument("--variants", type=names, help="comma-separated (default: all): rnn, lstm, lstm-fb0, nig, "
                          "nfg, nog, niaf, noaf, peepholes, cifg, gru-cho, gru-cudnn")
    variants.add_argument("--lengths", type=lengths, help="dependency lengths T, comma-separated, each >= 10 "
                          f"(default: {','.join(map(str, DEFAULT_LENGTHS))}; --quick: 10,40)")
    variants.add_argument("--seeds", type=positive_int, help="seeds per cell (default: 3; --quick: 1)")
    variants.add_argument("--budget", metavar="DURATION", help=f"wall time of the whole suite, shared equally by "
                          f"the runs, e.g. 20m (default: {DEFAULT_BUDGET}; --quick: 210s)")
    variants.add_argument("--steps", type=positive_int, metavar="N",
                          help="train every run for exactly N updates instead of sharing --budget, so every cell "
                               "sees as much data whatever its speed (the suite then takes what it takes)")
    variants.add_argument("--hidden", type=positive_int, default=64, help="units per cell (default: 64)")
    variants.add_argument("--compile", choices=COMPILE_CHOICES, default="native",
                          help="how the variants without a fused kernel run, eager if it fails: 'native' the C++ "
                               "unroll (built once per machine, 16 s here), 'off' eager, 'chunks' "
                               "torch.compile over chunks of 10 steps (once per variant and input size), 'on' the "
                               "whole model under torch.compile (45-120 s per model and length) (default: native)")
    variants.add_argument("--text", help="the charlm task's text file (default: the shakespeare dataset, obtained "
                                         "into the cache)")
    variants.add_argument("--quick", action="store_true", help="a small suite that finishes within 5 minutes")
    variants.add_argument("--out", required=True, help="folder for results.csv, results.md and plots (must not exist)")
    variants.add_argument("--resume", action="store_true",
                          help="continue an existing --out, skipping finished runs (same --hidden, --compile, --text, "
                               "--steps)")
    variants.set_defaults(handler=run_variants)


def suite_config(args: argparse.Namespace) -> Any:
    from unrolled.training import parse_duration
    from unrolled.variants.suite import SuiteConfig
    from unrolled.variants.train import VARIANTS

    quick: dict[str, Any] = QUICK if args.quick else {}
    tasks = args.tasks or DEFAULT_TASKS
    return SuiteConfig(
        tasks=tasks, variants=args.variants or tuple(VARIANTS),
        lengths=args.lengths or quick.get("lengths", DEFAULT_LENGTHS), seeds=args.seeds or quick.get("seeds", 3),
        budget=parse_duration(args.budget or quick.get("budget", DEFAULT_BUDGET)), hidden=args.hidden,
        compile=args.compile, text=charlm_text(args.text) if "charlm" in tasks else None, steps=args.steps)


def run_variants(args: argparse.Namespace) -> int:
    from unrolled.data.longrange import MIN_LENGTH
    from unrolled.variants.suite import run_suite

    if args.steps is not None and args.budget is not None:
        raise ValueError("give --budget (wall time shared by the runs) or --steps (updates per run), not both")
    config = suite_config(args)
    if min(config.lengths) < MIN_LENGTH:
        raise ValueError(f"dependency lengths must be at least {MIN_LENGTH}, got {min(config.lengths)}")
    out = Path(args.out)
    run_suite(config, out, resume=args.resume, report=lambda line: print(line, flush=True))
    text = (out / "results.md").read_text(encoding="utf-8")
    print(text)
    print(f"results: {out}/results.csv, {out}/results.md, plots {out}/<task>.png")
    return 0


def charlm_text(path: str | None) -> str:
    """The charlm task's text file: `path`, else the project's shakespeare dataset."""
    if path is not None:
        return path
    from unrolled.data import obtain

    return str(obtain("shakespeare"))
