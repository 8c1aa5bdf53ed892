"""The page's questions, answered over a recording: windows of states, select, match, one cell, curves, attention.

Every answer is a JSON-ready dict; `server` puts them behind HTTP and `export`
into a page. State values travel as base64 of little-endian float16, cell-major
(cells x positions), which is what the recording holds, so a window is read
from the memory maps and sent without conversion. Bad requests (a window past
the end, a layer that does not exist, ...) raise ValueError with a one-line
message.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np

from unrolled.viz.record import Recording
from unrolled.viz.select import check_range, match_ranges, select_cells

MAX_WINDOW = 4000  # positions per window request
MAX_MATCHES = 100
MATCH_CONTEXT = 8  # characters shown either side of a match
MAX_MATCH_SHOWN = 80  # characters of a long match shown in its heat map
TOP_CONTEXT = (40, 10)  # characters before and after a cell's top-activating position
TOP_SPACING = 10  # top positions closer than this to a better one are left out
DEFAULT_THRESHOLD = 0.3  # LSTMVis' default
METRICS_FILE = "metrics.jsonl"


def encode_states(values: np.ndarray) -> str:
    """(cells, positions) values as base64 of little-endian float16, row by row."""
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f2").tobytes()).decode("ascii")


class Explorer:
    """Answers about one run: its states over a recorded text (if any), its curves, its attention (if any)."""

    def __init__(self, run: str | Path, *, recording: Recording | None = None,
                 attention: list[dict[str, Any]] | None = None) -> None:
        self.run = Path(run)
        self.recording = recording
        self.attention_examples = attention

    # ---------------------------------------------------------------- what there is

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"run": self.run.name or str(self.run), "threshold": DEFAULT_THRESHOLD,
                                "states": None, "attention": self.attention_examples is not None,
                                "maxWindow": MAX_WINDOW}
        if self.recording is not None:
            index = self.recording.index
            info["states"] = {"length": index.characters, "layers": index.layers, "hidden": index.hidden,
                              "cell": index.cell, "quantities": index.quantities, "ranges": index.ranges,
                              "streams": index.streams}
        return info

    def states(self, layer: int, quantity: str) -> np.ndarray:
        if self.recording is None:
            raise ValueError("this run has no recorded states (it shows attention and curves only)")
        return self.recording.states(layer, quantity)

    # ---------------------------------------------------------------- the states view

    def window(self, layer: int, quantity: str, start: int, end: int) -> dict[str, Any]:
        """Positions start..end (included) of every cell, and their text."""
        states = self.states(layer, quantity)
        check_window(start, end, states.shape[1])
        assert self.recording is not None
        return {"start": start, "end": end, "text": self.recording.text[start : end + 1],
                "cells": states.shape[0], "values": encode_states(states[:, start : end + 1])}

    def select(self, layer: int, quantity: str, start: int, end: int, threshold: float) -> dict[str, Any]:
        cells = select_cells(self.states(layer, quantity), start, end, threshold)
        return {"start": start, "end": end, "threshold": threshold, "cells": cells.tolist()}

    def match(self, layer: int, quantity: str, cells: list[int], threshold: float, start: int, end: int,
              limit: int = 20) -> dict[str, Any]:
        """The places where `cells` repeat the query's pattern, each with its text and the cells' heat map."""
        states = self.states(layer, quantity)
        check_range(start, end, states.shape[1])
        if not cells:
            raise ValueError("no cells to match: select some first")
        if any(not 0 <= c < states.shape[0] for c in cells):
            raise ValueError(f"cells must lie in 0..{states.shape[0] - 1}")
        limit = max(1, min(limit, MAX_MATCHES))
        found = match_ranges(states, cells, threshold, query=(start, end), limit=limit)
        assert self.recording is not None
        text, rows = self.recording.text, np.asarray(cells)
        matches = []
        for m in found:
            shown_start = max(0, m.start - MATCH_CONTEXT)
            shown_end = min(len(text) - 1, m.end + MATCH_CONTEXT, shown_start + MAX_MATCH_SHOWN - 1)
            matches.append({"start": m.start, "end": m.end, "overlap": m.overlap, "shownStart": shown_start,
                            "text": text[shown_start : shown_end + 1],
                            "values": encode_states(states[rows, shown_start : shown_end + 1])})
        return {"cells": cells, "threshold": threshold, "matches": matches}

    # ---------------------------------------------------------------- one cell

    def cell(self, layer: int, quantity: str, cell: int, start: int, end: int, top: int = 10) -> dict[str, Any]:
        """One cell over a window, and the contexts where it is highest over the whole text."""
        states = self.states(layer, quantity)
        if not 0 <= cell < states.shape[0]:
            raise ValueError(f"cell {cell} does not exist; cells are 0..{states.shape[0] - 1}")
        check_window(start, end, states.shape[1])
        assert self.recording is not None
        track = np.asarray(states[cell], dtype=np.float32)  # (N,), one contiguous row
        contexts = []
        for position in top_positions(track, max(1, min(top, MAX_MATCHES))):
            a, b = max(0, position - TOP_CONTEXT[0]), min(len(track) - 1, position + TOP_CONTEXT[1])
            contexts.append({"position": position, "value": float(track[position]), "start": a,
                             "text": self.recording.text[a : b + 1], "values": encode_states(track[None, a : b + 1])})
        return {"cell": cell, "start": start, "end": end, "text": self.recording.text[start : end + 1],
                "values": encode_states(track[None, start : end + 1]), "top": contexts}

    # ---------------------------------------------------------------- the run's other views

    def curves(self) -> dict[str, Any]:
        """The learning curves of metrics.jsonl: [step, loss] pairs of the training and validation lines."""
        path = self.run / METRICS_FILE
        curves: dict[str, Any] = {"train": [], "validation": [], "found": path.is_file()}
        if not path.is_file():
            return curves
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interrupted write
            if isinstance(row, dict) and row.get("split") in curves and isinstance(row.get("loss"), (int, float)):
                curves[row["split"]].append([row.get("step", 0), row["loss"]])
        return curves

    def attention(self) -> dict[str, Any]:
        if self.attention_examples is None:
            raise ValueError("this run has no recorded attention (only seq2seq runs have)")
        return {"examples": self.attention_examples}


def check_window(start: int, end: int, length: int) -> None:
    """A window must lie inside the text and hold at most MAX_WINDOW positions."""
    if end - start + 1 > MAX_WINDOW:
        raise ValueError(f"a window holds at most {MAX_WINDOW} positions, asked for {end - start + 1}")
    check_range(start, end, length)


def top_positions(track: np.ndarray, count: int) -> list[int]:
    """The `count` positions of the highest values, best first, each at least TOP_SPACING from a better one."""
    pool = min(len(track), count * TOP_SPACING * 2)
    candidates = np.argpartition(-track, pool - 1)[:pool]
    chosen: list[int] = []
    for position in candidates[np.argsort(-track[candidates], kind="stable")].tolist():
        if all(abs(position - c) >= TOP_SPACING for c in chosen):
            chosen.append(position)
            if len(chosen) == count:
                break
    return chosen

