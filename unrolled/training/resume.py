"""A run's checkpoints: what the trainer saves, and loading one to resume (refusing a different run).

Each checkpoint's config.json is the application's `checkpoint_config` (with
its "kind") plus ``"train"`` (the `TrainConfig`), ``"step"`` and, once the run
has evaluated, ``"validation"`` (the latest evaluation's metrics and its step:
what `best/` scored, for `best/`); its training state (tensors in safetensors,
the rest JSON; nothing pickled; see `unrolled.checkpoint`, which writes
atomically) is::

    {"format": 1, "progress": TrainingProgress as a dict (step, epoch, batch index,
     elapsed, time-line anchor, best loss, evaluations without improvement, plateau scale,
     the unfinished metrics window, skipped fp16 steps), "optimizer": optimizer.state_dict(),
     "rng": capture_rng_state(), "data": {"world": W, "ranks": [data.state_dict() of each process]},
     "scaler": the fp16 gradient scaler's state_dict() (fp16 runs only),
     "average": the raw weights and the update count of a run that averages its weights
                (`unrolled.training.averaging`; the checkpoint's model is then the average)}

Resume (``fit(resume=True)``) loads ``RUN/last``, checks that the application's
config, the optimiser and the number of processes match, restores all of the
above and continues. Checkpoints saved before a field existed load with its
default (a progress without `skipped_steps`; a "horizon" of runs saved before
the time line becomes its anchor).
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unrolled.checkpoint import CheckpointError, capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from unrolled.training.averaging import WeightAverage, restore_raw
from unrolled.training.config import TrainConfig, TrainData
from unrolled.training.schedule import TrainingProgress, apply_hyperparameters, clamp

LAST, BEST = "last", "best"
STATE_FORMAT = 1
APP_CONFIG_RESERVED = ("train", "step", "validation")
"""Keys the trainer adds to the checkpoint config; ignored when comparing configs on resume."""


def application_config(config: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint config without the keys the trainer adds."""
    return {key: value for key, value in config.items() if key not in APP_CONFIG_RESERVED}


def differing_keys(new: Any, old: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON values differ (recursing into objects)."""
    if isinstance(new, dict) and isinstance(old, dict):
        found: list[str] = []
        for key in sorted(set(new) | set(old), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in new or key not in old:
                found.append(path)
            else:
                found += differing_keys(new[key], old[key], path)
        return found
    return [] if new == old else [prefix or "(the whole config)"]


def refuse_existing_checkpoint(run_dir: Path) -> None:
    """A one-line ValueError when a fresh run would start over a checkpoint in `run_dir`."""
    if not run_dir.is_dir():
        return
    for entry in sorted(run_dir.iterdir()):
        if entry.name in (LAST, BEST) or entry.name.startswith((f".{LAST}.", f".{BEST}.")):
            raise ValueError(f"{run_dir} already holds a checkpoint ({entry.name}): pass --resume to "
                             "continue it, or choose another --out")


@dataclasses.dataclass
class Resumable:
    """What a resume restores into: the model, its optimiser, this rank's data, an fp16 run's scaler, the
    average of the weights of a run that keeps one."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    data: TrainData
    scaler: torch.amp.GradScaler | None = None
    average: WeightAverage | None = None


def load_run(last: Path, into: Resumable, *, app_config: dict[str, Any], config: TrainConfig, rank: int,
             world: int) -> TrainingProgress:
    """Restore the run saved in `last` into `into` and return its progress; one-line ValueErrors where the
    checkpoint is missing, of another kind, of another config, optimiser or number of processes."""
    try:
        checkpoint = load_checkpoint(last, kind=app_config["kind"])
    except CheckpointError:
        if not last.exists():
            raise ValueError(f"no checkpoint to resume in {last}; start without --resume") from None
        raise
    differing = differing_keys(app_config, application_config(checkpoint.config))
    if differing:
        raise ValueError(f"the settings differ from those of the run saved in {last} ({', '.join(differing)}): "
                         "resume with the same settings, or start a new run with another --out")
    state = checkpoint.training_state
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{last} holds no training state this trainer can resume; start a new run with "
                         "another --out")
    saved_optimizer = checkpoint.config.get("train", {}).get("optimizer")
    if saved_optimizer != config.optimizer:
        raise ValueError(f"the run in {last} was trained with the {saved_optimizer} optimizer, not "
                         f"{config.optimizer}: resume with --optimizer {saved_optimizer}")
    data = state["data"]
    if data["world"] != world:
        raise ValueError(f"the run in {last} was trained by {data['world']} process(es), not {world}: "
                         f"resume with {data['world']}")
    into.model.load_state_dict(checkpoint.model_state)
    averaged = state.get("average")
    if into.average is not None:
        into.average.load_state_dict(averaged)
    elif isinstance(averaged, dict):
        restore_raw([p for p in into.model.parameters() if p.requires_grad], averaged)
    into.optimizer.load_state_dict(state["optimizer"])
    apply_hyperparameters(into.optimizer, config)
    if into.scaler is not None and isinstance(state.get("scaler"), dict):
        into.scaler.load_state_dict(state["scaler"])  # an fp16 run; a run resumed into fp16 starts a fresh one
    restore_rng_state(*state["rng"])
    into.data.load_state_dict(data["ranks"][rank])
    progress = TrainingProgress.from_state(state["progress"])
    legacy = state["progress"].get("horizon")  # runs saved before the time line: a step horizon
    if isinstance(legacy, int) and progress.decay_from is None and config.max_time is not None:
        warm = config.warmup_steps
        if progress.step >= warm:
            progress.decay_from, progress.decay_budget = progress.elapsed, float(config.max_time)
            progress.decay_start = clamp((progress.step - warm) / max(1, legacy - warm))
    return progress


def save_run(path: Path, of: Resumable, *, progress: TrainingProgress, world: int, data_states: list[Any],
             app_config: dict[str, Any], config: TrainConfig, validation: dict[str, Any] | None) -> None:
    """Write the checkpoint of the run at `progress` into `path` (atomically; see the module docstring).

    `data_states` are every rank's data state; `validation` the latest evaluation's metrics with its step.
    """
    training_state: dict[str, Any] = {
        "format": STATE_FORMAT,
        "progress": dataclasses.asdict(progress),
        "optimizer": of.optimizer.state_dict(),
        "rng": capture_rng_state(),
        "data": {"world": world, "ranks": data_states},
    }
    if of.scaler is not None:
        training_state["scaler"] = of.scaler.state_dict()
    saved = {**app_config, "train": dataclasses.asdict(config), "step": progress.step}
    if validation:
        saved["validation"] = validation
    averaged = contextlib.nullcontext() if of.average is None else of.average.applied()
    if of.average is not None:
        training_state["average"] = of.average.state_dict()
    with averaged:
        save_checkpoint(path, model_state=of.model.state_dict(), config=saved, training_state=training_state)
