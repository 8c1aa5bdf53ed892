"""Decoding: turning a model's next-token distributions into sequences.

- `search`: what every generating model shares through the `Decoder` protocol
  (``step``, ``reorder``): greedy choice, sampling with temperature / top-k /
  top-p, beam search with the GNMT length penalty.
- `ngram`: a character n-gram language model and its shallow fusion into any
  of those searches (the speech recogniser's external language model).
- `ctc`: CTC's greedy and prefix beam search over frame-wise distributions.

The names of `search` are offered here too: ``from unrolled import decoding;
decoding.beam_search(...)``.
"""

from unrolled.decoding import search
from unrolled.decoding.search import *  # noqa: F403 (the public names of `search`, offered here too)

__all__ = search.__all__
