"""Bible verses from SWORD modules as Debian packages them: parallel text aligned by book, chapter and verse.

A SWORD ``zText`` module stores each testament in three files:

* ``ot.bzs`` / ``nt.bzs``: the compressed blocks, 12 bytes each: offset, size,
  uncompressed size (little-endian uint32) in the ``.bzz`` file;
* ``ot.bzv`` / ``nt.bzv``: one entry per index position, 10 bytes: block
  number, offset in the uncompressed block (uint32), size (uint16);
* ``ot.bzz`` / ``nt.bzz``: the zlib-compressed blocks of UTF-8 OSIS markup.

Index positions follow the module's versification: a testament heading, then
for each book a book heading, and for each chapter a chapter heading followed
by one position per verse. Modules imported by osis2mod mark the headings in
the text (``<div ... type="book" sID=...>`` and ``<chapter osisID="Gen.1"
sID=...>``), so walking the index gives every verse its reference (book,
chapter, verse) without the versification tables: the n-th position after a
chapter heading is verse n.

A verse's text is its markup cleaned: notes (``<note>...</note>``) and
non-canonical titles dropped, a psalm's canonical title kept as text, every
other tag removed (Strong's numbers live in attributes), entities unescaped,
whitespace collapsed.

The modules come from the Debian packages ``sword-text-web`` (World English
Bible, public domain) and ``sword-text-sparv`` (Reina-Valera 1909, public
domain), whose data archives hold ``usr/share/sword/modules/texts/ztext/<module>/``;
downloading and reading the packages is `unrolled.data.sources.debian`'s.
"""

from __future__ import annotations

import html
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

Reference = tuple[str, int, int]  # (OSIS book, chapter, verse): ("Gen", 1, 1)

BLOCK = struct.Struct("<III")  # offset, size, uncompressed size
ENTRY = struct.Struct("<IIH")  # block, offset, size
TESTAMENTS = ("ot", "nt")
CHAPTER_START = re.compile(r"<chapter\b[^>]*\bsID=\"([^\".]+)\.(\d+)\"")
BOOK_START = re.compile(r"<div\b(?=[^>]*\btype=\"book\")(?=[^>]*\bsID=)[^>]*>")
NOTE = re.compile(r"<note\b[^>]*?(?:/>|>.*?</note>)", re.S)
TITLE = re.compile(r"<title\b(?![^>]*canonical=\"true\")[^>]*?(?:/>|>.*?</title>)", re.S)
BOOK_END = re.compile(r"<div\b(?=[^>]*\btype=\"book\")(?=[^>]*\beID=)[^>]*>")
BLOCK_TAG = re.compile(r"</?(?:div|l|lg|lb|list|item|milestone|chapter|title|p)\b[^>]*>")  # they part words
TAG = re.compile(r"<[^>]*>")  # the rest (w, q, seg, ...) lie inside words' runs: removed without a space


def ztext_entries(folder: Path, testament: str) -> Iterator[str]:
    """The raw markup of every index position of one testament of a zText module, in index order."""
    try:
        blocks_raw = (folder / f"{testament}.bzs").read_bytes()
        entries_raw = (folder / f"{testament}.bzv").read_bytes()
        data = (folder / f"{testament}.bzz").read_bytes()
    except FileNotFoundError:
        return  # a module may hold one testament only
    if len(blocks_raw) % BLOCK.size or len(entries_raw) % ENTRY.size:
        raise ValueError(f"{folder}: {testament}.bzs or {testament}.bzv is not a whole number of entries; is this "
                         "a zText module?")
    blocks = [BLOCK.unpack_from(blocks_raw, k) for k in range(0, len(blocks_raw), BLOCK.size)]
    cache: dict[int, bytes] = {}
    for k in range(0, len(entries_raw), ENTRY.size):
        block, offset, size = ENTRY.unpack_from(entries_raw, k)
        if size == 0:
            yield ""
            continue
        if block not in cache:
            if block >= len(blocks):
                raise ValueError(f"{folder}: {testament}.bzv entry {k // ENTRY.size} names block {block} of "
                                 f"{len(blocks)}")
            start, length, _ = blocks[block]
            try:
                cache = {block: zlib.decompress(data[start : start + length])}  # blocks are read in order
            except zlib.error as error:
                raise ValueError(f"{folder}: block {block} of {testament}.bzz does not decompress ({error})"
                                 ) from None
        yield cache[block][offset : offset + size].decode("utf-8", errors="replace")


def clean_osis(markup: str) -> str:
    """A verse's plain text: what follows its book's end (a glossary) cut, notes and non-canonical titles
    dropped, tags removed, entities unescaped, whitespace collapsed."""
    end = BOOK_END.search(markup)
    text = TITLE.sub(" ", NOTE.sub(" ", markup[: end.start()] if end else markup))
    return " ".join(html.unescape(TAG.sub("", BLOCK_TAG.sub(" ", text))).split())


def module_verses(folder: Path) -> dict[Reference, str]:
    """Every verse position of a zText module folder by (book, chapter, verse): its text, "" when empty."""
    verses: dict[Reference, str] = {}
    for testament in TESTAMENTS:
        book, chapter, verse = "", 0, -1  # verse -1: not inside a chapter
        for markup in ztext_entries(folder, testament):
            started = CHAPTER_START.search(markup)
            if started:
                book, chapter, verse = started[1], int(started[2]), 0
                continue
            if BOOK_START.search(markup):
                verse = -1  # a book heading: no verse until its first chapter
                continue
            if verse < 0:
                continue
            verse += 1
            verses[(book, chapter, verse)] = clean_osis(markup)
    return verses


def chapter_lengths(verses: dict[Reference, str]) -> dict[tuple[str, int], int]:
    """The number of verse positions of every chapter."""
    lengths: dict[tuple[str, int], int] = {}
    for book, chapter, verse in verses:
        lengths[(book, chapter)] = max(verse, lengths.get((book, chapter), 0))
    return lengths


def parallel_verses(source: dict[Reference, str], target: dict[Reference, str]) -> list[tuple[Reference, str, str]]:
    """The verses both modules hold (non-empty), in the source's order: (reference, source text, target text).

    Chapters whose verse counts differ (the two versifications number them
    differently, e.g. Jonah 1:17 is 2:1 in some) are left out whole, so no
    verse is paired with its neighbour's translation.
    """
    ours, theirs = chapter_lengths(source), chapter_lengths(target)
    return [(reference, text, target[reference]) for reference, text in source.items()
            if text and target.get(reference) and ours[reference[:2]] == theirs[reference[:2]]]
