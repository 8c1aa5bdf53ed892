"""Reading parallel pairs: both formats, known answers, and every malformed input in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unrolled.data.pairs import Pair, read_pairs


def test_tsv_pairs_in_file_order_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "g2p.tsv"
    path.write_text("read\tR IY1 D\n\nread\tR EH1 D\r\nhello there\thola a todos\n", encoding="utf-8")
    assert read_pairs(path) == [Pair("read", "R IY1 D", 1), Pair("read", "R EH1 D", 3),
                                Pair("hello there", "hola a todos", 4)]


def test_jsonl_pairs_with_named_fields(tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    records = [{"q": "hi", "a": "hello!", "id": 1}, {"q": "how are you?", "a": "fine \u2014 thanks"}]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    assert read_pairs(path, source_field="q", target_field="a") == [
        Pair("hi", "hello!", 1), Pair("how are you?", "fine \u2014 thanks", 2)]
    assert read_pairs(path.rename(tmp_path / "chat.data"), format="jsonl", source_field="q",
                      target_field="a")[1].target == "fine \u2014 thanks"


@pytest.mark.parametrize(("name", "content", "message"), [
    ("a.tsv", "one\ttwo\tthree\n", "line 1 has 2 tabs"),
    ("a.tsv", "ok\tfine\nno tab here\n", "line 2 has 0 tabs"),
    ("a.tsv", "ok\tfine\n\t target only\n", "line 2 has an empty source"),
    ("a.tsv", "\n\n", "no pairs"),
    ("a.jsonl", '{"source": "a", "target": "b"}\n{"source": "a", \n', "line 2 is not valid JSON"),
    ("a.jsonl", '["a", "b"]\n', "line 1 is not a JSON object"),
    ("a.jsonl", '{"source": "a", "tgt": "b"}\n', "line 1 has no 'target' field (fields: source, tgt)"),
    ("a.jsonl", '{"source": "a", "target": 3}\n', "'target' is not a string"),
    ("a.csv", "a,b\n", "cannot tell the format"),
])
def test_malformed_files_say_where(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match="^" + str(path).replace(".", r"\.") + ": .*") as caught:
        read_pairs(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_missing_empty_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such file"):
        read_pairs(tmp_path / "nothing.tsv")
    (tmp_path / "empty.tsv").write_bytes(b"")
    with pytest.raises(ValueError, match="empty file"):
        read_pairs(tmp_path / "empty.tsv")
    (tmp_path / "bin.tsv").write_bytes(b"a\tb\n\x00\x01")
    with pytest.raises(ValueError, match="binary data"):
        read_pairs(tmp_path / "bin.tsv")
