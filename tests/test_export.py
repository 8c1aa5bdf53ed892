"""Exported folders end to end: the runtime's predictions against the predictors', the manifest, bad input, no torch,
int8 and TorchScript."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[export]')")

from tests.cli_errors import one_error_line  # noqa: E402
from tests.export_runs import classify_run, lm_run, seq2seq_run, tag_run, without_torch  # noqa: E402
from unrolled import runtime  # noqa: E402
from unrolled.cli import main  # noqa: E402
from unrolled.export import ExportError, export_run, load_predictor  # noqa: E402
from unrolled.runtime.bundle import BundleError  # noqa: E402

TEXTS = ["the film is good", "not very funny .", "a dull , dull story that is not good at all , the film is bad",
         "unheard-of words here"]
LINES = ["the film is good", "Not very funny . The story is a gripping story .", "x"]
WORDS = ["hello", "abc", "zebra", "a", "wordofeleven"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    made = {"lm": lm_run(root / "lm"), "classify": classify_run(root / "classify"), "tag": tag_run(root / "tag"),
            "seq2seq": seq2seq_run(root / "seq2seq", layers=2)}
    return {**made, **{f"{name}-onnx": export_run(run, root / f"{name}-onnx") for name, run in made.items()}}


def test_lm_greedy_samples_equal_the_predictors_and_sampling_is_seeded(runs: dict[str, Path]) -> None:
    _, predictor = load_predictor(runs["lm"])
    exported = runtime.load(runs["lm-onnx"])
    for prime in ("First ", "", "hear me"):
        expected = predictor.sample(prime, 60, greedy=True, num_samples=2)
        assert exported.sample(prime, 60, greedy=True, num_samples=2) == expected
    options = {"length": 40, "temperature": 0.8, "top_k": 5, "top_p": 0.9, "seed": 7, "num_samples": 3}
    drawn = exported.predict(["First "], options)
    assert [s.number for s in drawn] == [1, 2, 3] and all(len(s.text) == len("First ") + 40 for s in drawn)
    assert [s.text for s in exported.predict(["First "], options)] == [s.text for s in drawn]
    assert not exported.vocabulary.unknown("".join(s.text for s in drawn))


def test_classifier_probabilities_and_labels_equal_the_predictors(runs: dict[str, Path]) -> None:
    _, predictor = load_predictor(runs["classify"])
    exported = runtime.load(runs["classify-onnx"])
    with pytest.warns(UserWarning, match="1 of 4 texts were longer than 12 tokens"):
        expected = predictor.predict(TEXTS)
    with pytest.warns(UserWarning, match="1 of 4 texts were longer than 12 tokens"):
        got = exported.predict(TEXTS, {"batch_size": 2})
    assert [r.label for r in got] == [r.label for r in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert all(abs(mine.probabilities[k] - theirs.probabilities[k]) < 1e-5 for k in theirs.probabilities)


def test_the_cnn_classifier_reads_texts_shorter_than_its_widest_filter(tmp_path: Path) -> None:
    run = classify_run(tmp_path / "cnn", model_type="cnn")
    _, predictor = load_predictor(run)
    exported = runtime.load(export_run(run, tmp_path / "cnn-onnx"))
    texts = ["good", "not good", "the film is a gripping story , not dull"]
    for batch in (1, 3):
        got = exported.probabilities(texts, batch_size=batch)
        assert abs(got - predictor.probabilities(texts, batch_size=batch).numpy()).max() < 1e-5


def test_a_classifier_with_the_nb_branch_is_refused_in_one_line(tmp_path: Path) -> None:
    run = classify_run(tmp_path / "wide", wide_order=2, wide_features=5)
    with pytest.raises(ExportError, match=r"NB n-gram branch \(--wide\) does not export"):
        export_run(run, tmp_path / "wide-onnx")


def test_tagger_tags_equal_the_predictors_even_for_sentences_cut_in_pieces(runs: dict[str, Path]) -> None:
    _, predictor = load_predictor(runs["tag"])
    exported = runtime.load(runs["tag-onnx"])
    assert [r.tags for r in exported.predict(LINES)] == [r.tags for r in predictor.predict(LINES)]
    assert len(exported.predict(LINES)[1].tags) == 11  # longer than max_len 6: tagged in two pieces


@pytest.mark.parametrize("beam", [1, 5])
def test_seq2seq_greedy_and_beam_decodes_equal_the_predictors(runs: dict[str, Path], beam: int) -> None:
    _, predictor = load_predictor(runs["seq2seq"])
    exported = runtime.load(runs["seq2seq-onnx"])
    expected = predictor.translate(WORDS, beam=beam, n_best=min(beam, 3), batch_size=2)
    got = exported.translate(WORDS, beam=beam, n_best=min(beam, 3), batch_size=2)
    assert [[o.tokens for o in outputs] for outputs in got] == [[o.tokens for o in outputs] for outputs in expected]
    assert len({len(o.tokens) for outputs in expected for o in outputs}) > 2  # outputs of several lengths
    for mine, theirs in zip(got, expected, strict=True):
        for a, b in zip(mine, theirs, strict=True):
            assert a.finished == b.finished and math.isclose(a.score, b.score, abs_tol=1e-4)


@pytest.mark.parametrize(("ngram", "min_length", "penalty"), [(1, 0, 0.0), (2, 3, 0.6)])
def test_seq2seq_beam_options_equal_the_predictors(runs: dict[str, Path], ngram: int, min_length: int,
                                                   penalty: float) -> None:
    _, predictor = load_predictor(runs["seq2seq"])
    exported = runtime.load(runs["seq2seq-onnx"])
    options = {"beam": 4, "n_best": 2, "no_repeat_ngram": ngram, "min_len": min_length, "length_penalty": penalty}
    expected = predictor.predict(WORDS, predictor_options(options))
    got = exported.predict(WORDS, options)
    assert [[o.tokens for o in r.outputs] for r in got] == [[o.tokens for o in r.outputs] for r in expected]
    assert all(len(set(o.tokens)) == len(o.tokens) for r in got for o in r.outputs) or ngram != 1


def predictor_options(values: dict[str, object]) -> object:
    from unrolled.apps.seq2seq import Seq2SeqPredictOptions

    return Seq2SeqPredictOptions(**values)


def test_seq2seq_with_subword_sides(tmp_path: Path) -> None:
    from tests.export_runs import SENTENCES

    run = seq2seq_run(tmp_path / "subwords", subwords=True)
    _, predictor = load_predictor(run)
    exported = runtime.load(export_run(run, tmp_path / "out"))
    expected, got = predictor.translate(SENTENCES[:3], beam=3), exported.translate(SENTENCES[:3], beam=3)
    assert [o[0].text for o in got] == [o[0].text for o in expected]
    assert [o[0].tokens for o in got] == [o[0].tokens for o in expected]


def test_the_runtime_never_imports_torch(runs: dict[str, Path]) -> None:
    printed = without_torch(f"print(runtime.load({str(runs['classify-onnx'])!r}).predict(['a good film'])[0].label)",
                            f"print(runtime.load({str(runs['seq2seq-onnx'])!r}).predict(['abc'])[0].outputs[0].finished)",
                            f"print(runtime.load({str(runs['lm-onnx'])!r}).sample('First', 5, greedy=True)[0])")
    assert len(printed) == 3


def test_the_manifest_lists_every_file_with_its_sha256(runs: dict[str, Path]) -> None:
    import hashlib

    folder = runs["seq2seq-onnx"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["application"] == "seq2seq" and manifest["graphs"] == "onnx" and manifest["quantized"] is None
    names = sorted(path.name for path in folder.iterdir() if path.name != "manifest.json")
    assert sorted(manifest["files"]) == names == ["encoder.onnx", "settings.json", "step.onnx"]
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest


def test_a_missing_or_altered_file_is_one_line(runs: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(runs["classify-onnx"], broken)
    with (broken / "model.onnx").open("ab") as stream:
        stream.write(b"\0")
    with pytest.raises(BundleError, match=r"model.onnx: altered \(its SHA-256 differs"):
        runtime.load(broken)
    (broken / "model.onnx").unlink()
    with pytest.raises(BundleError, match=r"model.onnx: missing"):
        runtime.load(broken)
    with pytest.raises(BundleError, match="not an exported model"):
        runtime.load(runs["classify"])


def test_bad_input_is_one_line(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "x")
    one_error_line(capsys, main(["export", str(runs["lm"]), "--format", "savedmodel", "--out", out]),
                   "unknown format 'savedmodel'")
    one_error_line(capsys, main(["export", str(tmp_path / "nowhere")]), "no such run or checkpoint folder")
    one_error_line(capsys, main(["export", str(runs["lm"]), "--quantize", "int4", "--out", out]),
                   "unknown quantisation 'int4'")
    one_error_line(capsys, main(["run", str(runs["lm"])]), "not an exported model")
    one_error_line(capsys, main(["run"]), "give the exported folder")
    with pytest.raises(SystemExit) as exit_status:
        main(["run", str(runs["lm-onnx"]), "--beam", "5"])  # an option of another application
    one_error_line(capsys, int(str(exit_status.value.code)), "unrecognized arguments: --beam")
    one_error_line(capsys, main(["run", str(runs["lm-onnx"]), "--prime", "Zürich", "--greedy"]),
                   "characters the model never saw in training: 'Z', 'ü'")
    assert not (tmp_path / "x").exists()


def test_a_failed_export_leaves_the_old_folder_whole(runs: dict[str, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import unrolled.export

    out = tmp_path / "out"
    out.mkdir()
    (out / "kept").write_text("old")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(unrolled.export, "write_manifest", interrupted)  # the graphs are written by then
    with pytest.raises(OSError, match="disk full"):
        export_run(runs["seq2seq"], out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staged folder left beside it
    assert sorted(p.name for p in out.iterdir()) == ["kept"] and (out / "kept").read_text() == "old"


@pytest.mark.parametrize("encoder", ["lstm", "cnn"])
def test_taggers_with_character_features(tmp_path: Path, encoder: str) -> None:
    run = tag_run(tmp_path / "chars", chars=4, char_vocab_size=8, char_encoder=encoder, char_width=3)
    _, predictor = load_predictor(run)
    exported = runtime.load(export_run(run, tmp_path / "out"))
    lines = [*LINES, "a", "gripping"]
    assert [r.tags for r in exported.predict(lines, {"batch_size": 2})] == [r.tags for r in predictor.predict(lines)]


def test_cli_export_and_run_print_what_predict_prints(runs: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mr"
    assert main(["export", str(runs["classify"]), "--out", str(out)]) == 0
    assert "model.onnx" in capsys.readouterr().out
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS[:2]) + "\n")
    assert main(["classify", "predict", str(runs["classify"]), str(texts)]) == 0
    expected = capsys.readouterr().out
    assert main(["run", str(out), str(texts)]) == 0
    assert capsys.readouterr().out == expected


def test_int8_quantises_the_weights_of_native_layers_and_inside_the_loops(runs: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    import onnx

    folder = export_run(runs["classify"], tmp_path / "int8", quantize="int8")
    assert json.loads((folder / "manifest.json").read_text())["quantized"] == "int8"
    kinds = [node.op_type for node in onnx.load(str(folder / "model.onnx")).graph.node]
    assert kinds.count("DynamicQuantizeLSTM") == 2 and "MatMulInteger" in kinds  # both directions; the head
    probabilities = runtime.load(folder).probabilities(TEXTS[:2])
    assert abs(probabilities.sum(axis=1) - 1).max() < 1e-5
    ablation = export_run(classify_run(tmp_path / "nog", cell_options={"output_gate": False}), tmp_path / "nog8",
                          quantize="int8")
    model = onnx.load(str(ablation / "model.onnx"))
    bodies = [attribute.g for node in model.graph.node if node.op_type == "Scan" for attribute in node.attribute
              if attribute.name == "body"]
    assert len(bodies) == 2 and all(any(n.op_type == "MatMulInteger" for n in body.node) for body in bodies)


def test_torchscript_runs_at_other_lengths_and_refuses_cells_without_a_fused_kernel(runs: dict[str, Path],
                                                                                     tmp_path: Path) -> None:
    _, predictor = load_predictor(runs["classify"])
    folder = export_run(runs["classify"], tmp_path / "ts", graphs="torchscript")
    with pytest.warns(DeprecationWarning, match="deprecated"):  # TorchScript is, since torch 2.11
        graph = torch.jit.load(str(folder / "model.pt"))
    ids = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10, 11], [5, 6, 0, 0, 0, 0, 0, 0, 0]])
    lengths = torch.tensor([9, 2])
    with torch.no_grad():
        expected = torch.softmax(predictor.model(ids, lengths), dim=-1)
        assert (graph(ids, lengths) - expected).abs().max() < 1e-5
    with pytest.raises(BundleError, match="a torchscript export"):
        runtime.load(folder)
    peepholes = classify_run(tmp_path / "peepholes", cell_options={"peepholes": True})
    with pytest.raises(ExportError, match=r"no fused kernel.*use --format onnx"):
        export_run(peepholes, tmp_path / "ts2", graphs="torchscript")


def test_the_runtime_tokenises_with_the_training_sides_tokeniser() -> None:
    """One tokeniser (`unrolled.tokens`, no torch) for both sides, so exported models read texts as they trained."""
    from unrolled.data import vocab
    from unrolled.runtime import apps

    assert apps.tokenize is vocab.tokenize
    assert apps.tokenize("He\u2019s isn't at 10,000 ``quoted''", "word") == [
        "he", "'s", "is", "n't", "at", "10,000", "``", "quoted", "''"]
