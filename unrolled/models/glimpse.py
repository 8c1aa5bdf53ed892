r"""Recurrent visual attention: read a sequence of digits from an image by a sequence of glimpses (DRAM).

The lecture's Example V ("even if we do not have sequences, we can still use
RNNs to process the single fixed input in a sequence"): Ba, Mnih and
Kavukcuoglu 2014, *Multiple object recognition with visual attention*.

Glimpse sensor at location :math:`l = (y, x) \in [-1, 1]^2` (the image's
centre is 0): k square patches centred on l, of sides g, 2g, ..., 2^{k-1}g
pixels, each averaged down to g x g (zeros outside the image):

.. math::
    x_n &= \rho(I, l_n)  &&(k\,g\,g)\\
    g_n &= \mathrm{relu}(W_x x_n + b_x) \odot \mathrm{relu}(W_l l_n + b_l)  &&\text{what times where } (G)

Recurrent core, two LSTMs: the lower classifies, the upper steers:

.. math::
    r^{(1)}_n &= \mathrm{LSTM}_1(g_n, r^{(1)}_{n-1}),\quad r^{(2)}_n = \mathrm{LSTM}_2(h^{(1)}_n, r^{(2)}_{n-1})\\
    \mu_{n+1} &= \tanh(W_e h^{(2)}_n + b_e),\quad l_{n+1} \sim \mathcal N(\mu_{n+1}, \sigma^2 I)
        \text{ (clipped to } [-1, 1]\text{; } l = \mu \text{ when not training)}

Context network: a CNN (three 3x3 convolutions, the last two of stride 2, and
a linear layer) on the image averaged down to a coarse grid gives the
upper LSTM's first state, :math:`h^{(2)}_0 = \mathrm{CNN}_c(I_{coarse})`,
:math:`c^{(2)}_0 = 0`, so the first location :math:`\mu_1` comes from the
whole image; :math:`r^{(1)}_0 = 0`.

Reading: after every P glimpses the lower state names the next symbol, digit
s = 1 .. S (the last symbol of a string is ``<end>``, then nothing is read):

.. math::
    p(y_s \mid I) = \mathrm{softmax}(W_c h^{(1)}_{sP} + b_c)  &&(11\text{: the digits and } \langle end\rangle)

Training (N = S P glimpses): the labels by cross-entropy (the mean over the
real symbols of the batch), the locations by REINFORCE with a learned baseline
:math:`b_n = w_b^\top \mathrm{sg}(h^{(2)}_{n-1}) + c_b`, and the baseline by
regression. Glimpse n is credited with what is read after it (reward to go):
with :math:`c_s = 1` while symbols 1..s of the string (its digits and END,
:math:`m` of them) were all read right,

.. math::
    G_n = \frac1m \sum_{s \ge \lfloor n / P \rfloor} c_s \quad (G_0 = R,\ \text{the share read before the first
    mistake}),\qquad
    \mathcal L = \mathrm{CE} - \frac1B \sum_b \sum_n \mathrm{sg}(G_{bn} - b_{bn}) \log \pi(l_{bn})
        + \frac1{BN} \sum_{b,n} (G_{bn} - b_{bn})^2 + \lambda\, \overline{\lVert \mu_{bn} - z_{b, \lfloor n/P \rfloor}
        \rVert^2}

The last term is *guidance* (weight `guide` = lambda, off at 0): where the data
know the box of every digit, the mean location of each glimpse before symbol s
is pulled to the centre :math:`z_{b,s}` of digit s's box (averaged over the
glimpses with a box; END has none). From scratch, REINFORCE alone has no
signal until the classifier can read, and the classifier cannot read until the
glimpses find the digits: on ``digit-strings`` it read 2.3% of the strings
after 30 minutes here. Guiding early glimpses to salient places is Lindsey's
(2017, *Pre-training attention mechanisms*) remedy; here the boxes say where.
REINFORCE still shapes the sampled glimpses around the means.

Shapes: B batch, H x W image, k scales of g x g patches, G glimpse features,
U core units, S symbols, P glimpses per symbol.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.cells import LSTMCell

KIND = "glimpse"
END = 10  # the <end> symbol; 0..9 are the digits
SYMBOLS = 11
IGNORE = -100  # labels past <end>
SENSORS = ("linear", "conv")  # the glimpse network's "what" part


@dataclass
class GlimpseConfig:
    """DRAM's shape; saved in every checkpoint.

    glimpse     g, the side of each patch after averaging (pixels)
    scales      k patches of sides g, 2g, ..., 2^(k-1) g
    features    G, the glimpse network's output
    hidden      U, units of each core LSTM
    per_symbol  P, glimpses before each symbol is named
    max_digits  the longest string read (S = max_digits + 1 with <end>)
    std         sigma of the location policy (in units of half the image)
    context     the coarse image's grid (rows, columns) for the context network
    guide       lambda, the weight of guidance towards the digits' boxes (0: REINFORCE alone)
    sensor      the "what" part of the glimpse network on the k patches: "linear" (W_x x_n + b_x, as above)
                or "conv" (two 3x3 convolutions of 32 channels, the second of stride 2, then a linear layer)
    """

    glimpse: int = 12
    scales: int = 3
    features: int = 256
    hidden: int = 256
    per_symbol: int = 3
    max_digits: int = 5
    std: float = 0.1
    context: tuple[int, int] = (12, 40)
    guide: float = 0.0
    sensor: str = "linear"

    def __post_init__(self) -> None:
        for name in ("glimpse", "scales", "features", "hidden", "per_symbol", "max_digits"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.sensor not in SENSORS:
            raise ValueError(f"sensor must be one of {', '.join(SENSORS)}, got {self.sensor!r}")
        if self.guide < 0:
            raise ValueError(f"guide must be at least 0, got {self.guide}")
        if not 0 < self.std < 1:
            raise ValueError(f"std must be in (0, 1), got {self.std}")
        self.context = (int(self.context[0]), int(self.context[1]))

    @property
    def symbols(self) -> int:
        """S: the digits of the longest string and <end>."""
        return self.max_digits + 1


def glimpse_patches(images: Tensor, centres: Tensor, size: int, scales: int) -> Tensor:
    """rho(I, l): images (B, 1, H, W), centres (B, 2) as (y, x) in [-1, 1] -> patches (B, k, g, g).

    Patch j covers 2^j g x 2^j g pixels around the centre, sampled bilinearly
    at every pixel (zeros outside the image) and averaged down to g x g.
    """
    batch, _, height, width = images.shape
    patches = []
    for j in range(scales):
        side = size * 2 ** j
        theta = images.new_zeros(batch, 2, 3)  # maps the patch's [-1, 1]^2 onto the image's
        theta[:, 0, 0] = side / width
        theta[:, 1, 1] = side / height
        theta[:, 0, 2] = centres[:, 1]  # x
        theta[:, 1, 2] = centres[:, 0]  # y
        grid = F.affine_grid(theta, [batch, 1, side, side], align_corners=False)
        patch = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        patches.append(F.avg_pool2d(patch, 2 ** j) if j else patch)  # (B, 1, g, g)
    return torch.cat(patches, dim=1)


class Glimpses(nn.Module):
    """DRAM: sensor, glimpse network, two-layer core, context network, emission, classifier and baseline.

    `forward(images)` -> logits (B, S, 11), locations (B, N, 2), means (B, N, 2)
    and baselines (B, N); `loss(batch)` with ``batch.images`` (B, 1, H, W) in
    [0, 1] and ``batch.labels`` (B, S) (digits, then END, then IGNORE).
    """

    def __init__(self, config: GlimpseConfig) -> None:
        super().__init__()
        self.config = c = config
        if c.sensor == "conv":
            side = (c.glimpse + 1) // 2
            self.what: nn.Module = nn.Sequential(
                nn.Conv2d(c.scales, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, stride=2, padding=1),
                nn.ReLU(), nn.Flatten(), nn.Linear(32 * side * side, c.features))
        else:
            self.what = nn.Sequential(nn.Flatten(), nn.Linear(c.scales * c.glimpse * c.glimpse, c.features))
        self.where = nn.Linear(2, c.features)
        self.lower = LSTMCell(c.features, c.hidden)
        self.upper = LSTMCell(c.hidden, c.hidden)
        rows, columns = (c.context[0] + 3) // 4, (c.context[1] + 3) // 4  # after two stride-2 convolutions
        self.context = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(32 * rows * columns, c.hidden), nn.Tanh())
        self.emit = nn.Linear(c.hidden, 2)
        self.classify = nn.Linear(c.hidden, SYMBOLS)
        self.baseline = nn.Linear(c.hidden, 1)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        c = self.config
        batch = images.shape[0]
        coarse = F.adaptive_avg_pool2d(images, c.context)  # (B, 1, h, w)
        h2 = self.context(coarse - 0.5)  # (B, U)
        zeros = h2.new_zeros(batch, c.hidden)
        lower, upper = (zeros, zeros), (h2, zeros)
        logits, locations, means, baselines = [], [], [], []
        for n in range(c.symbols * c.per_symbol):
            mean = torch.tanh(self.emit(upper[0]))  # mu_n, (B, 2)
            baselines.append(self.baseline(upper[0].detach()).squeeze(1))  # b_n, (B,)
            location = mean  # l_n: the mean when reading
            if self.training:  # l_n ~ N(mu_n, sigma^2 I), clipped to the image
                location = (mean.detach() + c.std * torch.randn_like(mean)).clamp(-1.0, 1.0)
            x = glimpse_patches(images, location, c.glimpse, c.scales)  # (B, k, g, g)
            g = F.relu(self.what(x - 0.5)) * F.relu(self.where(location))  # (B, G)
            h1, lower = self.lower(g, lower)
            _, upper = self.upper(h1.detach(), upper)  # steering's gradients stay out of the reading core
            if (n + 1) % c.per_symbol == 0:
                logits.append(self.classify(h1))  # (B, 11)
            locations.append(location)
            means.append(mean)
        return (torch.stack(logits, 1), torch.stack(locations, 1), torch.stack(means, 1),
                torch.stack(baselines, 1))

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """CE + REINFORCE + baseline regression (the module docstring); metrics: tokens, accuracy (symbols),
        nll, reward (mean R), sequence_error (strings not read whole)."""
        labels = batch.labels  # (B, S)
        logits, locations, means, baselines = self(batch.images)
        nll = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
        to_go = reward_to_go(logits.detach(), labels, self.config.per_symbol)  # (B, N)
        reward = to_go[:, 0]  # R (B,), the whole string's
        std = self.config.std
        log_pi = (-((locations - means) ** 2) / (2 * std ** 2) - math.log(std * math.sqrt(2 * math.pi))).sum(-1)
        advantage = (to_go - baselines).detach()  # (B, N)
        reinforce = -(advantage * log_pi).sum(1).mean()
        regression = ((to_go - baselines) ** 2).mean()
        real = labels != IGNORE
        with torch.no_grad():
            right = (logits.argmax(-1) == labels) & real
        metrics = {"tokens": float(real.sum()), "accuracy": float(right.sum()) / float(real.sum().clamp(min=1)),
                   "nll": float(nll.detach()), "reward": float(reward.mean()),
                   "sequence_error": float((reward < 1).float().mean())}
        loss = nll + reinforce + regression if self.training else nll
        centres = getattr(batch, "centres", None)
        if self.training and self.config.guide > 0 and centres is not None:
            target = centres.repeat_interleave(self.config.per_symbol, dim=1)  # (B, N, 2), NaN where no box
            known = ~target.isnan().any(-1)
            if known.any():
                guided = ((means - target.nan_to_num()) ** 2).sum(-1)[known].mean()
                loss = loss + self.config.guide * guided
                metrics["guide"] = float(guided.detach())
        return loss, metrics

    @torch.inference_mode()
    def read(self, images: Tensor) -> tuple[list[list[int]], Tensor]:
        """The digits read from each image (up to the first <end>), and the glimpse centres (B, N, 2)."""
        was = self.training
        self.eval()
        try:
            logits, locations, _, _ = self(images)
        finally:
            self.train(was)
        return [strip_end(row) for row in logits.argmax(-1).tolist()], locations


def strip_end(symbols: list[int]) -> list[int]:
    """The digits before the first END (all of them if there is none)."""
    return symbols[: symbols.index(END)] if END in symbols else symbols


def read_prefix(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """c (B, S) int64: 1 while every real symbol so far was read right, 0 from the first mistake and past the string;
    and m (B, 1) float: the count of real symbols (its digits and END), at least 1."""
    real = labels != IGNORE  # (B, S)
    right = (logits.argmax(-1) == labels) | ~real
    return right.long().cumprod(dim=1) & real, real.sum(1, keepdim=True).clamp(min=1).float()


def read_reward(logits: Tensor, labels: Tensor) -> Tensor:
    """R (B,): the fraction of each string's symbols (its digits and END) read right before the first mistake."""
    prefix, count = read_prefix(logits, labels)
    return prefix.sum(1).float() / count.squeeze(1)


def reward_to_go(logits: Tensor, labels: Tensor, per_symbol: int) -> Tensor:
    """G (B, N): for glimpse n, the share of the string's symbols named at or after glimpse n (symbols s >= n // P)
    that were read right with every symbol before them; G at n = 0 is `read_reward`."""
    prefix, count = read_prefix(logits, labels)
    after = prefix.flip(1).cumsum(1).flip(1).float() / count  # (B, S): the share read right from symbol s on
    return after.repeat_interleave(per_symbol, dim=1)


def symbol_labels(strings: list[list[int]], symbols: int) -> Tensor:
    """(B, S): each string's digits, END, then IGNORE; a ValueError for a string longer than S - 1 digits."""
    table = torch.full((len(strings), symbols), IGNORE, dtype=torch.long)
    for b, digits in enumerate(strings):
        if len(digits) >= symbols:
            raise ValueError(f"string {b} has {len(digits)} digits; this model reads at most {symbols - 1}")
        table[b, : len(digits)] = torch.tensor(digits, dtype=torch.long)
        table[b, len(digits)] = END
    return table


@dataclass
class DigitCNNConfig:
    """The baseline's shape: four 3x3 convolution blocks (each then 2x2 max-pooled) of `channels`, a hidden layer
    of `hidden` units, and one 11-way head per symbol (Goodfellow et al. 2013's multi-digit network, smaller)."""

    height: int = 48
    width: int = 160
    channels: tuple[int, ...] = (32, 64, 64, 64)
    hidden: int = 512
    max_digits: int = 5

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        if self.height < 2 ** len(self.channels) or self.width < 2 ** len(self.channels):
            raise ValueError(f"images of {self.height} x {self.width} are too small for {len(self.channels)} "
                             "poolings")
        if self.max_digits < 1 or self.hidden < 1 or min(self.channels, default=0) < 1:
            raise ValueError("max_digits, hidden and every channel count must be at least 1")

    @property
    def symbols(self) -> int:
        return self.max_digits + 1


class DigitCNN(nn.Module):
    """images (B, 1, H, W) -> logits (B, S, 11): every symbol at once, no recurrence, no glimpses."""

    def __init__(self, config: DigitCNNConfig) -> None:
        super().__init__()
        self.config = c = config
        layers: list[nn.Module] = []
        width = 1
        for out in c.channels:
            layers += [nn.Conv2d(width, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            width = out
        self.features = nn.Sequential(*layers, nn.Flatten())
        shrink = 2 ** len(c.channels)
        self.hidden = nn.Linear(width * (c.height // shrink) * (c.width // shrink), c.hidden)
        self.heads = nn.Linear(c.hidden, c.symbols * SYMBOLS)

    def forward(self, images: Tensor) -> Tensor:
        h = F.relu(self.hidden(self.features(images - 0.5)))  # (B, hidden)
        return self.heads(h).view(images.shape[0], self.config.symbols, SYMBOLS)  # (B, S, 11)

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """The mean cross-entropy over the real symbols; the same metrics as `Glimpses.loss`."""
        labels = batch.labels
        logits = self(batch.images)
        nll = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
        real = labels != IGNORE
        with torch.no_grad():
            right = (logits.argmax(-1) == labels) & real
            reward = read_reward(logits, labels)
        return nll, {"tokens": float(real.sum()), "accuracy": float(right.sum()) / float(real.sum().clamp(min=1)),
                     "nll": float(nll.detach()), "reward": float(reward.mean()),
                     "sequence_error": float((reward < 1).float().mean())}

    @torch.inference_mode()
    def read(self, images: Tensor) -> tuple[list[list[int]], None]:
        """The digits read from each image (up to the first <end>); no glimpses."""
        was = self.training
        self.eval()
        try:
            logits = self(images)
        finally:
            self.train(was)
        return [strip_end(row) for row in logits.argmax(-1).tolist()], None
