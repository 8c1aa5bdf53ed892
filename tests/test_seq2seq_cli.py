"""`unrolled seq2seq train | translate | eval` end to end on a toy task (reverse a word), tokens, metrics, bad input."""

from __future__ import annotations

import io
import json
import random
import sys
from pathlib import Path

import pytest
import sacrebleu

from tests.cli_errors import one_error_line
from tests.runs import trained
from unrolled.apps.seq2seq import Side, Translator, split_pairs
from unrolled.apps.split import SplitRecord
from unrolled.cli import main
from unrolled.data.pairs import Pair, read_pairs
from unrolled.metrics import bleu_chrf, edit_distance, sequence_errors

LETTERS = "abcdef"
TINY = ["--embedding", "24", "--hidden", "32", "--batch", "16", "--no-progress", "--lr", "1e-2", "--max-epochs", "12",
        "--source-tokens", "char", "--target-tokens", "char", "--dropout", "0", "--validation", "0.1", "--test", "0.1"]


def words(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return sorted({"".join(rng.choice(LETTERS) for _ in range(rng.randint(2, 6))) for _ in range(count)})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Reverse a word; "abab"-like words also map to a second target (two references for one source)."""
    lines = [f"{w}\t{w[::-1]}\n" for w in words(900, 0)]
    lines += [f"{w}\t{w[::-1]}x\n" for w in words(900, 0) if w.startswith("aa")]
    path = tmp_path_factory.mktemp("data") / "reverse.tsv"
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained(tmp_path_factory, "reverse", "seq2seq", str(data), *TINY)


def test_train_learns_to_reverse_and_eval_reports_greedy_and_beam(run: Path, data: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["seq2seq", "eval", str(run), str(data), "--split", "test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    translator = Translator.load(run)
    assert translator.split is not None
    test = split_pairs(read_pairs(data), SplitRecord(**translator.split))["test"]
    assert report["pairs"] == len(test) and report["sources"] == len({p.source for p in test})
    for beam in ("beam1", "beam5"):
        assert report[beam]["sequence_error"] <= 0.1, report
        assert report[beam]["chrf"] >= 80  # (BLEU needs 4-grams of words: a one-word output scores 0)
    assert main(["seq2seq", "eval", str(run), str(data), "--split", "test"]) == 0
    table = capsys.readouterr().out
    assert "greedy" in table and "beam 5" in table and "seq err %" in table


def test_the_split_keeps_every_target_of_a_source_on_one_side(run: Path, data: Path) -> None:
    translator = Translator.load(run)
    assert translator.split is not None and translator.split["grouped"]
    parts = split_pairs(read_pairs(data), SplitRecord(**translator.split))
    sides = [{p.source for p in parts[name]} for name in ("train", "validation", "test")]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert sum(len(part) for part in parts.values()) == len(read_pairs(data))


def test_translate_reads_stdin_and_prints_one_line_per_input(run: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"abcde\n\nfedd\nbad\n")))
    assert main(["seq2seq", "translate", str(run), "--beam", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["edcba", "ddef", "dab"]


def test_n_best_json_and_attention_map(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.txt"
    source.write_text("abcd\ncafe\n", encoding="utf-8")
    picture = tmp_path / "attention.png"
    assert main(["seq2seq", "translate", str(run), str(source), "--beam", "4", "--n-best", "3", "--json",
                 "--attention-map", str(picture)]) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["source"] for r in records] == ["abcd", "cafe"]
    for record in records:
        outputs = record["outputs"]
        assert len(outputs) == 3 and len({o["text"] for o in outputs}) == 3
        assert [o["normalised"] for o in outputs] == sorted((o["normalised"] for o in outputs), reverse=True)
    assert records[0]["outputs"][0]["text"] == "dcba"
    assert picture.read_bytes()[:4] == b"\x89PNG" and "attention map" in captured.err
    assert main(["seq2seq", "translate", str(run), str(source), "--beam", "4", "--n-best", "2"]) == 0
    blocks = capsys.readouterr().out.split("\n\n")
    assert blocks[0].splitlines()[0].startswith("1\t") and blocks[0].splitlines()[1].startswith("2\t")


def test_attention_follows_the_reversal(run: Path) -> None:
    """Reversing a word, output k should look mostly at source position n-1-k."""
    (best,), = Translator.load(run).translate(["abcdef"], beam=1, attention=True)
    assert best.text == "fedcba" and best.attention is not None
    assert best.attention.shape == (7, 6)  # 6 letters and </s>, by 6 source letters
    assert best.attention[:6].argmax(1).tolist() == [5, 4, 3, 2, 1, 0]


def test_batching_never_changes_a_translation(run: Path) -> None:
    translator = Translator.load(run)
    sources = words(70, 7)
    together = translator.translate(sources, beam=5, n_best=2, batch_size=64)
    for k in range(0, 70, 9):
        alone = translator.translate([sources[k]], beam=5, n_best=2, batch_size=1)[0]
        assert [t.text for t in alone] == [t.text for t in together[k]]
        # the same up to float32 rounding: a batch of another shape sums in another order
        assert [t.score for t in alone] == pytest.approx([t.score for t in together[k]], rel=1e-5, abs=1e-6)


def test_resume_continues_the_run(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    short = [*TINY[:-10], "--source-tokens", "char", "--target-tokens", "char"]
    assert main(["seq2seq", "train", str(data), "--out", str(out), *short, "--max-epochs", "1"]) == 0
    assert main(["seq2seq", "train", str(data), "--out", str(out), *short, "--max-epochs", "2", "--resume"]) == 0
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [line["step"] for line in lines if line["split"] == "validation"]
    assert steps == sorted(steps) and steps[-1] == 2 * steps[0]


# ---------------------------------------------------------------------- tokens and metrics


@pytest.mark.parametrize("kind", ["char", "word", "subword"])
def test_sides_give_the_text_back(kind: str) -> None:
    texts = [f"the {w} sat on the mat, said {w[::-1]}." for w in words(60, 1)] + ["Ünïcode façade — ok"]
    side = Side.build(texts, kind, max_len=200, subword_vocab=60)
    again = Side.from_json(json.loads(json.dumps(side.to_json())))
    for text in texts[:10] + texts[-1:]:
        tokens = again.tokens(text)
        assert again.text(tokens) == (" ".join(text.split()) if kind == "word" else text)
        ids, cut, unknown = again.encode(text)
        assert not cut and unknown == 0 and again.decode(ids) == tokens
    if kind == "subword":
        assert 10 < len(again.vocabulary) <= 62 + 2 and len(tokens) < len(texts[-1])


def test_a_target_side_reserves_start_and_end() -> None:
    side = Side.build(["a <s> b </s>", "b c"], "word", max_len=10, target=True)
    assert side.vocabulary.tokens[:2] == ["<s>", "</s>"]
    ids, _, unknown = side.encode("a </s> c")
    assert ids[1] == 1 and unknown == 1, "the end token in a text reads as <unk>"


def test_edit_distance_and_sequence_errors_known_answers() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a", "b"]) == 2 and edit_distance(["a"], ["a"]) == 0
    scores = sequence_errors([["K", "AE1", "T"], ["R", "IY1", "D"], ["D", "AO1", "G", "Z"]],
                             [[["K", "AE1", "T"]], [["R", "EH1", "D"], ["R", "IY1", "D"]], [["D", "AO1", "G"]]])
    assert scores["sequence_error"] == pytest.approx(1 / 3)
    assert scores["token_error"] == pytest.approx(1 / 9)  # one insertion over 3 + 3 + 3 reference phonemes


def test_bleu_and_chrf_are_sacrebleus_with_every_reference() -> None:
    hypotheses = ["the cat sat on the mat", "a dog ran"]
    references = [["the cat sat on a mat", "the cat sat on the mat"], ["the dog ran away"]]
    scores = bleu_chrf(hypotheses, references)
    streams = [["the cat sat on a mat", "the dog ran away"], ["the cat sat on the mat", None]]
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hypotheses, streams).score)  # type: ignore[arg-type]
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hypotheses, streams).score)  # type: ignore[arg-type]
    assert bleu_chrf(["same words here ok"], [["same words here ok"]])["bleu"] == pytest.approx(100.0)


# ---------------------------------------------------------------------- bad input


def test_pairs_with_an_empty_side_name_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("ab\tba\ncd\t\n", encoding="utf-8")
    code = main(["seq2seq", "train", str(path), "--out", str(tmp_path / "r"), *TINY])
    one_error_line(capsys, code, "line 2", "empty target")
    path.write_text("ab\tba\njust one side\n", encoding="utf-8")
    code = main(["seq2seq", "train", str(path), "--out", str(tmp_path / "r"), *TINY])
    one_error_line(capsys, code, "line 2", "0 tabs")


def test_long_sources_are_cut_with_a_warning_and_unknown_tokens_named(run: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.txt"
    source.write_text("ab" * 80 + "\nabzzq\n", encoding="utf-8")
    assert main(["seq2seq", "translate", str(run), str(source), "--beam", "2"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2
    warnings = captured.err.splitlines()
    assert any("1 source(s) longer than 100 tokens were cut" in line for line in warnings), warnings
    assert any("3 source token(s) unknown to the model were read as <unk>" in line for line in warnings), warnings


@pytest.mark.parametrize(("options", "fragments"), [
    (["--beam", "0"], ("--beam", "positive integer")),
    (["--beam", "2", "--n-best", "3"], ("--n-best 3", "--beam 2")),
])
def test_bad_decoding_options(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str],
                              fragments: tuple[str, ...]) -> None:
    source = tmp_path / "in.txt"
    source.write_text("abc\n", encoding="utf-8")
    try:
        code = main(["seq2seq", "translate", str(run), str(source), *options])
    except SystemExit as stop:  # a usage mistake: argparse exits
        code = int(stop.code or 0)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and all(f in err for f in fragments), err


def test_another_models_checkpoint_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "toy.conll"
    data.write_text("the\tO\ncat\tA\n\na\tO\ndog\tA\n\n" * 10, encoding="utf-8")
    out = tmp_path / "tagger"
    assert main(["tag", "train", str(data), "--out", str(out), "--embedding", "4", "--hidden", "4",
                 "--max-steps", "2", "--no-progress"]) == 0
    capsys.readouterr()
    source = tmp_path / "in.txt"
    source.write_text("abc\n", encoding="utf-8")
    code = main(["seq2seq", "translate", str(out), str(source)])
    one_error_line(capsys, code, "tagger")


def test_input_that_is_not_utf8_is_refused(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ab\xffcd\n")))
    one_error_line(capsys, main(["seq2seq", "translate", str(run)]), "stdin", "UTF-8", "byte offset 2")
    source = tmp_path / "latin1.txt"
    source.write_bytes("caf\xe9\n".encode("latin-1"))
    one_error_line(capsys, main(["seq2seq", "translate", str(run), str(source)]), "latin1.txt", "UTF-8")


def test_missing_data_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one_error_line(capsys, main(["seq2seq", "train", "--out", str(tmp_path / "r")]), "no data", "--dataset")
    one_error_line(capsys, main(["seq2seq", "train", str(tmp_path / "none.tsv"), "--out", str(tmp_path / "r")]),
                   "no such file")


def test_pairs_from_python(tmp_path: Path) -> None:
    """The Python route: fit on Pair objects, then translate."""
    from unrolled.apps.seq2seq import Seq2SeqAppConfig, Seq2SeqData, Seq2SeqModel, Seq2SeqPredictOptions, fit
    from unrolled.training import TrainConfig

    pairs = [Pair(w, w[::-1], k + 1) for k, w in enumerate(words(300, 3))]
    config = Seq2SeqAppConfig(Seq2SeqData(source_tokens="char", target_tokens="char", batch_size=8),
                              Seq2SeqModel(embedding=16, hidden=16), TrainConfig(max_steps=5, eval_every=5,
                                                                                 progress=False))
    result = fit(config, tmp_path / "run", pairs=pairs)
    assert result.steps == 5 and (tmp_path / "run" / "best" / "config.json").is_file()
    translator = Translator.load(tmp_path / "run")
    (outputs,) = translator.translate(["abc"], beam=2, n_best=2)
    assert len(outputs) == 2 and all(isinstance(o.text, str) for o in outputs)
    [result] = translator.predict(["abc"], Seq2SeqPredictOptions(beam=2, n_best=2))
    assert result.source == "abc" and [o.text for o in result.outputs] == [o.text for o in outputs]


def test_a_run_repeats_from_its_configuration_and_resumes_from_its_folder(data: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    tiny = ["--embedding", "8", "--hidden", "8", "--batch-size", "16", "--max-steps", "3", "--no-progress",
            "--source-tokens", "char", "--target-tokens", "char", "--unidirectional", "--tie-weights",
            "--attention", "additive"]
    assert main(["seq2seq", "train", str(data), "--out", str(first), *tiny]) == 0
    saved = json.loads((first / "last" / "config.json").read_text())
    assert saved["config"]["data"]["file"] == str(data) and saved["config"]["data"]["batch_size"] == 16
    assert saved["config"]["model"]["bidirectional"] is False and saved["config"]["model"]["tie_embeddings"]
    assert main(["seq2seq", "train", "--config", str(first / "last" / "config.json"), "--out", str(second)]) == 0
    again = json.loads((second / "last" / "config.json").read_text())
    assert again["config"] == saved["config"] and again["train"] == saved["train"]
    weights = [(run / "last" / "model.safetensors").read_bytes() for run in (first, second)]
    assert weights[0] == weights[1]  # same configuration, same seed: the same model
    assert main(["seq2seq", "train", "--out", str(second), "--resume", "--max-steps", "4"]) == 0
    assert json.loads((second / "last" / "config.json").read_text())["step"] == 4


def test_predict_and_eval_speak_json(run: Path, data: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.txt"
    source.write_text("abc\ncafe\n", encoding="utf-8")
    assert main(["seq2seq", "predict", str(run), str(source), "--json", "--beam", "2", "--batch", "1"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["source"] for r in records] == ["abc", "cafe"]
    assert [[o["text"] for o in r["outputs"]] for r in records] == [["cba"], ["efac"]]
    assert records[0]["outputs"][0]["tokens"] == ["c", "b", "a"] and records[0]["outputs"][0]["finished"]
    assert main(["seq2seq", "eval", str(run), str(data), "--split", "validation", "--beam", "1", "--json",
                 "--batch-size", "7", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"sources", "pairs", "beam1"} and report["beam1"]["sequence_error"] <= 0.1


def test_sampling_draws_varied_outputs_reproducibly(run: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.txt"
    source.write_text("abcdef\n" * 30, encoding="utf-8")
    common = ["seq2seq", "translate", str(run), str(source), "--sample", "--seed", "3"]
    assert main([*common, "--temperature", "3"]) == 0
    hot = capsys.readouterr().out.splitlines()
    assert main([*common, "--temperature", "3"]) == 0
    assert capsys.readouterr().out.splitlines() == hot, "a seed makes the draws reproducible"
    assert len(hot) == 30 and len(set(hot)) > 5, "a high temperature varies the outputs"
    assert main([*common, "--top-k", "1"]) == 0
    assert set(capsys.readouterr().out.splitlines()) == {"fedcba"}, "top-k 1 is greedy"
    one_error_line(capsys, main([*common, "--temperature", "0"]), "temperature")
    one_error_line(capsys, main([*common, "--n-best", "2"]), "--sample")
