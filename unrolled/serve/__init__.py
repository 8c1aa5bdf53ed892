"""The HTTP service over the applications' predictors: ``unrolled serve RUN [RUN ...]``.

- `config`: `ServeOptions`, the address, batching and limits (the command's flags);
- `models`: loading runs, what ``GET /v1/models`` says of them, each application's request body;
- `batching`: the queue per model that answers requests arriving together in one pass;
- `generate`: character LM samples for many requests in one pass, each as if drawn alone;
- `diverse`: the auto-reply rule, k replies with no two near-duplicates;
- `files`: uploaded images, audio and clips files, checked against the limits;
- `errors`: every failure as one JSON object; the request-size limit;
- `app`: `create_app`, the FastAPI application and its routes;
- `launch`: the command as a child process on a free loopback port (the tests and the benchmark).
"""
