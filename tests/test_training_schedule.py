"""The learning-rate schedule: known rates, the plateau, optimisers, and the cosine that follows a time budget."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from tests.training_fixtures import (
    FakeClock,
    assert_time_bounded_schedule,
    evaluate,
    interrupt_at,
    losses,
    settings,
    timed_lrs,
    train,
)
from unrolled.checkpoint import load_checkpoint
from unrolled.training import TrainConfig, TrainingProgress, build_optimizer, learning_rate


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


@pytest.mark.parametrize(("name", "kind"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                            ("rmsprop", torch.optim.RMSprop), ("sgd", torch.optim.SGD)])
def test_each_optimizer_name_builds_that_optimizer(name: str, kind: type) -> None:
    config = TrainConfig(optimizer=name, lr=0.05, weight_decay=0.01, betas=(0.8, 0.9), momentum=0.7, max_steps=1)
    optimizer = build_optimizer(nn.Linear(2, 2).parameters(), config)
    assert type(optimizer) is kind
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.05 and group["weight_decay"] == 0.01
    assert group["betas"] == (0.8, 0.9) if name.startswith("adam") else group["momentum"] == 0.7
