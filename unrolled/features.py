r"""The speech front end: waveforms -> log-mel frames -> fixed-length vectors, in torch alone.

The lecture's speech recogniser, step 1: "get some fixed length vectors".
A batch of mono waveforms :math:`x_b[n]` at rate :math:`r` (16 kHz), with
:math:`N_b` real samples each (the rest zero padding), becomes frames:

**Short-time Fourier transform.** Window length :math:`W` = 25 ms (400
samples), hop :math:`R` = 10 ms (160), FFT size :math:`N_{fft}` = the power
of two at or above :math:`W` (512). The signal is padded with
:math:`N_{fft}/2` zeros at both ends (frame :math:`t` is centred on sample
:math:`tR`), so an utterance of :math:`N_b` samples has
:math:`T_b = 1 + \lfloor N_b / R \rfloor` frames. With :math:`w` the periodic
Hann window of length :math:`W`, centred in :math:`N_{fft}` by zero padding,

.. math::
    X_b[t, k] = \sum_{n=0}^{N_{fft}-1} w[n]\, \tilde x_b[tR + n]\, e^{-2\pi i k n / N_{fft}},
    \qquad P_b[t, k] = |X_b[t, k]|^2, \quad k = 0 \dots N_{fft}/2

Zero padding (not reflection) makes an utterance's frames the same alone
and in a padded batch.

**Mel filter bank** (HTK's mel scale, triangles of peak 1, no area
normalisation). :math:`\mathrm{mel}(f) = 2595 \log_{10}(1 + f / 700)`.
:math:`M` = 80 bands between :math:`f_{min}` = 20 Hz and :math:`f_{max} = r/2`
take :math:`M + 2` points :math:`f_0 < \dots < f_{M+1}` equally spaced in mel;
bin :math:`k` lies at :math:`\phi_k = k r / N_{fft}` Hz and band :math:`m`
(:math:`0 \le m < M`) weighs it by

.. math::
    F[m, k] = \max\Bigl(0, \min\Bigl(\frac{\phi_k - f_m}{f_{m+1} - f_m},
                                     \frac{f_{m+2} - \phi_k}{f_{m+2} - f_{m+1}}\Bigr)\Bigr)

(the per-band scale of a normalised bank is a constant added to a band's
logs, which the mean normalisation below removes anyway).

**Log and per-utterance normalisation.** With a floor :math:`\epsilon` =
1e-6 for digital silence, :math:`L_b[t, m] = \log(\sum_k F[m, k] P_b[t, k] + \epsilon)`.
Each band is normalised over the utterance's own :math:`T_b` frames:

.. math::
    \mu_{b,m} = \frac{1}{T_b} \sum_{t<T_b} L_b[t, m], \quad
    \sigma_{b,m}^2 = \frac{1}{T_b} \sum_{t<T_b} (L_b[t, m] - \mu_{b,m})^2, \quad
    Z_b[t, m] = \frac{L_b[t, m] - \mu_{b,m}}{\sigma_{b,m} + \delta}

(:math:`\delta` = 1e-5: a constant band, such as silence, becomes 0). Frames
past :math:`T_b` are 0. A gain :math:`g` adds :math:`2 \log g` to every
:math:`L` above the floor, so loudness does not reach the model.

**Stacking and subsampling** (Sak et al. 2015): :math:`k` consecutive frames
are concatenated and every :math:`s`-th kept,

.. math::
    Y_b[t'] = [Z_b[s t'] ; Z_b[s t' + 1] ; \dots ; Z_b[s t' + k - 1]], \qquad t' < T'_b = \lceil T_b / s \rceil

where a frame index past :math:`T_b - 1` reads frame :math:`T_b - 1` (the
last frame repeats). Y has :math:`k M` features and :math:`s` times fewer
frames; :math:`k = s = 1` leaves Z as it is.

**SpecAugment** (Park et al. 2019; `spec_augment`, training only), on Z
before stacking: :math:`m_F` frequency masks, each of a width
:math:`f \sim U\{0 .. F\}` at :math:`f_0 \sim U\{0 .. M - f\}`, and
:math:`m_T` time masks of a width :math:`\tau \sim U\{0 .. \min(T_w, \lfloor p T_b \rfloor)\}`
at :math:`t_0 \sim U\{0 .. T_b - \tau\}`, set to 0 (the mean after
normalisation). Time warping, which the paper found the least useful, is
left out. With ``band_warp`` w > 0 each utterance's bands are also warped
along the mel axis, a stand-in for vocal tract length perturbation (Jaitly
and Hinton 2013) applied to the mel bands instead of the linear spectrum:
with :math:`\alpha_b \sim U[1 - w, 1 + w]`,

.. math::
    Z'_b[t, m] = (1 - \lambda) Z_b[t, \lfloor u \rfloor] + \lambda Z_b[t, \lfloor u \rfloor + 1],
    \qquad u = \min(\alpha_b m,\ M - 1), \quad \lambda = u - \lfloor u \rfloor

so a voice's formants move up or down by up to a fraction w of their band
index, as a longer or shorter vocal tract would move them.

**Pitch shift** (``pitch_shift`` S > 0, training only), on the power
spectrum before the filter bank: each utterance's harmonics are spread by a
factor :math:`\beta_b = 2^{u_b / 12}`, :math:`u_b \sim U[-S, S]` semitones,
while its spectral envelope (the formants) stays where it was, a voice
speaking higher or lower with the same vocal tract (the speed perturbation
and the band warp move both together). Source-filter separation by the real
cepstrum (Oppenheim and Schafer): with :math:`\ell[k] = \log(P[t, k] + \epsilon)`
over the :math:`K = N_{fft}/2 + 1` bins, :math:`c = \mathrm{IDFT}_{N_{fft}}(\ell)`
its cepstrum, the envelope keeps the quefrencies below :math:`q`
(`ENVELOPE_QUEFRENCY_MS`, 2 ms, 32 samples at 16 kHz: a pitch below 500 Hz
has its period, and so its ripple's quefrency, above it),

.. math::
    e = \mathrm{DFT}(c \cdot \mathbb{1}[n < q \lor n > N_{fft} - q]), \qquad h = \ell - e, \qquad
    P'[t, k] = \exp\bigl(e[k] + h(\min(k / \beta_b,\ K - 1))\bigr)

with :math:`h(\cdot)` read between bins by linear interpolation, as the band
warp reads bands.

**Warp at transcription** (``warp``, `FrontEnd.forward`): the band warp
with a chosen :math:`\alpha_b` instead of a drawn one, applied to Z at any
time, without SpecAugment. :math:`\alpha_b > 1` reads higher bands into
lower ones and so moves a voice's formants down (a shorter vocal tract heard
as a longer one); `unrolled.apps.transcriber` searches it per utterance.

Shapes: B batch, N samples, T frames, M mel bands.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.sound import SAMPLE_RATE  # Hz: every waveform reaches the front end at this rate

LOG_FLOOR = 1e-6  # epsilon: added to the mel energies before the log, so digital silence stays finite
NORM_EPS = 1e-5  # delta: added to a band's standard deviation, so a constant band normalises to 0
HTK_SCALE, HTK_BREAK = 2595.0, 700.0  # mel(f) = 2595 log10(1 + f / 700)
POWER_FLOOR = 1e-10  # epsilon of the pitch shift's log power spectrum
ENVELOPE_QUEFRENCY_MS = 2.0  # q: the pitch shift's envelope keeps quefrencies below this (periods of pitches > 500 Hz)


@dataclass
class FeatureConfig:
    """The front end's settings; saved with every speech checkpoint, so transcription computes the same features.

    rate       r, samples per second of the input waveforms
    window_ms  W in milliseconds (25: 400 samples at 16 kHz)
    hop_ms     R in milliseconds (10: 160 samples)
    bands      M, mel bands
    fmin       f_min in Hz; fmax f_max in Hz, None for r / 2
    stack      k, frames concatenated into one vector
    stride     s, keep every s-th stacked vector
    """

    rate: int = SAMPLE_RATE
    window_ms: float = 25.0
    hop_ms: float = 10.0
    bands: int = 80
    fmin: float = 20.0
    fmax: float | None = None
    stack: int = 1
    stride: int = 1

    @property
    def window(self) -> int:
        """W in samples."""
        return round(self.rate * self.window_ms / 1000)

    @property
    def hop(self) -> int:
        """R in samples."""
        return round(self.rate * self.hop_ms / 1000)

    @property
    def fft_size(self) -> int:
        """N_fft, the power of two at or above W."""
        return 1 << (self.window - 1).bit_length()

    @property
    def size(self) -> int:
        """The size of one output vector, k M."""
        return self.stack * self.bands

    def frames(self, samples: Tensor) -> Tensor:
        """T = 1 + floor(N / R): the frames of utterances of ``samples`` samples (int64, any shape)."""
        return 1 + torch.div(samples, self.hop, rounding_mode="floor")

    def validate(self) -> None:
        """A one-line ValueError for settings the front end cannot use."""
        top = self.rate / 2 if self.fmax is None else self.fmax
        if not 0 <= self.fmin < top <= self.rate / 2:
            raise ValueError(f"mel bands need 0 <= fmin < fmax <= rate / 2; got fmin {self.fmin}, fmax {top}, "
                             f"rate {self.rate}")
        if self.bands < 1 or self.stack < 1 or self.stride < 1 or not 0 < self.hop <= self.window:
            raise ValueError("bands, stack and stride must be at least 1, and the hop between 1 sample and the "
                             "window")


def hz_to_mel(hz: Tensor) -> Tensor:
    """HTK's mel scale, 2595 log10(1 + f / 700)."""
    return HTK_SCALE * torch.log10(1 + hz / HTK_BREAK)


def mel_to_hz(mel: Tensor) -> Tensor:
    """The inverse of `hz_to_mel`, 700 (10^(m / 2595) - 1)."""
    return HTK_BREAK * (torch.pow(10.0, mel / HTK_SCALE) - 1)


def mel_filterbank(*, rate: int, fft_size: int, bands: int, fmin: float, fmax: float) -> Tensor:
    """F (M, N_fft / 2 + 1) float64: triangular mel filters of peak 1, as in the module docstring."""
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(torch.tensor(fmin, dtype=torch.float64))),
                                     float(hz_to_mel(torch.tensor(fmax, dtype=torch.float64))),
                                     bands + 2, dtype=torch.float64))  # f_0 .. f_{M+1}
    bins = torch.arange(fft_size // 2 + 1, dtype=torch.float64) * rate / fft_size  # phi_k
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (M, 1) each
    rising = (bins - lower) / (centre - lower)  # (M, K)
    falling = (upper - bins) / (upper - centre)  # (M, K)
    return torch.clamp(torch.minimum(rising, falling), min=0)


def power_spectrum(waves: Tensor, config: FeatureConfig) -> Tensor:
    """P (B, T_max, N_fft / 2 + 1): |STFT|^2 of waves (B, N), zero-padded and centred, periodic Hann window."""
    window = torch.hann_window(config.window, periodic=True, dtype=waves.dtype, device=waves.device)
    spectrum = torch.stft(waves, n_fft=config.fft_size, hop_length=config.hop, win_length=config.window,
                          window=window, center=True, pad_mode="constant", return_complex=True)  # (B, K, T)
    return spectrum.abs().square().transpose(1, 2)  # (B, T, K)


def dft_power_spectrum(waves: Tensor, config: FeatureConfig) -> Tensor:
    r"""`power_spectrum`'s P (B, T_max, N_fft / 2 + 1), the STFT written as frames times a real DFT basis, in float64.

    With the window w zero-padded to N_fft as the STFT centres it, and
    :math:`\theta_{nk} = 2\pi\, (n k \bmod N_{fft}) / N_{fft}`,

    .. math::
        P[t, k] = \Bigl(\sum_n w[n] \tilde x[tR + n] \cos\theta_{nk}\Bigr)^2
                + \Bigl(\sum_n w[n] \tilde x[tR + n] \sin\theta_{nk}\Bigr)^2

    the frames gathered from the zero-padded signal (T_max = 1 + floor(N / R)).
    ONNX has no complex tensors, so this is the form `unrolled.export` traces
    (`FrontEnd.spectrum`); it agrees with the FFT to float32 rounding (tested).
    """
    size, hop = config.fft_size, config.hop
    bins = size // 2 + 1
    left = (size - config.window) // 2
    window = F.pad(torch.hann_window(config.window, periodic=True, dtype=torch.float64),
                   (left, size - config.window - left))  # w (N_fft,)
    n = torch.arange(size, dtype=torch.int64)
    turns = (n[:, None] * n[None, :bins]) % size  # n k mod N_fft (N_fft, K)
    theta = (2 * math.pi / size) * turns.to(torch.float64)
    basis = torch.cat([torch.cos(theta), torch.sin(theta)], dim=1) * window[:, None]  # (N_fft, 2K)
    padded = F.pad(waves.to(torch.float64), (size // 2, size // 2))  # x~ (B, N + N_fft)
    steps = 1 + waves.shape[1] // hop  # T_max (traced: a dynamic size)
    index = torch.arange(steps)[:, None] * hop + n[None, :]  # (T, N_fft)
    real, imaginary = (padded[:, index] @ basis).split(bins, dim=-1)  # (B, T, K) each
    return (real.square() + imaginary.square()).to(waves.dtype)


def frame_mask(lengths: Tensor, total: int) -> Tensor:
    """(B, total) bool, True at the first lengths[b] frames of each row."""
    return torch.arange(total, device=lengths.device)[None, :] < lengths[:, None]


def normalise(features: Tensor, lengths: Tensor) -> Tensor:
    """Z (B, T, M): each utterance's bands to mean 0 and standard deviation 1 over its own frames; padding 0.

    The sums run in float64: in float32 the rounding of a constant band's mean
    (about 1e-6 of log 1e-6) would be a deviation comparable to delta.
    """
    wide = features.to(torch.float64)
    mask = frame_mask(lengths, features.shape[1]).unsqueeze(-1).to(torch.float64)  # (B, T, 1)
    count = lengths.to(torch.float64).clamp(min=1)[:, None, None]  # (B, 1, 1)
    mean = (wide * mask).sum(dim=1, keepdim=True) / count  # (B, 1, M)
    centred = (wide - mean) * mask  # (B, T, M)
    deviation = torch.sqrt(centred.square().sum(dim=1, keepdim=True) / count)  # (B, 1, M)
    return (centred / (deviation + NORM_EPS)).to(features.dtype)


def stack_frames(features: Tensor, lengths: Tensor, *, stack: int, stride: int) -> tuple[Tensor, Tensor]:
    """Y (B, T', k M) and T'_b = ceil(T_b / s): k frames concatenated, every s-th kept, the last frame repeated.

    Rows past T'_b are 0.
    """
    if stack == 1 and stride == 1:
        return features, lengths
    batch, total, bands = features.shape
    out_lengths = torch.div(lengths + stride - 1, stride, rounding_mode="floor")  # ceil(T_b / s)
    out_total = (total + stride - 1) // stride  # ceil(T / s), written without negatives (ONNX divides toward 0)
    starts = torch.arange(out_total, device=features.device) * stride  # (T',)
    index = starts[:, None] + torch.arange(stack, device=features.device)[None, :]  # (T', k)
    last = (lengths - 1).clamp(min=0)[:, None, None]  # (B, 1, 1)
    index = torch.minimum(index[None], last)  # (B, T', k)
    gathered = torch.gather(features, 1, index.reshape(batch, -1, 1).expand(-1, -1, bands))  # (B, T' k, M)
    stacked = gathered.reshape(batch, out_total, stack * bands)  # (B, T', k M)
    mask = frame_mask(out_lengths, out_total).unsqueeze(-1).to(features.dtype)
    return stacked * mask, out_lengths


@dataclass
class SpecAugmentConfig:
    """SpecAugment's masks (Park et al. 2019; the LD policy's frequency masks, shorter time masks for short clips).

    freq_masks  m_F, frequency masks per utterance; freq_width F, the widest (bands)
    time_masks  m_T, time masks per utterance; time_width T_w, the widest (frames)
    time_share  p, no time mask wider than this share of the utterance's frames
    band_warp   w, the largest warp of the mel axis (0: none)
    pitch_shift S, the largest pitch shift in semitones, envelope kept (0: none)
    """

    freq_masks: int = 2
    freq_width: int = 27
    time_masks: int = 2
    time_width: int = 40
    time_share: float = 0.2
    band_warp: float = 0.0
    pitch_shift: float = 0.0


def spec_augment(features: Tensor, lengths: Tensor, config: SpecAugmentConfig, *,
                 generator: torch.Generator | None = None) -> Tensor:
    """Z (B, T, M) with SpecAugment's masks set to 0 (a new tensor), then its bands warped if ``band_warp`` > 0,
    as in the module docstring.

    Masks lie within each utterance's own T_b frames; ``generator`` seeds them and the warps.
    """
    batch, total, bands = features.shape
    keep = torch.ones(batch, total, bands, dtype=torch.bool)  # (B, T, M), on the CPU, where the generator is
    for b in range(batch):
        frames = int(lengths[b])
        for _ in range(config.freq_masks):
            start, width = _draw_mask(bands, min(config.freq_width, bands), generator)
            keep[b, :, start : start + width] = False
        for _ in range(config.time_masks):
            widest = min(config.time_width, math.floor(config.time_share * frames))
            start, width = _draw_mask(frames, widest, generator)
            keep[b, start : start + width, :] = False
    masked = features * keep.to(features.device, features.dtype)
    if config.band_warp > 0:
        factors = 1 + config.band_warp * (2 * torch.rand(batch, generator=generator) - 1)  # alpha_b (B,)
        masked = warp_bands(masked, factors.to(features.device))
    return masked


def warp_bands(features: Tensor, factors: Tensor) -> Tensor:
    """Z' (B, T, M): each utterance's bands read at alpha_b m (clamped to the top band), linearly interpolated."""
    bands = features.shape[-1]
    wide = torch.promote_types(features.dtype, torch.float32)
    source = (torch.arange(bands, device=features.device, dtype=wide) * factors[:, None].to(wide)).clamp(
        max=bands - 1)  # (B, M)
    low = source.floor().long()
    high = (low + 1).clamp(max=bands - 1)
    weight = (source - low).to(features.dtype)[:, None, :]  # (B, 1, M)
    index = low[:, None, :].expand(-1, features.shape[1], -1)
    upper = high[:, None, :].expand(-1, features.shape[1], -1)
    return (1 - weight) * features.gather(2, index) + weight * features.gather(2, upper)


def shift_pitch(power: Tensor, factors: Tensor, *, quefrency: int) -> Tensor:
    """P' (B, T, K): each utterance's harmonics spread by beta_b, its cepstral envelope kept (module docstring).

    ``factors`` is beta (B,); ``quefrency`` is q in samples. The transform
    runs in float64 so that beta = 1 gives back P + epsilon to rounding.
    """
    bins = power.shape[-1]
    fft_size = 2 * (bins - 1)
    logs = torch.log(power.to(torch.float64) + POWER_FLOOR)  # l (B, T, K)
    cepstrum = torch.fft.irfft(logs, n=fft_size, dim=-1)  # c (B, T, N_fft), real and even
    n = torch.arange(fft_size, device=power.device)
    low = ((n < quefrency) | (n > fft_size - quefrency)).to(torch.float64)
    envelope = torch.fft.rfft(cepstrum * low, dim=-1).real  # e (B, T, K)
    fine = logs - envelope  # h
    moved = warp_bands(fine, 1 / factors.to(torch.float64))  # h read at k / beta_b, as the band warp reads
    return torch.exp(envelope + moved).to(power.dtype)


def _draw_mask(size: int, widest: int, generator: torch.Generator | None) -> tuple[int, int]:
    """(start, width): width ~ U{0 .. widest}, start ~ U{0 .. size - width}."""
    width = int(torch.randint(0, max(widest, 0) + 1, (), generator=generator))
    start = int(torch.randint(0, size - width + 1, (), generator=generator))
    return start, width


class FrontEnd(nn.Module):
    """Waveforms (B, N) with sample lengths (B,) -> vectors Y (B, T', k M) with frame lengths (B,).

    The filter bank is a buffer left out of the state dict: the config makes it.
    ``augment`` (training) applies SpecAugment between normalising and stacking.
    ``spectrum`` computes P: `power_spectrum` (the FFT), or `dft_power_spectrum`,
    which export swaps in (`unrolled.export`).
    """

    filterbank: Tensor  # F (M, N_fft / 2 + 1)

    def __init__(self, config: FeatureConfig | None = None) -> None:
        super().__init__()
        self.config = config or FeatureConfig()
        self.config.validate()
        top = self.config.rate / 2 if self.config.fmax is None else self.config.fmax
        bank = mel_filterbank(rate=self.config.rate, fft_size=self.config.fft_size, bands=self.config.bands,
                              fmin=self.config.fmin, fmax=top)
        self.register_buffer("filterbank", bank.to(torch.float32), persistent=False)  # (M, K)
        self.spectrum: Callable[[Tensor, FeatureConfig], Tensor] = power_spectrum

    def log_mel(self, waves: Tensor, lengths: Tensor, *, pitch: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """L (B, T, M), the log mel energies, and T_b (B,).

        ``pitch`` (B,), the factors beta_b, shifts each utterance's pitch first (`shift_pitch`).
        """
        power = self.spectrum(waves, self.config)  # (B, T, K)
        if pitch is not None:
            quefrency = round(self.config.rate * ENVELOPE_QUEFRENCY_MS / 1000)
            power = shift_pitch(power, pitch.to(power.device), quefrency=quefrency)
        mel = power @ self.filterbank.to(power.dtype).T  # (B, T, M)
        return torch.log(mel + LOG_FLOOR), self.config.frames(lengths)

    def forward(self, waves: Tensor, lengths: Tensor, *, augment: SpecAugmentConfig | None = None,
                generator: torch.Generator | None = None, warp: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Y (B, T', k M) and T'_b (B,). ``warp`` (B,), factors alpha_b: each utterance's normalised bands read at
        alpha_b m (`warp_bands`, module docstring), before any augmentation."""
        pitch = None
        if augment is not None and augment.pitch_shift > 0:
            semitones = augment.pitch_shift * (2 * torch.rand(waves.shape[0], generator=generator) - 1)  # u_b
            pitch = torch.pow(2.0, semitones / 12)  # beta_b (B,)
        logs, frames = self.log_mel(waves, lengths, pitch=pitch)  # (B, T, M), (B,)
        features = normalise(logs, frames)  # (B, T, M)
        if warp is not None:
            features = warp_bands(features, warp.to(features.device))
        if augment is not None:
            features = spec_augment(features, frames, augment, generator=generator)
        return stack_frames(features, frames, stack=self.config.stack, stride=self.config.stride)
