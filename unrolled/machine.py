r"""What the machine leaves a training run: its cores, less those other programs keep busy.

PyTorch's CPU kernels split each operation over T threads and wait at its end
for the slowest. A recurrent step is many small operations, so when another
program keeps a core busy, the thread that shares it waits for a time slice at
every operation, and the whole run crawls: on this 2-core machine a 2 x 256
LSTM step in bfloat16 ran at about 70,000 characters/s alone, and at 1,000 to
3,000 with two threads while a test suite kept one core busy (the issue's
"stall" of 54 s over ten steps looked the same). With one thread it keeps the
free core's full speed. So a run should use the cores that are free, and follow
them as other programs come and go.

Over a window of wall time :math:`\Delta t`, with :math:`\Delta b` the busy
CPU time of the whole machine (``/proc/stat``: all but idle and iowait) and
:math:`\Delta o` this process's own CPU time (`os.times`):

.. math::
    \text{others} = (\Delta b - \Delta o) / \Delta t \qquad
    \text{threads} = \mathrm{clamp}(\lfloor C - \text{others} + 1/2 \rfloor, 1, T_{\max})

where C is the number of cores this process may run on and :math:`T_{\max}`
torch's thread count at the start (``OMP_NUM_THREADS`` or torch's default): the
governor only ever lowers it, never above what the user set. Where
``/proc/stat`` does not exist (macOS, Windows) it changes nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

STAT = Path("/proc/stat")


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the system tells it, else all of them)."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        return max(1, len(affinity(0)))
    return max(1, os.cpu_count() or 1)


def _busy_seconds(stat: Path) -> float | None:
    """CPU seconds the whole machine has spent busy since boot (None where /proc/stat is missing)."""
    try:
        with open(stat, encoding="ascii") as file:
            fields = file.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(value) for value in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle and iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # guest time is counted in user already


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system


class CoreWatch:
    """How many cores other programs kept busy since the last `sample()` (None when the system does not say)."""

    def __init__(self, *, stat: Path = STAT, clock: Callable[[], float] = time.monotonic,
                 own: Callable[[], float] = _own_seconds) -> None:
        self.stat, self.clock, self.own = stat, clock, own
        self._last = self._read()

    def _read(self) -> tuple[float, float, float] | None:
        busy = _busy_seconds(self.stat)
        return None if busy is None else (self.clock(), busy, self.own())

    def sample(self) -> float | None:
        """Cores' worth of other programs' CPU time per second since the previous sample (or the start)."""
        now = self._read()
        if now is None or self._last is None:
            return None
        (t0, busy0, own0), (t1, busy1, own1) = self._last, now
        self._last = now
        if t1 - t0 <= 0.05:  # too short to tell (the counters move in 10 ms ticks)
            return None
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / (t1 - t0))


class ThreadGovernor:
    """Keep torch's CPU threads to the cores other programs leave free; call `update()` every few seconds.

    `most` is the ceiling (default: torch's thread count now). `update()`
    returns the new thread count when it changed it, else None.
    """

    def __init__(self, most: int | None = None, *, cores: int | None = None, watch: CoreWatch | None = None) -> None:
        self.most = most or torch.get_num_threads()
        self.cores = cores or usable_cores()
        self.watch = watch or CoreWatch()
        self.threads = torch.get_num_threads()

    def choose(self, others: float) -> int:
        """threads = clamp(floor(C - others + 1/2), 1, most)."""
        return max(1, min(self.most, int(self.cores - others + 0.5)))

    def update(self) -> int | None:
        others = self.watch.sample()
        if others is None:
            return None
        wanted = self.choose(others)
        if wanted == self.threads:
            return None
        torch.set_num_threads(wanted)
        self.threads = wanted
        return wanted
