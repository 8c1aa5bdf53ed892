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

import math
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.apps.base import Application, EvalOptions, PredictOptions, Predictor, RunConfig
from unrolled.apps.common import ConfusionOption, data_path, draw_confusion, evaluating
from unrolled.apps.results import Label
from unrolled.apps.split import SplitRecord, recorded_part, split_for_fit, split_parts
from unrolled.cells import CELLS
from unrolled.checkpoint import saved_run_config
from unrolled.data.labelled import Example, LabelledData, iterate_batches, make_batch, truncate
from unrolled.data.vocab import UNK_ID, LabelSet, TokenVocabulary, load_vectors, tokenize
from unrolled.metrics import classification_report
from unrolled.models.classifier import (
    POOLINGS,
    WIDE_BETA,
    CNNClassifier,
    CNNClassifierConfig,
    RNNClassifier,
    RNNClassifierConfig,
    SequenceClassifier,
)
from unrolled.models.nbwide import count_ngrams
from unrolled.options import option, require_fractions, require_positive
from unrolled.training import TrainConfig, TrainResult, epochs_recipe, to_device

KIND = "classifier"
COMMAND = "unrolled classify train"
FORMATS = ("csv", "tsv", "jsonl")
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


# ---------------------------------------------------------------------- configuration


@dataclass
class ClassifyData:
    """Which labelled file, how it is read and split, and how texts become token ids."""

    file: str | None = field(default=None, metadata=option(
        "labelled file: CSV, TSV or JSON lines (or --dataset)", positional="?", metavar="DATA"))
    dataset: str | None = field(default=None, metadata=option("a named dataset instead of a file (known: mr)"))
    text_column: str = field(default="text", metadata=option("column of the texts", metavar="NAME"))
    label_column: str = field(default="label", metadata=option("column of the labels", metavar="NAME"))
    format: str | None = field(default=None, metadata=option(
        "file format (default: from the suffix: .csv, .tsv/.tab/.txt, .jsonl/.json)", choices=FORMATS))
    validation_data: str | None = field(default=None, metadata=option(
        "a separate validation file (then DATA is not split)", metavar="FILE"))
    validation: float = field(default=0.1, metadata=option("fraction held out for validation"))
    test: float = field(default=0.1, metadata=option("fraction held out for testing"))
    folds: int | None = field(default=None, metadata=option(
        "cross-validation: hold out fold --fold of K as the test part", metavar="K"))
    fold: int = field(default=0, metadata=option("which fold to hold out, 0..K-1", metavar="k"))
    split_seed: int = field(default=0, metadata=option("seed of the shuffled split"))
    tokens: str = field(default="word", metadata=option("token kind", choices=("word", "char")))
    min_freq: int = field(default=1, metadata=option("tokens seen fewer times in training become <unk>"))
    max_len: int = field(default=DEFAULT_MAX_LEN, metadata=option(
        "tokens kept per text; longer texts are cut with a warning"))
    vectors: str | None = field(default=None, metadata=option(
        "pretrained word vectors, word2vec/GloVe text format", metavar="FILE"))
    freeze_vectors: bool = field(default=False, metadata=option("keep the pretrained vectors fixed"))
    batch_size: int = field(default=50, metadata=option("sentences per batch", aliases=("--batch",)))

    def __post_init__(self) -> None:
        require_fractions(self, "validation", "test")
        if self.folds is not None and not 0 <= self.fold < self.folds:
            raise ValueError(f"--fold must lie in 0..{self.folds - 1} for --folds {self.folds}, got {self.fold}")
        require_positive(self, "min_freq", "max_len", "batch_size")


@dataclass
class ClassifyModel:
    """The network: an RNN (`RNNClassifierConfig`) or Kim's CNN (`CNNClassifierConfig`)."""

    model: str = field(default="rnn", metadata=option("network", choices=tuple(MODELS)))
    embedding: int = field(default=300, metadata=option("embedding size"))
    dropout: float = field(default=0.5, metadata=option("dropout before the output"))
    cell: str = field(default="lstm", metadata=option("rnn: cell type", choices=tuple(CELLS)))
    hidden: int = field(default=150, metadata=option("rnn: units per direction"))
    layers: int = field(default=1, metadata=option("rnn: stacked layers"))
    bidirectional: bool = field(default=True, metadata=option(
        "rnn: read both ways", negate=("--unidirectional", "--no-bidirectional")))
    pooling: str = field(default="max", metadata=option("rnn: how the states become one vector", choices=POOLINGS))
    widths: tuple[int, ...] = field(default=(3, 4, 5), metadata=option("cnn: filter widths", metavar="W,W,..."))
    maps: int = field(default=100, metadata=option("cnn: feature maps per width", aliases=("--feature-maps",)))
    wide: int = field(default=0, metadata=option(
        "add an NB-weighted bag of 1..N-grams to the network (Wang and Manning 2012's NBSVM features, trained "
        "with it); 0: none, 2: uni- and bigrams", metavar="N"))
    wide_beta: float = field(default=WIDE_BETA, metadata=option(
        "the NB branch's starting gain on the log-count ratios"))

    def __post_init__(self) -> None:
        if self.wide_beta < 0:
            raise ValueError(f"--wide-beta must be 0 or more, got {self.wide_beta}")
        if self.wide < 0:
            raise ValueError(f"--wide must be 0 (no NB branch) or an n-gram order of 1 or more, got {self.wide}")

    def options(self) -> dict[str, Any]:
        """The fields of the network's config other than the vocabulary size, classes and wide_features."""
        wide = {"wide_order": self.wide, "wide_beta": self.wide_beta}
        if self.model == "cnn":
            return {"embedding": self.embedding, "widths": list(self.widths), "feature_maps": self.maps,
                    "dropout": self.dropout, **wide}
        return {"embedding": self.embedding, "cell": self.cell, "hidden": self.hidden, "layers": self.layers,
                "bidirectional": self.bidirectional, "pooling": self.pooling, "dropout": self.dropout, **wide}


class ClassifyConfig(RunConfig):
    """Everything a classification run is made from; saved whole in its checkpoints."""

    data: ClassifyData = field(default_factory=ClassifyData)
    model: ClassifyModel = field(default_factory=ClassifyModel)
    train: TrainConfig = field(default_factory=epochs_recipe)


# ---------------------------------------------------------------------- the configured data


def read_examples(data: ClassifyData, path: str | None = None) -> list[Example]:
    """The examples of `path`, else of the configured file or named dataset; not both, not none."""
    from unrolled.data.labelled import read_labelled

    source = Path(path) if path else data_path(data.file, data.dataset, what="a labelled file (CSV, TSV or JSON "
                                               "lines)", known="mr")
    return read_labelled(source, text_column=data.text_column, label_column=data.label_column, format=data.format)


# ---------------------------------------------------------------------- the trained classifier


@dataclass
class ClassifyPredictOptions(PredictOptions):
    batch_size: int = field(default=PREDICT_BATCH, metadata=option("texts per batch", aliases=("--batch",)))
    text_column: str = field(default="text", metadata=option(
        "column of the texts in a CSV/TSV/JSON-lines input", metavar="NAME"))


@dataclass
class ClassifyEvalOptions(EvalOptions, ConfusionOption):
    batch_size: int = field(default=PREDICT_BATCH, metadata=option("texts per batch", aliases=("--batch",)))
    dataset: str | None = field(default=None, metadata=option("a named dataset instead of a file (known: mr)"))
    text_column: str = field(default="text", metadata=option("column of the texts", metavar="NAME"))
    label_column: str = field(default="label", metadata=option("column of the labels", metavar="NAME"))
    format: str | None = field(default=None, metadata=option("file format (default: from the suffix)",
                                                            choices=FORMATS))


class TextClassifier(Predictor[str, Label]):
    """A trained classifier with its text encoding and labels: raw texts in, labels and probabilities out."""

    kind = KIND
    command = COMMAND
    what = "a classifier"
    model: SequenceClassifier

    def __init__(self, model: SequenceClassifier, model_type: str, encoding: TextEncoding, labels: LabelSet,
                 split: dict[str, Any] | None = None) -> None:
        self.model, self.model_type, self.encoding, self.labels = model.eval(), model_type, encoding, labels
        self.split = split  # the `SplitRecord` fields of the training run, when known

    @classmethod
    def from_config(cls, saved: dict[str, Any]) -> TextClassifier:
        return cls(build_model(saved["model_type"], saved["model"]), saved["model_type"],
                   TextEncoding.from_json(saved["encoding"]), LabelSet.from_json(saved["labels"]), saved.get("split"))

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
            result[chunk] = self.model.predict(to_device(batch, self.device)).float().cpu()
        return result

    def predict(self, inputs: Sequence[str], options: PredictOptions | None = None) -> list[Label]:
        """The most probable label of each text, its probability and every label's."""
        batch_size = (options or ClassifyPredictOptions()).batch_size
        names = self.labels.names
        rows = self.probabilities(list(inputs), batch_size=batch_size).tolist()
        results = []
        for text, row in zip(inputs, rows, strict=True):
            best = max(range(len(row)), key=row.__getitem__)
            results.append(Label(text, names[best], row[best], dict(zip(names, row, strict=True))))
        return results

    def evaluate(self, data: list[Example], options: EvalOptions | None = None) -> dict[str, Any]:
        """Accuracy, macro-F1, per-class scores and the confusion matrix (see `unrolled.metrics`), plus the loss."""
        batch_size = (options or ClassifyEvalOptions()).batch_size
        references = [self.labels.encode(example.label) for example in data]
        probabilities = self.probabilities([example.text for example in data], batch_size=batch_size)
        report = classification_report(references, probabilities.argmax(1).tolist(), self.labels.names)
        picked = probabilities[torch.arange(len(data)), torch.tensor(references, dtype=torch.long)]
        report["loss"] = float(-picked.clamp_min(1e-12).log().mean()) if len(data) else math.nan
        return report


# ---------------------------------------------------------------------- training


def validation_loss(model: nn.Module, sequences: list[list[int]], labels: list[int],
                    batch_size: int = PREDICT_BATCH) -> dict[str, float]:
    """Mean cross-entropy and accuracy over a labelled set, in eval mode."""
    total, correct = 0.0, 0
    with evaluating(model) as device:
        for batch in iterate_batches(sequences, labels, batch_size=batch_size):
            batch = to_device(batch, device)
            assert batch.labels is not None
            logits = model(batch.ids, batch.lengths).float()  # (B, C)
            total += float(F.cross_entropy(logits, batch.labels, reduction="sum"))
            correct += int((logits.argmax(1) == batch.labels).sum())
    return {"loss": total / len(sequences), "accuracy": correct / len(sequences)}


def fit(config: ClassifyConfig, out: str | os.PathLike[str], *, resume: bool = False,
        examples: list[Example] | None = None, validation_examples: list[Example] | None = None) -> TrainResult:
    """Train a classifier as `config` says into the run folder `out` (or resume it).

    The examples are read from ``config.data`` unless given (`examples`, and
    `validation_examples` in place of ``--validation-data``). On resume, the
    model, encoding, labels and split come from the run's last checkpoint, and
    the examples must be the same.
    """
    from unrolled.training import Trainer

    data_config, train_config = config.data, config.train
    saved = saved_run_config(out, kind=KIND) if resume else None
    record, parts = split_for_fit(examples, validation_examples, partial(read_examples, data_config), data_config,
                                  saved, example_key, split_examples)
    if saved:
        encoding, labels = TextEncoding.from_json(saved["encoding"]), LabelSet.from_json(saved["labels"])
        model, network_config = saved["model_type"], saved["model"]
        sequences, cut = encoding.encode([example.text for example in parts["train"]])
    else:
        token_lists, cut = tokenize_texts([example.text for example in parts["train"]], data_config.tokens,
                                          data_config.max_len)
        encoding = TextEncoding(data_config.tokens, data_config.max_len,
                                TokenVocabulary.build(token_lists, min_freq=data_config.min_freq))
        sequences = encoding.ids(token_lists)
        labels = LabelSet.build([example.label for example in parts["train"]])
        model = config.model.model
        network_config = {**config.model.options(), "vocab_size": len(encoding.vocabulary), "classes": len(labels)}
        if config.model.wide:
            network_config["wide_features"] = count_ngrams(sequences, config.model.wide, len(encoding.vocabulary))
    torch.manual_seed(train_config.seed)
    network = build_model(model, network_config)
    targets = [labels.encode(example.label) for example in parts["train"]]
    if network.wide is not None and not saved:
        network.wide.fit_ratios(sequences, targets)
    if data_config.vectors is not None and not saved:
        table, found = load_vectors(data_config.vectors, encoding.vocabulary)
        network.load_embeddings(table, freeze=data_config.freeze_vectors)
        warnings.warn(f"pretrained vectors for {found} of {len(encoding.vocabulary) - 2} words", stacklevel=2)
    warn_truncated(cut, len(sequences), encoding.max_len)
    batches = LabelledData(sequences, targets, batch_size=data_config.batch_size, seed=train_config.seed)
    evaluate = _evaluator(encoding, labels, parts["validation"])
    extra = {"kind": KIND, "model_type": model, "model": network_config if saved else asdict(network.config),
             "encoding": encoding.to_json(), "labels": labels.to_json(), "split": asdict(record),
             "batching": {"batch_size": data_config.batch_size}}
    extra.update(config.checkpoint_entry(saved))
    trainer = Trainer(network, batches, train_config, out, evaluate=evaluate, checkpoint_config=extra)
    return trainer.fit(resume=resume)


def _evaluator(encoding: TextEncoding, labels: LabelSet, examples: list[Example]) -> Any:
    if not examples:
        return None
    sequences, _ = encoding.encode([example.text for example in examples])
    targets = [labels.encode(example.label) for example in examples]

    def evaluate(module: nn.Module) -> dict[str, float]:
        return validation_loss(module, sequences, targets)

    return evaluate


# ---------------------------------------------------------------------- the command line


def read_inputs(paths: list[str], options: ClassifyPredictOptions) -> list[str]:
    """Texts to label: the lines of plain files or stdin, or the text column of CSV/TSV/JSON-lines files."""
    from unrolled.data.labelled import read_labelled
    from unrolled.data.text import read_text

    texts: list[str] = []
    for path in paths or ["-"]:
        if path != "-" and Path(path).suffix.lower() in (".csv", ".tsv", ".tab", ".jsonl", ".json"):
            rows = read_labelled(Path(path), text_column=options.text_column, label_column=None)
            texts.extend(example.text for example in rows)
            continue
        raw = sys.stdin.read() if path == "-" else read_text([Path(path)])
        texts.extend(line for line in raw.splitlines() if line.strip())
    return texts


def show(result: Label) -> str:
    return f"{result.label}\t{result.probability:.4f}"


def read_eval(classifier: TextClassifier, path: str | None, options: ClassifyEvalOptions) -> list[Example]:
    """The labelled examples of DATA (or --dataset), or the run's recorded part of them (--split)."""
    data = ClassifyData(file=path, dataset=options.dataset, text_column=options.text_column,
                        label_column=options.label_column, format=options.format)
    return recorded_part(read_examples(data), classifier.split, options.split, split_examples)


def report(metrics: dict[str, Any], classifier: TextClassifier, options: ClassifyEvalOptions, run: Path) -> str:
    """Draw the confusion matrix beside the run (named in `metrics`); the report as text."""
    from unrolled.metrics import format_report

    count = sum(sum(row) for row in metrics["confusion"])
    confusion = draw_confusion(metrics, classifier.labels.names, options, run,
                               f"{classifier.model_type} classifier, {options.split} ({count} examples)")
    return f"{format_report(metrics)}\nloss {metrics['loss']:.4f}; confusion matrix: {confusion}"


APP = Application(
    name="classify", summary="sentence classification (RNN or CNN)",
    config=ClassifyConfig, fit=fit, predictor=TextClassifier, predict_options=ClassifyPredictOptions,
    eval_options=ClassifyEvalOptions, read_inputs=read_inputs, show=show, read_eval=read_eval, report=report,
    input_help="texts to label: plain files (a text a line) or CSV/TSV/JSON-lines files; - or none: standard input",
    data_help="labelled file (default: --dataset)")
