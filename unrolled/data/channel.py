r"""The channel between a speaker and the recogniser, simulated: telephone band and codecs, microphones, rooms.

Each is a function of a waveform :math:`x[n]` at rate :math:`r` (16 kHz)
and a few parameters; `unrolled.data.audio.perturb` draws them per
utterance while training (flags ``--telephone``, ``--microphone``,
``--reverb``), and `telephone` alone makes the telephone-band copies of the
benchmark's test sets.

**Telephone** (`telephone`): the waveform is resampled to
:math:`r_t` = 8 kHz (soxr: a linear-phase low-pass below 4 kHz, so nothing
folds), coded and decoded by a G.711 codec (or left linear), and resampled
back to :math:`r`; what lay above 4 kHz is gone, as on every narrow-band call.

**G.711 mu-law** (`mulaw_encode`, `mulaw_decode`; ITU-T G.711, the North
American and Japanese telephone codec). A 16-bit sample :math:`v` is taken
to 14 bits, :math:`u = \lfloor v / 4 \rfloor`; its magnitude, clipped and
biased, :math:`m = \min(|u|, 8159) + 33` (for :math:`u < 0`, :math:`|u| = -u`),
falls in chord :math:`s = \lfloor \log_2 m \rfloor - 5` (0 to 7; :math:`m` =
8192 takes the top code) and step :math:`q = \lfloor m / 2^{s+1} \rfloor \bmod 16`;
the byte is :math:`c = \lnot(\sigma \cdot 128 + 16 s + q)` with :math:`\sigma`
= 1 for :math:`u < 0`. Decoding inverts it to the middle of the step:
:math:`t = (8 q + 132)\, 2^s`, :math:`\hat v = \pm(t - 132)`. The 8 chords
of 16 steps are a piecewise-linear form of the curve
:math:`F(x) = \mathrm{sgn}(x) \ln(1 + \mu |x|) / \ln(1 + \mu)`, :math:`\mu` = 255:
the step grows with the level, so the error stays near 38 dB below a loud
signal and a quiet one alike.

**G.711 A-law** (`alaw_encode`, `alaw_decode`; the European codec). On 13
bits, :math:`u = \lfloor v / 8 \rfloor`; :math:`p = u` for :math:`u \ge 0`,
else :math:`p = -u - 1`; chord :math:`s = 0` for :math:`p < 32`, else
:math:`\lfloor \log_2 p \rfloor - 4`; step :math:`q = \lfloor p / 2 \rfloor \bmod 16`
in chords 0 and 1, :math:`\lfloor p / 2^s \rfloor \bmod 16` above; the byte is
:math:`(16 s + q) \oplus` 0xD5 for :math:`u \ge 0` and 0x55 below (the even
bits inverted). Decoding: :math:`t = 16 q + 8` in chord 0,
:math:`(16 q + 264)\, 2^{s-1}` above, :math:`\hat v = t` for the positive
codes, :math:`-t` for the others.

**Microphone** (`biquad`, `microphone`): a product of second-order
sections from R. Bristow-Johnson's Audio EQ Cookbook. With
:math:`\omega_0 = 2\pi f_0 / r`, :math:`\alpha = \sin\omega_0 / (2Q)`,
:math:`A = 10^{G/40}`, :math:`c = \cos\omega_0`, the coefficients
:math:`H(z) = (b_0 + b_1 z^{-1} + b_2 z^{-2}) / (a_0 + a_1 z^{-1} + a_2 z^{-2})` are

.. math::
    \text{high-pass: } b &= [\tfrac{1 + c}{2}, -(1 + c), \tfrac{1 + c}{2}], \quad a = [1 + \alpha, -2c, 1 - \alpha] \\
    \text{low-pass: } b &= [\tfrac{1 - c}{2}, 1 - c, \tfrac{1 - c}{2}], \quad a = [1 + \alpha, -2c, 1 - \alpha] \\
    \text{peaking: } b &= [1 + \alpha A, -2c, 1 - \alpha A], \quad a = [1 + \alpha / A, -2c, 1 - \alpha / A]

(a peaking section gains exactly G dB at :math:`f_0` and 0 dB at 0 and
:math:`r/2`). A random microphone is a high-pass at :math:`f_0 \sim` U[50, 400] Hz,
a low-pass at U[4, 7.5] kHz and two peaking sections at log-uniform
:math:`f_0` in [200, 6000] Hz, G ~ U[-10, 10] dB, Q ~ U[0.5, 2], all with the low- and
high-pass's Q = 0.707. The filter runs in the frequency domain:
:math:`y = \mathrm{IDFT}_L(X[k] \prod_j H_j(e^{2\pi i k / L}))` over
:math:`L \ge N + r / 10` points, the first N samples kept: the sections'
impulse responses have died away well within the 0.1 s of padding (L is
rounded up to a multiple of 2048), so this is the difference equation's
output to rounding.

**Room** (`room_response`, `reverberate`): a simulated impulse response of
reverberation time :math:`T_{60}` (the time its energy takes to fall by
60 dB) and direct-to-reverberant ratio D dB: a direct path and an
exponentially decaying Gaussian tail,

.. math::
    h[0] = 1, \qquad h[n] = \gamma\, w_n\, 10^{-3 n / (T_{60} r)}, \quad 1 \le n < T_{60} r, \quad w_n \sim N(0, 1)

with :math:`\gamma` set so that :math:`\sum_{n \ge 1} h[n]^2 = 10^{-D/10}`.
The amplitude falls by :math:`10^{-3}` (60 dB of energy) in :math:`T_{60}`.
The reverberant waveform is the linear convolution :math:`(x * h)[n]` for
:math:`n < N` (an FFT of at least :math:`N + |h| - 1` points), scaled back
to the mean square of :math:`x`.

Noise at a measured signal-to-noise ratio and gain are `unrolled.data.audio`'s.
Shapes: N samples; waveforms are float32 in [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from unrolled.features import SAMPLE_RATE
from unrolled.sound import Wave, resample

TELEPHONE_RATE = 8_000  # r_t, the narrow-band telephone's rate
CODECS = ("mulaw", "alaw", "linear")  # what a telephone channel codes its 8 kHz samples with
FULL_SCALE = 32768  # a float sample of 1.0 as a 16-bit one
MULAW_CLIP, MULAW_BIAS = 8159, 33  # 14-bit magnitude limit and bias of mu-law's encoder
ALAW_MASKS = (0xD5, 0x55)  # A-law's inverted bits of a code of u >= 0, and of u < 0
BUTTERWORTH_Q = 1 / math.sqrt(2)  # Q of the microphone's high- and low-pass sections
FILTER_TAIL_SECONDS = 0.1  # padding of the frequency-domain filter: longer than any section's ringing
SECTIONS = ("highpass", "lowpass", "peaking")
FFT_BLOCK = 2048  # the filter's FFT length is a multiple of this: few prime factors, so the FFT stays fast


def to_int16(wave: NDArray[np.floating]) -> NDArray[np.int16]:
    """16-bit samples: round(32768 x), clipped to [-32768, 32767]."""
    return np.clip(np.round(np.asarray(wave, dtype=np.float64) * FULL_SCALE), -FULL_SCALE, FULL_SCALE - 1).astype(
        np.int16)


def mulaw_encode(samples: NDArray[np.integer]) -> NDArray[np.uint8]:
    """G.711 mu-law bytes of 16-bit samples (module docstring)."""
    u = np.asarray(samples, dtype=np.int32) >> 2  # 14 bits
    negative = u < 0
    m = np.minimum(np.abs(u), MULAW_CLIP) + MULAW_BIAS  # 33 .. 8192
    chord = np.floor(np.log2(m)).astype(np.int32) - 5
    step = (m >> np.minimum(chord + 1, 8)) & 0xF
    code = np.where(chord >= 8, 0x7F, (np.minimum(chord, 7) << 4) | step) | (negative.astype(np.int32) << 7)
    return (~code & 0xFF).astype(np.uint8)


def mulaw_decode(codes: NDArray[np.integer]) -> NDArray[np.int16]:
    """16-bit samples of G.711 mu-law bytes: each step's middle."""
    c = ~np.asarray(codes, dtype=np.int32) & 0xFF
    t = (((c & 0xF) << 3) + 132) << ((c >> 4) & 0x7)
    return np.where(c & 0x80, 132 - t, t - 132).astype(np.int16)


def alaw_encode(samples: NDArray[np.integer]) -> NDArray[np.uint8]:
    """G.711 A-law bytes of 16-bit samples (module docstring)."""
    u = np.asarray(samples, dtype=np.int32) >> 3  # 13 bits
    p = np.where(u >= 0, u, -u - 1)  # 0 .. 4095
    chord = np.where(p < 32, 0, np.floor(np.log2(np.maximum(p, 1))).astype(np.int32) - 4)
    step = np.where(chord < 2, p >> 1, p >> chord) & 0xF
    mask = np.where(u >= 0, ALAW_MASKS[0], ALAW_MASKS[1])
    return (((chord << 4) | step) ^ mask).astype(np.uint8)


def alaw_decode(codes: NDArray[np.integer]) -> NDArray[np.int16]:
    """16-bit samples of G.711 A-law bytes."""
    a = np.asarray(codes, dtype=np.int32) ^ 0x55
    step, chord = a & 0xF, (a >> 4) & 0x7
    t = np.where(chord == 0, (step << 4) + 8, ((step << 4) + 0x108) << np.maximum(chord - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


def code(wave: Wave, codec: str) -> Wave:
    """The waveform through a codec and back: ``mulaw`` or ``alaw`` (G.711), or ``linear`` (16-bit rounding)."""
    samples = to_int16(wave)
    if codec == "mulaw":
        samples = mulaw_decode(mulaw_encode(samples))
    elif codec == "alaw":
        samples = alaw_decode(alaw_encode(samples))
    elif codec != "linear":
        raise ValueError(f"unknown codec {codec!r}: choose one of {', '.join(CODECS)}")
    return (samples.astype(np.float32) / np.float32(FULL_SCALE)).astype(np.float32)


def telephone(wave: Wave, codec: str = "mulaw", *, rate: int = SAMPLE_RATE) -> Wave:
    """The waveform as a narrow-band call carries it: to 8 kHz, through ``codec``, back to ``rate``."""
    narrow = code(resample(wave, rate, TELEPHONE_RATE), codec)
    back = resample(narrow, TELEPHONE_RATE, rate)
    out = np.zeros(len(wave), dtype=np.float32)  # the resamplers may round the length by a sample
    out[: min(len(back), len(wave))] = back[: len(wave)]
    return out


@dataclass(frozen=True)
class Section:
    """One second-order section of the Audio EQ Cookbook: its kind (`SECTIONS`), f0 in Hz, Q and gain in dB."""

    kind: str
    hz: float
    q: float = BUTTERWORTH_Q
    gain_db: float = 0.0

    def coefficients(self, rate: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(b, a), each (3,), as in the module docstring."""
        if self.kind not in SECTIONS or not 0 < self.hz < rate / 2 or self.q <= 0:
            raise ValueError(f"a {self.kind} section needs a kind of {SECTIONS}, 0 < f0 < {rate / 2:g} Hz and Q > 0")
        w0 = 2 * math.pi * self.hz / rate
        c, alpha = math.cos(w0), math.sin(w0) / (2 * self.q)
        a = np.array([1 + alpha, -2 * c, 1 - alpha])
        if self.kind == "highpass":
            b = np.array([(1 + c) / 2, -(1 + c), (1 + c) / 2])
        elif self.kind == "lowpass":
            b = np.array([(1 - c) / 2, 1 - c, (1 - c) / 2])
        else:
            gain = 10 ** (self.gain_db / 40)  # A
            b = np.array([1 + alpha * gain, -2 * c, 1 - alpha * gain])
            a = np.array([1 + alpha / gain, -2 * c, 1 - alpha / gain])
        return b, a

    def response(self, delay: NDArray[np.complex128], rate: int) -> NDArray[np.complex128]:
        """H at the frequencies whose z^-1 are ``delay``: (b0 + b1 z^-1 + b2 z^-2) / (a0 + a1 z^-1 + a2 z^-2)."""
        b, a = self.coefficients(rate)
        return (b[0] + delay * (b[1] + delay * b[2])) / (a[0] + delay * (a[1] + delay * a[2]))


def biquad(wave: Wave, sections: tuple[Section, ...], *, rate: int = SAMPLE_RATE) -> Wave:
    """The waveform through the sections in turn, computed in the frequency domain (module docstring)."""
    points = -(-(len(wave) + round(FILTER_TAIL_SECONDS * rate)) // FFT_BLOCK) * FFT_BLOCK
    spectrum = np.fft.rfft(np.asarray(wave, dtype=np.float64), n=points)
    delay = np.exp(-2j * np.pi * np.arange(points // 2 + 1) / points)  # z^-1 at the L // 2 + 1 frequencies
    for section in sections:
        spectrum = spectrum * section.response(delay, rate)
    return np.fft.irfft(spectrum, n=points)[: len(wave)].astype(np.float32)


def random_microphone(generator: np.random.Generator) -> tuple[Section, ...]:
    """A drawn microphone: a high-pass, a low-pass and two peaking sections (module docstring)."""
    peaks = tuple(Section("peaking", float(np.exp(generator.uniform(math.log(200), math.log(6000)))),
                          q=float(generator.uniform(0.5, 2.0)), gain_db=float(generator.uniform(-10, 10)))
                  for _ in range(2))
    return (Section("highpass", float(generator.uniform(50, 400))),
            Section("lowpass", float(generator.uniform(4000, 7500))), *peaks)


def room_response(rt60: float, drr_db: float, generator: np.random.Generator, *, rate: int = SAMPLE_RATE) -> Wave:
    """h (T60 r,): a direct path and an exponentially decaying Gaussian tail (module docstring)."""
    if not rt60 > 0:
        raise ValueError(f"a room's reverberation time must be positive, got {rt60} s")
    length = max(2, round(rt60 * rate))
    n = np.arange(1, length)
    tail = generator.standard_normal(length - 1) * 10.0 ** (-3 * n / (rt60 * rate))
    tail *= math.sqrt(10 ** (-drr_db / 10) / float(np.sum(tail**2)))  # gamma
    return np.concatenate([[1.0], tail]).astype(np.float32)


def reverberate(wave: Wave, response: NDArray[np.floating]) -> Wave:
    """(x * h)[:N] by FFT, scaled back to x's mean square (silence stays silence)."""
    points = 1 << (len(wave) + len(response) - 2).bit_length()
    wet = np.fft.irfft(np.fft.rfft(np.asarray(wave, dtype=np.float64), n=points)
                       * np.fft.rfft(np.asarray(response, dtype=np.float64), n=points), n=points)[: len(wave)]
    power, wet_power = float(np.mean(np.square(wave, dtype=np.float64))), float(np.mean(wet**2))
    scale = math.sqrt(power / wet_power) if wet_power > 0 else 0.0
    return (wet * scale).astype(np.float32)


def microphone(wave: Wave, generator: np.random.Generator, *, rate: int = SAMPLE_RATE) -> Wave:
    """The waveform through a drawn microphone, scaled back to its mean square."""
    out = biquad(wave, random_microphone(generator), rate=rate)
    power, out_power = float(np.mean(np.square(wave, dtype=np.float64))), float(np.mean(np.square(out,
                                                                                                  dtype=np.float64)))
    return (out * math.sqrt(power / out_power)).astype(np.float32) if out_power > 0 else out
