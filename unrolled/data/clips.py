"""Video clips with a label per frame: the file format users bring their clips in, and clips read from images.

A clips file is a NumPy ``.npz`` (``numpy.savez``; read without pickle) of

============  ======================  ==========================================================
array         dtype, shape            meaning
============  ======================  ==========================================================
frames        uint8 (N, T, H, W)      N clips of T grey frames, 0 black .. 255 white
labels        integer (N, T)          each frame's label, an index into label_names; -1 (`NO_LABEL`):
                                      none (not trained on, not scored), e.g. a first frame
label_names   str (C,)                the label names, distinct
lengths       integer (N,), optional  each clip's true length, 1 .. T (default T): frames past it
                                      are padding, never read
split         str (N,), optional      "train", "validation" or "test" per clip; without it a run
                                      splits the clips itself
============  ======================  ==========================================================

Other arrays may ride along (the built-in ``moving-digits`` adds each frame's
digit position). To label clips, `labels` and `label_names` may be left out.
One clip can also be a folder of frame images (read in name order: name them
000.png, 001.png, ...) or one multi-frame image (an animated GIF, APNG or
TIFF); `read_clip` reads each kind, in grey, resized to the size a model reads.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from unrolled.data.canvases import NO_LABEL
from unrolled.imagefiles import IMAGE_SUFFIXES, read_clip  # noqa: F401 (torch-free, shared with the runtime)

SPLITS = ("train", "validation", "test")
PathLike = str | os.PathLike[str]


@dataclass
class Clips:
    """Clips in memory: frames uint8 (N, T, H, W), labels int64 (N, T) or None, the label names, the true
    lengths int64 (N,), and the split of each clip or None."""

    frames: NDArray[np.uint8]
    labels: NDArray[np.int64] | None
    label_names: list[str]
    lengths: NDArray[np.int64]
    splits: list[str] | None = None

    def __post_init__(self) -> None:
        check_clips(self)

    def select(self, indices: list[int]) -> Clips:
        """The clips at `indices`, in that order."""
        return Clips(self.frames[indices], None if self.labels is None else self.labels[indices], self.label_names,
                     self.lengths[indices], None if self.splits is None else [self.splits[i] for i in indices])

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of every frame."""
        return int(self.frames.shape[2]), int(self.frames.shape[3])


def check_clips(clips: Clips, name: str = "clips") -> None:
    """A one-line ValueError (starting with `name`) unless the arrays fit together as the module docstring says."""
    frames = clips.frames
    if frames.ndim != 4 or frames.dtype != np.uint8 or frames.shape[0] == 0 or frames.shape[1] == 0:
        raise ValueError(f"{name}: frames must be uint8 (N, T, H, W) with N, T >= 1 (clips of grey frames), not "
                         f"{frames.dtype} {frames.shape}")
    count, steps = frames.shape[:2]
    if clips.lengths.shape != (count,) or np.any((clips.lengths < 1) | (clips.lengths > steps)):
        raise ValueError(f"{name}: lengths must be {count} numbers in 1 .. {steps}, one per clip")
    if clips.labels is not None:
        labels = clips.labels
        if labels.shape != (count, steps):
            raise ValueError(f"{name}: labels are {labels.shape[0] if labels.ndim else 0} clips x "
                             f"{labels.shape[1] if labels.ndim > 1 else 0} frames {tuple(labels.shape)}, but frames "
                             f"hold {count} clips x {steps} frames; give one label per frame, -1 for none")
        bad = (labels != NO_LABEL) & ((labels < 0) | (labels >= len(clips.label_names)))
        if bad.any():
            k, t = (int(i) for i in np.argwhere(bad)[0])
            count_names = len(clips.label_names)
            raise ValueError(f"{name}: clip {k} frame {t} has label {int(labels[k, t])}, but there are {count_names} "
                             f"label names (0 .. {count_names - 1}, or -1 for none)")
        if not clips.label_names or len(set(clips.label_names)) != len(clips.label_names):
            raise ValueError(f"{name}: label_names must be distinct names, at least one: {clips.label_names}")
    if clips.splits is not None:
        unknown = sorted(set(clips.splits) - set(SPLITS))
        if len(clips.splits) != count or unknown:
            raise ValueError(f"{name}: split must name one of {', '.join(SPLITS)} for each of the {count} clips"
                             + (f", not {unknown[0]!r}" if unknown else f", not {len(clips.splits)} values"))


def read_clips(path: PathLike, *, labelled: bool = True) -> Clips:
    """The clips of a clips file (`.npz`, see the module docstring); `labelled=False` lets labels be absent.

    A one-line ValueError names the file for a missing or unreadable file,
    a missing array, or arrays that do not fit together.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file (a clips file is an .npz of frames, labels and label_names)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: not a readable .npz clips file ({' '.join(str(error).split())})") from None
    needed = ("frames", "labels", "label_names") if labelled else ("frames",)
    missing = [key for key in needed if key not in arrays]
    if missing:
        raise ValueError(f"{path}: no {missing[0]!r} array; a clips file holds frames uint8 (N, T, H, W), labels "
                         f"(N, T) and label_names (C,) (it holds {', '.join(sorted(arrays)) or 'nothing'})")
    frames = arrays["frames"]
    labels = arrays.get("labels") if labelled or "label_names" in arrays else None
    names = arrays.get("label_names", np.array([], dtype=str))
    if names.ndim != 1 or names.dtype.kind != "U":
        raise ValueError(f"{path}: label_names must be strings (C,), not {names.dtype} {names.shape}")
    if labels is not None and labels.dtype.kind not in "iu":
        raise ValueError(f"{path}: labels must be integers (N, T), not {labels.dtype}")
    lengths = arrays.get("lengths", np.full(frames.shape[:1], frames.shape[1] if frames.ndim > 1 else 0))
    if lengths.dtype.kind not in "iu":
        raise ValueError(f"{path}: lengths must be integers (N,), not {lengths.dtype}")
    splits = arrays.get("split")
    if splits is not None and (splits.ndim != 1 or splits.dtype.kind != "U"):
        raise ValueError(f"{path}: split must be strings (N,), not {splits.dtype} {splits.shape}")
    try:
        return Clips(frames, None if labels is None else labels.astype(np.int64), [str(n) for n in names],
                     lengths.astype(np.int64), None if splits is None else [str(s) for s in splits])
    except ValueError as error:
        raise ValueError(f"{path}: {str(error).removeprefix('clips: ')}") from None


def write_clips(path: PathLike, clips: Clips, **extra: NDArray[np.generic]) -> Path:
    """Write `clips` as a compressed clips file (plus `extra` arrays); `lengths` only where a clip is shorter."""
    path = Path(path)
    arrays: dict[str, Any] = {"frames": clips.frames, "label_names": np.array(clips.label_names, dtype=str), **extra}
    if clips.labels is not None:
        arrays["labels"] = clips.labels
    if np.any(clips.lengths != clips.frames.shape[1]):
        arrays["lengths"] = clips.lengths
    if clips.splits is not None:
        arrays["split"] = np.array(clips.splits, dtype=str)
    with path.open("wb") as handle:
        np.savez_compressed(handle, **arrays)
    return path
