"""Run an exported model without torch: ONNX Runtime for the graphs, NumPy for decoding.

``load(folder)`` checks the folder against its manifest (every file's SHA-256,
`unrolled.runtime.bundle`) and returns the application's runtime predictor
(`unrolled.runtime.apps`), whose ``predict(inputs, options)`` gives what the
application's own predictor gives::

    from unrolled.runtime import load
    load("exported/mr").predict(["a gripping, funny film"])

This package imports numpy and onnxruntime, and of unrolled only what needs no torch (`unrolled.tokens`,
`unrolled.apps.results`, `unrolled.extras`); never torch.
"""

from __future__ import annotations

import os
from typing import Any

from unrolled.runtime.bundle import Bundle, BundleError, read_bundle

__all__ = ["Bundle", "BundleError", "load"]


def load(folder: str | os.PathLike[str], *, threads: int | None = None) -> Any:
    """The runtime predictor of the exported folder `folder` (ONNX graphs); BundleError in one line otherwise.

    `threads`: ONNX Runtime's intra-op threads (default: its own choice).
    """
    from unrolled.runtime.apps import PREDICTORS

    bundle = read_bundle(folder)
    if bundle.graphs != "onnx":
        raise BundleError(f"{folder}: a {bundle.graphs} export; the runtime runs ONNX exports (load TorchScript "
                          "with torch.jit.load, or export with --format onnx)")
    if bundle.application not in PREDICTORS:
        raise BundleError(f"{folder}: an export of {bundle.application!r}; the runtime runs {', '.join(PREDICTORS)}")
    return PREDICTORS[bundle.application](bundle, threads)
