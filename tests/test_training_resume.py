"""Resuming a run: the checks that refuse another run, and what a checkpoint holds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.training_fixtures import APP, E, H, assert_same_parameters, make, settings, train
from unrolled.checkpoint import load_checkpoint, save_checkpoint
from unrolled.training import TrainingProgress, build_optimizer
from unrolled.training.resume import Resumable, differing_keys, load_run, save_run


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


def test_differing_keys_name_the_dotted_paths() -> None:
    old = {"kind": "lm", "model": {"hidden": 8, "layers": 2}, "split": [0, 1]}
    new = {"kind": "lm", "model": {"hidden": 9, "layers": 2, "dropout": 0.1}, "split": [0, 1]}
    assert differing_keys(new, old) == ["model.dropout", "model.hidden"]
    assert differing_keys(new, new) == [] and differing_keys(1, 2) == ["(the whole config)"]


def test_a_checkpoint_from_before_the_new_fields_loads() -> None:
    saved = {"step": 7, "epoch": 0, "batch": 7, "elapsed": 3.5, "horizon": 12, "best_loss": 2.0, "best_step": 4}
    progress = TrainingProgress.from_state(saved)  # no skipped_steps, no time line; a legacy horizon ignored here
    assert (progress.step, progress.skipped_steps, progress.decay_from, progress.best_loss) == (7, 0, None, 2.0)


def test_the_scaler_state_is_saved_and_restored(tmp_path: Path) -> None:
    model, data = make()
    config = settings()
    scaler = torch.amp.GradScaler("cpu", init_scale=512.0)
    saving = Resumable(model, build_optimizer(model.parameters(), config), data, scaler)
    save_run(tmp_path / "last", saving, progress=TrainingProgress(step=3), world=1, data_states=[data.state_dict()],
             app_config=APP, config=config, validation={"loss": 1.0, "step": 3})
    saved = load_checkpoint(tmp_path / "last")
    assert saved.config["validation"] == {"loss": 1.0, "step": 3} and saved.config["train"]["device"] == "auto"
    model, data = make(seed=1)
    loading = Resumable(model, build_optimizer(model.parameters(), config), data, torch.amp.GradScaler("cpu"))
    progress = load_run(tmp_path / "last", loading, app_config=APP, config=config, rank=0, world=1)
    assert progress.step == 3 and loading.scaler is not None and loading.scaler.get_scale() == 512.0
    assert_same_parameters(model, saving.model)


def test_a_run_saved_with_the_old_trainer_resumes(tmp_path: Path) -> None:
    train(tmp_path, settings(max_steps=4))
    saved = load_checkpoint(tmp_path / "last")
    del saved.training_state["progress"]["skipped_steps"]  # as the single-module trainer wrote it
    old_train = {key: value for key, value in saved.config["train"].items()}
    old_train["device"] = "cpu"
    save_checkpoint(tmp_path / "last", model_state=saved.model_state, training_state=saved.training_state,
                    config={**saved.config, "train": old_train})
    result, _ = train(tmp_path, settings(max_steps=6), resume=True)
    assert result.steps == 6 and result.skipped_steps == 0
