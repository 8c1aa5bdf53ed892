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
* NBSVM-bigram (Wang and Manning 2012), written here: binarised word 1-2 grams
  scaled by their naive-Bayes log-count ratios r (alpha 1), a linear SVM
  (liblinear's squared hinge, C 1) and the interpolation w' = (1-beta) mean|w| + beta w
  with beta 0.25 (the paper's values; the bias scaled by beta with w), trained on
  train + validation;
* the wide and deep networks (``--wide 2``: the NB-weighted 1-2 grams as a branch
  of the CNN or the BiLSTM, `unrolled.models.nbwide`), whose target is the
  TF-IDF peer's accuracy + 1 point;
* prediction throughput: ``TextClassifier.probabilities`` on every MR sentence
  (tokenising included, batches of 256), and the whole ``unrolled classify
  predict`` command on them (process start and model loading included).

Kim (2014) reports on MR (Pang and Lee 2005's rt-polarity sentences, 10-fold CV):
CNN-rand 76.1%, CNN-static 81.0%, CNN-non-static 81.5%. Our sentences are
another cut of Rotten Tomatoes snippets (Pang and Lee 2004's reviews, split by
NLTK, labelled by human ratings), so the figures are near, not equal, tasks.

    .venv/bin/python bench/classify_mr.py                  # 4 models x 3 seeds
    .venv/bin/python bench/classify_mr.py --seeds 1 --models cnn --max-epochs 1   # a quick look
"""

from __future__ import annotations

import argparse
import itertools
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
MODELS = {  # name: (--model, more options, row, target test accuracy (None: the TF-IDF peer's + WIDE_MARGIN))
    "cnn": ("cnn", [], "CNN (Kim 2014 shape), random embeddings", 76.0),
    "rnn": ("rnn", [], "BiLSTM, random embeddings", 77.0),
    "cnn-nb": ("cnn", ["--wide", "2"], "CNN + NB 1-2 grams (--wide 2)", None),
    "rnn-nb": ("rnn", ["--wide", "2"], "BiLSTM + NB 1-2 grams (--wide 2)", None),
}
WIDE_MARGIN = 1.0
NBSVM_C, NBSVM_BETA, NBSVM_ALPHA = 1.0, 0.25, 1.0
BUDGET_S = 300.0


def train_one(name: str, seed: int, data: Path, out: Path, extra: list[str]) -> dict[str, Any]:
    """One `unrolled classify train` run of `MODELS[name]` in this process; test accuracy of its best checkpoint."""
    from unrolled.apps.classify import TextClassifier, split_examples
    from unrolled.apps.split import SplitRecord
    from unrolled.cli import main
    from unrolled.data.labelled import read_labelled

    started = time.monotonic()
    model, options = MODELS[name][:2]
    code = main(["classify", "train", str(data), "--out", str(out), "--model", model, "--seed", str(seed),
                 "--no-progress", *options, *extra])
    seconds = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"classify train {name} seed {seed} failed with status {code}")
    classifier = TextClassifier.load(out)
    assert classifier.split is not None
    parts = split_examples(read_labelled(data), SplitRecord(**classifier.split))
    report = classifier.evaluate(parts["test"])
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evaluations = [r for r in lines if r["split"] == "validation"]
    best = min(evaluations, key=lambda r: r["loss"])
    return {"model": name, "seed": seed, "test_accuracy": 100 * report["accuracy"],
            "test_macro_f1": 100 * report["macro_f1"], "best_step": best["step"],
            "best_validation_accuracy": 100 * best["accuracy"], "seconds_to_best": best["elapsed"],
            "seconds": seconds}


def peer_parts(data: Path, split: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """The examples a linear peer trains on (train + validation) and the test part."""
    from unrolled.apps.classify import split_examples
    from unrolled.apps.split import SplitRecord
    from unrolled.data.labelled import read_labelled

    parts = split_examples(read_labelled(data), SplitRecord(**split))
    return parts["train"] + parts["validation"], parts["test"]


def tfidf_peer(data: Path, split: dict[str, Any]) -> dict[str, Any]:
    """TF-IDF (word 1-2 grams) + logistic regression on train + validation, scored on the same test part."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    train, test = peer_parts(data, split)
    started = time.monotonic()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    features = vectorizer.fit_transform([e.text for e in train])
    model = LogisticRegression(C=4.0, max_iter=2000).fit(features, [e.label for e in train])
    predicted = model.predict(vectorizer.transform([e.text for e in test]))
    accuracy = sum(p == e.label for p, e in zip(predicted, test, strict=True)) / len(test)
    return {"test_accuracy": 100 * accuracy, "seconds": time.monotonic() - started}


def word_bigrams(text: str) -> list[str]:
    """The project's word tokens of `text` and their adjacent pairs."""
    from unrolled.data.vocab import tokenize

    words = tokenize(text, "word")
    return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]


def nbsvm_peer(data: Path, split: dict[str, Any]) -> dict[str, Any]:
    """NBSVM-bigram (Wang and Manning 2012, two classes) on train + validation, scored on the test part.

    x = 1{n-gram in sentence}; p = alpha + sum of x over positive sentences, q over
    negative; r = log((p/|p|_1) / (q/|q|_1)); a linear SVM on r * x gives w, b;
    the prediction is sign(w' . (r * x) + beta b), w' = (1 - beta) mean|w| + beta w.
    """
    import numpy as np
    from scipy import sparse
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.svm import LinearSVC

    train, test = peer_parts(data, split)
    names = sorted({e.label for e in train})
    if len(names) != 2:
        raise SystemExit(f"NBSVM here is for two classes, the data has {len(names)}")
    started = time.monotonic()
    vectorizer = CountVectorizer(analyzer=word_bigrams, binary=True)
    x = vectorizer.fit_transform([e.text for e in train]).tocsr()  # (N, G) 0/1
    positive = np.array([e.label == names[1] for e in train])
    p = NBSVM_ALPHA + np.asarray(x[positive].sum(0)).ravel()
    q = NBSVM_ALPHA + np.asarray(x[~positive].sum(0)).ravel()
    scale = sparse.diags(np.log((p / p.sum()) / (q / q.sum())))  # diag(r)
    svm = LinearSVC(C=NBSVM_C, max_iter=20000).fit(x @ scale, positive)
    w = svm.coef_.ravel()
    interpolated = (1 - NBSVM_BETA) * np.abs(w).mean() + NBSVM_BETA * w
    scores = vectorizer.transform([e.text for e in test]) @ scale @ interpolated + NBSVM_BETA * svm.intercept_[0]
    truth = np.array([e.label == names[1] for e in test])
    return {"test_accuracy": 100 * float(np.mean((scores > 0) == truth)), "seconds": time.monotonic() - started}


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


def summarise(runs: list[dict[str, Any]], model: str) -> dict[str, float]:
    """Mean test and best-validation accuracy of a model's seeds, their standard errors, the slowest best."""
    mine = [r for r in runs if r["model"] == model]
    figures = {"seeds": len(mine), "slowest_s": max(r["seconds_to_best"] for r in mine)}
    for part, key in (("test", "test_accuracy"), ("validation", "best_validation_accuracy")):
        values = [r[key] for r in mine]
        figures[part] = statistics.mean(values)
        figures[f"{part}_se"] = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=tuple(MODELS), default=list(MODELS))
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
    peer, nbsvm = tfidf_peer(data, split), nbsvm_peer(data, split)
    speed = {model: throughput(args.out / "runs" / f"{model}-0", data) for model in args.models}
    summary = {model: summarise(runs, model) for model in args.models}
    report = {"runs": runs, "summary": summary, "tfidf_logreg": peer, "nbsvm": nbsvm, "throughput": speed,
              "split": split}
    (args.out / "result.json").write_text(json.dumps(report, indent=1) + "\n")

    print(f"\nMR accuracy, % ({split['examples']} sentences, split seed {split['seed']}; networks: mean +- standard "
          f"error of {args.seeds} seed(s), test part and best validation; linear peers: train + validation)")
    for model in args.models:
        row, target = MODELS[model][2], MODELS[model][3]
        figures = summary[model]
        goal = target if target is not None else peer["test_accuracy"] + WIDE_MARGIN
        verdict = "met" if figures["test"] >= goal else "MISSED"
        budget = "met" if figures["slowest_s"] < BUDGET_S else "MISSED"
        print(f"  {row:48s} {figures['test']:5.1f} +- {figures['test_se']:.1f}   (validation "
              f"{figures['validation']:.1f} +- {figures['validation_se']:.1f})   target >= {goal:.1f}: {verdict}; "
              f"best checkpoint within {figures['slowest_s']:.0f} s (target < {BUDGET_S:.0f} s: {budget})")
    print(f"  {'TF-IDF + logistic regression (scikit-learn)':48s} {peer['test_accuracy']:5.1f}")
    print(f"  {'NBSVM-bigram (Wang and Manning 2012, ours)':48s} {nbsvm['test_accuracy']:5.1f}")
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
