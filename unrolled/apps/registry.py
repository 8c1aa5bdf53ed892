"""Every application, by name: the command line and ``import unrolled`` read this table.

Adding an application is one module of `unrolled.apps` (see `unrolled.apps.base`)
and one line here.
"""

from __future__ import annotations

from unrolled.apps import caption, classify, glimpse
from unrolled.apps.base import Application

APPLICATIONS: dict[str, Application] = {app.name: app for app in (
    classify.APP,
    caption.APP,
    glimpse.APP,
)}
