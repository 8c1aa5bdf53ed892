"""The simulated channel against known answers: G.711 tables and Python's audioop, scipy's filter, decay times."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from unrolled.data.audio import PerturbConfig, perturb
from unrolled.data.channel import (
    Section,
    alaw_decode,
    alaw_encode,
    biquad,
    code,
    mulaw_decode,
    mulaw_encode,
    reverberate,
    room_response,
    telephone,
    to_int16,
)

RATE = 16_000
EVERY_SAMPLE = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
EVERY_CODE = np.arange(256, dtype=np.uint8)


def tone(hz: float, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(round(RATE * seconds)) / RATE)).astype(np.float32)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def audioop_module():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return pytest.importorskip("audioop")  # Python's C codec (gone in 3.13): an independent G.711


def test_g711_decodes_the_table_values() -> None:
    # ITU-T G.711's end points: mu-law 0x80 / 0x00 are +-8031 x 4 = +-32124, 0xFF and 0x7F zero; A-law 0xD5 / 0x55
    # the first step +-8 (1 x 8 on 16 bits), 0xAA / 0x2A the largest, +-4032 x 8 = +-32256
    assert mulaw_decode(np.array([0x80, 0x00, 0xFF, 0x7F])).tolist() == [32124, -32124, 0, 0]
    assert alaw_decode(np.array([0xD5, 0x55, 0xAA, 0x2A])).tolist() == [8, -8, 32256, -32256]
    assert mulaw_encode(np.array([0, 32767, -32768])).tolist() == [0xFF, 0x80, 0x00]
    assert alaw_encode(np.array([0, 32767, -32768])).tolist() == [0xD5, 0xAA, 0x2A]


def test_g711_matches_pythons_audioop_on_every_sample_and_code() -> None:
    audioop = audioop_module()
    assert mulaw_encode(EVERY_SAMPLE).tobytes() == audioop.lin2ulaw(EVERY_SAMPLE.tobytes(), 2)
    assert alaw_encode(EVERY_SAMPLE).tobytes() == audioop.lin2alaw(EVERY_SAMPLE.tobytes(), 2)
    assert mulaw_decode(EVERY_CODE).tobytes() == audioop.ulaw2lin(EVERY_CODE.tobytes(), 2)
    assert alaw_decode(EVERY_CODE).tobytes() == audioop.alaw2lin(EVERY_CODE.tobytes(), 2)


@pytest.mark.parametrize("codec", ["mulaw", "alaw"])
def test_companding_keeps_a_quiet_signal_as_clean_as_a_loud_one(codec: str) -> None:
    for level_db in (-6.0, -36.0):
        x = tone(1000.0, amplitude=10 ** (level_db / 20))
        error = code(x, codec) - x
        assert 20 * math.log10(rms(x) / rms(error)) > 30  # G.711's about 38 dB, at both levels
    quiet = tone(1000.0, amplitude=10 ** (-36 / 20))
    eight_bits = np.round(quiet * 128) / 128  # plain 8-bit samples: about 14 dB at -36 dBFS
    assert 20 * math.log10(rms(quiet) / rms(eight_bits - quiet)) < 20


def test_the_telephone_keeps_the_voice_band_and_removes_what_lies_above_4_khz() -> None:
    low, high = tone(1000.0), tone(6000.0)
    passed = telephone(low, "mulaw")
    assert passed.shape == low.shape and passed.dtype == np.float32
    middle = slice(800, RATE - 800)
    error = passed[middle] - low[middle]
    assert 20 * math.log10(rms(low[middle]) / rms(error)) > 30
    assert rms(telephone(high, "linear")[middle]) < 10 ** (-50 / 20) * rms(high)


def test_an_unknown_codec_is_one_line() -> None:
    with pytest.raises(ValueError, match="unknown codec 'gsm'"):
        code(tone(1000.0), "gsm")


def test_biquad_sections_compute_the_difference_equation() -> None:
    signal = pytest.importorskip("scipy.signal")
    x = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    sections = (Section("highpass", 200.0), Section("lowpass", 5000.0), Section("peaking", 1500.0, q=1.5,
                                                                                  gain_db=8.0))
    expected = x.astype(np.float64)
    for section in sections:
        b, a = section.coefficients(RATE)
        expected = signal.lfilter(b, a, expected)
    np.testing.assert_allclose(biquad(x, sections), expected, atol=1e-5)


def test_a_peaking_section_gains_its_decibels_at_its_frequency_and_none_far_from_it() -> None:
    peak = (Section("peaking", 1000.0, q=1.0, gain_db=-9.0),)
    middle = slice(2000, RATE - 2000)
    assert 20 * math.log10(rms(biquad(tone(1000.0), peak)[middle]) / rms(tone(1000.0)[middle])) == pytest.approx(
        -9.0, abs=0.05)
    assert 20 * math.log10(rms(biquad(tone(7900.0), peak)[middle]) / rms(tone(7900.0)[middle])) == pytest.approx(
        0.0, abs=0.1)


def test_a_bad_section_is_one_line() -> None:
    with pytest.raises(ValueError, match="0 < f0 < 8000 Hz"):
        biquad(tone(100.0), (Section("highpass", 9000.0),))


@pytest.mark.parametrize("rt60", [0.3, 0.7])
def test_the_room_decays_60_db_in_its_reverberation_time(rt60: float) -> None:
    h = room_response(rt60, 6.0, np.random.default_rng(1)).astype(np.float64)
    assert h[0] == 1.0 and len(h) == round(rt60 * RATE)
    assert 10 * math.log10(1 / float(np.sum(h[1:] ** 2))) == pytest.approx(6.0, abs=1e-4)  # D, the ratio asked
    decay = np.cumsum(h[1:][::-1] ** 2)[::-1]  # Schroeder's backward integral of the tail's energy
    level = 10 * np.log10(decay / decay[0])
    start, end = int(np.argmax(level < -5)), int(np.argmax(level < -25))
    slope = (level[end] - level[start]) / ((end - start) / RATE)  # dB per second, from -5 to -25 dB (T20)
    assert -60 / slope == pytest.approx(rt60, rel=0.1)


def test_reverberation_is_the_convolution_at_the_same_loudness() -> None:
    x = tone(500.0, 0.25) * np.hanning(4000).astype(np.float32)
    h = room_response(0.2, 3.0, np.random.default_rng(2))
    wet = reverberate(x, h)
    expected = np.convolve(x.astype(np.float64), h.astype(np.float64))[: len(x)]
    np.testing.assert_allclose(wet, expected * rms(x) / rms(expected), atol=1e-5)
    assert rms(wet) == pytest.approx(rms(x), rel=1e-5)


def test_perturb_with_a_telephone_line_leaves_nothing_above_4_khz() -> None:
    x = (np.random.default_rng(3).standard_normal(RATE) * 0.1).astype(np.float32)
    config = PerturbConfig(speeds=(1.0,), noise=0.0, telephone=1.0, microphone=1.0, reverb=1.0)
    out = perturb(x, config, np.random.default_rng(0))
    spectrum = np.abs(np.fft.rfft(out)) ** 2
    above = spectrum[np.fft.rfftfreq(len(out), 1 / RATE) > 4200].sum()
    assert above < 1e-4 * spectrum.sum()
    assert np.array_equal(out, perturb(x, config, np.random.default_rng(0)))


def test_to_int16_rounds_and_clips() -> None:
    assert to_int16(np.array([1.0, -1.0, 0.5, 1e-5, -2.0])).tolist() == [32767, -32768, 16384, 0, -32768]
