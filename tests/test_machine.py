"""The thread governor: other programs' load from /proc/stat, and the thread count it leaves a run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from unrolled.machine import CoreWatch, ThreadGovernor

TICK = os.sysconf("SC_CLK_TCK")


class FakeMachine:
    """A /proc/stat of its own, a clock and this process's CPU time, moved by the test."""

    def __init__(self, path: Path) -> None:
        self.path, self.now, self.own, self.busy, self.idle = path, 0.0, 0.0, 0.0, 0.0
        self.write()

    def write(self) -> None:
        user, idle = round(self.busy * TICK), round(self.idle * TICK)
        # cpu  user nice system idle iowait irq softirq steal guest guest_nice
        self.path.write_text(f"cpu  {user} 0 0 {idle} 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n")

    def run(self, seconds: float, *, ours: float, others: float, cores: int = 2) -> None:
        """`seconds` pass with `ours` and `others` cores busy."""
        self.now += seconds
        self.own += ours * seconds
        self.busy += (ours + others) * seconds
        self.idle += max(0.0, cores - ours - others) * seconds
        self.write()

    def watch(self) -> CoreWatch:
        return CoreWatch(stat=self.path, clock=lambda: self.now, own=lambda: self.own)


def test_the_watch_tells_other_programs_load_apart_from_our_own(tmp_path: Path) -> None:
    machine = FakeMachine(tmp_path / "stat")
    watch = machine.watch()
    machine.run(2.0, ours=2.0, others=0.0)
    assert watch.sample() == pytest.approx(0.0, abs=0.02)
    machine.run(2.0, ours=1.3, others=0.7)  # three busy threads on two cores share them
    assert watch.sample() == pytest.approx(0.7, abs=0.02)
    machine.run(0.01, ours=1.0, others=1.0)  # too short a window to tell
    assert watch.sample() is None


def test_without_proc_stat_the_watch_says_nothing(tmp_path: Path) -> None:
    assert CoreWatch(stat=tmp_path / "missing").sample() is None


@pytest.mark.parametrize(("others", "most", "expected"), [
    (0.0, 2, 2), (0.3, 2, 2), (0.6, 2, 1), (0.7, 2, 1), (1.0, 2, 1), (2.5, 2, 1),  # two cores
    (0.0, 1, 1),  # never above what the user set (OMP_NUM_THREADS=1)
])
def test_the_governor_leaves_the_cores_others_keep_busy(others: float, most: int, expected: int) -> None:
    governor = ThreadGovernor(most, cores=2, watch=CoreWatch(stat=Path("/nonexistent")))
    assert governor.choose(others) == expected


def test_the_governor_lowers_torch_threads_under_load_and_raises_them_after(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    machine = FakeMachine(tmp_path / "stat")
    try:
        torch.set_num_threads(2)
        governor = ThreadGovernor(cores=2, watch=machine.watch())
        machine.run(3.0, ours=1.3, others=0.7)
        assert governor.update() == 1 and torch.get_num_threads() == 1
        machine.run(3.0, ours=1.0, others=1.0)
        assert governor.update() is None and torch.get_num_threads() == 1  # unchanged: nothing to do
        machine.run(3.0, ours=1.0, others=0.0)  # the other program ended
        assert governor.update() == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
