"""What the benchmarks share: their common options, training one model through the CLI, memory, and results.

A benchmark of an application trains each named model configuration through
``unrolled <app> train`` in this process for a time budget on some threads,
scores the best checkpoint with the application's own API, and keeps one
record per model in ``bench/results/<benchmark>/result.json``. Its report is
printed and written beside it as ``results.md``, with one picture::

    RESULTS = harness.results_dir("caption")

    def run_model(name, minutes, threads, extra):
        trained = harness.train(RESULTS, name, ["caption", "train", ...], minutes, threads, extra)
        ... score trained.out with the application ...
        harness.record(RESULTS, name, {**trained.summary(), ...})

    if __name__ == "__main__":
        harness.main(RESULTS, __doc__, MODELS, run_model, report, picture="soft")

Options the benchmark does not know (or everything after ``--``) go to the
training command unchanged. The speed benchmarks use `PeakMeter` (peak RSS of
a stretch of work) and `child_json` (one measurement in a fresh process).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_ROOT = ROOT / "bench" / "results"
RESULT_FILE = "result.json"
SUMMARY_FILE = "results.md"
PICTURE_FILE = "curve.png"


def results_dir(benchmark: str) -> Path:
    """bench/results/<benchmark>: where a benchmark keeps its runs (run-<model>/, ignored by git) and results."""
    return RESULTS_ROOT / benchmark


# -- options ------------------------------------------------------------------------------------


def options(doc: str | None, models: Iterable[str], *, minutes: float = 30.0, threads: int = 1,
            model_help: str = "train and score this model",
            report_help: str = "print the table of the models measured so far") -> argparse.ArgumentParser:
    """The options every application benchmark takes: --model, --minutes, --threads, --report."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--model", choices=tuple(models), help=model_help)
    parser.add_argument("--minutes", type=float, default=minutes,
                        help=f"training time per model (default: {minutes:g})")
    parser.add_argument("--threads", type=int, default=threads, help=f"torch threads (default: {threads})")
    parser.add_argument("--report", action="store_true", help=report_help)
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """The benchmark's options, and the rest for the training command (after ``--`` too, without it)."""
    args, extra = parser.parse_known_args(argv)
    return args, [word for word in extra if word != "--"]


# -- training through the CLI --------------------------------------------------------------------


@dataclass
class Trained:
    """One model trained through the CLI: its run folder, the command, the threads and the wall-clock time."""

    model: str
    out: Path
    arguments: list[str]
    threads: int
    seconds: float

    def last_metrics(self) -> dict[str, Any]:
        """The last line of the run's metrics.jsonl."""
        last: dict[str, Any] = json.loads((self.out / "metrics.jsonl").read_text().splitlines()[-1])
        return last

    def epochs(self, digits: int = 1) -> float:
        """The epochs the run went through: its last metrics line's."""
        return round(float(self.last_metrics()["epoch"]), digits)

    def summary(self) -> dict[str, Any]:
        """What every result records first: model, arguments, threads, train_seconds."""
        return {"model": self.model, "arguments": self.arguments, "threads": self.threads,
                "train_seconds": round(self.seconds, 1)}


def train(results: Path, model: str, recipe: list[str], minutes: float, threads: int,
          extra: Sequence[str] = ()) -> Trained:
    """Train `model` in this process: ``unrolled <recipe> --out results/run-<model> --max-time <minutes>m
    --max-epochs 1000 --no-progress <extra>`` on `threads` torch threads, the run folder emptied first.

    `recipe` starts with the application and ``train``; `extra` comes last, so it overrides. Exits when the
    command fails."""
    import torch

    from unrolled.cli import main

    torch.set_num_threads(threads)
    out = results / f"run-{model}"
    shutil.rmtree(out, ignore_errors=True)
    arguments = [*recipe, "--out", str(out), "--max-time", f"{minutes}m", "--max-epochs", "1000", "--no-progress",
                 *extra]
    started = time.monotonic()
    code = main(arguments)
    seconds = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"{' '.join(recipe[:2])} ({model}) failed with status {code}")
    return Trained(model, out, arguments, threads, seconds)


# -- results ------------------------------------------------------------------------------------


def load(results: Path) -> dict[str, Any]:
    """The benchmark's result.json (a record by model, and other keys a benchmark adds); {} before any run."""
    path = results / RESULT_FILE
    found: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    return found


def record(results: Path, key: str, value: Any) -> None:
    """Keep `value` under `key` of result.json, beside what the other models and runs recorded."""
    results.mkdir(parents=True, exist_ok=True)
    kept = load(results)
    kept[key] = value
    (results / RESULT_FILE).write_text(json.dumps(kept, indent=2, ensure_ascii=False) + "\n")


def rows(results: Path, models: Iterable[str]) -> list[dict[str, Any]]:
    """The records of `models` measured so far, in the order given; exits when there are none."""
    kept = load(results)
    found = [kept[name] for name in models if name in kept]
    if not found:
        raise SystemExit(f"nothing measured yet in {results}; run with --model first")
    return found


NOTES = "## Notes"  # results.md keeps what follows this heading when `summarise` writes the table again


def summarise(results: Path, doc: str | None, report: Callable[[], None], *, picture: str | None = None) -> None:
    """Print `report` and write what it printed to results.md, under the benchmark's first docstring line, with
    the learning curve of run-<picture> (when that run is here) as the one picture, curve.png. What follows a
    ``## Notes`` heading in the old results.md (written by hand) stays, after the new table."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        report()
    text = printed.getvalue()
    sys.stdout.write(text)
    lines = [f"# {(doc or results.name).strip().splitlines()[0]}", "", "```", text.rstrip("\n"), "```", ""]
    curve = results / f"run-{picture}" / PICTURE_FILE
    if picture is not None and curve.is_file():
        shutil.copy(curve, results / PICTURE_FILE)
    if (results / PICTURE_FILE).is_file():
        lines += [f"![learning curve{f' of {picture}' if picture else ''}]({PICTURE_FILE})", ""]
    write_keeping_notes(results / SUMMARY_FILE, "\n".join(lines))


def write_keeping_notes(path: Path, text: str) -> None:
    """Write `text` to `path`, then what followed the `NOTES` heading in the file it replaces (notes by hand)."""
    old = path.read_text() if path.is_file() else ""
    notes = old[old.index(NOTES) :] if NOTES in old else ""
    path.write_text(text.rstrip("\n") + "\n" + (f"\n{notes}" if notes else ""))


def by_decoding(rows: Iterable[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str, dict[str, Any]]]:
    """Each model's row with its greedy and its beam-5 scores (the ``beam1`` and ``beam5`` entries that the
    sequence benchmarks record): (row, "greedy" or "beam 5", scores)."""
    for row in rows:
        for beam in (1, 5):
            yield row, "greedy" if beam == 1 else "beam 5", row[f"beam{beam}"]


def table(title: str, columns: Sequence[tuple[str, int]], lines: Iterable[Sequence[str]]) -> None:
    """Print `title`, then a table: `columns` are (heading, width), the first left-aligned, the rest right-aligned;
    each line holds a cell per column, already formatted."""
    def row(cells: Sequence[str]) -> str:
        return " ".join(f"{cell:<{width}}" if i == 0 else f"{cell:>{width}}"
                        for i, (cell, (_, width)) in enumerate(zip(cells, columns, strict=True)))

    print(title)
    print(row([heading for heading, _ in columns]))
    for line in lines:
        print(row(line))


def main(results: Path, doc: str | None, models: Iterable[str], run_model: Callable[..., Any],
         report: Callable[[], None], *, picture: str | None = None, minutes: float = 30.0) -> None:
    """A model benchmark's command: ``--model NAME`` trains and scores that model (`run_model(name, minutes,
    threads, extra)`); ``--report``, or no model, writes the summary of every model recorded so far."""
    args, extra = parse(options(doc, models, minutes=minutes))
    if args.model:
        run_model(args.model, args.minutes, args.threads, extra)
    if args.report or not args.model:
        summarise(results, doc, report, picture=picture)


def trained_for(row: dict[str, Any]) -> str:
    """How long a model trained: "(30 min, 4.2 epochs)"."""
    return f"({row['train_seconds'] / 60:.0f} min, {row.get('epochs', '?')} epochs)"


def parse_form(parser: argparse.ArgumentParser, argv: list[str] | None, quick: dict[str, Any],
               full: dict[str, Any], *, positive: Iterable[str] = ()) -> argparse.Namespace:
    """The speed benchmarks' arguments: each option left unset (None) takes its value in the `quick` form (with
    ``--quick``) or the `full` one; the `positive` ones must be at least 1; ``--threads``, when given, is applied
    (torch.set_num_threads) before anything is timed."""
    import torch

    args = parser.parse_args(argv)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in positive:
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def beside(label: str, ours: float, peer: float, unit: str, *, width: int = 40) -> str:
    """One line with our figure beside the peer's and their ratio: ``label  ours X unit, peer Y unit: Z x``."""
    return f"{label:<{width}} ours {ours:.4g} {unit}, peer {peer:.4g} {unit}: {ours / peer:.2f}x"


# -- memory -------------------------------------------------------------------------------------


def proc_status_kib(key: str) -> int | None:
    """A kiB figure of /proc/self/status (VmRSS, VmHWM), None where there is none."""
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def reset_peak_rss() -> bool:
    """Linux: reset VmHWM to the current RSS (clear_refs 5); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as refs:
            refs.write("5")
    except OSError:
        return False
    return proc_status_kib("VmHWM") is not None


class PeakMeter:
    """Peak RSS from `start()` to `stop()`: VmHWM after a reset, else ru_maxrss (since the process began)."""

    def start(self) -> None:
        gc.collect()
        self.resettable = reset_peak_rss()
        self.base_kib = proc_status_kib("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def stop(self) -> dict[str, Any]:
        """peak_mib (the process's peak), above_start_mib (less what it held at start) and the method."""
        if self.resettable:
            peak, method = proc_status_kib("VmHWM") or 0, "VmHWM after clear_refs"
        else:
            peak, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss (whole process)"
        return {"peak_mib": peak / 1024.0, "above_start_mib": (peak - self.base_kib) / 1024.0, "method": method}


def child_json(script: str, spec: dict[str, Any], failed: dict[str, Any]) -> dict[str, Any]:
    """Run ``python <script> --memory-child <spec as JSON>`` in a fresh process and return the JSON it prints last;
    when it fails, `failed` with its last error line as the ``method``."""
    command = [sys.executable, script, "--memory-child", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {**failed, "method": f"failed: {done.stderr.strip().splitlines()[-1:]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else the platform's processor."""
    import platform

    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"
