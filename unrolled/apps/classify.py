"""Sentence classification (the lecture's many-to-one example) with the RNN or the CNN classifier.

The pipeline, recorded whole in every checkpoint so a run predicts exactly as it trained::

    text --tokenize (word | char)--> tokens --truncate to max_len--> --vocabulary (min_freq)--> ids
    ids --RNNClassifier | CNNClassifier--> logits (C,) --softmax--> p(label | text)

Training examples are split once, deterministically (`split_examples`): a
shuffled validation and test fraction, or fold k of K for cross-validation,
or a separate validation file. The vocabulary and the label set come from the
training part only. The trainer keeps the checkpoint of the lowest validation
loss as `best`, which `TextClassifier.load` prefers.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.apps.split import SplitRecord, new_record, split_parts
from unrolled.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    resolve_checkpoint,
    saved_run_config,
)
from unrolled.data.labelled import (
    Example,
    LabelledData,
    LabelSet,
    TokenVocabulary,
    iterate_batches,
    load_vectors,
    make_batch,
    tokenize,
    truncate,
)
from unrolled.data.vocab import UNK_ID
from unrolled.metrics import classification_report
from unrolled.models.classifier import (
    CNNClassifier,
    CNNClassifierConfig,
    RNNClassifier,
    RNNClassifierConfig,
    SequenceClassifier,
)

KIND = "classifier"
COMMAND = "unrolled classify train"
MODELS: dict[str, tuple[type[SequenceClassifier], type]] = {
    "rnn": (RNNClassifier, RNNClassifierConfig),
    "cnn": (CNNClassifier, CNNClassifierConfig),
}
DEFAULT_MAX_LEN = 400
"""Tokens kept of each text (the rest is cut, with a warning): MR's longest sentence has 69 word tokens."""
PREDICT_BATCH = 256


# ---------------------------------------------------------------------- text -> ids


@dataclass
class TextEncoding:
    """How a text becomes ids: the tokeniser, the longest sequence kept, and the vocabulary."""

    tokens: str
    max_len: int
    vocabulary: TokenVocabulary

    def encode(self, texts: list[str]) -> tuple[list[list[int]], int]:
        """The ids of each text (at least one id each), and how many texts were cut to `max_len`."""
        token_lists, cut = tokenize_texts(texts, self.tokens, self.max_len)
        return self.ids(token_lists), cut

    def ids(self, token_lists: list[list[str]]) -> list[list[int]]:
        """The ids of tokenised texts; an empty text reads as one unknown token."""
        return [self.vocabulary.encode(tokens) or [UNK_ID] for tokens in token_lists]

    def to_json(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "max_len": self.max_len, "vocabulary": self.vocabulary.to_json()}

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> TextEncoding:
        return cls(saved["tokens"], int(saved["max_len"]), TokenVocabulary.from_json(saved["vocabulary"]))


def tokenize_texts(texts: list[str], kind: str, max_len: int) -> tuple[list[list[str]], int]:
    """Each text's first `max_len` tokens, and how many texts were longer."""
    token_lists, cut = [], 0
    for text in texts:
        kept, was_cut = truncate(tokenize(text, kind), max_len)
        token_lists.append(kept)
        cut += was_cut
    return token_lists, cut


def warn_truncated(cut: int, total: int, max_len: int) -> None:
    if cut:
        warnings.warn(f"{cut} of {total} texts were longer than {max_len} tokens and were cut to that length "
                      "(raise --max-len to keep more)", stacklevel=3)


# ---------------------------------------------------------------------- the split


def example_key(example: Example) -> str:
    """What identifies an example for the split's fingerprint: its text and label."""
    return f"{example.text}\t{example.label}"


def split_examples(examples: list[Example], record: SplitRecord) -> dict[str, list[Example]]:
    """The train / validation / test parts of `examples` that `record` describes."""
    return split_parts(examples, record, example_key)


# ---------------------------------------------------------------------- the trained classifier


def build_model(model_type: str, config: dict[str, Any]) -> SequenceClassifier:
    """An untrained `RNNClassifier` or `CNNClassifier` from its config dict."""
    if model_type not in MODELS:
        raise ValueError(f"unknown model {model_type!r}: choose one of {', '.join(MODELS)}")
    module, config_type = MODELS[model_type]
    return module(config_type(**config))


class TextClassifier:
    """A trained classifier with its text encoding and labels: raw texts in, labels and probabilities out."""

    def __init__(self, model: SequenceClassifier, model_type: str, encoding: TextEncoding, labels: LabelSet,
                 split: dict[str, Any] | None = None) -> None:
        self.model, self.model_type, self.encoding, self.labels = model.eval(), model_type, encoding, labels
        self.split = split  # the `SplitRecord` fields of the training run, when known

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TextClassifier:
        """From a run folder (best checkpoint, else last) or a checkpoint folder."""
        checkpoint = load_checkpoint(resolve_checkpoint(path, command=COMMAND), kind=KIND)
        saved = checkpoint.config
        try:
            model = build_model(saved["model_type"], saved["model"])
            encoding = TextEncoding.from_json(saved["encoding"])
            labels = LabelSet.from_json(saved["labels"])
        except (KeyError, TypeError) as error:
            raise CheckpointError(f"{path}: config.json lacks what a classifier needs ({error})") from None
        load_model_state(model, checkpoint.model_state, path)
        return cls(model, saved["model_type"], encoding, labels, saved.get("split"))

    @torch.inference_mode()
    def probabilities(self, texts: list[str], *, batch_size: int = PREDICT_BATCH) -> Tensor:
        """p(label | text) for every text, (N, C): batched, longest first, returned in input order."""
        sequences, cut = self.encoding.encode(texts)
        warn_truncated(cut, len(texts), self.encoding.max_len)
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
        result = torch.zeros(len(sequences), len(self.labels))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = make_batch([sequences[i] for i in chunk], None)
            result[chunk] = self.model.predict(batch).float()
        return result

    def predict(self, texts: list[str], *, batch_size: int = PREDICT_BATCH) -> list[tuple[str, float]]:
        """The most probable label of each text and its probability."""
        probabilities = self.probabilities(texts, batch_size=batch_size)
        best, index = probabilities.max(dim=1) if len(texts) else (torch.zeros(0), torch.zeros(0, dtype=torch.long))
        return [(self.labels.names[i], float(p)) for p, i in zip(best.tolist(), index.tolist(), strict=True)]

    def evaluate(self, examples: list[Example]) -> dict[str, Any]:
        """Accuracy, macro-F1, per-class scores and the confusion matrix (see `unrolled.metrics`), plus the loss."""
        references = [self.labels.encode(example.label) for example in examples]
        probabilities = self.probabilities([example.text for example in examples])
        report = classification_report(references, probabilities.argmax(1).tolist(), self.labels.names)
        picked = probabilities[torch.arange(len(examples)), torch.tensor(references, dtype=torch.long)]
        report["loss"] = float(-picked.clamp_min(1e-12).log().mean()) if len(examples) else math.nan
        return report


# ---------------------------------------------------------------------- training


def validation_loss(model: nn.Module, sequences: list[list[int]], labels: list[int],
                    batch_size: int = PREDICT_BATCH) -> dict[str, float]:
    """Mean cross-entropy and accuracy over a labelled set, in eval mode."""
    was_training = model.training
    model.eval()
    total, correct = 0.0, 0
    with torch.no_grad():
        for batch in iterate_batches(sequences, labels, batch_size=batch_size):
            assert batch.labels is not None
            logits = model(batch.ids, batch.lengths).float()  # (B, C)
            total += float(F.cross_entropy(logits, batch.labels, reduction="sum"))
            correct += int((logits.argmax(1) == batch.labels).sum())
    model.train(was_training)
    return {"loss": total / len(sequences), "accuracy": correct / len(sequences)}


def fit(examples: list[Example], out: str | os.PathLike[str], *, model: str = "rnn",
        model_options: dict[str, Any] | None = None, train: Any = None, tokens: str = "word", min_freq: int = 1,
        max_len: int = DEFAULT_MAX_LEN, vectors: str | os.PathLike[str] | None = None, freeze_vectors: bool = False,
        validation_examples: list[Example] | None = None, validation: float = 0.1, test: float = 0.1,
        folds: int | None = None, fold: int | None = None, split_seed: int = 0, batch_size: int = 50,
        eval_every: int | None = None, resume: bool = False) -> Any:
    """Train a classifier on labelled `examples` into the run folder `out` (or resume it); returns the `TrainResult`.

    `model` is "rnn" or "cnn", `model_options` the fields of its config other than
    the vocabulary size and the number of classes. `train` is a
    `unrolled.training.TrainConfig`. On resume, the model, encoding, labels and
    split come from the run's last checkpoint, and the examples must be the same.
    `eval_every` None evaluates once per epoch (overriding the `train` config's).
    """
    from unrolled.training import TrainConfig, Trainer

    train_config = train if train is not None else TrainConfig(max_epochs=10)
    saved = saved_run_config(out, kind=KIND) if resume else None
    separate = validation_examples is not None  # then the training file is not split
    record = (SplitRecord(**saved["split"]) if saved else
              new_record(examples, example_key, seed=split_seed, validation=0.0 if separate else validation,
                         test=0.0 if separate else test, folds=folds, fold=fold))
    parts = split_examples(examples, record)
    if validation_examples is not None:
        parts["validation"] = validation_examples
    if saved:
        encoding, labels = TextEncoding.from_json(saved["encoding"]), LabelSet.from_json(saved["labels"])
        model, config = saved["model_type"], saved["model"]
        sequences, cut = encoding.encode([example.text for example in parts["train"]])
    else:
        token_lists, cut = tokenize_texts([example.text for example in parts["train"]], tokens, max_len)
        encoding = TextEncoding(tokens, max_len, TokenVocabulary.build(token_lists, min_freq=min_freq))
        sequences = encoding.ids(token_lists)
        labels = LabelSet.build([example.label for example in parts["train"]])
        config = {**(model_options or {}), "vocab_size": len(encoding.vocabulary), "classes": len(labels)}
    torch.manual_seed(train_config.seed)
    network = build_model(model, config)
    if vectors is not None and not saved:
        table, found = load_vectors(vectors, encoding.vocabulary)
        network.load_embeddings(table, freeze=freeze_vectors)
        warnings.warn(f"pretrained vectors for {found} of {len(encoding.vocabulary) - 2} words", stacklevel=2)
    warn_truncated(cut, len(sequences), encoding.max_len)
    targets = [labels.encode(example.label) for example in parts["train"]]
    data = LabelledData(sequences, targets, batch_size=batch_size, seed=train_config.seed)
    if eval_every is None:
        train_config = dataclasses.replace(train_config, eval_every=len(data))
    evaluate = _evaluator(encoding, labels, parts["validation"])
    extra = {"kind": KIND, "model_type": model, "model": config if saved else asdict(network.config),
             "encoding": encoding.to_json(), "labels": labels.to_json(), "split": asdict(record),
             "batching": {"batch_size": batch_size}}
    trainer = Trainer(network, data, train_config, out, evaluate=evaluate, checkpoint_config=extra)
    return trainer.fit(resume=resume)


def _evaluator(encoding: TextEncoding, labels: LabelSet, examples: list[Example]) -> Any:
    if not examples:
        return None
    sequences, _ = encoding.encode([example.text for example in examples])
    targets = [labels.encode(example.label) for example in examples]

    def evaluate(module: nn.Module) -> dict[str, float]:
        return validation_loss(module, sequences, targets)

    return evaluate
