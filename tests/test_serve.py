"""`unrolled serve` through a real HTTP client against the real command on a loopback port.

Answers are checked against the predictors themselves (the same run loaded
in-test, the same options and seed), batches against single requests, and
every limit and bad input against its 4xx JSON error.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile

from tests.serve_runs import LIMITS, Runs, limit_flags, serving, train_runs
from unrolled.apps.base import to_json
from unrolled.apps.classify import TextClassifier
from unrolled.apps.lm import LanguageModel, LMPredictOptions
from unrolled.apps.seq2seq import Seq2SeqPredictOptions, Translator
from unrolled.serve.config import LOOPBACK, ServeOptions
from unrolled.serve.diverse import has_near_duplicates

WAIT_MS = 200  # long enough that requests sent together meet in one batch
FLOAT32_ROUNDING = 1e-6  # a classifier's probabilities in a padded batch differ from alone in the last bits


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return train_runs(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def url(runs: Runs) -> Iterator[str]:
    names = ["lm", "classify", "tag", "seq2seq", "caption", "speech", "video"]
    with serving([runs.run(name) for name in names], "--max-batch", "16", "--max-wait-ms", str(WAIT_MS),
                 *limit_flags()) as base:
        yield base


def post(url: str, path: str, body: Any) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=60)


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def refused(response: httpx.Response, status: int, limit: str | None = None) -> str:
    """The error message of a refused request, after checking its status, JSON form and limit."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["error"], str) and "\n" not in body["error"] and "Traceback" not in body["error"]
    assert body.get("limit") == limit
    return str(body["error"])


def test_it_listens_on_the_loopback_address_unless_told_otherwise() -> None:
    assert ServeOptions().host == LOOPBACK == "127.0.0.1"


def test_health_models_and_the_openapi_document(url: str, runs: Runs) -> None:
    assert ok(httpx.get(f"{url}/health")) == {"status": "ok", "models": 7}
    models = {model["name"]: model for model in ok(httpx.get(f"{url}/v1/models"))["models"]}
    saved = json.loads((runs.run("lm") / "best" / "config.json").read_text())
    assert models["lm"]["kind"] == "char-lm"
    assert models["lm"]["vocabulary_sizes"]["vocab_size"] == saved["model"]["vocab_size"]
    assert models["lm"]["config"]["model"] == saved["config"]["model"]
    assert models["lm"]["validation"]["loss"] == pytest.approx(saved["validation"]["loss"])
    assert models["seq2seq"]["replies"] and not models["classify"]["replies"]
    paths = ok(httpx.get(f"{url}/openapi.json"))["paths"]
    assert {"/v1/models/lm/predict", "/v1/models/seq2seq/reply", "/v1/models/caption/predict/upload"} <= set(paths)


def test_lm_samples_are_the_predictors_with_the_same_seed(url: str, runs: Runs) -> None:
    options = {"prime": "to be", "length": 40, "seed": 7, "num_samples": 3, "temperature": 0.8, "top_k": 5}
    served = ok(post(url, "/v1/models/lm/predict", options))
    expected = LanguageModel.load(runs.run("lm"), device="cpu").predict([options["prime"]], LMPredictOptions(**options))
    assert served["seed"] == 7
    assert [sample["text"] for sample in served["samples"]] == [sample.text for sample in expected]


def test_a_streamed_sample_arrives_character_by_character_and_equals_the_whole(url: str) -> None:
    body = {"prime": "not", "length": 30, "seed": 3, "top_p": 0.9}
    whole = ok(post(url, "/v1/models/lm/predict", body))["samples"][0]["text"]
    events: list[tuple[str, str]] = []
    with httpx.stream("POST", f"{url}/v1/models/lm/predict", json={**body, "stream": True}, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = "message"
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((kind, line[len("data: "):]))
                kind = "message"
    characters = [json.loads(data) for kind, data in events if kind == "message"]
    assert events[0][0] == "start" and events[-1][0] == "done"
    assert len(characters) == 30 and all(len(c) == 1 for c in characters)
    assert "not" + "".join(characters) == json.loads(events[-1][1])["text"] == whole


def concurrently(url: str, path: str, bodies: list[dict[str, Any]]) -> list[Any]:
    with ThreadPoolExecutor(len(bodies)) as pool:
        return [ok(response) for response in pool.map(lambda body: post(url, path, body), bodies)]


def largest_batch(url: str, name: str) -> int:
    models = ok(httpx.get(f"{url}/v1/models"))["models"]
    return int(next(model for model in models if model["name"] == name)["batching"]["largest_batch"])


def test_lm_answers_do_not_depend_on_the_batch(url: str) -> None:
    bodies = [{"prime": prime, "length": length, "seed": seed, "num_samples": samples, "temperature": 1.2}
              for prime, length, seed, samples in [("to", 25, 1, 1), ("be", 40, 2, 2), ("", 10, 3, 1), ("or", 33, 4, 3),
                                                   ("the", 25, 5, 1), ("is", 5, 6, 2)]]
    bodies.append({"prime": "to", "length": 12, "seed": 9, "greedy": True})
    alone = [ok(post(url, "/v1/models/lm/predict", body)) for body in bodies]
    together = concurrently(url, "/v1/models/lm/predict", bodies)
    assert largest_batch(url, "lm") > 1
    assert together == alone


def test_classify_tag_and_seq2seq_answers_are_the_predictors_and_do_not_depend_on_the_batch(
        url: str, runs: Runs) -> None:
    texts = [["a good film"], ["bad", "not good at all , really"], ["fine"], ["the cat runs", "a dog"]]
    classifier = TextClassifier.load(runs.run("classify"), device="cpu")
    alone = [ok(post(url, "/v1/models/classify/predict", {"texts": batch})) for batch in texts]
    assert [result for answer in alone for result in answer["results"]] == [
        to_json(label) for batch in texts for label in classifier.predict(batch)]
    together = concurrently(url, "/v1/models/classify/predict", [{"texts": batch} for batch in texts])
    assert largest_batch(url, "classify") > 1
    for one, other in zip(together, alone, strict=True):  # the same labels; probabilities to float32 rounding
        for a, b in zip(one["results"], other["results"], strict=True):
            assert a["label"] == b["label"] and a["text"] == b["text"]
            assert a["probabilities"] == pytest.approx(b["probabilities"], rel=FLOAT32_ROUNDING, abs=0)
    tags = [ok(post(url, "/v1/models/tag/predict", {"texts": batch})) for batch in texts]
    assert concurrently(url, "/v1/models/tag/predict", [{"texts": batch} for batch in texts]) == tags
    sources = [{"sources": ["abc"], "beam": 3, "n_best": 2}, {"sources": ["ba", "cab"], "beam": 3, "n_best": 2},
               {"sources": ["a"], "beam": 3, "n_best": 2}]
    translator = Translator.load(runs.run("seq2seq"), device="cpu")
    expected = translator.predict(["ba", "cab"], Seq2SeqPredictOptions(beam=3, n_best=2))
    alone = [ok(post(url, "/v1/models/seq2seq/predict", body)) for body in sources]
    assert alone[1]["results"] == json.loads(json.dumps(to_json(expected)))
    assert concurrently(url, "/v1/models/seq2seq/predict", sources) == alone


def test_drawn_outputs_run_alone_so_a_seed_gives_the_same_output_in_any_company(url: str) -> None:
    bodies = [{"sources": [source], "sample": True, "seed": 5, "temperature": 1.5, "max_len": 12}
              for source in ("abc", "ba", "cab", "a")]
    alone = [ok(post(url, "/v1/models/seq2seq/predict", body)) for body in bodies]
    assert concurrently(url, "/v1/models/seq2seq/predict", bodies) == alone


def test_replies_are_k_diverse_suggestions_from_the_n_best(url: str, runs: Runs) -> None:
    answer = ok(post(url, "/v1/models/seq2seq/reply", {"message": "abc", "k": 3}))
    texts = [reply["text"] for reply in answer["replies"]]
    assert 1 <= len(texts) <= 3 and not has_near_duplicates(texts)
    scores = [reply["score"] for reply in answer["replies"]]
    assert scores == sorted(scores, reverse=True)
    plain = ok(post(url, "/v1/models/seq2seq/reply", {"message": "abc", "k": 3, "diverse": False}))
    beam = answer["candidates"]
    assert plain["candidates"] == beam
    best = Translator.load(runs.run("seq2seq"), device="cpu").translate(["abc"], beam=8, n_best=8)[0]
    assert [reply["text"] for reply in plain["replies"]] == [
        o.text for o in best if o.finished and o.text.strip()][:3]


def image_bytes(runs: Runs) -> bytes:
    return Path(runs.inputs["caption"][0]).read_bytes()


def test_files_as_base64_and_as_uploads_give_the_same_answers(url: str, runs: Runs) -> None:
    image = image_bytes(runs)
    as_json = ok(post(url, "/v1/models/caption/predict", {
        "files": [{"data": base64.b64encode(image).decode(), "name": "square.png"}], "beam": 2}))
    uploaded = ok(httpx.post(f"{url}/v1/models/caption/predict/upload", files=[("files", ("square.png", image))],
                             data={"options": json.dumps({"beam": 2})}, timeout=60))
    assert as_json == uploaded and as_json["results"][0]["image"] == "square.png"
    clips = Path(runs.inputs["video"][0]).read_bytes()
    labelled = ok(httpx.post(f"{url}/v1/models/video/predict/upload", files=[("files", ("moves.npz", clips))],
                             timeout=60))["results"]
    assert len(labelled) == 12 and labelled[0]["clip"] == "moves.npz#0"


def test_audio_at_another_sample_rate_is_transcribed_as_at_16_khz(url: str, runs: Runs, tmp_path: Path) -> None:
    wave, rate = soundfile.read(runs.inputs["speech"][0], dtype="float32")
    assert rate == 16_000
    slow = tmp_path / "8k.wav"
    soundfile.write(slow, wave[::2], 8_000)  # every other sample: the same sound at 8 kHz
    texts = [ok(httpx.post(f"{url}/v1/models/speech/predict/upload", files=[("files", (path.name, path.read_bytes()))],
                           timeout=60))["results"][0]["text"] for path in (Path(runs.inputs["speech"][0]), slow)]
    assert all(isinstance(text, str) for text in texts)


def big_png(side: int) -> bytes:
    from io import BytesIO

    from PIL import Image

    out = BytesIO()
    Image.new("RGB", (side, side), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


def long_wav(seconds: float) -> bytes:
    from io import BytesIO

    out = BytesIO()
    soundfile.write(out, np.zeros(int(seconds * 8000), dtype=np.float32), 8000, format="WAV")
    return out.getvalue()


LIMIT_CASES: dict[str, tuple[str, Any, int]] = {
    "max_texts": ("/v1/models/classify/predict", {"texts": ["a"] * (LIMITS["max_texts"] + 1)}, 413),
    "max_text_chars": ("/v1/models/classify/predict", {"texts": ["a" * (LIMITS["max_text_chars"] + 1)]}, 413),
    "max_length": ("/v1/models/lm/predict", {"prime": "to", "length": LIMITS["max_length"] + 1}, 422),
    "max_samples": ("/v1/models/lm/predict", {"prime": "to", "length": 5,
                                              "num_samples": LIMITS["max_samples"] + 1}, 422),
    "max_beam": ("/v1/models/seq2seq/predict", {"sources": ["ab"], "beam": LIMITS["max_beam"] + 1}, 422),
    "max_request_bytes": ("/v1/models/classify/predict", {"texts": ["a" * 200] * 2100}, 413),
}


@pytest.mark.parametrize("limit", sorted(LIMIT_CASES))
def test_every_json_limit_is_a_4xx_naming_it(url: str, limit: str) -> None:
    path, body, status = LIMIT_CASES[limit]
    message = refused(post(url, path, body), status, limit)
    assert f"--{limit.replace('_', '-')}" in message


def test_the_file_limits_are_413s_naming_them(url: str) -> None:
    side = int(LIMITS["max_image_pixels"] ** 0.5) + 1
    response = httpx.post(f"{url}/v1/models/caption/predict/upload", files=[("files", ("big.png", big_png(side)))])
    assert "big.png" in refused(response, 413, "max_image_pixels")
    response = httpx.post(f"{url}/v1/models/speech/predict/upload",
                          files=[("files", ("long.wav", long_wav(LIMITS["max_audio_seconds"] + 1)))])
    assert "long.wav" in refused(response, 413, "max_audio_seconds")
    response = httpx.post(f"{url}/v1/models/caption/predict/upload",
                          files=[("files", ("huge.png", b"\0" * int(LIMITS["max_request_bytes"] + 1)))])
    refused(response, 413, "max_request_bytes")


BAD_INPUTS: list[tuple[str, Any]] = [
    ("/v1/models/nobody/predict", {"texts": ["a"]}),
    ("/v1/models/classify/predict", {"texts": []}),
    ("/v1/models/classify/predict", {"texts": "a film"}),
    ("/v1/models/classify/predict", {"texts": [1, 2]}),
    ("/v1/models/classify/predict", {"texts": ["   "]}),
    ("/v1/models/classify/predict", {"text": ["a"]}),
    ("/v1/models/classify/predict", [1, 2]),
    ("/v1/models/lm/predict", {"prime": "to", "temperature": -1.0}),
    ("/v1/models/lm/predict", {"prime": "to", "temperature": 0.0}),
    ("/v1/models/lm/predict", {"prime": "to", "seed": 1.5}),
    ("/v1/models/lm/predict", {"prime": "to", "seed": "1"}),
    ("/v1/models/lm/predict", {"prime": "to", "seed": -1}),
    ("/v1/models/lm/predict", {"prime": "to", "top_p": 0.0}),
    ("/v1/models/lm/predict", {"prime": "\u2603 snow"}),
    ("/v1/models/lm/predict", {"prime": "to", "stream": True, "num_samples": 2}),
    ("/v1/models/seq2seq/predict", {"sources": ["ab"], "beam": 2, "n_best": 3}),
    ("/v1/models/seq2seq/predict", {"sources": ["0"], "length_penalty": 248.0}),  # found by the fuzz: a 500 once
    ("/v1/models/seq2seq/reply", {"message": ""}),
    ("/v1/models/seq2seq/reply", {"message": "ab", "k": 0}),
    ("/v1/models/classify/reply", {"message": "ab"}),
    ("/v1/models/caption/predict", {"files": [{"data": "not base64!"}]}),
    ("/v1/models/caption/predict", {"files": [{"data": base64.b64encode(b"GIF89a not really").decode()}]}),
    ("/v1/models/speech/predict", {"files": [{"data": base64.b64encode(b"RIFF....WAVEfmt ").decode()}]}),
    ("/v1/models/video/predict", {"files": [{"data": base64.b64encode(b"PK\x03\x04 broken").decode()}]}),
]


@pytest.mark.parametrize(("path", "body"), BAD_INPUTS, ids=[f"{p.split('/')[3]}-{i}" for i, (p, _) in
                                                              enumerate(BAD_INPUTS)])
def test_bad_input_is_a_one_line_4xx_json_error(url: str, path: str, body: Any) -> None:
    response = post(url, path, body)
    assert 400 <= response.status_code < 500, response.text
    refused(response, response.status_code)


@pytest.mark.parametrize("raw", [b'{"prime": "to", "temperature": NaN}', b'{"prime": "to", "temperature": Infinity}',
                                 b'{"prime": "to", "top_p": NaN}'])
def test_nan_and_infinity_are_4xx(url: str, raw: bytes) -> None:
    response = httpx.post(f"{url}/v1/models/lm/predict", content=raw, headers={"content-type": "application/json"})
    assert "finite" in refused(response, 422)


def test_a_body_that_is_not_json_is_a_4xx(url: str) -> None:
    response = httpx.post(f"{url}/v1/models/classify/predict", content=b"{not json",
                          headers={"content-type": "application/json"})
    refused(response, 422)
    response = httpx.post(f"{url}/v1/models/speech/predict/upload", files=[("files", ("a.wav", b"noise"))],
                          data={"options": "[1]"})
    refused(response, 422)


def test_json_sent_without_its_content_type_is_415_saying_what_to_send(url: str) -> None:
    """curl -d sends application/x-www-form-urlencoded unless told otherwise: the answer says so."""
    response = httpx.post(f"{url}/v1/models/lm/predict", content=b'{"prime": "to"}',
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert "content-type: application/json" in refused(response, 415)


def test_a_run_that_does_not_load_stops_start_up_with_one_line(tmp_path: Path, runs: Runs) -> None:
    broken = tmp_path / "broken"
    (broken / "best").mkdir(parents=True)
    (broken / "best" / "config.json").write_text('{"kind": "char-lm"}', encoding="utf-8")
    for run in (tmp_path / "missing", broken):
        done = subprocess.run([sys.executable, "-c", "import sys; from unrolled.cli import main; sys.exit(main())",
                               "serve", str(runs.run("classify")), str(run), "--port", "1"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("unrolled serve: error: ") and str(run) in lines[0]
