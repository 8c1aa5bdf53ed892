"""Training a small run from the command line, for the tests that share one run per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from unrolled.cli import main


def trained(factory: pytest.TempPathFactory, name: str, app: str, *arguments: str) -> Path:
    """The folder of run `name`, trained by ``unrolled APP train ARGUMENTS --out FOLDER`` (which must succeed)."""
    out = factory.mktemp("runs") / name
    assert main([app, "train", *arguments, "--out", str(out)]) == 0
    return out
