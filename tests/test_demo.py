"""`unrolled demo`: the main job end to end on a small stand-in corpus, and its closing words."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import unrolled.data
from tests.cli_errors import one_error_line
from unrolled import demo
from unrolled.cli import main
from unrolled.training import TrainResult

LINES = ("MACBETH.\nIs this a dagger which I see before me,\nThe handle toward my hand? Come, let me clutch thee.\n\n"
         "LADY MACBETH.\nThat which hath made them drunk hath made me bold;\nWhat hath quench'd them hath given "
         "me fire.\n\n")


@pytest.fixture
def small_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "shakespeare.txt"
    path.write_text(LINES * 150, encoding="utf-8")  # 30,000 characters
    monkeypatch.setattr(unrolled.data, "obtain", lambda name: path)
    return path


def test_the_demo_trains_samples_with_the_corpus_prime_and_says_what_happened(
        small_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--max-time", "4s", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("--- sample, temperature") == 2
    assert printed.count(demo.PRIME) >= 2  # both samples start from it
    assert "validation loss" in printed and "bits/char" in printed and "perplexity" in printed
    assert f"demo --out {out} --max-time 5m04s --resume" in printed
    assert f"viz {out} --part validation" in printed
    assert (out / "best" / "config.json").is_file() and (out / "curve.png").is_file()


def test_the_demo_resumes_with_its_own_recipe(small_corpus: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--max-time", "3s", "--no-progress"]) == 0
    assert main(["demo", "--out", str(out), "--max-time", "5s", "--no-progress", "--resume"]) == 0
    assert "resumed" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "said"), [
    (["--max-time", "soon"], "cannot read 'soon' as a duration"),
    (["--resume"], "no checkpoint to resume"),
])
def test_bad_demo_input_is_one_line(small_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    argv: list[str], said: str) -> None:
    one_error_line(capsys, main(["demo", "--out", str(tmp_path / "none"), "--no-progress", *argv]), said)


def test_the_closing_words_put_the_loss_in_plain_terms(tmp_path: Path) -> None:
    result = TrainResult(steps=2000, epochs=2.5, stopped_because="max_time", best_loss=1.6, best_step=2000,
                         last_metrics={}, run_dir=tmp_path, elapsed=300.2)
    samples = [(0.5, "MACBETH.\nso"), (1.0, "MACBETH.\nno")]
    report = demo.DemoReport(demo.choose_recipe("fp32", speed=50_000.0), result, samples, Path("runs/demo"),
                             {"loss": 1.6}, 84)
    text = demo.describe(report, prog=".venv/bin/unrolled", max_time=300)
    assert f"validation loss 1.600 nats/char = {1.6 / math.log(2):.2f} bits/char, perplexity {math.exp(1.6):.1f}" \
        in text
    assert "a fair pick among 5.0 characters, where a blind guess picks among 84" in text
    assert "trained 2000 steps in 5m (2.50 passes" in text
    assert ".venv/bin/unrolled demo --out runs/demo --max-time 10m --resume" in text
    assert ".venv/bin/unrolled viz runs/demo --part validation" in text
    assert "runs/demo/curve.png" in text and "runs/demo/best" in text


@pytest.mark.parametrize(("speed", "max_time", "batch"), [
    (60_000.0, 300.0, 64),  # 60,000 x 300 / (128 x 64) = 2,197 updates: enough
    (40_000.0, 300.0, 32),  # 1,465 at 64: too few; 2,930 at 32
    (12_000.0, 300.0, 16),  # 703 at 32: too few; 1,406 at 16, the smallest
    (12_000.0, 1200.0, 64),  # four times the time: 1,758 at 64
])
def test_the_recipe_takes_the_largest_batch_that_leaves_enough_updates(speed: float, max_time: float,
                                                                         batch: int) -> None:
    recipe = demo.choose_recipe("fp32", max_time=max_time, speed=speed)
    assert (recipe.hidden, recipe.batch, recipe.lr, recipe.precision) == (256, batch, 6e-3, "fp32")
    assert recipe.batch == 16 or max_time * speed / (128 * recipe.batch) >= demo.MIN_UPDATES


def test_the_speed_probe_measures_the_demo_model() -> None:
    speed = demo.measure_speed("fp32", steps=1)
    assert 100 < speed < 10_000_000
