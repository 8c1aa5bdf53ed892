r"""LSTMVis' select and match rules (Strobelt et al. 2016, arXiv 1606.07461), in NumPy.

States are held cell-major: ``X`` is (H, N), cell c's value at text position t
is ``X[c, t]`` (H cells, N positions). A cell is *on* at t when
:math:`X_{c,t} \ge \theta` for the user's threshold θ.

Select. For a brushed range of positions :math:`[a, b]` (both ends included),

.. math::
    S(a, b, \theta) = \{\, c : X_{c,t} \ge \theta \ \forall t \in [a, b],\;
                           X_{c,a-1} < \theta,\; X_{c,b+1} < \theta \,\}

the cells on over the whole range and off just before and just after it (a
condition at a - 1 or b + 1 is dropped where that position lies outside the
text).

Match. Given the selected cells S (|S| = k ≥ 1), let
:math:`n_t = \sum_{c \in S} [X_{c,t} \ge \theta]` count those on at t. The
candidates are the maximal runs :math:`[a', b']` of positions where
:math:`n_t \ge m`, with :math:`m = \lceil \rho k \rceil` (ρ = `min_fraction`,
default 1/2). Each is scored by its overlap with the query, the fraction of
selected cells that are on over the whole run,

.. math::
    \mathrm{overlap}(a', b') = \frac{1}{k} \sum_{c \in S}
        \prod_{t=a'}^{b'} [X_{c,t} \ge \theta]

and matches are ranked by overlap (highest first), then by how close their
length is to the query's, :math:`|(b'-a') - (b-a)|` (smallest first), then by
position. The query's own run (a candidate that contains [a, b]) is left out.
Everything is vectorised over positions, O(N k), so a match over a million
positions and a few dozen cells takes tens of milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_MIN_FRACTION = 0.5
"""ρ: a candidate run needs at least this fraction of the selected cells on at each of its positions."""


@dataclass(frozen=True)
class Match:
    """One place where the selected cells show the query's pattern: positions start..end (included)."""

    start: int
    end: int
    overlap: float  # fraction of the selected cells on over all of start..end


def check_range(start: int, end: int, length: int) -> None:
    """A range [start, end] (both included) must lie inside 0..length-1, start <= end; ValueError otherwise."""
    if not 0 <= start <= end < length:
        raise ValueError(f"the range {start}..{end} is not inside the text's positions 0..{length - 1}")


def select_cells(states: np.ndarray, start: int, end: int, threshold: float) -> np.ndarray:
    """The cells on over all of [start, end] and off just before and after (sorted cell indices).

    states: (H, N), cell-major. See the module docstring for the rule.
    """
    length = states.shape[1]
    check_range(start, end, length)
    inside = np.asarray(states[:, start : end + 1], dtype=np.float32)  # (H, b - a + 1)
    chosen = (inside >= threshold).all(axis=1)  # (H,)
    if start > 0:
        chosen &= np.asarray(states[:, start - 1], dtype=np.float32) < threshold
    if end + 1 < length:
        chosen &= np.asarray(states[:, end + 1], dtype=np.float32) < threshold
    return np.flatnonzero(chosen)


def on_runs(on: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends (included) of the maximal runs of True in the 1-D boolean array `on`."""
    padded = np.concatenate(([False], on, [False])).astype(np.int8)
    edges = np.diff(padded)  # +1 where a run starts, -1 one past where it ends
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1


def match_ranges(
    states: np.ndarray, cells: np.ndarray | list[int], threshold: float, *, query: tuple[int, int],
    min_fraction: float = DEFAULT_MIN_FRACTION, limit: int = 20,
) -> list[Match]:
    """The best `limit` places where `cells` show the on/off pattern of the query range, best first.

    states: (H, N), cell-major; cells: indices of the selected cells; query: the
    brushed (start, end). See the module docstring for the rule and the ranking.
    """
    cells = np.asarray(cells, dtype=np.int64)
    if cells.size == 0:
        return []
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction must lie in (0, 1], got {min_fraction}")
    on = np.asarray(states[cells], dtype=np.float32) >= threshold  # (k, N): contiguous rows of a cell-major map
    counts = on.sum(axis=0)  # (N,): n_t
    needed = math.ceil(min_fraction * cells.size)
    starts, ends = on_runs(counts >= needed)
    if starts.size == 0:
        return []
    # reduceat over the bounds [s_0, e_0 + 1, s_1, e_1 + 1, ...] ANDs each run's own steps (the even slots);
    # a column of ones lets the last bound be N.
    bounds = np.ravel(np.column_stack([starts, ends + 1]))
    padded = np.concatenate([on, np.ones((cells.size, 1), dtype=bool)], axis=1)  # (k, N + 1)
    whole = np.logical_and.reduceat(padded, bounds, axis=1)[:, ::2]  # (k, runs): on over all of the run
    overlap = whole.sum(axis=0) / cells.size  # (runs,)
    keep = ~((starts <= query[0]) & (ends >= query[1]))  # leave out the query's own run
    distance = np.abs((ends - starts) - (query[1] - query[0]))
    order = np.lexsort((starts, distance, -overlap))  # last key is the primary one
    order = order[keep[order]][:limit]
    return [Match(int(starts[i]), int(ends[i]), float(overlap[i])) for i in order]
