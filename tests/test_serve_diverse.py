"""The auto-reply rule: known cases, and its properties on any candidate list (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unrolled.serve.diverse import MAX_WORDS, WORD, diverse, has_near_duplicates, near_duplicates, words


@pytest.mark.parametrize(("a", "b", "same"), [
    ("I am fine.", "i am fine", True),  # same words
    ("I am fine thanks", "I am fine", True),  # one inside the other
    ("what is your name", "what is his name", True),  # Jaccard 3/5
    ("yes", "no", False),
    ("I like cats", "dogs are great", False),
    ("I do not know", "who knows", False),
    ("...", "!!!", True),  # no words at all: the same empty reply
    ("...", "yes", False),
])
def test_near_duplicates_by_the_documented_rule(a: str, b: str, same: bool) -> None:
    assert near_duplicates(a, b) is same
    assert near_duplicates(b, a) is same


def test_the_best_short_reply_comes_first_and_each_later_one_says_something_else() -> None:
    candidates = [("I am fine.", -1.0), ("i am fine", -1.2), ("I am fine thanks", -1.5), ("Not bad.", -2.0),
                  ("not bad at all", -2.1), ("Why do you ask?", -3.0), ("ok", -9.0)]
    assert diverse(candidates, 3) == [("I am fine.", -1.0), ("Not bad.", -2.0), ("Why do you ask?", -3.0)]
    assert diverse(candidates, 1) == [("I am fine.", -1.0)]
    assert [text for text, _ in diverse(candidates, 10)] == ["I am fine.", "Not bad.", "Why do you ask?", "ok"]


def test_long_and_empty_replies_are_left_out() -> None:
    long = " ".join(["word"] * (MAX_WORDS + 1))
    assert diverse([(long, 0.0), ("", -0.5), ("?", -0.7), ("sure", -1.0)], 2) == [("sure", -1.0)]
    with pytest.raises(ValueError, match="k must be"):
        diverse([("a", 0.0)], 0)


replies = st.lists(st.tuples(st.text(alphabet="ab c.", max_size=12),
                             st.floats(min_value=-50, max_value=0, allow_nan=False)), max_size=20)


@settings(max_examples=200, deadline=None)
@given(replies, st.integers(min_value=1, max_value=6))
def test_suggestions_are_short_distinct_best_first_candidates(candidates: list[tuple[str, float]], k: int) -> None:
    chosen = diverse(candidates, k)
    assert len(chosen) <= k and all(pair in candidates for pair in chosen)
    assert not has_near_duplicates([text for text, _ in chosen])
    assert [score for _, score in chosen] == sorted((score for _, score in chosen), reverse=True)
    assert all(words(text) for text, _ in chosen)
    eligible = sorted((c for c in candidates if 1 <= len(WORD.findall(c[0].lower())) <= MAX_WORDS),
                      key=lambda c: -c[1])
    if eligible:
        assert chosen[0] == eligible[0]  # the best short candidate is always the first suggestion
    for text, score in candidates:  # a candidate left out was worse than a kept near-duplicate of it, or full
        if (text, score) in chosen or (text, score) not in eligible:
            continue
        assert len(chosen) == k or any(near_duplicates(text, kept) and kept_score >= score
                                       for kept, kept_score in chosen)


def test_serve_caps_malloc_arenas_unless_the_environment_says(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform
    import sys

    from unrolled.cli.serve import limit_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False  # the user's setting stands (glibc has read it already)
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert limit_malloc_arenas() is True
