"""The character-level language model as an application: text in, a trained `CharLM`, samples and scores out.

The pipeline, recorded in every checkpoint so a run samples and scores as it trained::

    text --split_text--> train | validation | test (in that order)
    training part --Vocabulary--> characters -> ids (0: a character never seen in training)
    training ids --TextStreams (B streams, windows of T, the state carried)--> CharLM --> the trainer
    prime --CharLM.prime, then unrolled.decoding.sample--> continuations (`LanguageModel.sample`)
    text --one stateful stream, or random windows--> nats/char, bits/char, perplexity

A checkpoint's config.json (kind "char-lm") holds the model config, the
vocabulary, the split (character ranges), where the text came from
(`TextSource`), the batching, and the configuration's sections under "config".
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled import decoding
from unrolled.apps.base import Application, EvalOptions, PredictOptions, Predictor, RunConfig
from unrolled.apps.common import evaluating
from unrolled.apps.results import Sample
from unrolled.cells import CELLS
from unrolled.checkpoint import load_checkpoint
from unrolled.data.text import TextStreams, Vocabulary, random_windows, split_text
from unrolled.models.charlm import CharLM, CharLMConfig
from unrolled.options import option, require_fractions, require_positive
from unrolled.recurrent import at_least_float32
from unrolled.training import TrainConfig, TrainResult, to_device

KIND = "char-lm"
COMMAND = "unrolled lm train"
PRIME_MARGIN = 2.0  # nats/char above the validation loss before a prime counts as unlike the training text
PRIME_MIN_CHARACTERS = 4
EVAL_CHUNK = 4096  # characters per forward pass when evaluating a stream (the state is carried across chunks)
WINDOW = 256  # characters per window of `evaluate_windows`, as nanoGPT


# ---------------------------------------------------------------------- the training text


@dataclass
class TextSource:
    """Where a training text came from, recorded in the checkpoint so that a resume can check it is the same."""

    names: list[str]
    characters: int
    fingerprint: str  # sha256 of the UTF-8 text

    @classmethod
    def of(cls, text: str, names: list[str]) -> TextSource:
        return cls(names, len(text), hashlib.sha256(text.encode("utf-8")).hexdigest())


def recorded_part(source: dict[str, Any], split: dict[str, Any], part: str, run: str | os.PathLike[str],
                  text: str | None = None) -> str:
    """Part `part` of a run's training text: `text` (else its recorded files, read again), checked, then cut."""
    from unrolled.data import read_text

    names = source.get("names") or []
    if part not in split or (text is None and (not names or names == ["<text>"])):
        raise ValueError(f"{run} does not record its text files and split; give a text file instead of --part")
    if text is None:
        text = read_text([Path(name) for name in names])
        if TextSource.of(text, names).fingerprint != source.get("fingerprint"):
            raise ValueError(f"the files {run} was trained on ({', '.join(names)}) have changed; give a text file")
    elif TextSource.of(text, []).fingerprint != source.get("fingerprint"):
        raise ValueError(f"the text is not the one {run} was trained on; its {part} part needs the training text")
    start, end = split[part]
    if end <= start:
        raise ValueError(f"the run's {part} part is empty; give a text file")
    return str(text[start:end])


# ---------------------------------------------------------------------- scoring a text


def stream_loss(model: CharLM, ids: Tensor, *, streams: int = 1) -> tuple[float, int]:
    """(mean nats/char, characters predicted) of ids (N,) read as `streams` stateful streams, on the model's device."""
    if streams < 1:
        raise ValueError(f"streams must be positive, got {streams}")
    length = (len(ids) - 1) // streams  # predictions per stream
    if length < 1:
        raise ValueError(f"a text of {len(ids)} characters is too short to evaluate on {streams} stream(s); "
                         f"it needs at least {streams + 1}")
    device = model.head.weight.device
    used = streams * length
    inputs, targets = ids[:used].view(streams, length), ids[1 : used + 1].view(streams, length)  # (S, L)
    total, state = 0.0, None
    with evaluating(model):
        for start in range(0, length, EVAL_CHUNK):
            window = slice(start, start + EVAL_CHUNK)
            logits, state = model(to_device(inputs[:, window], device), state)
            total += nll_sum(logits, to_device(targets[:, window], device))
    return total / used, used


def window_loss(model: CharLM, ids: Tensor, *, length: int = WINDOW, count: int = 2000, batch: int = 64,
                seed: int = 0) -> tuple[float, int]:
    """(mean nats/char, characters predicted) over `count` random windows of `length`, each from a zero state."""
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = random_windows(ids, length=length, count=count, generator=generator)  # (count, length)
    device = model.head.weight.device
    total = 0.0
    with evaluating(model):
        for start in range(0, count, batch):
            logits, _ = model(to_device(inputs[start : start + batch], device))
            total += nll_sum(logits, to_device(targets[start : start + batch], device))
    return total / targets.numel(), targets.numel()


def nll_sum(logits: Tensor, targets: Tensor) -> float:
    """The summed negative log-likelihood of targets (...,) under logits (..., V), in at least float32."""
    wide = at_least_float32(logits)
    return float(F.cross_entropy(wide.reshape(-1, wide.shape[-1]), targets.reshape(-1), reduction="sum").cpu())


def summary(loss: float, characters: int, unknown: int) -> dict[str, float]:
    """The loss in nats per character, and the same as bits per character and perplexity."""
    return {"loss": loss, "bpc": loss / math.log(2), "perplexity": math.exp(loss),
            "characters": float(characters), "unknown": float(unknown)}


def checkpoint_config(model: CharLM, vocabulary: Vocabulary, **extra: Any) -> dict[str, Any]:
    """The JSON a char-LM checkpoint carries: kind, model config, vocabulary, and what the caller adds."""
    return {"kind": KIND, "model": asdict(model.config), "vocabulary": vocabulary.to_json(), **extra}


# ---------------------------------------------------------------------- configuration


@dataclass
class LMData:
    """Which text, how it is split, and how training reads it."""

    files: tuple[str, ...] = field(default=(), metadata=option(
        "UTF-8 text files (default: --dataset shakespeare)", positional="*", metavar="FILE"))
    dataset: str | None = field(default=None, metadata=option("a named dataset instead of files (known: shakespeare)"))
    seq_len: int = field(default=128, metadata=option("characters per window; gradients flow back this far"))
    batch_size: int = field(default=64, metadata=option("parallel streams", aliases=("--batch",)))
    validation: float = field(default=0.05, metadata=option(
        "fraction of the text held out for validation, taken after the training part"))
    test: float = field(default=0.05, metadata=option("fraction held out for testing, at the end"))
    eval_streams: int = field(default=16, metadata=option("validation text read as this many stateful streams"))

    def __post_init__(self) -> None:
        require_fractions(self, "validation", "test")
        require_positive(self, "seq_len", "batch_size", "eval_streams")


@dataclass
class LMModel:
    """The network's shape (`CharLMConfig` without the vocabulary size; its defaults)."""

    cell: str = field(default=CharLMConfig.cell, metadata=option("cell type", choices=tuple(CELLS)))
    layers: int = field(default=CharLMConfig.layers, metadata=option("stacked layers"))
    hidden: int = field(default=CharLMConfig.hidden, metadata=option("units per layer"))
    embedding: int = field(default=CharLMConfig.embedding, metadata=option(
        "embedding size; 0 feeds one-hot vectors as in the lecture"))
    dropout: float = field(default=CharLMConfig.dropout, metadata=option(
        "dropout between layers and before the output layer"))
    tie_weights: bool = field(default=CharLMConfig.tie_weights, metadata=option(
        "share embedding and output weights", aliases=("--tie-embeddings",)))
    input_dropout: float = field(default=CharLMConfig.input_dropout, metadata=option(
        "dropout on the embeddings"))
    variational: bool = field(default=CharLMConfig.variational, metadata=option(
        "locked dropout: one mask per stream for a whole window (Gal and Ghahramani 2016)"))
    weight_drop: float = field(default=CharLMConfig.weight_drop, metadata=option(
        "DropConnect on the recurrent weights W_hh, one mask per window (Merity et al. 2018); plain cells"))
    activation_reg: float = field(default=CharLMConfig.activation_reg, metadata=option(
        "activation regularisation: this times the mean square of the dropped last-layer outputs", metavar="ALPHA"))
    temporal_reg: float = field(default=CharLMConfig.temporal_reg, metadata=option(
        "temporal activation regularisation: this times the mean square of the outputs' step-to-step change",
        metavar="BETA"))

    def __post_init__(self) -> None:
        self.config(1)  # CharLMConfig's checks, before any text is read

    def config(self, vocab_size: int) -> CharLMConfig:
        return CharLMConfig(vocab_size=vocab_size, **asdict(self))


def _train_defaults() -> TrainConfig:
    """AdamW at peak lr 2e-3, weight decay 0.1, 100 warm-up steps, then a cosine; evaluated every 500 steps."""
    return TrainConfig(optimizer="adamw", lr=2e-3, weight_decay=0.1, schedule="cosine", warmup_steps=100,
                   clip_norm=1.0, eval_every=500, precision="auto")


class LMConfig(RunConfig):
    """Everything a language-model run is made from; saved whole in its checkpoints."""

    data: LMData = field(default_factory=LMData)
    model: LMModel = field(default_factory=LMModel)
    train: TrainConfig = field(default_factory=_train_defaults)


# ---------------------------------------------------------------------- the configured data


def read_source(data: LMData) -> tuple[str, list[str]]:
    """The text of the configured files, else of the named dataset (default shakespeare), and their names."""
    from unrolled.data import obtain, read_text

    if data.files and data.dataset:
        raise ValueError("give text files or --dataset, not both")
    paths = [Path(name) for name in data.files] or [obtain(data.dataset or "shakespeare")]
    return read_text(paths), [str(path) for path in paths]


# ---------------------------------------------------------------------- the trained model


@dataclass
class LMPredictOptions(PredictOptions):
    batch_size: int = field(default=64, metadata=option("samples drawn in one batched pass", aliases=("--batch",)))
    prime: str = field(default="", metadata=option(
        "text to start from (default: the start of a line); INPUT files give a prime each instead"))
    length: int = field(default=500, metadata=option("characters to generate"))
    temperature: float = field(default=1.0, metadata=option(
        "below 1 is more conservative, above 1 more surprising"))
    top_k: int | None = field(default=None, metadata=option(
        "draw only from the K most likely characters", metavar="K"))
    top_p: float | None = field(default=None, metadata=option(
        "draw only from the most likely characters whose probabilities sum to P (0 < P <= 1)", metavar="P"))
    greedy: bool = field(default=False, metadata=option("always take the most likely character"))
    seed: int | None = field(default=None, metadata=option("random seed, for reproducible samples"))
    num_samples: int = field(default=1, metadata=option("independent samples of each prime"))

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, "length", "num_samples", "top_k")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"--temperature must be a positive number, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"--top-p must be a fraction in (0, 1], got {self.top_p}")


@dataclass
class LMEvalOptions(EvalOptions):
    files: tuple[str, ...] = field(default=(), metadata=option(
        "more UTF-8 text files, read after DATA as one text", positional="*", metavar="FILE"))
    windows: int | None = field(default=None, metadata=option(
        f"instead, average over N random {WINDOW}-character windows, each from a zero state "
        "(as nanoGPT estimates its loss)", metavar="N"))

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, "windows")


class LanguageModel(Predictor[str, Sample]):
    """A trained `CharLM` with its vocabulary: primes in, samples out; texts in, nats per character out."""

    kind = KIND
    command = COMMAND
    what = "a character LM"
    model: CharLM

    def __init__(self, model: CharLM, vocabulary: Vocabulary, *, validation_loss: float | None = None,
                 source: dict[str, Any] | None = None, split: dict[str, Any] | None = None) -> None:
        if len(vocabulary) != model.config.vocab_size:
            raise ValueError(f"the vocabulary has {len(vocabulary)} symbols but the config says "
                             f"{model.config.vocab_size}")
        self.model, self.vocabulary = model.eval(), vocabulary
        self.validation_loss = validation_loss  # what the checkpoint scored on its validation text, if known
        self.source, self.split = source or {}, split or {}  # the `TextSource` and split of the training run

    @classmethod
    def from_config(cls, saved: dict[str, Any]) -> LanguageModel:
        config, vocabulary = saved.get("model"), saved.get("vocabulary")
        if not isinstance(config, dict) or not isinstance(vocabulary, list):
            raise KeyError("the model config or the vocabulary")
        model = CharLM(CharLMConfig.from_dict(config))
        scored = saved.get("validation", {}).get("loss")
        return cls(model, Vocabulary.from_json(vocabulary),
                   validation_loss=float(scored) if isinstance(scored, (int, float)) else None,
                   source=saved.get("data"), split=saved.get("split"))

    # ------------------------------------------------------------------ sampling

    def predict(self, inputs: Sequence[str], options: PredictOptions | None = None, *,
                on_text: Callable[[list[str]], None] | None = None) -> list[Sample]:
        """`num_samples` samples of each prime (warning where a prime reads unlike the training text).

        `on_text` receives each step's new characters, one per sample drawn in that pass.
        """
        chosen = options if isinstance(options, LMPredictOptions) else LMPredictOptions()
        results: list[Sample] = []
        for prime in inputs:
            surprise = self.prime_surprise(prime) if prime else None
            if surprise is not None:
                warnings.warn(surprise, stacklevel=2)
            for start in range(0, chosen.num_samples, chosen.batch_size):
                count = min(chosen.batch_size, chosen.num_samples - start)
                seed = None if chosen.seed is None else chosen.seed + start
                texts = self.sample(prime, chosen.length, temperature=chosen.temperature, top_k=chosen.top_k,
                                    top_p=chosen.top_p, greedy=chosen.greedy, seed=seed, num_samples=count,
                                    on_text=on_text)
                results.extend(Sample(prime, text, start + i + 1) for i, text in enumerate(texts))
        return results

    @torch.inference_mode()
    def sample(self, prime: str = "", length: int = 500, *, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, greedy: bool = False, seed: int | None = None, num_samples: int = 1,
               on_text: Callable[[list[str]], None] | None = None) -> list[str]:
        """`num_samples` continuations of `prime`, `length` characters each, drawn in one batched pass per step.

        An empty prime starts after a line break when the vocabulary has one (as if at
        the start of a line), else from a character drawn uniformly. The returned texts
        include the prime. `on_text` receives the N new characters of each step, for
        streaming.
        """
        vocabulary = self.vocabulary
        if length < 1:
            raise ValueError(f"length must be a positive number of characters, got {length}")
        if num_samples < 1:
            raise ValueError(f"the number of samples must be positive, got {num_samples}")
        unseen = vocabulary.unknown_characters(prime)
        if unseen:
            shown = ", ".join(repr(c) for c in sorted(unseen)[:10])
            raise ValueError(f"the prime text has characters the model never saw in training: {shown}; "
                             f"remove or replace them")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        shown_prime, start = prime, prime
        if not prime:
            if "\n" in vocabulary.to_json():
                start = "\n"
            else:
                pick = int(torch.randint(1, len(vocabulary), (1,), generator=generator))
                start = shown_prime = vocabulary.decode([pick])
        with evaluating(self.model):
            tokens = to_device(vocabulary.encode(start), self.device)[None]  # (1, P)
            log_probs, state = self.model.prime(tokens)
            index = torch.zeros(num_samples, dtype=torch.long, device=self.device)
            log_probs, state = log_probs.index_select(0, index), self.model.reorder(state, index)  # N copies
            on_step = None
            if on_text is not None:
                callback = on_text

                def on_step(new: Tensor) -> None:
                    callback([vocabulary.decode([int(t)]) for t in new.cpu().tolist()])

            drawn = decoding.sample(self.model, log_probs, state, length=length, temperature=temperature,
                                    top_k=top_k, top_p=top_p, greedy=greedy, generator=generator, on_step=on_step)
        return [shown_prime + vocabulary.decode(row) for row in drawn.cpu().tolist()]

    def prime_surprise(self, prime: str) -> str | None:
        """A one-line warning when `prime` reads unlike the training text, else None.

        The prime's loss l_p (nats per character after its first, read from the
        start state, as `sample` reads it) is set against the validation loss l_v
        the checkpoint recorded: the warning comes when l_p > max(2 l_v, l_v +
        PRIME_MARGIN). Measured on the demo's 2 x 256 model (l_v 1.65): primes the
        corpus uses score 1.7 to 2.2 ("KING HENRY.\\n" 1.85, "MACBETH.\\n" 2.14),
        "Romeo.\\n" (one play's form) 3.5; forms it never uses score more ("JULIET:"
        3.9, "ROMEO:" 5.1, "def main():" 5.1), and samples after them start with
        garbage. Needs at least 4 characters and a recorded l_v.
        """
        if self.validation_loss is None or len(prime) < PRIME_MIN_CHARACTERS:
            return None
        if self.vocabulary.unknown_characters(prime):
            return None  # `sample` says what is wrong with those
        loss = self.evaluate_stream(prime)["loss"]
        limit = max(2.0 * self.validation_loss, self.validation_loss + PRIME_MARGIN)
        if loss <= limit:
            return None
        return (f"the prime reads unlike the training text ({loss:.2f} nats/char, against {self.validation_loss:.2f} "
                f"on its validation text): the sample may start with garbage; prime with text in the corpus's own "
                f"form (a line, a speaker's name as the text writes it)")

    # ------------------------------------------------------------------ scoring

    def evaluate(self, data: str | Tensor, options: EvalOptions | None = None) -> dict[str, Any]:
        """Loss (nats/char), bpc, perplexity, characters predicted and unknown (characters never seen in training).

        The text is read as one stateful stream (exact), or with ``--windows N`` as N
        random windows of 256 characters, each from a zero state (nanoGPT's estimate).
        """
        chosen = options if isinstance(options, LMEvalOptions) else LMEvalOptions()
        if chosen.windows is not None:
            return self.evaluate_windows(data, count=chosen.windows, batch=chosen.batch_size)
        return self.evaluate_stream(data)

    def evaluate_stream(self, text: str | Tensor, *, streams: int = 1) -> dict[str, float]:
        """The `evaluate` figures of a text read as `streams` stateful streams (1: the whole text as one, exact)."""
        ids, unknown = self.ids_of(text)
        loss, used = stream_loss(self.model, ids, streams=streams)
        return summary(loss, used, unknown)

    def evaluate_windows(self, text: str | Tensor, *, length: int = WINDOW, count: int = 2000, batch: int = 64,
                         seed: int = 0) -> dict[str, float]:
        """The `evaluate` figures as nanoGPT estimates them: `count` random windows of `length`, each from zero."""
        ids, unknown = self.ids_of(text)
        loss, used = window_loss(self.model, ids, length=length, count=count, batch=batch, seed=seed)
        return summary(loss, used, unknown)

    def ids_of(self, text: str | Tensor) -> tuple[Tensor, int]:
        """Ids (N,) of a text and how many of its characters the vocabulary lacks."""
        if isinstance(text, Tensor):
            return text, 0
        unknown = self.vocabulary.unknown_characters(text)
        return self.vocabulary.encode(text), sum(text.count(c) for c in unknown)


# ---------------------------------------------------------------------- training


def fit(config: LMConfig, out: str | os.PathLike[str], *, resume: bool = False, text: str | None = None,
        source: list[str] | None = None) -> TrainResult:
    """Train a `CharLM` as `config` says into the run folder `out` (or resume the run there).

    The text is read from ``config.data`` unless given (`text`, named by `source`,
    default the configured files or dataset). It is split by `split_text` (train,
    validation, test in that order); the vocabulary is the training part's
    characters. On resume, the model config, vocabulary, split and batching come
    from the run's last checkpoint, and the text must be the one the run started with.
    """
    from unrolled.training import Trainer

    data_config = config.data
    if text is None:
        text, names = read_source(data_config)
    else:
        names = source or list(data_config.files) or [data_config.dataset or "<text>"]
    origin = TextSource.of(text, names)
    batch_size, seq_len = data_config.batch_size, data_config.seq_len
    saved = None
    if resume and (Path(out) / "last").exists():
        saved = load_checkpoint(Path(out) / "last", kind=KIND).config
    if saved is not None:
        recorded = saved.get("data", {}).get("fingerprint")
        if recorded is not None and recorded != origin.fingerprint:
            raise ValueError(f"{out} was trained on another text ({', '.join(saved['data'].get('names', []))}, "
                             f"{saved['data'].get('characters')} characters); resume with the same files")
        split = {k: tuple(v) for k, v in saved["split"].items()}
        vocabulary = Vocabulary.from_json(saved["vocabulary"])
        shape = CharLMConfig.from_dict(saved["model"])
        batching = saved.get("batching", {})
        batch_size, seq_len = batching.get("batch_size", batch_size), batching.get("seq_len", seq_len)
    else:
        split = split_text(text, validation=data_config.validation, test=data_config.test)
        vocabulary = Vocabulary.from_text(text[slice(*split["train"])])
        shape = config.model.config(len(vocabulary))
    train_config = config.train
    torch.manual_seed(train_config.seed)
    lm = CharLM(shape)
    ids = vocabulary.encode(text)
    batches = TextStreams(ids[slice(*split["train"])], batch_size=batch_size, seq_len=seq_len)
    extra = {"split": {k: list(v) for k, v in split.items()}, "data": asdict(origin),
             "batching": {"batch_size": batch_size, "seq_len": seq_len}}
    extra.update(config.checkpoint_entry(saved))
    trainer = Trainer(lm, batches, train_config, out, evaluate=_evaluator(ids[slice(*split["validation"])],
                                                                          data_config.eval_streams),
                      checkpoint_config=checkpoint_config(lm, vocabulary, **extra))
    return trainer.fit(resume=resume)


def _evaluator(ids: Tensor, eval_streams: int) -> Callable[[nn.Module], dict[str, float]] | None:
    """The validation loss of the model in training (on its device), or None without a validation text."""
    if len(ids) <= 1:
        return None
    streams = max(1, min(eval_streams, (len(ids) - 1) // 2))

    def evaluate(module: nn.Module) -> dict[str, float]:
        assert isinstance(module, CharLM)
        loss, used = stream_loss(module, ids, streams=streams)
        return summary(loss, used, 0)

    return evaluate


# ---------------------------------------------------------------------- the command line


def read_inputs(paths: list[str], options: LMPredictOptions) -> list[str]:
    """The primes: --prime (default: none), or the whole text of each INPUT file (-: standard input)."""
    from unrolled.data import read_text

    if not paths:
        return [options.prime]
    if options.prime:
        raise ValueError("give --prime or INPUT files of primes, not both")
    return [sys.stdin.read() if path == "-" else read_text([Path(path)]) for path in paths]


def show(result: Sample) -> str:
    return f"--- sample {result.number} ---\n{result.text}"


def stream(model: LanguageModel, primes: list[str], options: LMPredictOptions, out: TextIO) -> None:
    """One sample of a prime: the prime, then each character as it is drawn; several: each after its heading."""
    if options.num_samples > 1:
        for result in model.predict(primes, options):
            print(show(result), file=out)
        return

    def write(pieces: list[str]) -> None:
        out.write(pieces[0])
        out.flush()

    for prime in primes:
        out.write(prime)
        model.predict([prime], options, on_text=write)
        out.write("\n")


def read_eval(model: LanguageModel, path: str | None, options: LMEvalOptions) -> str:
    """The text of DATA and the FILEs after it, or the run's recorded part of its training text (--split)."""
    from unrolled.data import read_text

    paths = [Path(name) for name in (path, *options.files) if name]
    if not paths and options.split == "all":
        raise ValueError("no text: give text files to evaluate on, or --split validation for the run's own")
    text = read_text(paths) if paths else None
    if options.split == "all":
        assert text is not None
        return text
    return recorded_part(model.source, model.split, options.split, "the run", text)


def report(metrics: dict[str, Any], model: LanguageModel, options: LMEvalOptions, run: Path) -> str:
    unknown = f" ({int(metrics['unknown'])} unseen in training)" if metrics["unknown"] else ""
    return (f"loss {metrics['loss']:.4f} nats/char, {metrics['bpc']:.4f} bits/char, "
            f"perplexity {metrics['perplexity']:.3f}, over {int(metrics['characters'])} characters{unknown}")


APP = Application(
    name="lm", summary="character-level language model",
    config=LMConfig, fit=fit, predictor=LanguageModel, predict_options=LMPredictOptions,
    eval_options=LMEvalOptions, read_inputs=read_inputs, show=show, read_eval=read_eval, report=report,
    stream=stream, aliases={"predict": ("sample",)},
    input_help="files whose text is each a prime (- : standard input); none: --prime",
    data_help="UTF-8 text file (none: the run's own text, with --split)")
