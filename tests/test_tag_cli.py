"""`unrolled tag train | predict | eval` end to end on small CoNLL data, the restore task, and bad input."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.cli_errors import one_error_line
from tests.runs import trained
from unrolled.apps.split import SplitRecord
from unrolled.apps.tag import SequenceTagger, split_sentences
from unrolled.cli import main
from unrolled.data.conll import TaggedSentence, read_conll, restoration_sentences, write_conll

ANIMALS, VERBS, OTHER = ["cat", "dog", "eel", "fox"], ["runs", "sees", "eats", "jumps"], ["the", "a", "and", "then"]
TINY = ["--embedding", "12", "--hidden", "12", "--batch", "8", "--no-progress", "--lr", "1e-2", "--max-epochs", "20",
        "--early-stop", "20"]
VERSE = ("ROMEO. But soft, what light through yonder window breaks?\n"
         "It is the east, and Juliet is the sun!\n"
         "Arise, fair sun, and kill the envious moon,\n"
         "Who is already sick and pale with grief.\n")


def tagged(count: int, seed: int) -> list[TaggedSentence]:
    """Tags a token's word class: A(nimal), V(erb), O(ther)."""
    rng = random.Random(seed)
    sentences = []
    for line in range(count):
        tokens = [rng.choice(ANIMALS + VERBS + OTHER) for _ in range(rng.randint(2, 9))]
        tags = ["A" if t in ANIMALS else "V" if t in VERBS else "O" for t in tokens]
        sentences.append(TaggedSentence(tokens, tags, line + 1))
    return sentences


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "toy.conll"
    write_conll(path, tagged(200, 0))
    return path


@pytest.fixture(scope="module")
def run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained(tmp_path_factory, "tagger", "tag", str(data), "--chars", "6", *TINY)


def test_train_learns_the_tags_and_eval_reports_them(run: Path, data: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tag", "eval", str(run), str(data), "--split", "test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] >= 0.95 and report["sentences"] == 20
    assert set(report["classes"]) == {"A", "O", "V"}
    tagger = SequenceTagger.load(run)
    assert tagger.split is not None
    test = split_sentences(read_conll(data), SplitRecord(**tagger.split))["test"]
    assert report["examples"] == sum(len(s.tokens) for s in test)
    assert Path(report["confusion_png"]).read_bytes()[:4] == b"\x89PNG"


def test_predict_prints_conll_and_json(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "in.txt"
    path.write_text("the cat runs\na fox eats the eel\n", encoding="utf-8")
    assert main(["tag", "predict", str(run), str(path)]) == 0
    blocks = capsys.readouterr().out.strip().split("\n\n")
    assert blocks[0].splitlines() == ["the\tO", "cat\tA", "runs\tV"]
    assert main(["tag", "predict", str(run), str(path), "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records[1] == {"tokens": ["a", "fox", "eats", "the", "eel"], "tags": ["O", "A", "V", "O", "A"]}


def test_a_sentence_longer_than_max_len_is_tagged_whole(run: Path) -> None:
    tagger = SequenceTagger.load(run)
    tokens = ["the", "cat", "runs"] * 100  # 300 > max_len 200
    tags = tagger.tag([tokens])[0]
    assert len(tags) == 300 and tags[:3] == tags[-3:] == ["O", "A", "V"]


def test_restore_task_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The built-in task from a tiny cached corpus: train, then restore casing and punctuation of raw text."""
    monkeypatch.setenv("UNROLLED_DATA", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "restore"
    folder.mkdir(parents=True)
    write_conll(folder / "restore.conll", list(restoration_sentences(VERSE * 30)))
    out = tmp_path / "restore-run"
    assert main(["tag", "train", "--dataset", "restore", "--out", str(out), *TINY, "--max-epochs", "30",
                 "--early-stop", "30"]) == 0
    source = tmp_path / "raw.txt"
    source.write_text("it is the east and juliet is the sun\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["tag", "predict", str(out), str(source)]) == 0
    assert capsys.readouterr().out.strip() == "It is the east, and Juliet is the sun!"


def test_bad_conll_line_names_its_number(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.conll"
    path.write_text("the\tO\ncat\tA\n\ndog\n")
    one_error_line(capsys, main(["tag", "train", str(path), "--out", str(tmp_path / "r")]), "line 4")


def test_tagger_checkpoint_is_not_a_classifier(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "in.txt"
    path.write_text("the cat runs\n")
    one_error_line(capsys, main(["classify", "predict", str(run), str(path)]), "'tagger'", "'classifier'")


def test_no_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one_error_line(capsys, main(["tag", "train", "--out", str(tmp_path / "r")]), "no data")


def test_a_run_repeats_from_its_config_and_predicts_and_evaluates_in_json(
        data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["tag", "train", str(data), "--out", str(first), "--embedding", "4", "--hidden", "4", "--chars", "3",
                 "--cell", "gru", "--unidirectional", "--batch", "16", "--max-steps", "2", "--no-progress"]) == 0
    saved = first / "last" / "config.json"
    config = json.loads(saved.read_text())["config"]
    assert config["model"]["cell"] == "gru" and config["model"]["bidirectional"] is False
    assert config["data"]["file"] == str(data) and config["data"]["batch_size"] == 16
    assert main(["tag", "train", "--config", str(saved), "--out", str(second)]) == 0
    assert json.loads((second / "last" / "config.json").read_text())["config"] == config
    weights = [(run / "last" / "model.safetensors").read_bytes() for run in (first, second)]
    assert weights[0] == weights[1]
    assert main(["tag", "train", "--out", str(second), "--resume", "--max-steps", "3"]) == 0
    assert json.loads((second / "last" / "config.json").read_text())["step"] == 3
    source = tmp_path / "in.txt"
    source.write_text("the cat runs\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["tag", "predict", str(second), str(source), "--json", "--batch-size", "2", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == ["the", "cat", "runs"]
    assert main(["tag", "eval", str(second), str(data), "--json", "--split", "validation", "--batch", "4"]) == 0
    assert json.loads(capsys.readouterr().out)["sentences"] == 20
