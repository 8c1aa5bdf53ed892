"""Video frame labelling on ``moving-digits``: the recurrent labeller beside the per-frame CNN and chance.

``moving-digits`` holds 10-frame clips of one MNIST digit moving 1 to 3
pixels a frame on a 40 x 40 canvas (10,000 train, 1,000 validation, 1,000
test clips from disjoint digit images); each frame after the first is
labelled with the direction of its move (up, down, left, right). Each model
trains through ``unrolled video train --dataset moving-digits`` for
`--minutes` of wall-clock time on `--threads` threads (cosine decay over the
budget); its best-validation checkpoint labels the 9,000 labelled test frames.

The table holds per-frame accuracy of the recurrent model (a CNN per frame,
then a bidirectional LSTM) and of the per-frame CNN (the same CNN, then a
linear layer), chance (the most frequent test label), and the best that any
reader of single frames can do here: each test frame's digit position looked
up among the training frames' positions (the most frequent move that ended
there). No published figure exists for this task.

    .venv/bin/python bench/video_moving_digits.py                   # both models, 5 minutes each, then the table
    .venv/bin/python bench/video_moving_digits.py --model cnn --minutes 10
    .venv/bin/python bench/video_moving_digits.py --report
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "video"
MODELS = ("recurrent", "cnn")
DESCRIPTIONS = {"recurrent": "CNN per frame + bidirectional LSTM", "cnn": "per-frame CNN (no recurrence)"}


def run_model(name: str, minutes: float, threads: int, extra: list[str]) -> dict[str, Any]:
    import torch

    from unrolled.apps.video import VideoLabeller, split_clips
    from unrolled.cli import main
    from unrolled.data import obtain
    from unrolled.data.clips import read_clips

    torch.set_num_threads(threads)
    out = RESULTS / f"run-{name}"
    shutil.rmtree(out, ignore_errors=True)
    arguments = ["video", "train", "--dataset", "moving-digits", "--out", str(out), "--model", name,
                 "--max-time", f"{minutes * 60:g}", "--max-epochs", "1000", "--no-progress", "--log-every", "100",
                 *extra]  # --max-time in seconds
    started = time.monotonic()
    if main(arguments) != 0:
        raise SystemExit(f"video train ({name}) failed")
    trained = time.monotonic() - started
    labeller = VideoLabeller.load(out)
    clips = read_clips(obtain("moving-digits"))
    report = labeller.evaluate(clips.select(split_clips(clips, None)["test"]))
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    result = {"model": name, "arguments": arguments, "threads": threads, "train_seconds": round(trained, 1),
              "steps": int(last["step"]), "epochs": round(float(last["epoch"]), 2),
              "parameters": sum(p.numel() for p in labeller.model.parameters()), **report}
    shutil.copy(out / "curve.png", RESULTS / f"curve-{name}.png")
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def position_ceiling() -> float:
    """Accuracy on the test frames of guessing each frame's move from its digit position alone: the most
    frequent move into that position among the training frames (chance where training never saw it)."""
    import numpy as np

    from unrolled.data import obtain

    with np.load(obtain("moving-digits")) as data:
        labels, positions, split = data["labels"], data["positions"], data["split"]
    seen = (split == "train")[:, None] & (labels >= 0)  # (N, T)
    tested = (split == "test")[:, None] & (labels >= 0)
    side = int(positions.max()) + 1
    table = np.zeros((side, side, int(labels.max()) + 1))
    np.add.at(table, (positions[seen][:, 0], positions[seen][:, 1], labels[seen]), 1)
    guess = table.argmax(-1)[positions[tested][:, 0], positions[tested][:, 1]]
    return float((guess == labels[tested]).mean())


def report() -> None:
    rows = [json.loads((RESULTS / f"{name}.json").read_text()) for name in MODELS
            if (RESULTS / f"{name}.json").is_file()]
    if not rows:
        raise SystemExit(f"nothing measured yet in {RESULTS}; run the models first")
    ceiling = position_ceiling()
    print(f"moving-digits: {rows[0]['frames']} labelled frames of {rows[0]['clips']} test clips; per-frame accuracy %")
    print(f"{'model':<70} {'accuracy':>8} {'params':>9}")
    for row in rows:
        label = (f"{DESCRIPTIONS[row['model']]} ({row['train_seconds'] / 60:.0f} min, {row['steps']} steps, "
                 f"{row['epochs']} epochs)")
        print(f"{label:<70} {100 * row['accuracy']:8.2f} {row['parameters']:9,d}")
    print(f"{'chance (always ' + repr(rows[0]['most_frequent']) + ')':<70} {100 * rows[0]['chance']:8.2f}")
    print(f"{'single-frame ceiling (move guessed from the digit position)':<70} {100 * ceiling:8.2f}")
    (RESULTS / "summary.json").write_text(json.dumps(
        {"chance": rows[0]["chance"], "position_ceiling": ceiling,
         **{row["model"]: row["accuracy"] for row in rows}}, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=MODELS, help="train and score only this model (default: both)")
    parser.add_argument("--minutes", type=float, default=5.0, help="training time per model (default: 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--report", action="store_true", help="only print the table of the models measured so far")
    args, extra = parser.parse_known_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.report:
        for name in [args.model] if args.model else MODELS:
            run_model(name, args.minutes, args.threads, extra)
    report()


if __name__ == "__main__":
    sys.exit(main())
