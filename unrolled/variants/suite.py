r"""The variants benchmark as a whole: the grid of runs, resuming, the tables, the plots and the findings.

Every (task, variant, length, seed) is one run of `unrolled.variants.train.run`;
the suite's budget is shared equally, each run getting

.. math::  b = \frac{\text{budget}}{N_\text{runs}} - t_\text{eval}

seconds of training (t_eval: one measured evaluation, the slowest among the
variants' engines at the longest length: `run_budget`). With a step budget
(``steps``) every run makes exactly that many updates instead, so cells on
slower engines see as much data as fused ones and the suite takes what it
takes. A finished run is one
row of ``results.csv``, written as soon as it ends, so ``--resume`` skips it.
``results.md`` gives, per task and length, mean +- standard deviation over
seeds; ``<task>.png`` plots the score against the dependency length, one line
per variant with the spread as error bars.

A difference from the vanilla LSTM counts as significant when it exceeds two
standard errors of the difference of the means (Welch), over all seeds of all
(task, length) cells, each score first signed so that higher is better.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from unrolled import native
from unrolled.data.longrange import TASKS, Task, make_task
from unrolled.extras import need
from unrolled.variants.train import (
    VARIANTS,
    RunResult,
    RunSpec,
    VariantNet,
    check_variants,
    evaluation_seconds,
    run,
)

COLUMNS = ("task", "variant", "length", "seed", "metric", "score", "loss", "steps", "seconds", "engine")
Key = tuple[str, str, int, int]
MARKERS = "os^vD<>"
"""Markers cycled over the variants' lines (with 20 colours, so no two of the 12 variants look alike)."""


@dataclass(frozen=True)
class SuiteConfig:
    tasks: tuple[str, ...]
    variants: tuple[str, ...]
    lengths: tuple[int, ...]
    seeds: int
    budget: float
    hidden: int = 64
    compile: str = "native"  # `COMPILE_CHOICES`: how the variants without a fused kernel run
    text: str | None = None
    steps: int | None = None  # updates per run; None: the budget's wall time decides

    def grid(self) -> list[Key]:
        return [(t, v, n, s) for t in self.tasks for n in self.lengths for s in range(self.seeds)
                for v in self.variants]


def check_tasks(names: Iterable[str]) -> None:
    unknown = [name for name in names if name not in TASKS]
    if unknown:
        raise ValueError(f"unknown task {unknown[0]!r}: choose from {', '.join(TASKS)}")


def prepare_out(out: Path, resume: bool) -> None:
    """Refuse an existing folder unless resuming; create it otherwise."""
    if out.exists() and not resume:
        raise ValueError(f"{out} exists: give another --out, or --resume to continue it")
    out.mkdir(parents=True, exist_ok=True)


RUN_SHAPING = ("hidden", "compile", "text", "steps")
"""What changes a run's result besides its key: a resumed suite must keep them, or its rows would not compare."""


def check_same_runs(config: SuiteConfig, out: Path) -> None:
    """A one-line error when out/config.json (the suite being resumed) was run with other `RUN_SHAPING` values."""
    path = out / "config.json"
    if not path.exists():
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read the resumed suite's settings ({error}); give another --out") from None
    changed = [name for name in RUN_SHAPING if isinstance(saved, dict) and saved.get(name) != getattr(config, name)]
    if changed:
        name = changed[0]
        raise ValueError(f"{out} was run with {name} {saved[name]!r}, not {getattr(config, name)!r}: resume with "
                         f"the same --{name}, or give another --out")


def finished(out: Path) -> dict[Key, dict[str, str]]:
    """The rows of results.csv by key (nothing if there is none yet)."""
    path = out / "results.csv"
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {(r["task"], r["variant"], int(r["length"]), int(r["seed"])): r for r in csv.DictReader(handle)}


def append_row(out: Path, row: dict[str, object]) -> None:
    path = out / "results.csv"
    new = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def run_budget(config: SuiteConfig, runs: int, tasks: dict[str, Task]) -> float:
    """Training seconds per run; a one-line error if the budget cannot pay for one evaluation each.

    The evaluation's cost is the slowest of `costliest_per_engine`'s variants on each task at the longest length.
    """
    longest = max(config.lengths)
    worst, slowest = max((evaluation_seconds(tasks[t], RunSpec(t, v, longest, 0, config.hidden)), v)
                         for t in config.tasks for v in costliest_per_engine(config.variants, tasks[t], config.hidden))
    share = config.budget / max(runs, 1)
    if share <= worst:
        raise ValueError(f"budget {config.budget:g}s is too small: {runs} runs get {share:.3g}s each, "
                         f"less than one evaluation ({worst:.3g}s, {slowest})")
    return share - worst


def costliest_per_engine(variants: Iterable[str], task: Task, hidden: int) -> list[str]:
    """One variant per engine among `variants`: per fused kernel (LSTM, GRU, RNN) and for the transparent path,
    the one whose layer has the most parameters (the most work per step), the first on a tie.

    Evaluations differ by engine far more than within one (T=100, 512 examples, one core: fused LSTM 0.03-0.05 s,
    transparent variants 0.06-0.11 s), so timing these few bounds them all.
    """
    costliest: dict[str | None, tuple[int, str]] = {}
    for variant in variants:
        layer = VariantNet(task, variant, hidden).rnn
        size = sum(p.numel() for p in layer.parameters())
        engine = layer.fused_mode
        if engine not in costliest or size > costliest[engine][0]:
            costliest[engine] = (size, variant)
    return [variant for _, variant in costliest.values()]


def run_suite(config: SuiteConfig, out: Path, *, resume: bool = False,
              report: Callable[[str], None] = print) -> list[dict[str, str]]:
    """Train every run not yet in out/results.csv, then write the tables and plots; returns every row."""
    check_tasks(config.tasks)
    check_variants(list(config.variants))
    prepare_out(out, resume)
    check_same_runs(config, out)
    tasks = {name: make_task(name, text=config.text) for name in config.tasks}
    done = finished(out)
    todo = [key for key in config.grid() if key not in done]
    budget = 0.0
    if todo:
        if config.compile == "native" and (reason := native.unavailable()) is not None:  # built here, not in a run
            report(f"the C++ unroll cannot be built ({reason}): the transparent variants run eagerly")
        if config.steps is None:
            budget = run_budget(config, len(todo), tasks)
        (out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n", encoding="utf-8")
        each = f"{budget:.1f}s" if config.steps is None else f"{config.steps} updates"
        report(f"{len(todo)} runs to train ({len(done)} already done), {each} each")
    for number, (task, variant, length, seed) in enumerate(todo, 1):
        spec = RunSpec(task, variant, length, seed, config.hidden)
        result = run(tasks[task], spec, budget=budget, compile=config.compile, steps=config.steps)
        append_row(out, row_of(spec, tasks[task], result))
        report(f"[{number}/{len(todo)}] {task} T={length} {variant} seed {seed}: "
               f"{tasks[task].metric} {result.score:.3f} ({result.steps} steps, {result.engine})")
    rows = [row for key, row in finished(out).items() if key in set(config.grid())]
    write_tables(rows, out, tasks)
    return rows


def row_of(spec: RunSpec, task: Task, result: RunResult) -> dict[str, object]:
    values = asdict(result)
    return {"task": spec.task, "variant": spec.variant, "length": spec.length, "seed": spec.seed,
            "metric": task.metric, **{f.name: values[f.name] for f in fields(result)}}


# ---------------------------------------------------------------- tables and plots


def cells(rows: list[dict[str, str]]) -> dict[tuple[str, int, str], list[float]]:
    """(task, length, variant) -> scores over seeds."""
    grouped: dict[tuple[str, int, str], list[float]] = {}
    for row in rows:
        grouped.setdefault((row["task"], int(row["length"]), row["variant"]), []).append(float(row["score"]))
    return grouped


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def markdown(rows: list[dict[str, str]], tasks: dict[str, Task]) -> str:
    """One table per task: a row per variant, a column per length, mean +- sd over seeds."""
    grouped = cells(rows)
    lines = []
    for task in dict.fromkeys(row["task"] for row in rows):
        info = tasks[task]
        lengths = sorted({n for t, n, _ in grouped if t == task})
        better = "higher" if info.higher_better else "lower"
        lines += [f"### {task}: {info.metric} ({better} is better; chance {info.chance:.3f})", "",
                  "| variant | " + " | ".join(f"T={n}" for n in lengths) + " |",
                  "| --- |" + " ---: |" * len(lengths)]
        for variant in VARIANTS:
            if not any((task, n, variant) in grouped for n in lengths):
                continue
            entries = []
            for n in lengths:
                scores = grouped.get((task, n, variant))
                entries.append("" if not scores else "{:.3f} ± {:.3f}".format(*mean_sd(scores)))
            lines.append(f"| {variant} | " + " | ".join(entries) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(rows: list[dict[str, str]], out: Path, tasks: dict[str, Task]) -> list[Path]:
    """<task>.png per task: score against dependency length, one line per variant, sd as error bars."""
    need("matplotlib", "the variants plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = cells(rows)
    paths = []
    for task in dict.fromkeys(row["task"] for row in rows):
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for number, variant in enumerate(VARIANTS):
            points = sorted((n, mean_sd(s)) for (t, n, v), s in grouped.items() if t == task and v == variant)
            if points:
                axes.errorbar([n for n, _ in points], [m for _, (m, _) in points],
                              yerr=[sd for _, (_, sd) in points], capsize=3, label=variant,
                              color=plt.get_cmap("tab20")(number), marker=MARKERS[number % len(MARKERS)],
                              linestyle="-" if VARIANTS[variant][0] == "lstm" else "--")
        axes.axhline(tasks[task].chance, color="grey", linestyle=":", label="chance")
        axes.set(xlabel="dependency length T", ylabel=tasks[task].metric, title=f"{task}: variants")
        axes.legend(fontsize=7, ncol=2)
        path = out / f"{task}.png"
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        paths.append(path)
    return paths


def write_tables(rows: list[dict[str, str]], out: Path, tasks: dict[str, Task]) -> None:
    from unrolled.variants.findings import findings

    text = markdown(rows, tasks)
    found = findings(rows, tasks)
    (out / "results.md").write_text(text + "\n## Findings, ours beside the papers'\n\n" + found + "\n",
                                    encoding="utf-8")
    if rows:
        plot(rows, out, tasks)
