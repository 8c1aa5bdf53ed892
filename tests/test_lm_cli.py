"""`unrolled lm train | sample | eval` end to end on a small text, and every bad input answered in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.cli_errors import one_error_line
from tests.runs import trained
from unrolled.apps.lm import LanguageModel
from unrolled.cli import main

TEXT = ("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
        "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles\n") * 12
TINY = ["--layers", "1", "--hidden", "24", "--embedding", "8", "--batch", "4", "--seq-len", "16",
        "--eval-every", "5", "--no-progress"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text") / "hamlet.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained(tmp_path_factory, "run", "lm", str(corpus), "--max-steps", "12", *TINY)



def test_train_writes_checkpoints_metrics_and_curve(run: Path) -> None:
    assert (run / "last" / "model.safetensors").is_file() and (run / "best" / "config.json").is_file()
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in lines} == {"train", "validation"}
    assert (run / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((run / "last" / "config.json").read_text())
    assert config["kind"] == "char-lm" and config["model"]["hidden"] == 24


def test_resume_continues_the_same_run(run: Path, corpus: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(run, copy)
    assert main(["lm", "train", str(corpus), "--out", str(copy), "--max-steps", "15", "--resume", *TINY]) == 0
    config = json.loads((copy / "last" / "config.json").read_text())
    assert config["step"] == 15


def test_sample_streams_the_prime_and_the_continuation(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lm", "sample", str(run), "--prime", "To be", "--length", "40", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("To be") and len(out) == len("To be") + 40 + 1
    assert main(["lm", "sample", str(run), "--prime", "To be", "--length", "40", "--seed", "3"]) == 0
    assert capsys.readouterr().out == out  # the same seed, the same text


def test_sample_several_and_greedy(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lm", "sample", str(run), "--num-samples", "3", "--length", "20", "--greedy"]) == 0
    out = capsys.readouterr().out
    samples = [block.strip("\n") for block in out.split("--- sample")[1:]]
    assert len(samples) == 3 and len({s.split("---", 1)[1] for s in samples}) == 1  # greedy: all the same


def test_python_api_matches_the_cli(run: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = LanguageModel.load(run)
    assert main(["lm", "eval", str(run), str(corpus), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == pytest.approx(model.evaluate(TEXT))
    assert printed["bpc"] == pytest.approx(printed["loss"] / torch.log(torch.tensor(2.0)).item())
    texts = model.sample("To be", length=30, seed=3, num_samples=2)
    assert len(texts) == 2 and all(t.startswith("To be") and len(t) == 35 for t in texts)


def test_a_run_repeats_from_its_own_configuration(run: Path, tmp_path: Path) -> None:
    saved = run / "last" / "config.json"
    assert json.loads(saved.read_text())["config"]["model"]["hidden"] == 24
    again = tmp_path / "again"
    assert main(["lm", "train", "--config", str(saved), "--out", str(again), "--max-steps", "12"]) == 0
    repeated = json.loads((again / "last" / "config.json").read_text())
    assert repeated["config"] == json.loads(saved.read_text())["config"]
    assert repeated["train"] == json.loads(saved.read_text())["train"]
    weights = [(folder / "last" / "model.safetensors").read_bytes() for folder in (run, again)]
    assert weights[0] == weights[1]  # same configuration, same seed: the same model


def test_predict_and_eval_print_json(run: Path, corpus: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lm", "predict", str(run), "--prime", "To be", "--length", "10", "--seed", "3",
                 "--num-samples", "2", "--json"]) == 0
    samples = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [s["number"] for s in samples] == [1, 2] and all(s["prime"] == "To be" for s in samples)
    assert all(s["text"].startswith("To be") and len(s["text"]) == 15 for s in samples)
    primes = tmp_path / "prime.txt"
    primes.write_text("Or to", encoding="utf-8")
    assert main(["lm", "predict", str(run), str(primes), "--length", "4", "--json"]) == 0
    [sample] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sample["prime"] == "Or to" and len(sample["text"]) == 9
    assert main(["lm", "eval", str(run), str(corpus), "--windows", "5", "--batch-size", "2", "--json"]) == 0
    windows = json.loads(capsys.readouterr().out)
    assert windows["characters"] == 5 * 256
    assert main(["lm", "eval", str(run), "--split", "validation", "--json"]) == 0
    validation = json.loads(capsys.readouterr().out)
    config = json.loads((run / "best" / "config.json").read_text())
    start, end = config["split"]["validation"]
    assert validation["characters"] == end - start - 1
    assert validation["loss"] == pytest.approx(LanguageModel.load(run).evaluate(TEXT[start:end])["loss"])


def test_eval_prints_a_readable_line(run: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lm", "eval", str(run), str(corpus)]) == 0
    out = capsys.readouterr().out
    assert "nats/char" in out and "bits/char" in out and "perplexity" in out


# ---------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["lm", "train", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "r"), *TINY])
    one_error_line(capsys, code, "nope.txt")
    assert not (tmp_path / "r").exists()


def test_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.txt").write_text("")
    code = main(["lm", "train", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "r"), *TINY])
    one_error_line(capsys, code, "empty.txt", "empty")


def test_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["lm", "train", str(tmp_path), "--out", str(tmp_path / "r"), *TINY])
    one_error_line(capsys, code, str(tmp_path))


def test_binary_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data.bin").write_bytes(b"abc\x00\xff\xfe" * 10)
    code = main(["lm", "train", str(tmp_path / "data.bin"), "--out", str(tmp_path / "r"), *TINY])
    one_error_line(capsys, code, "data.bin", "offset")


def test_text_too_short_for_a_window(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "short.txt").write_text("hello")
    code = main(["lm", "train", str(tmp_path / "short.txt"), "--out", str(tmp_path / "r"), *TINY])
    one_error_line(capsys, code, "too short")


def test_resume_of_a_run_that_does_not_exist(corpus: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["lm", "train", str(corpus), "--out", str(tmp_path / "never"), "--resume", *TINY])
    one_error_line(capsys, code, "resume")


def test_fresh_start_over_an_existing_run_keeps_it(run: Path, corpus: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    before = (run / "last" / "model.safetensors").read_bytes()
    code = main(["lm", "train", str(corpus), "--out", str(run), "--max-steps", "3", *TINY])
    one_error_line(capsys, code, "--resume")
    assert (run / "last" / "model.safetensors").read_bytes() == before


def test_resume_on_another_text(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.txt"
    other.write_text(TEXT.upper())
    code = main(["lm", "train", str(other), "--out", str(run), "--resume", "--max-steps", "20", *TINY])
    one_error_line(capsys, code, "another text")


def test_corrupt_checkpoint(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(run / "best", broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])  # truncated
    code = main(["lm", "sample", str(broken), "--length", "5"])
    one_error_line(capsys, code, "model.safetensors")


def test_checkpoint_of_another_model_type(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    other = tmp_path / "other"
    shutil.copytree(run / "best", other)
    config = json.loads((other / "config.json").read_text())
    config["kind"] = "classifier"
    (other / "config.json").write_text(json.dumps(config))
    code = main(["lm", "sample", str(other), "--length", "5"])
    one_error_line(capsys, code, "classifier")


def test_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one_error_line(capsys, main(["lm", "sample", str(tmp_path / "nothing")]), "no such run")
    one_error_line(capsys, main(["lm", "sample", str(tmp_path)]), "holds no checkpoint")


def test_prime_with_unseen_characters(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one_error_line(capsys, main(["lm", "sample", str(run), "--prime", "To be \u00e9\u00e9"]), "never saw", "'\u00e9'")


@pytest.mark.parametrize("option", [["--length", "0"], ["--length", "-5"], ["--temperature", "0"],
                                    ["--temperature", "-1"], ["--top-k", "0"], ["--top-p", "0"],
                                    ["--temperature", "abc"]])
def test_bad_numbers_for_sampling(run: Path, option: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:  # argparse stops on what is not a number; the options' checks answer the rest before the run is read
        code = main(["lm", "sample", str(run), *option])
    except SystemExit as stop:
        code = int(stop.code or 0)
    one_error_line(capsys, code, option[0])


def test_top_p_above_one(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one_error_line(capsys, main(["lm", "sample", str(run), "--top-p", "1.5"]), "top")


def test_bad_max_time(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:  # argparse reads --max-time
        code = main(["lm", "train", str(corpus), "--out", str(tmp_path / "r"), "--max-time", "soon", *TINY])
    except SystemExit as stop:
        code = int(stop.code or 0)
    one_error_line(capsys, code, "soon")


def test_eval_of_a_missing_file(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one_error_line(capsys, main(["lm", "eval", str(run), str(tmp_path / "gone.txt")]), "gone.txt")


def _train_losses(run: Path) -> list[float]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if r["split"] == "train"]


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="no native bfloat16 on this CPU")
def test_bf16_training_resumes_exactly_and_stays_close_to_fp32(corpus: Path, tmp_path: Path) -> None:
    """bf16 autocast: same losses as fp32 to bf16's precision; a stop and resume repeats the run bit for bit."""
    common = [str(corpus), "--max-steps", "6", *TINY, "--eval-every", "100", "--dropout", "0"]
    log_every = ["--log-every", "1"]
    assert main(["lm", "train", *common, *log_every, "--out", str(tmp_path / "whole"), "--precision", "bf16"]) == 0
    assert main(["lm", "train", *common, *log_every, "--out", str(tmp_path / "fp32"), "--precision", "fp32"]) == 0
    half = [a if a != "6" else "3" for a in common]
    assert main(["lm", "train", *half, *log_every, "--out", str(tmp_path / "cut"), "--precision", "bf16"]) == 0
    assert main(["lm", "train", *common, *log_every, "--out", str(tmp_path / "cut"), "--precision", "bf16",
                 "--resume"]) == 0
    whole, cut = LanguageModel.load(tmp_path / "whole" / "last"), LanguageModel.load(tmp_path / "cut" / "last")
    for (name, a), b in zip(whole.model.state_dict().items(), cut.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert _train_losses(tmp_path / "whole") == _train_losses(tmp_path / "cut")
    assert _train_losses(tmp_path / "whole") != _train_losses(tmp_path / "fp32")  # bf16 really ran
    for low, high in zip(_train_losses(tmp_path / "whole"), _train_losses(tmp_path / "fp32"), strict=True):
        assert abs(low - high) < 0.02 * high



def test_sample_warns_in_one_line_when_the_prime_is_unlike_the_training_text(
        run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    assert main(["lm", "sample", str(run), "--prime", "To be, or not to be", "--length", "5", "--seed", "1"]) == 0
    assert capsys.readouterr().err == ""  # the corpus's own words: no warning
    model = LanguageModel.load(run)
    assert model.validation_loss == json.loads((run / "best" / "config.json").read_text())["validation"]["loss"]
    prime = "To be, or not to be"
    loss = model.evaluate(prime)["loss"]
    copy = tmp_path / "copy"  # the same model, claiming a validation loss the prime is far above
    shutil.copytree(run, copy)
    config_path = copy / "best" / "config.json"
    config = json.loads(config_path.read_text())
    config["validation"]["loss"] = min(loss / 2, loss - 2.0) - 0.05
    assert config["validation"]["loss"] > 0, "the tiny model should be far from perfect on this prime"
    config_path.write_text(json.dumps(config))
    assert main(["lm", "sample", str(copy), "--prime", prime, "--length", "5", "--seed", "1"]) == 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "warning: the prime reads unlike the training text" in err
    config["validation"]["loss"] = min(loss / 2, loss - 2.0) + 0.05  # just under the limit: quiet
    config_path.write_text(json.dumps(config))
    assert main(["lm", "sample", str(copy), "--prime", prime, "--length", "5", "--seed", "1"]) == 0
    assert capsys.readouterr().err == ""
