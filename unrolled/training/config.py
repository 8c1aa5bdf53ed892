"""What a run is told and what it answers: `TrainConfig`, `TrainResult`, the protocols, `parse_duration`.

Every `TrainConfig` field carries ``metadata`` for the command-line options
derived from it (one ``--field-name`` flag each unless said otherwise):

    help      the option's help text (every field has one)
    flag      False: no option for this field (set it from code or a saved config)
    aliases   other spellings kept valid, e.g. ("--warmup",) for warmup_steps
    choices   the allowed values
    metavar   the value's name in the help
    parse     "duration": the text goes through `parse_duration` (seconds)
    negate    a bool field: more spellings of the flag that sets it False (``--no-NAME`` always does)
              (its help text is that flag's)
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, cast

from torch import Tensor, nn

from unrolled.devices import PRECISIONS, check_device_name

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULES = ("constant", "cosine", "step", "plateau")
STOP_REASONS = ("max_steps", "max_epochs", "max_time", "early_stop", "interrupted")

Evaluate = Callable[[nn.Module], dict[str, float]]


class TrainingError(ValueError):
    """Training diverged (a non-finite loss or gradient norm); one line saying what, where, and what is kept."""


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


def _option(default: Any, help: str, **flags: Any) -> Any:
    """A field with its command-line metadata (see the module docstring)."""
    return field(default=default, metadata={"help": help, **flags})


@dataclass
class TrainConfig:
    """How to train: optimiser, learning-rate schedule, clipping, budget, evaluation, logging.

    ``dataclasses.asdict`` of it is plain JSON (saved in every checkpoint's
    config.json under "train"). Invalid values raise a one-line ValueError.
    With no budget at all (max_steps, max_epochs and max_time unset) the trainer
    trains one epoch; the fields stay as they are.

    ================  ==========================================================
    field             meaning
    ================  ==========================================================
    optimizer         "adam", "adamw", "rmsprop" or "sgd"
    lr                peak learning rate
    weight_decay      L2 (adam, rmsprop, sgd) or decoupled (adamw) weight decay
    betas             Adam's (beta1, beta2)
    momentum          momentum of sgd and rmsprop
    schedule          "constant", "cosine", "step" or "plateau" (see `unrolled.training.schedule`)
    warmup_steps      linear warm-up over the first updates, for every schedule
    min_lr_ratio      the cosine floor, a fraction of lr
    decay_steps       the cosine horizon in updates; default max_steps, else max_epochs x batches per
                      epoch; with max_time the decay also follows the time spent, whichever is
                      further (see `unrolled.training.schedule`)
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
    device            "auto" (CUDA where there is one, else the CPU), "cpu", "cuda", "cuda:1", "mps"
                      (`unrolled.devices.resolve_device`; distributed CUDA runs use cuda:LOCAL_RANK)
    average           keep an exponential moving average of the weights with this decay (e.g. 0.999);
                      validation, best/ and every checkpoint's model use it (`unrolled.training.averaging`)
    threads           torch's CPU threads for the run; None: torch's count, lowered to the cores other
                      programs leave free while a time-bounded run goes on (`unrolled.machine`;
                      step- and epoch-bounded runs keep the count, so they resume bit for bit)
    precision         "fp32"; "bf16": the training forward under ``torch.autocast`` in bfloat16
                      (float32 weights, gradients and optimiser state; evaluation stays float32);
                      "fp16": the same in float16 with a gradient scaler (CUDA only; steps whose
                      gradients overflow are skipped and counted); "auto": bf16 where the device
                      computes it natively (`unrolled.devices.bf16_native`), else fp16 on CUDA, else fp32
    ================  ==========================================================
    """

    optimizer: str = _option("adamw", "the optimiser", choices=OPTIMIZERS)
    lr: float = _option(2e-3, "peak learning rate")
    weight_decay: float = _option(0.0, "decoupled weight decay (AdamW) or L2 penalty (others)")
    betas: tuple[float, float] = _option((0.9, 0.99), "Adam's (beta1, beta2)", flag=False)
    momentum: float = _option(0.9, "momentum of sgd and rmsprop", flag=False)
    schedule: str = _option("cosine", "learning-rate schedule after warm-up; cosine decays to the end of the "
                            "budget", choices=SCHEDULES)
    warmup_steps: int = _option(0, "linear warm-up steps", aliases=("--warmup",), metavar="STEPS")
    min_lr_ratio: float = _option(0.1, "the cosine's floor, a fraction of the peak learning rate", flag=False)
    decay_steps: int | None = _option(None, "length of the cosine decay in steps (default: the step or epoch "
                                      "budget; with --max-time the decay also follows the time spent and ends "
                                      "with it)", metavar="STEPS")
    step_size: int = _option(1000, "the step schedule: steps between two decays", flag=False)
    gamma: float = _option(0.5, "the step schedule: the factor of each decay", flag=False)
    plateau_factor: float = _option(0.5, "the plateau schedule: the factor of each reduction", flag=False)
    plateau_patience: int = _option(2, "the plateau schedule: evaluations without a better validation loss "
                                    "before a reduction", flag=False)
    clip_norm: float | None = _option(1.0, "clip the gradient's global norm to this; 0 turns it off",
                                      aliases=("--clip",))
    max_steps: int | None = _option(None, "stop after this many steps", metavar="STEPS")
    max_epochs: int | None = _option(None, "stop after this many passes over the training data (with no "
                                     "budget at all: one)", metavar="N")
    max_time: float | None = _option(None, "stop after this much training time, e.g. 90s, 10m, 1.5h",
                                     metavar="DURATION", parse="duration")
    eval_every: int | None = _option(500, "evaluate on the validation data every this many steps (none: once "
                                     "per epoch)", metavar="STEPS")
    early_stop: int | None = _option(None, "stop after N evaluations without a better validation loss",
                                     metavar="N")
    save_every: int | None = _option(None, "also save the last checkpoint every this many steps", flag=False)
    log_every: int = _option(10, "a line of training metrics every this many steps", metavar="STEPS")
    seed: int = _option(0, "random seed")
    progress: bool = _option(True, "a progress bar on stderr", negate=("--no-progress",))
    device: str = _option("auto", "auto (CUDA where there is one, else the CPU), cpu, cuda, cuda:1 ... or mps",
                          metavar="DEVICE")
    precision: str = _option("fp32", "training arithmetic: bf16 or fp16 runs the forward in half precision "
                             "(weights and evaluation stay float32; fp16 on CUDA only); auto picks bf16 where the "
                             "device computes it natively, else fp16 on CUDA, else fp32", choices=PRECISIONS)
    average: float | None = _option(None, "keep a moving average of the weights with this decay, e.g. 0.999 "
                                    "(about the last 1000 updates); validation and the saved model use it",
                                    metavar="DECAY")
    threads: int | None = _option(None, "CPU threads for training (default: torch's count, lowered to the cores "
                                  "other programs leave free while a --max-time run goes on)", metavar="N")

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
        _whole("eval_every", self.eval_every, low=1, optional=True)
        _whole("early_stop", self.early_stop, low=1, optional=True)
        _whole("save_every", self.save_every, low=1, optional=True)
        _whole("log_every", self.log_every, low=1)
        _whole("seed", self.seed, low=0)
        _whole("threads", self.threads, low=1, optional=True)
        if self.average is not None:
            _number("average", self.average, low=0.0, high=1.0, low_open=True, high_open=True, hint="e.g. 0.999")
        check_device_name(self.device)

    @property
    def clipping(self) -> float | None:
        """The clipping norm, or None when clipping is off (clip_norm None or 0)."""
        return self.clip_norm if self.clip_norm else None

    @property
    def epoch_budget(self) -> int | None:
        """The epochs a run may take: max_epochs, or 1 when no budget at all is set (the fields stay unset)."""
        if self.max_steps is None and self.max_epochs is None and self.max_time is None:
            return 1
        return self.max_epochs


def option_fields() -> list[Any]:
    """The `TrainConfig` fields that get a command-line option (metadata "flag" not False)."""
    return [item for item in fields(TrainConfig) if item.metadata.get("flag", True)]


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


def format_seconds(seconds: float) -> str:
    """A duration for messages: "4m05s", "1h02m"."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


@dataclass
class TrainResult:
    """What `Trainer.fit` returns.

    `steps`: optimizer steps in all (resumes included); `epochs`: epochs of
    data seen (2.5 = two and half of the third); `stopped_because`: one of
    max_steps, max_epochs, max_time, early_stop, interrupted; `best_loss` /
    `best_step`: the lowest validation loss and its step (None without
    evaluation); `last_metrics`: the latest evaluation's metrics, or without
    one the latest train line's means; `elapsed`: seconds of training in all;
    `skipped_steps`: steps of an fp16 run whose update the gradient scaler
    skipped (overflowing gradients), in all; they count among `steps`.
    """

    steps: int
    epochs: float
    stopped_because: str
    best_loss: float | None
    best_step: int | None
    last_metrics: dict[str, float]
    run_dir: Path
    elapsed: float
    skipped_steps: int = 0


def epochs_recipe(**changes: Any) -> TrainConfig:
    """The recipe of the labelling applications (`changes` on top): Adam at 1e-3, no weight decay, a constant rate,
    gradients clipped at norm 5, up to 10 epochs, evaluated once per epoch, stopping after 3 evaluations without a
    better validation loss; bf16 where the device computes it natively."""
    recipe = TrainConfig(optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="constant", warmup_steps=0,
                         clip_norm=5.0, max_epochs=10, eval_every=None, early_stop=3, precision="auto")
    return dataclasses.replace(recipe, **changes) if changes else recipe
