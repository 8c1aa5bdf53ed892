"""Training speed of every cell variant beside the fused LSTM of the same size, measured in the same run.

Variants without a fused kernel (the Greff et al. ablations, peepholes, CIFG, Cho's GRU) run
through `Recurrent.unroller`; the issue's target is 0.8x the fused LSTM's steps/s. Four engines
serve them: eager `unroll` (Python, every variant in `--variants`), the C++ unroll with its
hand-written backward (`--native`, `unrolled.native`, the suite's default), `unroll` compiled in
chunks of 10 steps (`--chunks`, `unrolled.chunked`) and the whole model under `torch.compile`
(`--compiled`: compiling grows with T). Each contender is one training step of the benchmark's
model (`unrolled.variants.train.VariantNet`): a fresh batch of the task, forward, loss,
backward, clipping, Adam. Its first step, compiling included, is timed apart (the last column);
after warm-up the contenders are timed round-robin, `--steps` steps per turn, `--repeats` turns,
so a shared machine slows them alike; the figure is the median steps/s and the ratio to the
fused LSTM's median.

    .venv/bin/python bench/variants_speed.py                  # T=20: every variant eager, 8 native
    .venv/bin/python bench/variants_speed.py --length 100 --variants lstm --repeats 7
    .venv/bin/python bench/variants_speed.py --chunks cifg,gru-cho --compiled cifg   # the compiled engines too
    TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) .venv/bin/python bench/variants_speed.py --chunks cifg  # compiling cold

Inductor caches compiled kernels on disk, so a second run compiles faster than the first; the
C++ unroll is built once per machine (torch's extension cache).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from unrolled.data.longrange import TASKS, make_task
from unrolled.variants.train import VARIANTS, VariantNet, compiled, eager, train_step

BASELINE = "lstm"
TARGET = 0.8
CHUNKED = "cifg,gru-cho,peepholes,nog,noaf"
"""The variants docs/benchmarks.md timed in chunks."""
NATIVE = "nig,nfg,nog,niaf,noaf,peepholes,cifg,gru-cho,gru-cudnn"


def contender(task_name: str, variant: str, length: int, hidden: int, batch: int,
              compile: str) -> tuple[Callable[[], None], str, float]:
    """A function doing one training step, its engine, and the seconds its first step took (compiling)."""
    task = make_task(task_name)
    torch.manual_seed(0)
    model = VariantNet(task, variant, hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    forward, engine = compiled(model, compile)
    rng = np.random.default_rng(0)

    def step() -> None:
        train_step(forward, model, task, optimizer, task.batch(rng, batch, length), 1.0)

    start = time.perf_counter()
    try:
        step()
    except Exception as error:
        forward, engine = eager(model, error)
        step()
    return step, engine, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=TASKS[:3], default="order")
    parser.add_argument("--length", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--chunks", default="none",
                        help=f"variants also timed compiled in chunks of steps (e.g. {CHUNKED}; default none)")
    parser.add_argument("--native", default=NATIVE,
                        help=f"variants also timed in the C++ unroll ('none' for none; default {NATIVE})")
    parser.add_argument("--compiled", default="none",
                        help="variants also timed with the whole model under torch.compile (6-134 s each to compile)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = [v for v in args.variants.split(",") if v]
    to_compile = [] if args.compiled == "none" else [v for v in args.compiled.split(",") if v]
    in_chunks = [] if args.chunks == "none" else [v for v in args.chunks.split(",") if v]
    in_native = [] if args.native == "none" else [v for v in args.native.split(",") if v]
    print(f"variants training speed: task {args.task}, T={args.length}, H={args.hidden}, B={args.batch}, "
          f"{args.threads} thread(s), torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    runs: dict[str, tuple[Callable[[], None], str, float]] = {}
    for variant in dict.fromkeys([BASELINE, *variants]):
        runs[variant] = contender(args.task, variant, args.length, args.hidden, args.batch, "off")
    for variant in in_chunks:
        runs[f"{variant} chunks"] = contender(args.task, variant, args.length, args.hidden, args.batch, "chunks")
    for variant in in_native:
        runs[f"{variant} native"] = contender(args.task, variant, args.length, args.hidden, args.batch, "native")
    for variant in to_compile:
        runs[f"{variant} compiled"] = contender(args.task, variant, args.length, args.hidden, args.batch, "on")
    for step, _, _ in runs.values():
        for _ in range(2):
            step()
    rates: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for repeat in range(args.repeats):
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:
            start = time.perf_counter()
            for _ in range(args.steps):
                runs[name][0]()
            rates[name].append(args.steps / (time.perf_counter() - start))
    base = statistics.median(rates[BASELINE])
    print(f"\n| variant | engine | steps/s | fused LSTM steps/s | ratio | >= {TARGET}x | first step, compiling (s) |")
    print("| --- | --- | ---: | ---: | ---: | --- | ---: |")
    for name, (_, engine, first) in runs.items():
        rate = statistics.median(rates[name])
        print(f"| {name} | {engine} | {rate:.1f} | {base:.1f} | {rate / base:.2f} | "
              f"{'yes' if rate / base >= TARGET else 'no'} | {first:.1f} |")


if __name__ == "__main__":
    main()
