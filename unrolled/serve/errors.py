"""Every failure as one JSON object, ``{"error": "...", "limit": NAME?}``, never a traceback.

- `ApiError`: what the service itself refuses (an unknown model, a limit);
- request validation (wrong types, missing fields): 422 with each problem on one line;
- a `ValueError` or `OSError` from an application (an undecodable image, a prime
  with characters the model never saw): 422 with its one-line message;
- anything else: 500 with the exception's kind only (the server's log has the rest).

`BodyLimit` is the ASGI middleware that refuses a body larger than
``--max-request-bytes`` (413) before it is read whole: by its Content-Length,
else by counting what arrives.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("unrolled.serve")
DETAIL_CHARS = 300  # longest message shown to a client


class ApiError(Exception):
    """A request the service refuses: its HTTP status, a one-line message, and the limit it exceeds, if any."""

    def __init__(self, status: int, message: str, *, limit: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.limit = status, message, limit

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **({"limit": self.limit} if self.limit else {})}


def over_limit(limit: str, what: str, value: float, allowed: float, *, status: int = 413) -> ApiError:
    """The error of `what` (`value`) beyond the limit flag `limit` (`allowed`)."""
    flag = "--" + limit.replace("_", "-")
    return ApiError(status, f"{what} is {value:g}, over the limit of {allowed:g} ({flag}); send less", limit=limit)


def one_line(error: BaseException) -> str:
    """The error's message on one line, at most `DETAIL_CHARS` characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 3] + "..."


def client_error(error: BaseException) -> ApiError | None:
    """The 4xx answer to an exception raised while answering a request, or None when it is the server's fault.

    The applications raise ValueError (with OSError for files: PIL's UnidentifiedImageError is one) for bad
    input, always as one line.
    """
    if isinstance(error, ApiError):
        return error
    if isinstance(error, (ValueError, OSError, UnicodeError)):
        return ApiError(422, one_line(error))
    return None


def validation_message(error: RequestValidationError) -> str:
    """Pydantic's problems as 'where: what' parts on one line."""
    parts = []
    for problem in error.errors()[:5]:
        where = ".".join(str(step) for step in problem.get("loc", ()) if step != "body") or "body"
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_handlers(app: FastAPI) -> None:
    """JSON answers for every failure (see the module docstring)."""

    @app.exception_handler(ApiError)
    async def refused(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json" and not kind.startswith("multipart/") and request.method == "POST":
            return JSONResponse({"error": f"the body must be JSON sent as content-type: application/json, not "
                                          f"{kind or 'no content-type'} (curl: -H 'content-type: application/json')"},
                                status_code=415)
        return JSONResponse({"error": validation_message(error)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        limit = {"limit": error.limit} if isinstance(error, BodyTooLarge) else {}
        return JSONResponse({"error": str(error.detail), **limit}, status_code=error.status_code)

    async def known(request: Request, error: Exception) -> JSONResponse:
        answer = client_error(error)
        assert answer is not None
        return JSONResponse(answer.body(), status_code=answer.status)

    for kind in (ValueError, OSError, UnicodeError):  # handled as they come, not logged as the server's failures
        app.add_exception_handler(kind, known)

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception) -> JSONResponse:
        log.error("unrolled serve: %s %s failed: %s: %s", request.method, request.url.path, type(error).__name__,
                  one_line(error))
        return JSONResponse({"error": f"internal error ({type(error).__name__}); the server log has the details"},
                            status_code=500)


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is answered 413 (naming ``max_request_bytes``)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self.refuse(send, int(declared))
            return
        received = 0
        started = False

        async def counted() -> dict[str, Any]:
            nonlocal received
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(received, self.limit)
            return message

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge as error:
            if not started:
                await self.refuse(send, error.size)

    async def refuse(self, send: Any, size: int) -> None:
        payload = json.dumps(body_too_large(size, self.limit).body()).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


def body_too_large(size: int, limit: int) -> ApiError:
    return over_limit("max_request_bytes", "the request body (bytes)", size, limit)


class BodyTooLarge(StarletteHTTPException):
    """A body found too large while it is read: an HTTP error, so that FastAPI's body parsing passes it on."""

    limit = "max_request_bytes"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(413, body_too_large(size, limit).message)
        self.size = size
