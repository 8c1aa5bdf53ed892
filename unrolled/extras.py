"""The optional parts of unrolled, and the pip extra that installs each.

``pip install unrolled`` gives the recurrent core, the trainer, the character
language model, the classifiers and the tagger: torch, numpy, safetensors,
tqdm, PyYAML and ninja. Each application's heavier needs are an extra:

=========  =====================================  ==============================================
extra      packages                               what needs them
=========  =====================================  ==============================================
text       sentencepiece, sacrebleu               seq2seq: subword vocabularies, BLEU and chrF
vision     Pillow, fonttools                      images: caption, glimpse, video, image datasets
audio      soundfile, soxr, jiwer                 speech: reading and resampling audio, WER/CER
viz        matplotlib                             pictures: learning curves, confusion matrices,
                                                  attention maps, glimpse paths
serve      fastapi, uvicorn, python-multipart     ``unrolled serve``
export     onnx, onnxruntime                      ``unrolled export`` and its runtime
all        every one of the above
=========  =====================================  ==============================================

Code that needs an optional module asks for it here (`need`, or `lazy` for a
module-level name): when it is missing, the user gets one line that names the
extra to install, `MissingExtra`, instead of a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

EXTRAS: dict[str, tuple[str, ...]] = {
    "text": ("sentencepiece", "sacrebleu"),
    "vision": ("Pillow", "fonttools"),
    "audio": ("soundfile", "soxr", "jiwer"),
    "viz": ("matplotlib",),
    "serve": ("fastapi", "uvicorn", "python-multipart"),
    "export": ("onnx", "onnxruntime"),
}
"""Each extra and the distributions it installs (``pyproject.toml`` says the same, with versions)."""

PROVIDED_BY: dict[str, tuple[str, str]] = {
    "sentencepiece": ("text", "sentencepiece"),
    "sacrebleu": ("text", "sacrebleu"),
    "PIL": ("vision", "Pillow"),
    "fontTools": ("vision", "fonttools"),
    "soundfile": ("audio", "soundfile"),
    "soxr": ("audio", "soxr"),
    "jiwer": ("audio", "jiwer"),
    "matplotlib": ("viz", "matplotlib"),
    "fastapi": ("serve", "fastapi"),
    "uvicorn": ("serve", "uvicorn"),
    "multipart": ("serve", "python-multipart"),
    "python_multipart": ("serve", "python-multipart"),
    "onnx": ("export", "onnx"),
    "onnxruntime": ("export", "onnxruntime"),
}
"""The top-level module each optional distribution installs: (its extra, the distribution)."""


class MissingExtra(ImportError):
    """An optional module is not installed; the message names the extra that installs it."""


def need(module: str, purpose: str = "this") -> ModuleType:
    """The module `module` (e.g. "PIL.Image"); a one-line `MissingExtra` naming its extra when it is not
    installed. `purpose` says what needed it ("reading images")."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        top = (error.name or module).split(".")[0]
        if top not in PROVIDED_BY:
            raise
        extra, distribution = PROVIDED_BY[top]
        raise MissingExtra(f"{purpose} needs {distribution}, which is not installed: pip install "
                           f"'unrolled[{extra}]' (or 'unrolled[all]')") from None


class _Lazy:
    """A module imported on first use of one of its names (see `lazy`)."""

    def __init__(self, module: str, purpose: str) -> None:
        self._module, self._purpose = module, purpose

    def __getattr__(self, name: str) -> Any:
        return getattr(need(self._module, self._purpose), name)


def lazy(module: str, purpose: str = "this") -> Any:
    """A stand-in for a module-level ``import module``: the import happens (or fails with `MissingExtra`) when a
    name of it is first used, so importing the code that holds it never needs the extra. Pair it with the real
    import under ``typing.TYPE_CHECKING`` so that type checkers see the module."""
    return _Lazy(module, purpose)
