"""Moving digits and the clips format: labels checked against the motion measured in the frames, files and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unrolled.data.canvases import DIRECTIONS, NO_LABEL, moving_digits
from unrolled.data.clips import Clips, read_clip, read_clips, write_clips
from unrolled.data.recipes.images import obtain_moving_digits


def blobs(count: int, seed: int = 0) -> np.ndarray:
    """uint8 (count, 28, 28): random bright blobs standing in for digits."""
    generator = np.random.default_rng(seed)
    images = np.zeros((count, 28, 28), dtype=np.uint8)
    images[:, 6:22, 8:20] = generator.integers(60, 256, size=(count, 16, 12))
    return images


def centre_of_ink(frame: np.ndarray) -> np.ndarray:
    """(row, column) of the ink's centre of mass."""
    ink = frame.astype(np.float64)
    rows, columns = np.indices(frame.shape)
    return np.array([(ink * rows).sum(), (ink * columns).sum()]) / ink.sum()


def test_each_label_is_the_move_measured_between_the_two_frames() -> None:
    clips, labels, positions = moving_digits(blobs(5), count=40, frames=8, size=40, seed=3)
    assert clips.shape == (40, 8, 40, 40) and labels.shape == (40, 8) and positions.shape == (40, 8, 2)
    assert (labels[:, 0] == NO_LABEL).all()
    names = list(DIRECTIONS)
    for clip, clip_labels in zip(clips, labels, strict=True):
        ink = [int(frame.sum()) for frame in clip]
        assert len(set(ink)) == 1  # the digit is whole on every frame
        speeds = set()
        for t in range(1, len(clip)):
            dy, dx = centre_of_ink(clip[t]) - centre_of_ink(clip[t - 1])
            assert min(abs(dy), abs(dx)) < 1e-9  # straight along one axis
            measured = ("down" if dy > 0 else "up") if abs(dy) > abs(dx) else ("right" if dx > 0 else "left")
            assert names[clip_labels[t]] == measured
            speeds.add(round(max(abs(dy), abs(dx))))
        assert len(speeds) == 1 and speeds <= {1, 2, 3}  # one speed per clip


def test_positions_are_where_the_digit_is() -> None:
    clips, _, positions = moving_digits(blobs(3), count=10, frames=5, size=32, seed=1, side=10)
    for clip, where in zip(clips, positions, strict=True):
        for frame, (top, left) in zip(clip, where, strict=True):
            assert frame[top : top + 10, left : left + 10].sum() == frame.sum() > 0


def test_the_same_seed_gives_the_same_clips() -> None:
    first = moving_digits(blobs(4), count=6, frames=5, size=24, seed=7, side=8)
    again = moving_digits(blobs(4), count=6, frames=5, size=24, seed=7, side=8)
    other = moving_digits(blobs(4), count=6, frames=5, size=24, seed=8, side=8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])


def test_where_the_digit_is_tells_little_about_its_move() -> None:
    """The best guess from a frame's digit position (looked up in other clips) is near chance (25%)."""
    _, known, seen = moving_digits(blobs(2), count=6000, frames=10, size=40, seed=0)
    _, labels, positions = moving_digits(blobs(2), count=2000, frames=10, size=40, seed=1)
    table = np.zeros((27, 27, 4))
    np.add.at(table, (seen[:, 1:, 0], seen[:, 1:, 1], known[:, 1:]), 1)
    guess = table.argmax(-1)[positions[:, 1:, 0], positions[:, 1:, 1]]  # (N, T-1)
    assert np.bincount(labels[:, 1:].ravel(), minlength=4).min() > 0.23 * labels[:, 1:].size
    assert 0.2 < (guess == labels[:, 1:]).mean() < 0.3


def test_bad_generator_arguments() -> None:
    with pytest.raises(ValueError, match=r"speeds in 1 .. \(size - side \+ 1\) // 2"):
        moving_digits(blobs(1), count=1, frames=3, size=16, seed=0, side=14, speeds=(2,))
    with pytest.raises(ValueError, match="images must be uint8"):
        moving_digits(blobs(1).astype(np.float32), count=1, frames=3, size=40, seed=0)  # type: ignore[arg-type]


def test_the_built_in_dataset_splits_clips_by_source_digit(tmp_path: Path) -> None:
    images = np.zeros((100, 28, 28), dtype=np.uint8)
    images[:, 4:24, 4:24] = (np.arange(100) + 100)[:, None, None]  # every source image has its own grey
    np.savez(tmp_path / "digits.npz", images=images, labels=np.arange(100) % 10)
    path = obtain_moving_digits(tmp_path, source=lambda name: tmp_path / f"{name}.npz",
                                counts={"train": 30, "validation": 5, "test": 5})
    clips = read_clips(path)
    assert clips.frames.shape == (40, 10, 40, 40) and clips.label_names == ["up", "down", "left", "right"]
    assert clips.splits == ["train"] * 30 + ["validation"] * 5 + ["test"] * 5
    greys = {split: {int(clip.max()) for clip, s in zip(clips.frames, clips.splits, strict=True) if s == split}
             for split in ("train", "validation", "test")}
    assert not greys["train"] & greys["validation"] and not greys["train"] & greys["test"]
    assert not greys["validation"] & greys["test"]
    with np.load(path) as data:
        assert data["positions"].shape == (40, 10, 2)


def small_clips(count: int = 4, steps: int = 3) -> Clips:
    frames = np.random.default_rng(0).integers(0, 256, size=(count, steps, 6, 8), dtype=np.uint8)
    labels = np.tile(np.arange(steps) % 2, (count, 1)).astype(np.int64)
    return Clips(frames, labels, ["a", "b"], np.full(count, steps, dtype=np.int64))


def test_clips_files_round_trip(tmp_path: Path) -> None:
    clips = small_clips()
    clips.lengths[1] = 2
    clips.splits = ["train", "train", "validation", "test"]
    back = read_clips(write_clips(tmp_path / "c.npz", clips, extra=np.arange(3)))
    assert np.array_equal(back.frames, clips.frames) and back.labels is not None
    assert np.array_equal(back.labels, clips.labels) and back.label_names == ["a", "b"]
    assert back.lengths.tolist() == [3, 2, 3, 3] and back.splits == clips.splits
    assert back.select([3, 1]).lengths.tolist() == [3, 2]
    np.savez(tmp_path / "frames-only.npz", frames=clips.frames)
    unlabelled = read_clips(tmp_path / "frames-only.npz", labelled=False)
    assert unlabelled.labels is None and unlabelled.lengths.tolist() == [3, 3, 3, 3]


def bad_file(tmp_path: Path, **arrays: np.ndarray) -> Path:
    clips = small_clips()
    contents = {"frames": clips.frames, "labels": clips.labels, "label_names": np.array(["a", "b"]), **arrays}
    np.savez(tmp_path / "bad.npz", **{k: v for k, v in contents.items() if v is not None})  # type: ignore[arg-type]
    return tmp_path / "bad.npz"


@pytest.mark.parametrize(("arrays", "message"), [
    ({"frames": np.zeros((4, 3, 6), dtype=np.uint8)}, r"frames must be uint8 \(N, T, H, W\)"),
    ({"frames": np.zeros((4, 3, 6, 8), dtype=np.float32)}, "frames must be uint8"),
    ({"labels": np.zeros((4, 2), dtype=np.int64)}, "labels are 4 clips x 2 frames .* frames hold 4 clips x 3 frames"),
    ({"labels": np.zeros((5, 3), dtype=np.int64)}, "labels are 5 clips x 3 frames"),
    ({"labels": np.full((4, 3), 2)}, "clip 0 frame 0 has label 2, but there are 2 label names"),
    ({"labels": np.zeros((4, 3), dtype=np.float32)}, "labels must be integers"),
    ({"labels": None}, "no 'labels' array"),
    ({"label_names": np.array(["a", "a"])}, "label_names must be distinct"),
    ({"label_names": np.array([1, 2])}, "label_names must be strings"),
    ({"split": np.array(["train", "dev", "test", "test"])}, "not 'dev'"),
    ({"lengths": np.array([3, 0, 3, 3])}, r"lengths must be 4 numbers in 1 .. 3"),
])
def test_bad_clips_files_are_named_in_one_line(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    path = bad_file(tmp_path, **arrays)
    with pytest.raises(ValueError, match=message) as caught:
        read_clips(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_missing_and_unreadable_clips_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such file"):
        read_clips(tmp_path / "nothing.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match=r"not a readable \.npz clips file"):
        read_clips(tmp_path / "text.npz")


def test_a_clip_from_frame_images_or_an_animation(tmp_path: Path) -> None:
    frames = [np.full((20, 10, 3), 40 * k, dtype=np.uint8) for k in range(4)]
    (tmp_path / "frames").mkdir()
    for k, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / "frames" / f"{k:03d}.png")
    (tmp_path / "frames" / "notes.txt").write_text("ignored")
    clip = read_clip(tmp_path / "frames", (10, 5))
    assert clip.shape == (4, 10, 5) and clip[:, 0, 0].tolist() == [0, 40, 80, 120]
    pictures = [Image.fromarray(frame[..., 0]) for frame in frames]
    pictures[0].save(tmp_path / "clip.gif", save_all=True, append_images=pictures[1:])
    assert read_clip(tmp_path / "clip.gif", (20, 10))[:, 5, 5].tolist() == [0, 40, 80, 120]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        read_clip(tmp_path / "empty", (10, 5))
    with pytest.raises(ValueError, match="no such file or folder"):
        read_clip(tmp_path / "gone.gif", (10, 5))
    with pytest.raises(ValueError, match="not a readable image"):
        read_clip(tmp_path / "frames" / "notes.txt", (10, 5))
