"""Text for character language models: reading, a character vocabulary, a split, and batches.

The path from files to training batches::

    text = read_text(paths)                         # one str; clear errors for bad input
    vocab = Vocabulary.from_text(text[:train_end])  # characters seen in training; 0 = unknown
    ids = vocab.encode(text)                        # (N,) int64
    split = split_text(text)                        # {"train": (0, a), "validation": (a, b), "test": (b, N)}
    batches = StreamBatches(ids[0:a], batch_size=B, seq_len=T)   # stateful windows, as char-rnn
    streams = TextStreams(ids[0:a], batch_size=B, seq_len=T)     # the same, for the trainer, the state carried
    x, y = random_windows(ids[a:b], length=T, count=B, generator=g)  # as nanoGPT evaluates
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from unrolled.recurrent import LayerState

NUL = b"\x00"
BYTE_ORDER_MARK = "\ufeff"
UNKNOWN_ID = 0
UNKNOWN_SYMBOL = "\ufffd"  # how decode() shows the unknown id: U+FFFD REPLACEMENT CHARACTER

PathLike = str | Path


# --- reading ---------------------------------------------------------------------------------------------------------


def read_text(paths: PathLike | Iterable[PathLike]) -> str:
    """The UTF-8 text of one file or of several joined with "\\n"; line ends become "\\n".

    Raises a one-line ValueError naming the file for a missing file, a
    directory, an empty file, binary data (the byte offset of the first NUL)
    and invalid UTF-8 (the byte offset where decoding failed).
    """
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    if not paths:
        raise ValueError("no text files given")
    return "\n".join(_read_one(Path(path)) for path in paths)


def _read_one(path: Path) -> str:
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not a text file")
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    data = path.read_bytes()
    if not data:
        raise ValueError(f"{path}: empty file")
    nul = data.find(NUL)
    if nul >= 0:
        raise ValueError(f"{path}: binary data, not text (NUL byte at byte offset {nul})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not valid UTF-8 at byte offset {error.start} ({error.reason})") from None
    return text.removeprefix(BYTE_ORDER_MARK).replace("\r\n", "\n").replace("\r", "\n")


# --- vocabulary ------------------------------------------------------------------------------------------------------


class Vocabulary:
    """Characters <-> ids. Id 0 is the unknown symbol; the known characters follow, in the order given.

    ``from_text`` sorts the characters of a text, so the same text always gives
    the same ids. Characters not in the vocabulary encode to 0, which decodes
    to U+FFFD. ``to_json`` is the plain list of known characters (id 1, 2, ...),
    small enough for a checkpoint's config.json.
    """

    def __init__(self, characters: Sequence[str]) -> None:
        characters = list(characters)
        for ch in characters:
            if not isinstance(ch, str) or len(ch) != 1:
                raise ValueError(f"a vocabulary holds single characters, not {ch!r}")
        if len(set(characters)) != len(characters):
            raise ValueError("a vocabulary's characters must be distinct")
        self.characters = characters
        self._ids = {ch: i for i, ch in enumerate(characters, start=UNKNOWN_ID + 1)}
        codes = np.array([ord(ch) for ch in characters], dtype=np.int64)
        order = np.argsort(codes)
        self._sorted_codes = codes[order]  # (V-1,) for a vectorised lookup in encode()
        self._sorted_ids = order + UNKNOWN_ID + 1

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        """The sorted set of characters in ``text``."""
        return cls(sorted(set(text)))

    @classmethod
    def from_json(cls, characters: list[str]) -> Vocabulary:
        """The vocabulary saved by ``to_json``."""
        if not isinstance(characters, list):
            raise ValueError(f"a saved vocabulary is a list of characters, not {type(characters).__name__}")
        return cls(characters)

    def to_json(self) -> list[str]:
        """The known characters in id order (ids 1, 2, ...); the unknown id 0 is implied."""
        return list(self.characters)

    def __len__(self) -> int:
        """V: the known characters plus the unknown symbol."""
        return len(self.characters) + 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.characters == other.characters

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} symbols: {''.join(self.characters)!r})"

    def encode(self, text: str) -> Tensor:
        """The ids of ``text``'s characters, (T,) int64; unseen characters give 0."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)  # (T,)
        if len(self._sorted_codes) == 0:
            return torch.zeros(len(codes), dtype=torch.long)
        slot = np.minimum(np.searchsorted(self._sorted_codes, codes), len(self._sorted_codes) - 1)  # (T,)
        known = self._sorted_codes[slot] == codes
        ids = np.where(known, self._sorted_ids[slot], UNKNOWN_ID)  # (T,)
        return torch.from_numpy(ids.astype(np.int64))

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """The text of a sequence of ids; 0 becomes U+FFFD."""
        values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        symbols = [UNKNOWN_SYMBOL, *self.characters]
        bad = [i for i in values if not isinstance(i, int) or not 0 <= i < len(symbols)]
        if bad:
            raise ValueError(f"ids must be integers in [0, {len(symbols)}), got {bad[0]!r}")
        return "".join(symbols[i] for i in values)

    def unknown_characters(self, text: str) -> set[str]:
        """The characters of ``text`` the vocabulary does not know (e.g. to reject a prime text)."""
        return {ch for ch in set(text) if ch not in self._ids}


# --- split -----------------------------------------------------------------------------------------------------------


def split_text(text: Sized, *, validation: float = 0.05, test: float = 0.05) -> dict[str, tuple[int, int]]:
    """A contiguous split by character offsets: train first, then validation, then test.

    Returns ``{"train": (0, a), "validation": (a, b), "test": (b, N)}`` with
    ``a = int(N * (1 - validation - test))`` and ``b = int(N * (1 - test))``,
    so ``validation=0.1, test=0`` is nanoGPT's split (``int(n * 0.9)``). The
    offsets are plain integers, so the split can be saved in a checkpoint.
    Every part asked for (fraction above 0) must get at least one character.
    """
    for name, fraction in (("validation", validation), ("test", test)):
        if not (math.isfinite(fraction) and 0.0 <= fraction < 1.0):
            raise ValueError(f"{name} fraction must be in [0, 1), got {fraction}")
    if validation + test >= 1.0:
        raise ValueError(f"validation + test fractions must leave some training text, got {validation} + {test}")
    n = len(text)
    train_end = int(n * (1.0 - (validation + test)))
    validation_end = int(n * (1.0 - test))
    parts = {"train": (0, train_end), "validation": (train_end, validation_end), "test": (validation_end, n)}
    wanted = {"train": 1.0, "validation": validation, "test": test}
    for name, (start, end) in parts.items():
        if wanted[name] > 0 and end <= start:
            raise ValueError(f"a text of {n} characters is too short for a {name} part "
                             f"(fractions: validation {validation}, test {test})")
    return parts


# --- batches ---------------------------------------------------------------------------------------------------------


class StreamBatches:
    """Consecutive windows of B parallel streams, for truncated backpropagation through time (as char-rnn).

    The N ids are cut into B streams of equal length L = (N - 1) // B (the
    last id is only ever a target; a remainder at the end is dropped). Window
    k holds columns k*T .. k*T+T-1 of every stream; the targets are the inputs
    moved one character on::

        ids:     | stream 0 (L) | stream 1 (L) | ... | stream B-1 (L) | rest
        inputs:  window 0       window 1       ...   window W-1         W = L // T
                 [0,  T)        [T, 2T)              [(W-1)T, WT)
        stream 0 c0 c1 .. cT-1  cT .. c2T-1    ...
        stream 1 cL .. cL+T-1   cL+T ..        ...
        targets: the same positions plus one: target[b, t] = ids[b*L + k*T + t + 1]

    So window k+1 of stream b continues exactly where window k ended, and the
    hidden state left by window k is the right initial state for window k+1.
    Each batch is ``(inputs, targets)``, both (B, T) int64 views of ``ids``.
    ``len()`` is W, the windows per epoch; ``iterate(start=k)`` resumes an
    epoch at window k, deterministically.
    """

    def __init__(self, ids: Tensor, *, batch_size: int, seq_len: int) -> None:
        if ids.dim() != 1:
            raise ValueError(f"ids must be one-dimensional (N,), got shape {tuple(ids.shape)}")
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"batch size and sequence length must be positive, got {batch_size} and {seq_len}")
        self.batch_size, self.seq_len = batch_size, seq_len
        self.stream_length = (len(ids) - 1) // batch_size  # L
        if self.stream_length < seq_len:
            raise ValueError(f"a text of {len(ids)} characters is too short for one window of {batch_size} streams "
                             f"x {seq_len} characters (needs at least {batch_size * seq_len + 1})")
        used = batch_size * self.stream_length
        self.inputs = ids[:used].view(batch_size, self.stream_length)  # (B, L)
        self.targets = ids[1 : used + 1].view(batch_size, self.stream_length)  # (B, L)

    def __len__(self) -> int:
        return self.stream_length // self.seq_len  # W

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor]:
        """Window k: ``(inputs, targets)``, (B, T) each."""
        if not 0 <= k < len(self):
            raise IndexError(f"window {k} out of range [0, {len(self)})")
        columns = slice(k * self.seq_len, (k + 1) * self.seq_len)
        return self.inputs[:, columns], self.targets[:, columns]  # (B, T), (B, T)

    def iterate(self, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Windows start, start+1, ..., W-1, in order."""
        if not 0 <= start <= len(self):
            raise ValueError(f"start window must be in [0, {len(self)}], got {start}")
        for k in range(start, len(self)):
            yield self[k]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.iterate()


def random_windows(ids: Tensor, *, length: int, count: int,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``count`` windows of ``length`` ids at random starts, and their next-character targets (as nanoGPT).

    Starts are drawn uniformly from [0, N - length), so every target lies
    inside ``ids``. Returns ``(inputs, targets)``, (count, length) each.
    """
    if length < 1 or count < 1:
        raise ValueError(f"window length and count must be positive, got {length} and {count}")
    if len(ids) < length + 1:
        raise ValueError(f"a text of {len(ids)} characters is too short for a window of {length} (needs {length + 1})")
    starts = torch.randint(len(ids) - length, (count,), generator=generator)  # (count,)
    positions = starts[:, None] + torch.arange(length)  # (count, length)
    return ids[positions], ids[positions + 1]


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
