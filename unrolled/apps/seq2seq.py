"""Sequence to sequence as an application: texts in, texts out (translation, auto-reply, grapheme to phoneme).

    source text --tokens (char | word | subword: `unrolled.apps.sides`)--> ids --Seq2Seq.prime--> beam search
    (`unrolled.decoding`; beam 1 is greedy) --> target ids --> tokens --> text

Pairs are split once, seeded, with every pair of one source on the same side
(every pronunciation of a word is held out together), and the split is
recorded in the checkpoint like the other applications'. Evaluation groups the
pairs by source: an item's references are all its targets. On the command
line: ``unrolled seq2seq train | translate (predict) | eval``.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from unrolled import decoding
from unrolled.apps.base import Application, EvalOptions, PredictOptions, Predictor, RunConfig
from unrolled.apps.common import evaluating
from unrolled.apps.results import Translation, Translations
from unrolled.apps.sides import (
    DEFAULT_SUBWORDS,
    TOKENS,
    Side,
    encode_pairs,
    left_out_long,
    pair_key,
    references,
    split_pairs,
)
from unrolled.apps.split import recorded_part, split_for_fit
from unrolled.cells import CELLS
from unrolled.checkpoint import saved_run_config
from unrolled.data.pairs import Pair, PairData, iterate_pair_batches, make_pair_batch
from unrolled.data.vocab import UNK_ID
from unrolled.extras import need
from unrolled.metrics import bleu_chrf, sequence_errors
from unrolled.models.seq2seq import ATTENTIONS, BOS_ID, EOS_ID, KIND, Seq2Seq, Seq2SeqConfig
from unrolled.options import option, require_fractions, require_positive
from unrolled.tokens import warn_reading
from unrolled.training import TrainConfig, TrainResult, to_device

COMMAND = "unrolled seq2seq train"
DEFAULT_MAX_LEN = 100
TRANSLATE_BATCH = 64
VALIDATION_DECODES = 500  # sources decoded greedily at each evaluation for the sequence error
FORMATS = ("tsv", "jsonl")
DATASETS = "cmudict, cmudict-nostress, chatterbot, bible-en-es"
CHARACTER_SOURCES = ("cmudict", "cmudict-nostress")  # datasets whose sources are spelled words


# ---------------------------------------------------------------------- configuration


@dataclass
class PairSource:
    """How a pairs file is read, or which named dataset instead; train's and eval's."""

    dataset: str | None = field(default=None, metadata=option(f"a named dataset instead of a file (known: {DATASETS})"))
    format: str | None = field(default=None, metadata=option("the file's format; none: from its suffix",
                                                            choices=FORMATS))
    source_field: str = field(default="source", metadata=option("JSON lines: the source field"))
    target_field: str = field(default="target", metadata=option("JSON lines: the target field"))
    limit: int | None = field(default=None, metadata=option("use only the first N pairs (eval: as the run did)",
                                                            metavar="N"))


@dataclass
class Seq2SeqData(PairSource):
    """Which pairs, how they are read and split, and how each side's texts become token ids."""

    file: str | None = field(default=None, metadata=option(
        "pairs: .tsv (source TAB target) or .jsonl (or --dataset)", positional="?", metavar="DATA"))
    validation_data: str | None = field(default=None, metadata=option(
        "a separate validation file (then DATA is not split)", metavar="FILE"))
    validation: float = field(default=0.05, metadata=option("fraction of the distinct sources for validation"))
    test: float = field(default=0.05, metadata=option("fraction of the distinct sources for testing"))
    split_seed: int = field(default=0, metadata=option("seed of the shuffled split"))
    source_tokens: str | None = field(default=None, metadata=option(
        "how sources are cut into tokens: characters, whitespace-separated words, or sentencepiece subwords "
        "(none: word, or char for the cmudict datasets)", choices=TOKENS))
    target_tokens: str = field(default="word", metadata=option("how targets are cut into tokens", choices=TOKENS))
    subword_vocab: int = field(default=DEFAULT_SUBWORDS, metadata=option(
        "sentencepiece pieces per side, learnt from the training side"))
    min_freq: int = field(default=1, metadata=option("tokens seen fewer times in training become <unk>"))
    max_len: int = field(default=DEFAULT_MAX_LEN, metadata=option(
        "tokens per side: longer sources are cut, pairs with longer targets left out"))
    batch_size: int = field(default=64, metadata=option("pairs per batch", aliases=("--batch",)))

    def __post_init__(self) -> None:
        require_fractions(self, "validation", "test")
        require_positive(self, "subword_vocab", "min_freq", "max_len", "batch_size", "limit")

    def source_kind(self) -> str:
        """The source tokens: as set, else characters for the spelled words of cmudict, words otherwise."""
        return self.source_tokens or ("char" if self.dataset in CHARACTER_SOURCES else "word")


@dataclass
class Seq2SeqModel:
    """The encoder-decoder (`Seq2SeqConfig` but the vocabularies, whose defaults these are)."""

    embedding: int = field(default=Seq2SeqConfig.embedding, metadata=option("token embedding size"))
    cell: str = field(default=Seq2SeqConfig.cell, metadata=option("cell type", choices=tuple(CELLS)))
    hidden: int = field(default=Seq2SeqConfig.hidden, metadata=option("units per cell (per direction in the encoder)"))
    layers: int = field(default=Seq2SeqConfig.layers, metadata=option("stacked layers, encoder and decoder"))
    bidirectional: bool = field(default=Seq2SeqConfig.bidirectional, metadata=option(
        "a bidirectional encoder", negate=("--unidirectional", "--no-bidirectional")))
    attention: str = field(default=Seq2SeqConfig.attention, metadata=option(
        "none: the encoder's final state is the only link (the lecture's versions 1 and 2); dot, general, scaled "
        "(Luong), additive (Bahdanau)", choices=ATTENTIONS))
    input_feed: bool = field(default=Seq2SeqConfig.input_feed, metadata=option(
        "feed the last attentional state to the next step (Luong 2015)"))
    dropout: float = field(default=Seq2SeqConfig.dropout, metadata=option("dropout"))
    tie_embeddings: bool = field(default=Seq2SeqConfig.tie_embeddings, metadata=option(
        "the output layer shares the target embedding (needs --embedding = --hidden)", aliases=("--tie-weights",)))
    label_smoothing: float = field(default=Seq2SeqConfig.label_smoothing, metadata=option("label smoothing"))
    scheduled_sampling: float = field(default=Seq2SeqConfig.scheduled_sampling, metadata=option(
        "feed the model's own prediction instead of the true token with probability up to P (Bengio et al. 2015)",
        metavar="P"))
    sampling_ramp: int = field(default=Seq2SeqConfig.sampling_ramp, metadata=option(
        "updates over which that probability rises linearly from 0 to P", metavar="STEPS"))

    def __post_init__(self) -> None:
        self.network(2, 5)  # the network's own checks, one line each, before any data is read

    def network(self, source_vocab: int, target_vocab: int) -> Seq2SeqConfig:
        return Seq2SeqConfig(source_vocab=source_vocab, target_vocab=target_vocab, **asdict(self))


class Seq2SeqAppConfig(RunConfig):
    """Everything a seq2seq run is made from; saved whole in its checkpoints."""

    data: Seq2SeqData = field(default_factory=Seq2SeqData)
    model: Seq2SeqModel = field(default_factory=Seq2SeqModel)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(  # once per epoch; bf16 where native
        optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="constant", warmup_steps=0, clip_norm=5.0,
        max_epochs=10, eval_every=None, precision="auto"))


@dataclass
class Seq2SeqPredictOptions(PredictOptions):
    beam: int = field(default=5, metadata=option("beam size; 1 is greedy"))
    length_penalty: float = field(default=0.0, metadata=option(
        "GNMT length penalty alpha; 0 ranks by total log-probability", metavar="ALPHA"))
    n_best: int = field(default=1, metadata=option(
        "outputs per input, printed as 'rank TAB score TAB text' with a blank line after each input's list"))
    max_len: int | None = field(default=None, metadata=option(
        "most tokens generated; none: the run's --max-len, and </s>", metavar="N"))
    min_len: int = field(default=0, metadata=option("fewest tokens before </s> may come"))
    no_repeat_ngram: int = field(default=0, metadata=option(
        "never repeat an n-gram of this size in an output; 0: off", metavar="N"))
    sample: bool = field(default=False, metadata=option(
        "draw each output from the model's distribution instead of searching for the most likely (varied "
        "replies); takes --temperature, --top-k, --top-p, --seed"))
    temperature: float = field(default=1.0, metadata=option("--sample: temperature"))
    top_k: int | None = field(default=None, metadata=option("--sample: keep only the k most likely tokens"))
    top_p: float | None = field(default=None, metadata=option("--sample: keep the smallest set of tokens of mass p"))
    seed: int | None = field(default=None, metadata=option("--sample: random seed, for reproducible draws"))
    attention_map: str | None = field(default=None, metadata=option(
        "draw the attention of the first input's best output (source tokens by target tokens) into this PNG",
        metavar="PNG"))

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, "beam", "n_best", "max_len", "top_k")
        if min(self.min_len, self.no_repeat_ngram) < 0:
            raise ValueError("--min-len and --no-repeat-ngram must be 0 or positive integers")
        if self.sample and (self.n_best > 1 or self.attention_map or self.json):
            raise ValueError("--sample draws one output per line: it takes no --n-best, --json or --attention-map")
        if self.n_best > self.beam:
            raise ValueError(f"--n-best {self.n_best} needs a beam at least as wide (--beam {self.beam})")


@dataclass
class Seq2SeqEvalOptions(EvalOptions, PairSource):
    beam: int = field(default=5, metadata=option("beam size, scored beside greedy decoding; 1: greedy only"))
    length_penalty: float = field(default=0.0, metadata=option(
        "GNMT length penalty alpha; 0 ranks by total log-probability", metavar="ALPHA"))

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, "beam")


# ---------------------------------------------------------------------- the trained model


def prime(model: Seq2Seq, sources: list[list[int]]) -> tuple[Tensor, Any]:
    """The first target token's log-probabilities and the decoder state after reading `sources` (ids) on the
    model's device."""
    batch = make_pair_batch(sources, [[BOS_ID, EOS_ID]] * len(sources))  # each target only <s> </s>
    batch = to_device(batch, next(model.parameters()).device)
    return model.prime(batch.source, batch.source_lengths)


class Translator(Predictor[str, Translations]):
    """A trained encoder-decoder with its two sides: texts in, `Translations` out."""

    kind = KIND
    command = COMMAND
    what = "a seq2seq model"
    model: Seq2Seq

    def __init__(self, model: Seq2Seq, source: Side, target: Side, split: dict[str, Any] | None = None) -> None:
        self.model, self.source, self.target, self.split = model.eval(), source, target, split

    @classmethod
    def from_config(cls, saved: dict[str, Any]) -> Translator:
        return cls(Seq2Seq(Seq2SeqConfig(**saved["model"])), Side.from_json(saved["source"]),
                   Side.from_json(saved["target"]), saved.get("split"))

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
        warn_reading(cut, unknown, self.source.max_len)
        return ids

    @torch.inference_mode()
    def translate(self, texts: list[str], *, beam: int = 5, n_best: int = 1, length_penalty: float = 0.0,
                  max_length: int | None = None, min_length: int = 0, no_repeat_ngram: int = 0,
                  batch_size: int = TRANSLATE_BATCH, attention: bool = False) -> list[list[Translation]]:
        """The n_best translations of each text, best first, by beam search (beam 1: greedy).

        Inputs are decoded in batches of similar length; a result never depends
        on the batch (each input is searched on its own rows).
        """
        decoding.check_beam(beam, n_best, batch_size)
        limit = max_length if max_length is not None else self.max_length
        ids = self.encode_sources(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        results: list[list[Translation]] = [[] for _ in texts]
        weights = (lambda state: state.attention) if attention and self.model.attention is not None else None
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            log_probs, state = prime(self.model, [ids[i] for i in chunk])
            found = decoding.beam_search(self.model, log_probs, state, beam_size=beam, max_length=limit,
                                         end_token=EOS_ID, length_penalty=length_penalty, n_best=n_best,
                                         min_length=min_length, no_repeat_ngram=no_repeat_ngram, weights=weights)
            for i, hypotheses in zip(chunk, found, strict=True):
                source_tokens = self.source.decode(ids[i])
                for h in hypotheses:
                    tokens = self.target.decode(h.tokens)
                    weight = None if h.weights is None else h.weights[:, : len(ids[i])].float().cpu().clone()
                    results[i].append(Translation(self.target.text(tokens), tokens, h.score, h.normalised,
                                                  h.finished, source_tokens, weight))
        return results

    @torch.inference_mode()
    def sample(self, texts: list[str], *, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, seed: int | None = None, max_length: int | None = None,
               batch_size: int = TRANSLATE_BATCH) -> list[Translation]:
        """One output per text drawn token by token from the model's distribution (`decoding.sample`):
        tempered, cut to the top k and to the nucleus p; varied replies instead of the most likely one.

        With `seed` the draws are reproducible (for a given batch size). A drawn output has no scores (NaN).
        """
        decoding.check_filter(temperature, top_k, top_p)
        limit = max_length if max_length is not None else self.max_length
        ids = self.encode_sources(texts)
        generator = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        results: list[Translation] = []
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            log_probs, state = prime(self.model, chunk)
            drawn = decoding.sample(self.model, log_probs, state, length=limit,
                                    temperature=temperature, top_k=top_k, top_p=top_p, generator=generator,
                                    end_token=EOS_ID)
            for source, row in zip(chunk, drawn.tolist(), strict=True):
                tokens = self.target.decode(row[: row.index(EOS_ID)] if EOS_ID in row else row)
                results.append(Translation(self.target.text(tokens), tokens, math.nan, math.nan, EOS_ID in row,
                                           self.source.decode(source)))
        return results

    def predict(self, inputs: Sequence[str], options: PredictOptions | None = None) -> list[Translations]:
        """The best outputs of each text (--n-best of them), by beam search or, with --sample, drawn."""
        o = options if isinstance(options, Seq2SeqPredictOptions) else Seq2SeqPredictOptions(
            **vars(options or PredictOptions()))
        texts = list(inputs)
        if o.sample:
            drawn = self.sample(texts, temperature=o.temperature, top_k=o.top_k, top_p=o.top_p, seed=o.seed,
                                max_length=o.max_len, batch_size=o.batch_size)
            return [Translations(text, [output]) for text, output in zip(texts, drawn, strict=True)]
        found = self.translate(texts, beam=o.beam, n_best=o.n_best, length_penalty=o.length_penalty,
                               max_length=o.max_len, min_length=o.min_len, no_repeat_ngram=o.no_repeat_ngram,
                               batch_size=o.batch_size, attention=o.attention_map is not None)
        return [Translations(text, outputs) for text, outputs in zip(texts, found, strict=True)]

    def evaluate(self, data: list[Pair], options: EvalOptions | None = None) -> dict[str, Any]:
        """Scores of greedy decoding and of --beam on `data` grouped by source (all targets of a source are its
        references).

        For each beam: sequence_error (a source is right if its output equals any
        reference, tokens compared: G2P's word error rate), token_error (edit
        distance to the closest reference over its length: G2P's phoneme error
        rate), BLEU and chrF (sacrebleu, on the texts), and sources per second.
        """
        o = options if isinstance(options, Seq2SeqEvalOptions) else Seq2SeqEvalOptions(
            **vars(options or EvalOptions()))
        sources, targets = references(data)
        token_refs = [[self.target.tokens(t)[: self.target.max_len] for t in group] for group in targets]
        report: dict[str, Any] = {"sources": len(sources), "pairs": len(data)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unknown and cut sources are part of what is measured
            for beam in (1,) if o.beam == 1 else (1, o.beam):
                started = time.perf_counter()
                outputs = [best[0] for best in self.translate(sources, beam=beam, length_penalty=o.length_penalty,
                                                               batch_size=o.batch_size)]
                seconds = time.perf_counter() - started
                scores = sequence_errors([output.tokens for output in outputs], token_refs)
                scores.update(bleu_chrf([output.text for output in outputs], targets))
                scores["per_second"] = len(sources) / seconds if seconds > 0 else math.inf
                report[f"beam{beam}"] = scores
        return report


# ---------------------------------------------------------------------- training


def validation_scores(model: Seq2Seq, sources: list[list[int]], targets: list[list[int]],
                      references_ids: list[tuple[list[int], list[list[int]]]]) -> dict[str, float]:
    """Mean negative log-likelihood per target token (the loss, without smoothing), token accuracy, and the
    greedy sequence error over up to `VALIDATION_DECODES` distinct sources."""
    total, correct, count = 0.0, 0.0, 0.0
    with evaluating(model) as device:
        for batch in iterate_pair_batches(sources, targets, batch_size=TRANSLATE_BATCH):
            _, metrics = model.loss(to_device(batch, device))
            total += metrics["nll"] * metrics["tokens"]
            correct += metrics["accuracy"] * metrics["tokens"]
            count += metrics["tokens"]
        wrong = 0
        for start in range(0, len(references_ids), TRANSLATE_BATCH):
            chunk = references_ids[start : start + TRANSLATE_BATCH]
            log_probs, state = prime(model, [s for s, _ in chunk])
            wrong += decoding.greedy_misses(model, log_probs, state, [refs for _, refs in chunk],
                                            end_token=EOS_ID, extra=2)
    scores = {"loss": total / count, "accuracy": correct / count}
    if references_ids:
        scores["sequence_error"] = wrong / len(references_ids)
    return scores


def read_pairs_of(data: Seq2SeqData, path: str | None = None) -> list[Pair]:
    """The pairs of `path` (e.g. --validation-data), else the first --limit pairs of the configured file or
    named dataset (not both, not none)."""
    from unrolled.data import obtain
    from unrolled.data.pairs import read_pairs

    if path is not None:
        return read_pairs(Path(path), format=data.format, source_field=data.source_field,
                          target_field=data.target_field)
    if data.file and data.dataset:
        raise ValueError("give a data file or --dataset, not both")
    if not data.file and not data.dataset:
        raise ValueError("no data: give a pairs file (.tsv or .jsonl) or --dataset cmudict")
    pairs = read_pairs_of(data, data.file or str(obtain(str(data.dataset))))
    return pairs[: data.limit] if data.limit else pairs


def fit(config: Seq2SeqAppConfig, out: str | os.PathLike[str], *, resume: bool = False,
        pairs: list[Pair] | None = None, validation_pairs: list[Pair] | None = None) -> TrainResult:
    """Train a `Seq2Seq` as `config` says into the run folder `out` (or resume it).

    The pairs are read from ``config.data`` unless given (`pairs`, and
    `validation_pairs` in place of ``--validation-data``). The split holds out
    whole sources (its fractions count distinct sources). Training pairs whose
    target has more than max_len tokens are left out; longer sources are cut.
    On resume, the model, sides and split come from the run's last checkpoint,
    and the pairs must be the same.
    """
    from unrolled.training import Trainer

    data_config, train_config = config.data, config.train
    saved = saved_run_config(out, kind=KIND) if resume else None
    record, parts = split_for_fit(pairs, validation_pairs, partial(read_pairs_of, data_config), data_config, saved,
                                  pair_key, split_pairs, grouped=True)
    if not parts["train"]:
        raise ValueError("no training pairs are left after the split; give more data or smaller fractions")
    if saved:
        source, target = Side.from_json(saved["source"]), Side.from_json(saved["target"])
        network_config = Seq2SeqConfig(**saved["model"])
    else:
        source = Side.build([p.source for p in parts["train"]], data_config.source_kind(), max_len=data_config.max_len,
                            min_freq=data_config.min_freq, subword_vocab=data_config.subword_vocab)
        target = Side.build([p.target for p in parts["train"]], data_config.target_tokens, max_len=data_config.max_len,
                            min_freq=data_config.min_freq, subword_vocab=data_config.subword_vocab, target=True)
        network_config = config.model.network(len(source.vocabulary), len(target.vocabulary))
    sources, targets, long_targets = encode_pairs(parts["train"], source, target)
    left_out_long(long_targets, len(sources), target.max_len, "target(s)")
    torch.manual_seed(train_config.seed)
    network = Seq2Seq(network_config)
    batches = PairData(sources, targets, batch_size=data_config.batch_size, seed=train_config.seed, bucket=20)
    extra = {"kind": KIND, "model": asdict(network_config), "source": source.to_json(), "target": target.to_json(),
             "split": asdict(record), "batching": {"batch_size": data_config.batch_size}}
    extra.update(config.checkpoint_entry(saved))
    trainer = Trainer(network, batches, train_config, out, evaluate=_evaluator(parts["validation"], source, target),
                      checkpoint_config=extra)
    return trainer.fit(resume=resume)


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
    need("matplotlib", "the attention map")
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


# ---------------------------------------------------------------------- the command line


def read_inputs(paths: list[str], options: Seq2SeqPredictOptions) -> list[str]:
    """Source texts: the non-blank lines of the files, or of stdin ("-" or none); one-line errors for text that is
    not UTF-8."""
    from unrolled.data.text import read_text

    lines: list[str] = []
    for path in paths or ["-"]:
        if path != "-":
            lines += read_text(Path(path)).split("\n")
            continue
        try:
            lines += sys.stdin.buffer.read().decode("utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise ValueError(f"stdin is not valid UTF-8 at byte offset {error.start} ({error.reason}); convert it, "
                             "e.g. with iconv -t UTF-8") from None
    return [line for line in lines if line.strip()]


def show(result: Translations) -> str:
    """The output's text; several outputs as 'rank TAB normalised score TAB text' lines and a blank line."""
    if len(result.outputs) == 1:
        return result.outputs[0].text
    return "".join(f"{rank}\t{o.normalised:.4f}\t{o.text}\n" for rank, o in enumerate(result.outputs, start=1))


def draw_attention(translator: Translator, inputs: list[str], results: list[Translations],
                   options: Seq2SeqPredictOptions) -> str:
    """With --attention-map: the first input's best output's attention as a PNG; the note that names it."""
    if options.attention_map is None or not results:
        return ""
    best = results[0].outputs[0]
    if best.attention is None:
        raise ValueError("the model was trained without attention (--attention none): there is no map to draw")
    plot_attention(best, options.attention_map)
    return f"attention map of input 1: {options.attention_map}"


def read_eval(translator: Translator, path: str | None, options: Seq2SeqEvalOptions) -> list[Pair]:
    """The pairs of DATA (or --dataset), or the run's recorded part of them (--split)."""
    data = Seq2SeqData(file=path, **{item.name: getattr(options, item.name) for item in fields(PairSource)})
    return recorded_part(read_pairs_of(data), translator.split, options.split, split_pairs)


def report(metrics: dict[str, Any], translator: Translator, options: Seq2SeqEvalOptions, run: Path) -> str:
    """A table: sequence and token error, BLEU, chrF and speed of greedy decoding and of --beam."""
    lines = [f"{metrics['sources']} sources ({metrics['pairs']} pairs), {options.split}",
             f"{'decoding':<10} {'seq err %':>9} {'tok err %':>9} {'BLEU':>6} {'chrF':>6} {'inputs/s':>9}"]
    for beam in (1,) if options.beam == 1 else (1, options.beam):
        s = metrics[f"beam{beam}"]
        name = "greedy" if beam == 1 else f"beam {beam}"
        lines.append(f"{name:<10} {100 * s['sequence_error']:9.2f} {100 * s['token_error']:9.2f} {s['bleu']:6.2f} "
                     f"{s['chrf']:6.2f} {s['per_second']:9.1f}")
    return "\n".join(lines)


APP = Application(
    name="seq2seq", summary="sequence to sequence (translation, auto-reply, pronunciation) with "
                            "attention and beam search",
    config=Seq2SeqAppConfig, fit=fit, predictor=Translator, predict_options=Seq2SeqPredictOptions,
    eval_options=Seq2SeqEvalOptions, read_inputs=read_inputs, show=show, read_eval=read_eval, report=report,
    aliases={"predict": ("translate",)}, finish=draw_attention, loss_unit=" nats/token",
    input_help="files of source texts, one a line; - or none: standard input",
    data_help="pairs: .tsv (source TAB target) or .jsonl (default: --dataset)")
