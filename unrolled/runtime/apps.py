"""The applications' predictors over an exported folder: ONNX Runtime for the graphs, NumPy for the rest.

Each has the application predictor's ``predict(inputs, options)`` and returns
results with the same fields (`Sample`, `Label`, `Tagged`, `Translations`), so
the command line prints them alike. ``options`` is the application's own
predict options (any object with those attributes) or a dict; what is not
given takes the application's default.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from unrolled.apps.results import Label, Sample, Tagged, Translation, Translations
from unrolled.runtime import decode
from unrolled.runtime.bundle import Bundle
from unrolled.runtime.graph import Graph, option
from unrolled.runtime.speech import Transcriber
from unrolled.runtime.text import BOS_ID, EOS_ID, Characters, Side, Tokens
from unrolled.runtime.vision import Captioner, Reader, VideoLabeller
from unrolled.tokens import PAD_ID, UNK_ID, tokenize, warn_reading

NEVER = float("nan")


def padded(sequences: list[list[int]], min_steps: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """ids (B, T) int64 padded with `PAD_ID` to the longest (and at least `min_steps`), and lengths (B,)."""
    lengths = np.array([len(row) for row in sequences], dtype=np.int64)
    ids = np.full((len(sequences), max(int(lengths.max()), min_steps)), PAD_ID, dtype=np.int64)
    for b, row in enumerate(sequences):
        ids[b, : len(row)] = row
    return ids, lengths


# ---------------------------------------------------------------------- lm


class LanguageModel:
    """The char LM: primes in, samples out (`unrolled.apps.lm.LanguageModel.predict`)."""

    def __init__(self, bundle: Bundle, threads: int | None = None) -> None:
        settings = bundle.settings
        self.vocabulary = Characters(settings["vocabulary"])
        self.states: list[str] = settings["states"]
        self.hidden = int(settings["hidden"])
        self.graph = Graph(bundle, "step", threads)

    def step(self, tokens: np.ndarray, state: decode.State) -> tuple[np.ndarray, decode.State]:
        out = self.graph(tokens=tokens.astype(np.int64), **state)
        return out["log_probs"], {name: out[f"{name}_next"] for name in self.states}

    def prime(self, ids: list[int]) -> tuple[np.ndarray, decode.State]:
        """Read the prime one character at a time from the zero state: the next log-probs (1, V) and the state."""
        state = {name: np.zeros((1, self.hidden), dtype=np.float32) for name in self.states}
        log_probs = np.zeros((1, len(self.vocabulary)), dtype=np.float32)
        for token in ids:
            log_probs, state = self.step(np.array([token]), state)
        return log_probs, state

    def predict(self, inputs: Sequence[str], options: Any = None) -> list[Sample]:
        count, batch = option(options, "num_samples", 1), option(options, "batch_size", 64)
        seed = option(options, "seed", None)
        results: list[Sample] = []
        for prime in inputs:
            for start in range(0, count, batch):
                texts = self.sample(prime, option(options, "length", 500), num_samples=min(batch, count - start),
                                    temperature=option(options, "temperature", 1.0),
                                    top_k=option(options, "top_k", None), top_p=option(options, "top_p", None),
                                    greedy=option(options, "greedy", False),
                                    seed=None if seed is None else seed + start)
                results.extend(Sample(prime, text, start + i + 1) for i, text in enumerate(texts))
        return results

    def sample(self, prime: str = "", length: int = 500, *, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, greedy: bool = False, seed: int | None = None,
               num_samples: int = 1) -> list[str]:
        """`num_samples` continuations of `prime` (included), `length` characters each."""
        if length < 1 or num_samples < 1:
            raise ValueError(f"length and the number of samples must be positive, got {length} and {num_samples}")
        unseen = self.vocabulary.unknown(prime)
        if unseen:
            shown = ", ".join(repr(c) for c in sorted(unseen)[:10])
            raise ValueError(f"the prime text has characters the model never saw in training: {shown}; "
                             "remove or replace them")
        rng = np.random.default_rng(seed)
        shown_prime, start = prime, prime
        if not prime:
            if "\n" in self.vocabulary.ids:
                start = "\n"
            else:
                start = shown_prime = self.vocabulary.decode([int(rng.integers(1, len(self.vocabulary)))])
        log_probs, state = self.prime(self.vocabulary.encode(start))
        rows = np.zeros(num_samples, dtype=np.int64)
        drawn = decode.sample(self.step, log_probs[rows], decode.reorder(state, rows), length=length,
                              temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy, rng=rng)
        return [shown_prime + self.vocabulary.decode(row) for row in drawn.tolist()]


# ---------------------------------------------------------------------- classify


class TextClassifier:
    """The classifier: texts in, labels and probabilities out (`unrolled.apps.classify.TextClassifier`)."""

    def __init__(self, bundle: Bundle, threads: int | None = None) -> None:
        encoding = bundle.settings["encoding"]
        self.tokens, self.max_len = str(encoding["tokens"]), int(encoding["max_len"])
        self.vocabulary = Tokens(encoding["vocabulary"])
        self.labels: list[str] = bundle.settings["labels"]
        self.min_steps = int(bundle.settings.get("min_steps", 1))
        self.graph = Graph(bundle, "model", threads)

    def encode(self, texts: list[str]) -> list[list[int]]:
        sequences, cut = [], 0
        for text in texts:
            tokens = tokenize(text, self.tokens)
            cut += len(tokens) > self.max_len
            sequences.append(self.vocabulary.encode(tokens[: self.max_len]) or [UNK_ID])
        if cut:
            warnings.warn(f"{cut} of {len(texts)} texts were longer than {self.max_len} tokens and were cut to that "
                          "length (raise --max-len to keep more)", stacklevel=3)
        return sequences

    def probabilities(self, texts: list[str], *, batch_size: int = 256) -> np.ndarray:
        """p(label | text) (N, C), batched longest first, in input order."""
        sequences = self.encode(texts)
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
        result = np.zeros((len(sequences), len(self.labels)), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            ids, lengths = padded([sequences[i] for i in chunk], self.min_steps)
            result[chunk] = self.graph(ids=ids, lengths=lengths)["probabilities"]
        return result

    def predict(self, inputs: Sequence[str], options: Any = None) -> list[Label]:
        rows = self.probabilities(list(inputs), batch_size=option(options, "batch_size", 256)).tolist()
        results = []
        for text, row in zip(inputs, rows, strict=True):
            best = max(range(len(row)), key=row.__getitem__)
            results.append(Label(text, self.labels[best], row[best], dict(zip(self.labels, row, strict=True))))
        return results


# ---------------------------------------------------------------------- tag


class SequenceTagger:
    """The tagger: lines in, a tag per token out (`unrolled.apps.tag.SequenceTagger`, the plain task)."""

    def __init__(self, bundle: Bundle, threads: int | None = None) -> None:
        encoding = bundle.settings["encoding"]
        if bundle.settings.get("task", "plain") != "plain":
            raise ValueError("the runtime tags plain lines; this export is of the restore task")
        self.lowercase, self.max_len = bool(encoding["lowercase"]), int(encoding["max_len"])
        self.vocabulary = Tokens(encoding["vocabulary"])
        characters = encoding.get("characters")
        self.characters = None if characters is None else Tokens(characters)
        self.min_char_steps = int(bundle.settings.get("min_char_steps", 1))
        self.tags: list[str] = bundle.settings["tags"]
        self.graph = Graph(bundle, "model", threads)

    def char_table(self, pieces: list[list[str]], steps: int) -> np.ndarray:
        """The character ids of every word, (B, T, W) padded with `PAD_ID` (`unrolled.data.labelled.make_batch`)."""
        assert self.characters is not None
        words = [[self.characters.encode(list(word)) for word in piece] or [[UNK_ID]] for piece in pieces]
        width = max([self.min_char_steps, *(len(word) for row in words for word in row)])
        table = np.full((len(pieces), steps, width), PAD_ID, dtype=np.int64)
        for b, row in enumerate(words):
            for t, word in enumerate(row):
                table[b, t, : len(word)] = word
        return table

    def tag(self, sentences: list[list[str]], *, batch_size: int = 128) -> list[list[str]]:
        """The tag of every token; a sentence longer than max_len is tagged in pieces of max_len tokens."""
        pieces, owner = [], []
        for k, tokens in enumerate(sentences):
            for start in range(0, max(len(tokens), 1), self.max_len):
                pieces.append(tokens[start : start + self.max_len])
                owner.append(k)
        pieces = [[t.lower() if self.lowercase else t for t in piece] for piece in pieces]
        words = [self.vocabulary.encode(piece) or [UNK_ID] for piece in pieces]
        result: list[list[str]] = [[] for _ in sentences]
        for start in range(0, len(words), batch_size):
            ids, lengths = padded(words[start : start + batch_size])
            feeds = {"ids": ids, "lengths": lengths}
            if self.characters is not None:
                feeds["chars"] = self.char_table(pieces[start : start + batch_size], ids.shape[1])
            best = self.graph(**feeds)["logits"].argmax(-1)  # (B, T)
            for offset, row in enumerate(best.tolist()):
                index = start + offset
                result[owner[index]].extend(self.tags[i] for i in row[: len(pieces[index])])
        return result

    def predict(self, inputs: Sequence[str], options: Any = None) -> list[Tagged]:
        token_lists = [line.split() for line in inputs]
        tag_lists = self.tag(token_lists, batch_size=option(options, "batch_size", 128))
        return [Tagged(tokens, tags) for tokens, tags in zip(token_lists, tag_lists, strict=True)]


# ---------------------------------------------------------------------- seq2seq


class Translator:
    """The encoder-decoder: texts in, `Translations` out by beam search or sampling (`unrolled.apps.seq2seq`)."""

    def __init__(self, bundle: Bundle, threads: int | None = None) -> None:
        settings = bundle.settings
        self.source, self.target = Side(settings["source"]), Side(settings["target"])
        self.per_hypothesis: list[str] = settings["per_hypothesis"]
        self.shared: list[str] = settings["shared"]
        self.encoder, self.decoder = Graph(bundle, "encoder", threads), Graph(bundle, "step", threads)

    @property
    def max_length(self) -> int:
        return self.target.max_len + 1

    def encode_sources(self, texts: list[str]) -> list[list[int]]:
        ids, cut, unknown = [], 0, 0
        for k, text in enumerate(texts):
            row, was_cut, unknowns = self.source.encode(text)
            if not row:
                raise ValueError(f"input {k + 1} is empty; give one source text per line")
            ids.append(row)
            cut += was_cut
            unknown += unknowns
        warn_reading(cut, unknown, self.source.max_len, stacklevel=4)
        return ids

    def step(self, tokens: np.ndarray, state: decode.State) -> tuple[np.ndarray, decode.State]:
        out = self.decoder(tokens=tokens.astype(np.int64), **state)
        new = {name: out[f"{name}_next"] for name in self.per_hypothesis}
        return out["log_probs"], {**new, **{name: state[name] for name in self.shared}}

    def reorder(self, state: decode.State, index: np.ndarray) -> decode.State:
        """The state of hypotheses `index`, in blocks per input (`decode.beam_search`): the memory stays shared."""
        return {name: value if name in self.shared else value[index] for name, value in state.items()}

    def prime(self, sources: list[list[int]]) -> tuple[np.ndarray, decode.State]:
        ids, lengths = padded(sources)
        state = self.encoder(source=ids, lengths=lengths)
        return self.step(np.full(len(sources), BOS_ID, dtype=np.int64), state)

    def translate(self, texts: list[str], *, beam: int = 5, n_best: int = 1, length_penalty: float = 0.0,
                  max_length: int | None = None, min_length: int = 0, no_repeat_ngram: int = 0,
                  batch_size: int = 64) -> list[list[Translation]]:
        """The n_best outputs of each text by beam search (beam 1: greedy), best first."""
        limit = max_length if max_length is not None else self.max_length
        ids = self.encode_sources(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        results: list[list[Translation]] = [[] for _ in texts]
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            log_probs, state = self.prime([ids[i] for i in chunk])
            found = decode.beam_search(self.step, log_probs, state, beam_size=beam, max_length=limit,
                                       end_token=EOS_ID, length_penalty=length_penalty, n_best=n_best,
                                       min_length=min_length, no_repeat_ngram=no_repeat_ngram, reorder=self.reorder)
            for i, hypotheses in zip(chunk, found, strict=True):
                for h in hypotheses:
                    tokens = self.target.decode(h.tokens)
                    results[i].append(Translation(self.target.text(tokens), tokens, h.score, h.normalised,
                                                  h.finished, self.source.decode(ids[i])))
        return results

    def sample(self, texts: list[str], *, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, seed: int | None = None, max_length: int | None = None,
               batch_size: int = 64) -> list[Translation]:
        """One output per text drawn token by token (tempered, top-k, nucleus); no scores (NaN)."""
        limit = max_length if max_length is not None else self.max_length
        ids = self.encode_sources(texts)
        rng = np.random.default_rng(seed)
        results = []
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            log_probs, state = self.prime(chunk)
            drawn = decode.sample(self.step, log_probs, state, length=limit, temperature=temperature, top_k=top_k,
                                  top_p=top_p, rng=rng, end_token=EOS_ID)
            for source, row in zip(chunk, drawn.tolist(), strict=True):
                tokens = self.target.decode(row[: row.index(EOS_ID)] if EOS_ID in row else row)
                results.append(Translation(self.target.text(tokens), tokens, NEVER, NEVER, EOS_ID in row,
                                           self.source.decode(source)))
        return results

    def predict(self, inputs: Sequence[str], options: Any = None) -> list[Translations]:
        texts = list(inputs)
        if option(options, "sample", False):
            drawn = self.sample(texts, temperature=option(options, "temperature", 1.0),
                                top_k=option(options, "top_k", None), top_p=option(options, "top_p", None),
                                seed=option(options, "seed", None), max_length=option(options, "max_len", None),
                                batch_size=option(options, "batch_size", 64))
            return [Translations(text, [output]) for text, output in zip(texts, drawn, strict=True)]
        found = self.translate(texts, beam=option(options, "beam", 5), n_best=option(options, "n_best", 1),
                               length_penalty=option(options, "length_penalty", 0.0),
                               max_length=option(options, "max_len", None), min_length=option(options, "min_len", 0),
                               no_repeat_ngram=option(options, "no_repeat_ngram", 0),
                               batch_size=option(options, "batch_size", 64))
        return [Translations(text, outputs) for text, outputs in zip(texts, found, strict=True)]


PREDICTORS: dict[str, Any] = {"lm": LanguageModel, "classify": TextClassifier, "tag": SequenceTagger,
                              "seq2seq": Translator, "speech": Transcriber,
                              "caption": Captioner, "glimpse": Reader,
                              "video": VideoLabeller}
