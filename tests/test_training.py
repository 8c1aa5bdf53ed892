"""The trainer: exact resume, schedules, clipping, early stopping, divergence, Ctrl-C, logs, several processes."""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from unrolled import training
from unrolled.checkpoint import load_checkpoint
from unrolled.training import (
    TrainConfig,
    Trainer,
    TrainingError,
    TrainingProgress,
    TrainResult,
    build_optimizer,
    learning_rate,
    parse_duration,
    to_device,
)

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


# ---------------------------------------------------------------- exact resume


def test_stop_and_resume_gives_bit_identical_losses_and_parameters(tmp_path: Path) -> None:
    straight, model = train(tmp_path / "straight", settings())
    assert straight.stopped_because == "max_steps" and straight.steps == 12
    assert straight.epochs == pytest.approx(12 / WINDOWS)  # crosses an epoch end: the carried state is reset

    # Stop at 6 (which the straight run does not evaluate at: the closing evaluation must change nothing) ...
    first, _ = train(tmp_path / "split", settings(max_steps=6, decay_steps=12))
    assert first.stopped_because == "max_steps" and first.steps == 6
    saved = load_checkpoint(tmp_path / "split" / "last", kind="test-lm")
    assert saved.config["step"] == 6 and saved.config["train"]["max_steps"] == 6
    assert saved.training_state["data"]["ranks"][0]["hidden"] is not None  # the carried state is saved
    # ... and resume, from a model initialised differently: everything comes from the checkpoint.
    resumed, resumed_model = train(tmp_path / "split", settings(), resume=True, seed=123)
    assert resumed.steps == 12

    assert losses(tmp_path / "split") == losses(tmp_path / "straight")
    assert [line["step"] for line in lines(tmp_path / "split")] == list(range(1, 13))
    assert_same_parameters(resumed_model, model)
    # The split run also evaluated at 6; the evaluations both made agree (evaluation draws from torch's generator).
    split = {line["step"]: line["loss"] for line in lines(tmp_path / "split", "validation")}
    assert sorted(split) == [4, 6, 8, 12]
    assert [split[line["step"]] for line in lines(tmp_path / "straight", "validation")] == [
        line["loss"] for line in lines(tmp_path / "straight", "validation")]


def test_resume_with_nothing_left_to_do_changes_nothing(tmp_path: Path) -> None:
    train(tmp_path, settings(max_steps=4))
    before = (tmp_path / "metrics.jsonl").read_text()
    result, _ = train(tmp_path, settings(max_steps=4), resume=True)
    assert result.stopped_because == "max_steps" and result.steps == 4
    assert (tmp_path / "metrics.jsonl").read_text() == before


def test_a_resumed_run_logs_the_same_averages_over_a_window_cut_by_the_stop(tmp_path: Path) -> None:
    train(tmp_path / "straight", settings(max_steps=8, log_every=4, eval_every=100))
    train(tmp_path / "split", settings(max_steps=6, decay_steps=8, log_every=4, eval_every=100))
    train(tmp_path / "split", settings(max_steps=8, log_every=4, eval_every=100), resume=True)
    straight, split = lines(tmp_path / "straight"), lines(tmp_path / "split")
    assert [line["step"] for line in split] == [4, 8]  # the window 5..8 spans the stop at 6
    assert [(line["loss"], line["grad_norm"]) for line in split] == [(line["loss"], line["grad_norm"])
                                                                       for line in straight]


# ---------------------------------------------------------------- Ctrl-C


def test_keyboard_interrupt_inside_a_step_saves_the_previous_step_and_resumes_exactly(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, reference = train(tmp_path / "straight", settings())
    # Step 7's loss() raises: steps 1..6 are complete, step 7 never updated anything.
    interrupted, _ = train(tmp_path / "run", settings(), hook=interrupt_at(7))
    assert interrupted.stopped_because == "interrupted" and interrupted.steps == 6
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and "step 6" in message and str(tmp_path / "run" / "last") in message
    assert "--resume" in message
    assert load_checkpoint(tmp_path / "run" / "last").config["step"] == 6
    resumed, model = train(tmp_path / "run", settings(), resume=True, seed=5)
    assert resumed.stopped_because == "max_steps"
    assert_same_parameters(model, reference)
    assert losses(tmp_path / "run") == losses(tmp_path / "straight")


def test_sigint_during_an_update_waits_for_it_then_saves_that_step(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Python's own Ctrl-C handler, also where the shell started us with SIGINT ignored (a background job)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sigint_during_an_update(tmp_path, monkeypatch)
    finally:
        signal.signal(signal.SIGINT, previous)


def sigint_during_an_update(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, reference = train(tmp_path / "straight", settings(eval_every=100))
    original = torch.optim.AdamW.step
    calls = [0]

    def step_with_sigint(self: torch.optim.AdamW, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 5:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C in the middle of the 5th update, to this thread
        return original(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(torch.optim.AdamW, "step", step_with_sigint)
        interrupted, _ = train(tmp_path / "run", settings(eval_every=100))
    assert interrupted.stopped_because == "interrupted" and interrupted.steps == 5
    assert load_checkpoint(tmp_path / "run" / "last").config["step"] == 5
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    _, model = train(tmp_path / "run", settings(eval_every=100), resume=True)
    assert_same_parameters(model, reference)


def test_a_second_ctrl_c_during_the_save_keeps_the_previous_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    original = training.save_checkpoint
    saves = [0]

    def save_then_interrupted(*args: Any, **kwargs: Any) -> Path:
        saves[0] += 1
        if saves[0] == 2:  # the save after the first Ctrl-C
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "save_checkpoint", save_then_interrupted)
    result, _ = train(tmp_path, settings(save_every=4, eval_every=100), evaluate_with=None, hook=interrupt_at(7))
    assert result.stopped_because == "interrupted"
    assert "interrupted again while saving step 6" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "last").config["step"] == 4


# ---------------------------------------------------------------- time budget and cosine horizon


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


class Pace:
    """An injected clock for the loss hook: `seconds(call)` per training step, and optional evaluation time."""

    def __init__(self, clock: FakeClock, seconds: Callable[[int], float]) -> None:
        self.clock, self.seconds = clock, seconds

    def __call__(self, call: int, loss: Tensor) -> Tensor:
        self.clock.now += self.seconds(call)
        return loss


PACES: dict[str, Callable[[int], float]] = {
    "a 60 s stall in the first 20 steps": lambda call: 1.0 + (60.0 if call == 10 else 0.0),
    "a 60 s stall in the middle": lambda call: 1.0 + (60.0 if call == 150 else 0.0),
    "the pace halves at 50%": lambda call: 1.0 if call <= 150 else 2.0,  # 150 steps make 150 s of the 300
    "the pace doubles at 50%": lambda call: 1.0 if call <= 150 else 0.5,
    "many evaluations": lambda call: 1.0,
}


@pytest.mark.parametrize("pace", sorted(PACES))
def test_a_time_budget_decays_to_the_floor_at_its_end_whatever_the_pace(tmp_path: Path, pace: str) -> None:
    clock = FakeClock()
    many = pace == "many evaluations"

    def evaluate_slowly(model: nn.Module) -> dict[str, float]:
        clock.now += 3.0  # evaluations take time, and there are many
        return evaluate(model)

    config = settings(max_steps=None, max_time=300.0, warmup_steps=10, eval_every=5 if many else 40)
    result, _ = train(tmp_path, config, hook=Pace(clock, PACES[pace]), evaluate_with=evaluate_slowly, clock=clock)
    assert result.stopped_because == "max_time"
    assert_time_bounded_schedule(tmp_path, config)


def test_the_time_line_starts_when_the_warm_up_ends_and_follows_elapsed_time(tmp_path: Path) -> None:
    clock = FakeClock()  # 1 s a step, 100 s: update s starts at s seconds; the warm-up's 3 end at 3 s
    config = settings(max_steps=None, max_time=100.0, eval_every=1000)
    result, _ = train(tmp_path, config, hook=clock.ticking(1.0), clock=clock)
    assert result.stopped_because == "max_time" and result.steps == 100
    state = load_checkpoint(tmp_path / "last").training_state["progress"]
    assert (state["decay_from"], state["decay_start"], state["decay_budget"]) == (3.0, 0.0, 100.0)
    by_step = {step: lr for step, _, lr in losses(tmp_path)}
    assert [by_step[s] for s in (1, 2, 3, 4)] == [learning_rate(config, s) for s in range(4)]  # warm-up, then peak
    for step in (10, 50, 97):  # update step - 1 starts at step - 1 seconds: p = (step - 1 - 3) / 97
        assert by_step[step] == pytest.approx(learning_rate(config, step - 1, time_progress=(step - 4) / 97))
    assert by_step[52] == pytest.approx(config.lr * (1 + config.min_lr_ratio) / 2, rel=0.02)  # halfway: mid-range


def test_a_resumed_time_bounded_run_continues_its_schedule_where_it_stood(tmp_path: Path) -> None:
    config = settings(max_steps=None, max_time=100.0, eval_every=1000)
    clock = FakeClock()
    train(tmp_path / "straight", config, hook=clock.ticking(1.0), clock=clock)
    clock = FakeClock()
    first, _ = train(tmp_path / "split", config, hook=clock.ticking(1.0, interrupt_at(40)), clock=clock)
    assert first.stopped_because == "interrupted" and first.steps == 39
    state = load_checkpoint(tmp_path / "split" / "last").training_state["progress"]
    assert state["elapsed"] == 40.0 and state["decay_from"] == 3.0
    slower = FakeClock(now=1000.0)  # the resumed session runs 3 s a step on another clock
    resumed, _ = train(tmp_path / "split", config, resume=True, hook=slower.ticking(3.0), clock=slower)
    assert resumed.stopped_because == "max_time" and resumed.steps == 39 + 20  # 40 s + 20 x 3 s
    straight = {round(elapsed): lr for elapsed, lr in timed_lrs(tmp_path / "straight")}
    split = timed_lrs(tmp_path / "split")
    assert [lr for _, lr in split[:39]] == [straight[s] for s in range(1, 40)]  # the same until the stop
    for elapsed, lr in split[39:]:  # then the same function of the elapsed time: lr at t - 3 s (the step's start)
        assert lr == pytest.approx(straight[round(elapsed) - 2])
    assert_time_bounded_schedule(tmp_path / "split", config)


def test_a_resume_with_a_larger_time_budget_continues_from_where_the_lr_stood(tmp_path: Path) -> None:
    clock = FakeClock()
    config = settings(max_steps=None, max_time=100.0, eval_every=1000)
    train(tmp_path, config, hook=clock.ticking(1.0, interrupt_at(51)), clock=clock)
    before = timed_lrs(tmp_path)[-1][1]
    longer = settings(max_steps=None, max_time=200.0, eval_every=1000)
    clock = FakeClock()
    result, _ = train(tmp_path, longer, resume=True, hook=clock.ticking(1.0), clock=clock)
    assert result.stopped_because == "max_time" and result.steps == 50 + 149
    state = load_checkpoint(tmp_path / "last").training_state["progress"]
    assert state["decay_from"] == 51.0 and state["decay_budget"] == 200.0
    assert state["decay_start"] == pytest.approx((51 - 3) / 97)  # where the 100 s line stood at the stop
    after = [lr for _, lr in timed_lrs(tmp_path)[50:]]
    assert before > after[0] > 0.9 * before  # no jump back up to the peak
    assert_time_bounded_schedule(tmp_path, longer)


def test_a_cosine_run_decays_over_whichever_budget_ends_first(tmp_path: Path) -> None:
    clock = FakeClock()  # 1 s a step, 100 s: the time ends at step 100, before the 500 steps
    timed, _ = train(tmp_path / "time", settings(max_steps=500, max_time=100.0, eval_every=1000),
                     hook=clock.ticking(1.0), clock=clock)
    assert timed.stopped_because == "max_time" and timed.steps == 100
    config = settings(max_steps=500, max_time=100.0)
    assert_time_bounded_schedule(tmp_path / "time", config)
    clock = FakeClock()  # the same, with 60 steps: they end first
    stepped, _ = train(tmp_path / "steps", settings(max_steps=60, max_time=100.0, eval_every=1000),
                       hook=clock.ticking(1.0), clock=clock)
    assert stepped.stopped_because == "max_steps" and stepped.steps == 60
    config = settings(max_steps=60, max_time=100.0)
    assert [lr for _, _, lr in losses(tmp_path / "steps")] == [
        learning_rate(config, s, horizon=60, time_progress=max(0.0, (s - 3) / 97)) for s in range(60)]
    assert losses(tmp_path / "steps")[-1][2] == pytest.approx(learning_rate(config, 59, horizon=60))
    assert learning_rate(config, 60, horizon=60) == pytest.approx(config.lr * config.min_lr_ratio)


@pytest.mark.parametrize(("seconds", "warmup", "said"), [
    (1.0, 50, "fewer than the 50 warm-up steps: the learning rate will reach only 40% of --lr"),
    (1.0, 3, "fewer than the 40 before the next evaluation (--eval-every 40): the run evaluates once, at its end"),
    (30.0, 3, "the first step took 0m30s, all of --max-time (0m20s): the run stops after one step"),
])
def test_a_time_budget_too_short_for_the_warm_up_an_evaluation_or_a_step_says_what_will_happen(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], seconds: float, warmup: int, said: str) -> None:
    clock = FakeClock()
    config = settings(max_steps=None, max_time=20.0, warmup_steps=warmup, eval_every=40)
    result, _ = train(tmp_path, config, hook=clock.ticking(seconds), clock=clock)
    assert result.stopped_because == "max_time"
    err = capsys.readouterr().err
    assert said in err and len([line for line in err.splitlines() if "warning" in line]) == 1


def test_a_resume_past_its_time_budget_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    config = settings(max_steps=None, max_time=10.0, eval_every=1000)
    train(tmp_path, config, hook=clock.ticking(1.0), clock=clock)
    capsys.readouterr()
    result, _ = train(tmp_path, config, resume=True, clock=FakeClock())
    assert result.steps == 10 and "resume with a larger --max-time" in capsys.readouterr().err


def test_max_epochs_stops_at_an_epoch_end(tmp_path: Path) -> None:
    result, _ = train(tmp_path, settings(max_steps=None, max_epochs=2, eval_every=100))
    assert result.stopped_because == "max_epochs" and result.steps == 2 * WINDOWS and result.epochs == 2.0


# ---------------------------------------------------------------- schedules, optimizers, clipping


def test_schedules_give_known_learning_rates() -> None:
    base: dict[str, Any] = {"lr": 1.0, "max_steps": 100}
    constant = TrainConfig(schedule="constant", warmup_steps=4, **base)
    assert [learning_rate(constant, s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cosine = TrainConfig(schedule="cosine", warmup_steps=4, min_lr_ratio=0.1, **base)
    assert learning_rate(cosine, 0, horizon=14) == 0.25
    assert learning_rate(cosine, 4, horizon=14) == 1.0
    assert learning_rate(cosine, 9, horizon=14) == pytest.approx(0.55)  # halfway: (1 + 0.1) / 2
    assert learning_rate(cosine, 14, horizon=14) == pytest.approx(0.1)
    assert learning_rate(cosine, 50, horizon=14) == pytest.approx(0.1)  # past the horizon: the floor
    assert learning_rate(cosine, 9, horizon=None) == 1.0  # horizon not known yet
    step = TrainConfig(schedule="step", step_size=10, gamma=0.5, **base)
    assert [learning_rate(step, s) for s in (0, 9, 10, 19, 20, 35)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125]
    plateau = TrainConfig(schedule="plateau", plateau_patience=2, plateau_factor=0.5, warmup_steps=2, **base)
    assert learning_rate(plateau, 0, plateau_scale=0.25) == 0.125


def test_plateau_reduces_after_patience_evaluations_without_improvement() -> None:
    config = TrainConfig(schedule="plateau", plateau_patience=2, plateau_factor=0.5, max_steps=10)
    progress = TrainingProgress()
    scales = []
    for loss in [3.0, 2.0, 2.5, 2.4, 2.1, 1.0, 1.5, 1.5, 1.2]:
        progress.record_regular(loss, config)
        scales.append(progress.plateau_scale)
    assert scales == [1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert progress.stale_evaluations == 3  # since the best, 1.0


def test_plateau_schedule_lowers_the_learning_rate_in_training(tmp_path: Path) -> None:
    scripted = iter([2.0, 1.0, 1.5, 1.5, 1.5, 1.5])
    config = settings(schedule="plateau", warmup_steps=0, plateau_patience=2, eval_every=2, max_steps=12)
    train(tmp_path, config, evaluate_with=lambda model: {"loss": next(scripted)})
    lr = {step: rate for step, _, rate in losses(tmp_path)}
    # evaluations at steps 2, 4 (best), 6, 8 (2nd without improvement: halve), 10, 12 (again)
    assert [lr[s] for s in (1, 8, 9, 12)] == [0.01, 0.01, 0.005, 0.005]
    assert lines(tmp_path, "validation")[-1]["lr"] == 0.005


@pytest.mark.parametrize(("name", "kind"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                            ("rmsprop", torch.optim.RMSprop), ("sgd", torch.optim.SGD)])
def test_each_optimizer_name_builds_that_optimizer(name: str, kind: type) -> None:
    config = TrainConfig(optimizer=name, lr=0.05, weight_decay=0.01, betas=(0.8, 0.9), momentum=0.7, max_steps=1)
    optimizer = build_optimizer(nn.Linear(2, 2).parameters(), config)
    assert type(optimizer) is kind
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.05 and group["weight_decay"] == 0.01
    assert group["betas"] == (0.8, 0.9) if name.startswith("adam") else group["momentum"] == 0.7


def test_clipping_bounds_the_gradient_norm_and_the_update(tmp_path: Path) -> None:
    config = settings(optimizer="sgd", momentum=0.0, lr=1.0, schedule="constant", warmup_steps=0, clip_norm=0.5,
                      max_steps=1)
    model, data = make()
    before = [p.detach().clone() for p in model.parameters()]
    model.on_loss = lambda call, loss: loss * 1000.0  # a gradient far above the clipping norm
    Trainer(model, data, config, tmp_path, checkpoint_config=APP).fit()
    assert lines(tmp_path)[0]["grad_norm"] > 100.0  # the norm before clipping is logged
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert grads.norm().item() <= 0.5 + 1e-6
    update = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before, strict=True)])
    assert update.norm().item() <= 0.5 + 1e-6 and update.norm().item() > 0.4


# ---------------------------------------------------------------- evaluation, early stopping, divergence


def test_early_stopping_and_the_best_checkpoint(tmp_path: Path) -> None:
    scripted = iter([3.0, 2.0, 2.5, 2.6, 2.7])
    config = settings(max_steps=100, eval_every=2, early_stop=2)
    result, _ = train(tmp_path, config, evaluate_with=lambda model: {"loss": next(scripted)})
    # evaluations at steps 2 (3.0), 4 (2.0, best), 6 (2.5), 8 (2.6: the 2nd without improvement -> stop)
    assert result.stopped_because == "early_stop" and result.steps == 8
    assert result.best_loss == 2.0 and result.best_step == 4 and result.last_metrics == {"loss": 2.6}
    best = load_checkpoint(tmp_path / "best", kind="test-lm")
    assert best.config["step"] == 4 and best.training_state["progress"]["best_loss"] == 2.0
    assert load_checkpoint(tmp_path / "last").config["step"] == 8
    assert [line["loss"] for line in lines(tmp_path, "validation")] == [3.0, 2.0, 2.5, 2.6]


def test_a_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    nan_at_7: Hook = lambda call, loss: loss * math.nan if call == 7 else loss  # noqa: E731
    with pytest.raises(TrainingError) as error:
        train(tmp_path, settings(save_every=4, eval_every=100), hook=nan_at_7, evaluate_with=None)
    message = str(error.value)
    assert message == (f"loss became nan at step 7; the last good checkpoint (step 4) is kept in {tmp_path / 'last'}; "
                       "try a lower --lr or --clip")
    saved = load_checkpoint(tmp_path / "last", kind="test-lm")
    assert saved.config["step"] == 4 and saved.training_state["progress"]["step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last", "metrics.jsonl"]


def test_an_infinite_loss_before_any_save_says_nothing_was_saved(tmp_path: Path) -> None:
    inf_at_2: Hook = lambda call, loss: loss * math.inf if call == 2 else loss  # noqa: E731
    with pytest.raises(TrainingError, match=r"^loss became inf at step 2; no checkpoint was saved before"):
        train(tmp_path, settings(clip_norm=None), hook=inf_at_2)
    assert not (tmp_path / "last").exists()


# ---------------------------------------------------------------- run folders and errors


def test_run_folder_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^no checkpoint to resume in .*last; start without --resume$"):
        train(tmp_path / "empty", settings(), resume=True)
    train(tmp_path / "run", settings(max_steps=4))
    with pytest.raises(ValueError, match=r"already holds a checkpoint .*pass --resume .*another --out$"):
        train(tmp_path / "run", settings(max_steps=4))
    other = {**APP, "model": {"hidden": H + 1, "embedding": E}, "split": [0, 1]}
    with pytest.raises(ValueError, match=r"\(model\.hidden, split\)") as error:
        train(tmp_path / "run", settings(max_steps=8), resume=True, app=other)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"trained with the adamw optimizer, not sgd: resume with --optimizer adamw"):
        train(tmp_path / "run", settings(max_steps=8, optimizer="sgd"), resume=True)
    with pytest.raises(ValueError, match="'test-lm' checkpoint, not 'word-lm'"):
        train(tmp_path / "run", settings(max_steps=8), resume=True, app={**APP, "kind": "word-lm"})


def test_metrics_lines_and_the_curve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result, _ = train(tmp_path, settings(max_steps=6, eval_every=3, log_every=2, progress=True))
    assert "step" in capsys.readouterr().err  # the progress bar, on stderr
    train_lines, validation_lines = lines(tmp_path), lines(tmp_path, "validation")
    assert [line["step"] for line in train_lines] == [2, 4, 6]
    assert [line["step"] for line in validation_lines] == [3, 6]
    for line in train_lines:
        assert set(line) == {"step", "epoch", "split", "loss", "lr", "tokens_per_s", "elapsed", "grad_norm"}
        assert line["tokens_per_s"] > 0 and line["epoch"] == line["step"] / WINDOWS
    assert set(validation_lines[0]) == {"step", "epoch", "split", "loss", "accuracy", "lr", "elapsed"}
    assert result.last_metrics == {key: validation_lines[-1][key] for key in ("loss", "accuracy")}
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "curve.png", "last", "metrics.jsonl"]
    config = load_checkpoint(tmp_path / "last").config
    assert config["train"] == json.loads(json.dumps(asdict(settings(max_steps=6, eval_every=3, log_every=2,
                                                                     progress=True))))


def test_resume_drops_metrics_lines_of_steps_it_redoes(tmp_path: Path) -> None:
    train(tmp_path, settings(max_steps=8, save_every=3, eval_every=100), evaluate_with=None,
          hook=interrupt_at(8))  # saved at 6 and, on the interrupt, 7
    with open(tmp_path / "metrics.jsonl", "a") as file:  # as if a killed run had logged beyond its checkpoint
        file.write(json.dumps({"step": 8, "split": "train", "loss": 1.0}) + "\n" + '{"step": 9, "spl')
    train(tmp_path, settings(max_steps=9, eval_every=100), resume=True, evaluate_with=None)
    assert [line["step"] for line in lines(tmp_path)] == list(range(1, 10))


# ---------------------------------------------------------------- small parts


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1.5h", 5400.0),
                                               ("1h30m", 5400.0), (" 2M ", 120.0), ("1h2m3s", 3723.0),
                                               (".5m", 30.0)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "10x", "-5", "1m1h", "1h 30m", "ten", "1.2.3s"])
def test_parse_duration_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match=r"cannot read .* as a duration: use seconds \(90\)") as error:
        parse_duration(text)
    assert repr(text) in str(error.value)


@pytest.mark.parametrize(("changes", "field"), [
    ({"optimizer": "lamb"}, "optimizer"), ({"schedule": "linear"}, "schedule"), ({"lr": 0.0}, "lr"),
    ({"lr": math.nan}, "lr"), ({"betas": (0.9, 1.0)}, "betas"), ({"warmup_steps": -1}, "warmup_steps"),
    ({"clip_norm": -1.0}, "clip_norm"), ({"eval_every": 0}, "eval_every"), ({"max_steps": 2.5}, "max_steps"),
    ({"max_steps": None}, "budget"), ({"max_time": 0.0}, "max_time"), ({"min_lr_ratio": 1.5}, "min_lr_ratio"),
    ({"plateau_factor": 1.0}, "plateau_factor"), ({"early_stop": 0}, "early_stop")])
def test_config_validation_says_what_is_wrong(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field) as error:
        TrainConfig(**{"max_steps": 10, **changes})
    assert "\n" not in str(error.value)


def test_config_is_json_and_clip_zero_means_off() -> None:
    config = TrainConfig(max_time=parse_duration("10m"), clip_norm=0, betas=[0.8, 0.9])  # type: ignore[arg-type]
    assert config.betas == (0.8, 0.9) and config.clipping is None
    assert TrainConfig(**json.loads(json.dumps(asdict(config)))) == config


def test_trainer_needs_evaluate_for_plateau_and_early_stopping(tmp_path: Path) -> None:
    model, data = make()
    for config in (settings(schedule="plateau"), settings(early_stop=3)):
        with pytest.raises(ValueError, match="needs an evaluate function"):
            Trainer(model, data, config, tmp_path, checkpoint_config=APP)
    with pytest.raises(ValueError, match="'kind'"):
        Trainer(model, data, settings(), tmp_path, checkpoint_config={"model": {}})


@dataclass
class Pair:
    left: Tensor
    right: list[Tensor]
    note: str = "kept"


def test_to_device_moves_nested_batches() -> None:
    x, y = torch.ones(2), torch.zeros(3, dtype=torch.float64)
    batch = {"pair": Pair(x, [y]), "window": Window(x, y, None), "plain": (x, 3)}  # type: ignore[arg-type]
    assert to_device(batch, "cpu") is batch  # nothing to move: the same object
    moved = to_device(batch, "meta")
    assert moved["pair"].left.device.type == "meta" and moved["pair"].right[0].device.type == "meta"
    assert moved["pair"].note == "kept" and isinstance(moved["window"], Window)
    assert moved["window"].targets.device.type == "meta" and moved["window"].carry is None
    assert moved["plain"][1] == 3 and moved["plain"][0].device.type == "meta"


# ---------------------------------------------------------------- several processes


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with the gloo backend is not available in this torch build")
def test_two_processes_match_one_process_on_the_whole_batch(tmp_path: Path) -> None:
    worker = Path(__file__).with_name("distributed_worker.py")
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker),
               str(tmp_path)]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    single, model = train(tmp_path / "single", distributed_settings(), dropout=0.0)
    straight, resumed = load_file(tmp_path / "straight.safetensors"), load_file(tmp_path / "resumed.safetensors")
    for name, value in model.state_dict().items():
        assert torch.allclose(straight[name], value, atol=1e-6, rtol=0), name
        assert torch.equal(resumed[name], straight[name]), name  # a 2-process resume is exact too
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["straight"]["steps"] == single.steps == 6
    assert report["straight"]["best_step"] == single.best_step
    saved = load_checkpoint(tmp_path / "straight" / "last").training_state["data"]
    assert saved["world"] == 2 and len(saved["ranks"]) == 2
    first, second = (rank["hidden"][0] for rank in saved["ranks"])  # each rank's carried state, (1, B/2, H)
    assert first.shape == (1, B // 2, H) and not torch.equal(first, second)
    assert lines(tmp_path / "straight")[-1]["step"] == 6


def distributed_settings(**changes: Any) -> TrainConfig:
    """The same run on 1 process (global batch B) and 2 (B/2 each); no dropout, so both compute the same."""
    return settings(**{"max_steps": 6, "eval_every": 2, **changes})


# ---------------------------------------------------------------- threads


def test_a_time_bounded_run_logs_the_threads_its_governor_leaves_it(tmp_path: Path) -> None:
    clock = FakeClock()
    config = settings(max_steps=None, max_time=20.0, eval_every=1000)
    train(tmp_path, config, hook=clock.ticking(1.0), clock=clock)
    threads = {line["threads"] for line in lines(tmp_path)}
    assert threads and all(1 <= t <= torch.get_num_threads() for t in threads)


def test_fixed_threads_hold_for_the_run_and_are_given_back(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    seen: list[int] = []

    def note(call: int, loss: Tensor) -> Tensor:
        seen.append(torch.get_num_threads())
        return loss

    train(tmp_path, settings(threads=1, max_steps=3), hook=note)
    assert seen == [1, 1, 1] and torch.get_num_threads() == before
    assert "threads" not in lines(tmp_path)[0]  # a step-bounded run keeps its threads: nothing to log
