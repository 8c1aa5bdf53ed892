"""What every registered application shares: one command grammar, --config, saved configurations, devices."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import torch

from tests.cli_errors import one_error_line
from unrolled.apps.registry import APPLICATIONS
from unrolled.cli import build_parser, main

COMMON = {"train": ("--out", "--resume", "--config", "--seed", "--device", "--max-time", "--max-steps"),
          "predict": ("--device", "--batch-size", "--json"),
          "eval": ("--device", "--batch-size", "--json", "--split")}


def flags_of(argv: list[str]) -> set[str]:
    parser = build_parser()
    for word in argv:
        actions = [a for a in parser._actions if a.choices and word in a.choices]
        parser = actions[0].choices[word]  # type: ignore[index]
    return {name for action in parser._actions for name in action.option_strings}


@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_every_application_has_the_same_three_commands_and_flags(name: str) -> None:
    for action, flags in COMMON.items():
        assert set(flags) <= flags_of([name, action]), (name, action)


def write_toy(path: Path) -> Path:
    rng = random.Random(0)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for _ in range(60):
            label = rng.choice(["pos", "neg"])
            words = ["good", "fine", "great"] if label == "pos" else ["bad", "awful", "poor"]
            writer.writerow([" ".join(rng.choice(words) for _ in range(4)), label])
    return path


TINY = ["--hidden", "4", "--embedding", "4", "--max-steps", "2", "--no-progress", "--device", "cpu"]


def test_a_flag_lands_in_the_saved_configuration(tmp_path: Path) -> None:
    data = write_toy(tmp_path / "toy.csv")
    assert main(["classify", "train", str(data), "--out", str(tmp_path / "run"), *TINY, "--cell", "gru"]) == 0
    assert json.loads((tmp_path / "run" / "last" / "config.json").read_text())["config"]["model"]["cell"] == "gru"


def test_a_configuration_reads_a_runs_saved_configuration_back_from_python(tmp_path: Path) -> None:
    from unrolled.apps.classify import ClassifyConfig

    data = write_toy(tmp_path / "toy.csv")
    assert main(["classify", "train", str(data), "--out", str(tmp_path / "run"), *TINY, "--pooling", "mean",
                 "--lr", "0.003"]) == 0
    saved = json.loads((tmp_path / "run" / "last" / "config.json").read_text())
    config = ClassifyConfig.from_file(tmp_path / "run" / "last" / "config.json")
    assert config.model.pooling == "mean" and config.train.lr == 0.003
    assert {name: section for name, section in config.to_json().items() if name != "train"} == saved["config"]
    assert config.to_json()["train"] == saved["train"]


def test_a_resume_needs_only_the_run_folder(tmp_path: Path) -> None:
    data = write_toy(tmp_path / "toy.csv")
    out = tmp_path / "run"
    assert main(["classify", "train", str(data), "--out", str(out), *TINY]) == 0
    assert main(["classify", "train", "--out", str(out), "--resume", "--max-steps", "4"]) == 0
    assert json.loads((out / "last" / "config.json").read_text())["step"] == 4


def test_a_yaml_file_sets_options_and_flags_override_it(tmp_path: Path) -> None:
    data = write_toy(tmp_path / "toy.csv")
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  file: {data}\nmodel:\n  hidden: 3\n  cell: rnn\ntrain:\n  max_steps: 1\n")
    out = tmp_path / "run"
    assert main(["classify", "train", "--config", str(config), "--out", str(out), "--hidden", "5",
                 "--embedding", "4", "--no-progress"]) == 0
    saved = json.loads((out / "last" / "config.json").read_text())
    assert saved["model"]["hidden"] == 5 and saved["model"]["cell"] == "rnn" and saved["step"] == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: the request is valid")
@pytest.mark.parametrize("action", ["train", "predict", "eval"])
def test_asking_for_cuda_where_there_is_none_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          action: str) -> None:
    data = write_toy(tmp_path / "toy.csv")
    run = tmp_path / "run"
    assert main(["classify", "train", str(data), "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    # train: refused before any data is read (this file does not exist)
    argv = {"train": ["classify", "train", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "other"), "--device",
                      "cuda"],
            "predict": ["classify", "predict", str(run), str(data), "--device", "cuda"],
            "eval": ["classify", "eval", str(run), str(data), "--device", "cuda"]}[action]
    one_error_line(capsys, main(argv), "--device cuda", "no CUDA")


def test_python_dash_m_runs_the_command() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "unrolled", "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("unrolled ")


def test_import_unrolled_offers_every_predictor_and_configuration() -> None:
    import unrolled

    for app in APPLICATIONS.values():
        assert getattr(unrolled, app.predictor.__name__) is app.predictor
        assert getattr(unrolled, app.config.__name__) is app.config
        assert app.predictor.__name__ in dir(unrolled)
    with pytest.raises(AttributeError):
        _ = unrolled.NoSuchThing
    assert (Path(unrolled.__file__).parent / "py.typed").is_file()


def test_the_trainers_old_flag_spellings_still_set_its_fields(tmp_path: Path) -> None:
    from unrolled.apps.classify import APP
    from unrolled.cli.apps import train_configuration

    argv = ["classify", "train", "x.csv", "--out", str(tmp_path / "r"), "--warmup", "3", "--clip", "0",
            "--max-time", "1.5h", "--no-progress", "--batch", "7", "--unidirectional"]
    config = train_configuration(APP, build_parser().parse_args(argv))
    assert (config.train.warmup_steps, config.train.clip_norm, config.train.max_time) == (3, 0.0, 5400.0)
    assert config.train.progress is False and config.train.clipping is None
    assert config.data.batch_size == 7 and config.data.file == "x.csv" and config.model.bidirectional is False
    assert config.train.eval_every is None and config.train.optimizer == "adam"  # the application's own defaults


@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_validation_during_training_gives_the_model_back_in_training_mode(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dropout stays on after each evaluation, whatever an application's evaluation does to the model's mode (a
    predictor built inside it puts the model in eval mode): every step trains in train mode."""
    from tests.test_app_devices import CASES

    modes: list[bool] = []
    from unrolled.training import loop

    original = loop.Trainer._step  # type: ignore[attr-defined]

    def watched(self: object, batch: object) -> object:
        modes.append(self.model.training)  # type: ignore[attr-defined]
        return original(self, batch)

    monkeypatch.setattr(loop.Trainer, "_step", watched)
    train, _, _ = CASES[name](tmp_path)
    assert main([name, "train", *train, "--out", str(tmp_path / "run"), "--max-steps", "4", "--eval-every", "1",
                 "--device", "cpu", "--no-progress"]) == 0
    assert len(modes) == 4 and all(modes)
