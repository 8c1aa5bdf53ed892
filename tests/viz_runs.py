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


def train_tiny_captioner(folder: Path) -> tuple[Path, Path]:
    """A captioner with soft attention trained for a few steps on coloured squares; and a folder of two images."""
    import numpy as np
    from PIL import Image

    from unrolled.data.images import ImageCaptions, write_coco

    images = np.zeros((16, 16, 16, 3), dtype=np.uint8)
    captions = []
    for i in range(16):
        top = 1 if i % 2 else 9
        images[i, top : top + 6, i % 10 : i % 10 + 6] = (230, 30, 30) if i % 3 else (30, 30, 230)
        captions.append([f"a {'red' if i % 3 else 'blue'} square at the {'top' if i % 2 else 'bottom'}"])
    data = ImageCaptions(images=images, captions=captions, names=[f"{i}.png" for i in range(16)], splits=None)
    write_coco(folder / "data" / "captions.json", data)
    out = folder / "captioner"
    assert main(["caption", "train", str(folder / "data" / "captions.json"), "--out", str(out), "--image-size", "16",
                 "--channels", "8", "--stages", "2", "--hidden", "16", "--embedding", "8", "--max-steps", "4",
                 "--batch", "8", "--no-progress"]) == 0
    pictures = folder / "pictures"
    pictures.mkdir()
    for i in (0, 1):
        Image.fromarray(images[i]).save(pictures / f"{i}.png")
    return out, pictures
