"""Sequence tagging (the lecture's synchronous many-to-many case): a tag for every token.

    tokens --(lower-cased if asked)--> word ids (+ character ids of each word)
    --Tagger (embedding [+ char features] -> bidirectional Recurrent -> linear)--> a tag per token

Data is CoNLL-style (token and tag per line, a blank line between sentences),
split once and recorded like the classifier's. The built-in `restore` task
(`unrolled.data.conll`) tags lower-cased, unpunctuated text with how each word
was cased and which mark followed it; `SequenceTagger.restore` turns its
predictions back into text.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unrolled.apps.split import SplitRecord, new_record, split_parts
from unrolled.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    resolve_checkpoint,
    saved_run_config,
)
from unrolled.data.conll import WORD, TaggedSentence, restore_text
from unrolled.data.labelled import IGNORE_LABEL, LabelledData, LabelSet, TokenVocabulary, iterate_batches, truncate
from unrolled.data.vocab import UNK_ID, char_ids
from unrolled.metrics import classification_report
from unrolled.models.tagger import Tagger, TaggerConfig

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


class SequenceTagger:
    """A trained tagger with its encoding and tag set: token lists in, tags out."""

    def __init__(self, model: Tagger, encoding: TagEncoding, tags: LabelSet, task: str = "plain",
                 split: dict[str, Any] | None = None) -> None:
        self.model, self.encoding, self.tags, self.task, self.split = model.eval(), encoding, tags, task, split

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SequenceTagger:
        """From a run folder (best checkpoint, else last) or a checkpoint folder."""
        checkpoint = load_checkpoint(resolve_checkpoint(path, command=COMMAND), kind=KIND)
        saved = checkpoint.config
        try:
            model = Tagger(TaggerConfig(**saved["model"]))
            encoding, tags = TagEncoding.from_json(saved["encoding"]), LabelSet.from_json(saved["tags"])
        except (KeyError, TypeError) as error:
            raise CheckpointError(f"{path}: config.json lacks what a tagger needs ({error})") from None
        load_model_state(model, checkpoint.model_state, path)
        return cls(model, encoding, tags, saved.get("task", "plain"), saved.get("split"))

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
            predicted = self.model.predict(batch)  # (B, T)
            for row in predicted.tolist():
                result[owner[index]].extend(self.tags.names[i] for i in row[: len(pieces[index])])
                index += 1
        return result

    def restore(self, lines: list[str]) -> list[str]:
        """`restore` task: each line's words re-cased and re-punctuated."""
        if self.task != "restore":
            raise ValueError("this tagger was not trained on the restore task; use tag() for its tags")
        token_lists = [restoration_input(line) for line in lines]
        return [restore_text(tokens, tags) if tokens else "" for tokens, tags in
                zip(token_lists, self.tag(token_lists), strict=True)]

    def evaluate(self, sentences: list[TaggedSentence]) -> dict[str, Any]:
        """Token accuracy, macro-F1 over tags, per-tag scores, the confusion matrix, and sentence accuracy."""
        references = [[self.tags.encode(tag) for tag in s.tags or []] for s in sentences]
        predicted = self.tag([s.tokens for s in sentences])
        flat_true = [t for ref in references for t in ref]
        flat_pred = [self.tags.encode(tag) for sentence in predicted for tag in sentence]
        report = classification_report(flat_true, flat_pred, self.tags.names)
        whole = sum(p == [self.tags.names[i] for i in ref] for p, ref in zip(predicted, references, strict=True))
        report["sentence_accuracy"] = whole / len(sentences) if sentences else math.nan
        report["sentences"] = len(sentences)
        return report


def validation_loss(model: nn.Module, words: list[list[int]], tags: list[list[int]],
                    chars: list[list[list[int]]] | None) -> dict[str, float]:
    """Mean cross-entropy per token and token accuracy, in eval mode."""
    was_training = model.training
    model.eval()
    total, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for batch in iterate_batches(words, tags, batch_size=PREDICT_BATCH, chars=chars):
            assert batch.labels is not None
            logits = model(batch.ids, batch.lengths, batch.chars).float()  # (B, T, C)
            total += float(F.cross_entropy(logits.transpose(1, 2), batch.labels, reduction="sum"))
            valid = batch.labels != IGNORE_LABEL
            correct += int(((logits.argmax(-1) == batch.labels) & valid).sum())
            count += int(valid.sum())
    model.train(was_training)
    return {"loss": total / count, "accuracy": correct / count}


def fit(sentences: list[TaggedSentence], out: str | os.PathLike[str], *, model_options: dict[str, Any] | None = None,
        train: Any = None, lowercase: bool = False, chars: bool = False, min_freq: int = 1,
        max_len: int = DEFAULT_MAX_LEN, task: str = "plain", validation_sentences: list[TaggedSentence] | None = None,
        validation: float = 0.1, test: float = 0.1, split_seed: int = 0, batch_size: int = 32,
        eval_every: int | None = None, resume: bool = False) -> Any:
    """Train a `Tagger` on tagged `sentences` into the run folder `out` (or resume it); returns the `TrainResult`.

    `model_options` are `TaggerConfig` fields other than the sizes; `chars` adds
    character features (a char vocabulary from the training words). `eval_every`
    None evaluates once per epoch.
    """
    from unrolled.training import TrainConfig, Trainer

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    untagged = next((s for s in sentences if s.tags is None), None)
    if untagged is not None:
        raise ValueError(f"the sentence at line {untagged.line} has no tags; training needs a tag column")
    train_config = train if train is not None else TrainConfig(max_epochs=10)
    saved = saved_run_config(out, kind=KIND) if resume else None
    separate = validation_sentences is not None
    record = (SplitRecord(**saved["split"]) if saved else
              new_record(sentences, sentence_key, seed=split_seed, validation=0.0 if separate else validation,
                         test=0.0 if separate else test))
    parts = split_sentences(sentences, record)
    if validation_sentences is not None:
        parts["validation"] = validation_sentences
    if saved:
        encoding, tags = TagEncoding.from_json(saved["encoding"]), LabelSet.from_json(saved["tags"])
        config = TaggerConfig(**saved["model"])
    else:
        encoding, tags, config = _build(parts["train"], model_options or {}, lowercase, chars, min_freq, max_len)
    torch.manual_seed(train_config.seed)
    network = Tagger(config)
    words, char_lists, _ = encoding.encode([s.tokens for s in parts["train"]])
    targets = [[tags.encode(t) for t in s.tags or []][: len(w)] for s, w in zip(parts["train"], words, strict=True)]
    data = LabelledData(words, targets, batch_size=batch_size, seed=train_config.seed, chars=char_lists, bucket=20)
    if eval_every is None:
        train_config = dataclasses.replace(train_config, eval_every=len(data))
    extra = {"kind": KIND, "task": task, "model": asdict(config), "encoding": encoding.to_json(),
             "tags": tags.to_json(), "split": asdict(record), "batching": {"batch_size": batch_size}}
    trainer = Trainer(network, data, train_config, out, evaluate=_evaluator(encoding, tags, parts["validation"]),
                      checkpoint_config=extra)
    return trainer.fit(resume=resume)


def _build(sentences: list[TaggedSentence], options: dict[str, Any], lowercase: bool, chars: bool, min_freq: int,
           max_len: int) -> tuple[TagEncoding, LabelSet, TaggerConfig]:
    token_lists = [kept_tokens(s.tokens, lowercase, max_len)[0] for s in sentences]
    vocabulary = TokenVocabulary.build(token_lists, min_freq=min_freq)
    characters = TokenVocabulary.build(list(token) for tokens in token_lists for token in tokens) if chars else None
    tags = LabelSet.build(tag for s in sentences for tag in s.tags or [])
    shape = dict(options)
    if characters is not None:
        shape.setdefault("chars", 25)
        shape["char_vocab_size"] = len(characters)
    else:
        shape["chars"] = 0
    config = TaggerConfig(vocab_size=len(vocabulary), tags=len(tags), **shape)
    return TagEncoding(lowercase, max_len, vocabulary, characters), tags, config


def _evaluator(encoding: TagEncoding, tags: LabelSet, sentences: list[TaggedSentence]) -> Any:
    if not sentences:
        return None
    words, chars, _ = encoding.encode([s.tokens for s in sentences])
    targets = [[tags.encode(t) for t in s.tags or []][: len(w)] for s, w in zip(sentences, words, strict=True)]

    def evaluate(module: nn.Module) -> dict[str, float]:
        return validation_loss(module, words, targets, chars)

    return evaluate

