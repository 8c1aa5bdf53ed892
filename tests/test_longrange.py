"""The long-range tasks by known answers: adding sums the marked values, copy returns its string, order's class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unrolled.data.longrange import (
    COPY_ALPHABET,
    COPY_SYMBOLS,
    ORDER_X,
    ORDER_Y,
    TASKS,
    Adding,
    CharLM,
    Copy,
    TemporalOrder,
    make_task,
    read_text_slice,
)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize("length", [10, 37, 100])
def test_adding_target_is_the_sum_of_the_two_marked_values(length: int) -> None:
    x, y = Adding().batch(rng(), 64, length)
    assert x.shape == (64, length, 2) and y.shape == (64,)
    marks = x[..., 1]
    assert torch.equal(marks.sum(1), torch.full((64,), 2.0))
    assert bool((marks[:, : length // 2].sum(1) == 1).all())  # one mark in each half
    torch.testing.assert_close((x[..., 0] * marks).sum(1), y)


def test_adding_scores_by_the_tolerance_and_chance_is_the_best_constant() -> None:
    task = Adding()
    target = torch.tensor([1.0, 1.0, 1.0])
    assert task.score(torch.tensor([1.03, 0.97, 1.2]), target) == pytest.approx(2 / 3)
    _, y = task.batch(rng(1), 50_000, 10)
    assert task.score(torch.ones_like(y), y) == pytest.approx(task.chance, abs=0.005)


@pytest.mark.parametrize("length", [10, 25])
def test_copy_target_is_the_input_string_and_the_rest_is_blank(length: int) -> None:
    x, y = Copy().batch(rng(), 32, length)
    assert x.shape == (32, 2 * COPY_SYMBOLS + length) and y.shape == (32, COPY_SYMBOLS)
    assert torch.equal(x[:, :COPY_SYMBOLS], y)
    assert bool(((y >= 1) & (y <= COPY_ALPHABET)).all())
    assert bool((x[:, COPY_SYMBOLS + length] == COPY_ALPHABET + 1).all())  # go marker after the delay
    rest = torch.cat([x[:, COPY_SYMBOLS : COPY_SYMBOLS + length], x[:, COPY_SYMBOLS + length + 1 :]], dim=1)
    assert bool((rest == 0).all())


@pytest.mark.parametrize("length", [10, 50, 120])
def test_temporal_order_class_follows_the_order_of_the_marks(length: int) -> None:
    x, y = TemporalOrder().batch(rng(), 256, length)
    for row, label in zip(x.tolist(), y.tolist(), strict=True):
        marks = [(t, s) for t, s in enumerate(row) if s in (ORDER_X, ORDER_Y)]
        assert len(marks) == 2
        (t1, m1), (t2, m2) = marks
        assert length // 10 <= t1 <= 2 * length // 10 and 5 * length // 10 <= t2 <= 6 * length // 10
        assert label == 2 * (m1 == ORDER_Y) + (m2 == ORDER_Y)
    assert set(y.tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize("name", ["adding", "copy", "order"])
def test_batches_are_determined_by_the_seed(name: str) -> None:
    task = make_task(name)
    first, again, other = (task.batch(rng(seed), 8, 20) for seed in (3, 3, 4))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


def test_too_short_a_length_and_unknown_task_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="at least 10"):
        Adding().batch(rng(), 2, 9)
    with pytest.raises(ValueError, match="choose from adding, copy, order, charlm"):
        make_task("parity")
    assert TASKS == ("adding", "copy", "order", "charlm")


def test_charlm_slice_windows_predict_the_next_character(tmp_path: Path) -> None:
    path = tmp_path / "text.txt"
    path.write_text("abcdefgh" * 40, encoding="utf-8")
    task = CharLM(read_text_slice(path, train_chars=200, valid_chars=100))
    x, y = task.batch(rng(), 4, 10)
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal((x + 1) % 8, y)  # in "abcdefgh..." the next character is always the next letter
    vx, vy = task.validation(10)
    assert vx.shape == (9, 10) and torch.equal(vx[:, 1:], vy[:, :-1])
    assert task.chance == pytest.approx(3.0)  # log2 of 8 characters


def test_charlm_missing_or_short_text_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found: give --text FILE"):
        make_task("charlm", text=tmp_path / "none.txt")
    short = tmp_path / "short.txt"
    short.write_text("abc", encoding="utf-8")
    with pytest.raises(ValueError, match="has 3 characters"):
        read_text_slice(short)
