"""`unrolled serve RUN [RUN ...]`: the trained models over HTTP (FastAPI on uvicorn), on 127.0.0.1 by default."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from unrolled.options import add_flags, apply_flags

DESCRIPTION = """\
Serve trained models over HTTP: every RUN (a run folder or checkpoint folder of
any application) gets routes under /v1/models/NAME, NAME being its folder's name.

  GET  /health, /v1/models                  what is loaded, its configuration and validation figures
  POST /v1/models/NAME/predict              the application's inputs and options as JSON
                                            (lm: "stream": true sends the characters as server-sent events)
  POST /v1/models/NAME/predict/upload       caption, glimpse, speech, video: files as a multipart upload
  POST /v1/models/NAME/reply                seq2seq: k suggested replies to a message, no two alike
  GET  /docs                                every route and body (OpenAPI, /openapi.json)

Requests that arrive together are answered by one batched pass (--max-batch B,
--max-wait-ms W). Example, after `make demo`:

  unrolled serve runs/demo
  curl -s localhost:8000/v1/models/demo/predict -H 'content-type: application/json' \\
       -d '{"prime": "KING HENRY.\\n", "length": 200, "seed": 1}'"""


def add_serve_command(commands: Any) -> None:
    from unrolled.serve.config import ServeOptions

    parser = commands.add_parser("serve", help="serve trained models over HTTP: predictions, streamed samples, "
                                               "replies", description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders or checkpoint folders to serve")
    add_flags(parser, ServeOptions())
    parser.set_defaults(handler=serve_command)


M_ARENA_MAX = -8  # glibc's mallopt parameter, what MALLOC_ARENA_MAX sets
SERVE_ARENAS = 2


def limit_malloc_arenas(arenas: int = SERVE_ARENAS) -> bool:
    """Cap glibc's malloc arenas at `arenas` (as ``MALLOC_ARENA_MAX`` would), unless the environment sets it.

    glibc gives threads arenas of their own (up to 8 per core); a server whose
    request threads and per-model threads allocate and free tensors of every
    size spreads them over those arenas and its resident memory creeps up from
    fragmentation. Two arenas keep it near flat (bench/serve_load.py measures
    it). Not glibc (macOS, musl): nothing to do. Returns whether it was set.
    """
    import ctypes
    import os

    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # no mallopt: not glibc
        return False


def serve_command(args: argparse.Namespace) -> int:
    """Load every run (a run that does not load ends start-up with one line), then serve until interrupted."""
    from unrolled.extras import need

    for module in ("fastapi", "uvicorn", "multipart"):
        need(module, "unrolled serve")
    import uvicorn

    from unrolled.serve.app import create_app
    from unrolled.serve.config import ServeOptions
    from unrolled.serve.models import load_runs

    options = apply_flags(ServeOptions(), args)
    limit_malloc_arenas()  # before the model and request threads start
    if options.threads is not None:
        import torch

        torch.set_num_threads(options.threads)
    loaded = load_runs(list(args.runs), device=options.device)
    app = create_app(loaded, options)
    names = ", ".join(f"{name} ({run.app.name})" for name, run in loaded.items())
    print(f"unrolled serve: {names} on http://{options.host}:{options.port} (API: /docs)", file=sys.stderr,
          flush=True)
    uvicorn.run(app, host=options.host, port=options.port, log_level="warning", access_log=False)
    return 0
