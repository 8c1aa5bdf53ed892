"""`TrainConfig`: validation, JSON, durations, and the metadata of its command-line options."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict
from typing import Any

import pytest

from unrolled.training import OPTIMIZERS, PRECISIONS, SCHEDULES, TrainConfig, parse_duration
from unrolled.training.config import option_fields


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
    ({"max_time": 0.0}, "max_time"), ({"min_lr_ratio": 1.5}, "min_lr_ratio"),
    ({"plateau_factor": 1.0}, "plateau_factor"), ({"early_stop": 0}, "early_stop")])
def test_config_validation_says_what_is_wrong(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field) as error:
        TrainConfig(**{"max_steps": 10, **changes})
    assert "\n" not in str(error.value)


def test_config_is_json_and_clip_zero_means_off() -> None:
    config = TrainConfig(max_time=parse_duration("10m"), clip_norm=0, betas=[0.8, 0.9])  # type: ignore[arg-type]
    assert config.betas == (0.8, 0.9) and config.clipping is None
    assert TrainConfig(**json.loads(json.dumps(asdict(config)))) == config


def test_a_config_with_no_budget_is_valid_and_left_as_it_is() -> None:
    config = TrainConfig()
    assert (config.max_steps, config.max_epochs, config.max_time) == (None, None, None)
    assert config.epoch_budget == 1  # the trainer trains one epoch
    assert config.device == "auto" and config.precision == "fp32"
    overridden = dataclasses.replace(config, max_steps=5)
    assert overridden.max_steps == 5 and overridden.max_epochs is None and overridden.epoch_budget is None
    assert dataclasses.replace(config, max_epochs=3).epoch_budget == 3


def test_an_unknown_device_name_is_refused_by_the_config() -> None:
    with pytest.raises(ValueError, match=r"^--device 'tpu': not a device name"):
        TrainConfig(device="tpu")
    assert TrainConfig(device="cuda:1").device == "cuda:1"  # the form only: whether it is here is the trainer's


def test_every_field_has_help_and_the_options_metadata() -> None:
    meta = {item.name: item.metadata for item in dataclasses.fields(TrainConfig)}
    assert all(isinstance(m.get("help"), str) and m["help"] for m in meta.values())
    assert meta["warmup_steps"]["aliases"] == ("--warmup",) and meta["warmup_steps"]["metavar"] == "STEPS"
    assert meta["clip_norm"]["aliases"] == ("--clip",) and "0 turns it off" in meta["clip_norm"]["help"]
    assert meta["max_time"]["parse"] == "duration" and meta["max_time"]["metavar"] == "DURATION"
    assert meta["progress"]["negate"] == ("--no-progress",)
    assert meta["optimizer"]["choices"] == OPTIMIZERS and meta["schedule"]["choices"] == SCHEDULES
    assert meta["precision"]["choices"] == PRECISIONS
    unflagged = {"betas", "momentum", "plateau_factor", "plateau_patience", "step_size", "gamma", "min_lr_ratio",
                 "save_every"}
    assert {name for name, m in meta.items() if m.get("flag") is False} == unflagged
    assert {item.name for item in option_fields()} == set(meta) - unflagged


def test_the_metadata_choices_are_what_validation_accepts() -> None:
    for item in dataclasses.fields(TrainConfig):
        for choice in item.metadata.get("choices", ()):
            assert getattr(TrainConfig(**{item.name: choice}), item.name) == choice
    for flagged in option_fields():  # the derived flags parse durations where the metadata says so
        if flagged.metadata.get("parse") == "duration":
            assert TrainConfig(**{flagged.name: parse_duration("1.5h")}).max_time == 5400.0
