"""Reading digit strings from images: DRAM (`Glimpses`) or the CNN baseline trained into a run folder, then used.

Data is `ImageCaptions` whose captions are digit strings written with spaces
("3 1 4"), e.g. the built-in ``digit-strings``; images are read in grey (the
mean of the three channels). The data's own split is used when it has one,
else a seeded split of the images. A run's ``config.json`` holds the model
("dram" or "cnn") and its config, the image size and the split.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from unrolled.apps.caption import image_key, split_images
from unrolled.apps.split import SplitRecord, new_record
from unrolled.checkpoint import CheckpointError, load_checkpoint, load_model_state, resolve_checkpoint, saved_run_config
from unrolled.data.images import ImageCaptions
from unrolled.data.labelled import LabelledData
from unrolled.models.glimpse import (
    END,
    KIND,
    DigitCNN,
    DigitCNNConfig,
    GlimpseConfig,
    Glimpses,
    symbol_labels,
)

COMMAND = "unrolled glimpse train"
MODELS = ("dram", "cnn")
READ_BATCH = 64


def digit_strings_of(data: ImageCaptions) -> list[list[int]]:
    """Each image's first caption as digits; a one-line error for a caption that is not digits and spaces."""
    strings = []
    for name, captions in zip(data.names, data.captions, strict=True):
        tokens = captions[0].split()
        if not all(len(t) == 1 and t.isdigit() for t in tokens):
            raise ValueError(f"image {name!r}: the caption {captions[0]!r} is not digits separated by spaces "
                             "(e.g. '3 1 4')")
        strings.append([int(t) for t in tokens])
    return strings


def grey(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) -> uint8 (N, 1, H, W), the mean of the channels."""
    return np.round(images.astype(np.float32).mean(axis=3))[:, None].astype(np.uint8)


def as_float(images: np.ndarray) -> Tensor:
    """uint8 (N, 1, H, W) -> float (N, 1, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)


@dataclass
class ReadBatch:
    """images (B, 1, H, W) float in [0, 1]; labels (B, S): digits, END, then IGNORE."""

    images: Tensor
    labels: Tensor
    centres: Tensor | None = None


class ReadData(LabelledData):
    """Shuffled training batches of (image, string), for the trainer (`LabelledData`'s order)."""

    def __init__(self, images: np.ndarray, strings: list[list[int]], *, symbols: int, batch_size: int,
                 seed: int = 0, centres: Tensor | None = None) -> None:
        super().__init__([[*s, END] for s in strings], list(range(len(strings))), batch_size=batch_size, seed=seed)
        self.images, self.strings, self.symbols, self.centres = images, strings, symbols, centres

    def batches(self, epoch: int, start: int) -> Any:
        for rows in self.batch_rows(epoch, start):
            yield ReadBatch(as_float(self.images[rows]), symbol_labels([self.strings[i] for i in rows], self.symbols),
                            None if self.centres is None else self.centres[rows])

    def shard(self, rank: int, world: int) -> ReadData:
        rows = super().shard(rank, world).rows
        part = ReadData(self.images, self.strings, symbols=self.symbols, batch_size=self.batch_size, seed=self.seed,
                        centres=self.centres)
        part.rows = rows
        return part


def box_centres(data: ImageCaptions, strings: list[list[int]], symbols: int) -> Tensor | None:
    """(N, S, 2): the centre of each digit's box as (y, x) in [-1, 1], NaN for <end> and past it; None when the
    data have no boxes. An image whose box count differs from its digit count gets NaN throughout."""
    if data.boxes is None:
        return None
    height, width = data.images.shape[1:3]
    centres = torch.full((len(strings), symbols, 2), float("nan"))
    for n, (boxes, digits) in enumerate(zip(data.boxes, strings, strict=True)):
        if len(boxes) == len(digits) and len(digits) < symbols:
            for s, (top, left, bottom, right) in enumerate(boxes):
                centres[n, s] = torch.tensor([(top + bottom) / height - 1.0, (left + right) / width - 1.0])
    return centres


def build(model: str, options: dict[str, Any], size: tuple[int, int]) -> Glimpses | DigitCNN:
    """A `Glimpses` ("dram") or `DigitCNN` ("cnn") for images of `size` (H, W)."""
    if model == "dram":
        return Glimpses(GlimpseConfig(**options))
    if model == "cnn":
        return DigitCNN(DigitCNNConfig(height=size[0], width=size[1], **options))
    raise ValueError(f"unknown model {model!r}: choose one of {', '.join(MODELS)}")


def config_of(network: Glimpses | DigitCNN) -> dict[str, Any]:
    config = asdict(network.config)
    return {k: v for k, v in config.items() if k not in ("height", "width")}


class Reader:
    """A trained reader: images in, digit strings (and DRAM's glimpse centres) out."""

    def __init__(self, model: Glimpses | DigitCNN, kind: str, size: tuple[int, int],
                 split: dict[str, Any] | None) -> None:
        self.model, self.kind, self.size, self.split = model.eval(), kind, size, split

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Reader:
        checkpoint = load_checkpoint(resolve_checkpoint(path, command=COMMAND), kind=KIND)
        saved = checkpoint.config
        try:
            size = (int(saved["image_size"][0]), int(saved["image_size"][1]))
            model = build(saved["reader"], saved["model"], size)
        except (KeyError, TypeError, IndexError) as error:
            raise CheckpointError(f"{path}: config.json lacks what a glimpse run needs ({error})") from None
        load_model_state(model, checkpoint.model_state, path)
        return cls(model, saved["reader"], size, saved.get("split"))

    def read(self, images: np.ndarray, *, batch_size: int = READ_BATCH) -> tuple[list[list[int]], Tensor | None]:
        """The digits of each image (uint8 (N, H, W, 3) at the run's size), and DRAM's glimpse centres
        (N, glimpses, 2) as (y, x) in [-1, 1] (None for the CNN)."""
        if images.ndim != 4 or images.shape[3] != 3 or tuple(images.shape[1:3]) != self.size:
            raise ValueError(f"images must be uint8 (N, {self.size[0]}, {self.size[1]}, 3), got {images.shape}")
        strings: list[list[int]] = []
        centres = []
        pixels = grey(images)
        for start in range(0, len(pixels), batch_size):
            found, where = self.model.read(as_float(pixels[start : start + batch_size]))
            strings += found
            if where is not None:
                centres.append(where)
        return strings, torch.cat(centres) if centres else None

    def evaluate(self, data: ImageCaptions, indices: list[int]) -> dict[str, Any]:
        """Sequence error (a string not read whole), digit accuracy by position, and images per second; overall
        and by string length."""
        if not indices:
            raise ValueError("no images to evaluate")
        truth = digit_strings_of(data.select(indices))
        started = time.perf_counter()
        found, _ = self.read(data.images[indices])
        seconds = time.perf_counter() - started
        wrong = [f != t for f, t in zip(found, truth, strict=True)]
        by_length: dict[str, dict[str, float]] = {}
        for length in sorted({len(t) for t in truth}):
            rows = [k for k, t in enumerate(truth) if len(t) == length]
            by_length[str(length)] = {"images": len(rows), "sequence_error": sum(wrong[k] for k in rows) / len(rows)}
        return {"images": len(indices), "sequence_error": sum(wrong) / len(wrong), "by_length": by_length,
                "per_second": len(indices) / seconds if seconds > 0 else float("inf")}


def validation_scores(model: Glimpses | DigitCNN, images: np.ndarray, strings: list[list[int]],
                      symbols: int) -> dict[str, float]:
    """Mean cross-entropy per symbol, symbol accuracy and sequence error (the model's own reading, no sampling)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, correct, count, wrong = 0.0, 0.0, 0.0, 0.0
    try:
        with torch.no_grad():
            for start in range(0, len(strings), READ_BATCH):
                chunk = strings[start : start + READ_BATCH]
                batch = ReadBatch(as_float(images[start : start + READ_BATCH]).to(device),
                                  symbol_labels(chunk, symbols).to(device))
                _, metrics = model.loss(batch)
                total += metrics["nll"] * metrics["tokens"]
                correct += metrics["accuracy"] * metrics["tokens"]
                count += metrics["tokens"]
                wrong += metrics["sequence_error"] * len(chunk)
    finally:
        model.train(was_training)
    return {"loss": total / count, "accuracy": correct / count, "sequence_error": wrong / len(strings)}


def fit(data: ImageCaptions, out: str | os.PathLike[str], *, model: str = "dram",
        model_options: dict[str, Any] | None = None, train: Any = None, validation: float = 0.05,
        test: float = 0.05, split_seed: int = 0, batch_size: int = 64, eval_every: int | None = None,
        resume: bool = False) -> Any:
    """Train a reader on `data` into the run folder `out` (or resume it); returns the `TrainResult`.

    `model_options` are `GlimpseConfig` fields ("dram") or `DigitCNNConfig` fields other than the image size
    ("cnn"); the longest string of the data sets ``max_digits`` unless given.
    """
    from unrolled.training import TrainConfig, Trainer

    if len(data.names) == 0:
        raise ValueError("no images to train on")
    strings = digit_strings_of(data)
    train_config = train if train is not None else TrainConfig(max_epochs=10)
    saved = saved_run_config(out, kind=KIND) if resume else None
    if saved:
        record = None if saved["split"] is None else SplitRecord(**saved["split"])
        model, options = saved["reader"], saved["model"]
    else:
        record = None if data.splits is not None else new_record(
            list(range(len(data.names))), lambda i: image_key(data, i), seed=split_seed, validation=validation,
            test=test)
        options = {"max_digits": max(1, max(len(s) for s in strings)), **(model_options or {})}
    parts = split_images(data, record)
    if not parts["train"]:
        raise ValueError("no training images are left after the split; give more data or smaller fractions")
    size = (int(data.images.shape[1]), int(data.images.shape[2]))
    torch.manual_seed(train_config.seed)
    network = build(model, options, size)
    symbols = int(options["max_digits"]) + 1  # the digits of the longest string and <end>
    too_long = [k for k in parts["train"] if len(strings[k]) >= symbols]
    if too_long:
        raise ValueError(f"{len(too_long)} training string(s) have more than {symbols - 1} digits (the first: image "
                         f"{data.names[too_long[0]]!r}); raise --max-digits")
    pixels = grey(data.images)
    centres = box_centres(data, strings, symbols)
    train_centres = None if centres is None else centres[parts["train"]]
    if isinstance(network, Glimpses) and network.config.guide > 0 and (
            train_centres is None or bool(train_centres.isnan().all())):
        warnings.warn("the data give no box for each digit, so guidance (--guide) has no effect: DRAM learns where "
                      "to look by REINFORCE alone, which is slow (see the README's DRAM benchmark)", stacklevel=2)
    batches = ReadData(pixels[parts["train"]], [strings[k] for k in parts["train"]], symbols=symbols,
                       batch_size=batch_size, seed=train_config.seed,
                       centres=train_centres)
    if eval_every is None:
        train_config = dataclasses.replace(train_config, eval_every=len(batches))
    held = [k for k in parts["validation"] if len(strings[k]) < symbols]
    evaluate = _evaluator(pixels[held], [strings[k] for k in held], symbols) if held else None
    extra = {"kind": KIND, "reader": model, "model": config_of(network), "image_size": list(size),
             "split": None if record is None else asdict(record), "batching": {"batch_size": batch_size}}
    trainer = Trainer(network, batches, train_config, out, evaluate=evaluate, checkpoint_config=extra)
    return trainer.fit(resume=resume)


def _evaluator(images: np.ndarray, strings: list[list[int]], symbols: int) -> Any:
    def evaluate(module: nn.Module) -> dict[str, float]:
        inner = module.module if hasattr(module, "module") else module
        assert isinstance(inner, (Glimpses, DigitCNN))
        return validation_scores(inner, images, strings, symbols)

    return evaluate


def plot_glimpses(image: np.ndarray, centres: Tensor, config: GlimpseConfig, path: str | os.PathLike[str],
                  title: str = "") -> None:
    """Write the image with DRAM's glimpses drawn on it as numbered boxes (the smallest patch of each), in order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    height, width = image.shape[:2]
    figure, axes = plt.subplots(figsize=(max(3.0, width / 32), max(1.5, height / 32) + 0.4))
    axes.imshow(image)
    colours = plt.get_cmap("viridis")
    steps = centres.shape[0]
    for n, (y, x) in enumerate(centres.tolist()):
        row, column = (y + 1) * height / 2, (x + 1) * width / 2  # the centre in pixels
        side = config.glimpse
        colour = colours(n / max(1, steps - 1))
        axes.add_patch(Rectangle((column - side / 2, row - side / 2), side, side, fill=False, edgecolor=colour,
                                 linewidth=1.2))
        axes.text(column, row, str(n + 1), color=colour, fontsize=6, ha="center", va="center")
    axes.set_title(title, fontsize=8)
    axes.axis("off")
    figure.tight_layout()
    figure.savefig(os.fspath(path), dpi=120)
    plt.close(figure)
