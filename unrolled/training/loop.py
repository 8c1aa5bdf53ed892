"""The trainer's loop: `Trainer.fit` runs the step of `unrolled.training` until a limit, and saves.

One step, between two bookkeeping points (`_after_step`): the limits are
checked, the data's batch drawn, the model's loss computed under the run's
precision, checked finite, backpropagated (scaled in fp16), the gradients
clipped, the learning rate of the update set, the optimiser stepped and the
model's ``after_update`` hook called. Everything else lives beside it:
`schedule` (learning rate, progress), `runlog` (metrics, curve, bar),
`interrupt` (Ctrl-C, divergence), `distributed` (ranks), `resume` (checkpoints).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unrolled.checkpoint import capture_rng_state, restore_rng_state
from unrolled.devices import resolve_precision, to_device
from unrolled.machine import ThreadGovernor
from unrolled.training.averaging import WeightAverage
from unrolled.training.config import Evaluate, TrainConfig, TrainData, TrainResult, format_seconds
from unrolled.training.distributed import Processes
from unrolled.training.interrupt import (
    BOUNDARY,
    STEP,
    UPDATE,
    SigintGuard,
    Snapshot,
    check_finite,
    diverged,
    save_after_interrupt,
    torch_generators,
)
from unrolled.training.resume import (
    BEST,
    LAST,
    Resumable,
    application_config,
    load_run,
    refuse_existing_checkpoint,
    save_run,
)
from unrolled.training.runlog import RunLog, add_to_window, window_means
from unrolled.training.schedule import Schedule, TrainingProgress, build_optimizer

PACE_STEPS = 5
"""Steps (after the session's first) timed to warn that a time budget is too short for the warm-up or evaluations."""
_END = object()
"""What `next` gives when an epoch's batches run out."""


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), NumPy's global generator and Python's `random`."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


class Trainer:
    """Train a `Trainable` model on `TrainData` under a `TrainConfig`, into the run folder `run_dir`.

    Args:
        model: an ``nn.Module`` with ``loss(batch) -> (loss, metrics)``; moved to the config's device.
        data: the training batches (see `TrainData`).
        config: the `TrainConfig`.
        run_dir: the run folder (see `unrolled.training`); created if missing.
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
        needs = {"the plateau schedule": (config.schedule == "plateau", "choose another schedule"),
                 "early stopping": (config.early_stop is not None, "unset early_stop")}
        for what, (needed, fix) in needs.items():
            if evaluate is None and needed:
                raise ValueError(f"{what} needs an evaluate function (validation loss): pass one, or {fix}")
        self.model, self.data, self.config, self.run_dir = model, data, config, Path(run_dir)
        self.evaluate = evaluate
        self.checkpoint_config = application_config(app_config)
        self.clock = clock

    # ------------------------------------------------------------ fit

    def fit(self, resume: bool = False) -> TrainResult:
        """Train until a limit, early stopping or Ctrl-C; with `resume`, continue the run saved in run_dir/last.

        Raises a one-line ValueError for a resume without checkpoint, a fresh
        start over an existing one or a resume with another model config, and
        `TrainingError` when the loss or gradient norm stops being finite.
        """
        self._guard = SigintGuard()
        self._processes = processes = Processes(self.config.device)
        self.rank, self.world, self.device = processes.rank, processes.world, processes.device
        self._log = RunLog(self.run_dir, self.config, rank=self.rank)
        threads = torch.get_num_threads()
        try:
            self.precision = resolve_precision(self.config.precision, self.device)
            self._setup(resume)
            return self._result(self._run())
        finally:
            self._log.close()
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)  # what the run changed, given back
            processes.close()

    def _setup(self, resume: bool) -> None:
        config = self.config
        self.model.to(self.device)
        self.model.train()
        self._parameters = [p for p in self.model.parameters() if p.requires_grad]
        if not self._parameters:
            raise ValueError(f"the {type(self.model).__name__} has no trainable parameters")
        self.optimizer = build_optimizer(self._parameters, config)
        self._scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None
        self._data = self.data.shard(self.rank, self.world) if self.world > 1 else self.data
        self._epoch_length = len(self._data)
        if self._epoch_length < 1:
            raise ValueError("the training data has no batches: use more text, or a smaller batch size or length")
        self._average = WeightAverage(self._parameters, config.average) if config.average else None
        self._state = Resumable(self.model, self.optimizer, self._data, self._scaler, self._average)
        if resume:
            self._progress = load_run(self.run_dir / LAST, self._state, app_config=self.checkpoint_config,
                                      config=config, rank=self.rank, world=self.world)
            self._saved_step: int | None = self._progress.step
        else:
            refuse_existing_checkpoint(self.run_dir)
            seed_everything(config.seed)
            self._progress = TrainingProgress()
            self._saved_step = None
        self._schedule = Schedule(config, self._progress, self._epoch_length)
        self._loss = self._processes.loss_function(self.model)
        hook = getattr(self.model, "after_update", None)
        self._after_update: Callable[[], None] | None = hook if callable(hook) else None
        self._log.open(resume, self._progress.step)
        self._start_step = self._progress.step
        self._evaluated_step: int | None = None
        self._last_metrics: dict[str, float] = {}
        self._validation: dict[str, float] = {}  # the latest evaluation's metrics, saved with each checkpoint
        self._lr = self._schedule.rate()
        self._snapshot: Snapshot | None = None
        self._log.open_bar(self._progress, self._epoch_length)
        self._session_steps = 0
        self._elapsed_before = self._step_elapsed = self._progress.elapsed
        self._session_start = self._tick = self.clock()
        self._window_time = self._timing_start = 0.0
        self._governor: ThreadGovernor | None = None
        if self.device.type == "cpu" and config.threads is not None:
            torch.set_num_threads(config.threads)
        elif self.device.type == "cpu" and config.max_time is not None and self.world == 1:
            self._governor = ThreadGovernor()
            time.sleep(0.2)  # a first look at what other programs keep busy, before the first step
            self._governor.update()

    # ------------------------------------------------------------ the loop

    def _run(self) -> str:
        """The loop under a SIGINT guard that holds Ctrl-C back during optimizer updates."""
        with self._guard:
            self._guard.phase = BOUNDARY
            try:
                reason = self._loop()
                self._finish()
            except KeyboardInterrupt:
                self._log.close_bar()
                save_after_interrupt(self._guard, step=self._progress.step, saved_step=self._saved_step,
                                     last=self.run_dir / LAST, world=self.world, snapshot=self._snapshot,
                                     device=self.device, save=lambda state: self._save(LAST, data_state=state),
                                     say=self._log.warn)
                reason = "interrupted"
        return reason

    def _loop(self) -> str:
        progress, length, guard = self._progress, self._epoch_length, self._guard
        batches: Iterator[Any] | None = None
        while True:
            reason = self._limit_reached()
            if reason is not None:
                return reason
            self._schedule.follow(self._step_elapsed)
            self._snapshot = (torch_generators(self.device), self._data.state_dict())
            guard.phase = STEP
            if batches is None:
                batches = iter(self._data.batches(progress.epoch, progress.batch))
            batch = next(batches, _END)
            if batch is _END:  # the epoch ended before len(data) batches
                if progress.batch == 0:
                    raise ValueError(f"data.batches({progress.epoch}, 0) yielded no batch although len(data) is "
                                     f"{length}")
                progress.epoch, progress.batch, batches = progress.epoch + 1, 0, None
                guard.phase = BOUNDARY
                continue
            loss, metrics, norm = self._step(to_device(batch, self.device))
            progress.step += 1
            progress.batch += 1
            if progress.batch >= length:
                progress.epoch, progress.batch, batches = progress.epoch + 1, 0, None
            guard.phase = BOUNDARY
            guard.check()
            if self._after_step(loss, metrics, norm):
                return "early_stop"

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The training forward's precision: bfloat16 or float16 autocast, or nothing for fp32."""
        if self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast(self.device.type, dtype=dtype)
        return contextlib.nullcontext()

    def _step(self, batch: Any) -> tuple[float, dict[str, float], float | None]:
        """Forward, backward, clip, update; returns the loss, the metrics and the gradient norm (before clipping)."""
        with self._autocast():
            loss, metrics = self._loss(batch)
        value, scaler = loss.item(), self._scaler
        distributed = self.world > 1
        if not distributed:
            self._check("loss", value)
        self.optimizer.zero_grad(set_to_none=True)
        (loss if scaler is None else scaler.scale(loss)).backward()
        norm = None
        clip = self.config.clipping
        if clip is not None or distributed:  # distributed: the norm of all-reduced gradients tells every rank
            if scaler is not None:
                scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(self._parameters, clip if clip is not None else math.inf).item()
            self._check("loss", value)
            if scaler is None:  # fp16: an overflowing norm is the scaler's to handle (it skips the update)
                self._check("the gradient norm", norm)
        self._lr = self._schedule.rate()
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr
        self._guard.phase = UPDATE
        if scaler is None:
            self.optimizer.step()
        else:
            scale = scaler.get_scale()
            scaler.step(self.optimizer)
            scaler.update()
            if scaler.get_scale() < scale:  # the scale backs off only after a skipped update
                self._progress.skipped_steps += 1
        if self._after_update is not None:
            self._after_update()  # e.g. a max-norm constraint on some weights
        if self._average is not None:
            self._average.update()
        return value, metrics, norm

    def _check(self, what: str, value: float, step: int | None = None) -> None:
        check_finite(what, value, step=self._progress.step + 1 if step is None else step,
                     saved_step=self._saved_step, last=self.run_dir / LAST)

    def _after_step(self, loss: float, metrics: dict[str, float], norm: float | None) -> bool:
        """Bookkeeping after a step: metrics window, timing, logs, evaluation, saves. True: stop early."""
        config, progress = self.config, self._progress
        add_to_window(progress, loss, metrics, norm)
        now = self.clock()
        self._window_time += now - self._tick
        self._log.advance(self._elapsed())
        self._tick = now
        self._session_steps += 1
        if self._session_steps == 1:
            self._timing_start = now
        if self._session_steps == 1 + PACE_STEPS and config.max_time is not None:
            warning = self._schedule.too_short((now - self._timing_start) / PACE_STEPS, self._elapsed(),
                                               self.evaluate is not None)
            if warning is not None:
                self._log.warn(warning)
        if progress.step % config.log_every == 0:
            self._log_train()
        if self.evaluate is not None and progress.step % self._schedule.eval_every == 0:
            stop = self._evaluate(regular=True)
            self._save(LAST)
        elif config.save_every is not None and progress.step % config.save_every == 0:
            stop = False
            self._save(LAST)
        else:
            return False
        self._tick = self.clock()  # evaluation and saving are not training time for the speed figures
        return stop

    def _limit_reached(self) -> str | None:
        config, progress = self.config, self._progress
        if config.max_steps is not None and progress.step >= config.max_steps:
            return "max_steps"
        epochs = config.epoch_budget  # one epoch where no budget is set at all
        if epochs is not None and progress.epoch >= epochs:
            return "max_epochs"
        if config.max_time is not None:
            self._step_elapsed = self._processes.broadcast(self._elapsed())  # rank 0's clock decides for all
            if self._step_elapsed >= config.max_time:
                budget = format_seconds(config.max_time)
                if self._session_steps == 1:
                    self._log.warn(f"warning: the first step took {format_seconds(self._step_elapsed)}, all of "
                                   f"--max-time ({budget}): the run stops after one step; raise --max-time")
                elif self._session_steps == 0 and progress.step > 0:
                    self._log.warn(f"the run has used its --max-time ({budget}) already: resume with a larger "
                                   "--max-time to train more")
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
        if self._log.drawn_step != progress.step:
            self._log.draw(progress.step)

    # ------------------------------------------------------------ logging, evaluation, saving

    def _elapsed(self) -> float:
        return self._elapsed_before + (self.clock() - self._session_start)

    def _epochs(self) -> float:
        return self._progress.epoch + self._progress.batch / self._epoch_length

    def _log_train(self) -> None:
        if self._governor is not None:
            self._governor.update()
        progress = self._progress
        steps = progress.window_steps
        means = window_means(progress)
        window_time, self._window_time = self._window_time, 0.0
        self._last_metrics = dict(means)
        if self._scaler is not None:
            means["skipped_steps"] = progress.skipped_steps
        self._log.train_line(means, step=progress.step, epochs=self._epochs(), lr=self._lr, window_time=window_time,
                             steps=steps, elapsed=self._elapsed(), left=self._time_left,
                             threads=self._governor.threads if self._governor is not None else None)

    def _time_left(self) -> float | None:
        """Seconds left by max_time, else estimated from this session's pace over the step budget."""
        if self.config.max_time is not None:
            return self.config.max_time - self._elapsed()
        budget = self._log.step_budget
        if budget is not None and self._session_steps:
            pace = (self.clock() - self._session_start) / self._session_steps
            return (budget - self._progress.step) * pace
        return None

    def _evaluate(self, *, regular: bool) -> bool:
        """Evaluate on rank 0, share the loss, track the best; saves best/ when it improves. True: stop early."""
        assert self.evaluate is not None
        progress = self._progress
        metrics: dict[str, float] = {}
        loss = math.nan
        if self.rank == 0:
            generators = capture_rng_state()  # evaluation must not move the training's random streams
            self.model.eval()
            averaged = contextlib.nullcontext() if self._average is None else self._average.applied()
            try:
                with torch.no_grad(), averaged:
                    metrics = {name: float(value) for name, value in self.evaluate(self.model).items()}
            finally:
                self.model.train()
                restore_rng_state(*generators)
            if "loss" not in metrics:
                raise ValueError(f"evaluate(model) returned no 'loss' (it returned {sorted(metrics)})")
            loss = metrics["loss"]
        loss = self._processes.broadcast(loss)
        self._check("the validation loss", loss, step=progress.step)
        self._evaluated_step = progress.step
        improved = progress.record_best(loss)
        stop = progress.record_regular(loss, self.config) if regular else False
        self._last_metrics = metrics or {"loss": loss}
        self._validation = {name: value for name, value in self._last_metrics.items() if math.isfinite(value)}
        self._log.validation_line(metrics, step=progress.step, epochs=self._epochs(), lr=self._lr,
                                  elapsed=self._elapsed())
        if improved:
            self._save(BEST)
        self._log.draw(progress.step)
        return stop

    def _save(self, name: str, *, data_state: dict[str, Any] | None = None) -> None:
        """Save the run's state into run_dir/name (rank 0 writes; every rank sends its data state)."""
        progress = self._progress
        if not all(bool(torch.isfinite(p).all()) for p in self._parameters):
            raise diverged("a parameter", math.nan, step=progress.step, saved_step=self._saved_step,
                           last=self.run_dir / LAST)
        states = self._processes.gather(self._data.state_dict() if data_state is None else data_state)
        if self.rank == 0:
            validation = {**self._validation, "step": self._evaluated_step} if self._validation else None
            save_run(self.run_dir / name, self._state, progress=dataclasses.replace(progress, elapsed=self._elapsed()),
                     world=self.world, data_states=states, app_config=self.checkpoint_config, config=self.config,
                     validation=validation)
        self._processes.barrier()  # nobody goes on (and perhaps reads it) before the checkpoint is written
        if name == LAST:
            self._saved_step = progress.step

    def _result(self, reason: str) -> TrainResult:
        progress = self._progress
        return TrainResult(steps=progress.step, epochs=self._epochs(), stopped_because=reason,
                           best_loss=progress.best_loss, best_step=progress.best_step,
                           last_metrics=self._last_metrics, run_dir=self.run_dir, elapsed=self._elapsed(),
                           skipped_steps=progress.skipped_steps)
