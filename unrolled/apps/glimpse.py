"""Reading digit strings from images as an application: DRAM (`Glimpses`) or the CNN baseline trained into a run
folder, then used.

Data is `ImageCaptions` whose captions are digit strings written with spaces
("3 1 4"), e.g. the built-in ``digit-strings``; images are read in grey (the
mean of the three channels). The data's own split is used when it has one,
else a seeded split of the images. A run's ``config.json`` holds the model
("dram" or "cnn") and its config, the image size and the split.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from unrolled.apps.base import Application, EvalOptions, PredictOptions, Predictor, RunConfig
from unrolled.apps.common import evaluating, own_options
from unrolled.apps.images import (
    ImageData,
    ImageEvalOptions,
    SplitRecord,
    image_key,
    read_captions,
    run_part,
    split_images,
)
from unrolled.apps.results import Reading
from unrolled.apps.split import new_record
from unrolled.checkpoint import saved_run_config
from unrolled.data.images import ImageCaptions
from unrolled.data.labelled import LabelledData
from unrolled.extras import need
from unrolled.models.glimpse import (
    END,
    KIND,
    DigitCNN,
    DigitCNNConfig,
    GlimpseConfig,
    Glimpses,
    symbol_labels,
)
from unrolled.options import option
from unrolled.training import TrainConfig, TrainResult, epochs_recipe, to_device

COMMAND = "unrolled glimpse train"
MODELS = ("dram", "cnn")
READ_BATCH = 64
DATASET = "digit-strings"
WHAT = "COCO-style caption JSON of digit strings"


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


# ---------------------------------------------------------------------- configuration


@dataclass
class ReaderData(ImageData):
    """The images and their digit strings, how they are split and batched."""

    file: str | None = field(default=None, metadata=option(f"{WHAT} (or --dataset)", positional="?",
                                                           metavar="DATA"))
    dataset: str | None = field(default=None, metadata=option(
        f"a named dataset instead of a file (known: {DATASET})"))
    batch_size: int = field(default=64, metadata=option("images per batch", aliases=("--batch",)))

    def read(self) -> ImageCaptions:
        return read_captions(self.file, self.dataset, images=self.images, size=None, what=WHAT, example=DATASET)


@dataclass
class ReaderModel:
    """The network: DRAM (`GlimpseConfig`) or the CNN baseline (`DigitCNNConfig`); the defaults here are the
    command's, which differ from `GlimpseConfig`'s in std, sensor and guide."""

    model: str = field(default="dram", metadata=option(
        "dram: recurrent glimpses; cnn: the baseline that reads all digits at once", choices=MODELS))
    max_digits: int | None = field(default=None, metadata=option("the longest string read; none: the data's"))
    glimpse: int = field(default=GlimpseConfig.glimpse, metadata=option("dram: patch side g in pixels"))
    scales: int = field(default=GlimpseConfig.scales, metadata=option("dram: patches of sides g, 2g, ..., 2^(k-1) g"))
    per_symbol: int = field(default=GlimpseConfig.per_symbol, metadata=option(
        "dram: glimpses before each digit is named"))
    hidden: int = field(default=GlimpseConfig.hidden, metadata=option(
        "dram: units of each core LSTM; cnn: the hidden layer"))
    features: int | None = field(default=None, metadata=option(
        "dram: size of the glimpse network's output; none: --hidden"))
    std: float = field(default=0.05, metadata=option(
        "dram: the location policy's standard deviation, in half-images"))
    sensor: str = field(default="conv", metadata=option(
        "dram: what the glimpse network does with the patches: two 3x3 convolutions, or one linear layer as Ba et "
        "al.'s MNIST models", choices=("conv", "linear")))
    guide: float = field(default=20.0, metadata=option(
        "dram: weight of the pull of each glimpse towards its digit's box, where the data give boxes "
        "(digit-strings does); 0: REINFORCE alone, as Ba et al."))
    context: tuple[int, int] = field(default=GlimpseConfig.context, metadata=option(
        "dram: the coarse view of the whole image the first glimpse is chosen from, height,width", metavar="H,W"))
    channels: tuple[int, ...] = field(default=DigitCNNConfig.channels, metadata=option(
        "cnn: channels of each convolution stage", metavar="C,C,..."))

    def __post_init__(self) -> None:
        if not 0 <= self.std < 1 or self.guide < 0:
            raise ValueError(f"--std must be a fraction in [0, 1) and --guide 0 or more, got {self.std}, {self.guide}")

    def options(self, longest: int) -> dict[str, Any]:
        """The network's config fields but the image size; `longest`: the data's longest string."""
        digits = {"max_digits": self.max_digits or max(1, longest)}
        if self.model == "cnn":
            return {**digits, "hidden": self.hidden, "channels": self.channels}
        return {**digits, "glimpse": self.glimpse, "scales": self.scales, "per_symbol": self.per_symbol,
                "hidden": self.hidden, "features": self.features or self.hidden, "std": self.std,
                "guide": self.guide, "sensor": self.sensor, "context": self.context}


class ReaderConfig(RunConfig):
    """Everything a reading run is made from; saved whole in its checkpoints."""

    data: ReaderData = field(default_factory=ReaderData)
    model: ReaderModel = field(default_factory=ReaderModel)
    train: TrainConfig = field(default_factory=lambda: epochs_recipe(schedule="cosine", early_stop=None,
                                                                     clip_norm=None))
    """The recipe: Adam at 1e-3 on a cosine schedule for up to 10 epochs, evaluated each epoch, no clipping."""


# ---------------------------------------------------------------------- the trained reader


@dataclass
class ReaderPredictOptions(PredictOptions):
    batch_size: int = field(default=READ_BATCH, metadata=option("images per batch", aliases=("--batch",)))
    path: str | None = field(default=None, metadata=option(
        "draw the glimpse path of the first image (dram runs)", metavar="PNG"))


@dataclass
class ReaderEvalOptions(ImageEvalOptions):
    dataset: str | None = field(default=None, metadata=option(
        f"a named dataset instead of a file (known: {DATASET})"))


class Reader(Predictor[str, Reading]):
    """A trained reader: images in, digit strings (and DRAM's glimpse centres) out."""

    kind = KIND
    command = COMMAND
    what = "a glimpse run"
    model: Glimpses | DigitCNN

    def __init__(self, model: Glimpses | DigitCNN, model_type: str, size: tuple[int, int],
                 split: dict[str, Any] | None) -> None:
        self.model, self.model_type, self.size, self.split = model.eval(), model_type, size, split

    @classmethod
    def from_config(cls, saved: dict[str, Any]) -> Reader:
        size = (int(saved["image_size"][0]), int(saved["image_size"][1]))
        return cls(build(saved["reader"], saved["model"], size), saved["reader"], size, saved.get("split"))

    @torch.inference_mode()
    def read(self, images: np.ndarray, *, batch_size: int = READ_BATCH) -> tuple[list[list[int]], Tensor | None]:
        """The digits of each image (uint8 (N, H, W, 3) at the run's size), and DRAM's glimpse centres
        (N, glimpses, 2) as (y, x) in [-1, 1] (None for the CNN)."""
        if images.ndim != 4 or images.shape[3] != 3 or tuple(images.shape[1:3]) != self.size:
            raise ValueError(f"images must be uint8 (N, {self.size[0]}, {self.size[1]}, 3), got {images.shape}")
        strings: list[list[int]] = []
        centres = []
        pixels = grey(images)
        for start in range(0, len(pixels), batch_size):
            found, where = self.model.read(to_device(as_float(pixels[start : start + batch_size]), self.device))
            strings += found
            if where is not None:
                centres.append(where.cpu())
        return strings, torch.cat(centres) if centres else None

    def predict(self, inputs: Sequence[str], options: PredictOptions | None = None) -> list[Reading]:
        """The digits of each image file (resized to the run's image size), and DRAM's glimpses."""
        from unrolled.data.images import read_images

        chosen = own_options(options, ReaderPredictOptions)
        if chosen.path and not isinstance(self.model, Glimpses):
            raise ValueError("this run is a CNN reader: it takes no glimpses, so there is no path to draw")
        strings, centres = self.read(read_images([Path(name) for name in inputs], size=self.size),
                                     batch_size=chosen.batch_size)
        return [Reading(str(name), " ".join(map(str, digits)), None if centres is None else centres[k].tolist())
                for k, (name, digits) in enumerate(zip(inputs, strings, strict=True))]

    def evaluate(self, data: ImageCaptions, options: EvalOptions | None = None) -> dict[str, Any]:
        """Sequence error (a string not read whole) and images per second on every image of `data`; overall and by
        string length."""
        chosen = own_options(options, ReaderEvalOptions)
        if not data.names:
            raise ValueError("no images to evaluate")
        truth = digit_strings_of(data)
        started = time.perf_counter()
        found, _ = self.read(data.images, batch_size=chosen.batch_size)
        seconds = time.perf_counter() - started
        wrong = [f != t for f, t in zip(found, truth, strict=True)]
        by_length: dict[str, dict[str, float]] = {}
        for length in sorted({len(t) for t in truth}):
            rows = [k for k, t in enumerate(truth) if len(t) == length]
            by_length[str(length)] = {"images": len(rows), "sequence_error": sum(wrong[k] for k in rows) / len(rows)}
        return {"images": len(truth), "sequence_error": sum(wrong) / len(wrong), "by_length": by_length,
                "per_second": len(truth) / seconds if seconds > 0 else float("inf")}


def validation_scores(model: Glimpses | DigitCNN, images: np.ndarray, strings: list[list[int]],
                      symbols: int) -> dict[str, float]:
    """Mean cross-entropy per symbol, symbol accuracy and sequence error (the model's own reading, no sampling)."""
    total, correct, count, wrong = 0.0, 0.0, 0.0, 0.0
    with evaluating(model) as device:
        for start in range(0, len(strings), READ_BATCH):
            chunk = strings[start : start + READ_BATCH]
            batch = to_device(ReadBatch(as_float(images[start : start + READ_BATCH]),
                                        symbol_labels(chunk, symbols)), device)
            _, metrics = model.loss(batch)
            total += metrics["nll"] * metrics["tokens"]
            correct += metrics["accuracy"] * metrics["tokens"]
            count += metrics["tokens"]
            wrong += metrics["sequence_error"] * len(chunk)
    return {"loss": total / count, "accuracy": correct / count, "sequence_error": wrong / len(strings)}


def fit(config: ReaderConfig, out: str | os.PathLike[str], *, resume: bool = False,
        data: ImageCaptions | None = None) -> TrainResult:
    """Train a reader as `config` says into the run folder `out` (or resume it).

    The images and digit strings are read from ``config.data`` unless given
    (`data`); the longest string of the data sets ``max_digits`` unless the
    model section does. On resume, the model and split come from the run's
    last checkpoint, and the data must be the same.
    """
    from unrolled.training import Trainer

    options, train_config = config.data, config.train
    data = options.training_images(data)
    strings = digit_strings_of(data)
    saved = saved_run_config(out, kind=KIND) if resume else None
    if saved:
        record = None if saved["split"] is None else SplitRecord(**saved["split"])
        model, network_options = saved["reader"], saved["model"]
    else:
        record = None if data.splits is not None else new_record(
            list(range(len(data.names))), lambda i: image_key(data, i), seed=options.split_seed,
            validation=options.validation, test=options.test)
        model, network_options = config.model.model, config.model.options(max(len(s) for s in strings))
    parts = split_images(data, record)
    if not parts["train"]:
        raise ValueError("no training images are left after the split; give more data or smaller fractions")
    size = (int(data.images.shape[1]), int(data.images.shape[2]))
    torch.manual_seed(train_config.seed)
    network = build(model, network_options, size)
    symbols = int(network_options["max_digits"]) + 1  # the digits of the longest string and <end>
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
                      "to look by REINFORCE alone, which is slow (see docs/benchmarks.md, Images)", stacklevel=2)
    batches = ReadData(pixels[parts["train"]], [strings[k] for k in parts["train"]], symbols=symbols,
                       batch_size=options.batch_size, seed=train_config.seed, centres=train_centres)
    held = [k for k in parts["validation"] if len(strings[k]) < symbols]
    evaluate = _evaluator(pixels[held], [strings[k] for k in held], symbols) if held else None
    extra = {"kind": KIND, "reader": model, "model": config_of(network), "image_size": list(size),
             "split": None if record is None else asdict(record), "batching": {"batch_size": options.batch_size},
             **config.checkpoint_entry(saved)}
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
    need("matplotlib", "the glimpse picture")
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


# ---------------------------------------------------------------------- the command line


def show(result: Reading) -> str:
    return f"{result.image}\t{result.digits}"


def finish(reader: Reader, inputs: list[str], results: list[Reading], options: ReaderPredictOptions) -> str:
    """Draw the first image's glimpses, when --path asks for them."""
    from unrolled.data.images import read_images

    if not options.path or not results or results[0].glimpses is None or not isinstance(reader.model, Glimpses):
        return ""
    image = read_images([Path(inputs[0])], size=reader.size)[0]
    plot_glimpses(image, torch.tensor(results[0].glimpses), reader.model.config, options.path,
                  title=results[0].digits)
    return f"glimpses of {inputs[0]}: {options.path}"


def read_eval(reader: Reader, path: str | None, options: ReaderEvalOptions) -> ImageCaptions:
    """The images of DATA (as they are) or --dataset, or the run's recorded part of them (--split)."""
    data = read_captions(path, options.dataset, images=options.images, size=None, what=WHAT, example=DATASET)
    return run_part(data, reader.split, options.split)


def report(metrics: dict[str, Any], reader: Reader, options: ReaderEvalOptions, run: Path) -> str:
    lines = [f"{metrics['images']} images, {options.split}: sequence error {100 * metrics['sequence_error']:.2f}% "
             f"({metrics['per_second']:.0f} images/s)"]
    for length, row in metrics["by_length"].items():
        lines.append(f"  {length} digit(s): {row['images']:5d} images, sequence error "
                     f"{100 * row['sequence_error']:.2f}%")
    return "\n".join(lines)


APP = Application(
    name="glimpse", summary="reading digit strings from images by recurrent glimpses (Ba et al. 2014)",
    config=ReaderConfig, fit=fit, predictor=Reader, predict_options=ReaderPredictOptions,
    eval_options=ReaderEvalOptions, show=show, read_eval=read_eval, report=report,
    finish=finish, aliases={"predict": ("run",)},
    input_help="image files (resized to the run's image size)", data_help=f"{WHAT} (default: --dataset)")
