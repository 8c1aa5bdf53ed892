"""The one trainer for every model: the loop, its checkpoints and logs, and exact resume.

The trainer knows a model only through `Trainable` (an ``nn.Module`` with
``loss(batch) -> (loss, metrics)``) and data only through `TrainData` (batches
of an epoch from any index on, a share per process, a little state). One step::

    batch = next(data.batches(epoch, index))           deterministic given (epoch, index)
    loss, metrics = model.loss(to_device(batch))        loss checked finite before backward
    zero_grad(set_to_none=True); loss.backward()        (fp16: the loss scaled by the gradient scaler)
    norm = clip_grad_norm_(params, clip_norm)           checked finite; skipped when clipping is off
    lr = learning_rate(config, step, ...)               of the step (a time-bounded cosine: and the clock)
    optimizer.step(); model.after_update()              the hook only where the model defines it
    step += 1; index += 1                               index == len(data): next epoch, index 0

and between steps: a metrics line every `log_every` steps (means over those
steps), an evaluation every `eval_every` (`best` when it improves, then
`last`), an extra save of `last` every `save_every`; a run stops at
`max_steps`, `max_epochs`, `max_time`, or after `early_stop` evaluations
without improvement, then evaluates and saves once more. A config with no
budget at all trains one epoch.

The parts, each importing only those above it:

    config.py       `TrainConfig` (with each field's command-line metadata), `TrainResult`,
                    `TrainingError`, the protocols, `parse_duration`
    schedule.py     the optimiser, `learning_rate` (its equations, and why a time budget drives
                    the cosine), `TrainingProgress`
    runlog.py       metrics.jsonl, the train lines' means, curve.png, the progress bar
    interrupt.py    Ctrl-C (save after an interrupt) and the divergence checks
    distributed.py  torchrun, DistributedDataParallel, what the ranks share
    resume.py       the checkpoints' training state, and loading one to resume
    loop.py         `Trainer`

Devices and precision come from `unrolled.devices` (`TrainConfig.device`
"auto": CUDA where there is one, else the CPU).

Threads: a time-bounded CPU run keeps torch's threads to the cores other
programs leave free, checked at every train line (`unrolled.machine`): with a
busy core, every small operation of a recurrent step would otherwise wait for
the thread that shares it. `TrainConfig.threads` fixes the count instead.

A run folder::

    RUN/last/          checkpoint (see `unrolled.checkpoint` and `resume`) after the latest step saved:
                       at every evaluation, every save_every steps, at the end, on Ctrl-C
    RUN/best/          the same at the lowest validation loss (only with an evaluate function)
    RUN/metrics.jsonl  one JSON object a line (see `runlog`)
    RUN/curve.png      train and validation loss against step, redrawn at evaluations and the end

Resume (``fit(resume=True)``) loads ``RUN/last``, checks that the application's
config matches, restores everything and continues: on CPU, n steps straight
and k steps, stop, resume to n give bit-identical losses and parameters.
Evaluation runs with the generators' states put back afterwards, and only the
regular evaluations (every `eval_every` steps) feed early stopping and the
plateau schedule, so where a run stops does not change what it learns.

Adding an application: an application gives the trainer an ``nn.Module`` with
``loss(batch) -> (loss, metrics)`` (and, if it wants one, ``after_update()``),
a `TrainData`, a `TrainConfig`, an ``evaluate(module) -> metrics`` callable
(metrics with a "loss"; or None for no evaluation) and the checkpoint config
dict (JSON, with a "kind", holding what it needs to rebuild the model);
nothing else. ``Trainer(module, data, config, run_dir, evaluate=...,
checkpoint_config=...).fit(resume=...)`` does the rest.
"""

from unrolled.devices import PRECISIONS, bf16_native, resolve_device, resolve_precision, to_device
from unrolled.training.config import (
    DURATION_UNITS,
    OPTIMIZERS,
    SCHEDULES,
    STOP_REASONS,
    Evaluate,
    Trainable,
    TrainConfig,
    TrainData,
    TrainingError,
    TrainResult,
    epochs_recipe,
    parse_duration,
)
from unrolled.training.distributed import distributed_context
from unrolled.training.loop import PACE_STEPS, Trainer, seed_everything
from unrolled.training.resume import APP_CONFIG_RESERVED, BEST, LAST, STATE_FORMAT
from unrolled.training.runlog import CURVE_FILE, METRICS_FILE, plot_curve
from unrolled.training.schedule import TrainingProgress, build_optimizer, cosine_progress, learning_rate

__all__ = [
    "APP_CONFIG_RESERVED", "BEST", "CURVE_FILE", "DURATION_UNITS", "LAST", "METRICS_FILE", "OPTIMIZERS",
    "PACE_STEPS", "PRECISIONS", "SCHEDULES", "STATE_FORMAT", "STOP_REASONS", "Evaluate", "TrainConfig",
    "TrainData", "TrainResult", "Trainable", "Trainer", "TrainingError", "TrainingProgress", "bf16_native",
    "build_optimizer", "cosine_progress", "distributed_context", "epochs_recipe", "learning_rate", "parse_duration",
    "plot_curve", "resolve_device", "resolve_precision", "seed_everything", "to_device",
]
