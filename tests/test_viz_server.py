"""The viz server through a real HTTP client: its files, its JSON against numpy, and what it refuses."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.viz_runs import TEXT, train_tiny_lm
from unrolled.viz.explorer import MAX_WINDOW, Explorer
from unrolled.viz.record import Recording, record_states
from unrolled.viz.select import match_ranges, select_cells
from unrolled.viz.server import DEFAULT_PORT, make_server, serve_in_thread


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    run = train_tiny_lm(tmp_path_factory.mktemp("viz-server"))
    return record_states(run, TEXT, streams=1)


@pytest.fixture(scope="module")
def port(recording: Recording) -> Iterator[int]:
    explorer = Explorer(recording.folder.parent.parent, recording=recording)
    server = make_server(explorer, port=0)
    serve_in_thread(server)
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def request(port: int, path: str, *, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=body)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data, response.getheader("Content-Type") or ""


def get_json(port: int, path: str) -> tuple[int, Any]:
    status, data, kind = request(port, path)
    assert kind == "application/json"
    return status, json.loads(data)


def decoded(values: str, rows: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(values), dtype="<f2").reshape(rows, -1)


def test_the_page_and_its_files(port: int) -> None:
    status, page, kind = request(port, "/")
    assert status == 200 and kind.startswith("text/html") and b"/static/app.js" in page
    for name, kind_start in (("app.js", "text/javascript"), ("style.css", "text/css")):
        status, _, kind = request(port, f"/static/{name}")
        assert status == 200 and kind.startswith(kind_start)


@pytest.mark.parametrize("path", ["/static/../record.py", "/static/%2e%2e/record.py", "/../../etc/passwd",
                                  "/static/", "/static/../../../../etc/passwd", "/viz/record.py", "/api/nothing"])
def test_nothing_else_is_served(port: int, path: str) -> None:
    status, data, _ = request(port, path)
    assert status == 404 and b"def " not in data and b"root:" not in data


def test_info_and_a_window_equal_the_recording(port: int, recording: Recording) -> None:
    status, info = get_json(port, "/api/info")
    assert status == 200 and info["states"]["length"] == len(TEXT) and info["states"]["hidden"] == 16
    status, window = get_json(port, "/api/window?layer=1&quantity=c&start=10&end=69")
    assert status == 200 and window["text"] == TEXT[10:70]
    np.testing.assert_array_equal(decoded(window["values"], 16), recording.states(1, "c")[:, 10:70])


def test_select_and_match_equal_numpy(port: int, recording: Recording) -> None:
    states = recording.states(0, "h")
    status, answer = get_json(port, "/api/select?layer=0&quantity=h&start=40&end=42&threshold=0.1")
    assert status == 200 and answer["cells"] == select_cells(states, 40, 42, 0.1).tolist()
    cells = answer["cells"] or [0, 1, 2]
    query = ",".join(map(str, cells))
    status, found = get_json(port, f"/api/match?layer=0&quantity=h&cells={query}&threshold=0.1&start=40&end=42")
    expected = match_ranges(states, cells, 0.1, query=(40, 42))
    assert status == 200 and [(m["start"], m["end"]) for m in found["matches"]] == [(m.start, m.end) for m in expected]
    assert [m["overlap"] for m in found["matches"]] == [m.overlap for m in expected]
    first = found["matches"][0]
    shown = decoded(first["values"], len(cells))
    np.testing.assert_array_equal(shown, states[cells, first["shownStart"] : first["shownStart"] + len(first["text"])])


def test_a_cell_and_its_top_contexts(port: int, recording: Recording) -> None:
    status, answer = get_json(port, "/api/cell?layer=1&quantity=h&cell=3&start=0&end=99&top=5")
    track = np.asarray(recording.states(1, "h")[3], dtype=np.float32)
    assert status == 200 and len(answer["top"]) == 5
    assert answer["top"][0]["value"] == pytest.approx(float(track.max()))
    positions = [t["position"] for t in answer["top"]]
    assert all(abs(a - b) >= 10 for i, a in enumerate(positions) for b in positions[:i])
    assert [t["value"] for t in answer["top"]] == sorted((t["value"] for t in answer["top"]), reverse=True)


def test_curves_come_from_the_metrics_log(port: int) -> None:
    status, curves = get_json(port, "/api/curves")
    assert status == 200 and curves["found"] and curves["train"] and curves["validation"]
    assert all(len(point) == 2 for point in curves["train"])


@pytest.mark.parametrize(("path", "fragment"), [
    (f"/api/window?start={len(TEXT) - 5}&end={len(TEXT) + 10}", "not inside the text's positions"),
    ("/api/window?start=-1&end=3", "not inside"),
    (f"/api/window?start=0&end={MAX_WINDOW}", "at most"),
    ("/api/window?layer=7&start=0&end=3", "layer 7 does not exist"),
    ("/api/window?quantity=z&start=0&end=3", "'z' was not recorded"),
    ("/api/window?start=zero&end=3", "must be an integer"),
    ("/api/select?start=0&end=3", "'threshold' is missing"),
    ("/api/select?start=0&end=3&threshold=nan", "finite"),
    ("/api/match?cells=&threshold=0&start=0&end=3", "no cells"),
    ("/api/match?cells=99&threshold=0&start=0&end=3", "cells must lie"),
    ("/api/attention", "no recorded attention"),
])
def test_bad_requests_answer_400_with_one_line(port: int, path: str, fragment: str) -> None:
    status, answer = get_json(port, path)
    assert status == 400 and fragment in answer["error"] and "\n" not in answer["error"]


def test_oversized_and_other_requests_are_refused(port: int) -> None:
    assert request(port, "/api/info?" + "x" * 5000)[0] == 414
    assert request(port, "/api/info", body=b"x" * 10)[0] == 413
    assert request(port, "/api/info", method="POST", body=b"")[0] == 501
    status, data, _ = request(port, "/api/info", method="HEAD")
    assert status == 200 and data == b""


def test_a_port_in_use(recording: Recording) -> None:
    explorer = Explorer(recording.folder.parent.parent, recording=recording)
    first = make_server(explorer, port=0)
    busy = first.server_address[1]
    try:
        with pytest.raises(ValueError, match=f"port {busy} on 127.0.0.1 is in use"):
            make_server(explorer, port=busy)
        try:
            holder = make_server(explorer, port=DEFAULT_PORT)  # hold the default port (if no one else does)
        except ValueError:
            holder = None
        other = make_server(explorer)  # the default is taken: any free port instead
        assert other.server_address[1] != DEFAULT_PORT and other.server_address[0] == "127.0.0.1"
        other.server_close()
        if holder is not None:
            holder.server_close()
    finally:
        first.server_close()
