"""Image files in, uint8 RGB arrays out, without torch: what the image applications and the runtime share.

`load_image` reads one file (any mode Pillow reads, converted to RGB) and
resizes it bilinearly to the run's size; `read_images` reads several into one
(N, H, W, 3) array. Errors are one line and name the file. This module imports
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
    from PIL import Image
else:
    Image = lazy("PIL.Image", "reading images")

PathLike = str | os.PathLike[str]


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
