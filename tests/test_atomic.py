"""unrolled.atomic: a staged folder becomes its final name whole, or leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from unrolled.atomic import replace_folder, staged_folder


def test_a_staged_folder_appears_whole_and_readable(tmp_path: Path) -> None:
    final = tmp_path / "cache" / "set"
    with staged_folder(final) as staging:
        assert staging.parent == final.parent and staging.name.startswith(".set.tmp-")
        (staging / "sub").mkdir()
        (staging / "sub" / "a.txt").write_text("a")
        assert not final.exists()
    assert (final / "sub" / "a.txt").read_text() == "a"
    assert final.stat().st_mode & 0o777 == 0o755
    assert os.listdir(final.parent) == ["set"]


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_an_error_while_staging_leaves_the_old_folder_and_no_temporary(tmp_path: Path,
                                                                      error: type[BaseException]) -> None:
    final = tmp_path / "set"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(error), staged_folder(final) as staging:
        (staging / "new.txt").write_text("new")
        raise error("stop")
    assert os.listdir(tmp_path) == ["set"] and os.listdir(final) == ["old.txt"]


def test_an_existing_folder_is_replaced_unless_kept(tmp_path: Path) -> None:
    final = tmp_path / "set"
    final.mkdir()
    (final / "partial").write_text("")
    with staged_folder(final, keep=lambda folder: (folder / "done").is_file()) as staging:
        (staging / "done").write_text("mine")
    assert os.listdir(final) == ["done"] and os.listdir(tmp_path) == ["set"]
    with staged_folder(final, keep=lambda folder: (folder / "done").is_file()) as staging:
        (staging / "done").write_text("another copy")
    assert (final / "done").read_text() == "mine" and os.listdir(tmp_path) == ["set"]


def test_replace_folder_puts_the_old_one_back_if_the_second_rename_fails(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    target, staged = tmp_path / "run", tmp_path / ".run.tmp-1"
    target.mkdir()
    (target / "old").write_text("")
    staged.mkdir()
    original, calls = os.replace, []

    def second_fails(source: Path, destination: Path) -> None:
        calls.append(destination)
        if len(calls) == 2:
            raise OSError("disk full")
        original(source, destination)

    monkeypatch.setattr(os, "replace", second_fails)
    with pytest.raises(OSError, match="disk full"):
        replace_folder(staged, target)
    assert os.listdir(target) == ["old"] and calls[1] == target
