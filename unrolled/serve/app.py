"""The HTTP service: `create_app(loaded, options)`, a FastAPI application over loaded runs.

    GET  /health                          {"status": "ok", "models": N}
    GET  /v1/models                       each run: name, kind, vocabulary sizes, its training configuration and
                                          validation figures, and its queue's batching so far
    POST /v1/models/NAME/predict          JSON: the application's inputs and options (`models.request_model`);
                                          an lm run with "stream": true answers with server-sent events
    POST /v1/models/NAME/predict/upload   runs that read files (caption, glimpse, speech, video): multipart,
                                          the files under "files" and the options as a JSON object under "options"
    POST /v1/models/NAME/reply            seq2seq runs: k suggested replies to a message (`unrolled.serve.diverse`)
    GET  /docs, /openapi.json             what FastAPI writes

Every request goes through its model's queue (`unrolled.serve.batching`): one
batched pass answers the requests that arrived together. Inputs are checked
against the limits (`ServeOptions`) before they queue.
"""

import asyncio
import contextlib
import inspect
import itertools
import json
import math
import secrets
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import Any

from fastapi import FastAPI, File, Form, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError

from unrolled import __version__
from unrolled.apps.base import to_json
from unrolled.serve.batching import Batcher, stats_json
from unrolled.serve.config import OPTION_LIMITS, ServeOptions
from unrolled.serve.diverse import diverse
from unrolled.serve.errors import ApiError, BodyLimit, install_handlers, one_line, over_limit
from unrolled.serve.files import Uploads, read_files
from unrolled.serve.generate import Draw, generate
from unrolled.serve.models import Health, Loaded, ModelList, ReplyRequest, ReplyResponse, request_model

ALONE = ("sample", "one_voice")
"""Options under which an application's results depend on the other inputs of the pass: seq2seq's sampling draws
every input of a pass from one generator, speech's one voice pools the pass's warp search. Such requests run alone."""
REPLY_BEAM_PER_REPLY = 4  # the reply route searches a beam this many times k wide (at most --max-beam)


@dataclass
class Job:
    """One request in a model's queue: its inputs, what answers them (`kind`: predict, sample, reply) and with
    what (`payload`: the predict options, a `Draw`, or the beam), and the key of the jobs that may share a pass."""

    kind: str
    inputs: list[Any]
    payload: Any
    key: Hashable


def job_key(job: Job) -> Hashable:
    return job.key


def run_pass(loaded: Loaded, jobs: list[Job]) -> list[Any]:
    """One batched pass over jobs of one key: a result per job (a list of the application's results, of samples,
    or of n-best outputs)."""
    kind, predictor = jobs[0].kind, loaded.predictor
    if kind == "sample":
        return generate(predictor, [job.payload for job in jobs])  # type: ignore[arg-type]
    if kind == "reply":
        beam = jobs[0].payload
        return predictor.translate([job.inputs[0] for job in jobs], beam=beam, n_best=beam)  # type: ignore[attr-defined]
    results = predictor.predict([item for job in jobs for item in job.inputs], jobs[0].payload)
    answers, start = [], 0
    for job in jobs:
        answers.append(results[start : start + len(job.inputs)])
        start += len(job.inputs)
    return answers


def finite(value: Any) -> Any:
    """`value` with every NaN or infinite float as None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [finite(item) for item in value]
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    return value


def answer(payload: Any) -> JSONResponse:
    return JSONResponse(finite(payload))


class Service:
    """The loaded runs, their queues and the limits: what the routes share."""

    def __init__(self, loaded: dict[str, Loaded], options: ServeOptions) -> None:
        self.loaded, self.options = loaded, options
        self.alone = itertools.count()
        self.queues: dict[str, Batcher[Job, Any]] = {
            name: Batcher(partial(run_pass, run), max_batch=options.max_batch, max_wait_ms=options.max_wait_ms,
                          key=job_key, name=name) for name, run in loaded.items()}

    async def submit(self, name: str, job: Job) -> Any:
        return await self.queues[name].submit(job)

    def predict_options(self, loaded: Loaded, values: dict[str, Any]) -> Any:
        """The application's predict options from a request's values, checked against the limits."""
        options = loaded.app.predict_options(**values)  # its own checks: one-line ValueErrors, answered 422
        for name, (limit, what) in OPTION_LIMITS.items():
            value, allowed = getattr(options, name, None), getattr(self.options, limit)
            if isinstance(value, int) and value > allowed:
                raise over_limit(limit, what, value, allowed, status=422)
        return options

    def sharing(self, options: Any) -> Hashable:
        """The key of the requests that may share a pass with one of these `options`: those with equal options,
        except where a result depends on the batch (`ALONE`), which runs alone."""
        if any(getattr(options, name, False) for name in ALONE):
            return ("alone", next(self.alone))
        return ("predict", repr(options))

    def check_texts(self, texts: list[str], what: str) -> None:
        """At most --max-texts texts, each non-blank and at most --max-text-chars long."""
        limits = self.options
        if len(texts) > limits.max_texts:
            raise over_limit("max_texts", f"the number of {what}", len(texts), limits.max_texts)
        for number, text in enumerate(texts, start=1):
            if len(text) > limits.max_text_chars:
                raise over_limit("max_text_chars", f"the length of {what[:-1]} {number} (characters)", len(text),
                                 limits.max_text_chars)
            if not text.strip():
                raise ApiError(422, f"{what[:-1]} {number} is blank; send text to answer")

    # ------------------------------------------------------------------ the routes' work

    async def predict(self, loaded: Loaded, body: BaseModel,
                      uploads: list[tuple[str | None, bytes]] | None = None) -> Any:
        values = body.model_dump()
        inputs = values.pop(loaded.inputs if loaded.inputs in ("texts", "sources") else "files", None)
        stream = values.pop("stream", False)
        options = self.predict_options(loaded, values)
        if loaded.inputs == "prime":
            return await self.sample(loaded, options, stream=stream)
        if loaded.inputs in ("texts", "sources"):
            self.check_texts(inputs, loaded.inputs)
            results = await self.submit(loaded.name, Job("predict", inputs, options, self.sharing(options)))
            return answer({"results": [to_json(result) for result in results]})
        files: list[tuple[str | None, bytes | str]] = (
            list(uploads) if uploads is not None else [(item["name"], item["data"]) for item in inputs])
        with Uploads(files, loaded.inputs, self.options) as sent:
            read = await asyncio.to_thread(read_files, sent, loaded.app, options, self.options)
            results = await self.submit(loaded.name, Job("predict", read, options, self.sharing(options)))
            return answer({"results": [sent.named(to_json(result)) for result in results]})

    async def sample(self, loaded: Loaded, options: Any, *, stream: bool) -> Any:
        """The lm's samples of a prime: JSON, or with `stream` server-sent events of the characters as drawn."""
        prime = options.prime
        if len(prime) > self.options.max_text_chars:
            raise over_limit("max_text_chars", "the length of the prime (characters)", len(prime),
                             self.options.max_text_chars)
        unseen = loaded.predictor.vocabulary.unknown_characters(prime)  # type: ignore[attr-defined]
        if unseen:
            shown = ", ".join(repr(c) for c in sorted(unseen)[:10])
            raise ApiError(422, f"the prime has characters the model never saw in training: {shown}; remove them")
        seed = options.seed if options.seed is not None else secrets.randbits(62)
        fields = {name: getattr(options, name) for name in ("temperature", "top_k", "top_p", "greedy")}
        if not stream:
            draw = Draw(prime, options.length, seed, options.num_samples, **fields)
            texts = await self.submit(loaded.name, Job("sample", [prime], draw, "sample"))
            samples = [{"prime": prime, "text": text, "number": n} for n, text in enumerate(texts, start=1)]
            return answer({"samples": samples, "seed": seed})
        if options.num_samples != 1:
            raise ApiError(422, "stream sends one sample's characters; ask for num_samples 1, or stream false")
        return StreamingResponse(self.events(loaded, prime, options.length, seed, fields),
                                 media_type="text/event-stream")

    async def events(self, loaded: Loaded, prime: str, length: int, seed: int,
                     fields: dict[str, Any]) -> AsyncIterator[str]:
        """Server-sent events: ``start`` (prime and seed), a ``data`` event per character, then ``done`` with
        the whole sample, or ``error``."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()

        def on_text(new: list[str]) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, new[0])

        draw = Draw(prime, length, seed, 1, on_text=on_text, **fields)
        task = asyncio.ensure_future(self.submit(loaded.name, Job("sample", [prime], draw, "sample")))
        task.add_done_callback(lambda _: pieces.put_nowait(None))
        yield f"event: start\ndata: {json.dumps({'prime': prime, 'seed': seed})}\n\n"
        try:
            while (piece := await pieces.get()) is not None:
                yield f"data: {json.dumps(piece)}\n\n"
            failure = task.exception()
            if failure is not None:
                yield f"event: error\ndata: {json.dumps({'error': one_line(failure)})}\n\n"
            else:
                yield f"event: done\ndata: {json.dumps({'prime': prime, 'text': task.result()[0]})}\n\n"
        finally:
            if not task.done():
                task.cancel()

    async def reply(self, loaded: Loaded, request: ReplyRequest) -> Any:
        """k suggested replies: the n-best of a beam REPLY_BEAM_PER_REPLY k wide, near-duplicates dropped."""
        self.check_texts([request.message], "messages")
        limits = self.options
        if request.k > limits.max_samples:
            raise over_limit("max_samples", "the number of replies", request.k, limits.max_samples, status=422)
        beam = min(max(REPLY_BEAM_PER_REPLY * request.k, 2 * REPLY_BEAM_PER_REPLY), limits.max_beam)
        outputs = await self.submit(loaded.name, Job("reply", [request.message], beam, ("reply", beam)))
        candidates = [(output.text, output.score) for output in outputs if output.finished and output.text.strip()]
        chosen = diverse(candidates, request.k) if request.diverse else candidates[: request.k]
        return answer({"message": request.message, "candidates": len(candidates),
                       "replies": [{"text": text, "score": score} for text, score in chosen]})


def with_body(endpoint: Callable[..., Any], model: type[BaseModel]) -> Callable[..., Any]:
    """`endpoint(body)` whose body FastAPI reads (and documents) as `model`."""
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=model)])
    return endpoint


def add_model_routes(app: FastAPI, service: Service, loaded: Loaded) -> None:
    """The routes of one loaded run, at its own paths, so the OpenAPI document shows its own body."""
    body = request_model(loaded, service.options)
    base = f"/v1/models/{loaded.name}"
    tag: list[str | Enum] = [loaded.name]

    async def predict(body: Any) -> Any:
        return await service.predict(loaded, body)

    app.post(f"{base}/predict", tags=tag, summary=f"{loaded.app.name}: {loaded.app.summary}")(
        with_body(predict, body))
    if loaded.inputs not in ("prime", "texts", "sources"):
        async def upload(files: list[UploadFile] = File(..., description=f"the {loaded.inputs} files"),  # noqa: B008
                         options: str = Form("{}", description="the options, a JSON object")) -> Any:
            sent: list[tuple[str | None, bytes]] = [(part.filename, await part.read()) for part in files]
            try:
                values = json.loads(options)
                if not isinstance(values, dict):
                    raise ValueError("options must be a JSON object")
                parsed = body.model_validate({**values, "files": [{"data": ""}]})
            except ValidationError as error:
                raise ApiError(422, "options: " + "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:5])) from None
            except ValueError as error:
                raise ApiError(422, f"options: not a JSON object ({one_line(error)})") from None
            return await service.predict(loaded, parsed, uploads=sent)

        app.post(f"{base}/predict/upload", tags=tag, summary=f"{loaded.app.name}: the same, files uploaded")(upload)
    if loaded.replies:
        async def reply(body: ReplyRequest) -> ReplyResponse:
            return await service.reply(loaded, body)

        app.post(f"{base}/reply", tags=tag, summary="suggested replies to a message, no two alike",
                 response_model=ReplyResponse)(reply)


def create_app(loaded: dict[str, Loaded], options: ServeOptions) -> FastAPI:
    """The service over `loaded` runs with `options`' batching and limits."""
    service = Service(loaded, options)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for queue in service.queues.values():
            with contextlib.suppress(Exception):
                await queue.close()

    app = FastAPI(title="unrolled serve", version=__version__, lifespan=lifespan,
                  description="Trained unrolled models over HTTP: predictions, samples (streamed) and replies.")
    install_handlers(app)
    app.add_middleware(BodyLimit, limit=options.max_request_bytes)

    @app.get("/health")
    async def health() -> Health:
        return Health(status="ok", models=len(loaded))

    @app.get("/v1/models")
    async def models() -> ModelList:
        return ModelList(models=[{**run.describe(), "batching": stats_json(service.queues[name].stats)}
                                 for name, run in loaded.items()])

    for run in loaded.values():
        add_model_routes(app, service, run)
    known = ", ".join(loaded) or "none"

    @app.post("/v1/models/{name}/{action}", include_in_schema=False)
    async def unknown(name: str, action: str) -> None:
        if name in loaded:
            raise ApiError(404, f"model {name} has no route {action}")
        raise ApiError(404, f"no model named {name!r}; loaded: {known} (GET /v1/models)")

    app.state.service = service
    return app
