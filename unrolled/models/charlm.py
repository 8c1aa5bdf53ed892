r"""The character-level language model: the lecture's "h,e,l,l,o", made large.

Characters are ids :math:`x_1 \dots x_T` of a vocabulary of V symbols (id 0 is
the unknown character). The model reads them one at a time and at every step
predicts the next:

.. math::
    e_t &= E[x_t]                                  &&\text{an embedding row (E), or one-hot (V) as in the lecture}\\
    h^{(1)}_t, \dots, h^{(L)}_t &= \mathrm{Recurrent}(e_t, \text{state}_{t-1})
                                                   &&\text{L stacked cells (LSTM, GRU or RNN), dropout between layers}\\
    p(x_{t+1} \mid x_{\le t}) &= \mathrm{softmax}(W_{hy}\, \mathrm{dropout}(h^{(L)}_t) + b_y)
                                                   &&\text{(V), } W_{hy} = E \text{ when the weights are tied}

and is trained on the cross-entropy of every prediction,
:math:`\mathcal{L} = -\frac{1}{BT} \sum_{b,t} \log p(x_{b,t+1} \mid x_{b,\le t})`,
in nats per character; bits per character are :math:`\mathcal{L} / \ln 2` and the
perplexity :math:`e^{\mathcal{L}}`.

Training reads the text as B parallel streams in consecutive windows of T
characters (`TextStreams`); the state left by one window starts the next and is
detached, so gradients flow back at most T steps (truncated backpropagation
through time, as char-rnn). Generation goes through `unrolled.decoding` with
`step(tokens, state) -> (log_probs, state)`: one step of every cell for N
streams at once.

Shapes: inputs and targets (B, T) int64; logits (B, T, V); the layer state is
torch's, h (L, B, H) or (h, c); the decoding state is a tuple of L cell states
(h (N, H), or (h, c)).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled import decoding
from unrolled.cells import CELLS, State
from unrolled.checkpoint import CheckpointError, load_checkpoint, load_model_state, resolve_checkpoint
from unrolled.data.text import StreamBatches, Vocabulary, random_windows, split_text
from unrolled.products import affine, onednn_for
from unrolled.recurrent import LayerState, Recurrent, at_least_float32, cell_state, map_state

KIND = "char-lm"
PRIME_MARGIN = 2.0  # nats/char above the validation loss before a prime counts as unlike the training text
PRIME_MIN_CHARACTERS = 4
EVAL_CHUNK = 4096  # characters per forward pass when evaluating a stream (the state is carried across chunks)

DecodeState = tuple[State, ...]  # one cell state per layer


@dataclass
class CharLMConfig:
    """The model's shape. `embedding=0` feeds one-hot vectors (the lecture's form) instead of an embedding."""

    vocab_size: int
    cell: str = "lstm"
    layers: int = 2
    hidden: int = 512
    embedding: int = 64
    dropout: float = 0.2
    tie_weights: bool = False
    cell_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        for name in ("vocab_size", "layers", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.embedding < 0:
            raise ValueError(f"embedding must be 0 (one-hot input) or a positive size, got {self.embedding}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.tie_weights and self.embedding != self.hidden:
            raise ValueError(f"tied weights need the embedding size to equal the hidden size, "
                             f"got embedding {self.embedding} and hidden {self.hidden}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CharLMConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CheckpointError(f"the model config has unknown keys {unknown}; was it written by a newer unrolled?")
        return cls(**values)


class Carry:
    """The hidden state handed from one training window to the next (None: start from zeros)."""

    def __init__(self) -> None:
        self.state: LayerState | None = None


@dataclass
class StreamWindow:
    """One training batch of `TextStreams`: inputs and targets (B, T), and the carried state."""

    inputs: Tensor
    targets: Tensor
    carry: Carry


class TextStreams:
    """A text as B parallel streams of consecutive windows, for the trainer (its `TrainData`).

    Window k of an epoch is `StreamBatches`' window k; the carried state starts
    each epoch at zero. `shard(rank, world)` gives a process its B/world streams
    of every window, so the processes together compute the global batch.
    """

    def __init__(self, ids: Tensor, *, batch_size: int, seq_len: int) -> None:
        self.windows = StreamBatches(ids, batch_size=batch_size, seq_len=seq_len)
        self.rows = slice(0, batch_size)
        self.carry = Carry()

    def __len__(self) -> int:
        return len(self.windows)

    def batches(self, epoch: int, start: int) -> Iterator[StreamWindow]:
        if start == 0:
            self.carry.state = None
        for k in range(start, len(self.windows)):
            inputs, targets = self.windows[k]  # (B, T) each
            yield StreamWindow(inputs[self.rows], targets[self.rows], self.carry)

    def shard(self, rank: int, world: int) -> TextStreams:
        batch = self.windows.batch_size
        if batch % world:
            raise ValueError(f"a batch of {batch} streams cannot be split evenly over {world} processes; "
                             f"choose --batch as a multiple of {world}")
        share = batch // world
        part = TextStreams.__new__(TextStreams)
        part.windows, part.rows, part.carry = self.windows, slice(rank * share, (rank + 1) * share), Carry()
        return part

    def state_dict(self) -> dict[str, Any]:
        state = self.carry.state
        return {"carry": None if state is None else list(state) if isinstance(state, tuple) else [state]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        parts = state.get("carry")
        self.carry.state = None if parts is None else tuple(parts) if len(parts) == 2 else parts[0]


class CharLM(nn.Module):
    """Embedding (or one-hot) -> `Recurrent` -> linear, predicting the next character.

    Trainer: `loss(batch)`. Decoding: `step`, `reorder`, `prime`. Users:
    `CharLM.load(run)`, `sample(...)`, `evaluate(text)`.
    """

    def __init__(self, config: CharLMConfig, vocabulary: Vocabulary | None = None) -> None:
        super().__init__()
        if vocabulary is not None and len(vocabulary) != config.vocab_size:
            raise ValueError(f"the vocabulary has {len(vocabulary)} symbols but the config says {config.vocab_size}")
        self.config, self.vocabulary = config, vocabulary
        self.validation_loss: float | None = None  # what the checkpoint scored on its validation text, if known
        width = config.embedding or config.vocab_size
        self.embedding = nn.Embedding(config.vocab_size, config.embedding) if config.embedding else None
        self.rnn = Recurrent(config.cell, width, config.hidden, config.layers, dropout=config.dropout,
                             batch_first=True, **config.cell_options)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, config.vocab_size)
        if config.tie_weights:
            assert self.embedding is not None
            self.head.weight = self.embedding.weight

    # ------------------------------------------------------------------ the function

    def embed(self, tokens: Tensor) -> Tensor:
        """e = E[x] (..., E), or the one-hot vector (..., V)."""
        if self.embedding is None:
            return F.one_hot(tokens, self.config.vocab_size).to(self.head.weight.dtype)
        return self.embedding(tokens)

    def forward(self, inputs: Tensor, state: LayerState | None = None) -> tuple[Tensor, LayerState]:
        """Logits (B, T, V) for inputs (B, T), and the state after the last character."""
        out, state = self.rnn(self.embed(inputs), state)  # (B, T, H)
        return self.head(self.drop(out)), state

    def loss(self, batch: StreamWindow | tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Mean cross-entropy in nats per character over the batch; a `StreamWindow` carries its state on."""
        if isinstance(batch, StreamWindow):
            inputs, targets, carry = batch.inputs, batch.targets, batch.carry
        else:
            (inputs, targets), carry = batch, None
        logits, state = self(inputs, carry.state if carry is not None else None)
        if carry is not None:
            carry.state = map_state(state, _detached_float)
        wide = at_least_float32(logits)  # bf16 training: the loss in float32
        loss = F.cross_entropy(wide.reshape(-1, wide.shape[-1]), targets.reshape(-1))
        return loss, {"tokens": float(targets.numel())}

    # ------------------------------------------------------------------ decoding interface

    def prime(self, tokens: Tensor) -> tuple[Tensor, DecodeState]:
        """Read prime tokens (N, P), P >= 1, in one pass: log-probs of the next token (N, V) and the state."""
        logits, state = self(tokens)
        cells = tuple(cell_state(state, i) for i in range(len(self.rnn.cells)))
        return F.log_softmax(logits[:, -1].float(), dim=-1), cells

    def step(self, tokens: Tensor, state: DecodeState) -> tuple[Tensor, DecodeState]:
        """One character for N streams: tokens (N,) -> log-probs (N, V), stepping each cell once."""
        x = self.embed(tokens)  # (N, E)
        fast = onednn_for(x) is not None and not torch.is_grad_enabled()
        new: list[State] = []
        for index, before in enumerate(state):
            cell = self.rnn.cell(index)
            xw = cell.project(x)  # (N, G*H)
            x, after, _ = cell.step(xw, before, product=_fast_product) if fast else cell.step(xw, before)
            new.append(after)
        return F.log_softmax(self.head(x).float(), dim=-1), tuple(new)

    def reorder(self, state: DecodeState, index: Tensor) -> DecodeState:
        """The states of streams `index` (M,)."""
        return tuple(map_state(s, lambda part: part.index_select(0, index)) for s in state)

    # ------------------------------------------------------------------ for users

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, map_location: str = "cpu") -> CharLM:
        """A trained model from a run folder (its best checkpoint, else its last) or a checkpoint folder."""
        checkpoint = load_checkpoint(resolve_checkpoint(path, command="unrolled lm train"), kind=KIND)
        config, vocabulary = checkpoint.config.get("model"), checkpoint.config.get("vocabulary")
        if not isinstance(config, dict) or not isinstance(vocabulary, list):
            raise CheckpointError(f"{path}: config.json lacks the model config or the vocabulary")
        model = cls(CharLMConfig.from_dict(config), Vocabulary.from_json(vocabulary))
        load_model_state(model, checkpoint.model_state, path)
        scored = checkpoint.config.get("validation", {}).get("loss")
        model.validation_loss = float(scored) if isinstance(scored, (int, float)) else None
        return model.to(map_location).eval()

    def prime_surprise(self, prime: str) -> str | None:
        """A one-line warning when `prime` reads unlike the training text, else None.

        The prime's loss l_p (nats per character after its first, read from the
        start state, as `sample` reads it) is set against the validation loss l_v
        the checkpoint recorded: the warning comes when l_p > max(2 l_v, l_v +
        PRIME_MARGIN). Measured on the demo's 2 x 256 model (l_v 1.65): primes the
        corpus uses score 1.7 to 2.2 ("KING HENRY.\n" 1.85, "MACBETH.\n" 2.14),
        "Romeo.\n" (one play's form) 3.5; forms it never uses score more ("JULIET:"
        3.9, "ROMEO:" 5.1, "def main():" 5.1), and samples after them start with
        garbage. Needs at least 4 characters and a recorded l_v.
        """
        if self.validation_loss is None or len(prime) < PRIME_MIN_CHARACTERS:
            return None
        if self.require_vocabulary().unknown_characters(prime):
            return None  # `sample` says what is wrong with those
        loss = self.evaluate(prime)["loss"]
        limit = max(2.0 * self.validation_loss, self.validation_loss + PRIME_MARGIN)
        if loss <= limit:
            return None
        return (f"the prime reads unlike the training text ({loss:.2f} nats/char, against {self.validation_loss:.2f} "
                f"on its validation text): the sample may start with garbage; prime with text in the corpus's own "
                f"form (a line, a speaker's name as the text writes it)")

    def require_vocabulary(self) -> Vocabulary:
        if self.vocabulary is None:
            raise ValueError("this model has no vocabulary; pass one to CharLM(config, vocabulary)")
        return self.vocabulary

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
        vocabulary = self.require_vocabulary()
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
        was_training = self.training
        self.eval()
        try:
            device = self.head.weight.device
            tokens = vocabulary.encode(start).to(device)[None]  # (1, P)
            log_probs, state = self.prime(tokens)
            index = torch.zeros(num_samples, dtype=torch.long, device=device)
            log_probs, state = log_probs.index_select(0, index), self.reorder(state, index)  # N copies
            on_step = None
            if on_text is not None:
                callback = on_text

                def on_step(new: Tensor) -> None:
                    callback([vocabulary.decode([int(t)]) for t in new.tolist()])

            drawn = decoding.sample(self, log_probs, state, length=length, temperature=temperature, top_k=top_k,
                                    top_p=top_p, greedy=greedy, generator=generator, on_step=on_step)
        finally:
            self.train(was_training)
        return [shown_prime + vocabulary.decode(row) for row in drawn.tolist()]

    @torch.inference_mode()
    def evaluate(self, text: str | Tensor, *, streams: int = 1) -> dict[str, float]:
        """Loss on a text read as `streams` stateful streams (1: the whole text as one stream, exact).

        Returns loss (nats/char), bpc (bits/char), perplexity, characters (the
        number predicted) and unknown (characters of the text never seen in
        training, predicted as the unknown symbol).
        """
        ids, unknown = self.ids_of(text)
        if streams < 1:
            raise ValueError(f"streams must be positive, got {streams}")
        length = (len(ids) - 1) // streams  # predictions per stream
        if length < 1:
            raise ValueError(f"a text of {len(ids)} characters is too short to evaluate on {streams} stream(s); "
                             f"it needs at least {streams + 1}")
        device = self.head.weight.device
        was_training = self.training
        self.eval()
        try:
            used = streams * length
            inputs = ids[:used].view(streams, length).to(device)  # (S, L)
            targets = ids[1 : used + 1].view(streams, length).to(device)
            total, state = 0.0, None
            for start in range(0, length, EVAL_CHUNK):
                logits, state = self(inputs[:, start : start + EVAL_CHUNK], state)
                chunk = targets[:, start : start + EVAL_CHUNK]
                total += nll_sum(logits, chunk)
        finally:
            self.train(was_training)
        return summary(total / used, used, unknown)

    @torch.inference_mode()
    def evaluate_windows(self, text: str | Tensor, *, length: int = 256, count: int = 2000, batch: int = 64,
                         seed: int = 0) -> dict[str, float]:
        """Loss as nanoGPT estimates it: `count` random windows of `length`, each from a zero state."""
        ids, unknown = self.ids_of(text)
        generator = torch.Generator().manual_seed(seed)
        inputs, targets = random_windows(ids, length=length, count=count, generator=generator)  # (count, length)
        device = self.head.weight.device
        was_training = self.training
        self.eval()
        try:
            total = 0.0
            for start in range(0, count, batch):
                logits, _ = self(inputs[start : start + batch].to(device))
                chunk = targets[start : start + batch].to(device)
                total += nll_sum(logits, chunk)
        finally:
            self.train(was_training)
        return summary(total / targets.numel(), targets.numel(), unknown)

    def ids_of(self, text: str | Tensor) -> tuple[Tensor, int]:
        """Ids (N,) of a text and how many of its characters the vocabulary lacks."""
        if isinstance(text, Tensor):
            return text, 0
        vocabulary = self.require_vocabulary()
        unknown = vocabulary.unknown_characters(text)
        return vocabulary.encode(text), sum(text.count(c) for c in unknown)


def _detached_float(tensor: Tensor) -> Tensor:
    """A carried state tensor cut from the graph and kept in float32 (bf16 training returns bf16 states)."""
    return at_least_float32(tensor.detach())


def nll_sum(logits: Tensor, targets: Tensor) -> float:
    """The summed negative log-likelihood of targets (...,) under logits (..., V), in at least float32."""
    wide = at_least_float32(logits)
    return float(F.cross_entropy(wide.reshape(-1, wide.shape[-1]), targets.reshape(-1), reduction="sum"))


def summary(loss: float, characters: int, unknown: int) -> dict[str, float]:
    """The loss in nats per character, and the same as bits per character and perplexity."""
    return {"loss": loss, "bpc": loss / math.log(2), "perplexity": math.exp(loss),
            "characters": float(characters), "unknown": float(unknown)}


def _fast_product(name: str, h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """h W^T + b through oneDNN (what `Recurrent` uses for these shapes), outside autograd."""
    return affine(h, weight, bias)


def checkpoint_config(model: CharLM, **extra: Any) -> dict[str, Any]:
    """The JSON a char-LM checkpoint carries: kind, model config, vocabulary, and what the caller adds."""
    return {"kind": KIND, "model": asdict(model.config), "vocabulary": model.require_vocabulary().to_json(), **extra}


# ---------------------------------------------------------------------- the application: train on a text


@dataclass
class TextSource:
    """Where a training text came from, recorded in the checkpoint so that a resume can check it is the same."""

    names: list[str]
    characters: int
    fingerprint: str  # sha256 of the UTF-8 text

    @classmethod
    def of(cls, text: str, names: list[str]) -> TextSource:
        return cls(names, len(text), hashlib.sha256(text.encode("utf-8")).hexdigest())


def fit(text: str, out: str | os.PathLike[str], *, model: CharLMConfig | dict[str, Any] | None = None,
        train: Any = None, batch_size: int = 64, seq_len: int = 128, validation: float = 0.05, test: float = 0.05,
        eval_streams: int = 16, source: list[str] | None = None, resume: bool = False) -> Any:
    """Train a `CharLM` on `text` into the run folder `out` (or resume the run there); returns the `TrainResult`.

    The text is split by `split_text` (train, validation, test in that order); the
    vocabulary is the training part's characters. `model` gives the model's shape
    (a `CharLMConfig`, or a dict of its fields without `vocab_size`); `train` is a
    `unrolled.training.TrainConfig`. On resume, the model config, vocabulary and
    split come from the run's last checkpoint, and the text must be the one the run
    started with.
    """
    from unrolled.training import TrainConfig, Trainer

    train_config = train if train is not None else TrainConfig()
    origin = TextSource.of(text, source or ["<text>"])
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
            config = CharLMConfig.from_dict(saved["model"])
            batching = saved.get("batching", {})
            batch_size, seq_len = batching.get("batch_size", batch_size), batching.get("seq_len", seq_len)
    if saved is None:
        split = split_text(text, validation=validation, test=test)
        vocabulary = Vocabulary.from_text(text[slice(*split["train"])])
        shape = asdict(model) if isinstance(model, CharLMConfig) else dict(model or {})
        shape["vocab_size"] = len(vocabulary)
        config = CharLMConfig.from_dict(shape)
    torch.manual_seed(train_config.seed)
    lm = CharLM(config, vocabulary)
    ids = vocabulary.encode(text)
    data = TextStreams(ids[slice(*split["train"])], batch_size=batch_size, seq_len=seq_len)
    validation_ids = ids[slice(*split["validation"])]
    evaluate = None
    if len(validation_ids) > 1:
        streams = max(1, min(eval_streams, (len(validation_ids) - 1) // 2))

        def evaluate(module: nn.Module) -> dict[str, float]:
            assert isinstance(module, CharLM)
            return module.evaluate(validation_ids, streams=streams)

    extra = {"split": {k: list(v) for k, v in split.items()}, "data": asdict(origin),
             "batching": {"batch_size": batch_size, "seq_len": seq_len}}
    trainer = Trainer(lm, data, train_config, out, evaluate=evaluate, checkpoint_config=checkpoint_config(lm, **extra))
    return trainer.fit(resume=resume)
