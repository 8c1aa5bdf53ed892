"""LSTMVis' select and match rules against a plain-Python reference, on random and hand-made state maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unrolled.viz.select import Match, match_ranges, on_runs, select_cells


def select_reference(x: np.ndarray, start: int, end: int, theta: float) -> list[int]:
    cells, n = [], x.shape[1]
    for c in range(x.shape[0]):
        inside = all(x[c, t] >= theta for t in range(start, end + 1))
        before = start == 0 or x[c, start - 1] < theta
        after = end == n - 1 or x[c, end + 1] < theta
        if inside and before and after:
            cells.append(c)
    return cells


def match_reference(x: np.ndarray, cells: list[int], theta: float, query: tuple[int, int],
                    fraction: float, limit: int) -> list[Match]:
    k, n = len(cells), x.shape[1]
    needed = math.ceil(fraction * k)
    counts = [sum(x[c, t] >= theta for c in cells) for t in range(n)]
    runs, t = [], 0
    while t < n:
        if counts[t] >= needed:
            a = t
            while t + 1 < n and counts[t + 1] >= needed:
                t += 1
            runs.append((a, t))
        t += 1
    found = []
    for a, b in runs:
        if a <= query[0] and b >= query[1]:
            continue
        full = sum(all(x[c, u] >= theta for u in range(a, b + 1)) for c in cells)
        found.append((-full / k, abs((b - a) - (query[1] - query[0])), a, b))
    return [Match(a, b, -score) for score, _, a, b in sorted(found)[:limit]]


def test_select_on_a_hand_made_map() -> None:
    x = np.array([[0, 1, 1, 1, 0, 0],    # on over 1..3, off around: selected
                  [0, 1, 1, 1, 1, 0],    # still on at 4: not
                  [1, 1, 1, 1, 0, 0],    # on before: not
                  [0, 1, 0, 1, 0, 0]],   # off inside: not
                 dtype=np.float16)
    assert select_cells(x, 1, 3, 0.5).tolist() == [0]
    assert select_cells(x, 0, 3, 0.5).tolist() == [2]  # no condition before position 0
    with pytest.raises(ValueError, match="not inside"):
        select_cells(x, 4, 6, 0.5)


def test_on_runs() -> None:
    starts, ends = on_runs(np.array([True, True, False, True, False, False, True]))
    assert starts.tolist() == [0, 3, 6] and ends.tolist() == [1, 3, 6]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), cells=st.integers(1, 12), steps=st.integers(2, 60),
       theta=st.sampled_from([-0.2, 0.0, 0.3]), fraction=st.sampled_from([0.25, 0.5, 1.0]))
def test_select_and_match_equal_the_reference(seed: int, cells: int, steps: int, theta: float,
                                              fraction: float) -> None:
    rng = np.random.default_rng(seed)
    # smooth-ish tracks, so that runs of several steps occur
    x = np.cumsum(rng.normal(size=(cells, steps)), axis=1).astype(np.float16) / 3
    start = int(rng.integers(0, steps))
    end = int(rng.integers(start, min(steps, start + 6)))
    chosen = select_cells(x, start, end, theta)
    assert chosen.tolist() == select_reference(x, start, end, theta)
    query = chosen.tolist() or list(range(min(3, cells)))
    got = match_ranges(x, query, theta, query=(start, end), min_fraction=fraction, limit=10)
    assert got == match_reference(x, query, theta, (start, end), fraction, 10)


def test_match_finds_the_repeated_pattern_first() -> None:
    x = np.zeros((5, 40), dtype=np.float16)
    x[[1, 3], 5:9] = 1  # the query: cells 1 and 3 on over 5..8
    x[[1, 3], 20:24] = 1  # the same pattern again, same length
    x[[1, 3], 30:37] = 1  # again, longer
    x[1, 12:14] = 1  # half of it
    found = match_ranges(x, [1, 3], 0.5, query=(5, 8))
    assert [(m.start, m.end, m.overlap) for m in found] == [(20, 23, 1.0), (30, 36, 1.0), (12, 13, 0.5)]
    assert match_ranges(x, [], 0.5, query=(5, 8)) == []
