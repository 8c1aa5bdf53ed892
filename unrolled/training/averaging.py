r"""Averaged weights: an exponential moving average of the parameters, used for validation and saving.

The weights of a network trained with a noisy optimiser wander around a good
point; their running average sits closer to it (Polyak and Juditsky 1992; the
averaged SGD of Merity et al. 2018's AWD-LSTM, the EMA of many later recipes).
After the n-th update,

.. math::
    d_n = \min\Bigl(d,\ \frac{1 + n}{10 + n}\Bigr), \qquad
    \bar\theta_n = d_n\, \bar\theta_{n-1} + (1 - d_n)\, \theta_n, \qquad \bar\theta_0 = \theta_0,

so the average follows the weights closely at first (d_1 = 2/11) and later
spans about 1 / (1 - d) updates (``TrainConfig.average``, e.g. 0.999: the last
thousand or so). Training goes on with the raw weights :math:`\theta`;
validation, ``best/`` and the model every checkpoint holds are the average
:math:`\bar\theta`, so a predictor loads it with no extra step. To resume, the
checkpoint's training state keeps the raw weights and n (``"average"``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn


class WeightAverage:
    """The average of `parameters` (kept in float32), updated by `update()` after every optimiser step."""

    def __init__(self, parameters: list[nn.Parameter], decay: float) -> None:
        self.parameters = parameters
        self.decay = decay
        self.updates = 0
        self.shadow = [p.detach().float().clone() for p in parameters]

    def rate(self) -> float:
        """d_n of the update about to be made (n = updates + 1)."""
        n = self.updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self) -> None:
        """theta_bar <- d_n theta_bar + (1 - d_n) theta."""
        d = self.rate()
        for average, weight in zip(self.shadow, self.parameters, strict=True):
            average.lerp_(weight.detach().float(), 1.0 - d)
        self.updates += 1

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Inside: the parameters hold the average; after: the raw weights again, exactly."""
        raw = [p.detach().clone() for p in self.parameters]
        with torch.no_grad():
            for weight, average in zip(self.parameters, self.shadow, strict=True):
                weight.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for weight, saved in zip(self.parameters, raw, strict=True):
                    weight.copy_(saved)

    def state_dict(self) -> dict[str, Any]:
        """What a resume needs besides the average (which the checkpoint's model holds): n and the raw weights."""
        return {"updates": self.updates, "raw": {str(i): p.detach().clone() for i, p in enumerate(self.parameters)}}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """After the checkpoint's model (the average) was loaded: take it as the average and put the raw weights
        back; a state of None (a run saved without averaging) starts the average from the loaded weights."""
        self.shadow = [p.detach().float().clone() for p in self.parameters]
        if state is None:
            self.updates = 0
            return
        self.updates = int(state["updates"])
        restore_raw(self.parameters, state)


@torch.no_grad()
def restore_raw(parameters: list[nn.Parameter], state: dict[str, Any]) -> None:
    """Copy the raw weights saved by `WeightAverage.state_dict` into `parameters` (a run resumed without
    averaging goes on from them, not from the average its checkpoint's model holds)."""
    raw: dict[str, Tensor] = state["raw"]
    if len(raw) != len(parameters):
        raise ValueError(f"the checkpoint's averaged run saved {len(raw)} raw weight tensors, the model has "
                         f"{len(parameters)}: resume with the model it was trained with")
    for i, weight in enumerate(parameters):
        weight.copy_(raw[str(i)])
