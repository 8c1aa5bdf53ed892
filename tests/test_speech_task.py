"""Speech end to end: train from a manifest, transcribe and evaluate from the CLI and Python, bad input in one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import torch

from unrolled.apps.speech import SpeechAppConfig, SpeechDataConfig, SpeechModelConfig, fit
from unrolled.apps.speech_data import SpeechData, cut_points, split_utterances
from unrolled.apps.split import new_record
from unrolled.apps.transcriber import Transcriber, character_limit, read_language_model
from unrolled.cli import main
from unrolled.data.speech import Utterance, read_manifest
from unrolled.decoding.ngram import Fusion
from unrolled.features import FeatureConfig
from unrolled.metrics import error_rates
from unrolled.models.speech import Alphabet, Recogniser, SpeechConfig
from unrolled.training import TrainConfig

PITCHES = {"a": 300.0, "b": 1200.0, "c": 2500.0}


def tone_word(word: str, generator: np.random.Generator, rate: int = 16_000) -> np.ndarray:
    """Made-up speech: each letter a 0.1 s tone of its own pitch, a space 0.1 s of quiet, a little noise."""
    time = np.arange(rate // 10) / rate
    pieces = [0.5 * np.sin(2 * np.pi * PITCHES[ch] * time) if ch != " " else np.zeros(len(time)) for ch in word]
    return (np.concatenate(pieces) + 0.01 * generator.standard_normal(len(time) * len(word))).astype(np.float32)


def write_corpus(folder: Path, words: list[str], *, copies: int, split: bool) -> Path:
    """Clips of the words by three "speakers" (noise seeds), and their manifest."""
    generator = np.random.default_rng(0)
    lines = []
    for n in range(copies):
        for word in words:
            name = f"clips/{word.replace(' ', '_')}-{n}.wav"
            (folder / "clips").mkdir(parents=True, exist_ok=True)
            soundfile.write(folder / name, tone_word(word, generator), 16_000)
            record = {"audio": name, "text": word, "speaker": f"s{n % 3}"}
            if split:
                record["split"] = ("train", "validation", "test")[0 if n < copies - 2 else n - copies + 3]
            lines.append(json.dumps(record))
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


WORDS = ["ab", "ba", "cab", "acb", "ab c"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small CTC run over tone words with the manifest's own split (trained once for the module)."""
    folder = tmp_path_factory.mktemp("speech")
    path = write_corpus(folder, WORDS, copies=6, split=True)
    torch.manual_seed(0)
    code = main(["speech", "train", str(path), "--out", str(folder / "run"), "--hidden", "32", "--layers", "1",
                 "--stack", "2", "--stride", "2", "--no-spec-augment", "--no-perturb", "--dropout", "0",
                 "--batch", "8", "--lr", "0.01", "--warmup", "0", "--max-steps", "60", "--max-epochs", "1000",
                 "--eval-every", "10", "--precision", "fp32", "--no-progress"])
    assert code == 0
    return path, folder / "run"


def test_training_from_the_cli_learns_the_words_and_eval_scores_them(trained: tuple[Path, Path],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path, run = trained
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    validation = [r for r in rows if r.get("split") == "validation"]
    assert validation[-1]["cer"] < validation[0]["cer"] and validation[-1]["cer"] <= 0.1
    capsys.readouterr()
    assert main(["speech", "eval", str(run), str(path), "--beam", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["utterances"] == len(WORDS) and report["decoder"] == "ctc"
    assert report["beam1"]["cer"] <= 0.1 and report["beam4"]["cer"] <= 0.1
    assert report["beam1"]["real_time"] > 0


def test_a_language_model_from_the_runs_transcripts_joins_the_beam(trained: tuple[Path, Path],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path, run = trained
    train_texts = [json.loads(line)["text"] for line in path.read_text().splitlines()
                   if json.loads(line)["split"] == "train"]
    assert (run / "transcripts.txt").read_text().splitlines() == train_texts
    capsys.readouterr()
    assert main(["speech", "eval", str(run), str(path), "--beam", "4", "--json", "--lm",
                 str(run / "transcripts.txt"), "--lm-weight", "0.5", "--lm-bonus", "0.5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["beam4"]["cer"] <= 0.1
    transcriber = Transcriber.load(run)
    lm = read_language_model(run / "transcripts.txt", transcriber.alphabet)
    waves = [tone_word(word, np.random.default_rng(9)) for word in WORDS]
    plain = transcriber.transcribe(waves, beam=256)
    fused = transcriber.transcribe(waves, beam=256, fusion=Fusion(lm, 0.5, 0.5))
    # the fused score adds the LM's and the bonus' terms (up to the paths each beam dropped, which a wide beam
    # makes few: test_ngram checks the exact sums with a beam that keeps every prefix)
    for p, f in zip(plain, fused, strict=True):
        if p.text == f.text:
            ids = transcriber.alphabet.encode(f.text)
            assert f.score == pytest.approx(p.score + 0.5 * lm.score(ids) + 0.5 * len(ids), abs=1e-3)
    assert any(p.text == f.text for p, f in zip(plain, fused, strict=True))


def test_transcribe_reads_any_rate_and_channel_count(trained: tuple[Path, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    _, run = trained
    generator = np.random.default_rng(5)
    wave = tone_word("cab", generator)
    import soxr

    soundfile.write(tmp_path / "low.wav", soxr.resample(wave, 16_000, 8_000), 8_000)
    soundfile.write(tmp_path / "high.flac", soxr.resample(wave, 16_000, 48_000), 48_000)
    soundfile.write(tmp_path / "stereo.wav", np.stack([wave, wave], axis=1), 16_000)
    capsys.readouterr()
    files = [str(tmp_path / name) for name in ("low.wav", "high.flac", "stereo.wav")]
    assert main(["speech", "transcribe", str(run), *files, "--beam", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t") for line in lines] == [[name, "cab"] for name in files]


def test_python_api_transcribes_and_a_long_recording_is_cut_into_chunks(trained: tuple[Path, Path]) -> None:
    _, run = trained
    transcriber = Transcriber.load(run)
    generator = np.random.default_rng(7)
    words = [tone_word(w, generator) for w in ("ab", "ba", "cab")]
    assert [t.text for t in transcriber.transcribe(words, beam=4)] == ["ab", "ba", "cab"]
    quiet = (0.01 * generator.standard_normal(6_400)).astype(np.float32)  # 0.4 s
    long = np.concatenate([quiet, words[0], quiet, words[1], quiet, words[2], quiet])  # 2.3 s
    cuts = cut_points(long, 1.0)
    assert len(cuts) == 2 and all(abs(float(long[c])) < 0.05 for c in cuts)  # each cut falls in a quiet stretch
    pieces = np.split(long, cuts)
    assert max(len(p) for p in pieces) <= 16_000
    expected = " ".join(t.text for t in transcriber.transcribe(pieces, chunk_seconds=1.0))
    assert transcriber.transcribe([long], chunk_seconds=1.0)[0].text == " ".join(expected.split())
    assert transcriber.transcribe([long], chunk_seconds=1.0)[0].text.replace(" ", "").count("ab") >= 1


def test_a_ten_minute_recording_is_transcribed_in_chunks_not_refused(trained: tuple[Path, Path]) -> None:
    _, run = trained
    generator = np.random.default_rng(3)
    long = np.concatenate([tone_word("ab ", generator)] * 2000)  # 600 s
    assert len(long) == 600 * 16_000
    cuts = cut_points(long, 20.0)
    assert 30 <= len(cuts) <= 40 and max(np.diff([0, *cuts, len(long)])) <= 20 * 16_000  # each in [15, 20] s
    transcriber = Transcriber.load(run)
    seen: list[int] = []
    decode = transcriber._decode

    def spy(batch: Any, head: str, beam: int, length_penalty: float, fusion: Any, ctc_weight: float,
            warp: Any = None, vocabulary: Any = None) -> Any:
        seen.extend(batch.samples.tolist())
        return decode(batch, head, beam, length_penalty, fusion, ctc_weight, warp, vocabulary)

    transcriber._decode = spy  # type: ignore[method-assign]
    text = transcriber.transcribe([long])[0].text
    assert len(seen) == len(cuts) + 1 and sum(seen) == len(long) and max(seen) <= 20 * 16_000
    assert text.count("ab") > 1000


def test_error_rates_are_jiwers_sums_over_the_utterances() -> None:
    scores = error_rates(["one two", "three"], ["one too", "three four"])
    assert scores["wer"] == pytest.approx(2 / 4)  # "two" substituted, "four" deleted
    assert scores["cer"] == pytest.approx((1 + 5) / (7 + 10))  # "w" for "o"; " four" deleted
    assert scores["string_accuracy"] == 0.0
    assert error_rates(["a b"], ["a b"]) == {"cer": 0.0, "wer": 0.0, "string_accuracy": 1.0}


def test_a_seeded_split_keeps_each_speaker_on_one_side(tmp_path: Path) -> None:
    path = write_corpus(tmp_path, ["ab", "ba"], copies=12, split=False)
    utterances = read_manifest(path)
    speakers = [f"s{n}" for n in range(12)]
    utterances = [Utterance(u.audio, u.text, u.seconds, u.line, {"speaker": speakers[k // 2]})
                  for k, u in enumerate(utterances)]
    record = new_record(utterances, lambda u: f"{u.line}\t{u.audio}\t{u.text}", seed=0, validation=0.25, test=0.25,
                        grouped=True)
    parts = split_utterances(utterances, record)
    sides = {name: {u.extra["speaker"] for u in part} for name, part in parts.items()}
    assert sum(len(p) for p in parts.values()) == len(utterances) and all(sides.values())
    assert not (sides["train"] & sides["validation"]) and not (sides["train"] & sides["test"])
    assert not (sides["validation"] & sides["test"])


def test_batches_are_a_function_of_seed_epoch_and_index_so_resuming_repeats_them() -> None:
    generator = np.random.default_rng(0)
    waves = [(tone_word("ab"[: 1 + n % 2], generator) * 32767).astype(np.int16) for n in range(20)]
    from unrolled.data.audio import PerturbConfig

    data = SpeechData(waves, [[1, 2]] * 20, batch_size=4, seed=3, perturbation=PerturbConfig(), bucket=2)
    whole = list(data.batches(1, 0))
    tail = list(data.batches(1, 3))
    assert len(whole) == 5 and len(tail) == 2
    for a, b in zip(whole[3:], tail, strict=True):
        assert torch.equal(a.waves, b.waves) and torch.equal(a.samples, b.samples)
    other = list(data.batches(2, 0))
    assert not all(torch.equal(a.samples, b.samples) for a, b in zip(whole, other, strict=True))


def speller_config(train: TrainConfig) -> SpeechAppConfig:
    """A small attention recogniser, unperturbed, batches of 4."""
    return SpeechAppConfig(SpeechDataConfig(batch_size=4, perturb=False),
                           SpeechModelConfig(hidden=16, decoder="attention", decoder_hidden=16, spec_augment=False),
                           train)


def test_an_attention_run_decodes_with_attention_and_refuses_ctc(tmp_path: Path) -> None:
    path = write_corpus(tmp_path, ["ab", "ba"], copies=5, split=True)
    utterances = read_manifest(path)
    train = TrainConfig(max_steps=2, eval_every=2, seed=0, progress=False)
    fit(speller_config(train), tmp_path / "run", utterances=utterances)
    transcriber = Transcriber.load(tmp_path / "run")
    assert transcriber.decoders == ("attention",)
    outputs = transcriber.transcribe([tone_word("ab", np.random.default_rng(0))], beam=2)
    assert outputs[0].decoder == "attention" and outputs[0].score is not None
    with pytest.raises(ValueError, match=r"this run has no ctc decoder \(it was trained with --decoder attention\)"):
        transcriber.transcribe([tone_word("ab", np.random.default_rng(0))], decoder="ctc")
    saved = json.loads((tmp_path / "run" / "last" / "config.json").read_text())
    assert saved["alphabet"] == ["a", "b"] and saved["split"] is None


def test_a_ctc_run_leaves_out_clips_spoken_too_fast_for_its_steps(tmp_path: Path) -> None:
    alphabet = Alphabet.build(["ab"])
    config = SpeechConfig(vocabulary=len(alphabet), features=FeatureConfig(stack=3, stride=2),
                          levels=3)  # 50 / 8 steps a second
    from unrolled.apps.speech_data import encode_utterances

    slow = Utterance(tmp_path / "a.wav", "ab", 1.0, 1)
    fast = Utterance(tmp_path / "b.wav", "ab" * 10, 1.0, 2)
    kept, targets = encode_utterances([slow, fast], alphabet, config)
    assert kept == [0] and targets == [[1, 2]]
    assert Recogniser(config).config.encoder_steps(torch.tensor(16_000)) == 7
    exact = Utterance(tmp_path / "c.wav", "abababa", 1.0, 3)  # 7 characters in 7 steps: fits only unperturbed
    assert encode_utterances([exact], alphabet, config)[0] == [0]
    assert encode_utterances([exact], alphabet, config, fastest=1.1)[0] == []  # sped up by 1.1 it gets 6 steps


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def test_bad_input_is_one_line_from_the_cli(trained: tuple[Path, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path, run = trained
    (tmp_path / "notes.txt").write_text("hello\n")
    soundfile.write(tmp_path / "quiet.wav", np.zeros(16_000), 16_000)
    soundfile.write(tmp_path / "short.wav", 0.3 * np.ones(160), 16_000)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"audio": "quiet.wav", "text": "a"}) + "\n" + json.dumps({"text": "a"}) + "\n")
    cases = [
        (["speech", "transcribe", str(run), str(tmp_path / "gone.wav")], r"gone\.wav not found"),
        (["speech", "transcribe", str(run), str(tmp_path / "notes.txt")], r"notes\.txt is not audio"),
        (["speech", "transcribe", str(run), str(tmp_path / "quiet.wav")], r"quiet\.wav is silent"),
        (["speech", "transcribe", str(run), str(tmp_path / "short.wav")], r"short\.wav lasts 0\.010 s"),
        (["speech", "transcribe", str(tmp_path / "norun"), str(tmp_path / "quiet.wav")], r"norun"),
        (["speech", "train", str(bad), "--out", str(tmp_path / "r")], r"bad\.jsonl line 1: \S*quiet\.wav is silent"),
        (["speech", "eval", str(run), str(bad)], r"bad\.jsonl line 1"),
        (["speech", "train", "--out", str(tmp_path / "r")], r"no data: give a JSON-lines manifest or --dataset"),
        (["speech", "transcribe", str(run), str(tmp_path / "quiet.wav"), "--decoder", "attention"], r"silent"),
        (["speech", "eval", str(run), str(path), "--beam", "4", "--lm", str(tmp_path / "none.txt")],
         r"cannot read the language model's text \S*none\.txt"),
        (["speech", "eval", str(run), str(path), "--beam", "4", "--lm", str(tmp_path / "notes.txt")],
         r"notes\.txt' has no line the recogniser can spell \(1 hold"),
        (["speech", "eval", str(run), str(path), "--beam", "1", "--lm", str(run / "transcripts.txt")],
         r"--lm joins the beam"),
        (["speech", "eval", str(run), str(path), "--lm", str(run / "transcripts.txt"), "--lm-weight", "-1"],
         r"--lm-weight must be at least 0, got -1"),
        (["speech", "train", str(path), "--out", str(tmp_path / "r"), "--speeds", "0.9", "3"],
         r"a speed factor must lie in \[0\.5, 2\], got 3"),
        (["speech", "train", str(path), "--out", str(tmp_path / "r"), "--speeds", "1.2", "--no-perturb"],
         r"--speeds sets the speed perturbation, which --no-perturb turns off"),
        (["speech", "eval", str(run), str(path), "--ctc-weight", "0.5"],
         r"--ctc-weight weighs CTC in joint decoding; give --decoder joint"),
        (["speech", "eval", str(run), str(path), "--warps", "3"], r"a mel warp factor must lie in \[0\.5, 2\]"),
        (["speech", "transcribe", str(run), str(run.parent / "clips" / "ab-0.wav"), "--one-voice"],
         r"--one-voice shares the warp search's choice"),
        (["speech", "eval", str(run), str(path), "--warp-by", "speaker"],
         r"a warp shared by each speaker needs a warp search of two factors or more"),
        (["speech", "eval", str(run), str(path), "--decoder", "joint"],
         r"this run has no joint decoder \(it was trained with --decoder ctc\); use ctc"),
        (["speech", "eval", str(run), str(path), "--warps", "1", "--warp-search"],
         r"--warp-search and --warps each ask for the warp search: give one of them"),
    ]
    for args, message in cases:
        code, err = run_cli(args, capsys)
        assert code == 2, args
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert pytest.importorskip("re").search(message, err), (message, err)
    bad.write_text(json.dumps({"audio": "short.wav", "text": "a"}) + "\n" + json.dumps({"text": "a"}) + "\n")
    code, err = run_cli(["speech", "train", str(bad), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "line 1" in err and "shorter than the 0.1 s minimum" in err
    bad.write_text(json.dumps({"audio": str(run.parent / "clips" / "ab-0.wav"), "text": "ab"}) + "\n"
                   + json.dumps({"text": "a"}) + "\n")
    code, err = run_cli(["speech", "train", str(bad), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "bad.jsonl line 2: missing key 'audio'" in err


def train_flags(*extra: str) -> SpeechAppConfig:
    """The configuration ``speech train`` reads from these flags."""
    from unrolled.cli import build_parser
    from unrolled.options import apply_flags

    return apply_flags(SpeechAppConfig(), build_parser().parse_args(["speech", "train", "m.jsonl", "--out", "r",
                                                                     *extra]))


def test_speeds_from_the_cli_set_the_speed_perturbation() -> None:
    from unrolled.data.audio import PerturbConfig

    def config(*extra: str) -> PerturbConfig | None:
        return train_flags(*extra).data.perturbation()

    assert config() == PerturbConfig()
    assert config("--no-perturb") is None
    chosen = config("--speeds", "0.8", "1", "1.25")
    assert chosen is not None and chosen.speeds == (0.8, 1.0, 1.25)
    assert chosen.gain_db == PerturbConfig().gain_db and chosen.noise == PerturbConfig().noise


def test_band_warp_and_pitch_shift_from_the_cli_reach_spec_augment() -> None:
    from unrolled.features import SpecAugmentConfig

    def augment(*extra: str) -> SpecAugmentConfig | None:
        return train_flags(*extra).model.recogniser(vocabulary=2).spec_augment

    assert augment() == SpecAugmentConfig(band_warp=0.15, pitch_shift=0.0)
    assert augment("--pitch-shift", "8", "--band-warp", "0.1") == SpecAugmentConfig(band_warp=0.1, pitch_shift=8.0)
    assert augment("--pitch-shift", "8", "--no-spec-augment") is None


def test_eval_by_a_manifest_key_scores_each_group_as_evaluating_it_alone(trained: tuple[Path, Path],
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    path, run = trained
    capsys.readouterr()
    assert main(["speech", "eval", str(run), str(path), "--beam", "3", "--split", "all", "--by", "split",
                 "--json"]) == 0
    grouped = json.loads(capsys.readouterr().out)
    for beam in ("beam1", "beam3"):
        groups = grouped[beam]["by"]
        assert sorted(groups) == ["test", "train", "validation"]
        assert sum(g["utterances"] for g in groups.values()) == grouped["utterances"]
    for part in ("train", "test"):
        assert main(["speech", "eval", str(run), str(path), "--beam", "3", "--split", part, "--json"]) == 0
        alone = json.loads(capsys.readouterr().out)
        for beam in ("beam1", "beam3"):
            mine = grouped[beam]["by"][part]
            assert mine["utterances"] == alone["utterances"]
            assert mine["cer"] == pytest.approx(alone[beam]["cer"]) and mine["wer"] == pytest.approx(alone[beam]["wer"])
    assert main(["speech", "eval", str(run), str(path), "--beam", "1", "--by", "colour"]) == 0
    printed = capsys.readouterr().out
    assert "by colour" in printed and printed.splitlines()[-1].split()[:2] == ["-", str(grouped["beam1"]["by"][
        "test"]["utterances"])]


def ctc_confidence(transcriber: Transcriber, wave: np.ndarray, alpha: float) -> tuple[float, int]:
    """c(alpha) of one clip, alone: the mean over its encoder steps of the best CTC log-probability; and the steps."""
    waves = torch.from_numpy(wave)[None]
    with torch.no_grad():
        log_probs, steps = transcriber.model(waves, torch.tensor([len(wave)]), warp=torch.tensor([alpha]))
    return float(log_probs[0, : int(steps[0])].max(dim=-1).values.mean()), int(steps[0])


def test_warp_search_decodes_each_clip_at_its_most_confident_factor(trained: tuple[Path, Path],
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _, run = trained
    transcriber = Transcriber.load(run)
    generator = np.random.default_rng(11)
    waves = [tone_word(w, generator) for w in ("ab", "cab", "ba c", "acb")]
    grid = (0.7, 1.0, 1.4)
    assert [t.warp for t in transcriber.transcribe(waves)] == [1.0] * 4
    at = {alpha: transcriber.transcribe(waves, warps=(alpha,), beam=3) for alpha in grid}
    assert all(t.warp == alpha for alpha in grid for t in at[alpha])
    searched = transcriber.transcribe(waves, warps=grid, beam=3, batch_size=3)
    alone = [{alpha: ctc_confidence(transcriber, wave, alpha) for alpha in grid} for wave in waves]
    confidences = [{alpha: c for alpha, (c, _) in row.items()} for row in alone]
    for n, (found, scores) in enumerate(zip(searched, confidences, strict=True)):
        best = max(grid, key=lambda a: (scores[a], -abs(np.log(a))))
        # The two scores come from batches of other sizes: float32 sums in another order (at 1 thread they differed
        # by 2.5e-6 relative), so they agree to float32's accumulated rounding, not to 1e-6.
        assert found.warp == best and found.text == at[best][n].text
        assert found.score == pytest.approx(at[best][n].score, rel=1e-5)
    assert all(len({round(s[a], 6) for a in grid}) == len(grid) for s in confidences)  # a real choice each time
    shared = transcriber.transcribe(waves, warps=grid, groups=["x", "y", "x", "y"])
    for members in ([0, 2], [1, 3]):  # a group's factor: the best confidence per step over all its clips' steps
        pooled = {a: sum(alone[n][a][0] * alone[n][a][1] for n in members) for a in grid}
        best = max(grid, key=lambda a: (pooled[a], -abs(np.log(a))))
        assert [shared[n].warp for n in members] == [best, best]
        assert [shared[n].text for n in members] == [at[best][n].text for n in members]
    report = transcriber.score(read_manifest(trained[0])[:6], beams=(1,), warps=grid)
    assert sum(report["beam1"]["warps"].values()) == 6 and set(report["beam1"]["warps"]) == {"0.7", "1", "1.4"}
    for bad in ((), (0.3,), (1.0, 2.5)):
        with pytest.raises(ValueError, match="warp"):
            transcriber.transcribe(waves, warps=bad)
    files = []
    for n, wave in enumerate(waves):
        soundfile.write(trained[0].parent / f"warp{n}.wav", wave, 16_000)
        files.append(str(trained[0].parent / f"warp{n}.wav"))
    for flags, expected in (([], searched), (["--one-voice"], transcriber.transcribe(waves, warps=grid, beam=3,
                                                                                    groups=[0] * 4))):
        assert main(["speech", "transcribe", str(run), *files, "--warps", "0.7", "1", "1.4", "--beam", "3",
                     "--json", *flags]) == 0
        printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(p["text"], p["warp"]) for p in printed] == [(t.text, t.warp) for t in expected]
    assert len({t.warp for t in expected}) == 1
    with pytest.raises(ValueError, match="3 group labels for 4 waveforms"):
        transcriber.transcribe(waves, warps=grid, groups=["x", "y", "x"])


def test_pick_warps_takes_each_groups_best_pooled_factor_and_breaks_ties_towards_one() -> None:
    from unrolled.apps.transcriber import pick_warps

    grid = (0.8, 1.0, 1.25)
    scores = torch.tensor([[-0.5, -0.6, -0.9], [-0.9, -0.8, -0.1], [-0.2, -0.2, -0.2], [-0.3, -0.2, -0.3]],
                          dtype=torch.float64)
    steps = torch.tensor([10.0, 30.0, 5.0, 5.0], dtype=torch.float64)
    assert pick_warps(scores, steps, grid, [0, 1, 2, 3]) == [0.8, 1.25, 1.0, 1.0]
    # rows 0 and 1 pooled: 0.8 -> -5 - 27 = -32, 1.0 -> -6 - 24 = -30, 1.25 -> -9 - 3 = -12
    assert pick_warps(scores, steps, grid, ["a", "a", "b", "b"]) == [1.25, 1.25, 1.0, 1.0]
    assert pick_warps(scores[[0]][:, [2, 0]], steps[[0]], (1.25, 0.8), [0]) == [0.8]  # the grid in any order
    tie = torch.tensor([[-0.4, -0.4]], dtype=torch.float64)
    assert pick_warps(tie, steps[:1], (1.25, 0.9), [0]) == [0.9]  # the factor nearer 1
    # steps that depend on the factor (a speller's): pooled per step, (-5 - 0.1) / 11 against (-0.4 - 9) / 11
    two = torch.tensor([[-0.5, -0.4], [-0.1, -0.9]], dtype=torch.float64)
    counts = torch.tensor([[10.0, 1.0], [1.0, 10.0]], dtype=torch.float64)
    assert pick_warps(two, counts, (0.9, 1.1), ["g", "g"]) == [0.9, 0.9]
    assert pick_warps(two, counts, (0.9, 1.1), [0, 1]) == [1.1, 0.9]
    with pytest.raises(ValueError, match="not 2 x 3"):
        pick_warps(two, counts, grid, [0, 1])


def test_warp_search_of_a_speller_scores_its_greedy_transcript_per_character(tmp_path: Path) -> None:
    path = write_corpus(tmp_path, ["ab", "ba"], copies=5, split=True)
    train = TrainConfig(max_steps=3, eval_every=3, seed=0, progress=False)
    fit(speller_config(train), tmp_path / "run", utterances=read_manifest(path))
    transcriber = Transcriber.load(tmp_path / "run")
    model = transcriber.model
    generator = np.random.default_rng(2)
    waves = [tone_word(w, generator) for w in ("ab", "ba", "bab")]
    from unrolled.data.speech import SpeechBatch

    batch = SpeechBatch.make(waves, [[] for _ in waves])
    for alpha in (0.8, 1.0, 1.25):
        found, counts = transcriber.confidence(batch, torch.full((3,), alpha))
        for b, wave in enumerate(waves):  # a loop over the speller's steps, one clip alone
            with torch.no_grad():
                log_probs, state = model.prime(torch.from_numpy(wave)[None], torch.tensor([len(wave)]),
                                               warp=torch.tensor([alpha]))
                total, count = 0.0, 0
                for _ in range(character_limit(len(wave))):
                    token = int(log_probs[0].argmax())
                    total, count = total + float(log_probs[0, token]), count + 1
                    if token == 0:
                        break
                    log_probs, state = model.step(torch.tensor([token]), state)
            assert float(found[b]) == pytest.approx(total / count, abs=1e-4) and int(counts[b]) == count
    searched = transcriber.transcribe(waves, warps=(0.8, 1.0, 1.25))
    assert all(t.warp in (0.8, 1.0, 1.25) for t in searched)


def test_a_run_repeats_from_its_saved_configuration_and_predict_and_eval_print_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_corpus(tmp_path, ["ab", "ba"], copies=5, split=True)
    first, second = tmp_path / "first", tmp_path / "second"
    tiny = ["--hidden", "8", "--decoder-hidden", "8", "--stack", "2", "--stride", "2", "--max-steps", "2",
            "--no-progress", "--device", "cpu", "--precision", "fp32"]
    assert main(["speech", "train", str(path), "--out", str(first), *tiny, "--decoder", "joint", "--batch", "4"]) == 0
    saved = first / "last" / "config.json"
    assert json.loads(saved.read_text())["config"]["model"]["decoder"] == "joint"
    assert main(["speech", "train", "--config", str(saved), "--out", str(second)]) == 0
    again = json.loads((second / "last" / "config.json").read_text())
    assert again["config"] == json.loads(saved.read_text())["config"] and again["config"]["data"]["batch_size"] == 4
    weights = [(run / "last" / "model.safetensors").read_bytes() for run in (first, second)]
    assert weights[0] == weights[1]  # same configuration, same seed: the same model
    assert main(["speech", "train", "--out", str(second), "--resume", "--max-steps", "3"]) == 0
    assert json.loads((second / "last" / "config.json").read_text())["step"] == 3
    capsys.readouterr()
    clip = str(tmp_path / "clips" / "ab-0.wav")
    assert main(["speech", "predict", str(second), clip, "--json", "--beam", "2", "--decoder", "joint"]) == 0
    [printed] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed["audio"] == clip and printed["decoder"] == "joint" and set(printed) == {
        "audio", "text", "score", "decoder", "warp"}
    assert main(["speech", "eval", str(second), str(path), "--json", "--beam", "2", "--split", "all"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["utterances"] == 10 and report["decoder"] == "attention" and set(report["beam2"]) >= {"cer", "wer"}


def test_the_channel_flags_reach_the_perturbation_and_fmax_the_front_end() -> None:
    chosen = train_flags("--telephone", "1", "--reverb", "0.25", "--microphone", "0.5", "--fmax", "4000")
    perturbation = chosen.data.perturbation()
    assert perturbation is not None and (perturbation.telephone, perturbation.reverb,
                                         perturbation.microphone) == (1.0, 0.25, 0.5)
    assert chosen.model.recogniser(vocabulary=2).features.fmax == 4000.0
    with pytest.raises(ValueError, match=r"^--telephone is a share of the utterances, in \[0, 1\]; got 1\.5$"):
        train_flags("--telephone", "1.5")
    with pytest.raises(ValueError, match=r"^--reverb perturbs the training audio, which --no-perturb turns off"):
        train_flags("--reverb", "0.5", "--no-perturb").data.perturbation()


def test_a_vocabulary_keeps_ctcs_beam_to_its_words(trained: tuple[Path, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _, run = trained
    transcriber = Transcriber.load(run)
    waves = [tone_word(word, np.random.default_rng(11)) for word in ("acb", "cab", "ab c")]
    assert [t.text for t in transcriber.transcribe(waves, beam=8)] == ["acb", "cab", "ab c"]
    allowed = transcriber.word_constraint(["cab", "ab"], "ctc")
    constrained = [t.text for t in transcriber.transcribe(waves, beam=8, vocabulary=allowed)]
    assert constrained[1] == "cab"  # already allowed: the vocabulary leaves it
    assert all(text and set(text.split()) <= {"cab", "ab"} for text in constrained)  # "acb" and "c" are not words
    (tmp_path / "words.txt").write_text("cab\nab\n")
    soundfile.write(tmp_path / "acb.wav", waves[0], 16_000)
    capsys.readouterr()
    assert main(["speech", "transcribe", str(run), str(tmp_path / "acb.wav"), "--vocabulary",
                 str(tmp_path / "words.txt")]) == 0
    assert capsys.readouterr().out.split("\t")[1].strip() == constrained[0]
    code, err = run_cli(["speech", "transcribe", str(run), str(tmp_path / "acb.wav"), "--vocabulary", "digits"],
                        capsys)
    assert code == 2 and "the vocabulary's word 'zero' has characters this run's alphabet lacks" in err
    code, err = run_cli(["speech", "transcribe", str(run), str(tmp_path / "acb.wav"), "--vocabulary", "digits",
                         "--beam", "1"], capsys)
    assert code == 2 and "--vocabulary restricts the beam search; give --beam 2 or more" in err
