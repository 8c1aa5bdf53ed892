"""Scores of predictions against references: accuracy, precision, recall, F1, the confusion matrix.

For C classes, the confusion matrix counts every (true class, predicted class)
pair: M[i, j] = #{n : y_n = i, p_n = j}. From it, for class c,

    precision_c = M[c, c] / sum_i M[i, c]     (0 when nothing was predicted c)
    recall_c    = M[c, c] / sum_j M[c, j]     (0 when class c never occurs)
    F1_c        = 2 precision_c recall_c / (precision_c + recall_c)   (0 when both are 0)
    accuracy    = trace(M) / sum(M)
    macro-F1    = mean over classes of F1_c, over the classes that occur in the references or the predictions

(scikit-learn's conventions with ``zero_division=0``).

For generated sequences, each hypothesis h_n against its references R_n (one or
more: a word's pronunciations, a sentence's translations):

    sequence error (WER of G2P)   = #{n : h_n not in R_n} / N
    token error (PER of G2P)      = sum_n min_{r in R_n} d(h_n, r) / sum_n |r*_n|,
                                    d the Levenshtein distance, r*_n the closest reference
    BLEU, chrF                    = sacrebleu's corpus scores (Papineni et al. 2002, Popovic 2015),
                                    with every reference of each item

For speech, one reference y_n per utterance (`error_rates`, jiwer's sums):

    CER = sum_n d_char(h_n, y_n) / sum_n |y_n|_char,   WER = the same over words
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unrolled.extras import need


def confusion_matrix(references: Sequence[int], predictions: Sequence[int], classes: int) -> np.ndarray:
    """M (C, C) int64: M[i, j] counts references i predicted as j."""
    y, p = np.asarray(references, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"references and predictions must be two equal-length lists, got {y.shape} and {p.shape}")
    if len(y) and (min(y.min(), p.min()) < 0 or max(y.max(), p.max()) >= classes):
        raise ValueError(f"class ids must lie in [0, {classes})")
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (y, p), 1)
    return matrix


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros(numerator.shape, dtype=np.float64),
                     where=denominator > 0)


def classification_report(references: Sequence[int], predictions: Sequence[int],
                          labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class precision, recall, F1 and support, as plain JSON.

    ``labels[c]`` names class c. The result::

        {"accuracy": a, "macro_f1": f, "examples": N,
         "classes": {label: {"precision": p, "recall": r, "f1": f, "support": n}, ...},
         "confusion": M as a list of rows}
    """
    matrix = confusion_matrix(references, predictions, len(labels))
    correct = np.diag(matrix).astype(np.float64)  # (C,)
    predicted, actual = matrix.sum(0), matrix.sum(1)  # (C,) columns: predicted as c; rows: truly c
    precision, recall = _ratio(correct, predicted), _ratio(correct, actual)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = (predicted + actual) > 0
    total = int(matrix.sum())
    return {
        "accuracy": float(correct.sum() / total) if total else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "examples": total,
        "classes": {label: {"precision": float(precision[c]), "recall": float(recall[c]), "f1": float(f1[c]),
                            "support": int(actual[c])} for c, label in enumerate(labels)},
        "confusion": matrix.tolist(),
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as a small table: accuracy and macro-F1, then one row per class."""
    width = max([len("class"), *(len(label) for label in report["classes"])])
    lines = [f"accuracy {report['accuracy']:.4f}   macro-F1 {report['macro_f1']:.4f}   "
             f"({report['examples']} examples)",
             f"{'class':<{width}}  precision  recall      f1  support"]
    for label, row in report["classes"].items():
        lines.append(f"{label:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:6.4f}  "
                     f"{row['support']:7d}")
    return "\n".join(lines)


def plot_confusion(matrix: np.ndarray | list[list[int]], labels: Sequence[str], path: str | Path, *,
                   title: str = "confusion matrix") -> Path:
    """Write the confusion matrix as a PNG: rows the true class, columns the prediction, counts in the cells."""
    need("matplotlib", "the confusion matrix")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix)
    size = max(3.0, 0.5 * len(labels) + 2.0)
    figure, axes = plt.subplots(figsize=(size + 1.0, size))
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    if len(labels) <= 30:
        threshold = counts.max() / 2 if counts.size else 0
        for i in range(counts.shape[0]):
            for j in range(counts.shape[1]):
                axes.text(j, i, str(counts[i, j]), ha="center", va="center",
                          color="white" if counts[i, j] > threshold else "black", fontsize=8)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions that turn `a` into `b`."""
    previous = list(range(len(b) + 1))  # distances from a[:0]
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def sequence_errors(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]]
                    ) -> dict[str, float]:
    """Sequence error rate and token error rate (see the module docstring); each item needs a reference."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but references for {len(references)} items")
    wrong, errors, length = 0, 0, 0
    for hypothesis, options in zip(hypotheses, references, strict=True):
        if not options:
            raise ValueError("every item needs at least one reference")
        distance, closest = min((edit_distance(hypothesis, r), len(r)) for r in options)
        wrong += distance > 0
        errors += distance
        length += closest
    n = len(hypotheses)
    return {"sequence_error": wrong / n if n else float("nan"),
            "token_error": errors / length if length else float("nan")}


def bleu_chrf(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Corpus BLEU and chrF (sacrebleu's defaults) of detokenised texts; an item may have several references."""
    need("sacrebleu", "BLEU and chrF")
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but references for {len(references)} items")
    most = max((len(r) for r in references), default=0)
    streams = [[r[k] if k < len(r) else None for r in references] for k in range(most)]
    return {"bleu": sacrebleu.corpus_bleu(list(hypotheses), streams).score,  # type: ignore[arg-type]
            "chrf": sacrebleu.corpus_chrf(list(hypotheses), streams).score}  # type: ignore[arg-type]


def bleu_orders(hypotheses: Sequence[str], references: Sequence[Sequence[str]],
                orders: Sequence[int] = (1, 2, 3, 4)) -> dict[str, float]:
    r"""Corpus BLEU-n for each n of `orders` (sacrebleu, tokenizer 13a), as captioning papers report them.

    .. math::
        \mathrm{BLEU}\text{-}n = \mathrm{BP} \cdot \exp\Bigl(\frac1n \sum_{k=1}^{n} \log p_k\Bigr),\quad
        \mathrm{BP} = \min(1, e^{1 - r/c})

    p_k the clipped k-gram precision over the corpus (every reference of an item
    counts for clipping), r the closest reference lengths, c the output length.
    """
    need("sacrebleu", "BLEU")
    from sacrebleu.metrics import BLEU

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but references for {len(references)} items")
    most = max((len(r) for r in references), default=0)
    streams = [[r[k] if k < len(r) else None for r in references] for k in range(most)]
    return {f"bleu{n}": BLEU(max_ngram_order=n).corpus_score(list(hypotheses), streams).score  # type: ignore[arg-type]
            for n in orders}


def error_rates(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """CER and WER (jiwer, the module docstring's sums) and string accuracy: the share transcribed exactly."""
    need("jiwer", "WER and CER")
    import jiwer

    if len(hypotheses) != len(references) or not references:
        raise ValueError(f"need as many hypotheses as references, at least one: {len(hypotheses)}, {len(references)}")
    return {"cer": float(jiwer.cer(list(references), list(hypotheses))),
            "wer": float(jiwer.wer(list(references), list(hypotheses))),
            "string_accuracy": sum(h == r for h, r in zip(hypotheses, references, strict=True)) / len(references)}
