"""Video frame labelling end to end: clips -> `FrameLabeller` (recurrent or per-frame CNN) -> a label per frame.

    clips file (unrolled.data.clips) --split (the data's own, else seeded)--> train / validation / test
    --FrameLabeller: CNN per frame, then the tagger's bidirectional Recurrent (or a linear layer)--> labels

A run is made from a `VideoRunConfig` (sections data, model, train): `fit(config,
out)`, or ``unrolled video train``. Its ``config.json`` holds the model config
(`VideoConfig`), the label names, whether training ever labelled a clip's first
frame, and the split (None when the data brought its own). `VideoLabeller` loads
a run and labels clips (`predict`: a `FrameLabels` per `Clip`; `label` for bare
frame arrays) or scores them (`evaluate`: per-frame accuracy beside chance).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from unrolled.apps.base import Application, EvalOptions, HeldOutEvalOptions, PredictOptions, Predictor, RunConfig
from unrolled.apps.common import data_path, evaluating
from unrolled.apps.results import FrameLabels
from unrolled.apps.split import PARTS, SplitRecord, as_record, new_record, split_parts
from unrolled.cells import CELLS
from unrolled.checkpoint import saved_run_config
from unrolled.data.canvases import NO_LABEL
from unrolled.data.clips import Clips
from unrolled.data.labelled import IGNORE_LABEL, LabelledData
from unrolled.imagefiles import clip_batches
from unrolled.models.video import KIND, MODELS, FrameLabeller, VideoConfig
from unrolled.options import option, require_fractions, require_positive
from unrolled.training import TrainConfig, TrainResult, epochs_recipe, to_device

COMMAND = "unrolled video train"
LABEL_BATCH = 64
UNLABELLED = "-"  # what `label` says for a first frame when training never labelled one


def as_float(frames: NDArray[np.uint8]) -> Tensor:
    """uint8 (..., H, W) -> float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).float().div_(255.0)


def label_tensor(labels: NDArray[np.int64]) -> Tensor:
    """int64 (B, T) with `NO_LABEL` -> the same with `IGNORE_LABEL`, which the loss skips."""
    return torch.from_numpy(np.where(labels == NO_LABEL, IGNORE_LABEL, labels))


@dataclass
class ClipBatch:
    """frames (B, T, H, W) float in [0, 1]; lengths (B,); labels (B, T), `IGNORE_LABEL` where a frame has none."""

    frames: Tensor
    lengths: Tensor
    labels: Tensor


class ClipData(LabelledData):
    """Shuffled training batches of clips, for the trainer (`LabelledData`'s order, resumable at any batch)."""

    def __init__(self, clips: Clips, *, batch_size: int, seed: int = 0) -> None:
        assert clips.labels is not None
        super().__init__([[0] * int(n) for n in clips.lengths], list(range(len(clips.lengths))),
                         batch_size=batch_size, seed=seed)
        self.clips = clips

    def batches(self, epoch: int, start: int) -> Any:
        for rows in self.batch_rows(epoch, start):
            yield clip_batch(self.clips, rows)

    def shard(self, rank: int, world: int) -> ClipData:
        rows = super().shard(rank, world).rows
        part = ClipData(self.clips, batch_size=self.batch_size, seed=self.seed)
        part.rows = rows
        return part


def clip_batch(clips: Clips, rows: list[int]) -> ClipBatch:
    """The clips at `rows` as one batch (they share the file's T)."""
    assert clips.labels is not None
    return ClipBatch(as_float(clips.frames[rows]), torch.from_numpy(clips.lengths[rows]),
                     label_tensor(clips.labels[rows]))


def clip_key(clips: Clips, i: int) -> str:
    """What identifies clip i for a recorded split: a digest of its frames and labels."""
    digest = hashlib.sha256(clips.frames[i].tobytes())
    if clips.labels is not None:
        digest.update(clips.labels[i].tobytes())
    return digest.hexdigest()


def split_clips(clips: Clips, record: SplitRecord | None) -> dict[str, list[int]]:
    """The clip indices of each part: the data's own split (record None) or the seeded one `record` describes."""
    if record is None:
        if clips.splits is None:
            raise ValueError("the clips have no split of their own; a seeded split is needed")
        return {part: [i for i, s in enumerate(clips.splits) if s == part] for part in PARTS}
    return split_parts(list(range(len(clips.lengths))), record, key=lambda i: clip_key(clips, i))


def relabel(clips: Clips, names: list[str]) -> NDArray[np.int64]:
    """The clips' labels (N, T) as ids of `names` (a run's), `NO_LABEL` kept; a one-line error for a label the
    run does not know."""
    if clips.labels is None:
        raise ValueError("the clips have no labels to score against")
    unknown = [n for k, n in enumerate(clips.label_names) if n not in names and np.any(clips.labels == k)]
    if unknown:
        raise ValueError(f"the clips use label {unknown[0]!r}, which the run does not know (it knows "
                         f"{', '.join(names)})")
    table = np.array([names.index(n) if n in names else NO_LABEL for n in clips.label_names] + [NO_LABEL])
    return table[clips.labels]  # index -1 (NO_LABEL) reads the last entry, NO_LABEL


# ---------------------------------------------------------------------- configuration


@dataclass
class VideoData:
    """Which clips file, and how its clips are split and batched."""

    file: str | None = field(default=None, metadata=option(
        "clips file: an .npz of frames uint8 (N, T, H, W) (grey, 0 black), labels (N, T) (each frame's index into "
        "label_names, -1 for none) and label_names (C,) strings; optional lengths (N,) and split (N,) of "
        "train/validation/test (or --dataset)", positional="?", metavar="DATA"))
    dataset: str | None = field(default=None, metadata=option(
        "a named dataset instead of a file (known: moving-digits: 10-frame clips of a digit moving on 40 x 40, "
        "each frame labelled up, down, left or right, the first -1)"))
    validation: float = field(default=0.1, metadata=option(
        "fraction of the clips for validation, without a split in the data"))
    test: float = field(default=0.1, metadata=option("fraction of the clips for testing, without a split in the data"))
    split_seed: int = field(default=0, metadata=option("seed of the clip split"))
    batch_size: int = field(default=32, metadata=option("clips per batch", aliases=("--batch",)))

    def __post_init__(self) -> None:
        require_fractions(self, "validation", "test")
        require_positive(self, "batch_size")


@dataclass
class VideoModel:
    """The `FrameLabeller`'s shape other than the frame size and label count (those come from the clips); names
    as in `VideoConfig`, whose defaults these are."""

    model: str = field(default=VideoConfig.model, metadata=option(
        "recurrent: CNN per frame then a bidirectional recurrent layer; cnn: the per-frame baseline, CNN then a "
        "linear layer", choices=MODELS))
    channels: int = field(default=VideoConfig.channels, metadata=option("the first convolution's channels"))
    features: int = field(default=VideoConfig.features, metadata=option("a frame's feature size"))
    cell: str = field(default=VideoConfig.cell, metadata=option("recurrent cell", choices=tuple(CELLS)))
    hidden: int = field(default=VideoConfig.hidden, metadata=option("units per direction"))
    layers: int = field(default=VideoConfig.layers, metadata=option("stacked recurrent layers"))
    dropout: float = field(default=VideoConfig.dropout, metadata=option("dropout"))


class VideoRunConfig(RunConfig):
    """Everything a frame-labelling run is made from; saved whole in its checkpoints."""

    data: VideoData = field(default_factory=VideoData)
    model: VideoModel = field(default_factory=VideoModel)
    train: TrainConfig = field(default_factory=lambda: epochs_recipe(lr=2e-3, schedule="cosine", early_stop=None))
    """The recipe: Adam at 2e-3, cosine-decayed over up to 10 epochs, evaluated each epoch."""


# ---------------------------------------------------------------------- the configured data


def read_data(data: VideoData) -> Clips:
    """The clips of the configured file or named dataset; not both, not none."""
    from unrolled.data.clips import read_clips

    return read_clips(data_path(data.file, data.dataset, what="a clips file (.npz)", known="moving-digits"))


# ---------------------------------------------------------------------- the trained labeller


@dataclass
class Clip:
    """A clip to label, by name: its frames uint8 (T, H, W), or None to read them from the folder of frame images
    (in name order) or the multi-frame image (GIF, APNG, TIFF) that `name` is, in grey at the run's frame size."""

    name: str
    frames: NDArray[np.uint8] | None = None


@dataclass
class VideoEvalOptions(HeldOutEvalOptions):
    dataset: str | None = field(default=None, metadata=option("a named dataset instead of a file (known: "
                                                               "moving-digits)"))


class VideoLabeller(Predictor[Clip, FrameLabels]):
    """A trained frame labeller with its label names: clips in, a label per frame out."""

    kind = KIND
    command = COMMAND
    what = "a video run"
    model: FrameLabeller

    def __init__(self, model: FrameLabeller, names: list[str], first_labelled: bool = True,
                 split: dict[str, Any] | None = None) -> None:
        self.model, self.names, self.first_labelled, self.split = model.eval(), names, first_labelled, split

    @classmethod
    def from_config(cls, saved: dict[str, Any]) -> VideoLabeller:
        return cls(FrameLabeller(VideoConfig(**saved["model"])), [str(n) for n in saved["label_names"]],
                   bool(saved.get("first_labelled", True)), saved.get("split"))

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the frames the model reads."""
        return self.model.config.height, self.model.config.width

    def label_ids(self, clips: list[NDArray[np.uint8]], *, batch_size: int = LABEL_BATCH) -> list[list[int]]:
        """Label ids of every frame of each clip (uint8 (T, H, W), any T), in batches of clips of equal length."""
        found: list[list[int]] = [[] for _ in clips]
        for rows in clip_batches(clips, self.size, batch_size):  # clips of one length each
            frames = as_float(np.stack([clips[k] for k in rows])).to(self.device)  # (B, T, H, W)
            lengths = torch.full((len(rows),), frames.shape[1], dtype=torch.long, device=self.device)
            ids = self.model.predict(frames, lengths).cpu()  # (B, T)
            for k, row in zip(rows, ids.tolist(), strict=True):
                found[k] = row
        return found

    def label(self, clips: list[NDArray[np.uint8]], *, batch_size: int = LABEL_BATCH) -> list[list[str]]:
        """The label name of every frame of each clip; `UNLABELLED` for a first frame when training labelled none."""
        named = [[self.names[i] for i in row] for row in self.label_ids(clips, batch_size=batch_size)]
        if not self.first_labelled:
            for row in named:
                row[0] = UNLABELLED
        return named

    def frames(self, clip: Clip) -> NDArray[np.uint8]:
        """The clip's frames: as given, or read from the file or folder it names at the run's frame size."""
        from unrolled.data.clips import read_clip

        if clip.frames is None:
            return read_clip(Path(clip.name), self.size)
        if clip.frames.ndim == 3 and tuple(clip.frames.shape[1:]) != self.size:
            raise ValueError(f"{clip.name}: frames are {clip.frames.shape[1]} x {clip.frames.shape[2]}, the run "
                             f"reads {self.size[0]} x {self.size[1]}")
        return clip.frames

    def predict(self, inputs: Sequence[Clip], options: PredictOptions | None = None) -> list[FrameLabels]:
        """The label of every frame of each clip."""
        batch_size = (options or PredictOptions()).batch_size
        frames = [self.frames(clip) for clip in inputs]
        return [FrameLabels(clip.name, labels)
                for clip, labels in zip(inputs, self.label(frames, batch_size=batch_size), strict=True)]

    def evaluate(self, data: Clips, options: EvalOptions | None = None) -> dict[str, Any]:
        """Per-frame accuracy over the labelled frames, chance beside it, and the accuracy of each label.

        Chance is the better of two guesses that ignore the frames: always the
        most frequent label of these frames, and a uniform guess (1 / C).
        """
        batch_size = (options or VideoEvalOptions()).batch_size
        truth = relabel(data, self.names)  # (N, T)
        found = self.label_ids([data.frames[k, : data.lengths[k]] for k in range(len(data.lengths))],
                               batch_size=batch_size)
        predicted = np.full(truth.shape, NO_LABEL, dtype=np.int64)
        for k, row in enumerate(found):
            predicted[k, : len(row)] = row
        steps = np.arange(truth.shape[1])[None, :] < data.lengths[:, None]  # (N, T): real frames
        scored = steps & (truth != NO_LABEL)
        if not scored.any():
            raise ValueError("no labelled frames to score")
        right = (predicted == truth) & scored
        counts = np.bincount(truth[scored], minlength=len(self.names))
        per_label = {name: float(right[truth == k].sum() / counts[k]) for k, name in enumerate(self.names)
                     if counts[k]}
        return {"clips": len(data.lengths), "frames": int(scored.sum()),
                "accuracy": float(right.sum() / scored.sum()),
                "chance": max(float(counts.max() / scored.sum()), 1.0 / len(self.names)),
                "most_frequent": self.names[int(counts.argmax())], "per_label": per_label}


# ---------------------------------------------------------------------- training


def validation_scores(model: FrameLabeller, clips: Clips) -> dict[str, float]:
    """Mean cross-entropy per labelled frame and per-frame accuracy, in eval mode, on the model's device."""
    total, correct, count = 0.0, 0.0, 0.0
    with evaluating(model) as device:
        for start in range(0, len(clips.lengths), LABEL_BATCH):
            rows = list(range(start, min(start + LABEL_BATCH, len(clips.lengths))))
            loss, metrics = model.loss(to_device(clip_batch(clips, rows), device))
            total += float(loss) * metrics["frames"]
            correct += metrics["accuracy"] * metrics["frames"]
            count += metrics["frames"]
    return {"loss": total / max(count, 1.0), "accuracy": correct / max(count, 1.0)}


def fit(config: VideoRunConfig, out: str | os.PathLike[str], *, resume: bool = False,
        clips: Clips | None = None) -> TrainResult:
    """Train a `FrameLabeller` as `config` says into the run folder `out` (or resume it).

    The clips are read from ``config.data`` unless given; they must be
    labelled. Their own split is used when they have one, else a seeded split
    of the configured fractions. On resume, the model config, label names and
    split come from the run's last checkpoint.
    """
    from unrolled.training import Trainer

    data_config, train_config = config.data, config.train
    if clips is None:
        clips = read_data(data_config)
    if clips.labels is None:
        raise ValueError("training needs labelled clips (labels and label_names)")
    saved = saved_run_config(out, kind=KIND) if resume else None
    if saved:
        record = None if saved["split"] is None else SplitRecord(**saved["split"])
        network_config = VideoConfig(**saved["model"])
        names = [str(n) for n in saved["label_names"]]
    else:
        record = None if clips.splits is not None else new_record(
            list(range(len(clips.lengths))), lambda i: clip_key(clips, i), seed=data_config.split_seed,
            validation=data_config.validation, test=data_config.test)
        network_config = VideoConfig(height=clips.size[0], width=clips.size[1], labels=len(clips.label_names),
                                     **asdict(config.model))
        names = list(clips.label_names)
    if clips.size != (network_config.height, network_config.width):
        raise ValueError(f"the run reads {network_config.height} x {network_config.width} frames, these are "
                         f"{clips.size[0]} x {clips.size[1]}")
    parts = split_clips(clips, record)
    labelled = Clips(clips.frames, relabel(clips, names), names, clips.lengths, clips.splits)
    train_part = labelled.select(parts["train"])
    assert train_part.labels is not None
    if not parts["train"] or not np.any(train_part.labels != NO_LABEL):
        raise ValueError("no labelled training frames are left after the split; give more clips or smaller fractions")
    torch.manual_seed(train_config.seed)
    network = FrameLabeller(network_config)
    batches = ClipData(train_part, batch_size=data_config.batch_size, seed=train_config.seed)
    held = labelled.select(parts["validation"])
    first_labelled = bool(np.any(train_part.labels[:, 0] != NO_LABEL))  # else `label` says UNLABELLED there
    extra = {"kind": KIND, "model": asdict(network_config), "label_names": names, "first_labelled": first_labelled,
             "split": None if record is None else asdict(record), "batching": {"batch_size": data_config.batch_size}}
    extra.update(config.checkpoint_entry(saved))
    trainer = Trainer(network, batches, train_config, out, evaluate=_evaluator(held) if parts["validation"] else None,
                      checkpoint_config=extra)
    return trainer.fit(resume=resume)


def _evaluator(clips: Clips) -> Any:
    def evaluate(module: nn.Module) -> dict[str, float]:
        inner = module.module if hasattr(module, "module") else module
        assert isinstance(inner, FrameLabeller)
        return validation_scores(inner, clips)

    return evaluate


# ---------------------------------------------------------------------- the command line


def read_inputs(paths: list[str], options: PredictOptions) -> list[Clip]:
    """The clips the CLIP arguments name: every clip of a clips file (named FILE#k), else the file or folder."""
    from unrolled.data.clips import read_clips

    if not paths:
        raise ValueError("no clips: give a clips file (.npz), a folder of frame images or an animated image")
    found: list[Clip] = []
    for given in paths:
        if Path(given).suffix.lower() != ".npz":
            found.append(Clip(given))
            continue
        clips = read_clips(Path(given), labelled=False)
        found.extend(Clip(f"{given}#{k}", clips.frames[k, : clips.lengths[k]]) for k in range(len(clips.lengths)))
    return found


def show(result: FrameLabels) -> str:
    return f"{result.clip}\t{' '.join(result.labels)}"


def read_eval(labeller: VideoLabeller, path: str | None, options: VideoEvalOptions) -> Clips:
    """The clips of DATA (or --dataset) at the run's frame size, or the run's recorded part of them (--split)."""
    clips = read_data(VideoData(file=path, dataset=options.dataset))
    if clips.size != labeller.size:
        raise ValueError(f"the clips' frames are {clips.size[0]} x {clips.size[1]}, the run reads "
                         f"{labeller.size[0]} x {labeller.size[1]}")
    if options.split == "all":
        return clips
    record = as_record(labeller.split)
    indices = split_clips(clips, record)[options.split]
    if not indices:
        raise ValueError(f"the run's {options.split} part is empty")
    return clips.select(indices)


def report(metrics: dict[str, Any], labeller: VideoLabeller, options: VideoEvalOptions, run: Path) -> str:
    lines = [f"{metrics['clips']} clips, {metrics['frames']} labelled frames ({options.split}): per-frame accuracy "
             f"{100 * metrics['accuracy']:.2f}%, chance {100 * metrics['chance']:.2f}%"]
    lines += [f"  {name:<12} {100 * accuracy:6.2f}%" for name, accuracy in metrics["per_label"].items()]
    return "\n".join(lines)


APP = Application(
    name="video", summary="video frame labelling (a label per frame)",
    config=VideoRunConfig, fit=fit, predictor=VideoLabeller, predict_options=PredictOptions,
    eval_options=VideoEvalOptions, read_inputs=read_inputs, show=show, read_eval=read_eval, report=report,
    aliases={"predict": ("run",)}, loss_unit=" nats/frame",
    input_help="clips: a clips file (.npz; every clip in it, named FILE#k), a folder of frame images (read in name "
               "order), or one multi-frame image (GIF, APNG, TIFF); images are read in grey and resized to the "
               "run's frame size",
    data_help="clips file (.npz) (default: --dataset)")
