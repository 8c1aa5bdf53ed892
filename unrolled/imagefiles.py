"""Image files in, uint8 RGB arrays out, without torch: what the image applications and the runtime share.

`load_image` reads one file (any mode Pillow reads, converted to RGB) and
resizes it bilinearly to the run's size; `read_images` reads several into one
(N, H, W, 3) array; `read_clip` reads a clip's frames in grey (a folder of
frame images or a multi-frame image). Errors are one line and name the file. This module imports
numpy and Pillow (when used), never torch, so `unrolled.runtime` reads images
as the predictors do; `unrolled.data.images` offers the same names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from unrolled.extras import lazy

if TYPE_CHECKING:
    from PIL import Image, ImageSequence
else:
    Image = lazy("PIL.Image", "reading images")
    ImageSequence = lazy("PIL.ImageSequence", "reading frames")

PathLike = str | os.PathLike[str]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def load_image(path: Path, shape: tuple[int, int] | None) -> tuple[NDArray[np.uint8], tuple[int, int]]:
    """One image file as uint8 (H, W, 3) RGB, resized to ``shape`` (H, W) unless None, and its size in the file.

    Any mode Pillow reads is converted, not rejected: grey, palette, RGBA (the
    alpha dropped), CMYK, and 16- or 32-bit integer grey (scaled from its
    range to 0..255, where a plain conversion would clip it).
    """
    try:
        with Image.open(path) as image:
            if image.mode.startswith("I"):  # I;16, I;16B, I: integer grey wider than 8 bits
                wide = np.asarray(image, dtype=np.float64)
                top = 65535.0 if image.mode.startswith("I;16") else max(float(wide.max()), 1.0)
                rgb = Image.fromarray(np.clip(wide / top * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
            else:
                rgb = image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"{path}: not an image Pillow can read ({' '.join(str(error).split())})") from None
    original = (rgb.height, rgb.width)
    if shape is not None and original != shape:
        # Pillow sizes are (width, height); bilinear widens its filter when shrinking, so it averages (antialiases)
        rgb = rgb.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8), original


def read_images(paths: Sequence[PathLike], *, size: tuple[int, int]) -> NDArray[np.uint8]:
    """Image files as one uint8 (N, H, W, 3) RGB array at ``size`` (H, W) (`load_image`); one-line errors for a
    file that does not exist or is not an image."""
    if not paths:
        raise ValueError("no images given")
    pixels = np.empty((len(paths), size[0], size[1], 3), dtype=np.uint8)
    for k, name in enumerate(paths):
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"no such image: {path}")
        pixels[k], _ = load_image(path, size)
    return pixels


def read_clip(path: PathLike, size: tuple[int, int]) -> NDArray[np.uint8]:
    """One clip, uint8 (T, H, W) at `size` (H, W): a folder of frame images in name order, or a multi-frame image.

    Frames are read in grey (colour averaged by Pillow's "L" conversion) and
    resized. A one-line ValueError for a missing path, a folder without
    images, or a file Pillow cannot read.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise ValueError(f"{path}: a folder of frames, but it holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return np.stack([_grey(image, size) for file in files for image in _open_frames(file)[:1]])
    if not path.is_file():
        raise ValueError(f"{path}: no such file or folder")
    return np.stack([_grey(image, size) for image in _open_frames(path)])


def _open_frames(path: Path) -> list[Image.Image]:
    """Every frame of an image file (one for a still image), loaded; a one-line ValueError if Pillow cannot."""
    try:
        with Image.open(path) as image:
            return [frame.copy() for frame in ImageSequence.Iterator(image)]
    except (Image.UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path}: not a readable image ({' '.join(str(error).split())})") from None


def _grey(image: Image.Image, size: tuple[int, int]) -> NDArray[np.uint8]:
    """(H, W) uint8: the image in grey at `size` (H, W); 16-bit images are scaled to 8 bits first."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):
        wide = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.round(wide * 255 / max(wide.max(), 1)).astype(np.uint8))
    grey = image.convert("L")
    if grey.size != (size[1], size[0]):
        grey = grey.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.uint8)


def clip_batches(clips: Sequence[NDArray[np.uint8]], size: tuple[int, int], batch_size: int) -> list[list[int]]:
    """The clips (uint8 (T, H, W) at ``size``, any T >= 1) as batches of indices, each of clips of one length, at
    most ``batch_size`` each; a one-line ValueError names a clip of the wrong shape or type."""
    for k, clip in enumerate(clips):
        if clip.ndim != 3 or tuple(clip.shape[1:]) != size or clip.dtype != np.uint8 or len(clip) == 0:
            raise ValueError(f"clip {k}: frames must be uint8 (T, {size[0]}, {size[1]}) with T >= 1, "
                             f"not {clip.dtype} {clip.shape}")
    by_length: dict[int, list[int]] = {}
    for k, clip in enumerate(clips):
        by_length.setdefault(len(clip), []).append(k)
    return [members[start : start + batch_size] for members in by_length.values()
            for start in range(0, len(members), batch_size)]
