"""The local web server of `unrolled viz`: the page's own files and the explorer's JSON, on 127.0.0.1.

Standard library only (`http.server.ThreadingHTTPServer`). Routes::

    GET /                      the page (index.html)
    GET /static/NAME           one of the page's files, by exact name (STATIC_FILES); nothing else on disk
    GET /api/info              what the run offers
    GET /api/window            ?layer&quantity&start&end
    GET /api/select            ?layer&quantity&start&end&threshold
    GET /api/match             ?layer&quantity&cells=1,5,9&threshold&start&end[&limit]
    GET /api/cell              ?layer&quantity&cell&start&end[&top]
    GET /api/curves, /api/attention

Safety: files are looked up in a fixed table of names, so no path can reach
outside the package (no traversal); a request line longer than
MAX_REQUEST_LINE or any request body is refused (414, 413); only GET and
HEAD are served. Bad parameters answer 400 with ``{"error": "one line"}``.
"""

from __future__ import annotations

import errno
import json
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from unrolled.viz.explorer import Explorer

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_REQUEST_LINE = 4096
STATIC_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
                "style.css": "text/css; charset=utf-8"}


def static_file(name: str) -> bytes:
    """A file of the page, from the package's data (`unrolled/viz/static`)."""
    return resources.files("unrolled.viz").joinpath("static", name).read_bytes()


class Query:
    """A request's query string, read with one-line errors for missing or malformed parameters."""

    def __init__(self, text: str) -> None:
        self.values = {key: items[-1] for key, items in parse_qs(text, keep_blank_values=True).items()}

    def text(self, name: str, default: str | None = None) -> str:
        value = self.values.get(name, default)
        if value is None:
            raise ValueError(f"the parameter {name!r} is missing")
        return value

    def integer(self, name: str, default: int | None = None) -> int:
        value = self.text(name, None if default is None else str(default))
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"the parameter {name!r} must be an integer, got {value!r}") from None

    def number(self, name: str) -> float:
        value = self.text(name)
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"the parameter {name!r} must be a number, got {value!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"the parameter {name!r} must be a finite number, got {value!r}")
        return number

    def integers(self, name: str) -> list[int]:
        value = self.text(name)
        try:
            return [int(part) for part in value.split(",") if part]
        except ValueError:
            raise ValueError(f"the parameter {name!r} must be integers separated by commas, got {value!r}"
                             ) from None


def routes(explorer: Explorer) -> dict[str, Callable[[Query], dict[str, Any]]]:
    """The JSON endpoints: path -> answer of a query."""

    def where(q: Query) -> tuple[int, str]:
        return q.integer("layer", 0), q.text("quantity", "h")

    return {
        "/api/info": lambda q: explorer.info(),
        "/api/window": lambda q: explorer.window(*where(q), q.integer("start"), q.integer("end")),
        "/api/select": lambda q: explorer.select(*where(q), q.integer("start"), q.integer("end"),
                                                 q.number("threshold")),
        "/api/match": lambda q: explorer.match(*where(q), q.integers("cells"), q.number("threshold"),
                                               q.integer("start"), q.integer("end"), q.integer("limit", 20)),
        "/api/cell": lambda q: explorer.cell(*where(q), q.integer("cell"), q.integer("start"), q.integer("end"),
                                             q.integer("top", 10)),
        "/api/curves": lambda q: explorer.curves(),
        "/api/attention": lambda q: explorer.attention(),
    }


def make_handler(explorer: Explorer) -> type[BaseHTTPRequestHandler]:
    api = routes(explorer)

    class Handler(BaseHTTPRequestHandler):
        server_version = "unrolled-viz"
        protocol_version = "HTTP/1.1"

        def do_HEAD(self) -> None:
            self.answer(head=True)

        def do_GET(self) -> None:
            self.answer(head=False)

        def answer(self, *, head: bool) -> None:
            if len(self.path) > MAX_REQUEST_LINE:
                return self.send_json(HTTPStatus.REQUEST_URI_TOO_LONG, {"error": "the request is too long"}, head)
            if self.headers.get("Content-Length", "0").strip() not in ("", "0"):
                return self.send_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                      {"error": "requests carry no body here"}, head)
            url = urlsplit(self.path)
            if url.path in ("/", "/index.html"):
                return self.send_bytes(HTTPStatus.OK, static_file("index.html"), STATIC_FILES["index.html"], head)
            name = url.path.removeprefix("/static/")
            if url.path.startswith("/static/") and name in STATIC_FILES:
                return self.send_bytes(HTTPStatus.OK, static_file(name), STATIC_FILES[name], head)
            endpoint = api.get(url.path)
            if endpoint is None:
                return self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {url.path[:100]}"}, head)
            try:
                body = endpoint(Query(url.query))
            except ValueError as error:
                return self.send_json(HTTPStatus.BAD_REQUEST, {"error": " ".join(str(error).split())}, head)
            self.send_json(HTTPStatus.OK, body, head)

        def send_json(self, status: HTTPStatus, body: dict[str, Any], head: bool) -> None:
            data = json.dumps(body, separators=(",", ":")).encode("utf-8")
            self.send_bytes(status, data, "application/json", head)

        def send_bytes(self, status: HTTPStatus, data: bytes, kind: str, head: bool) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if not head:
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the terminal shows the address, not every request

    return Handler


def make_server(explorer: Explorer, *, host: str = HOST, port: int | None = None) -> ThreadingHTTPServer:
    """A server bound to host:port; port None tries DEFAULT_PORT, then any free one.

    A port given and already in use raises a one-line ValueError.
    """
    handler = make_handler(explorer)
    tries = [port] if port is not None else [DEFAULT_PORT, 0]
    for i, candidate in enumerate(tries):
        try:
            server = ThreadingHTTPServer((host, candidate), handler)
        except OSError as error:
            if error.errno != errno.EADDRINUSE or i == len(tries) - 1:
                if error.errno == errno.EADDRINUSE:
                    raise ValueError(f"port {candidate} on {host} is in use; pick another with --port, "
                                     f"or leave --port out to take a free one") from None
                raise
            continue
        server.daemon_threads = True
        return server
    raise AssertionError("unreachable")


def address(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}/"


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    """Run `server` in a daemon thread (tests, benchmarks); stop it with server.shutdown()."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread
