"""Canvases composed from small grey images, with what they show: digit strings and captioned scenes.

* `digit_strings`: the multi-digit task of Ba, Mnih and Kavukcuoglu (2014,
  "Multiple object recognition with visual attention"): a wide canvas holds
  1 to ``max_digits`` MNIST digits left to right, each at a random height,
  with random gaps between them; the target is the string of digits, read
  left to right, and the box of every digit is known.
* `compose_scenes`: captioning with a known answer: 2 to 4 coloured objects
  (digits and Fashion-MNIST items), small or large, each in its own cell of a
  2 x 2 grid, captioned from the scene in reading order, e.g. "a large red
  seven at the top left and a small blue sneaker at the bottom right". Which
  (colour, object) combinations may appear is a parameter, so a test split
  can hold combinations never seen in training (compositional
  generalisation; `held_out_combinations` picks them).

Everything is drawn from one seeded ``numpy`` generator: the same arguments
give the same canvases. Boxes are (top, left, bottom, right), bottom and
right exclusive: ``canvas[top:bottom, left:right]`` is the object.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from unrolled.data.images import Box
from unrolled.extras import lazy

if TYPE_CHECKING:
    from PIL import Image
else:
    Image = lazy("PIL.Image", "drawing images")


DIGITS = 10
# The palette: colour word -> RGB that a pixel of full ink takes (ink scales it; the background stays black)
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (60, 100, 255),
    "yellow": (240, 220, 30),
    "purple": (170, 70, 230),
    "cyan": (30, 210, 220),
}
OBJECT_SIZES = {"small": 14, "large": 28}  # size word -> side in pixels on the canvas
GRID = 2  # scenes place objects in the cells of a GRID x GRID grid
PLACES = ("top left", "top right", "bottom left", "bottom right")  # cell k: row k // GRID, column k % GRID
SHRINK = "BOX"  # Pillow's resampling filter, by name: 28 -> 14 averages each 2 x 2 block


def _check_digits(images: NDArray[np.uint8], labels: NDArray[np.int64]) -> None:
    """A ValueError unless ``images`` is uint8 (N, h, w) with N >= 1 and ``labels`` (N,) digits 0..9."""
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) == 0:
        raise ValueError(f"images must be uint8 of shape (N, h, w) with N >= 1, not {images.dtype} {images.shape}")
    if labels.shape != (len(images),) or np.any((labels < 0) | (labels >= DIGITS)):
        raise ValueError(f"labels must be {len(images)} digits 0..9, one per image")


def _lefts(rng: np.random.Generator, n: int, digit_width: int, width: int) -> NDArray[np.int64]:
    """Left edges of ``n`` boxes of ``digit_width`` in a row of ``width``, in order, none overlapping.

    The spare columns (width - n * digit_width) are cut at n random places into
    a left margin, n - 1 gaps and a right margin.
    """
    cuts = np.sort(rng.integers(0, width - n * digit_width + 1, size=n))  # (n,)
    return cuts + np.arange(n) * digit_width  # (n,): each left edge at least digit_width after the last


def digit_strings(images: NDArray[np.uint8], labels: NDArray[np.int64], *, count: int, max_digits: int,
                  height: int, width: int, seed: int,
                  min_digits: int = 1) -> tuple[NDArray[np.uint8], list[str], list[list[Box]]]:
    """``count`` canvases, each holding ``min_digits`` to ``max_digits`` digits in a row, and what they say.

    ``images`` uint8 (N, h, w) and ``labels`` int64 (N,) are the digits to draw
    from (with replacement). Each canvas draws its number of digits uniformly,
    then the digits, random gaps between them (`_lefts`) and a random top for
    each; digits are pasted unchanged and never overlap, so
    ``canvas[top:bottom, left:right]`` equals the source image.

    Returns ``canvases`` uint8 (count, height, width), black background;
    ``strings``: the digits of each canvas left to right ("314"); ``boxes``:
    each digit's (top, left, bottom, right), left to right. A ValueError if
    ``max_digits`` digits cannot fit side by side in ``width`` or one digit
    in ``height``.
    """
    _check_digits(images, labels)
    if not 1 <= min_digits <= max_digits or count < 0:
        raise ValueError(f"need 1 <= min_digits <= max_digits and count >= 0, not {min_digits}, {max_digits}, {count}")
    _, digit_height, digit_width = images.shape
    if max_digits * digit_width > width or digit_height > height:
        raise ValueError(f"{max_digits} digits of {digit_height} x {digit_width} pixels do not fit side by side on "
                         f"a canvas {height} high and {width} wide; it needs {digit_height} x "
                         f"{max_digits * digit_width} at least")
    rng = np.random.default_rng(seed)
    canvases = np.zeros((count, height, width), dtype=np.uint8)  # (count, H, W)
    strings, boxes = [], []
    for canvas in canvases:
        n = int(rng.integers(min_digits, max_digits + 1))
        sources = rng.integers(0, len(images), size=n)  # (n,)
        lefts = _lefts(rng, n, digit_width, width)  # (n,)
        tops = rng.integers(0, height - digit_height + 1, size=n)  # (n,)
        placed = []
        for source, top, left in zip(sources, tops, lefts, strict=True):
            canvas[top : top + digit_height, left : left + digit_width] = images[source]
            placed.append((int(top), int(left), int(top) + digit_height, int(left) + digit_width))
        strings.append("".join(str(int(labels[source])) for source in sources))
        boxes.append(placed)
    return canvases, strings, boxes


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene: its colour word, object name, size word, place words and box on the canvas."""

    colour: str
    name: str
    size: str
    place: str
    box: Box

    def words(self) -> str:
        """How the caption names it: "a large red seven at the top left"."""
        return f"a {self.size} {self.colour} {self.name} at the {self.place}"


def scene_caption(objects: list[SceneObject]) -> str:
    """The caption of a scene: its objects in reading order (top row left to right, then the bottom row),
    joined by "and". A scene gives one caption, and the caption gives back every object's colour, name,
    size and cell."""
    ordered = sorted(objects, key=lambda thing: PLACES.index(thing.place))
    return " and ".join(thing.words() for thing in ordered)


def held_out_combinations(names: list[str], *, count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` (colour, name) combinations to keep out of training: ``count`` different names, one colour each.

    The names are a seeded choice; the colours go round the palette in a
    seeded order, so every held-out name keeps its other colours in training,
    and every colour keeps its other names. Sorted.
    """
    if not 0 <= count <= len(names):
        raise ValueError(f"can hold out between 0 and {len(names)} combinations (one per name), not {count}")
    rng = np.random.default_rng(seed)
    chosen = [names[int(k)] for k in rng.choice(len(names), size=count, replace=False)]
    colours = [list(COLOURS)[int(k)] for k in rng.permutation(len(COLOURS))]
    return sorted((colours[k % len(colours)], name) for k, name in enumerate(chosen))


def _draw_object(grey: NDArray[np.uint8], colour: str, size: str) -> NDArray[np.uint8]:
    """A grey (h, w) image resized to the side of ``size`` and coloured: (s, s, 3) uint8, ink times the colour."""
    side = OBJECT_SIZES[size]
    if grey.shape != (side, side):
        grey = np.asarray(Image.fromarray(grey).resize((side, side), Image.Resampling[SHRINK]), dtype=np.uint8)
    rgb = np.array(COLOURS[colour], dtype=np.uint16)  # (3,)
    return (grey[..., None].astype(np.uint16) * rgb // 255).astype(np.uint8)  # (s, s, 3)


def _check_scene_arguments(objects: Mapping[str, NDArray[np.uint8]], allowed: Collection[tuple[str, str]],
                           required: Collection[tuple[str, str]], size: int, max_objects: int) -> None:
    """A ValueError for an unknown colour or name, a name without images, no allowed combination, a canvas
    too small for a large object in each cell, or more objects than cells."""
    for colour, name in [*allowed, *required]:
        if colour not in COLOURS:
            raise ValueError(f"unknown colour {colour!r}; the palette has {', '.join(COLOURS)}")
        if name not in objects or len(objects[name]) == 0 or objects[name].ndim != 3:
            raise ValueError(f"no images (N, h, w) of {name!r} among the objects")
    if not allowed:
        raise ValueError("no allowed (colour, name) combination")
    if size // GRID < max(OBJECT_SIZES.values()) or max_objects > GRID * GRID:
        raise ValueError(f"a {size} x {size} canvas has {GRID * GRID} cells of {size // GRID} pixels; each must fit "
                         f"a large object ({max(OBJECT_SIZES.values())} pixels), and there can be at most "
                         f"{GRID * GRID} objects")


def compose_scenes(objects: Mapping[str, NDArray[np.uint8]], *, count: int, allowed: Collection[tuple[str, str]],
                   required: Collection[tuple[str, str]] = (), size: int = 64, min_objects: int = 2,
                   max_objects: int = 4, seed: int) -> tuple[NDArray[np.uint8], list[str], list[list[SceneObject]]]:
    """``count`` scenes of ``min_objects`` to ``max_objects`` coloured objects, their captions and their objects.

    ``objects`` maps each object name ("seven", "sneaker") to grey images
    uint8 (N, h, w) of it, bright ink on black (drawn with replacement; give
    train and test scenes disjoint images). Each object is a (colour, name)
    combination drawn uniformly from ``allowed``; when ``required`` is given,
    one object of every scene is drawn from it instead (a test split of
    held-out combinations). Each scene draws its number of objects, distinct
    cells of the 2 x 2 grid, and for each object a size (`OBJECT_SIZES`), an
    image and a random position inside its cell; objects never overlap.

    Returns ``canvases`` uint8 (count, size, size, 3); ``captions``
    (`scene_caption`); ``placed``: each scene's objects in reading order.
    """
    _check_scene_arguments(objects, allowed, required, size, max_objects)
    if not 1 <= min_objects <= max_objects or count < 0:
        raise ValueError(f"need 1 <= min_objects <= max_objects and count >= 0, not {min_objects}, {max_objects}, "
                         f"{count}")
    pool, must = sorted(set(allowed)), sorted(set(required))  # sorted: the draws do not depend on set order
    cell = size // GRID
    rng = np.random.default_rng(seed)
    canvases = np.zeros((count, size, size, 3), dtype=np.uint8)  # (count, S, S, 3)
    captions, placed = [], []
    for canvas in canvases:
        n = int(rng.integers(min_objects, max_objects + 1))
        cells = np.sort(rng.choice(GRID * GRID, size=n, replace=False))  # (n,) in reading order
        picks = [pool[int(k)] for k in rng.integers(0, len(pool), size=n)]
        if must:
            picks[int(rng.integers(0, n))] = must[int(rng.integers(0, len(must)))]
        scene = []
        for k, (colour, name) in zip(cells, picks, strict=True):
            size_word = str(rng.choice(list(OBJECT_SIZES)))
            images = objects[name]
            drawn = _draw_object(images[int(rng.integers(0, len(images)))], colour, size_word)
            side = len(drawn)
            top = int(k) // GRID * cell + int(rng.integers(0, cell - side + 1))
            left = int(k) % GRID * cell + int(rng.integers(0, cell - side + 1))
            canvas[top : top + side, left : left + side] = drawn
            scene.append(SceneObject(colour, name, size_word, PLACES[int(k)], (top, left, top + side, left + side)))
        captions.append(scene_caption(scene))
        placed.append(scene)
    return canvases, captions, placed



# The moves of `moving_digits`: direction name -> (rows, columns) per pixel of speed; a label is its index here
DIRECTIONS: dict[str, tuple[int, int]] = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
NO_LABEL = -1  # the label of a clip's first frame: it has no previous frame, so no move
MOVING_DIGIT_SIDE = 14  # digits are shrunk from 28 x 28 to this side (2 x 2 blocks averaged)
SPEEDS = (1, 2, 3)  # pixels per frame; each clip draws one


def moving_digits(images: NDArray[np.uint8], *, count: int, frames: int, size: int, seed: int,
                  speeds: tuple[int, ...] = SPEEDS,
                  side: int = MOVING_DIGIT_SIDE) -> tuple[NDArray[np.uint8], NDArray[np.int64], NDArray[np.int64]]:
    r"""``count`` clips of ``frames`` frames, each one digit moving on a ``size`` x ``size`` canvas.

    A clip draws a digit from ``images`` (uint8 (N, h, w), bright on black,
    shrunk to ``side`` x ``side``), a speed v from ``speeds`` and a start
    position :math:`p_1` (the digit's top-left corner) uniformly among those
    that show the whole digit, :math:`\{0 \dots m\}^2` with m = size - side.
    Then, for frames t = 2 .. T:

    .. math::
        d_t &\sim \mathrm{uniform}\{d : p_{t-1} + v\, u(d) \in \{0 \dots m\}^2\}
            &&u(d) \text{ the unit move of direction } d \text{ (`DIRECTIONS`)}\\
        p_t &= p_{t-1} + v\, u(d_t)

    so the digit is always whole on the canvas, and the direction changes
    freely from frame to frame. The label of frame t is :math:`d_t`, the move
    since frame t - 1; the first frame has none (`NO_LABEL`). Where the digit
    is says almost nothing about how it got there: only a digit at the edge
    rules out the moves that would have come from beyond it (about 2 points
    above chance for a reader of single frames at size 40, speeds 1 to 3).

    Returns ``clips`` uint8 (count, T, size, size), black background;
    ``labels`` int64 (count, T): indices into `DIRECTIONS`, `NO_LABEL` at t = 1;
    ``positions`` int64 (count, T, 2): each frame's (top, left), so
    ``clips[k, t, top:top + side, left:left + side]`` is the shrunk digit.
    """
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) == 0:
        raise ValueError(f"images must be uint8 of shape (N, h, w) with N >= 1, not {images.dtype} {images.shape}")
    fastest = (size - side + 1) // 2  # faster, a digit in the middle could have no move left on either axis
    if count < 0 or frames < 2 or not 0 < side < size or not speeds or not 1 <= min(speeds) <= max(speeds) <= fastest:
        raise ValueError(f"need count >= 0, frames >= 2, 0 < side < size and speeds in 1 .. (size - side + 1) // 2; "
                         f"got {count}, {frames}, {side}, {size} and {speeds}")
    rng = np.random.default_rng(seed)
    units = np.array(list(DIRECTIONS.values()), dtype=np.int64)  # (4, 2)
    room = size - side  # m: the largest top or left
    clips = np.zeros((count, frames, size, size), dtype=np.uint8)  # (count, T, S, S)
    labels = np.full((count, frames), NO_LABEL, dtype=np.int64)  # (count, T)
    positions = np.zeros((count, frames, 2), dtype=np.int64)  # (count, T, 2)
    for clip, label, position in zip(clips, labels, positions, strict=True):
        digit = _shrink(images[int(rng.integers(0, len(images)))], side)  # (side, side)
        speed = int(speeds[int(rng.integers(0, len(speeds)))])
        position[0] = rng.integers(0, room + 1, size=2)
        for t in range(1, frames):
            reached = position[t - 1] + speed * units  # (4, 2): where each move would go
            allowed = np.flatnonzero(((reached >= 0) & (reached <= room)).all(axis=1))  # never empty: 2 speed <= m + 1
            label[t] = allowed[int(rng.integers(0, len(allowed)))]
            position[t] = reached[label[t]]
        for frame, (top, left) in zip(clip, position, strict=True):
            frame[top : top + side, left : left + side] = digit
    return clips, labels, positions


def _shrink(image: NDArray[np.uint8], side: int) -> NDArray[np.uint8]:
    """A grey image resized to ``side`` x ``side`` (box filter: each output pixel the mean of its block)."""
    if image.shape == (side, side):
        return image
    return np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling[SHRINK]), dtype=np.uint8)
