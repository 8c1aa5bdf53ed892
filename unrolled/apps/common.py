"""What several applications share besides the interface (`unrolled.apps.base`): scoring a model in eval mode,
an application's own options from the shared ones, finding the configured data, and the files reports draw."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from unrolled.options import option


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.device]:
    """A block that scores `model`: eval mode, no autograd; yields the model's device; its mode as it was after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield next((p.device for p in model.parameters()), torch.device("cpu"))
    finally:
        model.train(was_training)


Opts = TypeVar("Opts")


def own_options(options: Any, kind: type[Opts]) -> Opts:
    """`options` as the application's own `kind`: itself, or its defaults with the shared options given."""
    if isinstance(options, kind):
        return options
    return kind(**(dataclasses.asdict(options) if options is not None else {}))


def data_path(file: str | None, dataset: str | None, *, what: str, known: str) -> Path:
    """The data `file`, or the named `dataset` obtained into the cache; not both, not none (one-line errors).

    `what` names the kind of file and `known` a dataset, for the message.
    """
    from unrolled.data import obtain

    if file and dataset:
        raise ValueError("give a data file or --dataset, not both")
    if not file and not dataset:
        raise ValueError(f"no data: give {what} or --dataset {known}")
    return Path(file) if file else obtain(str(dataset))


def beside_run(run: Path, given: str | None, default: str) -> Path:
    """Where a report writes a file: `given`, else `default` in the run folder (a checkpoint folder's run)."""
    if given:
        return Path(given)
    return (run.parent if (run / "config.json").is_file() else run) / default


@dataclass
class ConfusionOption:
    """The eval option of the applications that draw a confusion matrix (`draw_confusion`)."""

    confusion: str | None = field(default=None, metadata=option(
        "where to write the confusion matrix (default: RUN/confusion-<split>.png)", metavar="PNG"))


def draw_confusion(metrics: dict[str, Any], names: list[str], options: Any, run: Path, title: str) -> Path:
    """Draw `metrics`' confusion matrix (rows true, columns predicted, in the order of `names`) where
    ``options.confusion`` says, else beside the run as confusion-SPLIT.png; name the picture in `metrics`."""
    from unrolled.metrics import plot_confusion

    picture = beside_run(run, options.confusion, f"confusion-{options.split}.png")
    plot_confusion(metrics["confusion"], names, picture, title=title)
    metrics["confusion_png"] = str(picture)
    return picture
