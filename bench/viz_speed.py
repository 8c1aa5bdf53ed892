"""Speed of `unrolled viz` (issue 8) on a long text: recording, the page's first paint, a match query.

The model is a char LM of the benchmark's shape, a 2 x 512 LSTM (embedding 64),
untrained (its speed is a trained one's), saved as a run in a temporary folder.
The text is --chars characters (default 1,000,000) of Shakespeare when
`unrolled.data.obtain("shakespeare")` has it cached or can fetch it, else of
words drawn from a fixed list. Three figures, printed beside the issue's targets:

1. record: seconds of `record_states(run, text)` (default quantities: h, c, i, f, o of
   both layers, float16 memory maps), start to finish, files flushed; and the CPU seconds
   the process used meanwhile, which tell how much of the wall time other work took.
2. first paint: a real browser (Debian's chromium through Playwright) loads the page
   from the local server; the time from navigation start to the first window drawn
   (`window.vizTimings.firstPaint`, set by app.js after the tracks and the text are on
   screen). Median of --repeats fresh pages.
3. match: in that page, a mouse brush over a range that numpy says selects some cells;
   the time from releasing the mouse to the match list drawn (`window.vizTimings.match`:
   the select request, the match request over the whole text, and drawing). Median of
   --repeats brushes. The server-side numpy `match_ranges` alone is timed as well.

Run: .venv/bin/python bench/viz_speed.py [--chars N] [--quantities h,c]   (OMP_NUM_THREADS=1 for one thread)
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from unrolled.apps.lm import checkpoint_config
from unrolled.checkpoint import save_checkpoint
from unrolled.data.text import Vocabulary
from unrolled.models.charlm import CharLM, CharLMConfig
from unrolled.viz.explorer import Explorer
from unrolled.viz.record import record_states
from unrolled.viz.select import match_ranges, select_cells
from unrolled.viz.server import address, make_server, serve_in_thread

TARGETS = {"record": 120.0, "first paint": 2.0, "match": 0.5}  # seconds, from the issue
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
WORDS = ("the", "king", "lord", "love", "thou", "art", "what", "night", "say", "good", "sir", "come", "well")
THRESHOLDS = (0.3, 0.2, 0.1, 0.05, 0.02)


def long_text(chars: int) -> tuple[str, str]:
    """`chars` characters of Shakespeare (repeated if short), or of random words; and where it came from."""
    try:
        from unrolled.data import obtain, read_text

        text = read_text([obtain("shakespeare")])
        source = "shakespeare"
    except (OSError, ValueError) as error:
        rng = random.Random(0)
        text = " ".join(rng.choice(WORDS) for _ in range(chars // 4 + 1))
        source = f"random words (shakespeare unavailable: {error})"
    return (text * (chars // len(text) + 1))[:chars], source


def untrained_run(text: str, folder: Path) -> Path:
    vocabulary = Vocabulary.from_text(text)
    torch.manual_seed(0)
    model = CharLM(CharLMConfig(vocab_size=len(vocabulary), layers=2, hidden=512, embedding=64))
    save_checkpoint(folder / "run" / "last", model_state=model.state_dict(),
                    config=checkpoint_config(model, vocabulary))
    return folder / "run"


def a_query(explorer: Explorer) -> tuple[float, int, int, list[int]]:
    """A threshold and a range in the first window that select some cells (numpy)."""
    states = explorer.states(0, "h")
    for threshold in THRESHOLDS:
        for start in range(1, 100):
            for length in (3, 2, 4):
                cells = select_cells(states, start, start + length - 1, threshold).tolist()
                if cells:
                    return threshold, start, start + length - 1, cells
    raise SystemExit("no range of the first window selects any cell")


def browser_figures(url: str, query: tuple[float, int, int, list[int]], repeats: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    threshold, start, end, _ = query
    timings: dict[str, list[float]] = {"first paint": [], "match": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for _ in range(repeats):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)
            timings["first paint"].append(page.evaluate("window.vizTimings.firstPaint") / 1000)
            page.fill("#threshold", str(threshold))
            page.dispatch_event("#threshold", "change")
            first = page.locator(f'#text-axis span[data-pos="{start}"]').bounding_box()
            last = page.locator(f'#text-axis span[data-pos="{end}"]').bounding_box()
            page.mouse.move(first["x"] + 5, first["y"] + 5)
            page.mouse.down()
            page.mouse.move(last["x"] + 5, last["y"] + 5, steps=3)
            page.mouse.up()
            page.wait_for_selector("#matches[data-done='1']", timeout=60_000)
            timings["match"].append(page.evaluate("window.vizTimings.match") / 1000)
            page.close()
        browser.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=1_000_000)
    parser.add_argument("--quantities", help="trace names to record (default: record_states' own)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    text, source = long_text(args.chars)
    print(f"text: {len(text):,} characters of {source}; model: untrained 2 x 512 LSTM; "
          f"torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as folder:
        run = untrained_run(text, Path(folder))
        began, cpu = time.perf_counter(), time.process_time()
        quantities = args.quantities.split(",") if args.quantities else None
        recording = record_states(run, text, quantities=quantities)
        seconds = {"record": [time.perf_counter() - began]}
        print(f"record: {time.process_time() - cpu:.1f} s of CPU time in this process (the machine may be shared)")
        size = sum(f.stat().st_size for f in recording.folder.iterdir())
        print(f"recorded {', '.join(recording.index.quantities)} of 2 layers with {recording.index.streams} streams: "
              f"{size / 1e9:.2f} GB")
        explorer = Explorer(run, recording=recording)
        query = a_query(explorer)
        threshold, start, end, cells = query
        numpy_times = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            match_ranges(explorer.states(0, "h"), cells, threshold, query=(start, end))
            numpy_times.append(time.perf_counter() - began)
        server = make_server(explorer, port=0)
        serve_in_thread(server)
        try:
            seconds.update(browser_figures(address(server), query, args.repeats))
        finally:
            server.shutdown()
            server.server_close()
    print(f"query: threshold {threshold}, range {start}..{end}, {len(cells)} cells selected; numpy match alone: "
          f"median {statistics.median(numpy_times) * 1000:.0f} ms")
    report(seconds)


def report(seconds: dict[str, Any]) -> None:
    print(f"{'figure':<12} {'median s':>9} {'min-max s':>15} {'target s':>9}  met")
    for name, values in seconds.items():
        median = statistics.median(values)
        spread = f"{min(values):.3f}-{max(values):.3f}"
        met = "yes" if median < TARGETS[name] else "NO"
        print(f"{name:<12} {median:>9.3f} {spread:>15} {TARGETS[name]:>9.1f}  {met}")


if __name__ == "__main__":
    main()
