"""Reading audio at any rate and channel count, and the waveform perturbations, against known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from unrolled.data.audio import (
    AudioError,
    PerturbConfig,
    add_noise,
    audio_info,
    change_speed,
    change_volume,
    coloured_noise,
    is_silent,
    perturb,
    read_audio,
    trim_silence,
    write_wav,
)


def tone(hz: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(round(rate * seconds)) / rate)).astype(np.float32)


def peak_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize(("rate", "subtype", "suffix"), [(8_000, "PCM_16", ".wav"), (48_000, "PCM_24", ".flac"),
                                                         (22_050, "FLOAT", ".wav"), (16_000, "PCM_16", ".flac")])
def test_any_rate_becomes_16_khz_with_the_tone_where_it_was(tmp_path: Path, rate: int, subtype: str,
                                                            suffix: str) -> None:
    path = tmp_path / f"tone{suffix}"
    soundfile.write(path, tone(1000.0, rate, 1.0), rate, subtype=subtype)
    wave = read_audio(path)
    assert wave.dtype == np.float32 and abs(len(wave) - 16_000) <= 1
    exact = tone(1000.0, 16_000, 1.0)  # the analytic answer at the new rate
    middle = slice(800, 15_200)  # away from the resampler's edges
    np.testing.assert_allclose(wave[middle], exact[middle], atol=5e-3)
    assert audio_info(path).rate == rate


def test_what_lies_above_the_new_nyquist_frequency_is_removed_not_folded(tmp_path: Path) -> None:
    path = tmp_path / "high.wav"
    soundfile.write(path, tone(12_000.0, 48_000, 1.0), 48_000)
    wave = read_audio(path)
    assert float(np.sqrt(np.mean(wave**2))) < 1e-3  # folded, it would be a 4 kHz tone of RMS 0.35


def test_channels_are_mixed_down_to_their_mean(tmp_path: Path) -> None:
    left, right = tone(440.0, 16_000, 0.5), tone(660.0, 16_000, 0.5, amplitude=0.25)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 16_000, subtype="FLOAT")
    assert audio_info(path).channels == 2
    np.testing.assert_allclose(read_audio(path), (left + right) / 2, atol=1e-7)
    soundfile.write(path, np.stack([left, -left], axis=1), 16_000, subtype="FLOAT")
    assert is_silent(read_audio(path))


def test_bad_files_give_one_line_naming_them(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"audio file .*missing\.wav not found"):
        read_audio(tmp_path / "missing.wav")
    text = tmp_path / "notes.wav"
    text.write_text("not a sound\n")
    with pytest.raises(AudioError, match=r"notes\.wav is not audio that soundfile can read \(Format not recognised"):
        read_audio(text)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), 16_000)
    with pytest.raises(AudioError, match=r"empty\.wav holds no samples"):
        read_audio(empty)


def test_silence_is_below_sixty_decibels_of_full_scale() -> None:
    assert is_silent(np.zeros(100, dtype=np.float32)) and is_silent(np.full(100, 9e-4, dtype=np.float32))
    assert not is_silent(np.full(100, 2e-3, dtype=np.float32)) and is_silent(np.zeros(0, dtype=np.float32))


def test_trimming_keeps_the_margin_around_the_loud_part() -> None:
    wave = np.zeros(10_000, dtype=np.float32)
    wave[3_000:5_000] = tone(500.0, 16_000, 0.125)
    wave[6_000] = 0.01  # a click above -60 dB is kept with its margin
    trimmed = trim_silence(wave, margin=1_000)
    first = int(np.flatnonzero(np.abs(wave) >= 1e-3)[0])
    assert len(trimmed) == 6_001 + 1_000 - (first - 1_000)
    assert np.array_equal(trimmed, wave[first - 1_000 : 7_001])
    assert np.array_equal(trim_silence(wave, margin=20_000), wave)  # the margin never reaches past the ends
    silent = np.zeros(50, dtype=np.float32)
    assert trim_silence(silent, margin=0) is silent


def test_wav_round_trip_is_16_bit(tmp_path: Path) -> None:
    wave = tone(300.0, 16_000, 0.25)
    wave[0] = 1.5  # clipped to full scale
    path = write_wav(tmp_path / "out.wav", wave)
    info = soundfile.info(str(path))
    assert (info.samplerate, info.channels, info.subtype) == (16_000, 1, "PCM_16")
    back = read_audio(path)
    assert abs(back[0] - 1.0) < 1e-4
    np.testing.assert_allclose(back[1:], wave[1:], atol=1 / 2**15)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_length_and_pitch_by_the_factor(factor: float) -> None:
    wave = tone(500.0, 16_000, 1.0)
    fast = change_speed(wave, factor)
    assert abs(len(fast) - 16_000 / factor) <= 1
    assert abs(peak_hz(fast, 16_000) - 500.0 * factor) < 2.0


def test_volume_scales_by_the_gain_in_decibels() -> None:
    wave = tone(500.0, 16_000, 0.5)
    louder = change_volume(wave, 6.0)
    assert louder.dtype == np.float32
    assert abs(20 * np.log10(np.abs(louder).max() / np.abs(wave).max()) - 6.0) < 1e-4


@pytest.mark.parametrize("snr", [0.0, 10.0, 30.0])
def test_noise_is_added_at_the_asked_signal_to_noise_ratio(snr: float) -> None:
    wave = tone(500.0, 16_000, 1.0)
    noise = coloured_noise(len(wave), 1.0, np.random.default_rng(0))
    noisy = add_noise(wave, snr, noise)
    added = noisy.astype(np.float64) - wave
    measured = 10 * np.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean(added**2))
    assert abs(measured - snr) < 1e-3
    silence = np.zeros(100, dtype=np.float32)
    assert not add_noise(silence, snr, noise).any()


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_noise_colour_is_the_slope_of_its_power_spectrum(beta: float) -> None:
    noise = coloured_noise(2**16, beta, np.random.default_rng(1))
    assert abs(float(np.mean(noise.astype(np.float64) ** 2)) - 1.0) < 1e-4
    power = np.abs(np.fft.rfft(noise)) ** 2
    frequency = np.fft.rfftfreq(len(noise))
    keep = (frequency > 1e-3) & (frequency < 0.4)
    slope = np.polyfit(np.log(frequency[keep]), np.log(power[keep]), 1)[0]
    assert abs(slope + beta) < 0.1


def test_perturb_is_seeded_and_draws_from_the_configured_ranges() -> None:
    wave = tone(500.0, 16_000, 1.0)
    config = PerturbConfig(speeds=(0.9, 1.1), gain_db=(-3.0, 3.0), noise=0.0)
    first = perturb(wave, config, np.random.default_rng(4))
    assert np.array_equal(first, perturb(wave, config, np.random.default_rng(4)))
    lengths, peaks = set(), []
    for seed in range(20):
        out = perturb(wave, config, np.random.default_rng(seed))
        lengths.add(len(out))
        peaks.append(20 * np.log10(np.abs(out).max() / 0.5))
    assert lengths == {round(16_000 / 0.9), round(16_000 / 1.1)}
    assert min(peaks) > -3.2 and max(peaks) < 3.2
    noisy = perturb(wave, PerturbConfig(speeds=(1.0,), gain_db=(0.0, 0.0), noise=1.0, snr_db=(20.0, 20.0)),
                    np.random.default_rng(0))
    residual = noisy.astype(np.float64) - wave
    assert abs(10 * np.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean(residual**2)) - 20.0) < 1e-3
