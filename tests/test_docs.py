"""The documentation cannot drift from the code: the site builds strictly, every command shown parses, every
Python example runs.

* The MkDocs site (mkdocs.yml, docs/) builds with ``--strict``: a broken link, a page missing from the
  navigation or an API name mkdocstrings cannot find fails.
* Every ``unrolled ...`` command in README.md and docs/ (in sh code blocks and in inline code) is parsed
  by the real argument parser, `unrolled.cli.build_parser` (parsed only, never run): an unknown flag, a
  wrong choice or a missing argument fails.
* Every ```python block of README.md and docs/ runs, in a fresh folder holding tiny data files under the
  names the docs use (play.txt, reviews.csv, ner.conll, pairs.tsv, captions.json, digits.json, clips.npz,
  clip.gif, manifest.jsonl, a.wav), with every training cut to two steps on the CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
SHELL = {"sh", "bash", "shell", "console"}
# Commands other branches add; the lead removes a verb from here when merging its branch.
NOT_HERE_YET: set[str] = set()


def blocks(language: set[str]) -> Iterator[tuple[str, int, str]]:
    """(page relative to the repository, line, code) of every fenced block in one of the languages."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if match.group(1) in language:
                yield str(page.relative_to(ROOT)), text.count("\n", 0, match.start()) + 2, match.group(2)


# ---------------------------------------------------------------- the site


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir",
                            str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "site" / "api" / "recurrent" / "index.html").is_file()


# ---------------------------------------------------------------- commands


def invocations(line: str) -> Iterator[list[str]]:
    """The arguments of each `unrolled` invocation on a shell line (after pipes, `python -m`, torchrun)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    tokens = list(lexer)
    segment: list[str] = []
    for token in [*tokens, ";"]:
        if token and set(token) <= set("|&;<>"):
            for k, word in enumerate(segment):
                called = word == "unrolled" or word.endswith("/unrolled")
                if called and (k == 0 or segment[k - 1] == "-m"):
                    yield segment[k + 1:]
                    break
            segment = []
        else:
            segment.append(token)


def placeholder(word: str) -> bool:
    """Whether a word of a usage line stands for something: APP, RUN, [options], a|b, ..."""
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_.]*", word)) or bool(set(word) & set("[]|")) or "..." in word


def shell_commands() -> Iterator[tuple[str, list[str]]]:
    """(where, arguments) of every command shown: sh blocks line by line (continuations joined), and inline
    code that is a whole command: with a flag, and none of the placeholders of a usage line (APP, RUN, [..],
    a | b, ...)."""
    for page, line, code in blocks(SHELL):
        joined = code.replace("\\\n", " ")
        for offset, text in enumerate(joined.splitlines()):
            for arguments in invocations(text):
                yield f"{page}:{line + offset}", arguments
    for page in PAGES:
        for number, text in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if text.startswith("```") or text.startswith("    "):
                continue
            for span in INLINE.findall(text):
                words = span.split()
                if words[0] not in ("unrolled", ".venv/bin/unrolled") or not any(w.startswith("-") for w in words):
                    continue  # not a command, or only a command's name (`unrolled speech train`)
                if any(placeholder(word) for word in words):
                    continue  # a usage line, not a command
                yield f"{page.relative_to(ROOT)}:{number}", shlex.split(span)[1:]


COMMANDS = sorted(set((where, tuple(arguments)) for where, arguments in shell_commands()))


def test_the_docs_show_commands_of_every_application() -> None:
    from unrolled.apps.registry import APPLICATIONS

    shown = {arguments[0] for _, arguments in COMMANDS if arguments}
    assert set(APPLICATIONS) <= shown, f"no command shown for {set(APPLICATIONS) - shown}"


@pytest.mark.parametrize(("where", "arguments"), COMMANDS, ids=[f"{w} {' '.join(a)[:60]}" for w, a in COMMANDS])
def test_every_command_shown_parses(where: str, arguments: tuple[str, ...],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from unrolled.cli import build_parser
    from unrolled.cli.viz import with_default_action

    if arguments and arguments[0] in NOT_HERE_YET:
        pytest.skip(f"`unrolled {arguments[0]}` is added by another branch")
    try:
        build_parser().parse_args(with_default_action(list(arguments)))
    except SystemExit as stop:  # --help exits 0; a usage error exits 2 with one line on stderr
        assert stop.code == 0, f"{where}: unrolled {' '.join(arguments)}\n{capsys.readouterr().err}"


# ---------------------------------------------------------------- Python examples


def write_text_files(folder: Path) -> None:
    verse = ("MACBETH.\nIf we should fail?\n\nLADY MACBETH.\nWe fail?\nBut screw your courage to the "
             "sticking-place,\nAnd we'll not fail.\n\n")
    (folder / "play.txt").write_text(verse * 120, encoding="utf-8")
    (folder / "other.txt").write_text(verse * 10, encoding="utf-8")


def write_reviews(folder: Path) -> None:
    from tests.test_apps import write_toy

    write_toy(folder / "reviews.csv")


def write_conll_file(folder: Path) -> None:
    from tests.test_tag_cli import tagged
    from unrolled.data.conll import write_conll

    write_conll(folder / "ner.conll", tagged(40, 0))


def write_pairs(folder: Path) -> None:
    from tests.test_seq2seq_cli import words

    (folder / "pairs.tsv").write_text("".join(f"{w}\t{w[::-1]}\n" for w in words(60, 0)), encoding="utf-8")


def write_captions(folder: Path) -> None:
    from tests.test_caption_task import squares
    from unrolled.data.images import write_coco

    write_coco(folder / "captions.json", squares(24))


def write_digits(folder: Path) -> None:
    from tests.test_glimpse_task import squares
    from unrolled.data.images import write_coco

    write_coco(folder / "digits.json", squares(24))


def write_clip_files(folder: Path) -> None:
    from PIL import Image

    from tests.test_video import moving_squares
    from unrolled.data.clips import write_clips

    clips = moving_squares(12)
    write_clips(folder / "clips.npz", clips)
    frames = [Image.fromarray(frame) for frame in clips.frames[0]]
    frames[0].save(folder / "clip.gif", save_all=True, append_images=frames[1:])


def write_speech(folder: Path) -> None:
    from tests.test_speech_task import write_corpus

    write_corpus(folder, ["ab", "ba"], copies=5, split=True)
    shutil.copy(folder / "clips" / "ab-0.wav", folder / "a.wav")


# What an example names -> what writes it into the example's folder.
DATA: dict[str, Callable[[Path], None]] = {
    "play.txt": write_text_files, "reviews.csv": write_reviews, "ner.conll": write_conll_file,
    "pairs.tsv": write_pairs, "captions.json": write_captions, "digits.json": write_digits,
    "clips.npz": write_clip_files, "manifest.jsonl": write_speech}

EXAMPLES = list(blocks({"python"}))


@pytest.fixture
def two_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Trainer trains two steps on the CPU, quietly and without validation, whatever the example asks."""
    from unrolled.training.loop import Trainer

    original = Trainer.__init__

    def short(self: Trainer, model: Any, data: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        config = dataclasses.replace(config, max_steps=2, max_epochs=None, max_time=None, progress=False,
                                     device="cpu", threads=None, early_stop=None,
                                     schedule="constant" if config.schedule == "plateau" else config.schedule)
        original(self, model, data, config, *args, **{**kwargs, "evaluate": None})

    monkeypatch.setattr(Trainer, "__init__", short)


@pytest.mark.parametrize(("page", "line", "code"), EXAMPLES, ids=[f"{p}:{n}" for p, n, _ in EXAMPLES])
def test_every_python_example_runs(page: str, line: int, code: str, tmp_path: Path, two_steps: None,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name, write in DATA.items():
        if name in code:
            write(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UNROLLED_DATA", str(tmp_path / "cache"))  # an example that downloads fails here
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", UserWarning)  # tiny data warns (unknown tokens, cut texts): not a failure
        exec(compile(code, f"{page}:{line}", "exec"), {"__name__": "__docs__"})
