"""Captioning end to end on images made on the spot: training, captioning, evaluation, the CLI and its errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from unrolled.apps import caption
from unrolled.cli import main
from unrolled.data.images import ImageCaptions, write_coco
from unrolled.models.captioner import Captioner, CaptionerConfig
from unrolled.training import TrainConfig

COLOURS = {"red": (230, 30, 30), "green": (30, 200, 30), "blue": (40, 40, 230)}
PLACES = {"top": (0, 8), "bottom": (8, 16)}


def squares(count: int, seed: int = 0, size: int = 16) -> ImageCaptions:
    """A coloured square in the top or bottom half of a dark image, captioned 'a COLOUR square at the PLACE'."""
    generator = np.random.default_rng(seed)
    images = np.zeros((count, size, size, 3), dtype=np.uint8)
    captions = []
    for i in range(count):
        colour, place = generator.choice(list(COLOURS)), generator.choice(list(PLACES))
        top, bottom = PLACES[place]
        left = int(generator.integers(0, size - 6))
        images[i, top + 1 : bottom - 1, left : left + 6] = COLOURS[colour]
        captions.append([f"a {colour} square at the {place}"])
    return ImageCaptions(images=images, captions=captions, names=[f"{i}.png" for i in range(count)], splits=None)


def small(**options: object) -> dict[str, object]:
    return {"channels": 8, "stages": 2, "embedding": 16, "hidden": 32, "dropout": 0.0, **options}


def configured(train: TrainConfig, **data: Any) -> caption.CaptionConfig:
    """The small captioner of `small`, trained as `train` says, with these data options."""
    return caption.CaptionConfig(data=caption.CaptionData(**data), model=caption.CaptionModel(**small()),  # type: ignore[arg-type]
                                 train=train)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("caption") / "run"
    train = TrainConfig(max_steps=150, lr=1e-2, schedule="cosine", eval_every=75, seed=0)
    caption.fit(configured(train, validation=0.125, test=0.125, batch_size=16), out, data=squares(96))
    return out


def test_a_trained_captioner_describes_what_it_was_trained_on(trained: Path) -> None:
    captioner = caption.ImageCaptioner.load(trained)
    data = squares(96)
    assert captioner.split is not None
    parts = caption.split_images(data, caption.SplitRecord(**captioner.split))
    assert sorted(parts["train"] + parts["validation"] + parts["test"]) == list(range(96))
    report = captioner.evaluate(data.select(parts["train"]), caption.CaptionEvalOptions(beam=3))
    assert report["images"] == len(parts["train"])
    assert report["beam1"]["sequence_error"] <= 0.1 and report["beam3"]["sequence_error"] <= 0.1
    best = captioner.caption(data.images[:4], beam=3, n_best=2)
    assert [len(found) for found in best] == [2, 2, 2, 2]
    assert all(found[0].normalised >= found[1].normalised for found in best)


def test_beam_one_equals_greedy_and_attention_maps_cover_the_grid(trained: Path, tmp_path: Path) -> None:
    captioner = caption.ImageCaptioner.load(trained)
    data = squares(8, seed=3)
    ones = captioner.caption(data.images, beam=1, attention=True)
    for found in ones:
        maps = found[0].attention
        assert maps is not None and maps.shape == (len(found[0].tokens) + 1, 4, 4)  # 16 px halved twice
        torch.testing.assert_close(maps.sum(dim=(1, 2)), torch.ones(maps.shape[0]))
    path = tmp_path / "strip.png"
    caption.plot_attention_strip(data.images[0], ones[0][0], path)
    with Image.open(path) as strip:
        assert strip.format == "PNG" and strip.width > strip.height


def test_training_resumes_where_it_stopped(tmp_path: Path) -> None:
    data = squares(32)
    config = TrainConfig(max_steps=6, lr=1e-3, eval_every=3, seed=1, schedule="constant")
    straight = caption.fit(configured(config, batch_size=8), tmp_path / "straight", data=data)
    caption.fit(configured(TrainConfig(max_steps=3, lr=1e-3, eval_every=3, seed=1, schedule="constant"), batch_size=8),
                tmp_path / "split", data=data)
    resumed = caption.fit(configured(config, batch_size=8), tmp_path / "split", resume=True, data=data)
    assert resumed.steps == straight.steps == 6
    one = caption.ImageCaptioner.load(tmp_path / "straight" / "last").model.state_dict()
    two = caption.ImageCaptioner.load(tmp_path / "split" / "last").model.state_dict()
    assert all(torch.equal(one[k], two[k]) for k in one)


def test_a_pretrained_encoder_is_loaded_and_a_wrong_one_refused(tmp_path: Path) -> None:
    source = Captioner(CaptionerConfig(vocab=10, **small()))  # type: ignore[arg-type]
    torch.save(source.encoder.state_dict(), tmp_path / "encoder.pt")
    target = Captioner(CaptionerConfig(vocab=12, **small()))  # type: ignore[arg-type]
    caption.load_encoder(target, tmp_path / "encoder.pt")
    assert all(torch.equal(a, b) for a, b in zip(source.encoder.state_dict().values(),
                                                  target.encoder.state_dict().values(), strict=True))
    wider = Captioner(CaptionerConfig(vocab=12, **small(channels=4)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"does not fit this encoder \(--channels 4 --stages 2\)"):
        caption.load_encoder(wider, tmp_path / "encoder.pt")
    (tmp_path / "junk.pt").write_text("not a state dict")
    with pytest.raises(ValueError, match="is not a readable state dict"):
        caption.load_encoder(target, tmp_path / "junk.pt")


def test_the_cli_trains_captions_files_and_evaluates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = squares(40)
    write_coco(tmp_path / "data" / "captions.json", data)
    run = tmp_path / "run"
    assert main(["caption", "train", str(tmp_path / "data" / "captions.json"), "--out", str(run), "--image-size",
                 "16", "--channels", "8", "--stages", "2", "--hidden", "32", "--embedding", "16",
                 "--max-steps", "4", "--batch", "8", "--no-progress"]) == 0
    picture = tmp_path / "big.jpg"
    Image.fromarray(np.kron(data.images[0], np.ones((3, 3, 1), dtype=np.uint8))).save(picture)  # 48 x 48
    capsys.readouterr()
    assert main(["caption", "run", str(run), str(picture), "--beam", "2", "--n-best", "2", "--json",
                 "--attention-map", str(tmp_path / "map.png")]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["image"] == str(picture) and len(line["captions"]) == 2
    assert (tmp_path / "map.png").is_file()
    assert main(["caption", "eval", str(run), str(tmp_path / "data" / "captions.json"), "--beam", "2",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"images", "beam1", "beam2"}


def test_predict_and_eval_print_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_coco(tmp_path / "data" / "captions.json", squares(24))
    run = tmp_path / "run"
    assert main(["caption", "train", str(tmp_path / "data" / "captions.json"), "--out", str(run), "--image-size",
                 "16", "--channels", "4", "--stages", "2", "--hidden", "8", "--embedding", "8", "--max-steps", "2",
                 "--batch-size", "8", "--attention", "none", "--no-progress", "--device", "cpu"]) == 0
    assert json.loads((run / "last" / "config.json").read_text())["config"]["model"]["attention"] == "none"
    capsys.readouterr()
    picture = tmp_path / "data" / "images" / "0.png"
    assert main(["caption", "predict", str(run), str(picture), "--json", "--batch", "2", "--device", "cpu"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["image"] == str(picture) and set(line["captions"][0]) >= {"text", "tokens", "score", "finished"}
    assert main(["caption", "eval", str(run), str(tmp_path / "data" / "captions.json"), "--split", "all",
                 "--beam", "1", "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 24 and set(report) == {"images", "captions", "beam1"}


@pytest.mark.parametrize(("arguments", "message"), [
    (["caption", "run", "{run}", "{missing}"], "no such image"),
    (["caption", "run", "{run}", "{text}"], "not an image pillow can read"),
    (["caption", "run", "{run}", "{picture}", "--beam", "1", "--n-best", "2"], "needs a beam at least as wide"),
    (["caption", "train", "{missing}", "--out", "{new}"], "no such file"),
    (["caption", "eval", "{nothing}", "--dataset", "scenes"], "no such run or checkpoint folder"),
])
def test_bad_input_is_one_line(arguments: list[str], message: str, trained: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "black.png")
    names = {"run": str(trained), "missing": str(tmp_path / "gone.png"), "text": str(tmp_path / "notes.txt"),
             "picture": str(tmp_path / "black.png"), "new": str(tmp_path / "new"), "nothing": str(tmp_path / "none")}
    assert main([a.format(**names) for a in arguments]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error.lower()
