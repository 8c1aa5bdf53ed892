"""Serving under load (issue 26): `unrolled serve` on loopback, with batching across requests on and off.

Three runs are trained first through the CLI (`harness.train`, --train-minutes each, the reply model
--reply-minutes): the char LM of
`make demo` (a 2 x 256 LSTM, embedding 64, on Shakespeare), the MR sentence classifier (the default
BiLSTM) and a seq2seq auto-reply model on chatterbot (words in, words out). Then, for each mode, one
`unrolled serve` process serves all three on 127.0.0.1:

- batching on: --max-batch 64 --max-wait-ms 5; off: --max-batch 1 (each request its own pass);
- the load generator (this process: keep-alive HTTP/1.1 over asyncio streams, only ever 127.0.0.1)
  runs C = 1, 8, 64 clients for --seconds each, each client sending its next request when its last
  is answered: generation (200 characters, temperature 0.8, no seed) and classification (one
  sentence); it stops after --seconds or --max-requests, whichever comes first;
- requests/s (answered with 200, over the stretch), p50 and p99 latency, failed requests (any other
  answer or a transport error), and the server's RSS after a warm-up and at the end;
- with batching on: the reply route at 16 clients (suggestions/s: replies returned per second,
  k = 3 per message), and for 200 held-out chatterbot messages (the run's validation and test
  sources) the share whose 3 suggestions hold a near-duplicate pair (`unrolled.serve.diverse`),
  with the diversity rule against plain n-best.

Run: .venv/bin/python bench/serve_load.py [--quick] [--seconds 60] [--train-minutes 1] [--reuse]
(--quick: 3-second stretches and 0.3-minute training, to check it works; --reuse keeps trained runs)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

from unrolled.serve.launch import Launched

RESULTS = harness.results_dir("serve_load")
LOOPBACK = "127.0.0.1"
CLIENTS = (1, 8, 64)
REPLY_CLIENTS = 16
HELD_OUT = 200
WARM_UP_SECONDS = 3.0
TARGETS = {"classify": 5.0, "lm": 3.0}  # requests/s with batching over without, at 64 clients
P99_TARGET = 1.0  # seconds, classifier at 64 clients
RSS_GROWTH = 0.10
RECIPES = {
    "lm": ["lm", "train", "--dataset", "shakespeare", "--layers", "2", "--hidden", "256", "--embedding", "64",
           "--dropout", "0", "--batch-size", "32"],
    "classify": ["classify", "train", "--dataset", "mr"],
    "reply": ["seq2seq", "train", "--dataset", "chatterbot", "--hidden", "256", "--embedding", "128",
              "--validation", "0.1", "--test", "0.1"],  # about 200 held-out messages
}
BODIES = {
    "lm": {"prime": "", "length": 200, "temperature": 0.8},
    "classify": {"texts": ["a gripping , beautifully acted film that never lets go ."]},
}
REPLY_PATH, REPLY_BODY = "/v1/models/run-reply/reply", {"message": "how are you?", "k": 3}
WHAT = {"lm": "char LM, 200 characters", "classify": "classifier, one sentence"}


def train_runs(minutes: float, reply_minutes: float, reuse: bool) -> dict[str, Path]:
    runs = {}
    for name, recipe in RECIPES.items():
        out = RESULTS / f"run-{name}"
        if not (reuse and (out / "best").is_dir()):
            harness.train(RESULTS, name, recipe, reply_minutes if name == "reply" else minutes, threads=2)
        runs[name] = out
    return runs


# -- the server -------------------------------------------------------------------------------------


class Server(Launched):
    """`unrolled serve` over the runs (`Launched`), and what its queues have done."""

    def __init__(self, runs: dict[str, Path], flags: list[str]) -> None:
        super().__init__(list(runs.values()), ["--host", LOOPBACK, *flags])

    def batching(self) -> dict[str, Any]:
        models = httpx.get(f"{self.url}/v1/models", timeout=30).json()["models"]
        return {model["name"]: model["batching"] for model in models}


# -- the load generator -----------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection that posts JSON and reads the answer: the load generator's client, a few
    lines over asyncio streams, so that the generator costs the shared cores far less than the server it loads."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(LOOPBACK, self.port)
        assert self.reader is not None
        head = (f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        length, closing = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                closing = True
        answer = await self.reader.readexactly(length)
        if closing:
            await self.close()
        return int(status_line.split()[1]), answer

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def load(url: str, path: str, body: Any, *, clients: int, seconds: float, max_requests: int) -> dict[str, Any]:
    """`clients` closed-loop clients, each on its own connection, posting `body` to `path` for `seconds` (at most
    `max_requests` in all)."""
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise SystemExit(f"the load generator only runs against {LOOPBACK}, not {url}")
    port, payload = int(url.rsplit(":", 1)[1]), json.dumps(body).encode()
    latencies: list[float] = []
    failed, sent, answers = 0, 0, []
    started = time.perf_counter()
    stop = started + seconds

    async def worker() -> None:
        nonlocal failed, sent
        connection = Connection(port)
        try:
            while time.perf_counter() < stop and sent < max_requests:
                sent += 1
                begun = time.perf_counter()
                try:
                    status, answer = await connection.post(path, payload)
                except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                    failed += 1
                    await connection.close()
                    continue
                if status != 200:
                    failed += 1
                    continue
                latencies.append(time.perf_counter() - begun)
                if not answers:
                    answers.append(json.loads(answer))
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {"clients": clients, "requests": len(latencies), "failed": failed, "seconds": round(elapsed, 2),
            "per_second": len(latencies) / elapsed, "p50": percentile(ordered, 0.50),
            "p99": percentile(ordered, 0.99), "sample": answers[0] if answers else None}


def percentile(ordered: list[float], q: float) -> float:
    """The q-quantile of sorted values (nearest rank); NaN for none."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def measure_mode(runs: dict[str, Path], flags: list[str], args: argparse.Namespace, *,
                 replies: bool) -> dict[str, Any]:
    """One server with `flags`: warm-up, each application at each client count, then (with `replies`) the
    reply route; the RSS after the warm-up and at the end."""
    server = Server(runs, flags)
    try:
        for name, body in BODIES.items():  # at the most clients: the largest batches are met before the RSS is read
            path = f"/v1/models/run-{name}/predict"
            asyncio.run(load(server.url, path, body, clients=CLIENTS[-1], seconds=WARM_UP_SECONDS,
                             max_requests=10_000))
        if replies:
            asyncio.run(load(server.url, REPLY_PATH, REPLY_BODY, clients=REPLY_CLIENTS, seconds=WARM_UP_SECONDS,
                             max_requests=10_000))
        result: dict[str, Any] = {"flags": flags, "rss_warm_mib": server.rss_mib()}
        for name, body in BODIES.items():
            path = f"/v1/models/run-{name}/predict"
            result[name] = [asyncio.run(load(server.url, path, body, clients=clients, seconds=args.seconds,
                                             max_requests=args.max_requests)) for clients in CLIENTS]
            print(f"  {name}: " + ", ".join(f"{r['clients']} clients {r['per_second']:.1f}/s" for r in result[name]),
                  flush=True)
        if replies:
            result["reply"] = asyncio.run(load(server.url, REPLY_PATH, REPLY_BODY, clients=REPLY_CLIENTS,
                                               seconds=args.seconds, max_requests=args.max_requests))
            result["diversity"] = asyncio.run(diversity(server.url, held_out(runs["reply"])))
        result["rss_end_mib"] = server.rss_mib()
        result["batching"] = server.batching()
    finally:
        server.stop()
    return result


def held_out(run: Path) -> list[str]:
    """Up to `HELD_OUT` distinct messages of the reply run's validation and test parts."""
    from unrolled.apps.seq2seq import Seq2SeqEvalOptions, Translator, read_eval
    from unrolled.apps.sides import references

    translator = Translator.load(run, device="cpu")
    messages: list[str] = []
    for part in ("validation", "test"):
        pairs = read_eval(translator, None, Seq2SeqEvalOptions(dataset="chatterbot", split=part))
        messages += [m for m in references(pairs)[0] if m not in messages]
    return messages[:HELD_OUT]


async def diversity(url: str, messages: list[str]) -> dict[str, Any]:
    """For each message, 3 replies with the rule and 3 by plain n-best; the share holding a near-duplicate pair."""
    from unrolled.serve.diverse import has_near_duplicates

    gate = asyncio.Semaphore(REPLY_CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:

        async def ask(message: str, rule: bool) -> list[str]:
            async with gate:
                response = await client.post("/v1/models/run-reply/reply",
                                             json={"message": message, "k": 3, "diverse": rule})
            response.raise_for_status()
            return [reply["text"] for reply in response.json()["replies"]]

        found = {}
        for rule in (True, False):
            answers = await asyncio.gather(*(ask(message, rule) for message in messages))
            found["rule" if rule else "plain"] = {
                "messages": len(messages), "with_near_duplicates": sum(map(has_near_duplicates, answers)),
                "mean_replies": statistics.fmean(len(a) for a in answers) if answers else 0.0,
                "example": {"message": messages[0], "replies": answers[0]} if answers else None}
    return found


# -- the report -------------------------------------------------------------------------------------


def report() -> None:
    kept = harness.load(RESULTS)
    on, off, setup = kept["on"], kept["off"], kept["setup"]
    print(f"unrolled serve on {LOOPBACK}, {setup['cpu']} ({setup['cores']} cores; the load generator shares them "
          f"with the server, so ratios from the same run are the figures); {setup['seconds']:g} s per stretch"
          f"{' (shorter than the issue' + chr(39) + 's 60 s)' if setup['seconds'] < 60 else ''}; "
          f"runs trained {setup['train_minutes']:g} min each, the reply model {setup.get('reply_minutes', 0):g} min")
    print(f"batching on: {' '.join(on['flags'])}; off: {' '.join(off['flags'])}")
    print()
    print(f"{'':28} {'clients':>7} | {'on: req/s':>9} {'p50 s':>7} {'p99 s':>7} {'fail':>4} | "
          f"{'off: req/s':>10} {'p50 s':>7} {'p99 s':>7} {'fail':>4} | {'on/off':>6}")
    for name in BODIES:
        for a, b in zip(on[name], off[name], strict=True):
            print(f"{WHAT[name]:28} {a['clients']:7d} | {a['per_second']:9.1f} {a['p50']:7.3f} {a['p99']:7.3f} "
                  f"{a['failed']:4d} | {b['per_second']:10.1f} {b['p50']:7.3f} {b['p99']:7.3f} {b['failed']:4d} | "
                  f"{a['per_second'] / b['per_second']:5.2f}x")
    print()
    print("targets at 64 clients:")
    for name, target in TARGETS.items():
        ratio = on[name][-1]["per_second"] / off[name][-1]["per_second"]
        print(f"  {WHAT[name]:28} batching {ratio:.2f}x the req/s of one-at-a-time (target >= {target:g}x): "
              f"{'met' if ratio >= target else 'NOT met'}")
    p99 = on["classify"][-1]["p99"]
    print(f"  classifier p99 with batching {p99:.3f} s (target < {P99_TARGET:g} s): "
          f"{'met' if p99 < P99_TARGET else 'NOT met'}")
    failures = sum(r["failed"] for mode in (on, off) for name in BODIES for r in mode[name]) + on["reply"]["failed"]
    print(f"  failed requests: {failures} (target 0): {'met' if failures == 0 else 'NOT met'}")
    for label, mode in (("on", on), ("off", off)):
        growth = mode["rss_end_mib"] / mode["rss_warm_mib"] - 1
        print(f"  server RSS, batching {label}: {mode['rss_warm_mib']:.0f} MiB after warm-up, "
              f"{mode['rss_end_mib']:.0f} MiB at the end ({100 * growth:+.1f}%; "
              f"target within {100 * RSS_GROWTH:.0f}%): "
              f"{'met' if abs(growth) <= RSS_GROWTH else 'NOT met'}")
    mean = {label: mode["batching"] for label, mode in (("on", on),)}
    print("  mean batch with batching on: " + ", ".join(
        f"{name} {stats['mean_batch']:.1f} (largest {stats['largest_batch']})" for name, stats in mean["on"].items()))
    reply, shares = on["reply"], on["diversity"]
    print()
    print(f"auto-reply at {REPLY_CLIENTS} clients: {3 * reply['per_second']:.1f} suggestions/s "
          f"({reply['per_second']:.1f} messages/s, p50 {reply['p50']:.3f} s, p99 {reply['p99']:.3f} s, "
          f"{reply['failed']} failed)")
    for label, key in (("with the diversity rule", "rule"), ("plain n-best", "plain")):
        share = shares[key]
        print(f"  {label:24} {share['with_near_duplicates']:3d} of {share['messages']} held-out messages have a "
              f"near-duplicate pair ({100 * share['with_near_duplicates'] / share['messages']:.1f}%; "
              f"{share['mean_replies']:.2f} replies each)")
    example = shares["rule"]["example"], shares["plain"]["example"]
    print(f"  e.g. {example[0]['message']!r}: rule {example[0]['replies']}, plain {example[1]['replies']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds per load stretch (default: 60)")
    parser.add_argument("--max-requests", type=int, default=100_000, help="most requests per stretch")
    parser.add_argument("--train-minutes", type=float, default=1.0, help="training time per run (default: 1)")
    parser.add_argument("--reply-minutes", type=float, default=3.0, help="training time of the reply model "
                                                                         "(default: 3)")
    parser.add_argument("--quick", action="store_true", help="3-second stretches, 0.3-minute training")
    parser.add_argument("--reuse", action="store_true", help="keep the runs already trained")
    parser.add_argument("--report", action="store_true", help="only print the last measurement's table")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.train_minutes, args.reply_minutes = 3.0, 0.3, 0.3
    if not args.report:
        runs = train_runs(args.train_minutes, args.reply_minutes, args.reuse)
        setup = {"cpu": harness.cpu_model(), "cores": os.cpu_count(), "seconds": args.seconds,
                 "train_minutes": args.train_minutes, "reply_minutes": args.reply_minutes}
        harness.record(RESULTS, "setup", setup)
        for label, flags in (("on", ["--max-batch", "64", "--max-wait-ms", "5"]), ("off", ["--max-batch", "1"])):
            print(f"batching {label}", flush=True)
            harness.record(RESULTS, label, measure_mode(runs, flags, args, replies=label == "on"))
    harness.summarise(RESULTS, __doc__, report)
    print(json.dumps({"results": str(RESULTS / harness.SUMMARY_FILE)}))


if __name__ == "__main__":
    main()
