r"""Audio files in, 16 kHz mono waveforms out; and the waveform perturbations of training.

Reading is `unrolled.sound`'s (no torch there, so the runtime shares it; its
names are offered here too): soundfile, then soxr to 16 kHz mono float32.

Perturbations (`perturb`, seeded by a NumPy generator; each utterance draws
its own):

* speed (Ko et al. 2015): with a factor :math:`\alpha` drawn from a few
  values (0.9, 1.0, 1.1), the waveform is resampled as if it had been
  recorded at :math:`\alpha r`, so it plays :math:`\alpha` times faster and
  higher: :math:`N' \approx N / \alpha` samples.
* volume: :math:`y = g x` with :math:`g = 10^{G/20}`, :math:`G \sim U[G_{min}, G_{max}]` dB.
  The front end's log and mean normalisation remove a gain (up to the log
  floor), so this matters where it meets noise and the floor.
* noise, with probability :math:`p_n`: Gaussian noise of power spectrum
  :math:`\propto 1/f^\beta` (:math:`\beta` = 0 white, 1 pink, 2 brown, drawn
  uniformly) at a signal-to-noise ratio :math:`S \sim U[S_{min}, S_{max}]` dB:
  with :math:`P_x = \frac{1}{N}\sum_n x_n^2`, the noise :math:`\nu` is scaled
  so that :math:`P_\nu = P_x 10^{-S/10}`, and :math:`y = x + \nu`.
* the channel (`unrolled.data.channel`, each with its own probability, none
  by default): a room (reverberation time :math:`T_{60}` ~ U[T_min, T_max],
  direct-to-reverberant ratio D ~ U[0, 12] dB) before the noise, a
  microphone after it, and last, after the volume, a telephone line (8 kHz,
  with a codec drawn from mu-law, A-law and linear).

The order is the way sound travels: speed (the speaker), room, noise (the
room's other sounds), microphone, volume, telephone.

Errors are one line and name the file: `AudioError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unrolled.sound import (  # noqa: F401 (reading lives in unrolled.sound, without torch; offered here too)
    SAMPLE_RATE,
    SILENCE_PEAK,
    AudioError,
    AudioInfo,
    Wave,
    audio_info,
    is_silent,
    read_audio,
    resample,
    trim_silence,
    write_wav,
)

NOISE_COLOURS = (0.0, 1.0, 2.0)  # beta: white, pink, brown


@dataclass
class PerturbConfig:
    """Waveform perturbations for training (module docstring); each utterance draws its own.

    speeds        alpha, drawn uniformly from these factors
    gain_db       (G_min, G_max), the volume change in dB
    noise         p_n, the probability of adding noise
    snr_db        (S_min, S_max), the signal-to-noise ratio of added noise in dB
    reverb        the probability of a simulated room; rt60 (T_min, T_max), its reverberation time in seconds
    microphone    the probability of a drawn microphone's frequency response
    telephone     the probability of a telephone line: 8 kHz and a G.711 codec (or none)
    """

    speeds: tuple[float, ...] = (0.9, 1.0, 1.1)
    gain_db: tuple[float, float] = (-10.0, 6.0)
    noise: float = 0.5
    snr_db: tuple[float, float] = (10.0, 40.0)
    reverb: float = 0.0
    rt60: tuple[float, float] = (0.2, 0.8)
    microphone: float = 0.0
    telephone: float = 0.0


def change_speed(wave: Wave, factor: float, rate: int = SAMPLE_RATE) -> Wave:
    """The waveform played ``factor`` times faster (and higher): resampled from ``factor * rate`` to ``rate``."""
    return resample(wave, factor * rate, rate)


def change_volume(wave: Wave, gain_db: float) -> Wave:
    """y = 10^(G / 20) x."""
    return (wave * np.float32(10 ** (gain_db / 20))).astype(np.float32)


def coloured_noise(samples: int, beta: float, generator: np.random.Generator) -> Wave:
    """Gaussian noise (N,) whose power spectrum falls as 1 / f^beta, scaled to unit mean square."""
    spectrum = np.fft.rfft(generator.standard_normal(samples))
    frequency = np.fft.rfftfreq(samples)
    frequency[0] = frequency[1] if samples > 1 else 1.0  # the DC bin gets the lowest frequency's weight
    noise = np.fft.irfft(spectrum / frequency ** (beta / 2), n=samples)
    power = float(np.mean(noise**2))
    return (noise / np.sqrt(power) if power > 0 else noise).astype(np.float32)


def add_noise(wave: Wave, snr_db: float, noise: Wave) -> Wave:
    """x + nu, the noise scaled so that P_x / P_nu = 10^(S / 10); silence stays silence."""
    signal_power = float(np.mean(wave.astype(np.float64) ** 2))
    noise_power = float(np.mean(noise.astype(np.float64) ** 2))
    if signal_power == 0 or noise_power == 0:
        return wave.copy()
    scale = np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return (wave + scale * noise[: len(wave)]).astype(np.float32)


DRR_DB = (0.0, 12.0)  # the simulated rooms' direct-to-reverberant ratios, dB


def perturb(wave: Wave, config: PerturbConfig, generator: np.random.Generator, *, rate: int = SAMPLE_RATE) -> Wave:
    """One random draw of speed, room, noise, microphone, volume and telephone, in the module docstring's order.

    The draws of speed, volume and noise come first and in the order they
    always had, so a configuration without the channel perturbs as before.
    """
    from unrolled.data import channel

    speed = float(generator.choice(config.speeds))
    out = change_speed(wave, speed, rate) if speed != 1.0 else wave
    gain_db = float(generator.uniform(*config.gain_db))
    noisy = generator.random() < config.noise
    if noisy:
        beta = float(generator.choice(NOISE_COLOURS))
        snr_db, noise = float(generator.uniform(*config.snr_db)), coloured_noise(len(out), beta, generator)
    if config.reverb > 0 and generator.random() < config.reverb:
        room = channel.room_response(float(generator.uniform(*config.rt60)), float(generator.uniform(*DRR_DB)),
                                     generator, rate=rate)
        out = channel.reverberate(out, room)
    if noisy:
        out = add_noise(out, snr_db, noise)
    if config.microphone > 0 and generator.random() < config.microphone:
        out = channel.microphone(out, generator, rate=rate)
    out = change_volume(out, gain_db)
    if config.telephone > 0 and generator.random() < config.telephone:
        out = channel.telephone(out, str(generator.choice(channel.CODECS)), rate=rate)
    return out
