"""English -> Spanish Bible verses: BLEU and chrF, attention vs none, greedy vs beam 5.

The built-in ``bible-en-es`` dataset (31,046 verse pairs of the World English
Bible and the Reina-Valera 1909, from Debian's SWORD packages) is split once
by verse (`--split-seed`, 5% validation, 5% test). Each model trains through
``unrolled seq2seq train`` on sentencepiece subwords (4,000 per side, learnt
from the training verses) for `--minutes` of wall-clock time on `--threads`
threads; its best-validation checkpoint translates the test verses greedily
and with beam 5, scored with sacrebleu (BLEU, chrF) against the Spanish verse.

No published figure exists for this pair of translations; the comparison is
within the table: attention against none, beam against greedy, and the
trivial baseline of copying the English verse (names and numbers overlap).

    .venv/bin/python bench/translate_bible.py --model attention --minutes 60
    .venv/bin/python bench/translate_bible.py --model none --minutes 60
    .venv/bin/python bench/translate_bible.py --report
"""

from __future__ import annotations

from typing import Any

import harness

RESULTS = harness.results_dir("bible")
MODELS = {
    "attention": ["--attention", "general"],
    "none": ["--attention", "none", "--no-input-feed"],
}


def run_model(name: str, minutes: float, threads: int, extra: list[str]) -> dict[str, Any]:
    from unrolled.apps.seq2seq import Seq2SeqEvalOptions, Translator, references, split_pairs
    from unrolled.apps.split import SplitRecord
    from unrolled.data import obtain
    from unrolled.data.pairs import read_pairs
    from unrolled.metrics import bleu_chrf

    recipe = ["seq2seq", "train", "--dataset", "bible-en-es", "--source-tokens", "subword", "--target-tokens",
              "subword", "--subword-vocab", "4000", "--max-len", "120", "--embedding", "256", "--hidden", "256",
              "--batch", "32", "--schedule", "cosine", "--lr", "2e-3", "--dropout", "0.3", "--eval-every", "500",
              "--log-every", "100", *MODELS[name]]
    trained = harness.train(RESULTS, name, recipe, minutes, threads, extra)
    translator = Translator.load(trained.out)
    assert translator.split is not None
    test = split_pairs(read_pairs(obtain("bible-en-es")), SplitRecord(**translator.split))["test"]
    report = translator.evaluate(test, Seq2SeqEvalOptions(beam=5))
    sources, targets = references(test)
    copy = bleu_chrf(sources, targets)
    example = translator.translate(sources[:5], beam=5)
    result = {**trained.summary(),
              "copy_baseline": copy, **report,
              "examples": [{"source": s, "reference": r[0], "beam5": t[0].text}
                           for s, r, t in zip(sources[:5], targets[:5], example, strict=True)]}
    harness.record(RESULTS, name, result)
    return result


def report() -> None:
    rows = harness.rows(RESULTS, MODELS)
    copy = rows[0]["copy_baseline"]
    harness.table(f"English -> Spanish, test verses of our split ({rows[0]['sources']} verses)",
                  [("model", 40), ("BLEU", 6), ("chrF", 6), ("verses/s", 9)],
                  [("copy the English verse", f"{copy['bleu']:.2f}", f"{copy['chrf']:.2f}", ""),
                   *((f"{'attention' if row['model'] == 'attention' else 'no attention'}, {decoding}",
                      f"{s['bleu']:.2f}", f"{s['chrf']:.2f}", f"{s['per_second']:.1f}")
                     for row, decoding, s in harness.by_decoding(rows))])
    for row in rows:
        print(f"{row['model']}: trained {row['train_seconds'] / 60:.1f} min on {row['threads']} thread(s)")


if __name__ == "__main__":
    harness.main(RESULTS, __doc__, MODELS, run_model, report, picture="attention", minutes=60.0)
