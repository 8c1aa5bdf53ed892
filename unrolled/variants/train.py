"""Which variation is best: one training run of a cell variant on a long-range task.

The variants are the cells of `unrolled.cells` with the options each paper
names (Greff et al. 2015, "LSTM: A Search Space Odyssey"; Jozefowicz et al.
2015; Cho et al. 2014). The model is the smallest that can show a difference:

    e_t = E x_t                  embedding (tokens) or a linear map (features)   (B, T, E)
    h_t = cell(e_t, h_{t-1})     one `Recurrent` layer of the variant's cell       (B, T, H)
    y   = W_o h_{T-k+1..T} + b_o the head on the last k steps (every step for the LM)

trained by Adam with the gradient's norm clipped, on fresh batches from the
task's generator, until the run's time budget is spent; then scored once on a
held-out set drawn from another seed.

Why `run` has its own loop rather than `unrolled.training.Trainer`: the two
measure different things, and each difference would change the suite's
results. (1) Data: the trainer's `TrainData` is epochs of ``len(data)``
batches, each a function of (epoch, index) so that a resume can redo it; a run
here draws an endless stream from one NumPy generator (`seed_rng`). Serving
that stream as epochs means a generator per batch index, which changes every
batch, so new results would no longer match the finished runs the suite's
resume keeps. (2) Budget: `budget` is wall time of updates only, so that the
suite can give every variant the same share and set the evaluation's time
aside (`evaluation_seconds`); the trainer's max_time counts its evaluations
and saves, and a time-bounded CPU run changes torch's thread count with the
machine's load, which would blur the engines' steps/s the suite compares.
(3) Divergence is a finding here (a run whose held-out loss is not finite
scores chance, or infinity where lower is better), where the trainer stops
with `TrainingError`. (4) The trainer writes a run folder (checkpoints,
metrics, curve) per run; the suite trains dozens of runs of seconds each and
keeps one row of results.csv per run. The compile fallback (`eager` after a compiler fails at its first
call) would also have to move inside a model's ``loss``.

Speed: variants without a fused kernel run through `Recurrent.unroller`.
`compile="native"` (the suite's default) is the C++ unroll with its
hand-written backward (`unrolled.native`), 0.83x to 1.07x of the fused LSTM's
training steps/s at T = 20 to 100 (H = 64, one thread); it also serves the
cuDNN-form GRU, whose fused CPU kernel in torch trains at about 0.4x to 0.6x
of the LSTM's. `compile="off"` is `unroll` in Python, 0.23x to 0.55x.
`compile="chunks"` runs that loop compiled in chunks of 10 steps
(`unrolled.chunked`): 0.65x to 0.77x at T = 20, 0.46x to 0.57x at T = 100,
after 5 to 25 s of compiling per variant and input size. `compile="on"` hands
the whole model to `torch.compile`, which traces every step, so compiling
grows with T (44 s at T=20 and 121 s at T=60 on 2 CPU cores, LSTM-CIFG,
H=64): 0.84x at T = 20, 0.72x at T = 50. If the C++ library cannot be built,
or compiling fails, the run goes on eagerly and says so in `RunResult.engine`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from unrolled import native
from unrolled.chunked import unroll_in_chunks
from unrolled.data.longrange import CharLM, Task
from unrolled.native import native_unroll
from unrolled.recurrent import Recurrent, unroll

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "rnn": ("rnn", {}),
    "lstm": ("lstm", {}),
    "lstm-fb0": ("lstm", {"forget_bias": 0.0}),
    "nig": ("lstm", {"input_gate": False}),
    "nfg": ("lstm", {"forget_gate": False}),
    "nog": ("lstm", {"output_gate": False}),
    "niaf": ("lstm", {"input_activation": False}),
    "noaf": ("lstm", {"output_activation": False}),
    "peepholes": ("lstm", {"peepholes": True}),
    "cifg": ("lstm", {"coupled": True}),
    "gru-cho": ("gru", {"variant": "cho"}),
    "gru-cudnn": ("gru", {"variant": "cudnn"}),
}
"""Variant name -> (Recurrent mode, cell options). Every LSTM but lstm-fb0 starts its forget bias at 1."""
DESCRIPTIONS = {
    "rnn": "vanilla RNN, tanh", "lstm": "LSTM, forget bias 1", "lstm-fb0": "LSTM, forget bias 0",
    "nig": "no input gate", "nfg": "no forget gate", "nog": "no output gate", "niaf": "no input activation",
    "noaf": "no output activation", "peepholes": "LSTM with peepholes", "cifg": "coupled input-forget gate",
    "gru-cho": "GRU, Cho et al. form", "gru-cudnn": "GRU, cuDNN form",
}
COMPILE_CHOICES = ("off", "on", "chunks", "native")
"""Eager; the whole model under torch.compile; `unroll` compiled in chunks of steps (`unrolled.chunked`); the
C++ unroll with its hand-written backward (`unrolled.native`)."""
EVAL_EXAMPLES = 512
EVAL_BATCH = 256
EMBEDDING = 16


@dataclass(frozen=True)
class RunSpec:
    """One cell of the benchmark's grid, and the model and optimiser it trains."""

    task: str
    variant: str
    length: int
    seed: int
    hidden: int = 64
    batch: int = 32
    lr: float = 3e-3
    clip: float = 1.0


@dataclass(frozen=True)
class RunResult:
    score: float
    loss: float
    steps: int
    seconds: float
    engine: str


def check_variants(names: list[str]) -> None:
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant {unknown[0]!r}: choose from {', '.join(VARIANTS)}")


class VariantNet(nn.Module):
    """Input map, one recurrent layer of the variant's cell, a head on the last `read_last` steps."""

    def __init__(self, task: Task, variant: str, hidden: int) -> None:
        super().__init__()
        check_variants([variant])
        mode, options = VARIANTS[variant]
        self.read_last = task.read_last
        size = EMBEDDING if task.tokens else task.inputs
        self.embed: nn.Module = nn.Embedding(task.inputs, size) if task.tokens else nn.Identity()
        self.rnn = Recurrent(mode, size, hidden, batch_first=True, **options)
        self.head = nn.Linear(hidden, task.outputs)

    @property
    def fused(self) -> bool:
        return self.rnn.fused_mode is not None

    def forward(self, x: Tensor) -> Tensor:
        e = self.embed(x)  # (B, T, E)
        h, _ = self.rnn(e)  # (B, T, H)
        if self.read_last:
            h = h[:, -self.read_last :]  # (B, k, H)
        y = self.head(h)  # (B, k or T, outputs)
        return y.squeeze(1) if self.read_last == 1 else y


def seed_rng(spec: RunSpec, part: int) -> np.random.Generator:
    """The generator of one run's data: part 0 trains, part 1 evaluates (the same for every variant)."""
    return np.random.default_rng([spec.seed, spec.length, part])


def evaluation_set(task: Task, spec: RunSpec) -> tuple[Tensor, Tensor]:
    """The held-out examples: validation text for the LM, else EVAL_EXAMPLES drawn from the evaluation seed."""
    if isinstance(task, CharLM):
        return task.validation(spec.length)
    return task.batch(seed_rng(spec, 1), EVAL_EXAMPLES, spec.length)


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, data: tuple[Tensor, Tensor]) -> tuple[float, float]:
    """(score, loss) over the held-out set, in batches, the model in eval mode."""
    model.eval()
    x, y = data
    predictions = torch.cat([model(x[i : i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])
    model.train()
    return task.score(predictions, y), float(task.loss(predictions, y))


def compiled(model: VariantNet, mode: str) -> tuple[Any, str]:
    """The callable to train with and its engine's name, by `COMPILE_CHOICES` for the transparent path.

    "fused" when torch's kernel serves the variant, "eager", "compiled" (the whole model), "compiled chunks",
    "native" (C++, also for the cuDNN-form GRU); a compiler that fails at once gives "eager (ErrorName)", an
    extension that cannot be built "eager (native: reason)" (or "fused" where torch's kernel serves).
    """
    if mode == "native" and (model.rnn.fused_mode == "GRU" or not model.fused):
        # torch's fused GRU trains at about 0.4x of its fused LSTM on the CPU; the C++ unroll serves it instead
        if (reason := native.unavailable()) is not None:
            return model, "fused" if model.fused else f"eager (native: {reason})"
        model.rnn.fused = False
        model.rnn.unroller = native_unroll
        return model, "native"
    if model.fused:
        return model, "fused"
    if mode == "chunks":
        model.rnn.unroller = unroll_in_chunks
        return model, "compiled chunks"
    if mode == "off":
        return model, "eager"
    try:
        return torch.compile(model, dynamic=False), "compiled"
    except Exception as error:
        return model, f"eager ({type(error).__name__})"


def eager(model: VariantNet, error: Exception) -> tuple[Any, str]:
    """Back to the eager transparent path after a compiler failed at its first call: (model, "eager (ErrorName)")."""
    model.rnn.unroller = unroll
    return model, f"eager ({type(error).__name__})"


def train_step(forward: Any, model: nn.Module, task: Task, optimizer: torch.optim.Optimizer,
               batch: tuple[Tensor, Tensor], clip: float) -> float:
    x, y = batch
    optimizer.zero_grad(set_to_none=True)
    loss = task.loss(forward(x), y)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return float(loss.detach())


def run(task: Task, spec: RunSpec, *, budget: float, compile: str = "off", steps: int | None = None) -> RunResult:
    """Train `spec` for `budget` seconds of wall time (the evaluation's time left out), or for exactly `steps`
    updates when given (the budget then unused), then score it once."""
    torch.manual_seed(spec.seed)
    model = VariantNet(task, spec.variant, spec.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr)
    rng = seed_rng(spec, 0)
    forward, engine = compiled(model, compile)
    start = time.perf_counter()
    limit, steps = steps, 0
    while (steps < limit) if limit is not None else (steps == 0 or time.perf_counter() - start < budget):
        batch = task.batch(rng, spec.batch, spec.length)
        try:
            train_step(forward, model, task, optimizer, batch, spec.clip)
        except Exception as error:
            if not engine.startswith("compiled") or steps:
                raise
            forward, engine = eager(model, error)
            train_step(forward, model, task, optimizer, batch, spec.clip)
        steps += 1
    seconds = time.perf_counter() - start
    score, loss = evaluate(model, task, evaluation_set(task, spec))
    if not math.isfinite(loss):
        score = task.chance if task.higher_better else float("inf")
    return RunResult(score=score, loss=loss, steps=steps, seconds=seconds, engine=engine)


def evaluation_seconds(task: Task, spec: RunSpec) -> float:
    """Wall time of one held-out evaluation of an untrained model of `spec` (the smallest useful budget)."""
    torch.manual_seed(spec.seed)
    model = VariantNet(task, spec.variant, spec.hidden)
    data = evaluation_set(task, spec)
    start = time.perf_counter()
    evaluate(model, task, data)
    return time.perf_counter() - start
