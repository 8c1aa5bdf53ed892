"""Digit strings as people say them, and the MBROLA dataset's split by speaker, with a fake synthesiser."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.test_synth import fake_speech
from unrolled.data.diphones import (
    DIGIT_WORDS,
    MBROLA,
    MBROLA_VOICES,
    SPEAKERS,
    speak_digit_strings,
    spoken_digit_texts,
)
from unrolled.data.recipes.speech import obtain_spoken_digits_all
from unrolled.data.speech import read_manifest
from unrolled.data.synth import Engines, Request, Voice


def test_people_say_zero_or_oh_with_and_without_pauses_and_the_transcript_is_the_words() -> None:
    texts = spoken_digit_texts(400, np.random.default_rng(0))
    for spoken, transcript in texts:
        words = transcript.split()
        assert set(words) <= {*DIGIT_WORDS, "oh"} and not ("oh" in words and "zero" in words)
        assert spoken.replace(",", "").split() == words  # the pauses are commas between the same words
    transcripts = " ".join(t for _, t in texts).split()
    assert "oh" in transcripts and "zero" in transcripts
    paused = [s for s, t in texts if s.count(",") == len(t.split()) - 1 > 0]  # a pause after every digit
    grouped = [s for s, t in texts if 0 < s.count(",") < len(t.split()) - 1]
    run = [s for s, _ in texts if "," not in s]
    assert min(len(paused), len(grouped), len(run)) > 40
    assert spoken_digit_texts(50, np.random.default_rng(1)) == spoken_digit_texts(50, np.random.default_rng(1))


def test_the_test_speakers_are_never_heard_in_training(tmp_path: Path) -> None:
    voices = [Voice(MBROLA, "mbrola", f"mb-{name}") for name in MBROLA_VOICES]
    engines = Engines({}, {MBROLA: voices})
    heard: list[Request] = []

    def speak(request: Request, out: Path) -> None:
        heard.append(request)
        fake_speech(request, out)

    counts = {"train": 12, "validation": 3, "test": 8}
    utterances = read_manifest(speak_digit_strings(tmp_path, engines, seed=4, counts=counts, speak=speak))
    assert [u.split for u in utterances] == [split for split, n in counts.items() for _ in range(n)]
    speakers = {split: {u.extra["speaker"] for u in utterances if u.split == split} for split in counts}
    assert speakers["train"] <= set(SPEAKERS["train"]) and speakers["test"] <= set(SPEAKERS["test"])
    assert not speakers["train"] & speakers["test"]
    assert [r.text for r in heard] == [u.extra["spoken"] for u in utterances]  # the commas reach the synthesiser
    assert all("," not in u.text for u in utterances)


def test_the_joined_manifest_reads_both_datasets_clips(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name / "clips").mkdir(parents=True)
        fake_speech(Request("one two", Voice(MBROLA, "x", name)), tmp_path / name / "clips" / "c.wav")
        (tmp_path / name / "manifest.jsonl").write_text(json.dumps(
            {"audio": "clips/c.wav", "text": f"one {name}", "split": "test"}) + "\n")
    folder = tmp_path / "all"
    folder.mkdir()
    paths = {"spoken-digits": tmp_path / "a" / "manifest.jsonl", "diphone-digits": tmp_path / "b" / "manifest.jsonl"}
    utterances = read_manifest(obtain_spoken_digits_all(folder, source=paths.__getitem__))
    assert [(u.text, u.extra["dataset"]) for u in utterances] == [("one a", "spoken-digits"),
                                                                  ("one b", "diphone-digits")]
    assert all(u.audio.resolve().is_file() and not Path(json.loads(line)["audio"]).is_absolute()
               for u, line in zip(utterances, (folder / "manifest.jsonl").read_text().splitlines(), strict=True))
