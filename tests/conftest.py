"""What many test files share: a private dataset cache."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty dataset cache folder, made the cache through ``UNROLLED_DATA`` for the test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("UNROLLED_DATA", str(folder))
    return folder
