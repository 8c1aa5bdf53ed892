"""Small trained runs the viz tests share: a char LM (LSTM, 2 x 16) trained for a few steps on a short text."""

from __future__ import annotations

from pathlib import Path

from unrolled.cli import main

TEXT = ("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
        "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles\n") * 8
TINY = ["--layers", "2", "--hidden", "16", "--embedding", "8", "--batch", "4", "--seq-len", "16",
        "--eval-every", "5", "--no-progress", "--dropout", "0"]


def train_tiny_lm(folder: Path, *, steps: int = 10, cell: str = "lstm") -> Path:
    """Train the tiny char LM into folder/run (its text in folder/text.txt); returns the run folder."""
    corpus = folder / "text.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    out = folder / "run"
    assert main(["lm", "train", str(corpus), "--out", str(out), "--max-steps", str(steps), "--cell", cell,
                 *TINY]) == 0
    return out
