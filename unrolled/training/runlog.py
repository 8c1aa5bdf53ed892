"""What a run shows and writes as it goes: metrics.jsonl, the train lines' means, curve.png, the progress bar.

metrics.jsonl holds one JSON object a line: {"step", "epoch", "split": "train"|"validation",
"loss", ...other metrics, "lr", "tokens_per_s" (train), "elapsed", "threads" (train lines of a
run whose threads follow the machine)}; a train line's numbers are means over the steps since the
previous one. curve.png is train and validation loss against step. Only rank 0 writes.
"""

from __future__ import annotations

import json
import math
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from unrolled.extras import MissingExtra, need
from unrolled.training.config import TrainConfig, format_seconds
from unrolled.training.schedule import TrainingProgress

METRICS_FILE, CURVE_FILE = "metrics.jsonl", "curve.png"

Points = list[tuple[int, float]]


def plot_curve(path: Path, train: Points, validation: Points) -> None:
    """Draw train and validation loss against step into a PNG at `path`, atomically (temp file, then rename)."""
    need("matplotlib", "the learning curve")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for points, label, style in ((train, "train", "-"), (validation, "validation", "o-")):
        if points:
            steps, losses = zip(*points, strict=True)
            axes.plot(steps, losses, style, label=label, markersize=3)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    if train or validation:
        axes.legend()
    figure.tight_layout()
    temp = _temp_beside(path)
    try:
        figure.savefig(temp, format="png")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def json_safe(value: Any) -> Any:
    """Non-finite floats as None, so every metrics line is valid JSON."""
    return value if not isinstance(value, float) or math.isfinite(value) else None


def window_means(progress: TrainingProgress) -> dict[str, float]:
    """The means of the metrics summed since the last train line; the window starts afresh."""
    count = progress.window_steps
    means = {name: float(total) / count for name, total in progress.window_sums.items()}
    progress.window_sums, progress.window_steps = {}, 0
    return means


def add_to_window(progress: TrainingProgress, loss: float, metrics: dict[str, float], norm: float | None) -> None:
    """Sum one step's loss, metrics and gradient norm (before clipping) into the window."""
    sums = progress.window_sums
    sums["loss"] = sums.get("loss", 0.0) + loss
    for name, number in metrics.items():
        if name != "loss":
            sums[name] = sums.get(name, 0.0) + number
    if norm is not None:
        sums["grad_norm"] = sums.get("grad_norm", 0.0) + norm
    progress.window_steps += 1


def _temp_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")


class RunLog:
    """Rank 0's metrics file, curve and progress bar (other ranks get a silent one); `warn` writes above the bar."""

    def __init__(self, run_dir: Path, config: TrainConfig, *, rank: int) -> None:
        self.run_dir, self.config, self.rank = run_dir, config, rank
        self.train_points: Points = []
        self.validation_points: Points = []
        self.drawn_step: int | None = None
        self.curve_missing = False  # no matplotlib: said once
        self.step_budget: int | None = None
        self._file: Any = None
        self.bar: Any = None

    def open(self, resume: bool, step: int) -> None:
        """Open metrics.jsonl: fresh, or on resume without the lines of steps past `step` (redone now)."""
        if self.rank != 0:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / METRICS_FILE
        if not resume:
            (self.run_dir / CURVE_FILE).unlink(missing_ok=True)
            self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())
            return
        kept: list[str] = []
        original = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        for text in original:
            try:
                line = json.loads(text)
                line_step, loss = int(line["step"]), line.get("loss")
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a kill
            if line_step > step:
                continue
            kept.append(text)
            if isinstance(loss, (int, float)):
                points = self.train_points if line.get("split") == "train" else self.validation_points
                points.append((line_step, float(loss)))
        if kept != original:
            temp = _temp_beside(path)
            temp.write_text("".join(text + "\n" for text in kept), encoding="utf-8")
            os.replace(temp, path)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def open_bar(self, progress: TrainingProgress, epoch_length: int) -> None:
        """A bar over the step budget (the smaller of max_steps and the epochs'), else over max_time's seconds."""
        config = self.config
        budgets = [config.max_steps] if config.max_steps else []
        if config.epoch_budget:
            budgets.append(config.epoch_budget * epoch_length)
        self.step_budget = min(budgets) if budgets else None
        disable = not config.progress or self.rank != 0
        if self.step_budget is not None:
            self.bar = tqdm(total=self.step_budget, initial=min(progress.step, self.step_budget), unit="step",
                            file=sys.stderr, disable=disable, dynamic_ncols=True)
        else:
            total = float(config.max_time or 0.0)
            self.bar = tqdm(total=total, initial=min(progress.elapsed, total), unit="s", file=sys.stderr,
                            disable=disable, dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}s [{elapsed}{postfix}]")

    def advance(self, elapsed: float) -> None:
        """One step more on the bar; a time-bounded bar counts seconds, never past the budget."""
        if self.step_budget is not None:
            self.bar.update(1)
        else:
            self.bar.update(max(0.0, min(elapsed, self.bar.total) - self.bar.n))

    def write(self, line: dict[str, Any]) -> None:
        self._file.write(json.dumps({key: json_safe(value) for key, value in line.items()}) + "\n")
        self._file.flush()

    def train_line(self, means: dict[str, float], *, step: int, epochs: float, lr: float, window_time: float,
                   steps: int, elapsed: float, threads: int | None, left: Callable[[], float | None]) -> None:
        """Write the train line of `means` over `steps` steps that took `window_time` seconds (rank 0);
        `left()` is the estimated seconds left, for the bar."""
        if self.rank != 0:
            return
        means = dict(means)
        tokens = means.pop("tokens", None)
        line: dict[str, Any] = {"step": step, "epoch": round(epochs, 6), "split": "train", "loss": means.pop("loss"),
                                **means, "lr": lr}
        speed = ""
        if window_time > 0 and tokens is not None:
            line["tokens_per_s"] = tokens * steps / window_time
            speed = f"{line['tokens_per_s']:.0f} tok/s"
        elif window_time > 0:
            line["steps_per_s"] = steps / window_time
            speed = f"{line['steps_per_s']:.1f} steps/s"
        line["elapsed"] = round(elapsed, 3)
        if threads is not None:
            line["threads"] = threads
        self.write(line)
        self.train_points.append((step, line["loss"]))
        if not self.bar.disable:
            seconds = left()
            remaining = f"{format_seconds(seconds)} left" if seconds is not None else ""
            postfix = [f"loss {line['loss']:.4f}", speed, remaining]
            self.bar.set_postfix_str(", ".join(part for part in postfix if part), refresh=False)

    def validation_line(self, metrics: dict[str, float], *, step: int, epochs: float, lr: float,
                        elapsed: float) -> None:
        if self.rank != 0:
            return
        self.write({"step": step, "epoch": round(epochs, 6), "split": "validation", **metrics, "lr": lr,
                    "elapsed": round(elapsed, 3)})
        self.validation_points.append((step, metrics["loss"]))

    def draw(self, step: int) -> None:
        """Redraw curve.png (rank 0); without matplotlib (the viz extra), say so once and train on without it."""
        if self.rank == 0:
            try:
                plot_curve(self.run_dir / CURVE_FILE, self.train_points, self.validation_points)
            except MissingExtra as missing:
                if not self.curve_missing:
                    self.warn(f"no {CURVE_FILE}: {missing}")
                self.curve_missing = True
            self.drawn_step = step

    def warn(self, message: str) -> None:
        """One line on stderr (rank 0), above the progress bar."""
        if self.rank != 0:
            return
        if self.bar is not None and not self.bar.disable:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def close(self) -> None:
        self.close_bar()
        if self._file is not None:
            self._file.close()
