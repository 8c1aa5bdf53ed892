"""Emoji pictures captioned with their Unicode names: a colour emoji font drawn at many sizes, places and backgrounds.

The font is Noto Color Emoji (Debian ``fonts-noto-color-emoji``), a CBDT font:
its glyphs are colour bitmaps in a single strike, so FreeType opens it at
`GLYPH_SIZE` pixels only and Pillow draws it with ``embedded_color=True``.
Each emoji is drawn once at that size and cropped to its ink; every picture
then shrinks that bitmap and pastes it onto a background:

* `emoji_code_points`: the single code points the font maps (its cmap) that a
  person would name as an emoji: a Unicode name in this Python's
  ``unicodedata``, a letter, punctuation mark or symbol outside ASCII (the
  keycap bases 0-9, # and * are ASCII), and not a part of sequences (regional
  indicators, skin-tone modifiers, hair components). Sequences (flags,
  keycaps, skin tones, ZWJ families) have no ``unicodedata`` name and are left
  out; so are emoji newer than this Python's Unicode database.
* `emoji_caption`: the lower-cased Unicode name, "grinning face with smiling eyes".
* `draw_glyphs`: each code point drawn once, RGBA, cropped to its ink; those
  that draw nothing are dropped.
* `emoji_pictures`: for each emoji, pictures at distinct sizes (so no two are
  the same), each at a random place on a random solid colour or linear
  gradient, with the box it occupies.

Everything random about an emoji comes from one generator seeded with (seed,
code point): the same arguments give the same pictures, and an emoji's
pictures do not depend on which other emoji the font holds.
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from unrolled.data.images import Box
from unrolled.extras import lazy, need

if TYPE_CHECKING:
    from PIL import Image, ImageDraw, ImageFont
else:
    Image = lazy("PIL.Image", "drawing emoji")
    ImageDraw = lazy("PIL.ImageDraw", "drawing emoji")
    ImageFont = lazy("PIL.ImageFont", "drawing emoji")


GLYPH_SIZE = 109  # pixels: Noto Color Emoji's only bitmap strike; FreeType refuses other sizes for it
GLYPH_CANVAS = 2 * GLYPH_SIZE  # a glyph (136 x 128 in Noto) is drawn on a square this large, then cropped
FIRST_NON_ASCII = 0x80
NAMED_CATEGORIES = ("L", "P", "S")  # letters (INFORMATION SOURCE), punctuation (WAVY DASH) and symbols
COMPONENT_NAMES = ("REGIONAL INDICATOR SYMBOL", "EMOJI MODIFIER", "EMOJI COMPONENT")  # parts of sequences
SHRINK = "LANCZOS"  # Pillow's resampling filter, by name
SOLID_SHARE = 0.5  # the share of pictures on one colour; the others get a linear gradient between two colours
Pictures = tuple[NDArray[np.uint8], list[str], list[list[Box]]]  # images (N, S, S, 3), captions, boxes


def font_cmap(font: bytes) -> dict[int, str]:
    """The font's map from code point to glyph name (its best cmap); a one-line ValueError if it is no font."""
    need("fontTools", "reading the emoji font")
    from fontTools.ttLib import TTFont, TTLibError

    try:
        cmap = TTFont(io.BytesIO(font), lazy=True).getBestCmap()
    except (TTLibError, OSError, KeyError, AssertionError) as error:
        raise ValueError(f"not a font file fontTools can read ({' '.join(str(error).split())})") from None
    return dict(cmap or {})


def is_named_emoji(code_point: int) -> bool:
    """Whether ``code_point`` is a letter, punctuation or symbol outside ASCII with a Unicode name that is no
    sequence component (see the module docstring)."""
    char = chr(code_point)
    name = unicodedata.name(char, "")
    return (code_point >= FIRST_NON_ASCII and bool(name) and unicodedata.category(char)[0] in NAMED_CATEGORIES
            and not name.startswith(COMPONENT_NAMES))


def emoji_code_points(font: bytes) -> list[int]:
    """The code points of the font ``font`` (its file's bytes) that `is_named_emoji`, ascending."""
    return sorted(code_point for code_point in font_cmap(font) if is_named_emoji(code_point))


def emoji_caption(code_point: int) -> str:
    """The emoji's Unicode name in lower case: U+1F601 -> "grinning face with smiling eyes"."""
    return unicodedata.name(chr(code_point)).lower()


def draw_glyphs(font: bytes, code_points: Sequence[int]) -> dict[int, Image.Image]:
    """Each code point drawn once with the font ``font`` at `GLYPH_SIZE`, in colour where the font has colour
    (an outline font draws black), as an RGBA image cropped to its ink; code points that draw nothing are left out."""
    try:
        face = ImageFont.truetype(io.BytesIO(font), GLYPH_SIZE, layout_engine=ImageFont.Layout.BASIC)
    except OSError as error:
        raise ValueError(f"Pillow cannot open the font at {GLYPH_SIZE} pixels ({error})") from None
    glyphs = {}
    for code_point in code_points:
        canvas = Image.new("RGBA", (GLYPH_CANVAS, GLYPH_CANVAS))
        ImageDraw.Draw(canvas).text((0, 0), chr(code_point), font=face, fill=(0, 0, 0, 255), embedded_color=True)
        ink = canvas.getchannel("A").getbbox()
        if ink is not None:
            glyphs[code_point] = canvas.crop(ink)
    return glyphs


def background(rng: np.random.Generator, size: int) -> NDArray[np.uint8]:
    """A ``size`` x ``size`` RGB background (S, S, 3): one random colour, or with chance 1 - `SOLID_SHARE` a linear
    gradient from one random colour to another along a random direction."""
    first, second = rng.integers(0, 256, size=(2, 3)).astype(np.float64)  # (3,) each
    angle = rng.uniform(0.0, 2.0 * np.pi)
    if rng.random() < SOLID_SHARE:
        return np.broadcast_to(first.astype(np.uint8), (size, size, 3)).copy()
    rows, columns = np.mgrid[0:size, 0:size].astype(np.float64)  # (S, S) each
    along = columns * np.cos(angle) + rows * np.sin(angle)  # (S, S): position along the direction
    along = (along - along.min()) / max(float(np.ptp(along)), 1.0)  # (S, S) in 0..1
    return np.rint(first + along[..., None] * (second - first)).astype(np.uint8)  # (S, S, 3)


def place_glyph(glyph: Image.Image, *, side: int, size: int, rng: np.random.Generator) -> tuple[NDArray[np.uint8], Box]:
    """``glyph`` shrunk so its longer side is ``side`` pixels, at a random place wholly inside a ``size`` x ``size``
    `background`: the RGB picture (S, S, 3) and the glyph's box (top, left, bottom, right)."""
    if not 1 <= side <= size:
        raise ValueError(f"a glyph side of {side} pixels does not fit a {size} x {size} picture")
    scale = side / max(glyph.size)
    width, height = max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))
    # premultiplied alpha while resizing: no dark fringe
    small = glyph.convert("RGBa").resize((width, height), Image.Resampling[SHRINK]).convert("RGBA")
    top, left = int(rng.integers(0, size - height + 1)), int(rng.integers(0, size - width + 1))
    picture = Image.fromarray(background(rng, size)).convert("RGBA")
    picture.alpha_composite(small, (left, top))
    return np.asarray(picture.convert("RGB")), (top, left, top + height, left + width)


def emoji_pictures(glyphs: Mapping[int, Image.Image], *, counts: Mapping[str, int], size: int, sides: Sequence[int],
                   seed: int) -> dict[str, Pictures]:
    """``counts[split]`` pictures of every glyph for each split: (images (N, size, size, 3), captions, boxes).

    Each emoji's pictures come from its own generator, seeded with (``seed``,
    code point): it draws ``sum(counts)`` distinct sides from ``sides`` (so no
    two pictures of an emoji are the same size, and a test picture is never a
    training picture again), then each picture's place and background
    (`place_glyph`). A split holds its pictures emoji by emoji, in code-point
    order, each with one caption (`emoji_caption`) and one box.
    """
    total = sum(counts.values())
    if total > len(sides):
        raise ValueError(f"{total} pictures of an emoji need as many distinct sides; {len(sides)} given")
    images: dict[str, list[NDArray[np.uint8]]] = {split: [] for split in counts}
    captions: dict[str, list[str]] = {split: [] for split in counts}
    boxes: dict[str, list[list[Box]]] = {split: [] for split in counts}
    for code_point in sorted(glyphs):
        rng = np.random.default_rng([seed, code_point])
        chosen = iter(rng.choice(np.asarray(sides), size=total, replace=False).tolist())
        for split, count in counts.items():
            for side in [next(chosen) for _ in range(count)]:
                picture, box = place_glyph(glyphs[code_point], side=side, size=size, rng=rng)
                images[split].append(picture)
                captions[split].append(emoji_caption(code_point))
                boxes[split].append([box])
    empty = np.zeros((0, size, size, 3), dtype=np.uint8)
    return {split: (np.stack(images[split]) if images[split] else empty, captions[split], boxes[split])
            for split in counts}
