"""Spoken datasets: texts, voice-disjoint splits, clips and manifests, with fake synthesisers (real ones are slow)."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from unrolled.data import synth
from unrolled.data.recipes.speech import obtain_spoken_digits, obtain_spoken_sentences
from unrolled.data.speech import read_manifest
from unrolled.data.synth import (
    ESPEAK,
    FLITE,
    Engines,
    Request,
    Voice,
    digit_texts,
    draw_requests,
    espeak_arguments,
    find_engines,
    flite_arguments,
    normalise_transcript,
    short_sentences,
    speak_dataset,
    speaker,
    split_voices,
)

ACCENTS = ("en-us", "en-gb", "en-029", "en-gb-scotland", "en-us-nyc")
VARIANTS = (*(f"voice{chr(ord('a') + k)}" for k in range(22)), "robo", "robo2", "Robo7", "f1", "f2")
FLITE_VOICES = [Voice(FLITE, "kal", "kal"), Voice(FLITE, "kal", "kal16"), Voice(FLITE, "awb", "awb"),
                Voice(FLITE, "rms", "rms"), Voice(FLITE, "slt", "slt")]
VOICES = [Voice(ESPEAK, accent, variant) for accent in ACCENTS for variant in VARIANTS] + FLITE_VOICES


def fake_speech(request: Request, out: Path) -> None:
    """A WAV at 22,050 Hz: a tone per character, its pitch set by the voice, its length by the speed."""
    rate = 22_050
    base = 100 + int(hashlib.sha256(request.voice.name.encode()).hexdigest()[:4], 16) % 200
    step = round(0.06 * rate / request.speed)
    pieces = [0.3 * np.sin(2 * np.pi * (base + 20 * (ord(ch) % 32)) * np.arange(step) / rate) for ch in request.text]
    soundfile.write(out, np.concatenate(pieces), rate)


class FakeEngines(Engines):
    def synthesise(self, request: Request, out: Path) -> None:
        fake_speech(request, out)


def fake_engines(voices: list[Voice] = VOICES) -> FakeEngines:
    engines = {engine: [v for v in voices if v.engine == engine] for engine in (ESPEAK, FLITE)}
    return FakeEngines(programs={}, voices={engine: found for engine, found in engines.items() if found})


def test_splits_share_no_accent_no_variant_and_no_flite_speaker() -> None:
    splits = split_voices(VOICES, seed=1)
    assert splits == split_voices(VOICES, seed=1) and splits != split_voices(VOICES, seed=2)
    assert all(splits[split] for split in splits)

    def parts(split: str, engine: str, attribute: str) -> set[str]:
        return {getattr(v, attribute) for v in splits[split] if v.engine == engine}

    for held in ("validation", "test"):
        for engine, attribute in ((ESPEAK, "accent"), (ESPEAK, "timbre"), (FLITE, "accent")):
            assert not parts("train", engine, attribute) & parts(held, engine, attribute)
        families = {speaker(v) for v in splits[held] if v.engine == ESPEAK}
        assert not families & {speaker(v) for v in splits["train"] if v.engine == ESPEAK}
    assert not parts("validation", ESPEAK, "timbre") & parts("test", ESPEAK, "timbre")
    robots = {split for split, voices in splits.items() for v in voices if v.timbre.lower().startswith("robo")}
    assert len(robots) == 1  # robo, robo2 and Robo7 are one speaker
    held_out = parts("validation", FLITE, "accent") | parts("test", FLITE, "accent")
    assert parts("train", FLITE, "accent") == {"kal", "awb", "rms", "slt"} - held_out
    assert len({speaker(v) for v in splits["test"] if v.engine == ESPEAK}) == 10
    assert len(parts("test", ESPEAK, "accent")) == 1
    kal = [v for split in splits.values() for v in split if v.accent == "kal"]
    assert {v.timbre for v in kal} == {"kal", "kal16"}  # kal and kal16 are one speaker: never split


def test_requests_draw_engine_voice_speed_and_pitch_within_their_ranges() -> None:
    voices = split_voices(VOICES, seed=0)["train"]
    requests = draw_requests(["one"] * 2000, voices, np.random.default_rng(0))
    assert requests == draw_requests(["one"] * 2000, voices, np.random.default_rng(0))
    flite_share = np.mean([r.voice.engine == FLITE for r in requests])
    assert abs(flite_share - synth.FLITE_SHARE) < 0.04
    assert all(0.8 <= r.speed <= 1.25 for r in requests)
    assert all((r.pitch is None) == (r.voice.engine == FLITE) for r in requests)
    assert {r.pitch for r in requests if r.pitch is not None} == set(range(20, 81))
    assert {r.voice for r in requests} == set(voices)


def test_command_lines_carry_voice_speed_pitch_and_text(tmp_path: Path) -> None:
    request = Request("three one", Voice(ESPEAK, "en-gb", "f3"), speed=1.2, pitch=30)
    assert espeak_arguments(request, tmp_path / "a.wav") == ["-v", "en-gb+f3", "-s", "210", "-p", "30", "-w",
                                                             str(tmp_path / "a.wav"), "three one"]
    flite = Request("three", Voice(FLITE, "slt", "slt"), speed=0.8)
    assert flite_arguments(flite, tmp_path / "b.wav") == ["-voice", "slt", "--setf", "duration_stretch=1.2500",
                                                          "-t", "three", "-o", str(tmp_path / "b.wav")]


def test_digit_strings_have_1_to_10_digit_words() -> None:
    texts = digit_texts(3000, np.random.default_rng(0))
    assert texts == digit_texts(3000, np.random.default_rng(0))
    lengths = [len(text.split()) for text in texts]
    assert min(lengths) == 1 and max(lengths) == 10 and abs(np.mean(lengths) - 5.5) < 0.2
    words = {word for text in texts for word in text.split()}
    assert words == {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}


def test_transcripts_are_lower_case_letters_and_apostrophes() -> None:
    assert normalise_transcript("“God’s Spirit,” he said—“Jehovah-jireh!”") == "god's spirit he said jehovah jireh"
    assert normalise_transcript("Café 'quoted' words") == "cafe quoted words"
    assert normalise_transcript("In 1 day") is None and normalise_transcript("...") is None


def test_short_sentences_are_cut_filtered_by_length_and_common_words() -> None:
    common = "and the lord said to moses go"
    passages = [f"{common.capitalize()}. The Lord said: go to Moses and the Lord!", "Zerubbabel said to the lord go.",
                "Go; and the lord said to moses go and the lord said to moses go and the lord said."] * 20
    sentences = short_sentences(passages, shortest=4, longest=12, min_count=21)  # Zerubbabel: 20
    assert sentences == ["and the lord said to moses go", "go to moses and the lord"]  # sorted, distinct
    assert short_sentences(list(reversed(passages)), shortest=4, longest=12, min_count=21) == sentences


def test_a_spoken_dataset_is_a_readable_manifest_of_16_khz_clips_with_disjoint_voices(tmp_path: Path) -> None:
    texts = {"train": ["one two", "three"] * 10, "validation": ["four five six"] * 4, "test": ["seven", "eight"] * 3}
    manifest = speak_dataset(tmp_path, texts, VOICES, fake_speech, seed=3, info={"dataset": "fake"})
    utterances = read_manifest(manifest)
    assert [u.split for u in utterances] == ["train"] * 20 + ["validation"] * 4 + ["test"] * 6
    assert [u.text for u in utterances] == [text for split in texts.values() for text in split]
    assert all(soundfile.info(str(u.audio)).samplerate == 16_000 for u in utterances)
    voices = {split: {u.extra["voice"] for u in utterances if u.split == split} for split in texts}
    assert not voices["train"] & voices["validation"] and not voices["train"] & voices["test"]
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["seed"] == 3 and info["dataset"] == "fake" and set(info["voices"]) == set(texts)
    one = read_manifest(manifest, split="validation")[0]
    speed = float(one.extra["speed"])
    assert abs(one.seconds - len(one.text) * 0.06 / speed) < 0.01  # the clip is the request's, resampled


def test_the_same_seed_gives_the_same_dataset_byte_for_byte(tmp_path: Path) -> None:
    texts = {"train": digit_texts(12, np.random.default_rng(0)), "validation": ["one"], "test": ["two"]}
    folders = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    for folder, seed in zip(folders, (5, 5, 6), strict=True):
        folder.mkdir()
        speak_dataset(folder, texts, VOICES, fake_speech, seed=seed, info={})

    def digest(folder: Path) -> str:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        return hashlib.sha256(b"".join(p.relative_to(folder).as_posix().encode() + p.read_bytes()
                                       for p in files)).hexdigest()

    assert digest(folders[0]) == digest(folders[1]) != digest(folders[2])


def test_the_silence_around_a_clip_is_cut_to_a_tenth_of_a_second(tmp_path: Path) -> None:
    def padded(request: Request, out: Path) -> None:
        speech = 0.3 * (-1.0) ** np.arange(16_000)  # every sample loud
        soundfile.write(out, np.concatenate([np.zeros(8_000), speech, np.zeros(16_000)]), 16_000)

    manifest = speak_dataset(tmp_path, {"train": ["one"]}, VOICES, padded, seed=0, info={})
    wave, _ = soundfile.read(str(read_manifest(manifest)[0].audio))
    assert len(wave) == 16_000 + 2 * 1_600 and not wave[:1_500].any() and not wave[-1_500:].any()


def test_a_synthesiser_that_writes_silence_or_nothing_is_named(tmp_path: Path) -> None:
    def silent(request: Request, out: Path) -> None:
        soundfile.write(out, np.zeros(8000), 16_000)

    with pytest.raises(ValueError, match=r"voice \S+ wrote silence for"):
        speak_dataset(tmp_path, {"train": ["one"]}, VOICES, silent, seed=0, info={})
    (tmp_path / "clips").rmdir()
    with pytest.raises(ValueError, match=r"voice \S+: audio file \S+raw\.wav not found"):
        speak_dataset(tmp_path, {"train": ["one"]}, VOICES, lambda request, out: None, seed=0, info={})


def test_registered_spoken_datasets_with_fake_engines(tmp_path: Path) -> None:
    counts = {"train": 6, "validation": 2, "test": 2}
    (tmp_path / "digits").mkdir()
    digits = read_manifest(obtain_spoken_digits(tmp_path / "digits", engines=fake_engines(), counts=counts))
    assert [u.split for u in digits].count("test") == 2
    assert all(set(u.text.split()) <= {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                                       "nine"} for u in digits)
    bible = tmp_path / "bible.jsonl"
    verses = [f"The lord said to moses, go number {'and ' * (k % 5)}see." for k in range(40)]
    bible.write_text("".join(json.dumps({"source": v.replace("number", ""), "target": "x"}) + "\n" for v in verses))
    (tmp_path / "sentences").mkdir()
    manifest = obtain_spoken_sentences(tmp_path / "sentences", engines=fake_engines(), source=lambda name: bible,
                                       counts={"train": 2, "validation": 1, "test": 1})
    sentences = read_manifest(manifest)
    assert len({u.text for u in sentences}) == 4
    assert all(u.text.startswith("the lord said to moses go") for u in sentences)
    with pytest.raises(ValueError, match=r"gives 5 short sentences, fewer than the 10 asked"):
        obtain_spoken_sentences(tmp_path / "x", engines=fake_engines(), source=lambda name: bible, counts=counts)


def deb(path: Path, files: dict[str, tuple[bytes, int]]) -> Path:
    """A minimal Debian package (ar archive) whose data.tar.xz holds ``files``: path -> (bytes, mode)."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as archive:
        for name, (content, mode) in files.items():
            member = tarfile.TarInfo("./" + name)
            member.size, member.mode = len(content), mode
            archive.addfile(member, io.BytesIO(content))
    members = [(b"debian-binary", b"2.0\n"), (b"data.tar.xz", data.getvalue())]
    raw = b"!<arch>\n"
    for name, body in members:
        raw += name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6) + b"100644".ljust(8)
        raw += str(len(body)).encode().ljust(10) + b"`\n" + body + (b"\n" if len(body) % 2 else b"")
    path.write_bytes(raw)
    return path


FAKE_PROGRAM = """#!{python}
import os, sys
import numpy as np, soundfile
arguments = sys.argv[1:]
if "{fail}":
    sys.exit("{fail}")
assert os.environ["LD_LIBRARY_PATH"].endswith("x86_64-linux-gnu"), os.environ["LD_LIBRARY_PATH"]
assert "{engine}" != "espeak-ng" or arguments[0].startswith("--path="), arguments
out = arguments[arguments.index("-w" if "-w" in arguments else "-o") + 1]
soundfile.write(out, 0.3 * np.sin(np.arange(8000) / 5), 16000)
"""


def fake_download(fail: dict[str, str]) -> synth.Callable[[str, Path], Path]:
    def download(package: str, dest: Path) -> Path:
        files: dict[str, tuple[bytes, int]] = {"usr/lib/x86_64-linux-gnu/lib" + package + ".so.1": (b"", 0o644)}
        if package in (ESPEAK, FLITE):
            script = FAKE_PROGRAM.format(python=sys.executable, engine=package, fail=fail.get(package, ""))
            files[f"usr/bin/{package}"] = (script.encode(), 0o755)
        if package == "espeak-ng-data":
            for variant in ("f1", "m3", "fast", "Mr serious"):
                files[f"usr/lib/x86_64-linux-gnu/espeak-ng-data/voices/!v/{variant}"] = (b"name x\n", 0o644)
        return deb(dest / f"{package}_1.0_amd64.deb", files)

    return download


def test_engines_come_unpacked_from_debian_packages_and_are_probed(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)  # as if neither were installed
    engines = find_engines(tmp_path / "tools", download=fake_download({}))
    assert set(engines.programs) == {ESPEAK, FLITE} and not engines.missing
    assert {v.timbre for v in engines.voices[ESPEAK]} == {"f1", "m3"}  # "fast" and the name with a space left out
    assert len(engines.voices[ESPEAK]) == 2 * len(synth.ESPEAK_ACCENTS) and len(engines.voices[FLITE]) == 5
    assert (tmp_path / "tools" / ESPEAK / "usr" / "bin" / ESPEAK).is_file()
    again = find_engines(tmp_path / "tools", download=lambda package, dest: pytest.fail("downloaded twice"))
    assert set(again.programs) == {ESPEAK, FLITE}


def test_an_engine_whose_libraries_do_not_resolve_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    loader = "error while loading shared libraries: libpulse.so.0: cannot open shared object file"
    engines = find_engines(tmp_path / "a", download=fake_download({FLITE: loader}))
    assert set(engines.programs) == {ESPEAK} and "libpulse.so.0" in engines.missing[FLITE]
    with pytest.raises(ValueError, match=r"espeak-ng does not run here: .*libpulse\.so\.0: cannot open"):
        find_engines(tmp_path / "b", download=fake_download({ESPEAK: loader}))
