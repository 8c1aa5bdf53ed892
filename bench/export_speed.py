"""Exported models: eager torch vs TorchScript vs ONNX Runtime fp32 and int8, speed, int8's cost, start-up.

Three small models are trained for a few minutes each through the CLI (sizes in
MODELS), exported with `unrolled export` (ONNX fp32, ONNX int8, TorchScript), and
measured side by side in one process on the same inputs, torch and ONNX Runtime
on the same number of threads:

* speed at batch 1 and 64: char-LM sampling (characters/s), the MR classifier
  (sentences/s), G2P beam 5 (words/s); eager is the application's predictor,
  TorchScript the traced graphs driven by `unrolled.decoding`, ONNX Runtime the
  `unrolled.runtime` predictor (its NumPy decoding). Target: ORT fp32 at batch 1
  at least 1.5x eager for sampling and classification.
* int8's cost against fp32 (both ORT): MR test accuracy, char-LM nats/char on the
  validation text, G2P word error rate (a word is wrong unless its phonemes equal
  a reference's) on the test words. Targets: at most 0.5 points, 0.02 nats/char, 1 point.
* start-up: from process start to the first prediction, `unrolled.runtime` on the
  export against the predictor loading the torch checkpoint.

    python bench/export_speed.py [--minutes 3] [--threads 1] [--quick]   (train, export, measure, report)
    python bench/export_speed.py --report                                (the table of what was measured)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

RESULTS = harness.results_dir("export_speed")
MODELS: dict[str, list[str]] = {
    "lm": ["lm", "train", "--dataset", "shakespeare", "--layers", "2", "--hidden", "128", "--embedding", "32",
           "--seq-len", "64", "--batch-size", "32", "--eval-every", "200"],
    "classify": ["classify", "train", "--dataset", "mr", "--model", "rnn", "--embedding", "64", "--hidden", "64"],
    "seq2seq": ["seq2seq", "train", "--dataset", "cmudict-nostress", "--embedding", "32", "--hidden", "64",
                "--attention", "general", "--eval-every", "300"],
}
TARGETS = {"speedup": 1.5, "accuracy_points": 0.5, "nats": 0.02, "wer_points": 1.0}
KINDS = ("eager", "torchscript", "ort-fp32", "ort-int8")


def median_seconds(work: Callable[[], Any], repeats: int) -> float:
    """The median wall-clock time of `repeats` runs of `work` (after one warm-up run)."""
    work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# ---------------------------------------------------------------------- TorchScript drivers


class ScriptLM:
    """The traced char-LM step as a `unrolled.decoding` decoder; primes by stepping, as the runtime does."""

    def __init__(self, path: Path, names: list[str], hidden: int) -> None:
        import torch

        self.step_graph, self.names, self.hidden = torch.jit.load(str(path)), names, hidden

    def step(self, tokens: Any, state: Any) -> Any:
        out = self.step_graph(tokens, *state)
        return out[0], tuple(out[1:])

    def reorder(self, state: Any, index: Any) -> Any:
        return tuple(part.index_select(0, index) for part in state)

    def sample(self, ids: list[int], length: int, count: int) -> Any:
        import torch

        from unrolled import decoding

        with torch.inference_mode():
            state = tuple(torch.zeros(1, self.hidden) for _ in self.names)
            for token in ids:
                log_probs, state = self.step(torch.tensor([token]), state)
            rows = torch.zeros(count, dtype=torch.long)
            return decoding.sample(self, log_probs[rows], self.reorder(state, rows), length=length, greedy=False)


class ScriptSeq2Seq:
    """The traced seq2seq encoder and step as a decoder (a dict state, memory repeated per hypothesis)."""

    def __init__(self, folder: Path, settings: dict[str, Any]) -> None:
        import torch

        self.encoder = torch.jit.load(str(folder / "encoder.pt"))
        self.step_graph = torch.jit.load(str(folder / "step.pt"))
        self.per_hypothesis, self.shared = settings["per_hypothesis"], settings["shared"]

    def step(self, tokens: Any, state: Any) -> Any:
        out = self.step_graph(tokens, *(state[name] for name in self.per_hypothesis + self.shared))
        return out[0], {**dict(zip(self.per_hypothesis, out[1:], strict=True)),
                        **{name: state[name] for name in self.shared}}

    def reorder(self, state: Any, index: Any) -> Any:
        return {name: value.index_select(0, index) for name, value in state.items()}

    def translate(self, sources: list[list[int]], beam: int, batch: int, limit: int) -> None:
        import torch

        from unrolled import decoding
        from unrolled.data.labelled import make_batch

        with torch.inference_mode():
            for start in range(0, len(sources), batch):
                chunk = make_batch(sources[start : start + batch])
                state = dict(zip(self.per_hypothesis + self.shared, self.encoder(chunk.ids, chunk.lengths),
                                 strict=True))
                log_probs, state = self.step(torch.full((chunk.ids.shape[0],), 2), state)
                decoding.beam_search(self, log_probs, state, beam_size=beam, max_length=limit, end_token=3)


# ---------------------------------------------------------------------- measuring


def exports(run: Path) -> dict[str, Path]:
    """The run's exports (made when missing): ONNX fp32, ONNX int8, TorchScript."""
    from unrolled.export import export_run

    made = {"ort-fp32": run / "export-onnx", "ort-int8": run / "export-int8", "torchscript": run / "export-ts"}
    for kind, folder in made.items():
        if not (folder / "manifest.json").is_file():
            export_run(run, folder, graphs="torchscript" if kind == "torchscript" else "onnx",
                       quantize="int8" if kind == "ort-int8" else None)
    return made


def loaded(run: Path, predictor: Any, threads: int) -> tuple[dict[str, Path], Any, dict[str, Any]]:
    """The run's exports, its eager predictor, and the runtime predictors of its ONNX exports (fp32, int8)."""
    from unrolled import runtime

    folders = exports(run)
    onnx = {kind: runtime.load(folders[kind], threads=threads) for kind in ("ort-fp32", "ort-int8")}
    return folders, predictor.load(run, device="cpu"), onnx


def size_mib(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.glob("*.onnx")) / 2**20


def measure_lm(run: Path, threads: int, quick: bool) -> dict[str, Any]:
    import numpy as np
    import torch

    from unrolled.apps.lm import LanguageModel, LMEvalOptions, read_eval, stream_loss

    folders, eager, onnx = loaded(run, LanguageModel, threads)
    settings = json.loads((folders["torchscript"] / "settings.json").read_text())
    script = ScriptLM(folders["torchscript"] / "step.pt", settings["states"], settings["hidden"])
    prime, repeats = "KING HENRY.\n", 1 if quick else 3
    ids = eager.vocabulary.encode(prime).tolist()
    speed: dict[str, dict[str, float]] = {}
    for batch, length in ((1, 100 if quick else 300), (64, 40 if quick else 100)):
        work = {"eager": lambda b=batch, n=length: eager.sample(prime, n, num_samples=b, seed=0),
                "torchscript": lambda b=batch, n=length: script.sample(ids, n, b),
                **{kind: lambda b=batch, n=length, p=p: p.sample(prime, n, num_samples=b, seed=0)
                   for kind, p in onnx.items()}}
        speed[str(batch)] = {kind: batch * length / median_seconds(job, repeats) for kind, job in work.items()}
    text = read_eval(eager, None, LMEvalOptions(split="validation"))[: 4000 if quick else 20000]
    streams = 16
    token_ids = eager.vocabulary.encode(text)
    eager_loss, _ = stream_loss(eager.model, token_ids, streams=streams)
    loss = {"eager": eager_loss}
    length = (len(token_ids) - 1) // streams
    inputs = token_ids[: streams * length].view(streams, length).numpy()
    targets = token_ids[1 : streams * length + 1].view(streams, length).numpy()
    for kind, predictor in onnx.items():
        state = {name: np.zeros((streams, predictor.hidden), dtype=np.float32) for name in predictor.states}
        total = 0.0
        for t in range(length):
            log_probs, state = predictor.step(inputs[:, t], state)
            total -= float(log_probs[np.arange(streams), targets[:, t]].sum())
        loss[kind] = total / (streams * length)
    torch.set_num_threads(threads)
    return {"speed": speed, "nats_per_char": loss, "characters": streams * length,
            "mib": {kind: size_mib(folders[kind]) for kind in onnx}}


def measure_classify(run: Path, threads: int, quick: bool) -> dict[str, Any]:
    import torch

    from unrolled.apps.classify import ClassifyEvalOptions, TextClassifier, read_eval
    from unrolled.data.labelled import make_batch

    folders, eager, onnx = loaded(run, TextClassifier, threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        script = torch.jit.load(str(folders["torchscript"] / "model.pt"))
    examples = read_eval(eager, None, ClassifyEvalOptions(dataset="mr", split="test"))
    texts = [example.text for example in examples]

    def scripted(chunk: list[str], batch: int) -> None:
        sequences, _ = eager.encoding.encode(chunk)
        with torch.inference_mode():
            for start in range(0, len(sequences), batch):
                made = make_batch(sequences[start : start + batch])
                script(made.ids, made.lengths)

    speed: dict[str, dict[str, float]] = {}
    repeats = 1 if quick else 3
    for batch, count in ((1, 64 if quick else 200), (64, 256 if quick else 1024)):
        chunk = texts[:count]
        work = {"eager": lambda c=chunk, b=batch: eager.probabilities(c, batch_size=b),
                "torchscript": lambda c=chunk, b=batch: scripted(c, b),
                **{kind: lambda c=chunk, b=batch, p=p: p.probabilities(c, batch_size=b) for kind, p in onnx.items()}}
        speed[str(batch)] = {kind: len(chunk) / median_seconds(job, repeats) for kind, job in work.items()}
    gold = [eager.labels.encode(example.label) for example in examples]
    accuracy = {"eager": float((eager.probabilities(texts).argmax(1).numpy() == gold).mean())}
    for kind, predictor in onnx.items():
        accuracy[kind] = float((predictor.probabilities(texts).argmax(1) == gold).mean())
    return {"speed": speed, "accuracy": accuracy, "test_sentences": len(texts),
            "mib": {kind: size_mib(folders[kind]) for kind in onnx}}


def measure_seq2seq(run: Path, threads: int, quick: bool) -> dict[str, Any]:
    from unrolled.apps.registry import APPLICATIONS
    from unrolled.apps.seq2seq import Translator
    from unrolled.apps.sides import references
    from unrolled.metrics import sequence_errors

    folders, eager, onnx = loaded(run, Translator, threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        settings = json.loads((folders["torchscript"] / "settings.json").read_text())
        script = ScriptSeq2Seq(folders["torchscript"], settings)
    app = APPLICATIONS["seq2seq"]
    pairs = app.read_eval(eager, None, app.eval_options(dataset="cmudict-nostress", split="test"))
    words, targets = references(pairs)
    words, targets = words[: 300 if quick else 1000], targets[: 300 if quick else 1000]
    repeats = 1 if quick else 3
    speed: dict[str, dict[str, float]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown or cut words are part of what is measured
        for batch, count in ((1, 20 if quick else 50), (64, 128 if quick else 256)):
            chunk = words[:count]
            sources = eager.encode_sources(chunk)
            work = {"eager": lambda c=chunk, b=batch: eager.translate(c, beam=5, batch_size=b),
                    "torchscript": lambda s=sources, b=batch: script.translate(s, 5, b, eager.max_length),
                    **{kind: lambda c=chunk, b=batch, p=p: p.translate(c, beam=5, batch_size=b)
                       for kind, p in onnx.items()}}
            speed[str(batch)] = {kind: len(chunk) / median_seconds(job, repeats) for kind, job in work.items()}
        refs = [[eager.target.tokens(t)[: eager.target.max_len] for t in group] for group in targets]
        wer = {"eager": sequence_errors([o[0].tokens for o in eager.translate(words, beam=5)], refs)["sequence_error"]}
        for kind, predictor in onnx.items():
            found = predictor.translate(words, beam=5)
            wer[kind] = sequence_errors([o[0].tokens for o in found], refs)["sequence_error"]
    return {"speed": speed, "wer": wer, "test_words": len(words),
            "mib": {kind: size_mib(folders[kind]) for kind in onnx}}


STARTUP = {
    "runtime": "from unrolled import runtime; runtime.load({export!r}, threads=1).predict(['a gripping film'])",
    "torch checkpoint": ("import torch; torch.set_num_threads(1); from unrolled.apps.classify import TextClassifier; "
                         "TextClassifier.load({run!r}, device='cpu').predict(['a gripping film'])"),
}


def startup(run: Path, repeats: int) -> dict[str, float]:
    """Median seconds from spawning a Python process to its first prediction (the classifier), each way."""
    found = {}
    for name, code in STARTUP.items():
        script = "import time; " + code.format(export=str(run / "export-onnx"), run=str(run)) + "; print(time.time())"
        times = []
        for _ in range(repeats):
            started = time.time()
            done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
            times.append(float(done.stdout.split()[-1]) - started)
        found[name] = statistics.median(times)
    return found


# ---------------------------------------------------------------------- the report


def report() -> None:
    kept = harness.load(RESULTS)
    meta = kept.get("meta", {})
    print(f"machine: {meta.get('cpu', '?')}, {meta.get('threads', '?')} thread(s) for torch and ONNX Runtime alike; "
          f"{meta.get('note', '')}")
    print(f"models: {meta.get('models', '')}\n")
    units = {"lm": "chars/s (sampling)", "classify": "sentences/s", "seq2seq": "words/s (beam 5)"}
    print(f"{'speed':<30} {'batch':>5} " + " ".join(f"{kind:>12}" for kind in KINDS) + f" {'fp32/eager':>11}")
    for name, unit in units.items():
        for batch, row in kept.get(name, {}).get("speed", {}).items():
            ratio = row["ort-fp32"] / row["eager"]
            target = f" (target {TARGETS['speedup']}x)" if batch == "1" and name != "seq2seq" else ""
            print(f"{name + ' ' + unit:<30} {batch:>5} " + " ".join(f"{row[kind]:12.1f}" for kind in KINDS)
                  + f" {ratio:10.2f}x{target}")
    print("\nint8 against fp32 (both ONNX Runtime)")
    rows = [("lm", "nats_per_char", "nats/char (validation)", 1.0, TARGETS["nats"]),
            ("classify", "accuracy", "MR test accuracy %", 100.0, TARGETS["accuracy_points"]),
            ("seq2seq", "wer", "G2P WER % (beam 5)", 100.0, TARGETS["wer_points"])]
    for name, key, label, scale, target in rows:
        if name not in kept:
            continue
        values, sizes = kept[name][key], kept[name]["mib"]
        cost = abs(values["ort-int8"] - values["ort-fp32"]) * scale
        speedup = kept[name]["speed"]["1"]["ort-int8"] / kept[name]["speed"]["1"]["ort-fp32"]
        print(f"{label:<26} eager {values['eager'] * scale:.4f}, fp32 {values['ort-fp32'] * scale:.4f}, "
              f"int8 {values['ort-int8'] * scale:.4f}: cost {cost:.4f} (target <= {target}); int8 speed at batch 1 "
              f"{speedup:.2f}x fp32, file {sizes['ort-int8']:.2f} / {sizes['ort-fp32']:.2f} MiB = "
              f"{sizes['ort-int8'] / sizes['ort-fp32']:.2f}")
    if "startup" in kept:
        s = kept["startup"]
        print(f"\nstart-up to the first prediction (classifier, median): runtime {s['runtime']:.2f} s, "
              f"torch checkpoint {s['torch checkpoint']:.2f} s ({s['torch checkpoint'] / s['runtime']:.1f}x)")


def main() -> None:
    parser = harness.options(__doc__, MODELS, minutes=3.0, threads=1)
    parser.add_argument("--quick", action="store_true", help="fewer inputs and one timing each (a shorter run)")
    parser.add_argument("--note", default="", help="a note for the report (e.g. that the machine was shared)")
    args, extra = harness.parse(parser)
    if not args.report:
        names = [args.model] if args.model else list(MODELS)
        harness.record(RESULTS, "meta", {"cpu": harness.cpu_model(), "threads": args.threads, "note": args.note,
                                         "quick": args.quick, "models": "; ".join(
                                             f"{n}: {' '.join(MODELS[n][2:])}, {args.minutes:g} min" for n in MODELS)})
        measures: dict[str, Callable[[Path, int, bool], dict[str, Any]]] = {
            "lm": measure_lm, "classify": measure_classify, "seq2seq": measure_seq2seq}
        for name in names:
            out = RESULTS / f"run-{name}"
            if not (out / "best").exists():
                harness.train(RESULTS, name, MODELS[name], args.minutes, args.threads, extra)
            import torch

            torch.set_num_threads(args.threads)
            harness.record(RESULTS, name, measures[name](out, args.threads, args.quick))
            if name == "classify":
                harness.record(RESULTS, "startup", startup(out, 1 if args.quick else 3))
    harness.summarise(RESULTS, __doc__, report)


if __name__ == "__main__":
    main()
