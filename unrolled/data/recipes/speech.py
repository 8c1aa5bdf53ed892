"""Recipes of the spoken datasets: spoken-digits and spoken-sentences, synthesised by `unrolled.data.synth`.

The synthesisers come from the system or from pinned Debian packages
unpacked into ``<cache>/tools`` (`unrolled.data.synth.find_engines`).
See `unrolled.data.recipes` for the conventions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from unrolled.data import diphones
from unrolled.data.cache import TOOLS, cache_dir
from unrolled.data.errors import DataError
from unrolled.data.recipes import Source
from unrolled.data.speech import write_manifest
from unrolled.data.synth import (
    ESPEAK,
    Engines,
    Voice,
    digit_texts,
    engines_info,
    find_engines,
    short_sentences,
    speak_dataset,
)

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
    engines = engines or find_engines(cache_dir() / TOOLS)
    texts = {split: digit_texts(count, np.random.default_rng(SPEECH_SEED + 100 + k))
             for k, (split, count) in enumerate(counts.items())}
    info = {"dataset": "spoken-digits", "engines": engines_info(engines)}
    return speak_dataset(folder, texts, _voices(engines), engines.synthesise, seed=SPEECH_SEED, info=info)


def obtain_spoken_sentences(folder: Path, *, engines: Engines | None = None,
                            source: Source,
                            counts: Mapping[str, int] = SPEECH_COUNTS) -> Path:
    """Write ``manifest.jsonl`` and ``clips/``: short sentences of the World English Bible, spoken.

    The English side of ``bible-en-es`` (public domain) is cut into sentences
    and normalised by `unrolled.data.synth.short_sentences` (4 to 12 words,
    every word common in the Bible, lower-case letters and apostrophes); a
    seeded shuffle deals distinct sentences to the splits, which are spoken
    as in `obtain_spoken_digits`. ``source`` gives a dataset's file.
    """
    path = source("bible-en-es")
    passages = [json.loads(line)["source"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    sentences = short_sentences(passages)
    if len(sentences) < sum(counts.values()):
        raise DataError(f"{path} gives {len(sentences)} short sentences, fewer than the {sum(counts.values())} asked")
    order = np.random.default_rng(SPEECH_SEED).permutation(len(sentences))
    bounds = np.cumsum([0, *counts.values()])
    texts = {split: [sentences[k] for k in order[bounds[i] : bounds[i + 1]]] for i, split in enumerate(counts)}
    engines = engines or find_engines(cache_dir() / TOOLS)
    info = {"dataset": "spoken-sentences", "source": "bible-en-es (World English Bible)",
            "sentences": len(sentences), "engines": engines_info(engines)}
    return speak_dataset(folder, texts, _voices(engines), engines.synthesise, seed=SPEECH_SEED, info=info)




def obtain_diphone_digits(folder: Path, *, engines: Engines | None = None,
                          counts: Mapping[str, int] = diphones.COUNTS) -> Path:
    """Write ``manifest.jsonl`` and ``clips/``: digit strings as people say them (zero or oh, with and without pauses,
    in groups) spoken by the four MBROLA voices, split by speaker (`unrolled.data.diphones`)."""
    tools = cache_dir() / TOOLS
    espeak = (engines or find_engines(tools)).programs[ESPEAK]
    return diphones.speak_digit_strings(folder, diphones.mbrola_engines(espeak, tools), seed=SPEECH_SEED,
                                        counts=counts)


def obtain_spoken_digits_all(folder: Path, *, source: Source) -> Path:
    """Write ``manifest.jsonl``: every line of spoken-digits and of diphone-digits, their splits kept, the audio
    paths made relative to this folder (a sibling of theirs in the cache), so one run trains on both."""
    records = []
    for name in ("spoken-digits", "diphone-digits"):
        manifest = source(name)
        for line in manifest.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                record["audio"] = os.path.relpath(manifest.parent / record["audio"], folder)
                records.append({**record, "dataset": name})
    return write_manifest(folder / "manifest.jsonl", records)
