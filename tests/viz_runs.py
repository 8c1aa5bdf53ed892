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


def train_tiny_seq2seq(folder: Path) -> tuple[Path, list[str]]:
    """A seq2seq run that reverses words (general attention), trained for a few steps; and some sources."""
    words = ["abc", "bad", "cafe", "face", "dead", "bead", "fade", "ace", "cab", "deaf", "feed", "beef"] * 6
    data = folder / "reverse.tsv"
    data.write_text("".join(f"{w}\t{w[::-1]}\n" for w in words), encoding="utf-8")
    out = folder / "seq2seq"
    assert main(["seq2seq", "train", str(data), "--out", str(out), "--embedding", "8", "--hidden", "16",
                 "--batch", "8", "--max-steps", "15", "--no-progress", "--source-tokens", "char",
                 "--target-tokens", "char", "--validation", "0.1", "--test", "0.1"]) == 0
    return out, words[:4]
