"""Stopping on purpose and by accident: Ctrl-C (save after an interrupt) and the checks for divergence.

Ctrl-C saves ``RUN/last`` with the state after the last completed step and the
run returns (stopped_because="interrupted"); a SIGINT during an optimizer
update waits for the update to end. A step interrupted before its update is
undone in the save: torch's generators and the data's state are taken from the
step's start (`snapshot`; NumPy's and Python's generators are saved as they
are: training steps are expected not to draw from them; buffers a forward pass
changed, such as batch-norm statistics, are not undone). An interrupted
distributed run saves nothing (its `last` from the latest evaluation or save
stays).

A non-finite loss, gradient norm, validation loss or parameter stops the run
with a one-line `TrainingError` saying what, at which step, and which
checkpoint is kept.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import torch
from torch import Tensor

from unrolled.training.config import TrainingError

# The phases of the loop, for Ctrl-C: where the state on hand is whole.
SETUP, BOUNDARY, STEP, UPDATE = "setup", "boundary", "step", "update"

Generators = tuple[Tensor, Tensor | None]
Snapshot = tuple[Generators, dict[str, Any]]
"""torch's generators and the data's state at a step's start."""


class SigintGuard:
    """While entered (in the main thread, with Python's own handler in place): Ctrl-C raises
    KeyboardInterrupt, except during an optimizer update (`phase` UPDATE), when it is held back until
    `check()` after the update; a second Ctrl-C goes through at once."""

    def __init__(self) -> None:
        self.phase = SETUP
        self.pending = False
        self._handling = False
        self._previous: Any = None

    def __enter__(self) -> SigintGuard:
        self._handling = threading.current_thread() is threading.main_thread() and (
            signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        if self._handling:
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._handling:
            signal.signal(signal.SIGINT, self._previous)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.phase == UPDATE and not self.pending:
            self.pending = True  # raised once the update is done; a second Ctrl-C goes through
            return
        raise KeyboardInterrupt

    def check(self) -> None:
        """Raise the Ctrl-C held back during the update that just ended."""
        if self.pending:
            raise KeyboardInterrupt


def torch_generators(device: torch.device) -> Generators:
    """torch's CPU generator state and, when training on CUDA, the device's (cheap: no NumPy, no Python)."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def restore_torch_generators(generators: Generators, device: torch.device) -> None:
    cpu, cuda = generators
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)


def diverged(what: str, value: float, *, step: int, saved_step: int | None, last: Path) -> TrainingError:
    """The one-line error of a run that stopped being finite at `step`, saying what `last` keeps."""
    if saved_step is not None:
        kept = f"the last good checkpoint (step {saved_step}) is kept in {last}"
    else:
        kept = f"no checkpoint was saved before (there is none in {last})"
    return TrainingError(f"{what} became {value} at step {step}; {kept}; try a lower --lr or --clip")


def check_finite(what: str, value: float, *, step: int, saved_step: int | None, last: Path) -> None:
    """Raise `diverged` when `value` is NaN or infinite."""
    if not math.isfinite(value):
        raise diverged(what, value, step=step, saved_step=saved_step, last=last)


def save_after_interrupt(guard: SigintGuard, *, step: int, saved_step: int | None, last: Path, world: int,
                         snapshot: Snapshot | None, device: torch.device,
                         save: Callable[[dict[str, Any] | None], None], say: Callable[[str], None]) -> None:
    """Ctrl-C: `save(data_state)` the state after step `step` in `last` when it is whole, and say so.

    Within a step (phase STEP) the step's draws are undone first: torch's
    generators and the data's state from `snapshot`. A distributed run, or one
    interrupted during an update, saves nothing.
    """
    kept = f"{last} holds step {saved_step}" if saved_step is not None else "nothing was saved"
    if world > 1 or guard.phase == UPDATE:
        why = "a distributed run saves only at evaluations and saves" if world > 1 else \
            "it came during an optimizer update"
        say(f"interrupted after step {step}; not saving ({why}); {kept}")
        return
    data_state = None
    if guard.phase == STEP and snapshot is not None:  # undo the unfinished step's draws
        generators, data_state = snapshot
        restore_torch_generators(generators, device)
    if saved_step != step:
        try:
            save(data_state)
        except KeyboardInterrupt:
            say(f"interrupted again while saving step {step}; {kept}")
            return
    say(f"interrupted: step {step} is saved in {last}; run the same command with --resume to continue")
