"""`unrolled classify train | predict | eval` end to end on a small labelled set, and each bad input in one line."""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from tests.cli_errors import one_error_line
from tests.runs import trained
from unrolled.apps.classify import TextClassifier, split_examples
from unrolled.apps.split import SplitRecord
from unrolled.cli import main
from unrolled.data.labelled import Example, read_labelled

POSITIVE, NEGATIVE = ["good", "great", "lovely", "superb"], ["bad", "awful", "dull", "poor"]
FILLER = ["the", "movie", "was", "a", "and", "plot", "it", "story"]
TINY = ["--embedding", "12", "--hidden", "10", "--maps", "6", "--batch", "16", "--no-progress", "--lr", "1e-2",
        "--max-epochs", "25", "--early-stop", "25"]


def sentences(count: int, seed: int) -> list[tuple[str, str]]:
    """Filler words with one sentiment word: the label is which list it came from."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.choice(["pos", "neg"])
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 10))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        rows.append((" ".join(words), label))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "toy.csv", sentences(240, 0))


@pytest.fixture(scope="module", params=["rnn", "cnn"])
def run(request: pytest.FixtureRequest, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained(tmp_path_factory, request.param, "classify", str(data), "--model", request.param, *TINY)



def test_train_learns_the_task_and_records_the_split(run: Path, data: Path) -> None:
    classifier = TextClassifier.load(run)
    assert classifier.split is not None
    parts = split_examples(read_labelled(data), SplitRecord(**classifier.split))
    assert [len(parts[p]) for p in ("train", "validation", "test")] == [192, 24, 24]
    assert classifier.evaluate(parts["test"])["accuracy"] >= 0.9
    assert classifier.labels.names == ["neg", "pos"]
    config = json.loads((run / "last" / "config.json").read_text())
    assert config["kind"] == "classifier" and config["model_type"] == run.name


def test_predict_prints_a_label_and_probability_per_line(run: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    lines = tmp_path / "in.txt"
    lines.write_text("a lovely story\n\nthe plot was awful\n", encoding="utf-8")
    assert main(["classify", "predict", str(run), str(lines)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in out] == ["pos", "neg"]
    assert all(0.5 < float(line.split("\t")[1]) <= 1.0 for line in out)
    assert main(["classify", "predict", str(run), str(lines), "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records[0]["text"] == "a lovely story"
    assert sum(records[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_batched_prediction_equals_one_at_a_time(run: Path) -> None:
    classifier = TextClassifier.load(run)
    texts = [text for text, _ in sentences(50, 7)]
    together = classifier.probabilities(texts, batch_size=64)
    alone = torch.cat([classifier.probabilities([text]) for text in texts])
    assert torch.allclose(together, alone, atol=1e-5)


def test_eval_prints_scores_and_writes_the_confusion_matrix(run: Path, data: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", "eval", str(run), str(data), "--split", "test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == 24 and set(report["classes"]) == {"neg", "pos"}
    assert Path(report["confusion_png"]).read_bytes()[:4] == b"\x89PNG"
    assert sum(map(sum, report["confusion"])) == 24


def test_resume_continues_and_keeps_the_split(run: Path, data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    before = json.loads((copy / "last" / "config.json").read_text())
    assert main(["classify", "train", str(data), "--out", str(copy), "--model", run.name, "--resume", *TINY,
                 "--max-epochs", "26"]) == 0
    after = json.loads((copy / "last" / "config.json").read_text())
    assert after["step"] > before["step"] and after["split"] == before["split"]


def test_separate_validation_file_and_folds(data: Path, tmp_path: Path) -> None:
    validation = write_csv(tmp_path / "dev.csv", sentences(30, 3))
    out = tmp_path / "dev-run"
    assert main(["classify", "train", str(data), "--validation-data", str(validation), "--out", str(out),
                 *TINY, "--max-epochs", "1"]) == 0
    split = TextClassifier.load(out).split
    assert split is not None and split["validation"] == 0.0 and split["test"] == 0.0
    folds = tmp_path / "fold-run"
    assert main(["classify", "train", str(data), "--folds", "10", "--fold", "3", "--out", str(folds), *TINY,
                 "--max-epochs", "1"]) == 0
    record = TextClassifier.load(folds).split
    assert record is not None
    parts = split_examples(read_labelled(data), SplitRecord(**record))
    assert len(parts["test"]) == 24 and not {e.text for e in parts["test"]} & {e.text for e in parts["train"]}


def test_jsonl_input_with_other_column_names(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"sentence": t, "y": y}) + "\n" for t, y in sentences(60, 1)))
    out = tmp_path / "run"
    assert main(["classify", "train", str(path), "--text-column", "sentence", "--label-column", "y", "--out",
                 str(out), *TINY, "--max-epochs", "1"]) == 0


def test_long_texts_are_cut_with_a_warning(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "short"
    assert main(["classify", "train", str(data), "--out", str(out), "--max-len", "4", *TINY,
                 "--max-epochs", "1"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "longer than 4 tokens" in err and "Traceback" not in err
    with pytest.warns(UserWarning, match="longer than 4 tokens"):
        TextClassifier.load(out).predict(["the movie was a lovely story and the plot was good"])


# ---------------------------------------------------------------------- bad input, one line each


def test_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    one_error_line(capsys, main(["classify", "train", str(path), "--out", str(tmp_path / "r")]), "empty.csv")


def test_missing_column(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["classify", "train", str(data), "--label-column", "sentiment", "--out", str(tmp_path / "r")])
    one_error_line(capsys, code, "sentiment", "--label-column")


def test_one_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(tmp_path / "one.csv", [(text, "pos") for text, _ in sentences(30, 2)])
    one_error_line(capsys, main(["classify", "train", str(path), "--out", str(tmp_path / "r")]), "one label")


def test_bad_json_line_names_its_number(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine", "label": "a"}\n{"text": "oops", "label": \n{"text": "x", "label": "b"}\n')
    one_error_line(capsys, main(["classify", "train", str(path), "--out", str(tmp_path / "r")]), "line 2")


def test_bad_csv_line_names_its_number(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.csv"
    path.write_text('text,label\n"fine",a\n"unclosed,b\n')
    one_error_line(capsys, main(["classify", "train", str(path), "--out", str(tmp_path / "r")]), "line")


def test_eval_with_a_label_training_never_saw(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(tmp_path / "other.csv", [("a lovely story", "pos"), ("so so", "neutral")])
    one_error_line(capsys, main(["classify", "eval", str(run), str(path)]), "'neutral'", "'neg'")


def test_predict_with_a_language_model_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question\n" * 20)
    lm = tmp_path / "lm"
    assert main(["lm", "train", str(text), "--out", str(lm), "--max-steps", "2", "--layers", "1", "--hidden", "8",
                 "--embedding", "4", "--batch", "2", "--seq-len", "8", "--no-progress"]) == 0
    capsys.readouterr()
    one_error_line(capsys, main(["classify", "predict", str(lm), str(text)]), "char-lm", "classifier")


def test_predict_from_a_missing_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one_error_line(capsys, main(["classify", "predict", str(tmp_path / "nothing")]), "no such run")


def test_fold_out_of_range(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["classify", "train", str(data), "--folds", "5", "--fold", "5", "--out", str(tmp_path / "r")])
    one_error_line(capsys, code, "--fold")


def test_python_api_matches_the_cli(run: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lines = tmp_path / "in.txt"
    lines.write_text("superb and great\n", encoding="utf-8")
    main(["classify", "predict", str(run), str(lines)])
    label, probability = capsys.readouterr().out.split("\t")
    [result] = TextClassifier.load(run).predict(["superb and great"])
    assert (result.label, round(result.probability, 4)) == (label, float(probability))
    assert result.probabilities[result.label] == result.probability
    assert TextClassifier.load(run).evaluate([Example("superb and great", "pos", 1)])["accuracy"] == 1.0


def test_the_nb_branch_trains_saves_and_predicts(data: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    run = trained(tmp_path_factory, "cnn", "classify", str(data), "--model", "cnn", "--wide", "2", *TINY)
    config = json.loads((run / "best" / "config.json").read_text())["model"]
    assert config["wide_order"] == 2 and config["wide_features"] > 0
    classifier = TextClassifier.load(run)
    assert classifier.model.wide is not None and classifier.model.wide.keys.numel() == config["wide_features"]
    assert classifier.split is not None
    parts = split_examples(read_labelled(data), SplitRecord(**classifier.split))
    assert classifier.evaluate(parts["test"])["accuracy"] >= 0.9
    texts = [text for text, _ in sentences(30, 7)]
    alone = torch.cat([classifier.probabilities([text]) for text in texts])
    assert torch.allclose(classifier.probabilities(texts, batch_size=64), alone, atol=1e-5)
