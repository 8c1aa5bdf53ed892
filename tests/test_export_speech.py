"""Speech runs exported: the front end against NumPy's FFT and torch's, the graphs against eager torch (batch 1 and
8, three lengths, with and without padding, within 1e-5), and the runtime's transcripts against the transcriber's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[export]')")
soundfile = pytest.importorskip("soundfile", reason="soundfile is not installed (pip install -e '.[audio]')")

from tests.cli_errors import one_error_line  # noqa: E402
from tests.export_runs import speech_run, without_torch  # noqa: E402
from tests.test_export_parity import BATCHES, TOLERANCE, graph_sessions, largest_difference  # noqa: E402
from unrolled import runtime  # noqa: E402
from unrolled.cli import main  # noqa: E402
from unrolled.export import export_run, load_predictor  # noqa: E402
from unrolled.features import FeatureConfig, FrontEnd, dft_power_spectrum, power_spectrum  # noqa: E402

SAMPLES = (1_700, 4_800, 9_001)  # about 0.1, 0.3 and 0.56 s at 16 kHz
DECODERS = [("ctc", {}), ("attention", {"levels": 1, "attention": "content"}), ("joint", {"levels": 1})]


class ReadOnly:
    """A session fed only the inputs its graph reads (the exporter drops those it does not)."""

    def __init__(self, session: object, names: set[str]) -> None:
        self.session, self.names = session, names

    def run(self, outputs: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(outputs, {k: v for k, v in feeds.items() if k in self.names})  # type: ignore[attr-defined]


def noise(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    generator = np.random.default_rng(seed)
    return [(0.1 * generator.standard_normal(n)).astype(np.float32) for n in lengths]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("speech")
    made = {name: speech_run(root / name, seed=3, decoder=name, **options) for name, options in DECODERS}
    return {**made, **{f"{name}-onnx": export_run(run, root / f"{name}-onnx") for name, run in made.items()}}


def test_the_dft_power_spectrum_is_numpys_fft_of_the_windowed_frames() -> None:
    config = FeatureConfig()
    waves = torch.from_numpy(np.stack(noise([4_000, 4_000], seed=1))).double()
    padded = np.pad(waves.numpy(), ((0, 0), (config.fft_size // 2,) * 2))
    window = np.zeros(config.fft_size)
    left = (config.fft_size - config.window) // 2
    window[left : left + config.window] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(config.window) / config.window)
    frames = 1 + 4_000 // config.hop
    expected = np.stack([np.abs(np.fft.rfft(padded[:, t * config.hop : t * config.hop + config.fft_size] * window,
                                            axis=-1)) ** 2 for t in range(frames)], axis=1)  # (B, T, K)
    got = dft_power_spectrum(waves, config).numpy()
    assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-9 * expected.max()
    fft = power_spectrum(waves.float(), config).double().numpy()  # torch's STFT, float32
    assert np.abs(fft - expected).max() < 1e-5 * expected.max()


FEATURE_TOLERANCE = 1e-4
"""Exported against torch's front end, on the normalised features: torch's STFT runs in float32 and errs by up to 6e-5
on a log-mel band and 1.5e-5 once normalised (measured, 80 bands, noise of 0.1); the graph's DFT, in float64, is
NumPy's FFT to 1e-9 (the test above), so the gap is torch's rounding."""


def test_the_exported_front_end_computes_the_torch_front_ends_features() -> None:
    eager = FrontEnd(FeatureConfig(stack=3, stride=3)).eval()
    exported = FrontEnd(FeatureConfig(stack=3, stride=3)).eval()
    exported.spectrum = dft_power_spectrum
    for batch in BATCHES:
        for total in SAMPLES:
            samples = torch.tensor([total] + [total * (k + 2) // (batch + 2) for k in range(batch - 1)])
            waves = torch.from_numpy(np.stack([np.pad(w, (0, total - len(w))) for w in noise(samples.tolist())]))
            warp = torch.linspace(0.9, 1.1, batch, dtype=torch.float64)
            (x, frames), (y, steps) = eager(waves, samples, warp=warp), exported(waves, samples, warp=warp)
            assert torch.equal(frames, steps) and (x - y).abs().max() < FEATURE_TOLERANCE


@pytest.mark.parametrize(("decoder", "options"), DECODERS, ids=[name for name, _ in DECODERS])
def test_encoder_and_step_graphs_match_eager_torch(tmp_path: Path, decoder: str, options: dict[str, object]) -> None:
    _, predictor = load_predictor(speech_run(tmp_path, decoder=decoder, **options))
    sessions = graph_sessions(predictor)
    encoder_session, encoder = sessions["encoder"]
    generator = torch.Generator().manual_seed(5)
    for batch in BATCHES:
        for total in SAMPLES:
            for padded in (False, True):
                samples = torch.randint(total // 3, total + 1, (batch,), generator=generator) if padded else \
                    torch.full((batch,), total)
                samples[0] = total
                waves = 0.1 * torch.randn(batch, total, generator=generator)
                waves = waves.masked_fill(torch.arange(total) >= samples.unsqueeze(1), 0.0)
                warp = 0.9 + 0.2 * torch.rand(batch, generator=generator, dtype=torch.float64)
                feeds = {"waves": waves, "samples": samples, "warp": warp}
                assert largest_difference(encoder_session, encoder, feeds) < TOLERANCE
                if "step" not in sessions:
                    continue
                step_session, step = sessions["step"]
                with torch.no_grad():
                    encoded = dict(zip([o.name for o in encoder_session.get_outputs()], encoder(*feeds.values()),
                                       strict=True))
                    start = predictor.model.start(encoded["memory"], encoded["steps"])
                weights = torch.softmax(torch.randn(start.weights.shape, generator=generator), -1) * start.mask
                state = (torch.randn(start.rnn[0].shape, generator=generator), torch.randn(start.rnn[1].shape,
                         generator=generator), torch.randn(start.context.shape, generator=generator), weights,
                         start.memory, start.keys, start.mask)
                tokens = torch.randint(0, 10, (batch,), generator=generator)
                names = ["tokens", "h", "c", "context", "weights", "memory", "keys", "mask"]
                feeds = dict(zip(names, (tokens, *state), strict=True))
                read = {i.name for i in step_session.get_inputs()}  # content attention reads no previous weights
                assert read == set(names) - ({"weights"} if options.get("attention") == "content" else set())
                assert largest_difference(ReadOnly(step_session, read), step, feeds) < TOLERANCE


@pytest.mark.parametrize("decoder", ["ctc", "attention", "joint"])
@pytest.mark.parametrize("beam", [1, 4])
def test_the_runtimes_transcripts_equal_the_transcribers(runs: dict[str, Path], decoder: str, beam: int) -> None:
    _, predictor = load_predictor(runs[decoder])
    exported = runtime.load(runs[f"{decoder}-onnx"])
    waves = noise([2_000, 5_000, 9_000, 3_300, 12_000])
    for head in ("attention", "ctc") if decoder == "joint" else (decoder,):
        options = {"beam": beam, "decoder": head, "batch_size": 3, "chunk_seconds": 0.25}
        expected, got = predictor.transcribe(waves, **options), exported.transcribe(waves, **options)
        assert [t.text for t in got] == [t.text for t in expected]
        assert len({len(t.text) for t in expected}) > 2  # transcripts of several lengths
        for mine, theirs in zip(got, expected, strict=True):
            assert mine.decoder == theirs.decoder == head
            assert (mine.score is None) == (theirs.score is None) == (beam == 1)
            assert mine.score is None or theirs.score is None or abs(mine.score - theirs.score) < 1e-4


def test_audio_files_at_other_rates_are_read_without_torch_as_the_transcriber_reads_them(
        runs: dict[str, Path], tmp_path: Path) -> None:
    from unrolled.apps.speech_data import read_clips
    from unrolled.apps.transcriber import SpeechPredictOptions

    path = tmp_path / "stereo.wav"
    left, right = noise([8_000, 8_000], seed=3)
    soundfile.write(str(path), np.stack([left, right], axis=1), 8_000)  # 1 s, 8 kHz, two channels
    _, predictor = load_predictor(runs["ctc"])
    exported = runtime.load(runs["ctc-onnx"])
    expected = predictor.predict(read_clips([str(path)]), SpeechPredictOptions(beam=3))
    got = exported.predict([str(path)], {"beam": 3})
    assert [(t.audio, t.text) for t in got] == [(t.audio, t.text) for t in expected] == [(str(path),
                                                                                        expected[0].text)]
    printed = without_torch(f"print(runtime.load({str(runs['joint-onnx'])!r}).predict([{str(path)!r}])[0].text)")
    assert printed == [load_predictor(runs["joint"])[1].predict(read_clips([str(path)]))[0].text]


def test_cli_run_prints_what_speech_predict_prints_and_bad_input_is_one_line(
        runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clips = []
    for n, wave in enumerate(noise([6_000, 11_000], seed=4)):
        clips.append(str(tmp_path / f"{n}.wav"))
        soundfile.write(clips[-1], wave, 16_000)
    out = tmp_path / "exported"
    assert main(["export", str(runs["joint"]), "--out", str(out)]) == 0
    capsys.readouterr()
    for flags in ([], ["--beam", "1", "--decoder", "ctc"]):
        assert main(["speech", "predict", str(runs["joint"]), *clips, *flags]) == 0
        expected = capsys.readouterr().out
        assert main(["run", str(out), *clips, *flags]) == 0
        assert capsys.readouterr().out == expected
    assert main(["speech", "predict", str(runs["joint"]), *clips, "--beam", "3", "--json"]) == 0
    expected_json = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["run", str(out), *clips, "--beam", "3", "--json"]) == 0
    got_json = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [{**r, "score": None} for r in got_json] == [{**r, "score": None} for r in expected_json]
    assert all(abs(a["score"] - b["score"]) < 1e-4 for a, b in zip(got_json, expected_json, strict=True))
    one_error_line(capsys, main(["run", str(out), *clips, "--lm", clips[0]]), "--lm is not in the runtime")
    one_error_line(capsys, main(["run", str(out), *clips, "--vocabulary", "digits", "--beam", "3"]),
                   "--vocabulary is not in the runtime")
    one_error_line(capsys, main(["run", str(out), *clips, "--decoder", "joint"]), "joint rescoring needs the run")
    one_error_line(capsys, main(["run", str(runs["ctc-onnx"]), *clips, "--decoder", "attention"]),
                   "this export has no attention decoder")
    one_error_line(capsys, main(["run", str(out), str(tmp_path / "none.wav")]), "none.wav not found")


def test_int8_quantises_the_encoders_lstms_and_torchscript_runs_at_other_lengths(runs: dict[str, Path],
                                                                                tmp_path: Path) -> None:
    import onnx

    folder = export_run(runs["joint"], tmp_path / "int8", quantize="int8")
    kinds = [node.op_type for node in onnx.load(str(folder / "encoder.onnx")).graph.node]
    assert "DynamicQuantizeLSTM" in kinds and "MatMulInteger" in kinds
    transcripts = runtime.load(folder).transcribe(noise([5_000, 7_000]), beam=2)
    assert len(transcripts) == 2 and all(t.score is not None for t in transcripts)
    _, predictor = load_predictor(runs["ctc"])
    traced = export_run(runs["ctc"], tmp_path / "ts", graphs="torchscript")
    with pytest.warns(DeprecationWarning, match="deprecated"):
        encoder = torch.jit.load(str(traced / "encoder.pt"))
    for total in SAMPLES:
        waves = torch.from_numpy(np.stack(noise([total, total])))
        samples = torch.tensor([total, total // 2])
        waves[1, total // 2 :] = 0
        with torch.no_grad():
            expected, steps = predictor.model(waves, samples)
            got = encoder(waves, samples, torch.ones(2, dtype=torch.float64))
        assert torch.equal(got[1], steps) and (got[0] - expected).abs().max() < TOLERANCE
