"""The trainer's loop: exact resume, budgets, clipping, early stopping, threads, fp16."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
from torch import Tensor

from tests.training_fixtures import (
    APP,
    WINDOWS,
    FakeClock,
    Hook,
    assert_same_parameters,
    lines,
    losses,
    make,
    settings,
    train,
)
from unrolled.checkpoint import load_checkpoint
from unrolled.training import Trainer, learning_rate, loop


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


def test_max_epochs_stops_at_an_epoch_end(tmp_path: Path) -> None:
    result, _ = train(tmp_path, settings(max_steps=None, max_epochs=2, eval_every=100))
    assert result.stopped_because == "max_epochs" and result.steps == 2 * WINDOWS and result.epochs == 2.0


def test_plateau_schedule_lowers_the_learning_rate_in_training(tmp_path: Path) -> None:
    scripted = iter([2.0, 1.0, 1.5, 1.5, 1.5, 1.5])
    config = settings(schedule="plateau", warmup_steps=0, plateau_patience=2, eval_every=2, max_steps=12)
    train(tmp_path, config, evaluate_with=lambda model: {"loss": next(scripted)})
    lr = {step: rate for step, _, rate in losses(tmp_path)}
    # evaluations at steps 2, 4 (best), 6, 8 (2nd without improvement: halve), 10, 12 (again)
    assert [lr[s] for s in (1, 8, 9, 12)] == [0.01, 0.01, 0.005, 0.005]
    assert lines(tmp_path, "validation")[-1]["lr"] == 0.005


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


def test_trainer_needs_evaluate_for_plateau_and_early_stopping(tmp_path: Path) -> None:
    model, data = make()
    for config in (settings(schedule="plateau"), settings(early_stop=3)):
        with pytest.raises(ValueError, match="needs an evaluate function"):
            Trainer(model, data, config, tmp_path, checkpoint_config=APP)
    with pytest.raises(ValueError, match="'kind'"):
        Trainer(model, data, settings(), tmp_path, checkpoint_config={"model": {}})


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


def test_a_config_with_no_budget_trains_one_epoch(tmp_path: Path) -> None:
    config = settings(max_steps=None, eval_every=100)
    result, _ = train(tmp_path, config)
    assert result.stopped_because == "max_epochs" and result.steps == WINDOWS and result.epochs == 1.0
    saved = load_checkpoint(tmp_path / "last").config["train"]
    assert (saved["max_steps"], saved["max_epochs"], saved["max_time"]) == (None, None, None)  # the config as given
    assert [lr for _, _, lr in losses(tmp_path)] == [learning_rate(config, s, horizon=WINDOWS) for s in range(WINDOWS)]


def test_fp16_is_refused_on_the_cpu_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^--precision fp16 needs a CUDA device, not cpu"):
        train(tmp_path, settings(device="cpu", precision="fp16"))
    assert not (tmp_path / "last").exists()


def overflow_at(call: int) -> Hook:
    """A loss that is finite but overflows once scaled (x 65536), so the scaler must skip that update."""
    return lambda k, loss: loss * 1e35 if k == call else loss


def test_fp16_scales_the_loss_counts_skipped_updates_and_resumes_its_scaler(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # fp16's scaler path on the CPU, which refuses fp16 and whose oneDNN has no float16 LSTM: the forward in fp32
    monkeypatch.setattr(loop, "resolve_precision", lambda precision, device: precision)
    monkeypatch.setattr(loop.Trainer, "_autocast", lambda self: contextlib.nullcontext())
    config = settings(precision="fp16", eval_every=100)
    straight, model = train(tmp_path / "straight", config, hook=overflow_at(3))
    assert straight.steps == 12 and straight.skipped_steps == 1
    assert [line["skipped_steps"] for line in lines(tmp_path / "straight")] == [0, 0] + [1] * 10
    first, _ = train(tmp_path / "split", settings(precision="fp16", eval_every=100, max_steps=6, decay_steps=12),
                     hook=overflow_at(3))
    assert first.skipped_steps == 1
    assert load_checkpoint(tmp_path / "split" / "last").training_state["scaler"]["scale"] == 2.0**15  # backed off
    resumed, resumed_model = train(tmp_path / "split", config, resume=True, seed=123)
    assert resumed.skipped_steps == 1 and losses(tmp_path / "split") == losses(tmp_path / "straight")
    assert_same_parameters(resumed_model, model)
    scales = [load_checkpoint(tmp_path / run / "last").training_state["scaler"]["scale"]
              for run in ("straight", "split")]
    assert scales == [2.0**15, 2.0**15]  # the resumed run went on with the saved scale


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 trains on CUDA only")
def test_fp16_on_cuda_trains_and_resumes(tmp_path: Path) -> None:
    config = settings(device="cuda", precision="fp16", eval_every=100)
    straight, _ = train(tmp_path / "straight", config, evaluate_with=None)
    train(tmp_path / "split", settings(device="cuda", precision="fp16", eval_every=100, max_steps=6, decay_steps=12),
          evaluate_with=None)
    resumed, _ = train(tmp_path / "split", config, resume=True, evaluate_with=None)
    assert resumed.steps == straight.steps == 12 and resumed.skipped_steps == straight.skipped_steps
    assert "scaler" in load_checkpoint(tmp_path / "split" / "last").training_state
    for (_, a, _), (_, b, _) in zip(losses(tmp_path / "split"), losses(tmp_path / "straight"), strict=True):
        assert a == pytest.approx(b, rel=1e-3)
