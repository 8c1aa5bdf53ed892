"""Ctrl-C saves the last whole step; a run that stops being finite says so in one line."""

from __future__ import annotations

import math
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.training_fixtures import Hook, assert_same_parameters, interrupt_at, losses, settings, train
from unrolled.checkpoint import load_checkpoint
from unrolled.training import TrainingError, resume
from unrolled.training.interrupt import BOUNDARY, UPDATE, SigintGuard, check_finite, diverged


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
    original = resume.save_checkpoint
    saves = [0]

    def save_then_interrupted(*args: Any, **kwargs: Any) -> Path:
        saves[0] += 1
        if saves[0] == 2:  # the save after the first Ctrl-C
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(resume, "save_checkpoint", save_then_interrupted)
    result, _ = train(tmp_path, settings(save_every=4, eval_every=100), evaluate_with=None, hook=interrupt_at(7))
    assert result.stopped_because == "interrupted"
    assert "interrupted again while saving step 6" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "last").config["step"] == 4


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


def test_the_guard_holds_ctrl_c_back_during_an_update_and_puts_the_handler_back() -> None:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with SigintGuard() as guard:
            guard.phase = UPDATE
            signal.raise_signal(signal.SIGINT)  # held back
            assert guard.pending
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)  # a second one goes through
            with pytest.raises(KeyboardInterrupt):
                guard.check()
            guard.phase, guard.pending = BOUNDARY, False
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_divergence_says_what_where_and_what_is_kept(tmp_path: Path) -> None:
    last = tmp_path / "last"
    check_finite("loss", 1.0, step=3, saved_step=None, last=last)
    with pytest.raises(TrainingError, match=r"^the gradient norm became inf at step 3; no checkpoint was saved before "
                                            r"\(there is none in .*last\); try a lower --lr or --clip$"):
        check_finite("the gradient norm", math.inf, step=3, saved_step=None, last=last)
    error = diverged("a parameter", math.nan, step=9, saved_step=8, last=last)
    assert str(error) == f"a parameter became nan at step 9; the last good checkpoint (step 8) is kept in {last}; " \
                         "try a lower --lr or --clip"
