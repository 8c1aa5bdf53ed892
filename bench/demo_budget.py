"""The main job on any machine (issue 24): `unrolled demo` for 5 minutes under five conditions, one run.

Each condition runs the demo's training as a user would (``unrolled demo --out
DIR --max-time 5m``, in a subprocess) and reads the validation loss of its best
checkpoint (nats/char on the demo corpus's validation part, 250,000 characters
read as 16 streams):

=================  ==================================================================  ======
condition          how                                                                 target
=================  ==================================================================  ======
quiet              both cores, --precision auto (bf16 on a CPU with native bfloat16)   1.65
one thread, bf16   OMP_NUM_THREADS=1 (a stand-in for a slower machine)                 1.80
one thread, fp32   OMP_NUM_THREADS=1 and --precision fp32 (most laptops: no bf16)      1.85
busy               another process spins on one core for the whole run                  1.85
stall              SIGSTOP to the training process once it logs its first steps,        quiet
                   SIGCONT 30 s later (a machine that froze for half a minute); the     + 0.05
                   quiet run's batch (--batch), so both train the same configuration
=================  ==================================================================  ======

Beside them, in the same run, the peer: the demo's previous recipe, the command
`make demo` ran before this issue (``unrolled lm train --dataset shakespeare
--max-time 5m --eval-every 200 --dropout 0``: a 2 x 512 LSTM, batch 64), on the
quiet machine and with one thread in fp32 (on today's trainer, whose schedule
follows the clock). ``--skip-peer`` leaves it out.

Results: a table on stdout and in OUT/summary.txt, OUT/result.json, and the
validation curves against elapsed time in OUT/curves.png.

    .venv/bin/python bench/demo_budget.py                      # about 45 minutes
    .venv/bin/python bench/demo_budget.py --only stall --keep  # re-run one condition, keep the others' figures
    .venv/bin/python bench/demo_budget.py --minutes 1 --only quiet --skip-peer --out /tmp/d   # checks that it runs
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"quiet": 1.65, "one thread, bf16": 1.80, "one thread, fp32": 1.85, "busy": 1.85}
STALL_SECONDS = 30.0
STALL_MARGIN = 0.05


def demo_command(out: Path, minutes: float, precision: str = "auto", batch: int | None = None) -> list[str]:
    fixed = ["--batch", str(batch)] if batch else []
    return [sys.executable, "-m", "unrolled.cli", "demo", "--out", str(out), "--max-time", f"{minutes * 60:.0f}s",
            "--precision", precision, "--no-progress", *fixed]


def peer_command(out: Path, minutes: float, precision: str = "auto") -> list[str]:
    return [sys.executable, "-m", "unrolled.cli", "lm", "train", "--dataset", "shakespeare", "--out", str(out),
            "--max-time", f"{minutes * 60:.0f}", "--eval-every", "200", "--dropout", "0", "--precision", precision,
            "--no-progress"]


def run(name: str, command: list[str], out: Path, *, threads: int | None = None, busy: bool = False,
        stall: float = 0.0) -> dict[str, Any]:
    """Run one condition to its end; its figures from the run folder."""
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    started = time.monotonic()
    log = open(out.with_suffix(".log"), "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    try:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        stalled = False
        while process.poll() is None:
            if stall and not stalled and (out / "metrics.jsonl").exists() and (out / "metrics.jsonl").stat().st_size:
                process.send_signal(signal.SIGSTOP)
                time.sleep(stall)
                process.send_signal(signal.SIGCONT)
                stalled = True
            time.sleep(0.2)
    finally:
        log.close()
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    if process.returncode != 0:
        raise SystemExit(f"{name}: the run failed ({process.returncode}); see {out.with_suffix('.log')}")
    config = json.loads((out / "best" / "config.json").read_text(encoding="utf-8"))
    lines = [json.loads(text) for text in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    train = [line for line in lines if line["split"] == "train"]
    speeds = sorted(line["tokens_per_s"] for line in train if line.get("tokens_per_s"))
    return {"name": name, "loss": config["validation"]["loss"], "steps": lines[-1]["step"],
            "hidden": config["model"]["hidden"], "batch": config["batching"]["batch_size"],
            "precision": config["train"]["precision"],
            "tokens_per_s": speeds[len(speeds) // 2] if speeds else None,
            "threads": sorted({line["threads"] for line in train if "threads" in line}),
            "wall_s": round(time.monotonic() - started, 1),
            "curve": [(line["elapsed"], line["loss"]) for line in lines if line["split"] == "validation"]}


def quiet_batch(results: list[dict[str, Any]]) -> int | None:
    """The batch the quiet run chose (so the stalled run trains the same configuration); None without one."""
    return next((result["batch"] for result in results if result["name"] == "quiet"), None)


def plot(path: Path, results: list[dict[str, Any]]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8.0, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for result in results:
        if result["curve"]:
            xs, ys = zip(*result["curve"], strict=True)
            axes.plot(xs, ys, "o-", markersize=3, label=f"{result['name']} ({result['loss']:.3f})")
    axes.set_xlabel("elapsed seconds")
    axes.set_ylabel("validation loss, nats/char")
    axes.set_ylim(top=2.4)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png")


def table(results: list[dict[str, Any]]) -> str:
    by_name = {result["name"]: result for result in results}
    rows = ["| condition | model | batch | steps | tokens/s (median) | threads | val nats/char | target | met |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for result in results:
        target: float | None = TARGETS.get(result["name"])
        if result["name"] == "stall" and "quiet" in by_name:
            target = by_name["quiet"]["loss"] + STALL_MARGIN
        met = "" if target is None else ("yes" if result["loss"] <= target else "**no**")
        speed = f"{result['tokens_per_s']:,.0f}" if result["tokens_per_s"] else "-"
        threads = ",".join(str(t) for t in result["threads"]) or "-"
        rows.append(f"| {result['name']} | 2 x {result['hidden']} {result['precision']} | {result['batch']} | "
                    f"{result['steps']} | "
                    f"{speed} | {threads} | {result['loss']:.3f} | {'-' if target is None else f'{target:.3f}'} | "
                    f"{met} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training time of each condition (default: 5)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these conditions (quiet, one-thread-bf16, one-thread-fp32, busy, stall)")
    parser.add_argument("--skip-peer", action="store_true", help="leave out the previous recipe")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "demo_budget")
    parser.add_argument("--keep", action="store_true",
                        help="keep the figures of conditions already in OUT/result.json and run only the others "
                             "(with --only: re-run those)")
    args = parser.parse_args(argv)
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    m = args.minutes
    plan: list[tuple[str, Any]] = [
        ("quiet", lambda d: run("quiet", demo_command(d, m), d)),
        ("one thread, bf16", lambda d: run("one thread, bf16", demo_command(d, m, "bf16"), d, threads=1)),
        ("one thread, fp32", lambda d: run("one thread, fp32", demo_command(d, m, "fp32"), d, threads=1)),
        ("busy", lambda d: run("busy", demo_command(d, m), d, busy=True)),
        ("stall", lambda d: run("stall", demo_command(d, m, batch=quiet_batch(results)), d, stall=STALL_SECONDS)),
    ]
    if not args.skip_peer:
        plan += [("peer: old recipe, quiet", lambda d: run("peer: old recipe, quiet", peer_command(d, m), d)),
                 ("peer: old recipe, one thread, fp32",
                  lambda d: run("peer: old recipe, one thread, fp32", peer_command(d, m, "fp32"), d, threads=1))]
    wanted = {name.replace(", ", "-").replace(" ", "-") for name in args.only or []}
    results: list[dict[str, Any]] = []
    kept = {}
    if args.keep and (args.out / "result.json").exists():
        kept = {result["name"]: result for result in json.loads((args.out / "result.json").read_text())}
    for name, go in plan:
        slug = name.replace(": ", "-").replace(", ", "-").replace(" ", "-")
        if (wanted and slug not in wanted) or (not wanted and name in kept):
            if name in kept:
                if "batch" not in kept[name]:  # kept from a version that did not record it
                    saved = json.loads((runs / slug / "best" / "config.json").read_text(encoding="utf-8"))
                    kept[name]["batch"] = saved["batching"]["batch_size"]
                results.append(kept[name])
            continue
        folder = runs / slug
        if folder.exists():
            subprocess.run(["rm", "-rf", str(folder)], check=True)
        print(f"{name}: {m:g} minutes ...", flush=True)
        results.append(go(folder))
        print(f"  {results[-1]['loss']:.3f} nats/char after {results[-1]['steps']} steps", flush=True)
    summary = table(results)
    machine = f"{os.cpu_count()} cores; bf16 native: {_bf16()}"
    text = f"unrolled demo, {m:g} minutes per condition ({machine})\n\n{summary}\n"
    print("\n" + text)
    (args.out / "summary.txt").write_text(text, encoding="utf-8")
    (args.out / "result.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    plot(args.out / "curves.png", results)
    return 0


def _bf16() -> bool:
    from unrolled.training import bf16_native

    return bf16_native("cpu")


if __name__ == "__main__":
    sys.exit(main())
