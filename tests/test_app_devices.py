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


def lm_case(folder: Path) -> Case:
    text = folder / "text.txt"
    text.write_text("to be or not to be, that is the question\n" * 30, encoding="utf-8")
    tiny = ["--layers", "1", "--hidden", "8", "--embedding", "4", "--batch-size", "2", "--seq-len", "8"]
    return [str(text), *tiny], ["--prime", "to", "--length", "5"], [str(text)]


def seq2seq_case(folder: Path) -> Case:
    from tests.test_seq2seq_cli import words

    pairs = folder / "reverse.tsv"
    pairs.write_text("".join(f"{w}\t{w[::-1]}\n" for w in words(60, 0)), encoding="utf-8")
    lines = folder / "sources.txt"
    lines.write_text("abc\nba\n", encoding="utf-8")
    tiny = ["--embedding", "4", "--hidden", "8", "--source-tokens", "char", "--target-tokens", "char"]
    return [str(pairs), *tiny], [str(lines), "--beam", "2"], [str(pairs), "--beam", "2"]


def tag_case(folder: Path) -> Case:
    from tests.test_tag_cli import tagged
    from unrolled.data.conll import write_conll

    data = folder / "toy.conll"
    write_conll(data, tagged(40, 0))
    lines = folder / "lines.txt"
    lines.write_text("the cat runs\na dog\n", encoding="utf-8")
    return [str(data), "--task", "plain", "--embedding", "4", "--hidden", "4"], [str(lines)], [str(data)]


def caption_case(folder: Path) -> Case:
    from tests.test_caption_task import squares
    from unrolled.data.images import write_coco

    write_coco(folder / "data" / "captions.json", squares(24))
    captions = str(folder / "data" / "captions.json")
    tiny = ["--image-size", "16", "--channels", "4", "--stages", "2", "--hidden", "8", "--embedding", "8"]
    return [captions, *tiny], [str(folder / "data" / "images" / "0.png")], [captions, "--split", "all"]


def glimpse_case(folder: Path) -> Case:
    from tests.test_glimpse_task import squares
    from unrolled.data.images import write_coco

    write_coco(folder / "data" / "digits.json", squares(24))
    digits = str(folder / "data" / "digits.json")
    tiny = ["--glimpse", "4", "--hidden", "8", "--context", "8,8", "--per-symbol", "1", "--sensor", "linear"]
    return [digits, *tiny], [str(folder / "data" / "images" / "0.png")], [digits, "--split", "all"]


def video_case(folder: Path) -> Case:
    from tests.test_video import moving_squares
    from unrolled.data.clips import write_clips

    data = str(write_clips(folder / "clips.npz", moving_squares(12)))
    return [data, "--channels", "2", "--features", "4", "--hidden", "4"], [data], [data, "--split", "all"]


CASES: dict[str, Callable[[Path], Case]] = {
    "lm": lm_case, "classify": classify_case, "tag": tag_case, "seq2seq": seq2seq_case, "caption": caption_case,
    "glimpse": glimpse_case, "video": video_case, "speech": speech_case}
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


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_run_repeats_from_its_own_configuration_and_resumes_from_its_folder(name: str, tmp_path: Path) -> None:
    """``train --config RUN/config.json`` trains the same model (same configuration, same seed); ``--resume``
    needs only the run folder."""
    train, _, _ = CASES[name](tmp_path)
    first, second = tmp_path / "first", tmp_path / "second"
    assert main([name, "train", *train, "--out", str(first), "--max-steps", "2", "--device", "cpu",
                 "--no-progress"]) == 0
    saved = json.loads((first / "last" / "config.json").read_text())
    assert main([name, "train", "--config", str(first / "last" / "config.json"), "--out", str(second)]) == 0
    assert json.loads((second / "last" / "config.json").read_text())["config"] == saved["config"]
    weights = [(run / "last" / "model.safetensors").read_bytes() for run in (first, second)]
    assert weights[0] == weights[1]
    assert main([name, "train", "--out", str(second), "--resume", "--max-steps", "3", "--no-progress"]) == 0
    assert json.loads((second / "last" / "config.json").read_text())["step"] == 3


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_run_saved_before_configurations_were_kept_still_loads_predicts_and_resumes(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The one difference in checkpoints since then is the "config" entry; without it a run works as before."""
    run, train, predict = trained_without(name, tmp_path, "config")
    capsys.readouterr()
    assert main([name, "predict", str(run), *predict, "--json", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip()
    assert main([name, "train", *train, "--out", str(run), "--resume", "--max-steps", "3", "--device", "cpu",
                 "--no-progress"]) == 0
    resumed = json.loads((run / "last" / "config.json").read_text())
    assert resumed["step"] == 3 and "config" not in resumed  # nothing new to compare against, so none is added


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_config_without_the_model_is_one_line_naming_what_is_missing(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.cli_errors import one_error_line

    run, _, predict = trained_without(name, tmp_path, "model")
    capsys.readouterr()
    one_error_line(capsys, main([name, "predict", str(run), *predict, "--device", "cpu"]), "config.json lacks what",
                   APPLICATIONS[name].predictor.what)


def trained_without(name: str, folder: Path, key: str) -> tuple[Path, list[str], list[str]]:
    """A run of application `name` trained two steps, then `key` taken out of its checkpoints' config.json;
    the run, and the case's train and predict arguments."""
    train, predict, _ = CASES[name](folder)
    run = folder / "run"
    assert main([name, "train", *train, "--out", str(run), "--max-steps", "2", "--device", "cpu",
                 "--no-progress"]) == 0
    for checkpoint in (run / "last", run / "best"):
        if checkpoint.is_dir():
            saved = json.loads((checkpoint / "config.json").read_text())
            del saved[key]
            (checkpoint / "config.json").write_text(json.dumps(saved))
    return run, train, predict
