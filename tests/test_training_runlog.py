"""The run's metrics lines, their means, the curve and the progress bar."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.training_fixtures import WINDOWS, interrupt_at, lines, settings, train
from unrolled.checkpoint import load_checkpoint
from unrolled.training import TrainingProgress
from unrolled.training.runlog import add_to_window, json_safe, plot_curve, window_means


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


def test_the_curve_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "curve.png"
    plot_curve(path, [], [])  # nothing to draw yet: axes only
    plot_curve(path, [(1, 2.0), (2, 1.5)], [(2, 1.7)])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]  # no temporary file left beside it


def test_a_train_line_holds_the_means_of_its_window_and_starts_the_next() -> None:
    progress = TrainingProgress()
    add_to_window(progress, 2.0, {"tokens": 10.0, "loss": 99.0}, 0.5)
    add_to_window(progress, 1.0, {"tokens": 30.0}, None)
    assert window_means(progress) == {"loss": 1.5, "tokens": 20.0, "grad_norm": 0.25}
    assert (progress.window_sums, progress.window_steps) == ({}, 0)


def test_json_lines_hold_no_nan() -> None:
    assert [json_safe(v) for v in (1.5, math.nan, math.inf, "x", 3)] == [1.5, None, None, "x", 3]
