"""Image captioning as a task: images and captions in, a trained `Captioner` run folder out, captions back.

A run folder's ``config.json`` holds the model config, the caption side (word
or character tokens and the vocabulary, `unrolled.apps.seq2seq.Side`), the
image size, and the split: the data's own (an image's ``split`` in COCO-style
JSON) or a seeded split of the images. Every caption of an image is a training
example; evaluation compares each output with all captions of its image:
exact match (sequence error), BLEU and chrF (sacrebleu).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from unrolled import decoding
from unrolled.apps.seq2seq import Side
from unrolled.apps.split import SplitRecord, new_record, split_parts
from unrolled.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    resolve_checkpoint,
    saved_run_config,
)
from unrolled.data.images import ImageCaptions
from unrolled.data.labelled import LabelledData
from unrolled.data.pairs import pad_ids
from unrolled.metrics import bleu_chrf, bleu_orders, sequence_errors
from unrolled.models.captioner import BOS_ID, EOS_ID, KIND, Captioner, CaptionerConfig

COMMAND = "unrolled caption train"
PARTS = ("train", "validation", "test")
DEFAULT_MAX_LEN = 40
CAPTION_BATCH = 64
VALIDATION_DECODES = 500  # images captioned greedily at each evaluation for the sequence error


@dataclass
class CaptionBatch:
    """B images and one caption each.

    images (B, 3, H, W) float in [0, 1]; target (B, T+1) int64 ``<s>`` y_1 ... y_n ``</s>`` padded with 0.
    """

    images: Tensor
    target: Tensor


def image_tensor(images: np.ndarray) -> Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


class CaptionData(LabelledData):
    """Shuffled training batches of (image, caption) examples, for the trainer (`LabelledData`'s order)."""

    def __init__(self, images: np.ndarray, image_of: list[int], captions: list[list[int]], *, batch_size: int,
                 seed: int = 0) -> None:
        super().__init__(captions, image_of, batch_size=batch_size, seed=seed)
        self.images, self.image_of, self.captions = images, image_of, captions

    def batches(self, epoch: int, start: int) -> Any:
        for rows in self.batch_rows(epoch, start):
            yield CaptionBatch(image_tensor(self.images[[self.image_of[i] for i in rows]]),
                               pad_ids([self.captions[i] for i in rows]))

    def shard(self, rank: int, world: int) -> CaptionData:
        rows = super().shard(rank, world).rows
        part = CaptionData(self.images, self.image_of, self.captions, batch_size=self.batch_size, seed=self.seed)
        part.rows = rows
        return part


def image_key(data: ImageCaptions, i: int) -> str:
    return data.names[i] + "\t" + "\t".join(data.captions[i])


def split_images(data: ImageCaptions, record: SplitRecord | None) -> dict[str, list[int]]:
    """The image indices of each part: the data's own split (record None) or the seeded one `record` describes."""
    if record is None:
        if data.splits is None:
            raise ValueError("the data has no split of its own; a seeded split is needed")
        unknown = sorted(set(data.splits) - set(PARTS))
        if unknown:
            raise ValueError(f"unknown split name(s) {', '.join(map(repr, unknown))}: use train, validation, test")
        return {part: [i for i, s in enumerate(data.splits) if s == part] for part in PARTS}
    indices = list(range(len(data.names)))
    return split_parts(indices, record, key=lambda i: image_key(data, i))


@dataclass
class Caption:
    """One caption of one image: its text, tokens and scores, and optionally its attention.

    attention: (tokens + finished, h', w') weights over the encoder's grid, when asked and the model attends.
    """

    text: str
    tokens: list[str]
    score: float
    normalised: float
    finished: bool
    attention: Tensor | None = dataclasses.field(default=None, repr=False)


class ImageCaptioner:
    """A trained captioner with its caption side and image size: images in, `Caption` lists out."""

    def __init__(self, model: Captioner, side: Side, size: tuple[int, int], split: dict[str, Any] | None) -> None:
        self.model, self.side, self.size, self.split = model.eval(), side, size, split

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ImageCaptioner:
        """From a run folder (best checkpoint, else last) or a checkpoint folder."""
        checkpoint = load_checkpoint(resolve_checkpoint(path, command=COMMAND), kind=KIND)
        saved = checkpoint.config
        try:
            model = Captioner(CaptionerConfig(**saved["model"]))
            side = Side.from_json(saved["captions"])
            size = (int(saved["image_size"][0]), int(saved["image_size"][1]))
        except (KeyError, TypeError, IndexError) as error:
            raise CheckpointError(f"{path}: config.json lacks what a captioner needs ({error})") from None
        load_model_state(model, checkpoint.model_state, path)
        return cls(model, side, size, saved.get("split"))

    def grid(self) -> tuple[int, int]:
        """(h', w'): the encoder's grid for this run's image size."""
        h, w = self.size
        for _ in range(self.model.config.stages):
            h, w = (h + 1) // 2, (w + 1) // 2
        return h, w

    def check_images(self, images: np.ndarray) -> None:
        if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        if tuple(images.shape[1:3]) != self.size:
            raise ValueError(f"images must be {self.size[0]} x {self.size[1]} (the run's image size), got "
                             f"{images.shape[1]} x {images.shape[2]}")

    @torch.inference_mode()
    def caption(self, images: np.ndarray, *, beam: int = 5, n_best: int = 1, length_penalty: float = 0.0,
                max_length: int | None = None, batch_size: int = CAPTION_BATCH,
                attention: bool = False) -> list[list[Caption]]:
        """The n_best captions of each image (uint8 (N, H, W, 3) at the run's size), best first; beam 1 is greedy."""
        if beam < 1:
            raise ValueError(f"the beam size must be at least 1, got {beam}")
        if not 1 <= n_best <= beam:
            raise ValueError(f"n_best must be in 1..beam ({beam}), got {n_best}")
        if batch_size < 1:
            raise ValueError(f"the batch size must be positive, got {batch_size}")
        self.check_images(images)
        limit = max_length if max_length is not None else self.side.max_len + 1
        device = next(self.model.parameters()).device
        weights = (lambda state: state.attention) if attention and self.model.config.attention == "soft" else None
        grid = self.grid()
        results: list[list[Caption]] = []
        for start in range(0, len(images), batch_size):
            log_probs, state = self.model.prime(image_tensor(images[start : start + batch_size]).to(device))
            found = decoding.beam_search(self.model, log_probs, state, beam_size=beam, max_length=limit,
                                         end_token=EOS_ID, length_penalty=length_penalty, n_best=n_best,
                                         weights=weights)
            for hypotheses in found:
                results.append([])
                for h in hypotheses:
                    tokens = self.side.decode(h.tokens)
                    maps = None if h.weights is None else h.weights.float().reshape(-1, *grid).clone()
                    results[-1].append(Caption(self.side.text(tokens), tokens, h.score, h.normalised, h.finished,
                                               maps))
        return results

    def evaluate(self, data: ImageCaptions, indices: list[int], *, beams: tuple[int, ...] = (1, 5),
                 batch_size: int = CAPTION_BATCH) -> dict[str, Any]:
        """Scores of each beam size on images `indices` of `data`: sequence_error (the output equals none of the
        image's captions; 1 - exact match), token_error, BLEU, BLEU-1..4 and chrF (sacrebleu, all captions of an
        image as its references), images per second."""
        if not indices:
            raise ValueError("no images to evaluate")
        references = [data.captions[i] for i in indices]
        token_refs = [[self.side.tokens(t)[: self.side.max_len] for t in group] for group in references]
        report: dict[str, Any] = {"images": len(indices), "captions": sum(len(r) for r in references)}
        for beam in beams:
            started = time.perf_counter()
            outputs = [best[0] for best in self.caption(data.images[indices], beam=beam, batch_size=batch_size)]
            seconds = time.perf_counter() - started
            scores = sequence_errors([o.tokens for o in outputs], token_refs)
            scores.update(bleu_chrf([o.text for o in outputs], references))
            scores.update(bleu_orders([o.text for o in outputs], references))
            scores["per_second"] = len(indices) / seconds if seconds > 0 else math.inf
            report[f"beam{beam}"] = scores
        return report


def encode_captions(data: ImageCaptions, indices: list[int], side: Side) -> tuple[list[int], list[list[int]], int]:
    """(image of each example, caption ids ``<s>`` ... ``</s>``) of the captions that fit max_len; how many do not."""
    image_of, captions, dropped = [], [], 0
    for i in indices:
        for text in data.captions[i]:
            ids, cut, _ = side.encode(text)
            if cut:
                dropped += 1
                continue
            image_of.append(i)
            captions.append([BOS_ID, *ids, EOS_ID])
    return image_of, captions, dropped


def validation_scores(model: Captioner, data: ImageCaptions, image_of: list[int], captions: list[list[int]],
                      decodes: list[tuple[int, list[list[int]]]]) -> dict[str, float]:
    """Mean negative log-likelihood per caption token, token accuracy, and the greedy sequence error over up to
    `VALIDATION_DECODES` images."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, correct, count, wrong = 0.0, 0.0, 0.0, 0
    try:
        with torch.no_grad():
            for start in range(0, len(captions), CAPTION_BATCH):
                rows = range(start, min(start + CAPTION_BATCH, len(captions)))
                batch = CaptionBatch(image_tensor(data.images[[image_of[r] for r in rows]]).to(device),
                                     pad_ids([captions[r] for r in rows]).to(device))
                _, metrics = model.loss(batch)
                total += metrics["nll"] * metrics["tokens"]
                correct += metrics["accuracy"] * metrics["tokens"]
                count += metrics["tokens"]
            for start in range(0, len(decodes), CAPTION_BATCH):
                chunk = decodes[start : start + CAPTION_BATCH]
                log_probs, state = model.prime(image_tensor(data.images[[i for i, _ in chunk]]).to(device))
                longest = max(len(r) for _, refs in chunk for r in refs)
                found = decoding.greedy(model, log_probs, state, length=longest, end_token=EOS_ID)
                for row, (_, refs) in zip(found.tolist(), chunk, strict=True):
                    output = row[: row.index(EOS_ID)] if EOS_ID in row else row
                    wrong += output not in [r[1:-1] for r in refs]
    finally:
        model.train(was_training)
    scores = {"loss": total / count, "accuracy": correct / count}
    if decodes:
        scores["sequence_error"] = wrong / len(decodes)
    return scores


def fit(data: ImageCaptions, out: str | os.PathLike[str], *, model_options: dict[str, Any] | None = None,
        train: Any = None, tokens: str = "word", min_freq: int = 1, max_len: int = DEFAULT_MAX_LEN,
        validation: float = 0.05, test: float = 0.05, split_seed: int = 0, batch_size: int = 64,
        eval_every: int | None = None, encoder_weights: str | os.PathLike[str] | None = None,
        resume: bool = False) -> Any:
    """Train a `Captioner` on `data` into the run folder `out` (or resume it); returns the `TrainResult`.

    `model_options` are `CaptionerConfig` fields other than the vocabulary.
    The data's own split is used when it has one, else a seeded split of the
    images (`validation`, `test` fractions). `encoder_weights`: a state dict
    (torch.save or safetensors) for the CNN encoder, e.g. one pretrained
    elsewhere (with ``freeze_encoder`` it stays as it is). `eval_every` None
    evaluates once per epoch.
    """
    from unrolled.training import TrainConfig, Trainer

    if len(data.names) == 0:
        raise ValueError("no images to train on")
    train_config = train if train is not None else TrainConfig(max_epochs=10)
    saved = saved_run_config(out, kind=KIND) if resume else None
    if saved:
        record = None if saved["split"] is None else SplitRecord(**saved["split"])
    elif data.splits is not None:
        record = None
    else:
        record = new_record(list(range(len(data.names))), lambda i: image_key(data, i), seed=split_seed,
                            validation=validation, test=test)
    parts = split_images(data, record)
    if not parts["train"]:
        raise ValueError("no training images are left after the split; give more data or smaller fractions")
    size = (int(data.images.shape[1]), int(data.images.shape[2]))
    if saved:
        side = Side.from_json(saved["captions"])
        config = CaptionerConfig(**saved["model"])
    else:
        side = Side.build([t for i in parts["train"] for t in data.captions[i]], tokens, max_len=max_len,
                          min_freq=min_freq, target=True)
        config = CaptionerConfig(vocab=len(side.vocabulary), **(model_options or {}))
    image_of, captions, long_captions = encode_captions(data, parts["train"], side)
    if long_captions:
        warnings.warn(f"{long_captions} training caption(s) longer than {side.max_len} tokens were left out "
                      "(raise --max-len to keep them)", stacklevel=2)
    if not captions:
        raise ValueError(f"every training caption is longer than {side.max_len} tokens; raise --max-len")
    torch.manual_seed(train_config.seed)
    network = Captioner(config)
    if encoder_weights is not None and not saved:
        load_encoder(network, encoder_weights)
    batches = CaptionData(data.images, image_of, captions, batch_size=batch_size, seed=train_config.seed)
    if eval_every is None:
        train_config = dataclasses.replace(train_config, eval_every=len(batches))
    extra = {"kind": KIND, "model": asdict(config), "captions": side.to_json(), "image_size": list(size),
             "split": None if record is None else asdict(record), "batching": {"batch_size": batch_size}}
    trainer = Trainer(network, batches, train_config, out, evaluate=_evaluator(data, parts["validation"], side),
                      checkpoint_config=extra)
    return trainer.fit(resume=resume)


def load_encoder(model: Captioner, path: str | os.PathLike[str]) -> None:
    """Load a CNN encoder's state dict (torch.save'd or .safetensors) into `model.encoder`; one-line errors."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"no encoder weights at {path}")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file is the user's to fix
        raise ValueError(f"{path} is not a readable state dict ({type(error).__name__}); save one with "
                         "torch.save(encoder.state_dict(), path)") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    try:
        model.encoder.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise ValueError(f"{path} does not fit this encoder (--channels {model.config.channels} --stages "
                         f"{model.config.stages}): {' '.join(first[1:2]).strip() or first[0]}") from None


def _evaluator(data: ImageCaptions, indices: list[int], side: Side) -> Any:
    if not indices:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image_of, captions, _ = encode_captions(data, indices, side)
        decodes = [(i, [[BOS_ID, *side.encode(t)[0], EOS_ID] for t in data.captions[i]])
                   for i in indices[:VALIDATION_DECODES]]
    if not captions:
        return None

    def evaluate(module: nn.Module) -> dict[str, float]:
        model = module.module if hasattr(module, "module") else module
        assert isinstance(model, Captioner)
        return validation_scores(model, data, image_of, captions, decodes)

    return evaluate


def plot_attention_strip(image: np.ndarray, caption: Caption, path: str | os.PathLike[str]) -> None:
    """Write one PNG strip: the image, then per generated word (and ``</s>``) the attention weights upsampled
    over the image (brighter where the model looked), the word above each panel."""
    if caption.attention is None:
        raise ValueError("this caption carries no attention weights (caption with attention=True and a model "
                         "with soft attention)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps = caption.attention.unsqueeze(1)  # (T, 1, h', w')
    height, width = image.shape[:2]
    upsampled = torch.nn.functional.interpolate(maps, size=(height, width), mode="bilinear", align_corners=False)
    words = [*caption.tokens, "</s>"][: maps.shape[0]]
    panels = 1 + len(words)
    scale = 1.6 / max(height, width) * max(width, height)
    figure, axes = plt.subplots(1, panels, figsize=(panels * scale * width / max(height, width) + 0.2,
                                                    scale * height / max(height, width) + 0.5), squeeze=False)
    axes[0, 0].imshow(image)
    axes[0, 0].set_title("image", fontsize=8)
    for k, word in enumerate(words):
        panel = axes[0, k + 1]
        panel.imshow(image)
        weight = upsampled[k, 0].numpy()
        panel.imshow(weight / max(float(weight.max()), 1e-12), cmap="gray", alpha=0.6, vmin=0.0, vmax=1.0)
        panel.set_title(word, fontsize=8)
    for panel in axes[0]:
        panel.axis("off")
    figure.tight_layout()
    figure.savefig(os.fspath(path), dpi=100)
    plt.close(figure)
