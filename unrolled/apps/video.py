"""Video frame labelling end to end: clips -> `FrameLabeller` (recurrent or per-frame CNN) -> a label per frame.

    clips file (unrolled.data.clips) --split (the data's own, else seeded)--> train / validation / test
    --FrameLabeller: CNN per frame, then the tagger's bidirectional Recurrent (or a linear layer)--> labels

A run's ``config.json`` holds the model config (`VideoConfig`), the label
names, whether training ever labelled a clip's first frame, and the split
(None when the data brought its own). `VideoLabeller` loads a run and labels
clips (`label`) or scores them (`evaluate`: per-frame accuracy beside chance).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from unrolled.apps.split import PARTS, SplitRecord, new_record, split_parts
from unrolled.checkpoint import CheckpointError, load_checkpoint, load_model_state, resolve_checkpoint, saved_run_config
from unrolled.data.canvases import NO_LABEL
from unrolled.data.clips import Clips
from unrolled.data.labelled import IGNORE_LABEL, LabelledData
from unrolled.models.video import KIND, FrameLabeller, VideoConfig

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


class VideoLabeller:
    """A trained frame labeller with its label names: frames in, a label per frame out."""

    def __init__(self, model: FrameLabeller, names: list[str], first_labelled: bool = True,
                 split: dict[str, Any] | None = None) -> None:
        self.model, self.names, self.first_labelled, self.split = model.eval(), names, first_labelled, split

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VideoLabeller:
        """From a run folder (best checkpoint, else last) or a checkpoint folder."""
        checkpoint = load_checkpoint(resolve_checkpoint(path, command=COMMAND), kind=KIND)
        saved = checkpoint.config
        try:
            model = FrameLabeller(VideoConfig(**saved["model"]))
            names = [str(n) for n in saved["label_names"]]
        except (KeyError, TypeError) as error:
            raise CheckpointError(f"{path}: config.json lacks what a video run needs ({error})") from None
        load_model_state(model, checkpoint.model_state, path)
        return cls(model, names, bool(saved.get("first_labelled", True)), saved.get("split"))

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the frames the model reads."""
        return self.model.config.height, self.model.config.width

    def predict(self, clips: list[NDArray[np.uint8]], *, batch_size: int = LABEL_BATCH) -> list[list[int]]:
        """Label ids of every frame of each clip (uint8 (T, H, W), any T), in batches of clips of equal length."""
        for k, clip in enumerate(clips):
            if clip.ndim != 3 or tuple(clip.shape[1:]) != self.size or clip.dtype != np.uint8 or len(clip) == 0:
                raise ValueError(f"clip {k}: frames must be uint8 (T, {self.size[0]}, {self.size[1]}) with T >= 1, "
                                 f"not {clip.dtype} {clip.shape}")
        found: list[list[int]] = [[] for _ in clips]
        by_length: dict[int, list[int]] = {}
        for k, clip in enumerate(clips):
            by_length.setdefault(len(clip), []).append(k)
        for length, members in by_length.items():
            for start in range(0, len(members), batch_size):
                rows = members[start : start + batch_size]
                frames = as_float(np.stack([clips[k] for k in rows]))  # (B, T, H, W)
                ids = self.model.predict(frames, torch.full((len(rows),), length, dtype=torch.long))  # (B, T)
                for k, row in zip(rows, ids.tolist(), strict=True):
                    found[k] = row
        return found

    def label(self, clips: list[NDArray[np.uint8]]) -> list[list[str]]:
        """The label name of every frame of each clip; `UNLABELLED` for a first frame when training labelled none."""
        named = [[self.names[i] for i in row] for row in self.predict(clips)]
        if not self.first_labelled:
            for row in named:
                row[0] = UNLABELLED
        return named

    def evaluate(self, clips: Clips) -> dict[str, Any]:
        """Per-frame accuracy over the labelled frames, chance beside it, and the accuracy of each label.

        Chance is the better of two guesses that ignore the frames: always the
        most frequent label of these frames, and a uniform guess (1 / C).
        """
        truth = relabel(clips, self.names)  # (N, T)
        found = self.predict([clips.frames[k, : clips.lengths[k]] for k in range(len(clips.lengths))])
        predicted = np.full(truth.shape, NO_LABEL, dtype=np.int64)
        for k, row in enumerate(found):
            predicted[k, : len(row)] = row
        steps = np.arange(truth.shape[1])[None, :] < clips.lengths[:, None]  # (N, T): real frames
        scored = steps & (truth != NO_LABEL)
        if not scored.any():
            raise ValueError("no labelled frames to score")
        right = (predicted == truth) & scored
        counts = np.bincount(truth[scored], minlength=len(self.names))
        per_label = {name: float(right[truth == k].sum() / counts[k]) for k, name in enumerate(self.names)
                     if counts[k]}
        return {"clips": len(clips.lengths), "frames": int(scored.sum()),
                "accuracy": float(right.sum() / scored.sum()),
                "chance": max(float(counts.max() / scored.sum()), 1.0 / len(self.names)),
                "most_frequent": self.names[int(counts.argmax())], "per_label": per_label}


def validation_scores(model: FrameLabeller, clips: Clips) -> dict[str, float]:
    """Mean cross-entropy per labelled frame and per-frame accuracy, in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, correct, count = 0.0, 0.0, 0.0
    try:
        with torch.no_grad():
            for start in range(0, len(clips.lengths), LABEL_BATCH):
                rows = list(range(start, min(start + LABEL_BATCH, len(clips.lengths))))
                batch = clip_batch(clips, rows)
                loss, metrics = model.loss(ClipBatch(batch.frames.to(device), batch.lengths, batch.labels.to(device)))
                total += float(loss) * metrics["frames"]
                correct += metrics["accuracy"] * metrics["frames"]
                count += metrics["frames"]
    finally:
        model.train(was_training)
    return {"loss": total / max(count, 1.0), "accuracy": correct / max(count, 1.0)}


def fit(clips: Clips, out: str | os.PathLike[str], *, model: str = "recurrent",
        model_options: dict[str, Any] | None = None, train: Any = None, validation: float = 0.1, test: float = 0.1,
        split_seed: int = 0, batch_size: int = 32, eval_every: int | None = None, resume: bool = False) -> Any:
    """Train a `FrameLabeller` on labelled `clips` into the run folder `out` (or resume it); returns the `TrainResult`.

    `model` is "recurrent" or "cnn"; `model_options` are other `VideoConfig`
    fields (the frame size and label count come from the clips). The clips'
    own split is used when they have one, else a seeded split of `validation`
    and `test` fractions. `eval_every` None evaluates once per epoch.
    """
    from unrolled.training import TrainConfig, Trainer

    if clips.labels is None:
        raise ValueError("training needs labelled clips (labels and label_names)")
    train_config = train if train is not None else TrainConfig(max_epochs=10)
    saved = saved_run_config(out, kind=KIND) if resume else None
    if saved:
        record = None if saved["split"] is None else SplitRecord(**saved["split"])
        config = VideoConfig(**saved["model"])
        names = [str(n) for n in saved["label_names"]]
    else:
        record = None if clips.splits is not None else new_record(
            list(range(len(clips.lengths))), lambda i: clip_key(clips, i), seed=split_seed, validation=validation,
            test=test)
        config = VideoConfig(height=clips.size[0], width=clips.size[1], labels=len(clips.label_names),
                             **{"model": model, **(model_options or {})})
        names = list(clips.label_names)
    if clips.size != (config.height, config.width):
        raise ValueError(f"the run reads {config.height} x {config.width} frames, these are "
                         f"{clips.size[0]} x {clips.size[1]}")
    parts = split_clips(clips, record)
    labelled = Clips(clips.frames, relabel(clips, names), names, clips.lengths, clips.splits)
    train_part = labelled.select(parts["train"])
    assert train_part.labels is not None
    if not parts["train"] or not np.any(train_part.labels != NO_LABEL):
        raise ValueError("no labelled training frames are left after the split; give more clips or smaller fractions")
    torch.manual_seed(train_config.seed)
    network = FrameLabeller(config)
    batches = ClipData(train_part, batch_size=batch_size, seed=train_config.seed)
    if eval_every is None:
        train_config = dataclasses.replace(train_config, eval_every=len(batches))
    held = labelled.select(parts["validation"])
    first_labelled = bool(np.any(train_part.labels[:, 0] != NO_LABEL))  # else `label` says UNLABELLED there
    extra = {"kind": KIND, "model": asdict(config), "label_names": names, "first_labelled": first_labelled,
             "split": None if record is None else asdict(record), "batching": {"batch_size": batch_size}}
    trainer = Trainer(network, batches, train_config, out, evaluate=_evaluator(held) if parts["validation"] else None,
                      checkpoint_config=extra)
    return trainer.fit(resume=resume)


def _evaluator(clips: Clips) -> Any:
    def evaluate(module: nn.Module) -> dict[str, float]:
        inner = module.module if hasattr(module, "module") else module
        assert isinstance(inner, FrameLabeller)
        return validation_scores(inner, clips)

    return evaluate
