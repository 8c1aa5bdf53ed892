"""What every application shares: the predictor's interface, the options of predict and eval, the registration.

An application is one module of `unrolled.apps` with one shape:

- a configuration: a `RunConfig` subclass with sections ``data``, ``model``
  and ``train`` (`unrolled.training.TrainConfig`), whose fields carry their flags' metadata
  (`unrolled.options`), so the command line, ``--config`` files and the saved
  run all read the same names, types and defaults;
- ``fit(config, out, *, resume=False) -> TrainResult``: read the data the
  configuration names, build the model, train it into the run folder `out`
  through the one `unrolled.training.Trainer`;
- a `Predictor`: ``load(run, device="auto")``, ``predict(inputs, options)``
  returning plain dataclasses that serialise to JSON, ``evaluate(data,
  options) -> metrics``;
- ``APP = Application(...)``: its name, the above, and how the command line
  reads inputs and prints results.

Adding an application: write the module, and add its name to
`unrolled.apps.registry.MODULES` (one line). What several applications
share besides this interface is in `unrolled.apps.common`. The command line
(``unrolled NAME train | predict | eval``), ``import unrolled`` and the
run-folder checks follow from there.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TextIO, TypeVar

import torch
from typing_extensions import Self, dataclass_transform

from unrolled.checkpoint import CheckpointError, load_checkpoint, load_model_state, resolve_checkpoint
from unrolled.options import SAVED_KEY, apply_values, option, read_config, require_positive, sections
from unrolled.options import to_json as to_json_config

In = TypeVar("In")
Out = TypeVar("Out")
P = TypeVar("P", bound="Predictor[Any, Any]")
SPLITS = ("all", "train", "validation", "test")


@dataclass_transform(field_specifiers=(field,))
class RunConfig:
    """The base of every application's configuration: a dataclass of sections ``data``, ``model`` and ``train``.

    A subclass declares its sections as fields with defaults and is made a
    dataclass by the base (no decorator needed)::

        class LMConfig(RunConfig):
            data: LMData = field(default_factory=LMData)
            model: LMModel = field(default_factory=LMModel)
            train: TrainConfig = field(default_factory=...)
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclass(cls)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Self:
        """The defaults with a YAML or JSON file's values set (a run's config.json repeats that run)."""
        return apply_values(cls(), read_config(Path(path)), source=str(path))

    def to_json(self) -> dict[str, Any]:
        """Every section as plain JSON, as ``--config`` reads it back."""
        return to_json_config(self)

    def checkpoint_entry(self, resumed: dict[str, Any] | None = None) -> dict[str, Any]:
        """For the checkpoint config: the sections but ``train`` (the trainer saves that) under `SAVED_KEY`, so
        the run can be repeated; nothing when resuming (`resumed`: its saved config) a run saved before
        configurations were kept (it has none to compare)."""
        if resumed and SAVED_KEY not in resumed:
            return {}
        return {SAVED_KEY: {name: to_json_config(section) for name, section in sections(self) if name != "train"}}


@dataclass
class RunOptions:
    """Where a trained model runs and how many inputs it takes at once: what predict and eval share."""

    device: str = field(default="auto", metadata=option(
        "where the model runs: auto (CUDA when present, else CPU), cpu, cuda, cuda:N, mps"))
    batch_size: int = field(default=64, metadata=option("inputs per batch", aliases=("--batch",)))

    def __post_init__(self) -> None:
        require_positive(self, "batch_size")


@dataclass
class PredictOptions(RunOptions):
    """What every application's `predict` takes; an application's own options extend it."""

    json: bool = field(default=False, metadata=option("JSON lines: one object per input, every field of the result"))


@dataclass
class EvalOptions(RunOptions):
    """What every application's `evaluate` takes; an application's own options extend it."""

    json: bool = field(default=False, metadata=option("print one JSON object"))
    split: str = field(default="all", metadata=option(
        "evaluate on this part of the run's recorded split (the data must be the training data); all: all of it",
        choices=SPLITS))


@dataclass
class HeldOutEvalOptions(EvalOptions):
    """The eval options of the applications whose datasets carry their own split: the run's test part by default."""

    split: str = field(default="test", metadata=option(
        "evaluate on this part of the run's split (the data must be the training data); all: all of it",
        choices=SPLITS))


class Predictor(Generic[In, Out]):
    """A trained model with everything it needs to turn raw inputs into results.

    Subclasses set `kind` (the checkpoint kind they read), `command` (the
    command that trains such runs) and `what` (what a run holds, for messages),
    build themselves, untrained, from a checkpoint's config in `from_config`
    (`load` then loads the weights), and implement `predict` and `evaluate`.
    """

    kind: ClassVar[str]
    command: ClassVar[str]
    what: ClassVar[str] = "a model"
    model: torch.nn.Module

    @classmethod
    def load(cls: type[P], run: str | os.PathLike[str], *, device: str | torch.device = "auto") -> P:
        """From a run folder (its best checkpoint, else last) or a checkpoint folder, on `device`.

        A run of another application, or a device that is not here, is a one-line error.
        """
        from unrolled.devices import resolve_device

        where = resolve_device(str(device)) if not isinstance(device, torch.device) else device
        checkpoint = load_checkpoint(resolve_checkpoint(run, command=cls.command), kind=cls.kind)
        try:
            predictor = cls.from_config(checkpoint.config)
        except CheckpointError:
            raise
        except (KeyError, TypeError, IndexError, ValueError) as error:
            raise CheckpointError(f"{run}: config.json lacks what {cls.what} needs ({error})") from None
        load_model_state(predictor.model, checkpoint.model_state, run)
        return predictor.to(where)

    @classmethod
    def from_config(cls: type[P], saved: dict[str, Any]) -> P:
        """The predictor a checkpoint's config describes, its model untrained (`load` loads the weights)."""
        raise NotImplementedError

    def to(self: P, device: str | torch.device) -> P:
        """The predictor with its model on `device`, in eval mode."""
        self.model.to(device).eval()
        return self

    @property
    def device(self) -> torch.device:
        """Where the model's parameters are (the CPU for a model without any)."""
        return next((p.device for p in self.model.parameters()), torch.device("cpu"))

    def predict(self, inputs: Sequence[In], options: PredictOptions | None = None) -> list[Out]:
        raise NotImplementedError

    def evaluate(self, data: Any, options: EvalOptions | None = None) -> dict[str, Any]:
        raise NotImplementedError


def to_json(result: Any) -> Any:
    """A result as JSON: dataclasses as objects, tuples and tensors as lists."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return {item.name: to_json(getattr(result, item.name)) for item in dataclasses.fields(result)}
    if isinstance(result, (list, tuple)):
        return [to_json(item) for item in result]
    if isinstance(result, dict):
        return {str(key): to_json(value) for key, value in result.items()}
    if isinstance(result, Path):
        return str(result)
    if isinstance(result, torch.Tensor):  # e.g. attention weights
        return result.tolist()
    return result


@dataclass(frozen=True)
class Application:
    """One application as the command line and ``import unrolled`` see it.

    ==============  ==============================================================
    name            the command (``unrolled NAME ...``)
    summary         what it does, a few words for ``unrolled --help`` (the verbs are added)
    config          the configuration dataclass (sections data, model, train)
    fit             ``fit(config, out, *, resume=False) -> TrainResult``
    predictor       the `Predictor` subclass
    predict_options the options dataclass of predict (extends `PredictOptions`)
    eval_options    the options dataclass of eval (extends `EvalOptions`)
    read_inputs     ``(paths, options) -> inputs`` for predict: the INPUT arguments ("-" or none:
                    stdin, where the application reads text); by default the paths themselves
    show            ``(result) -> str``: a result as a line for people (``--json`` prints `to_json`)
    read_eval       ``(predictor, data_arg, options) -> data`` for eval (its DATA argument,
                    the run's recorded split when asked)
    report          ``(metrics, predictor, options, run) -> str``: the metrics for people; it may
                    write files (a plot) and name them in `metrics` (``--json`` prints `metrics`)
    stream          ``(predictor, inputs, options, out) -> None`` or None: predict writes its results to
                    `out` itself, as they come (text streamed as it is generated), in place of a line
                    per result; not with ``--json``
    finish          ``(predictor, inputs, results, options) -> str`` or None: after predict printed its
                    results, what the options ask for besides (a plot); a note for stderr, or ""
    aliases         the familiar verbs: {"predict": ("sample",)}, ...
    loss_unit       what the validation loss counts, for train's last line (" nats/token")
    input_help      what INPUT is, for predict's help
    ==============  ==============================================================
    """

    name: str
    summary: str
    config: type
    fit: Callable[..., Any]
    predictor: type[Predictor[Any, Any]]
    predict_options: type[PredictOptions]
    eval_options: type[EvalOptions]
    show: Callable[[Any], str]
    read_eval: Callable[[Any, str | None, Any], Any]
    report: Callable[[dict[str, Any], Any, Any, Path], str]
    read_inputs: Callable[[list[str], Any], list[Any]] = lambda paths, options: paths
    stream: Callable[[Any, list[Any], Any, TextIO], None] | None = None
    finish: Callable[[Any, list[Any], list[Any], Any], str] | None = None
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    loss_unit: str = ""
    input_help: str = "input files; - or none: standard input"
    data_help: str = "the data to evaluate on"
