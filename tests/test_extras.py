"""Without an extra's packages, unrolled still imports and trains what needs none; what needs them says so in a line.

Each case runs the command in a fresh interpreter in which the optional packages
cannot be imported (``sys.modules[name] = None`` makes ``import name`` fail, as
on a machine that lacks them).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from unrolled.extras import EXTRAS, PROVIDED_BY, MissingExtra, need

OPTIONAL = ("PIL", "fontTools", "soundfile", "soxr", "jiwer", "sentencepiece", "sacrebleu", "matplotlib")
TINY_LM = ["--layers", "1", "--hidden", "8", "--embedding", "4", "--batch-size", "2", "--seq-len", "8",
           "--max-steps", "2", "--no-progress", "--device", "cpu"]


def without_extras(arguments: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``unrolled ARGUMENTS`` where none of the optional packages can be imported."""
    script = ("import sys\n"
              f"for name in {OPTIONAL!r}:\n"
              "    sys.modules[name] = None\n"
              "from unrolled.cli import main\n"
              f"sys.exit(main({arguments!r}))\n")
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=300,
                          check=False)


def test_every_optional_module_names_an_extra_that_lists_its_distribution() -> None:
    for module, (extra, distribution) in PROVIDED_BY.items():
        assert distribution in EXTRAS[extra], module


def test_a_missing_module_is_one_line_naming_its_extra() -> None:
    with pytest.raises(MissingExtra, match=r"^the test needs Pillow, which is not installed: pip install "
                                           r"'unrolled\[vision\]' \(or 'unrolled\[all\]'\)$"):
        need("PIL.NoSuchModuleHere", "the test")
    with pytest.raises(ImportError) as caught:  # a module of no extra is an ordinary ImportError
        need("no_such_module_anywhere")
    assert not isinstance(caught.value, MissingExtra)


def test_the_core_trains_and_samples_the_character_model_without_any_extra(tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text("to be or not to be, that is the question\n" * 30, encoding="utf-8")
    assert without_extras(["--help"], tmp_path).returncode == 0
    trained = without_extras(["lm", "train", str(text), "--out", str(tmp_path / "run"), *TINY_LM], tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "no curve.png" in trained.stderr and "unrolled[viz]" in trained.stderr  # said, not failed
    assert not (tmp_path / "run" / "curve.png").exists()
    sampled = without_extras(["lm", "predict", str(tmp_path / "run"), "--prime", "to", "--length", "5",
                              "--device", "cpu"], tmp_path)
    assert sampled.returncode == 0 and sampled.stdout.startswith("to"), sampled.stderr


@pytest.mark.parametrize(("arguments", "extra"), [
    (["caption", "train", "captions.json", "--out", "run", "--max-steps", "1"], "vision"),
    (["speech", "train", "manifest.jsonl", "--out", "run", "--max-steps", "1"], "audio"),
])
def test_what_needs_an_extra_says_which_in_one_line(arguments: list[str], extra: str, tmp_path: Path) -> None:
    from tests.test_caption_task import squares
    from unrolled.data.images import write_coco

    write_coco(tmp_path / "captions.json", squares(4))
    (tmp_path / "clip.wav").write_bytes(b"RIFF")
    (tmp_path / "manifest.jsonl").write_text('{"audio": "clip.wav", "text": "a"}\n', encoding="utf-8")
    failed = without_extras(arguments, tmp_path)
    lines = failed.stderr.strip().splitlines()
    assert failed.returncode == 2 and len(lines) == 1, failed.stderr
    assert f"pip install 'unrolled[{extra}]'" in lines[0], lines[0]
