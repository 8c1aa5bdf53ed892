"""Speech beyond the synthetic voices: held-out real speakers' diphone voices, and a telephone line, beside the test.

Every run named is scored on four test sets, at batch 16 on one thread:

* ``synthetic``: the 1,000 test clips of ``spoken-digits`` (espeak-ng and flite voices training never hears);
* ``people``: the 600 test clips of ``diphone-digits``: digit strings as people say them (zero or oh, with and
  without pauses, in groups) by MBROLA voices us3 and en1, diphones recorded from two real men training never hears
  (no real recording of spoken digits with its text is on a registry this machine reaches; these are the most
  human voices it has);
* each of them again through a telephone line (`unrolled.data.channel.telephone`: down to 8 kHz, G.711 mu-law,
  back up to 16 kHz), ``... 8 kHz``.

Decoding: greedy, CTC's prefix beam of 8, the beam with ``--vocabulary digits`` (the ten digit words and oh), and
that beam again with the test-time warp search (``--warp-search``: each clip decoded at whichever mel warp of
`unrolled.apps.transcriber.WARP_GRID` the model is most confident at; each clip alone, as a user's command
decodes it, no speaker labels used), and with each voice's clips sharing one warp (``--one-voice``, for a user
who knows the files are one caller's; the ``voice`` key of the manifests groups them).
A run trained on ``spoken-digits`` alone has never heard "oh", so its people CER counts each "oh" it cannot write.
Speed: greedy at batch 1 over the first `--speed-clips` synthetic clips, in seconds of audio per second.

    .venv/bin/python bench/speech.py --dataset spoken-digits-all --model ctc --tag channels --minutes 30 \\
        --speeds 0.8 0.9 1.0 1.1 1.25 --telephone 0.3 --microphone 0.3 --reverb 0.2
    .venv/bin/python bench/speech_channels.py --runs all-ctc-channels --evaluate
    .venv/bin/python bench/speech_channels.py --report
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import harness

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "speech"
SETS = {"synthetic": ("spoken-digits", None), "people": ("diphone-digits", None),
        "synthetic 8 kHz": ("spoken-digits", "mulaw"), "people 8 kHz": ("diphone-digits", "mulaw")}
DECODINGS = ("greedy", "beam 8", "beam 8, digits", "beam 8, digits, warp search",
             "beam 8, digits, warp search, one voice")
TARGETS = {"people": 0.05, "people 8 kHz": 0.08}  # the CER targets for the real-voice rows
RECORD = "bench-channels.json"


def test_sets(limit: int | None) -> dict[str, tuple[list[Any], list[Any]]]:
    """Each test set's utterances and waveforms (the first `limit` of each dataset's test split, if given)."""
    from unrolled.data import obtain
    from unrolled.data.audio import read_audio
    from unrolled.data.channel import telephone
    from unrolled.data.speech import read_manifest

    read: dict[str, tuple[list[Any], list[Any]]] = {}  # each dataset's test clips, read once
    sets = {}
    for name, (dataset, codec) in SETS.items():
        if dataset not in read:
            utterances = read_manifest(obtain(dataset), split="test")[:limit]
            read[dataset] = (utterances, [read_audio(u.audio) for u in utterances])
        utterances, waves = read[dataset]
        sets[name] = (utterances, [telephone(w, codec) for w in waves] if codec else waves)
    return sets


def score_run(folder: Path, sets: dict[str, tuple[list[Any], list[Any]]], speed_clips: int) -> dict[str, Any]:
    """Every test set's CER / WER / exact share for each of `DECODINGS`, and the batch-1 greedy speed."""
    from unrolled.apps.transcriber import WARP_GRID, Transcriber
    from unrolled.decoding.words import DIGITS

    transcriber = Transcriber.load(folder)
    digits = transcriber.word_constraint(DIGITS, "ctc") if "o" in transcriber.alphabet.characters else None
    record: dict[str, Any] = {"sets": {}}
    for name, (utterances, waves) in sets.items():
        greedy_beam = transcriber.score(utterances, beams=(1, 8), waves=waves, by="speaker")
        scores = {"greedy": greedy_beam["beam1"], "beam 8": greedy_beam["beam8"]}
        if digits is not None:
            scores["beam 8, digits"] = transcriber.score(utterances, beams=(8,), waves=waves, vocabulary=digits,
                                                         by="speaker")["beam8"]
            scores["beam 8, digits, warp search"] = transcriber.score(
                utterances, beams=(8,), waves=waves, vocabulary=digits, by="speaker", warps=WARP_GRID)["beam8"]
            scores["beam 8, digits, warp search, one voice"] = transcriber.score(
                utterances, beams=(8,), waves=waves, vocabulary=digits, by="speaker", warps=WARP_GRID,
                warp_by="voice")["beam8"]
        record["sets"][name] = {"utterances": len(utterances), **scores}
        print(f"  {folder.name} {name}: CER " + ", ".join(f"{k} {100 * v['cer']:.2f}%" for k, v in scores.items()),
              flush=True)
    clips = sets["synthetic"][1][:speed_clips]
    transcriber.transcribe(clips[:3], beam=1, batch_size=1)  # warm-up
    started = time.perf_counter()
    transcriber.transcribe(clips, beam=1, batch_size=1)
    record["speed_batch1"] = sum(len(w) for w in clips) / 16_000 / (time.perf_counter() - started)
    return record


def report(records: dict[str, dict[str, Any]]) -> str:
    """The Markdown table of the runs' records: a row per run and decoding, a column per test set (CER %)."""
    lines = ["| run | decoding | " + " | ".join(f"CER {name} %" for name in SETS) + " | x real time (batch 1) |",
             "| --- | --- |" + " --- |" * (len(SETS) + 1)]
    for run, record in records.items():
        for decoding in DECODINGS:
            cells = [record["sets"][name].get(decoding) for name in SETS]
            if all(cell is None for cell in cells):
                continue
            speed = f"{record['speed_batch1']:.0f}" if decoding == "greedy" else ""
            lines.append(f"| {run} | {decoding} | " + " | ".join(
                "-" if cell is None else f"{100 * cell['cer']:.2f}" for cell in cells) + f" | {speed} |")
    lines += ["", "Targets (issue 29): at most " + ", ".join(
        f"{name} {100 * cer:.0f}%" for name, cer in TARGETS.items()) + "; synthetic no worse than the runs of "
        "results-digits.md; at least 50x real time at batch 1."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", default=[], metavar="RUN", help="run folders under bench/results/speech")
    parser.add_argument("--evaluate", action="store_true", help="score the runs on every test set")
    parser.add_argument("--limit", type=int, help="only the first N clips of each test split (quick looks)")
    parser.add_argument("--speed-clips", type=int, default=100)
    parser.add_argument("--report", action="store_true", help="print and write results-channels.md")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.evaluate:
        sets = test_sets(args.limit)
        for run in args.runs:
            record = score_run(RESULTS / run, sets, args.speed_clips)
            record["limit"] = args.limit
            (RESULTS / run / RECORD).write_text(json.dumps(record, indent=1))
    if args.report:
        summary = json.loads((RESULTS / "result.json").read_text()) if (RESULTS / "result.json").exists() else {}
        # the records on disk, and those result.json keeps of runs whose folders are gone (never committed)
        records = {**summary.get("channels", {}), **{
            p.parent.name: json.loads(p.read_text()) for p in RESULTS.glob(f"*/{RECORD}")}}
        runs = args.runs or sorted(records)
        text = report({run: records[run] for run in runs if run in records})
        harness.write_keeping_notes(RESULTS / "results-channels.md", f"### {__doc__.splitlines()[0]}\n\n{text}\n")
        summary["channels"] = records
        (RESULTS / "result.json").write_text(json.dumps(summary, indent=1) + "\n")
        print(text)
        if any((RESULTS / run / "metrics.jsonl").exists() for run in runs if run.startswith("all-")):
            import speech  # bench/speech.py, beside this script

            print(f"learning curves of the spoken-digits-all runs here: {speech.learning_curves('spoken-digits-all')}")


if __name__ == "__main__":
    main()
