"""Sequence to sequence as a task: texts in, texts out (translation, auto-reply, grapheme to phoneme).

    source text --tokens (char | word | subword)--> ids --Seq2Seq.prime--> beam search
    (`unrolled.decoding`; beam 1 is greedy) --> target ids --> tokens --> text

Tokens, chosen per side:

* ``char``: every character, spaces included; the text is the characters joined.
* ``word``: the text split on whitespace, case and punctuation kept (bring
  pre-tokenised text); the text is the words joined by one space.
* ``subword``: sentencepiece pieces (a unigram model, Kudo 2018) trained on
  the training side only; decoding the pieces gives the text back exactly.

Pairs are split once, seeded, with every pair of one source on the same side
(every pronunciation of a word is held out together), and the split is
recorded in the checkpoint like the other tasks'. Evaluation groups the pairs
by source: an item's references are all its targets.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import math
import os
import time
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from unrolled import decoding
from unrolled.apps.split import SplitRecord, new_record, split_parts
from unrolled.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    resolve_checkpoint,
    saved_run_config,
)
from unrolled.data.labelled import truncate
from unrolled.data.pairs import Pair, PairBatch, PairData, iterate_pair_batches, make_pair_batch
from unrolled.data.vocab import UNK_ID, UNK_TOKEN, TokenVocabulary
from unrolled.metrics import bleu_chrf, sequence_errors
from unrolled.models.seq2seq import BOS_ID, EOS_ID, KIND, Seq2Seq, Seq2SeqConfig

COMMAND = "unrolled seq2seq train"
TOKENS = ("char", "word", "subword")
TARGET_SPECIALS = ("<s>", "</s>")  # ids BOS_ID 2 and EOS_ID 3 of the target vocabulary
DEFAULT_MAX_LEN = 100
DEFAULT_SUBWORDS = 8000
TRANSLATE_BATCH = 64
VALIDATION_DECODES = 500  # sources decoded greedily at each evaluation for the sequence error
assert TARGET_SPECIALS.index("<s>") + 2 == BOS_ID and TARGET_SPECIALS.index("</s>") + 2 == EOS_ID


class Side:
    """How the texts of one side become tokens and ids, and back.

    kind: one of `TOKENS`; max_len: the most tokens kept (longer sources are cut,
    longer training targets dropped); vocabulary: token ids (the target's start
    with ``<s>`` and ``</s>``); subwords: the sentencepiece model (bytes) for ``subword``.
    """

    def __init__(self, kind: str, vocabulary: TokenVocabulary, max_len: int, subwords: bytes | None = None) -> None:
        if kind not in TOKENS:
            raise ValueError(f"unknown tokens {kind!r}: choose one of {', '.join(TOKENS)}")
        if (kind == "subword") != (subwords is not None):
            raise ValueError("subword tokens need a sentencepiece model, and only they do")
        self.kind, self.vocabulary, self.max_len, self.subwords = kind, vocabulary, max_len, subwords
        self.reserved = tuple(token for token in TARGET_SPECIALS if token in vocabulary)
        self._processor: Any = None
        if subwords is not None:
            import sentencepiece

            self._processor = sentencepiece.SentencePieceProcessor(model_proto=subwords)

    # -- text <-> tokens

    def tokens(self, text: str) -> list[str]:
        """The tokens of `text` (all of them: cutting to max_len is `encode`'s business)."""
        if self.kind == "char":
            return list(text)
        if self.kind == "word":
            return text.split()
        return list(self._processor.encode(text, out_type=str))

    def text(self, tokens: list[str]) -> str:
        """The text of `tokens`: `tokens`'s inverse (for words, up to whitespace)."""
        if self.kind == "char":
            return "".join(tokens)
        if self.kind == "word":
            return " ".join(tokens)
        return str(self._processor.decode_pieces(tokens))

    # -- tokens <-> ids

    def encode(self, text: str) -> tuple[list[int], bool, int]:
        """(ids of the first max_len tokens, whether tokens were cut, how many are unknown); a target's
        ``<s>`` and ``</s>`` tokens in the text read as unknown."""
        kept, cut = truncate(self.tokens(text), self.max_len)
        ids = self.vocabulary.encode([UNK_TOKEN if token in self.reserved else token for token in kept])
        return ids, cut, ids.count(UNK_ID)

    def decode(self, ids: list[int]) -> list[str]:
        return self.vocabulary.decode(ids)

    # -- saving

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "max_len": self.max_len, "vocabulary": self.vocabulary.to_json(),
                "subwords": None if self.subwords is None else base64.b64encode(self.subwords).decode("ascii")}

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> Side:
        subwords = saved.get("subwords")
        return cls(saved["kind"], TokenVocabulary.from_json(saved["vocabulary"]), int(saved["max_len"]),
                   None if subwords is None else base64.b64decode(subwords))

    @classmethod
    def build(cls, texts: list[str], kind: str, *, max_len: int, min_freq: int = 1,
              subword_vocab: int = DEFAULT_SUBWORDS, target: bool = False) -> Side:
        """A side fitted to the training `texts`: its subword model (trained on them) and its vocabulary."""
        subwords = train_subwords(texts, subword_vocab) if kind == "subword" else None
        side = cls(kind, TokenVocabulary([]), max_len, subwords)
        built = TokenVocabulary.build((side.tokens(text)[:max_len] for text in texts), min_freq=min_freq)
        reserved = TARGET_SPECIALS if target else ()
        side.vocabulary = TokenVocabulary([*reserved, *(t for t in built.tokens if t not in reserved)])
        side.reserved = reserved
        return side


def train_subwords(texts: list[str], size: int) -> bytes:
    """A sentencepiece unigram model of at most `size` pieces trained on `texts` (every character covered)."""
    import sentencepiece

    model = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=model, vocab_size=size, model_type="unigram",
            character_coverage=1.0, hard_vocab_limit=False, minloglevel=2, num_threads=1,
        )
    except RuntimeError as error:
        raise ValueError(f"sentencepiece could not learn {size} subwords from the training side "
                         f"({' '.join(str(error).split())}); try a smaller --subword-vocab") from None
    return model.getvalue()


@dataclass
class Translation:
    """One output for one source: its text and tokens, its scores, and optionally its attention.

    score: the sum of the token log-probabilities (``</s>`` included); normalised:
    score / lp (the length penalty); finished: it ended with ``</s>``; attention:
    (target tokens + finished, source tokens) weights, when asked and the model attends.
    """

    text: str
    tokens: list[str]
    score: float
    normalised: float
    finished: bool
    source_tokens: list[str]
    attention: Tensor | None = dataclasses.field(default=None, repr=False)


def source_batch(sources: list[list[int]]) -> PairBatch:
    """A batch of sources to decode (each target only ``<s>`` ``</s>``)."""
    return make_pair_batch(sources, [[BOS_ID, EOS_ID]] * len(sources))


def pair_key(pair: Pair) -> str:
    return pair.source + "\t" + pair.target


def pair_group(pair: Pair) -> str:
    return pair.source


def split_pairs(pairs: list[Pair], record: SplitRecord) -> dict[str, list[Pair]]:
    """The train / validation / test parts of `pairs` that `record` describes."""
    return split_parts(pairs, record, pair_key, pair_group)


def references(pairs: list[Pair]) -> tuple[list[str], list[list[str]]]:
    """The distinct sources in order of first appearance, and all targets of each."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for pair in pairs:
        grouped[pair.source].append(pair.target)
    return list(grouped), list(grouped.values())


class Translator:
    """A trained encoder-decoder with its two sides: texts in, `Translation` lists out."""

    def __init__(self, model: Seq2Seq, source: Side, target: Side, split: dict[str, Any] | None = None) -> None:
        self.model, self.source, self.target, self.split = model.eval(), source, target, split

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Translator:
        """From a run folder (best checkpoint, else last) or a checkpoint folder."""
        checkpoint = load_checkpoint(resolve_checkpoint(path, command=COMMAND), kind=KIND)
        saved = checkpoint.config
        try:
            model = Seq2Seq(Seq2SeqConfig(**saved["model"]))
            source, target = Side.from_json(saved["source"]), Side.from_json(saved["target"])
        except (KeyError, TypeError) as error:
            raise CheckpointError(f"{path}: config.json lacks what a seq2seq model needs ({error})") from None
        load_model_state(model, checkpoint.model_state, path)
        return cls(model, source, target, saved.get("split"))

    @property
    def max_length(self) -> int:
        """The default bound on generated tokens: the target side's max_len, and ``</s>``."""
        return self.target.max_len + 1

    def encode_sources(self, texts: list[str]) -> list[list[int]]:
        """Source ids of each text; warns (once) of cut sources and unknown tokens."""
        ids, cut, unknown, first_empty = [], 0, 0, None
        for k, text in enumerate(texts):
            row, was_cut, unknowns = self.source.encode(text)
            if not row:
                first_empty = k if first_empty is None else first_empty
                row = [UNK_ID]
            ids.append(row)
            cut += was_cut
            unknown += unknowns
        if first_empty is not None:
            raise ValueError(f"input {first_empty + 1} is empty; give one source text per line")
        if cut:
            warnings.warn(f"{cut} source(s) longer than {self.source.max_len} tokens were cut to that length",
                          stacklevel=2)
        if unknown:
            warnings.warn(f"{unknown} source token(s) unknown to the model were read as {UNK_TOKEN}", stacklevel=2)
        return ids

    @torch.inference_mode()
    def translate(self, texts: list[str], *, beam: int = 5, n_best: int = 1, length_penalty: float = 0.0,
                  max_length: int | None = None, min_length: int = 0, no_repeat_ngram: int = 0,
                  batch_size: int = TRANSLATE_BATCH, attention: bool = False) -> list[list[Translation]]:
        """The n_best translations of each text, best first, by beam search (beam 1: greedy).

        Inputs are decoded in batches of similar length; a result never depends
        on the batch (each input is searched on its own rows).
        """
        if beam < 1:
            raise ValueError(f"the beam size must be at least 1, got {beam}")
        if not 1 <= n_best <= beam:
            raise ValueError(f"n_best must be in 1..beam ({beam}), got {n_best}")
        if batch_size < 1:
            raise ValueError(f"the batch size must be positive, got {batch_size}")
        limit = max_length if max_length is not None else self.max_length
        ids = self.encode_sources(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        results: list[list[Translation]] = [[] for _ in texts]
        device = next(self.model.parameters()).device
        weights = (lambda state: state.attention) if attention and self.model.attention is not None else None
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            pairs = source_batch([ids[i] for i in chunk])
            log_probs, state = self.model.prime(pairs.source.to(device), pairs.source_lengths.to(device))
            found = decoding.beam_search(self.model, log_probs, state, beam_size=beam, max_length=limit,
                                         end_token=EOS_ID, length_penalty=length_penalty, n_best=n_best,
                                         min_length=min_length, no_repeat_ngram=no_repeat_ngram, weights=weights)
            for i, hypotheses in zip(chunk, found, strict=True):
                source_tokens = self.source.decode(ids[i])
                for h in hypotheses:
                    tokens = self.target.decode(h.tokens)
                    weight = None if h.weights is None else h.weights[:, : len(ids[i])].float().clone()
                    results[i].append(Translation(self.target.text(tokens), tokens, h.score, h.normalised,
                                                  h.finished, source_tokens, weight))
        return results

    @torch.inference_mode()
    def sample(self, texts: list[str], *, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, seed: int | None = None, max_length: int | None = None,
               batch_size: int = TRANSLATE_BATCH) -> list[str]:
        """One output per text drawn token by token from the model's distribution (`decoding.sample`):
        tempered, cut to the top k and to the nucleus p; varied replies instead of the most likely one.

        With `seed` the draws are reproducible (for a given batch size).
        """
        decoding.check_filter(temperature, top_k, top_p)
        limit = max_length if max_length is not None else self.max_length
        ids = self.encode_sources(texts)
        device = next(self.model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
        results: list[str] = []
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            pairs = source_batch(chunk)
            log_probs, state = self.model.prime(pairs.source.to(device), pairs.source_lengths.to(device))
            drawn = decoding.sample(self.model, log_probs, state, length=limit,
                                    temperature=temperature, top_k=top_k, top_p=top_p, generator=generator,
                                    end_token=EOS_ID)
            for row in drawn.tolist():
                tokens = self.target.decode(row[: row.index(EOS_ID)] if EOS_ID in row else row)
                results.append(self.target.text(tokens))
        return results

    def evaluate(self, pairs: list[Pair], *, beams: tuple[int, ...] = (1, 5), length_penalty: float = 0.0,
                 batch_size: int = TRANSLATE_BATCH) -> dict[str, Any]:
        """Scores of each beam size on `pairs` grouped by source (all targets of a source are its references).

        For each beam: sequence_error (a source is right if its output equals any
        reference, tokens compared: G2P's word error rate), token_error (edit
        distance to the closest reference over its length: G2P's phoneme error
        rate), BLEU and chrF (sacrebleu, on the texts), and sources per second.
        """
        sources, targets = references(pairs)
        token_refs = [[self.target.tokens(t)[: self.target.max_len] for t in group] for group in targets]
        report: dict[str, Any] = {"sources": len(sources), "pairs": len(pairs)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unknown and cut sources are part of what is measured
            for beam in beams:
                started = time.perf_counter()
                outputs = [best[0] for best in self.translate(sources, beam=beam, length_penalty=length_penalty,
                                                               batch_size=batch_size)]
                seconds = time.perf_counter() - started
                scores = sequence_errors([o.tokens for o in outputs], token_refs)
                scores.update(bleu_chrf([o.text for o in outputs], targets))
                scores["per_second"] = len(sources) / seconds if seconds > 0 else math.inf
                report[f"beam{beam}"] = scores
        return report


def validation_scores(model: Seq2Seq, sources: list[list[int]], targets: list[list[int]],
                      references_ids: list[tuple[list[int], list[list[int]]]]) -> dict[str, float]:
    """Mean negative log-likelihood per target token (the loss, without smoothing), token accuracy, and the
    greedy sequence error over up to `VALIDATION_DECODES` distinct sources."""
    from unrolled.training import to_device

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, correct, count = 0.0, 0.0, 0.0
    try:
        with torch.no_grad():
            for batch in iterate_pair_batches(sources, targets, batch_size=TRANSLATE_BATCH):
                _, metrics = model.loss(to_device(batch, device))
                total += metrics["nll"] * metrics["tokens"]
                correct += metrics["accuracy"] * metrics["tokens"]
                count += metrics["tokens"]
            wrong = 0
            for start in range(0, len(references_ids), TRANSLATE_BATCH):
                chunk = references_ids[start : start + TRANSLATE_BATCH]
                batch = source_batch([s for s, _ in chunk])
                log_probs, state = model.prime(batch.source.to(device), batch.source_lengths.to(device))
                longest = max(len(r) for _, refs in chunk for r in refs)
                found = decoding.greedy(model, log_probs, state, length=longest + 2, end_token=EOS_ID)
                for row, (_, refs) in zip(found.tolist(), chunk, strict=True):
                    output = row[: row.index(EOS_ID)] if EOS_ID in row else row
                    wrong += output not in [r[1:-1] for r in refs]
    finally:
        model.train(was_training)
    scores = {"loss": total / count, "accuracy": correct / count}
    if references_ids:
        scores["sequence_error"] = wrong / len(references_ids)
    return scores


def fit(pairs: list[Pair], out: str | os.PathLike[str], *, model_options: dict[str, Any] | None = None,
        train: Any = None, source_tokens: str = "word", target_tokens: str = "word", min_freq: int = 1,
        max_len: int = DEFAULT_MAX_LEN, subword_vocab: int = DEFAULT_SUBWORDS,
        validation_pairs: list[Pair] | None = None, validation: float = 0.05, test: float = 0.05,
        split_seed: int = 0, batch_size: int = 64, eval_every: int | None = None, resume: bool = False) -> Any:
    """Train a `Seq2Seq` on `pairs` into the run folder `out` (or resume it); returns the `TrainResult`.

    `model_options` are `Seq2SeqConfig` fields other than the vocabularies.
    The split holds out whole sources (`validation` and `test` count distinct
    sources). Training pairs whose target has more than `max_len` tokens are
    left out; longer sources are cut. `eval_every` None evaluates once per epoch.
    """
    from unrolled.training import TrainConfig, Trainer

    train_config = train if train is not None else TrainConfig(max_epochs=10)
    saved = saved_run_config(out, kind=KIND) if resume else None
    separate = validation_pairs is not None
    record = (SplitRecord(**saved["split"]) if saved else
              new_record(pairs, pair_key, seed=split_seed, validation=0.0 if separate else validation,
                         test=0.0 if separate else test, grouped=True))
    parts = split_pairs(pairs, record)
    if validation_pairs is not None:
        parts["validation"] = validation_pairs
    if not parts["train"]:
        raise ValueError("no training pairs are left after the split; give more data or smaller fractions")
    if saved:
        source, target = Side.from_json(saved["source"]), Side.from_json(saved["target"])
        config = Seq2SeqConfig(**saved["model"])
    else:
        source = Side.build([p.source for p in parts["train"]], source_tokens, max_len=max_len, min_freq=min_freq,
                            subword_vocab=subword_vocab)
        target = Side.build([p.target for p in parts["train"]], target_tokens, max_len=max_len, min_freq=min_freq,
                            subword_vocab=subword_vocab, target=True)
        config = Seq2SeqConfig(source_vocab=len(source.vocabulary), target_vocab=len(target.vocabulary),
                               **(model_options or {}))
    sources, targets, long_targets = encode_pairs(parts["train"], source, target)
    if long_targets:
        warnings.warn(f"{long_targets} training pair(s) with targets longer than {target.max_len} tokens were left "
                      "out (raise --max-len to keep them)", stacklevel=2)
    if not sources:
        raise ValueError(f"every training target is longer than {target.max_len} tokens; raise --max-len")
    torch.manual_seed(train_config.seed)
    network = Seq2Seq(config)
    data = PairData(sources, targets, batch_size=batch_size, seed=train_config.seed, bucket=20)
    if eval_every is None:
        train_config = dataclasses.replace(train_config, eval_every=len(data))
    extra = {"kind": KIND, "model": asdict(config), "source": source.to_json(), "target": target.to_json(),
             "split": asdict(record), "batching": {"batch_size": batch_size}}
    trainer = Trainer(network, data, train_config, out, evaluate=_evaluator(parts["validation"], source, target),
                      checkpoint_config=extra)
    return trainer.fit(resume=resume)


def encode_pairs(pairs: list[Pair], source: Side, target: Side) -> tuple[list[list[int]], list[list[int]], int]:
    """Source ids and target ids (``<s>`` ... ``</s>``) of the pairs whose target fits max_len; and how many do not."""
    sources, targets, dropped = [], [], 0
    for pair in pairs:
        source_ids, _, _ = source.encode(pair.source)
        target_ids, cut, _ = target.encode(pair.target)
        if cut:
            dropped += 1
            continue
        sources.append(source_ids or [UNK_ID])
        targets.append([BOS_ID, *target_ids, EOS_ID])
    return sources, targets, dropped


def _evaluator(pairs: list[Pair], source: Side, target: Side) -> Any:
    if not pairs:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sources, targets, _ = encode_pairs(pairs, source, target)
        distinct, grouped = references(pairs)
        decodes = [(source.encode(text)[0] or [UNK_ID], [[BOS_ID, *target.encode(t)[0], EOS_ID] for t in group])
                   for text, group in list(zip(distinct, grouped, strict=True))[:VALIDATION_DECODES]]
    if not sources:
        return None

    def evaluate(module: nn.Module) -> dict[str, float]:
        model = module.module if hasattr(module, "module") else module
        assert isinstance(model, Seq2Seq)
        return validation_scores(model, sources, targets, decodes)

    return evaluate


def plot_attention(translation: Translation, path: str | os.PathLike[str]) -> None:
    """Write a translation's attention as a PNG heatmap: a row per target token (``</s>`` last if it ended),
    a column per source token, darker for more weight."""
    if translation.attention is None:
        raise ValueError("this translation carries no attention weights (translate with attention=True)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weights = translation.attention.numpy()  # (rows, S)
    rows = [*translation.tokens, "</s>"][: weights.shape[0]]
    columns = [repr(t)[1:-1] if t.isspace() else t for t in translation.source_tokens]
    figure, axes = plt.subplots(figsize=(max(3.0, 0.35 * len(columns) + 2), max(2.5, 0.3 * len(rows) + 1.5)))
    image = axes.imshow(weights, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    figure.colorbar(image, ax=axes, fraction=0.046)
    axes.set_xticks(range(len(columns)), columns, rotation=90)
    axes.set_yticks(range(len(rows)), rows)
    axes.set_xlabel("source")
    axes.set_ylabel("output")
    figure.tight_layout()
    figure.savefig(os.fspath(path), dpi=100)
    plt.close(figure)
