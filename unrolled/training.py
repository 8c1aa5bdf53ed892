"""The one trainer for every model: the loop, its checkpoints and logs, and exact resume.

The trainer knows a model only through `Trainable` (an ``nn.Module`` with
``loss(batch) -> (loss, metrics)``) and data only through `TrainData` (batches
of an epoch from any index on, a share per process, a little state). One step::

    batch = next(data.batches(epoch, index))           deterministic given (epoch, index)
    loss, metrics = model.loss(to_device(batch))        loss checked finite before backward
    zero_grad(set_to_none=True); loss.backward()
    norm = clip_grad_norm_(params, clip_norm)           checked finite; skipped when clipping is off
    lr = learning_rate(config, step, ...)               of the step (a time-bounded cosine: and the clock)
    optimizer.step(); model.after_update()              the hook only where the model defines it
    step += 1; index += 1                               index == len(data): next epoch, index 0

and between steps: a metrics line every `log_every` steps (means over those
steps), an evaluation every `eval_every` (`best` when it improves, then
`last`), an extra save of `last` every `save_every`; a run stops at
`max_steps`, `max_epochs`, `max_time`, or after `early_stop` evaluations
without improvement, then evaluates and saves once more.

Learning rate of update number s (0 for the first), warm-up W, base lr:

    ========  =================================================================
    schedule  lr(s) = lr * min(1, (s + 1) / W) * decay(s)
    ========  =================================================================
    constant  decay = 1
    cosine    decay = r + (1 - r) (1 + cos(pi p)) / 2,  p in [0, 1] the progress (below),
              r = min_lr_ratio
    step      decay = gamma ** (s // step_size)
    plateau   decay = the current scale: x plateau_factor after plateau_patience
              evaluations in a row without a new best validation loss
    ========  =================================================================

The cosine's progress p is the larger of the fractions of each budget spent
after the warm-up::

    p_steps = clamp((s - W) / (N - W), 0, 1)    N = decay_steps, else max_steps, else max_epochs x len(data)
    p_time  = p_a + (1 - p_a) clamp((t - a) / (T - a), 0, 1)
    p       = max(p_steps, p_time)              (either term absent when its budget is; decay 1 with neither)

where t is the run's elapsed seconds at the update's start (rank 0's clock,
evaluations and saves included), T = max_time, and the anchor (a, p_a) is where
the time line starts: (the elapsed time when update W begins, 0), so the decay
starts when the warm-up ends. With `decay_steps` set, only p_steps counts. N
is taken from the config each time a run starts or resumes (so a run stopped
at max_steps k and resumed to n decays over n steps after the resume: set
decay_steps to n in both for the schedule of an n-step run).

Why time and not a step horizon: a run bounded by max_time used to guess how
many steps fit from its pace and decay over them. Any stall, slower stretch or
evaluation made the guess wrong: fixed from steps 2 to 21, one 54 s stall there
set N near 110 in a 350-step run, which then sat at the floor for two thirds of
its time; re-estimated at evaluations, the lr jumped back up. As a function of
the elapsed time, p is non-decreasing whatever the pace does (t only grows, and
the max of non-decreasing terms is non-decreasing), so after the warm-up the lr
never rises; p < 1 until t = T, so the lr stays above the floor until the time
runs out and reaches it then. A stall costs the schedule the time it takes,
exactly as it costs the budget. Where both a time and a step budget are set,
whichever is spent faster drives the decay, and the decay ends with the run.

Resume: the anchor is saved with the run (`TrainingProgress.decay_from`,
`decay_start`, `decay_budget`) and the elapsed time too, so a resumed
time-bounded run continues the schedule where it stood. A resume with another
max_time re-anchors at the saved point, (a, p_a) = (t, p_time(t)) under the
old budget, so the lr continues from where it was and decays to the floor by
the new end (a run that had reached its floor stays there). Exact resume holds
bit for bit on the CPU for step- and epoch-bounded runs (the lr is a pure
function of s); a time-bounded run resumes its weights, optimiser, data and
generators exactly, but its lr follows the clock, which no two runs share, and
the time between the last save and the kill is not counted.

Threads: a time-bounded CPU run keeps torch's threads to the cores other
programs leave free, checked at every train line (`unrolled.machine`): with a
busy core, every small operation of a recurrent step would otherwise wait for
the thread that shares it. `TrainConfig.threads` fixes the count instead.

A run folder::

    RUN/last/          checkpoint (see `unrolled.checkpoint`) after the latest step saved:
                       at every evaluation, every save_every steps, at the end, on Ctrl-C
    RUN/best/          the same at the lowest validation loss (only with an evaluate function)
    RUN/metrics.jsonl  one JSON object a line: {"step", "epoch", "split": "train"|"validation",
                       "loss", ...other metrics, "lr", "tokens_per_s" (train), "elapsed",
                       "threads" (train lines of a run whose threads follow the machine)}
    RUN/curve.png      train and validation loss against step, redrawn at evaluations and the end

Each checkpoint's config.json is the application's `checkpoint_config` (with
its "kind") plus ``"train"`` (the `TrainConfig`), ``"step"`` and, once the run
has evaluated, ``"validation"`` (the latest evaluation's metrics and its step:
what `best/` scored, for `best/`); its training
state (tensors in safetensors, the rest JSON; nothing pickled) is::

    {"format": 1, "progress": TrainingProgress as a dict (step, epoch, batch index,
     elapsed, time-line anchor, best loss, evaluations without improvement, plateau scale,
     the unfinished metrics window), "optimizer": optimizer.state_dict(),
     "rng": capture_rng_state(), "data": {"world": W, "ranks": [data.state_dict() of each process]}}

Resume (``fit(resume=True)``) loads ``RUN/last``, checks that the application's
config matches, restores all of the above and continues: on CPU, n steps
straight and k steps, stop, resume to n give bit-identical losses and
parameters. Evaluation runs with the generators' states put back afterwards,
and only the regular evaluations (every `eval_every` steps) feed early stopping
and the plateau schedule, so where a run stops does not change what it learns.

Ctrl-C saves ``RUN/last`` with the state after the last completed step and
returns (stopped_because="interrupted"); a SIGINT during an optimizer update
waits for the update to end. A step interrupted before its update is undone in
the save: torch's generators and the data's state are taken from the step's
start (NumPy's and Python's generators are saved as they are: training steps
are expected not to draw from them; buffers a forward pass changed, such as
batch-norm statistics, are not undone).

Distributed: under ``torchrun --nproc_per_node N`` (WORLD_SIZE > 1) each
process trains on ``data.shard(rank, N)`` through DistributedDataParallel
(gloo on CPU, nccl on ``cuda:LOCAL_RANK``); rank 0 evaluates, logs and writes
checkpoints, and broadcasts the validation loss and the max_time decision so
every process stops at the same step. An interrupted distributed run saves
nothing (its `last` from the latest evaluation or save stays).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import math
import os
import random
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, cast

import numpy as np
import safetensors.torch
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from unrolled.checkpoint import (
    CheckpointError,
    capture_rng_state,
    flatten_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    unflatten_state,
)
from unrolled.machine import ThreadGovernor

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULES = ("constant", "cosine", "step", "plateau")
PRECISIONS = ("fp32", "bf16", "auto")
STOP_REASONS = ("max_steps", "max_epochs", "max_time", "early_stop", "interrupted")
LAST, BEST = "last", "best"
METRICS_FILE, CURVE_FILE = "metrics.jsonl", "curve.png"
STATE_FORMAT = 1
PACE_STEPS = 5
"""Steps (after the session's first) timed to warn that a time budget is too short for the warm-up or evaluations."""
APP_CONFIG_RESERVED = ("train", "step", "validation")
"""Keys the trainer adds to the checkpoint config; ignored when comparing configs on resume."""

Evaluate = Callable[[nn.Module], dict[str, float]]

# The phases of the loop, for Ctrl-C: where the state on hand is whole.
SETUP, BOUNDARY, STEP, UPDATE = "setup", "boundary", "step", "update"


class TrainingError(ValueError):
    """Training diverged (a non-finite loss or gradient norm); one line saying what, where, and what is kept."""


# ---------------------------------------------------------------- protocols


class Trainable(Protocol):
    """A model the trainer can train: an ``nn.Module`` with a ``loss`` method.

    ``loss(batch)`` returns the scalar loss to minimise and a dict of float
    metrics of the batch; ``"tokens"`` there (the number of predicted tokens)
    gives the tokens/s of the logs. Metrics are averaged over logging windows.
    """

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]: ...


# A model may also define ``after_update()``: the trainer calls it after every
# optimizer step (e.g. Kim's max-norm constraint on the CNN classifier's output weights).


class TrainData(Protocol):
    """Training batches, as the trainer sees them.

    ``len(data)`` is the number of batches per epoch (the same on every
    process); ``batches(epoch, start)`` yields the batches of `epoch` from index
    `start` on, the same ones whenever it is asked (resume depends on it);
    ``shard(rank, world)`` is this process's share of every global batch.
    ``state_dict()`` is extra state to save (e.g. a hidden state carried across
    batches; tensors allowed): the trainer asks for it at every step's start, so
    it must be cheap (return the current objects, no copies) and a step must
    replace, not overwrite in place, the tensors it returned.
    """

    def __len__(self) -> int: ...

    def batches(self, epoch: int, start: int) -> Iterator[Any]: ...

    def shard(self, rank: int, world: int) -> TrainData: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


# ---------------------------------------------------------------- configuration


@dataclass
class TrainConfig:
    """How to train: optimiser, learning-rate schedule, clipping, budget, evaluation, logging.

    ``dataclasses.asdict`` of it is plain JSON (saved in every checkpoint's
    config.json under "train"). At least one of max_steps, max_epochs and
    max_time must be set. Invalid values raise a one-line ValueError.

    ================  ==========================================================
    field             meaning
    ================  ==========================================================
    optimizer         "adam", "adamw", "rmsprop" or "sgd"
    lr                peak learning rate
    weight_decay      L2 (adam, rmsprop, sgd) or decoupled (adamw) weight decay
    betas             Adam's (beta1, beta2)
    momentum          momentum of sgd and rmsprop
    schedule          "constant", "cosine", "step" or "plateau" (see the module docstring)
    warmup_steps      linear warm-up over the first updates, for every schedule
    min_lr_ratio      the cosine floor, a fraction of lr
    decay_steps       the cosine horizon in updates; default max_steps, else max_epochs x batches per
                      epoch; with max_time the decay also follows the time spent, whichever is
                      further (see the module docstring)
    step_size, gamma  step decay: x gamma every step_size updates
    plateau_factor    reduce-on-plateau: the lr is multiplied by plateau_factor after
    plateau_patience  plateau_patience (regular) evaluations in a row without a new best loss
    clip_norm         clip the gradients' global norm to this; None or 0: no clipping
    max_steps         stop after this many optimizer steps in all (resumes included)
    max_epochs        stop after this many epochs of data
    max_time          stop after this many seconds in all (resumes included; evaluating and saving count)
    eval_every        evaluate every this many steps (and at the end); None: once per epoch
    early_stop        stop after this many (regular) evaluations without a new best validation loss
    save_every        also save `last` every this many steps
    log_every         a train metrics line every this many steps (means over them)
    seed              seeds torch, NumPy and Python at the start of a fresh run
    progress          show a progress bar (stderr)
    device            "cpu", "cuda", "cuda:1", ... (distributed CUDA runs use cuda:LOCAL_RANK)
    threads           torch's CPU threads for the run; None: torch's count, lowered to the cores other
                      programs leave free while a time-bounded run goes on (`unrolled.machine`;
                      step- and epoch-bounded runs keep the count, so they resume bit for bit)
    precision         "fp32"; "bf16": the training forward under ``torch.autocast`` in bfloat16
                      (float32 weights, gradients and optimiser state; evaluation stays float32);
                      "auto": bf16 where the device computes it natively (`bf16_native`), else fp32
    ================  ==========================================================
    """

    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    decay_steps: int | None = None
    step_size: int = 1000
    gamma: float = 0.5
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    clip_norm: float | None = 1.0
    max_steps: int | None = None
    max_epochs: int | None = None
    max_time: float | None = None
    eval_every: int | None = 500
    early_stop: int | None = None
    save_every: int | None = None
    log_every: int = 10
    seed: int = 0
    progress: bool = True
    device: str = "cpu"
    precision: str = "fp32"
    threads: int | None = None

    def __post_init__(self) -> None:
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("precision", self.precision, PRECISIONS)
        _number("lr", self.lr, low=0.0, low_open=True, hint="e.g. 2e-3")
        _number("weight_decay", self.weight_decay, low=0.0, hint="0 turns it off")
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers (beta1, beta2), got {self.betas!r}: e.g. (0.9, 0.99)")
        for name, beta in zip(("betas[0]", "betas[1]"), self.betas, strict=True):
            _number(name, beta, low=0.0, high=1.0, high_open=True, hint="e.g. 0.9 and 0.99")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        _number("momentum", self.momentum, low=0.0, high=1.0, high_open=True, hint="e.g. 0.9, or 0 for none")
        _whole("warmup_steps", self.warmup_steps, low=0)
        _number("min_lr_ratio", self.min_lr_ratio, low=0.0, high=1.0, hint="e.g. 0.1")
        _whole("decay_steps", self.decay_steps, low=1, optional=True)
        _whole("step_size", self.step_size, low=1)
        _number("gamma", self.gamma, low=0.0, high=1.0, low_open=True, hint="e.g. 0.5")
        _number("plateau_factor", self.plateau_factor, low=0.0, high=1.0, low_open=True, high_open=True,
                hint="e.g. 0.5")
        _whole("plateau_patience", self.plateau_patience, low=1)
        if self.clip_norm is not None:
            _number("clip_norm", self.clip_norm, low=0.0, hint="e.g. 1.0, or 0 for no clipping")
        _whole("max_steps", self.max_steps, low=1, optional=True)
        _whole("max_epochs", self.max_epochs, low=1, optional=True)
        if self.max_time is not None:
            _number("max_time", self.max_time, low=0.0, low_open=True, hint="seconds, e.g. 600")
        if self.max_steps is None and self.max_epochs is None and self.max_time is None:
            raise ValueError("no training budget: set at least one of max_steps, max_epochs and max_time")
        _whole("eval_every", self.eval_every, low=1, optional=True)
        _whole("early_stop", self.early_stop, low=1, optional=True)
        _whole("save_every", self.save_every, low=1, optional=True)
        _whole("log_every", self.log_every, low=1)
        _whole("seed", self.seed, low=0)
        _whole("threads", self.threads, low=1, optional=True)
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a name such as 'cpu' or 'cuda', got {self.device!r}")

    @property
    def clipping(self) -> float | None:
        """The clipping norm, or None when clipping is off (clip_norm None or 0)."""
        return self.clip_norm if self.clip_norm else None


def _choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _number(name: str, value: object, *, low: float, high: float = math.inf, low_open: bool = False,
            high_open: bool = False, hint: str) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        number = float(cast(float, value))
        ok = (number > low if low_open else number >= low) and (number < high if high_open else number <= high)
    if not ok:
        span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a number in {span}, got {value!r}: {hint}")


def _whole(name: str, value: object, *, low: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        unset = " or leave it unset" if optional else ""
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}: pass one{unset}")


DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PLAIN_SECONDS = re.compile(_NUMBER)
_WITH_UNITS = re.compile("".join(f"(?:(?P<{unit}>{_NUMBER}){unit})?" for unit in DURATION_UNITS))


def parse_duration(text: str) -> float:
    """Seconds in a duration such as "90", "90s", "10m", "1.5h" or "1h30m" (units h, m, s, in that order).

    Raises a one-line ValueError naming the text and the accepted forms.
    """
    cleaned = str(text).strip().lower()
    if _PLAIN_SECONDS.fullmatch(cleaned):
        return float(cleaned)
    match = _WITH_UNITS.fullmatch(cleaned)
    if not cleaned or match is None:
        raise ValueError(f"cannot read {text!r} as a duration: use seconds (90) or numbers with h, m, s in that "
                         "order (90s, 10m, 1.5h, 1h30m)")
    return sum(float(amount) * DURATION_UNITS[unit] for unit, amount in match.groupdict().items() if amount)


# ---------------------------------------------------------------- optimizer and schedule


def build_optimizer(parameters: Any, config: TrainConfig) -> torch.optim.Optimizer:
    """The torch optimizer `config.optimizer` names, with the config's lr, weight decay, betas or momentum."""
    params = list(parameters)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def _apply_hyperparameters(optimizer: torch.optim.Optimizer, config: TrainConfig) -> None:
    """Set the config's hyperparameters on every parameter group (after loading a saved optimizer state)."""
    for group in optimizer.param_groups:
        group["weight_decay"] = config.weight_decay
        if "betas" in group:
            group["betas"] = config.betas
        if "momentum" in group:
            group["momentum"] = config.momentum


def learning_rate(config: TrainConfig, step: int, *, horizon: int | None = None,
                  time_progress: float | None = None, plateau_scale: float = 1.0) -> float:
    """The learning rate of update number `step` (0 for the first); see the module docstring's table.

    `horizon` is the cosine's length in updates N (None: no step budget);
    `time_progress` the cosine's progress by the time budget, p_time (None: no time
    budget, or the warm-up is not over); the cosine follows the larger of the two,
    with decay 1 while neither is known. `plateau_scale` is the plateau schedule's
    current factor.
    """
    warm = config.warmup_steps
    factor = min(1.0, (step + 1) / warm) if warm else 1.0
    if config.schedule == "cosine":
        progress = cosine_progress(step, warm, horizon, time_progress)
        if progress is not None:
            floor = config.min_lr_ratio
            factor *= floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    elif config.schedule == "step":
        factor *= config.gamma ** (step // config.step_size)
    elif config.schedule == "plateau":
        factor *= plateau_scale
    return config.lr * factor


def cosine_progress(step: int, warmup: int, horizon: int | None, time_progress: float | None) -> float | None:
    """p = max(p_steps, p_time) in [0, 1], p_steps = clamp((step - W) / (N - W)); None when neither is known."""
    parts = []
    if horizon is not None:
        parts.append(_clamp((step - warmup) / max(1, horizon - warmup)))
    if time_progress is not None:
        parts.append(_clamp(time_progress))
    return max(parts) if parts else None


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


@dataclass
class TrainingProgress:
    """Where a run stands, between two steps; saved as JSON in every checkpoint's training state.

    `batch` is the index within `epoch` of the next batch. `decay_from`,
    `decay_start`, `decay_budget`: the anchor of a time-bounded cosine, (a, p_a)
    and the max_time T its line ends at (None until the warm-up ends; see the
    module docstring); `time_progress(t)` is p_time. `best_loss` /
    `best_step`: the lowest validation loss of any evaluation (what `best/`
    holds). `patience_best` / `stale_evaluations`: the regular evaluations'
    best and how many came since without beating it (early stopping);
    `plateau_scale` / `plateau_stale`: the plateau schedule's factor and its own
    count, restarted at each reduction. `window_sums` / `window_steps`: the
    metrics summed since the last train line (so a resumed run's lines match).
    """

    step: int = 0
    epoch: int = 0
    batch: int = 0
    elapsed: float = 0.0
    decay_from: float | None = None
    decay_start: float = 0.0
    decay_budget: float | None = None
    best_loss: float | None = None
    best_step: int | None = None
    patience_best: float | None = None
    stale_evaluations: int = 0
    plateau_scale: float = 1.0
    plateau_stale: int = 0
    window_sums: dict[str, Any] = field(default_factory=dict)
    window_steps: int = 0

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TrainingProgress:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in state.items() if key in names})

    def time_progress(self, elapsed: float) -> float | None:
        """p_time = p_a + (1 - p_a) clamp((t - a) / (T - a)) at `elapsed` seconds; None before the anchor."""
        if self.decay_from is None or self.decay_budget is None:
            return None
        span = self.decay_budget - self.decay_from
        fraction = _clamp((elapsed - self.decay_from) / span) if span > 0 else 1.0
        return self.decay_start + (1.0 - self.decay_start) * fraction

    def anchor(self, elapsed: float, budget: float) -> None:
        """Start (or restart) the time line at `elapsed`: from 0 at the warm-up's end, else where it stands."""
        start = self.time_progress(elapsed)
        self.decay_from, self.decay_start, self.decay_budget = elapsed, start or 0.0, budget

    def record_best(self, loss: float) -> bool:
        """Note a validation loss of any evaluation; True if it is a new best (best/ should be saved)."""
        if self.best_loss is not None and not loss < self.best_loss:
            return False
        self.best_loss, self.best_step = loss, self.step
        return True

    def record_regular(self, loss: float, config: TrainConfig) -> bool:
        """Note a regular evaluation's loss for early stopping and the plateau; True when it is time to stop."""
        if self.patience_best is None or loss < self.patience_best:
            self.patience_best, self.stale_evaluations, self.plateau_stale = loss, 0, 0
        else:
            self.stale_evaluations += 1
            self.plateau_stale += 1
            if config.schedule == "plateau" and self.plateau_stale >= config.plateau_patience:
                self.plateau_scale *= config.plateau_factor
                self.plateau_stale = 0
        return config.early_stop is not None and self.stale_evaluations >= config.early_stop


@dataclass
class TrainResult:
    """What `Trainer.fit` returns.

    `steps`: optimizer steps in all (resumes included); `epochs`: epochs of
    data seen (2.5 = two and half of the third); `stopped_because`: one of
    max_steps, max_epochs, max_time, early_stop, interrupted; `best_loss` /
    `best_step`: the lowest validation loss and its step (None without
    evaluation); `last_metrics`: the latest evaluation's metrics, or without
    one the latest train line's means; `elapsed`: seconds of training in all.
    """

    steps: int
    epochs: float
    stopped_because: str
    best_loss: float | None
    best_step: int | None
    last_metrics: dict[str, float]
    run_dir: Path
    elapsed: float


# ---------------------------------------------------------------- helpers


def bf16_native(device: torch.device | str) -> bool:
    """Whether `device` computes bfloat16 matrix products natively (CPU: AVX-512 BF16 or AMX via oneDNN).

    Where it does not, bfloat16 is emulated and slower than float32, so
    precision "auto" stays float32 there.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """ "fp32" or "bf16": `precision`, with "auto" decided by `bf16_native`."""
    if precision == "auto":
        return "bf16" if bf16_native(device) else "fp32"
    return precision


def to_device(batch: Any, device: torch.device | str) -> Any:
    """`batch` with every tensor moved to `device`: through tuples (named ones too), lists, dicts, dataclasses.

    Anything else is passed as it is; a container whose contents did not move
    is returned itself (so on the CPU a batch comes back unchanged).
    """
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        items = [to_device(item, device) for item in batch]
        if all(new is old for new, old in zip(items, batch, strict=True)):
            return batch
        if isinstance(batch, list):
            return items
        return type(batch)(*items) if hasattr(batch, "_fields") else type(batch)(items)
    if isinstance(batch, dict):
        moved = {key: to_device(value, device) for key, value in batch.items()}
        return batch if all(moved[key] is value for key, value in batch.items()) else type(batch)(moved)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        changes = {}
        for item in dataclasses.fields(batch):
            if item.init:
                value = getattr(batch, item.name)
                new = to_device(value, device)
                if new is not value:
                    changes[item.name] = new
        return dataclasses.replace(batch, **changes) if changes else batch
    return batch


def distributed_context() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the environment torchrun sets; (0, 1, 0) in a plain process."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), NumPy's global generator and Python's `random`."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def plot_curve(path: Path, train: list[tuple[int, float]], validation: list[tuple[int, float]]) -> None:
    """Draw train and validation loss against step into a PNG at `path`, atomically (temp file, then rename)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for points, label, style in ((train, "train", "-"), (validation, "validation", "o-")):
        if points:
            steps, losses = zip(*points, strict=True)
            axes.plot(steps, losses, style, label=label, markersize=3)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    if train or validation:
        axes.legend()
    figure.tight_layout()
    temp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        figure.savefig(temp, format="png")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _json_safe(value: Any) -> Any:
    """Non-finite floats as None, so every metrics line is valid JSON."""
    return value if not isinstance(value, float) or math.isfinite(value) else None


def _differing_keys(new: Any, old: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON values differ (recursing into objects)."""
    if isinstance(new, dict) and isinstance(old, dict):
        found: list[str] = []
        for key in sorted(set(new) | set(old), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in new or key not in old:
                found.append(path)
            else:
                found += _differing_keys(new[key], old[key], path)
        return found
    return [] if new == old else [prefix or "(the whole config)"]


def _format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _pack_state(state: Any) -> bytes:
    """A state `flatten_state` takes, as safetensors bytes (its JSON tree in the metadata): to send between ranks."""
    tensors, tree = flatten_state(state)
    storable = {name: tensor.detach().to("cpu").contiguous().clone() for name, tensor in tensors.items()}
    return safetensors.torch.save(storable, metadata={"tree": json.dumps(tree, allow_nan=False)})


def _unpack_state(blob: bytes) -> Any:
    header_size = int.from_bytes(blob[:8], "little")
    tree = json.loads(json.loads(blob[8 : 8 + header_size])["__metadata__"]["tree"])
    return unflatten_state(safetensors.torch.load(blob), tree)


_NO_BUFFER_SYNC: dict[str, Any] = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)
"""DDP without syncing buffers at every forward (`broadcast_buffers` until torch renamed it, with a warning)."""


class _LossOf(nn.Module):
    """The model seen through its loss, for DistributedDataParallel (which hooks into forward)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        return cast(Trainable, self.model).loss(batch)


# ---------------------------------------------------------------- the trainer


class Trainer:
    """Train a `Trainable` model on `TrainData` under a `TrainConfig`, into the run folder `run_dir`.

    Args:
        model: an ``nn.Module`` with ``loss(batch) -> (loss, metrics)``; moved to config.device.
        data: the training batches (see `TrainData`).
        config: the `TrainConfig`.
        run_dir: the run folder (see the module docstring); created if missing.
        evaluate: ``evaluate(model) -> metrics`` with a "loss" key (lower is better), called
            under ``model.eval()`` and ``torch.no_grad()``; None: no evaluation, no `best/`.
        checkpoint_config: the application's JSON dict for config.json, with "kind" (e.g.
            "char-lm"), the model config, vocabulary, data split...; a resume must match it.
        clock: seconds, for max_time, speeds and `elapsed` (tests pass a fake one).

    ``fit(resume=False)`` trains and returns a `TrainResult`.
    """

    def __init__(self, model: nn.Module, data: TrainData, config: TrainConfig, run_dir: str | os.PathLike[str], *,
                 evaluate: Evaluate | None = None, checkpoint_config: dict[str, Any],
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not callable(getattr(model, "loss", None)):
            raise TypeError(f"a {type(model).__name__} has no loss(batch) method: the trainer needs one (Trainable)")
        if not isinstance(checkpoint_config, dict) or not isinstance(checkpoint_config.get("kind"), str):
            raise ValueError("checkpoint_config must be a dict with a 'kind' string, e.g. {'kind': 'char-lm', ...}")
        try:
            app_config = json.loads(json.dumps(checkpoint_config, allow_nan=False))
        except (TypeError, ValueError) as error:
            raise ValueError(f"checkpoint_config is not JSON-serialisable ({error})") from None
        if evaluate is None and config.schedule == "plateau":
            raise ValueError("the plateau schedule needs an evaluate function (validation loss): "
                             "pass one, or choose another schedule")
        if evaluate is None and config.early_stop is not None:
            raise ValueError("early stopping needs an evaluate function (validation loss): "
                             "pass one, or unset early_stop")
        self.model = model
        self.data = data
        self.config = config
        self.run_dir = Path(run_dir)
        self.evaluate = evaluate
        self.checkpoint_config = {key: value for key, value in app_config.items() if key not in APP_CONFIG_RESERVED}
        self.clock = clock

    # ------------------------------------------------------------ fit

    def fit(self, resume: bool = False) -> TrainResult:
        """Train until a limit, early stopping or Ctrl-C; with `resume`, continue the run saved in run_dir/last.

        Raises a one-line ValueError for a resume without checkpoint, a fresh
        start over an existing one or a resume with another model config, and
        `TrainingError` when the loss or gradient norm stops being finite.
        """
        self._phase = SETUP
        self._start_distributed()
        self._bar: Any = None
        self._metrics_file: Any = None
        threads = torch.get_num_threads()
        try:
            self._setup(resume)
            reason = self._run()
            return self._result(reason)
        finally:
            if self._bar is not None:
                self._bar.close()
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)  # what the run changed, given back
            if self._metrics_file is not None:
                self._metrics_file.close()
            if self._owns_group:
                dist.destroy_process_group()

    def _start_distributed(self) -> None:
        self.rank, self.world, local_rank = distributed_context()
        from unrolled.devices import resolve_device

        device = resolve_device(self.config.device)
        self._owns_group = False
        if self.world > 1:
            if device.type == "cuda":
                device = torch.device("cuda", local_rank)
                torch.cuda.set_device(device)
            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
                self._owns_group = True
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.device = device
        self._local_rank = local_rank
        self.precision = resolve_precision(self.config.precision, device)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The training forward's precision context: bfloat16 autocast, or nothing for fp32."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _setup(self, resume: bool) -> None:
        config = self.config
        self.model.to(self.device)
        self.model.train()
        self._parameters = [p for p in self.model.parameters() if p.requires_grad]
        if not self._parameters:
            raise ValueError(f"the {type(self.model).__name__} has no trainable parameters")
        self.optimizer = build_optimizer(self._parameters, config)
        self._data = self.data.shard(self.rank, self.world) if self.world > 1 else self.data
        self._epoch_length = len(self._data)
        self._eval_every = config.eval_every or self._epoch_length  # None: once per epoch
        if self._epoch_length < 1:
            raise ValueError("the training data has no batches: use more text, or a smaller batch size or length")
        self._train_points: list[tuple[int, float]] = []
        self._validation_points: list[tuple[int, float]] = []
        if resume:
            self._progress = self._load()
            self._saved_step: int | None = self._progress.step
        else:
            self._refuse_existing_checkpoint()
            seed_everything(config.seed)
            self._progress = TrainingProgress()
            self._saved_step = None
        horizon = config.decay_steps or config.max_steps
        if horizon is None and config.max_epochs is not None:
            horizon = config.max_epochs * self._epoch_length
        self._horizon = horizon
        # The cosine follows the time spent too (module docstring), unless decay_steps fixes its length.
        self._timed = config.schedule == "cosine" and config.decay_steps is None and config.max_time is not None
        progress = self._progress
        if self._timed and progress.decay_from is not None and progress.decay_budget != config.max_time:
            progress.anchor(progress.elapsed, float(cast(float, config.max_time)))  # a resume with a new budget
        self._time_progress: float | None = progress.time_progress(progress.elapsed) if self._timed else None
        if self.world > 1:
            module = _LossOf(self.model)
            ids = [self._local_rank] if self.device.type == "cuda" else None
            self._loss: Callable[[Any], tuple[Tensor, dict[str, float]]] = DistributedDataParallel(
                module, device_ids=ids, **_NO_BUFFER_SYNC)
        else:
            self._loss = cast(Trainable, self.model).loss
        hook = getattr(self.model, "after_update", None)
        self._after_update: Callable[[], None] | None = hook if callable(hook) else None
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._prepare_metrics(resume)
        self._start_step = self._progress.step
        self._evaluated_step: int | None = None
        self._drawn_step: int | None = None
        self._last_metrics: dict[str, float] = {}
        self._validation: dict[str, float] = {}  # the latest evaluation's metrics, saved with each checkpoint
        self._lr = self._learning_rate()
        self._interrupt_pending = False
        self._snapshot: tuple[tuple[Tensor, Tensor | None], dict[str, Any]] | None = None
        self._open_progress_bar()
        self._session_steps = 0
        self._elapsed_before = self._progress.elapsed
        self._session_start = self._tick = self.clock()
        self._window_time = 0.0
        self._timing_start = 0.0
        self._governor: ThreadGovernor | None = None
        if self.device.type == "cpu" and config.threads is not None:
            torch.set_num_threads(config.threads)
        elif self.device.type == "cpu" and config.max_time is not None and self.world == 1:
            self._governor = ThreadGovernor()
            time.sleep(0.2)  # a first look at what other programs keep busy, before the first step
            self._governor.update()

    def _refuse_existing_checkpoint(self) -> None:
        if not self.run_dir.is_dir():
            return
        for entry in sorted(self.run_dir.iterdir()):
            if entry.name in (LAST, BEST) or entry.name.startswith((f".{LAST}.", f".{BEST}.")):
                raise ValueError(f"{self.run_dir} already holds a checkpoint ({entry.name}): pass --resume to "
                                 "continue it, or choose another --out")

    def _load(self) -> TrainingProgress:
        last = self.run_dir / LAST
        try:
            checkpoint = load_checkpoint(last, kind=self.checkpoint_config["kind"])
        except CheckpointError:
            if not last.exists():
                raise ValueError(f"no checkpoint to resume in {last}; start without --resume") from None
            raise
        saved_app = {key: value for key, value in checkpoint.config.items() if key not in APP_CONFIG_RESERVED}
        differing = _differing_keys(self.checkpoint_config, saved_app)
        if differing:
            raise ValueError(f"the settings differ from those of the run saved in {last} ({', '.join(differing)}): "
                             "resume with the same settings, or start a new run with another --out")
        state = checkpoint.training_state
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"{last} holds no training state this trainer can resume; start a new run with "
                             "another --out")
        saved_optimizer = checkpoint.config.get("train", {}).get("optimizer")
        if saved_optimizer != self.config.optimizer:
            raise ValueError(f"the run in {last} was trained with the {saved_optimizer} optimizer, not "
                             f"{self.config.optimizer}: resume with --optimizer {saved_optimizer}")
        data = state["data"]
        if data["world"] != self.world:
            raise ValueError(f"the run in {last} was trained by {data['world']} process(es), not {self.world}: "
                             f"resume with {data['world']}")
        self.model.load_state_dict(checkpoint.model_state)
        self.optimizer.load_state_dict(state["optimizer"])
        _apply_hyperparameters(self.optimizer, self.config)
        restore_rng_state(*state["rng"])
        self._data.load_state_dict(data["ranks"][self.rank])
        progress = TrainingProgress.from_state(state["progress"])
        legacy = state["progress"].get("horizon")  # runs saved before the time line: a step horizon
        if isinstance(legacy, int) and progress.decay_from is None and self.config.max_time is not None:
            warm = self.config.warmup_steps
            if progress.step >= warm:
                progress.decay_from, progress.decay_budget = progress.elapsed, float(self.config.max_time)
                progress.decay_start = _clamp((progress.step - warm) / max(1, legacy - warm))
        return progress

    def _prepare_metrics(self, resume: bool) -> None:
        """Open metrics.jsonl: fresh, or on resume without the lines of steps past the checkpoint (redone now)."""
        path = self.run_dir / METRICS_FILE
        if not resume:
            (self.run_dir / CURVE_FILE).unlink(missing_ok=True)
            self._metrics_file = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed at the end of fit)
            return
        kept: list[str] = []
        original: list[str] = []
        if path.exists():
            original = path.read_text(encoding="utf-8").splitlines()
            for text in original:
                try:
                    line = json.loads(text)
                    step, loss = int(line["step"]), line.get("loss")
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a kill
                if step > self._progress.step:
                    continue
                kept.append(text)
                if isinstance(loss, (int, float)):
                    points = self._train_points if line.get("split") == "train" else self._validation_points
                    points.append((step, float(loss)))
        if kept != original:
            temp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
            temp.write_text("".join(text + "\n" for text in kept), encoding="utf-8")
            os.replace(temp, path)
        self._metrics_file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed at the end of fit)

    def _open_progress_bar(self) -> None:
        config, progress = self.config, self._progress
        budgets = [config.max_steps] if config.max_steps else []
        if config.max_epochs:
            budgets.append(config.max_epochs * self._epoch_length)
        self._step_budget = min(budgets) if budgets else None
        disable = not config.progress or self.rank != 0
        if self._step_budget is not None:
            self._bar = tqdm(total=self._step_budget, initial=min(progress.step, self._step_budget), unit="step",
                             file=sys.stderr, disable=disable, dynamic_ncols=True)
        else:
            total = float(config.max_time or 0.0)
            self._bar = tqdm(total=total, initial=min(progress.elapsed, total), unit="s", file=sys.stderr,
                             disable=disable, dynamic_ncols=True,
                             bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}s [{elapsed}{postfix}]")

    # ------------------------------------------------------------ the loop

    def _run(self) -> str:
        """The loop under a SIGINT handler that holds Ctrl-C back during optimizer updates."""
        handle = threading.current_thread() is threading.main_thread() and (
            signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        previous = signal.signal(signal.SIGINT, self._on_sigint) if handle else None
        self._phase = BOUNDARY
        try:
            try:
                reason = self._loop()
                self._finish()
            except KeyboardInterrupt:
                self._save_after_interrupt()
                reason = "interrupted"
        finally:
            if handle:
                signal.signal(signal.SIGINT, previous)
        return reason

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self._phase == UPDATE and not self._interrupt_pending:
            self._interrupt_pending = True  # raised once the update is done; a second Ctrl-C goes through
            return
        raise KeyboardInterrupt

    def _loop(self) -> str:
        progress, length = self._progress, self._epoch_length
        batches: Iterator[Any] | None = None
        while True:
            reason = self._limit_reached()
            if reason is not None:
                return reason
            if self._timed:
                self._follow_the_clock()
            self._snapshot = (self._torch_rng(), self._data.state_dict())
            self._phase = STEP
            if batches is None:
                batches = iter(self._data.batches(progress.epoch, progress.batch))
            batch = next(batches, _END)
            if batch is _END:  # the epoch ended before len(data) batches
                if progress.batch == 0:
                    raise ValueError(f"data.batches({progress.epoch}, 0) yielded no batch although len(data) is "
                                     f"{length}")
                progress.epoch, progress.batch, batches = progress.epoch + 1, 0, None
                self._phase = BOUNDARY
                continue
            loss, metrics, norm = self._step(to_device(batch, self.device))
            progress.step += 1
            progress.batch += 1
            if progress.batch >= length:
                progress.epoch, progress.batch, batches = progress.epoch + 1, 0, None
            self._phase = BOUNDARY
            if self._interrupt_pending:
                raise KeyboardInterrupt
            if self._after_step(loss, metrics, norm):
                return "early_stop"

    def _step(self, batch: Any) -> tuple[float, dict[str, float], float | None]:
        """Forward, backward, clip, update; returns the loss, the metrics and the gradient norm (before clipping)."""
        with self._autocast():
            loss, metrics = self._loss(batch)
        value = loss.item()
        distributed = self.world > 1
        if not distributed and not math.isfinite(value):
            raise self._diverged("loss", value)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = None
        clip = self.config.clipping
        if clip is not None or distributed:  # distributed: the norm of all-reduced gradients tells every rank
            norm = torch.nn.utils.clip_grad_norm_(self._parameters, clip if clip is not None else math.inf).item()
            if not math.isfinite(value):
                raise self._diverged("loss", value)
            if not math.isfinite(norm):
                raise self._diverged("the gradient norm", norm)
        self._lr = self._learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr
        self._phase = UPDATE
        self.optimizer.step()
        if self._after_update is not None:
            self._after_update()  # e.g. a max-norm constraint on some weights
        return value, metrics, norm

    def _after_step(self, loss: float, metrics: dict[str, float], norm: float | None) -> bool:
        """Bookkeeping after a step: metrics window, timing, logs, evaluation, saves. True: stop early."""
        config, progress = self.config, self._progress
        sums = progress.window_sums
        sums["loss"] = sums.get("loss", 0.0) + loss
        for name, number in metrics.items():
            if name != "loss":
                sums[name] = sums.get(name, 0.0) + number
        if norm is not None:
            sums["grad_norm"] = sums.get("grad_norm", 0.0) + norm
        progress.window_steps += 1
        now = self.clock()
        self._window_time += now - self._tick
        if self._step_budget is not None:
            self._bar.update(1)
        else:  # time-bounded: the bar counts seconds, never past the budget
            self._bar.update(max(0.0, min(self._elapsed(), self._bar.total) - self._bar.n))
        self._tick = now
        self._session_steps += 1
        if self._session_steps == 1:
            self._timing_start = now
        if self._session_steps == 1 + PACE_STEPS and self.config.max_time is not None:
            self._warn_if_too_short(now)
        if progress.step % config.log_every == 0:
            if self._governor is not None:
                self._governor.update()
            self._log_train()
        stop = False
        if self.evaluate is not None and progress.step % self._eval_every == 0:
            stop = self._evaluate(regular=True)
            self._save(LAST)
        elif config.save_every is not None and progress.step % config.save_every == 0:
            self._save(LAST)
        else:
            return False
        self._tick = self.clock()  # evaluation and saving are not training time for the speed figures
        return stop

    def _learning_rate(self) -> float:
        progress = self._progress
        return learning_rate(self.config, progress.step, horizon=self._horizon, time_progress=self._time_progress,
                             plateau_scale=progress.plateau_scale)

    def _follow_the_clock(self) -> None:
        """Before an update of a time-bounded cosine run: p_time at rank 0's elapsed time (read by
        `_limit_reached`), the time line anchored when the warm-up ends."""
        progress, elapsed = self._progress, self._step_elapsed
        if progress.decay_from is None and progress.step >= self.config.warmup_steps:
            progress.anchor(elapsed, float(cast(float, self.config.max_time)))
        self._time_progress = progress.time_progress(elapsed)

    def _warn_if_too_short(self, now: float) -> None:
        """Once, after PACE_STEPS timed steps: say if the time left cannot hold the warm-up or an evaluation."""
        config, progress = self.config, self._progress
        pace = (now - self._timing_start) / PACE_STEPS
        fit = progress.step + int(max(0.0, float(cast(float, config.max_time)) - self._elapsed()) / pace)
        budget = f"--max-time ({_format_seconds(float(cast(float, config.max_time)))}) holds about {fit} steps " \
                 f"at {pace:.2g} s a step"
        if progress.step < config.warmup_steps and fit < config.warmup_steps:
            peak = learning_rate(config, max(0, fit - 1), plateau_scale=progress.plateau_scale) / config.lr
            self._warn(f"warning: {budget}, fewer than the {config.warmup_steps} warm-up steps: the learning rate "
                       f"will reach only {peak:.0%} of --lr and never decay; lower --warmup or raise --max-time")
        elif self.evaluate is not None:
            first = (progress.step // self._eval_every + 1) * self._eval_every
            if fit < first:
                self._warn(f"warning: {budget}, fewer than the {first} before the next evaluation (--eval-every "
                           f"{self._eval_every}): the run evaluates once, at its end")

    def _warn(self, message: str) -> None:
        """One line on stderr (rank 0), above the progress bar."""
        if self.rank != 0:
            return
        if self._bar is not None and not self._bar.disable:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def _limit_reached(self) -> str | None:
        config, progress = self.config, self._progress
        if config.max_steps is not None and progress.step >= config.max_steps:
            return "max_steps"
        if config.max_epochs is not None and progress.epoch >= config.max_epochs:
            return "max_epochs"
        if config.max_time is not None:
            self._step_elapsed = self._broadcast(self._elapsed())  # rank 0's clock decides for all
            if self._step_elapsed >= config.max_time:
                if self._session_steps == 1:
                    self._warn(f"warning: the first step took {_format_seconds(self._step_elapsed)}, all of "
                               f"--max-time ({_format_seconds(config.max_time)}): the run stops after one step; "
                               "raise --max-time")
                elif self._session_steps == 0 and progress.step > 0:
                    self._warn(f"the run has used its --max-time ({_format_seconds(config.max_time)}) already: "
                               "resume with a larger --max-time to train more")
                return "max_time"
        return None

    def _finish(self) -> None:
        """After the last step: evaluate and save once more (unless just done), redraw the curve."""
        progress = self._progress
        if progress.step == self._start_step:
            return  # a resume with nothing left to do changes nothing
        if self.evaluate is not None and self._evaluated_step != progress.step:
            self._evaluate(regular=False)
        if self._saved_step != progress.step:
            self._save(LAST)
        if self.rank == 0 and self._drawn_step != progress.step:
            self._draw()

    # ------------------------------------------------------------ logging, evaluation, saving

    def _elapsed(self) -> float:
        return self._elapsed_before + (self.clock() - self._session_start)

    def _epochs(self) -> float:
        return self._progress.epoch + self._progress.batch / self._epoch_length

    def _write(self, line: dict[str, Any]) -> None:
        self._metrics_file.write(json.dumps({key: _json_safe(value) for key, value in line.items()}) + "\n")
        self._metrics_file.flush()

    def _log_train(self) -> None:
        progress = self._progress
        count = progress.window_steps
        means = {name: float(total) / count for name, total in progress.window_sums.items()}
        window_time, self._window_time = self._window_time, 0.0
        progress.window_sums, progress.window_steps = {}, 0
        self._last_metrics = dict(means)
        if self.rank != 0:
            return
        tokens = means.pop("tokens", None)
        line: dict[str, Any] = {"step": progress.step, "epoch": round(self._epochs(), 6), "split": "train",
                                "loss": means.pop("loss"), **means, "lr": self._lr}
        speed = ""
        if window_time > 0 and tokens is not None:
            line["tokens_per_s"] = tokens * count / window_time
            speed = f"{line['tokens_per_s']:.0f} tok/s"
        elif window_time > 0:
            line["steps_per_s"] = count / window_time
            speed = f"{line['steps_per_s']:.1f} steps/s"
        line["elapsed"] = round(self._elapsed(), 3)
        if self._governor is not None:
            line["threads"] = self._governor.threads
        self._write(line)
        self._train_points.append((progress.step, line["loss"]))
        if not self._bar.disable:
            postfix = [f"loss {line['loss']:.4f}", speed, self._time_left()]
            self._bar.set_postfix_str(", ".join(part for part in postfix if part), refresh=False)

    def _time_left(self) -> str:
        config, progress = self.config, self._progress
        if config.max_time is not None:
            left = config.max_time - self._elapsed()
        elif self._step_budget is not None and self._session_steps:
            left = (self._step_budget - progress.step) * (self.clock() - self._session_start) / self._session_steps
        else:
            return ""
        return f"{_format_seconds(left)} left"

    def _evaluate(self, *, regular: bool) -> bool:
        """Evaluate on rank 0, share the loss, track the best; saves best/ when it improves. True: stop early."""
        assert self.evaluate is not None
        progress = self._progress
        metrics: dict[str, float] = {}
        loss = math.nan
        if self.rank == 0:
            generators = capture_rng_state()  # evaluation must not move the training's random streams
            self.model.eval()
            try:
                with torch.no_grad():
                    metrics = {name: float(value) for name, value in self.evaluate(self.model).items()}
            finally:
                self.model.train()
                restore_rng_state(*generators)
            if "loss" not in metrics:
                raise ValueError(f"evaluate(model) returned no 'loss' (it returned {sorted(metrics)})")
            loss = metrics["loss"]
        loss = self._broadcast(loss)
        if not math.isfinite(loss):
            raise self._diverged("the validation loss", loss, step=progress.step)
        self._evaluated_step = progress.step
        improved = progress.record_best(loss)
        stop = progress.record_regular(loss, self.config) if regular else False
        self._last_metrics = metrics or {"loss": loss}
        self._validation = {name: value for name, value in self._last_metrics.items() if math.isfinite(value)}
        if self.rank == 0:
            self._write({"step": progress.step, "epoch": round(self._epochs(), 6), "split": "validation", **metrics,
                         "lr": self._lr, "elapsed": round(self._elapsed(), 3)})
            self._validation_points.append((progress.step, loss))
        if improved:
            self._save(BEST)
        if self.rank == 0:
            self._draw()
        return stop

    def _draw(self) -> None:
        plot_curve(self.run_dir / CURVE_FILE, self._train_points, self._validation_points)
        self._drawn_step = self._progress.step

    def _save(self, name: str, *, data_state: dict[str, Any] | None = None) -> None:
        """Save the run's state into run_dir/name (rank 0 writes; every rank sends its data state)."""
        progress = self._progress
        if not all(bool(torch.isfinite(p).all()) for p in self._parameters):
            raise self._diverged("a parameter", math.nan, step=progress.step)
        states = self._gather(self._data.state_dict() if data_state is None else data_state)
        if self.rank == 0:
            self._write_checkpoint(name, states)
        if self.world > 1:
            dist.barrier()  # nobody goes on (and perhaps reads it) before the checkpoint is written
        if name == LAST:
            self._saved_step = progress.step

    def _write_checkpoint(self, name: str, data_states: list[Any]) -> None:
        progress = self._progress
        saved = dataclasses.replace(progress, elapsed=self._elapsed())
        training_state = {
            "format": STATE_FORMAT,
            "progress": asdict(saved),
            "optimizer": self.optimizer.state_dict(),
            "rng": capture_rng_state(),
            "data": {"world": self.world, "ranks": data_states},
        }
        config = {**self.checkpoint_config, "train": asdict(self.config), "step": progress.step}
        if self._validation:
            config["validation"] = {**self._validation, "step": self._evaluated_step}
        save_checkpoint(self.run_dir / name, model_state=self.model.state_dict(), config=config,
                        training_state=training_state)

    def _save_after_interrupt(self) -> None:
        """Ctrl-C: save the state after the last completed step in last/ (when it is whole) and say so."""
        if self._bar is not None:
            self._bar.close()
        phase, step = self._phase, self._progress.step
        last = self.run_dir / LAST
        kept = f"{last} holds step {self._saved_step}" if self._saved_step is not None else "nothing was saved"
        if self.world > 1 or phase == UPDATE:
            why = "a distributed run saves only at evaluations and saves" if self.world > 1 else \
                "it came during an optimizer update"
            self._say(f"interrupted after step {step}; not saving ({why}); {kept}")
            return
        if phase == STEP and self._snapshot is not None:  # undo the unfinished step's draws
            (cpu, cuda), data_state = self._snapshot
            torch.set_rng_state(cpu)
            if cuda is not None:
                torch.cuda.set_rng_state(cuda, self.device)
        else:
            data_state = None
        if self._saved_step != step:
            try:
                self._save(LAST, data_state=data_state)
            except KeyboardInterrupt:
                self._say(f"interrupted again while saving step {step}; {kept}")
                return
        self._say(f"interrupted: step {step} is saved in {last}; run the same command with --resume to continue")

    def _say(self, message: str) -> None:
        if self.rank == 0:
            print(message, file=sys.stderr, flush=True)

    def _diverged(self, what: str, value: float, *, step: int | None = None) -> TrainingError:
        last = self.run_dir / LAST
        at = self._progress.step + 1 if step is None else step
        if self._saved_step is not None:
            kept = f"the last good checkpoint (step {self._saved_step}) is kept in {last}"
        else:
            kept = f"no checkpoint was saved before (there is none in {last})"
        return TrainingError(f"{what} became {value} at step {at}; {kept}; try a lower --lr or --clip")

    def _result(self, reason: str) -> TrainResult:
        progress = self._progress
        return TrainResult(steps=progress.step, epochs=self._epochs(), stopped_because=reason,
                           best_loss=progress.best_loss, best_step=progress.best_step,
                           last_metrics=self._last_metrics, run_dir=self.run_dir, elapsed=self._elapsed())

    # ------------------------------------------------------------ generators and processes

    def _torch_rng(self) -> tuple[Tensor, Tensor | None]:
        """torch's CPU generator state and, when training on CUDA, the device's (cheap: no NumPy, no Python)."""
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return torch.get_rng_state(), cuda

    def _broadcast(self, value: float) -> float:
        """Rank 0's `value` on every rank."""
        if self.world == 1:
            return value
        device = self.device if self.device.type == "cuda" else torch.device("cpu")
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def _gather(self, state: dict[str, Any]) -> list[Any]:
        """Every rank's data state, in rank order (on rank 0; other ranks get a list too)."""
        if self.world == 1:
            return [state]
        device = self.device if self.device.type == "cuda" else torch.device("cpu")
        blob = torch.frombuffer(bytearray(_pack_state(state)), dtype=torch.uint8).to(device)
        size = torch.tensor([blob.numel()], dtype=torch.int64, device=device)
        sizes = [torch.zeros_like(size) for _ in range(self.world)]
        dist.all_gather(sizes, size)
        longest = max(int(s.item()) for s in sizes)
        padded = torch.zeros(longest, dtype=torch.uint8, device=device)
        padded[: blob.numel()] = blob
        blobs = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(blobs, padded)
        return [_unpack_state(bytes(b[: int(s.item())].cpu().numpy())) for b, s in zip(blobs, sizes, strict=True)]


_END = object()
"""What `next` gives when an epoch's batches run out."""
