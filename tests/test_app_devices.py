"""Every application on every device here: train two steps, save, load, predict and evaluate, from the command line.

The CUDA cases skip, with the reason, where there is no CUDA device; run them on
a GPU machine (``pytest tests/test_app_devices.py``). The CPU cases run
everywhere, so the same path is exercised in every run of the suite.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from unrolled.apps.registry import APPLICATIONS
from unrolled.cli import main

Case = tuple[list[str], list[str], list[str]]  # train arguments, predict arguments, eval arguments (after RUN)


def classify_case(folder: Path) -> Case:
    from tests.test_apps import write_toy

    data = str(write_toy(folder / "toy.csv"))
    return [data, "--hidden", "4", "--embedding", "4"], [data], [data]


def speech_case(folder: Path) -> Case:
    from tests.test_speech_task import write_corpus

    manifest = write_corpus(folder, ["ab", "ba"], copies=5, split=True)
    tiny = ["--hidden", "8", "--decoder-hidden", "8", "--stack", "2", "--stride", "2", "--decoder", "joint"]
    return [str(manifest), *tiny], [str(folder / "clips" / "ab-0.wav")], [str(manifest), "--split", "all"]


CASES: dict[str, Callable[[Path], Case]] = {"classify": classify_case, "speech": speech_case}
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here (torch.cuda.is_available())")


def test_every_application_has_a_case() -> None:
    assert set(CASES) == set(APPLICATIONS)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("name", sorted(CASES))
def test_train_save_load_predict_and_evaluate_on_the_device(name: str, device: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    train, predict, evaluate = CASES[name](tmp_path)
    run = tmp_path / "run"
    assert main([name, "train", *train, "--out", str(run), "--max-steps", "2", "--device", device,
                 "--no-progress"]) == 0
    predictor = APPLICATIONS[name].predictor.load(run, device=device)
    assert predictor.device.type == device
    capsys.readouterr()
    assert main([name, "predict", str(run), *predict, "--device", device, "--json"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert results and all(isinstance(result, dict) for result in results)
    assert main([name, "eval", str(run), *evaluate, "--device", device, "--json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), dict)
