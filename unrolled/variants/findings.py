r"""The papers' findings, checked against the variants benchmark's rows, ours printed beside theirs.

Comparisons are paired: every variant sees the same data as the vanilla LSTM
for a given (task, length, seed), so for variant v the differences

.. math::  d_i = s(v)_i - s(\text{lstm})_i

over all those triples (s: the score, negated where lower is better) have a
mean :math:`\bar d` and standard error :math:`\mathrm{sd}(d)/\sqrt n`; v differs
significantly when :math:`|\bar d| > 2\,\mathrm{se}` (n >= 2).
"""

from __future__ import annotations

import math
import statistics

from unrolled.data.longrange import Task

Row = dict[str, str]
SIGNIFICANCE = 2.0
"""Standard errors a mean difference must exceed to count."""


def signed(row: Row, tasks: dict[str, Task]) -> float:
    score = float(row["score"])
    return score if tasks[row["task"]].higher_better else -score


def paired(rows: list[Row], tasks: dict[str, Task], variant: str, base: str = "lstm",
           *, lengths: str = "all") -> tuple[float, float, int]:
    """(mean difference, standard error, n) of variant - base over shared (task, length, seed)."""
    longest = {t: max(int(r["length"]) for r in rows if r["task"] == t) for t in {r["task"] for r in rows}}
    scores: dict[tuple[str, str, str, str], float] = {}
    for row in rows:
        if lengths == "longest" and int(row["length"]) != longest[row["task"]]:
            continue
        scores[(row["variant"], row["task"], row["length"], row["seed"])] = signed(row, tasks)
    diffs = [value - scores[(base, task, length, seed)] for (name, task, length, seed), value in scores.items()
             if name == variant and (base, task, length, seed) in scores]
    if not diffs:
        return math.nan, math.nan, 0
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.nan
    return statistics.fmean(diffs), se, len(diffs)


def describe(rows: list[Row], tasks: dict[str, Task], variant: str, **kwargs: str) -> str:
    mean, se, n = paired(rows, tasks, variant, **kwargs)
    if n == 0:
        return f"{variant}: not run"
    verdict = "significant" if n > 1 and abs(mean) > SIGNIFICANCE * se else "not significant"
    return f"{variant} - lstm = {mean:+.3f} ± {se:.3f} (n={n}, {verdict})"


def is_worse(rows: list[Row], tasks: dict[str, Task], variant: str) -> bool:
    mean, se, n = paired(rows, tasks, variant)
    return n > 1 and mean < -SIGNIFICANCE * se


def findings(rows: list[Row], tasks: dict[str, Task]) -> str:
    """Markdown bullets: each paper's claim, then what our rows say (differences signed: > 0 is better)."""
    variants = {r["variant"] for r in rows}
    lines = []
    if {"rnn", "lstm"} <= variants:
        lines.append("- **Vanilla RNN fails at long lengths** (lecture; Hochreiter and Schmidhuber 1997). Ours, "
                     "at each task's longest length: " + describe(rows, tasks, "rnn", lengths="longest")
                     + "; " + "; ".join(describe(rows, tasks, g, lengths="longest")
                                        for g in ("gru-cho", "gru-cudnn") if g in variants) + ".")
    others = [v for v in ("nig", "nfg", "nog", "niaf", "noaf", "peepholes", "cifg", "lstm-fb0", "gru-cho",
                          "gru-cudnn") if v in variants]
    if "lstm" in variants and others:
        better = [v for v in others if (m := paired(rows, tasks, v))[2] > 1 and m[0] > SIGNIFICANCE * m[1]]
        lines.append("- **Greff et al. 2015: no variant beats the vanilla LSTM significantly.** Ours: "
                     + (f"significantly better: {', '.join(better)}" if better else "none is significantly better")
                     + ". All (score differences, all tasks and lengths): "
                     + "; ".join(describe(rows, tasks, v) for v in others) + ".")
        critical = [v for v in ("nfg", "noaf") if v in variants]
        harmless = [v for v in ("cifg", "peepholes") if v in variants]
        if critical:
            lines.append("- **Greff et al.: the forget gate and the output activation are critical** (NFG, NOAF "
                         "hurt). Ours: " + "; ".join(f"{v} {'hurts' if is_worse(rows, tasks, v) else 'does not hurt'}"
                                                     f" significantly" for v in critical) + ".")
        if harmless:
            lines.append("- **Greff et al.: coupling input and forget gates (CIFG) or dropping peepholes does not "
                         "hurt** (our lstm has no peepholes, so peepholes - lstm is the reverse test). Ours: "
                         + "; ".join(describe(rows, tasks, v) for v in harmless) + ".")
    if {"lstm", "lstm-fb0"} <= variants and variants & {"gru-cho", "gru-cudnn"}:
        lines.append("- **Jozefowicz et al. 2015: a forget bias of 1 closes most of the LSTM-GRU gap.** Ours: "
                     + gap_closed(rows, tasks, variants) + ".")
    return "\n".join(lines) if lines else "(too few variants run to check the papers' findings)"


def gap_closed(rows: list[Row], tasks: dict[str, Task], variants: set[str]) -> str:
    """(lstm - lstm-fb0) / (gru - lstm-fb0) of mean signed scores, gru the better GRU form."""
    fb0, _, _ = paired(rows, tasks, "lstm-fb0")  # lstm-fb0 - lstm
    grus = {g: paired(rows, tasks, g)[0] for g in ("gru-cho", "gru-cudnn") if g in variants}
    best = max(grus, key=lambda g: grus[g])
    gap = grus[best] - fb0  # gru - lstm-fb0
    if not math.isfinite(gap) or abs(gap) < 1e-9:
        return f"no gap to close ({best} - lstm-fb0 = {gap:+.3f})"
    return (f"{best} - lstm-fb0 = {gap:+.3f}; forget bias 1 moves the LSTM by {-fb0:+.3f}, "
            f"{-fb0 / gap:.0%} of that gap")
