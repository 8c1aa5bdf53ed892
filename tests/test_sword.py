"""SWORD zText modules written here by the format's definition, read back verse by verse; the bible-en-es dataset."""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zlib
from pathlib import Path

import pytest

from unrolled.data.recipes.text import SWORD_MODULES, obtain_bible
from unrolled.data.sources.debian import deb_files
from unrolled.data.sword import clean_osis, module_verses, parallel_verses


def write_ztext(folder: Path, testament: str, entries: list[str], per_block: int = 3) -> None:
    """Index positions `entries` as a zText testament: blocks of `per_block` entries, zlib-compressed."""
    folder.mkdir(parents=True, exist_ok=True)
    blocks, index, data = b"", b"", b""
    for start in range(0, len(entries), per_block):
        chunk = [entry.encode("utf-8") for entry in entries[start : start + per_block]]
        plain = b"".join(chunk)
        offset = 0
        for raw in chunk:
            index += struct.pack("<IIH", len(blocks) // 12, offset, len(raw))
            offset += len(raw)
        packed = zlib.compress(plain)
        blocks += struct.pack("<III", len(data), len(packed), len(plain))
        data += packed
    (folder / f"{testament}.bzs").write_bytes(blocks)
    (folder / f"{testament}.bzv").write_bytes(index)
    (folder / f"{testament}.bzz").write_bytes(data)


def book(name: str) -> str:
    return f'<div canonical="true" osisID="{name}" sID="b{name}" type="book"/> <title type="main">The Book</title>'


def chapter(name: str, number: int) -> str:
    return f'<chapter n="{number}" osisID="{name}.{number}" sID="{name}.{number}"/>'


ENGLISH_NT = [
    "", '<milestone type="x-importer"/>',
    book("Matt"), chapter("Matt", 1),
    '<w lemma="strong:G976">The</w> <w lemma="strong:G1078">book</w>,<note placement="foot">a note</note> of Jesus.',
    '<title type="x-heading">A heading</title><w lemma="strong:G11">Abraham</w> &amp; Isaac.',
    "",  # Matt 1:3 missing in this translation
    chapter("Matt", 2), "Second chapter, verse one.", "Verse two.",
    book("Mark"), chapter("Mark", 1),
    'Last verse. <chapter eID="Mark.1"/> <div eID="bMark" type="book"/> <div type="glossary"/> Abba means father.',
]
SPANISH_NT = [
    "", '<milestone type="x-importer"/>',
    book("Matt"), chapter("Matt", 1),
    "El libro de Jesús.", "Abraham é Isaac.", "Tercero.",
    chapter("Matt", 2), "Segundo capítulo, uno.", "Dos.", "Tres.",  # one verse more: Matt 2 is left out
    book("Mark"), chapter("Mark", 1), "Último versículo.",
]


def test_module_verses_walk_the_index_and_clean_the_markup(tmp_path: Path) -> None:
    write_ztext(tmp_path / "en", "nt", ENGLISH_NT)
    verses = module_verses(tmp_path / "en")
    assert verses == {
        ("Matt", 1, 1): "The book, of Jesus.",
        ("Matt", 1, 2): "Abraham & Isaac.",
        ("Matt", 1, 3): "",
        ("Matt", 2, 1): "Second chapter, verse one.",
        ("Matt", 2, 2): "Verse two.",
        ("Mark", 1, 1): "Last verse.",
    }


def test_parallel_verses_pair_by_reference_and_skip_renumbered_chapters(tmp_path: Path) -> None:
    write_ztext(tmp_path / "en", "nt", ENGLISH_NT)
    write_ztext(tmp_path / "es", "nt", SPANISH_NT, per_block=5)
    pairs = parallel_verses(module_verses(tmp_path / "en"), module_verses(tmp_path / "es"))
    assert pairs == [(("Matt", 1, 1), "The book, of Jesus.", "El libro de Jesús."),
                     (("Matt", 1, 2), "Abraham & Isaac.", "Abraham é Isaac."),
                     (("Mark", 1, 1), "Last verse.", "Último versículo.")]


def test_canonical_titles_stay_and_words_keep_their_punctuation() -> None:
    markup = ('<title canonical="true" type="psalm">A Psalm by David.</title> <l sID="x"/>Yahweh, how'
              ' <w lemma="strong:H1732">my</w> <w lemma="strong:H6862">adversaries</w>!<l eID="x"/><l sID="y"/>Many')
    assert clean_osis(markup) == "A Psalm by David. Yahweh, how my adversaries! Many"


def make_deb(path: Path, files: dict[str, bytes]) -> Path:
    """A minimal Debian package: an ar archive holding debian-binary and data.tar.xz with `files`."""
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w:xz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    members = [("debian-binary", b"2.0\n"), ("data.tar.xz", payload.getvalue())]
    out = b"!<arch>\n"
    for name, data in members:
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode("ascii") + data
        out += b"\n" if len(data) % 2 else b""
    path.write_bytes(out)
    return path


def test_bible_dataset_from_fake_packages(tmp_path: Path) -> None:
    modules = {"sword-text-web": ("engWEB2015eb", ENGLISH_NT), "sword-text-sparv": ("spaRV1909eb", SPANISH_NT)}
    asked = []

    def fake_download(package: str, dest: Path) -> Path:
        asked.append(package)
        module, entries = modules[package]
        write_ztext(tmp_path / "build" / module, "nt", entries)
        files = {f"{SWORD_MODULES}{module}/{f.name}": f.read_bytes() for f in (tmp_path / "build" / module).iterdir()}
        files["usr/share/doc/readme"] = b"not a module file"
        return make_deb(dest / f"{package}_1.0_all.deb", files)

    folder = tmp_path / "cache"
    folder.mkdir()
    path = obtain_bible(folder, download=fake_download)
    assert asked == ["sword-text-web", "sword-text-sparv"]
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert records == [
        {"source": "The book, of Jesus.", "target": "El libro de Jesús.", "ref": "Matt.1.1"},
        {"source": "Abraham & Isaac.", "target": "Abraham é Isaac.", "ref": "Matt.1.2"},
        {"source": "Last verse.", "target": "Último versículo.", "ref": "Mark.1.1"},
    ]
    assert sorted(p.name for p in folder.iterdir()) == ["bible-en-es.jsonl"], "no scratch files left"


def test_broken_inputs_are_one_line_errors(tmp_path: Path) -> None:
    not_deb = tmp_path / "x.deb"
    not_deb.write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a Debian package"):
        deb_files(not_deb, "usr/")
    folder = tmp_path / "broken"
    write_ztext(folder, "nt", ENGLISH_NT)
    (folder / "nt.bzv").write_bytes((folder / "nt.bzv").read_bytes()[:-3])
    with pytest.raises(ValueError, match="whole number of entries"):
        module_verses(folder)
