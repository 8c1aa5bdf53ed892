"""Every application, by name: the command line and ``import unrolled`` read this table.

Adding an application is one module of `unrolled.apps` (see `unrolled.apps.base`)
that ends with ``APP = Application(...)``, and its name on one line here.
"""

from __future__ import annotations

import importlib

from unrolled.apps.base import Application

MODULES = (
    "lm",
    "classify",
    "tag",
    "seq2seq",
    "caption",
    "glimpse",
    "video",
    "speech",
)
"""The modules of `unrolled.apps` that hold an application, in the order ``unrolled --help`` lists them."""

APPLICATIONS: dict[str, Application] = {
    app.name: app for app in (importlib.import_module(f"unrolled.apps.{name}").APP for name in MODULES)}
