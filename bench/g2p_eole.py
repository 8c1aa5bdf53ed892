"""G2P on cmudict, ours beside Eole 0.6.4 (the successor of OpenNMT-py): same split, model size and time budget.

Both train an attentional LSTM encoder-decoder (characters in, phonemes out;
embeddings 128, 1 layer of 256 units, Luong's general attention, input
feeding, dropout 0.2, Adam 2e-3, batches of 64 words) for `--minutes` of
wall-clock time on `--threads` threads, on the training words of the split
``unrolled seq2seq train --dataset cmudict`` makes (5% of the words held out
for validation, 5% for test, seed 0). Then both translate the test words with
beam 5; the table gives word error (WER: the output equals none of the word's
pronunciations), phoneme error (PER) and words per second.

Eole's facts, seen here and stated in the table:

* with ``architecture: rnn`` its ``encoder_type: brnn`` is silently replaced by
  ``rnn``: its encoder is unidirectional, so ours runs unidirectional too
  (``--no-bidirectional``), the same model;
* its decoding of padded batches of RNN models degrades results, so it
  translates with ``batch_size 1``; ours is timed at batch 1 as well, and at 64.

``--dataset cmudict-nostress`` runs the same on the words without stress marks (39 phonemes, issue 30's
task); its record is ``eole-nostress`` beside ``eole``. ``--together`` trains and decodes both sides at the
same time, each on its own ``--threads`` (the machine has 2 cores: one thread each), instead of one after
the other: half the wall time, and each side's speed is measured while the other runs.

Eole lives in its own virtual environment (``make bench-eole`` makes
``.venv-eole``: ``pip install torch==2.13.0 eole==0.6.4 aiohttp``); training
is stopped at the time budget and its last checkpoint (saved every 1,000
steps) is used, since Eole has no time limit of its own.

    .venv/bin/python bench/g2p_eole.py --minutes 30 --threads 1
    .venv/bin/python bench/g2p_eole.py --minutes 30 --threads 1 --dataset cmudict-nostress --together
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import harness

ROOT = Path(__file__).resolve().parent.parent
RESULTS = harness.results_dir("g2p")
WORK = ROOT / "bench" / "out" / "g2p-eole"
SAVE_EVERY = 1000


def eole_config(minutes: float) -> str:
    return f"""\
src_vocab: {WORK}/vocab.src
tgt_vocab: {WORK}/vocab.tgt
save_data: {WORK}/data
overwrite: true
seed: 0
report_every: 500
data:
  corpus_1:
    path_src: {WORK}/train.src
    path_tgt: {WORK}/train.tgt
  valid:
    path_src: {WORK}/valid.src
    path_tgt: {WORK}/valid.tgt
model:
  architecture: rnn
  embeddings:
    word_vec_size: 128
  encoder:
    encoder_type: brnn
    layers: 1
    hidden_size: 256
  decoder:
    layers: 1
    hidden_size: 256
    global_attention: general
  input_feed: 1
training:
  model_path: {WORK}/model
  train_steps: 10000000
  save_checkpoint_steps: {SAVE_EVERY}
  keep_checkpoint: 2
  valid_steps: 1000000
  batch_size: 64
  batch_type: sents
  optim: adam
  learning_rate: 0.002
  dropout: [0.2]
  max_grad_norm: 5
  world_size: 1
  gpu_ranks: []

# budget: {minutes} minutes of wall-clock time, enforced from outside
"""


def write_side(path: Path, texts: list[str], chars: bool) -> None:
    path.write_text("".join((" ".join(t) if chars else t) + "\n" for t in texts), encoding="utf-8")


def eole(python: Path, *arguments: str, threads: int, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [str(python), "-m", "eole.bin.main", *arguments]
    try:
        return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as stop:
        out = stop.stdout.decode() if isinstance(stop.stdout, bytes) else stop.stdout or ""
        err = stop.stderr.decode() if isinstance(stop.stderr, bytes) else stop.stderr or ""
        return subprocess.CompletedProcess(command, -9, out, err)


def run_eole(python: Path, minutes: float, threads: int, test_words: list[str]) -> dict[str, Any]:
    (WORK / "config.yaml").write_text(eole_config(minutes))
    built = eole(python, "build_vocab", "-config", str(WORK / "config.yaml"), "-n_sample", "-1", threads=threads)
    if built.returncode != 0:
        raise SystemExit(f"eole build_vocab failed: {built.stderr[-2000:]}")
    started = time.monotonic()
    trained = eole(python, "train", "-config", str(WORK / "config.yaml"), threads=threads, timeout=minutes * 60)
    seconds = time.monotonic() - started
    (WORK / "train.log").write_text(trained.stdout + trained.stderr)
    checkpoints = sorted((WORK / "model").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    if not checkpoints:
        raise SystemExit(f"eole saved no checkpoint in {minutes} min (every {SAVE_EVERY} steps); see "
                         f"{WORK}/train.log")
    write_side(WORK / "test.src", test_words, chars=True)
    for last in reversed(checkpoints[-2:]):  # the last may have been cut off while it was being written
        started = time.monotonic()
        predicted = eole(python, "predict", "-model_path", str(last), "-src", str(WORK / "test.src"), "-output",
                         str(WORK / "test.pred"), "-beam_size", "5", "-batch_size", "1", "-batch_type", "sents",
                         "-max_length", "100", threads=threads)
        decode_seconds = time.monotonic() - started
        if predicted.returncode == 0:
            break
    else:
        raise SystemExit(f"eole predict failed: {predicted.stderr[-2000:]}")
    outputs = (WORK / "test.pred").read_text(encoding="utf-8").splitlines()
    return {"train_seconds": round(seconds, 1), "checkpoint": last.name, "outputs": outputs,
            "decode_seconds": round(decode_seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="training time of each (default: 30)")
    parser.add_argument("--threads", type=int, default=1, help="threads of each (default: 1)")
    parser.add_argument("--eole-python", type=Path, default=ROOT / ".venv-eole" / "bin" / "python",
                        help="the Python of Eole's environment (default: .venv-eole/bin/python)")
    parser.add_argument("--skip-ours", action="store_true", help="reuse ours from an earlier run's JSON")
    parser.add_argument("--dataset", choices=("cmudict", "cmudict-nostress"), default="cmudict",
                        help="the words with stress marks (default) or without (issue 30's task)")
    parser.add_argument("--together", action="store_true",
                        help="train both at the same time, each on --threads (default: one after the other)")
    args = parser.parse_args()
    if not args.eole_python.is_file():
        raise SystemExit(f"no Eole environment at {args.eole_python}: run make bench-eole, or pass --eole-python")

    import torch

    from unrolled.apps.seq2seq import Translator, pair_key, references, split_pairs
    from unrolled.apps.split import SplitRecord, new_record
    from unrolled.cli import main as unrolled
    from unrolled.data import obtain
    from unrolled.data.pairs import read_pairs
    from unrolled.metrics import sequence_errors

    torch.set_num_threads(args.threads)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    pairs = read_pairs(obtain(args.dataset))
    parts = split_pairs(pairs, new_record(pairs, pair_key, seed=0, validation=0.05, test=0.05, grouped=True))
    for name, side in (("train", "train"), ("valid", "validation")):
        write_side(WORK / f"{name}.src", [p.source for p in parts[side]], chars=True)
        write_side(WORK / f"{name}.tgt", [p.target for p in parts[side]], chars=False)
    words, pronunciations = references(parts["test"])
    token_refs = [[t.split() for t in group] for group in pronunciations]
    result: dict[str, Any] = {"minutes": args.minutes, "threads": args.threads, "test_words": len(words),
                              "dataset": args.dataset, "together": args.together}
    key = "eole" if args.dataset == "cmudict" else "eole-nostress"

    previous = harness.load(RESULTS).get(key)
    pool = ThreadPoolExecutor(max_workers=1)  # Eole is a child process: a thread waiting on it holds no GIL
    peer_run = pool.submit(run_eole, args.eole_python, args.minutes, args.threads, words) if args.together else None
    if args.skip_ours and previous is not None:
        result["ours"] = previous["ours"]
    else:
        out = WORK / "ours"
        started = time.monotonic()
        code = unrolled(["seq2seq", "train", "--dataset", args.dataset, "--out", str(out), "--max-time",
                         f"{args.minutes * 60:g}", "--max-epochs", "1000", "--embedding", "128", "--hidden", "256",
                         "--no-bidirectional", "--attention", "general", "--dropout", "0.2", "--lr", "2e-3",
                         "--schedule", "constant", "--batch", "64", "--eval-every", "2000", "--no-progress",
                         "--log-every", "1000"])
        if code != 0:
            raise SystemExit(f"unrolled seq2seq train failed with status {code}")
        trained = time.monotonic() - started
        translator = Translator.load(out)
        if translator.split is None or split_pairs(pairs, SplitRecord(**translator.split))["test"] != parts["test"]:
            raise SystemExit("our run's test words are not the split given to Eole: the split rule has changed")
        ours: dict[str, Any] = {"train_seconds": round(trained, 1)}
        for batch in (64, 1):
            started = time.monotonic()
            outputs = [t[0].tokens for t in translator.translate(words, beam=5, batch_size=batch)]
            seconds = time.monotonic() - started
            ours[f"batch{batch}"] = {**sequence_errors(outputs, token_refs), "words_per_s": len(words) / seconds}
        result["ours"] = ours

    peer = peer_run.result() if peer_run is not None else run_eole(args.eole_python, args.minutes, args.threads, words)
    pool.shutdown()
    scores = sequence_errors([line.split() for line in peer.pop("outputs")], token_refs)
    result["eole"] = {**peer, **scores, "words_per_s": len(words) / peer["decode_seconds"]}
    harness.record(RESULTS, key, result)

    print(f"G2P on {args.dataset}, {len(words)} test words; each trained {args.minutes:g} min on "
          f"{args.threads} thread(s); "
          "unidirectional LSTM encoder (Eole turns brnn into rnn), general attention, input feeding, beam 5"
          + (" (both at once)" if args.together else ""))
    print(f"{'system':<34} {'trained':>8} {'WER %':>6} {'PER %':>6} {'words/s':>8}")
    for batch in (64, 1):
        s = result["ours"][f"batch{batch}"]
        print(f"{f'unrolled, batch {batch}':<34} {result['ours']['train_seconds'] / 60:6.1f} m "
              f"{100 * s['sequence_error']:6.2f} {100 * s['token_error']:6.2f} {s['words_per_s']:8.1f}")
    e = result["eole"]
    print(f"{'Eole 0.6.4, batch 1 (' + e['checkpoint'] + ')':<34} {e['train_seconds'] / 60:6.1f} m "
          f"{100 * e['sequence_error']:6.2f} {100 * e['token_error']:6.2f} {e['words_per_s']:8.1f}")
    print(harness.beside("beam-5 speed at batch 1, ours / Eole:", result["ours"]["batch1"]["words_per_s"],
                         e["words_per_s"], "words/s"))


if __name__ == "__main__":
    sys.exit(main())
