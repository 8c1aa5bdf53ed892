"""`unrolled viz` and `unrolled viz export` from the command line: the page written, and bad input in one line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.cli_errors import one_error_line
from tests.viz_runs import TEXT, train_tiny_lm, train_tiny_seq2seq
from unrolled.checkpoint import save_checkpoint
from unrolled.cli import main
from unrolled.viz.server import make_server


def embedded(page: Path) -> Any:
    """The data an exported page carries."""
    found = re.search(r"window\.UNROLLED_DATA = (.*?);</script>", page.read_text(encoding="utf-8"), re.S)
    assert found is not None
    return json.loads(found[1])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_lm(tmp_path_factory.mktemp("viz-cli"))


def test_export_writes_one_self_contained_page(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "page.html"
    assert main(["viz", "export", str(run), str(run.parent / "text.txt"), "-o", str(page), "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    html = page.read_text(encoding="utf-8")
    assert "/static/" not in html and "<style>" in html
    data = embedded(page)
    assert data["text"] == TEXT and set(data["states"]) == {f"l{k}.{q}" for k in (0, 1) for q in "ifoch"}
    assert data["curves"]["train"]


def test_part_validation_shows_the_runs_own_text(run: Path, tmp_path: Path) -> None:
    page = tmp_path / "validation.html"
    assert main(["viz", "export", str(run), "--part", "validation", "-o", str(page), "--no-progress"]) == 0
    start, end = json.loads((run / "last" / "config.json").read_text())["split"]["validation"]
    assert embedded(page)["text"] == TEXT[start:end] and end > start


def test_export_of_a_seq2seq_run_carries_its_attention(tmp_path: Path) -> None:
    out, sources = train_tiny_seq2seq(tmp_path)
    lines = tmp_path / "sources.txt"
    lines.write_text("\n".join(sources) + "\n", encoding="utf-8")
    page = tmp_path / "attention.html"
    assert main(["viz", "export", str(out), str(lines), "-o", str(page)]) == 0
    examples = embedded(page)["attention"]
    assert len(examples) == len(sources) and examples[0]["source"] == list(sources[0])
    for example in examples:
        assert len(example["weights"]) == len(example["target"])
        assert all(sum(row) == pytest.approx(1, abs=1e-3) and len(row) == len(example["source"])
                   for row in example["weights"])


def test_help_names_both_forms(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["viz", "--help"])
    out = capsys.readouterr().out
    assert "unrolled viz [serve] [options] RUN TEXT_OR_DATA" in out and "viz export" in out
    with pytest.raises(SystemExit):
        main(["viz", "export", "--help"])
    assert "-o PAGE" in capsys.readouterr().out


def test_bad_input_is_one_line(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = run.parent / "text.txt"
    one_error_line(capsys, main(["viz", str(tmp_path / "missing"), str(text)]), "no such run")
    cnn = tmp_path / "cnn"
    save_checkpoint(cnn / "last", model_state={"w": torch.zeros(1)}, config={"kind": "classifier"})
    one_error_line(capsys, main(["viz", str(cnn), str(text)]), "'classifier' model", "char LM")
    odd = tmp_path / "odd.txt"
    odd.write_text("To be \u2603", encoding="utf-8")
    one_error_line(capsys, main(["viz", str(run), str(odd)]), "never saw in training", "'\u2603'")
    one_error_line(capsys, main(["viz", str(run), str(tmp_path / "nothing.txt")]), "nothing.txt")
    one_error_line(capsys, main(["viz", "export", str(run), str(text)]), "-o PAGE.html")
    one_error_line(capsys, main(["viz", str(run)]), "RUN and TEXT_OR_DATA")
    long = tmp_path / "long.txt"
    long.write_text(TEXT * 5, encoding="utf-8")
    one_error_line(capsys, main(["viz", "export", str(run), str(long), "-o", str(tmp_path / "p.html"),
                                 "--no-progress"]), "at most 5000")


def test_a_port_in_use_is_one_line(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from unrolled.viz.explorer import Explorer

    holder = make_server(Explorer(run), port=0)
    try:
        busy = str(holder.server_address[1])
        code = main(["viz", str(run), str(run.parent / "text.txt"), "--port", busy, "--no-progress"])
        one_error_line(capsys, code, f"port {busy}", "in use", "--port")
    finally:
        holder.server_close()


def test_viz_records_then_serves_the_page(run: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import http.client
    import threading

    from unrolled.viz import server as server_module

    started: list[Any] = []

    def keep(*args: Any, **kwargs: Any) -> Any:
        started.append(make_server(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(server_module, "make_server", keep)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(main(["viz", str(run), str(run.parent / "text.txt"),
                                                                "--no-progress"])))
    thread.start()
    try:
        for _ in range(600):
            if started or not thread.is_alive():
                break
            threading.Event().wait(0.05)
        assert started, capsys.readouterr().err
        host, port = started[0].server_address[:2]
        connection = http.client.HTTPConnection(host, port, timeout=10)
        connection.request("GET", "/api/info")
        info = json.loads(connection.getresponse().read())
        connection.close()
        assert host == "127.0.0.1" and info["states"]["length"] == len(TEXT)
    finally:
        for server in started:
            server.shutdown()
        thread.join(timeout=30)
    assert codes == [0] and f"open http://127.0.0.1:{port}/" in capsys.readouterr().out


def test_export_of_a_speech_run_carries_its_attention_over_time(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_speech_task import write_corpus
    from unrolled.apps.speech import SpeechAppConfig, SpeechDataConfig, SpeechModelConfig, fit
    from unrolled.data.speech import read_manifest
    from unrolled.training import TrainConfig

    manifest = write_corpus(tmp_path, ["ab", "ba c"], copies=5, split=True)
    train = TrainConfig(max_steps=2, eval_every=2, seed=0, progress=False)

    def config(decoder: str) -> SpeechAppConfig:
        model = SpeechModelConfig(decoder=decoder, hidden=16, decoder_hidden=16, spec_augment=False, layers=2,
                                  levels=1, stack=3, stride=2)
        return SpeechAppConfig(SpeechDataConfig(batch_size=4, perturb=False), model, train)

    fit(config("attention"), tmp_path / "las", utterances=read_manifest(manifest))
    page = tmp_path / "speech.html"
    assert main(["viz", "export", str(tmp_path / "las"), str(manifest), "--examples", "3", "-o", str(page)]) == 0
    examples = embedded(page)["attention"]
    assert [e["name"] for e in examples] == ["ab-0.wav", "ba_c-0.wav", "ab-1.wav"]
    first = examples[1]
    # 0.4 s of audio: 1 + 6400 / 160 = 41 frames, stride 2 -> 21, one pyramid level -> 11 steps of 40 ms
    assert first["source"] == [f"{0.04 * k:.2f}s" for k in range(11)]
    for example in examples:
        assert len(example["weights"]) == len(example["target"]) and example["target"][-1] in ("</s>", *"abc\u2423")
        assert all(sum(row) == pytest.approx(1, abs=1e-3) and len(row) == len(example["source"])
                   for row in example["weights"])
    fit(config("ctc"), tmp_path / "ctc", utterances=read_manifest(manifest))
    one_error_line(capsys, main(["viz", "export", str(tmp_path / "ctc"), str(manifest), "-o", str(page)]),
                   "trained with --decoder ctc: there is no attention to show")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: the request is valid")
def test_viz_asks_for_cuda_where_there_is_none_in_one_line(run: Path, capsys: pytest.CaptureFixture[str],
                                                            tmp_path: Path) -> None:
    code = main(["viz", "export", str(run), str(run.parent / "text.txt"), "-o", str(tmp_path / "p.html"),
                 "--device", "cuda"])
    one_error_line(capsys, code, "--device cuda", "no CUDA")
