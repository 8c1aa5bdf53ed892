"""The emoji dataset: a tiny font made on the spot, packed into a fake Debian package, drawn and captioned."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen

from tests.test_sword import make_deb
from unrolled.apps.caption import DATASETS
from unrolled.data import obtain, registry
from unrolled.data.emoji import background, draw_glyphs, emoji_code_points, emoji_pictures, place_glyph
from unrolled.data.images import read_coco
from unrolled.data.recipes.images import EMOJI_COUNTS, EMOJI_FILE, EMOJI_FOLDER, EMOJI_PACKAGE, obtain_emoji
from unrolled.data.sources import Downloader, debian

UNITS = 1000
SHAPES = {  # glyph name -> outline in font units (y up); "blank" has none, so it draws nothing
    ".notdef": [],
    "square": [(100, 0), (100, 700), (800, 700), (800, 0)],
    "triangle": [(100, 0), (450, 700), (800, 0)],
    "bar": [(400, 0), (400, 700), (600, 700), (600, 0)],
    "blank": [],
}
CMAP = {
    0x1F600: "square",  # GRINNING FACE: kept
    0x2764: "triangle",  # HEAVY BLACK HEART: kept
    0x203C: "bar",  # DOUBLE EXCLAMATION MARK (punctuation): kept
    0x1F680: "blank",  # ROCKET: named, but draws nothing
    0x23: "square",  # NUMBER SIGN: ASCII, a keycap base
    0x1F1E6: "triangle",  # REGIONAL INDICATOR SYMBOL LETTER A: a part of flags
    0x1F3FB: "square",  # EMOJI MODIFIER FITZPATRICK TYPE-1-2: a skin tone
    0x200D: "bar",  # ZERO WIDTH JOINER: a format character
    0xF0000: "square",  # private use: no name
}
KEPT = {0x203C: "double exclamation mark", 0x2764: "heavy black heart", 0x1F600: "grinning face"}


def tiny_font() -> bytes:
    """A TrueType font of `SHAPES` mapped by `CMAP`."""
    builder = FontBuilder(UNITS, isTTF=True)
    builder.setupGlyphOrder(list(SHAPES))
    builder.setupCharacterMap(CMAP)
    glyphs = {}
    for name, points in SHAPES.items():
        pen = TTGlyphPen(None)
        if points:
            pen.moveTo(points[0])
            for point in points[1:]:
                pen.lineTo(point)
            pen.closePath()
        glyphs[name] = pen.glyph()
    builder.setupGlyf(glyphs)
    builder.setupHorizontalMetrics({name: (UNITS, 0) for name in SHAPES})
    builder.setupHorizontalHeader(ascent=800, descent=-200)
    builder.setupNameTable({"familyName": "Tiny", "styleName": "Regular"})
    builder.setupOS2(sTypoAscender=800, sTypoDescender=-200, usWinAscent=800, usWinDescent=200)
    builder.setupPost()
    out = io.BytesIO()
    builder.save(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def font() -> bytes:
    return tiny_font()


def fake_apt(files: dict[str, bytes]) -> Downloader:
    """A `unrolled.data.sources.debian.download` stand-in that packs ``files`` into a .deb named after the package."""
    def download(package: str, dest: Path) -> Path:
        return make_deb(dest / f"{package}_1.0_all.deb", files)
    return download


def test_only_named_emoji_that_draw_are_kept(font: bytes) -> None:
    assert emoji_code_points(font) == [0x203C, 0x2764, 0x1F600, 0x1F680]
    glyphs = draw_glyphs(font, emoji_code_points(font))
    assert sorted(glyphs) == sorted(KEPT)
    square = np.asarray(glyphs[0x1F600])
    assert square.shape[2] == 4 and square.shape[0] == pytest.approx(square.shape[1], abs=1)  # cropped to its ink
    assert square[square.shape[0] // 2, square.shape[1] // 2].tolist() == [0, 0, 0, 255]


def test_the_dataset_captions_every_emoji_with_its_name_in_every_split(cache: Path, font: bytes,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    files = {EMOJI_FOLDER + EMOJI_FILE: font, "usr/share/doc/fonts-noto-color-emoji/copyright": b"OFL"}
    monkeypatch.setattr(debian, "download", fake_apt(files))
    path = obtain("emoji")
    assert path == cache / "emoji" / "captions.json"
    data = read_coco(path, size=None)
    assert data.images.shape == (3 * 8, 64, 64, 3) and data.splits is not None and data.boxes is not None
    names = list(KEPT.values())
    for split, count in EMOJI_COUNTS.items():
        part = data.split(split)
        assert part.captions == [[name] for name in names for _ in range(count)]  # emoji by emoji, by code point
    assert len(set(data.names)) == len(data.names)  # every picture is one file, in one split
    info = json.loads(path.read_text(encoding="utf-8"))["info"]
    assert info["emoji"] == 3 and info["source"] == "Debian fonts-noto-color-emoji_1.0_all.deb"


def test_pictures_of_one_emoji_all_differ_and_show_it_in_its_box(font: bytes) -> None:
    glyphs = draw_glyphs(font, [0x1F600])
    counts = {"train": 6, "validation": 1, "test": 1}
    pictures = emoji_pictures(glyphs, counts=counts, size=64, sides=range(24, 61), seed=5)
    images = np.concatenate([pictures[split][0] for split in counts])  # (8, 64, 64, 3)
    boxes = [box for split in counts for (box,) in pictures[split][2]]
    sides = [max(bottom - top, right - left) for top, left, bottom, right in boxes]
    assert len(set(sides)) == 8 and all(24 <= side <= 60 for side in sides)
    assert len({image.tobytes() for image in images}) == 8
    for image, (top, left, bottom, right) in zip(images, boxes, strict=True):
        assert 0 <= top < bottom <= 64 and 0 <= left < right <= 64
        centre = image[(top + bottom) // 2, (left + right) // 2]
        assert centre.tolist() == [0, 0, 0], "the black square lies in its box"
    places = {(top, left) for top, left, _, _ in boxes}
    assert len(places) > 4, "the emoji moves about"


def test_backgrounds_are_solid_or_gradients() -> None:
    rng = np.random.default_rng(0)
    drawn = [background(rng, 16) for _ in range(40)]
    solid = [bool(np.all(image == image[0, 0])) for image in drawn]
    assert 5 < sum(solid) < 35
    colours = {tuple(image[0, 0]) for image in drawn}
    assert len(colours) > 30
    for image in (image for image, flat in zip(drawn, solid, strict=True) if not flat):
        corners = [image[0, 0], image[0, -1], image[-1, 0], image[-1, -1]]
        assert len({tuple(corner) for corner in corners}) > 1


def test_pictures_are_deterministic_and_each_emoji_its_own(font: bytes, tmp_path: Path) -> None:
    deb = fake_apt({EMOJI_FOLDER + EMOJI_FILE: font})
    made = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        path = obtain_emoji(tmp_path / name, download=deb)
        made.append((path.read_text(encoding="utf-8"), read_coco(path, size=None).images))
    assert made[0][0] == made[1][0] and np.array_equal(made[0][1], made[1][1])
    glyphs = draw_glyphs(font, list(KEPT))
    counts = {"train": 2, "test": 1}
    every = emoji_pictures(glyphs, counts=counts, size=32, sides=range(10, 30), seed=1)
    alone = emoji_pictures({0x2764: glyphs[0x2764]}, counts=counts, size=32, sides=range(10, 30), seed=1)
    assert np.array_equal(every["train"][0][2:4], alone["train"][0]) and np.array_equal(every["test"][0][1],
                                                                                          alone["test"][0][0])
    other = emoji_pictures(glyphs, counts=counts, size=32, sides=range(10, 30), seed=2)
    assert not np.array_equal(every["train"][0], other["train"][0])


def test_too_many_pictures_or_a_side_that_does_not_fit_are_refused(font: bytes) -> None:
    glyphs = draw_glyphs(font, [0x2764])
    with pytest.raises(ValueError, match="9 pictures of an emoji need as many distinct sides; 8 given"):
        emoji_pictures(glyphs, counts={"train": 9}, size=64, sides=range(30, 38), seed=0)
    with pytest.raises(ValueError, match="a glyph side of 70 pixels does not fit a 64 x 64 picture"):
        place_glyph(glyphs[0x2764], side=70, size=64, rng=np.random.default_rng(0))


def test_no_apt_get_fetches_from_the_mirror_and_an_unreachable_one_is_one_line(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get on it: the pinned .deb comes from a mirror
    monkeypatch.setenv("UNROLLED_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")  # a port nothing listens on
    with pytest.raises(ValueError, match=f"^could not download {EMOJI_PACKAGE}=[^ ]+ from http://127\\.0\\.0\\.1:9/"
                                         f"debian/pool/main/f/{EMOJI_PACKAGE}/[^\n]*must reach that registry[^\n]*$"):
        obtain("emoji")
    assert not (cache / "emoji").exists()


def test_a_failed_download_names_apt_gets_complaint(cache: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "apt-get"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'E: Unable to locate package fonts-noto-color-emoji' >&2\nexit 100\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    with pytest.raises(ValueError, match=r"^could not download fonts-noto-color-emoji=\S+ with apt-get \(E: Unable to "
                                         r"locate package fonts-noto-color-emoji\); [^\n]*try apt-get update"):
        obtain("emoji")


def test_a_package_without_the_font_or_with_a_broken_one_is_refused(cache: Path, font: bytes,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debian, "download", fake_apt({"usr/share/doc/x/copyright": b"OFL"}))
    with pytest.raises(ValueError, match=r"fonts-noto-color-emoji_1\.0_all\.deb: no usr/share/fonts/truetype/noto/"
                                         r"NotoColorEmoji\.ttf in the package"):
        obtain("emoji")
    monkeypatch.setattr(debian, "download", fake_apt({EMOJI_FOLDER + EMOJI_FILE: b"not a font at all"}))
    with pytest.raises(ValueError, match=r"NotoColorEmoji\.ttf: not a font file fontTools can read"):
        obtain("emoji")
    assert not (cache / "emoji").exists()


def test_the_caption_command_names_only_registered_datasets() -> None:
    assert "emoji" in DATASETS.split(", ")
    for name in DATASETS.split(", "):
        assert registry.get(name).filename == "captions.json"
