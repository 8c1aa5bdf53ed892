"""The optimiser and the learning-rate schedule, and `TrainingProgress`: where a run stands, the time anchor included.

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
decay_steps to n in both for the schedule of an n-step run). A run with no
budget at all trains one epoch, so N is then len(data).

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
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from unrolled.training.config import TrainConfig, format_seconds


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


def apply_hyperparameters(optimizer: torch.optim.Optimizer, config: TrainConfig) -> None:
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
        parts.append(clamp((step - warmup) / max(1, horizon - warmup)))
    if time_progress is not None:
        parts.append(clamp(time_progress))
    return max(parts) if parts else None


def clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def step_horizon(config: TrainConfig, epoch_length: int) -> int | None:
    """N: decay_steps, else max_steps, else the epoch budget x batches per epoch (None: time-bounded only)."""
    horizon = config.decay_steps or config.max_steps
    epochs = config.epoch_budget
    if horizon is None and epochs is not None:
        horizon = epochs * epoch_length
    return horizon


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
    `skipped_steps`: steps whose update an fp16 run's gradient scaler skipped.
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
    skipped_steps: int = 0

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TrainingProgress:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in state.items() if key in names})

    def time_progress(self, elapsed: float) -> float | None:
        """p_time = p_a + (1 - p_a) clamp((t - a) / (T - a)) at `elapsed` seconds; None before the anchor."""
        if self.decay_from is None or self.decay_budget is None:
            return None
        span = self.decay_budget - self.decay_from
        fraction = clamp((elapsed - self.decay_from) / span) if span > 0 else 1.0
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


class Schedule:
    """The learning rate of a run's updates: the config's schedule over its step horizon and, for a
    time-bounded cosine, its clock (`follow`, before each update, with rank 0's elapsed time)."""

    def __init__(self, config: TrainConfig, progress: TrainingProgress, epoch_length: int) -> None:
        self.config, self.progress = config, progress
        self.horizon = step_horizon(config, epoch_length)
        self.eval_every = config.eval_every or epoch_length  # None: once per epoch
        # The cosine follows the time spent too (module docstring), unless decay_steps fixes its length.
        self.timed = config.schedule == "cosine" and config.decay_steps is None and config.max_time is not None
        if self.timed and progress.decay_from is not None and progress.decay_budget != config.max_time:
            progress.anchor(progress.elapsed, float(config.max_time or 0.0))  # a resume with a new budget
        self.time_progress = progress.time_progress(progress.elapsed) if self.timed else None

    def follow(self, elapsed: float) -> None:
        """Before an update of a time-bounded cosine run: p_time at `elapsed`, the line anchored when the
        warm-up ends."""
        if not self.timed:
            return
        progress = self.progress
        if progress.decay_from is None and progress.step >= self.config.warmup_steps:
            progress.anchor(elapsed, float(self.config.max_time or 0.0))
        self.time_progress = progress.time_progress(elapsed)

    def rate(self) -> float:
        """The learning rate of the next update."""
        return learning_rate(self.config, self.progress.step, horizon=self.horizon,
                             time_progress=self.time_progress, plateau_scale=self.progress.plateau_scale)

    def too_short(self, pace: float, elapsed: float, evaluating: bool) -> str | None:
        """The warning for a time budget that, at `pace` seconds a step, cannot hold the rest of the warm-up
        or the next evaluation; None when it can."""
        config, progress = self.config, self.progress
        budget_seconds = float(config.max_time or 0.0)
        fit = progress.step + int(max(0.0, budget_seconds - elapsed) / pace)
        budget = f"--max-time ({format_seconds(budget_seconds)}) holds about {fit} steps at {pace:.2g} s a step"
        if progress.step < config.warmup_steps and fit < config.warmup_steps:
            peak = learning_rate(config, max(0, fit - 1), plateau_scale=progress.plateau_scale) / config.lr
            return (f"warning: {budget}, fewer than the {config.warmup_steps} warm-up steps: the learning rate "
                    f"will reach only {peak:.0%} of --lr and never decay; lower --warmup or raise --max-time")
        if evaluating:
            first = (progress.step // self.eval_every + 1) * self.eval_every
            if fit < first:
                return (f"warning: {budget}, fewer than the {first} before the next evaluation (--eval-every "
                        f"{self.eval_every}): the run evaluates once, at its end")
        return None
