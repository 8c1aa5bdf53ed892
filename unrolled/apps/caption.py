"""Image captioning as an application: images and captions in, a trained `Captioner` run folder out, captions back.

A run folder's ``config.json`` holds the model config, the caption side (word
or character tokens and the vocabulary, `unrolled.apps.seq2seq.Side`), the
image size, and the split: the data's own (an image's ``split`` in COCO-style
JSON) or a seeded split of the images. Every caption of an image is a training
example; evaluation compares each output with all captions of its image:
exact match (sequence error), BLEU and chrF (sacrebleu).
"""

from __future__ import annotations

import math
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

from unrolled import decoding
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
from unrolled.apps.results import Caption, CaptionedImage
from unrolled.apps.sides import Side, left_out_long
from unrolled.apps.split import new_record
from unrolled.checkpoint import saved_run_config
from unrolled.data.images import ImageCaptions
from unrolled.data.labelled import LabelledData
from unrolled.data.pairs import pad_ids
from unrolled.extras import need
from unrolled.metrics import bleu_chrf, bleu_orders, sequence_errors
from unrolled.models.captioner import ATTENTIONS, BOS_ID, EOS_ID, KIND, Captioner, CaptionerConfig
from unrolled.options import option, require_positive
from unrolled.training import TrainConfig, TrainResult, epochs_recipe, to_device

COMMAND = "unrolled caption train"
DATASETS = "scenes, digit-strings, emoji"
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


class CaptionBatches(LabelledData):
    """Shuffled training batches of (image, caption) examples, for the trainer (`LabelledData`'s order)."""

    def __init__(self, images: np.ndarray, image_of: list[int], captions: list[list[int]], *, batch_size: int,
                 seed: int = 0) -> None:
        super().__init__(captions, image_of, batch_size=batch_size, seed=seed)
        self.images, self.image_of, self.captions = images, image_of, captions

    def batches(self, epoch: int, start: int) -> Any:
        for rows in self.batch_rows(epoch, start):
            yield CaptionBatch(image_tensor(self.images[[self.image_of[i] for i in rows]]),
                               pad_ids([self.captions[i] for i in rows]))

    def shard(self, rank: int, world: int) -> CaptionBatches:
        rows = super().shard(rank, world).rows
        part = CaptionBatches(self.images, self.image_of, self.captions, batch_size=self.batch_size, seed=self.seed)
        part.rows = rows
        return part


# ---------------------------------------------------------------------- configuration


@dataclass
class CaptionData(ImageData):
    """The images and captions, and how captions become token ids."""

    dataset: str | None = field(default=None, metadata=option(
        f"a named dataset instead of a file (known: {DATASETS})"))
    batch_size: int = field(default=64, metadata=option("captions per batch", aliases=("--batch",)))
    image_size: int = field(default=64, metadata=option(
        "user images are resized to this square size (named datasets keep theirs)", metavar="PIXELS"))
    tokens: str = field(default="word", metadata=option("caption tokens", choices=("word", "char")))
    min_freq: int = field(default=1, metadata=option("words seen fewer times in training become <unk>"))
    max_len: int = field(default=DEFAULT_MAX_LEN, metadata=option(
        "caption tokens; longer captions are left out of training"))

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, "image_size", "min_freq", "max_len")

    def read(self) -> ImageCaptions:
        return read_captions(self.file, self.dataset, images=self.images, size=(self.image_size, self.image_size),
                             what="COCO-style caption JSON", example="scenes")


@dataclass
class CaptionModel:
    """The network (`CaptionerConfig` but the vocabulary), and where its CNN starts from."""

    attention: str = field(default=CaptionerConfig.attention, metadata=option(
        "soft: attend over the image grid at every word (Xu et al. 2015); none: the image is the first input and "
        "the only link", choices=ATTENTIONS))
    channels: int = field(default=CaptionerConfig.channels, metadata=option(
        "CNN channels of the first stage, doubled at each next one"))
    stages: int = field(default=CaptionerConfig.stages, metadata=option("CNN stages; each halves the grid"))
    embedding: int = field(default=CaptionerConfig.embedding, metadata=option("word embedding size"))
    hidden: int = field(default=CaptionerConfig.hidden, metadata=option("LSTM units"))
    attention_units: int | None = field(default=CaptionerConfig.attention_units, metadata=option(
        "units of the additive attention; none: --hidden"))
    dropout: float = field(default=CaptionerConfig.dropout, metadata=option("dropout before the output"))
    doubly_stochastic: float = field(default=CaptionerConfig.doubly_stochastic, metadata=option(
        "weight of the attention regulariser mean_i (1 - sum_t alpha_ti)^2", metavar="LAMBDA"))
    freeze_encoder: bool = field(default=CaptionerConfig.freeze_encoder, metadata=option(
        "keep the CNN as it is (no training)"))
    encoder_weights: str | None = field(default=None, metadata=option(
        "start the CNN from this state dict (torch.save or .safetensors) of the same shape", metavar="FILE"))

    def network(self, vocab: int) -> CaptionerConfig:
        return CaptionerConfig(vocab=vocab, **{k: v for k, v in asdict(self).items() if k != "encoder_weights"})


class CaptionConfig(RunConfig):
    """Everything a captioning run is made from; saved whole in its checkpoints."""

    data: CaptionData = field(default_factory=CaptionData)
    model: CaptionModel = field(default_factory=CaptionModel)
    train: TrainConfig = field(default_factory=lambda: epochs_recipe(schedule="cosine", early_stop=None))
    """The recipe: Adam at 1e-3 on a cosine schedule for up to 10 epochs, evaluated each epoch."""


# ---------------------------------------------------------------------- the trained captioner


@dataclass
class Decoding:
    """How captions are searched for: what predict and eval share."""

    beam: int = field(default=5, metadata=option("beam size; 1 is greedy"))
    length_penalty: float = field(default=0.0, metadata=option(
        "GNMT length penalty alpha; 0 ranks by total log-probability", metavar="ALPHA"))

    def __post_init__(self) -> None:
        require_positive(self, "beam")


@dataclass
class CaptionPredictOptions(PredictOptions, Decoding):
    batch_size: int = field(default=CAPTION_BATCH, metadata=option("images decoded at once", aliases=("--batch",)))
    n_best: int = field(default=1, metadata=option("captions per image"))
    max_len: int | None = field(default=None, metadata=option(
        "most tokens generated; none: the run's --max-len, and </s>", metavar="N"))
    attention_map: str | None = field(default=None, metadata=option(
        "draw the first image's attention, one panel per word, into this PNG strip", metavar="PNG"))

    def __post_init__(self) -> None:
        PredictOptions.__post_init__(self)
        Decoding.__post_init__(self)
        if self.n_best < 1 or (self.max_len is not None and self.max_len < 1):
            raise ValueError("--n-best and --max-len must be positive integers")
        if self.n_best > self.beam:
            raise ValueError(f"--n-best {self.n_best} needs a beam at least as wide (--beam {self.beam})")


@dataclass
class CaptionEvalOptions(ImageEvalOptions, Decoding):
    dataset: str | None = field(default=None, metadata=option(
        f"a named dataset instead of a file (known: {DATASETS})"))

    def __post_init__(self) -> None:
        ImageEvalOptions.__post_init__(self)
        Decoding.__post_init__(self)


class ImageCaptioner(Predictor[str, CaptionedImage]):
    """A trained captioner with its caption side and image size: images in, `Caption` lists out."""

    kind = KIND
    command = COMMAND
    what = "a captioner"
    model: Captioner

    def __init__(self, model: Captioner, side: Side, size: tuple[int, int], split: dict[str, Any] | None) -> None:
        self.model, self.side, self.size, self.split = model.eval(), side, size, split

    @classmethod
    def from_config(cls, saved: dict[str, Any]) -> ImageCaptioner:
        size = (int(saved["image_size"][0]), int(saved["image_size"][1]))
        model = Captioner(CaptionerConfig(**saved["model"]))
        return cls(model, Side.from_json(saved["captions"]), size, saved.get("split"))

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
        decoding.check_beam(beam, n_best, batch_size)
        self.check_images(images)
        limit = max_length if max_length is not None else self.side.max_len + 1
        weights = (lambda state: state.attention) if attention and self.model.config.attention == "soft" else None
        grid = self.grid()
        results: list[list[Caption]] = []
        for start in range(0, len(images), batch_size):
            log_probs, state = self.model.prime(to_device(image_tensor(images[start : start + batch_size]),
                                                          self.device))
            found = decoding.beam_search(self.model, log_probs, state, beam_size=beam, max_length=limit,
                                         end_token=EOS_ID, length_penalty=length_penalty, n_best=n_best,
                                         weights=weights)
            for hypotheses in found:
                results.append([])
                for h in hypotheses:
                    tokens = self.side.decode(h.tokens)
                    maps = None if h.weights is None else h.weights.float().reshape(-1, *grid).cpu().clone()
                    results[-1].append(Caption(self.side.text(tokens), tokens, h.score, h.normalised, h.finished,
                                               maps))
        return results

    def predict(self, inputs: Sequence[str], options: PredictOptions | None = None) -> list[CaptionedImage]:
        """The captions of each image file (any size or format Pillow reads; resized to the run's size)."""
        from unrolled.data.images import read_images

        chosen = own_options(options, CaptionPredictOptions)
        if chosen.attention_map and self.model.config.attention != "soft":
            raise ValueError("this run was trained without attention (--attention none): there is no map to draw")
        images = read_images([Path(name) for name in inputs], size=self.size)
        found = self.caption(images, beam=chosen.beam, n_best=chosen.n_best, length_penalty=chosen.length_penalty,
                             max_length=chosen.max_len, batch_size=chosen.batch_size,
                             attention=chosen.attention_map is not None)
        return [CaptionedImage(str(name), captions) for name, captions in zip(inputs, found, strict=True)]

    def evaluate(self, data: ImageCaptions, options: EvalOptions | None = None) -> dict[str, Any]:
        """Scores of greedy decoding and of beam --beam on every image of `data`: sequence_error (the output equals
        none of the image's captions; 1 - exact match), token_error, BLEU, BLEU-1..4 and chrF (sacrebleu, all
        captions of an image as its references), images per second."""
        chosen = own_options(options, CaptionEvalOptions)
        if not data.names:
            raise ValueError("no images to evaluate")
        references = data.captions
        token_refs = [[self.side.tokens(t)[: self.side.max_len] for t in group] for group in references]
        report: dict[str, Any] = {"images": len(data.names), "captions": sum(len(r) for r in references)}
        for beam in (1,) if chosen.beam == 1 else (1, chosen.beam):
            started = time.perf_counter()
            outputs = [best[0] for best in self.caption(data.images, beam=beam, batch_size=chosen.batch_size,
                                                        length_penalty=chosen.length_penalty)]
            seconds = time.perf_counter() - started
            scores = sequence_errors([o.tokens for o in outputs], token_refs)
            scores.update(bleu_chrf([o.text for o in outputs], references))
            scores.update(bleu_orders([o.text for o in outputs], references))
            scores["per_second"] = len(data.names) / seconds if seconds > 0 else math.inf
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
    total, correct, count, wrong = 0.0, 0.0, 0.0, 0
    with evaluating(model) as device:
        for start in range(0, len(captions), CAPTION_BATCH):
            rows = range(start, min(start + CAPTION_BATCH, len(captions)))
            batch = to_device(CaptionBatch(image_tensor(data.images[[image_of[r] for r in rows]]),
                                           pad_ids([captions[r] for r in rows])), device)
            _, metrics = model.loss(batch)
            total += metrics["nll"] * metrics["tokens"]
            correct += metrics["accuracy"] * metrics["tokens"]
            count += metrics["tokens"]
        for start in range(0, len(decodes), CAPTION_BATCH):
            chunk = decodes[start : start + CAPTION_BATCH]
            log_probs, state = model.prime(to_device(image_tensor(data.images[[i for i, _ in chunk]]), device))
            wrong += decoding.greedy_misses(model, log_probs, state, [refs for _, refs in chunk], end_token=EOS_ID)
    scores = {"loss": total / count, "accuracy": correct / count}
    if decodes:
        scores["sequence_error"] = wrong / len(decodes)
    return scores


def fit(config: CaptionConfig, out: str | os.PathLike[str], *, resume: bool = False,
        data: ImageCaptions | None = None) -> TrainResult:
    """Train a `Captioner` as `config` says into the run folder `out` (or resume it).

    The images and captions are read from ``config.data`` unless given
    (`data`). The data's own split is used when it has one, else a seeded
    split of the images (``validation``, ``test`` fractions).
    ``encoder_weights``: a state dict (torch.save or safetensors) for the CNN
    encoder, e.g. one pretrained elsewhere (with ``freeze_encoder`` it stays as
    it is). On resume, the model, caption side and split come from the run's
    last checkpoint, and the data must be the same.
    """
    from unrolled.training import Trainer

    options, train_config = config.data, config.train
    data = options.training_images(data)
    saved = saved_run_config(out, kind=KIND) if resume else None
    if saved:
        record = None if saved["split"] is None else SplitRecord(**saved["split"])
    elif data.splits is not None:
        record = None
    else:
        record = new_record(list(range(len(data.names))), lambda i: image_key(data, i), seed=options.split_seed,
                            validation=options.validation, test=options.test)
    parts = split_images(data, record)
    if not parts["train"]:
        raise ValueError("no training images are left after the split; give more data or smaller fractions")
    size = (int(data.images.shape[1]), int(data.images.shape[2]))
    if saved:
        side = Side.from_json(saved["captions"])
        network_config = CaptionerConfig(**saved["model"])
    else:
        side = Side.build([t for i in parts["train"] for t in data.captions[i]], options.tokens,
                          max_len=options.max_len, min_freq=options.min_freq, target=True)
        network_config = config.model.network(len(side.vocabulary))
    image_of, captions, long_captions = encode_captions(data, parts["train"], side)
    left_out_long(long_captions, len(captions), side.max_len, "caption(s)")
    torch.manual_seed(train_config.seed)
    network = Captioner(network_config)
    if config.model.encoder_weights is not None and not saved:
        load_encoder(network, config.model.encoder_weights)
    batches = CaptionBatches(data.images, image_of, captions, batch_size=options.batch_size, seed=train_config.seed)
    extra = {"kind": KIND, "model": asdict(network_config), "captions": side.to_json(), "image_size": list(size),
             "split": None if record is None else asdict(record), "batching": {"batch_size": options.batch_size},
             **config.checkpoint_entry(saved)}
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
    need("matplotlib", "the attention strip")
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


# ---------------------------------------------------------------------- the command line


def show(result: CaptionedImage) -> str:
    """'file TAB caption', or with several captions a block of 'file TAB rank TAB score TAB caption' lines."""
    if len(result.captions) == 1:
        return f"{result.image}\t{result.captions[0].text}"
    return "".join(f"{result.image}\t{rank}\t{found.normalised:.4f}\t{found.text}\n"
                   for rank, found in enumerate(result.captions, 1))


def finish(captioner: ImageCaptioner, inputs: list[str], results: list[CaptionedImage],
           options: CaptionPredictOptions) -> str:
    """Draw the first image's attention strip, when --attention-map asks for it."""
    from unrolled.data.images import read_images

    if not options.attention_map or not results:
        return ""
    image = read_images([Path(inputs[0])], size=captioner.size)[0]
    plot_attention_strip(image, results[0].captions[0], options.attention_map)
    return f"attention of {inputs[0]}: {options.attention_map}"


def read_eval(captioner: ImageCaptioner, path: str | None, options: CaptionEvalOptions) -> ImageCaptions:
    """The images of DATA (at the run's size) or --dataset, or the run's recorded part of them (--split)."""
    data = read_captions(path, options.dataset, images=options.images, size=captioner.size,
                         what="COCO-style caption JSON", example="scenes")
    return run_part(data, captioner.split, options.split)


def report(metrics: dict[str, Any], captioner: ImageCaptioner, options: CaptionEvalOptions, run: Path) -> str:
    """Exact match, token error, BLEU-1..4, chrF and speed, greedy and beam side by side."""
    lines = [f"{metrics['images']} images ({metrics['captions']} captions), {options.split}",
             f"{'decoding':<10} {'exact %':>8} {'tok err %':>9} {'BLEU-1':>6} {'BLEU-2':>6} {'BLEU-3':>6} "
             f"{'BLEU-4':>6} {'chrF':>6} {'images/s':>9}"]
    for beam in (1,) if options.beam == 1 else (1, options.beam):
        s = metrics[f"beam{beam}"]
        name = "greedy" if beam == 1 else f"beam {beam}"
        lines.append(f"{name:<10} {100 * (1 - s['sequence_error']):8.2f} {100 * s['token_error']:9.2f} "
                     + " ".join(f"{s[f'bleu{n}']:6.2f}" for n in (1, 2, 3, 4))
                     + f" {s['chrf']:6.2f} {s['per_second']:9.1f}")
    return "\n".join(lines)


APP = Application(
    name="caption", summary="image captioning (CNN + LSTM with soft attention)",
    config=CaptionConfig, fit=fit, predictor=ImageCaptioner, predict_options=CaptionPredictOptions,
    eval_options=CaptionEvalOptions, show=show, read_eval=read_eval, report=report,
    finish=finish, aliases={"predict": ("run",)},
    input_help="image files (any size or format Pillow reads; resized to the run's size)",
    data_help="COCO-style caption JSON (default: --dataset)")
