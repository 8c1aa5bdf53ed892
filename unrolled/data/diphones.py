"""Digit strings as people say them, spoken by MBROLA diphone voices: the recorded speech of four real speakers.

An MBROLA voice (Dutoit et al. 1996) is a database of diphones, the
stretches from the middle of one phone to the middle of the next, cut from
one real speaker's recordings; the MBROLA program joins them at the
durations and pitch that espeak-ng's rules give (its ``mb-us1`` .. voices).
So the timbre, the formants and the glottal source are a person's, not a
formant synthesiser's. Four English voices are in Debian: ``us1`` (an
American woman), ``us2`` and ``us3`` (American men) and ``en1`` (a British
man). The program is in Debian's contrib, the voices in non-free: they may
be used only with the MBROLA program, and not sold or built into a product
that is (their licence, in each package's copyright file).

**Obtaining** (`mbrola_engines`): the pinned packages (``mbrola`` and
``mbrola-us1`` .. ``mbrola-en1``: their pool paths, since apt's sources here
hold main alone) are unpacked once into ``<cache>/tools/mbrola``. espeak-ng
reads an MBROLA voice from ``<data>/mbrola/<voice>``, so beside them
``espeak-ng-data`` links every entry of espeak-ng's own data folder and adds
``mbrola/`` with the four voices; espeak-ng runs with ``--path`` there and
the ``mbrola`` program on its ``PATH``.

**Texts** (`spoken_digit_texts`): each utterance draws a length, a way of
saying zero (``zero`` or ``oh``, kept for the whole string, as people do)
and a delivery: run together (``three one four``), digit by digit with a
pause after each (espeak-ng pauses at a comma), or in the groups of phone
and card numbers (``three one four, one five nine, two six five three``).
The transcript is the words alone: no commas, ``oh`` as ``oh``.

**Splits** by speaker (`SPEAKERS`): training and validation are us1 and
us2 (validation on texts of its own), the test is us3 and en1, whom
training never hears.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from unrolled.atomic import staged_folder
from unrolled.data.audio import write_wav
from unrolled.data.sources import Downloader, debian
from unrolled.data.speech import write_manifest
from unrolled.data.synth import (
    ESPEAK,
    PITCHES,
    SPEEDS,
    Engines,
    Program,
    Request,
    Synthesiser,
    Voice,
    espeak_arguments,
    espeak_data,
    speak_clip,
)

MBROLA = "mbrola"  # the engine's name in a manifest: espeak-ng driving an MBROLA voice
MBROLA_PROGRAM = ("mbrola",)  # Debian package of the program
MBROLA_VOICES = ("us1", "us2", "us3", "en1")  # each in Debian package mbrola-<voice>
SPEAKERS = {"train": ("us1", "us2"), "validation": ("us1", "us2"), "test": ("us3", "en1")}
COUNTS = {"train": 3_000, "validation": 200, "test": 600}
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ZERO_WORDS = ("zero", "oh")
DELIVERIES = ("run", "paused", "grouped")  # run together, a pause after each digit, in groups
DELIVERY_SHARES = (0.4, 0.2, 0.4)
GROUPS = ((3, 3, 4), (4, 4, 4, 4), (3, 4), (2, 2, 2), (4, 4), (3, 3), (4, 2))  # phone, card, PIN-like groupings
LONGEST = 10  # digits of a string run together or paused


def spoken_digit_texts(count: int, generator: np.random.Generator) -> list[tuple[str, str]]:
    """(what the synthesiser reads, the transcript) for ``count`` digit strings, drawn as the module docstring says."""
    texts = []
    for _ in range(count):
        zero = ZERO_WORDS[int(generator.integers(len(ZERO_WORDS)))]
        delivery = DELIVERIES[int(generator.choice(len(DELIVERIES), p=DELIVERY_SHARES))]
        sizes = (GROUPS[int(generator.integers(len(GROUPS)))] if delivery == "grouped"
                 else (int(generator.integers(1, LONGEST + 1)),))
        groups = [[zero if d == 0 else DIGIT_WORDS[d] for d in generator.integers(0, 10, size=n)] for n in sizes]
        words = [word for group in groups for word in group]
        spoken = (", ".join(words) if delivery == "paused" else ", ".join(" ".join(group) for group in groups))
        texts.append((spoken, " ".join(words)))
    return texts


def mbrola_engines(espeak: Program, tools: Path, *, download: Downloader | None = None) -> Engines:
    """espeak-ng with the four MBROLA voices, unpacked once into ``tools/mbrola`` (module docstring)."""
    download = download or debian.download
    root = tools / MBROLA
    packages = (*MBROLA_PROGRAM, *(f"mbrola-{voice}" for voice in MBROLA_VOICES))

    def whole(folder: Path) -> bool:
        return all((folder / "espeak-ng-data" / "mbrola" / voice).is_file() for voice in MBROLA_VOICES)

    if not whole(root):
        data = espeak_data(espeak)
        if not data:
            raise ValueError("espeak-ng does not say where its data is, so its MBROLA voices cannot be added")
        with staged_folder(root, keep=whole) as staging, tempfile.TemporaryDirectory(dir=tools) as scratch:
            debian.unpack([download(package, Path(scratch)) for package in packages], staging)
            linked = staging / "espeak-ng-data"
            (linked / "mbrola").mkdir(parents=True)
            for entry in data[0].iterdir():
                if entry.name != "mbrola":
                    (linked / entry.name).symlink_to(entry.resolve())
            for voice in MBROLA_VOICES:
                os.replace(staging / "usr" / "share" / "mbrola" / voice / voice, linked / "mbrola" / voice)
    environment = {**espeak.environment,
                   "PATH": os.pathsep.join([str(root / "usr" / "bin"), os.environ.get("PATH", "")])}
    program = Program(espeak.path, (f"--path={root}",), environment)
    voices = [Voice(MBROLA, "mbrola", f"mb-{voice}") for voice in MBROLA_VOICES]
    return Engines({MBROLA: program}, {MBROLA: voices})


def synthesise(engines: Engines, request: Request, out: Path) -> None:
    """espeak-ng's arguments run by the MBROLA engine's program (`Engines.synthesise` knows its own engines)."""
    result = engines.programs[MBROLA].run(espeak_arguments(request, out))
    if result.returncode != 0 or not out.is_file():
        raise ValueError(f"espeak-ng with MBROLA voice {request.voice.name} failed on {request.text!r}: "
                         f"{(result.stderr.strip().splitlines() or ['no output'])[-1]}")


def speak_digit_strings(folder: Path, engines: Engines, *, seed: int, counts: Mapping[str, int] = COUNTS,
                        speak: Synthesiser | None = None) -> Path:
    """Write ``clips/``, ``manifest.jsonl`` and ``info.json``: each split's texts spoken by its speakers (module
    docstring), a speed ``U[0.8, 1.25]`` and a pitch ``U{20 .. 80}`` drawn per clip. ``speak`` stands in for
    the engines' program (tests)."""
    voices = {voice.timbre.removeprefix("mb-"): voice for voice in engines.voices[MBROLA]}
    if speak is None:
        def speak(request: Request, out: Path) -> None:
            synthesise(engines, request, out)
    (folder / "clips").mkdir()
    records = []
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        raw = Path(scratch) / "raw.wav"
        for k, (split, count) in enumerate(counts.items()):
            generator = np.random.default_rng([seed, k])
            for n, (spoken, transcript) in enumerate(spoken_digit_texts(count, generator)):
                speaker = SPEAKERS[split][int(generator.integers(len(SPEAKERS[split])))]
                speed = round(float(generator.uniform(*SPEEDS)), 3)
                pitch = int(generator.integers(PITCHES[0], PITCHES[1] + 1))
                request = Request(spoken, voices[speaker], speed, pitch)
                name = f"clips/{split}-{n:05d}.wav"
                write_wav(folder / name, speak_clip(request, raw, speak))
                records.append({"audio": name, "text": transcript, "split": split, "voice": request.voice.name,
                                "speaker": speaker, "engine": MBROLA, "spoken": spoken, "speed": speed,
                                "pitch": pitch})
    info = {"dataset": "diphone-digits", "seed": seed, "speakers": SPEAKERS, "engine": f"espeak-ng ({ESPEAK}) with "
            f"MBROLA voices {', '.join(MBROLA_VOICES)}"}
    (folder / "info.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return write_manifest(folder / "manifest.jsonl", records)
