"""Speed and memory of the character LM (issue 3): our trainer and sampler beside a bare PyTorch peer, one run.

Three figures, each measured in the same process (memory: in fresh subprocesses) for
ours and for the peer, and reported as ratios:

1. Training throughput, tokens/s (B x T predicted characters per optimizer step).

   * ours: the real trainer path. ``unrolled.training.Trainer`` over ``CharLM`` (lstm,
     2 layers, hidden 512, embedding 64, dropout 0.3) and ``TextStreams`` (batch 64,
     windows of 128, state carried and detached), ``TrainConfig(progress=False,
     weight_decay=0.1, warmup_steps=100, eval_every/log_every never)``: AdamW, cosine
     schedule, clipping at 1.0, a run folder in a temporary directory.
   * peer: a bare loop of the same shape. nn.Embedding -> nn.LSTM(dropout=0.3,
     batch_first) -> nn.Dropout -> nn.Linear, AdamW (same lr, betas, weight decay), the
     same stateful windows (state detached), ``zero_grad(set_to_none=True); backward;
     clip_grad_norm_(1.0); step``; no schedule, no logging, no checks.
   * ``--precision bf16``: both sides run the training forward under
     ``torch.autocast("cpu", bfloat16)`` (ours through ``TrainConfig(precision="bf16")``,
     what ``unrolled lm train`` picks by default on CPUs with native bfloat16).

   How it is timed: ONE ``Trainer.fit`` call runs all of our steps; its data is
   ``TextStreams`` behind a thin wrapper that notes the time whenever the trainer asks
   for the next batch. The time between two requests is exactly one full iteration of
   the trainer's loop: its limit check, RNG and data-state snapshot, to_device, forward
   and loss, ``loss.item()`` and the finiteness check, zero_grad, backward, clipping
   (with its ``.item()``), the learning rate, the optimizer step and the bookkeeping
   after it. A sample of ours is the time from request j to request j + K: K whole
   iterations, nothing left out. The peer's blocks of K steps run inside that same
   request hook, between our blocks (outside our samples), so the two are interleaved
   in rounds with alternating order: ours, peer | peer, ours | ours, peer ... after
   ``--warmup`` untimed steps of each. The ratio of a round is peer seconds / our
   seconds (= ours/peer tokens/s); we report the median over rounds and its min-max,
   and each side's median tokens/s. The one-off work of fit (setup before the first
   batch; the last, untimed step plus the final checkpoint save and curve drawing) is
   reported on its own line, not hidden and not charged to the steps.

2. Sampling speed, characters/s, from the same model after those steps (eval mode):
   ours ``LanguageModel.sample(prime, length=L, num_samples=N, seed=0)`` for N = 1 and 64;
   peer: an nn.LSTM holding the same weights, called one step at a time (input
   (N, 1, E), carrying (h, c)), with the same embedding, linear, softmax and
   torch.multinomial per step, after the same prime pass; both decode to strings.
   characters/s = N * L / seconds of the whole call; calls interleaved, order
   alternating. ``max|dlogp|`` checks that both compute the same log-probabilities.

3. Memory: the peak RSS of a few training steps, each side in a fresh subprocess (ours
   through ``Trainer.fit``, the peer's bare loop). The peak is reset (Linux clear_refs)
   just before the first step and read right after the last timed one, so the trainer's
   final checkpoint save is not in it; ``peak RSS`` is the process's resident memory at
   its highest over those steps, ``above start`` that minus the RSS before the first
   step (model, data and optimizer built, Adam's state not yet).

The text is the project's ``shakespeare`` dataset (`unrolled.data.obtain`), or the file
``--text PATH``: the figures in bench/results/lm_speed were measured on tinyshakespeare
(char-rnn's 1.1 MB input.txt), which no package registry ships, so pass that file to
compare with them. ``--text random`` trains on 1.1M random ids over 65 symbols.

    .venv/bin/python bench/lm_speed.py                    # the full run (several minutes on 2 cores)
    .venv/bin/python bench/lm_speed.py --quick            # tiny shape (hidden 32, batch 4, T 16), 1 thread: seconds
    .venv/bin/python bench/lm_speed.py --steps 10 --repeats 7 --threads 2 --json lm_speed.json
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import shlex
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import harness
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.apps.lm import LanguageModel, LMModel, checkpoint_config
from unrolled.data import StreamBatches, Vocabulary, obtain
from unrolled.data.text import TextStreams
from unrolled.models.charlm import CharLM, StreamWindow
from unrolled.training import TrainConfig, Trainer, TrainResult

RANDOM_CHARACTERS = 1_100_000
RANDOM_SYMBOLS = string.ascii_letters + string.digits + " \n"  # 64 characters + the unknown id: V = 65
PRIME = "ROMEO"
STREAMS = (1, 64)
NEVER = 10**9  # eval_every / log_every: no evaluation, no metrics line during the run
TRAIN_TARGET = 0.95  # ours / peer tokens/s
SAMPLE_TARGETS = {1: 2_500.0, 64: 25_000.0}  # characters/s, ours, at the default shape
MIB = 1024.0 * 1024.0


@dataclass(frozen=True)
class Shape:
    """The model (the LM application's model section: cell, L layers, H hidden, E embedding, dropout) and the batch:
    B streams of T-character windows, trained in `precision` ("bf16": both sides' training forward under
    torch.autocast(bfloat16))."""

    model: LMModel = field(default_factory=LMModel)
    batch: int = 64
    seq_len: int = 128
    precision: str = "fp32"

    def describe(self) -> str:
        m = self.model
        return (f"{m.cell} layers={m.layers} H={m.hidden} E={m.embedding} dropout={m.dropout} "
                f"B={self.batch} T={self.seq_len} ({self.batch * self.seq_len} tokens/step), {self.precision}")


FULL_SHAPE = Shape()
QUICK_SHAPE = Shape(LMModel(hidden=32), batch=4, seq_len=16)
FULL = {"steps": 5, "repeats": 5, "warmup": 3, "sample_length": 500, "sample_repeats": 5, "memory_steps": 3}
QUICK = {"steps": 3, "repeats": 3, "warmup": 2, "sample_length": 50, "sample_repeats": 3, "memory_steps": 2,
         "threads": 1}  # one thread: a tiny shape gains nothing from more, and a busy machine makes them crawl


# -- data and models ----------------------------------------------------------------------------


def load_data(path: str | None) -> tuple[Tensor, Vocabulary, str]:
    """The ids (N,) of the text, its vocabulary, and where they came from."""
    if path == "random":
        vocabulary = Vocabulary(list(RANDOM_SYMBOLS))
        ids = torch.randint(0, len(vocabulary), (RANDOM_CHARACTERS,), generator=torch.Generator().manual_seed(0))
        return ids, vocabulary, f"random ids ({RANDOM_CHARACTERS:,})"
    source = Path(path) if path else obtain("shakespeare")
    if not source.is_file():
        raise SystemExit(f"{path}: no such file")
    text = source.read_text(encoding="utf-8")
    vocabulary = Vocabulary.from_text(text)
    return vocabulary.encode(text), vocabulary, f"{source} ({len(text):,} characters)"


def our_model(shape: Shape, vocabulary: Vocabulary) -> CharLM:
    config = shape.model.config(len(vocabulary))
    return CharLM(config)


def train_config(steps: int, precision: str = "fp32") -> TrainConfig:
    return TrainConfig(progress=False, max_steps=steps, eval_every=NEVER, log_every=NEVER, weight_decay=0.1,
                       warmup_steps=100, precision=precision)


class PeerLM(nn.Module):
    """The obvious PyTorch model: nn.Embedding -> nn.LSTM -> nn.Dropout -> nn.Linear."""

    def __init__(self, shape: Shape, vocab_size: int) -> None:
        super().__init__()
        m = shape.model
        if m.cell != "lstm":
            raise ValueError("the peer is an nn.LSTM: use cell lstm")
        self.emb = nn.Embedding(vocab_size, m.embedding)
        self.lstm = nn.LSTM(m.embedding, m.hidden, m.layers, dropout=m.dropout, batch_first=True)
        self.drop = nn.Dropout(m.dropout)
        self.head = nn.Linear(m.hidden, vocab_size)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        out, state = self.lstm(self.emb(x), state)  # (B, T, H)
        return self.head(self.drop(out)), state

    @classmethod
    def like(cls, lm: CharLM, shape: Shape) -> PeerLM:
        """A peer holding `lm`'s weights."""
        peer = cls(shape, lm.config.vocab_size)
        assert lm.embedding is not None
        with torch.no_grad():
            peer.emb.weight.copy_(lm.embedding.weight)
            peer.head.load_state_dict(lm.head.state_dict())
        peer.lstm.load_state_dict(lm.rnn.state_dict())
        return peer


class PeerLoop:
    """The bare training loop: the same stateful windows, AdamW, clipping at 1.0."""

    def __init__(self, shape: Shape, ids: Tensor, vocab_size: int) -> None:
        self.model = PeerLM(shape, vocab_size).train()
        self.parameters = list(self.model.parameters())
        base = train_config(1)
        self.optimizer = torch.optim.AdamW(self.parameters, lr=base.lr, betas=base.betas, weight_decay=0.1)
        self.windows = StreamBatches(ids, batch_size=shape.batch, seq_len=shape.seq_len)
        self.bf16 = shape.precision == "bf16"
        self.index = 0
        self.state: tuple[Tensor, Tensor] | None = None

    def step(self) -> None:
        if self.index == len(self.windows):
            self.index = 0
        if self.index == 0:
            self.state = None
        inputs, targets = self.windows[self.index]  # (B, T) each
        self.index += 1
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits, state = self.model(inputs, self.state)
        self.state = (state[0].detach().float(), state[1].detach().float())
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.parameters, 1.0)
        self.optimizer.step()

    def run(self, steps: int) -> float:
        """Seconds for `steps` steps."""
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return time.perf_counter() - start


class Watched:
    """`TextStreams` for the trainer, calling `on_batch()` each time the trainer asks for a batch."""

    def __init__(self, streams: TextStreams, on_batch: Callable[[], None]) -> None:
        self.streams, self.on_batch = streams, on_batch

    def __len__(self) -> int:
        return len(self.streams)

    def batches(self, epoch: int, start: int) -> Iterator[StreamWindow]:
        for window in self.streams.batches(epoch, start):
            self.on_batch()
            yield window

    def shard(self, rank: int, world: int) -> Watched:
        return Watched(self.streams.shard(rank, world), self.on_batch)

    def state_dict(self) -> dict[str, Any]:
        return self.streams.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.streams.load_state_dict(state)


# -- training throughput ------------------------------------------------------------------------


@dataclass
class Block:
    """K consecutive steps of one side; `seconds` once done (ours: between batch requests)."""

    who: str  # "ours" or "peer"
    steps: int
    timed: bool
    seconds: float | None = None


@dataclass
class Schedule:
    """The interleaved blocks, driven by the trainer's batch requests (see the module docstring)."""

    blocks: list[Block]
    peer: PeerLoop
    position: int = 0
    started: float | None = None
    count: int = 0
    first_request: float | None = None
    last_request: float | None = None
    marks: list[float] = field(default_factory=list)

    @property
    def our_steps(self) -> int:
        """Steps fit must run: our blocks, plus the one batch the final request hands out."""
        return sum(b.steps for b in self.blocks if b.who == "ours") + 1

    def on_batch(self) -> None:
        now = time.perf_counter()
        if self.first_request is None:
            self.first_request = now
        self.last_request = now
        if self.started is not None:
            self.count += 1
            if self.count == self.blocks[self.position].steps:
                self.blocks[self.position].seconds = now - self.started
                self.position, self.started = self.position + 1, None
        while self.position < len(self.blocks) and self.blocks[self.position].who == "peer":
            gc.collect()
            self.blocks[self.position].seconds = self.peer.run(self.blocks[self.position].steps)
            self.position += 1
        if self.position < len(self.blocks) and self.started is None:
            gc.collect()
            self.count, self.started = 0, time.perf_counter()


def schedule_blocks(steps: int, repeats: int, warmup: int) -> list[Block]:
    blocks = [Block("ours", max(1, warmup), False), Block("peer", max(1, warmup), False)]
    for r in range(repeats):
        order = ("ours", "peer") if r % 2 == 0 else ("peer", "ours")
        blocks += [Block(who, steps, True) for who in order]
    return blocks


def time_training(shape: Shape, ids: Tensor, vocabulary: Vocabulary, args: argparse.Namespace
                  ) -> tuple[dict[str, Any], CharLM]:
    """Interleaved rounds of ours (inside one Trainer.fit) and the peer; returns the figures and our model."""
    torch.manual_seed(0)
    lm = our_model(shape, vocabulary)
    peer = PeerLoop(shape, ids, len(vocabulary))
    schedule = Schedule(schedule_blocks(args.steps, args.repeats, args.warmup), peer)
    data = Watched(TextStreams(ids, batch_size=shape.batch, seq_len=shape.seq_len), schedule.on_batch)
    with tempfile.TemporaryDirectory(prefix="lm_speed-") as folder:
        trainer = Trainer(lm, data, train_config(schedule.our_steps, shape.precision), Path(folder) / "run",
                          checkpoint_config=checkpoint_config(lm, vocabulary))
        called = time.perf_counter()
        result: TrainResult = trainer.fit()
        returned = time.perf_counter()
    if result.stopped_because != "max_steps" or schedule.position != len(schedule.blocks):
        raise SystemExit(f"training stopped early ({result.stopped_because}) after {result.steps} steps")
    assert schedule.first_request is not None and schedule.last_request is not None
    tokens = shape.batch * shape.seq_len
    timed = [b for b in schedule.blocks if b.timed]
    ours = [b for b in timed if b.who == "ours"]
    theirs = [b for b in timed if b.who == "peer"]
    ratios = [(p.seconds or 0.0) / (o.seconds or 1.0) for o, p in zip(ours, theirs, strict=True)]
    ratio = statistics.median(ratios)
    figures = {
        "tokens_per_step": tokens,
        "steps_per_sample": args.steps,
        "ours_samples_s": [b.seconds for b in ours],
        "peer_samples_s": [b.seconds for b in theirs],
        "ours_tokens_per_s": tokens * args.steps / statistics.median(b.seconds or 0.0 for b in ours),
        "peer_tokens_per_s": tokens * args.steps / statistics.median(b.seconds or 0.0 for b in theirs),
        "ratio": ratio,
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "target": TRAIN_TARGET,
        "verdict": "met" if ratio >= TRAIN_TARGET else "MISSED",
        "fit_s": returned - called,
        "fit_setup_s": schedule.first_request - called,
        "fit_tail_s": returned - schedule.last_request,
        "fit_steps": result.steps,
    }
    return figures, lm


# -- sampling -----------------------------------------------------------------------------------


@torch.inference_mode()
def peer_sample(peer: PeerLM, vocabulary: Vocabulary, prime: str, length: int, num_samples: int,
                seed: int) -> list[str]:
    """`num_samples` continuations of `prime`: nn.LSTM one step at a time, softmax, multinomial."""
    generator = torch.Generator().manual_seed(seed)
    out, (h, c) = peer.lstm(peer.emb(vocabulary.encode(prime)[None]))  # (1, P, H)
    logits = peer.head(out[:, -1]).expand(num_samples, -1)  # (N, V)
    h, c = h.expand(-1, num_samples, -1).contiguous(), c.expand(-1, num_samples, -1).contiguous()
    drawn: list[Tensor] = []
    for t in range(length):
        tokens = torch.multinomial(F.softmax(logits.float(), dim=-1), 1, generator=generator)  # (N, 1)
        drawn.append(tokens)
        if t + 1 == length:
            break
        out, (h, c) = peer.lstm(peer.emb(tokens), (h, c))  # (N, 1, H)
        logits = peer.head(out[:, 0])
    rows = torch.cat(drawn, dim=1).tolist()
    return [prime + vocabulary.decode(row) for row in rows]


@torch.inference_mode()
def decode_difference(lm: CharLM, peer: PeerLM, vocabulary: Vocabulary, prime: str, steps: int = 20) -> float:
    """max |log p ours - log p peer| over the prime and `steps` greedy steps fed to both."""
    tokens = vocabulary.encode(prime)[None]
    ours, state = lm.prime(tokens)
    out, (h, c) = peer.lstm(peer.emb(tokens))
    worst = 0.0
    for _ in range(steps):
        theirs = F.log_softmax(peer.head(out[:, -1]).float(), dim=-1)
        worst = max(worst, float((ours - theirs).abs().max()))
        token = ours.argmax(dim=-1)  # (1,)
        ours, state = lm.step(token, state)
        out, (h, c) = peer.lstm(peer.emb(token[:, None]), (h, c))
    return worst


def time_sampling(lm: CharLM, shape: Shape, vocabulary: Vocabulary, args: argparse.Namespace
                  ) -> list[dict[str, Any]]:
    """Ours and the peer's sampler, interleaved (order alternating), for each number of streams."""
    lm.eval()
    peer = PeerLM.like(lm, shape).eval()
    prime = PRIME if not vocabulary.unknown_characters(PRIME) else vocabulary.decode([1, 2, 3])
    difference = decode_difference(lm, peer, vocabulary, prime)
    ours = LanguageModel(lm, vocabulary)
    length = args.sample_length
    rows = []
    for streams in STREAMS:
        contenders: dict[str, Callable[[], list[str]]] = {
            "ours": lambda n=streams: ours.sample(prime, length=length, num_samples=n, seed=0),
            "peer": lambda n=streams: peer_sample(peer, vocabulary, prime, length, n, 0),
        }
        samples: dict[str, list[float]] = {"ours": [], "peer": []}
        for call in contenders.values():
            call()  # warm-up
        for r in range(args.sample_repeats):
            for name in ("ours", "peer") if r % 2 == 0 else ("peer", "ours"):
                gc.collect()
                start = time.perf_counter()
                texts = contenders[name]()
                samples[name].append(time.perf_counter() - start)
                if len(texts) != streams or any(len(text) != len(prime) + length for text in texts):
                    raise RuntimeError(f"{name} sampled {len(texts)} texts of the wrong length")
        chars = streams * length
        ratios = [p / o for o, p in zip(samples["ours"], samples["peer"], strict=True)]
        ours_rate = chars / statistics.median(samples["ours"])
        target = SAMPLE_TARGETS[streams]
        rows.append({
            "streams": streams,
            "length": length,
            "ours_samples_s": samples["ours"],
            "peer_samples_s": samples["peer"],
            "ours_chars_per_s": ours_rate,
            "peer_chars_per_s": chars / statistics.median(samples["peer"]),
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "target": target,
            "verdict": "met" if ours_rate >= target else "MISSED",
            "max_abs_logp_diff": difference,
        })
    return rows


# -- memory -------------------------------------------------------------------------------------


def memory_child(payload: str) -> None:
    """Subprocess entry: one side alone runs a few training steps; prints its peak RSS as JSON."""
    spec = json.loads(payload)
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    shape, steps = Shape(**{**spec["shape"], "model": LMModel(**spec["shape"]["model"])}), spec["steps"]
    ids, vocabulary, _ = load_data(spec["data"])
    torch.manual_seed(0)
    meter = harness.PeakMeter()
    if spec["who"] == "peer":
        peer = PeerLoop(shape, ids, len(vocabulary))
        meter.start()
        peer.run(steps)
        print(json.dumps(meter.stop()))
        return
    measured: dict[str, Any] = {}
    requests = 0

    def on_batch() -> None:
        nonlocal requests
        requests += 1
        if requests == 1:
            meter.start()
        elif requests == steps + 1:  # `steps` whole iterations done; the last step and the save are left out
            measured.update(meter.stop())

    lm = our_model(shape, vocabulary)
    data = Watched(TextStreams(ids, batch_size=shape.batch, seq_len=shape.seq_len), on_batch)
    with tempfile.TemporaryDirectory(prefix="lm_speed-") as folder:
        Trainer(lm, data, train_config(steps + 1, shape.precision), Path(folder) / "run",
                checkpoint_config=checkpoint_config(lm, vocabulary)).fit()
    print(json.dumps(measured))


def memory_of(who: str, shape: Shape, args: argparse.Namespace) -> dict[str, Any]:
    spec = {"who": who, "shape": asdict(shape), "steps": args.memory_steps, "threads": args.threads,
            "data": args.data}
    return harness.child_json(os.path.abspath(__file__), spec, {"peak_mib": None, "above_start_mib": None})


# -- report -------------------------------------------------------------------------------------


def header(args: argparse.Namespace, shape: Shape, source: str, vocab_size: int) -> dict[str, Any]:
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpus": os.cpu_count(),
        "cpu": harness.cpu_model(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "shape": asdict(shape),
        "vocab_size": vocab_size,
        "data": source,
        "quick": args.quick,
        "steps": args.steps,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "sample_length": args.sample_length,
        "sample_repeats": args.sample_repeats,
    }


def print_header(info: dict[str, Any], shape: Shape) -> None:
    print("lm_speed: char-LM training, sampling and memory, unrolled (Trainer + CharLM) against bare PyTorch")
    print(f"command: {info['command']}")
    print(f"torch {info['torch']} | python {info['python']} | threads {info['threads']} "
          f"(interop {info['interop_threads']}) | cpus {info['cpus']}")
    print(f"cpu: {info['cpu']} | load average at start: {info['load_average']}")
    print(f"shape: {shape.describe()} V={info['vocab_size']}" + ("  [--quick: not the targets' shape]"
                                                                  if info["quick"] else ""))
    print(f"data: {info['data']}", flush=True)


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_training(t: dict[str, Any], info: dict[str, Any]) -> None:
    print(f"\n== training: tokens/s, {info['repeats']} rounds of {t['steps_per_sample']} steps each side "
          f"(after {info['warmup']} warm-up steps each), order alternating")
    print(f"{'':<34} {'tokens/s':>10} {'ms/step':>9} {'ratio':>7} {'[min-max]':>11} {'target':>7}")
    for who, label in (("peer", "peer: bare PyTorch loop"), ("ours", "ours: Trainer.fit over CharLM")):
        rate = t[f"{who}_tokens_per_s"]
        ms = 1e3 * t["tokens_per_step"] / rate
        if who == "peer":
            print(f"{label:<34} {rate:>10.0f} {ms:>9.1f}")
        else:
            span = f"[{t['ratio_min']:.3f}-{t['ratio_max']:.3f}]"
            print(f"{label:<34} {rate:>10.0f} {ms:>9.1f} {t['ratio']:>7.3f} {span:>11} {'>=' + str(t['target']):>7}  "
                  f"{t['verdict']}")
    print(f"fit() outside the timed steps (not in the figures): setup before the first batch {t['fit_setup_s']:.2f} s; "
          f"the last step + checkpoint save + curve {t['fit_tail_s']:.2f} s; whole fit {t['fit_s']:.1f} s "
          f"({t['fit_steps']} steps, peer blocks included)")


def print_sampling(rows: list[dict[str, Any]], quick: bool) -> None:
    length = rows[0]["length"]
    print(f"\n== sampling: characters/s, {length} characters per stream per call (prime pass and decoding included)")
    print(f"{'streams':>7} {'peer chars/s':>13} {'ours chars/s':>13} {'ratio':>7} {'[min-max]':>11} "
          f"{'target (ours)':>14} {'':7} {'max|dlogp|':>10}")
    for r in rows:
        span = f"[{r['ratio_min']:.2f}-{r['ratio_max']:.2f}]"
        target = f">={r['target']:,.0f}"
        verdict = r["verdict"] + ("*" if quick else "")
        print(f"{r['streams']:>7} {r['peer_chars_per_s']:>13,.0f} {r['ours_chars_per_s']:>13,.0f} {r['ratio']:>7.3f} "
              f"{span:>11} {target:>14} {verdict:<7} {r['max_abs_logp_diff']:>10.1e}")
    if quick:
        print("* --quick: a tiny model, so the verdict says nothing about the target")


def print_memory(memory: dict[str, dict[str, Any]], steps: int) -> None:
    print(f"\n== memory: peak RSS over {steps} training steps, each side in a fresh subprocess")
    print(f"{'':<34} {'peak RSS MiB':>12} {'above start':>12} {'ratio':>7}  method")
    peer = memory["peer"].get("above_start_mib")
    for who, label in (("peer", "peer: bare PyTorch loop"), ("ours", "ours: Trainer.fit over CharLM")):
        m = memory[who]
        above = m.get("above_start_mib")
        ratio = above / peer if who == "ours" and above is not None and peer else None
        print(f"{label:<34} {fmt(m.get('peak_mib'), '.1f'):>12} {fmt(above, '.1f'):>12} {fmt(ratio, '.2f'):>7}  "
              f"{m.get('method')}")


def print_targets(training: dict[str, Any], sampling: list[dict[str, Any]], quick: bool) -> None:
    note = "  (--quick: tiny shape, not a verdict)" if quick else ""
    print(f"\nTARGETS{note}")
    print(f"  training tokens/s ours/peer   {training['ratio']:.3f}x  (>= {TRAIN_TARGET})  {training['verdict']}")
    for r in sampling:
        print(f"  sampling {r['streams']:>2} stream(s), ours    {r['ours_chars_per_s']:>9,.0f} chars/s  "
              f"(>= {r['target']:,.0f})  {r['verdict']}")


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, help=f"training steps per timed block (default {FULL['steps']})")
    parser.add_argument("--repeats", type=int, help=f"training rounds, one block each side (default {FULL['repeats']})")
    parser.add_argument("--warmup", type=int, help=f"untimed training steps each side first (default {FULL['warmup']})")
    parser.add_argument("--sample-length", type=int,
                        help=f"characters per stream per sampling call (default {FULL['sample_length']})")
    parser.add_argument("--sample-repeats", type=int,
                        help=f"timed sampling calls per side and stream count (default {FULL['sample_repeats']})")
    parser.add_argument("--memory-steps", type=int, help=f"training steps per memory subprocess "
                        f"(default {FULL['memory_steps']})")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice; 1 with --quick)")
    parser.add_argument("--text", "--data", dest="data", metavar="PATH",
                        help="the training text, or `random` (default: the shakespeare dataset)")
    parser.add_argument("--quick", action="store_true", help="tiny shape and few steps: checks that it runs")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="training arithmetic of both sides (bf16: autocast, as `lm train` picks on CPUs "
                             "with native bfloat16) (default: fp32)")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to PATH as JSON")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    return harness.parse_form(parser, argv, QUICK, FULL, positive=(
        "steps", "repeats", "warmup", "sample_length", "sample_repeats", "memory_steps"))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.memory_child:
        return memory_child(args.memory_child)
    shape = dataclasses.replace(QUICK_SHAPE if args.quick else FULL_SHAPE, precision=args.precision)
    start = time.perf_counter()
    ids, vocabulary, source = load_data(args.data)
    info = header(args, shape, source, len(vocabulary))
    print_header(info, shape)
    print("  timing training (one Trainer.fit, peer blocks interleaved) ...", file=sys.stderr, flush=True)
    training, lm = time_training(shape, ids, vocabulary, args)
    print("  timing sampling ...", file=sys.stderr, flush=True)
    sampling = time_sampling(lm, shape, vocabulary, args)
    memory: dict[str, dict[str, Any]] = {}
    if not args.no_memory:
        print("  measuring peak memory (one subprocess per side) ...", file=sys.stderr, flush=True)
        memory = {who: memory_of(who, shape, args) for who in ("peer", "ours")}
    print_training(training, info)
    print_sampling(sampling, args.quick)
    if memory:
        print_memory(memory, args.memory_steps)
    print_targets(training, sampling, args.quick)
    info["seconds"] = time.perf_counter() - start
    print(f"\nratio: ours/peer in the same round (peer seconds / our seconds), median [min-max]. "
          f"Total {info['seconds']:.0f} s.")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"header": info, "training": training, "sampling": sampling, "memory": memory}, out, indent=1)
    return None


if __name__ == "__main__":
    main()
