"""Speech manifests: good ones read whole, each kind of bad line a one-line error that names the line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from unrolled.data.speech import ManifestError, read_manifest, write_manifest


def clip(path: Path, seconds: float, *, rate: int = 16_000, channels: int = 1, loud: bool = True) -> str:
    """Write a tone of ``seconds`` (or silence) at ``path``; return its name."""
    samples = round(rate * seconds)
    wave = 0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / rate) if loud else np.zeros(samples)
    data = np.repeat(wave[:, None], channels, axis=1) if channels > 1 else wave
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, data, rate)
    return path.name


def manifest(folder: Path, lines: list[str]) -> Path:
    path = folder / "manifest.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def good(audio: str, text: str = "three one four", **extra: str) -> str:
    return json.dumps({"audio": audio, "text": text, **extra})


def test_a_good_manifest_reads_whole_with_paths_relative_to_it(tmp_path: Path) -> None:
    clip(tmp_path / "clips" / "a.wav", 1.0)
    clip(tmp_path / "clips" / "b.flac", 0.5, rate=48_000, channels=2)
    outside = tmp_path / "elsewhere" / "c.wav"
    clip(outside, 0.2, rate=8_000)
    path = manifest(tmp_path, [good("clips/a.wav", split="train"), "", good("clips/b.flac", " nine ", split="test"),
                               good(str(outside.resolve()), "zero", voice="x")])
    utterances = read_manifest(path)
    assert [u.audio for u in utterances] == [tmp_path / "clips" / "a.wav", tmp_path / "clips" / "b.flac",
                                             outside.resolve()]
    assert [u.text for u in utterances] == ["three one four", "nine", "zero"]
    assert [u.line for u in utterances] == [1, 3, 4]
    assert [round(u.seconds, 3) for u in utterances] == [1.0, 0.5, 0.2]
    assert [u.split for u in utterances] == ["train", "test", None] and utterances[2].extra == {"voice": "x"}
    tested = read_manifest(path, split="test")
    assert [u.line for u in tested] == [3]


def test_a_nemo_manifest_reads_as_it_is(tmp_path: Path) -> None:
    """NeMo's manifests name the audio path audio_filepath and add a duration."""
    clip(tmp_path / "a.wav", 0.5)
    nemo = json.dumps({"audio_filepath": "a.wav", "duration": 0.5, "text": "two five"})
    (utterance,) = read_manifest(manifest(tmp_path, [nemo]))
    assert utterance.audio == tmp_path / "a.wav" and utterance.text == "two five"
    assert utterance.extra == {"duration": 0.5} and round(utterance.seconds, 3) == 0.5


def test_a_written_manifest_reads_back(tmp_path: Path) -> None:
    clip(tmp_path / "a.wav", 0.3)
    path = write_manifest(tmp_path / "m.jsonl", [{"audio": "a.wav", "text": "héllo", "split": "train"}])
    assert [(u.text, u.split) for u in read_manifest(path)] == [("héllo", "train")]


BAD_LINES = {
    "not JSON": ('{"audio": "a.wav", "text": ', r"line 2 is not JSON \("),
    "not an object": ('["a.wav", "one"]', r"line 2 is not a JSON object with keys audio, text"),
    "missing audio": ('{"text": "one"}', r"line 2: missing key 'audio'"),
    "missing text": ('{"audio": "a.wav"}', r"line 2: missing key 'text'"),
    "text not a string": ('{"audio": "a.wav", "text": 3}', r"line 2: 'text' must be a string, not int"),
    "empty transcript": ('{"audio": "a.wav", "text": "   "}', r"line 2: empty transcript"),
    "empty path": ('{"audio": "", "text": "one"}', r"line 2: empty audio path"),
    "missing file": ('{"audio": "gone.wav", "text": "one"}', r"line 2: audio file \S*gone\.wav not found"),
    "not audio": ('{"audio": "notes.txt", "text": "one"}', r"line 2: \S*notes\.txt is not audio that soundfile"),
    "10 ms": ('{"audio": "short.wav", "text": "one"}', r"line 2: \S*short\.wav lasts 0\.010 s, shorter than the "
                                                       r"0\.1 s minimum"),
    "10 minutes": ('{"audio": "long.wav", "text": "one"}', r"line 2: \S*long\.wav lasts 600\.0 s, longer than the "
                                                          r"30 s limit; cut it"),
    "silence": ('{"audio": "quiet.wav", "text": "one"}', r"line 2: \S*quiet\.wav is silent"),
    "no samples": ('{"audio": "empty.wav", "text": "one"}', r"line 2: \S*empty\.wav holds no samples"),
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_each_bad_line_is_one_line_naming_the_manifest_and_the_line(tmp_path: Path, case: str) -> None:
    clip(tmp_path / "a.wav", 0.5)
    clip(tmp_path / "short.wav", 0.01)
    clip(tmp_path / "long.wav", 600.0, rate=8_000)
    clip(tmp_path / "quiet.wav", 1.0, loud=False)
    clip(tmp_path / "empty.wav", 0.0)
    (tmp_path / "notes.txt").write_text("hello\n")
    line, message = BAD_LINES[case]
    path = manifest(tmp_path, [good("a.wav"), line, good("a.wav")])
    with pytest.raises(ManifestError, match=r"manifest\.jsonl " + message) as caught:
        read_manifest(path)
    assert "\n" not in str(caught.value)


def test_limits_are_configurable_and_silence_checks_can_be_skipped(tmp_path: Path) -> None:
    clip(tmp_path / "long.wav", 40.0, rate=8_000)
    clip(tmp_path / "quiet.wav", 1.0, loud=False)
    path = manifest(tmp_path, [good("long.wav"), good("quiet.wav")])
    with pytest.raises(ManifestError, match=r"line 2: .*is silent"):
        read_manifest(path, max_seconds=60.0)
    assert len(read_manifest(path, max_seconds=60.0, check_silence=False)) == 2
    with pytest.raises(ManifestError, match=r"line 1: .*longer than the 20 s limit"):
        read_manifest(path, max_seconds=20.0)


def test_a_missing_or_empty_manifest_or_split_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"manifest \S*none\.jsonl not found"):
        read_manifest(tmp_path / "none.jsonl")
    with pytest.raises(ManifestError, match=r"holds no utterances$"):
        read_manifest(manifest(tmp_path, ["", "  "]))
    clip(tmp_path / "a.wav", 0.5)
    with pytest.raises(ManifestError, match=r"holds no utterances of split 'test'"):
        read_manifest(manifest(tmp_path, [good("a.wav", split="train")]), split="test")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"audio": "a.wav", "text": "caf\xe9"}\n')
    with pytest.raises(ManifestError, match=r"is not UTF-8 text"):
        read_manifest(tmp_path / "latin1.jsonl")
