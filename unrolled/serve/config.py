"""What `unrolled serve` takes: where it listens, how it batches, and the limits every request is held to.

Each field is a flag of ``unrolled serve`` (`unrolled.options`). A request beyond a
limit is answered with a JSON error that names it (`unrolled.serve.errors`):
413 where the content sent is too large (request bytes, texts, text length,
files, image pixels, audio seconds), 422 where what is asked for is too much
(generation length, samples, beam).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from unrolled.options import option, require_positive

LOOPBACK = "127.0.0.1"
OPTION_LIMITS = {"length": ("max_length", "the sample length (characters)"),
                 "max_len": ("max_length", "the output length (tokens)"),
                 "num_samples": ("max_samples", "the number of samples"),
                 "n_best": ("max_samples", "the number of outputs"),
                 "beam": ("max_beam", "the beam")}
"""The predict options that a limit bounds: option -> (the limit's field, what it counts). A default above its
limit is served as the limit."""


@dataclass
class ServeOptions:
    """The service's address, device, batching and limits."""

    host: str = field(default=LOOPBACK, metadata=option(
        "address to listen on; 127.0.0.1 is this machine only (0.0.0.0: every network, at your own risk)"))
    port: int = field(default=8000, metadata=option("TCP port"))
    device: str = field(default="auto", metadata=option(
        "where the models run: auto (CUDA when present, else CPU), cpu, cuda, cuda:N, mps"))
    threads: int | None = field(default=None, metadata=option(
        "torch threads for the models' passes (none: torch's default, one per core); fewer leave cores to the "
        "HTTP side", metavar="N"))
    max_batch: int = field(default=64, metadata=option(
        "B: most requests answered by one batched pass of a model (1: one at a time, no batching)", metavar="B"))
    max_wait_ms: float = field(default=5.0, metadata=option(
        "W: longest a request waits for others to join its batch, in milliseconds", metavar="W"))
    max_request_bytes: int = field(default=16_000_000, metadata=option(
        "largest request body (uploads included), in bytes", metavar="BYTES"))
    max_texts: int = field(default=64, metadata=option("most texts, sources or files in one request", metavar="N"))
    max_text_chars: int = field(default=2000, metadata=option("longest text, prime or source, in characters",
                                                              metavar="N"))
    max_length: int = field(default=2000, metadata=option(
        "longest generation: characters of a sample, tokens of an output", metavar="N"))
    max_samples: int = field(default=16, metadata=option("most samples (lm) or replies in one request", metavar="N"))
    max_beam: int = field(default=32, metadata=option("widest beam (seq2seq, caption, speech)", metavar="K"))
    max_image_pixels: int = field(default=4_000_000, metadata=option(
        "largest image, width x height in pixels", metavar="PIXELS"))
    max_audio_seconds: float = field(default=60.0, metadata=option("longest audio clip, in seconds",
                                                                   metavar="SECONDS"))

    def __post_init__(self) -> None:
        require_positive(self, "port", "threads", "max_batch", "max_request_bytes", "max_texts", "max_text_chars",
                         "max_length", "max_samples", "max_beam", "max_image_pixels")
        if not (self.max_wait_ms >= 0 and self.max_audio_seconds > 0):
            raise ValueError("--max-wait-ms must be 0 or more and --max-audio-seconds positive")
