"""The viz page in headless Chromium (Debian's, driven by Playwright): brush, select, match, a cell, attention.

The selected cells and the match list the page shows are checked against numpy
on the recorded states; each test saves a screenshot under its tmp_path.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.viz_runs import TEXT, train_tiny_captioner, train_tiny_lm, train_tiny_seq2seq
from unrolled.viz.attention import image_files, record_attention, record_caption_attention
from unrolled.viz.explorer import Explorer
from unrolled.viz.record import Recording, record_states
from unrolled.viz.select import match_ranges, select_cells
from unrolled.viz.server import address, make_server, serve_in_thread

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
THRESHOLD = 0.3  # the page's default (LSTMVis')
WINDOW = 120  # characters the page shows


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if executable is None:
        pytest.skip("chromium not found (/usr/bin/chromium): `apt-get install chromium`, as `make test` does")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra: make test")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def serve(explorer: Explorer) -> Iterator[str]:
    server = make_server(explorer, port=0)
    serve_in_thread(server)
    yield address(server)
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    run = train_tiny_lm(tmp_path_factory.mktemp("viz-browser"), steps=30)
    return record_states(run, TEXT, streams=1)


@pytest.fixture(scope="module")
def states_page(recording: Recording) -> Iterator[str]:
    yield from serve(Explorer(recording.folder.parent.parent, recording=recording))


def a_query(states: np.ndarray) -> tuple[int, int, list[int]]:
    """A range inside the first window that selects some cells which match elsewhere (found with numpy)."""
    for length in (3, 2, 4, 1, 5):
        for start in range(1, WINDOW - length):
            cells = select_cells(states, start, start + length - 1, THRESHOLD).tolist()
            if cells and match_ranges(states, cells, THRESHOLD, query=(start, start + length - 1)):
                return start, start + length - 1, cells
    raise AssertionError("no range in the first window selects cells that match elsewhere")


def drag(page: Any, start: int, end: int) -> None:
    first = page.locator(f'#text-axis span[data-pos="{start}"]').bounding_box()
    last = page.locator(f'#text-axis span[data-pos="{end}"]').bounding_box()
    page.mouse.move(first["x"] + first["width"] / 2, first["y"] + first["height"] / 2)
    page.mouse.down()
    page.mouse.move(last["x"] + last["width"] / 2, last["y"] + last["height"] / 2, steps=5)
    page.mouse.up()


def brush_and_check(page: Any, url: str, states: np.ndarray) -> list[int]:
    """Open the page, brush a range numpy finds worth it, and check the page's selection and matches against numpy.

    Returns the selected cells. Errors the page's script raises fail the test.
    """
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#text-axis span").count() == WINDOW
    start, end, cells = a_query(states)
    drag(page, start, end)
    page.wait_for_selector("#matches[data-done='1']")
    shown_cells = page.locator("#selected li").evaluate_all("items => items.map(i => Number(i.dataset.cell))")
    shown = page.locator("#matches li").evaluate_all(
        "items => items.map(i => [Number(i.dataset.start), Number(i.dataset.end), Number(i.dataset.overlap)])")
    assert shown_cells == cells
    expected = match_ranges(states, cells, THRESHOLD, query=(start, end))
    assert shown == [[m.start, m.end, pytest.approx(m.overlap)] for m in expected]
    assert page.locator("#text-axis span.brushed").count() == end - start + 1
    assert errors == []
    return cells


def test_brush_selects_the_cells_numpy_selects_and_lists_their_matches(
        browser: Any, states_page: str, recording: Recording, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    states = recording.states(0, "h")
    cells = brush_and_check(page, states_page, states)
    page.screenshot(path=str(tmp_path / "states.png"), full_page=True)

    page.locator(f'#selected li[data-cell="{cells[0]}"]').click()
    page.wait_for_selector("#view-cell:not([hidden]) #cell-top li")
    track = np.asarray(states[cells[0]], dtype=np.float32)
    best = int(page.locator("#cell-top li").first.get_attribute("data-position"))
    assert track[best] == track.max()  # the repeated text ties: any position of the highest value
    page.screenshot(path=str(tmp_path / "cell.png"), full_page=True)
    page.locator('[data-tab="training"]').click()
    assert page.locator("#curves polyline.curve-train").count() == 1


def test_an_exported_page_selects_and_matches_like_the_server(
        browser: Any, recording: Recording, tmp_path: Path) -> None:
    from unrolled.viz.export import export_page

    path = tmp_path / "page.html"
    export_page(Explorer(recording.folder.parent.parent, recording=recording), path)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    brush_and_check(page, path.as_uri(), recording.states(0, "h"))
    page.screenshot(path=str(tmp_path / "exported.png"))


def test_hovering_a_target_token_shows_its_source_weights(browser: Any, tmp_path: Path) -> None:
    run, sources = train_tiny_seq2seq(tmp_path)
    examples = record_attention(run, sources)
    for url in serve(Explorer(run, attention=examples)):
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        assert page.locator("#view-attention").is_visible()
        weights = examples[0]["weights"]
        row = len(weights) - 1
        page.locator(f'#attention-grid td[data-row="{row}"][data-col="0"]').hover()
        focus = page.locator("#attention-focus")
        assert focus.get_attribute("data-row") == str(row)
        shown = focus.locator("span").evaluate_all("spans => spans.map(s => Number(s.dataset.weight))")
        assert shown == pytest.approx(weights[row])
        assert page.locator("#attention-grid tr.focus").get_attribute("data-row") == str(row)
        page.screenshot(path=str(tmp_path / "attention.png"), full_page=True)


def test_a_caption_shows_its_weights_over_the_image(browser: Any, tmp_path: Path) -> None:
    run, pictures = train_tiny_captioner(tmp_path)
    examples = record_caption_attention(run, image_files(pictures, 5))
    assert len(examples) == 2 and examples[0]["grid"] == [4, 4] and len(examples[0]["source"]) == 16
    for url in serve(Explorer(run, attention=examples)):
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        page.locator('#attention-grid td[data-row="1"][data-col="5"]').hover()
        assert page.locator("#attention-focus").get_attribute("data-row") == "1"
        assert page.locator("#attention-image").is_visible() and page.locator("#attention-overlay").count() == 1
        corner = page.evaluate("document.getElementById('attention-overlay').getContext('2d')"
                               ".getImageData(0, 0, 1, 1).data[3]")
        peak = max(examples[0]["weights"][1])
        assert corner == round(255 * 0.75 * (1 - examples[0]["weights"][1][0] / peak))  # darker where it looks less
        page.screenshot(path=str(tmp_path / "caption.png"), full_page=True)
