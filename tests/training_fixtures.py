"""The trainer tests' tiny language model, its data, and helpers to train it and read its run folder."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.training import TrainConfig, Trainer, TrainResult

V, E, H, B, T = 11, 8, 8, 4, 5  # vocabulary, embedding, hidden, batch rows, window length
WINDOWS = 8  # batches per epoch
APP = {"kind": "test-lm", "model": {"hidden": H, "embedding": E}, "vocabulary": V}
Hook = Callable[[int, Tensor], Tensor]


class TinyLM(nn.Module):
    """Embedding -> dropout -> LSTM -> dropout -> linear; `on_loss(call, loss)` lets a test meddle with a step."""

    def __init__(self, dropout: float = 0.25) -> None:
        super().__init__()
        self.embed = nn.Embedding(V, E)
        self.lstm = nn.LSTM(E, H, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(H, V)
        self.calls = 0
        self.on_loss: Hook | None = None

    def logits(self, x: Tensor, state: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        out, state = self.lstm(self.drop(self.embed(x)), state)  # (B, T, H)
        return self.head(self.drop(out)), state  # (B, T, V)

    def loss(self, batch: Window) -> tuple[Tensor, dict[str, float]]:
        self.calls += 1
        logits, (h, c) = self.logits(batch.inputs, batch.carry.hidden)
        loss = F.cross_entropy(logits.reshape(-1, V), batch.targets.reshape(-1))
        batch.carry.hidden = (h.detach(), c.detach())  # truncated backpropagation through time
        if self.on_loss is not None:
            loss = self.on_loss(self.calls, loss)
        return loss, {"tokens": float(batch.targets.numel())}


class Window(NamedTuple):
    inputs: Tensor  # (B, T)
    targets: Tensor  # (B, T)
    carry: TokenData


class TokenData:
    """Rows of random tokens cut into windows; the LSTM state is carried from window to window (reset per epoch)."""

    def __init__(self, tokens: Tensor) -> None:
        self.tokens = tokens  # (rows, WINDOWS * T + 1)
        self.hidden: tuple[Tensor, Tensor] | None = None

    def __len__(self) -> int:
        return (self.tokens.shape[1] - 1) // T

    def batches(self, epoch: int, start: int) -> Iterator[Window]:
        if start == 0:
            self.hidden = None
        for k in range(start, len(self)):
            yield Window(self.tokens[:, k * T : (k + 1) * T], self.tokens[:, k * T + 1 : (k + 1) * T + 1], self)

    def shard(self, rank: int, world: int) -> TokenData:
        rows = self.tokens.shape[0] // world
        return TokenData(self.tokens[rank * rows : (rank + 1) * rows])

    def state_dict(self) -> dict[str, Any]:
        return {"hidden": self.hidden}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.hidden = state["hidden"]


def make(seed: int = 0, dropout: float = 0.25) -> tuple[TinyLM, TokenData]:
    """A model initialised from `seed` and always the same data."""
    torch.manual_seed(seed)
    model = TinyLM(dropout)
    tokens = torch.randint(0, V, (B, WINDOWS * T + 1), generator=torch.Generator().manual_seed(1))
    return model, TokenData(tokens)


def evaluate(model: nn.Module) -> dict[str, float]:
    """Validation loss on windows drawn from torch's global generator (the trainer must isolate that)."""
    assert isinstance(model, TinyLM) and not model.training and not torch.is_grad_enabled()
    tokens = torch.randint(0, V, (2, T + 1))
    logits, _ = model.logits(tokens[:, :-1], None)
    loss = F.cross_entropy(logits.reshape(-1, V), tokens[:, 1:].reshape(-1))
    return {"loss": loss.item(), "accuracy": (logits.argmax(-1) == tokens[:, 1:]).float().mean().item()}


def settings(**changes: Any) -> TrainConfig:
    base: dict[str, Any] = {"lr": 1e-2, "max_steps": 12, "warmup_steps": 3, "eval_every": 4, "log_every": 1,
                            "progress": False}
    return TrainConfig(**{**base, **changes})


def train(run_dir: Path, config: TrainConfig, *, resume: bool = False, seed: int = 0, hook: Hook | None = None,
          evaluate_with: Callable[[nn.Module], dict[str, float]] | None = evaluate,
          app: dict[str, Any] = APP, clock: Callable[[], float] | None = None,
          dropout: float = 0.25) -> tuple[TrainResult, TinyLM]:
    model, data = make(seed, dropout)
    model.on_loss = hook
    extra = {} if clock is None else {"clock": clock}
    trainer = Trainer(model, data, config, run_dir, evaluate=evaluate_with, checkpoint_config=app, **extra)
    return trainer.fit(resume=resume), model


def lines(run_dir: Path, split: str = "train") -> list[dict[str, Any]]:
    found = [json.loads(text) for text in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line for line in found if line["split"] == split]


def losses(run_dir: Path) -> list[tuple[int, float, float]]:
    return [(line["step"], line["loss"], line["lr"]) for line in lines(run_dir)]


def assert_same_parameters(a: nn.Module, b: nn.Module) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def interrupt_at(call: int) -> Hook:
    def hook(k: int, loss: Tensor) -> Tensor:
        if k == call:  # after the forward pass drew dropout masks and the carried state moved on
            raise KeyboardInterrupt
        return loss

    return hook


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    def ticking(self, seconds: float, then: Hook | None = None) -> Hook:
        """A loss hook that advances the clock: every training step takes `seconds`."""

        def hook(call: int, loss: Tensor) -> Tensor:
            self.now += seconds
            return loss if then is None else then(call, loss)

        return hook


def timed_lrs(run_dir: Path) -> list[tuple[float, float]]:
    """(elapsed at the log line, lr of that step) for every train line of a run logged every step."""
    return [(line["elapsed"], line["lr"]) for line in lines(run_dir)]


def assert_time_bounded_schedule(run_dir: Path, config: TrainConfig) -> None:
    """After the warm-up the lr never rises; above the floor until 90% of the time, at the floor at the end."""
    budget = float(config.max_time or 0.0)
    floor, peak = config.lr * config.min_lr_ratio, config.lr
    points = timed_lrs(run_dir)
    decaying = [lr for step, (_, lr) in enumerate(points, start=1) if step >= config.warmup_steps]
    rises = [(a, b) for a, b in itertools.pairwise(decaying) if b > a]
    assert not rises, f"the lr rose after the warm-up: {rises[:3]}"
    early = [(elapsed, lr) for step, (elapsed, lr) in enumerate(points, start=1)
             if config.warmup_steps <= step and elapsed <= 0.9 * budget]
    assert early and all(lr - floor > 0.01 * (peak - floor) for _, lr in early), \
        f"at the floor before 90% of the time: {[p for p in early if p[1] - floor <= 0.01 * (peak - floor)][:3]}"
    assert points[-1][1] - floor < 0.02 * (peak - floor), f"the last lr {points[-1][1]} is not at the floor {floor}"


def distributed_settings(**changes: Any) -> TrainConfig:
    """The same run on 1 process (global batch B) and 2 (B/2 each); no dropout, so both compute the same."""
    return settings(**{"max_steps": 6, "eval_every": 2, **changes})
