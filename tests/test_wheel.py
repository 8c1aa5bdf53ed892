"""The wheel `pip install .` builds: what it holds, what it leaves out, what it asks pip for."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = {"torch", "numpy", "safetensors", "tqdm", "pyyaml", "ninja", "typing-extensions"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel built from a copy of the sources (so the build leaves nothing in the checkout)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "unrolled", source / "unrolled", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            str(source), "-w", str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("unrolled-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_the_package_and_its_data_files(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for needed in ("unrolled/native.cpp", "unrolled/py.typed", "unrolled/data/datasets.yaml",
                   "unrolled/data/sources/pins.txt", "unrolled/viz/static/index.html", "unrolled/viz/static/app.js",
                   "unrolled/viz/static/style.css", "unrolled/cli/__main__.py", "unrolled/apps/registry.py"):
        assert needed in names, needed
    assert any(name.endswith("licenses/LICENSE") for name in names)
    sources = {path.relative_to(ROOT).as_posix() for path in (ROOT / "unrolled").rglob("*.py")}
    assert sources <= names  # every module of the checkout


def test_the_wheel_leaves_out_tests_benchmarks_and_results(wheel: zipfile.ZipFile) -> None:
    for name in wheel.namelist():
        assert name.startswith(("unrolled/", "unrolled-")), name
        assert "__pycache__" not in name and not name.endswith((".pyc", ".png", ".safetensors")), name


def test_the_core_asks_for_few_packages_and_the_rest_are_extras(wheel: zipfile.ZipFile) -> None:
    (metadata_name,) = [name for name in wheel.namelist() if name.endswith(".dist-info/METADATA")]
    metadata = Parser().parsestr(wheel.read(metadata_name).decode("utf-8"))
    requires = metadata.get_all("Requires-Dist") or []
    core = {_name(requirement) for requirement in requires if "extra ==" not in requirement}
    assert core == CORE
    assert {"text", "vision", "audio", "viz", "all", "dev"} <= set(metadata.get_all("Provides-Extra") or [])
    for heavy in ("pillow", "matplotlib", "soundfile", "sentencepiece", "sacrebleu", "jiwer"):
        assert heavy not in core
    assert "License :: OSI Approved :: MIT License" in (metadata.get_all("Classifier") or [])


def _name(requirement: str) -> str:
    """The distribution a Requires-Dist line names, normalised (lower case, - for _)."""
    for stop in "<>=!~;[ (":
        requirement = requirement.split(stop)[0]
    return requirement.strip().lower().replace("_", "-")
