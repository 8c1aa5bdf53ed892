"""Reading digit strings end to end on images made on the spot: training, reading, evaluation, the CLI, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from unrolled.apps import glimpse
from unrolled.cli import main
from unrolled.data.images import ImageCaptions, write_coco
from unrolled.training import TrainConfig


def squares(count: int, seed: int = 0) -> ImageCaptions:
    """16 x 16 images: a bright square on the left reads "1", on the right "2", both "1 2"."""
    generator = np.random.default_rng(seed)
    images = np.zeros((count, 16, 16, 3), dtype=np.uint8)
    captions = []
    for i in range(count):
        kind = int(generator.integers(0, 3))
        if kind in (0, 2):
            images[i, 5:11, 1:7] = 255
        if kind in (1, 2):
            images[i, 5:11, 9:15] = 255
        captions.append([["1", "2", "1 2"][kind]])
    return ImageCaptions(images=images, captions=captions, names=[f"{i}.png" for i in range(count)], splits=None)


def test_box_centres_are_the_digits_centres_in_half_images() -> None:
    images = np.zeros((2, 16, 32, 3), dtype=np.uint8)
    data = ImageCaptions(images=images, captions=[["1 2"], ["3"]], names=["a.png", "b.png"], splits=None,
                         boxes=[[(0, 0, 8, 8), (8, 16, 16, 32)], [(0, 0, 4, 4), (4, 4, 8, 8)]])
    centres = glimpse.box_centres(data, glimpse.digit_strings_of(data), symbols=3)
    assert centres is not None
    torch.testing.assert_close(centres[0, :2], torch.tensor([[-0.5, -0.75], [0.5, 0.5]]))
    assert bool(centres[0, 2].isnan().all()) and bool(centres[1].isnan().all())  # <end>; 2 boxes for 1 digit
    assert glimpse.box_centres(squares(2), [[1], [2]], symbols=3) is None  # no boxes: no guidance


def configured(model: str, options: dict[str, Any], train: TrainConfig, **data: Any) -> glimpse.ReaderConfig:
    return glimpse.ReaderConfig(data=glimpse.ReaderData(**data), model=glimpse.ReaderModel(model=model, **options),
                                train=train)


def test_guidance_without_boxes_says_it_has_no_effect(tmp_path: Path) -> None:
    config = TrainConfig(max_steps=2, eval_every=100, progress=False)
    with pytest.warns(UserWarning, match=r"no box for each digit, so guidance \(--guide\) has no effect"):
        glimpse.fit(configured("dram", {**DRAM, "guide": 1.0}, config), tmp_path / "guided", data=squares(40))


DRAM = {"glimpse": 4, "scales": 3, "features": 32, "hidden": 32, "per_symbol": 2, "context": (8, 8),
        "std": 0.1, "guide": 0.0, "sensor": "linear"}  # GlimpseConfig's std, guide and sensor


@pytest.mark.parametrize(("model", "options"), [("dram", DRAM), ("cnn", {"channels": (8, 8), "hidden": 32})])
def test_a_trained_reader_reads_and_draws_its_glimpses(model: str, options: dict[str, object], tmp_path: Path) -> None:
    data = squares(240)
    train = TrainConfig(max_steps=200, lr=3e-3, eval_every=100, seed=1, progress=False)
    glimpse.fit(configured(model, options, train, batch_size=32, validation=0.1, test=0.1), tmp_path / "run",
                data=data)
    reader = glimpse.Reader.load(tmp_path / "run")
    assert reader.model_type == model and reader.size == (16, 16)
    assert reader.split is not None
    test = glimpse.split_images(data, glimpse.SplitRecord(**reader.split))["test"]
    report = reader.evaluate(data.select(test))
    assert report["images"] == len(test) and report["sequence_error"] <= 0.05
    assert set(report["by_length"]) == {"1", "2"}
    strings, centres = reader.read(data.images[:5])
    assert strings == [[int(d) for d in data.captions[k][0].split()] for k in range(5)]
    if model == "dram":
        assert centres is not None and centres.shape == (5, 3 * 2, 2)  # (max_digits 2 + <end>) x 2 glimpses
        glimpse.plot_glimpses(data.images[0], centres[0], reader.model.config, tmp_path / "path.png")  # type: ignore[arg-type]
        with Image.open(tmp_path / "path.png") as picture:
            assert picture.format == "PNG"
    else:
        assert centres is None


def test_the_cli_trains_reads_files_and_evaluates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_coco(tmp_path / "data" / "digits.json", squares(60))
    run = tmp_path / "run"
    assert main(["glimpse", "train", str(tmp_path / "data" / "digits.json"), "--out", str(run), "--glimpse", "4",
                 "--hidden", "16", "--per-symbol", "1", "--max-steps", "3", "--batch", "8", "--no-progress"]) == 0
    Image.fromarray(squares(1, seed=5).images[0]).resize((48, 48)).save(tmp_path / "big.png")
    capsys.readouterr()
    assert main(["glimpse", "run", str(run), str(tmp_path / "big.png"), "--json", "--path",
                 str(tmp_path / "path.png")]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["image"] == str(tmp_path / "big.png") and len(line["glimpses"]) == 3  # (2 digits + <end>) x 1
    assert (tmp_path / "path.png").is_file()
    assert main(["glimpse", "eval", str(run), str(tmp_path / "data" / "digits.json"), "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) >= {"images", "sequence_error", "by_length"}


def test_predict_and_eval_print_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_coco(tmp_path / "data" / "digits.json", squares(24))
    run = tmp_path / "run"
    assert main(["glimpse", "train", str(tmp_path / "data" / "digits.json"), "--out", str(run), "--glimpse", "4",
                 "--hidden", "8", "--context", "8,8", "--per-symbol", "1", "--max-steps", "2", "--batch-size", "8",
                 "--sensor", "linear", "--guide", "0", "--no-progress", "--device", "cpu"]) == 0
    assert json.loads((run / "last" / "config.json").read_text())["config"]["model"]["context"] == [8, 8]
    capsys.readouterr()
    picture = tmp_path / "data" / "images" / "0.png"
    assert main(["glimpse", "predict", str(run), str(picture), "--json", "--batch", "2", "--device", "cpu"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["image"] == str(picture) and len(line["glimpses"]) == 3  # (2 digits + <end>) x 1
    assert main(["glimpse", "eval", str(run), str(tmp_path / "data" / "digits.json"), "--split", "all",
                 "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 24 and set(report) == {"images", "sequence_error", "by_length", "per_second"}


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    words = squares(20)
    words.captions[3] = ["one two"]
    write_coco(tmp_path / "words.json", words)
    assert main(["glimpse", "train", str(tmp_path / "words.json"), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "the caption 'one two' is not digits separated by spaces" in error
    write_coco(tmp_path / "ok.json", squares(20))
    assert main(["glimpse", "train", str(tmp_path / "ok.json"), "--out", str(tmp_path / "cnn"), "--model", "cnn",
                 "--max-steps", "1", "--no-progress"]) == 0
    assert main(["glimpse", "run", str(tmp_path / "cnn"), str(tmp_path / "images" / "0.png"), "--path",
                 str(tmp_path / "p.png")]) == 2
    assert "is a CNN reader: it takes no glimpses" in capsys.readouterr().err
    assert main(["glimpse", "train", str(tmp_path / "ok.json"), "--out", str(tmp_path / "short"),
                 "--max-digits", "1"]) == 2
    assert "have more than 1 digits" in capsys.readouterr().err
