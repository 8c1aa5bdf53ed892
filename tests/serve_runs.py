"""Tiny trained runs of every application, and `unrolled serve` over them as a real process on a loopback port.

The runs are the device tests' cases (`tests.test_app_devices.CASES`), trained two
steps each (about 6 s for all eight). The server is the command itself, started
with small limits so that every limit can be met with a small request, and stopped
(by its own process id) when the tests are done.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.test_app_devices import CASES
from unrolled.cli import main
from unrolled.serve.launch import Launched

LIMITS = {"max_texts": 12, "max_text_chars": 300, "max_length": 300, "max_samples": 4, "max_beam": 8,
          "max_image_pixels": 64 * 64, "max_audio_seconds": 3.0, "max_request_bytes": 400_000}
"""The limits the test server runs with (each small, so that a small request exceeds it)."""


@dataclass
class Runs:
    root: Path
    inputs: dict[str, list[str]]  # each application's predict arguments from its case (a file to send, ...)

    def run(self, name: str) -> Path:
        return self.root / name


def train_runs(root: Path, names: list[str] | None = None) -> Runs:
    """Each application's tiny run under root/NAME (two training steps), and its case's predict arguments."""
    inputs = {}
    for name in names or sorted(CASES):
        folder = root / f"{name}-data"
        folder.mkdir(parents=True, exist_ok=True)
        train, predict, _ = CASES[name](folder)
        assert main([name, "train", *train, "--out", str(root / name), "--max-steps", "2", "--no-progress"]) == 0
        inputs[name] = predict
    return Runs(root, inputs)


@contextmanager
def serving(runs: list[Path], *flags: str) -> Iterator[str]:
    """`unrolled serve RUNS FLAGS` in a child process on a free loopback port; yields its base URL."""
    server = Launched(runs, flags, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        yield server.url
    finally:
        server.stop()


def limit_flags(**changes: float) -> list[str]:
    values = {**LIMITS, **changes}
    return [part for name, value in values.items() for part in (f"--{name.replace('_', '-')}", str(value))]
