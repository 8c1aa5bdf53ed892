"""One exported ONNX graph in an ONNX Runtime session, and how the runtime's predictors read their options.

Every runtime predictor (`unrolled.runtime.apps`, `speech`, `vision`) runs its
graphs through `Graph` and reads the application's predict options, an object
or a dict, through `option`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unrolled.extras import need
from unrolled.runtime.bundle import Bundle


def option(options: Any, name: str, default: Any) -> Any:
    """Option `name` of an options object or dict, else `default`."""
    if options is None:
        return default
    if isinstance(options, dict):
        return options.get(name, default)
    return getattr(options, name, default)


class Graph:
    """One ONNX graph in an ONNX Runtime session: ``graph(**arrays) -> {output name: array}``."""

    def __init__(self, bundle: Bundle, name: str, threads: int | None = None) -> None:
        need("onnxruntime", "the runtime")
        import onnxruntime as ort

        settings = ort.SessionOptions()
        if threads:
            settings.intra_op_num_threads = threads
        settings.log_severity_level = 3
        self.session = ort.InferenceSession(str(bundle.graph(name)), settings, providers=["CPUExecutionProvider"])
        self.outputs = [output.name for output in self.session.get_outputs()]
        self.inputs = {value.name for value in self.session.get_inputs()}

    def __call__(self, **feeds: np.ndarray) -> dict[str, np.ndarray]:
        """The outputs for `feeds`; a feed the graph does not read (the exporter drops unread inputs) is left out."""
        read = {name: value for name, value in feeds.items() if name in self.inputs}
        return dict(zip(self.outputs, self.session.run(self.outputs, read), strict=True))
