"""The speech front end against librosa (an independent implementation) and against loops written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unrolled.data.audio import change_speed
from unrolled.features import (
    LOG_FLOOR,
    FeatureConfig,
    FrontEnd,
    SpecAugmentConfig,
    mel_filterbank,
    normalise,
    power_spectrum,
    shift_pitch,
    spec_augment,
    stack_frames,
    warp_bands,
)

librosa = pytest.importorskip("librosa")


def noise(samples: int, seed: int = 0) -> np.ndarray:
    """float32 white noise with a slow chirp on top: energy in every band, changing over time."""
    generator = np.random.default_rng(seed)
    time = np.arange(samples) / 16_000
    chirp = 0.5 * np.sin(2 * np.pi * (200 + 1500 * time) * time)
    return (0.1 * generator.standard_normal(samples) + chirp).astype(np.float32)


@pytest.mark.parametrize(("rate", "fft_size", "bands", "fmin", "fmax"),
                         [(16_000, 512, 80, 20.0, 8000.0), (8_000, 256, 40, 0.0, 4000.0),
                          (16_000, 1024, 64, 100.0, 7000.0)])
def test_filterbank_is_librosas_htk_bank(rate: int, fft_size: int, bands: int, fmin: float, fmax: float) -> None:
    ours = mel_filterbank(rate=rate, fft_size=fft_size, bands=bands, fmin=fmin, fmax=fmax).numpy()
    theirs = librosa.filters.mel(sr=rate, n_fft=fft_size, n_mels=bands, fmin=fmin, fmax=fmax, htk=True, norm=None,
                                 dtype=np.float64)
    assert ours.shape == (bands, fft_size // 2 + 1)
    np.testing.assert_allclose(ours, theirs, atol=1e-10)
    assert (ours.max(axis=1) > 0).all()  # no empty band


def test_a_tone_lights_the_band_around_its_frequency() -> None:
    bank = mel_filterbank(rate=16_000, fft_size=512, bands=80, fmin=20.0, fmax=8000.0)
    front = FrontEnd()
    for hz in (250.0, 1000.0, 4000.0):
        tone = torch.sin(2 * torch.pi * hz * torch.arange(16_000) / 16_000)[None]
        logs, _ = front.log_mel(tone, torch.tensor([16_000]))
        loudest = int(logs[0, 50].argmax())
        bin_hz = torch.arange(257) * 16_000 / 512
        band_centre = float((bank[loudest] * bin_hz).sum() / bank[loudest].sum())
        assert abs(band_centre - hz) < 0.1 * hz


def test_log_mel_is_librosas_melspectrogram() -> None:
    wave = noise(16_000 + 123)
    front = FrontEnd()
    ours, frames = front.log_mel(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
    mel = librosa.feature.melspectrogram(y=wave.astype(np.float64), sr=16_000, n_fft=512, hop_length=160,
                                         win_length=400, window="hann", center=True, pad_mode="constant", power=2.0,
                                         n_mels=80, fmin=20.0, fmax=8000.0, htk=True, norm=None)
    theirs = np.log(mel.T + LOG_FLOOR)  # (T, M)
    assert int(frames[0]) == theirs.shape[0] == 1 + len(wave) // 160
    np.testing.assert_allclose(ours[0].numpy(), theirs, atol=2e-3)


def test_features_of_an_utterance_are_the_same_alone_and_in_a_padded_batch() -> None:
    waves = [noise(8_000, seed=1), noise(12_345, seed=2), noise(3_210, seed=3)]
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(3, int(lengths.max()))
    for b, wave in enumerate(waves):
        batch[b, : len(wave)] = torch.from_numpy(wave)
    front = FrontEnd(FeatureConfig(stack=3, stride=2))
    together, together_lengths = front(batch, lengths)
    for b, wave in enumerate(waves):
        alone, alone_lengths = front(torch.from_numpy(wave)[None], lengths[b : b + 1])
        assert int(alone_lengths[0]) == int(together_lengths[b])
        torch.testing.assert_close(together[b, : int(alone_lengths[0])], alone[0], atol=1e-4, rtol=1e-4)
        assert (together[b, int(alone_lengths[0]) :] == 0).all()


def test_normalised_bands_have_mean_zero_and_deviation_one_over_real_frames() -> None:
    logs = torch.randn(2, 50, 7, dtype=torch.float64) * 3 + 5
    lengths = torch.tensor([50, 20])
    z = normalise(logs, lengths)
    for b, frames in enumerate(lengths.tolist()):
        real = z[b, :frames]
        torch.testing.assert_close(real.mean(dim=0), torch.zeros(7, dtype=torch.float64), atol=1e-9, rtol=0)
        torch.testing.assert_close(real.std(dim=0, unbiased=False), torch.ones(7, dtype=torch.float64), atol=1e-4,
                                   rtol=0)
        assert (z[b, frames:] == 0).all()


def test_silence_gives_zeros_and_loudness_does_not_matter() -> None:
    front = FrontEnd()
    silent, _ = front(torch.zeros(1, 4_000), torch.tensor([4_000]))
    assert torch.isfinite(silent).all() and float(silent.abs().max()) < 1e-6
    wave = torch.from_numpy(noise(8_000))[None]
    quiet, _ = front(0.25 * wave, torch.tensor([8_000]))
    loud, _ = front(wave, torch.tensor([8_000]))
    torch.testing.assert_close(quiet, loud, atol=5e-3, rtol=0)  # the floor: 1e-6 against energies of 1e-3 and up


def test_stacking_matches_a_loop() -> None:
    features = torch.randn(2, 11, 4)
    lengths = torch.tensor([11, 7])
    stacked, out_lengths = stack_frames(features, lengths, stack=3, stride=2)
    assert out_lengths.tolist() == [6, 4] and stacked.shape == (2, 6, 12)
    for b, frames in enumerate(lengths.tolist()):
        for t in range(int(out_lengths[b])):
            expected = torch.cat([features[b, min(2 * t + j, frames - 1)] for j in range(3)])
            assert torch.equal(stacked[b, t], expected)
        assert (stacked[b, int(out_lengths[b]) :] == 0).all()
    same, same_lengths = stack_frames(features, lengths, stack=1, stride=1)
    assert same is features and same_lengths is lengths


def test_front_end_sizes_and_frame_counts() -> None:
    config = FeatureConfig(stack=4, stride=3)
    assert (config.window, config.hop, config.fft_size, config.size) == (400, 160, 512, 320)
    front = FrontEnd(config)
    out, lengths = front(torch.randn(2, 16_000), torch.tensor([16_000, 160]))
    assert out.shape == (2, 34, 320) and lengths.tolist() == [34, 1]  # ceil(101 / 3), ceil(2 / 3)
    assert "filterbank" not in front.state_dict()


@pytest.mark.parametrize("bad", [FeatureConfig(fmin=9000.0), FeatureConfig(fmax=9000.0), FeatureConfig(stack=0),
                                 FeatureConfig(hop_ms=30.0)])
def test_unusable_settings_are_refused(bad: FeatureConfig) -> None:
    with pytest.raises(ValueError, match=r"must|need"):
        FrontEnd(bad)


def masked(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """bool: where SpecAugment changed the (nonzero) features."""
    return after != before


def test_spec_augment_masks_are_whole_bands_and_frames_within_the_limits() -> None:
    features = torch.rand(4, 120, 80) + 1  # never 0, so a 0 is a mask
    lengths = torch.tensor([120, 100, 60, 5])
    config = SpecAugmentConfig(freq_masks=2, freq_width=27, time_masks=2, time_width=40, time_share=0.2)
    out = spec_augment(features, lengths, config, generator=torch.Generator().manual_seed(0))
    hidden = masked(features, out)
    assert (out[hidden] == 0).all() and torch.equal(out[~hidden], features[~hidden])
    for b, frames in enumerate(lengths.tolist()):
        bands = hidden[b, frames:].all(dim=0) if frames < 120 else hidden[b].all(dim=0)  # masked in every frame
        times = hidden[b].all(dim=1)
        assert int(bands.sum()) <= 2 * 27
        assert int(times.sum()) <= 2 * min(40, int(0.2 * frames))
        assert not times[frames:].any()  # no time mask past the utterance
        assert torch.equal(hidden[b], bands[None, :] | times[:, None])  # nothing but whole bands and frames


def test_spec_augment_is_seeded_and_masks_something_on_average() -> None:
    features = torch.rand(8, 200, 80) + 1
    lengths = torch.full((8,), 200)
    config = SpecAugmentConfig()
    first = spec_augment(features, lengths, config, generator=torch.Generator().manual_seed(5))
    again = spec_augment(features, lengths, config, generator=torch.Generator().manual_seed(5))
    other = spec_augment(features, lengths, config, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.equal(first, other)
    share = float((first == 0).float().mean())
    assert 0.15 < share < 0.6  # two masks of up to 27 of 80 bands and two of up to 40 of 200 frames


def test_band_warp_reads_each_band_at_alpha_m_interpolated() -> None:
    ramp = torch.arange(8, dtype=torch.float64).expand(2, 3, 8).clone()  # Z[t, m] = m
    warped = warp_bands(ramp, torch.tensor([1.0, 0.5], dtype=torch.float64))
    assert torch.equal(warped[0], ramp[0])  # alpha 1: as it was
    torch.testing.assert_close(warped[1, 0], torch.arange(8, dtype=torch.float64) * 0.5)  # halves interpolated
    steep = warp_bands(ramp[:1], torch.tensor([1.5]))
    torch.testing.assert_close(steep[0, 0], torch.tensor([0, 1.5, 3, 4.5, 6, 7, 7, 7], dtype=torch.float64))
    spiky = torch.zeros(1, 1, 8, dtype=torch.float64)
    spiky[0, 0, 4] = 1.0
    moved = warp_bands(spiky, torch.tensor([0.8], dtype=torch.float64))  # band m reads 0.8 m: the peak moves up
    torch.testing.assert_close(moved[0, 0], torch.tensor([0, 0, 0, 0, 0.2, 1.0, 0.2, 0], dtype=torch.float64))


def test_spec_augment_warps_only_when_asked_and_within_the_range() -> None:
    features = torch.randn(4, 30, 16)
    lengths = torch.tensor([30, 30, 30, 30])
    plain = SpecAugmentConfig(freq_masks=0, time_masks=0)
    assert torch.equal(spec_augment(features, lengths, plain), features)
    warped = spec_augment(features, lengths, SpecAugmentConfig(freq_masks=0, time_masks=0, band_warp=0.2),
                          generator=torch.Generator().manual_seed(0))
    assert not torch.equal(warped, features)
    factors = 1 + 0.2 * (2 * torch.rand(4, generator=torch.Generator().manual_seed(0)) - 1)
    assert bool(((factors >= 0.8) & (factors <= 1.2)).all())
    torch.testing.assert_close(warped, warp_bands(features, factors))


def vowel(pitch: float, seconds: float = 0.5, formants: tuple[float, ...] = (700.0, 1200.0, 2600.0)) -> np.ndarray:
    """A sung vowel: harmonics of ``pitch`` Hz weighted by resonances at ``formants`` (an envelope independent of
    pitch), float64."""
    time = np.arange(round(16_000 * seconds)) / 16_000
    wave = np.zeros_like(time)
    for harmonic in np.arange(pitch, 7_500, pitch):
        gain = sum(1 / (1 + ((harmonic - f) / 120) ** 2) for f in formants) + 0.01
        wave += gain * np.sin(2 * np.pi * harmonic * time)
    return wave / np.abs(wave).max()


def harmonic_peaks(power: np.ndarray, below_hz: float = 2_000) -> np.ndarray:
    """The frequencies (Hz) of the local maxima of a power spectrum row that stand 20 dB over its median."""
    hz = np.arange(len(power)) * 16_000 / 512
    floor = np.median(power) * 100
    peaks = [k for k in range(1, len(power) - 1) if power[k] > power[k - 1] and power[k] >= power[k + 1]
             and power[k] > floor and hz[k] < below_hz]
    return hz[peaks]


def test_pitch_shift_by_one_is_the_identity() -> None:
    power = power_spectrum(torch.from_numpy(vowel(150.0))[None], FeatureConfig())
    shifted = shift_pitch(power, torch.tensor([1.0]), quefrency=32)
    np.testing.assert_allclose(shifted.numpy(), power.numpy() + 1e-10, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("pitch", "factor"), [(150.0, 1.5), (240.0, 0.75)])
def test_pitch_shift_moves_the_harmonics_and_keeps_the_envelope(pitch: float, factor: float) -> None:
    """The shifted spectrum's harmonics lie at multiples of beta f0, where a vowel sung at beta f0 has them (an
    independent check of where they should be), and its envelope is the sung vowel's."""
    config = FeatureConfig()
    original = power_spectrum(torch.from_numpy(vowel(pitch))[None], config)
    shifted = shift_pitch(original, torch.tensor([factor]), quefrency=32)
    frame = 25  # a frame in the steady middle
    peaks = harmonic_peaks(shifted[0, frame].numpy())
    sung = harmonic_peaks(power_spectrum(torch.from_numpy(vowel(pitch * factor))[None], config)[0, frame].numpy())
    bin_hz = 16_000 / 512
    assert len(peaks) >= 4
    assert np.abs(peaks / (pitch * factor) - np.round(peaks / (pitch * factor))).max() * pitch * factor < 1.5 * bin_hz
    assert len(sung) >= 4
    assert all(np.abs(peaks - hz).min() < 1.5 * bin_hz for hz in sung)  # every harmonic the real voice shows
    # the envelope stays: the shifted frame's smoothed log spectrum (below 4 kHz) is far nearer the sung vowel's
    # than that of the same clip played beta times faster, which moves the formants with the pitch
    played = change_speed(vowel(pitch).astype(np.float32), factor).astype(np.float64)
    faster = power_spectrum(torch.from_numpy(played)[None], config)
    sung_power = power_spectrum(torch.from_numpy(vowel(pitch * factor))[None], config)

    def envelope(power: torch.Tensor) -> np.ndarray:
        cepstrum = torch.fft.irfft(torch.log(power[0, frame] + 1e-10), n=512)
        cepstrum[32:-31] = 0
        smooth = torch.fft.rfft(cepstrum).real.numpy()[:128]
        return smooth - smooth.mean()

    def distance(power: torch.Tensor) -> float:
        return float(np.abs(envelope(power) - envelope(sung_power)).mean())

    assert distance(shifted) < 0.5 * distance(faster)


def test_front_end_shifts_pitch_only_when_asked_and_seeded() -> None:
    wave = torch.from_numpy(vowel(150.0)).float()[None].repeat(3, 1)
    lengths = torch.full((3,), wave.shape[1])
    front = FrontEnd()
    quiet = SpecAugmentConfig(freq_masks=0, time_masks=0)
    plain, _ = front(wave, lengths)
    np.testing.assert_allclose(front(wave, lengths, augment=quiet)[0].numpy(), plain.numpy(), atol=1e-6)
    shifting = SpecAugmentConfig(freq_masks=0, time_masks=0, pitch_shift=4.0)
    one = front(wave, lengths, augment=shifting, generator=torch.Generator().manual_seed(3))[0]
    two = front(wave, lengths, augment=shifting, generator=torch.Generator().manual_seed(3))[0]
    torch.testing.assert_close(one, two)
    assert not torch.allclose(one, plain, atol=1e-2)
    assert not torch.allclose(one[0], one[1], atol=1e-2)  # each utterance draws its own shift


def test_front_end_warps_each_utterance_by_its_own_factor_before_stacking() -> None:
    waves = torch.from_numpy(np.stack([noise(8_000, seed) for seed in range(3)]))
    lengths = torch.tensor([8_000, 6_000, 4_000])
    front = FrontEnd(FeatureConfig(stack=2, stride=2))
    plain, frames = front(waves, lengths)
    same, _ = front(waves, lengths, warp=torch.ones(3))
    torch.testing.assert_close(same, plain)
    factors = torch.tensor([1.0, 1.2, 1 / 1.2])
    warped, warped_frames = front(waves, lengths, warp=factors)
    assert torch.equal(warped_frames, frames)
    logs, counts = front.log_mel(waves, lengths)
    z = normalise(logs, counts)
    for b in range(3):  # each alone: warp_bands on its normalised bands, then stacking
        expected, _ = stack_frames(warp_bands(z[b : b + 1], factors[b : b + 1]), counts[b : b + 1], stack=2, stride=2)
        torch.testing.assert_close(warped[b : b + 1], expected)
    assert not torch.allclose(warped[1], plain[1], atol=1e-2)
