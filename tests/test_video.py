"""Video frame labelling on clips made on the spot: the model, training (and resume), labelling, the CLI, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tests.cli_errors import one_error_line
from unrolled.apps import video
from unrolled.cli import main
from unrolled.data.canvases import DIRECTIONS, moving_digits
from unrolled.data.clips import Clips, write_clips
from unrolled.models.video import FrameLabeller, VideoConfig
from unrolled.training import TrainConfig

SIZE, SIDE = 12, 4


def moving_squares(count: int, seed: int = 0, frames: int = 6) -> Clips:
    """A 4 x 4 bright square moving 1 or 2 pixels a frame on 12 x 12; labels as in moving-digits."""
    square = np.full((1, SIDE, SIDE), 255, dtype=np.uint8)
    clips, labels, _ = moving_digits(square, count=count, frames=frames, size=SIZE, seed=seed, side=SIDE,
                                     speeds=(1, 2))
    return Clips(clips, labels, list(DIRECTIONS), np.full(count, frames, dtype=np.int64))


def tiny(**options: Any) -> dict[str, Any]:
    return {"channels": 4, "features": 32, "hidden": 32, "dropout": 0.0, **options}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both models trained the same way on the same clips."""
    folder = tmp_path_factory.mktemp("video")
    clips = moving_squares(400)
    for model in ("recurrent", "cnn"):
        config = video.VideoRunConfig(video.VideoData(batch_size=32), video.VideoModel(model=model, **tiny()),
                                      TrainConfig(max_steps=250, lr=1e-2, optimizer="adam", eval_every=125, seed=0,
                                                  progress=False))
        video.fit(config, folder / model, clips=clips)
    return {model: folder / model for model in ("recurrent", "cnn")}


def test_the_recurrent_model_sees_the_motion_that_no_single_frame_shows(runs: dict[str, Path]) -> None:
    held_out = moving_squares(100, seed=9)
    recurrent = video.VideoLabeller.load(runs["recurrent"]).evaluate(held_out)
    per_frame = video.VideoLabeller.load(runs["cnn"]).evaluate(held_out)
    assert recurrent["frames"] == per_frame["frames"] == 100 * 5  # the first frame of each clip has no label
    assert 0.24 < recurrent["chance"] < 0.3
    assert recurrent["accuracy"] > 0.9
    assert per_frame["accuracy"] < 0.45
    assert set(recurrent["per_label"]) == set(DIRECTIONS)


def test_labels_name_every_frame_and_the_unlabelled_first_one(runs: dict[str, Path]) -> None:
    labeller = video.VideoLabeller.load(runs["recurrent"])
    assert labeller.size == (SIZE, SIZE) and not labeller.first_labelled and labeller.split is not None
    clips = moving_squares(3, seed=4, frames=6)
    short = moving_squares(1, seed=5, frames=4)
    named = labeller.label([*clips.frames, short.frames[0]])
    assert [len(row) for row in named] == [6, 6, 6, 4]
    assert all(row[0] == video.UNLABELLED for row in named)
    assert named[0][1:] == [list(DIRECTIONS)[k] for k in clips.labels[0, 1:]]  # type: ignore[index]


def test_padding_never_changes_a_label() -> None:
    torch.manual_seed(0)
    model = FrameLabeller(VideoConfig(height=SIZE, width=SIZE, labels=4, **tiny()))
    frames = torch.rand(2, 6, SIZE, SIZE)
    alone = model.predict(frames[:1, :3], torch.tensor([3]))
    padded = frames.clone()
    padded[0, 3:] = 1.0  # whatever lies past the length
    together = model.predict(padded, torch.tensor([3, 6]))
    assert together[0, :3].tolist() == alone[0].tolist() and (together[0, 3:] == -100).all()
    with pytest.raises(ValueError, match=r"a frame labeller needs a label per frame, labels \(B, T\) = \(2, 6\)"):
        model.loss(video.ClipBatch(frames, torch.tensor([3, 6]), torch.zeros(2, 5, dtype=torch.long)))


def test_resume_gives_the_same_parameters_as_a_straight_run(tmp_path: Path) -> None:
    clips = moving_squares(64)

    def train(out: Path, steps: int, resume: bool = False) -> None:
        config = video.VideoRunConfig(video.VideoData(batch_size=16), video.VideoModel(**tiny(dropout=0.2)),
                                      TrainConfig(max_steps=steps, decay_steps=8, eval_every=4, seed=3, progress=False))
        video.fit(config, out, resume=resume, clips=clips)

    train(tmp_path / "straight", 8)
    train(tmp_path / "stopped", 4)
    train(tmp_path / "stopped", 8, resume=True)
    straight = video.VideoLabeller.load(tmp_path / "straight" / "last").model.state_dict()
    resumed = video.VideoLabeller.load(tmp_path / "stopped" / "last").model.state_dict()
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_the_cli_trains_labels_files_and_evaluates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_clips(tmp_path / "clips.npz", moving_squares(40))
    run = tmp_path / "run"
    assert main(["video", "train", str(data), "--out", str(run), "--max-steps", "3", "--batch", "8",
                 "--channels", "4", "--hidden", "8", "--features", "8", "--no-progress"]) == 0
    (tmp_path / "frames").mkdir()
    for k, frame in enumerate(moving_squares(1, seed=2, frames=3).frames[0]):
        Image.fromarray(frame).resize((24, 24)).save(tmp_path / "frames" / f"{k:02d}.png")
    capsys.readouterr()
    assert main(["video", "run", str(run), str(tmp_path / "frames"), str(data), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 41 and lines[1]["clip"] == f"{data}#0"
    assert lines[0]["labels"][0] == "-" and len(lines[0]["labels"]) == 3
    assert set(lines[1]["labels"][1:]) <= set(DIRECTIONS)
    assert main(["video", "eval", str(run), str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clips"] == 4 and report["frames"] == 4 * 5 and 0 <= report["accuracy"] <= 1
    assert main(["video", "eval", str(run), str(data), "--split", "all"]) == 0
    assert "40 clips, 200 labelled frames (all): per-frame accuracy" in capsys.readouterr().out


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clips = moving_squares(20)
    data = write_clips(tmp_path / "clips.npz", clips)
    code = main(["video", "train", str(tmp_path / "none.npz"), "--out", str(tmp_path / "r")])
    one_error_line(capsys, code, "none.npz: no such file")
    code = main(["video", "train", "--out", str(tmp_path / "r")])
    one_error_line(capsys, code, "no data: give a clips file (.npz) or --dataset moving-digits")
    np.savez(tmp_path / "flat.npz", frames=clips.frames[:, 0], labels=clips.labels, label_names=clips.label_names)
    code = main(["video", "train", str(tmp_path / "flat.npz"), "--out", str(tmp_path / "r")])
    one_error_line(capsys, code, "frames must be uint8 (N, T, H, W)")
    np.savez(tmp_path / "short.npz", frames=clips.frames, labels=clips.labels[:, :4], label_names=clips.label_names)
    code = main(["video", "train", str(tmp_path / "short.npz"), "--out", str(tmp_path / "r")])
    one_error_line(capsys, code, "labels are 20 clips x 4 frames", "frames hold 20 clips x 6 frames")
    assert main(["video", "train", str(data), "--out", str(tmp_path / "run"), "--max-steps", "1", "--channels", "2",
                 "--hidden", "4", "--features", "4", "--no-progress"]) == 0
    capsys.readouterr()
    bigger = Clips(np.zeros((2, 3, 16, 16), dtype=np.uint8), np.zeros((2, 3), dtype=np.int64), ["up"],
                   np.full(2, 3, dtype=np.int64))
    write_clips(tmp_path / "big.npz", bigger)
    code = main(["video", "run", str(tmp_path / "run"), str(tmp_path / "big.npz")])
    one_error_line(capsys, code, "frames are 16 x 16, the run reads 12 x 12")
    code = main(["video", "eval", str(tmp_path / "run"), str(tmp_path / "big.npz")])
    one_error_line(capsys, code, "frames are 16 x 16, the run reads 12 x 12")
    renamed = Clips(clips.frames, clips.labels, ["north", "down", "left", "right"], clips.lengths)
    write_clips(tmp_path / "renamed.npz", renamed)
    code = main(["video", "eval", str(tmp_path / "run"), str(tmp_path / "renamed.npz"), "--split", "all"])
    one_error_line(capsys, code, "the clips use label 'north', which the run does not know")
    write_clips(tmp_path / "other.npz", moving_squares(20, seed=1))
    code = main(["video", "eval", str(tmp_path / "run"), str(tmp_path / "other.npz")])
    one_error_line(capsys, code, "this is not the data the run was split on")
    code = main(["video", "run", str(tmp_path / "run"), str(tmp_path / "missing")])
    one_error_line(capsys, code, "missing: no such file or folder")
    unlabelled = Clips(clips.frames, np.full((20, 6), -1, dtype=np.int64), list(DIRECTIONS), clips.lengths)
    write_clips(tmp_path / "unlabelled.npz", unlabelled)
    code = main(["video", "train", str(tmp_path / "unlabelled.npz"), "--out", str(tmp_path / "u")])
    one_error_line(capsys, code, "no labelled training frames")


def test_a_run_repeats_from_its_config_and_predicts_and_evaluates_in_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_clips(tmp_path / "clips.npz", moving_squares(20))
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["video", "train", str(data), "--out", str(first), "--max-steps", "2", "--batch", "8", "--model", "cnn",
                 "--channels", "2", "--features", "4", "--no-progress"]) == 0
    saved = first / "last" / "config.json"
    config = json.loads(saved.read_text())["config"]
    assert config["model"]["model"] == "cnn" and config["data"] == {
        "file": str(data), "dataset": None, "validation": 0.1, "test": 0.1, "split_seed": 0, "batch_size": 8}
    assert main(["video", "train", "--config", str(saved), "--out", str(second)]) == 0
    assert json.loads((second / "last" / "config.json").read_text())["config"] == config
    weights = [(run / "last" / "model.safetensors").read_bytes() for run in (first, second)]
    assert weights[0] == weights[1]
    capsys.readouterr()
    assert main(["video", "predict", str(second), str(data), "--json", "--batch-size", "3", "--device", "cpu"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["clip"] for line in lines] == [f"{data}#{k}" for k in range(20)]
    assert all(len(line["labels"]) == 6 for line in lines)
    assert main(["video", "eval", str(second), str(data), "--json", "--split", "all", "--batch", "5"]) == 0
    assert json.loads(capsys.readouterr().out)["clips"] == 20
