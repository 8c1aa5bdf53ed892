"""Sequence tagging (the lecture's synchronous many-to-many case): a tag for every token.

    tokens --(lower-cased if asked)--> word ids (+ character ids of each word)
    --Tagger (embedding [+ char features] -> bidirectional Recurrent -> linear)--> a tag per token

Data is CoNLL-style (token and tag per line, a blank line between sentences),
split once and recorded like the classifier's. The built-in `restore` task
(`unrolled.data.conll`) tags lower-cased, unpunctuated text with how each word
was cased and which mark followed it; a tagger trained on it predicts the
restored text of each line (`Restored`, `SequenceTagger.restore`).

A run is made from a `TagConfig` (sections data, model, train): `fit(config,
out)`, or ``unrolled tag train``; `SequenceTagger.load(run)` predicts
(`Tagged` per line) and evaluates.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unrolled.apps.base import Application, EvalOptions, PredictOptions, Predictor, RunConfig
from unrolled.apps.common import ConfusionOption, data_path, draw_confusion, evaluating
from unrolled.apps.results import Tagged
from unrolled.apps.split import SplitRecord, recorded_part, split_for_fit, split_parts
from unrolled.cells import CELLS
from unrolled.checkpoint import saved_run_config
from unrolled.data.conll import WORD, TaggedSentence, restore_text
from unrolled.data.labelled import IGNORE_LABEL, LabelledData, iterate_batches, truncate
from unrolled.data.vocab import UNK_ID, LabelSet, TokenVocabulary, char_ids
from unrolled.metrics import classification_report
from unrolled.models.tagger import CHAR_ENCODERS, Tagger, TaggerConfig
from unrolled.options import option, require_fractions, require_positive
from unrolled.training import TrainConfig, TrainResult, epochs_recipe, to_device

KIND = "tagger"
COMMAND = "unrolled tag train"
TASKS = ("plain", "restore")
DEFAULT_MAX_LEN = 200
PREDICT_BATCH = 128


@dataclass
class TagEncoding:
    """How tokens become ids: optional lower-casing, the longest sentence kept, word and character vocabularies."""

    lowercase: bool
    max_len: int
    vocabulary: TokenVocabulary
    characters: TokenVocabulary | None

    def encode(self, sentences: list[list[str]]) -> tuple[list[list[int]], list[list[list[int]]] | None, int]:
        """Word ids (at least one per sentence), character ids per word (or None), and how many were cut."""
        words, chars, cut = [], [], 0
        for tokens in sentences:
            kept, was_cut = kept_tokens(tokens, self.lowercase, self.max_len)
            cut += was_cut
            words.append(self.vocabulary.encode(kept) or [UNK_ID])
            if self.characters is not None:
                chars.append(char_ids(kept, self.characters) or [[UNK_ID]])
        return words, (chars if self.characters is not None else None), cut

    def to_json(self) -> dict[str, Any]:
        return {"lowercase": self.lowercase, "max_len": self.max_len, "vocabulary": self.vocabulary.to_json(),
                "characters": None if self.characters is None else self.characters.to_json()}

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> TagEncoding:
        characters = saved.get("characters")
        return cls(bool(saved["lowercase"]), int(saved["max_len"]), TokenVocabulary.from_json(saved["vocabulary"]),
                   None if characters is None else TokenVocabulary.from_json(characters))


def kept_tokens(tokens: list[str], lowercase: bool, max_len: int) -> tuple[list[str], bool]:
    """The tokens as the tagger reads them (lower-cased if asked, the first max_len), and whether any were cut."""
    return truncate([t.lower() if lowercase else t for t in tokens], max_len)


def sentence_key(sentence: TaggedSentence) -> str:
    return " ".join(sentence.tokens) + "\t" + " ".join(sentence.tags or [])


def split_sentences(sentences: list[TaggedSentence], record: SplitRecord) -> dict[str, list[TaggedSentence]]:
    """The train / validation / test parts of `sentences` that `record` describes."""
    return split_parts(sentences, record, sentence_key)


def restoration_input(line: str) -> list[str]:
    """The tokens the `restore` task reads from a line: its words, lower-cased, punctuation dropped."""
    return [word.lower() for word in WORD.findall(line)]


# ---------------------------------------------------------------------- configuration


@dataclass
class TagData:
    """Which CoNLL-style file, how it is read and split, and how tokens become ids."""

    file: str | None = field(default=None, metadata=option(
        "CoNLL-style file: token and tag per line, a blank line between sentences (or --dataset)", positional="?",
        metavar="DATA"))
    dataset: str | None = field(default=None, metadata=option("a named dataset instead of a file (known: restore)"))
    task: str | None = field(default=None, metadata=option(
        "plain: any tags; restore: the restore dataset's casing-and-punctuation tags, so that predict prints "
        "restored text; none: restore for --dataset restore, else plain", choices=TASKS))
    token_column: int = field(default=0, metadata=option("column of the tokens"))
    tag_column: int = field(default=-1, metadata=option("column of the tags (-1: the last)"))
    validation_data: str | None = field(default=None, metadata=option(
        "a separate validation file (then DATA is not split)", metavar="FILE"))
    validation: float = field(default=0.1, metadata=option("fraction for validation"))
    test: float = field(default=0.1, metadata=option("fraction for testing"))
    split_seed: int = field(default=0, metadata=option("seed of the shuffled split"))
    limit: int | None = field(default=None, metadata=option("use only the first N sentences", metavar="N"))
    lowercase: bool = field(default=False, metadata=option("lower-case tokens before looking them up"))
    min_freq: int = field(default=1, metadata=option("words seen fewer times in training become <unk>"))
    max_len: int = field(default=DEFAULT_MAX_LEN, metadata=option(
        "tokens per training sentence; longer ones are cut (predict tags them in pieces this long)"))
    batch_size: int = field(default=32, metadata=option("sentences per batch", aliases=("--batch",)))

    def __post_init__(self) -> None:
        require_fractions(self, "validation", "test")
        if self.task is not None and self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}: choose one of {', '.join(TASKS)}")
        require_positive(self, "min_freq", "max_len", "batch_size", "limit")


@dataclass
class TagModel:
    """The `Tagger`'s shape other than its sizes (vocabularies and tags come from the data); names as in
    `TaggerConfig`, whose defaults these are."""

    embedding: int = field(default=TaggerConfig.embedding, metadata=option("word embedding size"))
    chars: int = field(default=TaggerConfig.chars, metadata=option(
        "character features per word (the character encoder's size); 0: none"))
    char_encoder: str = field(default=TaggerConfig.char_encoder, metadata=option(
        "characters: a BiLSTM (Lample et al.) or a CNN (Ma & Hovy)", choices=CHAR_ENCODERS))
    char_embedding: int = field(default=TaggerConfig.char_embedding, metadata=option("character embedding size"))
    char_width: int = field(default=TaggerConfig.char_width, metadata=option("the character CNN's width"))
    cell: str = field(default=TaggerConfig.cell, metadata=option("cell type", choices=tuple(CELLS)))
    hidden: int = field(default=TaggerConfig.hidden, metadata=option("units per direction"))
    layers: int = field(default=TaggerConfig.layers, metadata=option("stacked layers"))
    bidirectional: bool = field(default=TaggerConfig.bidirectional, metadata=option(
        "read both ways", negate=("--unidirectional", "--no-bidirectional")))
    dropout: float = field(default=TaggerConfig.dropout, metadata=option("dropout between and after the layers"))
    embedding_dropout: float = field(default=TaggerConfig.embedding_dropout, metadata=option(
        "dropout on the embeddings (and character features)"))


class TagConfig(RunConfig):
    """Everything a tagging run is made from; saved whole in its checkpoints."""

    data: TagData = field(default_factory=TagData)
    model: TagModel = field(default_factory=TagModel)
    train: TrainConfig = field(default_factory=epochs_recipe)


# ---------------------------------------------------------------------- the configured data


def read_sentences(data: TagData, path: str | None = None) -> list[TaggedSentence]:
    """The sentences of `path` (all of them), else of the configured file or named dataset (the first --limit)."""
    from unrolled.data.conll import read_conll

    if path is not None:
        return read_conll(Path(path), token_column=data.token_column, tag_column=data.tag_column)
    source = data_path(data.file, data.dataset, what="a CoNLL-style file", known="restore")
    sentences = read_conll(source, token_column=data.token_column, tag_column=data.tag_column)
    return sentences[: data.limit] if data.limit else sentences


# ---------------------------------------------------------------------- the trained tagger


@dataclass
class Restored(Tagged):
    """The restore task's result: the words read (lower-cased, no punctuation), their tags, the restored text."""

    text: str = ""


@dataclass
class TagPredictOptions(PredictOptions):
    batch_size: int = field(default=PREDICT_BATCH, metadata=option("sentences per batch", aliases=("--batch",)))


@dataclass
class TagEvalOptions(EvalOptions, ConfusionOption):
    batch_size: int = field(default=PREDICT_BATCH, metadata=option("sentences per batch", aliases=("--batch",)))
    dataset: str | None = field(default=None, metadata=option("a named dataset instead of a file (known: restore)"))
    token_column: int = field(default=0, metadata=option("column of the tokens"))
    tag_column: int = field(default=-1, metadata=option("column of the tags (-1: the last)"))
    limit: int | None = field(default=None, metadata=option("the run's --limit, if it had one", metavar="N"))


class SequenceTagger(Predictor[str, Tagged]):
    """A trained tagger with its encoding and tag set: lines of text (or token lists) in, tags out."""

    kind = KIND
    command = COMMAND
    what = "a tagger"
    model: Tagger

    def __init__(self, model: Tagger, encoding: TagEncoding, tags: LabelSet, task: str = "plain",
                 split: dict[str, Any] | None = None) -> None:
        self.model, self.encoding, self.tags, self.task, self.split = model.eval(), encoding, tags, task, split

    @classmethod
    def from_config(cls, saved: dict[str, Any]) -> SequenceTagger:
        return cls(Tagger(TaggerConfig(**saved["model"])), TagEncoding.from_json(saved["encoding"]),
                   LabelSet.from_json(saved["tags"]), saved.get("task", "plain"), saved.get("split"))

    @torch.inference_mode()
    def tag(self, sentences: list[list[str]], *, batch_size: int = PREDICT_BATCH) -> list[list[str]]:
        """The tag of every token; a sentence longer than max_len is tagged in pieces of max_len tokens."""
        size = self.encoding.max_len
        pieces, owner = [], []
        for k, tokens in enumerate(sentences):
            for start in range(0, max(len(tokens), 1), size):
                pieces.append(tokens[start : start + size])
                owner.append(k)
        words, chars, _ = self.encoding.encode(pieces)
        result: list[list[str]] = [[] for _ in sentences]
        index = 0
        for batch in iterate_batches(words, None, batch_size=batch_size, chars=chars):
            predicted = self.model.predict(to_device(batch, self.device)).cpu()  # (B, T)
            for row in predicted.tolist():
                result[owner[index]].extend(self.tags.names[i] for i in row[: len(pieces[index])])
                index += 1
        return result

    def tokens(self, line: str) -> list[str]:
        """The tokens the tagger reads from a line: split at spaces (restore task: `restoration_input`)."""
        return restoration_input(line) if self.task == "restore" else line.split()

    def predict(self, inputs: Sequence[str], options: PredictOptions | None = None) -> list[Tagged]:
        """The tokens and tags of each line; for the restore task, the restored text too (`Restored`)."""
        batch_size = (options or TagPredictOptions()).batch_size
        token_lists = [self.tokens(line) for line in inputs]
        tag_lists = self.tag(token_lists, batch_size=batch_size)
        if self.task != "restore":
            return [Tagged(tokens, tags) for tokens, tags in zip(token_lists, tag_lists, strict=True)]
        return [Restored(tokens, tags, restore_text(tokens, tags) if tokens else "")
                for tokens, tags in zip(token_lists, tag_lists, strict=True)]

    def restore(self, lines: list[str]) -> list[str]:
        """`restore` task: each line's words re-cased and re-punctuated."""
        if self.task != "restore":
            raise ValueError("this tagger was not trained on the restore task; use tag() for its tags")
        return [result.text for result in self.predict(lines) if isinstance(result, Restored)]

    def evaluate(self, data: list[TaggedSentence], options: EvalOptions | None = None) -> dict[str, Any]:
        """Token accuracy, macro-F1 over tags, per-tag scores, the confusion matrix, and sentence accuracy."""
        batch_size = (options or TagEvalOptions()).batch_size
        references = [[self.tags.encode(tag) for tag in s.tags or []] for s in data]
        predicted = self.tag([s.tokens for s in data], batch_size=batch_size)
        flat_true = [t for ref in references for t in ref]
        flat_pred = [self.tags.encode(tag) for sentence in predicted for tag in sentence]
        report = classification_report(flat_true, flat_pred, self.tags.names)
        whole = sum(p == [self.tags.names[i] for i in ref] for p, ref in zip(predicted, references, strict=True))
        report["sentence_accuracy"] = whole / len(data) if data else math.nan
        report["sentences"] = len(data)
        return report


# ---------------------------------------------------------------------- training


def validation_loss(model: nn.Module, words: list[list[int]], tags: list[list[int]],
                    chars: list[list[list[int]]] | None) -> dict[str, float]:
    """Mean cross-entropy per token and token accuracy, in eval mode, on the model's device."""
    total, correct, count = 0.0, 0, 0
    with evaluating(model) as device:
        for batch in iterate_batches(words, tags, batch_size=PREDICT_BATCH, chars=chars):
            batch = to_device(batch, device)
            assert batch.labels is not None
            logits = model(batch.ids, batch.lengths, batch.chars).float()  # (B, T, C)
            total += float(F.cross_entropy(logits.transpose(1, 2), batch.labels, reduction="sum"))
            valid = batch.labels != IGNORE_LABEL
            correct += int(((logits.argmax(-1) == batch.labels) & valid).sum())
            count += int(valid.sum())
    return {"loss": total / count, "accuracy": correct / count}


def fit(config: TagConfig, out: str | os.PathLike[str], *, resume: bool = False,
        sentences: list[TaggedSentence] | None = None,
        validation_sentences: list[TaggedSentence] | None = None) -> TrainResult:
    """Train a `Tagger` as `config` says into the run folder `out` (or resume it).

    The sentences are read from ``config.data`` unless given (`sentences`, and
    `validation_sentences` in place of ``--validation-data``). On resume, the
    model, encoding, tags, task and split come from the run's last checkpoint.
    """
    from unrolled.training import Trainer

    data_config, train_config = config.data, config.train
    saved = saved_run_config(out, kind=KIND) if resume else None
    record, parts = split_for_fit(sentences, validation_sentences, partial(read_sentences, data_config), data_config,
                                  saved, sentence_key, split_sentences)
    untagged = next((s for part in parts.values() for s in part if s.tags is None), None)
    if untagged is not None:
        raise ValueError(f"the sentence at line {untagged.line} has no tags; training needs a tag column")
    if saved:
        encoding, tags = TagEncoding.from_json(saved["encoding"]), LabelSet.from_json(saved["tags"])
        network_config, task = TaggerConfig(**saved["model"]), saved.get("task", "plain")
    else:
        encoding, tags, network_config = _build(parts["train"], data_config, config.model)
        task = data_config.task or ("restore" if data_config.dataset == "restore" else "plain")
    torch.manual_seed(train_config.seed)
    network = Tagger(network_config)
    words, char_lists, _ = encoding.encode([s.tokens for s in parts["train"]])
    targets = [[tags.encode(t) for t in s.tags or []][: len(w)] for s, w in zip(parts["train"], words, strict=True)]
    batches = LabelledData(words, targets, batch_size=data_config.batch_size, seed=train_config.seed,
                           chars=char_lists, bucket=20)
    extra = {"kind": KIND, "task": task, "model": asdict(network_config), "encoding": encoding.to_json(),
             "tags": tags.to_json(), "split": asdict(record), "batching": {"batch_size": data_config.batch_size}}
    extra.update(config.checkpoint_entry(saved))
    trainer = Trainer(network, batches, train_config, out, evaluate=_evaluator(encoding, tags, parts["validation"]),
                      checkpoint_config=extra)
    return trainer.fit(resume=resume)


def _build(sentences: list[TaggedSentence], data: TagData,
           model: TagModel) -> tuple[TagEncoding, LabelSet, TaggerConfig]:
    """The encoding and tag set of the training sentences, and the tagger's config with their sizes."""
    token_lists = [kept_tokens(s.tokens, data.lowercase, data.max_len)[0] for s in sentences]
    vocabulary = TokenVocabulary.build(token_lists, min_freq=data.min_freq)
    characters = (TokenVocabulary.build(list(token) for tokens in token_lists for token in tokens)
                  if model.chars > 0 else None)
    tags = LabelSet.build(tag for s in sentences for tag in s.tags or [])
    config = TaggerConfig(vocab_size=len(vocabulary), tags=len(tags),
                          char_vocab_size=len(characters) if characters is not None else 0, **asdict(model))
    return TagEncoding(data.lowercase, data.max_len, vocabulary, characters), tags, config


def _evaluator(encoding: TagEncoding, tags: LabelSet, sentences: list[TaggedSentence]) -> Any:
    if not sentences:
        return None
    words, chars, _ = encoding.encode([s.tokens for s in sentences])
    targets = [[tags.encode(t) for t in s.tags or []][: len(w)] for s, w in zip(sentences, words, strict=True)]

    def evaluate(module: nn.Module) -> dict[str, float]:
        return validation_loss(module, words, targets, chars)

    return evaluate


# ---------------------------------------------------------------------- the command line


def read_inputs(paths: list[str], options: TagPredictOptions) -> list[str]:
    """The non-blank lines of the files, or of stdin ("-" or none)."""
    from unrolled.data.text import read_text

    lines: list[str] = []
    for path in paths or ["-"]:
        raw = sys.stdin.read() if path == "-" else read_text([Path(path)])
        lines.extend(line for line in raw.splitlines() if line.strip())
    return lines


def show(result: Tagged) -> str:
    """The restored text, or the sentence in CoNLL form (token TAB tag a line; print adds the blank line)."""
    if isinstance(result, Restored):
        return result.text
    return "".join(f"{token}\t{tag}\n" for token, tag in zip(result.tokens, result.tags, strict=True))


def read_eval(tagger: SequenceTagger, path: str | None, options: TagEvalOptions) -> list[TaggedSentence]:
    """The tagged sentences of DATA (or --dataset), or the run's recorded part of them (--split)."""
    data = TagData(file=path, dataset=options.dataset, token_column=options.token_column,
                   tag_column=options.tag_column, limit=options.limit)
    return recorded_part(read_sentences(data), tagger.split, options.split, split_sentences)


def report(metrics: dict[str, Any], tagger: SequenceTagger, options: TagEvalOptions, run: Path) -> str:
    """Draw the confusion matrix beside the run (named in `metrics`); the report as text."""
    from unrolled.metrics import format_report

    confusion = draw_confusion(metrics, tagger.tags.names, options, run,
                               f"tagger, {options.split} ({metrics['examples']} tokens)")
    return (format_report(metrics).replace("examples)", "tokens)", 1) + "\n"
            f"sentence accuracy {metrics['sentence_accuracy']:.4f} ({metrics['sentences']} sentences); "
            f"confusion matrix: {confusion}")


APP = Application(
    name="tag", summary="sequence tagging (a label per token)",
    config=TagConfig, fit=fit, predictor=SequenceTagger, predict_options=TagPredictOptions,
    eval_options=TagEvalOptions, read_inputs=read_inputs, show=show, read_eval=read_eval, report=report,
    input_help="text files, a sentence a line (tokens separated by spaces; a restore tagger reads any text); "
               "- or none: standard input",
    data_help="CoNLL-style file (default: --dataset)")
