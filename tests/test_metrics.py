"""Classification scores: known answers worked by hand, and properties."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from unrolled.metrics import bleu_orders, classification_report, confusion_matrix, format_report, plot_confusion

LABELS = ["cat", "dog", "eel"]
#               true:  cat cat cat dog dog eel eel eel eel
REFERENCES = [0, 0, 0, 1, 1, 2, 2, 2, 2]
PREDICTIONS = [0, 1, 0, 1, 2, 2, 2, 0, 2]


def test_confusion_matrix_counts_every_pair() -> None:
    assert confusion_matrix(REFERENCES, PREDICTIONS, 3).tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 3]]


def test_report_known_answer() -> None:
    report = classification_report(REFERENCES, PREDICTIONS, LABELS)
    assert report["accuracy"] == pytest.approx(6 / 9)
    cat, dog, eel = (report["classes"][name] for name in LABELS)
    # cat: 2 right of 3 predicted cat (one eel called cat), 2 of 3 cats found
    assert (cat["precision"], cat["recall"], cat["support"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 3)
    assert (dog["precision"], dog["recall"]) == (pytest.approx(1 / 2), pytest.approx(1 / 2))
    assert (eel["precision"], eel["recall"]) == (pytest.approx(3 / 4), pytest.approx(3 / 4))
    f1 = [2 / 3, 1 / 2, 3 / 4]  # precision == recall, so F1 equals both
    assert report["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert report["confusion"] == [[2, 1, 0], [0, 1, 1], [1, 0, 3]]


def test_a_class_never_predicted_scores_zero_not_nan() -> None:
    report = classification_report([0, 1, 1], [1, 1, 1], ["a", "b"])
    assert report["classes"]["a"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["classes"]["b"]["precision"] == pytest.approx(2 / 3)
    assert report["macro_f1"] == pytest.approx((0 + 0.8) / 2)


def test_a_class_absent_from_both_sides_is_left_out_of_macro_f1() -> None:
    report = classification_report([0, 0, 1], [0, 0, 1], ["a", "b", "unused"])
    assert report["macro_f1"] == 1.0 and report["accuracy"] == 1.0


def test_perfect_and_random_predictions_properties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 500).tolist()
    assert classification_report(y, y, list("abcd"))["macro_f1"] == 1.0
    p = rng.integers(0, 4, 500).tolist()
    report = classification_report(y, p, list("abcd"))
    assert np.trace(np.array(report["confusion"])) == sum(a == b for a, b in zip(y, p, strict=True))
    assert sum(row["support"] for row in report["classes"].values()) == 500


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="equal-length"):
        confusion_matrix([0, 1], [0], 2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        confusion_matrix([0, 2], [0, 1], 2)


def test_format_and_plot(tmp_path: Path) -> None:
    report = classification_report(REFERENCES, PREDICTIONS, LABELS)
    text = format_report(report)
    assert text.splitlines()[0].startswith("accuracy 0.6667   macro-F1 0.6389")
    assert len(text.splitlines()) == 2 + len(LABELS)
    path = plot_confusion(report["confusion"], LABELS, tmp_path / "confusion.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bleu_orders_are_the_geometric_means_of_the_first_n_precisions() -> None:
    # "a b x y": 1-grams 2/4 match, 2-grams 1/3 ("a b"), 3-grams 0/2; the closest reference has 4 words: BP = 1.
    scores = bleu_orders(["a b x y"], [["a b c d", "p q r s t"]], orders=(1, 2))
    assert scores["bleu1"] == pytest.approx(100 * 2 / 4)
    assert scores["bleu2"] == pytest.approx(100 * math.sqrt(2 / 4 * 1 / 3))
    assert bleu_orders(["a b c d"], [["a b c d"]])["bleu4"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="2 hypotheses but references for 1 items"):
        bleu_orders(["a", "b"], [["a"]])
