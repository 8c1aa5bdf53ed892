"""Sentence classification on MR: the CNN and the bidirectional LSTM beside Kim 2014 and TF-IDF + logistic regression.

The data is the built-in ``mr`` dataset (10,568 movie-review sentences of the
vaderSentiment 3.3.2 sdist labelled by the sign of their mean human rating; the
37 rated exactly 0 are left out). Every model sees the same recorded split
(`--split-seed`, 10% validation, 10% test). For each model and seed: the
`unrolled classify train` recipe (the CLI's defaults, random embeddings), the
best-validation-loss checkpoint scored on the test part, and the time it took to
reach that checkpoint. Then:

* the peer a user would try first, in the same run: scikit-learn's TF-IDF (word
  1-2 grams, sublinear tf) + logistic regression, trained on train + validation;
* prediction throughput: ``TextClassifier.probabilities`` on every MR sentence
  (tokenising included, batches of 256), and the whole ``unrolled classify
  predict`` command on them (process start and model loading included).

Kim (2014) reports on MR (Pang and Lee 2005's rt-polarity sentences, 10-fold CV):
CNN-rand 76.1%, CNN-static 81.0%, CNN-non-static 81.5%. Our sentences are
another cut of Rotten Tomatoes snippets (Pang and Lee 2004's reviews, split by
NLTK, labelled by human ratings), so the figures are near, not equal, tasks.

    .venv/bin/python bench/classify_mr.py                  # 2 models x 3 seeds (about 25 minutes on 2 cores)
    .venv/bin/python bench/classify_mr.py --seeds 1 --models cnn --max-epochs 1   # a quick look
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KIM_2014 = [("Kim 2014 CNN-rand (rt-polarity, 10-fold)", 76.1), ("Kim 2014 CNN-static (word2vec)", 81.0),
            ("Kim 2014 CNN-non-static (word2vec)", 81.5)]
TARGETS = {"cnn": 76.0, "rnn": 77.0}
BUDGET_S = 300.0


def train_one(model: str, seed: int, data: Path, out: Path, extra: list[str]) -> dict[str, Any]:
    """One `unrolled classify train` run in this process; test accuracy of its best checkpoint."""
    from unrolled.apps.classify import TextClassifier, split_examples
    from unrolled.apps.split import SplitRecord
    from unrolled.cli import main
    from unrolled.data.labelled import read_labelled

    started = time.monotonic()
    code = main(["classify", "train", str(data), "--out", str(out), "--model", model, "--seed", str(seed),
                 "--no-progress", *extra])
    seconds = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"classify train {model} seed {seed} failed with status {code}")
    classifier = TextClassifier.load(out)
    assert classifier.split is not None
    parts = split_examples(read_labelled(data), SplitRecord(**classifier.split))
    report = classifier.evaluate(parts["test"])
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evaluations = [r for r in lines if r["split"] == "validation"]
    best = min(evaluations, key=lambda r: r["loss"])
    return {"model": model, "seed": seed, "test_accuracy": 100 * report["accuracy"],
            "test_macro_f1": 100 * report["macro_f1"], "best_step": best["step"],
            "best_validation_accuracy": 100 * best["accuracy"], "seconds_to_best": best["elapsed"],
            "seconds": seconds}


def tfidf_peer(data: Path, split: dict[str, Any]) -> dict[str, Any]:
    """TF-IDF (word 1-2 grams) + logistic regression on train + validation, scored on the same test part."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from unrolled.apps.classify import split_examples
    from unrolled.apps.split import SplitRecord
    from unrolled.data.labelled import read_labelled

    parts = split_examples(read_labelled(data), SplitRecord(**split))
    train = parts["train"] + parts["validation"]
    started = time.monotonic()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    features = vectorizer.fit_transform([e.text for e in train])
    model = LogisticRegression(C=4.0, max_iter=2000).fit(features, [e.label for e in train])
    predicted = model.predict(vectorizer.transform([e.text for e in parts["test"]]))
    accuracy = sum(p == e.label for p, e in zip(predicted, parts["test"], strict=True)) / len(parts["test"])
    return {"test_accuracy": 100 * accuracy, "seconds": time.monotonic() - started}


def throughput(run: Path, data: Path) -> dict[str, float]:
    """Sentences/s: the Python API on every sentence, and the whole `classify predict` command."""
    from unrolled.apps.classify import TextClassifier
    from unrolled.data.labelled import read_labelled

    texts = [e.text for e in read_labelled(data)]
    classifier = TextClassifier.load(run)
    classifier.probabilities(texts[:512])  # warm up
    started = time.monotonic()
    classifier.probabilities(texts)
    api = len(texts) / (time.monotonic() - started)
    with tempfile.TemporaryDirectory() as scratch:
        lines = Path(scratch) / "sentences.txt"
        lines.write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n", encoding="utf-8")
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "unrolled.cli", "classify", "predict", str(run), str(lines)],
                       check=True, stdout=subprocess.DEVNULL)
        command = len(texts) / (time.monotonic() - started)
    return {"sentences": len(texts), "api_per_s": api, "command_per_s": command}


def summarise(runs: list[dict[str, Any]], model: str) -> tuple[float, float, float]:
    values = [r["test_accuracy"] for r in runs if r["model"] == model]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), spread, max(r["seconds_to_best"] for r in runs if r["model"] == model)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=("cnn", "rnn"), default=["cnn", "rnn"])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per model (default: 3)")
    parser.add_argument("--max-epochs", type=int, help="override the recipe's epoch budget")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "classify_mr")
    parser.add_argument("extra", nargs="*", help="more `unrolled classify train` options (after --)")
    args = parser.parse_args()
    from unrolled.data import obtain

    data = obtain("mr")
    extra = [*args.extra, *(["--max-epochs", str(args.max_epochs)] if args.max_epochs else [])]
    args.out.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    for model in args.models:
        for seed in range(args.seeds):
            out = args.out / "runs" / f"{model}-{seed}"
            shutil.rmtree(out, ignore_errors=True)
            runs.append(train_one(model, seed, data, out, extra))
            print(json.dumps(runs[-1]), flush=True)
    first = args.out / "runs" / f"{args.models[0]}-0"
    from unrolled.apps.classify import TextClassifier

    split = TextClassifier.load(first).split
    assert split is not None
    peer = tfidf_peer(data, split)
    speed = {model: throughput(args.out / "runs" / f"{model}-0", data) for model in args.models}
    report = {"runs": runs, "tfidf_logreg": peer, "throughput": speed, "split": split}
    (args.out / "result.json").write_text(json.dumps(report, indent=1) + "\n")

    print(f"\nMR test accuracy, % ({split['examples']} sentences, split seed {split['seed']}, "
          f"{args.seeds} seed(s) per model)")
    for model in args.models:
        mean, spread, slowest = summarise(runs, model)
        verdict = "met" if mean >= TARGETS[model] else "MISSED"
        name = "CNN (Kim 2014 shape), random embeddings" if model == "cnn" else "BiLSTM, random embeddings"
        print(f"  {name:48s} {mean:5.1f} +- {spread:.1f}   target >= {TARGETS[model]:.0f}: {verdict}; "
              f"best checkpoint reached within {slowest:.0f} s (target < {BUDGET_S:.0f} s: "
              f"{'met' if slowest < BUDGET_S else 'MISSED'})")
    print(f"  {'TF-IDF + logistic regression (scikit-learn)':48s} {peer['test_accuracy']:5.1f}")
    for name, value in KIM_2014:
        print(f"  {name:48s} {value:5.1f}   (published; another cut of MR)")
    print("\nprediction throughput, sentences/s (target >= 2,000)")
    for model, figures in speed.items():
        print(f"  {model}: Python API {figures['api_per_s']:,.0f}; `unrolled classify predict` command "
              f"{figures['command_per_s']:,.0f} (process start and loading included)")
    print(f"\nresults: {args.out / 'result.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
