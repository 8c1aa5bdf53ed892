"""unrolled: recurrent neural networks made real, correct to the last gate.

The package reads as its architecture. The core: `cells` (one step of RNN,
LSTM, GRU), `recurrent` (unrolling any cell over time: stacked,
bidirectional, variable lengths, torch's fused kernel when it computes the
same function), `attention`, `decoding` (greedy, sampling, beam search, CTC,
n-gram fusion), `checkpoint`, `training` (the one trainer), `devices`. Above
it, `apps`: every application in one shape (configuration dataclasses, `fit`,
a predictor with `load` / `predict` / `evaluate`), listed in
`unrolled.apps.registry`.

The core's names, the applications' predictors and configurations are offered
here, each imported on first use (so `unrolled.runtime`, which runs exported
models without torch, can be imported without importing torch)::

    from unrolled import TextClassifier
    TextClassifier.load("runs/mr").predict(["a gripping, funny film"])
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

__version__ = "0.1.0"

__all__ = ["Cell", "GRUCell", "LSTMCell", "RNNCell", "Recurrent", "make_cell", "reverse_padded", "unroll"]
_CORE = {"Cell": "unrolled.cells", "GRUCell": "unrolled.cells", "LSTMCell": "unrolled.cells",
         "RNNCell": "unrolled.cells", "make_cell": "unrolled.cells", "Recurrent": "unrolled.recurrent",
         "reverse_padded": "unrolled.recurrent", "unroll": "unrolled.recurrent"}


def _application_names() -> dict[str, str]:
    """Each application's predictor and configuration class, by name -> its module."""
    registry = importlib.import_module("unrolled.apps.registry")
    names: dict[str, str] = {}
    for app in registry.APPLICATIONS.values():
        for item in (app.predictor, app.config):
            names[item.__name__] = item.__module__
    return names


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(name)
    if name not in _CORE and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")  # `from unrolled import runtime`: no applications
    module = _CORE.get(name) or _application_names().get(name)
    if module is None:
        raise AttributeError(f"module 'unrolled' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*__all__, *_application_names(), "__version__"])

