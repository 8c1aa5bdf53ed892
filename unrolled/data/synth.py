"""Spoken datasets made with speech synthesisers: texts, voices split by speaker, WAV clips and a manifest.

The synthesisers are Debian's ``espeak-ng`` (formant synthesis: 8 English
accents, each with any of about 100 voice variants that change the timbre,
sex and breathiness) and ``flite`` (CMU's diphone and unit-selection voices
kal, kal16, awb, rms and slt), run as programs. Each is taken from the
system if installed (``PATH``), else its Debian packages are downloaded
(`unrolled.data.sources.debian`: pinned, nothing installed, no root needed)
and unpacked once into ``<cache>/tools/<engine>/`` (atomically, with
`unrolled.atomic.staged_folder`), where the program runs
with ``LD_LIBRARY_PATH`` pointing at the unpacked libraries. Either way a
probe synthesises a word first, so a program whose libraries do not resolve
fails with the loader's one-line message. espeak-ng is needed; flite is used
where it works.

**Voice-disjoint splits.** A voice is (engine, accent, timbre): for espeak-ng
an accent such as ``en-gb-scotland`` and a variant such as ``f3``, for flite
the speaker (kal and kal16 are one speaker). `split_voices` parts the accents
and the speakers (a variant's family: ``robosoft`` .. ``robosoft8`` are one)
of each engine among train, validation and test, and each split's voices are
its accents crossed with its speakers: no accent and no speaker of a
validation or test clip is ever heard in training.

**An utterance** (`draw_requests`) draws, from one generator seeded per
split: the engine (flite with probability `FLITE_SHARE` where the split has
flite voices), a voice of that engine from the split, a speed factor
``U[0.8, 1.25]`` (espeak-ng: words per minute ``175 * speed``; flite:
duration stretch ``1 / speed``) and for espeak-ng a pitch ``U{20 .. 80}``
(0 to 99, 50 by default). The draws depend on the seed and the texts alone,
so a dataset is the same given its seed and synthesisers; its clips are
read back (`unrolled.data.audio.read_audio`: mono, 16 kHz), cut to the
speech with `MARGIN_SECONDS` of silence either side (digital silence, which
real recordings never have, would otherwise fill a sixth of a clip) and
written as 16-bit WAV ``clips/<split>-<k>.wav``, listed in ``manifest.jsonl``
with their split, voice, engine, speed and pitch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unrolled.atomic import staged_folder
from unrolled.data.audio import AudioError, is_silent, read_audio, trim_silence, write_wav
from unrolled.data.sources import Downloader, debian
from unrolled.data.speech import write_manifest
from unrolled.features import SAMPLE_RATE

ESPEAK, FLITE = "espeak-ng", "flite"
ESPEAK_PACKAGES = ("espeak-ng", "libespeak-ng1", "espeak-ng-data", "libpcaudio0", "libsonic0",
                   # libpcaudio0 plays sound through PulseAudio, so the loader needs libpulse0 and what it needs
                   "libpulse0", "libasyncns0", "libsndfile1", "libflac12", "libvorbis0a", "libvorbisenc2", "libopus0",
                   "libogg0", "libmpg123-0", "libmp3lame0")
FLITE_PACKAGES = ("flite", "libflite1")
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-gb-x-rp", "en-029",
                  "en-us-nyc")
ESPEAK_SKIPPED = ("fast",)  # a test variant of espeak-ng, not a voice
FLITE_SPEAKERS = {"kal": ("kal", "kal16"), "awb": ("awb",), "rms": ("rms",), "slt": ("slt",)}  # speaker -> voices
ESPEAK_WPM = 175  # espeak-ng's default speed, words per minute
SPEEDS = (0.8, 1.25)  # speed factors drawn uniformly
PITCHES = (20, 80)  # espeak-ng pitches drawn uniformly (0 .. 99, default 50)
FLITE_SHARE = 0.25  # the share of a split's clips spoken by flite, where the split has flite voices
HELD_OUT = {"espeak-ng": {"accents": 1, "speakers": 10}, "flite": {"speakers": 1}}  # per validation and test split
TRAILING_DIGITS = re.compile(r"\d+$")
SPLITS = ("train", "validation", "test")
PROBE_TEXT = "one two three"
MARGIN_SECONDS = 0.1  # silence kept before and after the speech; the synthesisers leave about 0.3 s of zeros after


@dataclass(frozen=True)
class Voice:
    """A synthesiser voice: the engine, its accent (espeak-ng) and its timbre (espeak-ng variant, flite voice)."""

    engine: str
    accent: str
    timbre: str

    @property
    def name(self) -> str:
        """espeak-ng's ``-v`` argument (``en-us+f3``) or flite's ``-voice`` (``slt``)."""
        return f"{self.accent}+{self.timbre}" if self.engine == ESPEAK else self.timbre


@dataclass(frozen=True)
class Request:
    """One clip to synthesise: the text, the voice, a speed factor (1 = the engine's default) and a pitch."""

    text: str
    voice: Voice
    speed: float = 1.0
    pitch: int | None = None


Synthesiser = Callable[[Request, Path], None]  # writes the request's audio to a WAV file at the path


@dataclass
class Program:
    """A synthesiser program: its path, extra arguments before the others, and extra environment variables."""

    path: Path
    arguments: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)

    def run(self, arguments: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.path), *self.arguments, *arguments], capture_output=True, text=True,
                              check=False, env={**os.environ, **self.environment})


def espeak_arguments(request: Request, out: Path) -> list[str]:
    """espeak-ng's arguments for a request: voice, words per minute, pitch, output file, text."""
    pitch = 50 if request.pitch is None else request.pitch
    return ["-v", request.voice.name, "-s", str(round(ESPEAK_WPM * request.speed)), "-p", str(pitch),
            "-w", str(out), request.text]


def flite_arguments(request: Request, out: Path) -> list[str]:
    """flite's arguments: voice, duration stretch 1 / speed (pitch is left as the voice has it), text, output."""
    return ["-voice", request.voice.name, "--setf", f"duration_stretch={1 / request.speed:.4f}",
            "-t", request.text, "-o", str(out)]


ARGUMENTS = {ESPEAK: espeak_arguments, FLITE: flite_arguments}


@dataclass
class Engines:
    """The working synthesiser programs by engine, and each engine's voices; `synthesise` runs a request."""

    programs: dict[str, Program]
    voices: dict[str, list[Voice]]
    missing: dict[str, str] = field(default_factory=dict)  # engine -> why it is not there

    def synthesise(self, request: Request, out: Path) -> None:
        """Write the request's audio to ``out``; a one-line ValueError naming the voice if the program fails."""
        result = self.programs[request.voice.engine].run(ARGUMENTS[request.voice.engine](request, out))
        if result.returncode != 0 or not out.is_file():
            raise ValueError(f"{request.voice.engine} failed for voice {request.voice.name} on {request.text!r}: "
                             f"{_last_line(result.stderr)}")


def _last_line(text: str) -> str:
    return (text.strip().splitlines() or ["no output"])[-1]


def library_path(root: Path) -> str:
    """``LD_LIBRARY_PATH`` for programs unpacked in ``root``: every folder under usr/lib and lib holding a .so."""
    folders = {path.parent for top in ("usr/lib", "lib") for path in (root / top).rglob("*.so*")}
    return os.pathsep.join(str(folder) for folder in sorted(folders))


def unpacked_program(engine: str, packages: Sequence[str], tools: Path, download: Downloader) -> Program:
    """The engine's program from its Debian packages, downloaded and unpacked once into ``tools/<engine>``.

    The folder appears whole (`unrolled.atomic.staged_folder`): a half-unpacked
    one from an older version is replaced, one another process finished meanwhile kept.
    """
    root = tools / engine

    def whole(folder: Path) -> bool:
        return (folder / "usr" / "bin" / engine).is_file()

    if not whole(root):
        with staged_folder(root, keep=whole) as staging, tempfile.TemporaryDirectory(dir=tools) as scratch:
            debian.unpack([download(package, Path(scratch)) for package in packages], staging)
    arguments: tuple[str, ...] = ()
    if engine == ESPEAK:  # the data lies beside the libraries: usr/lib/<multiarch>/espeak-ng-data
        arguments = tuple(f"--path={data.parent}" for data in sorted(root.glob("usr/lib/*/espeak-ng-data"))[:1])
    return Program(root / "usr" / "bin" / engine, arguments, {"LD_LIBRARY_PATH": library_path(root)})


def espeak_data(program: Program) -> list[Path]:
    """espeak-ng's data folder (``espeak-ng-data``): the one ``--path`` names, else the one the program reports."""
    folders = [Path(argument.removeprefix("--path=")) / "espeak-ng-data" for argument in program.arguments]
    if not folders:  # a system espeak-ng says where its data is: "... Data at: /usr/lib/.../espeak-ng-data"
        said = re.search(r"Data at: (\S+)", program.run(["--version"]).stdout)
        folders = [Path(said.group(1))] if said else []
    return folders


def espeak_variants(program: Program) -> list[str]:
    """The names of espeak-ng's voice variants (files of ``espeak-ng-data/voices/!v``), sorted; some skipped."""
    folders = espeak_data(program)
    variants = [path.name for folder in folders for path in (folder / "voices" / "!v").glob("*") if path.is_file()]
    return sorted(name for name in variants if " " not in name and name not in ESPEAK_SKIPPED)


def probe(engines: Engines, engine: str) -> str | None:
    """None if the engine speaks a word with its first voice, else the reason in one line."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "probe.wav"
        try:
            engines.synthesise(Request(PROBE_TEXT, engines.voices[engine][0]), out)
            silent = is_silent(read_audio(out))
        except (ValueError, OSError) as error:  # AudioError is a ValueError
            return str(error)
    return f"{engine} wrote silence for {PROBE_TEXT!r}" if silent else None


def find_engines(tools: Path, *, download: Downloader | None = None) -> Engines:
    """espeak-ng (required) and flite (where it works), from the system or unpacked from Debian into ``tools``."""
    download = download or debian.download
    engines = Engines({}, {})
    for engine, packages in ((ESPEAK, ESPEAK_PACKAGES), (FLITE, FLITE_PACKAGES)):
        system = shutil.which(engine)
        try:
            program = Program(Path(system)) if system else unpacked_program(engine, packages, tools, download)
        except ValueError as error:
            if engine == ESPEAK:
                raise
            engines.missing[engine] = str(error)  # flite is optional
            continue
        engines.programs[engine] = program
        engines.voices[engine] = ([Voice(ESPEAK, accent, variant) for accent in ESPEAK_ACCENTS
                                   for variant in espeak_variants(program)] if engine == ESPEAK else
                                  [Voice(FLITE, speaker, name) for speaker, names in FLITE_SPEAKERS.items()
                                   for name in names])
        reason = probe(engines, engine) if engines.voices[engine] else f"{engine} has no voice variants"
        if reason is not None:
            del engines.programs[engine], engines.voices[engine]
            if engine == ESPEAK:
                raise ValueError(f"espeak-ng does not run here: {reason}")
            engines.missing[engine] = reason
    return engines


def speaker(voice: Voice) -> str:
    """Who a voice sounds like: an espeak-ng variant's family (``robosoft5`` -> ``robosoft``), a flite speaker."""
    return TRAILING_DIGITS.sub("", voice.timbre).lower() if voice.engine == ESPEAK else voice.accent


def split_voices(voices: Sequence[Voice], seed: int) -> dict[str, list[Voice]]:
    """Each split's voices: per engine, accents and speakers parted by `HELD_OUT`, and crossed within a split.

    Speakers are `speaker`'s: numbered espeak-ng variants of one name
    (``edward``, ``edward2``) are near copies and stay on one side, as do
    flite's kal and kal16. flite's speakers are its accents too, so only
    they are parted.
    """
    generator = np.random.default_rng(seed)
    splits: dict[str, list[Voice]] = {split: [] for split in SPLITS}
    for engine in sorted({voice.engine for voice in voices}):
        mine = [voice for voice in voices if voice.engine == engine]
        held = HELD_OUT.get(engine, {})
        accents = _part(sorted({v.accent for v in mine}), held.get("accents", 0), generator)
        speakers = _part(sorted({speaker(v) for v in mine}), held.get("speakers", 0), generator)
        for split in SPLITS:
            splits[split] += [v for v in mine if speaker(v) in speakers[split] and v.accent in accents[split]]
    return splits


def _part(names: list[str], held: int, generator: np.random.Generator) -> dict[str, set[str]]:
    """``names`` shuffled and parted: ``held`` each for validation and test, the rest for train (all if too few)."""
    if held == 0 or len(names) < 2 * held + 1:
        return {split: set(names) for split in SPLITS}
    order = [names[k] for k in generator.permutation(len(names))]
    return {"validation": set(order[:held]), "test": set(order[held : 2 * held]), "train": set(order[2 * held :])}


def draw_requests(texts: Sequence[str], voices: Sequence[Voice], generator: np.random.Generator) -> list[Request]:
    """A request for each text: engine, voice, speed and pitch drawn as in the module docstring."""
    by_engine = {engine: [v for v in voices if v.engine == engine] for engine in (ESPEAK, FLITE)}
    requests = []
    for text in texts:
        use_flite = bool(by_engine[FLITE]) and generator.random() < FLITE_SHARE
        pool = by_engine[FLITE] if use_flite or not by_engine[ESPEAK] else by_engine[ESPEAK]
        voice = pool[int(generator.integers(len(pool)))]
        speed = round(float(generator.uniform(*SPEEDS)), 3)
        pitch = int(generator.integers(PITCHES[0], PITCHES[1] + 1))
        requests.append(Request(text, voice, speed, pitch if voice.engine == ESPEAK else None))
    return requests


def speak_dataset(folder: Path, texts: Mapping[str, Sequence[str]], voices: Sequence[Voice],
                  synthesise: Synthesiser, *, seed: int, info: Mapping[str, Any]) -> Path:
    """Write ``clips/`` and ``manifest.jsonl`` (and ``info.json``): each split's texts spoken by its own voices."""
    by_split = split_voices(voices, seed)
    (folder / "clips").mkdir()
    records = []
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        raw = Path(scratch) / "raw.wav"
        for k, split in enumerate(texts):
            if not by_split[split]:
                raise ValueError(f"no voice left for the {split} split")
            for n, request in enumerate(draw_requests(texts[split], by_split[split], np.random.default_rng(seed + k))):
                name = f"clips/{split}-{n:05d}.wav"
                write_wav(folder / name, speak_clip(request, raw, synthesise))
                records.append({"audio": name, "text": request.text, "split": split, "voice": request.voice.name,
                                "engine": request.voice.engine, "speed": request.speed, "pitch": request.pitch})
    voices_used = {split: sorted({v.name for v in by_split[split]}) for split in texts}
    (folder / "info.json").write_text(json.dumps({**info, "seed": seed, "voices": voices_used}, indent=1) + "\n",
                                      encoding="utf-8")
    return write_manifest(folder / "manifest.jsonl", records)


def speak_clip(request: Request, raw: Path, synthesise: Synthesiser) -> np.ndarray:
    """The request's audio at 16 kHz; a one-line ValueError if the synthesiser wrote nothing usable."""
    raw.unlink(missing_ok=True)
    synthesise(request, raw)
    try:
        wave = read_audio(raw)
    except AudioError as error:
        raise ValueError(f"{request.voice.engine} voice {request.voice.name}: {error}") from None
    if is_silent(wave):
        raise ValueError(f"{request.voice.engine} voice {request.voice.name} wrote silence for {request.text!r}")
    return trim_silence(wave, margin=round(MARGIN_SECONDS * SAMPLE_RATE))


def digit_texts(count: int, generator: np.random.Generator, *, longest: int = 10,
                words: Sequence[str] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                                        "nine")) -> list[str]:
    """``count`` strings of 1 to ``longest`` digits (lengths and digits uniform), spoken as words: "three one four"."""
    lengths = generator.integers(1, longest + 1, size=count)
    return [" ".join(words[d] for d in generator.integers(0, 10, size=length)) for length in lengths]


SENTENCE_END = re.compile(r"(?<=[.?!;:])\s+")
NOT_SPOKEN = re.compile(r"[^a-z' ]")


def normalise_transcript(text: str) -> str | None:
    """Lower-case ASCII letters, apostrophes and single spaces ("God's" -> "god's"); None if it has digits."""
    if any(ch.isdigit() for ch in text):
        return None
    decomposed = unicodedata.normalize("NFKD", text.replace("\u2019", "'"))  # é -> e + a combining accent
    spaced = "".join(" " if ch != "'" and unicodedata.category(ch)[0] in "PSZ" else ch for ch in decomposed)
    plain = NOT_SPOKEN.sub(" ", spaced.encode("ascii", "ignore").decode("ascii").lower())
    words = [word.strip("'") for word in plain.split()]
    return " ".join(word for word in words if word) or None


def short_sentences(passages: Iterable[str], *, shortest: int = 4, longest: int = 12, min_count: int = 20) -> list[str]:
    """The distinct sentences of ``passages`` with ``shortest`` to ``longest`` words, all of them common.

    Passages are cut after . ? ! ; and : and normalised (`normalise_transcript`);
    a sentence is kept when every word occurs at least ``min_count`` times in
    all the sentences, which leaves out rare names whose spelling the audio
    cannot tell. Sorted, so the result does not depend on the passages' order.
    """
    sentences = [normalise_transcript(piece) for passage in passages for piece in SENTENCE_END.split(passage)]
    spoken = [sentence for sentence in sentences if sentence]
    counts = Counter(word for sentence in spoken for word in sentence.split())
    return sorted({sentence for sentence in spoken if shortest <= len(sentence.split()) <= longest
                   and all(counts[word] >= min_count for word in sentence.split())})


def engines_info(engines: Engines) -> dict[str, Any]:
    """What made a dataset's audio, for ``info.json``: each engine's program and voice count, or why it is missing."""
    return {engine: {"program": str(program.path), "voices": len(engines.voices[engine])}
            for engine, program in engines.programs.items()} | {engine: {"missing": reason}
                                                                 for engine, reason in engines.missing.items()}
